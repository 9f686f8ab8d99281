"""Calibration: fitted once on a run's validation split, so that a confidence of 80 is right about 80% of the time.

One procedure for every task; a task supplies CalibrationHooks (tasks.py names its record as the `calibrating`
piece; None: its scores are not calibrated, as a U-Net's per-pixel probabilities):
  classifier             temperature scaling: the T minimising validation log loss of softmax(log p / T); the top
                         label never changes, only how sure it is
  multi-label classifier one temperature per label on its sigmoid logit, fitted the same way ("temperature-per-label")
  detector               each validation box (top-K rows scoring >= SCORE_FLOOR) is right when it matches an unmatched
                         ground-truth box of its label at IoU >= 0.5 (detection_metrics.match); scikit-learn's
                         IsotonicRegression maps score -> P(right), blended with 1% of the score itself so the map
                         is strictly increasing: the ranking of boxes, and mAP, stay as the model gave them, and
                         the map has an inverse. Ground-truth boxes no row found do not enter: what is calibrated
                         is what is returned.
A map is kept only when it lowers the validation ECE (a well-calibrated model is left alone), and only from
MIN_SCORES validation scores on; otherwise the method is "none", with the reason. The result is RUN/calibration.json
(runtime/calibration.py reads and applies it; `export` copies it beside the model so the edge answers calibrated
confidences and thresholds.json is chosen on them).

ECE: top-1 ECE (metrics.expected_calibration_error) for a classifier; for boxes and multi-label (image, label)
pairs the same equal-width binning over (confidence, right) pairs, `reliability`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edgelabels import atomic
from edgelabels.evaluate.metrics import ECE_BINS, expected_calibration_error, reliability, top_labels
from edgelabels.runtime.calibration import VERSION, Calibration, from_json, read_calibration
from edgelabels.tasks import get_task

MIN_SCORES = 20  # fewer validation scores than this: no map (it would fit noise)
SCORE_FLOOR = 0.05  # detection rows below this are top-K filler nobody is answered with (export's parity floor too)
BLEND = 0.01  # share of the raw score kept in a box map: strictly increasing, so ranking and mAP are unchanged
TEMPERATURES = (0.05, 20.0)  # the range a temperature is searched in


def _validation_images(samples) -> dict:
    return {"split": "val", "images": len(samples)}


@dataclass(frozen=True)
class CalibrationHooks:
    """What differs per task when its confidences are calibrated."""
    truth: Callable  # (samples, labels) -> what its predictions are compared with
    pairs: Callable  # (predictions, truth, labels, raw) -> (confidence, right) of each answer; see `pairs`
    fit: Callable  # (predictions, truth, confidence, right) -> (method, parameters): runtime/calibration.py's map
    what: str  # what one confidence is, in the report
    ece: Callable | None = None  # (predictions, truth) -> the ECE metrics.json reports; None: `reliability`'s
    fitted_on: Callable = _validation_images  # (validation samples) -> calibration.json's "fitted_on"
    # A validation split whose pairs are all right (or all wrong) fits no map: a fit would push every confidence to
    # 1 (or 0). False where a pair is (score, label present), which the fit judges label by label.
    one_sided_fits_nothing: bool = True


def calibrating(task: str) -> CalibrationHooks | None:
    """The task's hooks; None for a task whose scores are not calibrated."""
    found = get_task(task)
    return found.piece("calibrating") if found.calibrating else None


def _hooks(task: str) -> CalibrationHooks:
    """The task's hooks; a one-line UserError for a task that is not calibrated."""
    return get_task(task).piece("calibrating")


# ---------------------------------------------------------------- ECE and the reliability diagram's bins


