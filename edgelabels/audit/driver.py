"""The audit's shared types: what a task's hooks hand the driver (Predictions) and the hooks themselves.

The driver's steps (auditor.py): the task's predictions (k-fold or a run's), then the suspects (suspects.py,
checks.py), the report (page.py), the next manifest. They live apart from these types because the suspects and the
report read Predictions: one module for both would import itself in a circle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Predictions:
    """Out-of-sample predictions for every audited image (k-fold: each image scored by a model that never trained
    on it; `audit RUN`: the run's own model, in-sample for its training split)."""
    task: str                          # "classification" | "detection"
    labels: list[str]                  # label names in model order
    paths: list[Path]                  # every audited image, in the dataset's order
    given: list                        # classification: the given label's index per image (int);
                                       # detection: per image (label indices np.ndarray (m,), boxes np.ndarray (m, 4)
                                       #   left, top, width, height in pixels: what detection_metrics and
                                       #   label_issues.box_issues take (their iou_matrix reads left, top, w, h))
    probs: np.ndarray | None = None    # classification: (n, L); a row of zeros = no answer (e.g. the chain found no
                                       #   window): such images are not judged by confident learning
    boxes: list | None = None          # detection: per image an (N, 6) array left, top, width, height (pixels),
                                       #   score, class index: box_issues' prediction rows
    thresholds: dict | None = None     # detection: label -> the score from which a box is confident
    how: dict = field(default_factory=dict)  # {"method": "k-fold" | "run", "folds": k, "seconds": s, "runs": [...],
                                       #   "config": "...", "in_sample": bool}; k-fold adds "fold_seconds": [...]
                                       #   and "rounds": N, "round_seconds": [...], "left_out": [...] (images each
                                       #   round trained without), "stopped": why, when fewer rounds ran than
                                       #   asked; runs and fold_seconds are the last round's


def in_sample(run, began: float) -> dict:
    """Predictions.how of `audit RUN`: the run's own model, timed from `began` (time.monotonic())."""
    import time

    return {"method": "run", "folds": None, "seconds": round(time.monotonic() - began, 1), "runs": [str(run.dir)],
            "config": str(run.config_path), "in_sample": True}


@dataclass(frozen=True)
class AuditHooks:
    """What a task supplies to the audit (tasks.py `auditing`), and the way in from the layers below audit/.
    out_of_fold(dataset, config, folds, out, seed, say) -> Predictions: k-fold, each image held out once (folds.py),
    with rounds=N too when `rounds` is set (classification.py: each round trains without the last one's suspects);
    from_run(run, dataset, say) -> Predictions: the run's own model over its own split (in-sample);
    prune(config, run_dir) -> Config: train.label_noise: prune, the config to train with (noise.py).
    audit(source, out, ...) -> result and lines(result) -> list[str]: the verb's driver (auditor.py), the same for
    every task: `dataset audit` (data/command.py) sits below audit/ and reaches it through the task table, as
    train/fit.py reaches prune."""
    out_of_fold: Callable
    from_run: Callable
    prune: Callable
    audit: Callable
    lines: Callable
    rounds: bool = False  # out_of_fold takes rounds=N; a task without them audits in one round
