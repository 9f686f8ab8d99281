"""Which given labels are likely wrong: confident learning (Northcutt, Jiang, Chuang, JAIR 2021), numpy only.

Written here from the paper (cleanlab, the authors' library, is AGPL-3.0 and this project is Apache-2.0).
Inputs: the given labels (n,) as class indices and out-of-sample predicted probabilities (n, k), one row per
example (k-fold: each example scored by a model that never trained on it; in-sample probabilities have learned
the wrong labels and hide them). Notation of the paper: ỹ the given label, y* the unknown true one.

- Per-label threshold t_j: the mean probability of class j over the examples labelled j (Eq. 2), the model's
  expected self-confidence for j; a class nobody labelled has no threshold (infinite: nothing reaches it).
- Confident joint C[i, j]: the examples labelled i whose probability of j reaches t_j; when several classes
  reach their thresholds, the most probable of them (Eq. 1). Examples reaching none are not counted.
- Calibrated joint Q (Eq. 3): each row of C scaled to the count of its given label, then all divided by n,
  so Q estimates P(ỹ = i, y* = j) and sums to 1. The noise matrix P(ỹ | y*) and its inverse P(y* | ỹ)
  follow from Q's columns and rows.
- Estimated number of wrong labels: n times Q's off-diagonal mass.
- Which ones (section 3.2): `prune_by_noise_rate` (PBNR, the default) takes, for each off-diagonal (i, j),
  the round(n Q[i, j]) examples labelled i with the largest margin p_j - p_i; `prune_by_class` (PBC) the
  round(n sum_{j != i} Q[i, j]) examples labelled i of lowest self-confidence p_i; `both` (C+NR) those
  both take (each keeping only examples whose most probable class is not their label, as cleanlab does);
  `confident_joint` the off-diagonal members of C; `confusion` (C_confusion) every example whose most probable
  class is not its label.
Found issues are ranked by label quality, lowest first: `normalized_margin` (p_given minus the largest other
probability, mapped from [-1, 1] to [0, 1]) or `self_confidence` (p_given).

Detection: `box_issues` compares one model's boxes with the ground truth of each image, with the matching
rules of detection_metrics.py (IoU from data/boxes.py): confident boxes nothing was drawn under (missed
labels), drawn boxes no prediction of their label matches (spurious or misplaced), and drawn boxes a
confident prediction of another label covers (wrong label).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgelabels.data.boxes import iou_matrix
from edgelabels.evaluate.detection_metrics import IOU, class_indices, match, prediction_rows

METHODS = ("prune_by_noise_rate", "prune_by_class", "both", "confident_joint", "confusion")
SCORES = ("normalized_margin", "self_confidence")
SUM_TOLERANCE = 1e-3  # float32 softmax rows sum to 1 within about 1e-6; a looser gap means scores, not probabilities


def checked(labels, probs) -> tuple[np.ndarray, np.ndarray]:
    """labels as int64 (n,), probs as float64 (n, k); ValueError naming what is wrong."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels).reshape(-1)
    if probs.ndim != 2 or probs.shape[0] != len(labels):
        raise ValueError(f"probabilities must be (n, k) for {len(labels)} labels, not {probs.shape}")
    if not len(labels):
        raise ValueError("no examples: confident learning needs at least one labelled example")
    if probs.shape[1] < 2:
        raise ValueError(f"{probs.shape[1]} class: a label can only be wrong among two or more classes")
    if labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() >= probs.shape[1]:
        raise ValueError(f"labels must be class indices 0-{probs.shape[1] - 1}, got {np.unique(labels)[:10]}")
    if not np.isfinite(probs).all() or probs.min() < 0 or probs.max() > 1:
        raise ValueError("probabilities must be finite and within 0-1")
    sums = probs.sum(axis=1)
    worst = int(np.abs(sums - 1).argmax())
    if abs(sums[worst] - 1) > SUM_TOLERANCE:
        raise ValueError(f"probabilities of example {worst} sum to {sums[worst]:.4f}, not 1: pass softmax outputs "
                         f"(one class per example), not independent scores")
    return labels.astype(np.int64), probs


