"""Data-parallel training (issue 17): Keras' DataParallel on JAX over 4 fake CPU devices, and over 2 processes on
localhost that write one run directory. JAX runs in child processes (the suite's backend is TensorFlow)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from edgelabels.config import load_config
from edgelabels.errors import UserError
from edgelabels.train.distribute import Processes, cluster_from, for_devices, rows_of
from helpers.runs import write_images

TINY = ["model.backbone=tinycnn", "model.weights=none", "data.image_size=32", "train.epochs=2",
        "train.fine_tune_epochs=0", "train.batch_size=8", "train.verbose=0", "train.workers=1",
        "data.test_fraction=0.2", "data.val_fraction=0.25", "model.dropout=0", "train.distribute=data_parallel"]


def _jax_env(devices: int = 1) -> dict:
    pytest.importorskip("jax")
    return {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3",
            "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}


def _train(args: list[str], env: dict, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "edgelabels.cli", "train", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("distribute") / "images"
    write_images(folder, per_label=12)  # 24 training images: 3 whole batches of 8, none padded
    (folder.parent / "tiny.yaml").write_text(f"data:\n  source: {folder}\n")
    return folder


def test_rows_of_a_global_batch_pad_the_short_last_batch_and_split_it_over_processes():
    import numpy as np

    batch = np.arange(6)
    # 4 devices in 2 processes: 6 rows padded with the first 2 to 8, 4 each
    assert rows_of(batch, Processes(count=2, index=0, devices=4)).tolist() == [0, 1, 2, 3]
    assert rows_of(batch, Processes(count=2, index=1, devices=4)).tolist() == [4, 5, 0, 1]
    x, y = rows_of((np.arange(8), np.arange(8) * 10), Processes(count=2, index=1, devices=2))
    assert x.tolist() == [4, 5, 6, 7] and y.tolist() == [40, 50, 60, 70]


def test_padded_rows_weigh_nothing_and_real_rows_are_scaled_to_keep_the_mean():
    import numpy as np

    from edgelabels.train.distribute import padding_scales

    assert padding_scales(24, 8, 4, validation=False) is None  # no batch padded: batches stay as they are
    assert padding_scales(20, 6, 3, validation=False) == [1, 1, 1, 1.5]  # the last 2 rows padded to 3
    assert padding_scales(20, 6, 3, validation=True) == [21 / 20] * 4
    x, y, w = rows_of((np.arange(2), np.arange(2) * 10), Processes(count=1, index=0, devices=3), scale=1.5)
    assert x.tolist() == [0, 1, 0] and y.tolist() == [0, 10, 0] and w.tolist() == [1.5, 1.5, 0]
    weights = np.array([[1.0, 2.0], [3.0, 4.0]])  # (N, K): a multi-label batch's own weights are kept, times scale
    _, _, w = rows_of((np.arange(2), np.arange(2), weights), Processes(count=1, index=0, devices=3), scale=2.0)
    assert w.tolist() == [[2.0, 4.0], [6.0, 8.0], [0.0, 0.0]]


@pytest.mark.parametrize("images, batch", [(8, 8), (20, 6)])
def test_validation_over_three_devices_scores_each_real_image_once(images, batch):
    """8 validation images on 3 devices were scored as 9 (the first one twice): val_accuracy 5/9 or 7/9."""
    import keras
    import numpy as np
    from PIL import Image

    from edgelabels.data.preprocess import PreprocessSpec
    from edgelabels.train.fit import _compile
    from edgelabels.train.loader import ImageBatches, PixelCache

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (images, 8, 8, 3), np.uint8)
    cache = PixelCache([str(i) for i in range(images)], PreprocessSpec(8, 8), 1e9,
                       read=lambda path: Image.fromarray(pixels[int(path)]))
    keras.utils.set_random_seed(0)
    small = keras.initializers.RandomNormal(0, 0.01)  # probabilities far from 0: a finite crossentropy
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(2, "softmax", kernel_initializer=small)])
    probs = model.predict(ImageBatches(cache, batch_size=batch, workers=1), verbose=0)
    guess = probs.argmax(axis=1)
    labels = 1 - guess  # all wrong but the first image: what counting it twice changes most
    labels[0] = guess[0]
    config = load_config(None, ["data.source=x", "train.distribute=data_parallel"])
    _compile(model, config, 0.01)
    three = Processes(count=1, index=0, devices=3)
    scores = model.evaluate(for_devices(ImageBatches(cache, labels, 2, batch, workers=1), three, validation=True),
                            verbose=0, return_dict=True)
    assert scores["accuracy"] == pytest.approx(1 / images)
    crossentropy = -np.log(probs[np.arange(images), labels]).mean()
    assert scores["loss"] == pytest.approx(crossentropy, rel=1e-5)


def test_several_processes_need_all_three_settings_and_a_valid_id(monkeypatch):
    for name in ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES",
                 "KERAS_DISTRIBUTION_PROCESS_ID"):
        monkeypatch.delenv(name, raising=False)
    assert cluster_from() == {}
    with pytest.raises(UserError, match="need all three"):
        cluster_from("127.0.0.1:1234", 2, None)
    with pytest.raises(UserError, match="must be in 0..1"):
        cluster_from("127.0.0.1:1234", 2, 2)
    monkeypatch.setenv("KERAS_DISTRIBUTION_JOB_ADDRESSES", "h:1")
    monkeypatch.setenv("KERAS_DISTRIBUTION_NUM_PROCESSES", "3")
    monkeypatch.setenv("KERAS_DISTRIBUTION_PROCESS_ID", "2")
    assert cluster_from() == {"coordinator": "h:1", "count": 3, "index": 2}


def test_data_parallel_under_tensorflow_is_refused(images, tmp_path):
    from edgelabels.train.fit import train

    config = load_config(None, [f"data.source={images}", *TINY])
    with pytest.raises(UserError, match="runs on the JAX backend"):
        train(config, tmp_path / "run")
    with pytest.raises(UserError, match="did you mean|must be one of"):
        load_config(None, [f"data.source={images}", "train.distribute=model_parallel"])


def indivisible_batch(root):
    """A JAX job (helpers/jax_worker.py), 4 devices: the CLI asked for a batch of 6; its exit code and stderr."""
    import contextlib
    import io

    from edgelabels.cli import main

    images = root / "images"
    write_images(images, per_label=12)
    (root / "tiny.yaml").write_text(f"data:\n  source: {images}\n")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["train", str(root / "tiny.yaml"), "--out", str(root / "run"),
                     *[a for t in TINY for a in ("--set", t)], "--set", "train.batch_size=6"])
    return {"code": code, "err": err.getvalue()}


@pytest.mark.slow
def test_a_batch_that_does_not_split_over_the_devices_is_refused(request):
    from helpers.jax_worker import result

    answer = result("test_distribute:indivisible_batch", 4, request)
    assert answer["code"] == 2, answer["err"]
    assert "train.batch_size 6 must divide by the 4 devices" in answer["err"] and "Traceback" not in answer["err"]


def _history(run: Path) -> list[dict]:
    rows = [line.split(",") for line in (run / "history.csv").read_text().splitlines()]
    return [dict(zip(rows[0], row)) for row in rows[1:]]


def four_device_run(root):
    """A JAX job (helpers/jax_worker.py), run with 1 and with 4 devices: 24 images in 3 whole batches of 8."""
    from edgelabels.train.fit import train

    images = root / "images"
    write_images(images, per_label=12)
    train(load_config(None, [f"data.source={images}", *TINY]), root / "run")
    return {"history": _history(root / "run"), "log": (root / "run" / "train.log").read_text()}


@pytest.mark.slow
def test_four_devices_train_with_the_same_losses_as_one(request):
    from helpers.jax_worker import result

    one, four = (result("test_distribute:four_device_run", devices, request) for devices in (1, 4))
    assert "data parallel over 4 devices in 1 processes" in four["log"]
    one, four = ([float(row["loss"]) for row in answer["history"]] for answer in (one, four))
    assert len(one) == len(four) == 2
    # same global batch, same seed, no dropout: the same curve up to float summation order
    assert max(abs(a - b) / abs(a) for a, b in zip(one, four)) < 1e-3


@pytest.mark.slow
def test_two_processes_on_localhost_write_one_run_directory(images, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = tmp_path / "run"
    before = {p.name for p in Path(os.environ.get("TMPDIR", "/tmp")).glob("edgelabels-process1-*")}
    procs = [_train([str(images.parent / "tiny.yaml"), "--out", str(run),
                     *[a for t in TINY for a in ("--set", t)], "--coordinator", f"127.0.0.1:{port}",
                     "--num-processes", "2", "--process-id", str(i)], _jax_env(1)) for i in (0, 1)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    assert (run / "model.keras").is_file() and len((run / "history.csv").read_text().splitlines()) == 3
    assert "data parallel over 2 devices in 2 processes (this one 0)" in (run / "train.log").read_text()
    after = {p.name for p in Path(os.environ.get("TMPDIR", "/tmp")).glob("edgelabels-process1-*")}
    assert after <= before  # process 1's scratch copy is gone


def padded_classifier(root):
    """A JAX job (helpers/jax_worker.py), run with 1 and with 3 devices: 14 training and 4 validation images in
    batches of 6 (on 3 devices both last batches are padded); the history and the split sizes."""
    from edgelabels.train.fit import train

    images = root / "images"
    write_images(images, labels=("circle", "square"), per_label=11)
    # head only: a BatchNorm that trains takes its batch statistics over the padded copies too
    train(load_config(None, [f"data.source={images}", *TINY, "train.batch_size=6", "train.stage_a_trains=head"]),
          root / "run")
    splits = root / "run" / "splits"
    return {"history": _history(root / "run"), "log": (root / "run" / "train.log").read_text(),
            "splits": [len((splits / f"{name}.txt").read_text().splitlines()) for name in ("train", "val")]}


@pytest.mark.slow
def test_three_devices_with_padded_batches_validate_as_one_device(request):
    from helpers.jax_worker import result

    one, three = (result("test_distribute:padded_classifier", devices, request) for devices in (1, 3))
    assert one["splits"] == [14, 4] and "data parallel over 3 devices" in three["log"]
    assert len(one["history"]) == len(three["history"]) == 2
    for a, b in zip(one["history"], three["history"]):
        for column in ("val_loss", "val_accuracy", "val_auc"):
            assert float(b[column]) == pytest.approx(float(a[column]), rel=1e-4), (column, a, b)
