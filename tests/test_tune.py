"""`edgelabels tune`: the study's logic on cheap trials, and one short real study.

The study's bookkeeping (kill and resume, a failing trial, pruning, the deadline, the choice of the best trial)
is tested with trials that run edgelabels.tune.trial's own code in a child but replace training with a plan
(tests/helpers/fake_trial.py: no TensorFlow, a second a trial), and with a fake final step. A Ctrl-C of the
study is a KeyboardInterrupt raised by its clock while a trial runs (what kill -9 leaves differs only in the
budget's last second). One real study of a tiny multi-label config (the task that was missing) checks that
trials train, report and are exported end to end.
"""

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers.datasets import REPO, make_stripes_dataset

FAKE_TRIAL = Path(__file__).parent / "helpers" / "fake_trial.py"

CONFIG = """\
task: classification
seed: 1
data: {{source: {source}, image_size: 32}}
model: {{backbone: tinycnn, weights: none}}
train: {{epochs: 4, fine_tune_epochs: 0, batch_size: 8, learning_rate: 0.02, monitor: val_loss, verbose: 0,
         workers: 1}}
tune:
  learning_rate: {{low: 1.0e-5, high: 0.02, log: true}}
  dropout: 0.3
  backbone: tinycnn
  batch_size: 8
  imbalance: {imbalance}
  augment: none
  pruner: successive-halving
  min_epochs: 1
"""

# What each fake trial does (see fake_trial.py). Session 1 is interrupted in trial 1 after 2 epochs; session 2
# resumes trial 1 from its checkpoint, then trial 2 exits with code 7, trial 3 falls behind at the first rung
# (pruned), and it is interrupted in trial 4 before its first epoch; session 3, given LAST_S more, fails trial 4
# and runs trial 5 until the search's deadline kills it.
PLAN = {
    "0": {"values": [0.9, 0.8, 0.7, 0.6], "sleep": 0.05},
    "1": {"values": [0.5, 0.45, 0.4, 0.35], "sleep": 0.05, "stop_after": 2},
    "2": {"exit": 7, "say": "error: the trial's own last words"},
    "3": {"values": [2.0, 2.0, 2.0, 2.0], "sleep": 0.05},
    "4": {"values": [0.3], "stop_after": 0},
    "default": {"values": [1.0], "sleep": 600},
}
BUDGET_S = 120.0  # never reached by sessions 1 and 2 (a trial takes 1-4 s)
LAST_S = 7.0  # session 3's budget: the search's deadline comes RESERVE_S before its end
RESERVE_S = 3.0  # kept for the final step (a fake one here), in place of the real study's 10 s at least


def _config(root: Path, imbalance: str = "class-weights", **extra):
    """Writes root/tiny.yaml (with a small stripes dataset) and returns it loaded, `extra` as overrides."""
    from edgelabels.config import load_config

    config = root / "tiny.yaml"
    source = make_stripes_dataset(root / "data", per_label=4)
    config.write_text(CONFIG.format(source=source, imbalance=imbalance))
    return load_config(config, [f"{k}={v}" for k, v in extra.items()])


def _fake(monkeypatch, root: Path, plan: dict) -> None:
    """Trials run the plan; the final step writes what an evaluation and an export leave, and records its job."""
    import edgelabels.tune.study as study

    plan_path = root / "plan.json"
    plan_path.write_text(json.dumps(plan))
    monkeypatch.setattr(study, "trial_command", lambda tune_dir, number: [
        sys.executable, str(FAKE_TRIAL), str(plan_path), str(tune_dir.dir), str(number), str(os.getpid())])
    final = ("import json, pathlib, sys; job = json.loads(sys.argv[1]); run = pathlib.Path(job['run']); "
             "(run / 'evaluation').mkdir(); (run / 'evaluation' / 'metrics.json').write_text('{\"accuracy\": 0.75}'); "
             "(run / 'export').mkdir(); (run.parent.parent / 'final-job.json').write_text(sys.argv[1])")
    monkeypatch.setattr(study, "pipeline_command", lambda job: [sys.executable, "-c", final, job.to_json()])


