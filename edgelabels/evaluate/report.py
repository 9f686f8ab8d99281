"""report.html (one self-contained file: CSS inline, images embedded as base64) and report.md.

Both are rendered from the dictionaries the evaluation already wrote (metrics.json, summary.json,
the review-queue summary, the Grad-CAM gallery): the report shows numbers, it computes none.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from edgelabels import atomic

PLOT_TITLES = {
    "confusion_matrix": "Confusion matrix",
    "roc": "ROC curves",
    "precision_recall": "Precision-recall curves",
    "confidence_histogram": "Confidence histogram",
    "coverage": "Accuracy vs coverage",
}

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f5f6f8;color:#1d232b}
main{max-width:1180px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:32px 0 10px;border-bottom:1px solid #d5d9e0;padding-bottom:4px}
.meta{color:#5b6572;font-size:13px;margin-bottom:18px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(165px,1fr));gap:10px}
.card{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:10px 12px}
.card .v{font-size:22px;font-weight:600}.card .k{font-size:12px;color:#5b6572}
table{border-collapse:collapse;background:#fff;font-size:13px;margin:6px 0}
th,td{border:1px solid #dde1e7;padding:5px 9px;text-align:right}th{background:#eef1f5}
td:first-child,th:first-child{text-align:left}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:14px}
figure{margin:0;background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:8px}
figure.wide{grid-column:1/-1}
figure img{max-width:100%;display:block;margin:0 auto}figcaption{font-size:12px;color:#5b6572;margin-top:4px}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(270px,1fr));gap:12px}
.wrong figcaption{color:#b3261e}.note{font-size:13px;color:#5b6572}p{font-size:14px}
"""


def format_value(value, kind: str = "f") -> str:
    """A number as report text: % share, t threshold, i count, ms, $, mb bytes, s seconds, /s rate."""
    if value is None:
        return "n/a"
    if kind == "%":
        return f"{value:.2%}"
    if kind == "t":
        return f"{value:.4f}"
    if kind == "i":
        return f"{value:,}"
    if kind == "ms":
        return f"{value:,.1f} ms"
    if kind == "$":  # fractions of a cent matter for per-image prices
        return f"${value:,.2f}" if value == 0 or value >= 0.1 else f"${value:.2g}"
    if kind == "mb":
        return f"{value / 1e6:,.2f} MB" if value >= 1e6 else f"{value / 1e3:,.1f} kB"
    if kind == "s":
        return f"{value:,.2f} s" if value >= 0.1 else f"{value * 1000:,.1f} ms"
    if kind == "/s":
        return f"{value:,.1f} images/s"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def headline(metrics: dict) -> list[tuple[str, str]]:
    at, at_min = metrics["at_assumed_thresholds"], metrics["at_min_confidence"]
    return [
        ("Images evaluated", format_value(metrics["number_of_images"], "i")),
        ("Accuracy (top label)", format_value(metrics["accuracy"], "%")),
        ("Balanced accuracy", format_value(metrics["balanced_accuracy"], "%")),
        ("Macro F1 (top label)", format_value(metrics["f1_macro"])),
        ("Rekognition F1 (assumed thresholds)", format_value(at["f1"])),
        ("Rekognition precision (assumed thresholds)", format_value(at["precision"])),
        ("Rekognition recall (assumed thresholds)", format_value(at["recall"])),
        (f"F1 at min confidence {at_min['min_confidence']:g}", format_value(at_min["f1"])),
        ("ROC AUC (macro, one-vs-rest)", format_value(metrics["roc_auc_macro"])),
        ("Log loss", format_value(metrics["log_loss"])),
        (f"Calibration error (ECE, {metrics['ece_bins']} bins)", format_value(metrics["expected_calibration_error"])),
    ]


def label_table(metrics: dict) -> tuple[list[str], list[list[str]]]:
    min_conf = metrics["at_min_confidence"]["min_confidence"]
    header = ["Label", "Test images", "Assumed threshold", "Precision @assumed", "Recall @assumed", "F1 @assumed",
              f"Precision @{min_conf:g}", f"Recall @{min_conf:g}", f"F1 @{min_conf:g}",
              "Sensitivity", "Specificity", "ROC AUC"]
    rows = []
    for row in sorted(metrics["per_label"], key=lambda r: -(r["at_assumed_threshold"]["f1"] or -1)):
        at, at_min = row["at_assumed_threshold"], row["at_min_confidence"]
        rows.append([row["label"], format_value(row["support"], "i"), format_value(row["assumed_threshold"], "t"),
                     format_value(at["precision"]), format_value(at["recall"]), format_value(at["f1"]),
                     format_value(at_min["precision"]), format_value(at_min["recall"]), format_value(at_min["f1"]),
                     format_value(row["sensitivity"]), format_value(row["specificity"]), format_value(row["roc_auc"])])
    return header, rows


