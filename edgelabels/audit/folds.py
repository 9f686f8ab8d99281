"""The k-fold behind `dataset audit`: every image scored once by a model that never trained on it.

1. the images are dealt into k folds, stratified by given label and grouped: the blocks of data/splits.py (one
   group, e.g. one patient, or byte-identical files) are never cut, so no fold trains on a copy of what it scores
2. fold i is an ordinary run directory, OUT/folds/fold-i/, whose split the audit writes before it trains: test =
   fold i (held out), train and validation = the other folds, dealt as the task's training deals them. So the run's
   own evaluation (of its test split) is the held-out fold, scored through the config's chain (a crop-box stage's
   "no window" is a row of zeros in predictions.csv), and the run's splits/ say which images it saw. (The split is
   written into the run rather than a Ground Truth manifest beside it: a manifest's source-refs must lie inside
   the manifest's own folder, data/sources.py resolve_source_ref, so one under OUT could not name the images.)
3. each fold is a pipeline job (train, then evaluate; no export) in a child process, as tune runs its final step:
   its memory is freed when it ends, and an interrupted audit resumes: a fold with an evaluation is kept, a fold
   cut short resumes its run from its checkpoint. (A fold's train.log says "resuming" from its first epoch: the
   audit started the run, with its split, before training it.)
4. rounds (classification, --rounds): round 1 is OUT/folds/; round r >= 2 is OUT/folds-round-r/, the same held-out
   folds (same seed), each fold trained and validated without the images of `exclude` (the earlier round's likely
   wrong labels, classification.py) but still scoring every image of its own fold. Its plan.json records the
   exclusion, so a resume whose earlier round found other images is refused, not mixed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edgelabels import atomic
from edgelabels.artifacts import RunDir
from edgelabels.config import Config
from edgelabels.errors import UserError

MIN_FOLDS, MAX_FOLDS = 2, 20
MIN_ROUNDS, MAX_ROUNDS = 1, 5
# Up to three rounds, each training without the round before's likely-wrong labels (classification.py), stopping
# once a round's likely-wrong images are (nearly) the ones it trained without. On 3,000 cassette photos whose
# readings are 40% wrong (benchmarks/label_audit.py, 2026-12-06), out-of-fold answers were 84.4%, 94.8% and 97.8%
# right after rounds 1, 2 and 3 (prune_by_class: precision 0.915, 0.947, 0.969; recall 0.730, 0.943, 0.977)
DEFAULT_ROUNDS = 3
CONVERGED = 0.01  # a round's likely-wrong set differing from the one it trained without in under 1% of the images
FOLD_CONFIG = "fold-config.yaml"  # OUT/fold-config.yaml: the config every fold trains with
PLAN = "plan.json"  # OUT/folds/plan.json: what the folds were made from, so a resume with other settings is refused
TIMES = "seconds.json"  # OUT/folds/seconds.json: each fold's seconds, so a resumed audit states its whole time


@dataclass(frozen=True)
class FoldRuns:
    """The finished folds: fold i's run directory holds evaluation/ of exactly the images of fold i."""
    runs: list[RunDir]
    seconds: list[float]  # each fold's training and scoring (over every session of a resumed audit)
    config: Path  # the config every fold trained with (OUT/fold-config.yaml)
    folder: Path | None = None  # OUT/folds/ (round 1) or OUT/folds-round-r/

    def how(self, k: int) -> dict:
        """Predictions.how of a k-fold audit."""
        return {"method": "k-fold", "folds": k, "seconds": round(sum(self.seconds), 1), "fold_seconds": self.seconds,
                "runs": [str(r.dir) for r in self.runs], "config": str(self.config), "in_sample": False}


def check_folds(k: int) -> None:
    if not isinstance(k, int) or not MIN_FOLDS <= k <= MAX_FOLDS:
        raise UserError(f"--folds {k}: must be a whole number from {MIN_FOLDS} to {MAX_FOLDS} (each fold is one "
                        "training; 4 or 5 is usual)")


def check_rounds(rounds: int) -> None:
    if not isinstance(rounds, int) or not MIN_ROUNDS <= rounds <= MAX_ROUNDS:
        raise UserError(f"--rounds {rounds}: must be a whole number from {MIN_ROUNDS} to {MAX_ROUNDS} (each round "
                        f"is --folds trainings; {DEFAULT_ROUNDS} is usual)")


def folds_folder(out: Path, round_: int = 1) -> Path:
    """OUT/folds/ (round 1, as audits before rounds wrote it, so they resume) or OUT/folds-round-R/."""
    return Path(out) / ("folds" if round_ == 1 else f"folds-round-{round_}")


