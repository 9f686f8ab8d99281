"""`export` hooks of a classifier (one label per image): softmax probabilities, thresholds one-vs-rest, INT8 judged
on validation accuracy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgelabels.artifacts import RunDir
from edgelabels.errors import UserError
from edgelabels.export.driver import (ExportHooks, Int8Check, closing_lines, evaluated_on_export_scale,
                                      evaluated_or_validation_thresholds, latency_line, predict_samples, vacuous,
                                      wrote_line)
from edgelabels.export.onnx_export import PARITY_TOLERANCE, parity


def graph(run: RunDir, model) -> tuple[object, dict]:
    """The model as trained, once its output width is checked against labels.json (multi-label shares this)."""
    width = model.outputs[0].shape[-1]
    if width != len(run.labels):
        raise UserError(f"{run.model_path}: {width} outputs but {run.labels_path} names {len(run.labels)} labels")
    return model, {}


def probability_parity(reference: np.ndarray, candidate: np.ndarray, notes: list[str]) -> dict:
    """Parity of (N, K) probabilities (multi-label shares this), with a note when every image gets one answer."""
    check = {**parity(reference, candidate), "tolerance": PARITY_TOLERANCE}
    vacuous(check["output_std"], "output", notes)
    return check


def answer(run: RunDir, onnx, chain) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities (N, K), true label indices (N,)) on the validation split."""
    val = run.split.val
    return predict_samples(onnx, val, run.spec, chain), np.array(run.label_indices(val), dtype=np.int64)


def thresholds(run: RunDir, answers, notes: list[str]) -> tuple[dict, str]:
    from edgelabels.evaluate.thresholds import assumed_thresholds

    probabilities, truth = answers
    return evaluated_or_validation_thresholds(run, probabilities, truth, notes, assumed_thresholds,
                                              "F1-maximising confidence per label, one-vs-rest")


def review(run: RunDir, notes: list[str]) -> dict | None:
    """review.json: the review threshold the run's evaluation was written with (`evaluate --review-accuracy`
    chooses it on the validation split; --review-threshold gives it), so that the edge can say "send to a
    person"; None when the run was not evaluated with one."""
    from edgelabels.evaluate.review import SUMMARY

    path = run.evaluation_dir / "review" / SUMMARY
    if not path.is_file():
        return None
    if not evaluated_on_export_scale(run):
        notes.append(f"{path}: its review threshold is on another confidence scale than the export's calibration "
                     "(evaluated before it was fitted); the export carries none: evaluate the run again")
        return None
    try:
        threshold = json.loads(path.read_text(encoding="utf-8")).get("threshold")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as exc:
        raise UserError(f"{path}: not the review summary `evaluate` writes ({exc}); evaluate the run again") from None
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        notes.append(f"{path}: no review threshold in it; the export carries none")
        return None
    return {"threshold": float(threshold), "source": str(path)}


def accuracy(probabilities: np.ndarray, truth: np.ndarray) -> float | None:
    return float(np.mean(probabilities.argmax(1) == truth)) if len(truth) else None


def score(run: RunDir, answers, thresholds: dict) -> dict:
    probabilities, truth = answers
    return {"images": len(truth), "accuracy_fp32": accuracy(probabilities, truth)}


def compare(run: RunDir, fp32, int8, thresholds: dict) -> tuple[float | None, float | None, dict]:
    (p32, truth), (p8, _) = fp32, int8
    agreement = float(np.mean(p8.argmax(1) == p32.argmax(1))) if len(truth) else None
    return accuracy(p32, truth), accuracy(p8, truth), {"validation_top1_agreement_with_fp32": agreement}


def lines(report: dict, out: Path) -> list[str]:
    p = report["parity"]
    return [wrote_line(report, out, ""),
            f"parity Keras vs ONNX on {p['images']} images: max abs diff {p['max_abs_diff']:.1e}, "
            f"top-1 agreement {p['top1_agreement']:.0%}, output std {p['output_std']:.3f}",
            latency_line(report),
            f"thresholds from {report['thresholds']['source']}",
            *closing_lines(report, out)]


HOOKS = ExportHooks(
    graph=graph, parity=probability_parity, answer=answer, thresholds=thresholds, score=score, lines=lines,
    review=review,
    int8=Int8Check(measure="validation accuracy", missing="images to check its accuracy", show="{:.1%}",
                   compare=compare, key="accuracy"),
)
