"""Stages before the model: image -> stage 1 -> stage 2 ... -> the model's preprocessing.

A stage is an image -> image step with its own trained model (a run of another task), e.g.
`keep-lungs`: a lung U-Net's probability -> keep only the (dilated) lungs. A `Chain` is what a run
with `stages:` (or `segment:`) reads its images through in training (each stage's model output
computed once per image and cached on disk, not per epoch), evaluation, export's parity checks and
the edge Predictor. Export writes each stage's model as its own export folder and checks the whole
chain (export/export_run.py); nothing here knows more than one stage kind at a time, so the next
kind (crop to a detected box) is one class plus an entry in tasks.STAGES.

Stage interface (duck-typed): `kind`, `describe()` (options saved in stages.json),
`apply(images, keys)` -> images (keys: cache keys or None for the uncached edge path).
numpy + Pillow (+ onnxruntime for exported models; Keras only when a stage's model is a run).
"""

from __future__ import annotations

import hashlib
import io
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from edgelabels import atomic
from edgelabels.artifacts import ExportDir, RunDir
from edgelabels.config import MaskingConfig
from edgelabels.data.images import read_image
from edgelabels.errors import UserError
from edgelabels.runtime.masking import keep_lungs
from edgelabels.runtime.segmenter import Segmenter, at_image_size
from edgelabels.tasks import get_stage_kind


