"""The recipe: every `auto` key of a config chosen from the data, a time budget and a measured throughput.

`apply_recipe(config, run)` reads the facts of the source (`read_facts`: counts, image and box sizes, grey or
colour), times a few training steps of the model it will choose on this machine (`measure`), then asks `choose`,
a pure function of (config, facts, measured), for every `auto` key with a reason a user can check ("input
288x384: the 10th-percentile box is 10 px ..."). It writes recipe.json, logs each choice on "edgelabels.train"
(train.log) and returns the resolved config, rebuilt through config_from_dict so every normal check runs.
A key the user set is never changed; a choice that depends on it reads it.

What differs per task is its RecipeHooks record (the task table's `recipe` piece; the four are at the bottom of
this file): how its facts are read (train/recipe_facts.py), its input chooser (train/recipe_detection.py: from the
boxes, whole frames or tiles; train/recipe_images.py: the largest side at which the task's min_epochs fit the
budget), its from-scratch backbone, class balance and augmentation, and the numbers of its schedule. The schedule
itself is one path for every task (Rekognition's "select the right algorithms" made explicit): seconds per epoch
from the measured pixels per second -> the epochs that fit BUDGET_SHARE of the budget (at most MAX_EPOCHS; under
MIN_EPOCHS_FLOOR the budget that would fit them is named), patience, warm-up, EMA for small datasets, cosine decay.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from typing import Callable

from edgelabels.config import AUTO, Config, config_from_dict, parse_budget
from edgelabels.train import recipe_detection, recipe_images
from edgelabels.train.recipe_facts import (Facts, greyness, imagenet_on_disk, measure, read_boxes, read_labelled,
                                           read_masks, split_counts)
from edgelabels.train.recipe_resolution import (BUDGET_SHARE, EPOCH_OVERHEAD_S, VAL_COST, Choice, Plan, Resolution,
                                                input_hw, unweighted, whole_images)

log = logging.getLogger("edgelabels.train")

VERSION = 1
DEFAULT_BUDGET = "30m"
MIN_EPOCHS_FLOOR, MAX_EPOCHS = 10, 300  # fewer than the floor is planned only when no more fit, and said so
MIN_STEPS = 8  # the batch is halved until an epoch has at least this many steps
PRETRAINED_LR, PRETRAINED_FINE_TUNE_LR = 1e-3, 1e-4
PRETRAINED = "efficientnetb0"  # the pretrained backbone used where its ImageNet file is on disk
EMA_BELOW = 2000  # training samples under which the weights are averaged (EMA_MOMENTUM)
EMA_MOMENTUM = 0.99
WARMUP_STEPS = 100  # optimizer steps of linear warm-up (1-3 epochs)


@dataclass(frozen=True)
class RecipeHooks:
    """What `auto` becomes for one task. The choosers that take a Resolution decide their keys themselves (only
    where they are auto), in the order the choices are logged."""

    found_as: str  # why a source whose task was auto holds this task
    read: Callable[[Config], tuple[object, dict]]  # config -> (dataset, its Facts fields: image_sizes, label_counts...)
    reference_side: int  # the square input the throughput is measured at
    batch: int  # the usual batch, halved until an epoch has MIN_STEPS steps
    learning_rate: float  # Adam's rate from scratch (a pretrained backbone's are PRETRAINED_LR and a tenth of it)
    min_epochs: int  # epochs that must fit the budget at the chosen input (the compute cap)
    monitor: str
    monitor_reason: str
    stride: tuple[int, str]  # model.stride and why
    backbone: Callable[[Facts], tuple[str, str]]  # the from-scratch backbone, and why
    input_size: Callable[[Resolution, Facts, Plan], None]  # decides data.image_size and data.tile_scale
    imbalance: Callable[[Resolution, Facts], None]  # decides train.class_weight and train.oversample
    augment: Callable[[Resolution, Facts], None]  # decides augment.preset and augment.vertical_flip
    # (training pixels, validation pixels) an epoch goes through at the resolved input
    epoch_pixels: Callable[[Resolution, Facts], tuple[float, float]] = whole_images


def hooks_of(task: str) -> RecipeHooks:
    """The task's record, from the task table."""
    from edgelabels.tasks import get_task

    return get_task(task).piece("recipe")


# ---------------------------------------------------------------- the entry point


