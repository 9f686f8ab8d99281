"""Checking every image of a dataset: decodable, byte-identical duplicates, near-duplicates, Rekognition's limits.

Each image is read once, hashed (SHA-256 of the bytes) and decoded with `read_image`'s decoder in a thread
pool (Pillow releases the GIL while decoding). Near-duplicates come from a 256-bit perceptual hash (pHash:
the lowest 16x16 DCT coefficients of a 64x64 grey thumbnail, each above or below their median), compared
over all pairs with a matrix product. 64 bits were too few for chest X-rays (which all look alike at low
frequencies): on the pediatric set, different patients' images came within 4 bits of each other, whereas
at 256 bits distinct images stay >= 38 bits apart, and re-encoding (JPEG q20), resizing, brightness,
contrast or mild noise stay <= 16. Crops, shifts and rotations are not caught (pHash is not built for them).
"""

from __future__ import annotations

import hashlib
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np
from PIL import Image

from edgelabels.data.dataset import Dataset, Problem, Sample
from edgelabels.data.images import decode_image, read_image
from edgelabels.errors import ImageProblem

NEAR_DISTANCE = 20  # bits of 256 that may differ for two images to count as near-duplicates (see above)
MAX_NEAR_PAIRS = 10_000  # a folder of near-blank images would otherwise list millions of pairs
# Rekognition Custom Labels' documented image limits: we accept such images, but say Rekognition would not.
MIN_SIDE, MAX_SIDE, MAX_BYTES, MAX_ASPECT = 64, 4096, 15 * 1024 * 1024, 20.0


@dataclass
class ImageCheck:
    path: Path
    sha256: str | None = None
    phash: np.ndarray | None = None  # 256 bits as 0/1 uint8
    size: tuple[int, int] | None = None  # width, height
    problem: str | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class InspectReport:
    source: str
    images: int
    labels: dict[str, int]
    groups: int
    usable_images: int  # images that decode
    usable_labels: dict[str, int]  # images per label that decode
    duplicates: list[tuple[str, str]]
    label_conflicts: list[tuple[str, str]]  # byte-identical images carrying different labels
    near_duplicates: list[tuple[str, str, int]]
    near_duplicates_total: int
    problems: list[Problem]
    notes: list[dict]
    unlabelled: list[str]
    sizes: dict

    def to_json(self) -> dict:
        return {
            "source": self.source,
            "images": self.images,
            "labels": self.labels,
            "groups": self.groups,
            "usable_images": self.usable_images,
            "usable_labels": self.usable_labels,
            "duplicates": [list(p) for p in self.duplicates],
            "label_conflicts": [list(p) for p in self.label_conflicts],
            "near_duplicates": [list(p) for p in self.near_duplicates],
            "near_duplicates_total": self.near_duplicates_total,
            "problems": [p.to_json() for p in self.problems],
            "notes": self.notes,
            "unlabelled": self.unlabelled,
            "sizes": self.sizes,
        }


def inspect_dataset(dataset: Dataset, *, near_distance: int = NEAR_DISTANCE, progress: bool = True,
                    workers: int | None = None) -> InspectReport:
    """Decode and hash every image; report problems, notes, duplicates and near-duplicates."""
    checks = threaded(check_image, [s.path for s in dataset.samples], progress, "inspect", workers)
    by_path = {str(s.path): s for s in dataset.samples}
    problems = list(dataset.problems) + [Problem(str(c.path), c.problem) for c in checks if c.problem]
    notes = [{"path": str(c.path), "note": n} for c in checks for n in c.notes]
    duplicates = duplicate_pairs(checks)
    conflicts = [(a, b) for a, b in duplicates if set(by_path[a].labels) != set(by_path[b].labels)]
    exact = set(duplicates)
    near = [p for p in near_duplicate_pairs(checks, near_distance) if (p[0], p[1]) not in exact]
    usable: dict[str, int] = {}
    for sample, check in zip(dataset.samples, checks):
        if check.problem is None:
            for label in sample.labels:
                usable[label] = usable.get(label, 0) + 1
    return InspectReport(
        source=dataset.source,
        images=len(dataset.samples),
        labels=dataset.label_counts,
        groups=len(dataset.groups),
        usable_images=sum(c.problem is None for c in checks),
        usable_labels={name: usable.get(name, 0) for name in dataset.label_names},
        duplicates=duplicates,
        label_conflicts=conflicts,
        near_duplicates=near[:MAX_NEAR_PAIRS],
        near_duplicates_total=len(near),
        problems=problems,
        notes=notes,
        unlabelled=[str(p) for p in dataset.unlabelled],
        sizes=_size_summary(checks),
    )


def usable_samples(dataset: Dataset, *, progress: bool = True, workers: int | None = None) \
        -> tuple[list[Sample], list[Problem]]:
    """The samples whose images decode (for training), and a Problem for each one that does not."""
    def decodes(path: Path) -> str | None:
        try:
            read_image(path)
        except ImageProblem as exc:
            return exc.problem
        return None

    results = threaded(decodes, [s.path for s in dataset.samples], progress, "decode", workers)
    samples = [s for s, problem in zip(dataset.samples, results) if problem is None]
    problems = [Problem(str(s.path), problem) for s, problem in zip(dataset.samples, results) if problem]
    return samples, problems


