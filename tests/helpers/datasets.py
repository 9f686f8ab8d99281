"""Tiny generated datasets and the seconds-long training config the training tests use."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"


def make_stripes_dataset(root: Path, per_label: int = 12, size: int = 40, seed: int = 0,
                         labels=("horizontal", "vertical")) -> Path:
    """Folder per label: noisy horizontal vs vertical stripes (learnable in a few epochs); PNGs named pN_i."""
    rng = np.random.default_rng(seed)
    for label in labels:
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(per_label):
            period = int(rng.integers(4, 9))
            wave = ((np.arange(size) // (period // 2)) % 2 * 180 + 40).astype(np.float64)
            image = np.tile(wave[:, None], (1, size)) if label == "horizontal" else np.tile(wave[None, :], (size, 1))
            image = np.clip(image + rng.normal(0, 25, image.shape), 0, 255).astype(np.uint8)
            Image.fromarray(image).convert("RGB").save(root / label / f"p{i % 5}_{label}_{i}.png")
    return root


def tiny_config_overrides(source: Path, **extra) -> list[str]:
    """--set overrides for a seconds-long tinycnn run at 32 px."""
    values = {
        "data.source": str(source), "data.image_size": 32, "model.backbone": "tinycnn", "model.weights": "none",
        "train.epochs": 2, "train.fine_tune_epochs": 1, "train.batch_size": 8, "train.verbose": 0,
        "train.workers": 1, "seed": 1,
    }
    values.update(extra)
    return [f"{k}={v}" for k, v in values.items()]
