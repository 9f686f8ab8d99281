"""One job: train a run, evaluate it, export it, as `edgelabels train`, `evaluate` and `export` would.

`pipeline(job)` runs it in this process; `python -m edgelabels.pipeline SPEC [PARENT_PID]` runs the same in a
child (SPEC: the Job as JSON, `Job.to_json()`), which is how `edgelabels tune` runs its final step and how a
service trains on request: jobs.run_job(pipeline_command(job), log, deadline). What the steps print goes to
stdout (a job's log). A step whose result is already there is skipped, so an interrupted job picks up where it
stopped: a run whose training is done is not trained again, an export newer than the model is kept. The
evaluation, when asked for, always runs (it is what the job shows).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from edgelabels.errors import UserError

STEPS = ("train", "evaluate", "export")


@dataclass(frozen=True)
class Job:
    """run: the run directory. config (a YAML file) and overrides (`key=value`): what a new run trains with;
    None for a run that exists (resumed if unfinished). evaluate / export: the options of evaluate_model /
    export_run, or None to leave that step out."""

    run: str
    config: str | None = None
    overrides: tuple[str, ...] = ()
    evaluate: dict | None = field(default_factory=dict)
    export: dict | None = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=str)

    @classmethod
    def from_json(cls, text: str) -> "Job":
        try:
            raw = json.loads(text)
            return cls(**{**raw, "overrides": tuple(raw.get("overrides", ()))})
        except (ValueError, TypeError, AttributeError) as exc:  # not JSON, not an object, unknown keys
            raise UserError(f"pipeline: not a job description ({exc}): {text[:200]}") from None


def pipeline(job: Job, announce: Callable[[str], None] | None = None) -> dict:
    """Run the job's steps in order. announce(step) is called before each step of the job (one of STEPS), also
    one skipped because its result is there.
    Returns {"trained": bool, "evaluation": evaluate_model's result or None, "export": the export report or
    None (also when an up-to-date export was kept)}."""
    from edgelabels.artifacts import RunDir

    announce = announce or (lambda step: None)
    run = RunDir(job.run)
    done = {"trained": False, "evaluation": None, "export": None}
    announce("train")
    if _trained(run):
        print(f"{run.dir} already trained (delete it to train again)")
    else:
        _train(job, run)
        done["trained"] = True
    if job.evaluate is not None:
        announce("evaluate")
        done["evaluation"] = _evaluate(run.dir, job.evaluate)
    if job.export is not None:
        announce("export")
        if run.export_dir.is_dir() and run.export_dir.stat().st_mtime >= run.model_path.stat().st_mtime:
            print(f"{run.export_dir} already exported")
        else:
            done["export"] = _export(run.dir, job.export)
    return done


def _trained(run) -> bool:
    return run.is_run() and run.train_state(run.config["train"]["monitor"]).data["done"]


def _train(job: Job, run) -> None:
    from edgelabels.config import load_config
    from edgelabels.train.fit import train

    if job.config is None:
        if not run.is_run():
            raise UserError(f"{run.dir}: not a run directory, and the job names no config to train one with")
        train(None, run.dir, resume=True)
        return
    train(load_config(job.config, list(job.overrides)), run.dir, resume=run.is_run())


def _evaluate(run_dir: Path, options: dict) -> dict:
    from edgelabels.evaluate.driver import evaluate_model, evaluation_lines

    result = evaluate_model(run_dir, **options)
    for line in evaluation_lines(result):
        print(line)
    return result


def _export(run_dir: Path, options: dict) -> dict:
    from edgelabels.artifacts import RunDir
    from edgelabels.export.driver import export_lines, export_run

    report = export_run(run_dir, **options)
    for line in export_lines(report, RunDir(run_dir).export_dir):
        print(line)
    return report


def pipeline_command(job: Job) -> list[str]:
    """The command line that runs `job` in a child that dies with this process (for jobs.run_job)."""
    return [sys.executable, "-m", "edgelabels.pipeline", job.to_json(), str(os.getpid())]


def main(argv: list[str]) -> int:
    """`python -m edgelabels.pipeline SPEC [PARENT_PID]`: exit 0 done, 2 a UserError (one line), else a crash."""
    from edgelabels.jobs import die_with

    if len(argv) > 1:
        die_with(int(argv[1]))
    try:
        pipeline(Job.from_json(argv[0]))
    except UserError as exc:
        print(f"edgelabels: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