def coverage_rows(metrics: dict) -> tuple[list[str], list[list[str]]]:
    header = ["Accept if top confidence >=", "Accepted", "Sent to a human", "Accuracy of accepted"]
    rows = [[f"{r['threshold']:g}", format_value(r["accepted"], "i"),
             f"{r['discarded']:,} ({r['discarded_fraction']:.2%})", format_value(r["accuracy"], "%")]
            for r in metrics["coverage"]]
    return header, rows


def html_table(header, rows) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def md_table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _review_text(review: dict | None) -> str:
    if review is None:
        return "No review queue (run with --review-threshold X to copy low-confidence images out for a person)."
    return (f"{review['count']:,} images ({review['fraction']:.2%}) have a top confidence below "
            f"{review['threshold']:g}; {review['wrong_in_queue']:,} of them are misclassified. "
            f"They are listed least confident first in {review['queue']}, with copies in review/images/.")


def write_report(folder: str | Path, *, metrics: dict, summary: dict, plots: dict, review: dict | None,
                 gallery: list[dict], context: dict) -> tuple[Path, Path]:
    """Write report.html and report.md into `folder` (plot and gallery paths are inside it)."""
    folder = Path(folder)
    details = summary["EvaluationDetails"]
    meta = [("run", details["ProjectVersionArn"]), ("evaluated", details["EvaluationEndTimestamp"] + " UTC"),
            *((k, str(v)) for k, v in context.items() if k not in ("title", "gradcam"))]
    title = context.get("title", "Evaluation")
    cards, labels, coverage = headline(metrics), label_table(metrics), coverage_rows(metrics)

    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{CSS}</style></head><body><main>", f"<h1>{html.escape(title)}</h1>",
             "<div class='meta'>" + " &middot; ".join(f"{html.escape(k)}: {html.escape(v)}" for k, v in meta) + "</div>",
             "<div class='cards'>" + "".join(f"<div class='card'><div class='v'>{html.escape(v)}</div>"
                                             f"<div class='k'>{html.escape(k)}</div></div>" for k, v in cards) + "</div>",
             "<h2>Per label</h2><p class='note'>Rekognition's view: each label one-vs-rest, counted as predicted when "
             "its confidence reaches its assumed threshold (the threshold that maximises its F1 on this set), and "
             "at the chosen minimum confidence. Sensitivity, specificity and ROC AUC use the top label.</p>",
             html_table(*labels),
             "<h2>Confidence threshold vs coverage</h2><p class='note'>Accept the top label only when its confidence "
             "reaches the threshold; the rest go to a person.</p>", html_table(*coverage),
             "<h2>Review queue</h2>", f"<p>{html.escape(_review_text(review))}</p>", "<h2>Plots</h2><div class='plots'>"]
    for name, path in plots.items():
        wide = " class='wide'" if name == "confusion_matrix" else ""
        parts.append(f"<figure{wide}><img src='{data_uri(path)}' alt='{html.escape(PLOT_TITLES.get(name, name))}'>"
                     f"<figcaption>{html.escape(PLOT_TITLES.get(name, name))}</figcaption></figure>")
    parts.append("</div><h2>Grad-CAM: where the model looked</h2>")
    if gallery:
        parts.append("<p class='note'>Left: the image as the model sees it; right: the heatmap for the predicted "
                     "label. Most confident mistakes first, then a random sample of correct predictions.</p>"
                     "<div class='gallery'>")
        for item in gallery:
            caption = (f"{item['kind']}: predicted {item['predicted_label']} ({item['confidence']:.1%}), "
                       f"true {item['true_label']} - {Path(item['path']).name}")
            parts.append(f"<figure class='{item['kind']}'><img src='{data_uri(folder / item['file'])}' "
                         f"alt='{html.escape(caption)}'><figcaption>{html.escape(caption)}</figcaption></figure>")
        parts.append("</div>")
    else:
        parts.append(f"<p class='note'>{html.escape(context.get('gradcam', 'No Grad-CAM gallery.'))}</p>")
    if metrics["notes"]:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in metrics["notes"]) + "</ul>")
    parts.append("</main></body></html>\n")
    html_path = atomic.write_text(folder / "report.html", "".join(parts))

    md = [f"# {title}", "", "  \n".join(f"{k}: {v}" for k, v in meta), "", "## Headline", "",
          md_table(["Metric", "Value"], [[k, v] for k, v in cards]), "", "## Per label", "", md_table(*labels), "",
          "## Confidence threshold vs coverage", "", md_table(*coverage), "", "## Review queue", "",
          _review_text(review), "", "## Plots", ""]
    md += [f"![{PLOT_TITLES.get(name, name)}]({Path(path).relative_to(folder).as_posix()})\n"
           for name, path in plots.items()]
    md += ["## Grad-CAM", ""]
    md += [f"![{item['kind']}: predicted {item['predicted_label']} ({item['confidence']:.1%}), true "
           f"{item['true_label']}]({item['file']})\n" for item in gallery] or [context.get("gradcam", "No gallery."), ""]
    if metrics["notes"]:
        md += ["## Notes", "", *[f"- {n}" for n in metrics["notes"]], ""]
    md_path = atomic.write_text(folder / "report.md", "\n".join(md) + "\n")
    return html_path, md_path
