"""Confident learning against a case worked by hand, its invariants, its edge cases, a synthetic 40%-noisy set of
cassette readings, and suspect boxes."""

from __future__ import annotations

import numpy as np
import pytest

from edgelabels.evaluate.label_issues import (
    MISSED,
    SPURIOUS,
    WRONG_LABEL,
    box_issues,
    calibrated_joint,
    confident_joint,
    estimated_issue_count,
    find_label_issues,
    label_quality,
    per_label_thresholds,
    rank_label_issues,
    suggested_labels,
    training_suspects,
)

# Three classes, ten examples. Truly: 2 is a 1 labelled 0, 5 is a 2 labelled 1, 9 is a 0 labelled 2;
# 6 is ambiguous (nothing confident); 1 is confident in two classes at once.
HAND_LABELS = [0, 0, 0, 1, 1, 1, 1, 2, 2, 2]
HAND_PROBS = [
    (0.90, 0.05, 0.05),  # 0
    (0.55, 0.45, 0.00),  # 1
    (0.10, 0.80, 0.10),  # 2
    (0.10, 0.80, 0.10),  # 3
    (0.25, 0.60, 0.15),  # 4
    (0.10, 0.20, 0.70),  # 5
    (0.45, 0.15, 0.40),  # 6
    (0.05, 0.05, 0.90),  # 7
    (0.10, 0.30, 0.60),  # 8
    (0.75, 0.10, 0.15),  # 9
]


def test_thresholds_are_the_mean_probability_of_each_class_over_the_examples_labelled_with_it():
    # t0 = (0.90 + 0.55 + 0.10) / 3 = 1.55 / 3 = 0.51667
    # t1 = (0.80 + 0.60 + 0.20 + 0.15) / 4 = 1.75 / 4 = 0.4375
    # t2 = (0.90 + 0.60 + 0.15) / 3 = 1.65 / 3 = 0.55
    assert per_label_thresholds(HAND_LABELS, HAND_PROBS) == pytest.approx([1.55 / 3, 0.4375, 0.55])


def test_confident_joint_counts_the_most_probable_class_above_threshold_and_skips_examples_with_none():
    # Classes reaching their threshold (t = 0.517, 0.4375, 0.55), then the row and column counted:
    # 0: p0 .90                      -> (0, 0)     5: p2 .70 (p1 .20 < .4375)      -> (1, 2)
    # 1: p0 .55 and p1 .45, .55 wins -> (0, 0)     6: .45 < .517, .15, .40 < .55   -> not counted
    # 2: p1 .80                      -> (0, 1)     7: p2 .90                       -> (2, 2)
    # 3: p1 .80                      -> (1, 1)     8: p2 .60 (p1 .30 < .4375)      -> (2, 2)
    # 4: p1 .60 (p0 .25 < .517)      -> (1, 1)     9: p0 .75 (p2 .15 < .55)        -> (2, 0)
    assert confident_joint(HAND_LABELS, HAND_PROBS).tolist() == [[2, 1, 0], [0, 2, 1], [1, 0, 2]]


def test_calibrated_joint_scales_each_row_to_its_label_count_and_sums_to_one():
    # Rows of C scaled to the label counts (3, 4, 3): row 0 [2,1,0] * 3/3; row 1 [0,2,1] * 4/3 = [0, 8/3, 4/3]
    # (example 6 was not counted); row 2 [1,0,2] * 3/3. Total 10 = n, so Q = that / 10.
    joint = calibrated_joint([[2, 1, 0], [0, 2, 1], [1, 0, 2]], HAND_LABELS)
    assert joint == pytest.approx(np.array([[0.2, 0.1, 0.0], [0.0, 0.8 / 3, 0.4 / 3], [0.1, 0.0, 0.2]]))
    assert joint.sum() == pytest.approx(1.0)


def test_estimated_issue_count_is_n_times_the_off_diagonal_mass_of_the_calibrated_joint():
    # 10 * (0.1 + 0.4/3 + 0.1) = 10 * 0.3333 = 3.33 -> 3
    assert estimated_issue_count(HAND_LABELS, HAND_PROBS) == 3


