"""Two-stage transfer learning, read top to bottom in `train`:

1. the run directory: started (config saved) or resumed (its own config wins); `auto` keys chosen by the recipe
   (train/recipe.py) and config.yaml rewritten resolved
2. data: the task's dataset -> grouped, stratified split (data/prepare.py), labels, preprocessing;
   images through the config's stages (a lung U-Net first, ...), each stage's output computed once
3. model: models.factory.create_model (weights imagenet | none | file | run:DIR), or the checkpoint
4. stage a: backbone frozen, head trained at train.learning_rate
5. stage b: top model.fine_tune_layers unfrozen (BatchNorm stays in inference mode) at
   train.fine_tune_learning_rate
Each stage: a linear warm-up (train.warmup_epochs) into its constant or cosine rate; with train.ema, validation,
model.keras and the stage's end use the weights' moving average; it ends early after train.patience epochs
without a better monitor, and training ends when the next epoch would not fit train.budget (the time spent is kept
in state.json). train.deterministic asks the backend for deterministic ops before Keras loads it.
Every epoch: history.csv, checkpoint/last.keras + state.json, and model.keras when the monitored
validation metric improves, all written atomically (train/callbacks.py). --resume continues after the
last completed epoch in exactly the state an uninterrupted run has there: the checkpoint's stage,
trainable set and optimizer (its step count, hence the cosine schedule's position, checked against
state.json); killed before stage b's first epoch finished, the checkpoint is stage a's and stage b starts
from it as it would have. Each epoch's randomness (order, augmentation, dropout) is drawn from (seed, epoch)
alone (callbacks.seeded_epochs), so the epochs after a resume are the uninterrupted run's too; the warm-up and
schedule are functions of the step count, patience of history.csv, the budget of state.json's time spent. What
differs per task comes from the task table (tasks.py).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import sys
from pathlib import Path

from edgelabels.artifacts import RunDir
from edgelabels.config import Config, is_auto, parse_budget
from edgelabels.errors import UserError
from edgelabels.tasks import get_task

log = logging.getLogger("edgelabels.train")


def train(config: Config | None, run_dir: str | Path, resume: bool = False, on_epoch=None,
          cluster: dict | None = None) -> Path:
    """Train (or resume) a run into run_dir. Returns run_dir.

    cluster: this process's place in a multi-process data-parallel run (train/distribute.py cluster_from);
    a process other than the first trains into a scratch copy of the run, removed at the end.

    on_epoch(stage, epoch, logs): called after each epoch's files are written (`edgelabels tune` reports the
    monitored value to its study there); an exception it raises ends training, the run left resumable."""
    from edgelabels.train import distribute

    cluster = cluster or {}
    real_dir, run_dir = Path(run_dir), distribute.scratch_run(Path(run_dir), cluster, resume)
    run = RunDir(run_dir)
    config, how = _start_or_resume(run, config, resume)  # before TensorFlow is loaded: a refusal comes at once
    # A backend Keras cannot load is refused before the run folder is made.
    keras = _import_keras(config.train.deterministic)
    _begin(run, config, how)

    from edgelabels.data.prepare import prepare_split
    from edgelabels.models.backbones import get_backbone
    from edgelabels.models.classifier import freeze_backbone, unfreeze_top
    from edgelabels.models.factory import create_model, load_model
    from edgelabels.train.callbacks import (attach_log, averaged_weights, detach_log, epoch_end, seeded_epochs,
                                            stop_early)

    handler = attach_log(run)
    processes = distribute.Processes()
    try:
        config = _resolve_auto(config, run)
        if config.train.label_noise == "prune":
            # The audit sits above train in the layers (it trains folds): reached through the task table. It audits
            # data.source once into RUN/audit/ and returns the config with the pruned manifest (config.yaml too).
            config = get_task(config.task).piece("auditing").prune(config, run.dir)
        processes = distribute.start(config, cluster)  # before any model is built
        if processes.devices > 1:
            log.info("data parallel over %d devices in %d processes (this one %d)", processes.devices,
                     processes.count, processes.index)
        state = run.train_state(config.train.monitor)
        if state.data["done"]:
            log.info("run already finished; nothing to resume")
            return real_dir
        clock = _clock(state)
        keras.utils.set_random_seed(config.seed)
        if config.train.deterministic:
            log.info("train.deterministic: op determinism asked for (TF_DETERMINISTIC_OPS=1, XLA "
                     "--xla_gpu_deterministic_ops); identical weights from seed %d on this machine", config.seed)
            from edgelabels.train.determinism import enable_op_determinism

            enable_op_determinism(keras.backend.backend())  # also where TensorFlow already ran ops in this process
        log.info("%s run %s (keras %s, backend %s)", how, run.dir, keras.__version__, keras.backend.backend())
        if how == "restarting":
            log.info("its earlier attempt completed no epoch: that attempt's files were replaced")

        split = prepare_split(config, run)
        labels = sorted({label for s in split.train + split.val + split.test for label in s.labels})
        run.write_labels(labels)
        spec = get_backbone(config.model.backbone).preprocess_spec(*config.image_hw, grayscale=config.data.grayscale,
                                                                   resize=config.data.resize)
        # detection with data.tile_scale: trained on tiles of the scaled frame, answered by merged tiles (runtime/tiles.py)
        spec = dataclasses.replace(spec, tile_scale=config.data.tile_scale, tile_overlap=config.data.tile_overlap)
        run.write_preprocess(spec)
        t = config.train
        # A per-step progress bar floods logs and pipes: one line per epoch when nobody is watching.
        verbose = 2 if t.verbose == 1 and not sys.stdout.isatty() else t.verbose
        chain = _stage_chain(config, run, split, resume, progress=verbose == 1)
        split = _answerable(split, chain)
        train_batches, val_batches = _batches(config, split, labels, spec, chain)
        fed_train = distribute.for_devices(train_batches, processes)
        fed_val = distribute.for_devices(val_batches, processes, validation=True)
        steps = len(fed_train)
        extra = [keras.callbacks.TensorBoard(log_dir=str(run.tensorboard_dir))] if t.tensorboard else []
        budget_s = parse_budget(t.budget) if t.budget else None

        def stage_callbacks(stage: str, first_epoch: int, resumed: bool) -> list:
            """Order matters: the stop decision before the EMA swap (a stage stopped early ends on the averages),
            the swap before epoch_end (model.keras and the checkpoint hold the averages)."""
            return [seeded_epochs(train_batches, config.seed, first_epoch),
                    stop_early(run, state, stage, t.patience, budget_s, clock),
                    *([averaged_weights(resumed)] if t.ema else []), epoch_end(run, state, stage, on_epoch), *extra]

        if resume and run.last_path.exists():
            model = load_model(run.last_path, compile=True)  # weights, trainable flags and optimizer state
            at = _checkpoint_position(run, model, state, t.epochs, steps)
        else:
            model, at = create_model(config, len(labels)), None  # (stage, epochs done in it) of the checkpoint

        over = _stage_over(run, state, "a", at[1], t, budget_s) if at and at[0] == "a" and at[1] < t.epochs else None
        if at is None or (at[0] == "a" and at[1] < t.epochs and not over):
            head_only = t.stage_a_trains == "head" or (t.stage_a_trains == "auto" and config.model.weights != "none")
            if at is None:
                if head_only:
                    freeze_backbone(model)
                _compile(model, config, t.learning_rate, t.epochs * steps, round(t.warmup_epochs * steps))
            log.info("stage a: %s, %d trainable weights, lr %g",
                     "backbone frozen" if head_only else "whole model trained (weights none: nothing to preserve)",
                     len(model.trainable_weights), t.learning_rate)
            # shuffle=False: the batches shuffle themselves, by epoch (Keras would reorder them from its global RNG,
            # which a resumed process has not advanced as the uninterrupted one had).
            model.fit(fed_train, validation_data=fed_val, epochs=t.epochs, initial_epoch=at[1] if at else 0,
                      shuffle=False, verbose=verbose, callbacks=stage_callbacks("a", 0, resumed=at is not None))
        elif over:
            log.info("stage a over before the resume: %s", over)

        at_b = at[1] if at and at[0] == "b" else 0
        over = _stage_over(run, state, "b", at_b, t, budget_s) if at_b < t.fine_tune_epochs else None
        if over:
            log.info("stage b %s: %s", "skipped" if (at is None or at[0] == "a") else "over before the resume", over)
        elif t.fine_tune_epochs:
            if at is None or at[0] == "a":  # stage b begins here, also when the kill came before its first epoch ended
                unfrozen = unfreeze_top(model, config.model.fine_tune_layers)
                _compile(model, config, t.fine_tune_learning_rate, t.fine_tune_epochs * steps,
                         round(t.warmup_epochs * steps))
                state.data.update(stage="b", epoch=0)
                state.save()
                log.info("stage b: %d backbone layers unfrozen, %d trainable weights, lr %g", unfrozen,
                         len(model.trainable_weights), t.fine_tune_learning_rate)
            if at_b < t.fine_tune_epochs:
                model.fit(fed_train, validation_data=fed_val, epochs=t.fine_tune_epochs, initial_epoch=at_b,
                          shuffle=False, verbose=verbose, callbacks=stage_callbacks("b", t.epochs, resumed=at_b > 0))
        state.data.update(done=True, spent_s=clock())
        state.save()
        if budget_s is not None:
            log.info("budget %s: %.0f s of %.0f s spent", t.budget, state.data["spent_s"], budget_s)
        log.info("finished: best %s = %.4f at epoch %s; %s holds that epoch", t.monitor,
                 state.data["best"] if state.data["best"] is not None else float("nan"), state.data["best_epoch"],
                 run.model_path.name)
        return real_dir
    finally:
        detach_log(handler)
        distribute.finish(run.dir, cluster)


def _start_or_resume(run: RunDir, config: Config | None, resume: bool) -> tuple[Config, str]:
    """(config, "resuming" | "starting" | "restarting"): a resumed run's own saved config (resume never takes
    another), a new run started with `config`, or one whose earlier attempt completed no epoch started again.
    Nothing is written yet (`_begin` does): whatever is refused here or next leaves the folder as it was."""
    from edgelabels.config import load_config

    _check_writable(run.dir)
    if resume:
        if not run.config_path.exists():
            raise UserError(f"{run.dir}: nothing to resume (no {run.config_path.name}); start it without --resume")
        return load_config(run.config_path), "resuming"
    if run.dir.exists() and any(run.dir.iterdir()):
        if not run.restartable():
            raise UserError(f"{run.dir}: already exists (use --resume to continue it, or --out for a new run)")
        return config, "restarting"
    return config, "starting"


def _check_writable(folder: Path) -> None:
    """The run folder, or the nearest folder above it that exists, must be a folder this process can write in."""
    import os

    from edgelabels.atomic import nearest_existing

    existing = nearest_existing(folder)
    if not existing.is_dir():
        what = "is a file" if existing == folder else f"cannot be made: {existing} is a file"
        raise UserError(f"{folder}: {what}, not a folder (give --out a folder)")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "" if existing == folder else f" (in {existing})"
        raise UserError(f"{folder}: cannot write there{where}: permission denied")


def _begin(run: RunDir, config: Config, how: str) -> None:
    """Write what `_start_or_resume` decided: a resumed run's leftovers swept, a new run's folder and config."""
    from edgelabels import atomic

    if how != "starting":
        atomic.sweep(run.dir)  # what a killed save left
    if how == "resuming":
        return
    if how == "restarting":
        run.clear()
    try:
        run.start(config.to_yaml())
    except OSError as exc:  # what the checks above could not foresee (a full disk, a folder made meanwhile)
        raise UserError(f"{run.dir}: cannot write the run folder ({exc.strerror or exc})") from None


def _resolve_auto(config: Config, run: RunDir) -> Config:
    """A config with `auto` keys gets them chosen by the recipe (logged, with reasons, in train.log and
    recipe.json); config.yaml is rewritten resolved before anything reads it. A resumed run's config is already
    resolved: config.yaml only holds `auto` when the recipe never finished, so no epoch ran and choosing now is
    what the first attempt would have done."""
    if not is_auto(config):
        return config
    from edgelabels import atomic
    from edgelabels.train.recipe import apply_recipe

    config = apply_recipe(config, run)
    atomic.write_text(run.config_path, config.to_yaml())
    return config


def _clock(state):
    """Seconds of training spent, this process's and (from state.json) the earlier attempts' of a resumed run."""
    import time

    started = time.monotonic() - state.data.get("spent_s", 0.0)
    return lambda: time.monotonic() - started


def _stage_over(run: RunDir, state, stage: str, done: int, t, budget_s: float | None) -> str | None:
    """Why `stage` should run no (more) epochs, `done` epochs in: the reason recorded when it stopped early, its
    history's patience (recorded or not: a kill may come between the checkpoint and state.json), or the budget."""
    from edgelabels.train.callbacks import budget_spent, patience_spent, stage_values

    recorded = state.data.get("stopped", {}).get(stage)
    values = stage_values(run, stage, t.monitor, before=done + 1)
    return recorded or patience_spent(values, t.monitor, t.patience) or budget_spent(state, budget_s)


