"""Box geometry shared by detection's data, training, evaluation and edge: conversions and IoU (numpy only).

Three frames, all of the image as displayed (after EXIF orientation), as Ground Truth draws boxes:
- pixels: `Box(label, left, top, width, height)` (data/dataset.py), what manifests and COCO hold;
- ratios: (left, top, width, height) as shares of the image's width and height, what Rekognition's
  `Geometry.BoundingBox` holds and what the detector outputs (preprocessing stretches the image to the
  model's input, so ratios of the input are ratios of the image);
- YOLO: (cx, cy, w, h) ratios of the centre and size, one `class cx cy w h` line per box.
"""

from __future__ import annotations

import numpy as np

from edgelabels.data.dataset import Box


def to_ratios(box: Box, width: int, height: int) -> tuple[float, float, float, float]:
    return box.left / width, box.top / height, box.width / width, box.height / height


def from_ratios(label: str, ratios, width: int, height: int) -> Box:
    left, top, w, h = (float(v) for v in ratios)
    return Box(label, left * width, top * height, w * width, h * height)


def yolo_to_ratios(cx: float, cy: float, w: float, h: float) -> tuple[float, float, float, float]:
    return cx - w / 2, cy - h / 2, w, h


def ratios_to_yolo(left: float, top: float, w: float, h: float) -> tuple[float, float, float, float]:
    return left + w / 2, top + h / 2, w, h


def clip_ratios(ratios) -> tuple[float, float, float, float]:
    """The part of a (left, top, width, height) box inside the image (0-1 on both axes); may be empty."""
    left, top, w, h = (float(v) for v in ratios)
    x1, y1 = min(max(left, 0.0), 1.0), min(max(top, 0.0), 1.0)
    x2, y2 = min(max(left + w, 0.0), 1.0), min(max(top + h, 0.0), 1.0)
    return x1, y1, max(x2 - x1, 0.0), max(y2 - y1, 0.0)


def iou_matrix(a, b) -> np.ndarray:
    """IoU of every box in `a` (N, 4) with every box in `b` (M, 4), both (left, top, width, height) in one frame."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ax1, ay1, ax2, ay2 = a[:, 0:1], a[:, 1:2], a[:, 0:1] + a[:, 2:3], a[:, 1:2] + a[:, 3:4]
    bx1, by1, bx2, by2 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    inter = np.clip(np.minimum(ax2, bx2) - np.maximum(ax1, bx1), 0, None) * \
        np.clip(np.minimum(ay2, by2) - np.maximum(ay1, by1), 0, None)
    union = (a[:, 2:3] * a[:, 3:4]) + (b[:, 2] * b[:, 3]) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def displayed_size(path) -> tuple[int, int]:
    """(width, height) of an image as displayed: its header's size, swapped for EXIF orientations 5-8."""
    from PIL import Image

    with Image.open(path) as image:
        width, height = image.size
        # A PNG's EXIF before its pixels is in image.info once opened; getexif() on a PNG without it would decode
        # the whole image looking for one (0.5 s per large frame). Pillow writes EXIF there.
        header_only = image.format == "PNG" and "exif" not in image.info
        orientation = 1 if header_only else image.getexif().get(0x0112, 1)
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)
