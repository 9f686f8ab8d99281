"""Data-parallel training over every device of one host or of several: Keras' distribution API on JAX.

`train.distribute: data_parallel` puts a `keras.distribution.DataParallel` over `jax.devices()`: each step's
global batch (`train.batch_size`) is split over the devices and the gradients are averaged, so the loss
curve is the one device's (benchmarks/distribute.py measures it). Several hosts (or processes) join through
`keras.distribution.initialize`, told the coordinator's address, the process count and this process's id by
`edgelabels train --coordinator HOST:PORT --num-processes N --process-id I`, or by the environment variables
Keras documents (KERAS_DISTRIBUTION_JOB_ADDRESSES, KERAS_DISTRIBUTION_NUM_PROCESSES,
KERAS_DISTRIBUTION_PROCESS_ID). On CPUs JAX needs its gloo collectives for that; they are switched on here.

Designed around Keras 3.15's limits: with more than one process, Keras shards only tf.data datasets by itself
(a PyDataset is sharded on Keras main only, keras#23046), so `auto_shard_dataset=False` and every process
builds the same global batch (same seed, same order) and keeps its own rows of it (`ProcessShard`); the price
is that each process decodes the whole batch. The global batch must divide by the process count and by the
device count; the last, shorter batch of an epoch is padded with its own first images to a multiple of the
device count (JAX splits a batch only evenly). The padded rows weigh nothing: where a dataset needs padding, its
batches carry sample weights, 0 on padded rows, and the fit loop compiles the metrics as weighted ones (so under
data_parallel the training-side accuracy/auc follow train.class_weight as the loss does; the validation ones, which
pick the best epoch, have no class weights). Real rows are scaled so that a padded training batch's loss is its
real rows' mean (the one-device step), and a validation epoch's loss is the mean over its real rows. Losses that
normalise over the whole batch (segmentation's Dice, detection's per-object sums) take the weights themselves
(models/losses.py row_weighted), so the copies count there neither; only the batch statistics of a BatchNorm layer
that trains still see them.
Only process 0 writes the run directory; the others train into a scratch copy of it (a resumed
run is copied first, so every process resumes from the same checkpoint) that is removed at the end.
The TensorFlow backend's distribution is a prototype in Keras: asking for it is an error.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgelabels.artifacts import EVALUATION_DIR, RunDir
from edgelabels.errors import UserError

ENV = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES", "KERAS_DISTRIBUTION_PROCESS_ID")
# What a scratch copy of a resumed run leaves out: outputs and caches the other processes never read.
NOT_COPIED = (EVALUATION_DIR, RunDir.EXPORT, RunDir.TENSORBOARD, RunDir.STAGE_CACHE, RunDir.V1_CACHE)


@dataclass(frozen=True)
class Processes:
    """Where this process stands: `count` processes, this one `index`, `devices` devices in all."""

    count: int = 1
    index: int = 0
    devices: int = 1

    @property
    def chief(self) -> bool:
        return self.index == 0


def cluster_from(coordinator: str | None = None, num_processes: int | None = None,
                 process_id: int | None = None) -> dict:
    """The multi-process settings from flags, else from Keras' documented environment variables ({} alone)."""
    env = {name: os.environ.get(name) for name in ENV}
    coordinator = coordinator or env[ENV[0]]
    count = num_processes if num_processes is not None else _int(env[ENV[1]], ENV[1])
    index = process_id if process_id is not None else _int(env[ENV[2]], ENV[2])
    if coordinator is None and count is None and index is None:
        return {}
    if coordinator is None or count is None or index is None:
        raise UserError("several processes need all three of --coordinator HOST:PORT, --num-processes N and "
                        f"--process-id I (or {', '.join(ENV)})")
    if count < 1 or not 0 <= index < count:
        raise UserError(f"--process-id must be in 0..{count - 1} for {count} processes, not {index}")
    return {"coordinator": coordinator, "count": count, "index": index}


def _int(text: str | None, name: str) -> int | None:
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise UserError(f"{name} must be a whole number, not {text!r}") from None


def start(config, cluster: dict) -> Processes:
    """Set up the config's distribution (before any model is built); Processes() when it is none."""
    if config.train.distribute == "none":
        if cluster:
            raise UserError("--coordinator/--num-processes/--process-id train one model over several processes: "
                            "set train.distribute: data_parallel")
        return Processes()
    import keras

    if keras.backend.backend() != "jax":
        raise UserError(f"train.distribute: data_parallel runs on the JAX backend (KERAS_BACKEND=jax); this is "
                        f"{keras.backend.backend()}, whose distribution in Keras is a prototype")
    import jax

    count, index = cluster.get("count", 1), cluster.get("index", 0)
    if count > 1:
        # Set before anything touches a device (jax.distributed must come first); it concerns CPU collectives only.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        try:
            keras.distribution.initialize(job_addresses=cluster["coordinator"], num_processes=count,
                                          process_id=index)
        except RuntimeError as exc:  # e.g. the coordinator unreachable within JAX's timeout
            raise UserError(f"--coordinator {cluster['coordinator']}: joining {count} processes failed "
                            f"({str(exc).splitlines()[0]})") from None
    devices = jax.devices()
    batch = config.train.batch_size
    if batch % len(devices) or len(devices) % count:
        raise UserError(f"train.batch_size {batch} must divide by the {len(devices)} devices of the {count} "
                        "processes (it is the global batch, split over them)")
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices,
                                                                        auto_shard_dataset=count == 1))
    return Processes(count=count, index=index, devices=len(devices))


