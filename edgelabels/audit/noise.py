"""`train.label_noise: prune`: train without the labels an audit finds likely wrong.

At the start of training (train/fit.py, through the task table: train sits below audit/), the run's source is
audited once with the run's own config (train.label_noise_folds folds, each trained as the run will be but on the
labels as given; a classifier in train.label_noise_rounds rounds at most, each training without the round before's
likely-wrong labels: up to rounds x folds trainings) into RUN/audit/, and the run trains on RUN/audit/next.manifest:
the source without its suspects (`--apply prune`). config.yaml is rewritten to say so (data.manifest names the
pruned manifest, data.source the folder its source-refs start from), so a resumed run reads the same data and does
not audit again; an audit cut short resumes with its finished folds kept.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from edgelabels import atomic
from edgelabels.artifacts import RunDir
from edgelabels.audit.auditor import NEXT_MANIFEST, audit_with, root_of
from edgelabels.config import Config
from edgelabels.tasks import get_task

log = logging.getLogger("edgelabels.train")

AUDIT = "audit"  # RUN/audit/: the audit a pruned run trained after


def prune(config: Config, run_dir) -> Config:
    """The config to train with: data = RUN/audit/next.manifest (made now unless an earlier attempt made it)."""
    run = RunDir(run_dir)
    out = run.dir / AUDIT
    manifest = out / NEXT_MANIFEST
    if config.data.manifest and Path(config.data.manifest) == manifest:
        log.info("train.label_noise prune: training on %s (audited before)", manifest)
        return config
    if manifest.is_file():
        log.info("train.label_noise prune: the audit in %s finished before; not audited again", out)
    else:
        rounds = config.train.label_noise_rounds if get_task(config.task).piece("auditing").rounds else 1
        log.info("train.label_noise prune: auditing %s with %d folds (a classifier in %d rounds) into %s first",
                 config.data.source, config.train.label_noise_folds, rounds, out)
        result = audit_with(config, out, folds=config.train.label_noise_folds, rounds=rounds, apply="prune",
                            say=log.info)
        counts = result["next"]
        log.info("train.label_noise prune: %d images kept, %d with a suspect left out (estimated wrong labels %s)",
                 counts["kept"], counts["dropped"], result["summary"]["estimated_count"])
    root = root_of(config.data.source, config.data.manifest)
    pruned = dataclasses.replace(config, data=dataclasses.replace(config.data, source=root, manifest=str(manifest)))
    atomic.write_text(run.config_path, pruned.to_yaml())
    return pruned