def _interrupt_on_request(monkeypatch, out: Path):
    """The study's clock (polled while a trial runs) raises Ctrl-C once a fake trial asks for it."""
    from edgelabels.tune.budget import Clock

    real, marker = Clock.save, out / "interrupt-me"

    def save(self, force=False):
        if marker.exists() and not force:
            marker.unlink()
            raise KeyboardInterrupt
        return real(self, force)

    monkeypatch.setattr(Clock, "save", save)


def _states(out: Path) -> dict:
    from edgelabels.artifacts import TuneDir
    from edgelabels.tune.store import open_study, study_space

    study = open_study(TuneDir(out), study_space(TuneDir(out)))
    return {t.number: t.state.name.lower() for t in study.get_trials(deepcopy=False)}


def _rows(out: Path) -> dict:
    return {int(r["trial"]): r for r in csv.DictReader((out / "trials.csv").open())}


@pytest.fixture(scope="module")
def fake_study(tmp_path_factory):
    from edgelabels.tune.study import tune

    root = tmp_path_factory.mktemp("fake-tune")
    out = root / "tune"
    with pytest.MonkeyPatch.context() as monkeypatch:
        _fake(monkeypatch, root, PLAN)
        _interrupt_on_request(monkeypatch, out)
        monkeypatch.setattr("edgelabels.tune.study.FINAL_RESERVE_MIN_S", RESERVE_S)
        config = _config(root)
        with pytest.raises(KeyboardInterrupt):
            tune(config, out, BUDGET_S)  # interrupted in trial 1, after its second epoch
        rows_after_first = _states(out)
        trial0_state = (out / "trials" / "0000" / "checkpoint" / "state.json").stat().st_mtime_ns
        with pytest.raises(KeyboardInterrupt):
            tune(None, out, None, resume=True)  # resumes trial 1; interrupted in trial 4, before an epoch
        spent_before = json.loads((out / "budget.json").read_text())["spent_s"]
        started = time.monotonic()
        code = tune(None, out, LAST_S, resume=True)
        seconds = time.monotonic() - started
    return {"out": out, "code": code, "rows": _rows(out), "rows_after_first": rows_after_first, "seconds": seconds,
            "trial0_state": trial0_state, "spent_before": spent_before,
            "budget": json.loads((out / "budget.json").read_text())}


def test_a_study_interrupted_during_a_trial_resumes_that_trial_from_its_checkpoint(fake_study):
    rows, out = fake_study["rows"], fake_study["out"]
    assert fake_study["rows_after_first"] == {0: "complete", 1: "running"}
    assert rows[1]["state"] == "complete" and float(rows[1]["value"]) == pytest.approx(0.35)
    assert (out / "trials" / "0001" / "train.log").read_text() == "epoch 1\nepoch 2\nepoch 3\nepoch 4\n"
    assert [rows[1][f"epoch_{e}"] for e in range(1, 5)] == ["0.5", "0.45", "0.4", "0.35"]


def test_no_completed_trial_runs_again_after_a_resume(fake_study):
    rows, out = fake_study["rows"], fake_study["out"]
    assert rows[0]["state"] == "complete" and float(rows[0]["value"]) == pytest.approx(0.6)
    assert (out / "trials" / "0000" / "train.log").read_text().count("epoch 1") == 1
    assert (out / "trials" / "0000" / "checkpoint" / "state.json").stat().st_mtime_ns == fake_study["trial0_state"]


def test_a_trial_interrupted_before_its_first_epoch_is_failed_on_resume(fake_study):
    row = fake_study["rows"][4]
    assert row["state"] == "fail" and row["failure"] == "interrupted before it finished an epoch", row


def test_a_trial_whose_process_exits_non_zero_is_failed_with_its_last_line_and_the_study_goes_on(fake_study):
    rows = fake_study["rows"]
    assert rows[2]["state"] == "fail"
    assert rows[2]["failure"] == "exited with code 7: error: the trial's own last words"
    assert rows[3]["state"] == "pruned"


def test_a_trial_behind_the_others_at_the_first_rung_is_pruned_there(fake_study):
    row = fake_study["rows"][3]
    assert row["state"] == "pruned" and row["epochs"] == "1", row