def scratch_run(run_dir: Path, cluster: dict, resume: bool) -> Path:
    """The run directory this process writes: the real one for process 0, else a scratch copy of it."""
    index = cluster.get("index", 0)
    if not index:
        return Path(run_dir)
    scratch = Path(tempfile.mkdtemp(prefix=f"edgelabels-process{index}-"))
    if resume and Path(run_dir).is_dir():
        shutil.rmtree(scratch)
        shutil.copytree(run_dir, scratch, ignore=lambda folder, names: [n for n in names if n in NOT_COPIED])
    return scratch


def finish(run_dir: Path, cluster: dict) -> None:
    """Remove a scratch copy (a process other than the first); the real run directory stays."""
    if cluster.get("index", 0):
        shutil.rmtree(run_dir, ignore_errors=True)


def for_devices(batches, processes: Processes, validation: bool = False):
    """The batches this process trains on: each global batch padded to a multiple of the device count (the last
    batch of an epoch may be short; JAX splits a batch only evenly), then this process's rows of it.
    validation: real rows scaled so that the epoch's loss, not each batch's, is their mean (see padding_scales)."""
    if processes.devices == 1 and processes.count == 1:
        return batches
    return _shard_class()(batches, processes, padding_scales(len(batches.order), batches.batch_size,
                                                             processes.devices, validation))


def padding_scales(rows: int, batch_size: int, devices: int, validation: bool) -> list[float] | None:
    """Per batch, the sample weight of its real rows when padded rows weigh 0; None when no batch is padded.

    Keras divides a batch's weighted loss sum by the batch's length (padded rows included) and averages an epoch's
    batch losses weighted by their lengths. Training: the padded batch's real rows get length / real rows, so the
    step's loss is theirs alone. Validation: every real row gets (rows after padding) / (real rows), so the epoch's
    loss is the mean over the real rows (a batch's own loss is then not)."""
    sizes = [min(batch_size, rows - start) for start in range(0, rows, batch_size)]
    padded = [size + -size % devices for size in sizes]
    if padded == sizes:
        return None
    if validation:
        return [sum(padded) / rows] * len(sizes)
    return [p / s for p, s in zip(padded, sizes)]


def _shard_class():
    import keras

    class ProcessShard(keras.utils.PyDataset):
        """Global batches -> this process's contiguous rows of each, the same steps in every process."""

        def __init__(self, batches, processes: Processes, scales: list[float] | None):
            super().__init__()
            self.batches, self.processes, self.scales = batches, processes, scales

        def __len__(self) -> int:
            return len(self.batches)

        def __getitem__(self, i):
            return rows_of(self.batches[i], self.processes, None if self.scales is None else self.scales[i])

        def on_epoch_end(self):
            self.batches.on_epoch_end()

    return ProcessShard


def rows_of(batch, processes: Processes, scale: float | None = None):
    """A global batch (arrays, or tuples/dicts of them) -> this process's rows, after padding the batch with its own
    first rows to a multiple of the device count (which the process count divides).

    scale: given, an (x, y[, weights]) batch gets sample weights: `scale` on its real rows (times their own
    weights), 0 on the padded ones."""
    import numpy as np

    real = len(_first_array(batch))
    batch = _padded(batch, -real % processes.devices)
    if scale is not None:
        x, y, *weights = batch
        weight = np.zeros(len(_first_array(x)), np.float32)
        weight[:real] = scale
        if weights:
            weight = np.asarray(weights[0], np.float32) * weight.reshape(-1, *[1] * (np.ndim(weights[0]) - 1))
        batch = (x, y, weight)
    return _slice(batch, processes)


def _first_array(batch):
    while isinstance(batch, (dict, tuple, list)):
        batch = next(iter(batch.values())) if isinstance(batch, dict) else batch[0]
    return batch


def _padded(batch, short: int):
    import numpy as np

    def pad(array):
        array = np.asarray(array)
        return np.concatenate([array, array[np.arange(short) % len(array)]]) if short else array

    return _each_array(batch, pad)


def _slice(batch, processes: Processes):
    def rows(array):
        size = len(array) // processes.count
        return array[processes.index * size:(processes.index + 1) * size]

    return _each_array(batch, rows)


def _each_array(batch, fn):
    """batch (arrays, or tuples/dicts of them) with fn applied to each array."""
    if isinstance(batch, dict):
        return {k: _each_array(v, fn) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(_each_array(part, fn) for part in batch)
    return fn(batch)
