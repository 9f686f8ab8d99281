"""comparison.md and a self-contained comparison.html (CSS inline, gallery images embedded as base64).

Rendered from the comparison dictionary that comparison.json holds: the report shows numbers, it
computes none (apart from thumbnails for the gallery of images the two models disagree on). One page
for every task: headline cards, the task's sections (its hooks: classification.py, multilabel.py,
detection.py), Rekognition's EvaluationSummary beside, cost, images left out, where the sides disagree,
notes. The pieces here are the ones the tasks' sections share.
"""

from __future__ import annotations

import io
from pathlib import Path

from edgelabels import atomic
from edgelabels.benchmark.compare import PRF
from edgelabels.evaluate.page import CSS as PAGE_CSS
from edgelabels.evaluate.page import Page, data_uri, escape, format_value, md_table

TITLE = "edgelabels vs Amazon Rekognition Custom Labels"
CSS = PAGE_CSS + """
.cards{grid-template-columns:repeat(auto-fill,minmax(210px,1fr))}
.cards .v{font-size:19px}.v .r{color:#8a4b08}.v .sep{color:#9aa3ad;font-weight:400;padding:0 4px}
.legend{font-size:12px;color:#5b6572;margin:4px 0 8px}.legend b.loc{color:#1d4f91}.legend b.r{color:#8a4b08}
.gallery figure img{width:100%;height:190px;object-fit:contain;background:#111;border-radius:4px}
.gallery figcaption div{margin-top:2px}.ok{color:#1e7b34}.bad{color:#b3261e}
ul.assume li{font-size:13px;margin:3px 0;color:#39424e}
"""


def _diff(a, b, kind: str) -> str:
    if a is None or b is None or kind not in ("f", "%", "ms"):
        return ""
    d = a - b
    return f"{d:+.2%}" if kind == "%" else f"{d:+,.1f} ms" if kind == "ms" else f"{d:+.4f}"


def point_rows(point: str, key: str, metrics) -> list[tuple]:
    """Metric rows of one operating point: point "assumed thresholds", key "at_assumed_thresholds", metrics
    [(name, key in it, format, which is better)] -> [("Name at assumed thresholds", path, format, better)]."""
    return [(f"{name} at {point}", (key, metric), kind, better) for name, metric, kind, better in metrics]


# Speed and size rows, the same for every task: (name, path into a side, format, which is better)
SPEED_ROWS = [
    ("Latency p50 (per request)", ("latency", "p50_ms"), "ms", "low"),
    ("Latency p95 (per request)", ("latency", "p95_ms"), "ms", "low"),
    ("Throughput", ("throughput_images_per_s",), "/s", "high"),
    ("Model size", ("model_size_bytes",), "mb", None),
]


def _get(side: dict, path: tuple):
    """side[path[0]][path[1]]...; None where a step is missing (a key, or an int past a list's end)."""
    for key in path:
        if isinstance(side, list) and isinstance(key, int):
            side = side[key] if key < len(side) else None
        else:
            side = side.get(key) if isinstance(side, dict) else None
    return side


def metric_table(comparison: dict, metric_rows) -> tuple[list[str], list[list[str]], list[int | None]]:
    """Header, rows and, per row, which column (1 or 2) holds the better value; metric_rows: a task's
    (name, path into a side, format, "high" / "low" / None)."""
    local, remote = comparison["sides"]["local"], comparison["sides"]["rekognition"]
    rows, better = [], []
    for name, path, kind, direction in metric_rows:
        a, b = _get(local, path), _get(remote, path)
        rows.append([name, format_value(a, kind), format_value(b, kind), _diff(a, b, kind)])
        if direction and a is not None and b is not None and a != b:
            better.append(1 if (a > b) == (direction == "high") else 2)
        else:
            better.append(None)
    return ["Metric", "edgelabels (local)", "Rekognition", "Difference (local - Rekognition)"], rows, better


