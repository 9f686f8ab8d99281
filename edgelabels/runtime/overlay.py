"""Pictures of predictions: a lung segmentation's mask and overlay, and a detector's boxes.

Colours (the same in `segment` and `predict --draw` outputs, the evaluation galleries and the reports):
  orange tint + orange outline   the predicted lung area (probability >= threshold)
  orange box + caption           a predicted box, captioned "label 97.3%"
  blue outline / blue box        the truth mask's lung area, a ground-truth box, when given
Orange and blue stay distinguishable with the common colour-vision deficiencies. Pixels the truth
marks "ignore" (127) are left undrawn. numpy + Pillow only: the `segment` verb runs without matplotlib.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

PREDICTED = np.array([255, 140, 0], np.float32)  # orange
TRUTH = np.array([30, 144, 255], np.float32)  # blue
TINT = 0.35  # opacity of the predicted area: the X-ray stays readable underneath
LEGEND = "orange: predicted lung (tint + outline); blue outline: truth mask"


def mask_png(probability_at_image_size: np.ndarray, threshold: float = 0.5) -> Image.Image:
    """The binary mask as an 8-bit image: 255 lung (probability >= threshold, as Dice counts it), 0 elsewhere."""
    lung = np.asarray(probability_at_image_size) >= threshold
    return Image.fromarray(lung.astype(np.uint8) * 255, "L")


def overlay(image: Image.Image, probability_at_image_size: np.ndarray, truth: np.ndarray | None = None,
            threshold: float = 0.5) -> Image.Image:
    """RGB picture: the image in grey, the predicted lungs tinted orange and outlined, the truth outlined in blue.

    probability_at_image_size: (height, width) lung probability (segmenter.at_image_size); truth: the
    mask at the same size (0 background, 127 ignore, 255 lung) or None.
    """
    grey = np.asarray(image.convert("L"), np.float32)
    size = grey.shape
    probability = np.asarray(probability_at_image_size)
    if probability.shape != size:
        raise ValueError(f"probability map {probability.shape} is not the image's size {size}")
    predicted = probability >= threshold
    # Outlines grow with the image, so they stay visible on a 3000-pixel film and thin on a thumbnail.
    width = max(1, round(max(size) / 300))
    rgb = np.repeat(grey[..., None], 3, axis=2)
    rgb[predicted] = (1 - TINT) * rgb[predicted] + TINT * PREDICTED
    rgb[outline(predicted, width)] = PREDICTED
    if truth is not None:
        truth = np.asarray(truth)
        if truth.shape != size:
            raise ValueError(f"truth mask {truth.shape} is not the image's size {size}")
        rgb[outline(truth > 127, width)] = TRUTH
    return Image.fromarray(np.clip(rgb + 0.5, 0, 255).astype(np.uint8), "RGB")


def outline(mask: np.ndarray, width: int = 1) -> np.ndarray:
    """The pixels of `mask` within `width` pixels of its edge (the image border counts as an edge)."""
    mask = np.asarray(mask, bool)
    return mask & ~_shrink(mask, width)


def _shrink(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Binary erosion by a (2 * pixels + 1) square, done as two 1-D passes of shifted ANDs (fast on big films)."""
    out = mask.copy()
    for axis in (0, 1):
        source = np.moveaxis(out.copy(), axis, 0)
        target = np.moveaxis(out, axis, 0)  # a view: writing it writes `out`
        for k in range(1, pixels + 1):
            target[k:] &= source[:-k]
            target[:-k] &= source[k:]
            target[:k] = False  # outside the image counts as background
            target[-k:] = False
    return out


def draw_boxes(image: Image.Image, boxes, colour=PREDICTED) -> Image.Image:
    """An RGB copy of `image` with boxes drawn: `boxes` is (caption, (left, top, width, height)) pairs, the box in
    ratios of the image (Rekognition's BoundingBox, the detector's output); an empty caption draws no label."""
    from PIL import ImageDraw, ImageFont

    picture = image.convert("RGB")
    draw = ImageDraw.Draw(picture)
    width, height = picture.size
    line = max(1, round(max(width, height) / 300))  # as the outlines: visible on big photos, thin on thumbnails
    font = ImageFont.load_default(size=max(10, round(max(width, height) / 40)))
    fill = tuple(int(c) for c in colour)
    for caption, (left, top, w, h) in boxes:
        x1, y1 = left * width, top * height
        x2, y2 = (left + w) * width - 1, (top + h) * height - 1  # the last pixel inside the box
        draw.rectangle((x1, y1, max(x1, x2), max(y1, y2)), outline=fill, width=line)
        if caption:
            # The caption sits on a filled band above the box (inside it when the box touches the top edge).
            x0, _, x3, y3 = draw.textbbox((0, 0), caption, font=font)
            band = y3 + 2 * line
            y = y1 - band if y1 - band >= 0 else y1
            draw.rectangle((x1, y, x1 + x3 - x0 + 2 * line, y + band), fill=fill)
            draw.text((x1 + line - x0, y + line), caption, fill=(0, 0, 0), font=font)
    return picture


def draw_custom_labels(image: Image.Image, custom_labels: list[dict], colour=PREDICTED) -> Image.Image:
    """`image` with a DetectCustomLabels answer's boxes drawn, each captioned with its label and confidence."""
    return draw_boxes(image, [(f"{label['Name']} {label['Confidence']:.1f}%",
                               tuple(label["Geometry"]["BoundingBox"][k] for k in ("Left", "Top", "Width", "Height")))
                              # least confident first, so the most confident box is drawn on top
                              for label in reversed(custom_labels) if "Geometry" in label], colour)
