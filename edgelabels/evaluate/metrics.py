"""Everything `metrics.json` holds, computed from arrays: true label indices and confidences (N, K).

No model here: a Keras run, an ONNX export, an INT8 export and a recorded Rekognition model are
evaluated by the same code. scikit-learn computes the standard metrics; written by hand are only
the quantities Rekognition (or the seed team) define: assumed thresholds (thresholds.py),
expected calibration error and the confidence-coverage table.

Top-1 metrics use the label with the highest confidence. Macro means run over the labels that
have test images (as balanced accuracy does); a label absent from the test set gets None for
the values it makes undefined, and a note says so.

A row of zeros is an image that got no answer (a crop stage found no result window in it: the
Predictor's empty CustomLabels). It has no top label (`top_labels` gives -1): it counts as wrong in
accuracy, as sent to a human at every row of the coverage table, as a false negative for its true label,
and scores 0 for every label in ROC AUC (the model said nothing); log loss gives it uniform confidences.
"""

from __future__ import annotations

import warnings

import numpy as np

from edgelabels.data.masks import IGNORE
from edgelabels.evaluate.thresholds import assumed_thresholds, label_metrics, macro_mean

COVERAGE_THRESHOLDS = (0.5, 0.8, 0.9, 0.95, 0.99, 0.995, 0.999)
ECE_BINS = 15


def check_arrays(y_true, probs, labels) -> tuple[np.ndarray, np.ndarray]:
    """(int64 labels (N,), float64 confidences (N, K)); ValueError when they do not fit together."""
    y_true = np.asarray(y_true, dtype=np.int64).reshape(-1)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape != (len(y_true), len(labels)):
        raise ValueError(f"confidences have shape {probs.shape}; expected ({len(y_true)}, {len(labels)})")
    if len(y_true) == 0:
        raise ValueError("nothing to evaluate: no images")
    if y_true.min() < 0 or y_true.max() >= len(labels):
        raise ValueError(f"true label indices must lie in 0..{len(labels) - 1}")
    if not np.isfinite(probs).all() or probs.min() < 0 or probs.max() > 1:
        raise ValueError("confidences must be finite and within 0-1")
    return y_true, probs


def top_labels(probs: np.ndarray) -> np.ndarray:
    """The top label of each image; -1 for an image with no answer (a row of zeros)."""
    probs = np.asarray(probs)
    return np.where(probs.any(axis=1), probs.argmax(axis=1), -1)


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, bins: int = ECE_BINS) -> float:
    """Top-1 ECE: sum over equal-width confidence bins of |accuracy - mean confidence| x bin share."""
    return reliability(probs.max(axis=1), top_labels(probs) == y_true, bins)["ece"]


def reliability(confidence, correct, bins: int = ECE_BINS) -> dict:
    """{"ece", "bins": [{"low", "high", "count", "confidence", "accuracy"}]} over equal-width confidence bins
    (lo, hi] (a confidence of exactly 0 in the first): expected_calibration_error's, and the
    reliability diagram's of every task (evaluate/calibration.py)."""
    confidence = np.asarray(confidence, np.float64).reshape(-1)
    correct = np.asarray(correct, bool).reshape(-1)
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        members = index == b
        count = int(members.sum())
        mean_confidence = float(confidence[members].mean()) if count else None
        accuracy = float(correct[members].mean()) if count else None
        if count:
            ece += count / len(confidence) * abs(accuracy - mean_confidence)
        rows.append({"low": b / bins, "high": (b + 1) / bins, "count": count, "confidence": mean_confidence,
                     "accuracy": accuracy})
    return {"ece": float(ece), "bins": rows}


def coverage_table(y_true: np.ndarray, probs: np.ndarray, thresholds=COVERAGE_THRESHOLDS) -> list[dict]:
    """Accept a prediction only when its top confidence >= t: accuracy of the accepted, share discarded (an image
    with no answer has confidence 0: always discarded)."""
    confidence = probs.max(axis=1)
    correct = top_labels(probs) == y_true
    rows = []
    for t in thresholds:
        accepted = confidence >= t
        n = int(accepted.sum())
        rows.append({
            "threshold": float(t),
            "accepted": n,
            "discarded": int(len(y_true) - n),
            "discarded_fraction": float(1 - n / len(y_true)),
            "accuracy": float(correct[accepted].mean()) if n else None,
        })
    return rows


