"""What a detector's evaluation shows: precision-recall plots, the gallery of test images with boxes, the report.

Rendered from what detection.py computed (metrics with each label's curve, the per-box flags): nothing is
scored here. Plots use matplotlib's object API (Figure + savefig, never pyplot: no global state). Boxes are
drawn in runtime/overlay.py's colours, the ones `predict --draw` uses: ground truth blue, predictions orange.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from edgelabels import atomic
from edgelabels.evaluate.page import Page, format_value
from edgelabels.evaluate.report import calibration_section, estimate, interval_note, label_intervals, recipe_section

DPI = 110
GALLERY_SIDE = 512  # gallery images are scaled to this longer side: small test images get legible captions


def precision_recall_plots(folder: Path, metrics: dict) -> dict[str, Path]:
    """plots/precision_recall.png and plots/precision_recall_vs_threshold.png; {name: path} in report order."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [row for row in metrics["per_label"] if row["boxes"] and row["predictions"]]  # others have no curve
    return {"precision_recall": _pr_curves(folder / "precision_recall.png", rows, metrics["iou"]),
            "vs_threshold": _vs_threshold(folder / "precision_recall_vs_threshold.png", rows)}


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _colours(n: int):
    from matplotlib import colormaps

    return colormaps["tab10" if n <= 10 else "tab20"].colors


def _pr_curves(path: Path, rows: list[dict], iou: float) -> Path:
    fig = _figure(5.6, 4.6)
    ax = fig.subplots()
    for row, colour in zip(rows, _colours(len(rows))):
        points = row["_curve"]  # one point per distinct score, highest first
        ax.plot(points["recall"], points["precision"], color=colour, marker="." if len(points["recall"]) < 50 else None,
                label=f"{row['label']} (COCO AP@0.5 {format_value(row['coco_ap_50'], 't')})")
        at = row["at_assumed_threshold"]
        if at["precision"] is not None:
            ax.plot(at["recall"], at["precision"], "o", color=colour)
            ax.annotate(f"{row['assumed_threshold']:.3f}", (at["recall"], at["precision"]), fontsize=7,
                        textcoords="offset points", xytext=(4, -10))
    ax.set(xlabel="Recall (per box)", ylabel="Precision (per box)",
           title=f"Precision-recall, IoU >= {iou:g} (dot: assumed threshold)", xlim=(0, 1.01), ylim=(0, 1.01))
    ax.grid(alpha=0.3)
    if rows:
        ax.legend(loc="lower left", fontsize=8)
    return _save(fig, path)


def _vs_threshold(path: Path, rows: list[dict]) -> Path:
    fig = _figure(6.4, 4.6)
    ax = fig.subplots()
    for row, colour in zip(rows, _colours(len(rows))):
        points = row["_curve"]
        # Thresholds from the highest score down; a value holds from its score down to the next lower one
        # (steps-post), and the lowest score's down to 0.
        x = np.r_[points["threshold"], 0.0]
        for key, style in (("precision", "-"), ("recall", "--")):
            ax.plot(x, np.r_[points[key], points[key][-1:]], color=colour, linestyle=style, drawstyle="steps-post",
                    label=f"{row['label']} {key}")
        if row["assumed_threshold"] is not None:
            ax.axvline(row["assumed_threshold"], color=colour, linestyle=":", linewidth=1)
    ax.set(xlabel="Confidence threshold (a box is returned at score >= threshold)", ylabel="Per box",
           title="Precision (solid) and recall (dashed) vs threshold; dotted: assumed", xlim=(0, 1), ylim=(0, 1.01))
    ax.grid(alpha=0.3)
    if rows:
        ax.legend(loc="lower left", fontsize=7, ncols=2)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    with atomic.temp_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def draw_gallery(folder: Path, samples, ground_truth, predictions, flags, labels, per_image: list[dict], *,
                 count: int) -> list[dict]:
    """The `count` worst test images (most false positives + false negatives first) with ground truth and the
    boxes predicted at the assumed thresholds drawn, each captioned with its label and confidence."""
    from edgelabels.data.images import read_image
    from edgelabels.runtime.overlay import PREDICTED, TRUTH, draw_boxes

    order = sorted(range(len(samples)), key=lambda i: (-(per_image[i]["fp"] + per_image[i]["fn"]),
                                                       str(samples[i].path)))[:count]
    gallery = []
    for rank, i in enumerate(order, 1):
        image = _thumbnail(read_image(samples[i].path)[0])
        picture = draw_boxes(image, [("", box) for box in ground_truth[i][1]], TRUTH)
        pred, kept = predictions[i], np.flatnonzero(flags[i]["kept"])
        kept = kept[np.argsort(pred[kept, 4], kind="stable")]  # least confident first: the best is drawn on top
        picture = draw_boxes(picture, [(f"{labels[int(pred[k, 5])]} {pred[k, 4]:.1%}", pred[k, :4]) for k in kept],
                             PREDICTED)
        row = per_image[i]
        name = f"{rank:02d}-fp{row['fp']}-fn{row['fn']}-{_safe_name(Path(row['path']).stem)}.png"
        with atomic.temp_path(folder / name) as tmp:
            picture.save(tmp, format="PNG")
        gallery.append({**row, "rank": rank, "file": f"gallery/{name}"})
    return gallery