def cli_rows(comparison: dict, rows) -> list[str]:
    """The table `edgelabels benchmark` prints: per (name, path into a side, format) the name, then local's and
    Rekognition's value; latency last."""
    local, remote = comparison["sides"]["local"], comparison["sides"]["rekognition"]
    rows = [*rows, ("latency p50 (ms)", ("latency", "p50_ms"), "1"), ("latency p95 (ms)", ("latency", "p95_ms"), "1")]
    return [f"{name:34}{show(_get(local, path), kind):>12}{show(_get(remote, path), kind):>14}"
            for name, path, kind in rows]


def show(value, kind: str) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2%}" if kind == "%" else f"{value:.1f}" if kind == "1" else f"{value:.4f}"


def own_thresholds_note(page: Page) -> None:
    page.note("Rekognition's own thresholds are in its EvaluationSummary file (DescribeProjectVersions names "
              "its S3 location): pass it with --rekognition-summary to fill the rows marked n/a.")


def agreement_rows(a: dict) -> list[list[str]]:
    """compare.mcnemar's counts as table rows (a: the comparison's "agreement", with "images")."""
    share = (lambda n: f"{n:,} ({n / a['images']:.1%})")
    return [["Both right", share(a["both_right"])], ["Only edgelabels right", share(a["only_local_right"])],
            ["Only Rekognition right", share(a["only_rekognition_right"])], ["Both wrong", share(a["both_wrong"])],
            ["McNemar exact p-value (equally good)", f"{a['mcnemar_p_value']:.3g}"]]


def side_cards(comparison: dict, specs) -> list[tuple[str, str, str]]:
    """Headline cards: specs [(name, path into a side, format)] for both sides, then latency and cost."""
    local, remote = comparison["sides"]["local"], comparison["sides"]["rekognition"]
    cost = comparison["cost"]
    return [*((name, format_value(_get(local, path), kind), format_value(_get(remote, path), kind))
              for name, path, kind in specs),
            ("Latency p50", format_value(local["latency"]["p50_ms"], "ms"),
             format_value(remote["latency"]["p50_ms"], "ms")),
            ("Cost of this benchmark", format_value(cost["local"]["compute_seconds"], "s"),
             format_value(cost["rekognition"]["total_cost"], "$"))]


def cost_table(comparison: dict) -> tuple[list[str], list[list[str]]]:
    c, local = comparison["cost"]["rekognition"], comparison["cost"]["local"]
    training = ("n/a (pass --training-hours)" if c["training_hours"] is None else
                f"{c['training_hours']:.2f} h x {format_value(c['price_training_per_hour'], '$')}/h = {format_value(c['training_cost'], '$')}")
    running = ("n/a" if c["running_hours_for_test_set"] is None else
               f"{c['running_hours_for_test_set']} h x {c['inference_units']} unit(s) x "
               f"{format_value(c['price_inference_unit_hour'], '$')} = {format_value(c['inference_cost'], '$')}")
    return ["Item", "Rekognition", "edgelabels (local)"], [
        ["Training", training, "your own machine (see the run's train.log)"],
        ["Serving the test set", running, f"{format_value(local['compute_seconds'], 's')} of compute"],
        ["Total for this benchmark", format_value(c["total_cost"], "$"), f"{format_value(local['compute_seconds'], 's')} of compute"],
        ["Measured throughput", format_value(c["throughput_images_per_s"], "/s"), format_value(local["images_per_s"], "/s")],
        ["Busy time measured", format_value(c["busy_seconds"], "s"), format_value(local["compute_seconds"], "s")],
        ["Per 1,000 images, model kept busy", format_value(c["cost_per_1000_images_fully_loaded"], "$"), "compute time only"],
        ["Left running, per day / per month", f"{format_value(c['running_cost_per_day'], '$')} / "
                                               f"{format_value(c['running_cost_per_month'], '$')}", "nothing while idle"],
    ]


AGGREGATE_NAMES = {"precision": "precision", "recall": "recall", "f1": "F1", "average_precision": "AveragePrecision",
                   "average_recall": "AverageRecall"}


