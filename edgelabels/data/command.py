"""`edgelabels dataset inspect|split|augment|synth-cassettes|to-manifest|audit ...`: check, split, grow, generate,
convert or audit a dataset. `inspect` and `split` are one driver each: the task the source holds (a folder per
label, a manifest with several labels per image, images/ + masks/, or boxes) is told once from its shape, and that
task's hooks (data/inspection.py, named by the task table) read it and add what the task adds, such as box
statistics and a box-size histogram for a detection source. `audit` trains, so it lives above this layer
(edgelabels/audit/): it is reached through the task table's `auditing` hooks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edgelabels.errors import UserError

PEDIATRIC = r"^(person\d+|IM-\d+|NORMAL2-IM-\d+)"
SHOW = 10  # list items printed before "... and N more"

EXAMPLES = f"""\
examples:
  edgelabels dataset inspect data/cassettes
  edgelabels dataset inspect chest-xray/train --group-by '{PEDIATRIC}' --json inspect.json
  edgelabels dataset inspect train.manifest --s3-root ~/bucket-copy
  edgelabels dataset split chest-xray/train --out splits/ --group-by '{PEDIATRIC}' --seed 1
  edgelabels dataset augment data/cassettes --to 2000 --out data/cassettes-2000 --preset photo
  edgelabels dataset synth-cassettes data/cassettes --n 300 --seed 0
  edgelabels dataset inspect ../shared/data/bees-yolo --class-names bee --plots plots/
  edgelabels dataset to-manifest ../shared/data/bees-yolo --class-names bee --s3-prefix s3://b/bees/ --out bees.manifest

Run `edgelabels dataset ACTION --help` for an action's options."""

SOURCE_HELP = ("a folder with one sub-folder per label (Rekognition's rule: only direct sub-folders name labels; "
               "images directly in it are unlabelled), or a SageMaker Ground Truth manifest (.manifest/.jsonl), "
               "e.g. data/cassettes or train.manifest; for detection also a YOLO folder (images/ + labels/, or an "
               "Ultralytics/Roboflow data.yaml with train/val/test paths), a Pascal VOC folder (Annotations/ + "
               "JPEGImages/, ImageSets/Main splits) or a COCO .json file; for a lung U-Net a folder with images/ + masks/ (same file names)")


