"""A trained U-Net applied to images: lung probability maps, from an export (ONNX) or a run (Keras).

The ONNX path needs only numpy, Pillow and onnxruntime, so the edge Predictor can chain a U-Net in front
of its classifier; a run directory loads Keras (imported only then). Images go through the one
preprocessing implementation (data.preprocess) with the U-Net's own preprocess.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from edgelabels.data.images import read_image
from edgelabels.data.preprocess import PreprocessSpec, normalise, to_pixels
from edgelabels.errors import UserError


class Segmenter:
    """image -> lung probability (U-Net resolution, or the image's own size with `at_image_size`)."""

    def __init__(self, spec: PreprocessSpec, run_batch, source: str):
        self.spec = spec
        self.run_batch = run_batch  # float32 (N, H, W, C) -> (N, H, W, 1)
        self.source = source

    @classmethod
    def load(cls, model_dir: str | Path, threads: int | None = None) -> "Segmenter":
        """A U-Net export folder (model.onnx) or segmentation run directory (model.keras)."""
        from edgelabels.train.run import task_of

        model_dir = Path(model_dir)
        spec_path = model_dir / "preprocess.json"
        if (model_dir / "model.onnx").is_file() and spec_path.is_file():
            task = task_of(model_dir)
            if task not in (None, "segmentation"):
                raise UserError(f"{model_dir}: an export of a {task} run, not of a U-Net (task: segmentation)")
            return cls(_read_spec(spec_path), _onnx_runner(model_dir / "model.onnx", threads),
                       str(model_dir / "model.onnx"))
        if (model_dir / "model.keras").is_file() and spec_path.is_file():
            task = task_of(model_dir) or "classification"
            if task != "segmentation":
                raise UserError(f"{model_dir}: a {task} run, not a U-Net (task: segmentation)")
            return cls(_read_spec(spec_path), _keras_runner(model_dir / "model.keras"), str(model_dir / "model.keras"))
        raise UserError(f"{model_dir}: not a U-Net run or export (expected model.keras or model.onnx "
                        "with preprocess.json)")

    def prepare(self, image: Image.Image) -> np.ndarray:
        return normalise(to_pixels(image, self.spec), self.spec)

    def probabilities(self, images, batch_size: int = 16) -> np.ndarray:
        """(N, H, W) float32 lung probabilities at the U-Net's resolution for PIL images."""
        images = list(images)
        out = np.zeros((len(images), self.spec.height, self.spec.width), np.float32)
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size]
            result = np.asarray(self.run_batch(np.stack([self.prepare(image) for image in chunk])), np.float32)
            if result.ndim != 4 or result.shape[1:] != (self.spec.height, self.spec.width, 1):
                raise UserError(f"{self.source}: output {result.shape[1:]} is not a one-channel mask of the "
                                f"input size {(self.spec.height, self.spec.width)} (is this a U-Net?)")
            out[start:start + len(chunk)] = result[..., 0]
        return out

    def path_probabilities(self, paths, batch_size: int = 16) -> np.ndarray:
        return self.probabilities((read_image(p)[0] for p in paths), batch_size)


def at_image_size(probability: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A (h, w) probability map resized (bilinear) to an image's PIL size (width, height) -> (height, width)."""
    probability = np.asarray(probability, np.float32)
    if probability.shape == (size[1], size[0]):
        return probability
    return np.asarray(Image.fromarray(probability, mode="F").resize(size, Image.Resampling.BILINEAR))


def _read_spec(path: Path) -> PreprocessSpec:
    try:
        return PreprocessSpec.from_json(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as exc:
        raise UserError(f"{path}: not a valid preprocess.json ({exc})") from None


def _onnx_runner(path: Path, threads: int | None):
    from edgelabels.export.onnx_export import onnx_session

    session = onnx_session(path, threads)
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: np.ascontiguousarray(x, np.float32)})[0]


def _keras_runner(path: Path):
    from edgelabels.train.run import load_keras_model

    import keras

    model = load_keras_model(path)
    return lambda x: keras.ops.convert_to_numpy(model(x, training=False))
