"""What happens at the end of every epoch: history row, checkpoint, best model, state; all atomic. Also what ends
a stage early (train.patience, train.budget) and the swap to the weights' moving average (train.ema)."""

from __future__ import annotations

import logging

from edgelabels import atomic

log = logging.getLogger("edgelabels.train")


def epoch_end(run, state, stage: str, on_epoch=None):
    """A Keras callback writing run.history_path, the checkpoint + state, and model.keras on improvement.

    run: artifacts.RunDir; state: its TrainState; stage: "a" (frozen backbone) or "b" (fine-tuning);
    on_epoch(stage, epoch, logs), if given, is called last, once the epoch is safely on disk (a pruner may stop
    the run there by raising).
    """
    import keras

    class EpochEnd(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = {k: float(v) for k, v in (logs or {}).items()}
            run.append_history(stage, epoch + 1, logs)
            value = logs.get(state.monitor, float("nan"))
            saved = ""
            if state.improved(value):
                with atomic.temp_path(run.model_path) as tmp:
                    self.model.save(tmp)
                state.data.update(best=value, best_epoch=f"{stage}{epoch + 1}")
                saved = f" (best so far: {run.model_path.name} saved)"
            with atomic.temp_path(run.last_path) as tmp:
                self.model.save(tmp)
            state.data.update(stage=stage, epoch=epoch + 1, checkpoint=stage)
            state.save()
            summary = " ".join(f"{k}={v:.4f}" for k, v in sorted(logs.items()))
            log.info("stage %s epoch %d: %s%s", stage, epoch + 1, summary, saved)
            if on_epoch is not None:
                on_epoch(stage, epoch + 1, logs)

    return EpochEnd()


def seeded_epochs(batches, seed: int, first_epoch: int):
    """A Keras callback: at the start of epoch e of this fit, the run's epoch first_epoch + e (stage b's first
    follows stage a's last), the training batches' order and augmentation and every random layer's seed (dropout)
    are set from (seed, that epoch) alone. A resumed run then draws what the uninterrupted one drew: neither the
    loader's generators nor the layers' seed states (which model.keras does not keep) carry over from earlier
    epochs."""
    import keras
    import numpy as np

    class SeededEpochs(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            at = first_epoch + epoch
            batches.set_epoch(at)
            states = [v for v in self.model.non_trainable_variables if v.name == "seed_generator_state"]
            seeds = np.random.SeedSequence([seed, at]).generate_state(len(states)) if states else []
            for state, start in zip(states, seeds):
                state.assign(np.array([start, 0], dtype=state.dtype))

    return SeededEpochs()


# ---------------------------------------------------------------- when a stage ends early (patience, budget)


def epochs_since_best(values: list[float], monitor: str) -> int:
    """Epochs after the best of `values` (one monitored value per epoch, in order); all of them when none is a
    number. val_loss is better lower, the others higher; a tie is not an improvement (as TrainState.improved)."""
    best, since = None, 0
    for value in values:
        better = value == value and (best is None or (value < best if monitor == "val_loss" else value > best))
        best, since = (value, 0) if better else (best, since + 1)
    return since


def stage_values(run, stage: str, monitor: str, before: int | None = None) -> list[float]:
    """The monitored value of each epoch of `stage` in history.csv (those numbered below `before`, if given)."""
    return [float(r.get(monitor) or "nan") for r in run.read_history()
            if r["stage"] == stage and (before is None or int(r["epoch"]) < before)]


def patience_spent(values: list[float], monitor: str, patience: int | None) -> str | None:
    """Why a stage whose epochs gave `values` ends by patience, or None."""
    if patience is None or not values:
        return None
    since = epochs_since_best(values, monitor)
    if since < patience:
        return None
    return (f"patience: {monitor} best at epoch {len(values) - since}, not better in the {since} epochs since "
            f"(train.patience {patience})")


def budget_spent(state, budget_s: float | None) -> str | None:
    """Why training ends by its wall-clock budget, or None: what is left would not hold another epoch of the mean
    length so far (state.json keeps the time spent and each epoch's, so a resumed run does not start afresh)."""
    if budget_s is None:
        return None
    spent, epochs = state.data.get("spent_s", 0.0), state.data.get("epoch_seconds", [])
    mean = sum(epochs) / len(epochs) if epochs else 0.0
    if not epochs or spent + mean <= budget_s:
        return None
    return (f"budget: {spent:.0f} s of {budget_s:.0f} s spent; another epoch (mean {mean:.1f} s) would not fit")


def stop_early(run, state, stage: str, patience: int | None, budget_s: float | None, clock):
    """A Keras callback ending the stage's fit after an epoch when patience or the budget is spent. It records the
    epoch's wall time, the time spent (clock()) and the reason in state.data; epoch_end saves them with the epoch.
    Placed before the EMA swap, so that a stage stopped early still ends on the averaged weights."""
    import time

    import keras

    class StopEarly(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.began = time.monotonic()

        def on_epoch_end(self, epoch, logs=None):
            state.data["epoch_seconds"] = [*state.data.get("epoch_seconds", []), time.monotonic() - self.began]
            state.data["spent_s"] = clock()
            value = float((logs or {}).get(state.monitor, float("nan")))
            values = [*stage_values(run, stage, state.monitor, before=epoch + 1), value]
            why = patience_spent(values, state.monitor, patience) or budget_spent(state, budget_s)
            if why is not None and epoch + 1 < self.params["epochs"]:
                self.model.stop_training = True
                state.data["stopped"] = {**state.data.get("stopped", {}), stage: why}
                log.info("stage %s ends after epoch %d of %d: %s", stage, epoch + 1, self.params["epochs"], why)

    return StopEarly()


def averaged_weights(resumed: bool):
    """keras.callbacks.SwapEMAWeights(swap_on_epoch=True): validation, model.keras and the stage's final weights
    are the optimizer's moving average. Two additions: a fit resumed from a checkpoint (saved at an epoch's end,
    averages in the model, raw weights in the optimizer) starts in that swapped state, as the uninterrupted fit
    is there; and a stage stopped early (patience, budget) ends on the averages too (Keras finalises them only
    after the last planned epoch, and its own finalize_variable_values would then put back the raw weights)."""
    import keras

    class AveragedWeights(keras.callbacks.SwapEMAWeights):
        def __init__(self):
            super().__init__(swap_on_epoch=True)
            self._ema_weights_in_model = resumed

        def on_epoch_end(self, epoch, logs=None):
            super().on_epoch_end(epoch, logs)
            if self.model.stop_training and epoch != self.params["epochs"] - 1:
                self._finalize_ema_values()

    return AveragedWeights()


def attach_log(run) -> logging.Handler:
    """Everything edgelabels logs during training also goes to the run's train.log."""
    handler = logging.FileHandler(run.log_path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.getLogger("edgelabels").addHandler(handler)
    logging.getLogger("edgelabels").setLevel(logging.INFO)
    return handler


def detach_log(handler: logging.Handler) -> None:
    logging.getLogger("edgelabels").removeHandler(handler)
    handler.close()
