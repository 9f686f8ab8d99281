"""Bootstrap 95% intervals for every headline figure of an evaluation, resampling IMAGES.

An evaluation's test images are one draw of the images the model will meet; a figure computed on them has a
sampling error the point value hides. A percentile bootstrap estimates it: draw the test images with replacement
(as many as there are), recompute the figure on that draw, repeat, and report the 2.5th and 97.5th percentiles
of the recomputed figures. The unit of sampling is the image: a detection resample takes every box of the images
it draws, so boxes of one image (which succeed and fail together) are never treated as independent.

Each figure is the same statistic as the reported one, recomputed on a resample (an image drawn twice counts
twice, as if it were in the test set twice). What the evaluation chose on the whole test set stays fixed: the
assumed thresholds are not re-chosen per resample, so the interval is that of the figure at those thresholds.
A resample where a figure is undefined (a label with no positive image in it, for a ROC AUC) is skipped and
counted ("undefined"). The draws come from a fixed seed: the same evaluation gives the same interval.

Everything is computed from per-image numbers with matrix products, one row per resample (a resample is a row
of per-image counts, multinomial over the images), so 1000 resamples of 1000 images take well under a second.

Every interval has one shape in metrics.json:
  {"value": the figure on all images, "low", "high", "level": 0.95, "resamples": 1000, "undefined": 0,
   "unit": "image"}
metrics["intervals"] maps the dotted path of a figure in metrics.json ("accuracy", "at_assumed_thresholds.f1")
to its interval; "per_label" maps a label to {"precision", "recall", "f1", ...} at its assumed threshold.
"""

from __future__ import annotations

import warnings

import numpy as np

RESAMPLES = 1000
LEVEL = 0.95
SEED = 0
CHUNK = 100  # resamples per block where a block holds one value per prediction (detection AP): bounded memory
COCO_RECALLS = np.linspace(0.0, 1.0, 101)  # pycocotools' recall points


def resample_counts(images: int, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """(resamples + 1, images) float64: how often each image is drawn. Row 0 is all ones (the evaluation
    itself, whose figure is the interval's "value"); the others draw `images` images with replacement."""
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, images, size=(resamples, images))
    rows = np.arange(resamples)[:, None] * images
    counts = np.bincount((drawn + rows).ravel(), minlength=resamples * images).reshape(resamples, images)
    return np.vstack([np.ones((1, images)), counts.astype(np.float64)])


def interval(statistics: np.ndarray, level: float = LEVEL) -> dict:
    """The interval of one figure from its values per row of resample_counts (NaN: undefined there)."""
    statistics = np.asarray(statistics, np.float64)
    value, drawn = statistics[0], statistics[1:]
    defined = drawn[np.isfinite(drawn)]
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(defined, [tail, 100 - tail]) if len(defined) else (None, None)
    return {"value": float(value) if np.isfinite(value) else None,
            "low": None if low is None else float(low), "high": None if high is None else float(high),
            "level": level, "resamples": len(drawn), "undefined": int(len(drawn) - len(defined)), "unit": "image"}