def stratum(sample) -> str:
    """The label a sample is stratified on: its first (a detection image: its first box's), "" for no label."""
    return sample.labels[0] if sample.labels else ""


def assign_folds(samples: list, k: int, seed: int) -> list[int]:
    """The fold (0..k-1) of every sample. Blocks (same group or same bytes, data/splits.py) stay whole; the largest
    blocks are placed first (in a seeded order among equals), each into the fold where the shares of its labels are
    smallest so far: the sum over its labels of ((fold's count + block's count) / label's total)^2; ties go to the
    fold with fewer images, then the lower index."""
    from edgelabels.data.splits import blocks_of, sha256_all

    hashes = dict(zip((s.path for s in samples), sha256_all([s.path for s in samples])))
    blocks = blocks_of(samples, hashes)
    labels = sorted({stratum(s) for s in samples})
    counts = np.array([[sum(stratum(s) == label for s in block) for label in labels] for block in blocks], float)
    totals = counts.sum(axis=0)
    order = np.random.default_rng(seed).permutation(len(blocks))
    order = sorted(order, key=lambda b: -len(blocks[b]))  # stable: the seeded order among blocks of one size
    held, images = np.zeros((k, len(labels))), np.zeros(k)
    fold_of = {}
    for b in order:
        mine = counts[b] > 0
        cost = (((held[:, mine] + counts[b, mine]) / totals[mine]) ** 2).sum(axis=1)
        fold = min(range(k), key=lambda f: (round(cost[f], 12), images[f], f))
        held[fold] += counts[b]
        images[fold] += len(blocks[b])
        for s in blocks[b]:
            fold_of[s.path] = fold
    return [fold_of[s.path] for s in samples]


def check_counts(dataset, k: int) -> None:
    """Every label needs at least k images, so that each fold can train on it and score it."""
    from collections import Counter

    counts = Counter(label for s in dataset.samples for label in s.labels)
    few = sorted((count, label) for label, count in counts.items() if count < k)
    if not few:
        return
    count, label = few[0]
    hint = f"use --folds {count} or add images" if count >= MIN_FOLDS else f"an audit needs {MIN_FOLDS} or more"
    raise UserError(f"{dataset.source}: label {label!r} has {count} image{'s' if count != 1 else ''}, fewer than the "
                    f"{k} folds (each fold trains on every label): {hint}")


def fold_split(dataset, folds: list[int], i: int, config: Config, deal, exclude: frozenset[str] = frozenset()):
    """Fold i's run split: test = fold i; train and validation dealt from the others (data.val_fraction), less
    the images in `exclude` (paths as str)."""
    from edgelabels.data.dataset import Dataset
    from edgelabels.data.splits import make_split

    held = [s for s, f in zip(dataset.samples, folds) if f == i]
    rest = [s for s, f in zip(dataset.samples, folds) if f != i]
    unseen = sorted({label for s in held for label in s.labels} - {label for s in rest for label in s.labels})
    if unseen:
        raise UserError(f"{dataset.source}: every image of label {unseen[0]!r} falls in fold {i + 1} (its groups are "
                        "too few to share out): use fewer --folds")
    gone = _labels_gone(rest, exclude)
    if gone:
        raise UserError(f"{dataset.source}: fold {i + 1} would train without label {gone[0]!r} (every one of its "
                        "training images excluded): use --rounds 1")
    rest = [s for s in rest if str(s.path) not in exclude]
    split = make_split(Dataset(rest, dataset.source), test_fraction=0.0, val_fraction=config.data.val_fraction,
                       seed=config.seed, test_dataset=Dataset(held, dataset.source), deal=deal)
    if not split.val:
        raise UserError(f"{dataset.source}: fold {i + 1} has no validation image (data.val_fraction "
                        f"{config.data.val_fraction:g} of {len(rest)} images): too few images, or raise "
                        "data.val_fraction")
    return split


def untrainable(dataset, k: int, seed: int, exclude: frozenset[str]) -> str | None:
    """Why the folds cannot train without `exclude`: a fold whose training would lose every image of a label (a tiny
    or hopeless first round can find them all likely wrong), or None."""
    folds = assign_folds(dataset.samples, k, seed)
    for i in range(k):
        gone = _labels_gone([s for s, f in zip(dataset.samples, folds) if f != i], exclude)
        if gone:
            return f"fold {i + 1} would train without label {gone[0]!r}, all its training images excluded"
    return None


def _labels_gone(rest: list, exclude: frozenset[str]) -> list[str]:
    """The labels of `rest` that none of its images outside `exclude` has."""
    kept = {label for s in rest if str(s.path) not in exclude for label in s.labels}
    return sorted({label for s in rest for label in s.labels} - kept)


