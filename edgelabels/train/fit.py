"""Two-stage transfer learning, read top to bottom in `train`:

1. the run directory: started (config saved) or resumed (its own config wins)
2. data: the task's dataset -> grouped, stratified split (data/prepare.py), labels, preprocessing;
   images through the config's stages (a lung U-Net first, ...), each stage's output computed once
3. model: models.factory.create_model (weights imagenet | none | file | run:DIR), or the checkpoint
4. stage a: backbone frozen, head trained at train.learning_rate
5. stage b: top model.fine_tune_layers unfrozen (BatchNorm stays in inference mode) at
   train.fine_tune_learning_rate
Every epoch: history.csv, checkpoint/last.keras + state.json, and model.keras when the monitored
validation metric improves, all written atomically (train/callbacks.py). --resume continues after the
last completed epoch. What differs per task comes from the task table (tasks.py).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from edgelabels.artifacts import RunDir
from edgelabels.config import Config
from edgelabels.errors import UserError
from edgelabels.tasks import get_task

log = logging.getLogger("edgelabels.train")


def train(config: Config | None, run_dir: str | Path, resume: bool = False) -> Path:
    """Train (or resume) a run into run_dir. Returns run_dir."""
    import keras

    from edgelabels.data.prepare import prepare_split
    from edgelabels.models.backbones import get_backbone
    from edgelabels.models.classifier import freeze_backbone, unfreeze_top
    from edgelabels.models.factory import create_model, load_model
    from edgelabels.train.callbacks import attach_log, detach_log, epoch_end

    run = RunDir(run_dir)
    config = _start_or_resume(run, config, resume)
    handler = attach_log(run)
    try:
        state = run.train_state(config.train.monitor)
        if state.data["done"]:
            log.info("run already finished; nothing to resume")
            return run.dir
        keras.utils.set_random_seed(config.seed)
        log.info("%s run %s (keras %s, backend %s)", "resuming" if resume else "starting", run.dir,
                 keras.__version__, keras.backend.backend())

        split = prepare_split(config, run)
        labels = sorted({s.label for s in split.train + split.val + split.test})
        run.write_labels(labels)
        spec = get_backbone(config.model.backbone).preprocess_spec(*config.image_hw, grayscale=config.data.grayscale,
                                                                   resize=config.data.resize)
        run.write_preprocess(spec)
        t = config.train
        # A per-step progress bar floods logs and pipes: one line per epoch when nobody is watching.
        verbose = 2 if t.verbose == 1 and not sys.stdout.isatty() else t.verbose
        chain = _stage_chain(config, run, split, resume, progress=verbose == 1)
        train_batches, val_batches = _batches(config, split, labels, spec, chain)
        extra = [keras.callbacks.TensorBoard(log_dir=str(run.tensorboard_dir))] if t.tensorboard else []

        resuming = resume and run.last_path.exists()
        if resuming:
            model = load_model(run.last_path, compile=True)  # weights, trainable flags and optimizer state
            log.info("resumed from stage %s epoch %d", state.data["stage"], state.data["epoch"])
        else:
            model = create_model(config, len(labels))

        stage_a_start = state.data["epoch"] if resuming and state.data["stage"] == "a" else 0
        if not resuming or (state.data["stage"] == "a" and stage_a_start < t.epochs):
            head_only = t.stage_a_trains == "head" or (t.stage_a_trains == "auto" and config.model.weights != "none")
            if not resuming:
                if head_only:
                    freeze_backbone(model)
                _compile(model, config, t.learning_rate, t.epochs * len(train_batches))
            log.info("stage a: %s, %d trainable weights, lr %g",
                     "backbone frozen" if head_only else "whole model trained (weights none: nothing to preserve)",
                     len(model.trainable_weights), t.learning_rate)
            model.fit(train_batches, validation_data=val_batches, epochs=t.epochs, initial_epoch=stage_a_start,
                      callbacks=[epoch_end(run, state, "a"), *extra], verbose=verbose)

        if t.fine_tune_epochs:
            in_b = resuming and state.data["stage"] == "b"
            stage_b_start = state.data["epoch"] if in_b else 0
            if not in_b:
                unfrozen = unfreeze_top(model, config.model.fine_tune_layers)
                _compile(model, config, t.fine_tune_learning_rate, t.fine_tune_epochs * len(train_batches))
                state.data.update(stage="b", epoch=0)
                state.save()
                log.info("stage b: %d backbone layers unfrozen, %d trainable weights, lr %g", unfrozen,
                         len(model.trainable_weights), t.fine_tune_learning_rate)
            if stage_b_start < t.fine_tune_epochs:
                model.fit(train_batches, validation_data=val_batches, epochs=t.fine_tune_epochs,
                          initial_epoch=stage_b_start, callbacks=[epoch_end(run, state, "b"), *extra],
                          verbose=verbose)
        state.data["done"] = True
        state.save()
        log.info("finished: best %s = %.4f at epoch %s; %s holds that epoch", t.monitor,
                 state.data["best"] if state.data["best"] is not None else float("nan"), state.data["best_epoch"],
                 run.model_path.name)
        return run.dir
    finally:
        detach_log(handler)


def _start_or_resume(run: RunDir, config: Config | None, resume: bool) -> Config:
    """A resumed run's own saved config (it wins over the one given), or a new run started with `config`."""
    from edgelabels.config import load_config

    if resume:
        if not run.config_path.exists():
            raise UserError(f"{run.dir}: nothing to resume (no {run.config_path.name}); start it without --resume")
        return load_config(run.config_path)
    if run.dir.exists() and any(run.dir.iterdir()):
        raise UserError(f"{run.dir}: already exists (use --resume to continue it, or --out for a new run)")
    run.start(config.to_yaml())
    return config


