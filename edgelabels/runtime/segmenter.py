"""A trained U-Net applied to images: lung probability maps, from an export (ONNX) or a run (Keras).

The ONNX path needs only numpy, Pillow and onnxruntime, so the edge Predictor can chain a U-Net in front
of its classifier; a run directory loads Keras (imported only then, through models/factory.py). Images go through the one
preprocessing implementation (data.preprocess) with the U-Net's own preprocess.json.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from edgelabels.artifacts import ExportDir, RunDir, open_model_dir
from edgelabels.data.images import read_image
from edgelabels.data.preprocess import PreprocessSpec, normalise, to_pixels
from edgelabels.errors import UserError
from edgelabels.runtime.runner import OnnxModel, predict_images


class Segmenter:
    """image -> lung probability (U-Net resolution, or the image's own size with `at_image_size`)."""

    def __init__(self, spec: PreprocessSpec, run_batch, source: str):
        self.spec = spec
        self.run_batch = run_batch  # float32 (N, H, W, C) -> (N, H, W, 1)
        self.source = source

    @classmethod
    def load(cls, model_dir: str | Path | RunDir | ExportDir, threads: int | None = None) -> "Segmenter":
        """A U-Net export folder (model.onnx) or segmentation run directory (model.keras, loads Keras)."""
        from edgelabels.tasks import get_task

        found = open_model_dir(model_dir)
        if get_task(found.task).edge != f"{Segmenter.__module__}:{Segmenter.__qualname__}":  # another task's model
            what = "an export of a" if isinstance(found, ExportDir) else "a"
            raise UserError(f"{found.dir}: {what} {found.task} run, not a U-Net (task: segmentation)")
        if isinstance(found, ExportDir):
            return cls(found.spec, OnnxModel(found.model_path, threads), str(found.model_path))
        from edgelabels.models.factory import keras_runner, load_model

        return cls(found.spec, keras_runner(load_model(found.model_path)), str(found.model_path))

    def prepare(self, image) -> np.ndarray:
        """A path or PIL image -> the U-Net's float32 input."""
        if not isinstance(image, Image.Image):
            image = read_image(image)[0]
        return normalise(to_pixels(image, self.spec), self.spec)

    def probabilities(self, images, batch_size: int = 16) -> np.ndarray:
        """(N, H, W) float32 lung probabilities at the U-Net's resolution for PIL images or paths."""
        result = predict_images(images, self.prepare, self.run_batch, batch_size=batch_size)
        if result.ndim != 4 or result.shape[1:] != (self.spec.height, self.spec.width, 1):
            raise UserError(f"{self.source}: output {result.shape[1:]} is not a one-channel mask of the "
                            f"input size {(self.spec.height, self.spec.width)} (is this a U-Net?)")
        return result[..., 0]


def at_image_size(probability: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A (h, w) probability map resized (bilinear) to an image's PIL size (width, height) -> (height, width)."""
    probability = np.asarray(probability, np.float32)
    if probability.shape == (size[1], size[0]):
        return probability
    return np.asarray(Image.fromarray(probability, mode="F").resize(size, Image.Resampling.BILINEAR))