def _import_keras(deterministic: bool = False):
    """keras, or one line when the backend it is told to load (KERAS_BACKEND or keras.json) cannot be loaded.

    deterministic: op determinism is asked for first, through the environment: TensorFlow reads TF_DETERMINISTIC_OPS
    when an op first asks whether it must be deterministic, XLA (JAX) reads XLA_FLAGS when its backend starts, both
    after this (TensorFlow itself is imported only in export/: tests/test_architecture.py)."""
    import os

    if deterministic:
        os.environ["TF_DETERMINISTIC_OPS"] = "1"
        flag = "--xla_gpu_deterministic_ops=true"
        if flag not in os.environ.get("XLA_FLAGS", ""):
            os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()
    try:
        import keras
    except (ImportError, ValueError) as exc:
        told = os.environ.get("KERAS_BACKEND")
        where = f"KERAS_BACKEND={told}" if told else "Keras' configured backend"
        raise UserError(f"{where}: Keras cannot load it ({str(exc).splitlines()[0]}); use KERAS_BACKEND=tensorflow "
                        "or jax") from None
    return keras


def _checkpoint_position(run: RunDir, model, state, stage_a_epochs: int, steps: int) -> tuple[str, int]:
    """(stage, epochs done in it) that the loaded checkpoint holds, read from state.json and checked against the
    optimizer's step count (`steps` per epoch, counted from the stage's compile; it places the cosine schedule)."""
    stage = state.checkpoint_stage
    epoch = state.data["epoch"] if stage == state.data["stage"] else stage_a_epochs  # a's checkpoint, state in b
    done = int(model.optimizer.iterations)
    ahead = state.data["stage"], state.data["epoch"] + 1
    if done == epoch * steps:
        at = stage, epoch
    elif done == ahead[1] * steps:
        # Killed after last.keras was replaced but before state.json was: the checkpoint is the newer one. Its
        # history row and model.keras (both written before it) are there; the state catches up. (Where both
        # readings fit, a one-epoch stage a, state.json's wins.)
        at = ahead
        row = next((r for r in run.read_history() if (r["stage"], int(r["epoch"])) == at), {})
        value = float(row.get(state.monitor) or "nan")
        if state.improved(value):
            state.data.update(best=value, best_epoch=f"{at[0]}{at[1]}")
        state.data.update(stage=at[0], epoch=at[1], checkpoint=at[0])
        state.save()
        log.warning("the checkpoint holds stage %s epoch %d, one epoch past state.json (killed between the two "
                    "writes): continuing after it", *at)
    else:
        raise UserError(f"{run.last_path}: its optimizer has taken {done} steps, but state.json says stage {stage} "
                        f"epoch {epoch} ({epoch * steps} steps at {steps} per epoch); it cannot be resumed exactly (start a "
                        f"new run with another --out)")
    lr = float(model.optimizer.learning_rate)
    if at[0] == "a" and state.data["stage"] == "b":
        log.info("resumed at the start of stage b (killed before its first epoch finished): the checkpoint is stage "
                 "a's last epoch; stage b starts from it as in an uninterrupted run")
    else:
        log.info("resumed from stage %s epoch %d: its checkpoint's %d trainable weights and optimizer at step %d "
                 "(lr %g)", at[0], at[1], len(model.trainable_weights), done, lr)
    return at


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


