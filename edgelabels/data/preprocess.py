"""The one preprocessing implementation: resize, colour, normalisation (numpy + Pillow only).

The training loader and the edge Predictor both call `to_pixels` then `normalise`, and export
writes the spec as `preprocess.json`, so the two can never drift. Augmentation (training only)
happens on the uint8 pixels between the two steps.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from PIL import Image

from edgelabels.errors import UserError

_RESAMPLING = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
    "area": Image.Resampling.BOX,
}


@dataclass(frozen=True)
class PreprocessSpec:
    """Everything needed to turn a decoded image into the model's input tensor."""

    height: int
    width: int
    grayscale: bool = False  # read as one channel (repeated to `channels` if the model wants 3)
    channels: int = 3  # channels the model takes
    resize: str = "bilinear"
    channel_order: str = "RGB"  # "BGR" for caffe-style backbones (VGG16, ResNet50)
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)  # subtracted, in 0-255 units, after reordering
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    # Tiling (runtime/tiles.py): None answers the whole image stretched to height x width; a number s scales the
    # image by s (1.0: native pixels) and cuts it into height x width tiles, neighbours sharing tile_overlap of
    # a tile. An old preprocess.json without these keys is untiled.
    tile_scale: float | None = None
    tile_overlap: float = 0.25

    def __post_init__(self):
        if self.resize not in _RESAMPLING:
            raise UserError(f"preprocess: unknown resize method {self.resize!r} (choose from {sorted(_RESAMPLING)})")
        if self.channels not in (1, 3):
            raise UserError(f"preprocess: channels must be 1 or 3, not {self.channels}")
        if self.channel_order not in ("RGB", "BGR"):
            raise UserError(f"preprocess: channel_order must be RGB or BGR, not {self.channel_order!r}")
        if self.tile_scale is not None and not (isinstance(self.tile_scale, (int, float)) and self.tile_scale > 0):
            raise UserError(f"preprocess: tile_scale must be a number above 0 or null, not {self.tile_scale!r}")
        if not 0 <= self.tile_overlap < 1:
            raise UserError(f"preprocess: tile_overlap must be in [0, 1), not {self.tile_overlap!r}")

    @property
    def size(self) -> tuple[int, int]:
        return (self.height, self.width)

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        d["version"] = 1
        return d

    @classmethod
    def from_json(cls, d: dict) -> "PreprocessSpec":
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - fields - {"version"}
        if unknown:
            raise UserError(f"preprocess.json: unknown keys {sorted(unknown)}")
        kwargs = {k: v for k, v in d.items() if k in fields}
        for key in ("mean", "std"):
            if key in kwargs:
                kwargs[key] = tuple(float(x) for x in kwargs[key])
        return cls(**kwargs)


def to_pixels(image: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """Resize and convert colour: uint8 array (height, width, channels) in RGB order."""
    mode = "L" if spec.grayscale or spec.channels == 1 else "RGB"
    # (convert to the mode an image already has is a copy of it: 0.8 ms for a 640x480 photo, a fifth of the
    # time predict spends on one; hence the mode checks)
    if image.mode not in ("L", mode):  # a grey image copied to RGB resizes to the same pixels: resize it first
        image = image.convert(mode)
    if image.size != (spec.width, spec.height):
        image = image.resize((spec.width, spec.height), _RESAMPLING[spec.resize])
    if image.mode != mode:
        image = image.convert(mode)
    pixels = np.asarray(image, dtype=np.uint8)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.shape[2] != spec.channels:
        pixels = np.repeat(pixels, spec.channels, axis=2)
    return pixels


def normalise(pixels: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """uint8 pixels (..., H, W, C) -> float32 model input, per the spec's order, mean and std."""
    x = pixels.astype(np.float32)
    if spec.channel_order == "BGR" and x.shape[-1] == 3:
        x = x[..., ::-1]
    mean = np.asarray(spec.mean[: x.shape[-1]], dtype=np.float32)
    std = np.asarray(spec.std[: x.shape[-1]], dtype=np.float32)
    return (x - mean) / std


def preprocess(image: Image.Image, spec: PreprocessSpec) -> np.ndarray:
    """A decoded image -> float32 (H, W, C) model input."""
    return normalise(to_pixels(image, spec), spec)
