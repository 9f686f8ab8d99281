"""The search space: the config's tune: section, each key left null filled with its task's default (the task
table's tune_backbones and tune_keys, tasks.py).

A dimension is one tune key: one value (fixed), a list (choices; the config's own value is added) or a range
{low, high, log} (it must hold the config's own value). The config's own values are thus always a point of
the space, enqueued as trial 0, as AutoKeras starts from known-good configurations. `trial_config` turns a
trial's parameters back into a Config. `Space.objective` is what the study ranks trials on: train.monitor, but
never val_loss while the loss itself is searched (focal loss is some 16 times smaller than crossentropy for the
same predictions: ranked on it, a focal trial wins whatever its predictions). Imports nothing heavy: Optuna's
distributions are made in `distributions`.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

from edgelabels.config import IMBALANCE_CHOICES, Config, config_from_dict
from edgelabels.errors import UserError
from edgelabels.tasks import get_task

# tune key -> the config key it sets (imbalance and transforms.* set several: see _overrides).
CONFIG_KEYS = {
    "backbone": "model.backbone", "image_size": "data.image_size", "learning_rate": "train.learning_rate",
    "fine_tune_learning_rate": "train.fine_tune_learning_rate", "batch_size": "train.batch_size",
    "dropout": "model.dropout", "fine_tune_layers": "model.fine_tune_layers", "augment": "augment.preset",
}
INTEGER_KEYS = ("batch_size", "fine_tune_layers")
IMBALANCE = {  # one choice of imbalance handling -> the train keys it sets
    "none": {"class_weight": "none", "oversample": False, "loss": "crossentropy"},
    "class-weights": {"class_weight": "balanced", "oversample": False, "loss": "crossentropy"},
    "oversample": {"class_weight": "none", "oversample": True, "loss": "crossentropy"},
    "focal": {"class_weight": "none", "oversample": False, "loss": "focal"},
}
assert tuple(IMBALANCE) == IMBALANCE_CHOICES
LOSS_FREE_MONITOR = "val_auc"  # ranks trials when the loss is searched: the same for focal and crossentropy


@dataclass(frozen=True)
class Dimension:
    """One tune key: `choices` (one of them: fixed) or a range [low, high]; `own` is the config's own value."""

    name: str
    own: object
    choices: tuple = ()
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False

    @property
    def searched(self) -> bool:
        return self.low is not None or len(self.choices) > 1

    def describe(self) -> str:
        if self.low is not None:
            return f"{self.name} in [{self.low:g}, {self.high:g}]{' (log)' if self.log else ''}"
        return f"{self.name} in {{{', '.join(map(str, self.choices))}}}" if self.searched \
            else f"{self.name} = {self.choices[0]}"


@dataclass(frozen=True)
class Space:
    base: Config  # the config the study searches around
    dimensions: tuple[Dimension, ...]

    @property
    def searched(self) -> list[Dimension]:
        return [d for d in self.dimensions if d.searched]

    @property
    def objective(self) -> str:
        """The validation value trials are ranked on, and each trial keeps its best epoch by: train.monitor, or
        val_auc in place of val_loss when the search mixes loss functions (imbalance with focal and another)."""
        monitor = self.base.train.monitor
        imbalance = next((d for d in self.searched if d.name == "imbalance"), None)
        mixes_losses = imbalance is not None and "focal" in imbalance.choices and len(imbalance.choices) > 1
        return LOSS_FREE_MONITOR if monitor == "val_loss" and mixes_losses else monitor

    def own_params(self) -> dict:
        """Trial 0: the config's own value of every searched key."""
        return {d.name: d.own for d in self.searched}

    def size(self) -> float:
        """How many distinct points the space has (inf with any range)."""
        return math.prod(math.inf if d.low is not None else len(d.choices) for d in self.searched)

    def distributions(self) -> dict:
        import optuna

        made = {}
        for d in self.searched:
            if d.low is None:
                made[d.name] = optuna.distributions.CategoricalDistribution(d.choices)
            elif d.integer:
                made[d.name] = optuna.distributions.IntDistribution(int(d.low), int(d.high), log=d.log)
            else:
                made[d.name] = optuna.distributions.FloatDistribution(d.low, d.high, log=d.log)
        return made

    def trial_config(self, params: dict, where: str = "tune") -> Config:
        """The base config with a trial's parameters (and every fixed key) applied, checked like any config."""
        raw = self.base.to_dict()
        values = {d.name: params.get(d.name, d.own) if d.searched else d.choices[0] for d in self.dimensions}
        for name, value in values.items():
            _apply(raw, name, value)
        raw["train"]["monitor"] = self.objective
        return config_from_dict(raw, where)


