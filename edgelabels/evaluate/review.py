"""The review queue: images whose top confidence is below a threshold, copied out for a human.

`review/summary.json` holds the queue's figures (count, accuracy of the accepted); `review/queue.csv` lists them
least confident first (first those with no answer at all: a row of zeros,
a crop stage found no result window), each with its reason; `review/images/` holds copies named
`0001_<predicted>_<confidence>_<original name>` so a person sorting by name sees the hardest
first and the model's guess without opening the CSV.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
from pathlib import Path

import numpy as np

from edgelabels import atomic


THUMBNAILS, THUMBNAIL_SIDE = 12, 240  # images with no answer shown in the report, and their size
SUMMARY = "summary.json"  # review/summary.json: the queue's figures (what the report and the demo show)
NO_ANSWER = "no answer: a stage before the model found nothing to read (no result window)"


def review_indices(probs, threshold: float) -> np.ndarray:
    """Indices of images with top confidence < threshold, least confident first (stable)."""
    confidence = np.asarray(probs).max(axis=1)
    chosen = np.flatnonzero(confidence < threshold)
    return chosen[np.argsort(confidence[chosen], kind="stable")]


def write_review_queue(folder: str | Path, paths, y_true, probs, labels: list[str], threshold: float) -> dict:
    """Write queue.csv and images/ under `folder`; return a summary for the report."""
    folder = Path(folder)
    probs = np.asarray(probs)
    chosen = review_indices(probs, threshold)
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["rank", "file", "path", "reason", "predicted_label", "confidence", "second_label",
                     "second_confidence", "true_label"])
    unanswered, thumbnails = 0, []
    for rank, i in enumerate(chosen, start=1):
        source = Path(paths[i])
        if not probs[i].any():
            unanswered += 1
            name = f"{rank:04d}_no-answer_{_safe(source.stem)}{source.suffix.lower()}"
            row = [NO_ANSWER, "", "0.000000", "", ""]
            if len(thumbnails) < THUMBNAILS:
                thumbnails.append(_thumbnail(source, folder / "no-answer" / f"{rank:04d}_{_safe(source.stem)}.jpg"))
        else:
            order = np.argsort(-probs[i], kind="stable")
            top, second = int(order[0]), int(order[1]) if len(order) > 1 else None
            name = f"{rank:04d}_{_safe(labels[top])}_{probs[i, top]:.3f}_{_safe(source.stem)}{source.suffix.lower()}"
            row = [f"confidence below {threshold:g}", labels[top], f"{probs[i, top]:.6f}",
                   labels[second] if second is not None else "",
                   f"{probs[i, second]:.6f}" if second is not None else ""]
        shutil.copyfile(source, images / name)
        writer.writerow([rank, f"images/{name}", str(source), *row, labels[int(y_true[i])]])
    atomic.write_text(folder / "queue.csv", buffer.getvalue())
    wrong = int(sum(probs[i].argmax() != y_true[i] for i in chosen if probs[i].any()))
    accepted = np.setdiff1d(np.arange(len(probs)), chosen)
    right = probs[accepted].argmax(axis=1) == np.asarray(y_true)[accepted] if len(accepted) else np.zeros(0, bool)
    summary = {"threshold": float(threshold), "count": int(len(chosen)), "fraction": len(chosen) / len(probs),
               "wrong_in_queue": wrong, "unanswered": unanswered, "queue": f"{folder.name}/queue.csv",
               "accepted": int(len(accepted)), "accepted_right": int(right.sum()),
               "accepted_accuracy": float(right.mean()) if len(accepted) else None,
               "no_answer_thumbnails": [f"{folder.name}/no-answer/{t.name}" for t in thumbnails]}
    atomic.write_json(folder / SUMMARY, summary)
    return summary


def _thumbnail(source: Path, out: Path) -> Path:
    """A small JPEG of an image with no answer, for the report (the full copy is in images/)."""
    from edgelabels.data.images import read_image

    image = read_image(source)[0].convert("RGB")
    image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE))
    out.parent.mkdir(parents=True, exist_ok=True)
    image.save(out, "JPEG", quality=85)
    return out


def _safe(text: str) -> str:
    # Labels and stems become file names on any OS.
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "x"
