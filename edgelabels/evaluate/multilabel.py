"""Evaluate a multi-label classifier: a truth matrix (N, K) of 0/1 and independent confidences (N, K).

Each label is judged one-vs-rest at its own threshold, as Rekognition Custom Labels evaluates every model: its
assumed threshold is the confidence that maximises that label's F1 on these images (evaluate/thresholds.py's
rule, applied to the label's yes/no question). A label is predicted when its confidence >= its threshold, so an
image gets every label at or above its threshold (possibly none, possibly all). Beside Rekognition's summary
(per-label precision, recall and F1, their unweighted means): subset accuracy (the whole label set right),
Hamming loss (the share of image-label answers wrong), micro and macro F1, and per-label ROC AUC, all from
scikit-learn.

Coverage and review, multi-label: an image's certainty is the smallest distance between a label's confidence
and that label's threshold, min_k |p_k - t_k|. It is accepted at margin m when its certainty >= m, i.e. when
every one of its labels is clearly in or clearly out; otherwise a person looks at it. The coverage table gives,
per margin, how many are accepted and the subset accuracy of those; `--review-threshold M` sends the images
with certainty below M to review/queue.csv.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from edgelabels import atomic
from edgelabels.evaluate.classification import open_export, open_run, read_samples
from edgelabels.evaluate.driver import EvaluationHooks, check_labels, evaluated_line, show

COVERAGE_MARGINS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.45)


def check_matrices(truth, probs, labels) -> tuple[np.ndarray, np.ndarray]:
    """(bool truth (N, K), float64 confidences (N, K)); ValueError when they do not fit together."""
    truth, probs = np.asarray(truth), np.asarray(probs, np.float64)
    if truth.ndim != 2 or truth.shape != probs.shape or truth.shape[1] != len(labels):
        raise ValueError(f"truth {truth.shape} and confidences {probs.shape} must both be (N, {len(labels)})")
    if not len(truth):
        raise ValueError("nothing to evaluate: no images")
    if not np.isin(truth, (0, 1)).all():
        raise ValueError("truth must hold 0 or 1 per image and label")
    if not np.isfinite(probs).all() or probs.min() < 0 or probs.max() > 1:
        raise ValueError("confidences must be finite and within 0-1")
    return truth.astype(bool), probs


def assumed_thresholds(truth, probs) -> list[float | None]:
    """Per label, the F1-maximising confidence (ties: the highest); None for a label with no positive image."""
    from edgelabels.evaluate.thresholds import assumed_thresholds as one_vs_rest

    chosen = []
    for k in range(probs.shape[1]):
        # The label's yes/no question as a two-label problem: column 1 is "has it", its threshold is the label's.
        chosen.append(one_vs_rest(truth[:, k].astype(np.int64), np.stack([1 - probs[:, k], probs[:, k]], 1))[1])
    return chosen


def predicted_sets(probs, thresholds) -> np.ndarray:
    """(N, K) bool: confidence >= threshold (None: the label is never predicted)."""
    cut = np.array([np.inf if t is None else t for t in thresholds], np.float64)
    return np.asarray(probs) >= cut[None, :]


def certainty(probs, thresholds) -> np.ndarray:
    """Per image, min over labels of |confidence - threshold| (a label with no threshold does not count)."""
    cut = np.array([np.nan if t is None else t for t in thresholds], np.float64)
    distance = np.abs(np.asarray(probs) - cut[None, :])
    return np.nanmin(np.where(np.isnan(distance), np.inf, distance), axis=1)


def set_metrics(truth, predicted) -> dict:
    """Per label precision/recall/F1/counts and the set-level scores for one (N, K) prediction."""
    from sklearn.metrics import (accuracy_score, f1_score, hamming_loss, multilabel_confusion_matrix,
                                 precision_recall_fscore_support)

    precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, average=None,
                                                                     zero_division=np.nan)
    rows = []
    for k, ((tn, fp), (fn, tp)) in enumerate(multilabel_confusion_matrix(truth, predicted)):
        rows.append({"precision": _number(precision[k]), "recall": _number(recall[k]),
                     "f1": _number(f1[k]) if support[k] else None,
                     "tp": int(tp), "fp": int(fp), "fn": int(fn), "tn": int(tn)})
    return {
        "per_label": rows,
        # Rekognition's aggregate: unweighted means over the labels where the value is defined
        "precision": _mean(r["precision"] for r in rows), "recall": _mean(r["recall"] for r in rows),
        "f1": _mean(r["f1"] for r in rows),
        "micro_f1": float(f1_score(truth, predicted, average="micro", zero_division=0)),
        "macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=0)),
        "subset_accuracy": float(accuracy_score(truth, predicted)),
        "hamming_loss": float(hamming_loss(truth, predicted)),
        "exact_label_count": float(np.mean(truth.sum(1) == predicted.sum(1))),
    }


def coverage_table(truth, probs, thresholds, margins=COVERAGE_MARGINS) -> list[dict]:
    """Per margin m: images with certainty >= m accepted; their subset accuracy (whole label set right)."""
    sure = certainty(probs, thresholds)
    right = (predicted_sets(probs, thresholds) == truth).all(axis=1)
    rows = []
    for m in margins:
        accepted = sure >= m
        n = int(accepted.sum())
        rows.append({"margin": float(m), "accepted": n, "discarded": int(len(truth) - n),
                     "discarded_fraction": float(1 - n / len(truth)),
                     "subset_accuracy": float(right[accepted].mean()) if n else None})
    return rows


def evaluate_matrices(truth, probs, labels: list[str], *, min_confidence: float = 0.5,
                      thresholds: list[float | None] | None = None) -> dict:
    """metrics.json for multi-label arrays: at the assumed thresholds (chosen on these images, Rekognition's), at
    `min_confidence` for every label, and at given `thresholds` (an export's thresholds.json) when passed."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    truth, probs = check_matrices(truth, probs, labels)
    assumed = assumed_thresholds(truth, probs)
    got = predicted_sets(probs, assumed)
    at_assumed = set_metrics(truth, got)
    at_min = set_metrics(truth, predicted_sets(probs, [min_confidence] * len(labels)))
    notes = []
    per_label = []
    for k, name in enumerate(labels):
        both = 0 < truth[:, k].sum() < len(truth)
        if not truth[:, k].any():
            notes.append(f"label {name!r} has no test image: no threshold, F1 or ROC AUC")
        per_label.append({
            "label": name, "support": int(truth[:, k].sum()),
            "at_assumed_threshold": {"threshold": assumed[k], **at_assumed["per_label"][k]},
            "at_min_confidence": {"threshold": min_confidence, **at_min["per_label"][k]},
            "roc_auc": float(roc_auc_score(truth[:, k], probs[:, k])) if both else None,
            "average_precision": float(average_precision_score(truth[:, k], probs[:, k]))
            if truth[:, k].any() else None,
        })
    metrics = {
        "task": "multilabel", "labels": list(labels), "number_of_images": int(len(truth)),
        "labels_per_image": float(truth.sum(1).mean()),
        "per_label": per_label,
        "at_assumed_thresholds": _aggregate(at_assumed),
        "at_min_confidence": {"threshold": min_confidence, **_aggregate(at_min)},
        "roc_auc_macro": _mean(row["roc_auc"] for row in per_label),
        # threshold-free: the area under each label's precision-recall steps, over the labels with a positive
        "average_precision_macro": _mean(row["average_precision"] for row in per_label),
        "coverage": coverage_table(truth, probs, assumed),
        "coverage_rule": "accepted when every label's confidence is at least the margin away from its assumed "
                         "threshold; subset accuracy of the accepted",
        # Rekognition's ConfusionMatrix, multi-label: row = a true label's images, column = the labels they got
        "confusion_matrix": {"labels": list(labels), "counts": _label_cross_counts(truth, got)},
        "notes": notes,
    }
    if thresholds is not None:
        shipped = set_metrics(truth, predicted_sets(probs, thresholds))
        metrics["at_given_thresholds"] = {"thresholds": dict(zip(labels, thresholds)), **_aggregate(shipped),
                                          "per_label_f1": dict(zip(labels, (r["f1"] for r in shipped["per_label"])))}
    return metrics


def _aggregate(scores: dict) -> dict:
    return {key: value for key, value in scores.items() if key != "per_label"}


def _label_cross_counts(truth, predicted) -> list[list[int]]:
    return (truth.astype(np.int64).T @ predicted.astype(np.int64)).tolist()


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _number(value) -> float | None:
    return float(value) if np.isfinite(value) else None


# ---------------------------------------------------------------- the evaluate verb's piece


def write_multilabel_evaluation(out: str | Path, *, paths: list, truth, probs, labels: list[str], run_id: str,
                                number_of_training_images: int = 0, min_confidence: float = 0.5,
                                review_threshold: float | None = None, thresholds: list | None = None,
                                context: dict | None = None, recipe: dict | None = None, calibrate=None) -> dict:
    """Evaluate multi-label arrays into folder `out`: summary.json, metrics.json, predictions.csv, plots/,
    review/queue.csv (with a review threshold: a margin), report.html, report.md. `thresholds`: an export's
    thresholds.json, per label, also scored. `recipe`, `calibrate`: as evaluation.write_evaluation's.
    Returns {"metrics", "summary", "review", "out"}."""
    from edgelabels.evaluate.bootstrap import multilabel_intervals
    from edgelabels.evaluate.evaluation import check_output_folder, write_figures
    from edgelabels.evaluate.multilabel_report import write_report
    from edgelabels.evaluate.plots import precision_recall_plot, roc_plot
    from edgelabels.evaluate.summary import build_summary

    out = check_output_folder(out)
    context = dict(context or {})
    metrics = evaluate_matrices(truth, probs, labels, min_confidence=min_confidence, thresholds=thresholds)
    metrics.update({key: context[key] for key in ("model", "data") if key in context})
    summary = build_summary(metrics, run_id=run_id, number_of_training_images=number_of_training_images)
    truth, probs = check_matrices(truth, probs, labels)
    assumed = [row["at_assumed_threshold"]["threshold"] for row in metrics["per_label"]]
    metrics["intervals"] = multilabel_intervals(truth, probs, labels, assumed)
    review = None
    with atomic.directory(out) as folder:
        write_figures(folder, summary, metrics, calibrate)
        atomic.write_text(folder / "predictions.csv", _predictions_csv(paths, truth, probs, labels, assumed))
        if review_threshold is not None:
            review = write_review_queue(folder / "review", paths, truth, probs, labels, assumed, review_threshold)
        (folder / "plots").mkdir(exist_ok=True)  # the calibration's plot may be there already
        plots = {"precision_recall": precision_recall_plot(folder / "plots" / "precision_recall.png", truth, probs,
                                                           labels, metrics),
                 "roc": roc_plot(folder / "plots" / "roc.png", truth, probs, labels)}
        write_report(folder, metrics=metrics, summary=summary, plots=plots, review=review, context=context,
                     recipe=recipe)
    return {"metrics": metrics, "summary": summary, "review": review, "out": out}


# ---------------------------------------------------------------- the evaluate verb's hooks (driver.py runs them)


def write(out: Path, evaluation) -> dict:
    """Score the predictions at the assumed thresholds, and an export's thresholds.json too."""
    from edgelabels.artifacts import ExportDir
    from edgelabels.data.multilabel import multi_hot
    from edgelabels.evaluate.evaluation import calibrator, run_recipe

    found, labels = evaluation.found, evaluation.model.labels
    shipped = None
    if isinstance(found, ExportDir):  # what the edge answers with: its thresholds, scored beside the assumed ones
        thresholds = found.read_thresholds()
        shipped = [thresholds.get(name) for name in labels]
    context = evaluation.context(f"Multi-label evaluation of {found.dir}") | {"data": evaluation.described}
    return write_multilabel_evaluation(out, paths=evaluation.paths, truth=multi_hot(evaluation.samples, labels),
                                       probs=evaluation.predictions, labels=labels, run_id=str(found.dir),
                                       number_of_training_images=evaluation.number_of_training_images,
                                       min_confidence=evaluation.min_confidence,
                                       review_threshold=evaluation.review_threshold, thresholds=shipped,
                                       context=context, recipe=run_recipe(found), calibrate=calibrator(evaluation))


def _predictions_csv(paths, truth, probs, labels, thresholds) -> str:
    got = predicted_sets(probs, thresholds)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["path", "true_labels", "predicted_labels", *(f"confidence_{name}" for name in labels)])
    for path, t, g, p in zip(paths, truth, got, probs):
        writer.writerow([str(path), ";".join(n for n, x in zip(labels, t) if x),
                         ";".join(n for n, x in zip(labels, g) if x), *(f"{v:.6f}" for v in p)])
    return buffer.getvalue()


def write_review_queue(folder, paths, truth, probs, labels, thresholds, margin: float) -> dict:
    """review/queue.csv: the images with certainty below `margin` (some label too near its threshold), least sure
    first, with the label nearest its threshold."""
    sure = certainty(probs, thresholds)
    cut = np.array([np.nan if t is None else t for t in thresholds], np.float64)
    nearest = np.nanargmin(np.where(np.isnan(cut)[None, :], np.inf, np.abs(probs - cut[None, :])), axis=1)
    chosen = [i for i in np.argsort(sure, kind="stable") if sure[i] < margin]
    got = predicted_sets(probs, thresholds)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["path", "certainty", "nearest_label", "true_labels", "predicted_labels"])
    for i in chosen:
        writer.writerow([str(paths[i]), f"{sure[i]:.4f}", labels[nearest[i]],
                         ";".join(n for n, x in zip(labels, truth[i]) if x),
                         ";".join(n for n, x in zip(labels, got[i]) if x)])
    Path(folder).mkdir(parents=True, exist_ok=True)
    atomic.write_text(Path(folder) / "queue.csv", buffer.getvalue())
    return {"count": len(chosen), "threshold": margin, "folder": str(folder)}


