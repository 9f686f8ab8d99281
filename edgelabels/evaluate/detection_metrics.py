"""Scoring boxes two ways: Rekognition's (per-box P/R/F1 at each label's assumed threshold) and COCO's mAP.

Inputs are arrays, per image: ground truth as (labels (M,), boxes (M, 4)) and predictions as the
detector outputs them, (N, 6) rows `[left, top, width, height, score, class_id]`. Boxes are
(left, top, width, height) in ratios of the image; ground-truth labels are class indices into
`labels` (or label names, mapped through it).

Rekognition's rules, as we apply them (Rekognition does not document its IoU; ours is IOU = 0.5):
- a predicted box is a true positive when it matches a ground-truth box of the same label at
  IoU >= 0.5, greedily by score within each image (each ground-truth box matched at most once);
  other predictions are false positives, unmatched ground-truth boxes false negatives;
- a box is predicted when its score reaches its label's threshold (DetectCustomLabels' rule);
- a label's assumed threshold is the score that maximises its F1 counted per box;
- the aggregate `AveragePrecision`, `AverageRecall` and `F1Score` are the unweighted means over
  labels of the per-box precision, recall and F1 at each label's assumed threshold.
Matching is by label and greedy by score, so the matches of the boxes kept at any threshold are
those of the whole list cut there: matching once gives every threshold's counts.

IoU is unchanged by stretching both axes, so ratios and pixels match the same pairs; COCO's
mAP@0.5 and mAP@0.5:0.95 (pycocotools, 101-point interpolation, 100 detections per image) get
pixel boxes from each image's size.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np

from edgelabels.data.boxes import iou_matrix

IOU = 0.5
THRESHOLD_TABLE = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


def match(gt_labels, gt_boxes, pred, iou: float = IOU) -> tuple[np.ndarray, np.ndarray]:
    """One image: (true positive flag per prediction (N,), matched flag per ground-truth box (M,)).

    Predictions are taken by score, highest first (equal scores in row order); each takes the
    unmatched ground-truth box of its label with the highest IoU, if that IoU is >= `iou`.
    """
    gt_labels = np.asarray(gt_labels, dtype=np.int64).reshape(-1)
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    pred = prediction_rows(pred)
    tp = np.zeros(len(pred), dtype=bool)
    matched = np.zeros(len(gt_labels), dtype=bool)
    if not len(pred) or not len(gt_labels):
        return tp, matched
    overlaps = iou_matrix(pred[:, :4], gt_boxes)
    same_label = pred[:, 5:6].astype(np.int64) == gt_labels[None, :]
    for p in np.argsort(-pred[:, 4], kind="stable"):
        candidates = np.where(same_label[p] & ~matched & (overlaps[p] >= iou), overlaps[p], -1.0)
        best = int(candidates.argmax())
        if candidates[best] >= 0:
            tp[p], matched[best] = True, True
    return tp, matched


def match_all(ground_truth, predictions, labels, iou: float = IOU) -> list[tuple[np.ndarray, np.ndarray]]:
    """match() for every image; ground_truth and predictions are lists of the same length."""
    if len(ground_truth) != len(predictions):
        raise ValueError(f"{len(ground_truth)} ground-truth images but {len(predictions)} prediction arrays")
    return [match(class_indices(g_labels, labels), g_boxes, pred, iou)
            for (g_labels, g_boxes), pred in zip(ground_truth, predictions)]


def label_scores(ground_truth, predictions, labels, iou: float = IOU) -> dict[str, dict]:
    """Per label: {"scores" (P,), "tp" (P,) of all its predictions over all images, "boxes": ground-truth count,
    "images": images with at least one of its boxes}."""
    matches = match_all(ground_truth, predictions, labels, iou)
    out = {}
    for k, name in enumerate(labels):
        scores, flags, boxes, images = [], [], 0, 0
        for (g_labels, _), pred, (tp, _) in zip(ground_truth, predictions, matches):
            found_rows = prediction_rows(pred)
            mine = found_rows[:, 5].astype(np.int64) == k
            scores.append(found_rows[mine, 4])
            flags.append(tp[mine])
            count = int((class_indices(g_labels, labels) == k).sum())
            boxes += count
            images += count > 0
        out[name] = {"scores": np.concatenate(scores) if scores else np.zeros(0),
                     "tp": np.concatenate(flags) if flags else np.zeros(0, bool), "boxes": boxes, "images": images}
    return out


def curve(scores, tp, boxes: int) -> dict[str, np.ndarray]:
    """Counts at every distinct score as threshold (`score >= threshold` kept), highest threshold first:
    {"threshold", "tp", "fp", "precision", "recall", "f1"}; recall and F1 are NaN without ground truth."""
    scores, tp = np.asarray(scores, np.float64).reshape(-1), np.asarray(tp, bool).reshape(-1)
    if not len(scores):
        empty = np.zeros(0)
        return {"threshold": empty, "tp": empty, "fp": empty, "precision": empty, "recall": empty, "f1": empty}
    order = np.argsort(-scores, kind="stable")
    scores, tp = scores[order], tp[order]
    last = np.flatnonzero(np.r_[scores[1:] != scores[:-1], True])  # last row of each run of equal scores
    tps = np.cumsum(tp)[last].astype(np.float64)
    fps = np.cumsum(~tp)[last].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = tps / boxes if boxes else np.full(len(last), np.nan)
        f1 = 2 * tps / (tps + fps + boxes) if boxes else np.full(len(last), np.nan)
        precision = tps / (tps + fps)
    return {"threshold": scores[last], "tp": tps, "fp": fps, "precision": precision, "recall": recall, "f1": f1}


def precision_recall_curves(ground_truth, predictions, labels, iou: float = IOU) -> dict[str, dict]:
    """Per label, curve() over all its predictions: the precision-recall points at every distinct score."""
    return {name: curve(found["scores"], found["tp"], found["boxes"])
            for name, found in label_scores(ground_truth, predictions, labels, iou).items()}


def assumed_thresholds(ground_truth, predictions, labels, iou: float = IOU) -> dict[str, float | None]:
    """Per label, the score threshold (0-1) that maximises its F1 counted per box; ties go to the higher
    threshold (same F1, fewer boxes returned), so a label never found gets its highest score.
    None for a label without ground-truth boxes (no F1 to maximise) or without any prediction."""
    thresholds = {}
    for name, found in label_scores(ground_truth, predictions, labels, iou).items():
        if not found["boxes"] or not len(found["scores"]):
            thresholds[name] = None
            continue
        points = curve(found["scores"], found["tp"], found["boxes"])
        best = int(np.flatnonzero(points["f1"] >= points["f1"].max() - 1e-12)[0])  # highest threshold first
        thresholds[name] = float(points["threshold"][best])
    return thresholds


def counts_at(scores, tp, boxes: int, threshold: float | None) -> dict:
    """Precision, recall, F1 and counts of one label at `score >= threshold` (None: nothing predicted).
    Undefined ratios are None: precision with nothing predicted, recall and F1 without ground truth."""
    kept = np.zeros(len(scores), bool) if threshold is None else np.asarray(scores) >= threshold
    tps = int(np.asarray(tp, bool)[kept].sum())
    fps = int(kept.sum()) - tps
    return {"threshold": None if threshold is None else float(threshold),
            "precision": tps / (tps + fps) if tps + fps else None,
            "recall": tps / boxes if boxes else None,
            "f1": 2 * tps / (2 * tps + fps + (boxes - tps)) if boxes else None,
            "tp": tps, "fp": fps, "fn": boxes - tps}


def label_metrics(ground_truth, predictions, labels, thresholds, iou: float = IOU) -> list[dict]:
    """Per label at `thresholds` ({label: threshold or None}, or one float for every label, like
    Rekognition's MinConfidence): counts_at's dict plus "label", "boxes" and "images"."""
    rows = []
    for name, found in label_scores(ground_truth, predictions, labels, iou).items():
        threshold = thresholds.get(name) if isinstance(thresholds, dict) else thresholds
        rows.append({"label": name, "boxes": found["boxes"], "images": found["images"],
                     **counts_at(found["scores"], found["tp"], found["boxes"], threshold)})
    return rows


def aggregate(rows: list[dict]) -> dict:
    """Rekognition's AggregatedEvaluationResults for detection: unweighted means over labels (where defined)
    of per-box precision, recall and F1, plus the pooled box counts."""
    def mean(key):
        values = [row[key] for row in rows if row[key] is not None]
        return float(np.mean(values)) if values else None

    return {"average_precision": mean("precision"), "average_recall": mean("recall"), "f1": mean("f1"),
            "tp": sum(row["tp"] for row in rows), "fp": sum(row["fp"] for row in rows),
            "fn": sum(row["fn"] for row in rows)}


def coco_map(ground_truth, predictions, labels, sizes, max_detections: int = 100) -> dict:
    """COCO AP from pycocotools: {"map_50", "map_50_95", "per_label": {label: {"ap_50", "ap_50_95"}}}.
    sizes: (width, height) in pixels per image. None where COCO has nothing to average (no ground truth)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    categories = [{"id": k + 1, "name": name} for k, name in enumerate(labels)]
    images = [{"id": i + 1, "width": int(w), "height": int(h)} for i, (w, h) in enumerate(sizes)]
    gt_annotations, dt_annotations = [], []
    for i, ((g_labels, g_boxes), pred, (w, h)) in enumerate(zip(ground_truth, predictions, sizes, strict=True)):
        scale = np.array([w, h, w, h], np.float64)
        for label, box in zip(class_indices(g_labels, labels), np.asarray(g_boxes, np.float64).reshape(-1, 4)):
            gt_annotations.append(_coco_box(len(gt_annotations) + 1, i + 1, int(label) + 1, box * scale))
        for row in prediction_rows(pred):
            dt_annotations.append({**_coco_box(len(dt_annotations) + 1, i + 1, int(row[5]) + 1, row[:4] * scale),
                                   "score": float(row[4])})
    gt, dt = COCO(), COCO()
    gt.dataset = {"images": images, "categories": categories, "annotations": gt_annotations}
    dt.dataset = {"images": images, "categories": categories, "annotations": dt_annotations}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress and tables
        gt.createIndex()
        dt.createIndex()
        evaluation = COCOeval(gt, dt, iouType="bbox")
        evaluation.params.maxDets = [1, 10, int(max_detections)]
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    # precision: [IoU threshold, recall threshold, category, area range ("all" first), max detections]
    precision = evaluation.eval["precision"][:, :, :, 0, -1]
    per_label = {name: {"ap_50": _mean_defined(precision[0, :, k]), "ap_50_95": _mean_defined(precision[:, :, k])}
                 for k, name in enumerate(labels)}
    stats = evaluation.stats
    return {"map_50": None if stats[1] < 0 else float(stats[1]), "map_50_95": None if stats[0] < 0 else float(stats[0]),
            "max_detections": int(max_detections), "per_label": per_label}


def _coco_box(annotation_id: int, image_id: int, category_id: int, box) -> dict:
    left, top, width, height = (float(v) for v in box)
    return {"id": annotation_id, "image_id": image_id, "category_id": category_id, "bbox": [left, top, width, height],
            "area": width * height, "iscrowd": 0}


def _mean_defined(values) -> float | None:
    """COCO marks 'no ground truth for this category' with -1."""
    values = np.asarray(values)
    return None if (values < 0).all() else float(values[values >= 0].mean())


def prediction_rows(pred) -> np.ndarray:
    """One image's predictions as float64 (N, 6), class ids rounded (a float 0.9999999 is class 1, not 0)."""
    pred = np.array(pred, dtype=np.float64)  # a copy: the caller's array is not changed
    if pred.size == 0:
        return np.zeros((0, 6))
    if pred.ndim != 2 or pred.shape[1] != 6:
        raise ValueError(f"predictions of one image must be (N, 6) rows [left, top, width, height, score, class_id], "
                         f"not {pred.shape}")
    pred[:, 5] = np.rint(pred[:, 5])
    return pred


def class_indices(gt_labels, labels) -> np.ndarray:
    """Ground-truth labels as class indices: indices pass through, names are looked up in `labels`."""
    values = np.asarray(gt_labels).reshape(-1)
    if values.dtype.kind in "US" or values.dtype == object:
        index = {name: k for k, name in enumerate(labels)}
        unknown = sorted({str(v) for v in values} - set(index))
        if unknown:
            raise ValueError(f"ground-truth labels {unknown} are not among {list(labels)}")
        return np.array([index[str(v)] for v in values], dtype=np.int64)
    return values.astype(np.int64)
