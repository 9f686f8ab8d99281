"""report.html (one self-contained file: CSS inline, images embedded as base64) and report.md of an evaluation.

Both are rendered from the dictionaries the evaluation already wrote (metrics.json, summary.json,
the review-queue summary, the Grad-CAM gallery): the report shows numbers, it computes none.
"""

from __future__ import annotations

from pathlib import Path

from edgelabels import atomic
from edgelabels.evaluate.page import Page, format_estimate, format_value

PLOT_TITLES = {
    "confusion_matrix": "Confusion matrix",
    "roc": "ROC curves",
    "precision_recall": "Precision-recall curves",
    "confidence_histogram": "Confidence histogram",
    "coverage": "Accuracy vs coverage",
}


def estimate(metrics: dict, key: str, kind: str = "f") -> str:
    """The figure at dotted path `key` of metrics ("at_assumed_thresholds.f1") with its bootstrap interval."""
    value = metrics
    for part in key.split("."):
        value = value[part]
    return format_estimate(value, metrics.get("intervals", {}).get(key), kind)


def headline(metrics: dict) -> list[tuple[str, str]]:
    at_min = metrics["at_min_confidence"]
    return [
        ("Images evaluated", format_value(metrics["number_of_images"], "i")),
        ("Accuracy (top label)", estimate(metrics, "accuracy", "%")),
        ("Balanced accuracy", format_value(metrics["balanced_accuracy"], "%")),
        ("Macro F1 (top label)", estimate(metrics, "f1_macro")),
        ("Rekognition F1 (assumed thresholds)", estimate(metrics, "at_assumed_thresholds.f1")),
        ("Rekognition precision (assumed thresholds)", estimate(metrics, "at_assumed_thresholds.precision")),
        ("Rekognition recall (assumed thresholds)", estimate(metrics, "at_assumed_thresholds.recall")),
        (f"F1 at min confidence {at_min['min_confidence']:g}", format_value(at_min["f1"])),
        ("ROC AUC (macro, one-vs-rest)", estimate(metrics, "roc_auc_macro")),
        ("Log loss", format_value(metrics["log_loss"])),
        (f"Calibration error (ECE, {metrics['ece_bins']} bins)", format_value(metrics["expected_calibration_error"])),
    ]


ONE_VS_REST = (("Sensitivity", "sensitivity"), ("Specificity", "specificity"), ("ROC AUC", "roc_auc"))


def label_table(metrics: dict, min_confidence: float | None = None, threshold=None, extra=ONE_VS_REST) \
        -> tuple[list[str], list[list[str]]]:
    """Per label, best F1 first: its assumed threshold (`threshold(row)`; a classifier's row["assumed_threshold"]),
    precision, recall and F1 there and at `min_confidence`, then the `extra` (title, key) columns."""
    min_conf = metrics["at_min_confidence"]["min_confidence"] if min_confidence is None else min_confidence
    threshold = threshold or (lambda row: row["assumed_threshold"])
    header = ["Label", "Test images", "Assumed threshold", "Precision @assumed", "Recall @assumed", "F1 @assumed",
              f"Precision @{min_conf:g}", f"Recall @{min_conf:g}", f"F1 @{min_conf:g}", *(title for title, _ in extra)]
    rows = []
    for row in sorted(metrics["per_label"], key=lambda r: -(r["at_assumed_threshold"]["f1"] or -1)):
        at, at_min = row["at_assumed_threshold"], row["at_min_confidence"]
        rows.append([row["label"], format_value(row["support"], "i"), format_value(threshold(row), "t"),
                     format_value(at["precision"]), format_value(at["recall"]), format_value(at["f1"]),
                     format_value(at_min["precision"]), format_value(at_min["recall"]), format_value(at_min["f1"]),
                     *(format_value(row[key]) for _, key in extra)])
    return header, rows