def test_prune_by_noise_rate_ranks_the_hand_worked_issues_by_normalized_margin():
    # Off-diagonal (i, j): round(10 Q[i, j]) examples labelled i with the largest margin p_j - p_i:
    # (0, 1): 1 of {0: -.85, 1: -.10, 2: +.70} -> 2;  (1, 2): round(1.33) = 1 of {3: -.70, 4: -.45, 5: +.50,
    # 6: +.25} -> 5;  (2, 0): 1 of {7: -.85, 8: -.50, 9: +.60} -> 9.
    # Normalized margin (p_given - max other + 1) / 2: 2: (.10 - .80 + 1)/2 = .15; 9: (.15 - .75 + 1)/2 = .20;
    # 5: (.20 - .70 + 1)/2 = .25.
    assert rank_label_issues(HAND_LABELS, HAND_PROBS).tolist() == [2, 9, 5]


def test_each_pruning_method_of_the_paper_picks_its_own_hand_worked_examples():
    # Prune by class: round(10 * off-diagonal row mass) lowest self-confidences per class:
    #   class 0: 1 of p0 {.90, .55, .10} -> 2; class 1: round(1.33) = 1 of p1 {.80, .60, .20, .15} -> 6;
    #   class 2: 1 of p2 {.90, .60, .15} -> 9.  Ranked: 2 (.15), 9 (.20), 6 ((.15 - .45 + 1)/2 = .35).
    # Both (C+NR): prune by class and by noise rate agree on 2 and 9.
    # Confident joint: the off-diagonal members of C: 2, 5, 9.
    # Confusion: argmax differs from the label: 2 (->1), 5 (->2), 6 (->0), 9 (->0); 1 is argmax 0 as labelled.
    assert rank_label_issues(HAND_LABELS, HAND_PROBS, "prune_by_class").tolist() == [2, 9, 6]
    assert rank_label_issues(HAND_LABELS, HAND_PROBS, "both").tolist() == [2, 9]
    assert rank_label_issues(HAND_LABELS, HAND_PROBS, "confident_joint").tolist() == [2, 9, 5]
    assert rank_label_issues(HAND_LABELS, HAND_PROBS, "confusion").tolist() == [2, 9, 5, 6]


def test_label_issues_carry_suggestions_ranks_and_both_noise_matrices():
    issues = find_label_issues(HAND_LABELS, HAND_PROBS)
    assert issues.rows() == [
        {"index": 2, "rank": 1, "given": 0, "suggested": 1, "confidence": 0.80, "quality": pytest.approx(0.15)},
        {"index": 9, "rank": 2, "given": 2, "suggested": 0, "confidence": 0.75, "quality": pytest.approx(0.20)},
        {"index": 5, "rank": 3, "given": 1, "suggested": 2, "confidence": 0.70, "quality": pytest.approx(0.25)},
    ]
    assert issues.estimated_count == 3
    # P(given i | true j) = Q[i, j] / column sum; columns of Q sum to .3, .1 + .8/3 = 1.1/3, .4/3 + .2 = 1/3:
    # column 0 [.2/.3, 0, .1/.3]; column 1 [.1 / (1.1/3), (.8/3) / (1.1/3), 0] = [3/11, 8/11, 0]; column 2 [0, .4, .6]
    assert issues.noise_matrix == pytest.approx(np.array([[2 / 3, 3 / 11, 0], [0, 8 / 11, 0.4], [1 / 3, 0, 0.6]]))
    # P(true i | given j) = Q[j, i] / row sum of Q (.3, .4, .3): given 0 -> [2/3, 1/3, 0]; 1 -> [0, 2/3, 1/3];
    # 2 -> [1/3, 0, 2/3], written as columns.
    assert issues.inverse_noise_matrix == pytest.approx(np.array([[2 / 3, 0, 1 / 3], [1 / 3, 2 / 3, 0],
                                                                  [0, 1 / 3, 2 / 3]]))