def summary_beside(summary, name: str, comparison: dict, keys=PRF, extras: dict | None = None) -> dict:
    """Rekognition's own EvaluationSummary figures next to what this test set measured.

    keys: the aggregates compared (the task's hooks: a classifier's precision / recall / F1, a detector's
    AveragePrecision / AverageRecall / F1); extras: those the summary holds that evaluate.summary.Summary does
    not (a detector's AveragePrecision and AverageRecall). Per label: precision, recall and F1.
    """
    remote = comparison["sides"]["rekognition"]["at_model_thresholds"]
    local = comparison["sides"]["local"]["at_model_thresholds"]  # None: the export has no thresholds.json
    labels = comparison["labels"]
    rows = []
    for result in summary.label_results:
        k = labels.index(result.label) if result.label in labels else None
        measured = remote["per_label"][k] if k is not None and remote["per_label"] else None
        local_own = local["per_label"][k] if k is not None and local and local["per_label"] else None
        rows.append({"label": result.label, "threshold": result.threshold,
                     "summary": {"precision": result.precision, "recall": result.recall, "f1": result.f1,
                                 "test_images": result.number_of_testing_images},
                     "rekognition_measured": {key: measured and measured[key] for key in PRF},
                     "local_measured": {key: local_own and local_own[key] for key in PRF}})
    own = {"precision": summary.precision, "recall": summary.recall, "f1": summary.f1}
    own.update({key: (extras or {}).get(key) for key in keys if key not in own})
    return {"file": name, "project_version_arn": summary.project_version_arn, "evaluated": summary.end_timestamp,
            "number_of_training_images": summary.number_of_training_images,
            "number_of_testing_images": summary.number_of_testing_images,
            "aggregate_keys": list(keys),
            "summary": own,
            "rekognition_measured": {key: remote[key] for key in keys},
            "local_measured": {key: local and local[key] for key in keys},
            "per_label": rows}


def summary_table(beside: dict) -> tuple[list[str], list[list[str]]]:
    header = ["Label", "Threshold", "AWS summary P / R / F1", "Rekognition here P / R / F1",
              "edgelabels here (own thr.) P / R / F1"]
    keys = tuple(beside.get("aggregate_keys", PRF))  # comparison.json written before detection summaries: PRF
    show = (lambda d, names=PRF: " / ".join(format_value(d[key]) for key in names))
    first = "All labels (macro)" if keys == PRF else f"All labels ({' / '.join(AGGREGATE_NAMES[k] for k in keys)})"
    rows = [[first, "", show(beside["summary"], keys), show(beside["rekognition_measured"], keys),
             show(beside["local_measured"], keys)]]
    rows += [[r["label"], format_value(r["threshold"]), show(r["summary"]), show(r["rekognition_measured"]),
              show(r["local_measured"])] for r in beside["per_label"]]
    return header, rows


def summary_section(page: Page, beside: dict) -> None:
    page.heading("Rekognition's EvaluationSummary beside this test set")
    page.note(f"{beside['file']}: AWS's evaluation of {beside['project_version_arn'] or 'the model'} on its own "
              f"test set ({beside['number_of_testing_images']:,} images, {beside['number_of_training_images']:,} "
              "for training), at the thresholds it lists; beside it, both models on this test set at those "
              "thresholds (Rekognition) and at thresholds.json (edgelabels).")
    page.table(*summary_table(beside))


def excluded_rows(comparison: dict) -> tuple[list[str], list[list[str]]]:
    return ["Image", "Refused by", "Problem"], [[e["path"], e["side"], e["problem"]] for e in comparison["excluded"]]


def meta(comparison: dict) -> list[tuple[str, str]]:
    c = comparison["context"]
    return [("test", f"{c['test']} ({comparison['scored_images']:,} of {c['test_images']:,} images scored)"),
            ("local", f"{c['local_model']} ({c['local_precision']})"), ("Rekognition", c["rekognition_model"]),
            ("answers", c["rekognition_mode"]), ("created", c["created"])]


# -- thumbnails ---------------------------------------------------------------------------------

def thumbnail(path: str, size: int = 260) -> str | None:
    """A small JPEG data URI of the image as stored (EXIF orientation applied), or None if unreadable."""
    from edgelabels.data.images import read_image
    from edgelabels.errors import ImageProblem

    try:
        image, _notes = read_image(path)
    except (ImageProblem, OSError):
        return None
    image = image.convert("RGB")
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=82)
    return data_uri(buffer.getvalue(), "image/jpeg")


