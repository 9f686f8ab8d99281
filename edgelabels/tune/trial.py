"""One trial in its own process: `python -m edgelabels.tune.trial TUNE_DIR NUMBER PARENT_PID`.

It trains trial NUMBER's run (the study's parameters applied to the tune directory's config; a run that
already has a config is resumed from its own checkpoint), reports the study's objective (Space.objective, the
run's train.monitor) on validation after every epoch to the study, and stops when the pruner says so. Exit
codes: 0 finished, PRUNED_EXIT pruned, 2 a UserError (one line on stderr), anything else a crash. It dies with
its parent (jobs.die_with: a study killed with kill -9 leaves no trial training on), so the trial stays RUNNING
in the study for --resume to find. Its output goes to OUT/logs/NNNN.log; TensorFlow's start-up logging is quiet
there through TF_CPP_MIN_LOG_LEVEL, which the `edgelabels` process sets and this one inherits.
"""

from __future__ import annotations

import sys
import time

from edgelabels.jobs import die_with

PRUNED_EXIT = 3


class Pruned(Exception):
    """Raised from the epoch hook: the pruner stopped this trial (its run's files are complete to that epoch)."""


def main(argv: list[str]) -> int:
    started = time.time()
    tune_path, number, parent = argv[0], int(argv[1]), int(argv[2])
    die_with(parent)
    from edgelabels.errors import UserError

    try:
        return _train_trial(tune_path, number, started)
    except Pruned:
        return PRUNED_EXIT
    except UserError as exc:
        print(f"edgelabels: error: {exc}", file=sys.stderr)
        return 2


def _train_trial(tune_path: str, number: int, started: float) -> int:
    from edgelabels.artifacts import TuneDir
    from edgelabels.train.fit import train
    from edgelabels.tune.store import min_epochs, open_study, study_space

    tune = TuneDir(tune_path)
    space = study_space(tune)
    study = open_study(tune, space)
    import optuna

    frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
    trial = optuna.Trial(study, frozen._trial_id)
    config = space.trial_config(frozen.params, where=f"trial {number}")
    run = tune.trial_run(number)
    stage_a_epochs, first = config.train.epochs, min_epochs(space.base)
    reported = set(frozen.intermediate_values)

    def on_epoch(stage: str, epoch: int, logs: dict) -> None:
        step = epoch if stage == "a" else stage_a_epochs + epoch  # epochs of both stages, counted on
        if not reported:
            trial.set_user_attr("first_epoch_s", round(time.time() - started, 2))  # start-up + one epoch
        if step not in reported:
            trial.report(float(logs.get(config.train.monitor, float("nan"))), step)
            reported.add(step)
        if step >= first and trial.should_prune():
            raise Pruned

    resume = run.is_run()
    train(None if resume else config, run.dir, resume=resume, on_epoch=on_epoch)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