def test_prune_by_noise_rate_takes_the_largest_margin_not_the_largest_probability_of_the_other_class():
    # t0 = (.90 + .80 + .45 + .05) / 4 = .55; t1 = (.70 + .20) / 2 = .45; t2 = (.80 + .80) / 2 = .80.
    # Counted: 0, 1 -> (0, 0); 2: p1 .55 >= .45 (p0 .45 < .55) -> (0, 1); 3: .05, .42, .53 all short -> none;
    # 4 -> (1, 1); 5: .10, .20, .70 all short -> none; 6, 7 -> (2, 2). C = [[2, 1, 0], [0, 1, 0], [0, 0, 2]].
    # Q = ([2, 1, 0] * 4/3, [0, 1, 0] * 2/1, [0, 0, 2]) / 8: Q[0, 1] = (4/3) / 8 = 1/6; 8 * 1/6 = 1.33 -> 1 example.
    # Margins p1 - p0 of the examples labelled 0: -.80, -.70, .10, .37 -> example 3, though example 2 has the
    # larger p1 (.55 against .42) and is the one the confident joint counted.
    labels = [0, 0, 0, 0, 1, 1, 2, 2]
    probs = [(0.90, 0.10, 0.00), (0.80, 0.10, 0.10), (0.45, 0.55, 0.00), (0.05, 0.42, 0.53),
             (0.20, 0.70, 0.10), (0.10, 0.20, 0.70), (0.10, 0.10, 0.80), (0.10, 0.10, 0.80)]
    assert confident_joint(labels, probs).tolist() == [[2, 1, 0], [0, 1, 0], [0, 0, 2]]
    assert rank_label_issues(labels, probs).tolist() == [3]
    assert rank_label_issues(labels, probs, "confident_joint").tolist() == [2]


