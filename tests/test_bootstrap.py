"""Bootstrap intervals over test images: known distributions, resamples scored like scikit-learn and pycocotools
on the images written out, reproducibility, and what an undefined resample does."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from edgelabels.evaluate import detection_metrics as dm
from edgelabels.evaluate.bootstrap import (classification_intervals, detection_intervals, multilabel_intervals,
                                           resample_counts, segmentation_intervals, weighted_auc,
                                           weighted_average_precision)


def _classifier(n: int, seed: int = 0):
    """A binary classifier about 80% right, with tied scores (rounded to 0.01)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.round(np.clip(0.5 + (2 * y - 1) * 0.25 + rng.normal(0, 0.25, n), 0, 1), 2)
    return y, np.stack([1 - p, p], axis=1)


def _width(found: dict) -> float:
    return found["high"] - found["low"]


def test_accuracy_of_8_right_out_of_10_has_the_binomial_bootstrap_percentiles():
    # Resampling 10 images of which 8 are right draws Binomial(10, 0.8) right ones: P(<= 4) = 0.006,
    # P(<= 5) = 0.033, so the 2.5th percentile is 5/10 (6/10 if few 5s were drawn); P(10) = 0.8^10 = 0.107,
    # so the 97.5th percentile is 10/10.
    y = np.array([0, 1] * 5)
    probs = np.eye(2)[y]
    probs[:2] = probs[:2, ::-1]  # two wrong
    found = classification_intervals(y, probs, ["a", "b"], [0.5, 0.5])["accuracy"]
    assert found["value"] == 0.8
    assert 0.5 <= found["low"] <= 0.6 and found["high"] == 1.0
    assert found == {**found, "level": 0.95, "resamples": 1000, "undefined": 0, "unit": "image"}


def test_every_image_is_drawn_as_often_as_a_multinomial_says():
    counts = resample_counts(10, resamples=4000)
    assert (counts[0] == 1).all()  # row 0 is the evaluation itself
    assert (counts[1:].sum(axis=1) == 10).all()
    # an image is left out of a resample with probability (9/10)^10 = 0.349
    assert (counts[1:] == 0).mean() == pytest.approx(0.9 ** 10, abs=0.01)


def test_the_interval_holds_the_figure_and_narrows_with_ten_times_the_images():
    widths = {}
    for n in (100, 1000):
        y, probs = _classifier(n)
        found = classification_intervals(y, probs, ["a", "b"], [0.5, 0.5])
        for key in ("accuracy", "f1_macro", "roc_auc_macro", "at_assumed_thresholds.f1"):
            assert found[key]["low"] <= found[key]["value"] <= found[key]["high"], (n, key)
        widths[n] = {key: _width(found[key]) for key in ("accuracy", "f1_macro", "roc_auc_macro")}
    for key, wide in widths[100].items():
        assert widths[1000][key] < 0.5 * wide, key  # sqrt(10) narrower, about


def test_the_same_evaluation_gives_the_same_interval():
    y, probs = _classifier(300)
    assert classification_intervals(y, probs, ["a", "b"], [0.4, 0.6]) == \
        classification_intervals(y, probs, ["a", "b"], [0.4, 0.6])


def test_the_intervals_value_is_the_figure_the_evaluation_reports():
    from edgelabels.evaluate.metrics import evaluate_arrays

    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 200)
    probs = rng.dirichlet([1, 1, 1], 200) * 0.5 + np.eye(3)[y] * 0.5
    probs[:4] = 0  # images with no answer: wrong, scored 0
    metrics = evaluate_arrays(y, probs, ["a", "b", "c"])
    found = classification_intervals(y, probs, ["a", "b", "c"], [r["assumed_threshold"] for r in metrics["per_label"]])
    for key in ("accuracy", "f1_macro", "roc_auc_macro"):
        assert found[key]["value"] == pytest.approx(metrics[key]), key
    for key in ("precision", "recall", "f1"):
        assert found[f"at_assumed_thresholds.{key}"]["value"] == pytest.approx(metrics["at_assumed_thresholds"][key])
        for row in metrics["per_label"]:
            assert found["per_label"][row["label"]][key]["value"] == pytest.approx(row["at_assumed_threshold"][key])


def test_a_resample_scores_like_scikit_learn_on_its_images_written_out():
    y, probs = _classifier(150, seed=5)
    counts = resample_counts(150, resamples=3)
    aucs, aps = weighted_auc(counts, y == 1, probs[:, 1]), weighted_average_precision(counts, y == 1, probs[:, 1])
    for row in range(4):
        drawn = np.repeat(np.arange(150), counts[row].astype(int))  # the resample as a test set
        assert aucs[row] == pytest.approx(roc_auc_score(y[drawn], probs[drawn, 1]))
        assert aps[row] == pytest.approx(average_precision_score(y[drawn], probs[drawn, 1]))


