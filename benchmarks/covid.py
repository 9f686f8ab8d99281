"""COVID-19 vs normal (issue 8): does keeping only the lungs, and starting from the pneumonia run, change the
scores and where the classifier looks?

    .venv/bin/python benchmarks/covid.py [--out runs/bench-covid] [--unet runs/unet-lungs]
        [--pneumonia runs/pneumonia] [--only A,B,C,D] [--gradcam-images 60] [--score-only]
        [--set KEY=VALUE ...]

Four runs of configs/covid.yaml on ../shared/data/covid-radiography with one seed, hence one stratified
split (checked: their splits/test.txt must be the same file, else the script stops):
  A  whole film, from scratch     --set segment=null --set model.weights=none
  B  lungs only, from scratch     --set model.weights=none
  C  whole film, from pneumonia   --set segment=null
  D  lungs only, from pneumonia   (the config as shipped)
The U-Net and pneumonia runs are passed as `segment=UNET` and `model.weights=run:PNEUMONIA`; --set
overrides apply to every variant (the variant's own overrides above win). Each run is OUT/<letter>-<name>.
A finished run there (model.keras, checkpoint/state.json done) with the same config is not retrained, an
unfinished one is resumed, one with another config stops the script. --score-only: a run that has a
model.keras is scored as it is, whatever its config and state.

Reported on the test split, COVID positive, from RUN/evaluation/metrics.json (written by `edgelabels
evaluate`'s evaluate_model): accuracy, sensitivity, specificity, ROC AUC, the confusion matrix (rows true,
columns predicted, label order); plus training wall time. Then "where does it look": Grad-CAM of the
predicted class on N test images (seeded, half of each label, the same for every run), computed on the
image each model saw (lungs only, or the whole film), and the share of its mass inside the U-Net's lung
mask (probability >= 0.5 on the plain film, not dilated, resized to the Grad-CAM's size). Writes
OUT/results.json, OUT/results.md and OUT/gradcam_panels.png (3 COVID + 3 NORMAL rows: the film with the
lung outline, then each run's Grad-CAM on what it saw).

The two input runs come first (see the header of configs/covid.yaml):
    .venv/bin/edgelabels train configs/pneumonia.yaml  --out runs/pneumonia
    .venv/bin/edgelabels train configs/unet-lungs.yaml --out runs/unet-lungs
A check of the script itself in minutes: --set data.limit_per_label=40 --set train.epochs=1
    --set train.fine_tune_epochs=1 --set data.image_size=64
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
POSITIVE = "COVID"
LUNG_THRESHOLD = 0.5
PANEL_ROWS_PER_LABEL = 3

# letter: (folder name, description, the overrides that make the variant)
VARIANTS = {
    "A": ("whole-scratch", "whole film, from scratch", ["segment=null", "model.weights=none"]),
    "B": ("lungs-scratch", "lungs only, from scratch", ["model.weights=none"]),
    "C": ("whole-pneumonia", "whole film, from pneumonia", ["segment=null"]),
    "D": ("lungs-pneumonia", "lungs only, from pneumonia", []),
}


# ---------------------------------------------------------------- training


def config_differences(there: dict, here: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dicts."""
    out = []
    for key in sorted(set(there) | set(here)):
        a, b = there.get(key), here.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key} is {a!r} there, {b!r} here")
    return out


def ensure_trained(config, run_dir: Path, score_only: bool) -> float | None:
    """Train (or resume) run_dir unless it is already usable; returns the seconds trained now, None if not trained."""
    from edgelabels.config import load_config
    from edgelabels.errors import UserError
    from edgelabels.train.fit import train

    resume = (run_dir / "config.yaml").is_file()
    changed = config_differences(load_config(run_dir / "config.yaml").to_dict(), config.to_dict()) if resume else []
    if score_only and (run_dir / "model.keras").is_file():
        if changed:
            print(f"note: {run_dir} scored as it is, though trained with other settings ({'; '.join(changed)})")
        return None
    if resume:
        if changed:
            raise UserError(f"{run_dir}: trained with other settings ({changed[0]}); remove it or choose another --out")
        state = run_dir / "checkpoint" / "state.json"
        if (run_dir / "model.keras").is_file() and state.is_file() and json.loads(state.read_text()).get("done"):
            return None
    start = time.monotonic()
    train(config, run_dir, resume=resume)
    return time.monotonic() - start


