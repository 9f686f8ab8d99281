"""report.md and report.html of a U-Net evaluation, from the numbers already in metrics.json."""

from __future__ import annotations

import html
from pathlib import Path

from edgelabels import atomic


def write_report(folder: Path, metrics: dict, speed: dict, gallery: list[dict], histogram: Path) -> None:
    """report.md and a self-contained report.html, from the numbers already in metrics.json."""
    from edgelabels.evaluate.report import CSS, data_uri, html_table, md_table
    from edgelabels.runtime.overlay import LEGEND

    title = f"Lung segmentation: {metrics['model']}"
    meta = [("data", metrics["data"]), ("threshold", f"{metrics['threshold']:g}"),
            ("prediction speed", f"{speed['images_per_second']:.1f} images/s")]
    cards = [("Images", f"{metrics['images']:,}"), ("Mean Dice", f"{metrics['dice']:.4f}"),
             ("Mean IoU", f"{metrics['iou']:.4f}"), ("Median Dice", f"{metrics['dice_median']:.4f}"),
             ("Lowest Dice", f"{metrics['dice_min']:.4f}")]
    lowest = sorted(metrics["per_image"], key=lambda row: row["dice"])[:10]
    table = (["Image", "Dice", "IoU"], [[row["path"], f"{row['dice']:.4f}", f"{row['iou']:.4f}"] for row in lowest])
    note = (f"Dice and IoU are computed at each mask's own resolution (the U-Net's output resized to it); mask "
            f"value 127 is ignored. Overlays: {LEGEND}.")

    def caption(item):
        name = Path(item["path"]).name
        return f"{item['kind']} {item['rank']}: Dice {item['dice']:.3f}, IoU {item['iou']:.3f} - {name}"

    meta_html = " &middot; ".join(f"{html.escape(k)}: {html.escape(v)}" for k, v in meta)
    cards_html = "".join(f"<div class='card'><div class='v'>{html.escape(v)}</div><div class='k'>{html.escape(k)}</div>"
                         "</div>" for k, v in cards)
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{CSS}</style></head><body><main><h1>{html.escape(title)}</h1>",
             f"<div class='meta'>{meta_html}</div>", f"<div class='cards'>{cards_html}</div>",
             f"<p class='note'>{html.escape(note)}</p>",
             f"<h2>Dice per image</h2><figure><img src='{data_uri(histogram)}' alt='Dice histogram'></figure>",
             "<h2>Lowest Dice</h2>", html_table(*table)]
    md = [f"# {title}", "", "  \n".join(f"{k}: {v}" for k, v in meta), "", md_table(["Metric", "Value"], cards), "",
          note, "", "## Dice per image", "", f"![Dice histogram]({histogram.relative_to(folder).as_posix()})", "",
          "## Lowest Dice", "", md_table(*table), ""]
    for kind, heading in (("worst", "Worst images (lowest Dice first)"), ("best", "Best images (highest Dice first)")):
        items = [item for item in gallery if item["kind"] == kind]
        if not items:
            continue
        parts.append(f"<h2>{heading}</h2><div class='gallery'>")
        parts += [f"<figure><img src='{data_uri(folder / item['file'])}' alt='{html.escape(caption(item))}'>"
                  f"<figcaption>{html.escape(caption(item))}</figcaption></figure>" for item in items]
        parts.append("</div>")
        md += [f"## {heading}", ""] + [f"![{caption(item)}]({item['file']})\n" for item in items]
    parts.append("</main></body></html>\n")
    atomic.write_text(folder / "report.html", "".join(parts))
    atomic.write_text(folder / "report.md", "\n".join(md) + "\n")