def apply_recipe(config: Config, run) -> Config:
    """config with every `auto` key chosen; recipe.json written into run (artifacts.RunDir); each choice logged."""
    from edgelabels import atomic

    began = time.perf_counter()
    task = config.task if config.task != AUTO else source_task_of(config)
    hooks = hooks_of(task)
    facts = read_facts(config, task)
    backbone, _ = model_for(config, facts)
    stride = hooks.stride[0] if config.model.stride == AUTO else int(config.model.stride)
    measured = measure(config, facts, backbone, stride, hooks.batch, hooks.reference_side)
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


def read_facts(config: Config, task: str) -> Facts:
    """Counts, sizes and colour of config's source for `task` (train/recipe_facts.py reads them)."""
    hooks = hooks_of(task)
    dataset, fields = hooks.read(config)
    train, val = split_counts(config, dataset)
    grey, grey_reason = greyness([s.path for s in dataset.samples])
    return Facts(task=task, task_reason=f"{task}: {'as set' if config.task != AUTO else hooks.found_as}",
                 train_images=train, val_images=val, grey=grey, grey_reason=grey_reason,
                 imagenet_on_disk=imagenet_on_disk(), **fields)


# ---------------------------------------------------------------- choose: pure


def choose(config: Config, facts: Facts, measured: dict) -> tuple[Config, list[Choice]]:
    """(resolved config, choices): every `auto` key of config decided from facts and measured
    ({"pixels_per_s": training pixels per second of the chosen model}); keys the user set are kept."""
    r = Resolution(config)
    hooks = hooks_of(facts.task)
    r.decide("task", facts.task, facts.task_reason)
    if r.get("train.budget") is None:
        r.decide("train.budget", DEFAULT_BUDGET, f"{DEFAULT_BUDGET}: no budget given (--budget to change it)",
                 always=True)
    budget_s = parse_budget(r.get("train.budget"))
    plan = Plan(BUDGET_SHARE * budget_s, float(measured["pixels_per_s"]), hooks.min_epochs)

    backbone, weights = model_for(config, facts)
    r.decide("model.weights", weights, _weights_reason(config, backbone, weights))
    r.decide("model.backbone", backbone, _backbone_reason(facts, hooks, backbone, r.get("model.weights")))
    r.decide("model.stride", *hooks.stride)
    r.decide("data.grayscale", facts.grey, facts.grey_reason)
    hooks.input_size(r, facts, plan)
    _schedule(r, facts, hooks, hooks.epoch_pixels(r, facts), plan)
    hooks.imbalance(r, facts)
    hooks.augment(r, facts)
    resolved = config_from_dict(r.raw, where="recipe")
    return resolved, r.choices


# ---------------------------------------------------------------- backbone and weights


def model_for(config: Config, facts: Facts) -> tuple[str, str]:
    """(backbone, weights) the recipe trains: the user's where set, else ImageNet weights where the file is here,
    else a from-scratch CNN from the registry sized to the data (the task's hooks.backbone)."""
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
    return hooks_of(facts.task).backbone(facts)[0], "none"


def _weights_reason(config: Config, backbone: str, weights: str) -> str:
    from edgelabels.models.backbones import get_backbone, keras_home

    if weights == "imagenet":
        return f"imagenet: {get_backbone(backbone).imagenet_file} is in {keras_home() / 'models'}"
    if config.model.backbone != AUTO and get_backbone(backbone).application is None:
        return f"none: {backbone} has no pretrained weights"
    name = PRETRAINED if config.model.backbone == AUTO else backbone
    return (f"none: imagenet weights for {name} not found in {keras_home() / 'models'} (never downloaded during "
            f"training): training from scratch with {backbone}")


def _backbone_reason(facts: Facts, hooks: RecipeHooks, backbone: str, weights: str) -> str:
    if weights != "none":
        return f"{backbone}: the pretrained backbone whose weights are at hand"
    return hooks.backbone(facts)[1]  # model_for chose that backbone: the weights are none only from scratch


# ---------------------------------------------------------------- schedule


