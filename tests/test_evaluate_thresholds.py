"""Assumed thresholds (the F1-maximising confidence per label) and one-vs-rest metrics at thresholds."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from edgelabels.evaluate.metrics import evaluate_arrays
from edgelabels.evaluate.thresholds import assumed_thresholds, label_metrics


def _binary(positive_scores, negative_scores):
    """Two labels: label 1's confidence is the given score, label 0 gets the rest."""
    scores = np.array(positive_scores + negative_scores, dtype=float)
    y_true = np.array([1] * len(positive_scores) + [0] * len(negative_scores))
    return y_true, np.stack([1 - scores, scores], axis=1)


def test_assumed_threshold_is_the_confidence_with_the_best_f1():
    # Label 1: at 0.9 F1 = 0.5, at 0.8 F1 = 0.8, at 0.7 F1 = 0.667, at 0.6 F1 = 6/7 (best), at 0.3 F1 = 0.75.
    y_true, probs = _binary([0.9, 0.8, 0.6], [0.7, 0.3, 0.1])
    threshold = assumed_thresholds(y_true, probs)[1]
    assert threshold == pytest.approx(0.6)
    row = label_metrics(y_true, probs, [None, threshold])[1]
    assert (row["precision"], row["recall"], row["f1"]) == pytest.approx((0.75, 1.0, 6 / 7))
    assert (row["tp"], row["fp"], row["fn"], row["tn"]) == (3, 1, 0, 2)


def test_equal_f1_goes_to_the_higher_threshold():
    # At 0.9: P 1, R 1/2; at 0.2: P 1/2, R 1: both F1 = 2/3.
    y_true, probs = _binary([0.9, 0.2], [0.5, 0.4])
    assert assumed_thresholds(y_true, probs)[1] == pytest.approx(0.9)


def test_assumed_threshold_beats_every_other_cut_on_random_scores():
    rng = np.random.default_rng(7)
    y_true = rng.integers(0, 3, size=200)
    probs = rng.dirichlet([1, 1, 1], size=200) * 0.5 + np.eye(3)[y_true] * 0.5
    thresholds = assumed_thresholds(y_true, probs)
    for k in range(3):
        best = label_metrics(y_true, probs, thresholds)[k]["f1"]
        for cut in np.linspace(0, 1, 101):
            f1 = skm.f1_score(y_true == k, probs[:, k] >= cut, zero_division=0)
            assert f1 <= best + 1e-12


def test_label_metrics_at_min_confidence_match_scikit_learn_one_vs_rest():
    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 3, size=60)
    probs = rng.dirichlet([1, 1, 1], size=60)
    rows = label_metrics(y_true, probs, 0.4)
    for k, row in enumerate(rows):
        predicted = probs[:, k] >= 0.4
        assert row["threshold"] == 0.4
        assert row["precision"] == pytest.approx(skm.precision_score(y_true == k, predicted))
        assert row["recall"] == pytest.approx(skm.recall_score(y_true == k, predicted))
        assert row["f1"] == pytest.approx(skm.f1_score(y_true == k, predicted))


def test_undefined_ratios_are_none_not_zero():
    y_true = np.array([0, 0, 1])
    probs = np.array([[0.6, 0.4], [0.7, 0.3], [0.55, 0.45]])
    rows = label_metrics(y_true, probs, 0.5)
    assert rows[1]["precision"] is None  # label 1 never reaches 0.5: nothing predicted
    assert rows[1]["recall"] == 0.0 and rows[1]["f1"] == 0.0


def test_rekognition_aggregates_are_macro_means_of_label_values_at_assumed_thresholds():
    rng = np.random.default_rng(2)
    y_true = rng.integers(0, 3, size=90)
    probs = rng.dirichlet([1, 1, 1], size=90) * 0.6 + np.eye(3)[y_true] * 0.4
    m = evaluate_arrays(y_true, probs, ["a", "b", "c"], min_confidence=0.5)
    for key in ("precision", "recall", "f1"):
        values = [row["at_assumed_threshold"][key] for row in m["per_label"]]
        assert m["at_assumed_thresholds"][key] == pytest.approx(np.mean(values))
        at_min = [row["at_min_confidence"][key] for row in m["per_label"]]
        assert m["at_min_confidence"][key] == pytest.approx(np.mean(at_min))