def add_arguments(parser) -> None:
    from edgelabels.data.inspection import HISTOGRAM

    parser.epilog = EXAMPLES
    actions = parser.add_subparsers(dest="dataset_action", metavar="ACTION", required=True)

    def action(name: str, help_text: str, epilog: str):
        sub = actions.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".",
                                 epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
        return sub

    inspect = action("inspect", "check every image: labels, groups, unreadable files, duplicates, near-duplicates",
                     "example:\n  edgelabels dataset inspect chest-xray/train "
                     f"--group-by '{PEDIATRIC}' --json inspect.json\n\n"
                     "Exit 0 when the dataset is usable (skipped images are listed); 2 with one line on bad input.")
    _source_arguments(inspect)
    inspect.add_argument("--json", type=Path, metavar="FILE",
                         help="also write the full report as JSON (images, labels, groups, duplicates, "
                              "near_duplicates, problems, notes, unlabelled), e.g. --json inspect.json")
    inspect.add_argument("--near-distance", type=int, default=None, metavar="BITS",
                         help="near-duplicate threshold: perceptual-hash bits (of 256) that may differ "
                              "(default 20; 0: identical hashes only), e.g. --near-distance 10")
    inspect.add_argument("--show", type=int, default=SHOW, metavar="N",
                         help=f"list at most N items per section in the printed summary (default {SHOW})")
    inspect.add_argument("--class-names", metavar="A,B", type=_names,
                         help="detection, a YOLO folder without data.yaml: class names in id order, e.g. bee")
    inspect.add_argument("--plots", type=Path, metavar="DIR",
                         help=f"detection: write the box-size histogram DIR/{HISTOGRAM} (default: beside --json)")

    split = action("split", "write seeded, stratified, grouped train/val/test file lists",
                   "example:\n  edgelabels dataset split chest-xray/train --out splits/ "
                   f"--group-by '{PEDIATRIC}' --seed 1\n\n"
                   "Writes OUT/train.txt, val.txt, test.txt: one `path<TAB>label<TAB>group` line per image.\n"
                   "Images that do not decode are left out (and listed). The same seed gives the same files.\n"
                   "A detection source (boxes manifest, YOLO folder, COCO file) also gets OUT/boxes.jsonl, as `train`\n"
                   "writes it; a YOLO folder's own train/val/test folders are kept.")
    _source_arguments(split)
    split.add_argument("--out", type=Path, required=True, metavar="DIR",
                       help="folder for train.txt, val.txt, test.txt, e.g. --out runs/pneumonia/splits")
    split.add_argument("--seed", type=int, default=0, help="random seed (default 0), e.g. --seed 1")
    split.add_argument("--test-fraction", type=float, default=0.2, metavar="F",
                       help="share of each label held out for test (default 0.2, as Rekognition), e.g. 0.25")
    split.add_argument("--val-fraction", type=float, default=0.1, metavar="F",
                       help="share of what remains held out for validation (default 0.1), e.g. 0.15")
    split.add_argument("--test-source", metavar="FOLDER_OR_MANIFEST",
                       help="a separate test dataset (then --test-fraction is not used), e.g. chest-xray/test")
    split.add_argument("--class-names", metavar="A,B", type=_names,
                       help="detection, a YOLO folder without data.yaml: class names in id order, e.g. bee")

    augment = action("augment", "grow a folder-per-label dataset with augmented copies (label shares kept)",
                     "example:\n  edgelabels dataset augment data/cassettes --to 2000 --out data/cassettes-2000")
    augment.add_argument("source", metavar="SOURCE", help="a folder with one sub-folder per label, e.g. data/cassettes")
    augment.add_argument("--to", type=int, required=True, metavar="N",
                         help="total images wanted, originals included, e.g. --to 2000")
    augment.add_argument("--out", type=Path, required=True, metavar="DIR",
                         help="new folder per label to write, e.g. --out data/cassettes-2000")
    augment.add_argument("--preset", choices=("photo", "xray"), default="photo",
                         help="photo: colour, perspective, blur; xray: mild contrast and geometry (default photo)")
    augment.add_argument("--seed", type=int, default=0, help="random seed (default 0)")

    synth = action("synth-cassettes", "generate synthetic lateral-flow test photos (positive/negative/invalid)",
                   "example:\n  edgelabels dataset synth-cassettes data/cassettes --n 300 --seed 0 --size 640x480")
    synth.add_argument("out", type=Path, metavar="OUT",
                       help="folder to create with positive/, negative/, invalid/, e.g. data/cassettes")
    synth.add_argument("--n", type=int, default=300, help="number of photos (default 300; about 90%% negative)")
    synth.add_argument("--seed", type=int, default=0,
                       help="random seed: the same seed gives the same bytes (default 0)")
    synth.add_argument("--size", metavar="WxH", help="fixed photo size, at least 64x64, e.g. --size 640x480 (default: phone sizes)")
    synth.add_argument("--workers", type=int, default=1, help="processes rendering in parallel (default 1)")
    synth.add_argument("--mix", metavar="LABEL=SHARE,...", type=_mix,
                       help="shares of the results, decimals or fractions, e.g. --mix negative=0.4,positive=0.3,"
                            "invalid=0.3 or --mix positive=1/3,negative=1/3,invalid=1/3 "
                            "(default negative=0.9,positive=0.07,invalid=0.03, as in the real problem)")
    synth.add_argument("--boxes", action="store_true",
                       help="also write OUT/boxes.manifest, a Ground Truth object-detection manifest (cassette, "
                            "window, well boxes), for `task: detection`")
    synth.add_argument("--user-readings", type=float, metavar="RATE",
                       help="also write what users reported, wrong at RATE on average (0 <= RATE < 1: faint T lines "
                            "read negative, invalid cassettes read by their T line, plain slips): "
                            "OUT/user-readings.manifest labelled with the readings, OUT/truth.csv for scoring, the "
                            "noise matrix in OUT/README.md; the photos are the same with or without, e.g. "
                            "--user-readings 0.4")

    audit = action("audit", "find the labels that are likely wrong (k-fold trainings, then confident learning)",
                   AUDIT_EPILOG)
    _source_arguments(audit)
    audit.add_argument("--out", type=Path, required=True, metavar="DIR",
                       help="the audit's folder (an interrupted audit given the same DIR resumes), e.g. --out audit/")
    audit.add_argument("--config", metavar="FILE",
                       help="train each fold with this config (its chain included, e.g. configs/cassettes.yaml: "
                            "the reader audits its window crops); SOURCE, if given, replaces its data.source "
                            "(default: the data's recipe, every auto key chosen from the data)")
    audit.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="config override, repeatable, e.g. --set train.budget=5m --set model.backbone=smallcnn")
    audit.add_argument("--folds", type=int, default=4, metavar="K",
                       help="folds, 2-20 (default 4): K trainings, each on (K-1)/K of the images")
    audit.add_argument("--rounds", type=int, metavar="N",
                       help="classification: k-fold rounds, 1-5 (default 3), up to N x K trainings: a model "
                            "trained on very noisy labels learns the noise and hides it, so each round trains the "
                            "same folds without the images the round before found likely wrong and scores every "
                            "image again, stopping early once a round finds (nearly) the images it trained without; "
                            "detection audits in one round")
    audit.add_argument("--method", metavar="M",
                       help="classification: which examples confident learning takes, one of prune_by_noise_rate, "
                            "prune_by_class, both, confident_joint, confusion (default: see audit.json)")
    audit.add_argument("--apply", choices=("prune", "relabel"),
                       help="also write OUT/next.manifest, the next version: prune drops every suspect; relabel "
                            "takes the suggestion at --min-confidence or above and drops the other suspects")
    audit.add_argument("--min-confidence", type=float, default=0.9, metavar="P",
                       help="--apply relabel: the model's confidence a suggestion needs (default 0.9)")
    audit.add_argument("--seed", type=int, default=0, help="random seed of the folds (default 0)")
    audit.add_argument("--class-names", metavar="A,B", type=_names,
                       help="detection, a YOLO folder without data.yaml: class names in id order, e.g. bee")

    convert = action("to-manifest", "write a Ground Truth object-detection manifest from a YOLO folder, a data.yaml, a Pascal VOC folder "
                     "or a COCO file",
                     "example:\n  edgelabels dataset to-manifest ../shared/data/bees-yolo --class-names bee "
                     "--s3-prefix s3://bucket/bees/ --out bees.manifest\n\n"
                     "Upload the source folder to the S3 prefix (same relative paths), then import the manifest "
                     "into Rekognition.\nBoxes are written as edgelabels reads them: clipped to the image, "
                     "boxes Rekognition refuses left out (listed).")
    convert.add_argument("source", metavar="SOURCE",
                         help="a YOLO folder (images/{train,val,test} + labels/...) or a COCO .json file")
    convert.add_argument("--s3-prefix", required=True, metavar="URI",
                         help="where SOURCE's files will be in S3: source-ref = URI + path relative to SOURCE, "
                              "e.g. --s3-prefix s3://bucket/bees/")
    convert.add_argument("--out", type=Path, required=True, metavar="FILE",
                         help="the manifest to write, e.g. --out bees.manifest")
    convert.add_argument("--class-names", metavar="A,B", type=_names,
                         help="YOLO without data.yaml: class names in id order, e.g. --class-names bee,wasp")


