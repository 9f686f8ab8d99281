"""`dataset audit`'s one driver, read top to bottom in `audit_with`:

1. the config: --config (its data.source replaced by SOURCE) or the data's recipe (train/recipe.py source_config:
   every `auto` key chosen by each fold's training), --set overrides last; the task from the source's shape
2. the dataset as training reads it (the task's `dataset` piece: unusable images left out, data.limit_per_label)
3. the task's predictions (its AuditHooks, driver.py): out of fold (folds.py: k trainings, each image scored by
   the one model that never saw it; a classifier in --rounds rounds, each training without the round before's
   likely-wrong labels, classification.py) or, for `audit RUN`, the run's own model (in-sample, said so)
4. the suspects: confident learning or box matching (suspects.py), the images' own checks (checks.py), one ranked
   list; suspects.csv, audit.json and audit.html (page.py); with --apply, the next Ground Truth manifest
Nothing prints: `say` receives the progress lines, `audit_lines(result)` what `edgelabels dataset audit` shows.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable

from edgelabels import atomic
from edgelabels.artifacts import ExportDir, RunDir
from edgelabels.audit.folds import DEFAULT_ROUNDS, check_folds, check_rounds
from edgelabels.config import AUTO, Config, load_config
from edgelabels.errors import UserError
from edgelabels.tasks import get_task

NEXT_MANIFEST = "next.manifest"  # OUT/next.manifest: the dataset's next version (--apply)
APPLY = ("prune", "relabel")


def audit(source, out, *, config=None, overrides=(), folds: int = 4, method: str | None = None,
          apply: str | None = None, min_confidence: float = 0.9, seed: int = 0, manifest=None, s3_root=None,
          group_by=None, class_names=(), rounds: int | None = None, say: Callable[[str], None] = print) -> dict:
    """Audit a data source (a folder per label, a manifest, boxes) with k-fold trainings into folder `out`; a run
    directory as `source` gets the quick pass (audit_run). rounds: None is the task's default (audit_with)."""
    check_options(folds, method, apply, min_confidence, rounds)
    if source is not None and RunDir(source).is_run():
        if config is not None or overrides or rounds is not None:
            raise UserError(f"{source}: a run directory: --config, --set and --rounds apply to a SOURCE of data, not "
                            "to a run (its own config and model are used)")
        return audit_run(source, out, method=method, apply=apply, min_confidence=min_confidence, say=say)
    if source is not None and ExportDir(source).is_export():
        raise UserError(f"{source}: an export folder, neither data nor a run: audit the run it was exported from, or "
                        "the data")
    data = [f"data.{key}={json.dumps(str(value))}" for key, value in
            (("manifest", manifest), ("s3_root", s3_root), ("group_by", group_by)) if value]
    data += [f"data.class_names={json.dumps(list(class_names))}"] if class_names else []
    if config is None:
        from edgelabels.train.recipe import source_config

        if source is None and manifest is None:
            raise UserError("no dataset given: pass SOURCE (a folder per label, a manifest, boxes) or --config")
        resolved = source_config(source or "", [*data, *overrides])
    else:
        given = [f"data.source={json.dumps(str(source))}"] if source is not None else []
        resolved = load_config(config, [*given, *data, *overrides])
    return audit_with(resolved, out, folds=folds, method=method, apply=apply, min_confidence=min_confidence,
                      seed=seed, rounds=rounds, say=say)