def test_the_trial_running_at_the_search_deadline_is_killed_and_the_study_keeps_to_its_budget(fake_study):
    rows, budget = fake_study["rows"], fake_study["budget"]
    assert max(rows) == 5
    assert rows[5]["state"] == "fail" and rows[5]["failure"] == "killed at the deadline", rows[5]
    assert budget["budget_s"] == pytest.approx(fake_study["spent_before"] + LAST_S)  # --resume --budget: more
    assert float(rows[5]["seconds"]) <= LAST_S - RESERVE_S + 0.5  # (a poll, then the kill)
    # the search stops RESERVE_S before the budget's end, and the final step fits in that
    assert LAST_S - RESERVE_S <= fake_study["seconds"] <= LAST_S + 0.05 * budget["budget_s"], fake_study["seconds"]
    assert budget["spent_s"] <= budget["budget_s"] + 0.05 * budget["budget_s"], budget


def test_the_best_trial_by_validation_is_the_one_evaluated_and_exported(fake_study):
    out = fake_study["out"]
    assert fake_study["code"] == 0
    best = json.loads((out / "best.json").read_text())
    assert best["trial"] == 1 and best["monitor"] == "val_loss"  # the lowest val_loss of the complete trials
    assert (out / "best").resolve() == (out / "trials" / "0001").resolve()
    job = json.loads((out / "final-job.json").read_text())
    assert Path(job["run"]).resolve() == (out / "trials" / "0001").resolve()
    assert job["evaluate"] == {"gradcam_per_kind": 0, "progress": False} and job["export"] == {}
    assert [p.name for p in (out / "trials").iterdir() if (p / "evaluation").exists()] == ["0001"]
    assert "Optimisation history" in (out / "report.html").read_text()


def test_trials_with_searched_losses_are_ranked_on_val_auc_not_on_their_losses(tmp_path, monkeypatch):
    """Focal loss is ~16x smaller than crossentropy for the same predictions: ranked on val_loss, the focal trial
    (worse AUC) would be chosen."""
    from edgelabels.tune.study import tune

    plan = {"default": {"by_loss": {
        "focal": [{"val_loss": 0.02, "val_auc": 0.60}, {"val_loss": 0.01, "val_auc": 0.65}],
        "crossentropy": [{"val_loss": 0.40, "val_auc": 0.90}, {"val_loss": 0.30, "val_auc": 0.95}]}}}
    _fake(monkeypatch, tmp_path, plan)
    config = _config(tmp_path, imbalance="[none, focal]", **{  # two points: trial 0 (none), then focal
        "train.epochs": 2, "train.class_weight": "none", "tune.learning_rate": "0.02", "tune.pruner": "none"})
    assert tune(config, tmp_path / "tune", 120.0) == 0  # ends when both points are tried
    rows = _rows(tmp_path / "tune")
    assert sorted(r["imbalance"] for r in rows.values() if r["state"] == "complete") == ["focal", "none"]
    best = json.loads((tmp_path / "tune" / "best.json").read_text())
    assert best["monitor"] == "val_auc" and best["value"] == pytest.approx(0.95)
    assert rows[best["trial"]]["imbalance"] == "none"
    chosen_config = (tmp_path / "tune" / "best" / "config.yaml").read_text()
    assert "loss: crossentropy" in chosen_config and "monitor: val_auc" in chosen_config


def test_a_final_step_that_fails_ends_the_study_with_code_1_and_its_reason(tmp_path, monkeypatch, capsys):
    import edgelabels.tune.study as study

    _fake(monkeypatch, tmp_path, {"default": {"values": [0.5]}})
    monkeypatch.setattr(study, "pipeline_command", lambda job: [
        sys.executable, "-c", "import sys; print('edgelabels: error: the test split is empty'); sys.exit(2)"])
    config = _config(tmp_path, **{"train.epochs": 1, "tune.learning_rate": "0.02"})  # one point: trial 0
    assert study.tune(config, tmp_path / "tune", 120.0) == 1
    err = capsys.readouterr().err
    assert "the chosen run's evaluation and export: exited with code 2: edgelabels: error: the test split is " \
           "empty" in err
    assert json.loads((tmp_path / "tune" / "best.json").read_text())["trial"] == 0