def clean_set(per_class: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Three classes, every example confident (0.8) in its own label."""
    labels = np.repeat(np.arange(3), per_class)
    return labels, np.where(np.eye(3)[labels] == 1, 0.8, 0.1)


@pytest.mark.parametrize("method", ["prune_by_noise_rate", "prune_by_class", "both", "confident_joint", "confusion"])
def test_a_perfectly_labelled_confident_set_has_no_issues(method):
    labels, probs = clean_set()
    assert rank_label_issues(labels, probs, method).tolist() == []
    assert estimated_issue_count(labels, probs) == 0


def test_swapping_two_labels_in_a_clean_set_finds_exactly_those_two():
    labels, probs = clean_set()
    labels[[1, 6]] = labels[[6, 1]]  # example 1 (truly 0) now says 1, example 6 (truly 1) says 0
    issues = find_label_issues(labels, probs)
    # Both have normalized margin (.1 - .8 + 1) / 2 = .15: tied, kept in index order.
    assert issues.indices.tolist() == [1, 6]
    assert issues.suggested.tolist() == [0, 1]
    assert issues.estimated_count == 2


def test_issues_are_ranked_by_normalized_margin_unless_self_confidence_is_asked_for():
    # Examples 0-2 are labelled 0 but most probably 1 (the confusion method takes all three).
    # normalized margin (p0 - max other + 1) / 2:  0: (.30 - .65 + 1)/2 = .325;  1: (.25 - .40 + 1)/2 = .425;
    # 2: (.20 - .80 + 1)/2 = .20  -> 2, 0, 1.  Self-confidence p0: .30, .25, .20  -> 2, 1, 0.
    labels = [0, 0, 0, 0, 0, 1, 1, 2]
    probs = [(0.30, 0.65, 0.05), (0.25, 0.40, 0.35), (0.20, 0.80, 0.00), (0.9, 0.05, 0.05), (0.9, 0.05, 0.05),
             (0.1, 0.8, 0.1), (0.1, 0.8, 0.1), (0.1, 0.1, 0.8)]
    assert label_quality(labels, probs)[:3] == pytest.approx([0.325, 0.425, 0.20])
    assert label_quality(labels, probs, "self_confidence")[:3] == pytest.approx([0.30, 0.25, 0.20])
    assert rank_label_issues(labels, probs, "confusion").tolist() == [2, 0, 1]
    assert rank_label_issues(labels, probs, "confusion", score="self_confidence").tolist() == [2, 1, 0]


def test_a_class_with_no_examples_and_a_class_never_confident_keep_identity_columns():
    # Labels use 0 and 1 only; class 2 has no examples: no threshold (infinite), a zero row and column.
    # t0 = .90; t1 = (.08 + .05) / 2 = .065. Example 1: p0 .92 >= .90 and p1 .08 >= .065 -> argmax 0 -> (1, 0);
    # example 2: p0 .95 >= .90, p1 .05 < .065 -> (1, 0). So class 1 is never the confident class: C's column 1
    # is zero too. All three counted: Q = C / 3 = [[1/3, 0, 0], [2/3, 0, 0], [0, 0, 0]].
    labels, probs = [0, 1, 1], [(0.90, 0.05, 0.05), (0.92, 0.08, 0.00), (0.95, 0.05, 0.00)]
    issues = find_label_issues(labels, probs)
    assert issues.thresholds == pytest.approx([0.90, 0.065, np.inf])
    assert issues.confident_joint.tolist() == [[1, 0, 0], [2, 0, 0], [0, 0, 0]]
    # Column 0 of P(given | true) is [1/3, 2/3, 0]; true 1 and 2 were never found: identity columns.
    assert issues.noise_matrix == pytest.approx(np.array([[1 / 3, 0, 0], [2 / 3, 1, 0], [0, 0, 1]]))
    # P(true | given 0) = P(true | given 1) = [1, 0, 0]; given 2 never used: identity column.
    assert issues.inverse_noise_matrix == pytest.approx(np.array([[1, 1, 0], [0, 0, 0], [0, 0, 1]]))
    # 3 * 2/3 = 2 issues: (1, 0) takes round(3 * 2/3) = 2 of the examples labelled 1 -> both, both suggested 0.
    assert issues.estimated_count == 2
    assert sorted(issues.indices.tolist()) == [1, 2] and issues.suggested.tolist() == [0, 0]


def test_probabilities_that_do_not_sum_to_one_are_refused():
    with pytest.raises(ValueError, match="example 1 sum to 1.3000, not 1"):
        rank_label_issues([0, 1], [(0.9, 0.1), (0.5, 0.8)])


@pytest.mark.parametrize(("labels", "probs", "problem"), [
    ([0, 3], [(0.9, 0.1), (0.2, 0.8)], "class indices 0-1"),
    ([0], [(0.9, 0.1), (0.2, 0.8)], r"\(n, k\) for 1 labels"),
    ([], np.zeros((0, 2)), "no examples"),
    ([0, 0], [(1.0,), (1.0,)], "two or more classes"),
    ([0, 1], [(1.2, -0.2), (0.2, 0.8)], "within 0-1"),
])
def test_malformed_inputs_are_refused_saying_what_is_wrong(labels, probs, problem):
    with pytest.raises(ValueError, match=problem):
        find_label_issues(labels, probs)


def test_unknown_method_or_score_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match="prune_by_noise_rate, prune_by_class"):
        rank_label_issues([0, 1], [(0.9, 0.1), (0.2, 0.8)], method="prune")
    with pytest.raises(ValueError, match="normalized_margin, self_confidence"):
        label_quality([0, 1], [(0.9, 0.1), (0.2, 0.8)], score="margin")


def test_one_example_is_its_own_threshold_and_never_an_issue():
    # t0 = .3 (its own p0); t1 undefined (infinite): the only class it reaches is its own.
    issues = find_label_issues([0], [(0.3, 0.7)])
    assert issues.confident_joint.tolist() == [[1, 0], [0, 0]]
    assert issues.indices.tolist() == [] and issues.estimated_count == 0


def test_all_examples_with_one_label_the_model_agrees_with_give_no_issues():
    labels, probs = [1, 1, 1], [(0.1, 0.9), (0.3, 0.7), (0.2, 0.8)]
    issues = find_label_issues(labels, probs)
    assert issues.joint.tolist() == [[0, 0], [0, 1]]
    assert issues.indices.tolist() == [] and issues.estimated_count == 0
    assert suggested_labels(probs).tolist() == [1, 1, 1]


# The cassette users' readings, P(given | true) as [given, true] over (negative, positive, invalid): faint
# positives read negative (40%), invalid cassettes read negative (30%) or positive (25%), and slips (15% of
# negatives read positive, 5% invalid; 5% of positives read invalid). With a third of each true result the
# share wrong is (20% + 45% + 55%) / 3 = 40%.
USER_NOISE = np.array([[0.80, 0.40, 0.30],
                       [0.15, 0.55, 0.25],
                       [0.05, 0.05, 0.45]])


def noisy_readings(seed: int, per_class: int = 1000, concentration: float = 6.0):
    """(true, given, probs): exactly round(per_class * USER_NOISE[g, t]) examples of true t given g, and
    out-of-sample-like probabilities from Dirichlet(1 + concentration at the true class): a model that has
    learnt the truth through the noise (mean true-class probability 7/9; its top class right about 98.5%)."""
    rng = np.random.default_rng(seed)
    true = np.repeat(np.arange(3), per_class)
    given = true.copy()
    for t in range(3):
        members = rng.permutation(np.flatnonzero(true == t))
        cuts = np.cumsum(np.rint(USER_NOISE[:, t] * per_class).astype(int))[:-1]
        for g, part in enumerate(np.split(members, cuts)):
            given[part] = g
    probs = np.stack([rng.dirichlet(1 + concentration * np.eye(3)[t]) for t in true])
    return true, given, probs


@pytest.mark.parametrize("method", ["prune_by_noise_rate", "prune_by_class"])
def test_forty_percent_wrong_user_readings_are_found_with_precision_and_recall_above_ninety_percent(method):
    true, given, probs = noisy_readings(seed=0)
    wrong = given != true
    assert wrong.sum() == 1200  # 1000 * (.20 + .45 + .55)
    issues = find_label_issues(given, probs, method)
    found = np.zeros(len(given), dtype=bool)
    found[issues.indices] = True
    precision, recall = (found & wrong).sum() / found.sum(), (found & wrong).sum() / wrong.sum()
    assert precision >= 0.9 and recall >= 0.9, (precision, recall)
    assert abs(issues.estimated_count - 1200) <= 60  # within 5% of the truth
    assert np.abs(issues.noise_matrix - USER_NOISE).max() < 0.05
    # Where it suggests a label, the suggestion is the truth for nearly all found wrong readings.
    assert (issues.suggested == true[issues.indices]).mean() >= 0.95


# Boxes (left, top, width, height) in ratios; labels "window" (0) and "well" (1); rows [box, score, class].
WINDOW, WELL = 0, 1
GROUND_TRUTH = [
    ([WINDOW, WELL, WINDOW, WELL],
     [(0.1, 0.1, 0.2, 0.2), (0.5, 0.5, 0.2, 0.2), (0.7, 0.1, 0.2, 0.2), (0.7, 0.6, 0.2, 0.2)]),
    ([], np.zeros((0, 4))),
]
PREDICTIONS = [
    np.array([
        (0.1, 0.1, 0.2, 0.2, 0.90, WINDOW),   # a: matches drawn window 0
        (0.5, 0.5, 0.2, 0.2, 0.80, WINDOW),   # b: a confident window exactly over drawn well 1
        (0.1, 0.6, 0.2, 0.2, 0.70, WELL),     # c: a confident well where nothing is drawn
        (0.4, 0.8, 0.1, 0.1, 0.20, WELL),     # d: not confident: ignored
        (0.11, 0.1, 0.2, 0.2, 0.85, WINDOW),  # e: a confident duplicate of a over matched window 0: no issue
        (0.8, 0.6, 0.2, 0.2, 0.95, WELL),     # f: a well shifted right of drawn well 3: IoU 1/3
    ]),
    np.array([(0.2, 0.2, 0.3, 0.3, 0.60, WINDOW)]),  # image 1 has nothing drawn
]


def test_suspect_boxes_are_missed_spurious_or_wrongly_labelled_ranked_by_score():
    # Drawn window 2: no prediction of its label within IoU .5 (a, b, e lie elsewhere; best IoU 0) -> spurious, 1.0.
    # Drawn well 1: no well matches, window b covers it (IoU 1) at .80 -> wrong label, suggested window.
    # Drawn well 3 vs f: overlap .1 x .2 = .02, union .04 + .04 - .02 = .06, IoU 1/3 < .5 -> spurious or
    # misplaced, 1 - 1/3; and f itself overlaps nothing drawn at IoU .5 -> missed, .95 (the two halves of a
    # misplaced box). c -> missed, .70. Image 1's window -> missed, .60. Highest score first.
    found = [(i.image, i.kind, i.box, i.given, i.suggested, i.score)
             for i in box_issues(GROUND_TRUTH, PREDICTIONS, ["window", "well"], 0.5)]
    assert found == [(0, SPURIOUS, 2, WINDOW, None, 1.0), (0, MISSED, 5, None, WELL, 0.95),
                     (0, WRONG_LABEL, 1, WELL, WINDOW, 0.80), (0, MISSED, 2, None, WELL, 0.70),
                     (0, SPURIOUS, 3, WELL, None, pytest.approx(2 / 3)), (1, MISSED, 0, None, WINDOW, 0.60)]


def test_a_label_without_a_threshold_has_no_confident_boxes_to_report():
    # With no threshold for "well", c and f are not confident: no missed wells; the drawn boxes' issues remain.
    found = [(i.image, i.kind, i.box) for i in box_issues(GROUND_TRUTH, PREDICTIONS, ["window", "well"],
                                                          {"window": 0.5, "well": None})]
    assert found == [(0, SPURIOUS, 2), (0, WRONG_LABEL, 1), (0, SPURIOUS, 3), (1, MISSED, 0)]


@pytest.mark.parametrize("method", ["prune_by_class", "prune_by_noise_rate", "both"])
def test_a_pruning_method_never_suspects_an_example_whose_most_probable_class_is_its_label(method):
    # Noisy, overlapping classes: prune_by_class's lowest self-confidences of a row include examples the model
    # still puts in their given class (as first written it took 2 such among its 151 here); cleanlab drops them too.
    rng = np.random.default_rng(7)
    truth = rng.integers(0, 3, 600)
    labels = np.where(rng.random(600) < 0.35, rng.integers(0, 3, 600), truth)
    probs = rng.dirichlet(np.ones(3), 600) * 0.5
    probs[np.arange(600), truth] += 0.5
    indices = rank_label_issues(labels, probs, method)
    assert len(indices) > 0
    assert (probs[indices].argmax(axis=1) != labels[indices]).all()


def test_training_suspects_are_the_images_whose_label_relative_to_its_share_is_not_given_or_unanswered():
    # Answered given labels 0, 0, 0, 1, 1: priors 3/5 and 2/5 (the zero row, no answer, is not counted).
    labels = [0, 0, 0, 1, 1, 1]
    probs = [(0.90, 0.10),  # .9/.6 = 1.5 > .1/.4 = .25: 0, as given
             (0.55, 0.45),  # .55/.6 = .917 < .45/.4 = 1.125: 1 (its plain argmax is 0): suspect
             (0.20, 0.80),  # .333 < 2: 1: suspect
             (0.80, 0.20),  # 1.333 > .5: 0, given 1: suspect
             (0.58, 0.42),  # .967 < 1.05: 1, as given (its plain argmax is 0)
             (0.00, 0.00)]  # no answer: suspect
    assert training_suspects(labels, probs).tolist() == [False, True, True, True, False, True]
    # Label 2's only image got no answer: prior 0, so label 2 is never the argmax (.3/0 would be infinite):
    # (.5/.5 = 1, .2/.5 = .4) -> 0 as given; (.2, 1.6) -> 1 as given; the zero row is a suspect.
    assert training_suspects([0, 1, 2], [(0.5, 0.2, 0.3), (0.1, 0.8, 0.1), (0, 0, 0)]).tolist() == [False, False, True]
