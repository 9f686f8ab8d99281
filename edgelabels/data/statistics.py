"""What the training recipe needs to know about a source, measured once: image sizes, box sizes, label counts.

`source_statistics(dataset)` reads image headers only (data/boxes.displayed_size: the size and the EXIF orientation, no
pixels decoded), so a thousand images take about a second. Percentiles are numpy's
(linear interpolation), named "p10" and so on, None where there is nothing to measure. Sizes are in pixels of
the image as displayed. A box's relative size is its shorter side over its image's shorter side: how far an image
can be shrunk before its boxes cover too few cells of the model's output.
The imbalance ratio is the most frequent label's images over the least frequent's (1.0: balanced).
An image whose header cannot be read is counted as unreadable and left out of the sizes (the reader and the
decoding check list it with its reason).
"""

from __future__ import annotations

import numpy as np

from edgelabels.data.boxes import displayed_size
from edgelabels.data.dataset import Dataset

IMAGE_PERCENTILES = (10, 50, 90)
BOX_PERCENTILES = (5, 10, 50, 90)


def source_statistics(dataset: Dataset) -> dict:
    """Image sizes and label counts of any dataset; box sizes too when it has boxes (see the module docstring)."""
    sizes = {}
    for sample in dataset.samples:
        try:
            sizes[sample.path] = displayed_size(sample.path)
        except Exception:  # noqa: BLE001  Pillow raises many kinds for a broken file; counted, listed elsewhere
            continue
    widths, heights = (np.array([size[i] for size in sizes.values()], dtype=float) for i in (0, 1))
    images_per_label = dataset.label_counts
    statistics = {
        "images": {"count": len(dataset.samples), "unreadable": len(dataset.samples) - len(sizes),
                   "width": percentiles(widths, IMAGE_PERCENTILES),
                   "height": percentiles(heights, IMAGE_PERCENTILES)},
        "labels": {"images_per_label": images_per_label, "imbalance_ratio": imbalance(images_per_label)},
    }
    if any(sample.boxes for sample in dataset.samples):
        statistics["boxes"] = box_statistics(dataset, sizes)
        boxes_per_label = statistics["boxes"].pop("per_label")
        statistics["labels"].update(boxes_per_label=boxes_per_label, box_imbalance_ratio=imbalance(boxes_per_label))
    return statistics


def box_statistics(dataset: Dataset, sizes: dict) -> dict:
    """Box sides in pixels, boxes per image, box size relative to its image, boxes per label."""
    sides, relative, per_label = [], [], {}
    for sample in dataset.samples:
        for box in sample.boxes:
            sides.append((box.width, box.height))
            per_label[box.label] = per_label.get(box.label, 0) + 1
            if sample.path in sizes:
                relative.append(min(box.width, box.height) / min(sizes[sample.path]))
    sides = np.array(sides, dtype=float).reshape(-1, 2)
    per_image = np.array([len(s.boxes) for s in dataset.samples], dtype=float)
    return {
        "count": len(sides),
        "width": percentiles(sides[:, 0], BOX_PERCENTILES),
        "height": percentiles(sides[:, 1], BOX_PERCENTILES),
        "shorter_side": percentiles(sides.min(axis=1), BOX_PERCENTILES),
        "relative_shorter_side": percentiles(np.array(relative), BOX_PERCENTILES),
        "per_image": {"mean": round(float(per_image.mean()), 3), "max": int(per_image.max())},
        "images_without_boxes": int((per_image == 0).sum()),
        "per_label": {name: per_label[name] for name in sorted(per_label)},
    }


def percentiles(values: np.ndarray, which) -> dict:
    """{"p10": ..., ...} rounded to 4 significant decimals; None values for an empty array."""
    if not len(values):
        return {f"p{q}": None for q in which}
    return {f"p{q}": round(float(v), 4) for q, v in zip(which, np.percentile(values, which))}


def imbalance(counts: dict) -> float | None:
    """The largest count over the smallest (None without counts; a label with no image is not counted)."""
    present = [n for n in counts.values() if n]
    return round(max(present) / min(present), 3) if present else None
