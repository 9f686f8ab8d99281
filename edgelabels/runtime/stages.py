"""Stages before the model: image -> stage 1 -> stage 2 ... -> the model's preprocessing.

A stage is an image -> image step with its own trained model (a run of another task), e.g.
`keep-lungs`: a lung U-Net's probability -> keep only the (dilated) lungs, or `crop-box`: a detector's
most confident box of one label -> the image cut to it (turned upright by a second label's box), or
None when the detector finds no such box: then the chain stops and the image gets no answer (Rekognition's
empty CustomLabels; evaluation sends it to a human). A `Chain` is what a run
with `stages:` (or `segment:`) reads its images through in training (each stage's model output
computed once per image and cached on disk, not per epoch), evaluation, export's parity checks and
the edge Predictor. Export writes each stage's model as its own export folder and checks the whole
chain (export/driver.py); nothing here knows more than one stage kind at a time: a kind is one
class plus an entry in tasks.STAGES.

Stage interface (duck-typed): `kind`, `source`, `cache` (`.get(key)` is None until computed),
`finds_nothing(key)`, `describe()` (options saved in stages.json), `apply(images, keys)` -> images, None where the stage found
nothing (keys: cache keys or None for the uncached edge path).
numpy + Pillow (+ onnxruntime for exported models; Keras only when a stage's model is a run).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from edgelabels import atomic
from edgelabels.artifacts import ExportDir, RunDir
from edgelabels.config import CropConfig, MaskingConfig
from edgelabels.data.images import read_image
from edgelabels.errors import UserError
from edgelabels.runtime.detector import Detector
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

    def finds_nothing(self, key: str) -> bool:
        return False  # lungs or not, the image goes on

    def _keep(self, image: Image.Image, probability: np.ndarray) -> Image.Image:
        m = self.masking
        kept = keep_lungs(np.asarray(image), at_image_size(probability, image.size), threshold=m.threshold,
                          dilate_fraction=m.dilate, crop=m.crop, fill=m.fill)
        return Image.fromarray(kept)


class GeometryCache:
    """key -> a crop stage's geometry (a dict; {"affine": None} when nothing was found), in memory and (with a
    folder) as small JSON files on disk."""

    def __init__(self, folder: str | Path | None = None):
        self.folder = Path(folder) if folder else None
        self.memory: dict[str, dict] = {}
        self.lock = threading.Lock()

    def get(self, key: str) -> dict | None:
        if key in self.memory:
            return self.memory[key]
        if self.folder is not None and (self.folder / f"{key}.json").is_file():
            geometry = json.loads((self.folder / f"{key}.json").read_text())
            with self.lock:
                self.memory[key] = geometry
            return geometry
        return None

    def put(self, key: str, geometry: dict) -> None:
        with self.lock:
            self.memory[key] = geometry
        if self.folder is not None:
            atomic.write_json(self.folder / f"{key}.json", geometry)


def _boxes(labels: list[dict], name: str) -> list[tuple[float, float, float, float]]:
    """The boxes of label `name` in a CustomLabels list (sorted by confidence), as ratios, most confident first."""
    return [(b["Left"], b["Top"], b["Width"], b["Height"])
            for b in (found["Geometry"]["BoundingBox"] for found in labels if found["Name"] == name)]


def _within(value: float, bounds) -> bool:
    return bounds is None or bounds[0] <= value <= bounds[1]


def could_be(box, toward, image_size: tuple[int, int], crop: CropConfig) -> bool:
    """Whether `box` (ratios) can be what crop.label names: its height / width in pixels within crop.aspect and,
    when crop.orient_by's box `toward` is found, its size and its centre's distance from that box's centre, both in
    units of that box's size (the square root of its area), within crop.relative_size and crop.relative_distance.
    A window turned 90 degrees, or a spot on a sheet of paper far from the well, is no window."""
    width, height = image_size
    w, h = box[2] * width, box[3] * height
    if w <= 0 or h <= 0 or not _within(h / w, crop.aspect):
        return False
    if toward is None:
        return True
    unit = math.sqrt(max(toward[2] * width * toward[3] * height, 1e-12))
    distance = math.hypot((box[0] + box[2] / 2 - toward[0] - toward[2] / 2) * width,
                          (box[1] + box[3] / 2 - toward[1] - toward[3] / 2) * height)
    return _within(math.sqrt(w * h) / unit, crop.relative_size) and _within(distance / unit, crop.relative_distance)


def plausible_box(boxes, references, image_size: tuple[int, int], crop: CropConfig):
    """(box, reference): the most confident of `boxes` that could be crop.label, with the most confident of
    `references` (crop.orient_by's boxes) it could lie beside; (None, the most confident reference) when none can.
    Pairing rather than taking the most confident reference: a coin on the table detected as a well above the real
    one neither refuses the real window (4 of the demo's 1,000 fresh photos lost theirs that way) nor turns its
    crop. With no reference found at all, the box's own shape decides."""
    for box in boxes:
        if not references:
            if could_be(box, None, image_size, crop):
                return box, None
            continue
        toward = next((t for t in references if could_be(box, t, image_size, crop)), None)
        if toward is not None:
            return box, toward
    return None, (references[0] if references else None)


def crop_affine(box, image_size: tuple[int, int], crop: CropConfig, toward=None) -> list[float]:
    """PIL AFFINE coefficients (a, b, c, d, e, f: output (x, y) -> input (a x + b y + c, d x + e y + f)) cutting
    `box` (ratios of the image: left, top, width, height) plus crop.margin on each side out of an image of PIL
    size (width, height), resampled to crop.size.

    `toward` (a second box's ratios, e.g. the sample well) turns the crop so that that box's centre lies straight
    below the crop's centre: a cassette turned 25 degrees or upside down comes out upright, T (the line nearer the
    well) always the lower one. The box's own sides in that turned frame come from its axis-aligned box: a w0 x h0
    rectangle turned by t spans W = w0 |cos t| + h0 |sin t| by H = w0 |sin t| + h0 |cos t|; solved for w0, h0.
    """
    width, height = image_size
    left, top, w, h = box[0] * width, box[1] * height, box[2] * width, box[3] * height
    cx, cy = left + w / 2, top + h / 2
    down = (0.0, 1.0)
    if toward is not None:
        tx = (toward[0] + toward[2] / 2) * width - cx
        ty = (toward[1] + toward[3] / 2) * height - cy
        length = math.hypot(tx, ty)
        if length > 0:
            down = (tx / length, ty / length)
    c, s = abs(down[1]), abs(down[0])  # |cos t|, |sin t| of the turn t from straight down
    w0, h0 = w, h
    det = c * c - s * s
    if det > 0.25:  # turned less than ~30 degrees from an axis: the inversion is well conditioned
        w0, h0 = (c * w - s * h) / det, (c * h - s * w) / det
        if w0 <= 0 or h0 <= 0:
            w0, h0 = w, h
    if c < s:  # turned nearer 90 degrees: the box's long side lies across the image
        w0, h0 = h0, w0
    right = (down[1], -down[0])  # the crop's x axis: down turned a quarter back
    out_h, out_w = crop.hw
    span_x, span_y = w0 * (1 + 2 * crop.margin), h0 * (1 + 2 * crop.margin)
    a, d = right[0] * span_x / out_w, right[1] * span_x / out_w
    b, e = down[0] * span_y / out_h, down[1] * span_y / out_h
    return [a, b, cx - a * out_w / 2 - b * out_h / 2, d, e, cy - d * out_w / 2 - e * out_h / 2]


class CropBox:
    """The crop-box stage: a detector's most confident box of crop.label (above crop.min_confidence, else that
    label's assumed threshold) that could be one (could_be: its shape, and its size and place beside crop.orient_by's
    box) -> the image cut to it, turned upright by crop.orient_by's box, resampled to crop.size; None when no such
    box of the label is found."""

    kind = "crop-box"

    def __init__(self, detector: Detector, crop: CropConfig, cache_dir: str | Path | None = None):
        missing = [name for name in (crop.label, crop.orient_by) if name and name not in detector.labels]
        if missing:
            raise UserError(f"{detector.dir}: crop label {missing[0]!r} is not one of the detector's labels "
                            f"{detector.labels}")
        self.detector = detector
        self.crop = crop
        self.cache = GeometryCache(cache_dir)

    @classmethod
    def load(cls, model_dir, options: dict, cache_dir=None, threads: int | None = None) -> "CropBox":
        """A detection export folder, or a detection run directory with its export (RUN/export): the crops are
        the exported detector's in training as at the edge, with its validation-chosen thresholds."""
        model_dir = Path(model_dir)
        crop = CropConfig.from_json(options.get("crop", {}), where=str(model_dir))
        if not ExportDir(model_dir).is_export() and RunDir(model_dir).is_run():
            if not ExportDir(model_dir / RunDir.EXPORT).is_export():
                raise UserError(f"{model_dir}: a crop-box stage needs the detector exported (its thresholds are "
                                f"chosen there): run `edgelabels export {model_dir}` first")
            model_dir = model_dir / RunDir.EXPORT
        return cls(Detector(model_dir, precision="fp32", threads=threads), crop, cache_dir)

    @property
    def export_dir(self) -> Path:
        """The detector's export folder: a classifier's export ships this very folder as its stage."""
        return Path(self.detector.dir)

    def describe(self) -> dict:
        return {"kind": self.kind, "crop": self.crop.to_json()}

    @property
    def source(self) -> str:
        return str(self.detector.model_path)

    def finds_nothing(self, key: str) -> bool:
        """True when the cached boxes of `key` hold no box of the label (False when not computed yet)."""
        geometry = self.cache.get(key)
        return geometry is not None and geometry["affine"] is None

    def geometry(self, rows: np.ndarray, image_size: tuple[int, int]) -> dict:
        """One image's detections (K, 6) -> {"affine": coefficients or None, "box", "toward"}."""
        bar = None if self.crop.min_confidence is None else self.crop.min_confidence * 100
        found = self.detector.custom_labels(rows, min_confidence=bar)
        references = _boxes(found, self.crop.orient_by) if self.crop.orient_by else []
        box, toward = plausible_box(_boxes(found, self.crop.label), references, image_size, self.crop)
        affine = None if box is None else crop_affine(box, image_size, self.crop, toward)
        return {"affine": affine, "box": box, "toward": toward}

    def apply(self, images: list, keys: list | None = None) -> list:
        """PIL images -> crops (None where no box of the label was found). With keys, boxes are cached by key."""
        keys = keys or [None] * len(images)
        found = [self.cache.get(key) if key is not None else None for key in keys]
        todo = [i for i, geometry in enumerate(found) if geometry is None]
        if todo:
            rows = self.detector.detections([images[i] for i in todo], batch_size=16)
            for i, image_rows in zip(todo, rows):
                found[i] = self.geometry(image_rows, images[i].size)
                if keys[i] is not None:
                    self.cache.put(keys[i], found[i])
        return [None if g["affine"] is None else self.cut(image, g["affine"]) for image, g in zip(images, found)]

    def cut(self, image: Image.Image, affine: list[float]) -> Image.Image:
        out_h, out_w = self.crop.hw
        return image.transform((out_w, out_h), Image.Transform.AFFINE, tuple(affine),
                               resample=Image.Resampling.BILINEAR)


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

    def image(self, image: Image.Image) -> Image.Image | None:
        """A decoded image through every stage, uncached (the edge path); None when a stage found nothing."""
        for stage in self.stages:
            if image is None:
                return None
            image = stage.apply([image])[0]
        return image

    def __call__(self, path) -> Image.Image | None:
        """A file through every stage, each stage's model output cached by the file's identity; None when a stage
        found nothing."""
        image = read_image(path)[0]
        key = [cache_key(path)]
        for stage in self.stages:
            if image is None:
                return None
            image = stage.apply([image], key)[0]
        return image

    def missing(self, paths) -> list[str]:
        """The paths (precomputed) in which a stage found nothing: they get no answer."""
        return [str(p) for p in paths if any(stage.finds_nothing(cache_key(p)) for stage in self.stages)]

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
                images, keys = [read_image(p)[0] for p, _ in chunk], [k for _, k in chunk]
                for stage in self.stages:
                    kept = [i for i, image in enumerate(images) if image is not None]
                    if not kept:
                        break
                    for i, image in zip(kept, stage.apply([images[i] for i in kept], [keys[i] for i in kept])):
                        images[i] = image
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
        described = {"kind": stage.kind, "masking": stage.masking.to_json(), "crop": stage.crop.to_json()}
        stages.append(_load_stage(described, Path(stage.run), run.stage_cache(i) if run else None, threads))
    return Chain(stages)
