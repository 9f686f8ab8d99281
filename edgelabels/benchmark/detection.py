"""A detector's benchmark hooks: both sides' boxes scored alike, and where they differ, drawn.

The local side is the exported detector (edge Detector) asked as Rekognition is asked, MinConfidence 0:
every box comes back. Both sides' DetectCustomLabels answers become per-image (N, 6) arrays
[left, top, width, height, score 0-1, class_id] over the local model's labels (boxes clipped to the
image, as the Detector answers), and go through the evaluation's detection metrics (IoU >= 0.5):
per-label precision / recall / F1 at each side's assumed threshold, Rekognition's aggregate
(unweighted means over labels) and COCO mAP@0.5. Boxes whose label the local model does not know
are counted and reported, not scored. "Disagreements" are the test images whose TP / FP / FN counts
(each side at its own assumed thresholds) differ most; each is drawn as two panels, ground truth
(blue) with each side's kept boxes (orange), into DIR/disagreements/.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from edgelabels.benchmark import report
from edgelabels.benchmark.driver import BenchmarkHooks, scorable
from edgelabels.errors import UserError
from edgelabels.evaluate.page import format_value

DISAGREEMENTS = "disagreements"
PANEL_SIDE = 320  # px: smaller test images are drawn enlarged to this


def to_rows(responses: list[dict], labels: list[str], name: str) -> tuple[list[np.ndarray], Counter]:
    """DetectCustomLabels answers -> per image (N, 6) rows over `labels`, and {unknown label: boxes} left out.

    Confidence 0-100 on the wire, 0-1 here; BoundingBox ratios clipped to the image (an empty box is
    left out, as the Detector leaves it out). A label without Geometry (a classification answer) is an error.
    """
    from edgelabels.data.boxes import clip_ratios

    index = {label: k for k, label in enumerate(labels)}
    unknown: Counter = Counter()
    out = []
    for response in responses:
        rows = []
        for item in response.get("CustomLabels", []):
            label, confidence = item.get("Name"), item.get("Confidence")
            if not isinstance(confidence, (int, float)) or not 0 <= confidence <= 100:
                raise UserError(f"{name}: label {label!r} answered with confidence {confidence!r} (not 0-100)")
            box = (item.get("Geometry") or {}).get("BoundingBox")
            if not isinstance(box, dict):
                raise UserError(f"{name}: label {label!r} answered without Geometry.BoundingBox: the local model is "
                                "a detector, so compare it with a Rekognition object-detection model")
            if label not in index:
                unknown[str(label)] += 1
                continue
            try:
                ratios = clip_ratios((box["Left"], box["Top"], box["Width"], box["Height"]))
            except (KeyError, TypeError, ValueError):
                raise UserError(f"{name}: label {label!r} has a BoundingBox without numeric Left, Top, Width, "
                                f"Height ({box})") from None
            if ratios[2] > 0 and ratios[3] > 0:
                rows.append([*ratios, confidence / 100.0, index[label]])
        out.append(np.array(rows, np.float64).reshape(-1, 6))
    return out, unknown


def ground_truth_of(samples, labels):
    """(ground truth per image as (class ids, (M, 4) ratios), (width, height) per image)."""
    from edgelabels.data.boxes import displayed_size, to_ratios

    index = {label: k for k, label in enumerate(labels)}
    sizes = [displayed_size(s.path) for s in samples]
    truth = [(np.array([index[b.label] for b in s.boxes], np.int64),
              np.array([to_ratios(b, w, h) for b in s.boxes], np.float64).reshape(-1, 4))
             for s, (w, h) in zip(samples, sizes)]
    return truth, sizes


def test_samples(source, labels: list[str]):
    from edgelabels.data.detection import load_detection_dataset

    dataset = load_detection_dataset(source, class_names=labels)
    return scorable(source, dataset, {b.label for s in dataset.samples for b in s.boxes}, labels,
                    empty="no test images with boxes", what="box labels")


def image_counts(truth, pred, thresholds: dict, labels, iou: float) -> dict:
    """One image at per-label thresholds ({label: 0-1 or None}): kept rows, their TP flags, and TP / FP / FN."""
    from edgelabels.evaluate import detection_metrics as dm

    pred = dm.prediction_rows(pred)
    cut = np.array([np.inf if thresholds.get(name) is None else thresholds[name] for name in labels])
    kept = pred[:, 4] >= cut[pred[:, 5].astype(np.int64)] if len(pred) else np.zeros(0, bool)
    tp, _ = dm.match(truth[0], truth[1], pred[kept], iou)
    tps = int(tp.sum())
    return {"kept": pred[kept], "tp_flags": tp, "tp": tps, "fp": int(len(tp) - tps), "fn": int(len(truth[0]) - tps)}


def side_scores(truth, predictions, labels, sizes, own_thresholds) -> dict:
    from edgelabels.evaluate import detection_metrics as dm
    from edgelabels.evaluate.detection import detection_metrics

    metrics = detection_metrics(truth, predictions, labels, sizes, min_confidence=0.5)
    per_label = [{key: value for key, value in row.items() if not key.startswith("_")}
                 for row in metrics["per_label"]]
    if own_thresholds is not None:
        own_rows = dm.label_metrics(truth, predictions, labels, own_thresholds)
        own = {"thresholds": {label: own_thresholds.get(label) for label in labels}, **dm.aggregate(own_rows),
               "per_label": own_rows}
    else:
        own = None
    return {
        "at_assumed_thresholds": {**metrics["at_assumed_thresholds"],
                                  "thresholds": {row["label"]: row["assumed_threshold"] for row in per_label}},
        "at_model_thresholds": own,
        "map_50": metrics["map_50"], "map_50_95": metrics["map_50_95"],
        "per_label": per_label,
        "metrics": {key: value for key, value in metrics.items() if key != "per_label"},
    }


def disagreements(truth, local_pred, remote_pred, labels, paths, local_thresholds, remote_thresholds,
                  iou: float) -> list[dict]:
    """Images whose TP / FP / FN counts differ, most different first (sum of the absolute differences)."""
    rows = []
    for i, (t, lp, rp) in enumerate(zip(truth, local_pred, remote_pred)):
        a = image_counts(t, lp, local_thresholds, labels, iou)
        b = image_counts(t, rp, remote_thresholds, labels, iou)
        difference = sum(abs(a[k] - b[k]) for k in ("tp", "fp", "fn"))
        if difference:
            rows.append({"index": i, "path": str(paths[i]), "boxes": int(len(t[0])), "difference": difference,
                         "local": {k: a[k] for k in ("tp", "fp", "fn")},
                         "rekognition": {k: b[k] for k in ("tp", "fp", "fn")}})
    rows.sort(key=lambda r: (-r["difference"], r["path"]))
    return rows


def draw_disagreement(path, truth, sides: dict, labels):
    """Two panels side by side, each the image with one side's kept boxes (orange, captioned) and the ground
    truth (blue, drawn last so that it shows where a box sits exactly on it)."""
    from PIL import Image, ImageDraw, ImageFont

    from edgelabels.data.images import read_image
    from edgelabels.runtime.overlay import TRUTH, draw_boxes

    image, _notes = read_image(path)
    image = image.convert("RGB")
    if max(image.size) < PANEL_SIDE:  # a thumbnail-sized test image: enlarged so that captions fit
        scale = PANEL_SIDE / max(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.NEAREST)
    panels = []
    for title, (rows, counts) in sides.items():
        picture = draw_boxes(image, [(f"{labels[int(round(r[5]))]} {r[4] * 100:.1f}%", tuple(r[:4]))
                                     for r in rows[::-1]])  # least confident first: the most confident on top
        picture = draw_boxes(picture, [("", tuple(box)) for box in truth[1]], TRUTH)  # truth on top: always seen
        font = ImageFont.load_default(size=max(10, round(picture.width / 22)))
        lines = [title, f"TP {counts['tp']}  FP {counts['fp']}  FN {counts['fn']}"]
        height = font.getbbox("TPFN")[3] + 4
        framed = Image.new("RGB", (picture.width, picture.height + height * len(lines) + 4), (255, 255, 255))
        framed.paste(picture, (0, height * len(lines) + 4))
        draw = ImageDraw.Draw(framed)
        for k, line in enumerate(lines):
            draw.text((3, 2 + k * height), line, fill=(0, 0, 0), font=font)
        panels.append(framed)
    gap = 6
    out = Image.new("RGB", (sum(p.width for p in panels) + gap * (len(panels) - 1), max(p.height for p in panels)),
                    (255, 255, 255))
    x = 0
    for panel in panels:
        out.paste(panel, (x, 0))
        x += panel.width + gap
    return out


def summary_averages(path) -> dict:
    """AveragePrecision and AverageRecall of Rekognition's detection EvaluationSummary (None where absent).

    evaluate/summary.read_summary reads everything else of the file (and has checked it is a summary); its
    Summary has no field for these two detection-only aggregates, so they are picked from the same place it
    reads the others: `AggregatedEvaluationResults.Metrics`, or `AggregatedEvaluationResults` (flat layout).
    """
    import json

    aggregated = json.loads(Path(path).read_text(encoding="utf-8"))["AggregatedEvaluationResults"]
    metrics = aggregated.get("Metrics", aggregated)
    averages = {}
    for key, name in (("average_precision", "AveragePrecision"), ("average_recall", "AverageRecall")):
        value = metrics.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise UserError(f"{path}: malformed evaluation summary ({name} is {value!r}, not a number)")
        averages[key] = None if value is None else float(value)
    return averages


def read_answers(responses: list[dict], labels: list[str], name: str) -> tuple[list[np.ndarray], list[str], dict]:
    """to_rows, with the boxes of labels the local model lacks counted in a note and in comparison.json."""
    rows, unknown = to_rows(responses, labels, name)
    notes = []
    if unknown:
        notes.append(f"Rekognition answered {sum(unknown.values())} box(es) with labels the local model does not "
                     f"have ({', '.join(f'{k}: {v}' for k, v in sorted(unknown.items()))}); they are not scored")
    return rows, notes, {"unknown_labels": dict(sorted(unknown.items()))}


def score(samples, labels, local, remote, *, own: dict, records) -> tuple[dict, object]:
    """Both sides per box at IoU >= 0.5; the images whose TP / FP / FN counts differ, drawn by draw(folder)."""
    from edgelabels.evaluate import detection_metrics as dm

    truth, sizes = ground_truth_of(samples, labels)
    sides = {"local": side_scores(truth, local, labels, sizes, own["local"][0]),
             "rekognition": side_scores(truth, remote, labels, sizes, own["rekognition"][0])}
    thresholds = {side: sides[side]["at_assumed_thresholds"]["thresholds"] for side in sides}
    paths = [s.path for s in samples]
    different = disagreements(truth, local, remote, labels, paths, thresholds["local"], thresholds["rekognition"],
                              dm.IOU)

    def draw(folder: Path, gallery: int) -> None:
        """The first `gallery` disagreements as two panels each, into folder/disagreements/ (named in each)."""
        drawn = folder / DISAGREEMENTS
        drawn.mkdir()
        for n, item in enumerate(different[:gallery], 1):
            i = item["index"]
            kept = {side: image_counts(truth[i], rows[i], thresholds[side], labels, dm.IOU)["kept"]
                    for side, rows in (("local", local), ("rekognition", remote))}
            picture = draw_disagreement(paths[i], truth[i], {"edgelabels": (kept["local"], item["local"]),
                                                             "Rekognition": (kept["rekognition"],
                                                                             item["rekognition"])}, labels)
            file = f"{n:03d}-{Path(paths[i]).stem}.png"
            picture.save(drawn / file)
            item["picture"] = f"{DISAGREEMENTS}/{file}"

    return {"iou": dm.IOU, "sides": sides, "disagreements": different}, draw


# -- the report ---------------------------------------------------------------------------------

# Rekognition's detection aggregates: unweighted means over labels of the per-box values (detection_metrics).
AVERAGES = ("average_precision", "average_recall", "f1")
# (name, path into a side, format, which is better)
METRIC_ROWS = [
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
    *report.SPEED_ROWS,
]


def label_table(comparison: dict) -> tuple[list[str], list[list[str]]]:
    local, remote = comparison["sides"]["local"]["per_label"], comparison["sides"]["rekognition"]["per_label"]
    header = ["Label", "Boxes", "Threshold: local", "Rekognition", "P / R / F1: local", "Rekognition",
              "AP@0.5: local", "Rekognition"]
    prf = (lambda d: " / ".join(format_value(d[key]) for key in ("precision", "recall", "f1")))
    rows = [[a["label"], format_value(a["boxes"], "i"), format_value(a["assumed_threshold"]),
             format_value(b["assumed_threshold"]), prf(a["at_assumed_threshold"]), prf(b["at_assumed_threshold"]),
             format_value(a["coco_ap_50"]), format_value(b["coco_ap_50"])] for a, b in zip(local, remote)]
    return header, rows


def cards(comparison: dict) -> list[tuple[str, str, str]]:
    return report.side_cards(comparison, [("F1 at assumed thresholds", ("at_assumed_thresholds", "f1"), "f"),
                                          ("COCO mAP@0.5", ("map_50",), "f")])


def sections(page, comparison: dict, gallery: int | None) -> None:
    page.heading("Side by side")
    page.note(f"Same test images, same scoring code. A box is a true positive when it overlaps an unmatched "
              f"ground-truth box of its label at IoU >= {comparison['iou']:g}, greedily by confidence. Assumed "
              "thresholds: per label, the confidence that maximises that label's per-box F1 on this test set "
              "(Rekognition's definition), derived for each model alike; the averages are unweighted means over "
              "labels, as Rekognition's. COCO mAP uses every box (pycocotools).")
    page.table(*report.metric_table(comparison, METRIC_ROWS))
    if comparison["sides"]["rekognition"]["at_model_thresholds"] is None:
        report.own_thresholds_note(page)
    page.heading("Per label (at assumed thresholds)")
    page.table(*label_table(comparison))
    if comparison["unknown_labels"]:
        page.note("Boxes Rekognition answered with labels the local model does not have (not scored): "
                  + ", ".join(f"{k} {v}" for k, v in comparison["unknown_labels"].items()))


def gallery_section(page, comparison: dict, gallery: int | None) -> None:
    """The images whose counts differ; the HTML embeds the drawn ones (up to `gallery`), the Markdown links all."""
    different = comparison["disagreements"]
    page.heading(f"Where they disagree ({len(different):,} of {comparison['scored_images']:,} images)")
    if not different:
        page.paragraph("The two models have the same TP / FP / FN counts on every image.")
        return
    page.note("Images whose TP / FP / FN counts differ, each side at its own assumed thresholds, most different "
              "first. Pictures: ground truth in blue, each side's boxes in orange (edgelabels left, Rekognition "
              "right).")
    count = (lambda d: f"{d['tp']} / {d['fp']} / {d['fn']}")
    page.table(["Image", "Boxes", "edgelabels TP / FP / FN", "Rekognition TP / FP / FN", "Picture"],
               [[d["path"], format_value(d["boxes"], "i"), count(d["local"]), count(d["rekognition"]),
                 d.get("picture", "")] for d in different])
    drawn = [d for d in different if d.get("picture")][:gallery]  # gallery None: all of them
    if drawn:
        page.figures([(page.folder / d["picture"], f"{Path(d['path']).name}: edgelabels {count(d['local'])}, "
                                                   f"Rekognition {count(d['rekognition'])}", "wide") for d in drawn])


def lines(comparison: dict, out: Path) -> list[str]:
    printed = report.cli_rows(comparison, [
        ("avg precision (assumed thr.)", ("at_assumed_thresholds", "average_precision"), "f"),
        ("avg recall (assumed thr.)", ("at_assumed_thresholds", "average_recall"), "f"),
        ("F1 (assumed thr.)", ("at_assumed_thresholds", "f1"), "f"), ("COCO mAP@0.5", ("map_50",), "f")])
    beside = comparison.get("rekognition_summary")
    if beside:
        aws, here = beside["summary"], beside["rekognition_measured"]
        show = (lambda d, key: report.show(d[key], "f"))
        printed.append(f"Rekognition's EvaluationSummary (its own test set, {beside['number_of_testing_images']} "
                       f"images): AveragePrecision {show(aws, 'average_precision')}, AverageRecall "
                       f"{show(aws, 'average_recall')}, F1 {show(aws, 'f1')}; at its thresholds here: "
                       f"{show(here, 'average_precision')}, {show(here, 'average_recall')}, {show(here, 'f1')}")
    printed.append(f"{len(comparison['disagreements'])} images where the TP/FP/FN counts differ"
                   + (f" (drawn in {out}/{DISAGREEMENTS}/)" if comparison["disagreements"] else ""))
    return printed


HOOKS = BenchmarkHooks(test_samples=test_samples, read_answers=read_answers, score=score, cards=cards,
                       sections=sections, gallery=gallery_section, lines=lines, summary_keys=AVERAGES,
                       summary_extras=summary_averages, title=" (object detection)")