def check_image(path: Path) -> ImageCheck:
    check = ImageCheck(Path(path))
    try:
        data = check.path.read_bytes()
    except OSError as exc:
        check.problem = f"cannot read file ({exc.strerror or exc})"
        return check
    if data:
        check.sha256 = hashlib.sha256(data).hexdigest()
    try:
        image, notes = decode_image(data, str(path), check.path.suffix.lower())
    except ImageProblem as exc:
        check.problem = exc.problem
        return check
    check.notes = notes + _rekognition_limits(image.size, len(data))
    check.size = image.size
    check.phash = perceptual_hash(image)
    return check


def _rekognition_limits(size: tuple[int, int], n_bytes: int) -> list[str]:
    width, height = size
    notes = []
    if min(width, height) < MIN_SIDE:
        notes.append(f"{width}x{height} is below Rekognition's {MIN_SIDE}x{MIN_SIDE} minimum")
    if max(width, height) > MAX_SIDE:
        notes.append(f"{width}x{height} is above Rekognition's {MAX_SIDE}x{MAX_SIDE} maximum")
    if max(width, height) > MAX_ASPECT * min(width, height):
        notes.append(f"aspect ratio {width}:{height} is beyond Rekognition's 20:1 maximum")
    if n_bytes > MAX_BYTES:
        notes.append(f"{n_bytes / 2**20:.1f} MB is above Rekognition's 15 MB maximum")
    return notes


_DCT = None


def perceptual_hash(image: Image.Image) -> np.ndarray:
    """256-bit pHash as 0/1 uint8: lowest 16x16 DCT coefficients of a 64x64 grey thumbnail against their median."""
    global _DCT
    if _DCT is None:  # orthonormal DCT-II matrix, built once
        k, n = np.meshgrid(np.arange(64), np.arange(64), indexing="ij")
        dct = np.cos(np.pi * (2 * n + 1) * k / 128) * np.sqrt(2 / 64)
        dct[0] /= np.sqrt(2)
        _DCT = dct[:16]
    thumb = np.asarray(image.resize((64, 64), Image.Resampling.BOX).convert("L"), dtype=np.float64)
    low = _DCT @ thumb @ _DCT.T
    return (low > np.median(low)).ravel().astype(np.uint8)


def duplicate_pairs(checks: list[ImageCheck]) -> list[tuple[str, str]]:
    """Every pair of byte-identical files (same SHA-256), each pair sorted, the list sorted."""
    by_hash: dict[str, list[str]] = {}
    for check in checks:
        if check.sha256:
            by_hash.setdefault(check.sha256, []).append(str(check.path))
    pairs = [pair for paths in by_hash.values() if len(paths) > 1 for pair in combinations(sorted(paths), 2)]
    return sorted(pairs)


def near_duplicate_pairs(checks: list[ImageCheck], max_distance: int) -> list[tuple[str, str, int]]:
    """Pairs whose perceptual hashes differ in at most max_distance bits, closest first."""
    hashed = [c for c in checks if c.phash is not None]
    if len(hashed) < 2 or max_distance < 0:
        return []
    bits = np.stack([c.phash for c in hashed]).astype(np.float32)
    ones = bits.sum(axis=1)
    pairs = []
    chunk = 1024  # rows per step: bounds memory to chunk * N * 4 bytes
    for start in range(0, len(bits), chunk):
        # Hamming distance of 0/1 vectors: |a| + |b| - 2 a.b, exact in float32 for 256 bits.
        distance = ones[start:start + chunk, None] + ones[None, :] - 2 * bits[start:start + chunk] @ bits.T
        rows, cols = np.nonzero(distance <= max_distance + 0.5)
        keep = cols > rows + start  # each pair once, never an image with itself
        for i, j in zip(rows[keep], cols[keep]):
            a, b = sorted((str(hashed[start + i].path), str(hashed[j].path)))
            pairs.append((a, b, int(round(distance[i, j]))))
    return sorted(pairs, key=lambda p: (p[2], p[0], p[1]))


def _size_summary(checks: list[ImageCheck]) -> dict:
    sizes = [c.size for c in checks if c.size]
    if not sizes:
        return {}
    widths, heights = np.array(sizes).T
    return {"min": [int(widths.min()), int(heights.min())], "max": [int(widths.max()), int(heights.max())],
            "median": [int(np.median(widths)), int(np.median(heights))]}


def threaded(function, paths: list[Path], progress: bool, description: str, workers: int | None) -> list:
    """function(path) for every path, in order, on a thread pool, with a tqdm bar on stderr."""
    from tqdm import tqdm

    workers = workers or min(8, (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                 else os.cpu_count() or 1) + 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(function, paths)
        return list(tqdm(results, total=len(paths), desc=description, unit="img", file=sys.stderr,
                         disable=not progress, leave=False))