def logged_training_seconds(run_dir: Path) -> float | None:
    """Training time from train.log for a run trained earlier: each session's first to last line, summed
    (a resumed run's pause between sessions is not counted)."""
    log = run_dir / "train.log"
    if not log.is_file():
        return None
    sessions: list[list[datetime]] = []
    for line in log.read_text().splitlines():
        try:
            stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")
        except ValueError:
            continue
        if " INFO starting run " in line or " INFO resuming run " in line or not sessions:
            sessions.append([])
        sessions[-1].append(stamp)
    return sum((s[-1] - s[0]).total_seconds() for s in sessions if s) or None


# ---------------------------------------------------------------- scores


def test_scores(run_dir: Path) -> dict:
    """The test-split figures, as evaluate_model wrote them to RUN/evaluation/metrics.json."""
    from edgelabels.errors import UserError
    from edgelabels.evaluate.driver import evaluate_model

    start = time.monotonic()
    evaluate_model(run_dir, gradcam_per_kind=4, progress=False)
    seconds = time.monotonic() - start
    metrics = json.loads((run_dir / "evaluation" / "metrics.json").read_text())
    rows = {row["label"]: row for row in metrics["per_label"]}
    if POSITIVE not in rows:
        raise UserError(f"{run_dir}: no {POSITIVE} label among {metrics['labels']}")
    positive = rows[POSITIVE]
    return {"images": metrics["number_of_images"], "accuracy": metrics["accuracy"],
            "sensitivity": positive["sensitivity"], "specificity": positive["specificity"],
            "roc_auc": positive["roc_auc"], "confusion_matrix": metrics["confusion_matrix"],
            "evaluation_seconds": seconds}


# ---------------------------------------------------------------- where does it look