def cache_key(path) -> str:
    """An image file's identity for stage caches: resolved path, size and modification time."""
    stat = Path(path).stat()
    return hashlib.sha1(f"{Path(path).resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:20]


def quantise(probability: np.ndarray) -> np.ndarray:
    """uint8 probability (1/255 steps), as cached on disk; the edge path rounds the same way, so training
    and the Predictor blank exactly the same pixels."""
    return np.clip(np.rint(np.asarray(probability) * 255), 0, 255).astype(np.uint8)


class ProbabilityCache:
    """key -> a stage model's (H, W) probability map, in memory and (with a folder) as uint8 PNGs on disk."""

    def __init__(self, folder: str | Path | None = None):
        self.folder = Path(folder) if folder else None
        self.memory: dict[str, np.ndarray] = {}
        self.lock = threading.Lock()

    def get(self, key: str) -> np.ndarray | None:
        if key in self.memory:
            return self.memory[key]
        if self.folder is not None and (self.folder / f"{key}.png").is_file():
            with Image.open(self.folder / f"{key}.png") as stored:
                probability = np.asarray(stored, np.float32) / 255.0
            with self.lock:
                self.memory[key] = probability
            return probability
        return None

    def put(self, key: str, quantised: np.ndarray) -> None:
        with self.lock:
            self.memory[key] = quantised.astype(np.float32) / 255.0
        if self.folder is not None:
            buffer = io.BytesIO()
            Image.fromarray(quantised).save(buffer, "PNG")
            atomic.write_bytes(self.folder / f"{key}.png", buffer.getvalue())


class KeepLungs:
    """The keep-lungs stage: U-Net lung probability -> everything outside the dilated lungs blanked (or cropped)."""

    kind = "keep-lungs"

    def __init__(self, segmenter: Segmenter, masking: MaskingConfig, cache_dir: str | Path | None = None):
        self.segmenter = segmenter
        self.masking = masking
        self.cache = ProbabilityCache(cache_dir)

    @classmethod
    def load(cls, model_dir, options: dict, cache_dir=None, threads: int | None = None) -> "KeepLungs":
        masking = MaskingConfig.from_json(options.get("masking", {}), where=str(model_dir))
        return cls(Segmenter.load(model_dir, threads), masking, cache_dir)

    def describe(self) -> dict:
        return {"kind": self.kind, "masking": self.masking.to_json()}

    @property
    def source(self) -> str:
        return self.segmenter.source

    def apply(self, images: list, keys: list | None = None) -> list:
        """PIL images -> the same images keeping only the lungs. With keys, U-Net outputs are cached by key."""
        keys = keys or [None] * len(images)
        found = [self.cache.get(key) if key is not None else None for key in keys]
        todo = [i for i, probability in enumerate(found) if probability is None]
        if todo:
            for i, probability in zip(todo, self.segmenter.probabilities([images[i] for i in todo])):
                quantised = quantise(probability)
                found[i] = quantised.astype(np.float32) / 255.0
                if keys[i] is not None:
                    self.cache.put(keys[i], quantised)
        return [self._keep(image, probability) for image, probability in zip(images, found)]

    def _keep(self, image: Image.Image, probability: np.ndarray) -> Image.Image:
        m = self.masking
        kept = keep_lungs(np.asarray(image), at_image_size(probability, image.size), threshold=m.threshold,
                          dilate_fraction=m.dilate, crop=m.crop, fill=m.fill)
        return Image.fromarray(kept)


class Chain:
    """The stages of a model, in order; an empty chain reads images as they are."""

    def __init__(self, stages: list):
        self.stages = list(stages)

    def __bool__(self) -> bool:
        return bool(self.stages)

    def __len__(self) -> int:
        return len(self.stages)

    def describe(self) -> str:
        return " -> ".join(f"{stage.kind} ({stage.source})" for stage in self.stages)

    def image(self, image: Image.Image) -> Image.Image:
        """A decoded image through every stage, uncached (the edge path)."""
        for stage in self.stages:
            image = stage.apply([image])[0]
        return image

    def __call__(self, path) -> Image.Image:
        """A file through every stage, each stage's model output cached by the file's identity."""
        image = read_image(path)[0]
        key = [cache_key(path)]
        for stage in self.stages:
            image = stage.apply([image], key)[0]
        return image

    def precompute(self, paths, batch_size: int = 16, progress: bool = True) -> int:
        """Run every stage's model once over the images not cached yet. Returns how many were computed."""
        from tqdm import tqdm

        if not self.stages:
            return 0
        paths = list(dict.fromkeys(str(p) for p in paths))
        keys = [cache_key(p) for p in paths]
        todo = [(p, k) for p, k in zip(paths, keys)
                if any(stage.cache.get(k) is None for stage in self.stages)]
        with tqdm(total=len(todo), unit="img", desc="stages", disable=not progress or not todo) as bar:
            for start in range(0, len(todo), batch_size):
                chunk = todo[start:start + batch_size]
                images = [read_image(p)[0] for p, _ in chunk]
                for stage in self.stages:
                    images = stage.apply(images, [k for _, k in chunk])
                bar.update(len(chunk))
        return len(todo)


def _load_stage(described: dict, model_dir, cache_dir, threads) -> object:
    kind = get_stage_kind(described["kind"])
    return kind.piece().load(model_dir, described, cache_dir=cache_dir, threads=threads)


def run_chain(run: RunDir, threads: int | None = None) -> Chain:
    """The chain of a run trained with stages (each stage's model from its own run, Keras), else empty."""
    stages = []
    for described in run.read_stages():
        model_dir = Path(described["run"])
        if not model_dir.is_dir():
            raise UserError(f"{run.dir}: its {described['kind']} stage's run {model_dir} is missing (the chain "
                            "needs it)")
        stages.append(_load_stage(described, model_dir, described["cache"], threads))
    return Chain(stages)


def export_chain(export: ExportDir, threads: int | None = None) -> Chain:
    """The chain of an export (each stage's model its own ONNX export folder inside it), else empty."""
    return Chain([_load_stage(described, described["model"], None, threads) for described in export.read_stages()])


def chain_from_config(config, threads: int | None = None, run: RunDir | None = None) -> Chain:
    """A new run's chain from its config's stages (caches in `run`): loaded before training, so a wrong
    stage run is a clear error now, not mid-epoch."""
    stages = []
    for i, stage in enumerate(config.stage_list()):
        described = {"kind": stage.kind, "masking": stage.masking.to_json()}
        stages.append(_load_stage(described, Path(stage.run), run.stage_cache(i) if run else None, threads))
    return Chain(stages)