def build_space(config: Config, where: str = "tune") -> Space:
    """The config's tune: section checked against its task and the backbone registry, defaults filled in."""
    task = config.task
    allowed = get_task(task).tune_keys
    given = {name: getattr(config.tune, name) for name in CONFIG_KEYS if getattr(config.tune, name) is not None}
    given |= {"imbalance": config.tune.imbalance} if config.tune.imbalance is not None else {}
    given |= {f"transforms.{k}": v for k, v in config.tune.transforms.items()}
    for name in given:
        if name.split(".")[0] not in allowed:
            raise UserError(f"{where}: tune.{name.split('.')[0]} does not apply to a {task} run "
                            f"(its keys: {', '.join(allowed)})")
    specs = {**_defaults(config), **given}
    dimensions = tuple(_dimension(name, spec, _own_value(config, name), where) for name, spec in specs.items())
    for d in dimensions:
        if d.name == "backbone":
            _check_backbones(config, d.choices, where)
    return Space(base=config, dimensions=dimensions)


def _defaults(config: Config) -> dict:
    """What a task searches when tune: does not say: the learning rates a decade either side, half and double
    the batch size, and per task the from-scratch backbones, dropout, imbalance handling, augmentation."""
    t, m, task = config.train, config.model, get_task(config.task)
    keys = task.tune_keys
    found = {"learning_rate": _decade(t.learning_rate),
             "batch_size": sorted({max(1, t.batch_size // 2), t.batch_size, t.batch_size * 2})}
    if t.fine_tune_epochs:
        found["fine_tune_learning_rate"] = _decade(t.fine_tune_learning_rate)
        if m.fine_tune_layers != -1:
            found["fine_tune_layers"] = sorted({m.fine_tune_layers, m.fine_tune_layers * 2, -1})
    if m.weights == "none":
        found["backbone"] = [m.backbone] + [b for b in task.tune_backbones if b != m.backbone]
    if "dropout" in keys:
        found["dropout"] = {"low": 0.0, "high": max(0.5, m.dropout)}
    if "imbalance" in keys:
        found["imbalance"] = list(IMBALANCE_CHOICES)
    if "augment" in keys:
        found["augment"] = sorted({config.augment.preset, "none"})
    return found


def _decade(value: float) -> dict:
    return {"low": value / 10, "high": value * 10, "log": True}


def _own_value(config: Config, name: str):
    """The config's own value of a tune key, as a trial parameter."""
    if name == "image_size":
        return _size_name(config.data.image_size)
    if name == "imbalance":
        t = config.train
        return "focal" if t.loss == "focal" else "oversample" if t.oversample else \
            "none" if t.class_weight == "none" else "class-weights"
    if name.startswith("transforms."):
        _, transform, param = name.split(".", 2)
        for entry in config.augment.transforms:
            if isinstance(entry, dict) and isinstance(entry.get(transform), dict) and param in entry[transform]:
                return entry[transform][param]
        raise UserError(f"tune: tune.{name}: augment.transforms has no {transform} with a {param} parameter")
    section, key = CONFIG_KEYS[name].split(".")
    return getattr(getattr(config, section), key)


def _dimension(name: str, spec, own, where: str) -> Dimension:
    integer = name in INTEGER_KEYS
    if isinstance(spec, dict):
        low, high, log = float(spec["low"]), float(spec["high"]), bool(spec.get("log", False))
        if integer and (low != int(low) or high != int(high)):
            raise UserError(f"{where}: tune.{name} range must have whole numbers, not {spec!r}")
        if not isinstance(own, (int, float)) or not low <= own <= high:
            raise UserError(f"{where}: tune.{name} range [{low:g}, {high:g}] must hold the config's own value "
                            f"{own!r} (trial 0 is the config as written)")
        return Dimension(name, own, low=low, high=high, log=log, integer=integer)
    values = spec if isinstance(spec, list) else [spec]
    if name == "image_size":
        values = [_size_name(v) for v in values]
    if not isinstance(spec, list) and values[0] != own:
        return Dimension(name, values[0], choices=(values[0],), integer=integer)  # fixed: every trial, trial 0 too
    return Dimension(name, own, choices=tuple(dict.fromkeys([own, *values])), integer=integer)


def _size_name(size) -> str:
    """An image size as a categorical choice: "32" or "120x160" (Optuna's choices are plain values)."""
    if isinstance(size, list):
        if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
            raise UserError(f"tune: tune.image_size choices are numbers or [height, width], not {size!r}")
        return f"{size[0]}x{size[1]}" if size[0] != size[1] else str(size[0])
    if not isinstance(size, int) or size <= 0:
        raise UserError(f"tune: tune.image_size choices are positive numbers or [height, width], not {size!r}")
    return str(size)


def _check_backbones(config: Config, names: tuple, where: str) -> None:
    """Only backbones whose model.weights can be had here: none (any), a local file or run: (that one backbone:
    those weights are its own), imagenet (its weights file already in KERAS_HOME/models: nothing is downloaded)."""
    from edgelabels.models.backbones import BACKBONES, keras_home

    weights = config.model.weights
    for name in names:
        spec = BACKBONES.get(name)
        if spec is None:
            raise UserError(f"{where}: tune.backbone: unknown backbone {name!r} (choose from {', '.join(BACKBONES)})")
        if weights == "none" or name == config.model.backbone:
            continue
        if weights != "imagenet":
            raise UserError(f"{where}: tune.backbone: model.weights {weights} holds {config.model.backbone}'s "
                            f"weights, not {name}'s (search backbones with model.weights none)")
        if spec.imagenet_file is None or not (keras_home() / "models" / spec.imagenet_file).is_file():
            raise UserError(f"{where}: tune.backbone: {name}'s imagenet weights are not in {keras_home() / 'models'} "
                            "(nothing is downloaded during a study)")


def _apply(raw: dict, name: str, value) -> None:
    """Set a tune key's value in a config mapping (Config.to_dict()'s shape)."""
    if name == "imbalance":
        settings = dict(IMBALANCE[value])
        if value == "class-weights" and raw["train"]["class_weight"] != "none":
            settings["class_weight"] = raw["train"]["class_weight"]  # the config's own weights (a mapping) stay
        raw["train"].update(settings)
    elif name == "image_size":
        h, _, w = str(value).partition("x")
        raw["data"]["image_size"] = [int(h), int(w)] if w else int(h)
    elif name.startswith("transforms."):
        _, transform, param = name.split(".", 2)
        transforms = copy.deepcopy(raw["augment"]["transforms"])
        for entry in transforms:
            if isinstance(entry, dict) and isinstance(entry.get(transform), dict) and param in entry[transform]:
                entry[transform][param] = value
        raw["augment"]["transforms"] = transforms
    else:
        section, key = CONFIG_KEYS[name].split(".")
        raw[section][key] = int(value) if name in INTEGER_KEYS else value


def trial_label(params: dict) -> str:
    """A trial's parameters in one short line."""
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def space_summary(space: Space) -> list[str]:
    return [d.describe() for d in space.dimensions]
