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


def _two_label_rows(confidences_and_truth):
    """(top confidence, predicted label, true label) -> (y_true, probs) for two labels."""
    probs = [[c, 1 - c] if predicted == 0 else [1 - c, c] for c, predicted, _ in confidences_and_truth]
    return np.array([t for _, _, t in confidences_and_truth]), np.array(probs)


def test_review_threshold_is_the_lowest_confidence_reaching_the_accuracy_on_validation():
    from edgelabels.evaluate.metrics import review_threshold_for

    # top confidences 0.99 right, 0.95 right, 0.9 wrong, 0.8 right, 0.6 right (counted by hand below)
    y, probs = _two_label_rows([(0.99, 0, 0), (0.95, 1, 1), (0.9, 0, 1), (0.8, 1, 1), (0.6, 0, 0)])
    strict = review_threshold_for(y, probs, 0.99)  # only the two most confident are all right
    assert strict["threshold"] == pytest.approx(0.95) and strict["sent_to_human"] == pytest.approx(3 / 5)
    loose = review_threshold_for(y, probs, 0.75)  # 3 of 4 right at 0.8, 4 of 5 at 0.6: the lowest wins
    assert loose["threshold"] == pytest.approx(0.6) and loose["accepted_accuracy"] == pytest.approx(0.8)
    assert loose["sent_to_human"] == 0


def test_review_threshold_cuts_only_between_different_confidences_and_never_accepts_no_answer():
    from edgelabels.evaluate.metrics import review_threshold_for

    # two images at 0.9, one wrong: a threshold of 0.9 accepts both (1 of 2 wrong), so 0.95 it is
    y, probs = _two_label_rows([(0.95, 0, 0), (0.9, 0, 0), (0.9, 0, 1)])
    assert review_threshold_for(y, probs, 0.99)["threshold"] == pytest.approx(0.95)
    # the most confident is wrong: nothing reaches 99%, everything goes to a human
    y, probs = _two_label_rows([(0.97, 0, 1), (0.8, 0, 0)])
    choice = review_threshold_for(y, probs, 0.99)
    assert choice["threshold"] > 0.97 and choice["accepted_accuracy"] is None and choice["sent_to_human"] == 1.0
    # a row of zeros (no answer) is never accepted, even at a low target
    choice = review_threshold_for(np.array([0, 0]), np.array([[0.7, 0.3], [0.0, 0.0]]), 0.5)
    assert choice["threshold"] == pytest.approx(0.7) and choice["sent_to_human"] == pytest.approx(0.5)


def test_an_image_with_no_answer_is_wrong_missed_and_sent_to_a_human():
    # three images: right, no answer (a row of zeros: no result window found), right
    metrics = evaluate_arrays([0, 1, 1], [[0.9, 0.1], [0.0, 0.0], [0.2, 0.8]], ["a", "b"])
    assert metrics["unanswered"] == 1
    assert metrics["accuracy"] == pytest.approx(2 / 3)  # not "a", as argmax of zeros would say
    b = metrics["per_label"][1]
    assert (b["support"], b["predicted"], b["sensitivity"]) == (2, 1, 0.5)
    assert metrics["per_label"][0]["specificity"] == 1.0  # no answer is no false "a"
    at_half = metrics["coverage"][0]
    assert (at_half["threshold"], at_half["accepted"], at_half["accuracy"]) == (0.5, 2, 1.0)
