"""Two-stage transfer learning, read top to bottom:

1. dataset -> usable images -> (limit per label) -> grouped, stratified split, written to the run
2. model = registered backbone + head; weights imagenet | none | file | run:DIR (in-domain transfer)
3. stage a: backbone frozen, head trained at train.learning_rate
4. stage b: top model.fine_tune_layers unfrozen (BatchNorm stays in inference mode) at
   train.fine_tune_learning_rate
Every epoch: history.csv, checkpoint/last.keras + state.json, and model.keras when the monitored
validation metric improves, all written atomically. --resume continues after the last completed epoch.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import sys
from pathlib import Path

import numpy as np

from edgelabels import atomic
from edgelabels.config import Config
from edgelabels.errors import UserError

log = logging.getLogger("edgelabels.train")


# ---------------------------------------------------------------- data


def prepare_split(config: Config, run_dir: Path):
    """The split for this run: read back on resume, else built from the sources and written."""
    from edgelabels.data.splits import make_split, read_split, write_split
    from edgelabels.data.sources import load_dataset
    from edgelabels.data.validate import usable_samples

    splits_dir = run_dir / "splits"
    if (splits_dir / "train.txt").exists():
        return read_split(splits_dir)
    d = config.data
    if config.task == "segmentation":
        from edgelabels.data.masks import load_mask_pairs

        dataset = load_mask_pairs(d.source, group_by=d.group_by)
        for problem in dataset.problems:
            log.warning("skipped %s: %s", problem.path, problem.problem)
    else:
        dataset = load_dataset(d.source, manifest=d.manifest, s3_root=d.s3_root, group_by=d.group_by)
        _drop_unusable(dataset, usable_samples)
    multi = [s for s in dataset.samples if len(s.labels) != 1]
    if multi:
        raise UserError(f"{multi[0].path}: {len(multi)} images have several labels; "
                        "classification training needs exactly one label per image")
    if d.limit_per_label:
        dataset.samples = _limit_per_label(dataset.samples, d.limit_per_label, config.seed)
    test_dataset = None
    if d.test_source:
        test_dataset = load_dataset(d.test_source, s3_root=d.s3_root, group_by=d.group_by)
        _drop_unusable(test_dataset, usable_samples)
    split = make_split(dataset, test_fraction=d.test_fraction, val_fraction=d.val_fraction, seed=config.seed,
                       test_dataset=test_dataset)
    if not split.train or not split.val:
        raise UserError(f"{d.source}: too few images for a train and a validation split "
                        f"({len(split.train)} train, {len(split.val)} val)")
    write_split(split, splits_dir)
    return split


def _drop_unusable(dataset, usable_samples) -> None:
    samples, problems = usable_samples(dataset)
    for problem in problems:
        log.warning("skipped %s: %s", problem.path, problem.problem)
    dataset.samples = samples


def _limit_per_label(samples, limit: int, seed: int):
    rng = np.random.default_rng(seed)
    kept = []
    for label in sorted({s.label for s in samples}):
        these = [s for s in samples if s.label == label]
        chosen = sorted(rng.choice(len(these), size=min(limit, len(these)), replace=False))
        kept.extend(these[i] for i in chosen)
    return kept


def class_weights(config: Config, labels: list[str], y: np.ndarray) -> np.ndarray | None:
    """Per-label loss weights: balanced = n / (K * n_label), as scikit-learn computes them."""
    cw = config.train.class_weight
    if cw == "none":
        return None
    if cw == "balanced":
        counts = np.bincount(y, minlength=len(labels)).astype(np.float64)
        present = counts > 0
        weights = np.ones(len(labels))
        weights[present] = len(y) / (present.sum() * counts[present])
        return weights.astype(np.float32)
    unknown = set(cw) - set(labels)
    if unknown:
        raise UserError(f"train.class_weight: unknown labels {sorted(unknown)} (labels: {labels})")
    return np.asarray([float(cw.get(name, 1.0)) for name in labels], np.float32)


# ---------------------------------------------------------------- model


def build_model(config: Config, num_classes: int):
    from edgelabels.models.classifier import build_classifier

    m = config.model
    height, width = config.image_hw
    from_run = m.weights.startswith("run:")
    weights = None if from_run else m.weights
    if config.task == "segmentation":
        model = build_segmenter(config, weights)
    else:
        model = build_classifier(m.backbone, num_classes, height, width, weights=weights, dropout=m.dropout,
                                 dense_units=m.dense_units, pooling=m.pooling)
    if from_run:
        copy_backbone_from_run(model, Path(m.weights[4:]), m.backbone)
    return model


def build_segmenter(config: Config, weights):
    """A U-Net from the chosen provider: ours (backend-agnostic) or segmentation-models (TensorFlow only)."""
    height, width = config.image_hw
    if config.model.implementation == "segmentation-models":
        from edgelabels.models.sm_unet import build_sm_unet

        return build_sm_unet(config.model.backbone, height, width, weights=weights)
    from edgelabels.models.unet import build_unet

    return build_unet(config.model.backbone, height, width, weights=weights)


def copy_backbone_from_run(model, source_dir: Path, backbone: str) -> int:
    """In-domain transfer: initialise the backbone with the one trained in an earlier run.

    Weights go layer by layer, so a classifier's backbone initialises another classifier or a U-Net's
    encoder (which holds the backbone's layers up to its deepest skip). Layers pair by name when every
    name is found (keras.applications -> segmentation-models' encoder, which lacks the Normalization
    layer), else by graph order: keras.applications names some layers by a session counter
    (EfficientNet's `normalization_3`). Each pair must be the same kind of layer with the same weight
    shapes. Returns layers copied.
    """
    import yaml

    from edgelabels.train.run import load_keras_model

    model_path = source_dir / "model.keras"
    if not model_path.is_file():
        raise UserError(f"model.weights: run:{source_dir}: no model.keras there (train that run first)")
    source_config = yaml.safe_load((source_dir / "config.yaml").read_text()) or {}
    source_backbone = (source_config.get("model") or {}).get("backbone")
    if source_backbone != backbone:
        raise UserError(f"model.weights: run:{source_dir} trained a {source_backbone} backbone, not {backbone}")
    source = [layer for layer in load_keras_model(model_path).get_layer("backbone").layers if layer.weights]
    target = [layer for layer in _backbone_layers(model) if layer.weights]
    by_name = {layer.name: layer for layer in source}
    if all(layer.name in by_name for layer in target):
        pairs = [(layer, by_name[layer.name]) for layer in target]  # e.g. keras.applications -> sm's encoder
    elif 0 < len(target) <= len(source):
        pairs = list(zip(target, source))
    else:
        raise UserError(f"model.weights: run:{source_dir}: its backbone has {len(source)} weighted layers, "
                        f"this model's needs {len(target)}")
    for mine, theirs in pairs:
        shapes = [tuple(w.shape) for w in mine.weights], [tuple(w.shape) for w in theirs.weights]
        if type(mine) is not type(theirs) or shapes[0] != shapes[1]:
            raise UserError(f"model.weights: run:{source_dir}: layer {theirs.name} {shapes[1]} does not fit "
                            f"{mine.name} {shapes[0]}")
        mine.set_weights(theirs.get_weights())
    log.info("model.weights: %d backbone layers copied from %s", len(target), source_dir)
    return len(target)


def _backbone_layers(model) -> list:
    """The model's backbone layers in graph order (classifiers and both U-Net providers nest it as "backbone")."""
    return list(model.get_layer("backbone").layers)


def compile_model(model, config: Config, learning_rate: float, steps: int = 0) -> None:
    """steps: optimizer steps in this stage, for the cosine schedule."""
    import keras

    t = config.train
    if t.lr_schedule == "cosine" and steps:
        learning_rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=steps)
    if config.task == "segmentation":
        from edgelabels.models.losses import bce_dice_loss, dice_coefficient, iou_coefficient

        model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=bce_dice_loss,
                      metrics=[keras.metrics.MeanMetricWrapper(dice_coefficient, name="dice"),
                               keras.metrics.MeanMetricWrapper(iou_coefficient, name="iou")])
        return
    if t.loss == "focal":
        loss = keras.losses.CategoricalFocalCrossentropy(gamma=t.focal_gamma, label_smoothing=t.label_smoothing)
    else:
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=t.label_smoothing)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss,
                  metrics=[keras.metrics.CategoricalAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")],
                  weighted_metrics=[])


