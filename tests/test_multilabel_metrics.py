"""Multi-label metrics, loss and positive weights against values worked out by hand on small fixed arrays."""

import json

import numpy as np
import pytest

from edgelabels.evaluate.multilabel import (assumed_thresholds, certainty, coverage_table, evaluate_matrices,
                                            predicted_sets, set_metrics, write_multilabel_evaluation)
from edgelabels.evaluate.summary import build_summary, parse_summary
from edgelabels.train.multilabel_loader import positive_weights

# 4 images, labels (a, b): {a, b}, {a}, {b}, {}
TRUTH = np.array([[1, 1], [1, 0], [0, 1], [0, 0]])
PROBS = np.array([[0.9, 0.8], [0.6, 0.7], [0.2, 0.4], [0.7, 0.1]])


def test_label_and_set_scores_at_one_half_match_hand_counts():
    # predicted at 0.5: {a, b}, {a, b}, {}, {a}
    scores = set_metrics(TRUTH.astype(bool), predicted_sets(PROBS, [0.5, 0.5]))
    a, b = scores["per_label"]
    assert (a["tp"], a["fp"], a["fn"], a["tn"]) == (2, 1, 0, 1)
    assert a["precision"] == pytest.approx(2 / 3) and a["recall"] == 1.0 and a["f1"] == pytest.approx(0.8)
    assert (b["precision"], b["recall"], b["f1"]) == (0.5, 0.5, 0.5)
    assert scores["subset_accuracy"] == 0.25  # only the first image's whole set is right
    assert scores["hamming_loss"] == 3 / 8  # img1 b, img2 b, img3 a wrong
    assert scores["micro_f1"] == pytest.approx(6 / 9)  # 2 TP / (2 TP + FP + FN) with TP 3, FP 2, FN 1
    assert scores["macro_f1"] == pytest.approx(0.65)
    assert scores["precision"] == pytest.approx((2 / 3 + 0.5) / 2) and scores["recall"] == 0.75


def test_assumed_threshold_is_each_labels_f1_best_confidence():
    # a: at 0.6 -> {0, 1, 3}: F1 0.8 (0.9: 2/3, 0.7: 1/2, 0.2: 2/3); b: at 0.4 -> {0, 1, 2}: F1 0.8
    assert assumed_thresholds(TRUTH.astype(bool), PROBS) == [0.6, 0.4]
    assert assumed_thresholds(np.array([[0], [0]], bool), np.array([[0.3], [0.6]])) == [None]


def test_certainty_and_coverage_follow_the_stated_rule():
    # min over labels of |p - t| with t = (0.6, 0.4): 0.3, 0, 0, 0.1 (approximately: 0.7 - 0.6)
    np.testing.assert_allclose(certainty(PROBS, [0.6, 0.4]), [0.3, 0.0, 0.0, 0.1], atol=1e-12)
    rows = coverage_table(TRUTH.astype(bool), PROBS, [0.6, 0.4], margins=(0.05, 0.2, 0.35))
    # at 0.05 the first image (right) and the last (given a at 0.7, wrong) are accepted
    assert [(r["accepted"], r["subset_accuracy"]) for r in rows] == [(2, 0.5), (1, 1.0), (0, None)]
    assert rows[0]["discarded_fraction"] == 0.5


def test_evaluate_matrices_reports_auc_confusion_and_rekognition_summary_shape():
    metrics = evaluate_matrices(TRUTH, PROBS, ["a", "b"], min_confidence=0.5, thresholds=[0.5, 0.5])
    # a: positives 0.9, 0.6 vs negatives 0.2, 0.7: 3 of 4 pairs ordered; b: 0.8, 0.4 vs 0.7, 0.1: 3 of 4
    assert [row["roc_auc"] for row in metrics["per_label"]] == [0.75, 0.75]
    # at (0.6, 0.4): {a, b} right, {a, b} for {a} wrong, {b} right, {a} for {} wrong
    assert metrics["at_assumed_thresholds"]["subset_accuracy"] == 0.5
    assert metrics["at_given_thresholds"]["subset_accuracy"] == 0.25
    assert metrics["confusion_matrix"]["counts"] == [[2, 2], [1, 2]]  # a's images got a twice, b twice
    summary = parse_summary(json.loads(json.dumps(build_summary(metrics, run_id="r", number_of_training_images=9))))
    assert summary.thresholds == {"a": 0.6, "b": 0.4}
    assert [r.f1 for r in summary.label_results] == [pytest.approx(0.8), pytest.approx(0.8)]
    assert summary.number_of_testing_images == 4 and summary.number_of_training_images == 9


