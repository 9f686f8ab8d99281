"""Per-image results: predictions.csv and an evaluation manifest in Rekognition's snapshot style.

The manifest follows AWS's classification snapshot line: the ground truth as a Ground Truth
image-classification attribute (`rekognition-custom-labels-training-0`), the top prediction as
a second one (`rekognition-custom-labels-evaluation-0`) whose metadata carries
`rekognition-custom-labels-evaluation-details`. The top label counts as predicted when its
confidence reaches its assumed threshold (DetectCustomLabels' default), so:
predicted and right -> true positive; predicted and wrong -> false positive;
not predicted and it was the true label -> false negative; not predicted and wrong -> true negative.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from edgelabels import atomic

TRAINING_ATTRIBUTE = "rekognition-custom-labels-training-0"
EVALUATION_ATTRIBUTE = "rekognition-custom-labels-evaluation-0"
TRAINING_JOB = "edgelabels-ground-truth"
EVALUATION_JOB = "edgelabels-evaluation"


def write_predictions_csv(path: str | Path, paths, y_true, probs, labels: list[str]) -> Path:
    """One row per image: path, true label, predicted label, its confidence, then every label's confidence
    (an image with no answer, a row of zeros, has an empty predicted label)."""
    probs = np.asarray(probs)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "true_label", "predicted_label", "confidence", *[f"confidence:{n}" for n in labels]])
    for image, truth, row in zip(paths, y_true, probs):
        top = int(row.argmax())
        writer.writerow([str(image), labels[int(truth)], labels[top] if row.any() else "", f"{row[top]:.6f}",
                         *[f"{p:.6f}" for p in row]])
    return atomic.write_text(path, buffer.getvalue())


def evaluation_manifest_lines(paths, y_true, probs, labels: list[str], thresholds: list[float | None],
                              created: datetime | None = None) -> list[dict]:
    stamp = (created or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(tzinfo=None).isoformat()
    probs = np.asarray(probs)
    lines = []
    for image, truth, row in zip(paths, y_true, probs):
        truth, top = int(truth), int(row.argmax())
        threshold = thresholds[top]
        predicted = threshold is not None and row[top] >= threshold
        right = top == truth
        lines.append({
            "source-ref": str(image),
            TRAINING_ATTRIBUTE: truth,
            f"{TRAINING_ATTRIBUTE}-metadata": {
                "confidence": 1.0, "job-name": TRAINING_JOB, "class-name": labels[truth], "human-annotated": "yes",
                "creation-date": stamp, "type": "groundtruth/image-classification",
            },
            EVALUATION_ATTRIBUTE: top,
            f"{EVALUATION_ATTRIBUTE}-metadata": {
                "confidence": round(float(row[top]), 6), "job-name": EVALUATION_JOB, "class-name": labels[top],
                "human-annotated": "no", "creation-date": stamp, "type": "groundtruth/image-classification",
                "rekognition-custom-labels-evaluation-details": {
                    "version": 1,
                    "ground-truth-labelling-jobs": [TRAINING_JOB],
                    "is-true-positive": bool(predicted and right),
                    "is-true-negative": bool(not predicted and not right),
                    "is-false-positive": bool(predicted and not right),
                    "is-false-negative": bool(not predicted and right),
                    "is-present-in-ground-truth": bool(right),
                },
            },
        })
    return lines


def write_evaluation_manifest(path: str | Path, lines: list[dict]) -> Path:
    return atomic.write_text(path, "".join(json.dumps(line) + "\n" for line in lines))
