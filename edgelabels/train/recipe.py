"""The recipe: every `auto` key of a config chosen from the data, a time budget and a measured throughput.

`apply_recipe(config, run)` reads the facts of the source (`read_facts`: counts, image and box sizes, grey or
colour), times a few training steps of the model it will choose on this machine (`measure`), then asks `choose`,
a pure function of (config, facts, measured), for every `auto` key with a reason a user can check ("input
288x384: the 10th-percentile box is 10 px ..."). It writes recipe.json, logs each choice on "edgelabels.train"
(train.log) and returns the resolved config, rebuilt through config_from_dict so every normal check runs.
A key the user set is never changed; a choice that depends on it reads it.

How the pieces fit (Rekognition's "select the right algorithms" made explicit):
- detection input: the 10th-percentile box's shorter side (of the label with the smallest boxes) must cover CELLS
  heatmap cells at model.stride, so the image is scaled by CELLS * stride / p10 (never up by more than that,
  never by more than MAX_UPSCALE). A whole-frame input past MAX_INPUT_SIDE, or past the compute cap (the pixels
  per image at which MIN_EPOCHS[task] epochs fit the budget at the measured throughput) where tiles would hold
  under half its pixels, is tiled at that scale instead (an epoch of tiles holds the scaled frames' pixels);
- classification and segmentation input: the largest side (a multiple of 32, at most the images' own) at which
  TARGET_EPOCHS[task] epochs fit the budget;
- the schedule: seconds per epoch from the measured pixels per second -> the epochs that fit BUDGET_SHARE of the
  budget (at most MAX_EPOCHS; under MIN_EPOCHS_FLOOR the budget that would fit them is named), patience, warm-up,
  EMA for small datasets, cosine decay.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgelabels.config import AUTO, Config, auto_keys, config_from_dict, parse_budget

log = logging.getLogger("edgelabels.train")

VERSION = 1
DEFAULT_BUDGET = "30m"
BUDGET_SHARE = 0.8  # of the budget planned for epochs; the rest: reading, caching, saving, the slower first epoch
EPOCH_OVERHEAD_S = 1.0  # per epoch: history, checkpoint and model.keras written
VAL_COST = 0.35  # a validation image costs about a third of a training one (forward pass only)
MIN_EPOCHS_FLOOR, MAX_EPOCHS = 10, 300  # fewer than the floor is planned only when no more fit, and said so
CELLS = 4  # heatmap cells across the 10th-percentile box's shorter side (3 at least; 4 leaves room for the
#   boxes below the 10th percentile)
MAX_UPSCALE = 2.0  # more would invent no detail
MAX_INPUT_SIDE = 1024  # a whole-frame input past this is tiled whatever the throughput (memory per batch)
TILE_SIDES = (256, 320, 384, 448, 512)
# Epochs that must fit the budget at the chosen input (the compute cap): a detector from scratch needs many
# (issue 26: 20 epochs left the bee heatmap loss still falling; 60 learnt); classifiers converge sooner.
MIN_EPOCHS = {"detection": 30, "classification": 12, "multilabel": 12, "segmentation": 30}
TARGET_EPOCHS = MIN_EPOCHS
BATCH = {"detection": 8, "classification": 32, "multilabel": 32, "segmentation": 8}
MIN_STEPS = 8  # the batch is halved until an epoch has at least this many steps
LEARNING_RATE = {"detection": 2e-3, "classification": 1e-3, "multilabel": 1e-3, "segmentation": 2e-3}
PRETRAINED_LR, PRETRAINED_FINE_TUNE_LR = 1e-3, 1e-4
MONITOR = {"detection": "val_loss", "classification": "val_auc", "multilabel": "val_auc", "segmentation": "val_dice"}
PRETRAINED = "efficientnetb0"  # the pretrained backbone used where its ImageNet file is on disk
EMA_BELOW = 2000  # training samples under which the weights are averaged (EMA_MOMENTUM)
EMA_MOMENTUM = 0.99
WARMUP_STEPS = 100  # optimizer steps of linear warm-up (1-3 epochs)
REFERENCE_SIDE = {"detection": 256, "classification": 128, "multilabel": 128, "segmentation": 256}
GREY_SAMPLE, SIZE_SAMPLE = 16, 200
MIN_LABEL_BOXES = 10  # a label's own 10th-percentile box counts from this many boxes
GREY_TOLERANCE = 8  # largest channel difference (0-255) still grey: JPEG's chroma noise on a grey film


@dataclass(frozen=True)
class Choice:
    key: str
    value: object
    reason: str

    def to_json(self) -> dict:
        return {"key": self.key, "value": self.value, "reason": self.reason}


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


# ---------------------------------------------------------------- the entry point


def apply_recipe(config: Config, run) -> Config:
    """config with every `auto` key chosen; recipe.json written into run (artifacts.RunDir); each choice logged."""
    from edgelabels import atomic

    began = time.perf_counter()
    task = config.task if config.task != AUTO else source_task_of(config)
    facts = read_facts(config, task)
    backbone, weights = model_for(config, facts)
    measured = measure(config, facts, backbone, _stride(config))
    resolved, choices = choose(config, facts, measured)
    measured = {**measured, "seconds_to_choose": round(time.perf_counter() - began, 2)}
    budget_s = parse_budget(resolved.train.budget)
    run.dir.mkdir(parents=True, exist_ok=True)
    atomic.write_json(run.recipe_path, {
        "version": VERSION, "source": config.data.source, "task": resolved.task, "budget_s": budget_s,
        "choices": [c.to_json() for c in choices], "measured": measured, "data": facts.summary()})
    log.info("recipe: %d choices from the data and a %s budget in %.1f s (%s)", len(choices),
             resolved.train.budget, measured["seconds_to_choose"], run.recipe_path.name)
    for c in choices:  # each reason opens with the value chosen ("input 288x384: ...")
        log.info("recipe: %s: %s", c.key, c.reason)
    return resolved


def source_task_of(config: Config) -> str:
    from edgelabels.data.inspection import source_task

    return source_task(config.data.source or None, config.data.manifest)


# ---------------------------------------------------------------- choose: pure


def choose(config: Config, facts: Facts, measured: dict) -> tuple[Config, list[Choice]]:
    """(resolved config, choices): every `auto` key of config decided from facts and measured
    ({"pixels_per_s": training pixels per second of the chosen model}); keys the user set are kept."""
    r = _Resolution(config)
    task = facts.task
    r.decide("task", task, facts.task_reason)
    if r.get("train.budget") is None:
        r.decide("train.budget", DEFAULT_BUDGET, f"{DEFAULT_BUDGET}: no budget given (--budget to change it)",
                 always=True)
    budget_s = parse_budget(r.get("train.budget"))
    plan_s = BUDGET_SHARE * budget_s
    pixels_per_s = float(measured["pixels_per_s"])

    backbone, weights = model_for(config, facts)
    r.decide("model.weights", weights, _weights_reason(config, facts, backbone, weights))
    r.decide("model.backbone", backbone, _backbone_reason(facts, backbone, r.get("model.weights")))
    r.decide("model.stride", 4, "4: the finest heatmap the detector builds (small boxes)" if task == "detection"
             else f"4: unused by {task}")
    r.decide("data.grayscale", facts.grey, facts.grey_reason)

    if task == "detection":
        _detection_input(r, facts, plan_s, pixels_per_s)
    else:
        r.decide("data.tile_scale", None, "whole images: tiling is for detection")
        _image_input(r, facts, task, plan_s, pixels_per_s)

    samples = _samples_per_epoch(r, facts)
    _schedule(r, facts, task, samples, plan_s, pixels_per_s, budget_s)
    _imbalance(r, facts, task)
    _augment(r, facts, task)
    resolved = config_from_dict(r.raw, where="recipe")
    return resolved, r.choices


class _Resolution:
    """The config as a mapping being resolved, and the choices made: `decide` sets an `auto` key only."""

    def __init__(self, config: Config):
        self.raw = config.to_dict()
        self.auto = set(auto_keys(config))
        self.choices: list[Choice] = []

    def get(self, key: str):
        node = self.raw
        for part in key.split("."):
            node = node[part]
        return node

    def is_auto(self, key: str) -> bool:
        return key in self.auto

    def decide(self, key: str, value, reason: str, always: bool = False) -> None:
        if not (always or key in self.auto):
            return
        node = self.raw
        *parents, last = key.split(".")
        for part in parents:
            node = node[part]
        node[last] = value
        self.auto.discard(key)
        self.choices.append(Choice(key, value, reason))


# ---------------------------------------------------------------- backbone and weights


def model_for(config: Config, facts: Facts) -> tuple[str, str]:
    """(backbone, weights) the recipe trains: the user's where set, else ImageNet weights where the file is here,
    else a from-scratch CNN from the registry sized to the data."""
    m = config.model
    if m.backbone != AUTO and m.weights != AUTO:
        return m.backbone, m.weights
    if m.backbone != AUTO:  # weights auto for a given backbone: ImageNet where its file is here
        return m.backbone, "imagenet" if facts.imagenet_on_disk.get(m.backbone) else "none"
    if m.weights == AUTO and facts.imagenet_on_disk.get(PRETRAINED):
        return PRETRAINED, "imagenet"
    if m.weights not in (AUTO, "none"):
        if m.weights.startswith("run:"):
            from edgelabels.artifacts import RunDir

            return RunDir(m.weights[4:]).backbone, m.weights
        return PRETRAINED, m.weights
    return _scratch_backbone(facts), "none"


def _scratch_backbone(facts: Facts) -> str:
    """smallcnn (a VGG-style CNN, 4 blocks) unless the task needs the whole image's context (a U-Net), objects
    larger than its receptive field, or the data is large enough to feed a deeper one."""
    if facts.task == "segmentation":
        return "deepcnn"
    if facts.task == "detection" and _large_boxes(facts):
        return "deepcnn"
    return "deepcnn" if facts.train_images >= 20_000 else "smallcnn"


def receptive_field(backbone: str) -> int:
    """Pixels one deepest feature of our own CNN sees: 3x3 convolutions between 2x2 poolings."""
    from edgelabels.models.backbones import get_backbone

    spec = get_backbone(backbone)
    return 1 + 2 * spec.convs_per_block * sum(2 ** i for i in range(spec.blocks))


def _large_boxes(facts: Facts) -> bool:
    """The median box's longer side, at the scale the input will have, is past smallcnn's receptive field: its
    deepest features would see only part of most objects. (deepcnn costs about 4 times smallcnn's time per pixel,
    so a few large boxes do not call for it.)"""
    return _box_long(facts, 50) * _detection_scale(facts)[0] > receptive_field("smallcnn")


def _weights_reason(config: Config, facts: Facts, backbone: str, weights: str) -> str:
    from edgelabels.models.backbones import get_backbone, keras_home

    if weights == "imagenet":
        return f"imagenet: {get_backbone(backbone).imagenet_file} is in {keras_home() / 'models'}"
    if config.model.backbone != AUTO and get_backbone(backbone).application is None:
        return f"none: {backbone} has no pretrained weights"
    name = PRETRAINED if config.model.backbone == AUTO else backbone
    return (f"none: imagenet weights for {name} not found in {keras_home() / 'models'} (never downloaded during "
            f"training): training from scratch with {backbone}")


def _backbone_reason(facts: Facts, backbone: str, weights: str) -> str:
    if weights != "none":
        return f"{backbone}: the pretrained backbone whose weights are at hand"
    if facts.task == "segmentation":
        return f"{backbone}: a 6-block CNN (stride 32): the U-Net's deepest features see the whole image"
    if facts.task == "detection":
        long50 = _box_long(facts, 50) * _detection_scale(facts)[0]
        rf = receptive_field("smallcnn")
        return (f"{backbone}: the median box's longer side is {long50:.0f} px at the input's scale, "
                f"{'past' if long50 > rf else 'within'} smallcnn's {rf} px receptive field")
    return (f"{backbone}: {facts.train_images} training images "
            f"{'are enough for' if backbone == 'deepcnn' else 'suit'} a {'6' if backbone == 'deepcnn' else '4'}-block "
            "CNN trained from scratch")


# ---------------------------------------------------------------- input size


def _detection_scale(facts: Facts, stride: int = 4) -> tuple[float, float]:
    """(scale of native pixels that gives the 10th-percentile box CELLS cells at `stride`, that p10 in px)."""
    p10 = _small_side(facts, np.min(np.array(facts.boxes, dtype=float)[:, :2], axis=1))[0]
    return min(CELLS * stride / p10, MAX_UPSCALE), p10


def _small_side(facts: Facts, sides: np.ndarray) -> tuple[float, str]:
    """(the 10th percentile of `sides`, whose): per label where labels differ, the smallest of the labels' with
    MIN_LABEL_BOXES or more: a rare label of small objects (BCCD's platelets among red cells) would fall below
    the 10th percentile of all boxes and be scaled out of sight."""
    labels = np.array(facts.box_labels) if len(facts.box_labels) == len(sides) else np.array([""] * len(sides))
    per_label = {name: float(np.percentile(sides[labels == name], 10)) for name in np.unique(labels)
                 if np.sum(labels == name) >= MIN_LABEL_BOXES}
    if len(per_label) < 2:
        return float(np.percentile(sides, 10)), "box"
    name = min(per_label, key=per_label.get)
    return per_label[name], f"{name} box"


def _box_long(facts: Facts, percentile: float) -> float:
    """That percentile of the boxes' longer sides, in native pixels."""
    return float(np.percentile(np.max(np.array(facts.boxes, dtype=float)[:, :2], axis=1), percentile))


def _detection_input(r: _Resolution, facts: Facts, plan_s: float, pixels_per_s: float) -> None:
    stride = r.get("model.stride")
    need = CELLS * stride
    boxes = np.array(facts.boxes, dtype=float)
    sizes = np.array(facts.image_sizes, dtype=float)
    median_w, median_h = np.median(sizes[:, 0]), np.median(sizes[:, 1])
    # Whole frames stretched to one input: a box's side in input pixels is its side times input/image, so measure
    # boxes in pixels of the median frame and scale that frame.
    in_median = np.minimum(boxes[:, 0] * median_w / boxes[:, 2], boxes[:, 1] * median_h / boxes[:, 3])
    p10_median, whose = _small_side(facts, in_median)
    m = min(need / p10_median, MAX_UPSCALE)
    whole = [_multiple_of_32(median_h * m), _multiple_of_32(median_w * m)]
    samples = facts.train_images + VAL_COST * facts.val_images
    cap_px = plan_s * pixels_per_s / (MIN_EPOCHS["detection"] * samples)
    scale, p10 = _detection_scale(facts, stride)
    whose = _small_side(facts, np.min(boxes[:, :2], axis=1))[1]
    frame = f"{int(median_w)}x{int(median_h)}"
    user_size, user_tile = r.get("data.image_size"), r.get("data.tile_scale")
    # An epoch of tiles sees about the pixels of the scaled frames: tiling pays where a whole-frame input is too
    # large a sample (past MAX_INPUT_SIDE), or past the cap while the scaled frames hold under half its pixels.
    tiled_px = float(np.mean([max(w * h * scale * scale, TILE_SIDES[0] ** 2) for w, h in facts.image_sizes]))
    past_cap = whole[0] * whole[1] > cap_px and tiled_px < 0.5 * whole[0] * whole[1]
    tiled = user_tile not in (None, AUTO) or (
        user_tile == AUTO and user_size == AUTO and (past_cap or max(whole) > MAX_INPUT_SIDE))
    if not tiled:
        cells = p10_median * whole[1] / median_w / stride
        r.decide("data.image_size", whole,
                 f"input {whole[0]}x{whole[1]} (height x width): the 10th-percentile {whose}'s shorter side is "
                 f"{p10_median:.0f} px in {frame} frames; scaled by {whole[1] / median_w:.2f} it covers {cells:.1f} "
                 f"heatmap cells at stride {stride} (the aim: {CELLS}); sides multiples of 32, the frames' aspect")
        within = "within" if whole[0] * whole[1] <= cap_px else "past"
        r.decide("data.tile_scale", None,
                 f"whole frames: {whole[0]}x{whole[1]} is {within} the compute cap of {cap_px / 1e6:.2f} Mpx per image "
                 f"({MIN_EPOCHS['detection']} epochs of {facts.train_images} images in {BUDGET_SHARE:.0%} of the "
                 f"budget at {pixels_per_s / 1e6:.2f} Mpx/s measured)" + ("" if within == "within" else
                 "; tiles at that scale would hold as many pixels per epoch, so they would not train faster"))
        return
    if user_tile not in (None, AUTO):
        scale = float(user_tile)
    too_wide = f" and past {MAX_INPUT_SIDE} px a side" if max(whole) > MAX_INPUT_SIDE else ""
    tile, tile_why = _tile_side(_box_long(facts, 90) * scale, cap_px)
    per_image = _tiles_per_image(facts, scale, tile, r.get("data.tile_overlap"))
    r.decide("data.tile_scale", round(scale, 3),
             f"tiled at scale {scale:.2f}: the 10th-percentile {whose}'s shorter side is {p10:.0f} px, "
             f"{p10 * scale:.0f} px scaled ({p10 * scale / stride:.1f} heatmap cells at stride {stride}); whole "
             f"{frame} frames would "
             f"need a {whole[0]}x{whole[1]} input, past the compute cap of {cap_px / 1e6:.2f} Mpx per image "
             f"({MIN_EPOCHS['detection']} epochs in {BUDGET_SHARE:.0%} of the budget at {pixels_per_s / 1e6:.2f} "
             f"Mpx/s measured){too_wide}")
    r.decide("data.image_size", [tile, tile],
             f"tiles {tile}x{tile}: {tile_why}; a median frame is {per_image:.1f} tiles "
             f"(overlap {r.get('data.tile_overlap'):g}), {facts.train_images} training frames")


def _tile_side(long90_scaled: float, cap_px: float) -> tuple[int, str]:
    """(side, why): the smallest listed tile side that holds the 90th-percentile box 4 times over, within the
    compute cap (the smallest side at least)."""
    wanted = next((side for side in TILE_SIDES if side >= 4 * long90_scaled), TILE_SIDES[-1])
    fits = [side for side in TILE_SIDES if side <= wanted and side * side <= cap_px] or [TILE_SIDES[0]]
    held = f"the 90th-percentile box's longer side is {long90_scaled:.0f} px at that scale"
    if fits[-1] == wanted:
        return wanted, f"at least 4 times that box or the largest listed ({held})"
    return fits[-1], f"{wanted} px would hold that box 4 times over ({held}) but is past the compute cap"


def _tiles_per_image(facts: Facts, scale: float, tile: int, overlap: float) -> float:
    """Mean tiles per image, on the runtime's own grid (runtime/tiles.py)."""
    from edgelabels.data.preprocess import PreprocessSpec
    from edgelabels.runtime.tiles import tile_boxes

    spec = PreprocessSpec(height=tile, width=tile, tile_scale=scale, tile_overlap=overlap)
    return float(np.mean([len(tile_boxes(int(w), int(h), spec)) for w, h in facts.image_sizes]))


def _multiple_of_32(side: float) -> int:
    """Up to a multiple of 32 (never fewer cells than asked), at least 64."""
    return max(64, int(math.ceil(side / 32 - 1e-9)) * 32)


def _image_input(r: _Resolution, facts: Facts, task: str, plan_s: float, pixels_per_s: float) -> None:
    """The largest side (multiple of 32, up to the images' own) at which TARGET_EPOCHS fit the budget."""
    if not r.is_auto("data.image_size"):
        return
    from edgelabels.models.backbones import get_backbone

    sizes = np.array(facts.image_sizes, dtype=float).reshape(-1, 2)
    median_w, median_h = float(np.median(sizes[:, 0])), float(np.median(sizes[:, 1]))
    aspect = median_w / median_h  # width / height
    square = 0.8 <= aspect <= 1.25
    native = min(median_w, median_h)
    smallest = max(64, _multiple_of_32(get_backbone(r.get("model.backbone")).min_size))
    largest = max(smallest, min(512, int(native // 32) * 32))
    samples = facts.train_images + VAL_COST * facts.val_images
    epochs = TARGET_EPOCHS[task]
    chosen = smallest
    for side in range(largest, smallest - 1, -32):
        px = side * side if square else side * _multiple_of_32(side * max(aspect, 1 / aspect))
        if epochs * (samples * px / pixels_per_s + EPOCH_OVERHEAD_S) <= plan_s:
            chosen = side
            break
    size = chosen if square else ([chosen, _multiple_of_32(chosen * aspect)] if aspect > 1
                                  else [_multiple_of_32(chosen / aspect), chosen])
    shown = f"{chosen}x{chosen}" if square else f"{size[0]}x{size[1]}"
    limit = ("the smallest input tried (the images are smaller)" if chosen > native else
             "the images' own size" if chosen == largest else
             f"the largest at which {epochs} epochs of {facts.train_images} images fit {BUDGET_SHARE:.0%} of the "
             f"budget at {pixels_per_s / 1e6:.2f} Mpx/s measured" if chosen > smallest else
             f"the smallest tried: even it does not fit {epochs} epochs in the budget")
    r.decide("data.image_size", size,
             f"input {shown}: images are {median_w:.0f}x{median_h:.0f} (median); {chosen} px is {limit}")


# ---------------------------------------------------------------- schedule


def _samples_per_epoch(r: _Resolution, facts: Facts) -> tuple[float, float]:
    """(training pixels, validation pixels) one epoch goes through, at the resolved input."""
    size = r.get("data.image_size")
    h, w = (size, size) if isinstance(size, int) else size
    scale = r.get("data.tile_scale")
    if facts.task == "detection" and scale is not None:
        # As train/detection_loader.py deals them: an epoch holds as many random crops as the scaled frames hold
        # tiles' worth of pixels; validation runs the inference grid's overlapping tiles.
        crops = np.mean([max(1, round(w_ * h_ * scale * scale / (h * w))) for w_, h_ in facts.image_sizes])
        grid = _tiles_per_image(facts, scale, h, r.get("data.tile_overlap"))
        return facts.train_images * crops * h * w, facts.val_images * grid * h * w
    return facts.train_images * h * w, facts.val_images * h * w


def _schedule(r: _Resolution, facts: Facts, task: str, samples, plan_s: float, pixels_per_s: float,
              budget_s: float) -> None:
    train_px, val_px = samples
    epoch_s = (train_px + VAL_COST * val_px) / pixels_per_s + EPOCH_OVERHEAD_S
    pretrained = r.get("model.weights") != "none"
    size = r.get("data.image_size")
    h, w = (size, size) if isinstance(size, int) else size
    train_samples = max(1, int(round(train_px / (h * w))))

    batch = BATCH[task]
    while batch > 2 and train_samples / batch < MIN_STEPS:
        batch //= 2
    halved = "" if batch == BATCH[task] else \
        f", halved until an epoch of {train_samples} samples has {MIN_STEPS}+ steps"
    r.decide("train.batch_size", batch, f"{batch}: {task}'s usual {BATCH[task]}{halved} "
                                        f"({math.ceil(train_samples / batch)} steps per epoch)")
    batch = r.get("train.batch_size")
    steps = max(1, math.ceil(train_samples / batch))

    fits = int(plan_s // epoch_s)
    total = min(max(fits, 1), MAX_EPOCHS)
    why = (f"{epoch_s:.1f} s per epoch ({train_samples} training samples of {h}x{w} at {pixels_per_s / 1e6:.2f} "
           f"Mpx/s measured, validation included); {fits} fit {BUDGET_SHARE:.0%} of the {r.get('train.budget')} budget")
    if fits > MAX_EPOCHS:
        why += f", capped at {MAX_EPOCHS}"
    elif fits < MIN_EPOCHS_FLOOR:
        needed = MIN_EPOCHS_FLOOR * epoch_s / BUDGET_SHARE / 60
        why += (f"; too few to learn much: --budget {math.ceil(needed)}m would fit {MIN_EPOCHS_FLOOR} (planning more "
                "than fit would only leave the schedule unfinished when the budget stops training)")
    if pretrained and r.is_auto("train.epochs"):
        head = max(2, round(total * 0.2))
        r.decide("train.epochs", head, f"{head} of {total} epochs for stage a (frozen backbone, new head): {why}")
        r.decide("train.fine_tune_epochs", total - head, f"{total - head} epochs of fine-tuning (stage b, "
                                                         "pretrained backbone unfrozen)")
    else:
        r.decide("train.epochs", total, f"{total}: {why}")
        r.decide("train.fine_tune_epochs", 0 if not pretrained else max(1, round(total * 0.8)),
                 "0: stage b fine-tunes a pretrained backbone; from scratch, stage a trains everything"
                 if not pretrained else "stage b: the pretrained backbone unfrozen at a lower rate")
    epochs = r.get("train.epochs") + r.get("train.fine_tune_epochs")

    lr = PRETRAINED_LR if pretrained else LEARNING_RATE[task]
    what = "a new head on a pretrained backbone" if pretrained else f"a {task} model trained from scratch"
    r.decide("train.learning_rate", lr, f"{lr:g}: Adam's rate for {what} at batch {batch}")
    fine = PRETRAINED_FINE_TUNE_LR if pretrained else r.get("train.learning_rate") / 10
    r.decide("train.fine_tune_learning_rate", fine, f"{fine:g}: a tenth of the head's rate, so fine-tuning does not "
                                                    "undo the pretrained features" if pretrained else
             f"{fine:g}: unused (no stage b); a tenth of train.learning_rate")
    r.decide("train.lr_schedule", "cosine", "cosine: decays to 0 over each stage's planned epochs, so the last "
                                            "epochs settle (the epochs come from the budget)")
    r.decide("train.monitor", MONITOR[task], {
        "detection": "val_loss: the detector's heatmap, size and offset losses on the validation split",
        "segmentation": "val_dice: the overlap the evaluation reports", }.get(
        task, "val_auc: ranks every threshold at once, unmoved by class balance (the evaluation picks the threshold)"))
    patience = max(5, round(0.15 * epochs))
    r.decide("train.patience", patience, f"{patience}: a stage ends after {patience} epochs (15% of {epochs}, at "
                                         f"least 5) without a better {r.get('train.monitor')}")
    warmup = min(3, max(1, math.ceil(WARMUP_STEPS / steps)))
    r.decide("train.warmup_epochs", warmup, f"{warmup}: about {WARMUP_STEPS} optimizer steps at {steps} per epoch "
                                            "(1-3 epochs): Adam's first steps from fresh weights are the wildest")
    if train_samples < EMA_BELOW:
        r.decide("train.ema", EMA_MOMENTUM,
                 f"{EMA_MOMENTUM}: {train_samples} training samples (under {EMA_BELOW}): an epoch is {steps} noisy "
                 f"steps; the average of the last ~{round(1 / (1 - EMA_MOMENTUM))} steps' weights is validated and "
                 "kept")
    else:
        r.decide("train.ema", None, f"none: {train_samples} training samples steady the weights by themselves")


# ---------------------------------------------------------------- imbalance and augmentation


def _imbalance(r: _Resolution, facts: Facts, task: str) -> None:
    counts = facts.label_counts
    if task not in ("classification", "multilabel") or len(counts) < 2:
        why = "unused by a detector (its focal loss weighs rare centre cells)" if task == "detection" else \
            f"unused by {task}" if task != "classification" else "one label"
        r.decide("train.class_weight", "none", f"none: {why}")
        r.decide("train.oversample", False, f"false: {why}")
        return
    most, least = max(counts, key=counts.get), min(counts, key=counts.get)
    ratio = counts[most] / max(1, counts[least])
    shown = f"{least} {counts[least]} vs {most} {counts[most]} images ({ratio:.1f}:1)"
    if task == "multilabel":
        weight = "balanced" if ratio >= 1.5 else "none"
        r.decide("train.class_weight", weight, f"{weight}: {shown}" + ("; each label's positives weighed up by its "
                                                                       "rarity" if weight == "balanced" else ""))
        r.decide("train.oversample", False, "false: a multi-label image carries several labels at once")
    elif ratio >= 4:
        r.decide("train.oversample", True, f"true: {shown}: every label drawn equally often each epoch, so the rare "
                                           "ones are seen (weights alone would give a few images huge steps)")
        r.decide("train.class_weight", "none", "none: oversampling already balances the labels")
    else:
        weight = "balanced" if ratio >= 1.5 else "none"
        r.decide("train.class_weight", weight, f"{weight}: {shown}" + (
            "; each label weighs by its rarity in the loss" if weight == "balanced" else ": close to even"))
        r.decide("train.oversample", False, f"false: {ratio:.1f}:1 is not extreme (oversampling from 4:1)")


def _augment(r: _Resolution, facts: Facts, task: str) -> None:
    if task == "detection":
        r.decide("augment.preset", "none", "none: the detection loader augments its own way (boxes move with the "
                                           "image)")
        flip, why = _vertical_flip(facts)
        r.decide("augment.vertical_flip", flip, why)
        return
    r.decide("augment.vertical_flip", 0.0, f"0: {task} flips through augment.transforms")
    if facts.grey:
        r.decide("augment.preset", "xray", "xray: grey films (turns, zoom, shifts, brightness, horizontal flip)")
    else:
        r.decide("augment.preset", "photo", "photo: colour photos (turns, perspective, light, blur, noise; no flips: "
                                            "they can change what a photo means)")


def _vertical_flip(facts: Facts) -> tuple[float, str]:
    """0.5 when the objects show no up and down: as many boxes taller than wide as wider than tall (cars from the
    air, cells, bees from above lie every way); else 0 (people, upright cassettes: a flip shows what never comes)."""
    boxes = np.array(facts.boxes, dtype=float)
    aspect = np.log(boxes[:, 0] / boxes[:, 1])
    uneven = aspect[np.abs(aspect) > math.log(1.15)]  # near-square boxes say nothing about orientation
    if len(uneven) < 20:
        return 0.0, (f"0: only {len(uneven)} boxes are clearly wider or taller than square; the data cannot tell "
                     "whether the objects are seen from any side")
    wide = float(np.mean(uneven > 0))
    if 0.3 <= wide <= 0.7:
        return 0.5, (f"0.5: {wide:.0%} of the elongated boxes lie wider than tall, {1 - wide:.0%} taller than wide: "
                     "the objects lie every way (seen from above), so upside down is as likely as upright")
    return 0.0, (f"0: {max(wide, 1 - wide):.0%} of the elongated boxes lie {'wider' if wide > 0.5 else 'taller'} "
                 f"than {'tall' if wide > 0.5 else 'wide'}: the objects have an up, so a vertical flip would show "
                 "what never comes")


# ---------------------------------------------------------------- the facts of a source


def read_facts(config: Config, task: str) -> Facts:
    """Counts, sizes and colour of config's source for `task`; images are opened only for their headers, except a
    sample of GREY_SAMPLE decoded to tell grey from colour."""
    from edgelabels.models.backbones import BACKBONES, keras_home

    reasons = {"detection": "boxes (a YOLO folder, a COCO or Pascal VOC file, or an object-detection manifest)",
               "segmentation": "images/ with masks/ beside them",
               "multilabel": "a manifest with several labels per image",
               "classification": "one label per image (a folder per label or a manifest)"}
    task_reason = f"{task}: {'as set' if config.task != AUTO else reasons[task]}"
    d = config.data
    boxes, box_labels = (), ()
    if task == "detection":
        from edgelabels.data.detection import read_detection_source
        from edgelabels.data.statistics import header_size

        source = d.manifest or d.source
        dataset, _ = read_detection_source(source, class_names=d.class_names, s3_root=d.s3_root,
                                           group_by=d.group_by, root=d.source if d.manifest else None)
        given = getattr(dataset, "given_split", None) or {}
        # A source's own test images are not looked at: the choices would be tuned on them.
        seen = [*given.get("train", []), *given.get("val", [])] or dataset.samples
        sizes = [header_size(s.path) for s in seen]
        boxes = tuple((b.width, b.height, w, h) for s, (w, h) in zip(seen, sizes) for b in s.boxes)
        box_labels = tuple(b.label for s in seen for b in s.boxes)
        counts: dict = {}
        for b in (b for s in seen for b in s.boxes):
            counts[b.label] = counts.get(b.label, 0) + 1
    else:
        dataset = _labelled(config, task)
        sizes = _sample_sizes(dataset.samples)
        counts = dataset.label_counts
    train, val = _split_counts(config, dataset)
    grey, grey_reason = _greyness([s.path for s in dataset.samples])
    on_disk = {name: bool(spec.imagenet_file) and (keras_home() / "models" / spec.imagenet_file).is_file()
               for name, spec in BACKBONES.items()}
    return Facts(task, task_reason, train, val, tuple(sizes), counts, grey, grey_reason, boxes, box_labels, on_disk)


def _labelled(config: Config, task: str):
    d = config.data
    if task == "segmentation":
        from edgelabels.data.masks import load_mask_pairs

        return load_mask_pairs(d.source, group_by=d.group_by)
    from edgelabels.data.sources import load_dataset

    return load_dataset(d.source or None, manifest=d.manifest, s3_root=d.s3_root, group_by=d.group_by)


def _split_counts(config: Config, dataset) -> tuple[int, int]:
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
    from edgelabels.data.statistics import header_size

    return [header_size(s.path) for s in _evenly(list(samples), SIZE_SAMPLE)]


def _greyness(paths: list) -> tuple[bool, str]:
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


# ---------------------------------------------------------------- measured throughput


def _stride(config: Config) -> int:
    return 4 if config.model.stride == AUTO else int(config.model.stride)


def measure(config: Config, facts: Facts, backbone: str, stride: int = 4, steps: int = 4) -> dict:
    """Training pixels per second of the task's model on `backbone` here: a few train_on_batch steps on random
    data at a reference input (the first step, which traces the graph, is not timed)."""
    import keras

    from edgelabels.tasks import get_task

    task = facts.task
    side = REFERENCE_SIDE[task]
    batch = BATCH[task]
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


def source_config(source: str, overrides: list[str] | tuple[str, ...] = (), budget: str | None = None) -> Config:
    """The config of `edgelabels train SOURCE`: data.source = SOURCE, every AUTO_KEYS key auto, then the --set
    overrides (which win) and --budget."""
    import json

    from edgelabels.config import AUTO_KEYS, load_config

    base = [f"{key}={AUTO}" for key in AUTO_KEYS] + [f"data.source={json.dumps(str(source))}"]
    if budget is not None:
        parse_budget(budget)
        base.append(f"train.budget={json.dumps(budget)}")
    return load_config(None, [*base, *overrides])
