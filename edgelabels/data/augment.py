"""Augmentation presets (albumentations), applied by the training loader to uint8 pixels.

Augmentation never enters the model graph, so the exported model is exactly the trained one.
`xray` reproduces the published chest X-ray recipe (Keras ImageDataGenerator settings: rotation 20
degrees, zoom 0.2, width/height shift 0.2, shear 0.05, brightness 0.1-1.9, horizontal flip);
`photo` suits phone photos of test cassettes (no flips: they would swap the C and T positions
relative to the printed marks). Extra transforms come from the config: `[{Name: {param: value}}]`.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from PIL import Image

from edgelabels.errors import UserError

PRESETS = ("none", "xray", "photo")


def _preset_transforms(preset: str) -> list:
    import albumentations as A
    import cv2

    if preset == "none":
        return []
    if preset == "xray":
        shear = math.degrees(0.05)  # ImageDataGenerator's shear_range was in radians when the recipe was published
        return [
            A.Affine(rotate=(-20, 20), scale=(0.8, 1.2), translate_percent=(-0.2, 0.2), shear=(-shear, shear),
                     border_mode=cv2.BORDER_CONSTANT, fill=0, p=1.0),
            A.MultiplicativeNoise(multiplier=(0.1, 1.9), per_channel=False, elementwise=False, p=1.0),
            A.HorizontalFlip(p=0.5),
        ]
    if preset == "photo":
        return [
            A.Affine(rotate=(-15, 15), scale=(0.85, 1.15), translate_percent=(-0.08, 0.08),
                     border_mode=cv2.BORDER_REFLECT_101, p=0.9),
            A.Perspective(scale=(0.02, 0.06), p=0.4),
            A.RandomBrightnessContrast(brightness_limit=0.25, contrast_limit=0.25, p=0.8),
            A.HueSaturationValue(hue_shift_limit=8, sat_shift_limit=15, val_shift_limit=10, p=0.5),
            A.OneOf([A.MotionBlur(blur_limit=(3, 5)), A.GaussianBlur(blur_limit=(3, 5))], p=0.25),
            A.GaussNoise(std_range=(0.01, 0.05), p=0.3),
            A.ImageCompression(quality_range=(50, 95), p=0.3),
        ]
    raise UserError(f"augment.preset: unknown preset {preset!r} (choose from {', '.join(PRESETS)})")


def _extra_transforms(specs: list) -> list:
    import albumentations as A

    transforms = []
    for spec in specs:
        if not isinstance(spec, dict) or len(spec) != 1:
            raise UserError(f"augment.transforms: each entry must be {{Name: {{param: value}}}}, not {spec!r}")
        (name, params), = spec.items()
        cls = getattr(A, str(name), None)
        if not isinstance(cls, type):
            raise UserError(f"augment.transforms: albumentations has no transform {name!r}")
        try:
            transforms.append(cls(**(params or {})))
        except (TypeError, ValueError) as exc:
            raise UserError(f"augment.transforms: {name}: {exc}") from None
    return transforms


def build_augmenter(preset: str = "none", transforms: list | tuple = (), seed: int | None = None):
    """A callable uint8 (H, W, C) or (H, W) [, mask] -> the same shape(s), or None when there is nothing to apply."""
    chosen = _preset_transforms(preset) + _extra_transforms(list(transforms))
    if not chosen:
        return None
    import albumentations as A

    compose = A.Compose(chosen, seed=seed)

    def augment(pixels: np.ndarray, mask: np.ndarray | None = None):
        """pixels -> augmented pixels; with a (H, W) mask -> (pixels, mask), moved by the same geometry.

        Spatial transforms move the mask with nearest-neighbour sampling (so 0/127/255 stay the only
        values), filled with 0 where the image is filled; colour transforms leave it alone.
        """
        # albumentations takes grayscale as (H, W): a (H, W, 1) loader array goes through squeezed.
        squeeze = pixels.ndim == 3 and pixels.shape[2] == 1
        arguments = {"image": pixels[:, :, 0] if squeeze else pixels}
        if mask is not None:
            arguments["mask"] = mask
        result = compose(**arguments)
        image = result["image"][:, :, None] if squeeze else result["image"]
        return image if mask is None else (image, result["mask"])

    return augment


def augment_folder(source, to: int, out, preset: str = "photo", seed: int = 0, progress: bool = True) -> dict:
    """Expand a folder-per-label dataset to about `to` images (originals kept), label proportions kept.

    Writes out/LABEL/NNNNNN-NAME.png for originals' copies and out/LABEL/NNNNNN-NAME-aug.png for new ones,
    atomically (NNNNNN numbers the images of a label).
    Returns the number of images written per label.
    """
    from tqdm import tqdm

    from edgelabels import atomic
    from edgelabels.data.images import read_image
    from edgelabels.data.sources import load_dataset

    dataset = load_dataset(source)
    total = len(dataset)
    if to < total:
        raise UserError(f"--to {to}: must be at least the {total} images already in {source}")
    augment = build_augmenter(preset, seed=seed)
    if augment is None:
        raise UserError("--preset none: nothing to augment with")
    rng = np.random.default_rng(seed)
    out = Path(out)
    counts: dict[str, int] = {}
    by_label: dict[str, list] = {}
    for sample in dataset.samples:
        by_label.setdefault(sample.label, []).append(sample)
    bar = tqdm(total=to, disable=not progress, desc="augment", unit="img")
    for label, samples in sorted(by_label.items()):
        target = round(to * len(samples) / total)
        extra = rng.integers(0, len(samples), size=max(0, target - len(samples)))
        jobs = [(s, None) for s in samples] + [(samples[i], k) for k, i in enumerate(extra)]
        for n, (sample, k) in enumerate(jobs):
            image, _ = read_image(sample.path)
            pixels = np.asarray(image)
            if k is not None:
                pixels = augment(pixels)
            # Numbered so that two originals with the same name in different sub-folders never collide.
            name = f"{n:06d}-{sample.path.stem}" + ("" if k is None else "-aug") + ".png"
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, "PNG")
            atomic.write_bytes(out / label / name, buffer.getvalue())
            counts[label] = counts.get(label, 0) + 1
            bar.update(1)
    bar.close()
    return counts
