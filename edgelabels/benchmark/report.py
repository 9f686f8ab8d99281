"""comparison.md and a self-contained comparison.html (CSS inline, gallery images embedded as base64).

Rendered from the comparison dictionary that comparison.json holds: the report shows numbers, it
computes none (apart from thumbnails for the gallery of images the two models disagree on).
"""

from __future__ import annotations

import io
from pathlib import Path

from edgelabels import atomic
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


# (name, path into a side, format, which is better: "high", "low" or None)
METRIC_ROWS = [
    ("Accuracy (top label, MinConfidence 0)", ("top_label", "accuracy"), "%", "high"),
    ("Balanced accuracy (top label)", ("top_label", "balanced_accuracy"), "%", "high"),
    ("Macro precision (top label)", ("top_label", "precision_macro"), "f", "high"),
    ("Macro recall (top label)", ("top_label", "recall_macro"), "f", "high"),
    ("Macro F1 (top label)", ("top_label", "f1_macro"), "f", "high"),
    ("Precision at assumed thresholds", ("at_assumed_thresholds", "precision"), "f", "high"),
    ("Recall at assumed thresholds", ("at_assumed_thresholds", "recall"), "f", "high"),
    ("F1 at assumed thresholds", ("at_assumed_thresholds", "f1"), "f", "high"),
    ("Precision at the model's own thresholds", ("at_model_thresholds", "precision"), "f", "high"),
    ("Recall at the model's own thresholds", ("at_model_thresholds", "recall"), "f", "high"),
    ("F1 at the model's own thresholds", ("at_model_thresholds", "f1"), "f", "high"),
    ("ROC AUC (macro, one-vs-rest)", ("metrics", "roc_auc_macro"), "f", "high"),
    ("Log loss", ("metrics", "log_loss"), "f", "low"),
    ("Calibration error (ECE)", ("metrics", "expected_calibration_error"), "f", "low"),
    ("Latency p50 (per request)", ("latency", "p50_ms"), "ms", "low"),
    ("Latency p95 (per request)", ("latency", "p95_ms"), "ms", "low"),
    ("Throughput", ("throughput_images_per_s",), "/s", "high"),
    ("Model size", ("model_size_bytes",), "mb", None),
]


def _get(side: dict, path: tuple):
    for key in path:
        side = side.get(key) if isinstance(side, dict) else None
    return side


def metric_table(comparison: dict, metric_rows=None) -> tuple[list[str], list[list[str]], list[int | None]]:
    """Header, rows and, per row, which column (1 or 2) holds the better value; metric_rows: METRIC_ROWS (a
    classifier's comparison) or DETECTION_ROWS."""
    local, remote = comparison["sides"]["local"], comparison["sides"]["rekognition"]
    rows, better = [], []
    for name, path, kind, direction in metric_rows or METRIC_ROWS:
        a, b = _get(local, path), _get(remote, path)
        rows.append([name, format_value(a, kind), format_value(b, kind), _diff(a, b, kind)])
        if direction and a is not None and b is not None and a != b:
            better.append(1 if (a > b) == (direction == "high") else 2)
        else:
            better.append(None)
    return ["Metric", "edgelabels (local)", "Rekognition", "Difference (local - Rekognition)"], rows, better


def table_notes(comparison: dict) -> list[str]:
    if comparison["sides"]["rekognition"]["at_model_thresholds"]["thresholds"] is None:
        return ["Rekognition's own thresholds are in its EvaluationSummary file (DescribeProjectVersions names "
                "its S3 location): pass it with --rekognition-summary to fill the rows marked n/a."]
    return []


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
        ["Same top label", share(a["same_top_label"])], ["Both right", share(a["both_right"])],
        ["Only edgelabels right", share(a["only_local_right"])],
        ["Only Rekognition right", share(a["only_rekognition_right"])], ["Both wrong", share(a["both_wrong"])],
        ["McNemar exact p-value (equal accuracy)", f"{a['mcnemar_p_value']:.3g}"]]


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


PRF = ("precision", "recall", "f1")
# Rekognition's detection aggregates: unweighted means over labels of the per-box values (detection_metrics).
AVERAGES = ("average_precision", "average_recall", "f1")


