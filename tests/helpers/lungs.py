"""Synthetic "chest films" for the segmentation tests: two dark lung ellipses on a brighter body.

make_lung_pairs writes a segmentation dataset (images/ + masks/); make_lung_xrays writes a folder per
label where the label lives inside the lungs (spots) and a bright marker sits outside them, in the
corner, for one label only: what the lung chain must blank.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def lung_mask(size: int, rng: np.random.Generator) -> np.ndarray:
    m = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(m)
    cx = size // 2 + int(rng.integers(-size // 10, size // 10 + 1))
    top, bottom = int(size * 0.2), int(size * 0.8)
    draw.ellipse([cx - size * 0.3, top, cx - size * 0.06, bottom], fill=255)
    draw.ellipse([cx + size * 0.06, top, cx + size * 0.3, bottom], fill=255)
    return np.asarray(m)


def film(mask: np.ndarray, rng: np.random.Generator, spots: bool = False, marker: bool = False) -> np.ndarray:
    size = mask.shape[0]
    image = rng.normal(150, 15, mask.shape) - (mask > 0) * 80
    if spots:
        yy, xx = np.nonzero(mask)
        for i in rng.choice(len(yy), 6, replace=False):
            image[max(0, yy[i] - 2):yy[i] + 2, max(0, xx[i] - 2):xx[i] + 2] += 90
    if marker:
        image[1:size // 6, 1:size // 6] = 255
    return np.clip(image, 0, 255).astype(np.uint8)


def make_lung_pairs(root: Path, n: int = 16, size: int = 64, seed: int = 0) -> Path:
    """root/images/pK-J.png + root/masks/pK-J.png (two films per patient K); a few ignore (127) pixels."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        mask = lung_mask(size, rng)
        truth = mask.copy()
        truth[:2, :2] = 127
        Image.fromarray(film(mask, rng)).save(root / "images" / f"p{i // 2}-{i % 2}.png")
        Image.fromarray(truth).save(root / "masks" / f"p{i // 2}-{i % 2}.png")
    return root


def make_lung_xrays(root: Path, per_label: int = 10, size: int = 64, seed: int = 1) -> Path:
    """root/COVID/*.png (spots in the lungs, a marker in the corner) and root/NORMAL/*.png (neither)."""
    rng = np.random.default_rng(seed)
    for label in ("COVID", "NORMAL"):
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_label):
            sick = label == "COVID"
            Image.fromarray(film(lung_mask(size, rng), rng, spots=sick, marker=sick)).save(root / label / f"{label}-{i}.png")
    return root
