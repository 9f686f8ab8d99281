"""What the images themselves say, before any model: unreadable, blank, or the same picture under two labels.

Hashes and the duplicate finders are data/validate.py's (SHA-256 for identical files, the 256-bit pHash for
near-identical ones, NEAR_DISTANCE bits apart at most). Only pairs whose labels differ are suspects: one of the two
labels is wrong, or the labels cannot be told apart from the picture; same-label copies are `dataset inspect`'s
business (they inflate a test score, they do not mislead training).

Blank: an image of one flat colour, or nearly. On a 64x64 thumbnail (box-averaged, which smooths sensor and JPEG
noise), every colour channel's 1st to 99th percentile lies within BLANK_SPREAD grey levels of 255: a lens cap, an
empty frame, a failed upload. A mark covering less than 1% of the picture does not make it non-blank; any real
subject (a cassette, a chest) spreads over far more than 8 levels.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from edgelabels.audit.suspects import (
    BLANK,
    DUPLICATE,
    NEAR_DUPLICATE,
    UNREADABLE,
    Suspect,
    dataset_folder,
    shown_path,
)
from edgelabels.data.images import is_image_path, read_image
from edgelabels.data.validate import NEAR_DISTANCE, threaded, check_image, duplicate_pairs, near_duplicate_pairs
from edgelabels.errors import ImageProblem

BLANK_SPREAD = 8  # grey levels of 255 (see above)
THUMB = 64
PARTNERS = 3  # other images named in a duplicate's detail (a family of copies would otherwise fill the page)


def image_checks(dataset, near_distance: int | None = None, progress: bool = False) -> list[Suspect]:
    """Unreadable and blank images, and identical or near-identical images whose labels differ (each image of such
    a pair once per reason, naming the others). Not ranked: rank_suspects merges these with the model's suspects."""
    near_distance = NEAR_DISTANCE if near_distance is None else near_distance
    folder = dataset_folder(dataset)
    results = threaded(_check, [s.path for s in dataset.samples], progress, "audit images", None)
    checks = [check for check, _ in results]
    labels = {str(s.path): s.labels for s in dataset.samples}

    def named(path) -> str:
        return f"{shown_path(path, folder)} (labelled {', '.join(labels[str(path)]) or 'nothing'})"

    suspects = []
    for sample, (check, spread) in zip(dataset.samples, results):
        if check.problem:
            suspects.append(Suspect(sample.path, _given(sample.labels), None, None, UNREADABLE, check.problem))
        elif spread is not None and spread <= BLANK_SPREAD:
            suspects.append(Suspect(sample.path, _given(sample.labels), None, None, BLANK,
                                    f"one flat colour: every channel within {spread:.0f} grey levels"))
    suspects += _unreadable_left_out(dataset)
    # Blank pictures all look alike (and unreadable files have no picture): each is listed once, under its own reason.
    flagged = {str(s.image) for s in suspects}
    hashed = [check for check in checks if str(check.path) not in flagged]
    partners: dict[tuple[str, str], list[str]] = {}  # (image, reason) -> the other images, closest first
    exact = duplicate_pairs(hashed)
    for a, b in exact:
        if set(labels[a]) != set(labels[b]):
            for x, y in ((a, b), (b, a)):
                partners.setdefault((x, DUPLICATE), []).append(f"identical to {named(y)}")
    same = set(exact)
    for a, b, bits in near_duplicate_pairs(hashed, near_distance):
        if (a, b) not in same and set(labels[a]) != set(labels[b]):
            for x, y in ((a, b), (b, a)):
                partners.setdefault((x, NEAR_DUPLICATE), []).append(f"near-identical to {named(y)}, {bits} bits of "
                                                                    "256 apart")
    for (path, reason), found in partners.items():
        more = f"; and {len(found) - PARTNERS} more" if len(found) > PARTNERS else ""
        suspects.append(Suspect(Path(path), _given(labels[path]), None, None, reason,
                                "; ".join(found[:PARTNERS]) + more))
    return suspects


def _check(path: Path):
    """(validate's ImageCheck, the blank measure: the widest channel spread in grey levels, None if undecodable)."""
    check = check_image(path)
    if check.problem:
        return check, None
    try:
        image = read_image(path)[0].convert("RGB").resize((THUMB, THUMB), Image.Resampling.BOX)
    except ImageProblem:  # changed on disk since check_image read it: its verdict stands
        return check, None
    pixels = np.asarray(image, dtype=np.float64).reshape(-1, 3)
    low, high = np.percentile(pixels, [1, 99], axis=0)
    return check, float((high - low).max())


def _unreadable_left_out(dataset) -> list[Suspect]:
    """Images a reader already left out of the samples (a training set made with usable_samples lists them as
    problems): those that still do not decode. Other problems (a clipped box, a manifest line) are not images."""
    kept = {os.path.abspath(s.path) for s in dataset.samples}
    suspects = []
    for problem in dataset.problems:
        path = Path(problem.path)
        if is_image_path(path) and os.path.abspath(path) not in kept:
            check = check_image(path)
            if check.problem:
                suspects.append(Suspect(path, None, None, None, UNREADABLE, check.problem))
    return suspects


def _given(labels) -> str | None:
    return ", ".join(labels) or None
