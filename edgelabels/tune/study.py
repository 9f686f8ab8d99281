"""The study, read top to bottom in `tune`:

1. the tune directory: started (config and budget saved, the Optuna study created in SQLite inside it, the
   config's own values enqueued as trial 0) or resumed (its own config; a trial left RUNNING by a kill is
   resumed from its run's checkpoint, or marked failed if it had finished no epoch)
2. trials until the search's deadline: the budget less a reserve for the final step. Optuna's TPE sampler
   (seeded) proposes; each trial is a child process (trial.py) training an ordinary run directory, reporting
   every epoch's validation value to the study, pruned by SuccessiveHalving or Hyperband; it is killed at the
   deadline (jobs.run_job), so a crash, an out-of-memory kill or the deadline is one failed trial, never the
   study's end. A proposal that repeats a finished trial takes its result without training again. Trials are
   ranked on Space.objective: train.monitor, but val_auc in place of val_loss while the loss is searched.
3. the chosen trial (the best validation value, complete trials only) is evaluated once on its test split and
   exported: the pipeline (edgelabels/pipeline.py) in a child job that must end within the budget plus 5%
4. trials.csv and report.html (report.py), rewritten after every trial.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

from edgelabels import atomic
from edgelabels.artifacts import TuneDir
from edgelabels.config import Config, load_config
from edgelabels.errors import UserError
from edgelabels.jobs import DEADLINE, run_job
from edgelabels.pipeline import Job, pipeline_command
from edgelabels.tune.budget import Clock, show_duration
from edgelabels.tune.report import chosen_run_headline
from edgelabels.tune.space import Space, build_space, space_summary, trial_label
from edgelabels.tune.store import open_study, study_space
from edgelabels.tune.trial import PRUNED_EXIT

# The final step (a process start, evaluation, export) costs about what a trial takes to its first epoch's end
# (imports, data, model, one epoch: each trial measures it as first_epoch_s). Measured on 2 cores: 12 s against
# 12.5 s for tinycnn at 32 px, 23 s against 16 s for the bees detector; FINAL_STARTUPS times the slowest trial's is
# kept, and before any trial has shown it, FINAL_RESERVE_MIN_S.
FINAL_STARTUPS = 1.25
FINAL_RESERVE_MIN_S = 10.0
# DEADLINE (jobs.py), like INTERRUPTED, is a failure that says nothing about the parameters: they may be tried again
INTERRUPTED = "interrupted before it finished an epoch"


def tune(config: Config | None, out: str | Path, budget_s: float | None, resume: bool = False) -> int:
    """Run (or resume) a study into `out` within budget_s seconds (on resume: that much more, or by default what
    is left of the budget). Returns the exit code: 0 with the chosen run evaluated and exported."""
    tune_dir = TuneDir(out)
    if resume:
        tune_dir.check_resumable()
        config = load_config(tune_dir.config_path)
        saved = tune_dir.read_budget()
        total = saved["budget_s"] if budget_s is None else saved["spent_s"] + budget_s
        clock = Clock(total, saved["spent_s"], tune_dir.write_budget)
    else:
        build_space(config)  # a bad tune: section is refused before anything is written
        _start(tune_dir, config, budget_s)
        clock = Clock(budget_s, 0.0, tune_dir.write_budget)
    space = study_space(tune_dir)
    study = open_study(tune_dir, space, create=not resume)
    if not study.trials:
        study.enqueue_trial(space.own_params())
    why = " (not val_loss: the loss is searched)" if space.objective != config.train.monitor else ""
    _say(f"tune {tune_dir.dir}: {'resuming, ' if resume else ''}{show_duration(clock.left())} left of "
         f"{show_duration(clock.total_s)}; selecting on {space.objective}{why} ({study.direction.name.lower()}); "
         f"space: {'; '.join(space_summary(space))}")
    try:
        for number in _left_running(study):
            _finish_interrupted(tune_dir, study, space, number, clock)
        _search(tune_dir, study, space, clock)
        return _final(tune_dir, study, space, clock)
    finally:
        clock.save(force=True)


def _start(tune_dir: TuneDir, config: Config, budget_s: float) -> None:
    """The new study's folder, or one line saying why `out` cannot be one (nothing written then)."""
    existing = atomic.nearest_existing(tune_dir.dir)
    if existing.exists() and not existing.is_dir():
        where = "it is a file" if existing == tune_dir.dir else f"{existing} is a file"
        raise UserError(f"--out {tune_dir.dir}: cannot be the study's folder: {where}")
    if existing != tune_dir.dir and not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"--out {tune_dir.dir}: cannot be created: {existing} is not writable")
    try:
        tune_dir.start(config.to_yaml(), budget_s)
    except OSError as exc:
        raise UserError(f"--out {tune_dir.dir}: cannot write the study's folder: {exc.strerror or exc}") from None


