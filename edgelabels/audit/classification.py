"""A classifier's audit hooks: each image's probability of every label, out of fold or from a run.

Out of fold, the probabilities are what each fold run's evaluation wrote in predictions.csv (one column per label,
calibrated as the run's export would answer them); a row of zeros is an image the model gave no answer for (a
crop-box stage found no window), which confident learning leaves unjudged.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from edgelabels.artifacts import RunDir
from edgelabels.audit.auditor import audit, audit_lines
from edgelabels.audit.driver import AuditHooks, Predictions, in_sample
from edgelabels.audit.folds import check_scored, run_folds
from edgelabels.audit.noise import prune
from edgelabels.errors import UserError

PREDICTIONS_CSV = "predictions.csv"  # evaluate/evaluation.py's per-image file


def out_of_fold(dataset, config, folds: int, out: Path, seed: int, say) -> Predictions:
    done = run_folds(config, dataset, folds, out, seed, say)
    labels = dataset.label_names
    scored = {}
    for run in done.runs:
        scored.update(read_probabilities(run.evaluation_dir / PREDICTIONS_CSV, labels))
    check_scored(dataset, scored, out)
    index = {name: i for i, name in enumerate(labels)}
    return Predictions(task="classification", labels=labels, paths=[s.path for s in dataset.samples],
                       given=[index[s.label] for s in dataset.samples],
                       probs=np.stack([scored[str(s.path)] for s in dataset.samples]), how=done.how(folds))


def read_probabilities(path: Path, labels: list[str]) -> dict[str, np.ndarray]:
    """image path -> its probabilities in `labels` order, from an evaluation's predictions.csv."""
    if not path.is_file():
        raise UserError(f"{path}: missing (the fold's evaluation did not finish); run the audit again")
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    columns = [f"confidence:{name}" for name in labels]
    if rows and any(column not in rows[0] for column in columns):
        raise UserError(f"{path}: has no column for every label of the audit ({', '.join(labels)})")
    return {row["path"]: np.array([float(row[column]) for column in columns]) for row in rows}


def from_run(run: RunDir, dataset, say) -> Predictions:
    """The run's own Keras model (through its stages) over every image of its split: in-sample for its training
    images, whose wrong labels it may have learnt; a quick first look, not the k-fold's estimate."""
    import time

    from edgelabels.tasks import get_task

    began = time.monotonic()
    model = get_task("classification").piece("evaluation").open_run(run, "auto", 32, False)
    probs = np.asarray(model.predict([s.path for s in dataset.samples]), np.float64)
    index = {name: i for i, name in enumerate(model.labels)}
    return Predictions(task="classification", labels=list(model.labels), paths=[s.path for s in dataset.samples],
                       given=[index[s.label] for s in dataset.samples], probs=probs,
                       how=in_sample(run, began))


HOOKS = AuditHooks(out_of_fold=out_of_fold, from_run=from_run, prune=prune, audit=audit, lines=audit_lines)
