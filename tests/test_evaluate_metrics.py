"""metrics.json from arrays: checked against scikit-learn and hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from edgelabels.evaluate.metrics import (COVERAGE_THRESHOLDS, coverage_table, evaluate_arrays,
                                         expected_calibration_error)

LABELS = ["cat", "dog", "fox", "owl"]  # fox: in the test set, never predicted; owl: absent from the test set


@pytest.fixture
def arrays():
    y_true = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 0, 1])
    probs = np.array([
        [0.70, 0.10, 0.15, 0.05], [0.60, 0.30, 0.05, 0.05], [0.40, 0.45, 0.10, 0.05], [0.90, 0.05, 0.04, 0.01],
        [0.20, 0.70, 0.05, 0.05], [0.10, 0.85, 0.04, 0.01], [0.50, 0.30, 0.10, 0.10], [0.30, 0.30, 0.25, 0.15],
        [0.20, 0.50, 0.20, 0.10], [0.45, 0.05, 0.40, 0.10], [0.55, 0.20, 0.20, 0.05], [0.05, 0.35, 0.10, 0.50],
    ])
    return y_true, probs


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_top_label_metrics_match_scikit_learn_over_labels_in_the_test_set(arrays):
    y_true, probs = arrays
    m = evaluate_arrays(y_true, probs, LABELS)
    y_pred = probs.argmax(axis=1)
    present = [0, 1, 2]
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y_true, y_pred))
    for average in ("macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(y_true, y_pred, labels=present, average=average,
                                                         zero_division=0)
        assert (m[f"precision_{average}"], m[f"recall_{average}"], m[f"f1_{average}"]) == pytest.approx((p, r, f))
    assert m["confusion_matrix"]["counts"] == skm.confusion_matrix(y_true, y_pred, labels=[0, 1, 2, 3]).tolist()
    assert m["log_loss"] == pytest.approx(skm.log_loss(y_true, probs, labels=[0, 1, 2, 3]))


def test_per_label_sensitivity_specificity_and_roc_auc_match_scikit_learn(arrays):
    y_true, probs = arrays
    m = evaluate_arrays(y_true, probs, LABELS)
    y_pred = probs.argmax(axis=1)
    for k, row in enumerate(m["per_label"][:3]):
        assert row["support"] == int((y_true == k).sum())
        assert row["sensitivity"] == pytest.approx(skm.recall_score(y_true == k, y_pred == k))
        assert row["specificity"] == pytest.approx(skm.recall_score(y_true != k, y_pred != k))
        assert row["roc_auc"] == pytest.approx(skm.roc_auc_score(y_true == k, probs[:, k]))
    fox = m["per_label"][2]
    assert fox["predicted"] == 0 and fox["sensitivity"] == 0.0
    assert m["roc_auc_macro"] == pytest.approx(np.mean([m["per_label"][k]["roc_auc"] for k in range(3)]))


def test_label_absent_from_test_set_gets_nulls_and_a_note_not_a_crash(arrays):
    y_true, probs = arrays
    m = evaluate_arrays(y_true, probs, LABELS)
    owl = m["per_label"][3]
    assert owl["support"] == 0
    assert owl["roc_auc"] is None and owl["sensitivity"] is None and owl["assumed_threshold"] is None
    assert owl["predicted"] == 1 and owl["specificity"] == pytest.approx(11 / 12)  # one image wrongly called owl
    assert owl["at_assumed_threshold"]["f1"] is None
    assert any("owl" in note for note in m["notes"])


def test_roc_auc_macro_equals_scikit_learn_one_vs_rest_when_every_label_is_present(arrays):
    y_true, probs = arrays
    keep = y_true < 3
    three = probs[keep][:, :3] / probs[keep][:, :3].sum(axis=1, keepdims=True)
    m = evaluate_arrays(y_true[keep], three, LABELS[:3])
    assert m["roc_auc_macro"] == pytest.approx(skm.roc_auc_score(y_true[keep], three, multi_class="ovr"))
    assert m["notes"] == []


def test_expected_calibration_error_on_a_hand_made_case():
    # Two bins used: 0.95 (accuracy 1/2, gap 0.45) and 0.55 (accuracy 1, gap 0.45), each half the images.
    y_true = np.array([0, 1, 0, 1])
    probs = np.array([[0.95, 0.05], [0.95, 0.05], [0.55, 0.45], [0.45, 0.55]])
    assert expected_calibration_error(y_true, probs) == pytest.approx(0.45)
    assert expected_calibration_error(np.array([0]), np.array([[1.0, 0.0]])) == 0.0


def test_coverage_table_counts_accepted_predictions_at_each_threshold():
    y_true = np.array([0, 0, 1, 1, 0])
    probs = np.array([[0.999, 0.001], [0.85, 0.15], [0.3, 0.7], [0.96, 0.04], [0.5, 0.5]])
    rows = {row["threshold"]: row for row in coverage_table(y_true, probs)}
    assert [r["threshold"] for r in rows.values()] == list(COVERAGE_THRESHOLDS)
    assert rows[0.5]["accepted"] == 5 and rows[0.5]["accuracy"] == pytest.approx(4 / 5)  # a 0.5/0.5 tie -> label 0
    assert rows[0.8]["accepted"] == 3 and rows[0.8]["accuracy"] == pytest.approx(2 / 3)
    assert rows[0.99]["accepted"] == 1 and rows[0.99]["accuracy"] == 1.0
    assert rows[0.999]["accepted"] == 1 and rows[0.999]["discarded_fraction"] == pytest.approx(0.8)


def test_coverage_discarded_fraction_never_decreases_with_the_threshold():
    rng = np.random.default_rng(3)
    probs = rng.dirichlet([0.3, 0.3, 0.3], size=500)
    y_true = rng.integers(0, 3, size=500)
    rows = coverage_table(y_true, probs)
    discarded = [row["discarded_fraction"] for row in rows]
    assert discarded == sorted(discarded)
    assert all(0 <= d <= 1 for d in discarded)


def test_confidences_that_do_not_sum_to_one_are_noted_and_still_give_a_log_loss():
    y_true = np.array([0, 1, 1])
    probs = np.array([[0.9, 0.3], [0.2, 0.6], [0.4, 0.9]])  # e.g. Rekognition's per-label confidences
    m = evaluate_arrays(y_true, probs, ["a", "b"])
    normalised = probs / probs.sum(axis=1, keepdims=True)
    assert m["log_loss"] == pytest.approx(skm.log_loss(y_true, normalised))
    assert any("renormalised" in note for note in m["notes"])


def test_arrays_that_do_not_fit_together_are_refused():
    with pytest.raises(ValueError, match="shape"):
        evaluate_arrays([0, 1], np.ones((3, 2)) / 2, ["a", "b"])
    with pytest.raises(ValueError, match="0..1"):
        evaluate_arrays([0, 2], np.ones((2, 2)) / 2, ["a", "b"])
    with pytest.raises(ValueError, match="min_confidence"):
        evaluate_arrays([0, 1], np.ones((2, 2)) / 2, ["a", "b"], min_confidence=50)
