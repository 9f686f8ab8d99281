"""A detector's audit hooks: each image's predicted boxes beside its drawn ones, and the score from which a box of
each label is confident.

Out of fold, they are what each fold run's evaluation wrote: evaluation-manifest.jsonl lists, per held-out image,
the boxes predicted at or above their label's assumed threshold (the F1-best score on that fold), and metrics.json
those thresholds. A label's confident threshold for the audit is the lowest of its folds' (so every listed box
counts as confident); boxes under a fold's threshold are not listed, so "spurious or misplaced" is judged against
the confident boxes only. From a run, every predicted box is kept and the thresholds are chosen the same way
(F1-best) on the run's own images.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from edgelabels.artifacts import RunDir
from edgelabels.audit.auditor import audit, audit_lines
from edgelabels.audit.driver import AuditHooks, Predictions, in_sample
from edgelabels.audit.folds import check_scored, run_folds
from edgelabels.audit.noise import prune
from edgelabels.errors import UserError


def drawn(dataset, labels: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Predictions.given: per image (label indices (m,), boxes (m, 4) left, top, width, height in pixels)."""
    index = {name: i for i, name in enumerate(labels)}
    return [(np.array([index[b.label] for b in s.boxes], np.int64),
             np.array([(b.left, b.top, b.width, b.height) for b in s.boxes], np.float64).reshape(-1, 4))
            for s in dataset.samples]


def out_of_fold(dataset, config, folds: int, out: Path, seed: int, say) -> Predictions:
    from edgelabels.evaluate.detection import MANIFEST_FILE
    from edgelabels.evaluate.evaluation import METRICS_FILE

    done = run_folds(config, dataset, folds, out, seed, say)
    labels = dataset.label_names
    found, thresholds = {}, {name: None for name in labels}
    for run in done.runs:
        fold_labels = run.labels
        found.update(read_boxes(run.evaluation_dir / MANIFEST_FILE, fold_labels, labels))
        metrics = json.loads((run.evaluation_dir / METRICS_FILE).read_text(encoding="utf-8"))
        for row in metrics["per_label"]:
            t, name = row["assumed_threshold"], row["label"]
            if t is not None and name in thresholds:
                thresholds[name] = t if thresholds[name] is None else min(thresholds[name], t)
    check_scored(dataset, found, out)
    return Predictions(task="detection", labels=labels, paths=[s.path for s in dataset.samples],
                       given=drawn(dataset, labels), boxes=[found[str(s.path)] for s in dataset.samples],
                       thresholds=thresholds, how=done.how(folds))


def read_boxes(path: Path, run_labels: list[str], labels: list[str]) -> dict[str, np.ndarray]:
    """image path -> (N, 6) left, top, width, height (pixels), score, class index into `labels`: the predicted boxes
    of a detection evaluation's manifest (its missed ground-truth boxes, listed with confidence 0, left out)."""
    from edgelabels.evaluate.detection import EVALUATION_ATTRIBUTE

    if not path.is_file():
        raise UserError(f"{path}: missing (the fold's evaluation did not finish); run the audit again")
    index = {name: labels.index(name) for name in run_labels if name in labels}
    found = {}
    for text in path.read_text(encoding="utf-8").splitlines():
        line = json.loads(text)
        annotations = line[EVALUATION_ATTRIBUTE]["annotations"]
        objects = line[f"{EVALUATION_ATTRIBUTE}-metadata"]["objects"]
        rows = [(a["left"], a["top"], a["width"], a["height"], o["confidence"], index[run_labels[a["class_id"]]])
                for a, o in zip(annotations, objects)
                if not o["rekognition-custom-labels-evaluation-details"]["is-false-negative"]]
        found[line["source-ref"]] = np.array(rows, np.float64).reshape(-1, 6)
    return found


def from_run(run: RunDir, dataset, say) -> Predictions:
    """The run's own model over every image of its split (in-sample for its training images), every box kept;
    each label's confident threshold the F1-best score on these images."""
    from edgelabels.data.boxes import displayed_size
    from edgelabels.evaluate.detection_metrics import assumed_thresholds
    from edgelabels.tasks import get_task

    began = time.monotonic()
    model = get_task("detection").piece("evaluation").open_run(run, "auto", 32, False)
    labels = list(model.labels)
    boxes = []
    for sample, rows in zip(dataset.samples, model.predict([s.path for s in dataset.samples])):
        width, height = displayed_size(sample.path)
        rows = np.array(rows, np.float64).reshape(-1, 6)
        rows[:, :4] *= (width, height, width, height)  # ratios of the image -> pixels, as the drawn boxes are
        boxes.append(rows)
    given = drawn(dataset, labels)
    return Predictions(task="detection", labels=labels, paths=[s.path for s in dataset.samples], given=given,
                       boxes=boxes, thresholds=assumed_thresholds(given, boxes, labels),
                       how=in_sample(run, began))


HOOKS = AuditHooks(out_of_fold=out_of_fold, from_run=from_run, prune=prune, audit=audit, lines=audit_lines)
