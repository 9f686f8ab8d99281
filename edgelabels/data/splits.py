"""Seeded, stratified, grouped train/val/test splits, written as file lists so a run can be reproduced exactly.

Samples are first joined into blocks that must stay together: same group (one patient) or same bytes
(a duplicated image in train and test would be a leak). Blocks are then dealt out in a seeded random
order; each block goes to the held-out side when that brings the held-out share of its labels closer to
the wanted fraction of what has been dealt so far (error diffusion). Every label thus ends near its
fraction, a label with one image stays in train, and no block is ever cut in two.
Defaults follow Rekognition: 20% test, then 10% of the rest for validation.
A task may deal blocks its own way (`deal`): multi-label runs use iterative stratification over every label
(data/multilabel.py), with the same blocks, so groups and duplicates still never straddle.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgelabels import atomic
from edgelabels.data.dataset import Box, Dataset, Sample
from edgelabels.errors import UserError

SPLIT_NAMES = ("train", "val", "test")
BOXES = "boxes.jsonl"  # detection: each image's boxes, beside the file lists
NO_LABELS = "-"  # the label field of an image without labels (a detection negative)


@dataclass
class Split:
    train: list[Sample]
    val: list[Sample]
    test: list[Sample]

    def parts(self) -> dict[str, list[Sample]]:
        return {"train": self.train, "val": self.val, "test": self.test}


def make_split(dataset: Dataset, *, test_fraction: float = 0.2, val_fraction: float = 0.1, seed: int = 0,
               test_dataset: Dataset | None = None, deal=None) -> Split:
    """Carve test (unless test_dataset is given) then val from dataset; groups and duplicates never straddle.

    deal(blocks, fraction, rng) -> (kept, held): how blocks are shared out (default: deal_by_first_label)."""
    check_fractions(test_fraction, val_fraction)
    deal = deal or deal_by_first_label
    rng = np.random.default_rng(seed)
    everything = dataset.samples + (test_dataset.samples if test_dataset is not None else [])
    hashes = dict(zip((s.path for s in everything), sha256_all([s.path for s in everything])))
    blocks = blocks_of(dataset.samples, hashes)
    if test_dataset is None:
        rest, test = deal(blocks, test_fraction, rng)
    else:
        rest, test = blocks, [[s] for s in test_dataset.samples]
    train, val = deal(rest, val_fraction, rng)
    split = Split(*(sorted((s for block in part for s in block), key=lambda s: str(s.path))
                    for part in (train, val, test)))
    check_no_leak(split, source=dataset.source, hashes=hashes)
    if test_dataset is not None:
        _check_test_labels(split, test_dataset.source)
    return split


def check_fractions(test_fraction: float, val_fraction: float) -> None:
    for name, value in (("test fraction", test_fraction), ("validation fraction", val_fraction)):
        if not 0.0 <= value < 1.0:
            raise UserError(f"{name} {value}: must be at least 0 and below 1")


def blocks_of(samples: list[Sample], hashes: dict[Path, str | None]) -> list[list[Sample]]:
    """Union-find over samples: same group or same SHA-256 -> same block. Blocks and their members sorted."""
    parent = list(range(len(samples)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first_of: dict[str, int] = {}
    for i, sample in enumerate(samples):
        digest = hashes.get(sample.path)
        for key in (f"group:{sample.group}", f"sha256:{digest}" if digest else None):
            if key is None:
                continue
            if key in first_of:
                parent[find(i)] = find(first_of[key])
            else:
                first_of[key] = i
    members: dict[int, list[Sample]] = {}
    for i, sample in enumerate(samples):
        members.setdefault(find(i), []).append(sample)
    blocks = [sorted(block, key=lambda s: str(s.path)) for block in members.values()]
    return sorted(blocks, key=lambda b: str(b[0].path))  # independent of input order: same seed, same split


def deal_by_first_label(blocks: list[list[Sample]], fraction: float, rng: np.random.Generator):
    """Split blocks into (kept, held) so that about `fraction` of every label is held out."""
    labels = sorted({_stratum(s) for block in blocks for s in block})
    index = {label: i for i, label in enumerate(labels)}
    counts = np.zeros((len(blocks), len(labels)))
    for b, block in enumerate(blocks):
        for s in block:
            counts[b, index[_stratum(s)]] += 1
    totals = np.maximum(counts.sum(axis=0), 1)
    dealt, held_counts = np.zeros(len(labels)), np.zeros(len(labels))
    kept, held = [], []
    for b in rng.permutation(len(blocks)):
        dealt += counts[b]
        goal = fraction * dealt
        # Compare in shares of each label, so small labels weigh as much as large ones.
        if np.linalg.norm((held_counts + counts[b] - goal) / totals) < np.linalg.norm((held_counts - goal) / totals):
            held.append(blocks[b])
            held_counts += counts[b]
        else:
            kept.append(blocks[b])
    return kept, held


def _stratum(sample: Sample) -> str:
    """The label a sample is stratified on: its first (multi-label images), or "" for a detection negative.

    "" is never a label (sources refuse empty names), so negatives are dealt out as a stratum of their own.
    """
    return sample.labels[0] if sample.labels else ""


def sha256_all(paths: list[Path]) -> list[str | None]:
    def digest(path: Path) -> str | None:
        try:
            return hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except OSError:
            return None  # unreadable: validation reports it; it can only be its own duplicate

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(digest, paths))


def check_no_leak(split: Split, *, source: str = "split", hashes: dict[Path, str | None] | None = None) -> None:
    """UserError if an image (same path or same bytes) or a group is in train/val and in test."""
    fitted = split.train + split.val
    if hashes is None:
        everything = fitted + split.test
        hashes = dict(zip((s.path for s in everything), sha256_all([s.path for s in everything])))
    test_paths = {str(s.path) for s in split.test}
    same_path = [s for s in fitted if str(s.path) in test_paths]
    if same_path:
        raise UserError(f"{same_path[0].path}: in both the training and the test split "
                        f"({len(same_path)} images overlap)")
    test_hashes = {hashes[s.path]: s for s in split.test if hashes.get(s.path)}
    for sample in fitted:
        digest = hashes.get(sample.path)
        if digest in test_hashes:
            raise UserError(f"{sample.path}: byte-identical to test image {test_hashes[digest].path} "
                            "(a duplicate in train and test inflates the evaluation)")
    test_groups = {s.group for s in split.test}
    shared = sorted({s.group for s in fitted if s.group in test_groups})
    if shared:
        raise UserError(f"{source}: group {shared[0]!r} has images in training and in test "
                        f"({len(shared)} groups shared); one patient's images must stay in one split")


def _check_test_labels(split: Split, test_source: str) -> None:
    trained = {label for s in split.train for label in s.labels}
    unknown = sorted({label for s in split.test for label in s.labels} - trained)
    if unknown:
        raise UserError(f"{test_source}: test label {unknown[0]!r} has no training image "
                        f"({len(unknown)} such labels); the model cannot learn it")


# ---------------------------------------------------------------- file lists


def write_split(split: Split, folder) -> Path:
    """Write FOLDER/{train,val,test}.txt, one `path<TAB>label[,label]<TAB>group` line per image (`-`: no label).

    When any image has boxes (detection), FOLDER/boxes.jsonl holds them: one `{"path", "boxes": [[label, left,
    top, width, height], ...]}` line (pixels) per image with boxes. Each file is written atomically, train.txt
    last: its presence means the others are complete.
    """
    folder = Path(folder)
    texts = {}
    for name, samples in split.parts().items():
        lines = []
        for s in samples:
            fields = (str(s.path), ",".join(s.labels) or NO_LABELS, s.group)
            if any(ch in f for f in fields for ch in "\t\n\r") or any("," in label for label in s.labels):
                raise UserError(f"{s.path}: path, label or group contains a tab, newline or (in a label) a comma; "
                                "cannot be written to a split file")
            if NO_LABELS in s.labels:
                raise UserError(f"{s.path}: a label named {NO_LABELS!r} cannot be written to a split file "
                                "(it stands for an image without labels)")
            lines.append("\t".join(fields) + "\n")
        texts[name] = "".join(lines)
    boxed = [s for samples in split.parts().values() for s in samples if s.boxes]
    if boxed:
        atomic.write_text(folder / BOXES, "".join(
            json.dumps({"path": str(s.path), "boxes": [[b.label, b.left, b.top, b.width, b.height] for b in s.boxes]})
            + "\n" for s in boxed))
    elif (folder / BOXES).exists():
        (folder / BOXES).unlink()  # a rewritten split without boxes must not read back an older one's
    for name in ("test", "val", "train"):
        atomic.write_text(folder / f"{name}.txt", texts[name])
    return folder


def read_split(folder) -> Split:
    folder = Path(folder)
    boxes = _read_boxes(folder / BOXES)
    parts = {}
    for name in SPLIT_NAMES:
        path = folder / f"{name}.txt"
        if not path.is_file():
            raise UserError(f"{path}: split file not found")
        samples = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            fields = line.split("\t")
            if len(fields) != 3 or not all(fields):
                raise UserError(f"{path}:{number}: expected path<TAB>label<TAB>group, got {line[:80]!r}")
            labels = () if fields[1] == NO_LABELS else tuple(fields[1].split(","))
            samples.append(Sample(Path(fields[0]), labels, fields[2], boxes.get(fields[0], ())))
        parts[name] = samples
    stray = sorted(set(boxes) - {str(s.path) for samples in parts.values() for s in samples})
    if stray:
        raise UserError(f"{folder / BOXES}: boxes for {stray[0]}, which is in no split file ({len(stray)} such images)")
    split = Split(**parts)
    test_paths = {str(s.path) for s in split.test}
    overlap = [s for s in split.train + split.val if str(s.path) in test_paths]
    if overlap:
        raise UserError(f"{folder}: {overlap[0].path} is in both training and test lists")
    return split


def _read_boxes(path: Path) -> dict[str, tuple[Box, ...]]:
    """path -> boxes from boxes.jsonl; {} when there is none (classification)."""
    if not path.is_file():
        return {}
    boxes = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            entry = json.loads(line)
            boxes[str(entry["path"])] = tuple(Box(str(label), float(left), float(top), float(width), float(height))
                                              for label, left, top, width, height in entry["boxes"])
        except (ValueError, KeyError, TypeError):
            raise UserError(f"{path}:{number}: expected {{\"path\": ..., \"boxes\": [[label, left, top, width, "
                            f"height], ...]}}, got {line[:80]!r}") from None
    return boxes
