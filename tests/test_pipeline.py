"""The one job (edgelabels/pipeline.py): its description, its steps in order, what it skips, its child's exit.

Training, evaluation and export are recorders here (what they leave is what the pipeline reads: a run marked
done, an export folder); the real steps run in the tune study's final step (tests/test_tune.py) and the
tasks' own end-to-end tests.
"""

import json
import os
import sys

import pytest

from edgelabels import pipeline
from edgelabels.pipeline import Job


@pytest.fixture()
def recorded(monkeypatch):
    from edgelabels.artifacts import RunDir

    calls = []

    def train(config, run_dir, resume=False):
        calls.append(("train", None if config is None else config.task, resume))
        run = RunDir(run_dir)
        if config is not None:
            run.start(config.to_yaml())
        run.model_path.write_bytes(b"model")
        state = run.train_state("val_loss")
        state.data["done"] = True
        state.save()
        return run_dir

    def export(run_dir, options):
        calls.append(("export", options))
        RunDir(run_dir).export_dir.mkdir()

    monkeypatch.setattr("edgelabels.train.fit.train", train)
    monkeypatch.setattr(pipeline, "_evaluate", lambda run_dir, options: calls.append(("evaluate", options)))
    monkeypatch.setattr(pipeline, "_export", export)
    return calls


def _config(tmp_path, stripes):
    config = tmp_path / "tiny.yaml"
    config.write_text(f"task: classification\ndata: {{source: {stripes}}}\n"
                      "model: {backbone: tinycnn, weights: none}\n")
    return config


def test_a_job_reads_back_from_its_json_as_it_was_written(tmp_path):
    job = Job(run=str(tmp_path / "run"), config="configs/bees.yaml", overrides=("seed=3", "train.epochs=2"),
              evaluate={"data": str(tmp_path / "fresh"), "review_accuracy": 0.99}, export=None)
    assert Job.from_json(job.to_json()) == job
    command = pipeline.pipeline_command(job)
    assert command[:3] == [sys.executable, "-m", "edgelabels.pipeline"] and command[-1] == str(os.getpid())
    assert json.loads(command[3])["evaluate"]["review_accuracy"] == 0.99


def test_a_job_trains_evaluates_then_exports_and_a_second_run_only_evaluates(tmp_path, stripes, recorded):
    announced = []
    job = Job(run=str(tmp_path / "run"), config=str(_config(tmp_path, stripes)), overrides=("seed=4",),
              evaluate={"min_confidence": 0.4}, export={"int8": True})
    done = pipeline.pipeline(job, announced.append)
    assert recorded == [("train", "classification", False), ("evaluate", {"min_confidence": 0.4}),
                        ("export", {"int8": True})]
    assert done["trained"] and announced == ["train", "evaluate", "export"]
    recorded.clear(), announced.clear()
    done = pipeline.pipeline(job, announced.append)
    assert recorded == [("evaluate", {"min_confidence": 0.4})] and not done["trained"]
    assert announced == ["train", "evaluate", "export"]  # each step is announced, done or skipped


def test_a_job_leaves_out_the_steps_it_names_none(tmp_path, stripes, recorded):
    job = Job(run=str(tmp_path / "run"), config=str(_config(tmp_path, stripes)), evaluate=None, export={})
    pipeline.pipeline(job)
    assert [call[0] for call in recorded] == ["train", "export"]


def test_the_child_exits_2_with_one_line_for_a_job_that_cannot_run(tmp_path, capsys):
    assert pipeline.main([Job(run=str(tmp_path / "nothing")).to_json()]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a run directory" in err and str(tmp_path / "nothing") in err
    assert pipeline.main(["{not json"]) == 2
    assert "not a job description" in capsys.readouterr().err