def lines(result: dict) -> list[str]:
    """The lines `edgelabels evaluate` prints for a multi-label model."""
    from edgelabels.evaluate.report import estimate

    m = result["metrics"]
    shown = [evaluated_line(result, f"{m['number_of_images']} images, {m['labels_per_image']:.2f} labels per image"),
             f"at assumed thresholds: {_set_scores(m['at_assumed_thresholds'])}, ROC AUC {show(m['roc_auc_macro'])}",
             f"with 95% bootstrap intervals: subset accuracy "
             f"{estimate(m, 'at_assumed_thresholds.subset_accuracy', '%')}, macro F1 "
             f"{estimate(m, 'at_assumed_thresholds.macro_f1')}, macro average precision "
             f"{estimate(m, 'average_precision_macro')}"]
    for row in m["per_label"]:
        a = row["at_assumed_threshold"]
        shown.append(f"  {row['label']}: {row['support']} images, threshold {show(a['threshold'])}, precision "
                     f"{show(a['precision'])}, recall {show(a['recall'])}, F1 {show(a['f1'])}")
    given = m.get("at_given_thresholds")
    if given:
        per = ", ".join(f"{name} {show(f1)}" for name, f1 in given["per_label_f1"].items())
        shown.append(f"at the export's thresholds.json: {_set_scores(given)}; F1 per label {per}")
    shown.append("accept if every label is >= m from its threshold  accepted  subset accuracy of accepted")
    for row in m["coverage"]:
        accuracy = "-" if row["subset_accuracy"] is None else f"{row['subset_accuracy']:.2%}"
        shown.append(f"{row['margin']:>48g}  {row['accepted']:>8}  {accuracy:>26}")
    if result["review"] is not None:
        shown.append(f"review queue: {result['review']['count']} images with a label within "
                     f"{result['review']['threshold']:g} of its threshold in {result['out'] / 'review'}/queue.csv")
    shown += [f"note: {note}" for note in m["notes"]]
    shown.append(f"wrote {result['out']}/ (open report.html)")
    return shown


def _set_scores(at: dict) -> str:
    return (f"Rekognition F1 {show(at['f1'])} (precision {show(at['precision'])}, recall {show(at['recall'])}), "
            f"micro F1 {at['micro_f1']:.4f}, macro F1 {at['macro_f1']:.4f}, subset accuracy "
            f"{at['subset_accuracy']:.2%}, Hamming loss {at['hamming_loss']:.4f}")


HOOKS = EvaluationHooks(open_run=open_run, open_export=open_export, samples=read_samples, check=check_labels,
                        write=write, lines=lines, data_hint="MANIFEST", review_queue=True)