def test_multilabel_intervals_are_scikit_learns_figures_at_the_assumed_thresholds():
    rng = np.random.default_rng(2)
    truth = rng.random((120, 3)) < 0.4
    probs = np.clip(truth * 0.4 + rng.random((120, 3)) * 0.6, 0, 1)
    found = multilabel_intervals(truth, probs, ["a", "b", "c"], [0.5, 0.6, None])
    got = probs >= np.array([0.5, 0.6, np.inf])
    assert found["at_assumed_thresholds.macro_f1"]["value"] == pytest.approx(
        f1_score(truth, got, average="macro", zero_division=0))
    assert found["at_assumed_thresholds.subset_accuracy"]["value"] == pytest.approx((got == truth).all(1).mean())
    assert found["average_precision_macro"]["value"] == pytest.approx(
        np.mean([average_precision_score(truth[:, k], probs[:, k]) for k in range(3)]))
    assert found["per_label"]["c"]["precision"]["undefined"] == 1000  # never predicted: no precision anywhere


def test_a_resample_without_a_positive_image_has_no_auc_and_is_counted():
    y = np.array([1, 0, 0, 0, 0])
    probs = np.stack([1 - np.linspace(0.9, 0.1, 5), np.linspace(0.9, 0.1, 5)], 1)
    found = classification_intervals(y, probs, ["a", "b"], [0.5, 0.5])["roc_auc_macro"]
    left_out = int((resample_counts(5)[1:, 0] == 0).sum())  # resamples without image 0, the only positive
    assert found["undefined"] == left_out and 250 < left_out < 420  # 1000 x (4/5)^5 = 328
    assert found["low"] == found["high"] == 1.0  # wherever defined, the positive outranks every negative


def test_segmentation_means_have_intervals_around_them():
    rng = np.random.default_rng(0)
    dice = rng.uniform(0.85, 1.0, 200)
    found = segmentation_intervals(dice, dice ** 2)
    assert found["dice"]["value"] == pytest.approx(dice.mean())
    assert found["dice"]["low"] < dice.mean() < found["dice"]["high"]
    assert _width(found["dice"]) < 0.02  # the mean of 200 values spread over 0.15


def _bee_images(right: int, wrong: int):
    """`right` images whose one bee is found exactly (score 0.9), then `wrong` whose bee is missed and a box
    predicted beside it (score 0.8: a false positive)."""
    truth = [(np.array([0]), np.array([[0.1, 0.1, 0.2, 0.2]]))] * (right + wrong)
    found = [np.array([[0.1, 0.1, 0.2, 0.2, 0.9, 0]])] * right + [np.array([[0.6, 0.6, 0.2, 0.2, 0.8, 0]])] * wrong
    return truth, found


def test_detection_map_interval_from_hand_made_boxes():
    # 3 found bees then 1 false positive: recall 3/4 at precision 1, so AP = 76 of COCO's 101 recall points.
    # A resample with k of the 4th kind of image has AP (101 - 25k) / 101 (k < 4) or 0: k >= 3 has probability
    # 0.051 and k = 4 0.004, so the 2.5th percentile is 26/101; no missed bee (0.75^4 = 0.32) gives AP 1.
    truth, found = _bee_images(3, 1)
    got = detection_intervals(truth, found, ["bee"], {"bee": 0.9})
    assert got["map_50"]["value"] == pytest.approx(76 / 101)
    assert got["map_50"]["low"] == pytest.approx(26 / 101) and got["map_50"]["high"] == 1.0
    bee = got["per_label"]["bee"]
    assert bee["precision"]["low"] == bee["precision"]["high"] == 1.0  # at 0.9 only found bees are returned
    only_missed = int((resample_counts(4)[1:, :3].sum(axis=1) == 0).sum())  # nothing returned: no precision
    assert bee["precision"]["undefined"] == only_missed and bee["recall"]["undefined"] == 0
    assert bee["recall"]["value"] == 0.75 and bee["recall"]["high"] == 1.0


def test_detection_map_value_is_pycocotools_map_at_iou_half():
    rng = np.random.default_rng(4)
    truth, found, sizes = [], [], []
    for _ in range(25):
        boxes = rng.uniform(0, 0.6, (rng.integers(0, 4), 4)) * [1, 1, 0.6, 0.6] + [0, 0, 0.1, 0.1]
        labels = rng.integers(0, 2, len(boxes))
        jitter = boxes + rng.normal(0, 0.03, boxes.shape)
        extra = rng.uniform(0, 0.6, (2, 4)) * [1, 1, 0.5, 0.5] + [0, 0, 0.1, 0.1]
        rows = np.c_[np.r_[jitter, extra], rng.random(len(boxes) + 2).round(2), np.r_[labels, rng.integers(0, 2, 2)]]
        truth.append((labels, boxes))
        found.append(rows)
        sizes.append((640, 480))
    coco = dm.coco_map(truth, found, ["a", "b"], sizes)
    got = detection_intervals(truth, found, ["a", "b"], {"a": 0.5, "b": 0.5})
    assert got["map_50"]["value"] == pytest.approx(coco["map_50"], abs=1e-9)
    for name in ("a", "b"):
        assert got["per_label"][name]["coco_ap_50"]["value"] == pytest.approx(coco["per_label"][name]["ap_50"])