def write_report(folder: Path, *, metrics: dict, summary: dict, plots: dict, gallery: list[dict],
                 context: dict, recipe: dict | None = None) -> tuple[Path, Path]:
    """report.html (self-contained) and report.md, from the numbers already computed."""
    from edgelabels.runtime.overlay import PREDICTED, TRUTH

    details = summary["EvaluationDetails"]
    meta = [("run", details["ProjectVersionArn"]), ("evaluated", details["EvaluationEndTimestamp"] + " UTC"),
            *((k, str(v)) for k, v in context.items() if k != "title")]
    page = Page(folder, context.get("title", "Object detection: evaluation"), meta)
    page.cards([("Images", format_value(metrics["number_of_images"], "i")),
                ("Ground-truth boxes", format_value(metrics["number_of_boxes"], "i")),
                ("Average precision (Rekognition)", estimate(metrics, "at_assumed_thresholds.average_precision")),
                ("Average recall (Rekognition)", estimate(metrics, "at_assumed_thresholds.average_recall")),
                ("F1 (Rekognition)", estimate(metrics, "at_assumed_thresholds.f1")),
                ("COCO mAP@0.5", estimate(metrics, "map_50")),
                ("COCO mAP@0.5:0.95", format_value(metrics["map_50_95"])),
                ("IoU for a match", f"{metrics['iou']:g}")])
    interval_note(page, metrics)
    page.note(f"Rekognition's view, counted per box: a predicted box is a true positive when it overlaps an "
              f"unmatched ground-truth box of the same label at IoU >= {metrics['iou']:g} (Rekognition does not "
              "document its IoU; this is ours), greedily by score within each image. Each label's assumed "
              "threshold is the confidence that maximises its F1 on these images; average precision and recall "
              "are the means over labels at those thresholds. COCO's mAP (pycocotools) averages precision over "
              "101 recall points, at IoU 0.5 and over IoU 0.5-0.95.")
    page.heading("Per label")
    min_conf = metrics["min_confidence"]
    header = ["Label", "Test images", "Boxes", "Assumed threshold", "Precision", "Recall", "F1", "TP", "FP", "FN",
              f"Precision @{min_conf:g}", f"Recall @{min_conf:g}", f"F1 @{min_conf:g}", "COCO AP@0.5",
              "COCO AP@0.5:0.95"]
    table = []
    for row in metrics["per_label"]:
        a, low = row["at_assumed_threshold"], row["at_min_confidence"]
        table.append([row["label"], format_value(row["images"], "i"), format_value(row["boxes"], "i"),
                      format_value(row["assumed_threshold"], "t"), format_value(a["precision"]),
                      format_value(a["recall"]), format_value(a["f1"]), str(a["tp"]), str(a["fp"]), str(a["fn"]),
                      format_value(low["precision"]), format_value(low["recall"]), format_value(low["f1"]),
                      format_value(row["coco_ap_50"]), format_value(row["coco_ap_50_95"])])
    page.table(header, table)
    label_intervals(page, metrics, (("Precision", "precision"), ("Recall", "recall"), ("F1", "f1"),
                                    ("AP@0.5", "coco_ap_50")))
    page.heading("Precision and recall by confidence threshold")
    page.note("What each threshold returns: a higher threshold gives fewer, surer boxes.")
    by_threshold = []
    for row in metrics["per_label"]:
        by_threshold += [[row["label"], f"{t['threshold']:g}", format_value(t["precision"]), format_value(t["recall"]),
                          format_value(t["f1"]), str(t["tp"]), str(t["fp"]), str(t["fn"])]
                         for t in row["by_threshold"]]
    page.table(["Label", "Threshold", "Precision", "Recall", "F1", "TP", "FP", "FN"], by_threshold)
    page.heading("Plots")
    page.figures([(plots["precision_recall"], "Precision-recall per label", ""),
                  (plots["vs_threshold"], "Precision and recall vs confidence threshold", "")], grid="plots")
    page.heading("Worst test images")
    if gallery:
        page.note(f"Most false positives + false negatives first. Ground truth: {_colour_name(TRUTH)} boxes; "
                  f"predictions at the assumed thresholds: {_colour_name(PREDICTED)}, with label and confidence.")
        page.figures([(folder / item["file"],
                       f"{item['rank']}: {item['tp']} TP, {item['fp']} FP, {item['fn']} FN - {Path(item['path']).name}",
                       "wrong" if item["fp"] + item["fn"] else "") for item in gallery])
    else:
        page.note("No gallery.")
    calibration_section(page, metrics.get("calibration"))
    recipe_section(page, recipe)
    if metrics["notes"]:
        page.heading("Notes")
        page.bullets(metrics["notes"])
    return (atomic.write_text(folder / "report.html", page.html_text()),
            atomic.write_text(folder / "report.md", page.md_text()))


def _colour_name(colour) -> str:
    return {(255, 140, 0): "orange", (30, 144, 255): "blue"}.get(tuple(int(c) for c in colour), "coloured")


def _thumbnail(image):
    from PIL import Image

    scale = GALLERY_SIDE / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR)


def _safe_name(stem: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem)[:80] or "image"
