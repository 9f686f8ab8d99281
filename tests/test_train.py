"""Training: class weights, freezing in both stages, run: initialisation, run directory, resume, JAX."""

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgelabels.config import load_config
from edgelabels.errors import UserError
from edgelabels.train.loader import class_weights
from helpers.datasets import REPO, make_stripes_dataset, tiny_config_overrides

pytestmark = pytest.mark.slow


def test_balanced_class_weights_match_scikit_learn():
    from sklearn.utils.class_weight import compute_class_weight

    y = np.array([0] * 90 + [1] * 7 + [2] * 3)
    config = load_config(None, ["data.source=x"])
    ours = class_weights(config, ["a", "b", "c"], y)
    np.testing.assert_allclose(ours, compute_class_weight("balanced", classes=np.arange(3), y=y), rtol=1e-6)


def test_explicit_class_weights_default_to_one_and_refuse_unknown_labels():
    config = load_config(None, ["data.source=x", "train.class_weight={b: 4}"])
    assert class_weights(config, ["a", "b"], np.array([0, 1])).tolist() == [1.0, 4.0]
    config = load_config(None, ["data.source=x", "train.class_weight={zebra: 4}"])
    with pytest.raises(UserError, match="unknown labels"):
        class_weights(config, ["a", "b"], np.array([0, 1]))


def _fit_once(model, lr=0.05):
    import keras

    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 32, 32, 3)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 2, 16), 2)
    model.compile(optimizer=keras.optimizers.SGD(lr), loss="categorical_crossentropy")
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)


def test_stage_a_freezes_the_backbone_and_stage_b_unfreezes_only_the_top_without_batchnorm():
    from edgelabels.models.classifier import backbone_of, build_classifier, freeze_backbone, unfreeze_top

    model = build_classifier("tinycnn", 2, 32, 32)
    base = backbone_of(model)
    before = [w.copy() for w in base.get_weights()]
    head_before = model.get_layer("probabilities").get_weights()[0].copy()
    freeze_backbone(model)
    _fit_once(model)
    for old, new in zip(before, base.get_weights()):
        np.testing.assert_array_equal(old, new)  # BatchNorm moving stats included: inference mode
    assert not np.allclose(head_before, model.get_layer("probabilities").get_weights()[0])

    assert unfreeze_top(model, 1) == 0  # the top weighted layer of tinycnn is BatchNorm: stays frozen
    assert unfreeze_top(model, 2) == 1  # block2_conv becomes trainable
    conv1 = base.get_layer("block1_conv").get_weights()[0].copy()
    conv2 = base.get_layer("block2_conv").get_weights()[0].copy()
    bn2 = [w.copy() for w in base.get_layer("block2_bn").get_weights()]
    _fit_once(model)
    np.testing.assert_array_equal(conv1, base.get_layer("block1_conv").get_weights()[0])
    assert not np.allclose(conv2, base.get_layer("block2_conv").get_weights()[0])
    for old, new in zip(bn2, base.get_layer("block2_bn").get_weights()):
        np.testing.assert_array_equal(old, new)


def _train_cli(*args):
    """The train command through the CLI's own entry (parsing, handler, exit code, stderr) in this process: a
    `python -m edgelabels.cli` child pays TensorFlow's start-up each time. That the module runs as a command is
    tests/test_cli_quiet.py's to check; the resume test below kills a real child."""
    import contextlib
    import io

    from edgelabels.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["train", *args])
    return subprocess.CompletedProcess(["train", *args], code, "", err.getvalue())


def _sets(source, **extra):
    return [x for item in tiny_config_overrides(source, **extra) for x in ("--set", item)]


