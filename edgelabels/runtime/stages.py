"""The two-stage chain: image -> U-Net lung probability -> keep only the (dilated) lungs -> the classifier.

`LungReader` is what a classification run with `segment: RUN_DIR` reads its images through, in
training (probabilities computed once per image and cached on disk, not per epoch), evaluation,
export parity checks and the edge Predictor. numpy + Pillow (+ onnxruntime for an exported U-Net).

Files that describe a chain:
  RUN/segment.json          {"run": U-Net run directory, "masking": {...}} (training and Keras evaluation)
  RUN/segment-cache/        the U-Net's probabilities per image, uint8 PNG at the U-Net's resolution
  RUN/export/segment.json   {"model": "segment", "masking": {...}}; RUN/export/segment/ is the U-Net export
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from edgelabels import atomic
from edgelabels.data.images import read_image
from edgelabels.errors import UserError
from edgelabels.runtime.masking import keep_lungs
from edgelabels.runtime.segmenter import Segmenter, at_image_size

CHAIN_FILE = "segment.json"
CACHE_DIR = "segment-cache"


@dataclass(frozen=True)
class Masking:
    threshold: float = 0.5
    dilate: float = 0.02
    crop: bool = False
    fill: int = 0

    @classmethod
    def from_json(cls, d: dict) -> "Masking":
        return cls(float(d["threshold"]), float(d["dilate"]), bool(d["crop"]), int(d["fill"]))

    def to_json(self) -> dict:
        return asdict(self)


def keep_lungs_image(image: Image.Image, probability: np.ndarray, masking: Masking) -> Image.Image:
    """The image with everything outside the lungs blanked (and cropped to them, if asked)."""
    pixels = np.asarray(image)
    kept = keep_lungs(pixels, at_image_size(probability, image.size), threshold=masking.threshold,
                      dilate_fraction=masking.dilate, crop=masking.crop, fill=masking.fill)
    return Image.fromarray(kept)


def quantise(probability: np.ndarray) -> np.ndarray:
    """uint8 probability (1/255 steps), as cached on disk; the edge path rounds the same way, so training
    and the Predictor blank exactly the same pixels."""
    return np.clip(np.rint(np.asarray(probability) * 255), 0, 255).astype(np.uint8)


class LungReader:
    """path -> image keeping only the lungs. Probabilities are cached in memory and, with cache_dir, on disk."""

    def __init__(self, segmenter: Segmenter, masking: Masking, cache_dir: str | Path | None = None):
        self.segmenter = segmenter
        self.masking = masking
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.memory: dict[str, np.ndarray] = {}
        self.lock = threading.Lock()

    def image(self, image: Image.Image) -> Image.Image:
        """A decoded image through the U-Net and the masking step (no caching: the edge path)."""
        probability = quantise(self.segmenter.probabilities([image])[0]).astype(np.float32) / 255.0
        return keep_lungs_image(image, probability, self.masking)

    def __call__(self, path) -> Image.Image:
        image, _ = read_image(path)
        probability = self._cached(path)
        if probability is None:
            probability = self._store(path, self.segmenter.probabilities([image])[0])
        return keep_lungs_image(image, probability, self.masking)

    def precompute(self, paths, batch_size: int = 16, progress: bool = True) -> int:
        """Run the U-Net once over every image not cached yet. Returns how many were computed."""
        from tqdm import tqdm

        todo = [p for p in dict.fromkeys(str(p) for p in paths) if self._cached(p) is None]
        with tqdm(total=len(todo), unit="img", desc="lung masks", disable=not progress or not todo) as bar:
            for start in range(0, len(todo), batch_size):
                chunk = todo[start:start + batch_size]
                for path, probability in zip(chunk, self.segmenter.path_probabilities(chunk, batch_size)):
                    self._store(path, probability)
                bar.update(len(chunk))
        return len(todo)

    def _key(self, path) -> str:
        stat = Path(path).stat()
        text = f"{Path(path).resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        return hashlib.sha1(text.encode()).hexdigest()[:20]

    def _cached(self, path) -> np.ndarray | None:
        key = self._key(path)
        if key in self.memory:
            return self.memory[key]
        if self.cache_dir is not None and (self.cache_dir / f"{key}.png").is_file():
            with Image.open(self.cache_dir / f"{key}.png") as stored:
                probability = np.asarray(stored, np.float32) / 255.0
            with self.lock:
                self.memory[key] = probability
            return probability
        return None

    def _store(self, path, probability: np.ndarray) -> np.ndarray:
        quantised = quantise(probability)
        probability = quantised.astype(np.float32) / 255.0
        key = self._key(path)
        with self.lock:
            self.memory[key] = probability
        if self.cache_dir is not None:
            buffer = io.BytesIO()
            Image.fromarray(quantised).save(buffer, "PNG")
            atomic.write_bytes(self.cache_dir / f"{key}.png", buffer.getvalue())
        return probability


def run_chain(run_dir: str | Path, threads: int | None = None) -> LungReader | None:
    """The LungReader of a classification run trained with `segment:`, or None for a plain run."""
    run_dir = Path(run_dir)
    path = run_dir / CHAIN_FILE
    if not path.is_file():
        return None
    described = _read(path)
    unet = Path(described.get("run", ""))
    if not unet.is_dir():
        raise UserError(f"{path}: its U-Net run {unet} is missing (the chain needs it)")
    return LungReader(Segmenter.load(unet, threads), Masking.from_json(described["masking"]),
                      cache_dir=run_dir / CACHE_DIR)


def export_chain(model_dir: str | Path, threads: int | None = None) -> LungReader | None:
    """The LungReader of an exported chained model (RUN/export/ with segment.json), or None."""
    model_dir = Path(model_dir)
    path = model_dir / CHAIN_FILE
    if not path.is_file():
        return None
    described = _read(path)
    return LungReader(Segmenter.load(model_dir / described.get("model", "segment"), threads),
                      Masking.from_json(described["masking"]))


def _read(path: Path) -> dict:
    try:
        described = json.loads(path.read_text())
        Masking.from_json(described["masking"])
        return described
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path}: not a valid chain description ({exc})") from None