def audit_with(config: Config, out, *, folds: int = 4, method: str | None = None, apply: str | None = None,
               min_confidence: float = 0.9, seed: int = 0, rounds: int | None = None,
               say: Callable[[str], None] = print) -> dict:
    """The k-fold audit of config's source (train.label_noise: prune comes in here with its run's config).
    rounds: a classifier's k-fold rounds (None: DEFAULT_ROUNDS); a task without rounds (detection) does one and
    refuses more."""
    check_options(folds, method, apply, min_confidence, rounds)
    out = check_out(out)
    config = with_task(config)
    hooks = get_task(config.task).piece("auditing")  # "a multi-label classifier has no auditing"
    rounds = rounds_of(hooks, config.task, rounds)
    dataset = read_dataset(config)
    say(f"audit of {dataset.source}: {len(dataset.samples)} images in {folds} folds"
        + (f", {rounds} rounds" if rounds > 1 else "") + f": {folds * rounds} trainings, each on {folds - 1} of the "
        f"{folds} folds, each image scored by the one model that never trained on it (the fold runs and their logs "
        f"in {out / 'folds'}" + (", then folds-round-2/..." if rounds > 1 else "") + ")")
    if hooks.rounds:
        predictions = hooks.out_of_fold(dataset, config, folds, out, seed, say, rounds=rounds)
    else:
        predictions = hooks.out_of_fold(dataset, config, folds, out, seed, say)
        predictions.how.setdefault("rounds", 1)
    return finish(out, dataset, predictions, method, apply, min_confidence, say,
                  root_of(config.data.source, config.data.manifest))


def audit_run(run_dir, out, *, method: str | None = None, apply: str | None = None, min_confidence: float = 0.9,
              say: Callable[[str], None] = print) -> dict:
    """The quick pass: a finished run's own model over its own split (train, val and test). In-sample for its
    training images: a model that learnt a wrong label repeats it, so fewer wrong labels are found than k-fold finds."""
    from edgelabels.data.dataset import Dataset

    check_options(2, method, apply, min_confidence)
    run = RunDir.load(run_dir)
    hooks = get_task(run.task).piece("auditing")
    out = check_out(out)
    split, data = run.split, run.config.get("data") or {}
    dataset = Dataset(split.train + split.val + split.test, str(data.get("source") or run.dir))
    say(f"audit of {run.dir}'s data with its own model ({len(dataset.samples)} images): in-sample for its "
        f"{len(split.train)} training images (a learnt wrong label is not found): a quick look; `edgelabels dataset "
        "audit SOURCE` trains k folds for the estimate")
    predictions = hooks.from_run(run, dataset, say)
    return finish(out, dataset, predictions, method, apply, min_confidence, say,
                  root_of(data.get("source") or "", data.get("manifest")))


def finish(out: Path, dataset, predictions, method, apply, min_confidence, say, root: str) -> dict:
    """Suspects from the predictions and from the images, ranked, written; the next manifest when asked, whose
    source-refs start from `root` (root_of)."""
    from edgelabels.audit.checks import image_checks
    from edgelabels.audit.page import write_audit
    from edgelabels.audit.suspects import label_suspects, next_manifest, rank_suspects

    suspects, summary = label_suspects(predictions, *([method] if method else []))
    say("checking the images themselves (unreadable, blank, duplicates with another label)")
    suspects = rank_suspects(suspects + image_checks(dataset))
    files = write_audit(out, dataset, predictions, suspects, summary)
    result = {"out": out, "files": files, "summary": summary, "suspects": len(suspects), "how": predictions.how,
              "images": len(predictions.paths), "next": None}
    if apply:
        result["next"] = next_manifest(dataset, suspects, apply, min_confidence, out / NEXT_MANIFEST)
        result["next"].update(apply=apply, root=root)
    return result


def root_of(source: str, manifest: str | None) -> str:
    """The folder a next manifest's source-refs start from: suspects.next_manifest keeps a manifest's refs as they
    were written (relative to SOURCE when read with --manifest, else to the manifest's folder) and names a folder's
    images relative to the folder."""
    if manifest:
        return source or str(Path(manifest).parent)
    path = Path(source)
    return str(path if path.is_dir() else path.parent)


