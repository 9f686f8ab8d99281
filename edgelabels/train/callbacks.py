"""What happens at the end of every epoch: history row, checkpoint, best model, state; all atomic."""

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
