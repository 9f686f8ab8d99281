"""The recipe's hooks for tasks that take whole images (train/recipe.py's CLASSIFICATION, MULTILABEL and
SEGMENTATION records): the input side from the budget, the from-scratch backbone, class balance, augmentation.

The input: the largest side (a multiple of 32, at most the images' own) at which the task's min_epochs fit the
budget at the measured throughput.
"""

from __future__ import annotations

import numpy as np

from edgelabels.train.recipe_facts import Facts
from edgelabels.train.recipe_resolution import (BUDGET_SHARE, EPOCH_OVERHEAD_S, VAL_COST, Plan, Resolution,
                                                counted_backbone, multiple_of_32, unweighted)

# ---------------------------------------------------------------- input size


def input_size(r: Resolution, facts: Facts, plan: Plan) -> None:
    """Whole images; the largest side (multiple of 32, up to the images' own) at which plan.min_epochs fit."""
    r.decide("data.tile_scale", None, "whole images: tiling is for detection")
    if not r.is_auto("data.image_size"):
        return
    from edgelabels.models.backbones import get_backbone

    sizes = np.array(facts.image_sizes, dtype=float).reshape(-1, 2)
    median_w, median_h = float(np.median(sizes[:, 0])), float(np.median(sizes[:, 1]))
    aspect = median_w / median_h  # width / height
    square = 0.8 <= aspect <= 1.25
    native = min(median_w, median_h)
    smallest = max(64, multiple_of_32(get_backbone(r.get("model.backbone")).min_size))
    largest = max(smallest, min(512, int(native // 32) * 32))
    samples = facts.train_images + VAL_COST * facts.val_images
    epochs = plan.min_epochs
    fitting = None
    for side in range(largest, smallest - 1, -32):
        px = side * side if square else side * multiple_of_32(side * max(aspect, 1 / aspect))
        if epochs * (samples * px / plan.pixels_per_s + EPOCH_OVERHEAD_S) <= plan.plan_s:
            fitting = side
            break
    chosen = fitting or smallest
    size = chosen if square else ([chosen, multiple_of_32(chosen * aspect)] if aspect > 1
                                  else [multiple_of_32(chosen / aspect), chosen])
    shown = f"{chosen}x{chosen}" if square else f"{size[0]}x{size[1]}"
    limit = ("the smallest input tried (the images are smaller)" if chosen > native else
             "the images' own size" if chosen == largest else
             f"the largest at which {epochs} epochs of {facts.train_images} images fit {BUDGET_SHARE:.0%} of the "
             f"budget at {plan.pixels_per_s / 1e6:.2f} Mpx/s measured" if fitting else
             f"the smallest tried: even it does not fit {epochs} epochs in the budget")
    r.decide("data.image_size", size,
             f"input {shown}: images are {median_w:.0f}x{median_h:.0f} (median); {chosen} px is {limit}")


# ---------------------------------------------------------------- backbone


def classifier_backbone(facts: Facts) -> tuple[str, str]:
    """(from-scratch backbone, why): as deep as the number of training images feeds."""
    name = counted_backbone(facts)
    return name, (f"{name}: {facts.train_images} training images "
                  f"{'are enough for' if name == 'deepcnn' else 'suit'} a {'6' if name == 'deepcnn' else '4'}-block "
                  "CNN trained from scratch")


def unet_backbone(facts: Facts) -> tuple[str, str]:
    """A U-Net needs the whole image's context, whatever the data."""
    return "deepcnn", "deepcnn: a 6-block CNN (stride 32): the U-Net's deepest features see the whole image"


# ---------------------------------------------------------------- class balance


def _balance(counts: dict) -> tuple[float, str]:
    """(most / least, the two shown) of images per label."""
    most, least = max(counts, key=counts.get), min(counts, key=counts.get)
    ratio = counts[most] / max(1, counts[least])
    return ratio, f"{least} {counts[least]} vs {most} {counts[most]} images ({ratio:.1f}:1)"


def classification_imbalance(r: Resolution, facts: Facts) -> None:
    """Oversampling from 4:1 (weights alone would give a few images huge steps), class weights from 1.5:1."""
    if len(facts.label_counts) < 2:
        unweighted("one label")(r, facts)
        return
    ratio, shown = _balance(facts.label_counts)
    if ratio >= 4:
        r.decide("train.oversample", True, f"true: {shown}: every label drawn equally often each epoch, so the rare "
                                           "ones are seen (weights alone would give a few images huge steps)")
        r.decide("train.class_weight", "none", "none: oversampling already balances the labels")
        return
    weight = "balanced" if ratio >= 1.5 else "none"
    r.decide("train.class_weight", weight, f"{weight}: {shown}" + (
        "; each label weighs by its rarity in the loss" if weight == "balanced" else ": close to even"))
    r.decide("train.oversample", False, f"false: {ratio:.1f}:1 is not extreme (oversampling from 4:1)")


def multilabel_imbalance(r: Resolution, facts: Facts) -> None:
    """Class weights from 1.5:1; never oversampling (an image drawn for one label brings its others along)."""
    if len(facts.label_counts) < 2:
        unweighted("unused by multilabel")(r, facts)
        return
    ratio, shown = _balance(facts.label_counts)
    weight = "balanced" if ratio >= 1.5 else "none"
    r.decide("train.class_weight", weight, f"{weight}: {shown}" + ("; each label's positives weighed up by its "
                                                                   "rarity" if weight == "balanced" else ""))
    r.decide("train.oversample", False, "false: a multi-label image carries several labels at once")


# ---------------------------------------------------------------- augmentation


def augment(r: Resolution, facts: Facts) -> None:
    """No vertical flip key (augment.transforms flips); the preset from grey films or colour photos."""
    r.decide("augment.vertical_flip", 0.0, f"0: {facts.task} flips through augment.transforms")
    if facts.grey:
        r.decide("augment.preset", "xray", "xray: grey films (turns, zoom, shifts, brightness, horizontal flip)")
    else:
        r.decide("augment.preset", "photo", "photo: colour photos (turns, perspective, light, blur, noise; no flips: "
                                            "they can change what a photo means)")