AUDIT_EPILOG = """\
examples:
  edgelabels dataset audit data/cassettes/user-readings.manifest --config configs/cassettes.yaml --out audit/
  edgelabels dataset audit chest-xray/train --group-by '^(person\\d+)' --set train.budget=10m --out audit-xray/
  edgelabels dataset audit runs/pneumonia --out audit-quick/     (a run: its own model, a quick in-sample look)

How: the images are dealt into K folds (stratified by label; --group-by keeps one patient in one fold); K runs
train, each on the other folds, and each image is scored by the one model that never trained on it: K trainings, so
about K times one training's time (--set train.budget=... bounds each). A classifier does this up to three times
(--rounds): each round trains without the images the one before found likely wrong, as a model trained on very noisy
labels learns the noise; the rounds stop once they find (nearly) the images they trained without. Confident learning
(Northcutt et al. 2021) then estimates how many labels are wrong and which; images that do not decode, blank ones,
and identical or near-identical images with different labels are listed too. A RUN is quicker (no training) but
in-sample: a label the model learnt wrong is not found. Writes OUT/suspects.csv (rank, image, given, suggested,
confidence, reason, ...), OUT/audit.html (thumbnails, worst first), OUT/audit.json (the estimate, noise matrix,
method, K, rounds, time), OUT/folds/ (the fold runs and logs; round R in OUT/folds-round-R/) and, with --apply,
OUT/next.manifest. Exit 0 when written; 2 with one line on bad input."""