def summary_beside(summary, name: str, comparison: dict, averages: dict | None = None) -> dict:
    """Rekognition's own EvaluationSummary figures next to what this test set measured.

    A detection comparison's aggregates are AveragePrecision / AverageRecall / F1 (`averages`: the summary's
    AveragePrecision and AverageRecall, which evaluate.summary.Summary does not hold), a classification's
    Precision / Recall / F1. Per label both are precision, recall and F1 (per box for detection).
    """
    keys = AVERAGES if comparison.get("task") == "detection" else PRF
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
    if keys == AVERAGES:
        own.update({key: (averages or {}).get(key) for key in AVERAGES[:2]})
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
    first = ("All labels (AveragePrecision / AverageRecall / F1)" if keys == AVERAGES else "All labels (macro)")
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


def cards(comparison: dict) -> list[tuple[str, str, str]]:
    local, remote = comparison["sides"]["local"], comparison["sides"]["rekognition"]
    cost = comparison["cost"]
    return [
        ("Accuracy (top label)", format_value(local["top_label"]["accuracy"], "%"), format_value(remote["top_label"]["accuracy"], "%")),
        ("F1 at assumed thresholds", format_value(local["at_assumed_thresholds"]["f1"]),
         format_value(remote["at_assumed_thresholds"]["f1"])),
        ("Latency p50", format_value(local["latency"]["p50_ms"], "ms"), format_value(remote["latency"]["p50_ms"], "ms")),
        ("Cost of this benchmark", format_value(cost["local"]["compute_seconds"], "s"),
         format_value(cost["rekognition"]["total_cost"], "$")),
        ("Same top label", f"{comparison['agreement']['same_top_label_fraction']:.1%}", ""),
    ]


# -- writers ------------------------------------------------------------------------------------

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


def _verdict(side: dict, true: str) -> str:
    ok = side["label"] == true
    return f"<span class='{'ok' if ok else 'bad'}'>{escape(side['label'])} ({side['confidence']:.1%}) " \
           f"{'right' if ok else 'wrong'}</span>"


def _cards_html(comparison: dict) -> str:
    """Each card holds both values, edgelabels' then Rekognition's in its own colour."""
    parts = []
    for name, a, b in cards(comparison):
        value = escape(a) + (f"<span class='sep'>|</span><span class='r'>{escape(b)}</span>" if b else "")
        parts.append(f"<div class='card'><div class='v'>{value}</div><div class='k'>{escape(name)}</div></div>")
    return ("<div class='legend'>Cards: <b class='loc'>edgelabels</b> | <b class='r'>Rekognition</b></div>"
            "<div class='cards'>" + "".join(parts) + "</div>")


def _disagreement_figure(item: dict) -> str:
    name = escape(Path(item["path"]).name)
    uri = thumbnail(item["path"])
    image = f"<img src='{uri}' alt='{name}'>" if uri else "<p>(unreadable)</p>"
    return (f"<figure>{image}<figcaption><div><b>{name}</b> - true {escape(item['true'])}</div>"
            f"<div>edgelabels: {_verdict(item['local'], item['true'])}</div>"
            f"<div>Rekognition: {_verdict(item['rekognition'], item['true'])}</div></figcaption></figure>")


def comparison_page(folder: Path, comparison: dict, gallery: int) -> Page:
    """The whole report; the HTML shows up to `gallery` disagreements as thumbnails, the Markdown lists them all."""
    page = Page(folder, TITLE, meta(comparison), css=CSS)
    page.html.append(_cards_html(comparison))
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
    page.table(*metric_table(comparison))
    for note in table_notes(comparison):
        page.note(note)
    page.heading("Per-label F1")
    page.table(*label_table(comparison))
    page.heading("Agreement")
    page.table(*agreement_table(comparison))
    if comparison.get("rekognition_summary"):
        summary_section(page, comparison["rekognition_summary"])
    page.heading("Cost")
    page.table(*cost_table(comparison))
    page.bullets(comparison["assumptions"], css_class="assume")
    if comparison["excluded"]:
        page.heading("Left out")
        page.note("Images one side refused are scored on neither side.")
        page.table(*excluded_rows(comparison))
    disagreements = comparison["disagreements"]
    page.heading(f"Where they disagree ({len(disagreements):,} of {comparison['agreement']['images']:,} images)")
    shown = disagreements[:gallery]
    if shown:
        page.html.append(f"<p class='note'>Images where one model is right first, most confident first; showing "
                         f"{len(shown):,}.</p><div class='gallery'>" + "".join(map(_disagreement_figure, shown))
                         + "</div>")
    elif disagreements:
        page.html.append("<p class='note'>No thumbnails (--gallery 0): comparison.md lists every one.</p>")
    if disagreements:
        page.md += [md_table(["Image", "True", "edgelabels", "Rekognition"], [
            [d["path"], d["true"], f"{d['local']['label']} ({d['local']['confidence']:.1%})",
             f"{d['rekognition']['label']} ({d['rekognition']['confidence']:.1%})"] for d in disagreements]), ""]
    else:
        page.paragraph("The two models give the same top label on every image.")
    if comparison["notes"]:
        page.heading("Notes")
        page.bullets(comparison["notes"])
    return page