def review_threshold_for(y_true, probs, accuracy: float) -> dict:
    """The lowest top-confidence threshold at which the accepted images are at least `accuracy` right, chosen on
    these (validation) arrays: {"threshold", "accepted_accuracy", "sent_to_human", "images"}. When no threshold
    gets there (the most confident image is wrong), the threshold is just above every confidence: all to a human.
    """
    y_true, probs = np.asarray(y_true), np.asarray(probs, np.float64)
    if not len(y_true):
        raise ValueError("no validation images to choose a review threshold on")
    confidence = probs.max(axis=1)
    correct = top_labels(probs) == y_true
    order = np.argsort(-confidence, kind="stable")
    right = np.cumsum(correct[order])
    accepted = np.arange(1, len(order) + 1)
    # A threshold equal to a confidence accepts every image at least that confident: only the last of a run of
    # equal confidences is a place to cut.
    cuts = np.flatnonzero(np.r_[confidence[order][1:] < confidence[order][:-1], True])
    good = [i for i in cuts if right[i] / accepted[i] >= accuracy and confidence[order][i] > 0]
    if not good:
        top = float(confidence.max())
        return {"threshold": float(np.nextafter(top, np.inf)), "accepted_accuracy": None, "sent_to_human": 1.0,
                "images": int(len(y_true))}
    i = good[-1]  # the most images accepted
    return {"threshold": float(confidence[order][i]), "accepted_accuracy": float(right[i] / accepted[i]),
            "sent_to_human": float(1 - accepted[i] / len(order)), "images": int(len(y_true))}


def evaluate_arrays(y_true, probs, labels: list[str], min_confidence: float = 0.5) -> dict:
    """The content of metrics.json (plain JSON types)."""
    from sklearn.metrics import (accuracy_score, balanced_accuracy_score, confusion_matrix, log_loss,
                                 precision_recall_fscore_support, roc_auc_score)

    y_true, probs = check_arrays(y_true, probs, labels)
    if not 0 <= min_confidence <= 1:
        raise ValueError(f"min_confidence must be within 0-1, got {min_confidence}")
    n_labels = len(labels)
    y_pred = top_labels(probs)
    unanswered = int((y_pred < 0).sum())
    support = np.bincount(y_true, minlength=n_labels)
    present = [k for k in range(n_labels) if support[k]]
    notes = []
    absent = [labels[k] for k in range(n_labels) if not support[k]]
    if absent:
        notes.append(f"labels with no test image: {', '.join(absent)}; their recall, sensitivity, ROC AUC and "
                     "assumed threshold are null, and macro means cover the other labels")
    if len(present) < 2:
        notes.append("only one label has test images: ROC AUC is undefined")
    if unanswered:
        notes.append(f"{unanswered} images got no answer (a stage found nothing to read in them): counted wrong in "
                     "accuracy, sent to a human in the coverage table, scored 0 for every label in ROC AUC")

    macro = precision_recall_fscore_support(y_true, y_pred, labels=present, average="macro", zero_division=0)
    weighted = precision_recall_fscore_support(y_true, y_pred, labels=present, average="weighted", zero_division=0)
    counts = confusion_matrix(y_true, y_pred, labels=list(range(n_labels)))

    answered_probs = np.where((y_pred < 0)[:, None], 1.0 / n_labels, probs)  # no answer: uniform, for log loss only
    sums = answered_probs.sum(axis=1, keepdims=True)
    if np.abs(sums - 1).max() > 1e-3:
        notes.append("confidences do not sum to 1 per image: renormalised for log loss only")
    loss = log_loss(y_true, answered_probs / sums, labels=list(range(n_labels)))

    thresholds = assumed_thresholds(y_true, probs)
    at_assumed = label_metrics(y_true, probs, thresholds)
    at_min = label_metrics(y_true, probs, min_confidence)
    per_label = []
    for k, name in enumerate(labels):
        tp = int(counts[k, k])
        fn = int(support[k] - tp)  # an unanswered image is in no column of the matrix: still missed
        fp = int(counts[:, k].sum() - tp)
        tn = int(len(y_true) - tp - fn - fp)
        auc = float(roc_auc_score(y_true == k, probs[:, k])) if support[k] and len(present) > 1 else None
        per_label.append({
            "label": name,
            "support": int(support[k]),
            "predicted": int((y_pred == k).sum()),
            "sensitivity": tp / (tp + fn) if tp + fn else None,
            "specificity": tn / (tn + fp) if tn + fp else None,
            "roc_auc": auc,
            "assumed_threshold": thresholds[k],
            "at_assumed_threshold": at_assumed[k],
            "at_min_confidence": at_min[k],
        })
    aucs = [row["roc_auc"] for row in per_label if row["roc_auc"] is not None]
    with warnings.catch_warnings():  # "y_pred contains classes not in y_true": already in the notes
        warnings.simplefilter("ignore", UserWarning)
        balanced_accuracy = float(balanced_accuracy_score(y_true, y_pred))
    return {
        "labels": list(labels),
        "number_of_images": int(len(y_true)),
        "unanswered": unanswered,
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "balanced_accuracy": balanced_accuracy,
        "precision_macro": float(macro[0]), "recall_macro": float(macro[1]), "f1_macro": float(macro[2]),
        "precision_weighted": float(weighted[0]), "recall_weighted": float(weighted[1]),
        "f1_weighted": float(weighted[2]),
        "roc_auc_macro": float(np.mean(aucs)) if aucs else None,
        "log_loss": float(loss),
        "expected_calibration_error": expected_calibration_error(y_true, probs),
        "ece_bins": ECE_BINS,
        # Rekognition's aggregates: unweighted means of the per-label one-vs-rest values.
        "at_assumed_thresholds": {key: macro_mean(at_assumed, key) for key in ("precision", "recall", "f1")},
        "at_min_confidence": {"min_confidence": float(min_confidence),
                              **{key: macro_mean(at_min, key) for key in ("precision", "recall", "f1")}},
        "per_label": per_label,
        "confusion_matrix": {"labels": list(labels), "rows_are": "true label", "counts": counts.tolist()},
        "coverage": coverage_table(y_true, probs),
        "notes": notes,
    }


