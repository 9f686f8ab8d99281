"""Train on the users' readings: the audit, the reader trained through the noise, and people in the loop (issue 28).

    .venv/bin/python benchmarks/label_audit.py [--out bench-label-audit] [--readings 3000] [--fresh 5000]
        [--folds 4] [--corrections 200] [--detector RUN] [--steps data,audit,readers,loop] [--seed 0]

What a cassette team has: photos with what their users reported, 40% of the readings wrong the ways people are wrong
(`dataset synth-cassettes --user-readings 0.4`: faint T lines read negative, invalid cassettes read by their T line,
slips), a third of each true result. Every step is what a user runs (the edgelabels verbs); the truth (truth.csv) is
read only to score. A step whose output is there is skipped, so an interrupted benchmark picks up where it stopped.

1. data: the window detector's 800 photos with boxes (seed 2000) and the detector (configs/cassette-window.yaml, as
   `make demo` trains it; or --detector RUN, an exported one), --readings user-read photos (seed --seed), --fresh
   photos of another seed (seed + 1000) in the real 90/7/3 mix, labelled with the truth, for scoring the readers.
2. audit: `edgelabels dataset audit` of the readings manifest with configs/cassettes.yaml behind the detector, --folds
   out-of-fold trainings in the default rounds, `--apply prune`; scored against the truth: precision and recall of
   the suspects as the wrong readings (target: both >= 0.90); per round, the out-of-fold answers' accuracy against
   the truth and what each confident-learning method would list.
3. readers: configs/cassettes.yaml trained on the raw readings, on the audited set (the pruned manifest) and on the
   truth, each evaluated on the fresh photos with the review threshold chosen on its own validation split
   (--review-accuracy 0.996). Target for the audited reader: accepted >= 99.6% right with <= 5% sent to a human.
4. loop: --corrections corrections through Label Studio (a real one on loopback, started by
   tests/helpers/label_studio.py): `edgelabels label export` of the suspects, a script answers the first N tasks with
   the truth through Label Studio's API as a person would, `edgelabels label import` gives the next manifest; against
   N corrections of photos picked at random. Each corrected set's wrong readings left, and the reader trained on it.
Prints a table per step and writes OUT/results.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
EDGELABELS = Path(sys.executable).parent / "edgelabels"
READER, DETECTOR = REPO / "configs" / "cassettes.yaml", REPO / "configs" / "cassette-window.yaml"
LABELS = ("positive", "negative", "invalid")
REVIEW_ACCURACY = 0.996
THIRD_EACH = "positive=1/3,negative=1/3,invalid=1/3"


def verb(*argv, quiet: bool = False) -> None:
    """Run `edgelabels ARGV...` as a user would; stop the benchmark on failure."""
    command = [str(EDGELABELS), *map(str, argv)]
    print("$ edgelabels " + " ".join(map(str, argv)), file=sys.stderr, flush=True)
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL if quiet else None)


class Timer(dict):
    def run(self, name: str, function, *args):
        start = time.monotonic()
        result = function(*args)
        self[name] = round(time.monotonic() - start, 1)
        print(f"  {name}: {self[name]:.0f} s", file=sys.stderr, flush=True)
        return result


# -- 1. data ---------------------------------------------------------------------------------------------------------

def make_data(out: Path, args) -> dict:
    data = out / "data"
    made = {"windows": data / "windows", "readings": data / "readings", "fresh": data / "fresh"}
    if not (made["windows"] / "boxes.manifest").exists() and not args.detector:
        verb("dataset", "synth-cassettes", made["windows"], "--n", 800, "--seed", 2000, "--workers", 2, "--boxes",
             "--mix", "negative=0.4,positive=0.3,invalid=0.3")
    if not (made["readings"] / "truth.csv").exists():
        verb("dataset", "synth-cassettes", made["readings"], "--n", args.readings, "--seed", args.seed, "--workers", 2,
             "--mix", THIRD_EACH, "--user-readings", 0.4)
    if not (made["fresh"] / "photos.csv").exists():
        verb("dataset", "synth-cassettes", made["fresh"], "--n", args.fresh, "--seed", args.seed + 1000, "--workers", 2)
    detector = Path(args.detector) if args.detector else out / "runs" / "window"
    if not (detector / "export").exists():
        verb("train", DETECTOR, "--out", detector, "--set", f"data.source={made['windows'] / 'boxes.manifest'}",
             "--set", f"seed={args.seed}", "--set", "train.verbose=2")
        verb("export", detector)
    made["detector"] = detector
    made["truth_manifest"] = truth_manifest(made["readings"])
    return made


def truth_rows(readings: Path) -> dict[str, dict]:
    """truth.csv by image path relative to the readings folder: result (true), reported (the user's)."""
    with open(readings / "truth.csv", newline="") as f:
        return {row["image"]: row for row in csv.DictReader(f)}


def classification_line(image: str, label: str, attribute: str = "truth") -> str:
    return json.dumps({"source-ref": image, attribute: LABELS.index(label), f"{attribute}-metadata": {
        "class-name": label, "confidence": 1, "type": "groundtruth/image-classification", "human-annotated": "yes",
        "creation-date": "2026-12-06T00:00:00", "job-name": "label-audit-benchmark"}}) + "\n"


def truth_manifest(readings: Path) -> Path:
    """The same photos labelled with the truth: what the readers are compared with, never given to the audit."""
    path = readings / "truth.manifest"
    if not path.exists():
        path.write_text("".join(classification_line(image, row["result"]) for image, row in truth_rows(readings).items()))
    return path


# -- 2. audit --------------------------------------------------------------------------------------------------------

def run_audit(out: Path, made: dict, args) -> Path:
    audit = out / "audit"
    if not (audit / "suspects.csv").exists():
        verb("dataset", "audit", made["readings"] / "user-readings.manifest", "--out", audit, "--config", READER,
             "--set", f"detect={made['detector']}", "--set", f"seed={args.seed}", "--set", "train.verbose=2",
             "--folds", args.folds, "--apply", "prune")
    return audit


def suspect_images(audit: Path, readings: Path) -> list[str]:
    """The suspects' images, relative to the readings folder, in rank order."""
    with open(audit / "suspects.csv", newline="") as f:
        rows = sorted(csv.DictReader(f), key=lambda row: int(row["rank"]))
    return [_relative(row["image"], readings) for row in rows]


def _relative(image: str, readings: Path) -> str:
    path = Path(image)
    if not path.is_absolute():
        return image
    for base in (readings.absolute(), readings.resolve()):  # as written, or through a link
        if path.is_relative_to(base):
            return str(path.relative_to(base))
    return str(path.resolve().relative_to(readings.resolve()))


def score_audit(audit: Path, readings: Path) -> dict:
    truth = truth_rows(readings)
    wrong = {image for image, row in truth.items() if row["result"] != row["reported"]}
    found = set(suspect_images(audit, readings))
    hits = len(found & wrong)
    summary = json.loads((audit / "audit.json").read_text())
    return {"photos": len(truth), "wrong": len(wrong), "suspects": len(found), "right_suspects": hits,
            "precision": hits / len(found) if found else None, "recall": hits / len(wrong) if wrong else None,
            "estimated_wrong": summary.get("estimated_count"), "seconds": summary.get("how", {}).get("seconds")}


def score_rounds(audit: Path, readings: Path) -> list[dict]:
    """Per round of the audit (its fold runs' predictions.csv): the out-of-fold answers' accuracy against the truth,
    and what each confident-learning method would have listed from that round, scored as score_audit scores."""
    import numpy as np

    from edgelabels.evaluate.label_issues import rank_label_issues

    truth, rounds = truth_rows(readings), []
    folders = [audit / "folds"] + sorted(audit.glob("folds-round-*"), key=lambda p: int(p.name.rsplit("-", 1)[1]))
    for folder in folders:
        rows = [row for path in sorted(folder.glob("fold-*/evaluation/predictions.csv"))
                for row in csv.DictReader(open(path, newline=""))]
        if not rows:
            continue
        probs = np.array([[float(row[f"confidence:{label}"]) for label in LABELS] for row in rows])
        images = [_relative(row["path"], readings) for row in rows]
        true = np.array([LABELS.index(truth[image]["result"]) for image in images])
        given = np.array([LABELS.index(truth[image]["reported"]) for image in images])
        answered = np.flatnonzero(probs.any(axis=1))
        wrong = given != true
        methods = {}
        for method in ("prune_by_class", "prune_by_noise_rate", "both", "confident_joint", "confusion"):
            listed = ~probs.any(axis=1)  # no answer: listed, as the audit lists it
            listed[answered[rank_label_issues(given[answered], probs[answered], method)]] = True
            hits = int((listed & wrong).sum())
            methods[method] = {"listed": int(listed.sum()), "precision": round(hits / max(listed.sum(), 1), 4),
                               "recall": round(hits / max(wrong.sum(), 1), 4)}
        rounds.append({"round": len(rounds) + 1, "images": len(rows),
                       "accuracy_vs_truth": round(float((probs.argmax(1) == true)[answered].mean()), 4),
                       "methods": methods})
    return rounds


# -- 3. readers ------------------------------------------------------------------------------------------------------

def reader(out: Path, name: str, source: Path, made: dict, args) -> dict:
    """Train configs/cassettes.yaml on the manifest `source` (its refs start from the readings folder) behind the
    detector; evaluate on the fresh photos; the figures."""
    run = out / "runs" / name
    if not (run / "model.keras").exists():
        verb("train", READER, "--out", run, "--set", f"data.source={made['readings']}", "--set",
             f"data.manifest={source}", "--set", f"detect={made['detector']}",
             "--set", f"seed={args.seed}", "--set", "train.verbose=2")
    evaluation = run / "evaluation-fresh"
    if not (evaluation / "metrics.json").exists():
        verb("evaluate", run, "--data", made["fresh"], "--out", evaluation, "--review-accuracy", REVIEW_ACCURACY,
             "--gradcam", 0, quiet=True)
    metrics = json.loads((evaluation / "metrics.json").read_text())
    review = json.loads((evaluation / "review" / "summary.json").read_text())
    return {"source": str(source), "accuracy": metrics["accuracy"], "threshold": review["threshold"],
            "accepted_accuracy": review["accepted_accuracy"], "sent": review["fraction"],
            "reached": (review["accepted_accuracy"] or 0) >= REVIEW_ACCURACY and review["fraction"] <= 0.05}


def wrong_left(manifest: Path, readings: Path) -> dict:
    """How many of a manifest's photos carry a label other than the truth, and how many photos it keeps."""
    truth = truth_rows(readings)
    kept = wrong = 0
    for line in manifest.read_text().splitlines():
        record = json.loads(line)
        label = next(v["class-name"] for k, v in record.items() if k.endswith("-metadata") and "class-name" in v)
        kept += 1
        wrong += truth[_relative(record["source-ref"], readings)]["result"] != label
    return {"photos": kept, "wrong": wrong}


# -- 4. the loop -----------------------------------------------------------------------------------------------------

def corrected_at_random(out: Path, readings: Path, n: int, seed: int) -> Path:
    """The readings with n photos picked at random read again, right (the baseline a loop has to beat)."""
    path = readings / f"random-{n}.manifest"  # beside the photos: a manifest's refs may not leave its folder
    if not path.exists():
        truth = truth_rows(readings)
        picked = set(random.Random(seed).sample(sorted(truth), n))
        path.write_text("".join(classification_line(image, row["result"] if image in picked else row["reported"],
                                                    "user-reading") for image, row in truth.items()))
    return path


def corrected_through_label_studio(out: Path, made: dict, audit: Path, n: int) -> Path:
    """Export the first n suspects to a real Label Studio, answer each task with the truth through its API as a person
    would (one annotation per task: our pre-annotation with the truth chosen), import the next manifest."""
    from helpers.label_studio import LabelStudio

    from edgelabels.labeling.studio import LabelStudioClient

    path = made["readings"] / f"label-studio-{n}.manifest"  # beside the photos, as the import requires
    if path.exists():
        return path
    readings, truth = made["readings"], truth_rows(made["readings"])
    manifest = readings / "user-readings.manifest"
    studio = LabelStudio(out / "loop" / "label-studio", files_root=readings.parent)
    try:
        server = ["--label-studio", studio.url, "--token", studio.token]
        verb("label", "export", manifest, *server, "--project", "cassette readings", "--suspects", audit,
             "--limit", n, "--document-root", studio.files_root)
        client = LabelStudioClient(studio.url, studio.token)
        project = client.find_project("cassette readings")
        for task in client.tasks(project):
            result = task["predictions"][0]["result"]
            choice = next(r for r in result if r["type"] == "choices")
            choice["value"]["choices"] = [truth[task["data"]["source_ref"]]["result"]]
            client.annotate(task["id"], result)
        verb("label", "import", manifest, *server, "--project", project, "--out", path)
    finally:
        studio.stop()
    return path


# -- the run ---------------------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench-label-audit"))
    parser.add_argument("--readings", type=int, default=3000)
    parser.add_argument("--fresh", type=int, default=5000)
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--corrections", type=int, default=200)
    parser.add_argument("--detector", help="an exported window detector run (default: train one as the demo does)")
    parser.add_argument("--steps", default="data,audit,readers,loop")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    steps, timer = set(args.steps.split(",")), Timer()
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    made = timer.run("data", make_data, args.out, args)
    readings = made["readings"]
    results["readings"] = wrong_left(readings / "user-readings.manifest", readings)
    audit = args.out / "audit"
    if "audit" in steps:
        timer.run("audit", run_audit, args.out, made, args)
    if (audit / "suspects.csv").exists():
        results["audit"] = {**score_audit(audit, readings), "rounds": score_rounds(audit, readings)}
        print(f"\naudit: {results['audit']}", file=sys.stderr)
    if "readers" in steps:  # the audited reader once the audit is there
        sources = {"raw": readings / "user-readings.manifest", "truth": made["truth_manifest"],
                   **({"audited": audit / "next.manifest"} if (audit / "next.manifest").exists() else {})}
        results["readers"] = {name: {**timer.run(f"reader {name}", reader, args.out, name, source, made, args),
                                     **wrong_left(source, readings)} for name, source in sources.items()}
    if "loop" in steps:
        loop = {"label studio": timer.run("loop", corrected_through_label_studio, args.out, made, audit,
                                          args.corrections),
                "random": corrected_at_random(args.out, readings, args.corrections, args.seed)}
        results["loop"] = {name: {**wrong_left(path, readings),
                                  **timer.run(f"reader {name}", reader, args.out, f"loop-{name.replace(' ', '-')}",
                                              path, made, args)} for name, path in loop.items()}
    # a step skipped because its output was there keeps the time it took when it ran
    results["seconds"] = {**results.get("seconds", {}), **{name: s for name, s in timer.items() if s >= 1}}
    args.out.mkdir(parents=True, exist_ok=True)
    results_path.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