def test_a_tiny_run_writes_every_artefact_and_learns(stripes, tmp_path):
    run = tmp_path / "run"
    result = _train_cli(str(REPO / "configs" / "pneumonia.yaml"), "--out", str(run),
                        *_sets(stripes, **{"data.group_by": "null", "train.epochs": 6, "train.learning_rate": 0.01,
                                           "augment.preset": "none"}))
    assert result.returncode == 0, result.stderr
    for name in ("layout.json", "config.yaml", "labels.json", "preprocess.json", "model.keras", "history.csv",
                 "train.log", "checkpoint/last.keras", "checkpoint/state.json",
                 "splits/train.txt", "splits/val.txt", "splits/test.txt"):
        assert (run / name).is_file(), name
    assert json.loads((run / "labels.json").read_text()) == ["horizontal", "vertical"]
    rows = list(csv.DictReader((run / "history.csv").open()))
    assert [(r["stage"], int(r["epoch"])) for r in rows] == [("a", i) for i in range(1, 7)] + [("b", 1)]
    assert float(rows[-1]["accuracy"]) > 0.8  # stripes are easy: the loop really trains

    from edgelabels.artifacts import RunDir
    from edgelabels.models.factory import keras_runner, load_model
    from edgelabels.runtime.runner import predict_files

    assert json.loads((run / "layout.json").read_text()) == {"layout": "run", "version": 2}
    loaded = RunDir.load(run)
    test = loaded.split.test
    probs = predict_files(keras_runner(load_model(loaded.model_path)), [s.path for s in test], loaded.spec)
    assert probs.shape == (len(test), 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)


def test_existing_run_is_not_overwritten(stripes, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "something").write_text("x")
    result = _train_cli(str(REPO / "configs" / "pneumonia.yaml"), "--out", str(tmp_path / "run"), *_sets(stripes))
    assert result.returncode == 2 and "already exists" in result.stderr


def test_run_initialisation_copies_the_backbone_weights(stripes, tmp_path):
    from edgelabels.models.factory import create_model as build_model
    from edgelabels.models.factory import load_model

    first = tmp_path / "first"
    assert _train_cli(str(REPO / "configs" / "pneumonia.yaml"), "--out", str(first),
                      *_sets(stripes, **{"train.fine_tune_epochs": 0})).returncode == 0
    config = load_config(None, tiny_config_overrides(stripes, **{"model.weights": f"run:{first}"}))
    model = build_model(config, 3)  # another head, same backbone
    source = load_model(first / "model.keras").get_layer("backbone").get_weights()
    for a, b in zip(source, model.get_layer("backbone").get_weights()):
        np.testing.assert_array_equal(a, b)
    config = load_config(None, tiny_config_overrides(stripes, **{"model.weights": f"run:{tmp_path / 'nope'}"}))
    with pytest.raises(UserError, match="no model.keras there"):
        build_model(config, 2)


def test_resume_after_a_kill_continues_from_the_last_completed_epoch(tmp_path):
    source = make_stripes_dataset(tmp_path / "data", per_label=12)
    run = tmp_path / "run"
    args = [str(REPO / "configs" / "pneumonia.yaml"), "--out", str(run),
            *_sets(source, **{"train.epochs": 30, "train.fine_tune_epochs": 2})]
    proc = subprocess.Popen([sys.executable, "-m", "edgelabels.cli", "train", *args], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = run / "checkpoint" / "state.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if state.exists() and json.loads(state.read_text())["epoch"] >= 2:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = json.loads(state.read_text())["epoch"]
    assert 2 <= done_before < 30, "the kill must land mid-run"

    result = _train_cli(str(REPO / "configs" / "pneumonia.yaml"), "--out", str(run), "--resume")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader((run / "history.csv").open()))
    assert [(r["stage"], int(r["epoch"])) for r in rows] == [("a", i) for i in range(1, 31)] + [("b", 1), ("b", 2)]
    assert json.loads(state.read_text())["done"] is True
    assert "resumed from stage a epoch" in (run / "train.log").read_text()


def classifier_cli(root):
    """A JAX job (helpers/jax_worker.py): the train command on the stripes, in the JAX child."""
    from edgelabels.cli import main

    run = root / "jaxrun"
    code = main(["train", str(REPO / "configs" / "pneumonia.yaml"), "--out", str(run),
                 *_sets(make_stripes_dataset(root / "stripes"))])
    return {"code": code, "run": str(run)}