def write_html(path: str | Path, comparison: dict, gallery: int = 60) -> Path:
    if comparison.get("task") == "detection":
        return atomic.write_text(path, detection_page(Path(path).parent, comparison, gallery).html_text())
    return atomic.write_text(path, comparison_page(Path(path).parent, comparison, gallery).html_text())


def write_markdown(path: str | Path, comparison: dict) -> Path:
    if comparison.get("task") == "detection":
        return atomic.write_text(path, detection_page(Path(path).parent, comparison, gallery=None).md_text())
    # No thumbnails to make: the Markdown lists every disagreement as a table instead.
    return atomic.write_text(path, comparison_page(Path(path).parent, comparison, gallery=0).md_text())


# -- detection --------------------------------------------------------------------------------

# (name, path into a side, format, which is better)
DETECTION_ROWS = [
    ("Average precision at assumed thresholds (mean over labels)", ("at_assumed_thresholds", "average_precision"),
     "f", "high"),
    ("Average recall at assumed thresholds (mean over labels)", ("at_assumed_thresholds", "average_recall"), "f",
     "high"),
    ("F1 at assumed thresholds (mean over labels)", ("at_assumed_thresholds", "f1"), "f", "high"),
    ("True positive boxes at assumed thresholds", ("at_assumed_thresholds", "tp"), "i", "high"),
    ("False positive boxes at assumed thresholds", ("at_assumed_thresholds", "fp"), "i", "low"),
    ("Missed boxes at assumed thresholds", ("at_assumed_thresholds", "fn"), "i", "low"),
    ("Average precision at the model's own thresholds", ("at_model_thresholds", "average_precision"), "f",
     "high"),
    ("Average recall at the model's own thresholds", ("at_model_thresholds", "average_recall"), "f", "high"),
    ("F1 at the model's own thresholds (mean over labels)", ("at_model_thresholds", "f1"), "f", "high"),
    ("COCO mAP@0.5", ("map_50",), "f", "high"),
    ("COCO mAP@0.5:0.95", ("map_50_95",), "f", "high"),
    ("Latency p50 (per request)", ("latency", "p50_ms"), "ms", "low"),
    ("Latency p95 (per request)", ("latency", "p95_ms"), "ms", "low"),
    ("Throughput", ("throughput_images_per_s",), "/s", "high"),
    ("Model size", ("model_size_bytes",), "mb", None),
]


def detection_metric_table(comparison: dict) -> tuple[list[str], list[list[str]], list[int | None]]:
    return metric_table(comparison, DETECTION_ROWS)


def detection_label_table(comparison: dict) -> tuple[list[str], list[list[str]]]:
    local, remote = comparison["sides"]["local"]["per_label"], comparison["sides"]["rekognition"]["per_label"]
    header = ["Label", "Boxes", "Threshold: local", "Rekognition", "P / R / F1: local", "Rekognition",
              "AP@0.5: local", "Rekognition"]
    prf = (lambda d: " / ".join(format_value(d[key]) for key in ("precision", "recall", "f1")))
    rows = [[a["label"], format_value(a["boxes"], "i"), format_value(a["assumed_threshold"]),
             format_value(b["assumed_threshold"]), prf(a["at_assumed_threshold"]), prf(b["at_assumed_threshold"]),
             format_value(a["coco_ap_50"]), format_value(b["coco_ap_50"])] for a, b in zip(local, remote)]
    return header, rows


