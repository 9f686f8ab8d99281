"""`export RUN` for a multi-label run: the classifier's export (ONNX, parity, latency), then per-label thresholds.

The graph, its parity check against Keras and the folder layout are the classifier's (export_run.py): the same
model with a sigmoid head. What differs is thresholds.json: each label's own assumed threshold, from
RUN/evaluation/summary.json when the run was evaluated, else the F1-maximising confidence of that label on the
validation split (evaluate/multilabel.py), and the validation scores in the report are multi-label ones.
INT8 is not offered yet: its acceptance test (export/quantize.py) compares top-1 accuracy, which says nothing
about a label set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgelabels.artifacts import ExportDir, RunDir
from edgelabels.errors import UserError


def export_multilabel(run: RunDir, out: ExportDir, *, int8: bool = False, calibration: int = 100,
                      parity_images: int = 32, threads: int | None = None) -> dict:
    from edgelabels.export.export_run import _predict_samples, export_classifier
    from edgelabels.runtime.runner import OnnxModel
    from edgelabels.runtime.stages import run_chain
    from edgelabels.data.multilabel import multi_hot

    if int8:
        raise UserError("export --int8: not yet for multi-label models (its check compares top-1 accuracy); "
                        "export without --int8")
    report = export_classifier(run, out, calibration=calibration, parity_images=parity_images, threads=threads)
    split = run.split
    probs = _predict_samples(OnnxModel(out.model_path, threads), split.val, run.spec, run_chain(run, threads))
    truth = multi_hot(split.val, run.labels)
    notes = [n for n in report["notes"] if "threshold" not in n]  # the classifier's threshold notes do not apply
    thresholds, source = label_thresholds(run, truth, probs, notes)
    report["thresholds"] = {"source": source, "values": thresholds}
    report["validation"] = validation_scores(truth, probs, run.labels, thresholds)
    report["notes"] = notes
    out.write_thresholds(thresholds)
    out.write_report(report)
    return report


def label_thresholds(run: RunDir, truth: np.ndarray, probs: np.ndarray, notes: list[str]) -> tuple[dict, str]:
    """label -> threshold: the evaluation's when there is one, else chosen per label on the validation split
    (export_run.assumed_thresholds with the multi-label F1 maximiser)."""
    from edgelabels.evaluate.multilabel import assumed_thresholds as per_label
    from edgelabels.export.export_run import assumed_thresholds

    return assumed_thresholds(run, probs, truth, notes, f1_maximising=lambda y, p: per_label(y.astype(bool), p))


def validation_scores(truth: np.ndarray, probs: np.ndarray, labels: list[str], thresholds: dict) -> dict:
    from edgelabels.evaluate.multilabel import predicted_sets, set_metrics

    if not len(truth):
        return {"images": 0}
    scores = set_metrics(truth.astype(bool), predicted_sets(probs, [thresholds[name] for name in labels]))
    return {"images": int(len(truth)), "subset_accuracy": scores["subset_accuracy"],
            "hamming_loss": scores["hamming_loss"], "macro_f1": scores["macro_f1"],
            "per_label_f1": dict(zip(labels, (row["f1"] for row in scores["per_label"])))}


def show_multilabel(report: dict, out: Path) -> list[str]:
    """The lines `edgelabels export` prints for a multi-label model."""
    p, latency, v = report["parity"], report["latency_batch1_ms"], report["validation"]
    thresholds = ", ".join(f"{name} {value:.3f}" for name, value in report["thresholds"]["values"].items())
    lines = [f"wrote {out}/: {ExportDir.MODEL} ({report['sizes_bytes'][ExportDir.MODEL] / 1e6:.1f} MB), a multi-label "
             f"classifier (run it with `edgelabels predict {out} IMAGE...`: every label at or above its threshold)",
             f"parity Keras vs ONNX on {p['images']} images: max abs diff {p['max_abs_diff']:.1e}",
             f"batch-1 latency: ONNX fp32 {latency['onnx_fp32']:.3g} ms, Keras {latency['keras_call']:.3g} ms",
             f"thresholds from {report['thresholds']['source']}: {thresholds}"]
    if v.get("images"):
        lines.append(f"validation ({v['images']} images) at these thresholds: subset accuracy "
                     f"{v['subset_accuracy']:.2%}, Hamming loss {v['hamming_loss']:.4f}, macro F1 {v['macro_f1']:.4f}")
    lines += [f"note: {note}" for note in report["notes"]]
    return lines