def coverage_rows(metrics: dict, rule: str = "Accept if top confidence >=", at: str = "threshold",
                  accuracy: str = "accuracy") -> tuple[list[str], list[list[str]]]:
    """The coverage table: per row of metrics["coverage"], its `at` value (a threshold; a multi-label margin),
    how many are accepted and sent to a person, and the `accuracy` of the accepted."""
    header = [rule, "Accepted", "Sent to a human", f"{accuracy.replace('_', ' ').capitalize()} of accepted"]
    rows = [[f"{r[at]:g}", format_value(r["accepted"], "i"),
             f"{r['discarded']:,} ({r['discarded_fraction']:.2%})", format_value(r[accuracy], "%")]
            for r in metrics["coverage"]]
    return header, rows


def _review_text(review: dict | None) -> str:
    if review is None:
        return "No review queue (run with --review-threshold X to copy low-confidence images out for a person)."
    unanswered = review.get("unanswered", 0)
    return (f"{review['count']:,} images ({review['fraction']:.2%}) have a top confidence below "
            f"{review['threshold']:g}"
            + (f", {unanswered:,} of them with no answer at all (no result window found)" if unanswered else "")
            + f"; {review['wrong_in_queue']:,} answered ones are misclassified. "
            f"They are listed least confident first in {review['queue']}, with copies in review/images/.")


def write_report(folder: str | Path, *, metrics: dict, summary: dict, plots: dict, review: dict | None,
                 gallery: list[dict], context: dict, recipe: dict | None = None) -> tuple[Path, Path]:
    """Write report.html and report.md into `folder` (plot and gallery paths are inside it)."""
    folder = Path(folder)
    page = evaluation_page(folder, summary, {k: v for k, v in context.items() if k != "gradcam"}, "Evaluation")
    page.cards(headline(metrics))
    interval_note(page, metrics)
    page.heading("Per label")
    page.note("Rekognition's view: each label one-vs-rest, counted as predicted when its confidence reaches its "
              "assumed threshold (the threshold that maximises its F1 on this set), and at the chosen minimum "
              "confidence. Sensitivity, specificity and ROC AUC use the top label.")
    page.table(*label_table(metrics))
    label_intervals(page, metrics)
    page.heading("Confidence threshold vs coverage")
    page.note("Accept the top label only when its confidence reaches the threshold; the rest go to a person.")
    page.table(*coverage_rows(metrics))
    page.heading("Review queue")
    page.paragraph(_review_text(review))
    if review is not None and review.get("no_answer_thumbnails"):
        page.note("Photos with no answer: a stage before the model (the window detector) found nothing to read. "
                  "They go to a person whatever the threshold.")
        page.figures([(folder / t, Path(t).name.split("_", 1)[1], "wrong") for t in review["no_answer_thumbnails"]])
    page.heading("Plots")
    page.figures([(path, PLOT_TITLES.get(name, name), "wide" if name == "confusion_matrix" else "")
                  for name, path in plots.items()], grid="plots")
    page.heading("Grad-CAM: where the model looked")
    if gallery:
        page.note("Left: the image as the model sees it; right: the heatmap for the predicted label. Most "
                  "confident mistakes first, then a random sample of correct predictions.")
        page.figures([(folder / item["file"], f"{item['kind']}: predicted {item['predicted_label']} "
                       f"({item['confidence']:.1%}), true {item['true_label']} - {Path(item['path']).name}",
                       item["kind"]) for item in gallery])
    else:
        page.note(context.get("gradcam", "No Grad-CAM gallery."))
    calibration_section(page, metrics.get("calibration"))
    recipe_section(page, recipe)
    return finish(page, metrics["notes"])


def interval_note(page: Page, metrics: dict) -> None:
    """How the intervals beside the headline figures were made (evaluate/bootstrap.py)."""
    intervals = {k: v for k, v in metrics.get("intervals", {}).items() if k != "per_label"}
    if not intervals:
        return
    first = next(iter(intervals.values()))
    skipped = {k: v["undefined"] for k, v in intervals.items() if v["undefined"]}
    page.note(f"CI: {first['level']:.0%} bootstrap interval (percentile; {first['resamples']:,} resamples of the "
              f"test {first['unit']}s, drawn with replacement from a fixed seed; thresholds kept as chosen): how far "
              "the figure could move on another test set of this size from the same source."
              + (" Resamples where a figure is undefined (no image of a label drawn) are skipped: "
                 + ", ".join(f"{k} {n:,}" for k, n in skipped.items()) + "." if skipped else ""))