def _schedule(r: Resolution, facts: Facts, hooks: RecipeHooks, samples: tuple[float, float], plan: Plan) -> None:
    train_px, val_px = samples
    pixels_per_s = plan.pixels_per_s
    epoch_s = (train_px + VAL_COST * val_px) / pixels_per_s + EPOCH_OVERHEAD_S
    pretrained = r.get("model.weights") != "none"
    h, w = input_hw(r)
    train_samples = max(1, int(round(train_px / (h * w))))

    batch = hooks.batch
    while batch > 2 and train_samples / batch < MIN_STEPS:
        batch //= 2
    halved = "" if batch == hooks.batch else \
        f", halved until an epoch of {train_samples} samples has {MIN_STEPS}+ steps"
    r.decide("train.batch_size", batch, f"{batch}: {facts.task}'s usual {hooks.batch}{halved} "
                                        f"({math.ceil(train_samples / batch)} steps per epoch)")
    batch = r.get("train.batch_size")
    steps = max(1, math.ceil(train_samples / batch))

    fits = int(plan.plan_s // epoch_s)
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
        head = min(max(2, round(total * 0.2)), total)  # a budget for one epoch: no stage b, not minus one epoch
        r.decide("train.epochs", head, f"{head} of {total} epochs for stage a (frozen backbone, new head): {why}")
        r.decide("train.fine_tune_epochs", total - head, f"{total - head} epochs of fine-tuning (stage b, "
                                                         "pretrained backbone unfrozen)")
    else:
        r.decide("train.epochs", total, f"{total}: {why}")
        r.decide("train.fine_tune_epochs", 0 if not pretrained else max(1, round(total * 0.8)),
                 "0: stage b fine-tunes a pretrained backbone; from scratch, stage a trains everything"
                 if not pretrained else "stage b: the pretrained backbone unfrozen at a lower rate")
    epochs = r.get("train.epochs") + r.get("train.fine_tune_epochs")

    lr = PRETRAINED_LR if pretrained else hooks.learning_rate
    what = "a new head on a pretrained backbone" if pretrained else f"a {facts.task} model trained from scratch"
    r.decide("train.learning_rate", lr, f"{lr:g}: Adam's rate for {what} at batch {batch}")
    fine = PRETRAINED_FINE_TUNE_LR if pretrained else r.get("train.learning_rate") / 10
    r.decide("train.fine_tune_learning_rate", fine, f"{fine:g}: a tenth of the head's rate, so fine-tuning does not "
                                                    "undo the pretrained features" if pretrained else
             f"{fine:g}: unused (no stage b); a tenth of train.learning_rate")
    r.decide("train.lr_schedule", "cosine", "cosine: decays to 0 over each stage's planned epochs, so the last "
                                            "epochs settle (the epochs come from the budget)")
    r.decide("train.monitor", hooks.monitor, hooks.monitor_reason)
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


# ---------------------------------------------------------------- the records (tasks.py's `recipe` pieces)
# min_epochs: a detector from scratch needs many (issue 26: 20 epochs left the bee heatmap loss still falling; 60
# learnt); classifiers converge sooner.

_VAL_AUC = "val_auc: ranks every threshold at once, unmoved by class balance (the evaluation picks the threshold)"

CLASSIFICATION = RecipeHooks(
    found_as="one label per image (a folder per label or a manifest)", read=read_labelled, reference_side=128,
    batch=32, learning_rate=1e-3, min_epochs=12, monitor="val_auc", monitor_reason=_VAL_AUC,
    stride=(4, "4: unused by classification"), backbone=recipe_images.classifier_backbone,
    input_size=recipe_images.input_size, imbalance=recipe_images.classification_imbalance,
    augment=recipe_images.augment)

# A multi-label classifier: a classifier's input, schedule and augmentation, its own balance (no oversampling).
MULTILABEL = dataclasses.replace(
    CLASSIFICATION, found_as="a manifest with several labels per image", stride=(4, "4: unused by multilabel"),
    imbalance=recipe_images.multilabel_imbalance)

SEGMENTATION = RecipeHooks(
    found_as="images/ with masks/ beside them", read=read_masks, reference_side=256,
    batch=8, learning_rate=2e-3, min_epochs=30, monitor="val_dice",
    monitor_reason="val_dice: the overlap the evaluation reports",
    stride=(4, "4: unused by segmentation"), backbone=recipe_images.unet_backbone,
    input_size=recipe_images.input_size, imbalance=unweighted("unused by segmentation"),
    augment=recipe_images.augment)

DETECTION = RecipeHooks(
    found_as="boxes (a YOLO folder, a COCO or Pascal VOC file, or an object-detection manifest)", read=read_boxes,
    reference_side=256, batch=8, learning_rate=2e-3, min_epochs=30, monitor="val_loss",
    monitor_reason="val_loss: the detector's heatmap, size and offset losses on the validation split",
    stride=(4, "4: the finest heatmap the detector builds (small boxes)"), backbone=recipe_detection.backbone,
    input_size=recipe_detection.input_size, epoch_pixels=recipe_detection.epoch_pixels,
    imbalance=unweighted("unused by a detector (its focal loss weighs rare centre cells)"),
    augment=recipe_detection.augment)
