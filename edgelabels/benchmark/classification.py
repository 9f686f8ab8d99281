"""A classifier's benchmark hooks: one label per test image, both sides scored by the evaluation's metric code.

Both sides' DetectCustomLabels answers (MinConfidence 0: every label with its confidence) become confidence
arrays (N, K) over the local model's labels, scored by evaluate_arrays, so a difference in the numbers is a
difference between the models, not between two scoring programs. Three operating points, because Rekognition
has three:
- top label (MinConfidence 0, every label returned, the most confident one taken): accuracy,
  balanced accuracy, macro precision / recall / F1;
- assumed thresholds, Rekognition's definition (per label, the confidence that maximises that
  label's F1 on the test set), derived on this test set for each model alike;
- each model's shipped thresholds (what DetectCustomLabels returns with MinConfidence omitted):
  thresholds.json for the local model, the EvaluationSummary's for Rekognition when given.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from edgelabels.benchmark import report
from edgelabels.benchmark.driver import BenchmarkHooks, scorable
from edgelabels.evaluate.page import escape, format_value


def test_samples(source, labels: list[str]):
    from edgelabels.data.sources import load_dataset

    dataset = load_dataset(source)
    return scorable(source, dataset, {s.label for s in dataset.samples}, labels, empty="no labelled test images")


def read_answers(responses: list[dict], labels: list[str], name: str) -> tuple[np.ndarray, list[str], dict]:
    from edgelabels.benchmark.responses import to_probabilities

    probs, notes = to_probabilities(responses, labels, name)
    silent = int((probs.sum(axis=1) == 0).sum())
    if silent:  # a classifier answers every label at MinConfidence 0; this model did not
        notes.append(f"Rekognition returned no label at all for {silent} images even at MinConfidence 0; "
                     "their top label counts as the first label with confidence 0")
    return probs, notes, {}


# -- scoring ------------------------------------------------------------------------------------

def at_thresholds(y_true, probs, labels, thresholds: dict | None, source: str | None) -> dict:
    """Rekognition's label metrics at a model's own per-label thresholds (0-1), or unavailable."""
    from edgelabels.evaluate.thresholds import label_metrics, macro_mean

    if thresholds is None:
        return {"source": None, "thresholds": None, "precision": None, "recall": None, "f1": None, "per_label": None}
    rows = label_metrics(y_true, probs, [thresholds.get(label) for label in labels])
    return {"source": source, "thresholds": {label: thresholds.get(label) for label in labels},
            **{key: macro_mean(rows, key) for key in ("precision", "recall", "f1")},
            "per_label": [{"label": label, **row} for label, row in zip(labels, rows)]}


def top_label_per_label(y_true, probs, labels) -> list[dict]:
    """Per-label precision / recall / F1 of the top label (scikit-learn; None where undefined)."""
    from sklearn.metrics import precision_recall_fscore_support

    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, probs.argmax(axis=1), labels=list(range(len(labels))), zero_division=np.nan)
    return [{"label": label, "support": int(support[k]), "precision": _finite(precision[k]),
             "recall": _finite(recall[k]), "f1": _finite(f1[k]) if support[k] else None}
            for k, label in enumerate(labels)]


def side_scores(y_true, probs, labels, thresholds, threshold_source) -> dict:
    from edgelabels.evaluate.metrics import evaluate_arrays

    metrics = evaluate_arrays(y_true, probs, labels, min_confidence=0.5)
    return {
        "top_label": {key: metrics[key] for key in
                      ("accuracy", "balanced_accuracy", "precision_macro", "recall_macro", "f1_macro")},
        "at_assumed_thresholds": {**metrics["at_assumed_thresholds"],
                                  "thresholds": {row["label"]: row["assumed_threshold"] for row in metrics["per_label"]}},
        "at_model_thresholds": at_thresholds(y_true, probs, labels, thresholds, threshold_source),
        "per_label_top": top_label_per_label(y_true, probs, labels),
        "metrics": metrics,  # the whole metrics.json the evaluation writes, for anyone who wants more
    }


def agreement(y_true, local_probs, remote_probs) -> dict:
    """How often the top labels agree, and McNemar's exact test on the images exactly one side gets right."""
    from edgelabels.benchmark.compare import mcnemar

    same = local_probs.argmax(axis=1) == remote_probs.argmax(axis=1)
    return {"images": int(len(y_true)), "same_top_label": int(same.sum()), "same_top_label_fraction": float(same.mean()),
            **mcnemar(local_probs.argmax(axis=1) == y_true, remote_probs.argmax(axis=1) == y_true)}