def _ratio(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(bottom > 0, top / np.where(bottom > 0, bottom, 1), np.nan)


def _defined_mean(values: np.ndarray) -> np.ndarray:
    """Mean over the last axis of the defined values (NaN where none is): Rekognition's unweighted means."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "mean of empty slice": NaN is the answer
        return np.nanmean(values, axis=-1)


def count_scores(counts: np.ndarray, tp, fp, fn) -> dict[str, np.ndarray]:
    """Precision, recall and F1 per resample and label from per-image counts (images, labels) of true positives,
    false positives and false negatives; NaN where undefined (nothing predicted; no positive)."""
    tp, fp, fn = (counts @ np.asarray(x, np.float64) for x in (tp, fp, fn))
    return {"precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn),
            "f1": np.where(tp + fn > 0, _ratio(2 * tp, 2 * tp + fp + fn), np.nan)}


def _per_label(labels, scores: dict[str, np.ndarray], level: float) -> dict:
    return {name: {key: interval(values[:, k], level) for key, values in scores.items()}
            for k, name in enumerate(labels)}


def weighted_auc(counts: np.ndarray, positive, score) -> np.ndarray:
    """ROC AUC per resample (Mann-Whitney: ties count a half), each image weighted by its count; NaN where a
    resample has no positive or no negative image."""
    positive, score = np.asarray(positive, bool), np.asarray(score, np.float64)
    order = np.argsort(score, kind="stable")
    starts = np.flatnonzero(np.r_[True, score[order][1:] != score[order][:-1]])  # runs of equal scores
    drawn = counts[:, order]
    pos = np.add.reduceat(drawn * positive[order], starts, axis=1)
    neg = np.add.reduceat(drawn * ~positive[order], starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    return _ratio((pos * (below + 0.5 * neg)).sum(axis=1), pos.sum(axis=1) * neg.sum(axis=1))


def weighted_average_precision(counts: np.ndarray, positive, score) -> np.ndarray:
    """scikit-learn's average_precision_score per resample (sum over distinct scores, highest first, of the
    recall gained times the precision there); NaN where a resample has no positive image."""
    positive, score = np.asarray(positive, bool), np.asarray(score, np.float64)
    order = np.argsort(-score, kind="stable")
    last = np.flatnonzero(np.r_[score[order][1:] != score[order][:-1], True])  # last of each run of equal scores
    drawn = counts[:, order]
    tps = np.cumsum(drawn * positive[order], axis=1)[:, last]
    fps = np.cumsum(drawn * ~positive[order], axis=1)[:, last]
    recall = _ratio(tps, tps[:, -1:])
    gained = np.diff(recall, axis=1, prepend=0.0)
    return np.where(tps[:, -1] > 0, (gained * np.nan_to_num(_ratio(tps, tps + fps))).sum(axis=1), np.nan)


# ---------------------------------------------------------------- per task


def classification_intervals(y_true, probs, labels, assumed, *, resamples: int = RESAMPLES,
                             seed: int = SEED, level: float = LEVEL) -> dict:
    """metrics.json's "intervals" of a classifier (evaluate_arrays' figures): accuracy, macro F1 and ROC AUC of
    the top label, Rekognition's precision/recall/F1 at the assumed thresholds, per label too."""
    from edgelabels.evaluate.metrics import top_labels

    y_true, probs = np.asarray(y_true), np.asarray(probs, np.float64)
    counts = resample_counts(len(y_true), resamples, seed)
    truth = np.eye(len(labels), dtype=bool)[y_true]
    top = top_labels(probs)[:, None] == np.arange(len(labels))[None, :]
    present = np.flatnonzero(truth.any(axis=0))
    # scikit-learn's macro F1 over the labels with test images; 0 for one a resample holds no image of
    top_f1 = count_scores(counts, truth & top, ~truth & top, truth & ~top)["f1"][:, present]
    cut = np.array([np.inf if t is None else t for t in assumed])
    flagged = probs >= cut[None, :]
    at = count_scores(counts, truth & flagged, ~truth & flagged, truth & ~flagged)
    found = {
        "accuracy": interval(counts @ (top_labels(probs) == y_true) / len(y_true), level),
        "f1_macro": interval(np.nan_to_num(top_f1).mean(axis=1), level),
        **{f"at_assumed_thresholds.{key}": interval(_defined_mean(values), level) for key, values in at.items()},
        "per_label": _per_label(labels, at, level),
    }
    if len(present) > 1:
        aucs = np.stack([weighted_auc(counts, truth[:, k], probs[:, k]) for k in present], axis=1)
        found["roc_auc_macro"] = interval(aucs.mean(axis=1), level)  # a label without positives: undefined
    return found


def multilabel_intervals(truth, probs, labels, assumed, *, resamples: int = RESAMPLES, seed: int = SEED,
                         level: float = LEVEL) -> dict:
    """metrics.json's "intervals" of a multi-label model at its assumed thresholds: subset accuracy, macro F1
    (scikit-learn's: every label, 0 where undefined), Rekognition's means, macro average precision, per label."""
    truth, probs = np.asarray(truth, bool), np.asarray(probs, np.float64)
    counts = resample_counts(len(truth), resamples, seed)
    cut = np.array([np.inf if t is None else t for t in assumed])
    got = probs >= cut[None, :]
    at = count_scores(counts, truth & got, ~truth & got, truth & ~got)
    macro_f1 = np.nan_to_num(at["f1"]).mean(axis=1)  # a label without positives scores 0 in scikit-learn's mean
    with_positives = np.flatnonzero(truth.any(axis=0))
    found = {
        "at_assumed_thresholds.subset_accuracy": interval(counts @ (got == truth).all(axis=1) / len(truth), level),
        "at_assumed_thresholds.macro_f1": interval(macro_f1, level),
        **{f"at_assumed_thresholds.{key}": interval(_defined_mean(values), level) for key, values in at.items()},
        "per_label": _per_label(labels, at, level),
    }
    if len(with_positives):
        aps = np.stack([weighted_average_precision(counts, truth[:, k], probs[:, k]) for k in with_positives], 1)
        found["average_precision_macro"] = interval(aps.mean(axis=1), level)
    return found