# ---------------------------------------------------------------- run bookkeeping


class RunState:
    """checkpoint/state.json: which stage, how many epochs done in it, the best monitored value."""

    def __init__(self, path: Path, monitor: str):
        self.path = path
        self.monitor = monitor
        self.data = {"stage": "a", "epoch": 0, "best": None, "best_epoch": None, "done": False}
        if path.exists():
            self.data.update(json.loads(path.read_text()))

    def improved(self, value: float) -> bool:
        best = self.data["best"]
        if best is None or not np.isfinite(best):
            return bool(np.isfinite(value))
        return value < best if self.monitor == "val_loss" else value > best

    def save(self) -> None:
        atomic.write_json(self.path, self.data)


def make_epoch_callback(run_dir: Path, state: RunState, stage: str):
    import keras

    class EpochEnd(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = {k: float(v) for k, v in (logs or {}).items()}
            _append_history(run_dir / "history.csv", stage, epoch + 1, logs)
            value = logs.get(state.monitor, float("nan"))
            saved = ""
            if state.improved(value):
                with atomic.temp_path(run_dir / "model.keras") as tmp:
                    self.model.save(tmp)
                state.data.update(best=value, best_epoch=f"{stage}{epoch + 1}")
                saved = " (best so far: model.keras saved)"
            with atomic.temp_path(run_dir / "checkpoint" / "last.keras") as tmp:
                self.model.save(tmp)
            state.data.update(stage=stage, epoch=epoch + 1)
            state.save()
            summary = " ".join(f"{k}={v:.4f}" for k, v in sorted(logs.items()))
            log.info("stage %s epoch %d: %s%s", stage, epoch + 1, summary, saved)

    return EpochEnd()


def _append_history(path: Path, stage: str, epoch: int, logs: dict) -> None:
    rows = list(csv.DictReader(io.StringIO(path.read_text()))) if path.exists() else []
    rows = [r for r in rows if not (r["stage"] == stage and int(r["epoch"]) >= epoch)]  # a resumed epoch replaces
    rows.append({"stage": stage, "epoch": epoch, **{k: f"{v:.6g}" for k, v in logs.items()}})
    fields = list(dict.fromkeys(k for r in rows for k in r))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    atomic.write_text(path, out.getvalue())


def _attach_log(run_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(run_dir / "train.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.getLogger("edgelabels").addHandler(handler)
    logging.getLogger("edgelabels").setLevel(logging.INFO)
    return handler


def make_batches(config: Config, run_dir: Path, split, labels: list[str], spec, verbose: int):
    """Training and validation batches: images + masks for a U-Net, images + labels for a classifier
    (through the lung chain when the config names `segment:`)."""
    from edgelabels.data.augment import build_augmenter
    from edgelabels.train.loader import ImageBatches, MaskBatches, MaskCache, PixelCache

    t = config.train
    budget = config.data.cache_max_gb * 1e9
    augment = build_augmenter(config.augment.preset, config.augment.transforms, seed=config.seed)
    read = lung_chain(config, run_dir, split, progress=verbose == 1) if config.segment else None
    train_cache = PixelCache([s.path for s in split.train], spec, budget, read=read)
    val_cache = PixelCache([s.path for s in split.val], spec, budget - train_cache.nbytes, read=read)
    if config.task == "segmentation":
        log.info("train %d, val %d, test %d image/mask pairs", len(split.train), len(split.val), len(split.test))
        return (MaskBatches(train_cache, MaskCache(train_cache.paths, spec.height, spec.width), t.batch_size,
                            augment=augment, shuffle=True, seed=config.seed, workers=t.workers),
                MaskBatches(val_cache, MaskCache(val_cache.paths, spec.height, spec.width), t.batch_size,
                            workers=t.workers))
    index = {name: i for i, name in enumerate(labels)}
    y_train = np.array([index[s.label] for s in split.train])
    y_val = np.array([index[s.label] for s in split.val])
    weights = class_weights(config, labels, y_train)
    log.info("labels %s; train %d, val %d, test %d images; train counts %s; class weights %s", labels,
             len(split.train), len(split.val), len(split.test), np.bincount(y_train, minlength=len(labels)).tolist(),
             None if weights is None else np.round(weights, 3).tolist())
    return (ImageBatches(train_cache, y_train, len(labels), t.batch_size, augment=augment, class_weights=weights,
                         shuffle=True, oversample=t.oversample, seed=config.seed, workers=t.workers),
            ImageBatches(val_cache, y_val, len(labels), t.batch_size, workers=t.workers))


def lung_chain(config: Config, run_dir: Path, split, progress: bool = True):
    """segment: RUN_DIR -> write RUN/segment.json, compute every split image's lung mask once, return the reader."""
    from edgelabels.runtime.stages import CACHE_DIR, CHAIN_FILE, LungReader, Masking
    from edgelabels.runtime.segmenter import Segmenter

    unet = Path(config.segment)
    masking = Masking(**dataclasses.asdict(config.masking))
    # Loaded before segment.json is written: a clear error now (not a U-Net, not trained), not mid-epoch.
    reader = LungReader(Segmenter.load(unet), masking, cache_dir=run_dir / CACHE_DIR)
    atomic.write_json(run_dir / CHAIN_FILE, {"run": str(unet.resolve()), "masking": masking.to_json()})
    paths = [s.path for s in split.train + split.val + split.test]
    log.info("segment: lung masks for %d images with U-Net run %s (computed once, cached in %s)", len(paths), unet,
             run_dir / "segment-cache")
    computed = reader.precompute(paths, progress=progress)
    log.info("segment: lungs kept with U-Net run %s (%s); %d masks computed, the rest cached", unet,
             masking.to_json(), computed)
    return reader


# ---------------------------------------------------------------- the run


def train(config: Config, run_dir: str | Path, resume: bool = False) -> Path:
    """Train (or resume) a run into run_dir. Returns run_dir."""
    import keras

    from edgelabels.models.backbones import get_backbone
    from edgelabels.models.classifier import freeze_backbone, unfreeze_top
    from edgelabels.train.run import load_keras_model

    run_dir = Path(run_dir)
    state_path = run_dir / "checkpoint" / "state.json"
    if resume:
        if not (run_dir / "config.yaml").exists():
            raise UserError(f"{run_dir}: nothing to resume (no config.yaml); start it without --resume")
        from edgelabels.config import load_config

        config = load_config(run_dir / "config.yaml")  # the run's own config wins over the one given
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise UserError(f"{run_dir}: already exists (use --resume to continue it, or --out for a new run)")
    run_dir.mkdir(parents=True, exist_ok=True)
    handler = _attach_log(run_dir)
    try:
        state = RunState(state_path, config.train.monitor)
        if state.data["done"]:
            log.info("run already finished; nothing to resume")
            return run_dir
        keras.utils.set_random_seed(config.seed)
        if not resume:
            atomic.write_text(run_dir / "config.yaml", config.to_yaml())
        log.info("%s run %s (keras %s, backend %s)", "resuming" if resume else "starting", run_dir,
                 keras.__version__, keras.backend.backend())

        split = prepare_split(config, run_dir)
        labels = sorted({s.label for s in split.train + split.val + split.test})
        atomic.write_json(run_dir / "labels.json", labels)
        spec = get_backbone(config.model.backbone).preprocess_spec(*config.image_hw, grayscale=config.data.grayscale,
                                                                   resize=config.data.resize)
        atomic.write_json(run_dir / "preprocess.json", spec.to_json())
        t = config.train
        # A per-step progress bar floods logs and pipes: one line per epoch when nobody is watching.
        verbose = 2 if t.verbose == 1 and not sys.stdout.isatty() else t.verbose
        train_batches, val_batches = make_batches(config, run_dir, split, labels, spec, verbose)
        callbacks_extra = []
        if t.tensorboard:
            callbacks_extra.append(keras.callbacks.TensorBoard(log_dir=str(run_dir / "tensorboard")))

        last = run_dir / "checkpoint" / "last.keras"
        resuming = resume and last.exists()
        if resuming:
            model = load_keras_model(last, compile=True)  # weights, trainable flags and optimizer state
            log.info("resumed from stage %s epoch %d", state.data["stage"], state.data["epoch"])
        else:
            model = build_model(config, len(labels))

        stage_a_start = state.data["epoch"] if resuming and state.data["stage"] == "a" else 0
        if not resuming or (state.data["stage"] == "a" and stage_a_start < t.epochs):
            head_only = t.stage_a_trains == "head" or (t.stage_a_trains == "auto" and config.model.weights != "none")
            if not resuming:
                if head_only:
                    freeze_backbone(model)
                compile_model(model, config, t.learning_rate, t.epochs * len(train_batches))
            log.info("stage a: %s, %d trainable weights, lr %g",
                     "backbone frozen" if head_only else "whole model trained (weights none: nothing to preserve)",
                     len(model.trainable_weights), t.learning_rate)
            model.fit(train_batches, validation_data=val_batches, epochs=t.epochs, initial_epoch=stage_a_start,
                      callbacks=[make_epoch_callback(run_dir, state, "a"), *callbacks_extra], verbose=verbose)

        if t.fine_tune_epochs:
            in_b = resuming and state.data["stage"] == "b"
            stage_b_start = state.data["epoch"] if in_b else 0
            if not in_b:
                unfrozen = unfreeze_top(model, config.model.fine_tune_layers)
                compile_model(model, config, t.fine_tune_learning_rate, t.fine_tune_epochs * len(train_batches))
                state.data.update(stage="b", epoch=0)
                state.save()
                log.info("stage b: %d backbone layers unfrozen, %d trainable weights, lr %g", unfrozen,
                         len(model.trainable_weights), t.fine_tune_learning_rate)
            if stage_b_start < t.fine_tune_epochs:
                model.fit(train_batches, validation_data=val_batches, epochs=t.fine_tune_epochs,
                          initial_epoch=stage_b_start, callbacks=[make_epoch_callback(run_dir, state, "b"),
                                                                  *callbacks_extra], verbose=verbose)
        state.data["done"] = True
        state.save()
        log.info("finished: best %s = %.4f at epoch %s; model.keras holds that epoch", t.monitor,
                 state.data["best"] if state.data["best"] is not None else float("nan"), state.data["best_epoch"])
        return run_dir
    finally:
        logging.getLogger("edgelabels").removeHandler(handler)
        handler.close()

