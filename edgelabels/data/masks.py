"""Segmentation data: a folder with images/NAME and masks/NAME (same name), masks 255 lung, 0 background, 127 ignore.

A pair becomes a Sample whose path is the image and whose one label is "lung", so splits, split files
and run directories are the same as for classification; the mask is found from the image's path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from edgelabels.data.dataset import Dataset, Problem, Sample
from edgelabels.data.images import dangling_image_link, is_image_path, read_image
from edgelabels.data.sources import compile_group_by, group_of
from edgelabels.errors import ImageProblem, UserError

MASK_LABEL = "lung"
IGNORE = 127  # mask value the loss and every metric leave out (a region the annotator left open)


def mask_path_of(image_path: str | Path) -> Path:
    """images/NAME -> masks/NAME beside it."""
    image_path = Path(image_path)
    return image_path.parent.parent / "masks" / image_path.name


def is_mask_folder(source: str | Path) -> bool:
    """True for a folder holding images/ and masks/ (a segmentation dataset), not one sub-folder per label."""
    root = Path(source)
    return (root / "images").is_dir() and (root / "masks").is_dir()


def load_mask_pairs(source: str | Path, group_by: str | None = None) -> Dataset:
    """Every images/NAME that has masks/NAME; images without a mask and unreadable files become problems."""
    root = Path(source)
    images_dir, masks_dir = root / "images", root / "masks"
    if not is_mask_folder(root):
        raise UserError(f"{root}: a segmentation dataset needs {root / 'images'}/ and {root / 'masks'}/ "
                        "(same file names; mask 255 = lung, 0 = background, 127 = ignore)")
    pattern = compile_group_by(group_by)
    samples = []
    problems = [Problem(str(p), why) for p in sorted(images_dir.iterdir()) if (why := dangling_image_link(p))]
    for image_path in sorted(p for p in images_dir.iterdir() if p.is_file() and is_image_path(p)):
        mask_path = mask_path_of(image_path)
        if not mask_path.is_file():
            problems.append(Problem(str(image_path), f"no mask {mask_path}"))
            continue
        problem = _check_pair(image_path, mask_path)
        if problem:
            problems.append(Problem(str(image_path), problem))
            continue
        samples.append(Sample(image_path, (MASK_LABEL,), group_of(image_path, pattern)))
    if not samples:
        first = f" (first problem: {problems[0].path}: {problems[0].problem})" if problems else ""
        raise UserError(f"{images_dir}: no image with a mask in {masks_dir}{first}")
    return Dataset(samples, str(root), problems)


def _check_pair(image_path: Path, mask_path: Path) -> str | None:
    try:
        image, _ = read_image(image_path)
        mask, _ = read_image(mask_path)
    except ImageProblem as exc:
        return str(exc)
    if image.size != mask.size:
        return f"mask {mask_path} is {mask.size[0]}x{mask.size[1]}, image is {image.size[0]}x{image.size[1]}"
    return None


def read_mask(path: str | Path, height: int, width: int) -> np.ndarray:
    """uint8 (height, width) mask with values 0, 127, 255 only, resized with nearest neighbour (no new values)."""
    image, _ = read_image(path)
    mask = image.convert("L")
    if mask.size != (width, height):
        mask = mask.resize((width, height), Image.Resampling.NEAREST)
    m = np.asarray(mask)
    # Anti-aliased edges and JPEG noise: snap to the three meaningful values.
    return np.where(np.abs(m.astype(np.int16) - 127) <= 32, 127, np.where(m > 127, 255, 0)).astype(np.uint8)


def mask_target(mask: np.ndarray) -> np.ndarray:
    """uint8 0/127/255 mask -> float32 target: 1 lung, 0 background, 0.5 ignore (what the loss expects)."""
    mask = np.asarray(mask)
    return np.where(mask == IGNORE, 0.5, (mask > IGNORE).astype(np.float32)).astype(np.float32)
