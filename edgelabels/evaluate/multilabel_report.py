"""report.html (self-contained) and report.md of a multi-label evaluation, from metrics.json and summary.json.

The classifier's report (report.py) in the multi-label's terms: each label judged one-vs-rest at its own
assumed threshold, the set-level scores beside them, and coverage by margin (an image is accepted when every
label's confidence is at least the margin away from its threshold). The report shows numbers, it computes none.
"""

from __future__ import annotations

from pathlib import Path

from edgelabels.evaluate.page import format_value
from edgelabels.evaluate.report import (PLOT_TITLES, calibration_section, coverage_rows, estimate, evaluation_page,
                                        finish, interval_note, label_intervals, label_table, recipe_section)


def headline(metrics: dict) -> list[tuple[str, str]]:
    at, at_min = metrics["at_assumed_thresholds"], metrics["at_min_confidence"]
    return [
        ("Images evaluated", format_value(metrics["number_of_images"], "i")),
        ("Labels per image", f"{metrics['labels_per_image']:.2f}"),
        ("Rekognition F1 (assumed thresholds)", estimate(metrics, "at_assumed_thresholds.f1")),
        ("Rekognition precision (assumed thresholds)", estimate(metrics, "at_assumed_thresholds.precision")),
        ("Rekognition recall (assumed thresholds)", estimate(metrics, "at_assumed_thresholds.recall")),
        ("Subset accuracy (whole label set right)", estimate(metrics, "at_assumed_thresholds.subset_accuracy", "%")),
        ("Hamming loss", format_value(at["hamming_loss"])),
        ("Micro F1", format_value(at["micro_f1"])),
        ("Macro F1", estimate(metrics, "at_assumed_thresholds.macro_f1")),
        ("Macro average precision", estimate(metrics, "average_precision_macro")),
        (f"Rekognition F1 at min confidence {at_min['threshold']:g}", format_value(at_min["f1"])),
        ("ROC AUC (macro over labels)", format_value(metrics["roc_auc_macro"])),
    ]


def _review_text(review: dict | None) -> str:
    if review is None:
        return ("No review queue (run with --review-threshold M to list the images with a label within M of its "
                "threshold for a person).")
    return (f"{review['count']:,} images have a label within {review['threshold']:g} of its threshold; they are "
            f"listed least sure first in review/queue.csv, with the label nearest its threshold.")


def write_report(folder: str | Path, *, metrics: dict, summary: dict, plots: dict, review: dict | None,
                 context: dict, recipe: dict | None = None) -> tuple[Path, Path]:
    """Write report.html and report.md into `folder` (plot paths are inside it)."""
    page = evaluation_page(Path(folder), summary, context, "Multi-label evaluation")
    page.cards(headline(metrics))
    interval_note(page, metrics)
    page.heading("Per label")
    page.note("Rekognition's view: each label is a yes/no question, answered yes when its confidence reaches its "
              "assumed threshold (the threshold that maximises its F1 on this set), and at the chosen minimum "
              "confidence for every label. An image may get several labels, or none.")
    page.table(*label_table(metrics, metrics["at_min_confidence"]["threshold"],
                            threshold=lambda row: row["at_assumed_threshold"]["threshold"],
                            extra=(("ROC AUC", "roc_auc"),)))
    label_intervals(page, metrics)
    given = metrics.get("at_given_thresholds")
    if given:
        page.heading("At the export's thresholds")
        page.note("The thresholds the export answers with (thresholds.json), chosen before these images were seen.")
        page.table(["Label", "Threshold", "F1"], [[name, format_value(given["thresholds"][name], "t"),
                                                  format_value(f1)] for name, f1 in given["per_label_f1"].items()])
        page.paragraph(f"Subset accuracy {format_value(given['subset_accuracy'], '%')}, micro F1 "
                       f"{format_value(given['micro_f1'])}, macro F1 {format_value(given['macro_f1'])}.")
    page.heading("Margin vs coverage")
    page.note(f"Coverage rule: {metrics['coverage_rule']}. The rest go to a person.")
    page.table(*coverage_rows(metrics, "Accept if every label is >= m from its threshold", "margin",
                              "subset_accuracy"))
    page.heading("Review queue")
    page.paragraph(_review_text(review))
    page.heading("Plots")
    page.figures([(path, PLOT_TITLES.get(name, name), "") for name, path in plots.items()], grid="plots")
    calibration_section(page, metrics.get("calibration"))
    recipe_section(page, recipe)
    return finish(page, metrics["notes"])