def label_intervals(page: Page, metrics: dict, columns=(("Precision", "precision"), ("Recall", "recall"),
                                                       ("F1", "f1"))) -> None:
    """Per label, each figure at its assumed threshold with its bootstrap interval (metrics["intervals"])."""
    per_label = metrics.get("intervals", {}).get("per_label")
    if not per_label:
        return
    page.heading("Per label, with 95% intervals")
    page.note("At each label's assumed threshold, as above; the interval is the bootstrap's over test images.")
    page.table(["Label", *(title for title, _ in columns)],
               [[name, *(format_estimate(found[key]["value"], found[key]) for _, key in columns)]
                for name, found in per_label.items()])


def calibration_section(page: Page, calibration: dict | None) -> None:
    """metrics["calibration"] (evaluate/calibration.py's entry): ECE before and after, the reliability diagram."""
    if calibration is None:
        return
    page.heading("Calibration")
    fitted_on = calibration.get("fitted_on")
    if isinstance(fitted_on, dict):  # {"split": "val", "images": 80}
        fitted_on = ", ".join(f"{key} {value}" for key, value in fitted_on.items())
    fitted = f", fitted on {fitted_on}" if fitted_on else ""
    page.paragraph(f"{calibration['method']}{fitted}: expected calibration error "
                   f"{format_value(calibration['ece_before'])} before, {format_value(calibration['ece_after'])} "
                   "after, on these images (a confidence of 80% should be right about 80% of the time: 0 is "
                   "perfect).")
    validation = calibration.get("validation") or {}
    if validation.get("ece_before") is not None:
        page.note(f"On the validation split it was fitted on: {format_value(validation['ece_before'])} before, "
                  f"{format_value(validation['ece_after'])} after.")
    if calibration.get("reason"):
        page.note(f"Why this method: {calibration['reason']}.")
    if calibration.get("what"):
        page.note(f"Scored: {calibration['what']}.")
    if calibration.get("plot"):
        page.figure(page.folder / calibration["plot"], "Reliability diagram before and after calibration")


def recipe_section(page: Page, recipe: dict | None) -> None:
    """recipe.json of the evaluated run: each `auto` choice with its value and its reason, the budget, and what
    the recipe measured."""
    if recipe is None:
        return
    page.heading("Recipe")
    budget = recipe.get("budget_s")
    page.note(f"Chosen from the data by `edgelabels train` (recipe.json) for the keys set to auto"
              + (f", within a budget of {_duration(budget)}" if budget else "") + f"; source {recipe.get('source')}.")
    page.table(["Key", "Value", "Reason"], [[str(c.get("key")), _shown(c.get("value")), str(c.get("reason", ""))]
                                            for c in recipe["choices"]])
    measured = recipe.get("measured") or {}
    if measured:
        page.table(["Measured", "Value"], [[str(k), _shown(v)] for k, v in measured.items()])


def _shown(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "null" if value is None else str(value)


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds / 60:g} min" if seconds >= 60 else \
        f"{seconds:g} s"


def evaluation_page(folder: Path, summary: dict, context: dict, title: str) -> Page:
    """A report page headed by the run, the time of the evaluation and the context's lines (context["title"],
    else `title`, is the page's title)."""
    details = summary["EvaluationDetails"]
    meta = [("run", details["ProjectVersionArn"]), ("evaluated", details["EvaluationEndTimestamp"] + " UTC"),
            *((k, str(v)) for k, v in context.items() if k != "title")]
    return Page(folder, context.get("title", title), meta)


def finish(page: Page, notes: list[str]) -> tuple[Path, Path]:
    """The notes last, then report.html and report.md written into the page's folder."""
    if notes:
        page.heading("Notes")
        page.bullets(notes)
    return (atomic.write_text(page.folder / "report.html", page.html_text()),
            atomic.write_text(page.folder / "report.md", page.md_text()))
