"""--resume after a real SIGKILL puts the run back in the state an uninterrupted run has at that point.

One tiny run is killed twice (`kill -9`, no `finally` runs): as stage b (fine-tuning) begins, then in the
middle of stage b's second epoch, and resumed after each; an uninterrupted run of the same config is the
reference. A child script wraps keras.Model.fit to record, per training step, the stage, the optimizer's
step count and learning rate and the trainable weights, and to kill its own process at a given step; the two runs
that are not killed (the reference and the last resume) run the same wrapper in this process.
"""

import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from helpers.datasets import REPO, make_stripes_dataset, tiny_config_overrides

pytestmark = pytest.mark.slow

EPOCHS, FINE_TUNE_EPOCHS, BATCH = 2, 3, 4  # 28 training images: 7 steps per epoch
CONFIG = {"train.epochs": EPOCHS, "train.fine_tune_epochs": FINE_TUNE_EPOCHS, "train.batch_size": BATCH,
          "train.stage_a_trains": "head", "model.fine_tune_layers": -1, "train.lr_schedule": "cosine",
          "train.learning_rate": 0.01, "train.fine_tune_learning_rate": 0.003, "augment.preset": "none"}
KILL_AS_B_BEGINS, KILL_MID_B = ["b", 0, 0], ["b", 1, 3]  # (stage, epoch, batch) at the batch's start

# PROBE records the steps; a child runs it, then the CLI (CHILD). A run that is not killed runs PROBE and the CLI in
# this process instead (`here` below): a child pays TensorFlow's start-up.
PROBE = r'''
import json, os, signal, sys

import keras

kill_at, steps_file = json.loads(os.environ["KILL_AT"]), os.environ["STEPS_FILE"]
stage_of = {EPOCHS: "a", FINE_TUNE_EPOCHS: "b"}  # fit(epochs=...) says which stage it trains


class Probe(keras.callbacks.Callback):
    def __init__(self, stage):
        super().__init__()
        self.stage = stage

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        optimizer = self.model.optimizer
        step = {"stage": self.stage, "epoch": self.epoch, "batch": batch, "iterations": int(optimizer.iterations),
                "lr": float(optimizer.learning_rate), "trainable": sorted(w.path for w in self.model.trainable_weights)}
        with open(steps_file, "a") as f:
            f.write(json.dumps(step) + "\n")
        if [self.stage, self.epoch, batch] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)


original_fit = keras.Model.fit


def fit(self, *args, **kwargs):
    kwargs["callbacks"] = [*kwargs.get("callbacks", []), Probe(stage_of[kwargs["epochs"]])]
    return original_fit(self, *args, **kwargs)


keras.Model.fit = fit
'''.replace("FINE_TUNE_EPOCHS", str(FINE_TUNE_EPOCHS)).replace("EPOCHS", str(EPOCHS))
CHILD = PROBE + """
from edgelabels.cli import main

sys.exit(main(sys.argv[1:]))
"""