def run_folds(config: Config, dataset, k: int, out: Path, seed: int, say: Callable[[str], None], *,
              exclude: frozenset[str] = frozenset(), round_: int = 1) -> FoldRuns:
    """Train and evaluate the k fold runs under folds_folder(out, round_) (each a child pipeline job), resuming what
    is there; the images in `exclude` (paths as str, round 2 on) are left out of every fold's training and
    validation, never out of its held-out fold. config.task is the task itself (not auto): its training deals each
    fold's validation images."""
    from edgelabels.jobs import run_job
    from edgelabels.pipeline import Job, pipeline_command
    from edgelabels.tasks import get_task

    check_folds(k)
    check_counts(dataset, k)
    if round_ == 1 and exclude:
        raise ValueError("round 1 trains on every image: an exclusion starts at round 2")
    folder = folds_folder(out, round_)
    config_path = Path(out) / FOLD_CONFIG
    # The folds train on the data as given: an audit inside a fold would audit forever.
    fold_config = _without_label_noise(config)
    fold_yaml = fold_config.to_yaml()
    plan = {"folds": k, "seed": seed, "config": fold_yaml, "images": [str(s.path) for s in dataset.samples]}
    if round_ > 1:  # round 1's plan stays as audits before rounds wrote it, so they resume
        plan.update(round=round_, exclude=sorted(exclude))
    _check_plan(folder, plan)
    atomic.write_text(config_path, fold_yaml)
    folds = assign_folds(dataset.samples, k, seed)
    runs, times = [], _read_times(folder)
    where = "" if round_ == 1 else f"round {round_}, "
    for i in range(k):
        run = RunDir(folder / f"fold-{i + 1}")
        runs.append(run)
        scored = sum(f == i for f in folds)
        if _evaluated(run):
            say(f"{where}fold {i + 1}/{k}: done before ({scored} images scored), kept")
            continue
        if not (run.is_run() and run.has_split()):  # the split first: a run without one would deal its own
            deal = get_task(config.task).piece("deal")
            run.write_split(fold_split(dataset, folds, i, fold_config, deal, exclude))
            run.start(fold_yaml)
        job = Job(run=str(run.dir), config=None, evaluate={"gradcam_per_kind": 0, "progress": False}, export=None)
        log = folder / f"fold-{i + 1}.log"
        outcome = run_job(pipeline_command(job), log, math.inf)
        if not outcome.ok:
            raise UserError(f"fold {i + 1}/{k} ({run.dir}): {outcome.reason} (see {log}); run the audit again to "
                            "resume it")
        times[run.dir.name] = round(times.get(run.dir.name, 0.0) + outcome.seconds, 1)  # a resumed fold adds up
        atomic.write_json(folder / TIMES, times)
        say(f"{where}fold {i + 1}/{k}: trained on {len(run.split.train)} images, {scored} held-out images scored in "
            f"{outcome.seconds:.0f} s")
    return FoldRuns(runs, [times.get(run.dir.name, 0.0) for run in runs], config_path, folder)


def check_scored(dataset, scored: dict, out: Path, folder: Path | None = None) -> None:
    """Every image of the dataset must have been scored by the fold that held it out (the folds in `folder`,
    default OUT/folds/)."""
    missing = [s.path for s in dataset.samples if str(s.path) not in scored]
    if missing:
        raise UserError(f"{missing[0]}: not scored by any fold's evaluation ({len(missing)} such images); remove "
                        f"{folder or folds_folder(out)} and audit again")


def _without_label_noise(config: Config) -> Config:
    import dataclasses

    return dataclasses.replace(config, train=dataclasses.replace(config.train, label_noise="none"))


def _evaluated(run: RunDir) -> bool:
    from edgelabels.evaluate.evaluation import SUMMARY_FILE

    return (run.evaluation_dir / SUMMARY_FILE).is_file()


def _read_times(folder: Path) -> dict[str, float]:
    import json

    path = folder / TIMES
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _check_plan(folder: Path, plan: dict) -> None:
    """A folder of folds from another audit (other images, folds, seed or config) is refused, not mixed in."""
    import json

    path = folder / PLAN
    if path.is_file():
        before = json.loads(path.read_text(encoding="utf-8"))
        if before != plan:
            if {**before, "exclude": None} == {**plan, "exclude": None}:
                raise UserError(f"{folder}: round {plan['round']}'s folds trained without other images (the round "
                                "before found other likely-wrong labels this time): remove it to train it again")
            raise UserError(f"{folder}: holds the folds of another audit (other images, --folds, --seed or config); "
                            "choose another --out, or remove it")
        return
    if folder.exists() and any(folder.iterdir()):
        raise UserError(f"{folder}: not an audit's folds folder (no {PLAN}); choose another --out")
    atomic.write_json(path, plan)
