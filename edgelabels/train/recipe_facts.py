"""What the recipe knows before it chooses: the facts of a source (`Facts`) and a measured throughput.

train/recipe.py's `read_facts` calls the task's reader (one of `read_boxes`, `read_labelled`, `read_masks`, named by
its RecipeHooks), then counts the split and tells grey from colour the same way for every task. Images are opened
only for their headers, except a sample of GREY_SAMPLE decoded to tell grey from colour. `measure` times a few
training steps of the task's model on this machine.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgelabels.config import Config

GREY_SAMPLE, SIZE_SAMPLE = 16, 200
GREY_TOLERANCE = 8  # largest channel difference (0-255) still grey: JPEG's chroma noise on a grey film


@dataclass(frozen=True)
class Facts:
    """What the recipe knows about the source; read_facts fills it, tests build it by hand."""

    task: str
    task_reason: str
    train_images: int
    val_images: int
    image_sizes: tuple  # (width, height) of every image (detection) or of a sample
    label_counts: dict  # images per label (classification, multilabel), boxes per label (detection)
    grey: bool
    grey_reason: str
    # detection: (box width, box height, image width, image height) in pixels of the image as displayed
    boxes: tuple = ()
    box_labels: tuple = ()  # detection: each box's label, in the order of boxes
    imagenet_on_disk: dict = field(default_factory=dict)  # backbone name -> its ImageNet file exists here

    def summary(self) -> dict:
        sides = np.array(self.image_sizes, dtype=float).reshape(-1, 2)
        out = {"task": self.task, "train_images": self.train_images, "val_images": self.val_images,
               "median_image": [int(np.median(sides[:, 0])), int(np.median(sides[:, 1]))] if len(sides) else None,
               "labels": dict(self.label_counts), "grey": self.grey}
        if self.boxes:
            short = np.min(np.array(self.boxes)[:, :2], axis=1)
            out["box_short_side_px"] = {f"p{q}": round(float(np.percentile(short, q)), 1) for q in (10, 50, 90)}
        return out


# ---------------------------------------------------------------- each task's reader: (dataset, its Facts fields)


def read_labelled(config: Config) -> tuple[object, dict]:
    """A folder per label or a manifest: images per label, and the sizes of a sample."""
    from edgelabels.data.sources import load_dataset

    d = config.data
    dataset = load_dataset(d.source or None, manifest=d.manifest, s3_root=d.s3_root, group_by=d.group_by)
    return dataset, {"image_sizes": tuple(_sample_sizes(dataset.samples)), "label_counts": dataset.label_counts}


def read_masks(config: Config) -> tuple[object, dict]:
    """images/ with masks/ beside them: the pairs, and the sizes of a sample."""
    from edgelabels.data.masks import load_mask_pairs

    dataset = load_mask_pairs(config.data.source, group_by=config.data.group_by)
    return dataset, {"image_sizes": tuple(_sample_sizes(dataset.samples)), "label_counts": dataset.label_counts}


def read_boxes(config: Config) -> tuple[object, dict]:
    """A detection source: every box of the training and validation images, in pixels, with its image's size."""
    from edgelabels.data.detection import read_detection_source
    from edgelabels.data.boxes import displayed_size

    d = config.data
    source = d.manifest or d.source
    dataset, _ = read_detection_source(source, class_names=d.class_names, s3_root=d.s3_root,
                                       group_by=d.group_by, root=d.source if d.manifest else None)
    given = getattr(dataset, "given_split", None) or {}
    # A source's own test images are not looked at: the choices would be tuned on them.
    seen = [*given.get("train", []), *given.get("val", [])] or dataset.samples
    sizes = [displayed_size(s.path) for s in seen]
    boxes = tuple((b.width, b.height, w, h) for s, (w, h) in zip(seen, sizes) for b in s.boxes)
    box_labels = tuple(b.label for s in seen for b in s.boxes)
    counts: dict = {}
    for b in (b for s in seen for b in s.boxes):
        counts[b.label] = counts.get(b.label, 0) + 1
    return dataset, {"image_sizes": tuple(sizes), "label_counts": counts, "boxes": boxes, "box_labels": box_labels}


