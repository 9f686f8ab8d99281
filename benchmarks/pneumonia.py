"""Pediatric pneumonia benchmark: train configs/pneumonia.yaml, score its patient-grouped internal test split.

    .venv/bin/python benchmarks/pneumonia.py [--out runs/bench-pneumonia] [--pretrain]
        [--set KEY=VALUE ...]

With --pretrain, the backbone is first trained on the adult COVID/normal X-rays
(../shared/data/covid-radiography, in-domain pre-training; no ImageNet weights are needed) and the
pneumonia run starts from it (`model.weights: run:...`). Prints validation and internal-test
accuracy, sensitivity and specificity (PNEUMONIA is the positive class), F1 and ROC AUC, and the
wall time of each stage. The official 624-image test set is not in ../shared/data, so the internal
test split (20%, grouped by patient) is the held-out set here.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def pneumonia_scores(run, model, samples) -> tuple[np.ndarray, np.ndarray]:
    """(is PNEUMONIA, P(PNEUMONIA)) for the samples."""
    from edgelabels.models.factory import keras_runner
    from edgelabels.runtime.runner import predict_files

    probs = predict_files(keras_runner(model), [s.path for s in samples], run.spec)
    positive = run.labels.index("PNEUMONIA")
    return np.array(run.label_indices(samples)) == positive, probs[:, positive]


def score(truth: np.ndarray, p: np.ndarray, threshold: float) -> dict:
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    pred = p >= threshold
    return {
        "images": int(len(truth)),
        "threshold": float(threshold),
        "accuracy": accuracy_score(truth, pred),
        "sensitivity": float((pred & truth).sum() / max(1, truth.sum())),
        "specificity": float((~pred & ~truth).sum() / max(1, (~truth).sum())),
        "f1": f1_score(truth, pred),
        "roc_auc": roc_auc_score(truth, p),
    }


def best_accuracy_threshold(truth: np.ndarray, p: np.ndarray) -> float:
    """The P(PNEUMONIA) cut with the highest accuracy on these images (chosen on validation only)."""
    candidates = np.unique(np.concatenate([p, [0.5]]))
    accuracies = [((p >= t) == truth).mean() for t in candidates]
    return float(candidates[int(np.argmax(accuracies))])


def report(run_dir: Path) -> dict:
    """Scores at the argmax (0.5) and at the threshold chosen on validation, applied unchanged to test."""
    from edgelabels.artifacts import RunDir
    from edgelabels.models.factory import load_model

    run = RunDir.load(run_dir)
    model = load_model(run.model_path)
    split = run.split
    val = pneumonia_scores(run, model, split.val)
    test = pneumonia_scores(run, model, split.test)
    chosen = best_accuracy_threshold(*val)
    return {"val": score(*val, 0.5), "test": score(*test, 0.5),
            "val@chosen": score(*val, chosen), "test@chosen": score(*test, chosen)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench-pneumonia")
    parser.add_argument("--pretrain", action="store_true", help="pre-train on covid-radiography first")
    parser.add_argument("--pretrain-epochs", type=int, default=6)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--score-only", type=Path, metavar="RUN_DIR", help="only score an existing run")
    args = parser.parse_args()
    if args.score_only:
        return print_results(report(args.score_only), {})
    if not (SHARED / "chest-xray-pneumonia" / "train").is_dir():
        print(f"skipped: {SHARED / 'chest-xray-pneumonia' / 'train'} is absent")
        return 0

    from edgelabels.config import load_config
    from edgelabels.train.fit import train

    config_path = REPO / "configs" / "pneumonia.yaml"
    shutil.rmtree(args.out, ignore_errors=True)
    overrides = [f"data.source={SHARED / 'chest-xray-pneumonia' / 'train'}", *args.overrides]
    timings = {}
    if args.pretrain:
        start = time.monotonic()
        pre = args.out / "pretrain-covid"
        pre_config = load_config(config_path, [*overrides, f"data.source={SHARED / 'covid-radiography'}",
                                               "data.group_by=null", f"train.epochs={args.pretrain_epochs}"])
        train(pre_config, pre)
        timings["pretrain"] = time.monotonic() - start
        overrides.append(f"model.weights=run:{pre}")
    start = time.monotonic()
    run_dir = args.out / "pneumonia"
    train(load_config(config_path, overrides), run_dir)
    timings["train"] = time.monotonic() - start
    return print_results(report(run_dir), timings)


def print_results(results: dict, timings: dict) -> int:
    print(json.dumps({**results, "seconds": timings}, indent=2))
    print(f"\n{'split':12} {'images':>6} {'cut':>6} {'accuracy':>9} {'sensitivity':>11} {'specificity':>11} "
          f"{'F1':>6} {'AUC':>6}")
    for name, r in results.items():
        print(f"{name:12} {r['images']:>6} {r['threshold']:>6.3f} {r['accuracy']:>9.3f} {r['sensitivity']:>11.3f} "
              f"{r['specificity']:>11.3f} {r['f1']:>6.3f} {r['roc_auc']:>6.3f}")
    print("cut: P(PNEUMONIA) threshold; 'chosen' = best accuracy on validation, applied unchanged to test")
    if timings:
        print("wall time: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in timings.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
