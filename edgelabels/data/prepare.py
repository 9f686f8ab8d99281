"""A run's split: the task's dataset -> usable images -> (limit per label) -> grouped, stratified split.

`prepare_split` reads the split back on resume, else builds it from the config's sources and writes it
into the run (splits/). The task table names which dataset reader a task uses.
"""

from __future__ import annotations

import logging

import numpy as np

from edgelabels.errors import UserError
from edgelabels.tasks import get_task

log = logging.getLogger("edgelabels.train")


def prepare_split(config, run):
    """The split of `run` (an artifacts.RunDir): read back when written, else made from config and written."""
    from edgelabels.data.splits import make_split

    if run.has_split():
        return run.split
    dataset, test_dataset = get_task(config.task).piece("dataset")(config)
    d = config.data
    given = dataset.given_split
    if given:
        split = keep_given_split(dataset, given, test_dataset, test_fraction=d.test_fraction,
                                 val_fraction=d.val_fraction, seed=config.seed)
    else:
        if d.limit_per_label:
            dataset.samples = limit_per_label(dataset.samples, d.limit_per_label, config.seed)
        split = make_split(dataset, test_fraction=d.test_fraction, val_fraction=d.val_fraction, seed=config.seed,
                           test_dataset=test_dataset, deal=get_task(config.task).piece("deal"))
    if not split.train or not split.val:
        raise UserError(f"{d.source}: too few images for a train and a validation split "
                        f"({len(split.train)} train, {len(split.val)} val)")
    run.write_split(split)
    return split


def keep_given_split(dataset, given: dict, test_dataset, *, test_fraction: float, val_fraction: float, seed: int):
    """A source's own train/val/test (a YOLO folder's images/{train,val,test}): kept, as Rekognition keeps a separate
    test dataset; a part it lacks is carved from its training images with these fractions.
    Used by training (prepare_split) and by `edgelabels dataset split`, so both split a source alike."""
    from edgelabels.data.dataset import Dataset
    from edgelabels.data.splits import check_no_leak, make_split

    train = Dataset(list(given.get("train") or []), dataset.source)
    trained = {label for s in train.samples for label in s.labels}
    test = test_dataset or (Dataset(_trained_labels_only(given["test"], trained, dataset.source, "test"),
                                    dataset.source) if given.get("test") else None)
    val = _trained_labels_only(given.get("val") or [], trained, dataset.source, "validation")
    split = make_split(train, test_fraction=test_fraction, val_fraction=0.0 if val else val_fraction,
                       seed=seed, test_dataset=test)
    if val:
        split.val = sorted(val, key=lambda s: str(s.path))
    check_no_leak(split, source=dataset.source)
    log.info("split: the source's own %s kept (%d train, %d val, %d test images)",
             "/".join(name for name in ("train", "val", "test") if given.get(name)), len(split.train),
             len(split.val), len(split.test))
    return split


def _trained_labels_only(samples: list, trained: set, source, part: str) -> list:
    """A source's own val or test part without the boxes of labels its train part lacks (small-objects' 5 trucks
    are all in its val and test scenes): the model cannot learn them, and a source's own split should still train.
    The images stay (their other boxes are scored); what is left out is logged. A separate test source that names
    a label training lacks is still refused (make_split)."""
    from edgelabels.data.dataset import Sample

    unseen = sorted({label for s in samples for label in s.labels} - trained)
    if not unseen:
        return list(samples)
    kept = [Sample(s.path, tuple(sorted({b.label for b in s.boxes if b.label in trained})), s.group,
                   tuple(b for b in s.boxes if b.label in trained)) if s.boxes else s for s in samples]
    left_out = sum(1 for s in samples for b in s.boxes if b.label not in trained)
    log.warning("%s: %s label(s) %s have no training image: their %d %s boxes are left out (the model cannot learn "
                "them)", source, part, ", ".join(map(repr, unseen)), left_out, part)
    return kept


def classification_dataset(config):
    """(training dataset, separate test dataset or None): usable images with exactly one label each."""
    from edgelabels.data.sources import load_dataset

    d = config.data
    dataset = usable_only(load_dataset(d.source, manifest=d.manifest, s3_root=d.s3_root, group_by=d.group_by))
    multi = [s for s in dataset.samples if len(s.labels) != 1]
    if multi:
        raise UserError(f"{multi[0].path}: {len(multi)} images have several labels; "
                        "classification training needs exactly one label per image (task: multilabel trains them)")
    test = usable_only(load_dataset(d.test_source, s3_root=d.s3_root, group_by=d.group_by)) if d.test_source else None
    return dataset, test


def segmentation_dataset(config):
    """(images/ + masks/ pairs, None): images without a usable mask are logged and left out."""
    from edgelabels.data.masks import load_mask_pairs

    dataset = load_mask_pairs(config.data.source, group_by=config.data.group_by)
    for problem in dataset.problems:
        log.warning("skipped %s: %s", problem.path, problem.problem)
    return dataset, None


def usable_only(dataset):
    from edgelabels.data.validate import usable_samples

    samples, problems = usable_samples(dataset)
    for problem in problems:
        log.warning("skipped %s: %s", problem.path, problem.problem)
    dataset.samples = samples
    return dataset


def limit_per_label(samples, limit: int, seed: int):
    """At most `limit` samples per label, drawn with `seed`, in their original order."""
    rng = np.random.default_rng(seed)
    kept = []
    def stratum(sample):
        return sample.labels[0] if sample.labels else ""  # a detection image without boxes has no label

    for label in sorted({stratum(s) for s in samples}):
        these = [s for s in samples if stratum(s) == label]
        chosen = sorted(rng.choice(len(these), size=min(limit, len(these)), replace=False))
        kept.extend(these[i] for i in chosen)
    return kept
