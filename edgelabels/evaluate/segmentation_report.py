"""report.md and report.html of a U-Net evaluation, from the numbers already in metrics.json."""

from __future__ import annotations

from pathlib import Path

from edgelabels import atomic
from edgelabels.evaluate.page import Page, format_value
from edgelabels.evaluate.report import estimate, interval_note, recipe_section

GALLERIES = (("worst", "Worst images (lowest Dice first)"), ("best", "Best images (highest Dice first)"))


def write_report(folder: Path, metrics: dict, speed: dict, gallery: list[dict], histogram: Path,
                 recipe: dict | None = None) -> None:
    """report.md and a self-contained report.html, from the numbers already in metrics.json."""
    from edgelabels.runtime.overlay import LEGEND

    meta = [("data", metrics["data"]), ("threshold", f"{metrics['threshold']:g}"),
            ("prediction speed", format_value(speed["images_per_second"], "/s"))]
    page = Page(folder, f"Lung segmentation: {metrics['model']}", meta)
    page.cards([("Images", format_value(metrics["images"], "i")), ("Mean Dice", estimate(metrics, "dice", "t")),
                ("Mean IoU", estimate(metrics, "iou", "t")), ("Median Dice", format_value(metrics["dice_median"], "t")),
                ("Lowest Dice", format_value(metrics["dice_min"], "t"))])
    interval_note(page, metrics)
    page.note(f"Dice and IoU are computed at each mask's own resolution (the U-Net's output resized to it); mask "
              f"value 127 is ignored. Overlays: {LEGEND}.")
    page.heading("Dice per image")
    page.figure(histogram, "Dice histogram")
    page.heading("Lowest Dice")
    lowest = sorted(metrics["per_image"], key=lambda row: row["dice"])[:10]
    page.table(["Image", "Dice", "IoU"], [[row["path"], f"{row['dice']:.4f}", f"{row['iou']:.4f}"] for row in lowest])
    for kind, heading in GALLERIES:
        items = [item for item in gallery if item["kind"] == kind]
        if items:
            page.heading(heading)
            page.figures([(folder / item["file"], f"{kind} {item['rank']}: Dice {item['dice']:.3f}, IoU "
                           f"{item['iou']:.3f} - {Path(item['path']).name}", "") for item in items])
    recipe_section(page, recipe)
    atomic.write_text(folder / "report.html", page.html_text())
    atomic.write_text(folder / "report.md", page.md_text())