def test_a_space_that_does_not_search_the_loss_keeps_train_monitor(tmp_path):
    from edgelabels.tune.space import build_space

    assert build_space(_config(tmp_path, imbalance="focal")).objective == "val_loss"
    assert build_space(_config(tmp_path, imbalance="[none, oversample]")).objective == "val_loss"


def test_every_task_takes_its_tune_defaults_from_the_task_table(tmp_path):
    from edgelabels.config import load_config
    from edgelabels.data.multilabel import generate_shapes
    from edgelabels.tasks import TASKS
    from edgelabels.tune.space import build_space

    manifest = generate_shapes(tmp_path / "ml", 12, seed=1)
    space = build_space(load_config(None, ["task=multilabel", f"data.source={manifest}", "model.weights=none",
                                           "model.backbone=tinycnn"]))
    assert {d.name for d in space.dimensions} <= set(TASKS["multilabel"].tune_keys)
    backbone = next(d for d in space.dimensions if d.name == "backbone")
    assert backbone.choices == TASKS["multilabel"].tune_backbones
    assert space.objective == "val_loss"


@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_an_out_that_cannot_be_a_folder_is_refused_in_one_line_and_nothing_is_written(tmp_path, capsys, where):
    from edgelabels.cli import main

    config = tmp_path / "cfg" / "tiny.yaml"
    config.parent.mkdir()
    _config(config.parent)
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    out = blocker if where == "a file" else blocker / "tune"
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert main(["tune", str(config), "--budget", "1m", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"--out {out}" in err and "is a file" in err and (str(blocker) in err)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert blocker.read_text() == "not a folder"


def test_an_unknown_tune_key_is_refused_with_a_suggestion(tmp_path):
    done = subprocess.run([sys.executable, "-m", "edgelabels.cli", "tune", str(REPO / "configs" / "pneumonia.yaml"),
                           "--budget", "1m", "--out", str(tmp_path / "t"), "--set", "tune.learnig_rate=[0.1]"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().count("\n") == 0
    assert "unknown key tune.learnig_rate (did you mean tune.learning_rate?)" in done.stderr
    assert not (tmp_path / "t").exists()


MULTILABEL_BUDGET_S = 60  # a trial takes 12 s on 2 cores, 30 s when they are busy; the final step about as long
# A space of two points (learning_rate; the rest fixed): the study trains both, finds the space exhausted and goes
# to the final step without waiting out the budget (ending the search at the deadline is fake_study's test).
MULTILABEL_CONFIG = """\
task: multilabel
seed: 1
data: {{source: {source}, image_size: 32, group_by: '^(g\\d+)_', val_fraction: 0.2}}
model: {{backbone: tinycnn, weights: none}}
train: {{epochs: 3, fine_tune_epochs: 0, batch_size: 16, learning_rate: 0.003, verbose: 0, workers: 1}}
tune: {{backbone: tinycnn, image_size: 32, augment: none, min_epochs: 1, learning_rate: [0.003, 0.01],
        batch_size: 16, dropout: 0.3}}
"""


@pytest.mark.slow
def test_a_short_multilabel_study_trains_trials_then_evaluates_and_exports_the_best(tmp_path):
    """The real thing, once: trials are child processes training tinycnn runs, the final step is the pipeline."""
    from edgelabels.cli import main
    from edgelabels.data.multilabel import generate_shapes

    manifest = generate_shapes(tmp_path / "set", 80, seed=7)
    out = tmp_path / "tune"
    started = time.monotonic()
    config = tmp_path / "multilabel.yaml"
    config.write_text(MULTILABEL_CONFIG.format(source=manifest))
    code = main(["tune", str(config), "--budget", f"{MULTILABEL_BUDGET_S}s", "--out", str(out)])
    seconds = time.monotonic() - started
    assert code == 0
    rows = _rows(out)
    assert rows[0]["state"] == "complete", rows  # (trial 1 too, unless busy cores leave it to the deadline)
    assert seconds <= 1.05 * MULTILABEL_BUDGET_S + 2
    best = json.loads((out / "best.json").read_text())
    assert rows[best["trial"]]["state"] == "complete"
    assert (out / "best" / "evaluation" / "summary.json").is_file()
    assert (out / "best" / "export" / "model.onnx").is_file()
