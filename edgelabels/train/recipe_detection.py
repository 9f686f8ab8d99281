"""The recipe's detection hooks (train/recipe.py's DETECTION record): input size or tiling from the boxes, the
backbone from their size, tiled epochs, vertical flips from their orientation.

The input: the 10th-percentile box's shorter side (of the label with the smallest boxes) must cover CELLS heatmap
cells at model.stride, so the image is scaled by CELLS * stride / p10 (never up by more than MAX_UPSCALE). A
whole-frame input past MAX_INPUT_SIDE, or past the compute cap (the pixels per image at which the task's
min_epochs fit the budget at the measured throughput) where tiles would hold under half its pixels, is tiled at
that scale instead (an epoch of tiles holds the scaled frames' pixels).
"""

from __future__ import annotations

import math

import numpy as np

from edgelabels.config import AUTO
from edgelabels.train.recipe_facts import Facts
from edgelabels.train.recipe_resolution import (BUDGET_SHARE, VAL_COST, Plan, Resolution, counted_backbone, input_hw,
                                                multiple_of_32, whole_images)

CELLS = 4  # heatmap cells across the 10th-percentile box's shorter side (3 at least; 4 leaves room for the
#   boxes below the 10th percentile)
MAX_UPSCALE = 2.0  # more would invent no detail
MAX_INPUT_SIDE = 1024  # a whole-frame input past this is tiled whatever the throughput (memory per batch)
TILE_SIDES = (256, 320, 384, 448, 512)
MIN_LABEL_BOXES = 10  # a label's own 10th-percentile box counts from this many boxes
# Past the compute cap, untiled frames shrink toward it, keeping the 10th-percentile box at least this many cells
# (the demo's cassette-window detector finds its windows at 1.4 cells: 128 px inputs of 800 px photos)
MIN_CELLS = 1.5


# ---------------------------------------------------------------- the boxes' sizes


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


# ---------------------------------------------------------------- backbone


def receptive_field(backbone: str) -> int:
    """Pixels one deepest feature of our own CNN sees: 3x3 convolutions between 2x2 poolings."""
    from edgelabels.models.backbones import get_backbone

    spec = get_backbone(backbone)
    return 1 + 2 * spec.convs_per_block * sum(2 ** i for i in range(spec.blocks))


def backbone(facts: Facts) -> tuple[str, str]:
    """(from-scratch backbone, why): deepcnn where the median box's longer side, at the scale the input will have,
    is past smallcnn's receptive field: its deepest features would see only part of most objects. (deepcnn costs
    about 4 times smallcnn's time per pixel, so a few large boxes do not call for it.) Else as many images ask."""
    long50 = _box_long(facts, 50) * _detection_scale(facts)[0]
    rf = receptive_field("smallcnn")
    name = "deepcnn" if long50 > rf else counted_backbone(facts)
    return name, (f"{name}: the median box's longer side is {long50:.0f} px at the input's scale, "
                  f"{'past' if long50 > rf else 'within'} smallcnn's {rf} px receptive field")


# ---------------------------------------------------------------- input size, whole frames or tiles


