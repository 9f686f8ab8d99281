"""The study, read top to bottom in `tune`:

1. the tune directory: started (config and budget saved, the Optuna study created in SQLite inside it, the
   config's own values enqueued as trial 0) or resumed (its own config; a trial left RUNNING by a kill is
   resumed from its run's checkpoint, or marked failed if it had finished no epoch)
2. trials until the search's deadline: the budget less a reserve for the final step. Optuna's TPE sampler
   (seeded) proposes; each trial is a child process (trial.py) training an ordinary run directory, reporting
   every epoch's validation value to the study, pruned by SuccessiveHalving or Hyperband; it is killed at the
   deadline, so a crash, an out-of-memory kill or the deadline is one failed trial, never the study's end.
   A proposal that repeats a finished trial takes its result without training again.
3. the chosen trial (the best validation value, complete trials only) is evaluated once on its test split and
   exported (final.py), in a child that must end within the budget plus 5%
4. trials.csv and report.html (report.py), rewritten after every trial.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from edgelabels.artifacts import TuneDir
from edgelabels.config import Config, load_config
from edgelabels.errors import UserError
from edgelabels.tune.budget import Clock, show_duration
from edgelabels.tune.report import chosen_run_headline
from edgelabels.tune.space import Space, build_space, space_summary, trial_label
from edgelabels.tune.store import open_study, study_monitor, study_space
from edgelabels.tune.trial import PRUNED_EXIT

# The final step (a process start, evaluation, export) costs about what a trial takes to its first epoch's end
# (imports, data, model, one epoch: each trial measures it as first_epoch_s). Measured on 2 cores: 12 s against
# 12.5 s for tinycnn at 32 px, 23 s against 16 s for the bees detector; FINAL_STARTUPS times the slowest trial's is
# kept, and before any trial has shown it, FINAL_RESERVE_MIN_S.
FINAL_STARTUPS = 1.25
FINAL_RESERVE_MIN_S = 10.0
DEADLINE = "killed at the deadline"  # a failure that says nothing about the parameters: they may be tried again
INTERRUPTED = "interrupted before it finished an epoch"
POLL_S = 0.2


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
        tune_dir.start(config.to_yaml(), budget_s)
        clock = Clock(budget_s, 0.0, tune_dir.write_budget)
    space = study_space(tune_dir)
    study = open_study(tune_dir, config, create=not resume)
    if not study.trials:
        study.enqueue_trial(space.own_params())
    _say(f"tune {tune_dir.dir}: {'resuming, ' if resume else ''}{show_duration(clock.left())} left of "
         f"{show_duration(clock.total_s)}; selecting on {config.train.monitor} ({study.direction.name.lower()}); "
         f"space: {'; '.join(space_summary(space))}")
    try:
        for number in _left_running(study):
            _finish_interrupted(tune_dir, study, number, clock)
        _search(tune_dir, study, space, clock)
        return _final(tune_dir, study, space, clock)
    finally:
        clock.save(force=True)


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
        _run_trial(tune_dir, study, trial.number, limit, clock)


def _left_running(study) -> list[int]:
    import optuna

    return [t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))]


def _finish_interrupted(tune_dir: TuneDir, study, number: int, clock: Clock) -> None:
    """A trial a kill left RUNNING: resumed from its run's checkpoint, or failed if it finished no epoch."""
    import optuna

    if tune_dir.trial_run(number).last_path.is_file() and clock.left() - _final_reserve(study) > 0:
        _say(f"trial {number} was interrupted: resuming its run from its last checkpoint")
        _run_trial(tune_dir, study, number, clock.left() - _final_reserve(study), clock)
        return
    _set_attrs(study, number, failure=INTERRUPTED)
    study.tell(number, state=optuna.trial.TrialState.FAIL)
    _say(f"trial {number} failed: {INTERRUPTED} (the study was stopped)")


def _run_trial(tune_dir: TuneDir, study, number: int, limit_s: float, clock: Clock) -> None:
    """Trial `number` in a child process, killed after limit_s seconds; its outcome told to the study."""
    import optuna

    log_path = tune_dir.trial_log(number)
    started = time.monotonic()
    with open(log_path, "ab") as log:
        child = subprocess.Popen(trial_command(tune_dir, number), stdout=log, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
        code = _wait(child, limit_s, clock)
    seconds = round(time.monotonic() - started, 1)
    state, failure, value = optuna.trial.TrialState.FAIL, None, None
    if code is None:
        failure = DEADLINE
    elif code == 0:
        value = tune_dir.trial_run(number).train_state(study_monitor(tune_dir)).data["best"]
        if value is None or not math.isfinite(value):
            failure = f"no finite validation value ({study_monitor(tune_dir)} = {value})"
        else:
            state = optuna.trial.TrialState.COMPLETE
    elif code == PRUNED_EXIT:
        state = optuna.trial.TrialState.PRUNED
    else:
        failure = _why(code, log_path)
    _set_attrs(study, number, seconds=seconds, **({"failure": failure} if failure else {}))
    if state == optuna.trial.TrialState.COMPLETE:
        study.tell(number, value)
    else:
        study.tell(number, state=state)
    _report(tune_dir, study)
    _say(_progress(study, number, clock))


def trial_command(tune_dir: TuneDir, number: int) -> list[str]:
    return [sys.executable, "-m", "edgelabels.tune.trial", str(tune_dir.dir), str(number), str(os.getpid())]


def final_command(run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "edgelabels.tune.final", str(run_dir), str(os.getpid())]


def _wait(child: subprocess.Popen, limit_s: float, clock: Clock) -> int | None:
    """The child's exit code, or None once it was killed at limit_s. Ctrl-C kills it too (the trial stays RUNNING
    in the study: --resume continues it)."""
    deadline = time.monotonic() + limit_s
    try:
        while child.poll() is None:
            if time.monotonic() >= deadline:
                _kill(child)
                return None
            clock.save()
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        _kill(child)
        raise
    return child.returncode


def _kill(child: subprocess.Popen) -> None:
    try:
        os.killpg(child.pid, signal.SIGKILL)  # its own session: the loader threads' process and anything it started
    except ProcessLookupError:
        pass
    child.wait()


def _why(code: int, log_path: Path) -> str:
    if code < 0:
        name = signal.Signals(-code).name
        return f"killed by {name}" + (" (out of memory?)" if -code == signal.SIGKILL else "")
    lines = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    last = lines[-1].strip()[:300] if lines else "no output"
    return f"exited with code {code}: {last}"


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
    monitor = space.base.train.monitor
    if best is None:
        raise UserError(f"{tune_dir.dir}: no trial finished within the budget ({len(study.trials)} tried; see "
                        f"{tune_dir.trials_csv_path} and {tune_dir.dir / TuneDir.LOGS}/): give a larger --budget, or "
                        "fewer train.epochs")
    run = tune_dir.write_best(best.number, best.value, monitor)
    _say(f"chosen: trial {best.number}, {monitor} {best.value:.4f} on validation ({trial_label(best.params)}); "
         f"evaluating it on its test split and exporting it")
    code = 0
    if not (run.export_dir.is_dir() and run.evaluation_dir.is_dir()):  # a resumed study may have done this
        with open(tune_dir.final_log, "ab") as log:
            child = subprocess.Popen(final_command(run.dir), stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
            code = _wait(child, max(1.0, clock.hard_left()), clock)
    _report(tune_dir, study)
    if code is None or code != 0:
        what = "did not finish within the budget" if code is None else _why(code, tune_dir.final_log)
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