def _search(tune_dir: TuneDir, study, space: Space, clock: Clock) -> None:
    while True:
        limit = clock.left() - _final_reserve(study)
        if limit <= 0:
            return
        if _exhausted(study, space):
            _say(f"the search space is exhausted ({space.size():g} points tried)")
            return
        trial = study.ask(space.distributions())
        same = _same_as(study, trial.params)
        if same is not None:
            _repeat(study, trial, same)
            continue
        _run_trial(tune_dir, study, space, trial.number, limit, clock)


def _left_running(study) -> list[int]:
    import optuna

    return [t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))]


def _finish_interrupted(tune_dir: TuneDir, study, space: Space, number: int, clock: Clock) -> None:
    """A trial a kill left RUNNING: resumed from its run's checkpoint, or failed if it finished no epoch."""
    import optuna

    if tune_dir.trial_run(number).last_path.is_file() and clock.left() - _final_reserve(study) > 0:
        _say(f"trial {number} was interrupted: resuming its run from its last checkpoint")
        _run_trial(tune_dir, study, space, number, clock.left() - _final_reserve(study), clock)
        return
    _set_attrs(study, number, failure=INTERRUPTED)
    study.tell(number, state=optuna.trial.TrialState.FAIL)
    _say(f"trial {number} failed: {INTERRUPTED} (the study was stopped)")


def _run_trial(tune_dir: TuneDir, study, space: Space, number: int, limit_s: float, clock: Clock) -> None:
    """Trial `number` in a child process, killed after limit_s seconds; its outcome told to the study."""
    import optuna

    outcome = run_job(trial_command(tune_dir, number), tune_dir.trial_log(number), limit_s, poll=clock.save)
    state, failure = optuna.trial.TrialState.FAIL, outcome.reason
    if outcome.ok:
        objective = space.objective
        value = tune_dir.trial_run(number).train_state(objective).data["best"]
        if value is None or not math.isfinite(value):
            failure = f"no finite validation value ({objective} = {value})"
        else:
            state, failure = optuna.trial.TrialState.COMPLETE, None
    elif outcome.code == PRUNED_EXIT:
        state, failure = optuna.trial.TrialState.PRUNED, None
    _set_attrs(study, number, seconds=outcome.seconds, **({"failure": failure} if failure else {}))
    if state == optuna.trial.TrialState.COMPLETE:
        study.tell(number, value)
    else:
        study.tell(number, state=state)
    _report(tune_dir, study)
    _say(_progress(study, number, clock))


def trial_command(tune_dir: TuneDir, number: int) -> list[str]:
    return [sys.executable, "-m", "edgelabels.tune.trial", str(tune_dir.dir), str(number), str(os.getpid())]


def final_job(run_dir: Path) -> Job:
    """The chosen run evaluated on its test split (no Grad-CAM: it is seen once, in the report) and exported."""
    return Job(run=str(run_dir), evaluate={"gradcam_per_kind": 0, "progress": False}, export={})


def _set_attrs(study, number: int, **attrs) -> None:
    import optuna

    trial = optuna.Trial(study, _trial_id(study, number))
    for key, value in attrs.items():
        trial.set_user_attr(key, value)


def _trial_id(study, number: int) -> int:
    # Optuna's Trial takes the storage's id, which a FrozenTrial keeps (there is no public accessor).
    return next(t._trial_id for t in study.get_trials(deepcopy=False) if t.number == number)


def _finished(study):
    import optuna

    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
    return [t for t in study.get_trials(deepcopy=False, states=states)
            if t.user_attrs.get("failure") not in (DEADLINE, INTERRUPTED)]


def _same_as(study, params: dict):
    """A finished trial with exactly these parameters (not one cut short by the deadline), or None."""
    return next((t for t in _finished(study) if t.params == params), None)