def pairs(task: str, predictions, truth, labels, raw=None) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, right) of what a task answers: each image's top label (classifier), each (image, label)
    (multi-label), each box the model itself (`raw`, the predictions before calibration when these are calibrated)
    scored >= SCORE_FLOOR (detector): the same boxes before and after."""
    return _hooks(task).pairs(predictions, truth, labels, raw)


def ece(task: str, predictions, truth, labels, raw=None) -> float:
    hooks = _hooks(task)
    if hooks.ece is not None:
        return hooks.ece(predictions, truth)
    return reliability(*hooks.pairs(predictions, truth, labels, raw))["ece"]


def truth_of(task: str, samples, labels: list[str]):
    """What `fit` and `pairs` compare with, for split samples: label indices (classifier), a multi-hot matrix
    (multi-label), per image (class indices, boxes in ratios of the image as displayed) (detector)."""
    return _hooks(task).truth(samples, labels)


# ---------------------------------------------------------------- fitting


def fit(task: str, predictions, truth, labels) -> dict:
    """calibration.json's contents (without "fitted_on") for validation predictions and their truth."""
    hooks = _hooks(task)
    confidence, right = hooks.pairs(predictions, truth, labels, None)
    before = ece(task, predictions, truth, labels)
    if len(confidence) < MIN_SCORES:
        return _none(task, before, f"{len(confidence)} validation scores, fewer than {MIN_SCORES}: no map fitted")
    if hooks.one_sided_fits_nothing and (right.all() or not right.any()):
        return _none(task, before, f"all {len(right)} validation answers {'right' if right.all() else 'wrong'}: "
                                   "nothing to calibrate against")
    method, parameters = hooks.fit(predictions, truth, confidence, right)
    described = {"version": VERSION, "task": task, "method": method, "parameters": parameters, "bins": ECE_BINS}
    after = ece(task, from_json(described).apply(predictions), truth, labels, raw=predictions)
    if after >= before:
        return _none(task, before, f"the {method} map did not lower the validation ECE ({before:.4f} -> "
                                   f"{after:.4f}): scores left as the model gives them")
    return {**described, "ece_before": before, "ece_after": after,
            "reason": f"{method} map lowers the validation ECE {before:.4f} -> {after:.4f}"}


def _none(task: str, before: float, reason: str) -> dict:
    return {"version": VERSION, "task": task, "method": "none", "parameters": {}, "bins": ECE_BINS,
            "ece_before": before, "ece_after": before, "reason": reason}


def _temperature(nll, probs: np.ndarray, truth: np.ndarray) -> float:
    """The temperature minimising nll(probs, truth, T), searched over log T."""
    from scipy.optimize import minimize_scalar

    low, high = np.log(TEMPERATURES)
    found = minimize_scalar(lambda log_t: nll(probs, truth, float(np.exp(log_t))), bounds=(low, high),
                            method="bounded", options={"xatol": 1e-4})
    return float(np.exp(found.x))


# ---------------------------------------------------------------- classifier: one label per image


def _label_indices(samples, labels: list[str]) -> np.ndarray:
    index = {name: k for k, name in enumerate(labels)}
    return np.array([index[s.label] for s in samples], np.int64)


def _top_label_pairs(predictions, truth, labels, raw) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(predictions, np.float64)
    return probs.max(axis=1), top_labels(probs) == np.asarray(truth)


def _fit_temperature(predictions, truth, confidence, right) -> tuple[str, dict]:
    probs, truth = np.asarray(predictions, np.float64), np.asarray(truth, np.int64)
    answered = probs.any(axis=1)  # an image a stage found nothing in has no confidence to scale
    return "temperature", {"temperature": _temperature(_softmax_nll, probs[answered], truth[answered])}


def _softmax_nll(probs, truth, t: float) -> float:
    logits = np.log(np.clip(probs, 1e-12, 1.0)) / t
    logits -= logits.max(axis=1, keepdims=True)
    log_sum = np.log(np.exp(logits).sum(axis=1))
    return float(np.mean(log_sum - logits[np.arange(len(truth)), truth]))


CLASSIFICATION = CalibrationHooks(
    truth=_label_indices, pairs=_top_label_pairs, fit=_fit_temperature, what="each image's top label",
    # the one top-1 ECE, as metrics.json reports it
    ece=lambda predictions, truth: expected_calibration_error(np.asarray(truth), np.asarray(predictions, np.float64)))


# ---------------------------------------------------------------- multi-label classifier: each (image, label)


def _multi_hot(samples, labels: list[str]) -> np.ndarray:
    from edgelabels.data.multilabel import multi_hot

    return multi_hot(samples, labels).astype(bool)


def _label_pairs(predictions, truth, labels, raw) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(predictions, np.float64).reshape(-1), np.asarray(truth, bool).reshape(-1)