def _source_arguments(parser) -> None:
    parser.add_argument("source", nargs="?", metavar="SOURCE",
                        help=SOURCE_HELP + "; with --manifest, the folder its images are in")
    parser.add_argument("--manifest", metavar="FILE",
                        help="a Ground Truth manifest whose relative source-refs point into SOURCE, "
                             "e.g. --manifest labels/train.manifest")
    parser.add_argument("--s3-root", metavar="DIR",
                        help="local copy of S3: s3://bucket/key is read from DIR/bucket/key, e.g. --s3-root ~/s3")
    parser.add_argument("--group-by", metavar="REGEX",
                        help="regex matched at the start of each file name; its first group (or whole match) "
                             f"keeps one patient's images in one split, e.g. --group-by '{PEDIATRIC}'")


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated class names, e.g. bee,wasp")
    return names


def run(args) -> int:
    handlers = {"inspect": _inspect, "split": _split, "augment": _augment, "synth-cassettes": _synth,
                "to-manifest": _to_manifest, "audit": _audit}
    return handlers[args.dataset_action](args)


def _progress() -> bool:
    return sys.stderr.isatty()


def _task_of(args):
    """(task, its inspection hooks, source options): the task is decided here, once, from the source's shape."""
    from edgelabels.data.inspection import SourceOptions, source_task
    from edgelabels.tasks import get_task

    task = get_task(source_task(args.source, args.manifest))
    options = SourceOptions(manifest=args.manifest, s3_root=args.s3_root, group_by=args.group_by,
                            class_names=tuple(args.class_names or ()))
    return task, task.piece("inspection"), options


# ---------------------------------------------------------------- inspect


def _inspect(args) -> int:
    from edgelabels import atomic
    from edgelabels.data.validate import NEAR_DISTANCE, inspect_dataset

    task, hooks, options = _task_of(args)
    dataset = hooks.read(args.source, options)
    distance = NEAR_DISTANCE if args.near_distance is None else args.near_distance
    report = inspect_dataset(dataset, near_distance=distance, progress=_progress())
    print(format_report(report, dataset, distance, args.show, kind=hooks.kind(dataset)))
    document = {**report.to_json(), "task": task.name}
    document.update(hooks.report(dataset, args.show, args.plots or (args.json.parent if args.json else None)))
    if args.json:
        atomic.write_json(args.json, document)
        print(f"report written to {args.json}")
    empty = [name for name, count in report.usable_labels.items() if count == 0]
    if empty:
        raise UserError(f"{dataset.source}: label {empty[0]!r} has no image that decodes "
                        f"(a {task.noun} needs >= 1 usable image per label)")
    return 0


