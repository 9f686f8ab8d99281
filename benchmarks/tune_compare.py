"""A tuned run against the hand-written config's run, on the same split, for issue 16's targets.

    .venv/bin/python benchmarks/tune_compare.py pneumonia PLAIN_RUN TUNED_RUN [--bootstrap 2000]
    .venv/bin/python benchmarks/tune_compare.py bees PLAIN_RUN TUNED_RUN [--bootstrap 2000]

pneumonia: ROC AUC and accuracy (P(PNEUMONIA) cut chosen on each run's validation split, applied unchanged to
test) on the grouped internal test split, and a paired bootstrap 95% interval of the AUC difference (tuned
minus plain; the same resampled test images for both runs). bees: mAP@0.5 (COCO, pycocotools) on val and on
test with image counts, box counts and bootstrap 95% intervals, plus the paired difference's interval. Both
runs must hold the same split (same config seed, data and fractions: `edgelabels tune` does not search them).
See benchmarks/tune_targets.sh for the commands that make the runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _same_split(plain, tuned) -> None:
    for name in ("train", "val", "test"):
        a, b = ([str(s.path) for s in getattr(run.split, name)] for run in (plain, tuned))
        if a != b:
            raise SystemExit(f"the two runs' {name} splits differ: not a paired comparison")


def _interval(values) -> list[float]:
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


def pneumonia(plain_dir: Path, tuned_dir: Path, rounds: int) -> dict:
    from sklearn.metrics import roc_auc_score

    from edgelabels.artifacts import RunDir
    from edgelabels.models.factory import load_model
    from pneumonia import best_accuracy_threshold, pneumonia_scores, score

    runs = {"plain": RunDir.load(plain_dir), "tuned": RunDir.load(tuned_dir)}
    _same_split(runs["plain"], runs["tuned"])
    results, test_scores = {}, {}
    for name, run in runs.items():
        model = load_model(run.model_path)
        val = pneumonia_scores(run, model, run.split.val)
        test = pneumonia_scores(run, model, run.split.test)
        results[name] = score(*test, best_accuracy_threshold(*val))
        test_scores[name] = test
    truth = test_scores["plain"][0]
    rng = np.random.default_rng(0)
    differences = []
    while len(differences) < rounds:
        pick = rng.integers(0, len(truth), len(truth))
        if truth[pick].all() or not truth[pick].any():
            continue  # AUC needs both classes
        differences.append(roc_auc_score(truth[pick], test_scores["tuned"][1][pick])
                           - roc_auc_score(truth[pick], test_scores["plain"][1][pick]))
    difference = results["tuned"]["roc_auc"] - results["plain"]["roc_auc"]
    return {**results, "auc_difference": difference, "auc_difference_95": _interval(differences),
            "bootstrap_rounds": rounds}


def _detections(run, samples):
    from edgelabels.models.detector import inference_model
    from edgelabels.models.factory import keras_runner, load_model
    from edgelabels.runtime.runner import predict_files

    max_detections = int((run.config.get("model") or {}).get("max_detections", 100))
    runner = keras_runner(inference_model(load_model(run.model_path), max_detections))
    return predict_files(runner, [s.path for s in samples], run.spec, progress=False)


def _clip(rows: np.ndarray) -> np.ndarray:
    """Boxes [left, top, width, height, score, class] cut to the image, as the edge Detector answers."""
    rows = np.array(rows, np.float64).reshape(-1, 6)
    left, top = np.clip(rows[:, 0], 0, 1), np.clip(rows[:, 1], 0, 1)
    right, bottom = np.clip(rows[:, 0] + rows[:, 2], 0, 1), np.clip(rows[:, 1] + rows[:, 3], 0, 1)
    rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3] = left, top, right - left, bottom - top
    return rows[(rows[:, 2] > 0) & (rows[:, 3] > 0)]


def bees(plain_dir: Path, tuned_dir: Path, rounds: int) -> dict:
    from edgelabels.artifacts import RunDir
    from edgelabels.data.boxes import displayed_size, to_ratios
    from edgelabels.evaluate import detection_metrics as dm

    runs = {"plain": RunDir.load(plain_dir), "tuned": RunDir.load(tuned_dir)}
    _same_split(runs["plain"], runs["tuned"])
    out = {}
    for split_name in ("val", "test"):
        samples = getattr(runs["plain"].split, split_name)
        labels = runs["plain"].labels
        sizes = [displayed_size(s.path) for s in samples]
        truth = [(np.array([labels.index(b.label) for b in s.boxes], np.int64),
                  np.array([to_ratios(b, w, h) for b in s.boxes], np.float64).reshape(-1, 4))
                 for s, (w, h) in zip(samples, sizes)]
        predictions = {name: [_clip(dm.prediction_rows(p)) for p in _detections(run, samples)]
                       for name, run in runs.items()}

        def map50(name, pick):
            return dm.coco_map([truth[i] for i in pick], [predictions[name][i] for i in pick], labels,
                               [sizes[i] for i in pick])["map_50"]

        everything = range(len(samples))
        rng = np.random.default_rng(0)
        picks = [rng.integers(0, len(samples), len(samples)) for _ in range(rounds)]
        boot = {name: np.array([map50(name, pick) for pick in picks]) for name in runs}
        out[split_name] = {"images": len(samples), "boxes": int(sum(len(t[0]) for t in truth)),
                           **{name: {"map_50": map50(name, everything), "map_50_interval_95": _interval(boot[name])}
                              for name in runs},
                           "difference_95": _interval(boot["tuned"] - boot["plain"])}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", choices=("pneumonia", "bees"))
    parser.add_argument("plain", type=Path, help="the hand-written config's run directory")
    parser.add_argument("tuned", type=Path, help="the study's chosen run (TUNE_DIR/best)")
    parser.add_argument("--bootstrap", type=int, default=2000, metavar="N", help="bootstrap rounds (default 2000)")
    args = parser.parse_args()
    compare = pneumonia if args.target == "pneumonia" else bees
    print(json.dumps(compare(args.plain, args.tuned, args.bootstrap), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