def confusion_rows(metrics: dict) -> list[dict]:
    """Rekognition's ConfusionMatrix entries; Value = share of the true label's images (0 for an absent label)."""
    labels = metrics["confusion_matrix"]["labels"]
    rows = []
    for i, counts in enumerate(metrics["confusion_matrix"]["counts"]):
        total = sum(counts)
        for j, count in enumerate(counts):
            rows.append({"GroundTruthLabel": labels[i], "PredictedLabel": labels[j],
                         "Value": count / total if total else 0.0})
    return rows


# ---------------------------------------------------------------- segmentation masks


def _valid_and_truth(truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    truth = np.asarray(truth)
    return truth != IGNORE, truth > IGNORE


def dice_iou(predicted, truth, threshold: float = 0.5) -> tuple[float, float]:
    """Mean per-image Dice and IoU. predicted: probabilities or 0/1 (N, H, W) or (H, W); truth: 0/127/255."""
    predicted = np.asarray(predicted, dtype=np.float64)
    truth = np.asarray(truth)
    if predicted.shape != truth.shape:
        raise ValueError(f"prediction shape {predicted.shape} differs from mask shape {truth.shape}")
    if predicted.ndim == 2:
        predicted, truth = predicted[None], truth[None]
    dices, ious = [], []
    for p, t in zip(predicted, truth):
        valid, positive = _valid_and_truth(t)
        guess = (p >= threshold) & valid
        positive &= valid
        inter = np.logical_and(guess, positive).sum()
        total = guess.sum() + positive.sum()
        union = np.logical_or(guess, positive).sum()
        dices.append(1.0 if total == 0 else 2 * inter / total)  # both empty: a perfect answer
        ious.append(1.0 if union == 0 else inter / union)
    return float(np.mean(dices)), float(np.mean(ious))