def _answerable(split, chain):
    """The split without the training and validation images a stage found nothing in (no result window): they
    would get no answer at the edge, so they teach nothing. Test images stay: evaluation sends them to a human."""
    if chain is None:
        return split
    from edgelabels.data.splits import Split

    missing = set(chain.missing([s.path for s in split.train + split.val]))
    if not missing:
        return split
    kept = [s for s in split.train if str(s.path) not in missing]
    if not kept:
        raise UserError(f"{chain.describe()}: found nothing in any of the {len(split.train)} training images (is the "
                        "detector trained, and are these the photos it was trained for?)")
    names = sorted(Path(p).name for p in missing)
    log.info("stages: found nothing in %d training/validation images, left out of training: %s%s", len(missing),
             ", ".join(names[:20]), " ..." if len(names) > 20 else "")
    return Split(train=kept, val=[s for s in split.val if str(s.path) not in missing], test=split.test)


def _batches(config: Config, split, labels: list[str], spec, chain):
    """The task's training and validation batches over pixel caches (through the chain, if any)."""
    from edgelabels.data.augment import build_augmenter
    from edgelabels.train.loader import PixelCache

    budget = config.data.cache_max_gb * 1e9
    a = config.augment
    # seed -> augmenter: the loader seeds one per batch (train/loader.py); built once here so that a bad
    # transform is refused before training starts.
    augmenter = functools.partial(build_augmenter, a.preset, a.transforms) \
        if build_augmenter(a.preset, a.transforms, seed=config.seed) is not None else None
    train_cache = PixelCache([s.path for s in split.train], spec, budget, read=chain)
    val_cache = PixelCache([s.path for s in split.val], spec, budget - train_cache.nbytes, read=chain)
    return get_task(config.task).piece("batches")(config, split, labels, (train_cache, val_cache), augmenter)


