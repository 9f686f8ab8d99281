"""A classifier's audit hooks: each image's probability of every label, out of fold or from a run.

Out of fold, the probabilities are what each fold run's evaluation wrote in predictions.csv (one column per label,
calibrated as the run's export would answer them); a row of zeros is an image the model gave no answer for (a
crop-box stage found no window), which confident learning leaves unjudged.

Rounds: a model trained on very noisy labels learns much of the noise, so its out-of-fold probabilities hide wrong
labels it learnt. After round r < N, the images evaluate/label_issues.py training_suspects picks (recall first) are
left out of the next round's training and validation; every image is still scored by the fold model that never saw
its fold (the same folds), and the last round's probabilities are the audit's. On 3,000 cassette photos whose
readings are 40% wrong (benchmarks/label_audit.py, 2026-12-06) the out-of-fold answers were 84.4%, 94.8% and 97.8%
right after rounds 1-3, and prune_by_class found the wrong readings with precision 0.915 / 0.947 / 0.969 and recall
0.730 / 0.943 / 0.977. Each round costs another --folds trainings; the rounds stop once a round finds (nearly) the
images it trained without (folds.CONVERGED).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from edgelabels.artifacts import RunDir
from edgelabels.audit.auditor import audit, audit_lines
from edgelabels.audit.driver import AuditHooks, Predictions, in_sample
from edgelabels.audit.folds import CONVERGED, DEFAULT_ROUNDS, check_rounds, check_scored, run_folds, untrainable
from edgelabels.audit.noise import prune
from edgelabels.errors import UserError

PREDICTIONS_CSV = "predictions.csv"  # evaluate/evaluation.py's per-image file


def out_of_fold(dataset, config, folds: int, out: Path, seed: int, say, rounds: int = DEFAULT_ROUNDS) -> Predictions:
    """`rounds` k-fold rounds, each training without the images the round before found likely wrong; the last
    round's probabilities. The rounds stop early, said so, once they converge or where a fold would lose every
    training image of a label (how["stopped"] says why)."""
    from edgelabels.evaluate.label_issues import training_suspects

    check_rounds(rounds)
    labels = dataset.label_names
    index = {name: i for i, name in enumerate(labels)}
    given = [index[s.label] for s in dataset.samples]
    exclude, left_out, seconds, stopped = frozenset(), [], [], None
    for r in range(1, rounds + 1):
        if rounds > 1:
            say(f"round {r}/{rounds}: {folds} trainings" + (f", each without the {len(exclude)} images round {r - 1} "
                                                          "found likely wrong (still scored by its held-out fold)"
                                                          if r > 1 else " on the labels as given"))
        done = run_folds(config, dataset, folds, out, seed, say, exclude=exclude, round_=r)
        probs = scored_probabilities(dataset, done, labels, out)
        left_out.append(len(exclude))
        seconds.append(round(sum(done.seconds), 1))
        if r < rounds:
            mask = training_suspects(given, probs)
            found = frozenset(str(s.path) for s, suspect in zip(dataset.samples, mask) if suspect)
            changed = len(found ^ exclude)
            if r > 1 and changed < CONVERGED * len(given):  # the next round would train on (nearly) the same images
                stopped = (f"round {r + 1} not run: converged (round {r}'s likely-wrong images differ from those it "
                           f"trained without in {changed} of {len(given)}); round {r}'s answers are the audit's")
            else:
                exclude = found
                stopped = untrainable(dataset, folds, seed, exclude)
                stopped = stopped and f"round {r + 1} not run: {stopped}; round {r}'s answers are the audit's"
            if stopped:
                say(stopped)
                break
    how = {**done.how(folds), "rounds": len(seconds), "round_seconds": seconds, "left_out": left_out,
           "seconds": round(sum(seconds), 1), **({"stopped": stopped} if stopped else {})}
    return Predictions(task="classification", labels=labels, paths=[s.path for s in dataset.samples], given=given,
                       probs=probs, how=how)


def scored_probabilities(dataset, done, labels: list[str], out: Path) -> np.ndarray:
    """(n, L): each image's probabilities from the fold run that held it out, in the dataset's order."""
    scored = {}
    for run in done.runs:
        scored.update(read_probabilities(run.evaluation_dir / PREDICTIONS_CSV, labels))
    check_scored(dataset, scored, out, done.folder)
    return np.stack([scored[str(s.path)] for s in dataset.samples])


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


HOOKS = AuditHooks(out_of_fold=out_of_fold, from_run=from_run, prune=prune, audit=audit, lines=audit_lines,
                   rounds=True)