def _stage_chain(config: Config, run: RunDir, split, resume: bool, progress: bool):
    """The config's stages, described in the run (stages.json) and computed once for every split image."""
    from edgelabels.runtime.stages import chain_from_config, run_chain

    stages = config.stage_list()
    if not stages:
        return None
    if resume and run.read_stages():
        chain = run_chain(run)  # the caches the interrupted run filled
    else:
        # Loaded before stages.json is written: a clear error now (not a U-Net, not trained), not mid-epoch.
        chain = chain_from_config(config, run=run)
        run.write_stages([{**stage.describe(), "run": str(Path(s.run).resolve())}
                          for stage, s in zip(chain.stages, stages)])
    paths = [s.path for s in split.train + split.val + split.test]
    log.info("stages: %s for %d images (each computed once, cached in %s)", chain.describe(), len(paths),
             run.stage_cache(0).parent)
    computed = chain.precompute(paths, progress=progress)
    log.info("stages: %d images computed, the rest cached", computed)
    return chain


def _batches(config: Config, split, labels: list[str], spec, chain):
    """The task's training and validation batches over pixel caches (through the chain, if any)."""
    from edgelabels.data.augment import build_augmenter
    from edgelabels.train.loader import PixelCache

    budget = config.data.cache_max_gb * 1e9
    augment = build_augmenter(config.augment.preset, config.augment.transforms, seed=config.seed)
    train_cache = PixelCache([s.path for s in split.train], spec, budget, read=chain)
    val_cache = PixelCache([s.path for s in split.val], spec, budget - train_cache.nbytes, read=chain)
    return get_task(config.task).piece("batches")(config, split, labels, (train_cache, val_cache), augment)


def _compile(model, config: Config, learning_rate: float, steps: int = 0) -> None:
    """steps: optimizer steps in this stage, for the cosine schedule."""
    import keras

    if config.train.lr_schedule == "cosine" and steps:
        learning_rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=steps)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  **get_task(config.task).piece("objectives")(config.train))