def test_evaluation_folder_has_a_self_contained_report_with_curves_coverage_and_the_exports_thresholds(tmp_path):
    out = tmp_path / "evaluation"
    write_multilabel_evaluation(out, paths=[f"img{i}.png" for i in range(4)], truth=TRUTH, probs=PROBS,
                                labels=["a", "b"], run_id="runs/shapes", review_threshold=0.2, thresholds=[0.5, 0.5])
    assert {p.name for p in (out / "plots").iterdir()} == {"precision_recall.png", "roc.png"}
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2  # both plots embedded: the page needs no file beside it
    assert "src='plots/" not in html
    md = (out / "report.md").read_text()
    assert "](plots/precision_recall.png)" in md and "](plots/roc.png)" in md
    # certainty at (0.6, 0.4) is 0.3, 0, 0, 0.1: at margin 0.05 the first (right) and last (wrong) are accepted
    assert "| 0.05 | 2 | 2 (50.00%) | 50.00% |" in md
    assert "| 0.45 | 0 | 4 (100.00%) | n/a |" in md
    assert "At the export's thresholds" in md and "| a | 0.5000 | 0.8000 |" in md
    assert "3 images have a label within 0.2 of its threshold" in md  # images 1-3: certainty 0, 0, 0.1
    assert len((out / "review" / "queue.csv").read_text().splitlines()) == 1 + 3


def test_mismatched_or_non_binary_truth_is_refused():
    with pytest.raises(ValueError, match="must both be"):
        evaluate_matrices(TRUTH[:, :1], PROBS, ["a", "b"])
    with pytest.raises(ValueError, match="0 or 1"):
        evaluate_matrices(TRUTH * 2, PROBS, ["a", "b"])


def test_positive_weight_is_negatives_over_positives_per_label():
    y = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 0], [0, 0, 0]], np.float32)
    assert positive_weights("balanced", ["a", "b", "c"], y).tolist() == [3.0, 1.0, 1.0]
    assert positive_weights({"b": 4}, ["a", "b", "c"], y).tolist() == [1.0, 4.0, 1.0]
    assert positive_weights("none", ["a", "b", "c"], y) is None


def test_loss_is_binary_cross_entropy_per_label_weighted_per_element():
    from edgelabels.models.multilabel import multilabel_loss

    y, p, w = np.array([[1.0, 0.0]]), np.array([[0.8, 0.4]]), np.array([[3.0, 1.0]])
    # (3 * -log 0.8 + -log 0.6) / 2 elements
    assert float(multilabel_loss()(y, p, sample_weight=w)) == pytest.approx((3 * 0.2231436 + 0.5108256) / 2, 1e-5)
    # focal, gamma 2: -log 0.8 * 0.2^2 and -log 0.6 * 0.4^2, averaged
    assert float(multilabel_loss(2.0)(y, p)) == pytest.approx((0.2231436 * 0.04 + 0.5108256 * 0.16) / 2, 1e-5)


def test_batches_weigh_each_positive_by_its_labels_weight_and_every_negative_by_one():
    from edgelabels.data.preprocess import PreprocessSpec
    from edgelabels.train.multilabel_loader import MultiHotBatches

    class Cache:  # two 2x2 black images
        paths = ["a.png", "b.png"]
        spec = PreprocessSpec(height=2, width=2, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))

        def __getitem__(self, index):
            return np.zeros((2, 2, 3), np.uint8)

    y = np.array([[1, 0, 1], [0, 1, 0]], np.float32)
    x, target, weight = MultiHotBatches(Cache(), y, batch_size=2, pos_weight=[3.0, 0.5, 2.0], workers=1)[0]
    assert target.tolist() == y.tolist()
    assert weight.tolist() == [[3.0, 1.0, 2.0], [1.0, 0.5, 1.0]]
    assert x.shape == (2, 2, 2, 3)
