"""Keep only the lungs: the step between the U-Net and the classifier (numpy + Pillow, edge-safe).

Text, dates and markers on a film sit outside the lungs; blanking everything outside a slightly
dilated lung mask stops a classifier from learning the hospital instead of the disease. The same
function runs in training (masks computed once and cached), evaluation, export and the Predictor.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter


def dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Binary mask grown by `pixels` in every direction (a square max filter)."""
    if pixels <= 0:
        return mask.astype(bool)
    grown = Image.fromarray(mask.astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(2 * pixels + 1))
    return np.asarray(grown) > 127


def keep_lungs(image: np.ndarray, lung_probability: np.ndarray, *, threshold: float = 0.5,
               dilate_fraction: float = 0.02, crop: bool = False, fill: int = 0) -> np.ndarray:
    """uint8 image (H, W[, C]) with everything outside the dilated lung mask set to `fill`.

    lung_probability: (H, W) U-Net output resized to the image. dilate_fraction: growth as a share of
    the image's longer side. crop: cut to the mask's bounding box (the caller resizes afterwards).
    An empty mask (no lung found) leaves the image whole rather than blank: the classifier then sees
    what it would have seen without segmentation.
    """
    if lung_probability.shape != image.shape[:2]:
        raise ValueError(f"mask shape {lung_probability.shape} differs from image shape {image.shape[:2]}")
    mask = lung_probability >= threshold
    if not mask.any():
        return image.copy()
    mask = dilate(mask, round(dilate_fraction * max(image.shape[:2])))
    out = np.where(mask[..., None] if image.ndim == 3 else mask, image, np.uint8(fill)).astype(np.uint8)
    if crop:
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        out = out[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    return out