def per_label_thresholds(labels, probs) -> np.ndarray:
    """t_j = mean p_j over the examples labelled j (k,); infinite for a class with no examples."""
    labels, probs = checked(labels, probs)
    counts = np.bincount(labels, minlength=probs.shape[1])
    sums = np.bincount(labels, weights=probs[np.arange(len(labels)), labels], minlength=probs.shape[1])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.inf)


def confident_classes(probs, thresholds) -> np.ndarray:
    """Per example, the most probable class among those reaching their threshold; -1 where none does."""
    above = probs >= thresholds[None, :]
    best = np.where(above, probs, -np.inf).argmax(axis=1)
    return np.where(above.any(axis=1), best, -1)


def confident_joint(labels, probs, thresholds=None) -> np.ndarray:
    """C (k, k) int64: C[i, j] counts the examples labelled i confidently in class j (Eq. 1)."""
    labels, probs = checked(labels, probs)
    thresholds = per_label_thresholds(labels, probs) if thresholds is None else np.asarray(thresholds, np.float64)
    true = confident_classes(probs, thresholds)
    counted = true >= 0
    k = probs.shape[1]
    return np.bincount(labels[counted] * k + true[counted], minlength=k * k).reshape(k, k)


def calibrated_joint(confident_joint, labels) -> np.ndarray:
    """Q (k, k): each row of C scaled to its given label's count, divided by n (Eq. 3); sums to 1.
    A given label with no examples keeps a zero row (nothing to scale)."""
    joint = np.asarray(confident_joint, dtype=np.float64)
    counts = np.bincount(np.asarray(labels, dtype=np.int64).reshape(-1), minlength=len(joint))
    rows = joint.sum(axis=1, keepdims=True)
    scaled = np.divide(joint, rows, out=np.zeros_like(joint), where=rows > 0) * counts[:, None]
    return scaled / scaled.sum()


def noise_matrices(joint) -> tuple[np.ndarray, np.ndarray]:
    """(P(given=i | true=j) as [i, j], P(true=i | given=j) as [i, j]): both with columns summing to 1.
    A true class never found confidently, or a given label nobody used, has no evidence of noise: its
    column is the identity's."""
    joint = np.asarray(joint, dtype=np.float64)
    identity = np.eye(len(joint))
    true_prior = joint.sum(axis=0, keepdims=True)
    given_prior = joint.sum(axis=1, keepdims=True)
    noise = np.where(true_prior > 0, joint / np.where(true_prior > 0, true_prior, 1), identity)
    inverse = np.where(given_prior.T > 0, joint.T / np.where(given_prior.T > 0, given_prior.T, 1), identity)
    return noise, inverse


def estimated_issue_count(labels, probs) -> int:
    """n times the calibrated joint's off-diagonal mass: how many given labels are estimated wrong."""
    labels, probs = checked(labels, probs)
    joint = calibrated_joint(confident_joint(labels, probs), labels)
    return int(round(len(labels) * (1 - np.trace(joint))))


def label_quality(labels, probs, score: str = "normalized_margin") -> np.ndarray:
    """Per example, how much the model believes its given label (n,), 0-1, lower is worse."""
    labels, probs = checked(labels, probs)
    given = probs[np.arange(len(labels)), labels]
    if score == "self_confidence":
        return given
    if score == "normalized_margin":
        others = probs.copy()
        others[np.arange(len(labels)), labels] = -np.inf
        return (given - others.max(axis=1) + 1) / 2
    raise ValueError(f"unknown label quality score {score!r}: choose one of {', '.join(SCORES)}")


def suggested_labels(probs) -> np.ndarray:
    """The most probable class of each example: what the out-of-sample model would have labelled."""
    return np.asarray(probs).argmax(axis=1)


def training_suspects(labels, probs) -> np.ndarray:
    """Which examples to leave out of the next round's training (n,) bool: those whose most probable label relative
    to that label's share of the given labels is not their given label, argmax_j p_j / prior_j != given (prior_j:
    the share of label j among the answered examples' given labels), and those that got no answer (a row of zeros).
    Recall before precision: it cleans training data (a model trained on very noisy labels learns the noise; one
    trained without these learns the truth better), it is not what an audit reports. Dividing by the prior keeps
    a rare label's members from being pulled to the common one. A label no answered example was given has no
    share to compare against and is never the argmax."""
    labels = np.asarray(labels).reshape(-1)
    answered = np.asarray(probs, dtype=np.float64).reshape(len(labels), -1).any(axis=1)
    suspects = ~answered
    if not answered.any():
        return suspects
    given, p = checked(labels[answered], np.asarray(probs, dtype=np.float64)[answered])
    prior = np.bincount(given, minlength=p.shape[1]) / len(given)
    relative = np.divide(p, prior, out=np.full_like(p, -np.inf), where=prior > 0)
    suspects[answered] = relative.argmax(axis=1) != given
    return suspects


