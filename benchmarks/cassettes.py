"""The cassette reader against the published operating point, on thousands of fresh photos (issue 15).

    .venv/bin/python benchmarks/cassettes.py READER_RUN [--n 5000] [--seed 5000] [--out bench-cassettes]

READER_RUN is a reader trained behind the window detector (`detect:`) and exported (`edgelabels export`;
`make demo` leaves one in demo-output/runs/cassettes). What ships is measured: the exported chain (detector ->
crop -> reader) through the edge Predictor. The review threshold is chosen on the reader's validation split
first (the lowest top confidence at which --review-accuracy of the accepted validation photos are right);
then --n fresh photos (another seed, the default 90/7/3 mix and phone sizes) are generated and scored once.
Prints, with 95% Wilson intervals: accuracy of the accepted and the share sent to a human at that threshold,
overall accuracy (a photo with no window found counts wrong), recall of positive and invalid, recall on the
faint positives (T between FAINT_T and 0.3 of a full line) and on the upside-down cassettes; macro ROC AUC;
and the coverage table. Targets: accepted >= 99.6% with <= 5% sent to a human; overall >= 98%; recall
>= 95% for positive and invalid; macro ROC AUC >= 0.99.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
from pathlib import Path

import numpy as np


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion k / n."""
    if n == 0:
        return (math.nan, math.nan)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (centre - half, centre + half)


def share(k: int, n: int) -> str:
    low, high = wilson(k, n)
    return f"{k / n:.2%} ({k}/{n}; 95% CI {low:.2%}-{high:.2%})" if n else "n/a (none)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reader", type=Path, help="an exported reader run (trained with detect:)")
    parser.add_argument("--n", type=int, default=5000, help="fresh photos (default 5000)")
    parser.add_argument("--seed", type=int, default=5000, help="their seed: not one the runs trained on")
    parser.add_argument("--out", type=Path, default=Path("bench-cassettes"), help="photos and results go here")
    parser.add_argument("--review-accuracy", type=float, default=0.996)
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: its own)")
    args = parser.parse_args()

    from edgelabels.artifacts import RunDir
    from edgelabels.data.synthetic import FAINT_T, PHOTOS_FILE, generate_cassettes
    from edgelabels.evaluate.metrics import evaluate_arrays, review_threshold_for, top_labels
    from edgelabels.runtime.predictor import Predictor

    run = RunDir.load(args.reader)
    predictor = Predictor(run.export_dir, threads=args.threads)
    labels = predictor.labels
    print(f"reader {run.dir}: {predictor.chain.describe() or 'no stages'} -> {predictor.model_path.name}")

    started = time.perf_counter()
    val = run.split.val
    val_probs = predictor.probabilities([s.path for s in val], progress=True)
    choice = review_threshold_for([labels.index(s.label) for s in val], val_probs, args.review_accuracy)
    print(f"review threshold {choice['threshold']:.4f}, chosen on the validation split ({len(val)} photos: "
          f"accepted accuracy {choice['accepted_accuracy']}, sent to a human {choice['sent_to_human']:.1%}) in "
          f"{time.perf_counter() - started:.0f} s")

    photos = args.out / f"fresh-seed{args.seed}-n{args.n}"
    marker = photos / "cassettes.json"
    if not (marker.exists() and json.loads(marker.read_text()).get("n") == args.n):
        began = time.perf_counter()
        generate_cassettes(photos, args.n, seed=args.seed, workers=2)
        print(f"generated {args.n} fresh photos in {time.perf_counter() - began:.0f} s")
    with open(photos / PHOTOS_FILE) as f:
        rows = list(csv.DictReader(f))
    paths = [photos / r["photo"] for r in rows]  # photo: label/cassette-NNNNN.jpg
    y = np.array([labels.index(r["result"]) for r in rows])

    began = time.perf_counter()
    probs = predictor.probabilities(paths, progress=True)
    seconds = time.perf_counter() - began
    print(f"scored {len(paths)} photos through the exported chain in {seconds:.0f} s ({len(paths) / seconds:.1f}/s)")

    predicted = top_labels(probs)
    right = predicted == y
    confidence = probs.max(axis=1)
    accepted = confidence >= choice["threshold"]
    unanswered = predicted < 0
    metrics = evaluate_arrays(y, probs, labels)
    n = len(y)
    print(f"\nat the validation-chosen review threshold {choice['threshold']:.4f}:")
    print(f"  accuracy of the accepted:  {share(int(right[accepted].sum()), int(accepted.sum()))}   target >= 99.6%")
    print(f"  sent to a human:           {share(int((~accepted).sum()), n)}   target <= 5%")
    print(f"    of which no window found: {int(unanswered.sum())}")
    print(f"overall accuracy (every photo; no window = wrong): {share(int(right.sum()), n)}   target >= 98%")
    for name in ("positive", "invalid", "negative"):
        k = labels.index(name)
        mine = y == k
        print(f"recall {name:<9} {share(int(right[mine].sum()), int(mine.sum()))}"
              + ("   target >= 95%" if name != "negative" else ""))
    t = np.array([float(r["t_strength"]) for r in rows])
    faint = (y == labels.index("positive")) & (t < 0.3)
    print(f"recall on faint positives (T {FAINT_T}-0.3 of a full line): {share(int(right[faint].sum()), int(faint.sum()))}")
    rotation = np.array([float(r["rotation"]) for r in rows])
    upside_down = np.abs(((rotation + 180) % 360) - 180) > 90
    print(f"accuracy on upside-down cassettes: {share(int(right[upside_down].sum()), int(upside_down.sum()))}")
    auc = metrics["roc_auc_macro"]
    print(f"macro ROC AUC {auc:.4f}   target >= 0.99" if auc is not None else "macro ROC AUC n/a")
    print("\naccept if top confidence >=  accuracy of accepted  sent to a human")
    for row in metrics["coverage"]:
        shown = "-" if row["accuracy"] is None else f"{row['accuracy']:.2%}"
        print(f"{row['threshold']:>27g}  {shown:>20}  {row['discarded_fraction']:>15.1%}")
    result = {"reader": str(run.dir), "n": n, "seed": args.seed, "review_choice": choice,
              "accepted": int(accepted.sum()), "accepted_right": int(right[accepted].sum()),
              "unanswered": int(unanswered.sum()), "right": int(right.sum()), "metrics": metrics}
    (args.out / "result.json").write_text(json.dumps(result, indent=1))
    print(f"\nwrote {args.out / 'result.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