def _repeat(study, trial, same) -> None:
    """A proposal identical to a finished trial takes that trial's result: no completed trial trains twice."""
    import optuna

    trial.set_user_attr("same_as", same.number)
    for step, value in same.intermediate_values.items():
        trial.report(value, step)
    if same.state == optuna.trial.TrialState.COMPLETE:
        study.tell(trial, same.value)
    else:
        study.tell(trial, state=same.state)
    _say(f"trial {trial.number}: same parameters as trial {same.number}, its result taken ({same.state.name.lower()})")


def _exhausted(study, space: Space) -> bool:
    size = space.size()
    if math.isinf(size):
        return False
    return len({tuple(sorted(t.params.items())) for t in _finished(study)}) >= size


def _final_reserve(study) -> float:
    """Seconds kept for the final step. The slowest start-up seen, not a typical one: a final step cut at the
    budget's end leaves no export, while one that ends early only leaves some of the budget unused."""
    starts = [t.user_attrs["first_epoch_s"] for t in study.get_trials(deepcopy=False)
              if "first_epoch_s" in t.user_attrs]
    return max([FINAL_RESERVE_MIN_S, *(FINAL_STARTUPS * s for s in starts)])


def best_trial(study):
    """The complete trial with the best validation value, or None."""
    import optuna

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        return None
    return (min if study.direction == optuna.study.StudyDirection.MINIMIZE else max)(complete, key=lambda t: t.value)


def _final(tune_dir: TuneDir, study, space: Space, clock: Clock) -> int:
    best = best_trial(study)
    _report(tune_dir, study)
    monitor = space.objective
    if best is None:
        raise UserError(f"{tune_dir.dir}: no trial finished within the budget ({len(study.trials)} tried; see "
                        f"{tune_dir.trials_csv_path} and {tune_dir.dir / TuneDir.LOGS}/): give a larger --budget, or "
                        "fewer train.epochs")
    run = tune_dir.write_best(best.number, best.value, monitor)
    _say(f"chosen: trial {best.number}, {monitor} {best.value:.4f} on validation ({trial_label(best.params)}); "
         f"evaluating it on its test split and exporting it")
    outcome = None
    if not (run.export_dir.is_dir() and run.evaluation_dir.is_dir()):  # a resumed study may have done this
        outcome = run_job(pipeline_command(final_job(run.dir)), tune_dir.final_log, max(1.0, clock.hard_left()),
                          poll=clock.save)
    _report(tune_dir, study)
    if outcome is not None and not outcome.ok:
        what = "did not finish within the budget" if outcome.killed_at_deadline else outcome.reason
        print(f"edgelabels: error: the chosen run's evaluation and export: {what} (see {tune_dir.final_log}); "
              f"`edgelabels evaluate {run.dir}` and `edgelabels export {run.dir}` finish it", file=sys.stderr)
        return 1
    _say(f"test split, evaluated once: {chosen_run_headline(run)}; exported to {run.export_dir}")
    _say(f"study done in {show_duration(clock.elapsed)} of {show_duration(clock.total_s - clock.spent_before_s)} "
         f"this session: {_counts(study)}")
    _say(f"the chosen run: {tune_dir.best_path} -> {run.dir} (evaluation/, export/); report: {tune_dir.report_path}")
    return 0


def _report(tune_dir: TuneDir, study) -> None:
    from edgelabels.tune.report import write_reports

    write_reports(tune_dir, study, best_trial(study))


def _counts(study) -> str:
    states = [t.state.name.lower() for t in study.trials]
    return ", ".join(f"{states.count(s)} {s}" for s in ("complete", "pruned", "fail", "running") if s in states)


def _progress(study, number: int, clock: Clock) -> str:
    trial = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
    best = best_trial(study)
    epochs = len(trial.intermediate_values)
    value = trial.value if trial.value is not None else \
        (trial.intermediate_values[max(trial.intermediate_values)] if epochs else None)
    shown = "-" if value is None else f"{value:.4f}"
    state = trial.state.name.lower() + (f" ({trial.user_attrs['failure']})" if "failure" in trial.user_attrs else "")
    lead = f"best {best.value:.4f} (trial {best.number})" if best else "no trial complete yet"
    return (f"trial {number:>3} {state:<9} {epochs} epochs {trial.user_attrs.get('seconds', 0):6.1f} s  value {shown}  "
            f"| {lead} | {show_duration(clock.spent)} of {show_duration(clock.total_s)} | {trial_label(trial.params)}")


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