def test_training_runs_under_the_jax_backend(request):
    from helpers.jax_worker import result

    answer = result("test_train:classifier_cli", 1, request)
    assert answer["code"] == 0
    run = Path(answer["run"])
    assert "backend jax" in (run / "train.log").read_text()
    assert (run / "model.keras").is_file()


def test_max_pooling_head_is_built_when_configured(stripes):
    import keras

    from edgelabels.models.factory import create_model as build_model

    config = load_config(None, tiny_config_overrides(stripes, **{"model.pooling": "max"}))
    assert isinstance(build_model(config, 2).get_layer("pool"), keras.layers.GlobalMaxPooling2D)
    config = load_config(None, tiny_config_overrides(stripes))
    assert isinstance(build_model(config, 2).get_layer("pool"), keras.layers.GlobalAveragePooling2D)


def test_training_without_room_for_the_pixel_cache_decodes_every_batch(stripes, tmp_path):
    from edgelabels.data.images import read_image
    from edgelabels.data.preprocess import PreprocessSpec, normalise, to_pixels
    from edgelabels.train.loader import ImageBatches, PixelCache

    paths, spec = sorted(stripes.rglob("*.png"))[:6], PreprocessSpec(32, 32)
    expected = normalise(np.stack([to_pixels(read_image(p)[0], spec) for p in paths]), spec)
    for budget, decodes in ((0, 12), (1e9, 6)):  # two epochs: no room decodes twice, room decodes once
        reads = []
        cache = PixelCache(paths, spec, max_bytes=budget, read=lambda p: reads.append(p) or read_image(p)[0])
        assert cache.enabled == (budget > 0) and cache.nbytes == (0 if budget == 0 else 6 * 32 * 32 * 3)
        batches = ImageBatches(cache, [0, 1] * 3, 2, batch_size=4, workers=1)
        for _epoch in range(2):
            x = np.concatenate([batches[i][0] for i in range(len(batches))])
            batches.on_epoch_end()
            np.testing.assert_array_equal(x, expected)  # every batch holds exactly the decoded images
        assert len(reads) == decodes
    run = tmp_path / "nocache"
    result = _train_cli(str(REPO / "configs" / "pneumonia.yaml"), "--out", str(run),
                        *_sets(stripes, **{"data.cache_max_gb": 0, "train.epochs": 1, "train.fine_tune_epochs": 0}))
    assert result.returncode == 0, result.stderr
    assert (run / "model.keras").is_file()


def test_resume_refuses_set_overrides_in_one_line(stripes, tmp_path):
    from edgelabels.artifacts import RunDir

    run = RunDir(tmp_path / "run")
    run.start(load_config(None, tiny_config_overrides(stripes)).to_yaml())  # an interrupted run's config
    saved = run.config_path.read_text()
    result = _train_cli(str(REPO / "configs" / "pneumonia.yaml"), "--out", str(run.dir), "--resume",
                        "--set", "train.epochs=8")
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "--set" in result.stderr and "new run" in result.stderr, result.stderr
    assert run.config_path.read_text() == saved and not run.log_path.exists()  # nothing was trained


def test_a_run_whose_first_attempt_failed_starts_again_with_the_same_command(tmp_path):
    from edgelabels.train.fit import train

    source, run = tmp_path / "data", tmp_path / "run"
    source.mkdir()  # no images yet
    config = load_config(None, tiny_config_overrides(source, **{"train.fine_tune_epochs": 0}))
    with pytest.raises(UserError):
        train(config, run)
    assert (run / "config.yaml").is_file() and (run / "train.log").is_file()  # what the failed attempt left
    (run / "notes.txt").write_text("mine")  # not the run's: stays

    make_stripes_dataset(source)
    train(config, run)
    assert json.loads((run / "checkpoint" / "state.json").read_text())["done"] is True
    log = (run / "train.log").read_text().splitlines()
    assert " INFO restarting run " in log[0] and not any(" INFO starting run " in line for line in log)
    assert (run / "notes.txt").read_text() == "mine"
    with pytest.raises(UserError, match="already exists"):  # a run with a completed epoch is never started over
        train(config, run)