def format_report(report, dataset, near_distance: int, show: int = SHOW, kind: str = "folder per label") -> str:
    from edgelabels.data.inspection import relative, section, source_folder

    base = source_folder(dataset)
    rel = lambda p: relative(p, base)  # noqa: E731
    lines = [f"dataset: {dataset.source} ({kind})",
             f"images: {report.images} in {len(report.labels)} labels, {report.groups} groups"]
    width = max(len(name) for name in report.labels)
    for name, count in report.labels.items():
        unusable = count - report.usable_labels.get(name, 0)
        lines.append(f"  {name:<{width}}  {count:>7}" + (f"  ({unusable} unusable)" if unusable else ""))
    if report.sizes:
        (w0, h0), (w1, h1), (wm, hm) = report.sizes["min"], report.sizes["max"], report.sizes["median"]
        lines.append(f"image sizes: {w0}x{h0} smallest, {w1}x{h1} largest, {wm}x{hm} median")
    unusable = report.images - report.usable_images
    lines.append(f"usable: {report.usable_images} of {report.images} images decode"
                 + (f"; {unusable} will be skipped" if unusable else ""))
    lines += section("problems", [f"{rel(p.path)}: {p.problem}" for p in report.problems], show)
    lines += section("label conflicts (byte-identical, different labels)",
                     [f"{rel(a)} == {rel(b)}" for a, b in report.label_conflicts], show)
    redundant = _redundant(report.duplicates)
    lines += section("duplicates", [f"{rel(a)} == {rel(b)}" for a, b in report.duplicates], show,
                     detail=f" byte-identical {_plural(len(report.duplicates), 'pair')} ({redundant} redundant "
                            f"{_plural(redundant, 'file')})")
    lines += section("near-duplicates", [f"{rel(a)} ~ {rel(b)} ({d} bits)" for a, b, d in report.near_duplicates],
                     show, total=report.near_duplicates_total,
                     detail=f" {_plural(report.near_duplicates_total, 'pair')} within {near_distance} of 256 "
                            "perceptual-hash bits")
    lines += section("notes (handled)", [f"{rel(n['path'])}: {n['note']}" for n in report.notes], show)
    lines += section("unlabelled (images directly in the dataset folder, not used)",
                     [rel(p) for p in report.unlabelled], show)
    return "\n".join(lines)


def _plural(count: int, word: str) -> str:
    return word if count == 1 else word + "s"