def thumbnail_figure(path: str, title: str, lines: list[str]) -> str:
    """A gallery figure: the image's thumbnail, its name and `title`, then one line per side (HTML, escaped
    by the caller)."""
    name = escape(Path(path).name)
    uri = thumbnail(path)
    image = f"<img src='{uri}' alt='{name}'>" if uri else "<p>(unreadable)</p>"
    return (f"<figure>{image}<figcaption><div><b>{name}</b> - {title}</div>"
            + "".join(f"<div>{line}</div>" for line in lines) + "</figcaption></figure>")


def thumbnail_gallery(page: Page, comparison: dict, gallery: int | None, *, figure, order: str, md_row,
                      same: str) -> None:
    """Where the sides disagree (comparison["disagreements"]): the first `gallery` as thumbnails in the HTML
    (figure(item) -> HTML), every one as a table row in the Markdown (md_row(item) -> true, local, Rekognition)."""
    items = comparison["disagreements"]
    page.heading(f"Where they disagree ({len(items):,} of {comparison['agreement']['images']:,} images)")
    shown = items[:gallery or 0]
    if shown:
        page.html.append(f"<p class='note'>{escape(order)}; showing {len(shown):,}.</p><div class='gallery'>"
                         + "".join(map(figure, shown)) + "</div>")
    elif items and gallery == 0:
        page.html.append("<p class='note'>No thumbnails (--gallery 0): comparison.md lists every one.</p>")
    if items:
        page.md += [md_table(["Image", "True", "edgelabels", "Rekognition"],
                             [[d["path"], *md_row(d)] for d in items]), ""]
    else:
        page.paragraph(same)


def cli_rows_and_agreement(comparison: dict, rows, what: str) -> list[str]:
    """cli_rows, then how often the sides give `what` (e.g. "same top label": the agreement's count
    "same_top_label") and McNemar's test on the images exactly one side gets right."""
    agree = comparison["agreement"]
    fraction = agree[what.replace(" ", "_") + "_fraction"]
    return [*cli_rows(comparison, rows),
            f"{what} on {fraction:.1%} of images; only local right {agree['only_local_right']}, only Rekognition "
            f"right {agree['only_rekognition_right']} (McNemar p = {agree['mcnemar_p_value']:.3g})"]


# -- the page -------------------------------------------------------------------------------------

def _cards_html(rows: list[tuple[str, str, str]]) -> str:
    """Each card holds both values, edgelabels' then Rekognition's in its own colour."""
    parts = []
    for name, a, b in rows:
        value = escape(a) + (f"<span class='sep'>|</span><span class='r'>{escape(b)}</span>" if b else "")
        parts.append(f"<div class='card'><div class='v'>{value}</div><div class='k'>{escape(name)}</div></div>")
    return ("<div class='legend'>Cards: <b class='loc'>edgelabels</b> | <b class='r'>Rekognition</b></div>"
            "<div class='cards'>" + "".join(parts) + "</div>")


def comparison_page(folder: Path, comparison: dict, hooks, gallery: int | None) -> Page:
    """The whole report; `gallery`: at most that many pictures in the HTML, None for the Markdown."""
    page = Page(folder, TITLE + hooks.title, meta(comparison), css=CSS)
    page.html.append(_cards_html(hooks.cards(comparison)))
    hooks.sections(page, comparison, gallery)
    if comparison.get("rekognition_summary"):
        summary_section(page, comparison["rekognition_summary"])
    page.heading("Cost")
    page.table(*cost_table(comparison))
    page.bullets(comparison["assumptions"], css_class="assume")
    if comparison["excluded"]:
        page.heading("Left out")
        page.note("Images one side refused are scored on neither side.")
        page.table(*excluded_rows(comparison))
    hooks.gallery(page, comparison, gallery)
    if comparison["notes"]:
        page.heading("Notes")
        page.bullets(comparison["notes"])
    return page


def write_html(path: str | Path, comparison: dict, hooks, gallery: int = 60) -> Path:
    return atomic.write_text(path, comparison_page(Path(path).parent, comparison, hooks, gallery).html_text())


def write_markdown(path: str | Path, comparison: dict, hooks) -> Path:
    return atomic.write_text(path, comparison_page(Path(path).parent, comparison, hooks, None).md_text())