def test_a_stage_b_checkpoint_restores_its_trainable_flags_optimizer_step_and_cosine_schedule(stripes, tmp_path):
    import keras

    from edgelabels.models.classifier import build_classifier, freeze_backbone, unfreeze_top
    from edgelabels.models.factory import load_model
    from edgelabels.train.fit import _compile

    config = load_config(None, tiny_config_overrides(stripes, **{"train.lr_schedule": "cosine"}))
    model = build_classifier("tinycnn", 2, 32, 32)
    freeze_backbone(model)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(24, 32, 32, 3)).astype("float32"), keras.utils.to_categorical(rng.integers(0, 2, 24), 2)
    _compile(model, config, 0.01, 6)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    unfreeze_top(model, -1)
    _compile(model, config, 0.003, 9)  # stage b: 3 epochs of 3 steps
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    model.save(tmp_path / "last.keras")

    loaded = load_model(tmp_path / "last.keras", compile=True)
    assert sorted(w.path for w in loaded.trainable_weights) == sorted(w.path for w in model.trainable_weights) == [
        "block1_conv/kernel", "block2_conv/kernel", "probabilities/bias", "probabilities/kernel"]
    assert int(loaded.optimizer.iterations) == 3
    assert isinstance(loaded.optimizer._learning_rate, keras.optimizers.schedules.CosineDecay)
    # 0.003 * (1 + cos(pi * 3 / 9)) / 2: a third of the way down the stage's cosine
    np.testing.assert_allclose(float(loaded.optimizer.learning_rate), 0.003 * (1 + np.cos(np.pi / 3)) / 2, rtol=1e-6)
    for mine, theirs in zip(model.optimizer.variables, loaded.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(mine), np.asarray(theirs))  # Adam's moments too


def test_a_state_file_from_before_the_checkpoint_field_still_says_which_stage_the_checkpoint_is(tmp_path):
    from edgelabels.artifacts import TrainState

    path = tmp_path / "state.json"
    for saved, stage in (({"stage": "a", "epoch": 3}, "a"), ({"stage": "b", "epoch": 0}, "a"),
                         ({"stage": "b", "epoch": 2}, "b")):
        path.write_text(json.dumps({**saved, "best": None, "best_epoch": None, "done": False}))
        assert TrainState(path, "val_loss").checkpoint_stage == stage, saved


def test_a_checkpoint_one_epoch_past_its_state_file_is_continued_after(stripes, tmp_path):
    from edgelabels.models.factory import load_model
    from edgelabels.train.fit import train

    run = tmp_path / "run"
    config = load_config(None, tiny_config_overrides(stripes, **{"train.fine_tune_epochs": 2}))
    train(config, run)
    state_path = run / "checkpoint" / "state.json"
    finished = json.loads(state_path.read_text())
    steps = int(load_model(run / "checkpoint" / "last.keras", compile=True).optimizer.iterations) // 2
    # As if killed after b2's last.keras was renamed into place but before its state.json was.
    state_path.write_text(json.dumps({**finished, "epoch": 1, "done": False}))
    train(None, run, resume=True)
    assert "one epoch past state.json" in (run / "train.log").read_text()
    assert int(load_model(run / "checkpoint" / "last.keras", compile=True).optimizer.iterations) == 2 * steps
    rows = list(csv.DictReader((run / "history.csv").open()))
    assert [(r["stage"], int(r["epoch"])) for r in rows] == [("a", 1), ("a", 2), ("b", 1), ("b", 2)]

    # Another batch size written into its config.yaml: another number of steps per epoch.
    saved = (run / "config.yaml").read_text()
    assert "batch_size: 8" in saved
    (run / "config.yaml").write_text(saved.replace("batch_size: 8", "batch_size: 4"))
    state_path.write_text(json.dumps({**finished, "epoch": 1, "done": False}))
    with pytest.raises(UserError, match="cannot be resumed exactly"):
        train(None, run, resume=True)