def rank_label_issues(labels, probs, method: str = "prune_by_noise_rate",
                      score: str = "normalized_margin") -> np.ndarray:
    """Indices of the examples whose given label is likely wrong, worst (lowest `score`) first."""
    labels, probs = checked(labels, probs)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
    if method == "confusion":
        found = suggested_labels(probs) != labels
    elif method == "confident_joint":
        true = confident_classes(probs, per_label_thresholds(labels, probs))
        found = (true >= 0) & (true != labels)
    else:
        joint = calibrated_joint(confident_joint(labels, probs), labels)
        by_class, by_rate = _prune_by_class(labels, probs, joint), _prune_by_noise_rate(labels, probs, joint)
        found = {"prune_by_class": by_class, "prune_by_noise_rate": by_rate, "both": by_class & by_rate}[method]
        # An example whose most probable class is its given label is not an issue, whatever its rank in its class
        # (cleanlab's filter does the same): a suspect suggesting the label it has would tell a person nothing
        found &= suggested_labels(probs) != labels
    chosen = np.flatnonzero(found)
    return chosen[np.argsort(label_quality(labels, probs, score)[chosen], kind="stable")]


def _prune_by_class(labels, probs, joint) -> np.ndarray:
    found = np.zeros(len(labels), dtype=bool)
    for i in range(len(joint)):
        members = np.flatnonzero(labels == i)
        count = int(round(len(labels) * (joint[i].sum() - joint[i, i])))
        found[members[np.argsort(probs[members, i], kind="stable")[:count]]] = True
    return found


def _prune_by_noise_rate(labels, probs, joint) -> np.ndarray:
    found = np.zeros(len(labels), dtype=bool)
    for i in range(len(joint)):
        members = np.flatnonzero(labels == i)
        for j in range(len(joint)):
            count = int(round(len(labels) * joint[i, j]))
            if j != i and count:
                margin = probs[members, j] - probs[members, i]
                found[members[np.argsort(-margin, kind="stable")[:count]]] = True
    return found


@dataclass(frozen=True)
class LabelIssues:
    """What confident learning found: the suspects worst first, and the noise it estimated.

    `indices[r]` is the example ranked r + 1; `given`, `suggested`, `confidence` (the probability of the
    suggestion) and `quality` are per suspect in the same order. `noise_matrix[i, j]` = P(given i | true j)
    and `inverse_noise_matrix[i, j]` = P(true i | given j), columns summing to 1; `joint` is Q.
    """

    indices: np.ndarray
    given: np.ndarray
    suggested: np.ndarray
    confidence: np.ndarray
    quality: np.ndarray
    thresholds: np.ndarray
    confident_joint: np.ndarray
    joint: np.ndarray
    noise_matrix: np.ndarray
    inverse_noise_matrix: np.ndarray
    estimated_count: int
    method: str

    def rows(self) -> list[dict]:
        """One dict per suspect, worst first: index, rank (1 = worst), given, suggested, confidence, quality."""
        return [{"index": int(index), "rank": rank, "given": int(given), "suggested": int(suggested),
                 "confidence": float(confidence), "quality": float(quality)}
                for rank, (index, given, suggested, confidence, quality)
                in enumerate(zip(self.indices, self.given, self.suggested, self.confidence, self.quality), 1)]