def _fit_temperature_per_label(predictions, truth, confidence, right) -> tuple[str, dict]:
    probs, truth = np.asarray(predictions, np.float64), np.asarray(truth, bool)
    # a label whose validation confidences separate its images perfectly (all of them have it or none does, too)
    # says nothing about its scale: a fit would push them to 0 and 1; it is left at T = 1
    return "temperature-per-label", {"temperature": [
        1.0 if _separated(probs[:, k], truth[:, k]) else _temperature(_sigmoid_nll, probs[:, k], truth[:, k])
        for k in range(probs.shape[1])]}


def _separated(p: np.ndarray, truth: np.ndarray) -> bool:
    """Whether every image with the label scores above every image without it."""
    return not truth.any() or truth.all() or p[truth].min() > p[~truth].max()


def _sigmoid_nll(p, truth, t: float) -> float:
    q = np.clip(p, 1e-7, 1 - 1e-7)
    z = np.log(q / (1 - q)) / t
    # -log sigmoid(z) for the label present, -log sigmoid(-z) for it absent, written without overflow
    return float(np.mean(np.logaddexp(0.0, np.where(truth, -z, z))))


MULTILABEL = CalibrationHooks(truth=_multi_hot, pairs=_label_pairs, fit=_fit_temperature_per_label,
                              what="each (image, label) pair", one_sided_fits_nothing=False)


# ---------------------------------------------------------------- detector: each box


def _boxes_in_ratios(samples, labels: list[str]) -> list:
    from edgelabels.data.boxes import displayed_size, to_ratios

    index = {name: k for k, name in enumerate(labels)}
    found = []
    for s in samples:
        size = displayed_size(s.path)
        found.append((np.array([index[b.label] for b in s.boxes], np.int64),
                      np.array([to_ratios(b, *size) for b in s.boxes], np.float64).reshape(-1, 4)))
    return found


def _box_pairs(predictions, truth, labels, raw) -> tuple[np.ndarray, np.ndarray]:
    from edgelabels.evaluate import detection_metrics as dm

    rows = [dm.prediction_rows(p) for p in predictions]
    flags = [tp for tp, _ in dm.match_all(truth, rows, labels)]
    scores = np.concatenate([r[:, 4] for r in rows]) if rows else np.zeros(0)
    right = np.concatenate(flags) if flags else np.zeros(0, bool)
    own = scores if raw is None else np.concatenate([dm.prediction_rows(p)[:, 4] for p in raw])
    kept = own >= SCORE_FLOOR
    return scores[kept], right[kept]


def _fit_box_map(predictions, truth, confidence, right) -> tuple[str, dict]:
    return "isotonic", _box_map(confidence, right)


def _box_map(scores: np.ndarray, right: np.ndarray) -> dict:
    """Knots of score -> P(right) over [0, 1]: isotonic, then BLEND of the score added so it strictly increases."""
    from sklearn.isotonic import IsotonicRegression

    iso = IsotonicRegression(increasing=True, out_of_bounds="clip", y_min=0.0, y_max=1.0)
    iso.fit(scores, right.astype(np.float64))
    x, y = list(iso.X_thresholds_), list(iso.y_thresholds_)
    if x[0] > 0:  # below the lowest validation score the map falls to 0 at 0
        x, y = [0.0] + x, [0.0] + y
    if x[-1] < 1:
        x, y = x + [1.0], y + [y[-1]]
    x, y = np.asarray(x), np.asarray(y)
    return {"x": [float(v) for v in x], "y": [float(v) for v in (1 - BLEND) * y + BLEND * x]}


DETECTION = CalibrationHooks(
    truth=_boxes_in_ratios, pairs=_box_pairs, fit=_fit_box_map,
    what=f"each box scoring >= {SCORE_FLOOR:g}, right when it matches a ground-truth box at IoU >= 0.5",
    fitted_on=lambda samples: {**_validation_images(samples), "boxes": int(sum(len(s.boxes) for s in samples))})


# ---------------------------------------------------------------- the run's calibration


