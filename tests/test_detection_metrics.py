"""Box scoring against hand-computed cases, and COCO mAP against values known by construction or pycocotools."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from edgelabels.data.boxes import iou_matrix
from edgelabels.evaluate.detection_metrics import (
    aggregate,
    assumed_thresholds,
    coco_map,
    curve,
    label_metrics,
    match,
    precision_recall_curves,
)

LABELS = ["bee", "wasp", "moth", "fly"]


def rows(*predictions):
    """(N, 6) from (left, top, width, height, score, class_id) tuples."""
    return np.array(predictions, dtype=np.float64).reshape(-1, 6)


def test_iou_of_overlapping_nested_and_disjoint_boxes():
    a = [[0, 0, 2, 2]]
    b = [[1, 1, 2, 2], [0, 0, 1, 1], [3, 3, 1, 1], [0, 0, 2, 2]]
    # overlap 1 / union 7; nested 1 / 4; disjoint 0; identical 1
    np.testing.assert_allclose(iou_matrix(a, b), [[1 / 7, 1 / 4, 0.0, 1.0]])


def test_second_prediction_on_one_box_and_a_wrong_label_are_false_positives():
    gt_labels, gt_boxes = [0, 0], [[0, 0, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5]]
    pred = rows((0, 0, 0.5, 0.5, 0.9, 0),      # on box 0
                (0, 0, 0.5, 0.3, 0.8, 0),      # IoU 0.6 with box 0, already taken
                (0.5, 0.5, 0.5, 0.5, 0.7, 1))  # exactly on box 1, but labelled wasp
    tp, matched = match(gt_labels, gt_boxes, pred)
    assert tp.tolist() == [True, False, False]
    assert matched.tolist() == [True, False]  # box 1 is a false negative


def test_matching_is_greedy_by_score_not_by_row_order():
    gt = [[0, 0, 0.5, 0.5]]
    pred = rows((0, 0, 0.5, 0.3, 0.6, 0),   # IoU 0.6, lower score, first row
                (0, 0, 0.5, 0.45, 0.9, 0))  # IoU 0.9, higher score
    tp, _ = match([0], gt, pred)
    assert tp.tolist() == [False, True]
    # The higher score wins even with the worse overlap.
    tp, _ = match([0], gt, rows((0, 0, 0.5, 0.45, 0.6, 0), (0, 0, 0.5, 0.3, 0.9, 0)))
    assert tp.tolist() == [False, True]


def test_a_prediction_takes_the_ground_truth_box_it_overlaps_most():
    gt = [[0, 0, 0.4, 0.4], [0.1, 0, 0.4, 0.4]]  # two overlapping bees
    pred = rows((0.1, 0, 0.4, 0.4, 0.9, 0), (0, 0, 0.4, 0.4, 0.8, 0))
    tp, matched = match([0, 0], gt, pred)
    assert tp.tolist() == [True, True] and matched.tolist() == [True, True]


def test_iou_of_exactly_one_half_matches_and_just_below_does_not():
    gt = [[0, 0, 0.5, 0.5]]
    assert match([0], gt, rows((0, 0, 0.5, 0.25, 0.9, 0)))[0].tolist() == [True]   # 0.125 / 0.25
    assert match([0], gt, rows((0, 0, 0.5, 0.24, 0.9, 0)))[0].tolist() == [False]  # 0.48
    assert match([0], gt, rows((0, 0, 0.5, 0.24, 0.9, 0)), iou=0.4)[0].tolist() == [True]


def test_empty_images():
    tp, matched = match([], np.zeros((0, 4)), rows((0, 0, 1, 1, 0.9, 0)))
    assert tp.tolist() == [False] and matched.tolist() == []
    tp, matched = match([1, 2], [[0, 0, 1, 1], [0, 0, 1, 1]], np.zeros((0, 6)))
    assert tp.tolist() == [] and matched.tolist() == [False, False]
    tp, matched = match([], [], [])
    assert tp.size == 0 and matched.size == 0


def _hand_case():
    """bee: 2 boxes; predictions 0.9 TP, 0.6 FP, 0.5 FP, 0.3 TP. wasp: 1 box, found at 0.7 and a 0.8 FP.
    moth: a prediction but no box. fly: a box but no prediction."""
    box, elsewhere = [0.1, 0.1, 0.2, 0.2], [0.6, 0.6, 0.2, 0.2]
    ground_truth = [
        (np.array([0, 1]), np.array([box, elsewhere])),
        (np.array([0]), np.array([box])),
        (np.array([3]), np.array([box])),
        (np.array([], int), np.zeros((0, 4))),  # a negative image
    ]
    predictions = [
        rows((*box, 0.9, 0), (*elsewhere, 0.7, 1), (*box, 0.8, 1)),
        rows((*elsewhere, 0.6, 0), (*box, 0.3, 0)),
        rows(),
        rows((*box, 0.5, 0), (*box, 0.4, 2)),
    ]
    return ground_truth, predictions


def test_assumed_thresholds_maximise_f1_per_box_and_break_ties_upwards():
    ground_truth, predictions = _hand_case()
    # bee F1: at 0.9 2/3, at 0.6 1/2, at 0.5 2/5, at 0.3 (2 TP, 2 FP) 2/3 again: the tie goes to 0.9.
    # wasp: at 0.8 (FP only) 0, at 0.7 (1 TP, 1 FP) 2/3.
    assert assumed_thresholds(ground_truth, predictions, LABELS) == \
        {"bee": 0.9, "wasp": 0.7, "moth": None, "fly": None}


def test_assumed_threshold_with_names_as_ground_truth_labels():
    ground_truth, predictions = _hand_case()
    named = [(np.array([LABELS[k] for k in g]), boxes) for g, boxes in ground_truth]
    assert assumed_thresholds(named, predictions, LABELS) == assumed_thresholds(ground_truth, predictions, LABELS)


def test_label_metrics_at_one_threshold_are_counted_per_box():
    ground_truth, predictions = _hand_case()
    by_label = {row["label"]: row for row in label_metrics(ground_truth, predictions, LABELS, 0.5)}
    bee = by_label["bee"]  # 0.9 TP, 0.6 FP, 0.5 FP kept; the 0.3 TP is not
    assert (bee["tp"], bee["fp"], bee["fn"], bee["boxes"], bee["images"]) == (1, 2, 1, 2, 2)
    assert bee["precision"] == pytest.approx(1 / 3) and bee["recall"] == 0.5 and bee["f1"] == pytest.approx(0.4)
    wasp = by_label["wasp"]  # 0.8 FP, 0.7 TP
    assert (wasp["precision"], wasp["recall"], wasp["f1"]) == (0.5, 1.0, pytest.approx(2 / 3))
    moth = by_label["moth"]  # below 0.5: nothing predicted, nothing to find
    assert (moth["precision"], moth["recall"], moth["f1"], moth["fp"]) == (None, None, None, 0)
    fly = by_label["fly"]
    assert (fly["precision"], fly["recall"], fly["f1"], fly["fn"]) == (None, 0.0, 0.0, 1)


def test_aggregate_is_the_mean_over_labels_where_defined():
    ground_truth, predictions = _hand_case()
    thresholds = assumed_thresholds(ground_truth, predictions, LABELS)
    result = aggregate(label_metrics(ground_truth, predictions, LABELS, thresholds))
    # bee at 0.9: P 1, R 1/2, F1 2/3; wasp at 0.7: P 1/2, R 1, F1 2/3; fly: R 0, F1 0; moth: undefined.
    assert result["average_precision"] == pytest.approx((1 + 0.5) / 2)
    assert result["average_recall"] == pytest.approx((0.5 + 1 + 0) / 3)
    assert result["f1"] == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    assert (result["tp"], result["fp"], result["fn"]) == (2, 1, 2)


def test_curve_keeps_equal_scores_together():
    points = curve([0.9, 0.5, 0.5, 0.2], [True, True, False, False], boxes=3)
    assert points["threshold"].tolist() == [0.9, 0.5, 0.2]
    assert points["tp"].tolist() == [1, 2, 2] and points["fp"].tolist() == [0, 1, 2]
    np.testing.assert_allclose(points["precision"], [1, 2 / 3, 1 / 2])
    np.testing.assert_allclose(points["recall"], [1 / 3, 2 / 3, 2 / 3])


def test_precision_recall_curves_per_label_on_the_hand_case():
    ground_truth, predictions = _hand_case()
    curves = precision_recall_curves(ground_truth, predictions, LABELS)
    bee = curves["bee"]  # 0.9 TP, 0.6 FP, 0.5 FP, 0.3 TP of 2 boxes
    assert bee["threshold"].tolist() == [0.9, 0.6, 0.5, 0.3]
    np.testing.assert_allclose(bee["precision"], [1, 1 / 2, 1 / 3, 1 / 2])
    np.testing.assert_allclose(bee["recall"], [1 / 2, 1 / 2, 1 / 2, 1])
    assert len(curves["fly"]["threshold"]) == 0 and np.isnan(curves["moth"]["recall"]).all()


def test_class_ids_written_as_inexact_floats_are_rounded():
    tp, _ = match([1], [[0, 0, 0.5, 0.5]], rows((0, 0, 0.5, 0.5, 0.9, 0.9999999)))
    assert tp.tolist() == [True]


def test_curve_of_a_label_never_predicted_is_empty():
    points = curve([], [], boxes=2)
    assert all(len(values) == 0 for values in points.values())


# ---- COCO mAP (pycocotools)

SIZES = [(320, 240), (224, 224), (100, 50), (64, 64)]


def _four_boxes():
    boxes = [[0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.25, 0.25], [0.0, 0.0, 0.5, 0.9], [0.2, 0.3, 0.6, 0.4]]
    return [(np.array([0]), np.array([b])) for b in boxes], boxes


def test_perfect_predictions_score_one():
    ground_truth, boxes = _four_boxes()
    predictions = [rows((*b, 0.9, 0)) for b in boxes]
    result = coco_map(ground_truth, predictions, ["bee", "wasp"], SIZES)
    assert result["map_50"] == pytest.approx(1.0) and result["map_50_95"] == pytest.approx(1.0)
    assert result["per_label"]["bee"]["ap_50"] == pytest.approx(1.0)
    assert result["per_label"]["wasp"] == {"ap_50": None, "ap_50_95": None}  # no wasp in the ground truth


def test_half_the_boxes_found_scores_51_of_101_recall_points():
    # Found boxes are exact, so every IoU threshold sees recall 0.25 then 0.5 at precision 1: COCO's
    # 101 recall points 0, 0.01, ..., 0.50 get precision 1 and 0.51 ... 1.00 get 0.
    ground_truth, boxes = _four_boxes()
    predictions = [rows((*boxes[0], 0.9, 0)), rows((*boxes[1], 0.8, 0)), rows(), rows()]
    result = coco_map(ground_truth, predictions, ["bee"], SIZES)
    assert result["map_50"] == pytest.approx(51 / 101) and result["map_50_95"] == pytest.approx(51 / 101)


def test_no_predictions_at_all_score_zero():
    ground_truth, _ = _four_boxes()
    result = coco_map(ground_truth, [rows()] * 4, ["bee"], SIZES)
    assert result["map_50"] == 0.0 and result["map_50_95"] == 0.0


def test_coco_map_equals_pycocotools_on_the_same_data_written_as_json_files(tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(3)
    labels = ["bee", "wasp"]
    ground_truth, predictions, gt_json, dt_json = [], [], {"images": [], "annotations": [], "categories": []}, []
    gt_json["categories"] = [{"id": 7 + k, "name": name} for k, name in enumerate(labels)]  # other ids: a real file
    for i, (w, h) in enumerate(SIZES * 3):
        gt_json["images"].append({"id": 100 + i, "width": w, "height": h, "file_name": f"{i}.jpg"})
        n = int(rng.integers(0, 4))
        left_top = rng.uniform(0, 0.6, (n, 2))
        boxes = np.c_[left_top, rng.uniform(0.1, 0.4, (n, 2))]
        classes = rng.integers(0, 2, n)
        ground_truth.append((classes, boxes))
        for c, b in zip(classes, boxes):
            x, y, bw, bh = b * [w, h, w, h]
            gt_json["annotations"].append({"id": len(gt_json["annotations"]) + 1, "image_id": 100 + i,
                                           "category_id": 7 + int(c), "bbox": [x, y, bw, bh], "area": bw * bh,
                                           "iscrowd": 0})
        jitter = boxes + rng.normal(0, 0.04, boxes.shape)  # some found, some missed at 0.5 or at 0.95
        extra = np.c_[rng.uniform(0, 0.6, (2, 2)), rng.uniform(0.1, 0.3, (2, 2))]  # false positives
        pred = np.r_[np.c_[jitter, rng.uniform(0.3, 1, n), classes], np.c_[extra, rng.uniform(0, 0.8, 2), [0, 1]]]
        predictions.append(pred)
        for row in pred:
            x, y, bw, bh = row[:4] * [w, h, w, h]
            dt_json.append({"image_id": 100 + i, "category_id": 7 + int(row[5]), "bbox": [x, y, bw, bh],
                            "score": float(row[4])})
    (tmp_path / "gt.json").write_text(json.dumps(gt_json))
    (tmp_path / "dt.json").write_text(json.dumps(dt_json))
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(tmp_path / "gt.json"))
        reference = COCOeval(gt, gt.loadRes(str(tmp_path / "dt.json")), iouType="bbox")
        reference.evaluate()
        reference.accumulate()
        reference.summarize()

    result = coco_map(ground_truth, predictions, labels, SIZES * 3)
    assert 0.05 < reference.stats[0] < reference.stats[1] < 0.95  # a case with something to get wrong
    assert result["map_50_95"] == pytest.approx(reference.stats[0], abs=1e-9)
    assert result["map_50"] == pytest.approx(reference.stats[1], abs=1e-9)
