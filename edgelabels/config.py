"""Typed experiment config: a YAML file, `--set a.b=value` overrides, unknown keys refused.

Every key is a field of a frozen dataclass below; the resolved config is saved as the run's
config.yaml, so a run can be reproduced from its own folder. Code never reads environment variables
for experiment settings.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from edgelabels.errors import UserError
from edgelabels.tasks import STAGES, TASKS


@dataclass(frozen=True)
class DataConfig:
    source: str = ""  # folder per label, or a Ground Truth manifest
    test_source: str | None = None  # a separate test folder/manifest (else test_fraction is held out)
    manifest: str | None = None  # a manifest whose source-refs point into `source`
    s3_root: str | None = None  # local folder standing in for s3://bucket/key
    image_size: int | list[int] | str = 224  # one number or [height, width], each 1-4096 (a 4096 px image is 50 MB)
    # detection: null = the whole image stretched to image_size; a number = the image scaled by it (1.0: native
    # pixels) and cut into image_size tiles: trained on tiles, answered by overlapping tiles merged into one answer
    tile_scale: float | str | None = None
    tile_overlap: float = 0.25  # share of a tile shared with its neighbour when answering, in [0, 0.9]
    grayscale: bool | str = False  # read as one channel, repeated for three-channel backbones
    resize: str = "bilinear"
    group_by: str | None = None  # regex on the file name: one group (patient) never spans two splits
    limit_per_label: int | None = None  # sample at most N images per label (seeded), 1-10**9
    test_fraction: float = 0.2  # Rekognition holds out 20%
    val_fraction: float = 0.1  # of what remains after the test split
    cache_max_gb: float = 4.0  # decoded, resized pixels are cached in memory up to this size (0-4096)
    class_names: list = field(default_factory=list)  # detection: YOLO class names by id, when there is no data.yaml


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "efficientnetb0"  # a registry name (models/backbones.py) or auto
    weights: str = "imagenet"  # imagenet | none | PATH to a no-top weights file | run:RUN_DIR
    fine_tune_layers: int = 20  # top weighted backbone layers unfrozen in stage b (-1: all), up to 100000
    dropout: float = 0.3  # in [0, 1)
    pooling: str = "avg"  # avg | max: max suits small local evidence (a faint test line in a photo)
    dense_units: int = 0  # an extra hidden dense layer in the head (0: none), up to 16384
    implementation: str = "edgelabels"  # segmentation: edgelabels (our U-Net decoder) | segmentation-models
    max_detections: int = 100  # detection: boxes the model's own decoding keeps per image (top-K), 1-10000
    stride: int | str = 4  # detection: output stride of the centre heatmap (4 or 8)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int | str = 5  # stage a: backbone frozen, head trained (1-10000); with patience, at most this many
    stage_a_trains: str = "auto"  # head | all | auto (head with pretrained weights, all with weights none)
    fine_tune_epochs: int | str = 5  # stage b: top layers unfrozen at a lower learning rate (0 skips it), up to 10000
    batch_size: int | str = 32  # 1-65536
    learning_rate: float | str = 1e-3  # in (0, 10]: 0 or less would not descend
    fine_tune_learning_rate: float | str = 1e-4  # in (0, 10]
    lr_schedule: str = "constant"  # constant | cosine (decays to 0 over each stage)
    class_weight: str | dict = "balanced"  # balanced | none | {label: weight}
    oversample: bool | str = False  # resample each epoch so every label is seen equally often
    loss: str = "crossentropy"  # crossentropy | focal
    focal_gamma: float = 2.0  # in [0, 100]
    label_smoothing: float = 0.0  # in [0, 1)
    monitor: str = "val_loss"  # val_loss | val_accuracy | val_auc: picks the saved best epoch
    workers: int = 2  # loader threads, 0-256 (0 and 1: the training thread itself)
    tensorboard: bool = False
    verbose: int = 1  # Keras progress bar (0 silent, 1 bar, 2 one line per epoch)
    distribute: str = "none"  # none | data_parallel: every JAX device (and host: train --coordinator), train/distribute.py
    patience: int | str | None = None  # early stopping: end a stage after this many epochs without a better monitor
    warmup_epochs: float | str = 0.0  # the learning rate rises linearly from 0 over these epochs of each stage
    ema: float | str | None = None  # exponential moving average of the weights (momentum, e.g. 0.99), validated
    #   and saved in place of the raw weights; null: none
    deterministic: bool = False  # identical weights from one seed on one machine (op determinism; slower)
    budget: str | None = None  # wall-clock budget of the training ("30m", "1h30m"): the recipe sizes epochs to
    #   it and training ends, keeping the best epoch, when it is spent
    # Wrong labels in the data (users' readings, a hurried annotator): none trains on every label as given; prune
    # first audits the source (edgelabels dataset audit: label_noise_folds out-of-fold trainings of this config,
    # confident learning) and trains on what is left without the suspects (RUN/audit/ keeps the audit)
    label_noise: str = "none"  # none | prune
    label_noise_folds: int = 4  # folds of the audit behind label_noise: prune (2-20)
    label_noise_rounds: int = 3  # its rounds at most (1-5; a classifier's: each trains without the last's suspects)


@dataclass(frozen=True)
class AugmentConfig:
    preset: str = "none"  # none | xray | photo
    transforms: list = field(default_factory=list)  # extra albumentations transforms: [{Name: {param: value}}]
    # detection: chance of a vertical flip of image and boxes together, for objects seen from any side (a cassette
    # upside down, bees from above); classification flips through augment.transforms (VerticalFlip)
    vertical_flip: float | str = 0.0


@dataclass(frozen=True)
class MaskingConfig:
    """How a keep-lungs stage keeps only the lungs (runtime/masking.py); also saved with every chained export."""

    threshold: float = 0.5  # lung probability above which a pixel is lung
    dilate: float = 0.02  # the mask grows by this share of the image's longer side (keeps the lung edges)
    crop: bool = False  # cut each image to the lungs' bounding box before resizing
    fill: int = 0  # grey level outside the lungs

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d, where: str = "masking") -> "MaskingConfig":
        masking = _build(cls, d, "masking.", where)
        _check_masking(masking, where)
        return masking


@dataclass(frozen=True)
class CropConfig:
    """How a crop-box stage cuts each image to a detected box (runtime/stages.py CropBox)."""

    label: str = "window"  # the detector's label to cut out: its most confident box above its assumed threshold
    margin: float = 0.25  # share of the box's size added on each side (keeps the printed C and T marks in)
    size: int | list[int] = field(default_factory=lambda: [64, 32])  # the crop's [height, width] (or one number), 1-4096
    orient_by: str | None = None  # a label (e.g. well) whose box centre is turned to lie below the crop's centre
    # the lowest detector score a box may have (0-1); null: each label's assumed threshold (F1-best per box on
    # the detector's validation split), which is stricter than "is there a window at all" needs
    min_confidence: float | None = None
    # A box of crop.label that cannot be the part sought is no box (the chain stops, the image gets no answer): a
    # detector's spot on a sheet of paper scored above min_confidence is not a window. Each is a [low, high] range
    # (null: not checked); the defaults hold every result window the synthetic cassettes draw, with margin (README).
    aspect: list | None = field(default_factory=lambda: [0.95, 6.0])  # the box's height / width in pixels: a
    #   window stands upright (turned up to 25 degrees, or upside down; a detector's box of a turned window can come
    #   out nearly square, 0.97 seen); one lying across (0.25-0.79) is turned 90 degrees
    # when crop.orient_by's box is found too, the box relative to it (in units of that box's size, the square root
    # of its area): the box's own size, and the distance between the two centres
    relative_size: list | None = field(default_factory=lambda: [0.4, 2.8])
    relative_distance: list | None = field(default_factory=lambda: [0.8, 3.8])

    @property
    def hw(self) -> tuple[int, int]:
        return (self.size, self.size) if isinstance(self.size, int) else (int(self.size[0]), int(self.size[1]))

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self), "size": list(self.hw)}

    @classmethod
    def from_json(cls, d, where: str = "crop") -> "CropConfig":
        crop = _build(cls, d, "crop.", where)
        _check_crop(crop, where)
        return crop


@dataclass(frozen=True)
class StageConfig:
    """One step before the model, e.g. {kind: keep-lungs, run: runs/unet-lungs, masking: {...}}."""

    kind: str = "keep-lungs"  # see tasks.STAGES
    run: str = ""  # the stage's own trained run directory (its model is exported beside the classifier's)
    masking: MaskingConfig = field(default_factory=MaskingConfig)  # keep-lungs only
    crop: CropConfig = field(default_factory=CropConfig)  # crop-box only


@dataclass(frozen=True)
class TuneConfig:
    """What `edgelabels tune` searches (edgelabels/tune/space.py). A key left null takes its task's default; one
    value is fixed; a list is searched (its choices; the config's own value is added); {low, high, log} is a range
    searched (it must hold the config's own value). The config's own values are the first trial."""

    backbone: str | list | None = None  # model.backbone (registry names whose model.weights can be had here)
    image_size: int | list | None = None  # data.image_size choices: numbers or [height, width] pairs
    learning_rate: float | list | dict | None = None  # train.learning_rate
    fine_tune_learning_rate: float | list | dict | None = None  # train.fine_tune_learning_rate
    batch_size: int | list | dict | None = None  # train.batch_size
    dropout: float | list | dict | None = None  # model.dropout (classification)
    fine_tune_layers: int | list | dict | None = None  # model.fine_tune_layers: stage b's depth (-1: all)
    augment: str | list | None = None  # augment.preset
    transforms: dict = field(default_factory=dict)  # {"Name.param": value | list | range} of augment.transforms
    imbalance: str | list | None = None  # classification: none | class-weights | oversample | focal
    # successive-halving | hyperband | none: trials cut by epochs. Successive halving by default: a budgeted study
    # here has a handful of trials, and Hyperband's brackets would leave each one almost nothing to compare with.
    pruner: str = "successive-halving"
    min_epochs: int | None = None  # epochs every trial trains before it may be pruned (null: a tenth, at least 1), up to 10000
    reduction_factor: int = 3  # the pruner's: about 1 in this many trials goes on at each rung (2-100)


# Keys that may be `auto`: the recipe (train/recipe.py) chooses them from the data and the budget before training
# and writes what it chose, with its reasons, into the run (config.yaml, recipe.json, train.log). Nothing past
# training ever sees `auto`.
AUTO = "auto"
AUTO_KEYS = ("task", "data.image_size", "data.tile_scale", "data.grayscale", "model.backbone", "model.weights",
             "model.stride", "train.epochs", "train.fine_tune_epochs", "train.batch_size", "train.learning_rate",
             "train.fine_tune_learning_rate", "train.class_weight", "train.oversample", "train.monitor",
             "train.patience", "train.warmup_epochs", "train.ema", "augment.preset", "augment.vertical_flip",
             "train.lr_schedule")

TEXT_KEYS = ("task", "model.backbone", "model.weights", "train.class_weight", "train.monitor", "augment.preset",
             "train.lr_schedule")


def _kinds(hint) -> str:
    """A type hint's kinds other than text and null, for a message: "int or list"."""
    return " or ".join(getattr(typing.get_origin(k) or k, "__name__", str(k)) for k in typing.get_args(hint)
                       if k not in (str, type(None)))


TUNE_SEARCHED = ("backbone", "image_size", "learning_rate", "fine_tune_learning_rate", "batch_size", "dropout",
                 "fine_tune_layers", "augment", "imbalance")
TUNE_RANGE_KEYS = ("low", "high", "log")
IMBALANCE_CHOICES = ("none", "class-weights", "oversample", "focal")


@dataclass(frozen=True)
class Config:
    # classification | multilabel (several labels per image, from a manifest) | segmentation (a U-Net on images/ +
    # masks/) | detection (boxes)
    task: str = "classification"  # or auto: from the source
    seed: int = 0  # 0 to 2**32 - 1 (what numpy's generators take)
    segment: str | None = None  # classification: a U-Net run directory; images keep only the lungs (a keep-lungs stage)
    detect: str | None = None  # classification: an exported detection run; images are cut to a box (a crop-box stage)
    stages: list = field(default_factory=list)  # steps before the model: [{kind, run, masking}] (see StageConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    crop: CropConfig = field(default_factory=CropConfig)  # with detect:
    tune: TuneConfig = field(default_factory=TuneConfig)  # what `edgelabels tune` searches

    @property
    def image_hw(self) -> tuple[int, int]:
        size = self.data.image_size
        if size == AUTO:
            raise ValueError("data.image_size is auto: resolve the config (train/recipe.py) first")
        if isinstance(size, int):
            return (size, size)
        return (int(size[0]), int(size[1]))

    def stage_list(self) -> list[StageConfig]:
        """The steps before the model: `stages:` as given, or `segment:` + `masking:` as one keep-lungs stage, or
        `detect:` + `crop:` as one crop-box stage."""
        if self.segment:
            return [StageConfig(kind="keep-lungs", run=self.segment, masking=self.masking)]
        if self.detect:
            return [StageConfig(kind="crop-box", run=self.detect, crop=self.crop)]
        return [_build(StageConfig, raw, f"stages[{i}].", "config") for i, raw in enumerate(self.stages)]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


CHOICES = {
    "train.class_weight": ("balanced", "none"),
    "train.loss": ("crossentropy", "focal"),
    "train.label_noise": ("none", "prune"),
    "train.stage_a_trains": ("auto", "head", "all"),
    "train.lr_schedule": ("constant", "cosine"),
    "train.distribute": ("none", "data_parallel"),
    "model.pooling": ("avg", "max"),
    "train.monitor": ("val_loss", "val_accuracy", "val_auc", "val_dice", "val_iou"),
    "model.implementation": ("edgelabels", "segmentation-models"),
    "augment.preset": ("none", "xray", "photo"),
    "tune.pruner": ("successive-halving", "hyperband", "none"),
}


@dataclass(frozen=True)
class Range:
    """The values a numeric key may take: low to high, either end open or closed."""

    low: float
    high: float
    open_low: bool = False
    open_high: bool = False

    def __contains__(self, value) -> bool:
        above = value > self.low if self.open_low else value >= self.low
        below = value < self.high if self.open_high else value <= self.high
        return above and below

    def __str__(self) -> str:
        return f"{'(' if self.open_low else '['}{_number(self.low)}, {_number(self.high)}{')' if self.open_high else ']'}"


def _number(value) -> str:
    """A bound as written: whole numbers in full (a seed's 4294967295, not 4.29497e+09), others by :g."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e18 else f"{value:g}"


# Every numeric key's allowed values (the caps are in each key's comment above). A value outside them would crash
# deep inside Keras or numpy (a negative seed, dropout 1.5, a 100000-pixel side asks 30 GB per image) or train
# silently wrong (a negative learning rate climbs the loss; 10**23 epochs never end).
RANGES = {
    "seed": Range(0, 2 ** 32 - 1),
    "data.image_size": Range(1, 4096),
    "data.limit_per_label": Range(1, 10 ** 9),
    "data.test_fraction": Range(0, 1, open_high=True),
    "data.val_fraction": Range(0, 1, open_high=True),
    "data.cache_max_gb": Range(0, 4096),
    "model.fine_tune_layers": Range(-1, 100_000),
    "model.dropout": Range(0, 1, open_high=True),
    "model.dense_units": Range(0, 16384),
    "model.max_detections": Range(1, 10_000),
    "train.epochs": Range(1, 10_000),
    "train.fine_tune_epochs": Range(0, 10_000),
    "train.batch_size": Range(1, 65536),
    "train.learning_rate": Range(0, 10, open_low=True),
    "train.fine_tune_learning_rate": Range(0, 10, open_low=True),
    "train.focal_gamma": Range(0, 100),
    "train.label_smoothing": Range(0, 1, open_high=True),
    "train.workers": Range(0, 256),
    "train.verbose": Range(0, 2),
    "augment.vertical_flip": Range(0, 1),
    "data.tile_scale": Range(0, 8, open_low=True),
    "data.tile_overlap": Range(0, 0.9),
    "train.patience": Range(1, 10_000),
    "train.warmup_epochs": Range(0, 10_000),
    "train.label_noise_folds": Range(2, 20),
    "train.label_noise_rounds": Range(1, 5),
    "train.ema": Range(0, 1, open_low=True, open_high=True),
    "tune.min_epochs": Range(1, 10_000),
    "tune.reduction_factor": Range(2, 100),
}
STRIDES = (4, 8)  # model.stride: what models/detector.py builds


_FLOAT_TEXT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
_PART = re.compile(r"(\d+(?:\.\d+)?)([hms])")
_SECONDS = {"h": 3600, "m": 60, "s": 1}


def parse_budget(text: str) -> float:
    """Seconds in "30m", "90s", "1h", "1h30m", "2.5m"; a bare number is refused (minutes or seconds?)."""
    cleaned = text.strip().lower().replace(" ", "")
    parts = _PART.findall(cleaned)
    if not cleaned or "".join(n + u for n, u in parts) != cleaned:
        raise UserError(f"--budget {text!r}: give a duration with its unit, e.g. 30m, 90s, 1h30m")
    seconds = sum(float(n) * _SECONDS[u] for n, u in parts)
    if seconds <= 0:
        raise UserError(f"--budget {text!r}: must be more than nothing")
    return seconds


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config (or start from defaults), apply `key=value` overrides, validate everything."""
    raw: dict = {}
    if path is not None:
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise UserError(f"{path}: config file not found") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark else ""
            raise UserError(f"{path}:{where} invalid YAML ({getattr(exc, 'problem', exc)})") from None
        if not isinstance(raw, dict):
            raise UserError(f"{path}: a config must be a mapping of keys, not {type(raw).__name__}")
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set {item!r}: expected key=value, e.g. train.epochs=3")
        _set_path(raw, key.strip(), _parse_value(value))
    where = str(path) if path else "config"
    return _build(Config, raw, "", where)


def config_from_dict(raw: dict, where: str = "config") -> Config:
    """A Config from a mapping shaped like the YAML file (e.g. Config.to_dict() with some keys changed), checked."""
    return _build(Config, raw, "", where)


def _parse_value(text: str):
    try:
        return yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text


def _set_path(raw: dict, dotted: str, value) -> None:
    node = raw
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


def _build(cls, raw, prefix: str, where: str):
    if not isinstance(raw, dict):
        raise UserError(f"{where}: {prefix.rstrip('.') or 'config'} must be a mapping, not {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields:
            near = difflib.get_close_matches(key, list(fields), n=1)
            hint = f" (did you mean {prefix}{near[0]}?)" if near else f" (known: {', '.join(fields)})"
            raise UserError(f"{where}: unknown key {prefix}{key}{hint}")
    values = {}
    for name, f in fields.items():
        if name not in raw:
            continue
        hint = hints[name]
        if raw[name] == AUTO and f"{prefix}{name}" in AUTO_KEYS:
            values[name] = AUTO
        elif isinstance(raw[name], str) and f"{prefix}{name}" in AUTO_KEYS and f"{prefix}{name}" not in TEXT_KEYS \
                and not (float in typing.get_args(hint) and _FLOAT_TEXT.fullmatch(raw[name].strip())):
            raise UserError(f"{where}: {prefix}{name} must be {_kinds(hint)} or auto, not {raw[name]!r}")
        elif dataclasses.is_dataclass(hint):
            values[name] = _build(hint, raw[name], f"{prefix}{name}.", where)
        else:
            values[name] = _check(raw[name], hint, f"{prefix}{name}", where)
    config = cls(**values)
    if cls is Config:
        _check_semantics(config, where)
        # crop: describes detect:'s stage; alone (or beside segment:/stages:) nothing would read it. A saved
        # config.yaml (it writes detect: null) holds crop: at its defaults: that is not a crop: given.
        crop, defaults = raw.get("crop") or {}, dataclasses.asdict(CropConfig())
        changed = any(crop.get(key, value) != value for key, value in defaults.items())
        if crop and not config.detect and ("detect" not in raw or changed):
            raise UserError(f"{where}: crop: applies with detect: (an exported detection run), which is not set; set "
                            "detect: RUN_DIR, or give a crop-box stage its own crop: under stages:")
    return config


def _check(value, hint, key: str, where: str):
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union \
        else (hint,)
    for kind in allowed:
        origin = typing.get_origin(kind) or kind
        if kind is type(None) and value is None:
            return None
        if origin is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if origin is float and isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
            return float(value)  # YAML 1.1 reads 1e-4 (no dot) as text; every user means the number
        if origin is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if origin in (str, bool, list, dict) and isinstance(value, origin):
            return value
    names = " or ".join("null" if k is type(None) else getattr(typing.get_origin(k) or k, "__name__", str(k))
                        for k in allowed)
    raise UserError(f"{where}: {key} must be {names}, not {value!r}")


def is_auto(config: Config) -> bool:
    """True when some key is still `auto` (the recipe has not chosen it yet)."""
    return bool(auto_keys(config))


def auto_keys(config: Config) -> list[str]:
    """The keys of config that are `auto`, in AUTO_KEYS order."""
    return [key for key in AUTO_KEYS if _get(config, key) == AUTO]


def _get(config, dotted: str):
    node = config
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


def _check_semantics(config: Config, where: str) -> None:
    if config.task == AUTO:
        if not config.data.source:
            raise UserError(f"{where}: data.source is required (task: auto reads the task from it)")
        _check_ranges(config, where)
        return  # the rest is checked once the recipe has chosen the task (it rebuilds the config through here)
    if config.task not in TASKS:
        raise UserError(f"{where}: task must be one of {', '.join(TASKS)}, not {config.task!r}")
    for key, choices in CHOICES.items():
        section, name = key.split(".")
        value = getattr(getattr(config, section), name)
        if isinstance(value, str) and value not in choices and value != AUTO:
            raise UserError(f"{where}: {key} must be one of {', '.join(choices)}, not {value!r}")
    size = config.data.image_size
    if isinstance(size, str) and size != AUTO:
        raise UserError(f"{where}: data.image_size must be a number, [height, width] or auto, not {size!r}")
    if isinstance(size, list) and (len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool)
                                                              for s in size)):
        raise UserError(f"{where}: data.image_size must be a number or [height, width], not {size!r}")
    _check_ranges(config, where)
    if config.train.budget is not None:
        try:
            parse_budget(config.train.budget)
        except UserError as exc:
            raise UserError(f"{where}: train.budget: {str(exc).split(': ', 1)[1]}") from None
    if config.model.stride not in (*STRIDES, AUTO):
        raise UserError(f"{where}: model.stride must be one of {', '.join(map(str, STRIDES))}, "
                        f"not {config.model.stride}")
    t = config.train
    if isinstance(t.class_weight, dict):
        bad = {k: v for k, v in t.class_weight.items() if not isinstance(v, (int, float)) or not 0 < v <= 1e6}
        if bad:
            raise UserError(f"{where}: train.class_weight weights must be numbers in (0, 1e6]: {bad}")
    if not config.data.source:
        raise UserError(f"{where}: data.source is required (a folder per label or a manifest; "
                        "for segmentation a folder with images/ and masks/)")
    _check_task(config, where)


def _check_ranges(config: Config, where: str) -> None:
    for key, allowed in RANGES.items():
        node = config
        for part in key.split("."):
            node = getattr(node, part)
        for value in node if isinstance(node, list) else [node]:
            if value is not None and value != AUTO and value not in allowed:
                raise UserError(f"{where}: {key} must be in {allowed}, not {value!r}")


def _check_task(config: Config, where: str) -> None:
    monitors = TASKS[config.task].monitors
    if config.train.monitor not in (*monitors, AUTO):
        raise UserError(f"{where}: train.monitor for {config.task} must be one of {', '.join(monitors)}, "
                        f"not {config.train.monitor!r}")
    if (config.segment or config.detect or config.stages) and not TASKS[config.task].takes_stages:
        raise UserError(f"{where}: segment:, detect: (or stages:) apply to classification runs, not to a "
                        f"{config.task} run")
    if sum(map(bool, (config.segment, config.detect, config.stages))) > 1:
        raise UserError(f"{where}: give one of segment: (with masking:), detect: (with crop:) or stages:; to run "
                        "several steps, list them in order under stages:")
    _check_masking(config.masking, where)
    _check_crop(config.crop, where)
    if config.augment.vertical_flip not in (0, AUTO) and config.task != "detection":
        raise UserError(f"{where}: augment.vertical_flip is for detection (boxes flip with the image); a "
                        f"{config.task} run flips with augment.transforms: [{{VerticalFlip: {{p: 0.5}}}}]")
    _check_tune(config.tune, where)
    for i, raw in enumerate(config.stages):
        if not isinstance(raw, dict):
            raise UserError(f"{where}: stages[{i}] must be a mapping like {{kind: keep-lungs, run: RUN_DIR}}")
        stage = _build(StageConfig, raw, f"stages[{i}].", where)
        if stage.kind not in STAGES:
            raise UserError(f"{where}: stages[{i}].kind must be one of {', '.join(STAGES)}, not {stage.kind!r}")
        if not stage.run:
            raise UserError(f"{where}: stages[{i}].run is required (the stage's trained run directory)")
        _check_masking(stage.masking, f"{where}: stages[{i}]")
        _check_crop(stage.crop, f"{where}: stages[{i}]")
    if not TASKS[config.task].reads_manifests:
        if config.data.manifest or config.data.test_source:
            raise UserError(f"{where}: {config.task} reads data.source/images and data.source/masks; "
                            "data.manifest and data.test_source are for classification")
    elif config.model.implementation != "edgelabels":
        raise UserError(f"{where}: model.implementation {config.model.implementation!r} is for segmentation "
                        "(task: segmentation)")


def _check_crop(c: CropConfig, where: str) -> None:
    size = c.size
    if isinstance(size, list) and (len(size) != 2 or not all(isinstance(s, int) and 0 < s <= 4096 for s in size)) \
            or isinstance(size, int) and not 0 < size <= 4096:
        raise UserError(f"{where}: crop.size must be a number or [height, width] in [1, 4096], not {size!r}")
    if not 0 <= c.margin <= 2:
        raise UserError(f"{where}: crop.margin must be in [0, 2] (a share of the box added on each side), "
                        f"not {c.margin:g}")
    if c.min_confidence is not None and not 0 < c.min_confidence < 1:
        raise UserError(f"{where}: crop.min_confidence must be in (0, 1) or null, not {c.min_confidence:g}")
    if not c.label or c.label == c.orient_by:
        raise UserError(f"{where}: crop.label must name a detected label, and crop.orient_by another one")
    for name in ("aspect", "relative_size", "relative_distance"):
        bounds = getattr(c, name)
        numbers = bounds is not None and all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in bounds)
        if bounds is not None and (len(bounds) != 2 or not numbers or not 0 < bounds[0] <= bounds[1]):
            raise UserError(f"{where}: crop.{name} must be [low, high] with 0 < low <= high, or null, not {bounds!r}")