def segmentation_intervals(dice, iou, *, resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL) -> dict:
    """metrics.json's "intervals" of a U-Net: mean Dice and mean IoU over images."""
    dice, iou = np.asarray(dice, np.float64), np.asarray(iou, np.float64)
    counts = resample_counts(len(dice), resamples, seed)
    return {"dice": interval(counts @ dice / len(dice), level), "iou": interval(counts @ iou / len(iou), level)}


def detection_intervals(ground_truth, predictions, labels, assumed: dict, *, iou: float = 0.5,
                        resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL) -> dict:
    """metrics.json's "intervals" of a detector: COCO mAP@0.5 (101 recall points, as pycocotools), Rekognition's
    mean precision/recall/F1 at the assumed thresholds, and per label AP@0.5, precision, recall, F1 there.
    ground_truth, predictions: detection_metrics' per-image arrays; assumed: {label: threshold or None}."""
    from edgelabels.evaluate import detection_metrics as dm

    matches = dm.match_all(ground_truth, predictions, labels, iou)
    n, k_labels = len(ground_truth), len(labels)
    boxes = np.zeros((n, k_labels))
    tp, fp = np.zeros((n, k_labels)), np.zeros((n, k_labels))
    rows = []  # per prediction: image, class, score, true positive
    cut = np.array([np.inf if assumed.get(name) is None else assumed[name] for name in labels])
    for i, ((g_labels, _), pred, (hit, _)) in enumerate(zip(ground_truth, predictions, matches)):
        np.add.at(boxes[i], dm.class_indices(g_labels, labels), 1)
        pred = dm.prediction_rows(pred)
        classes = pred[:, 5].astype(np.int64)
        known = (classes >= 0) & (classes < k_labels)
        kept = known & (pred[:, 4] >= cut[np.clip(classes, 0, k_labels - 1)])
        np.add.at(tp[i], classes[kept & hit], 1)
        np.add.at(fp[i], classes[kept & ~hit], 1)
        rows += [(i, c, s, h) for c, s, h in zip(classes[known], pred[known, 4], hit[known])]
    rows = np.array(rows, np.float64).reshape(-1, 4)
    counts = resample_counts(n, resamples, seed)
    at = count_scores(counts, tp, fp, boxes - tp)
    ap = np.stack([_coco_ap(counts, rows[rows[:, 1] == k], boxes[:, k]) for k in range(k_labels)], axis=1)
    return {
        "map_50": interval(_defined_mean(ap), level),  # COCO: the mean over labels with a box in the resample
        "at_assumed_thresholds.average_precision": interval(_defined_mean(at["precision"]), level),
        "at_assumed_thresholds.average_recall": interval(_defined_mean(at["recall"]), level),
        "at_assumed_thresholds.f1": interval(_defined_mean(at["f1"]), level),
        "per_label": _per_label(labels, {**at, "coco_ap_50": ap}, level),
    }


def _coco_ap(counts: np.ndarray, rows: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """One label's AP at one IoU per resample, as pycocotools accumulates it: predictions by score, highest
    first; precision made non-increasing from the right; read at 101 recall points (0 past the last recall).
    rows: (image, class, score, tp) of its predictions; boxes: its ground-truth boxes per image."""
    order = np.argsort(-rows[:, 2], kind="stable")
    images, hit = rows[order, 0].astype(np.int64), rows[order, 3].astype(bool)
    positives = counts @ boxes
    if not len(rows):
        return np.where(positives > 0, 0.0, np.nan)
    out = np.empty(len(counts))
    for start in range(0, len(counts), CHUNK):
        drawn = counts[start:start + CHUNK][:, images]
        tps, fps = np.cumsum(drawn * hit, axis=1), np.cumsum(drawn * ~hit, axis=1)
        npos = positives[start:start + CHUNK, None]
        recall = tps / np.where(npos > 0, npos, 1)
        precision = np.nan_to_num(_ratio(tps, tps + fps))
        envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
        # One searchsorted for every row: row r's recalls (within 0-1) are shifted by 2r, so rows never mix.
        shift = 2.0 * np.arange(len(drawn))[:, None]
        where = np.searchsorted((recall + shift).ravel(), (COCO_RECALLS[None, :] + shift).ravel(), side="left")
        where = where.reshape(len(drawn), -1) - np.arange(len(drawn))[:, None] * recall.shape[1]
        inside = where < recall.shape[1]
        picked = np.take_along_axis(envelope, np.minimum(where, recall.shape[1] - 1), axis=1)
        out[start:start + CHUNK] = np.where(npos[:, 0] > 0, np.where(inside, picked, 0.0).mean(axis=1), np.nan)
    return out
