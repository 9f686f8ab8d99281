"""The recipe's training keys: early stopping (train.patience), warm-up, EMA of the weights, the wall-clock budget,
deterministic training; each survives --resume; and fit.train hands a config with `auto` keys to the recipe."""

import csv
import dataclasses
import json
import logging
import sys
import types

import numpy as np
import pytest

from edgelabels.config import load_config
from edgelabels.train.callbacks import budget_spent, epochs_since_best, patience_spent
from helpers.datasets import make_stripes_dataset, tiny_config_overrides
from test_resume_exact import Stopped, _stop_after


def _history(run):
    return list(csv.DictReader((run / "history.csv").open()))


def _at(rows):
    return [f"{r['stage']}{r['epoch']}" for r in rows]


def _weights(path):
    from edgelabels.models.factory import load_model

    return [np.asarray(w) for w in load_model(path).weights]


# ---------------------------------------------------------------- the rules, without training


def test_epochs_since_best_counts_ties_and_non_numbers_as_no_improvement():
    assert epochs_since_best([0.5, 0.4, 0.4, 0.45], "val_loss") == 2
    assert epochs_since_best([0.5, 0.6, 0.6], "val_accuracy") == 1
    assert epochs_since_best([float("nan"), float("nan")], "val_loss") == 2
    assert epochs_since_best([float("nan"), 0.3], "val_loss") == 0


def test_patience_ends_a_stage_only_after_that_many_epochs_without_a_better_monitor():
    assert patience_spent([0.5, 0.6, 0.55], "val_loss", 2) is not None
    assert patience_spent([0.5, 0.6], "val_loss", 2) is None
    assert patience_spent([0.5, 0.6, 0.55], "val_loss", None) is None


def test_the_budget_ends_training_when_another_epoch_of_the_mean_length_would_not_fit():
    state = types.SimpleNamespace(data={"spent_s": 50.0, "epoch_seconds": [10.0, 12.0]})  # mean 11 s
    assert "another epoch (mean 11.0 s) would not fit" in budget_spent(state, 60.0)
    assert budget_spent(state, 61.0) is None
    assert budget_spent(state, None) is None
    assert budget_spent(types.SimpleNamespace(data={"spent_s": 99.0}), 60.0) is None  # no epoch yet: none to judge


def test_a_warm_up_rises_linearly_to_the_rate_then_keeps_the_schedule_and_a_checkpoint_keeps_its_place(tmp_path):
    import keras

    from edgelabels.models.classifier import build_classifier
    from edgelabels.models.factory import load_model
    from edgelabels.train.fit import _compile

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 32, 32, 3)).astype("float32"), keras.utils.to_categorical(rng.integers(0, 2, 16), 2)
    for schedule, after in (("constant", 0.01), ("cosine", 0.01 * (1 + np.cos(np.pi * 2 / 8)) / 2)):
        config = load_config(None, tiny_config_overrides(tmp_path, **{"train.lr_schedule": schedule}))
        model = build_classifier("tinycnn", 2, 32, 32)
        _compile(model, config, 0.01, steps=12, warmup_steps=4)  # 4 warm-up steps, then 8 of the schedule
        assert float(model.optimizer.learning_rate) == 0.0
        model.fit(x, y, epochs=1, batch_size=8, verbose=0)  # 2 steps
        np.testing.assert_allclose(float(model.optimizer.learning_rate), 0.01 * 2 / 4, rtol=1e-6)
        model.fit(x, y, epochs=2, batch_size=8, verbose=0)  # 4 more: 2 into the schedule after the warm-up
        np.testing.assert_allclose(float(model.optimizer.learning_rate), after, rtol=1e-6, err_msg=schedule)
        model.save(tmp_path / f"{schedule}.keras")
        loaded = load_model(tmp_path / f"{schedule}.keras", compile=True)
        np.testing.assert_allclose(float(loaded.optimizer.learning_rate), after, rtol=1e-6, err_msg=schedule)