def calibration_of(run, predict) -> dict | None:
    """The run's calibration.json contents: read when fitted before, else fitted now on predict(validation paths)
    (the run's Keras model, or its ONNX export) and written; None for a task that is not calibrated."""
    hooks = calibrating(run.task)
    if hooks is None or not run.has_split():
        return None
    if run.calibration_path.is_file():
        return read_calibration(run.calibration_path).described
    val = run.split.val
    if not val:
        found = _none(run.task, 0.0, "no validation images: no map fitted")
    else:
        found = fit(run.task, predict([s.path for s in val]), hooks.truth(val, run.labels), run.labels)
    found["fitted_on"] = hooks.fitted_on(val)
    atomic.write_json(run.calibration_path, found)
    return found


def run_calibration(run, open_model) -> dict | None:
    """calibration_of with the model `evaluate` opened (an OpenModel: the task's open_run hook)."""
    return calibration_of(run, lambda paths: open_model.predict(paths))


# ---------------------------------------------------------------- what an evaluation reports


@dataclass(frozen=True)
class CalibrationCheck:
    """Evaluation.calibration: the calibration its predictions were given, and the scores before it."""

    calibration: Calibration
    raw: object  # the model's own predictions, in the order of the evaluation's samples
    calibrated: object  # what the evaluation scores: raw with the calibration applied
    task: str


def check_for(calibration: Calibration | None, predictions, task: str) -> CalibrationCheck | None:
    """The check of calibrated `predictions` (None without a calibration, or for a task that has none)."""
    if calibration is None or calibrating(task) is None:
        return None
    return CalibrationCheck(calibration, calibration.raw(predictions), predictions, task)


def calibration_entry(evaluation, plots: Path) -> dict | None:
    """metrics["calibration"]: ECE before and after the calibration on the evaluated images, and
    plots/reliability.png; None when the evaluation carries no calibration."""
    check = evaluation.calibration
    if check is None:
        return None
    hooks, labels = _hooks(check.task), evaluation.model.labels
    truth = hooks.truth(evaluation.samples, labels)
    before = reliability(*hooks.pairs(check.raw, truth, labels, None))
    after = reliability(*hooks.pairs(check.calibrated, truth, labels, check.raw))
    if hooks.ece is not None:  # the task's own ECE (a classifier's: the same value as metrics.json's)
        before["ece"], after["ece"] = hooks.ece(check.raw, truth), hooks.ece(check.calibrated, truth)
    described = check.calibration.described or {}
    plot = reliability_plot(Path(plots) / "reliability.png", before, after, check.calibration.method, hooks.what)
    return {"method": check.calibration.method, "fitted_on": described.get("fitted_on"),
            "ece_before": before["ece"], "ece_after": after["ece"], "plot": plot, "bins": ECE_BINS,
            "scores": int(sum(row["count"] for row in before["bins"])), "what": hooks.what,
            "validation": {"ece_before": described.get("ece_before"), "ece_after": described.get("ece_after")},
            "parameters": described.get("parameters"), "reason": described.get("reason")}


def reliability_plot(path: Path, before: dict, after: dict, method: str, what: str) -> Path:
    """Mean confidence vs how often right, per bin, before and after; the diagonal is perfect calibration; bars
    count the scores in each bin (before and after: a map moves scores between bins)."""
    from matplotlib.figure import Figure

    from edgelabels.evaluate.plots import DPI

    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(5.6, 6.0), dpi=DPI, layout="constrained")
    top, bottom = fig.subplots(2, 1, height_ratios=(3, 1), sharex=True)
    top.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="perfectly calibrated")
    for found, name, style in ((before, "before", "o--"), (after, f"after ({method})", "s-")):
        shown = [row for row in found["bins"] if row["count"]]
        top.plot([row["confidence"] for row in shown], [row["accuracy"] for row in shown], style,
                 label=f"{name}: ECE {found['ece']:.4f}")
    top.set(ylabel="Share right", xlim=(0, 1), ylim=(0, 1.01),
            title=f"Reliability ({what.split(',')[0]})")
    top.legend(loc="upper left", fontsize=8)
    width = 1 / len(before["bins"])
    centres = np.array([(row["low"] + row["high"]) / 2 for row in before["bins"]])
    bottom.bar(centres - width / 4, [row["count"] for row in before["bins"]], width / 2, label="before")
    bottom.bar(centres + width / 4, [row["count"] for row in after["bins"]], width / 2, label="after")
    bottom.set(xlabel="Confidence", ylabel="Count")
    bottom.legend(loc="upper left", fontsize=8)
    fig.savefig(path, format="png")
    return path
