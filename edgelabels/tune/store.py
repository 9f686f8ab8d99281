"""The study in the tune directory's SQLite file, opened the same way by the study and by each trial's process
(same sampler seed rule, same pruner: the pruner decides in the trial's process)."""

from __future__ import annotations

from edgelabels.artifacts import TuneDir
from edgelabels.config import Config, load_config
from edgelabels.errors import UserError
from edgelabels.tune.space import Space, build_space

STUDY_NAME = "tune"


def study_space(tune_dir: TuneDir) -> Space:
    return build_space(load_config(tune_dir.config_path), where=str(tune_dir.config_path))


def open_study(tune_dir: TuneDir, space: Space, create: bool = False):
    """The study in tune_dir's SQLite file, with the config's sampler and pruner, ranking on space.objective. A
    resumed study's sampler is seeded past the trials it has, so that it does not propose the same random points
    again."""
    import optuna

    config = space.base
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(tune_dir.study_url, engine_kwargs={"connect_args": {"timeout": 60}})
    pruner, direction = _pruner(config), "minimize" if space.objective == "val_loss" else "maximize"
    if create:
        return optuna.create_study(study_name=STUDY_NAME, storage=storage, pruner=pruner, direction=direction,
                                   sampler=optuna.samplers.TPESampler(seed=config.seed))
    study = optuna.load_study(study_name=STUDY_NAME, storage=storage, pruner=pruner)
    if study.direction.name.lower() != direction:  # started before val_loss stopped ranking searched losses
        raise UserError(f"{tune_dir.dir}: its trials were ranked on val_loss across loss functions; this version "
                        f"ranks them on {space.objective}: start a new study (another --out)")
    study.sampler = optuna.samplers.TPESampler(seed=config.seed + len(study.get_trials(deepcopy=False)))
    return study


def _pruner(config: Config):
    import optuna

    t, first = config.tune, min_epochs(config)
    if t.pruner == "none":
        return optuna.pruners.NopPruner()
    if t.pruner == "successive-halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=first, reduction_factor=t.reduction_factor)
    return optuna.pruners.HyperbandPruner(min_resource=first, max_resource=max(trial_epochs(config), first),
                                          reduction_factor=t.reduction_factor)


def trial_epochs(config: Config) -> int:
    """Epochs of both stages: the pruners' resource, counted on across stage a and stage b."""
    return config.train.epochs + config.train.fine_tune_epochs


def min_epochs(config: Config) -> int:
    """Epochs before a trial may be pruned: tune.min_epochs, or a tenth of a trial's (one epoch says little)."""
    return config.tune.min_epochs or max(1, trial_epochs(config) // 10)