def _check_masking(m: MaskingConfig, where: str) -> None:
    if not 0 < m.threshold < 1 or not 0 <= m.dilate < 0.5 or not 0 <= m.fill <= 255:
        raise UserError(f"{where}: masking.threshold must be in (0, 1), masking.dilate in [0, 0.5), "
                        "masking.fill in 0-255")


def _check_tune(tune: TuneConfig, where: str) -> None:
    """The tune: section's shapes: ranges {low, high, log}, non-empty lists of plain values, known choices. What
    needs the task and the registry (a backbone's weights, the config's value inside a range) is tune/space.py's."""
    searched = {f"tune.{name}": getattr(tune, name) for name in TUNE_SEARCHED}
    for key, spec in tune.transforms.items():
        name, dot, param = str(key).partition(".")
        if not (name and dot and param):
            raise UserError(f"{where}: tune.transforms keys are Name.param of augment.transforms (e.g. Rotate.limit), "
                            f"not {key!r}")
        searched[f"tune.transforms.{key}"] = spec
    for key, spec in searched.items():
        if isinstance(spec, dict):
            _check_tune_range(spec, key, where)
        elif isinstance(spec, list):
            pairs = key == "tune.image_size"
            if not spec or not all(_plain(v) or pairs and isinstance(v, list) for v in spec):
                raise UserError(f"{where}: {key} must be one value, a non-empty list of values or "
                                f"{{low, high, log}}, not {spec!r}")
    for key, allowed in (("imbalance", IMBALANCE_CHOICES), ("augment", CHOICES["augment.preset"])):
        values = getattr(tune, key)
        for value in values if isinstance(values, list) else [] if values is None else [values]:
            if value not in allowed:
                raise UserError(f"{where}: tune.{key} choices must be among {', '.join(allowed)}, not {value!r}")


def _plain(value) -> bool:
    return isinstance(value, (str, int, float, bool))


def _check_tune_range(spec: dict, key: str, where: str) -> None:
    for name in spec:
        if name not in TUNE_RANGE_KEYS:
            near = difflib.get_close_matches(str(name), TUNE_RANGE_KEYS, n=1)
            hint = f" (did you mean {key}.{near[0]}?)" if near else " (a range is {low, high, log})"
            raise UserError(f"{where}: unknown key {key}.{name}{hint}")
    low, high, log = spec.get("low"), spec.get("high"), spec.get("log", False)
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high))
    if not numbers or not low < high or not isinstance(log, bool) or (log and low <= 0):
        text = " (YAML reads 1e-4 as text: write 1.0e-4)" if any(isinstance(v, str) for v in (low, high)) else ""
        raise UserError(f"{where}: {key} range needs numbers low < high (low > 0 with log: true), not {spec!r}"
                        f"{text}")
