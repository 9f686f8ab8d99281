"""A multi-label classifier's benchmark hooks: every label scored on its own, for both sides alike.

A multi-label Rekognition model answers every label its image passes (each CustomLabel at or above that label's
threshold, or MinConfidence); asked at MinConfidence 0 it answers every label with its confidence. Both sides'
answers become independent confidences (N, K) over the local model's labels and go through the evaluation's
multi-label metric code (evaluate/multilabel.py), label by label, at two operating points:
- assumed thresholds, Rekognition's definition (per label, the confidence that maximises that label's F1 on
  this test set), derived for each model alike;
- each model's own: thresholds.json for the local model; for Rekognition, the thresholds of its
  EvaluationSummary when given, else the labels it returned when it was asked without MinConfidence (a
  recording of its own answers); asked at MinConfidence 0 it returned every label, which says nothing about
  its thresholds: unknown (n/a) then.
Per label: precision, recall, F1 (and counts); over the whole label set: subset accuracy (every label right),
Hamming loss, micro / macro F1. Agreement: the same label set (at assumed thresholds), McNemar on subset-right.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from edgelabels.benchmark import report
from edgelabels.benchmark.driver import BenchmarkHooks, scorable
from edgelabels.evaluate.page import escape, format_value

RETURNED = "the labels Rekognition returned (recorded without MinConfidence)"


def test_samples(source, labels: list[str]):
    """A folder per label (an image with several labels: a copy of the same bytes in each label's folder) or a
    manifest giving images several labels; each image once, with all of its labels."""
    from edgelabels.data.multilabel import _with_copies_merged
    from edgelabels.data.sources import load_dataset

    dataset = _with_copies_merged(load_dataset(source))
    return scorable(source, dataset, {label for s in dataset.samples for label in s.labels}, labels,
                    empty="no labelled test images")


def read_answers(responses: list[dict], labels: list[str], name: str) -> tuple[np.ndarray, list[str], dict]:
    from edgelabels.benchmark.responses import to_probabilities

    probs, notes = to_probabilities(responses, labels, name)
    return probs, notes, {}


# -- scoring ------------------------------------------------------------------------------------

def returned_sets(records, labels: list[str]) -> np.ndarray | None:
    """(N, K) bool: the labels each recorded answer named, when none was asked at MinConfidence 0; else None."""
    if any(r.get("min_confidence") == 0 for r in records):
        return None
    index = {label: k for k, label in enumerate(labels)}
    named = np.zeros((len(records), len(labels)), bool)
    for i, record in enumerate(records):
        for item in record["response"].get("CustomLabels", []):
            named[i, index[item["Name"]]] = True  # read_answers refused labels the local model lacks
    return named


def at_own(truth, predicted, labels, thresholds: dict | None, source: str | None) -> dict:
    """Rekognition's label metrics (evaluate.multilabel.set_metrics) for one side's own label sets, or unknown."""
    from edgelabels.evaluate.multilabel import set_metrics

    if predicted is None:
        return {"source": None, "thresholds": None, "precision": None, "recall": None, "f1": None,
                "subset_accuracy": None, "hamming_loss": None, "micro_f1": None, "per_label": None}
    scores = set_metrics(truth, predicted)
    return {"source": source, "thresholds": thresholds, **{k: v for k, v in scores.items() if k != "per_label"},
            "per_label": [{"label": label, **row} for label, row in zip(labels, scores["per_label"])]}


def side_scores(truth, probs, labels, thresholds: dict | None, source: str | None, returned=None) -> dict:
    from edgelabels.evaluate.multilabel import evaluate_matrices, predicted_sets

    metrics = evaluate_matrices(truth, probs, labels, min_confidence=0.5)
    if thresholds is not None:
        own = at_own(truth, predicted_sets(probs, [thresholds.get(label) for label in labels]), labels,
                     {label: thresholds.get(label) for label in labels}, source)
    else:
        own = at_own(truth, returned, labels, None, RETURNED if returned is not None else None)
    return {
        "at_assumed_thresholds": {**metrics["at_assumed_thresholds"],
                                  "thresholds": {row["label"]: row["at_assumed_threshold"]["threshold"]
                                                 for row in metrics["per_label"]}},
        "at_model_thresholds": own,
        "per_label": [{"label": row["label"], "support": row["support"], "roc_auc": row["roc_auc"],
                       "at_assumed_threshold": row["at_assumed_threshold"],
                       "at_model_threshold": own["per_label"][k] if own["per_label"] else None}
                      for k, row in enumerate(metrics["per_label"])],
        "metrics": metrics,  # the whole metrics.json the evaluation writes, for anyone who wants more
    }


def label_set(row, labels) -> list[str]:
    return [label for label, on in zip(labels, row) if on]


def score(samples, labels, local, remote, *, own: dict, records) -> tuple[dict, None]:
    from edgelabels.benchmark.compare import mcnemar
    from edgelabels.data.multilabel import multi_hot
    from edgelabels.evaluate.multilabel import predicted_sets

    truth = multi_hot(samples, labels).astype(bool)
    probs = {"local": np.asarray(local, np.float64), "rekognition": np.asarray(remote, np.float64)}
    sides = {"local": side_scores(truth, probs["local"], labels, *own["local"]),
             "rekognition": side_scores(truth, probs["rekognition"], labels, *own["rekognition"],
                                        returned=returned_sets(records, labels))}
    got = {side: predicted_sets(probs[side], [sides[side]["at_assumed_thresholds"]["thresholds"][label]
                                              for label in labels]) for side in sides}
    right = {side: (got[side] == truth).all(axis=1) for side in sides}
    same = (got["local"] == got["rekognition"]).all(axis=1)
    agreement = {"images": int(len(truth)), "same_label_set": int(same.sum()),
                 "same_label_set_fraction": float(same.mean()), **mcnemar(right["local"], right["rekognition"])}
    different = []
    for i in np.flatnonzero(~same):
        who = "local" if right["local"][i] else "rekognition" if right["rekognition"][i] else "neither"
        different.append({"path": str(samples[i].path), "true": label_set(truth[i], labels), "right": who,
                          **{side: label_set(got[side][i], labels) for side in sides}})
    different.sort(key=lambda d: (d["right"] == "neither", d["path"]))
    return {"sides": sides, "agreement": agreement, "disagreements": different}, None


# -- the report ---------------------------------------------------------------------------------

# Per operating point: the whole label set, then Rekognition's per-label figures averaged over labels
SET_METRICS = [("Subset accuracy (every label right)", "subset_accuracy", "%", "high"),
               ("Macro precision", "precision", "f", "high"), ("Macro recall", "recall", "f", "high"),
               ("Macro F1", "f1", "f", "high"), ("Micro F1", "micro_f1", "f", "high"),
               ("Hamming loss", "hamming_loss", "f", "low")]
METRIC_ROWS = [
    *report.point_rows("assumed thresholds", "at_assumed_thresholds", SET_METRICS),
    *report.point_rows("the model's own thresholds", "at_model_thresholds", SET_METRICS),
    ("ROC AUC (macro over labels)", ("metrics", "roc_auc_macro"), "f", "high"),
    *report.SPEED_ROWS,
]


def label_table(comparison: dict) -> tuple[list[str], list[list[str]]]:
    local, remote = (comparison["sides"][side]["per_label"] for side in ("local", "rekognition"))
    header = ["Label", "Test images", "Own thr.: local", "Rekognition", "P / R / F1 own thr.: local", "Rekognition",
              "P / R / F1 assumed thr.: local", "Rekognition", "ROC AUC: local", "Rekognition"]
    prf = (lambda d: " / ".join(format_value(d and d[key]) for key in ("precision", "recall", "f1")))
    own = [comparison["sides"][side]["at_model_thresholds"]["thresholds"] for side in ("local", "rekognition")]
    rows = []
    for a, b in zip(local, remote):
        rows.append([a["label"], format_value(a["support"], "i"),
                     *(format_value(t and t[a["label"]]) for t in own),
                     prf(a["at_model_threshold"]), prf(b["at_model_threshold"]),
                     prf(a["at_assumed_threshold"]), prf(b["at_assumed_threshold"]),
                     format_value(a["roc_auc"]), format_value(b["roc_auc"])])
    return header, rows


def cards(comparison: dict) -> list[tuple[str, str, str]]:
    return [*report.side_cards(comparison, [
        ("Subset accuracy (assumed thr.)", ("at_assumed_thresholds", "subset_accuracy"), "%"),
        ("Macro F1 at assumed thresholds", ("at_assumed_thresholds", "f1"), "f")]),
        ("Same label set", f"{comparison['agreement']['same_label_set_fraction']:.1%}", "")]


def sections(page, comparison: dict, gallery: int | None) -> None:
    page.heading("Side by side")
    page.note("Same test images, same scoring code, each label judged on its own (yes or no). Assumed thresholds: "
              "per label, the confidence that maximises its F1 on this test set (Rekognition's definition), derived "
              "for each model alike. Own thresholds: what each model returns with MinConfidence omitted "
              "(thresholds.json; Rekognition's EvaluationSummary when given, else the labels it returned when "
              "asked without MinConfidence). Subset accuracy: the share of images whose whole label set is right.")
    page.table(*report.metric_table(comparison, METRIC_ROWS))
    remote_own = comparison["sides"]["rekognition"]["at_model_thresholds"]
    if remote_own["per_label"] is None:
        report.own_thresholds_note(page)
    elif remote_own["source"] == RETURNED:
        page.note(f"Rekognition's own operating point: {RETURNED}.")
    page.heading("Per label")
    page.table(*label_table(comparison))
    page.heading("Agreement (label sets at assumed thresholds)")
    a = comparison["agreement"]
    same = f"{a['same_label_set']:,} ({a['same_label_set_fraction']:.1%})"
    page.table(["Images", "Count"], [["Same label set", same], *report.agreement_rows(a)])


def _figure(item: dict) -> str:
    def said(labels):
        ok = labels == item["true"]
        return f"<span class='{'ok' if ok else 'bad'}'>{escape(', '.join(labels) or '(none)')}</span>"

    return report.thumbnail_figure(item["path"], f"true {escape(', '.join(item['true']) or '(none)')}",
                                   [f"edgelabels: {said(item['local'])}", f"Rekognition: {said(item['rekognition'])}"])


gallery_section = functools.partial(
    report.thumbnail_gallery, figure=_figure,
    order="Images whose label sets differ (assumed thresholds), one side right first",
    md_row=lambda d: [", ".join(d[key]) or "(none)" for key in ("true", "local", "rekognition")],
    same="The two models give the same label set on every image.")


def lines(comparison: dict, out: Path) -> list[str]:
    per_label = [(f"F1 {label} (own thr.)", ("per_label", k, "at_model_threshold", "f1"), "f")
                 for k, label in enumerate(comparison["labels"])]
    return report.cli_rows_and_agreement(comparison, [
        ("subset accuracy (assumed thr.)", ("at_assumed_thresholds", "subset_accuracy"), "%"),
        ("macro F1 (assumed thr.)", ("at_assumed_thresholds", "f1"), "f"),
        ("subset accuracy (own thr.)", ("at_model_thresholds", "subset_accuracy"), "%"),
        ("macro F1 (own thr.)", ("at_model_thresholds", "f1"), "f"), *per_label], "same label set")


HOOKS = BenchmarkHooks(test_samples=test_samples, read_answers=read_answers, score=score, cards=cards,
                       sections=sections, gallery=gallery_section, lines=lines, title=" (multi-label)")
