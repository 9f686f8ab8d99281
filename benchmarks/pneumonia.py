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


def score(run_dir: Path, samples) -> dict:
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    from edgelabels.train.run import Run, predict_paths

    run = Run.load(run_dir)
    probs = predict_paths(run.load_model(), [s.path for s in samples], run.spec, progress=False)
    y = np.array(run.label_indices(samples))
    positive = run.labels.index("PNEUMONIA")
    pred = probs.argmax(axis=1)
    tp = int(((pred == positive) & (y == positive)).sum())
    tn = int(((pred != positive) & (y != positive)).sum())
    return {
        "images": len(samples),
        "accuracy": accuracy_score(y, pred),
        "sensitivity": tp / max(1, int((y == positive).sum())),
        "specificity": tn / max(1, int((y != positive).sum())),
        "f1": f1_score(y == positive, pred == positive),
        "roc_auc": roc_auc_score(y == positive, probs[:, positive]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "bench-pneumonia")
    parser.add_argument("--pretrain", action="store_true", help="pre-train on covid-radiography first")
    parser.add_argument("--pretrain-epochs", type=int, default=6)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    if not (SHARED / "chest-xray-pneumonia" / "train").is_dir():
        print(f"skipped: {SHARED / 'chest-xray-pneumonia' / 'train'} is absent")
        return 0

    from edgelabels.config import load_config
    from edgelabels.train.fit import train
    from edgelabels.train.run import Run

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
    split = Run.load(run_dir).split
    results = {"val": score(run_dir, split.val), "test": score(run_dir, split.test), "seconds": timings,
               "config": str(run_dir / "config.yaml")}
    print(json.dumps(results, indent=2))
    print(f"\n{'split':6} {'images':>6} {'accuracy':>9} {'sensitivity':>11} {'specificity':>11} {'F1':>6} {'AUC':>6}")
    for name in ("val", "test"):
        r = results[name]
        print(f"{name:6} {r['images']:>6} {r['accuracy']:>9.3f} {r['sensitivity']:>11.3f} {r['specificity']:>11.3f} "
              f"{r['f1']:>6.3f} {r['roc_auc']:>6.3f}")
    print("wall time: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in timings.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