def test_a_stage_stopped_early_with_ema_ends_on_the_averaged_weights_as_a_stage_that_ran_out_does():
    import keras

    from edgelabels.models.classifier import build_classifier
    from edgelabels.train.callbacks import averaged_weights

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 32, 32, 3)).astype("float32"), keras.utils.to_categorical(rng.integers(0, 2, 16), 2)

    class StopAfterFirst(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            self.model.stop_training = True

    ends = []
    for epochs, stop in ((1, []), (3, [StopAfterFirst()])):
        keras.utils.set_random_seed(0)
        model = build_classifier("tinycnn", 2, 32, 32)
        model.compile(optimizer=keras.optimizers.Adam(0.05, use_ema=True, ema_momentum=0.5), loss="mse")
        model.fit(x, y, epochs=epochs, batch_size=4, verbose=0, shuffle=False,
                  callbacks=[*stop, averaged_weights(resumed=False)])
        ends.append([np.asarray(w) for w in model.trainable_weights])
    for ran_out, stopped in zip(*ends):
        np.testing.assert_allclose(stopped, ran_out, rtol=1e-6)


# ---------------------------------------------------------------- in training, and through a resume


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return make_stripes_dataset(tmp_path_factory.mktemp("keys") / "data", per_label=12)


@pytest.mark.slow
def test_patience_ends_each_stage_early_and_a_resumed_run_ends_where_the_uninterrupted_one_did(source, tmp_path):
    from edgelabels.train.fit import train

    # A learning rate too small to change any prediction: validation accuracy ties its first value every epoch,
    # and a tie is no improvement, so patience 1 ends each stage after its second epoch.
    config = load_config(None, tiny_config_overrides(source, **{
        "train.epochs": 5, "train.fine_tune_epochs": 4, "train.patience": 1, "train.monitor": "val_accuracy",
        "train.learning_rate": "0.000000001", "train.fine_tune_learning_rate": "0.000000001"}))
    train(config, tmp_path / "whole")
    whole = _history(tmp_path / "whole")
    assert _at(whole) == ["a1", "a2", "b1", "b2"]
    log = (tmp_path / "whole" / "train.log").read_text()
    assert "stage a ends after epoch 2 of 5: patience: val_accuracy best at epoch 1, not better in the 1 epochs" in log
    assert "stage b ends after epoch 2 of 4" in log
    assert json.loads((tmp_path / "whole" / "checkpoint" / "state.json").read_text())["stopped"].keys() == {"a", "b"}

    for stage, epoch in (("a", 1), ("a", 2)):
        run = tmp_path / f"stopped-{stage}{epoch}"
        with pytest.raises(Stopped):
            train(config, run, on_epoch=_stop_after(stage, epoch))
        train(None, run, resume=True)
        assert _at(_history(run)) == _at(whole), (stage, epoch)
        for mine, reference in zip(_weights(run / "model.keras"), _weights(tmp_path / "whole" / "model.keras")):
            np.testing.assert_allclose(mine, reference, rtol=1e-6)


@pytest.mark.slow
def test_ema_runs_and_a_resumed_ema_run_ends_with_the_uninterrupted_runs_weights_and_history(source, tmp_path):
    from edgelabels.train.fit import train

    config = load_config(None, tiny_config_overrides(source, **{
        "train.epochs": 3, "train.fine_tune_epochs": 2, "train.ema": 0.6, "train.warmup_epochs": 1,
        "train.lr_schedule": "cosine", "train.learning_rate": 0.01}))
    train(config, tmp_path / "whole")
    for stage, epoch in (("a", 2), ("b", 1)):
        run = tmp_path / f"stopped-{stage}{epoch}"
        with pytest.raises(Stopped):
            train(config, run, on_epoch=_stop_after(stage, epoch))
        train(None, run, resume=True)
        whole, resumed = _history(tmp_path / "whole"), _history(run)
        assert _at(resumed) == _at(whole) == ["a1", "a2", "a3", "b1", "b2"]
        for mine, reference in zip(resumed, whole):
            for column in ("loss", "val_loss", "val_accuracy"):
                np.testing.assert_allclose(float(mine[column]), float(reference[column]), rtol=1e-5,
                                           err_msg=f"{stage}{epoch} {mine['stage']}{mine['epoch']} {column}")
        for name in ("model.keras", "checkpoint/last.keras"):
            for mine, reference in zip(_weights(run / name), _weights(tmp_path / "whole" / name)):
                np.testing.assert_allclose(mine, reference, rtol=1e-5, atol=1e-7, err_msg=name)


@pytest.mark.slow
def test_the_budget_ends_training_after_the_epoch_that_spent_it_and_a_resumed_run_gets_no_fresh_budget(source,
                                                                                                        tmp_path):
    from edgelabels.train.fit import train

    # One second: the first epoch (with the model's tracing) spends it all; stage b is skipped.
    config = load_config(None, tiny_config_overrides(source, **{"train.epochs": 3, "train.budget": "1s"}))
    train(config, tmp_path / "short")
    assert _at(_history(tmp_path / "short")) == ["a1"]
    log = (tmp_path / "short" / "train.log").read_text()
    assert "stage a ends after epoch 1 of 3: budget: " in log and "stage b skipped: budget: " in log
    assert (tmp_path / "short" / "model.keras").exists()

    # An hour, nearly all of it spent by the time of the interruption (as state.json records): the resumed run
    # stops at once instead of training 2 more epochs and stage b.
    config = load_config(None, tiny_config_overrides(source, **{"train.epochs": 3, "train.budget": "1h"}))
    run = tmp_path / "resumed"
    with pytest.raises(Stopped):
        train(config, run, on_epoch=_stop_after("a", 1))
    state_path = run / "checkpoint" / "state.json"
    state = json.loads(state_path.read_text())
    assert state["spent_s"] > 0 and len(state["epoch_seconds"]) == 1
    state_path.write_text(json.dumps({**state, "spent_s": 3600 - state["epoch_seconds"][0] / 2}))
    train(None, run, resume=True)
    assert _at(_history(run)) == ["a1"]
    assert "stage a over before the resume: budget: " in (run / "train.log").read_text()


@pytest.mark.slow
def test_two_deterministic_runs_from_one_seed_give_bit_identical_weights(source, tmp_path):
    import os

    from edgelabels.train.fit import train

    # Shuffled, augmented, dropout, two loader threads: every source of randomness the seed must fix.
    config = load_config(None, tiny_config_overrides(source, **{
        "train.deterministic": True, "train.workers": 2, "augment.preset": "xray", "model.dropout": 0.3,
        "train.batch_size": 6, "model.fine_tune_layers": -1}))
    for name in ("one", "two"):
        train(config, tmp_path / name)
    assert os.environ["TF_DETERMINISTIC_OPS"] == "1"
    for name in ("model.keras", "checkpoint/last.keras"):
        one, two = _weights(tmp_path / "one" / name), _weights(tmp_path / "two" / name)
        assert len(one) == len(two) > 0
        for a, b in zip(one, two):
            assert np.array_equal(a, b), name


@pytest.mark.slow
def test_a_config_with_auto_keys_is_resolved_by_the_recipe_and_saved_resolved(source, tmp_path, monkeypatch):
    from edgelabels.train.fit import train

    calls = []

    def apply_recipe(config, run):
        calls.append(run.dir)
        logging.getLogger("edgelabels.train").info("recipe: train.patience = 2 (a stand-in's reason)")
        return dataclasses.replace(config, train=dataclasses.replace(config.train, patience=2))

    monkeypatch.setitem(sys.modules, "edgelabels.train.recipe", types.SimpleNamespace(apply_recipe=apply_recipe))
    config = load_config(None, tiny_config_overrides(source, **{"train.patience": "auto"}))
    run = tmp_path / "run"
    with pytest.raises(Stopped):
        train(config, run, on_epoch=_stop_after("a", 1))
    assert calls == [run]
    saved = load_config(run / "config.yaml")
    assert saved.train.patience == 2
    assert "recipe: train.patience = 2 (a stand-in's reason)" in (run / "train.log").read_text()
    train(None, run, resume=True)  # resolved: never chosen again
    assert calls == [run]
