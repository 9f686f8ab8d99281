"""`export` hooks of a multi-label classifier: the classifier's graph and parity (a sigmoid head instead of a
softmax), each label's own threshold, validation scored as label sets, INT8 judged on validation macro AP.

thresholds.json holds each label's assumed threshold: from RUN/evaluation/summary.json when the run was evaluated,
else the F1-maximising confidence of that label on the validation split (evaluate/multilabel.py).
INT8 ships only if faster and its macro average precision (each label's ranking of the validation images, averaged
over labels) is within half a point of fp32's. Not subset accuracy or F1 at the thresholds: a threshold chosen on
the validation split sits exactly on one of its confidences for every label, so INT8's rounding flips about half
of those boundary images, however good the model (measured: a hand-set model exact at fp32 lost 3 of 8 label sets
at INT8 with its average precision still 1.0); on 200 images and 3 labels that alone costs ~0.75 points, and the
verdict would refuse nearly every INT8 model. Average precision, like the classifier's top-1 accuracy and the
detector's mAP, moves only when the model's ranking really changes. The report also records INT8's subset accuracy
and macro F1 at the shipped thresholds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgelabels.artifacts import RunDir
from edgelabels.export.classification import graph, probability_parity
from edgelabels.export.driver import (ExportHooks, Int8Check, closing_lines, evaluated_or_validation_thresholds,
                                      latency_line, predict_samples, wrote_line)


def answer(run: RunDir, onnx, chain) -> tuple[np.ndarray, np.ndarray]:
    """(confidences (N, K), multi-hot truth (N, K) bool) on the validation split."""
    from edgelabels.data.multilabel import multi_hot

    val = run.split.val
    return predict_samples(onnx, val, run.spec, chain), multi_hot(val, run.labels).astype(bool)


def thresholds(run: RunDir, answers, notes: list[str]) -> tuple[dict, str]:
    from edgelabels.evaluate.multilabel import assumed_thresholds

    probabilities, truth = answers
    return evaluated_or_validation_thresholds(run, probabilities, truth, notes, assumed_thresholds,
                                              "F1-maximising confidence of each label")


def _set_scores(answers, run: RunDir, thresholds: dict) -> dict | None:
    from edgelabels.evaluate.multilabel import predicted_sets, set_metrics

    probabilities, truth = answers
    if not len(truth):
        return None
    return set_metrics(truth, predicted_sets(probabilities, [thresholds[name] for name in run.labels]))


def score(run: RunDir, answers, thresholds: dict) -> dict:
    scores = _set_scores(answers, run, thresholds)
    if scores is None:
        return {"images": 0}
    return {"images": int(len(answers[1])), "subset_accuracy": scores["subset_accuracy"],
            "hamming_loss": scores["hamming_loss"], "macro_f1": scores["macro_f1"],
            "per_label_f1": dict(zip(run.labels, (row["f1"] for row in scores["per_label"])))}


def average_precisions(answers, labels: list[str]) -> dict[str, float]:
    """label -> average precision of its confidences on the validation split, for the labels some image carries."""
    from sklearn.metrics import average_precision_score

    probabilities, truth = answers
    return {name: float(average_precision_score(truth[:, k], probabilities[:, k]))
            for k, name in enumerate(labels) if truth[:, k].any()}


def compare(run: RunDir, fp32, int8, thresholds: dict) -> tuple[float | None, float | None, dict]:
    before, after = average_precisions(fp32, run.labels), average_precisions(int8, run.labels)
    if not before:
        return None, None, {}
    macro_fp32, macro_int8 = float(np.mean(list(before.values()))), float(np.mean(list(after.values())))
    at_thresholds = _set_scores(int8, run, thresholds)  # what INT8 answers at the shipped thresholds, for the record
    return macro_fp32, macro_int8, {
        "validation_per_label_ap": after, "validation_macro_ap_fp32": macro_fp32,
        "validation_subset_accuracy": at_thresholds["subset_accuracy"], "validation_macro_f1": at_thresholds["macro_f1"]}


def lines(report: dict, out: Path) -> list[str]:
    p, v = report["parity"], report["validation"]
    thresholds = ", ".join(f"{name} {value:.3f}" for name, value in report["thresholds"]["values"].items())
    found = [wrote_line(report, out, f", a multi-label classifier (run it with `edgelabels predict {out} IMAGE...`: "
                                     "every label at or above its threshold)"),
             f"parity Keras vs ONNX on {p['images']} images: max abs diff {p['max_abs_diff']:.1e}",
             latency_line(report),
             f"thresholds from {report['thresholds']['source']}: {thresholds}"]
    if v.get("images"):
        found.append(f"validation ({v['images']} images) at these thresholds: subset accuracy "
                     f"{v['subset_accuracy']:.2%}, Hamming loss {v['hamming_loss']:.4f}, macro F1 {v['macro_f1']:.4f}")
    return found + closing_lines(report, out)


HOOKS = ExportHooks(
    graph=graph, parity=probability_parity, answer=answer, thresholds=thresholds, score=score, lines=lines,
    int8=Int8Check(measure="validation macro average precision", missing="images carrying a label", show="{:.3f}",
                   compare=compare, key="macro_ap"),
)