def _redundant(pairs) -> int:
    """Files beyond the first of each set of identical files (a triple is 3 pairs but 2 redundant files)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for a, b in pairs:
        parent[find(b)] = find(a)
    return len(parent) - len({find(x) for x in list(parent)})


# ---------------------------------------------------------------- split


def _split(args) -> int:
    from collections import Counter

    from edgelabels.data.splits import check_fractions, make_split, write_split

    check_fractions(args.test_fraction, args.val_fraction)  # before minutes of decoding
    task, hooks, options = _task_of(args)
    dataset = _usable_for_split(hooks.read(args.source, options), hooks.notes)
    test_dataset = (_usable_for_split(hooks.read_test(args.test_source, options), hooks.notes) if args.test_source
                    else None)
    given = dataset.given_split
    if given:  # a YOLO folder's own train/val/test: kept, as `train` keeps them
        from edgelabels.data.prepare import keep_given_split

        split = keep_given_split(dataset, given, test_dataset, test_fraction=args.test_fraction,
                                 val_fraction=args.val_fraction, seed=args.seed)
    else:  # images dealt out as the task's training deals them (multilabel: iterative stratification)
        split = make_split(dataset, test_fraction=args.test_fraction, val_fraction=args.val_fraction, seed=args.seed,
                           test_dataset=test_dataset, deal=task.piece("deal"))
    write_split(split, args.out)
    labels = dataset.label_names
    columns = labels + [name for name, _ in hooks.columns]
    width = max(len(name) for name in labels + ["split"])
    print(f"{'split':<{width}}  " + "  ".join(f"{name:>9}" for name in columns) + "     groups")
    for name, samples in split.parts().items():
        counts = Counter(label for s in samples for label in s.labels)
        extra = [f"{count(samples):>9}" for _, count in hooks.columns]
        print(f"{name:<{width}}  " + "  ".join([f"{counts[label]:>9}" for label in labels] + extra)
              + f"  {len({s.group for s in samples}):>9}")
    if given:
        print(f"kept the source's own {'/'.join(k for k in ('train', 'val', 'test') if given.get(k))} split")
    print(f"written to {args.out}/{hooks.files} (seed {args.seed})")
    return 0


def _usable_for_split(dataset, notes: str | None):
    """The dataset with only images that decode (a source's own split too); what was left out or changed on stderr
    (with a `notes` title: also the reader's own decisions, such as boxes clipped or refused)."""
    from edgelabels.data.inspection import section
    from edgelabels.data.validate import usable_samples

    if notes and dataset.problems:
        print("\n".join(section(notes, [f"{p.path}: {p.problem}" for p in dataset.problems], SHOW)), file=sys.stderr)
    dataset.samples, problems = usable_samples(dataset, progress=_progress())
    for problem in problems:
        print(f"skipped {problem.path}: {problem.problem}", file=sys.stderr)
    if dataset.given_split:
        kept = {s.path for s in dataset.samples}
        dataset.given_split = {name: [s for s in part if s.path in kept] for name, part in dataset.given_split.items()}
    return dataset


# ---------------------------------------------------------------- audit


def _audit(args) -> int:
    """The task's audit (tasks.py `auditing`: the audit sits above the data layer); a run directory reads as a
    folder here, and the audit tells it apart."""
    if args.source is None and args.manifest is None:
        raise UserError("dataset audit: give SOURCE (a folder per label, a manifest, boxes) or a run directory")
    task, _, _ = _task_of(args)
    hooks = task.piece("auditing")
    result = hooks.audit(args.source, args.out, config=args.config, overrides=args.overrides, folds=args.folds,
                         method=args.method, apply=args.apply, min_confidence=args.min_confidence, seed=args.seed,
                         rounds=args.rounds, manifest=args.manifest, s3_root=args.s3_root, group_by=args.group_by,
                         class_names=tuple(args.class_names or ()), say=lambda line: print(line, flush=True))
    print("\n".join(hooks.lines(result)))
    return 0


# ---------------------------------------------------------------- augment and synthetic data


def _augment(args) -> int:
    from edgelabels.data.augment import augment_folder

    counts = augment_folder(args.source, args.to, args.out, args.preset, args.seed, progress=_progress())
    total = sum(counts.values())
    print(f"{total} images written to {args.out}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return 0


def _mix(text: str) -> dict[str, float]:
    """--mix negative=0.4,positive=1/3 -> {"negative": 0.4, "positive": 0.333...} (the generator checks the labels);
    fractions, so that a third of each sums to 1 and gives equal counts."""
    import argparse
    from fractions import Fraction

    try:
        return {k.strip(): float(Fraction(v.strip())) for k, v in (part.split("=") for part in text.split(","))}
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"expected LABEL=SHARE,... e.g. negative=0.4,positive=0.3,invalid=0.3, "
                                         f"not {text!r}") from None


def _synth(args) -> int:
    from edgelabels.data.synthetic import generate_cassettes

    size = _parse_size(args.size) if args.size else None
    counts = generate_cassettes(args.out, args.n, args.seed, size=size, progress=_progress(), workers=args.workers,
                                boxes=args.boxes, mix=args.mix, user_readings=args.user_readings)
    print(f"{sum(counts.values())} cassette photos written to {args.out}: "
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if args.boxes:
        print(f"boxes written to {args.out / 'boxes.manifest'}")
    if args.user_readings is not None:
        import json

        from edgelabels.data.synthetic import MARKER_FILE, READINGS_README

        readings = json.loads((args.out / MARKER_FILE).read_text())["user_readings"]
        n = sum(counts.values())
        print(f"user readings written to {args.out / readings['manifest']}: {readings['wrong']} of {n} wrong "
              f"({readings['wrong'] / n:.1%}, rate {readings['rate']}); the truth, for scoring only, in "
              f"{args.out / readings['truth']}; the noise matrix in {args.out / READINGS_README}")
    return 0


def _to_manifest(args) -> int:
    from edgelabels.data.inspection import relative, section
    from edgelabels.data.to_manifest import to_manifest

    problems = []
    lines = to_manifest(args.source, args.s3_prefix, args.out, class_names=args.class_names or (), problems=problems)
    print("\n".join(section("problems (handled)", [f"{relative(p.path, Path(args.source))}: {p.problem}"
                                                   for p in problems], SHOW)))
    print(f"{lines} images written to {args.out} (source-ref {args.s3_prefix.rstrip('/')}/...): upload "
          f"{args.source} there, then import the manifest")
    return 0


def _parse_size(text: str) -> tuple[int, int]:
    from edgelabels.data.synthetic import MIN_SIDE

    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"--size {text!r}: expected WIDTHxHEIGHT, e.g. 640x480") from None
    if width < MIN_SIDE or height < MIN_SIDE:  # the generator's own limit, said before anything is drawn
        raise UserError(f"--size {text!r}: width and height must be at least {MIN_SIDE} pixels")
    return width, height