# ---------------------------------------------------------------- what every task's facts hold besides


def split_counts(config: Config, dataset) -> tuple[int, int]:
    """(training, validation) images the split will give: the source's own, else the configured fractions."""
    given = getattr(dataset, "given_split", None)
    d = config.data
    if given and given.get("train"):
        train = len(given["train"])
        if given.get("val"):
            return train, len(given["val"])
        return round(train * (1 - d.val_fraction)), max(1, round(train * d.val_fraction))
    rest = len(dataset.samples) * (1 - (0 if d.test_source else d.test_fraction))
    return max(1, round(rest * (1 - d.val_fraction))), max(1, round(rest * d.val_fraction))


def _evenly(items: list, n: int) -> list:
    if len(items) <= n:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, n).astype(int)]


def _sample_sizes(samples) -> list[tuple[int, int]]:
    from edgelabels.data.boxes import displayed_size

    return [displayed_size(s.path) for s in _evenly(list(samples), SIZE_SAMPLE)]


def greyness(paths: list) -> tuple[bool, str]:
    """(grey, reason): grey when every sampled image has one channel or equal channels (within GREY_TOLERANCE)."""
    from edgelabels.data.images import ImageProblem, read_image

    sample = _evenly(list(paths), GREY_SAMPLE)
    colour = []
    for path in sample:
        try:
            image, _ = read_image(path)
        except ImageProblem:
            continue
        if image.mode == "L":
            continue
        image.thumbnail((96, 96))
        pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
        spread = int(np.max(np.max(pixels, axis=2) - np.min(pixels, axis=2)))
        if spread > GREY_TOLERANCE:
            colour.append(Path(path).name)
    if colour:
        return False, (f"false: {len(colour)} of {len(sample)} sampled images are in colour (e.g. {colour[0]})")
    return True, (f"true: all {len(sample)} sampled images are grey (one channel, or three equal within "
                  f"{GREY_TOLERANCE}/255): read as one channel")


def imagenet_on_disk() -> dict:
    """backbone name -> its ImageNet weights file is in Keras' folder here (never downloaded during training)."""
    from edgelabels.models.backbones import BACKBONES, keras_home

    return {name: bool(spec.imagenet_file) and (keras_home() / "models" / spec.imagenet_file).is_file()
            for name, spec in BACKBONES.items()}


# ---------------------------------------------------------------- measured throughput


def measure(config: Config, facts: Facts, backbone: str, stride: int, batch: int, side: int, steps: int = 4) -> dict:
    """Training pixels per second of the task's model on `backbone` here: a few train_on_batch steps on random
    data at a side x side input (the first step, which traces the graph, is not timed)."""
    import keras

    from edgelabels.tasks import get_task

    task = facts.task
    probe = dataclasses.replace(
        config, task=task, data=dataclasses.replace(config.data, image_size=[side, side]),
        model=dataclasses.replace(config.model, backbone=backbone, weights="none", stride=stride))
    began = time.perf_counter()
    model = get_task(task).piece("model")(probe, max(1, len(facts.label_counts)), None)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    rng = np.random.default_rng(0)
    x = rng.random((batch, side, side, 3), dtype=np.float32)
    # Zero targets of each output's shape, mean squared error: the loss is a sliver of a step's cost.
    outputs = model.output
    y = {name: np.zeros((batch, *t.shape[1:]), np.float32) for name, t in outputs.items()} \
        if isinstance(outputs, dict) else np.zeros((batch, *outputs.shape[1:]), np.float32)
    model.train_on_batch(x, y)
    times = []
    while len(times) < steps or (sum(times) < 2.0 and len(times) < 4 * steps):
        started = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - started)
    step_s = float(np.median(times))  # the median: a step slowed by another process on the machine is not the rule
    return {"backbone": backbone, "input": [side, side], "batch": batch, "steps": len(times),
            "step_s": round(step_s, 4), "pixels_per_s": round(batch * side * side / step_s, 1),
            "backend": keras.backend.backend(), "seconds": round(time.perf_counter() - began, 2)}