def input_size(r: Resolution, facts: Facts, plan: Plan) -> None:
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
    whole = [multiple_of_32(median_h * m), multiple_of_32(median_w * m)]
    samples = facts.train_images + VAL_COST * facts.val_images
    cap_px = plan.plan_s * plan.pixels_per_s / (plan.min_epochs * samples)
    scale, p10 = _detection_scale(facts, stride)
    whose = _small_side(facts, np.min(boxes[:, :2], axis=1))[1]
    frame = f"{int(median_w)}x{int(median_h)}"
    measured = f"{plan.pixels_per_s / 1e6:.2f} Mpx/s measured"
    user_size, user_tile = r.get("data.image_size"), r.get("data.tile_scale")
    # An epoch of tiles sees about the pixels of the scaled frames: tiling pays where a whole-frame input is too
    # large a sample (past MAX_INPUT_SIDE), or past the cap while the scaled frames hold under half its pixels.
    tiled_px = float(np.mean([max(w * h * scale * scale, TILE_SIDES[0] ** 2) for w, h in facts.image_sizes]))
    past_cap = whole[0] * whole[1] > cap_px and tiled_px < 0.5 * whole[0] * whole[1]
    tiled = user_tile not in (None, AUTO) or (
        user_tile == AUTO and user_size == AUTO and (past_cap or max(whole) > MAX_INPUT_SIDE))
    if not tiled and whole[0] * whole[1] > cap_px and user_size == AUTO:
        # Too few epochs would fit at the ideal input: trade cells for epochs, down to MIN_CELLS.
        to_cap = math.sqrt(cap_px / (whole[0] * whole[1]))
        shrink = max(to_cap, MIN_CELLS / CELLS)
        ideal = whole
        whole = [multiple_of_32(ideal[0] * shrink), multiple_of_32(ideal[1] * shrink)]
        cells = p10_median * whole[1] / median_w / stride
        fits = "to fit it (sides up to multiples of 32)" if to_cap >= shrink else \
            f"as far as {MIN_CELLS:g} cells allow"
        r.decide("data.image_size", whole,
                 f"input {whole[0]}x{whole[1]} (height x width): {ideal[0]}x{ideal[1]} would give the "
                 f"10th-percentile {whose} {CELLS} heatmap cells but is past the compute cap of "
                 f"{cap_px / 1e6:.3f} Mpx per image ({plan.min_epochs} epochs of {facts.train_images} images in "
                 f"{BUDGET_SHARE:.0%} of the budget at {measured}): shrunk {fits}, that box ({p10_median:.0f} px in "
                 f"{frame} frames) now {cells:.1f} cells; a larger --budget keeps more detail")
        r.decide("data.tile_scale", None, "whole frames: tiles at the needed scale would hold as many pixels per "
                                          "epoch as the frames, so they would not train faster")
        return
    if not tiled:
        cells = p10_median * whole[1] / median_w / stride
        r.decide("data.image_size", whole,
                 f"input {whole[0]}x{whole[1]} (height x width): the 10th-percentile {whose}'s shorter side is "
                 f"{p10_median:.0f} px in {frame} frames; scaled by {whole[1] / median_w:.2f} it covers {cells:.1f} "
                 f"heatmap cells at stride {stride} (the aim: {CELLS}); sides multiples of 32, the frames' aspect")
        within = "within" if whole[0] * whole[1] <= cap_px else "past"
        r.decide("data.tile_scale", None,
                 f"whole frames: {whole[0]}x{whole[1]} is {within} the compute cap of {cap_px / 1e6:.2f} Mpx per image "
                 f"({plan.min_epochs} epochs of {facts.train_images} images in {BUDGET_SHARE:.0%} of the "
                 f"budget at {measured})" + ("" if within == "within" else
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
             f"({plan.min_epochs} epochs in {BUDGET_SHARE:.0%} of the budget at {measured}){too_wide}")
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


def epoch_pixels(r: Resolution, facts: Facts) -> tuple[float, float]:
    """(training pixels, validation pixels) one epoch goes through, at the resolved input, tiled or not."""
    scale = r.get("data.tile_scale")
    if scale is None:
        return whole_images(r, facts)
    h, w = input_hw(r)
    # As train/detection_loader.py deals them: an epoch holds as many random crops as the scaled frames hold
    # tiles' worth of pixels; validation runs the inference grid's overlapping tiles.
    crops = np.mean([max(1, round(w_ * h_ * scale * scale / (h * w))) for w_, h_ in facts.image_sizes])
    grid = _tiles_per_image(facts, scale, h, r.get("data.tile_overlap"))
    return facts.train_images * crops * h * w, facts.val_images * grid * h * w


# ---------------------------------------------------------------- augmentation


def augment(r: Resolution, facts: Facts) -> None:
    r.decide("augment.preset", "none", "none: the detection loader augments its own way (boxes move with the image)")
    flip, why = _vertical_flip(facts)
    r.decide("augment.vertical_flip", flip, why)


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
