"""The config the recipe is resolving, and what every task's choosers share (train/recipe.py drives them).

`Resolution.decide` sets an `auto` key only, and records the choice with its reason; `Plan` is the time the
epochs may take and this machine's measured speed, which every size and schedule choice reads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from edgelabels.config import Config, auto_keys
from edgelabels.train.recipe_facts import Facts

BUDGET_SHARE = 0.8  # of the budget planned for epochs; the rest: reading, caching, saving, the slower first epoch
EPOCH_OVERHEAD_S = 1.0  # per epoch: history, checkpoint and model.keras written
VAL_COST = 0.35  # a validation image costs about a third of a training one (forward pass only)
DEEP_FROM = 20_000  # training images from which a from-scratch CNN may be the deeper one


@dataclass(frozen=True)
class Choice:
    key: str
    value: object
    reason: str

    def to_json(self) -> dict:
        return {"key": self.key, "value": self.value, "reason": self.reason}


@dataclass(frozen=True)
class Plan:
    plan_s: float  # BUDGET_SHARE of the budget: what the epochs may take
    pixels_per_s: float  # training pixels per second of the chosen model, measured here
    min_epochs: int  # the task's epochs that must fit the budget at the chosen input (the compute cap)


class Resolution:
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


def multiple_of_32(side: float) -> int:
    """Up to a multiple of 32 (never fewer cells than asked), at least 64."""
    return max(64, int(math.ceil(side / 32 - 1e-9)) * 32)


def input_hw(r: Resolution) -> tuple[int, int]:
    size = r.get("data.image_size")
    return (size, size) if isinstance(size, int) else tuple(size)


def whole_images(r: Resolution, facts: Facts) -> tuple[float, float]:
    """(training pixels, validation pixels) one epoch of whole images goes through, at the resolved input."""
    h, w = input_hw(r)
    return facts.train_images * h * w, facts.val_images * h * w


def counted_backbone(facts: Facts) -> str:
    """smallcnn (a VGG-style CNN, 4 blocks) unless the data is large enough to feed a deeper one."""
    return "deepcnn" if facts.train_images >= DEEP_FROM else "smallcnn"


def unweighted(why: str) -> Callable[[Resolution, Facts], None]:
    """The imbalance chooser of a task whose loss takes no class weights: both keys off, and why."""

    def decide(r: Resolution, facts: Facts) -> None:
        r.decide("train.class_weight", "none", f"none: {why}")
        r.decide("train.oversample", False, f"false: {why}")

    return decide