def gradcam_sample(test, count: int, seed: int = 0) -> list:
    """count test samples, half of each label (seeded), in label order: the same for every run."""
    rng = np.random.default_rng(seed)
    labels = sorted({s.label for s in test}, key=lambda name: (name != POSITIVE, name))
    chosen = []
    for label in labels:
        these = [s for s in test if s.label == label]
        take = min(len(these), count // len(labels))
        chosen += [these[i] for i in sorted(rng.choice(len(these), size=take, replace=False))]
    return chosen


def where_it_looks(run_dir: Path, paths: list, lung_probability: np.ndarray) -> dict:
    """Grad-CAM of the predicted class on the images as the run saw them, and its mass inside the lungs."""
    from edgelabels.data.images import read_image
    from edgelabels.data.preprocess import normalise, to_pixels
    from edgelabels.evaluate.gradcam import check_split, gradcam, split_at_feature_map
    from edgelabels.artifacts import RunDir
    from edgelabels.models.factory import load_model
    from edgelabels.runtime.segmenter import at_image_size
    from edgelabels.runtime.stages import run_chain

    run = RunDir.load(run_dir)
    model = load_model(run.model_path)
    read = run_chain(run) or (lambda path: read_image(path)[0])  # lungs-only runs: what the model saw
    seen = np.stack([to_pixels(read(path), run.spec) for path in paths])
    x = normalise(seen, run.spec)
    split = split_at_feature_map(model)
    check_split(model, *split, x[:1])
    batches = range(0, len(x), 32)
    probs = np.concatenate([np.asarray(model.predict_on_batch(x[i:i + 32])) for i in batches])
    predicted = probs.argmax(axis=1)
    heat = np.concatenate([gradcam(model, x[i:i + 32], predicted[i:i + 32], split=split) for i in batches])
    size = (run.spec.width, run.spec.height)
    lungs = np.stack([at_image_size(p, size) >= LUNG_THRESHOLD for p in lung_probability])
    mass = heat.sum(axis=(1, 2))
    inside = (heat * lungs).sum(axis=(1, 2))
    share = np.where(mass > 0, inside / np.where(mass > 0, mass, 1), np.nan)  # a blank map has no share
    return {"labels": run.labels, "predicted": predicted, "confidence": probs.max(axis=1), "seen": seen,
            "heat": heat, "lungs": lungs, "share": share}


def share_summary(share: np.ndarray, lungs: np.ndarray) -> dict:
    known = share[np.isfinite(share)]
    return {"images": int(len(share)), "blank_maps": int(len(share) - len(known)),
            "mean": float(known.mean()) if len(known) else None,
            "median": float(np.median(known)) if len(known) else None,
            "lung_area": float(lungs.mean())}  # what a uniform heatmap would score


def write_panels(path: Path, samples: list, rows: list[int], looks: dict, names: dict) -> None:
    """One row per chosen image: the plain film with the lung outline, then each run's Grad-CAM on what it saw."""
    from matplotlib.figure import Figure

    from edgelabels import atomic
    from edgelabels.data.images import read_image
    from edgelabels.evaluate.gradcam import overlay

    letters = list(looks)
    fig = Figure(figsize=(2.5 * (1 + len(letters)), 2.75 * len(rows)), layout="constrained")
    axes = np.asarray(fig.subplots(len(rows), 1 + len(letters), squeeze=False))
    for r, i in enumerate(rows):
        sample = samples[i]
        first = looks[letters[0]]
        height, width = first["heat"].shape[1:]
        film = np.asarray(read_image(sample.path)[0].convert("L").resize((width, height)))
        ax = axes[r, 0]
        ax.imshow(film, cmap="gray", vmin=0, vmax=255)
        ax.contour(first["lungs"][i], levels=[0.5], colors="lime", linewidths=0.8)
        ax.set_title(("plain film, U-Net lungs\n" if r == 0 else "") + f"true {sample.label}", fontsize=8)
        ax.set_ylabel(Path(sample.path).name[:24], fontsize=7)
        for c, letter in enumerate(letters, start=1):
            look = looks[letter]
            seen = look["seen"][i]
            rgb = seen if seen.shape[-1] == 3 else np.repeat(seen, 3, axis=-1)
            predicted = look["labels"][look["predicted"][i]]
            share = look["share"][i]
            ax = axes[r, c]
            ax.imshow(overlay(rgb, look["heat"][i]))
            header = f"{letter}: {names[letter]}\n" if r == 0 else ""
            wrong = predicted != sample.label
            ax.set_title(f"{header}pred {predicted} {look['confidence'][i]:.0%}{' (wrong)' if wrong else ''}, "
                         f"in lungs {'-' if np.isnan(share) else f'{share:.0%}'}", fontsize=8)
            if wrong:
                for spine in ax.spines.values():
                    spine.set_color("red")
                    spine.set_linewidth(2.5)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Grad-CAM of the predicted class on what each model saw (red frame: wrong prediction)", fontsize=9)
    with atomic.temp_path(path) as tmp:
        fig.savefig(tmp, dpi=110)


# ---------------------------------------------------------------- the experiment


def check_input_run(path: Path, what: str, config: str) -> None:
    from edgelabels.errors import UserError

    if not (path / "model.keras").is_file():
        raise UserError(f"{path}: no trained {what} run there (make it: .venv/bin/edgelabels train {config} "
                        f"--out {path})")
    state = path / "checkpoint" / "state.json"
    if state.is_file() and not json.loads(state.read_text()).get("done"):
        print(f"note: {path} has not finished training; its best epoch so far (model.keras) is used")


def check_not_trained_on(run: Path, source: Path) -> None:
    """The pneumonia run, and any run its weights came from, must not have seen the COVID films: the test
    images would then be in C's and D's pre-training."""
    import yaml

    from edgelabels.errors import UserError

    start = run
    while (run / "config.yaml").is_file():  # a missing earlier run fails later, in training, with its own message
        config = yaml.safe_load((run / "config.yaml").read_text()) or {}
        used = (config.get("data") or {}).get("source") or ""
        if (REPO / used).resolve() == source.resolve():  # relative sources are relative to the repository
            via = "" if run == start else f" (its weights come from {run})"
            raise UserError(f"{start}: trained on {source}{via}, whose test images this benchmark scores; "
                            "pass a pneumonia run without COVID pre-training")
        weights = (config.get("model") or {}).get("weights") or ""
        if not weights.startswith("run:"):
            return
        run = REPO / weights[4:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench-covid")
    parser.add_argument("--unet", type=Path, default=REPO / "runs" / "unet-lungs", help="the lung U-Net run")
    parser.add_argument("--pneumonia", type=Path, default=REPO / "runs" / "pneumonia",
                        help="the pneumonia run C and D start from")
    parser.add_argument("--only", default="A,B,C,D", metavar="A,B,...", help="variants to run (default all four)")
    parser.add_argument("--gradcam-images", type=int, default=60, metavar="N",
                        help="test images for the in-lung share (default 60, half of each label)")
    parser.add_argument("--score-only", action="store_true", help="do not retrain a run that has a model.keras")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    from edgelabels.errors import UserError

    try:
        return run_experiment(args)
    except UserError as exc:
        print(f"covid.py: {exc}", file=sys.stderr)
        return 2


def run_experiment(args) -> int:
    from edgelabels.config import load_config
    from edgelabels.errors import UserError
    from edgelabels.artifacts import RunDir
    from edgelabels.runtime.segmenter import Segmenter

    letters = [v.strip().upper() for v in args.only.split(",") if v.strip()]
    unknown = [v for v in letters if v not in VARIANTS]
    if unknown or not letters:
        raise UserError(f"--only {args.only}: variants are {', '.join(VARIANTS)}")
    if args.gradcam_images < 2:
        raise UserError(f"--gradcam-images {args.gradcam_images}: needs at least 2 (one per label)")
    source = SHARED / "covid-radiography"
    if not source.is_dir():
        print(f"skipped: {source} is absent")
        return 0
    unet, pneumonia = args.unet.resolve(), args.pneumonia.resolve()
    check_input_run(unet, "lung U-Net", "configs/unet-lungs.yaml")  # every variant's in-lung share needs it
    if any("model.weights=none" not in VARIANTS[v][2] for v in letters):
        check_input_run(pneumonia, "pneumonia", "configs/pneumonia.yaml")
        check_not_trained_on(pneumonia, source)

    command = shlex.join([".venv/bin/python", "benchmarks/covid.py", *sys.argv[1:]])
    started = time.monotonic()
    base = [f"data.source={source}", f"segment={unet}", f"model.weights=run:{pneumonia}", *args.overrides]
    runs, results, reference_split = {}, {}, None
    for letter in letters:
        name, description, variant = VARIANTS[letter]
        run_dir = args.out / f"{letter}-{name}"
        overrides = [*base, *variant]
        print(f"== {letter} {description}: {run_dir}", flush=True)
        trained = ensure_trained(load_config(REPO / "configs" / "covid.yaml", overrides), run_dir, args.score_only)
        split_text = (run_dir / "splits" / "test.txt").read_text()
        if reference_split is None:
            reference_split = (run_dir, split_text)
        elif split_text != reference_split[1]:
            raise UserError(f"{run_dir / 'splits' / 'test.txt'}: differs from {reference_split[0]}'s; "
                            "the variants must share one split (same seed and data settings)")
        runs[letter] = run_dir
        results[letter] = {"name": name, "description": description, "run": str(run_dir),
                           "overrides": variant, **test_scores(run_dir),
                           "train_seconds": trained if trained is not None else logged_training_seconds(run_dir),
                           "trained_now": trained is not None}

    start = time.monotonic()
    test = RunDir.load(runs[letters[0]]).split.test
    samples = gradcam_sample(test, args.gradcam_images)
    paths = [str(s.path) for s in samples]
    lung_probability = Segmenter.load(unet).probabilities(paths)
    looks = {letter: where_it_looks(runs[letter], paths, lung_probability) for letter in letters}
    for letter, look in looks.items():
        results[letter]["in_lung_share"] = share_summary(look["share"], look["lungs"])
    rows = [i for label in dict.fromkeys(s.label for s in samples)  # samples come in label order, COVID first
            for i in [j for j, s in enumerate(samples) if s.label == label][:PANEL_ROWS_PER_LABEL]]
    write_panels(args.out / "gradcam_panels.png", samples, rows, looks,
                 {letter: VARIANTS[letter][1] for letter in letters})
    gradcam_seconds = time.monotonic() - start

    summary = {"command": command, "cpu_count": os.cpu_count(), "data": str(source), "unet": str(unet),
               "pneumonia": str(pneumonia), "extra_overrides": args.overrides, "positive_label": POSITIVE,
               "test_images": len(test), "gradcam_images": paths, "lung_threshold": LUNG_THRESHOLD,
               "variants": results,
               "seconds": {"gradcam": gradcam_seconds, "total": time.monotonic() - started}}
    write_results(args.out, summary)
    print(markdown(summary))
    print(f"wrote {args.out}/results.json, results.md, gradcam_panels.png")
    return 0


# ---------------------------------------------------------------- output


def _minutes(seconds) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f}"


def _fraction(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def markdown(summary: dict) -> str:
    variants = summary["variants"]
    first = next(iter(variants.values()))
    labels = first["confusion_matrix"]["labels"]
    lines = ["# COVID-19 vs normal: whole film or lungs only, from scratch or from pneumonia",
             "",
             f"Test split: {summary['test_images']} images, {summary['positive_label']} positive. Confusion matrix: "
             f"rows true, columns predicted, in label order {labels}.",
             "",
             "| variant | accuracy | sensitivity | specificity | ROC AUC | confusion matrix | in-lung share mean "
             "| median | train min |",
             "|---|---|---|---|---|---|---|---|---|"]
    for letter, v in variants.items():
        share = v.get("in_lung_share", {})
        counts = " / ".join(" ".join(str(n) for n in row) for row in v["confusion_matrix"]["counts"])
        lines.append(f"| {letter} {v['description']} | {_fraction(v['accuracy'])} | {_fraction(v['sensitivity'])} "
                     f"| {_fraction(v['specificity'])} | {_fraction(v['roc_auc'])} | {counts} "
                     f"| {_fraction(share.get('mean'))} | {_fraction(share.get('median'))} "
                     f"| {_minutes(v['train_seconds'])}{'' if v['trained_now'] else ' (train.log)'} |")
    share = first.get("in_lung_share", {})
    lines += ["",
              f"In-lung share: the part of each model's Grad-CAM (predicted class, on what it saw) that falls inside "
              f"the U-Net's lung mask (probability >= {summary['lung_threshold']} on the plain film, not dilated), "
              f"over {share.get('images')} test images (half of each label); the lungs cover "
              f"{_fraction(share.get('lung_area'))} of those films, the share a uniform map would get. "
              f"Blank maps (no share): " + ", ".join(f"{k} {v['in_lung_share']['blank_maps']}"
                                                       for k, v in variants.items() if "in_lung_share" in v) + ".",
              "",
              f"Command: `{summary['command']}`",
              "",
              f"Machine: {summary['cpu_count']} CPUs. Wall time: Grad-CAM {_minutes(summary['seconds']['gradcam'])} "
              f"min, whole script {_minutes(summary['seconds']['total'])} min; evaluation "
              + ", ".join(f"{k} {v['evaluation_seconds']:.0f} s" for k, v in variants.items())
              + "." + (" Train minutes marked (train.log) were not trained by this command but read from the run's log."
                       if any(not v["trained_now"] for v in variants.values()) else ""),
              ""]
    return "\n".join(lines)


def write_results(out: Path, summary: dict) -> None:
    from edgelabels import atomic

    atomic.write_json(out / "results.json", summary)
    atomic.write_text(out / "results.md", markdown(summary))


if __name__ == "__main__":
    sys.exit(main())