def _steps(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _at(steps, stage, epoch, batch):
    return next(s for s in steps if (s["stage"], s["epoch"], s["batch"]) == (stage, epoch, batch))


def _weights(path):
    from edgelabels.models.factory import load_model

    return {w.path: np.asarray(w) for w in load_model(path).weights}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The uninterrupted run, and the killed one through its two kills and resumes: what each process recorded."""
    root = tmp_path_factory.mktemp("resume-kill")
    script = root / "child.py"
    script.write_text(CHILD)
    sets = [x for item in tiny_config_overrides(make_stripes_dataset(root / "data", per_label=20), **CONFIG)
            for x in ("--set", item)]
    config = str(REPO / "configs" / "pneumonia.yaml")

    def start(name, out, kill_at, *args):
        env = {**os.environ, "KILL_AT": json.dumps(kill_at), "STEPS_FILE": str(root / f"{name}.jsonl")}
        return subprocess.Popen([sys.executable, str(script), "train", *args, "--out", str(root / out)], cwd=REPO,
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def finish(proc, code):
        stderr = proc.communicate()[1]
        assert proc.returncode == code, stderr[-3000:]
        return proc

    def here(name, out, *args):
        import keras

        from edgelabels.cli import main

        original = keras.Model.fit
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("KILL_AT", "null")
            patch.setenv("STEPS_FILE", str(root / f"{name}.jsonl"))
            try:
                exec(PROBE, {})
                assert main(["train", *args, "--out", str(root / out)]) == 0
            finally:
                keras.Model.fit = original

    killed = start("killed", "run", KILL_AS_B_BEGINS, config, *sets)
    here("whole", "whole", config, *sets)  # while the child trains
    first = finish(killed, -signal.SIGKILL)
    run = root / "run"
    shutil.copy(run / "checkpoint" / "last.keras", root / "stage-a-end.keras")
    # What a kill during a save leaves (atomic.temp_path's and write_bytes's names), by the process just killed,
    # and the same names by a live process (this one: a concurrent evaluate or export).
    planted = {pid: [run / f".model.{pid}.tmp.keras", run / "checkpoint" / f".last.{pid}.0badf00d.tmp.keras",
                     run / "checkpoint" / f".state.json.{pid}.0badf00d.tmp"] for pid in (first.pid, os.getpid())}
    for path in planted[first.pid] + planted[os.getpid()]:
        path.write_bytes(b"")
    (run / f".export.{first.pid}.0badf00d.tmp").mkdir()
    (run / f".export.{first.pid}.0badf00d.tmp" / "model.onnx").write_bytes(b"half")
    finish(start("resumed", "run", KILL_MID_B, config, "--resume"), -signal.SIGKILL)
    left = {"dead": [p.name for p in [*planted[first.pid], run / f".export.{first.pid}.0badf00d.tmp"] if p.exists()],
            "live": [p.name for p in planted[os.getpid()] if p.exists()], "live planted": len(planted[os.getpid()])}
    shutil.copy(run / "checkpoint" / "last.keras", root / "stage-b1-end.keras")
    here("resumed-again", "run", config, "--resume")
    return {"root": root, "run": run, "left": left,
            **{name: _steps(root / f"{name}.jsonl") for name in ("whole", "killed", "resumed", "resumed-again")}}


def _stage_b_layers(whole):
    """Weights that stage b trains and stage a did not (the unfrozen backbone layers), from the reference run."""
    unfrozen = set(_at(whole, "b", 0, 0)["trainable"]) - set(_at(whole, "a", 0, 0)["trainable"])
    assert unfrozen, "the config must unfreeze backbone layers in stage b"
    return sorted(unfrozen)


def _assert_as_uninterrupted(resumed, whole):
    for step in resumed:
        reference = _at(whole, step["stage"], step["epoch"], step["batch"])
        assert step["iterations"] == reference["iterations"], step
        assert step["trainable"] == reference["trainable"], step
        np.testing.assert_allclose(step["lr"], reference["lr"], rtol=1e-6, err_msg=str(step))


def test_a_run_killed_as_fine_tuning_began_resumes_fine_tuning_as_the_uninterrupted_run_did(runs):
    killed, resumed = runs["killed"][-1], runs["resumed"]
    assert [killed["stage"], killed["epoch"], killed["batch"]] == KILL_AS_B_BEGINS
    assert (resumed[0]["stage"], resumed[0]["epoch"], resumed[0]["batch"]) == tuple(KILL_AS_B_BEGINS)
    _assert_as_uninterrupted(resumed, runs["whole"])  # lr at every resumed step, from the first; trainable set
    before, after = _weights(runs["root"] / "stage-a-end.keras"), _weights(runs["root"] / "stage-b1-end.keras")
    for name in _stage_b_layers(runs["whole"]):
        assert np.abs(after[name] - before[name]).max() > 0, f"{name} did not change in the resumed stage b"
    assert "resumed at the start of stage b" in (runs["run"] / "train.log").read_text()


def test_a_run_killed_in_the_middle_of_fine_tuning_resumes_at_its_last_completed_epoch(runs):
    assert (runs["resumed"][-1]["stage"], runs["resumed"][-1]["epoch"], runs["resumed"][-1]["batch"]) \
        == tuple(KILL_MID_B)
    again = runs["resumed-again"]
    assert (again[0]["stage"], again[0]["epoch"], again[0]["batch"]) == ("b", 1, 0)
    _assert_as_uninterrupted(again, runs["whole"])
    before, after = _weights(runs["root"] / "stage-b1-end.keras"), _weights(runs["run"] / "checkpoint" / "last.keras")
    for name in _stage_b_layers(runs["whole"]):
        assert np.abs(after[name] - before[name]).max() > 0, f"{name} did not change after the second resume"
    state = json.loads((runs["run"] / "checkpoint" / "state.json").read_text())
    assert (state["stage"], state["epoch"], state["checkpoint"], state["done"]) == ("b", FINE_TUNE_EPOCHS, "b", True)
    assert "resumed from stage b epoch 1" in (runs["run"] / "train.log").read_text()


def test_resume_removes_the_temp_files_a_killed_process_left_and_keeps_a_live_ones(runs):
    left = runs["left"]
    assert left["dead"] == []  # the killed process's
    assert len(left["live"]) == left["live planted"] == 3  # this (live) process's