def find_label_issues(labels, probs, method: str = "prune_by_noise_rate",
                      score: str = "normalized_margin") -> LabelIssues:
    """rank_label_issues with everything estimated on the way, for the audit's suspects.csv and report."""
    labels, probs = checked(labels, probs)
    thresholds = per_label_thresholds(labels, probs)
    counts = confident_joint(labels, probs, thresholds)
    joint = calibrated_joint(counts, labels)
    noise, inverse = noise_matrices(joint)
    indices = rank_label_issues(labels, probs, method, score)
    suggested = suggested_labels(probs)[indices]
    return LabelIssues(indices=indices, given=labels[indices], suggested=suggested,
                       confidence=probs[indices, suggested], quality=label_quality(labels, probs, score)[indices],
                       thresholds=thresholds, confident_joint=counts, joint=joint, noise_matrix=noise,
                       inverse_noise_matrix=inverse, estimated_count=int(round(len(labels) * (1 - np.trace(joint)))),
                       method=method)


MISSED, SPURIOUS, WRONG_LABEL = "missed label", "spurious or misplaced", "wrong label"


@dataclass(frozen=True)
class BoxIssue:
    """One suspect box. `box` indexes the image's ground truth (spurious, wrong label) or its predictions (missed);
    `given` is the drawn label (None for a missed label), `suggested` the model's (None for spurious).
    `score` 0-1 ranks suspects across images, highest first."""

    image: int
    kind: str
    box: int
    given: int | None
    suggested: int | None
    score: float


def image_box_issues(gt_labels, gt_boxes, pred, thresholds, image: int = 0, iou: float = IOU) -> list[BoxIssue]:
    """One image's suspects. `thresholds` (k,): the score from which a prediction of each class is confident.

    Matching is detection_metrics.match's (same label, greedy by score, IoU >= iou). Then: a drawn box left
    unmatched that a confident prediction of another label covers (IoU >= iou) is a wrong label, scored by that
    prediction; any other unmatched drawn box is spurious or misplaced, scored 1 - the best IoU a prediction of
    its label reaches (a box nothing came near first); a confident prediction that overlaps no drawn box at
    IoU >= iou is a missed label, scored by its confidence. A confident duplicate over a matched box is neither.
    """
    gt_labels = np.asarray(gt_labels, dtype=np.int64).reshape(-1)
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    pred = prediction_rows(pred)
    classes = pred[:, 5].astype(np.int64)
    confident = pred[:, 4] >= np.asarray(thresholds, np.float64)[classes]
    _, matched = match(gt_labels, gt_boxes, pred, iou)
    overlaps = iou_matrix(pred[:, :4], gt_boxes)  # (predictions, drawn boxes)
    issues = []
    for g in np.flatnonzero(~matched):
        covering = confident & (classes != gt_labels[g]) & (overlaps[:, g] >= iou)
        if covering.any():
            p = int(np.flatnonzero(covering)[pred[covering, 4].argmax()])
            issues.append(BoxIssue(image, WRONG_LABEL, int(g), int(gt_labels[g]), int(classes[p]), float(pred[p, 4])))
        else:
            same = overlaps[classes == gt_labels[g], g]
            issues.append(BoxIssue(image, SPURIOUS, int(g), int(gt_labels[g]), None,
                                   1.0 - float(same.max()) if len(same) else 1.0))
    nothing_drawn = (overlaps < iou).all(axis=1) if len(gt_boxes) else np.ones(len(pred), dtype=bool)
    for p in np.flatnonzero(confident & nothing_drawn):
        issues.append(BoxIssue(image, MISSED, int(p), None, int(classes[p]), float(pred[p, 4])))
    return issues


def box_issues(ground_truth, predictions, labels, thresholds, iou: float = IOU) -> list[BoxIssue]:
    """Every image's suspects, highest score first. ground_truth: per image (labels, boxes) as in
    detection_metrics; predictions: per image (N, 6) rows; thresholds: one float for every label, or
    {label: float} (a label missing or None: none of its predictions counts as confident)."""
    if len(ground_truth) != len(predictions):
        raise ValueError(f"{len(ground_truth)} ground-truth images but {len(predictions)} prediction arrays")
    if isinstance(thresholds, dict):
        per_class = np.array([np.inf if thresholds.get(name) is None else thresholds[name] for name in labels])
    else:
        per_class = np.full(len(labels), float(thresholds))
    issues = [issue for image, ((g_labels, g_boxes), pred) in enumerate(zip(ground_truth, predictions))
              for issue in image_box_issues(class_indices(g_labels, labels), g_boxes, pred, per_class, image, iou)]
    return sorted(issues, key=lambda issue: -issue.score)