def _compile(model, config: Config, learning_rate: float, steps: int = 0, warmup_steps: int = 0) -> None:
    """steps: optimizer steps in this stage, for the cosine schedule; warmup_steps of them first raise the rate
    linearly from 0 (train.warmup_epochs). Both are functions of the optimizer's step count, which the checkpoint
    keeps: a resumed stage is at the same point of its schedule."""
    import keras

    t = config.train
    warmup_steps = min(warmup_steps, steps)
    if warmup_steps:
        # CosineDecay warms up to warmup_target, then decays over decay_steps to alpha * warmup_target: alpha 1
        # keeps the constant schedule constant.
        learning_rate = keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=max(1, steps - warmup_steps), warmup_target=learning_rate, warmup_steps=warmup_steps,
            alpha=0.0 if t.lr_schedule == "cosine" else 1.0)
    elif t.lr_schedule == "cosine" and steps:
        learning_rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=steps)
    objectives = get_task(config.task).piece("objectives")(config.train)
    if config.train.distribute != "none":
        # Padded rows weigh 0 (train/distribute.py): only weighted metrics see the weights.
        objectives["weighted_metrics"] = [*objectives.get("weighted_metrics", []), *objectives.pop("metrics", [])]
    # EMA: the optimizer keeps the weights' moving average (callbacks.averaged_weights swaps it in per epoch).
    ema = {"use_ema": True, "ema_momentum": t.ema} if t.ema else {}
    model.compile(optimizer=keras.optimizers.Adam(learning_rate, **ema), **objectives)
