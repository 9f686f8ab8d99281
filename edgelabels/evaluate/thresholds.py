"""Assumed thresholds (Rekognition's definition) and one-vs-rest label metrics at given thresholds.

Rekognition Custom Labels reports, per label, the "assumed threshold": the confidence at which
that label's F1 score on the test set is highest, treating the label one-vs-rest on its own
confidence. DetectCustomLabels then returns a label when its confidence is >= the threshold, so
the label metrics here count a prediction as positive at `confidence >= threshold`.
"""

from __future__ import annotations

import numpy as np


def assumed_thresholds(y_true: np.ndarray, probs: np.ndarray) -> list[float | None]:
    """Per label: the confidence (one of its scores) that maximises its one-vs-rest F1.

    Ties go to the highest threshold (same F1, fewer images flagged). A label with no test image
    has no F1 to maximise: None.
    """
    from sklearn.metrics import precision_recall_curve

    thresholds: list[float | None] = []
    for k in range(probs.shape[1]):
        positives = y_true == k
        if not positives.any():
            thresholds.append(None)
            continue
        precision, recall, candidates = precision_recall_curve(positives, probs[:, k])
        # The curve's last point (precision 1, recall 0) has no threshold.
        precision, recall = precision[:-1], recall[:-1]
        denominator = precision + recall
        f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(denominator), where=denominator > 0)
        best = np.flatnonzero(f1 >= f1.max() - 1e-12)[-1]  # candidates are increasing: last = highest
        thresholds.append(float(candidates[best]))
    return thresholds


def label_metrics(y_true: np.ndarray, probs: np.ndarray, thresholds) -> list[dict]:
    """Per label, one-vs-rest at `confidence >= threshold`: precision, recall, F1 and the counts.

    `thresholds` is one value per label (None: the label is never predicted) or a single float for
    all labels (Rekognition's MinConfidence). Undefined ratios (nothing predicted, no positives)
    are None, not 0, so a reader can tell "no data" from "all wrong".
    """
    from sklearn.metrics import multilabel_confusion_matrix, precision_recall_fscore_support

    n_labels = probs.shape[1]
    if np.isscalar(thresholds):
        thresholds = [float(thresholds)] * n_labels
    cut = np.array([np.inf if t is None else t for t in thresholds], dtype=np.float64)
    predicted = probs >= cut[None, :]
    truth = np.eye(n_labels, dtype=bool)[y_true]
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, average=None, zero_division=np.nan)
    counts = multilabel_confusion_matrix(truth, predicted)  # per label [[tn, fp], [fn, tp]]
    rows = []
    for k in range(n_labels):
        (tn, fp), (fn, tp) = counts[k]
        rows.append({
            "threshold": None if thresholds[k] is None else float(thresholds[k]),
            "precision": _finite_or_none(precision[k]),
            "recall": _finite_or_none(recall[k]),
            "f1": _finite_or_none(f1[k]) if support[k] else None,
            "tp": int(tp), "fp": int(fp), "fn": int(fn), "tn": int(tn),
        })
    return rows


def macro_mean(rows: list[dict], key: str) -> float | None:
    """Unweighted mean over labels where the value is defined (Rekognition's aggregate)."""
    values = [row[key] for row in rows if row[key] is not None]
    return float(np.mean(values)) if values else None


def _finite_or_none(value) -> float | None:
    return float(value) if np.isfinite(value) else None