def audit_lines(result: dict) -> list[str]:
    """What `edgelabels dataset audit` prints."""
    how, summary = result["how"], result["summary"]
    if how.get("in_sample"):
        made = f"the run's own model ({how['runs'][0]}), in-sample: a quick look, fewer wrong labels found than k-fold"
    else:
        rounds, k = how.get("rounds", 1), how["folds"]
        made = f"{k}-fold out-of-fold predictions ({rounds * k} trainings, {how['seconds']:.0f} s"
        if rounds > 1:
            made += (f"; {rounds} rounds, round {rounds} trained without the {how['left_out'][-1]} images round "
                     f"{rounds - 1} found likely wrong")
        made += (f"; {how['stopped']}" if how.get("stopped") else "") + ")"
    share, files = summary.get("estimated_share"), result["files"]
    unanswered = summary.get("not_answered")
    lines = [f"audited {result['images']} images with {made}",
             f"estimated wrong labels: {summary['estimated_count']}"
             + (f" ({share:.1%} of the {summary['judged']} judged)" if share is not None else "")
             + f"; method {summary['method']}"
             + (f"; {unanswered} images got no answer (not judged)" if unanswered else ""),
             f"suspects: {result['suspects']}" + "".join(f", {reason} {n}" for reason, n in
                                                        (summary.get("counts") or {}).items()),
             f"wrote {files['suspects']}, {files['report']} (open it), {files['summary']}"]
    nxt = result["next"]
    if nxt is not None:
        lines.append(f"next version (--apply {nxt['apply']}): {nxt['manifest']}: {nxt['kept']} images kept, "
                     f"{nxt['dropped']} dropped, {nxt['relabelled']} relabelled; train it with --set "
                     f"data.source={nxt['root']} --set data.manifest={nxt['manifest']}")
    return lines


def check_options(folds: int, method: str | None, apply: str | None, min_confidence: float,
                  rounds: int | None = None) -> None:
    from edgelabels.evaluate.label_issues import METHODS

    check_folds(folds)
    if rounds is not None:
        check_rounds(rounds)
    if method is not None and method not in METHODS:
        raise UserError(f"--method {method!r}: must be one of {', '.join(METHODS)}")
    if apply is not None and apply not in APPLY:
        raise UserError(f"--apply {apply!r}: must be prune or relabel")
    if not 0 <= min_confidence <= 1:
        raise UserError(f"--min-confidence {min_confidence:g}: must be a confidence within 0-1")


def rounds_of(hooks, task: str, rounds: int | None) -> int:
    """The rounds the task's audit runs: DEFAULT_ROUNDS unless given; 1 for a task without rounds (detection: its
    audit matches boxes, no training-suspect rule yet), which refuses more."""
    if hooks.rounds:
        return DEFAULT_ROUNDS if rounds is None else rounds
    if rounds is not None and rounds > 1:
        raise UserError(f"--rounds {rounds}: a {task} audit has one round (the rounds retrain a classifier without "
                        "its likely-wrong labels): leave --rounds out")
    return 1


def check_out(out) -> Path:
    """The audit's folder: made if missing, reused (resumed) if there; a file is refused."""
    out = Path(out)
    existing = atomic.nearest_existing(out)
    if existing.exists() and not existing.is_dir():
        where = "it is a file" if existing == out else f"{existing} is a file"
        raise UserError(f"--out {out}: cannot be the audit's folder: {where}")
    out.mkdir(parents=True, exist_ok=True)
    return out


def with_task(config: Config) -> Config:
    """config with its task decided (task: auto is told from the source's shape, as training tells it)."""
    if config.task != AUTO:
        return config
    from edgelabels.train.recipe import source_task_of

    return dataclasses.replace(config, task=source_task_of(config))


def read_dataset(config: Config):
    """The images training would read: the task's dataset (unusable ones left out), data.limit_per_label applied."""
    from edgelabels.data.prepare import limit_per_label

    dataset, _ = get_task(config.task).piece("dataset")(config)
    if config.data.limit_per_label:
        dataset.samples = limit_per_label(dataset.samples, config.data.limit_per_label, config.seed)
    return dataset