def disagreements(y_true, local_probs, remote_probs, labels, paths) -> list[dict]:
    """Images whose top labels differ: one side right first, then both wrong; most confident first."""
    rows = []
    for i in np.flatnonzero(local_probs.argmax(axis=1) != remote_probs.argmax(axis=1)):
        lk, rk = int(local_probs[i].argmax()), int(remote_probs[i].argmax())
        right = "local" if lk == y_true[i] else "rekognition" if rk == y_true[i] else "neither"
        rows.append({"path": str(paths[i]), "true": labels[y_true[i]], "right": right,
                     "local": {"label": labels[lk], "confidence": float(local_probs[i, lk])},
                     "rekognition": {"label": labels[rk], "confidence": float(remote_probs[i, rk])}})
    rows.sort(key=lambda r: (r["right"] == "neither", -max(r["local"]["confidence"], r["rekognition"]["confidence"])))
    return rows


def score(samples, labels, local, remote, *, own: dict, records) -> tuple[dict, None]:
    index = {label: k for k, label in enumerate(labels)}
    y_true = np.array([index[s.label] for s in samples], np.int64)
    local, remote = np.asarray(local, np.float64), np.asarray(remote, np.float64)
    sides = {"local": side_scores(y_true, local, labels, *own["local"]),
             "rekognition": side_scores(y_true, remote, labels, *own["rekognition"])}
    return {"sides": sides, "agreement": agreement(y_true, local, remote),
            "disagreements": disagreements(y_true, local, remote, labels, [s.path for s in samples])}, None


def _finite(value) -> float | None:
    return float(value) if np.isfinite(value) else None


# -- the report ---------------------------------------------------------------------------------

# (name, path into a side, format, which is better: "high", "low" or None)
METRIC_ROWS = [
    ("Accuracy (top label, MinConfidence 0)", ("top_label", "accuracy"), "%", "high"),
    ("Balanced accuracy (top label)", ("top_label", "balanced_accuracy"), "%", "high"),
    ("Macro precision (top label)", ("top_label", "precision_macro"), "f", "high"),
    ("Macro recall (top label)", ("top_label", "recall_macro"), "f", "high"),
    ("Macro F1 (top label)", ("top_label", "f1_macro"), "f", "high"),
    *(row for point, key in (("assumed thresholds", "at_assumed_thresholds"),
                             ("the model's own thresholds", "at_model_thresholds"))
      for row in report.point_rows(point, key, [("Precision", "precision", "f", "high"),
                                                ("Recall", "recall", "f", "high"), ("F1", "f1", "f", "high")])),
    ("ROC AUC (macro, one-vs-rest)", ("metrics", "roc_auc_macro"), "f", "high"),
    ("Log loss", ("metrics", "log_loss"), "f", "low"),
    ("Calibration error (ECE)", ("metrics", "expected_calibration_error"), "f", "low"),
    *report.SPEED_ROWS,
]


def label_table(comparison: dict) -> tuple[list[str], list[list[str]]]:
    local, remote = comparison["sides"]["local"], comparison["sides"]["rekognition"]
    header = ["Label", "Test images", "F1 top label: local", "Rekognition", "F1 assumed thr.: local", "Rekognition",
              "F1 own thr.: local", "Rekognition"]
    own = [side["at_model_thresholds"]["per_label"] for side in (local, remote)]  # None: thresholds unknown
    rows = []
    for k, label in enumerate(comparison["labels"]):
        rows.append([label, format_value(local["per_label_top"][k]["support"], "i"),
                     format_value(local["per_label_top"][k]["f1"]), format_value(remote["per_label_top"][k]["f1"]),
                     format_value(local["metrics"]["per_label"][k]["at_assumed_threshold"]["f1"]),
                     format_value(remote["metrics"]["per_label"][k]["at_assumed_threshold"]["f1"]),
                     *(format_value(rows_[k]["f1"] if rows_ else None) for rows_ in own)])
    return header, rows