def detection_cards(comparison: dict) -> list[tuple[str, str, str]]:
    local, remote = comparison["sides"]["local"], comparison["sides"]["rekognition"]
    cost = comparison["cost"]
    return [
        ("F1 at assumed thresholds", format_value(local["at_assumed_thresholds"]["f1"]),
         format_value(remote["at_assumed_thresholds"]["f1"])),
        ("COCO mAP@0.5", format_value(local["map_50"]), format_value(remote["map_50"])),
        ("Latency p50", format_value(local["latency"]["p50_ms"], "ms"), format_value(remote["latency"]["p50_ms"], "ms")),
        ("Cost of this benchmark", format_value(cost["local"]["compute_seconds"], "s"),
         format_value(cost["rekognition"]["total_cost"], "$")),
    ]


def detection_page(folder: Path, comparison: dict, gallery: int | None) -> Page:
    """The detection report; the HTML embeds the drawn disagreements (up to `gallery`), the Markdown links them."""
    page = Page(folder, TITLE + " (object detection)", meta(comparison), css=CSS)
    parts = []
    for name, a, b in detection_cards(comparison):
        parts.append(f"<div class='card'><div class='v'>{escape(a)}<span class='sep'>|</span>"
                     f"<span class='r'>{escape(b)}</span></div><div class='k'>{escape(name)}</div></div>")
    page.html.append("<div class='legend'>Cards: <b class='loc'>edgelabels</b> | <b class='r'>Rekognition</b></div>"
                     "<div class='cards'>" + "".join(parts) + "</div>")
    page.heading("Side by side")
    page.note(f"Same test images, same scoring code. A box is a true positive when it overlaps an unmatched "
              f"ground-truth box of its label at IoU >= {comparison['iou']:g}, greedily by confidence. Assumed "
              "thresholds: per label, the confidence that maximises that label's per-box F1 on this test set "
              "(Rekognition's definition), derived for each model alike; the averages are unweighted means over "
              "labels, as Rekognition's. COCO mAP uses every box (pycocotools).")
    page.table(*detection_metric_table(comparison))
    if comparison["sides"]["rekognition"]["at_model_thresholds"] is None:
        page.note("Rekognition's own thresholds are in its EvaluationSummary file (DescribeProjectVersions names "
                  "its S3 location): pass it with --rekognition-summary to fill the rows marked n/a.")
    page.heading("Per label (at assumed thresholds)")
    page.table(*detection_label_table(comparison))
    if comparison["unknown_labels"]:
        page.note("Boxes Rekognition answered with labels the local model does not have (not scored): "
                  + ", ".join(f"{k} {v}" for k, v in comparison["unknown_labels"].items()))
    if comparison.get("rekognition_summary"):
        summary_section(page, comparison["rekognition_summary"])
    page.heading("Cost")
    page.table(*cost_table(comparison))
    page.bullets(comparison["assumptions"], css_class="assume")
    if comparison["excluded"]:
        page.heading("Left out")
        page.note("Images one side refused are scored on neither side.")
        page.table(*excluded_rows(comparison))
    different = comparison["disagreements"]
    page.heading(f"Where they disagree ({len(different):,} of {comparison['scored_images']:,} images)")
    if different:
        page.note("Images whose TP / FP / FN counts differ, each side at its own assumed thresholds, most different "
                  "first. Pictures: ground truth in blue, each side's boxes in orange (edgelabels left, Rekognition "
                  "right).")
        count = (lambda d: f"{d['tp']} / {d['fp']} / {d['fn']}")
        page.table(["Image", "Boxes", "edgelabels TP / FP / FN", "Rekognition TP / FP / FN", "Picture"],
                   [[d["path"], format_value(d["boxes"], "i"), count(d["local"]), count(d["rekognition"]),
                     d.get("picture", "")] for d in different])
        drawn = [d for d in different if d.get("picture")]
        if gallery:
            drawn = drawn[:gallery]
        if drawn and gallery != 0:
            page.figures([(folder / d["picture"], f"{Path(d['path']).name}: edgelabels {count(d['local'])}, "
                                                  f"Rekognition {count(d['rekognition'])}", "wide") for d in drawn])
    else:
        page.paragraph("The two models have the same TP / FP / FN counts on every image.")
    if comparison["notes"]:
        page.heading("Notes")
        page.bullets(comparison["notes"])
    return page
