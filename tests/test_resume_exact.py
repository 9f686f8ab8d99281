"""--resume continues in exactly the state an uninterrupted run has at that epoch: the epochs after the stop train
on the same batches, augmented and dropped out the same, so every history row equals the uninterrupted run's."""

import csv

import numpy as np
import pytest

from edgelabels.config import load_config
from helpers.datasets import make_stripes_dataset, tiny_config_overrides

pytestmark = pytest.mark.slow

# Shuffled, augmented (xray: affine, noise, flips), dropout 0.3, two loader threads, both stages: every source of
# randomness a resume must restore.
SETTINGS = {"train.epochs": 3, "train.fine_tune_epochs": 2, "augment.preset": "xray", "model.dropout": 0.3,
            "train.workers": 2, "train.batch_size": 6, "model.fine_tune_layers": -1, "train.learning_rate": 0.01}
COLUMNS = ("loss", "accuracy", "auc", "val_loss", "val_accuracy", "val_auc")


class Stopped(Exception):
    pass


def _stop_after(stage: str, epoch: int):
    def on_epoch(done_stage, done_epoch, logs):
        if (done_stage, done_epoch) == (stage, epoch):
            raise Stopped

    return on_epoch


def _history(run):
    return [{"at": f"{r['stage']}{r['epoch']}", **{c: float(r[c]) for c in COLUMNS}}
            for r in csv.DictReader((run / "history.csv").open())]


@pytest.fixture(scope="module")
def config_and_whole(tmp_path_factory):
    from edgelabels.train.fit import train

    root = tmp_path_factory.mktemp("resume-exact")
    config = load_config(None, tiny_config_overrides(make_stripes_dataset(root / "data", per_label=16), **SETTINGS))
    train(config, root / "whole")
    return config, _history(root / "whole")


@pytest.mark.parametrize("stage, epoch", [("a", 1), ("b", 1)])
def test_a_run_stopped_and_resumed_has_every_epoch_of_the_uninterrupted_run(config_and_whole, tmp_path, stage, epoch):
    from edgelabels.train.fit import train

    config, whole = config_and_whole
    assert [row["at"] for row in whole] == ["a1", "a2", "a3", "b1", "b2"]
    with pytest.raises(Stopped):
        train(config, tmp_path / "run", on_epoch=_stop_after(stage, epoch))
    train(None, tmp_path / "run", resume=True)
    resumed = _history(tmp_path / "run")
    assert [row["at"] for row in resumed] == [row["at"] for row in whole]
    for mine, reference in zip(resumed, whole):
        for column in COLUMNS:
            np.testing.assert_allclose(mine[column], reference[column], rtol=1e-5, err_msg=f"{mine['at']} {column}")


def data_parallel_resume(root):
    """A JAX job (helpers/jax_worker.py), 3 devices: the uninterrupted run, and a run stopped after epoch a1 then
    resumed; both histories and the resumed run's log."""
    from edgelabels.train.fit import train

    source = make_stripes_dataset(root / "data", per_label=16)
    config = load_config(None, tiny_config_overrides(source, **SETTINGS, **{"train.distribute": "data_parallel"}))
    train(config, root / "whole")
    try:
        train(config, root / "run", on_epoch=_stop_after("a", 1))
    except Stopped:
        pass
    train(None, root / "run", resume=True)
    return {"whole": _history(root / "whole"), "resumed": _history(root / "run"),
            "log": (root / "run" / "train.log").read_text()}


def test_a_data_parallel_run_stopped_and_resumed_has_every_epoch_of_the_uninterrupted_run(request):
    from helpers.jax_worker import result

    answer = result("test_resume_exact:data_parallel_resume", 3, request)
    whole, resumed = answer["whole"], answer["resumed"]
    assert "data parallel over 3 devices" in answer["log"]
    assert [row["at"] for row in resumed] == [row["at"] for row in whole] == ["a1", "a2", "a3", "b1", "b2"]
    for mine, reference in zip(resumed, whole):
        for column in COLUMNS:
            np.testing.assert_allclose(mine[column], reference[column], rtol=1e-5, err_msg=f"{mine['at']} {column}")