def agreement_table(comparison: dict) -> tuple[list[str], list[list[str]]]:
    a = comparison["agreement"]
    share = (lambda n: f"{n:,} ({n / a['images']:.1%})")
    return ["Images", "Count"], [
        ["Same top label", share(a["same_top_label"])], *report.agreement_rows(a)]


def cards(comparison: dict) -> list[tuple[str, str, str]]:
    return [*report.side_cards(comparison, [("Accuracy (top label)", ("top_label", "accuracy"), "%"),
                                            ("F1 at assumed thresholds", ("at_assumed_thresholds", "f1"), "f")]),
            ("Same top label", f"{comparison['agreement']['same_top_label_fraction']:.1%}", "")]


def _verdict(side: dict, true: str) -> str:
    ok = side["label"] == true
    return f"<span class='{'ok' if ok else 'bad'}'>{escape(side['label'])} ({side['confidence']:.1%}) " \
           f"{'right' if ok else 'wrong'}</span>"


def _figure(item: dict) -> str:
    return report.thumbnail_figure(item["path"], f"true {escape(item['true'])}",
                                   [f"edgelabels: {_verdict(item['local'], item['true'])}",
                                    f"Rekognition: {_verdict(item['rekognition'], item['true'])}"])


def sections(page, comparison: dict, gallery: int | None) -> None:
    """Side by side, per label, agreement; then (after the shared sections) where the top labels differ."""
    page.heading("Side by side")
    page.html.append(
        "<p class='note'>Same test images, same scoring code. <i>Top label</i>: every label requested "
        "(MinConfidence 0) and the most confident one taken. <i>Assumed thresholds</i>: Rekognition's definition "
        "(per label, the confidence that maximises its F1 on this test set), derived for each model alike. "
        "<i>Own thresholds</i>: what each model returns with MinConfidence omitted (thresholds.json; Rekognition's "
        "EvaluationSummary when given). The better value is highlighted.</p>")
    page.md += ["Better value in bold. Top label: MinConfidence 0, most confident label. Assumed thresholds: per "
                "label, the F1-maximising confidence on this test set (Rekognition's definition). Own thresholds: "
                "thresholds.json / Rekognition's EvaluationSummary.", ""]
    page.table(*report.metric_table(comparison, METRIC_ROWS))
    if comparison["sides"]["rekognition"]["at_model_thresholds"]["thresholds"] is None:
        report.own_thresholds_note(page)
    page.heading("Per-label F1")
    page.table(*label_table(comparison))
    page.heading("Agreement")
    page.table(*agreement_table(comparison))


def _md_row(item: dict) -> list[str]:
    return [item["true"], *(f"{item[side]['label']} ({item[side]['confidence']:.1%})"
                            for side in ("local", "rekognition"))]


gallery_section = functools.partial(
    report.thumbnail_gallery, figure=_figure, order="Images where one model is right first, most confident first",
    md_row=_md_row, same="The two models give the same top label on every image.")


def lines(comparison: dict, out: Path) -> list[str]:
    rows = [("accuracy (top label)", ("top_label", "accuracy"), "%"),
            ("macro F1 (top label)", ("top_label", "f1_macro"), "f"),
            ("F1 at assumed thresholds", ("at_assumed_thresholds", "f1"), "f"),
            ("F1 at the model's thresholds", ("at_model_thresholds", "f1"), "f")]
    return report.cli_rows_and_agreement(comparison, rows, "same top label")


HOOKS = BenchmarkHooks(test_samples=test_samples, read_answers=read_answers, score=score, cards=cards,
                       sections=sections, gallery=gallery_section, lines=lines)
