"""Multi-label data: the dataset reader, iterative stratification of blocks, and a generated multi-label set.

Sources: a Ground Truth manifest, where a line carries any number of image-level labels (several
`groundtruth/image-classification` attributes, or one `...-multilabel` attribute with a class-map) and lines for
the same image add up (data/sources.py); or a folder per label, where an image with several labels is a copy of
the same file (the same bytes, SHA-256) in each of its label folders: the copies become one image carrying
every folder's label (the first path in sorted order stands for it, with that path's group).

Splitting: iterative stratification (Sechidis, Tsoumakas and Vlahavas, "On the stratification of multi-label
data", ECML PKDD 2011), applied to blocks instead of images. Blocks are data/splits.py's: the images of one
group (`data.group_by`, one patient) or of identical bytes, which must stay together. The rarest label still
to place is taken first; each remaining block that carries it goes to the side (held-out or kept) that still
wants the most of that label, ties to the side that wants the most images, then by the seeded generator. The
wants start at fraction x (label count, image count) and drop by what each block brings. Rare labels are
thus shared first, while both sides still want them: a label with 10 images and a 0.2 test fraction gets 2
test images; a label with one image stays in training (its wants are 0.8 vs 0.2).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from edgelabels import atomic
from edgelabels.errors import UserError

log = logging.getLogger("edgelabels.train")


def multilabel_dataset(config):
    """(training dataset, separate test dataset or None): usable images from a manifest, each with >= 1 label."""
    from edgelabels.data.prepare import usable_only
    from edgelabels.data.sources import load_dataset

    d = config.data
    if d.limit_per_label:
        raise UserError("data.limit_per_label draws images per label, which a multi-label image does not have one "
                        "of; leave it null for task multilabel")
    dataset = _with_copies_merged(usable_only(load_dataset(d.source, manifest=d.manifest, s3_root=d.s3_root,
                                                            group_by=d.group_by)))
    test = None
    if d.test_source:
        test = _with_copies_merged(usable_only(load_dataset(d.test_source, s3_root=d.s3_root, group_by=d.group_by)))
    for part in (dataset, test):
        if part is None:
            continue
        unlabelled = [s for s in part.samples if not s.labels]
        if unlabelled:
            raise UserError(f"{unlabelled[0].path}: {len(unlabelled)} images without any label in {part.source}")
    counts = dataset.label_counts
    several = sum(len(s.labels) > 1 for s in dataset.samples)
    log.info("multilabel: %d images, %d with several labels; images per label %s", len(dataset.samples), several,
             counts)
    return dataset, test


def manifest_has_several_labels(source) -> bool:
    """True for a Ground Truth manifest giving some image several labels (on one line, or over several lines)."""
    from edgelabels.data.sources import MANIFEST_SUFFIXES, parse_manifest_line

    path = Path(source) if source else None
    if path is None or path.suffix.lower() not in MANIFEST_SUFFIXES or not path.is_file():
        return False
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return False  # the reader says why
    labels: dict[str, set[str]] = {}
    for line in text.split("\n"):
        try:
            entry = parse_manifest_line(line)
        except ValueError:
            continue  # the reader lists it
        these = labels.setdefault(entry["source-ref"].strip(), set())
        these.update(entry["labels"])
        if len(these) > 1:
            return True
    return False


def _with_copies_merged(dataset):
    """One sample per distinct file content, labelled with the union of its copies' labels (a folder source)."""
    import hashlib

    from edgelabels.data.dataset import Sample

    merged: dict[str, Sample] = {}
    for sample in sorted(dataset.samples, key=lambda s: str(s.path)):
        digest = hashlib.sha256(Path(sample.path).read_bytes()).hexdigest()
        first = merged.get(digest)
        if first is None:
            merged[digest] = sample
        else:
            labels = first.labels + tuple(x for x in sample.labels if x not in first.labels)
            merged[digest] = Sample(first.path, labels, first.group, first.boxes)
    copies = len(dataset.samples) - len(merged)
    if copies:
        log.info("multilabel: %d copies of the same bytes in several label folders merged into %d images with "
                 "several labels", copies, sum(len(s.labels) > 1 for s in merged.values()))
    dataset.samples = sorted(merged.values(), key=lambda s: str(s.path))
    return dataset


def multi_hot(samples, labels: list[str]) -> np.ndarray:
    """(N, K) float32: 1 where the image carries the label."""
    index = {name: i for i, name in enumerate(labels)}
    y = np.zeros((len(samples), len(labels)), np.float32)
    for row, sample in enumerate(samples):
        try:
            y[row, [index[name] for name in sample.labels]] = 1.0
        except KeyError as exc:
            raise UserError(f"{sample.path}: label {exc.args[0]!r} is not one of the labels {labels}") from None
    return y


def iterative_stratification(blocks: list, fraction: float, rng: np.random.Generator):
    """Blocks (lists of samples that stay together) -> (kept, held), about `fraction` of every label held out.

    See the module docstring for the method. A block's count for a label is how many of its images carry it.
    """
    labels = sorted({label for block in blocks for s in block for label in s.labels})
    index = {label: i for i, label in enumerate(labels)}
    counts = np.zeros((len(blocks), len(labels)))
    for b, block in enumerate(blocks):
        for s in block:
            for label in s.labels:
                counts[b, index[label]] += 1
    sizes = np.array([len(block) for block in blocks], np.float64)
    shares = np.array([1.0 - fraction, fraction])  # side 0 kept, side 1 held
    wants_label = shares[:, None] * counts.sum(axis=0)[None, :]  # (2, K)
    wants_images = shares * sizes.sum()
    side = np.full(len(blocks), -1)
    remaining = set(range(len(blocks)))

    def place(b: int, k: int | None) -> None:
        keys = [(wants_label[j, k] if k is not None else 0.0, wants_images[j], rng.random()) for j in (0, 1)]
        j = int(keys[1] > keys[0])
        side[b] = j
        wants_label[j] -= counts[b]
        wants_images[j] -= sizes[b]
        remaining.discard(b)

    while remaining:
        alive = sorted(remaining)
        left = counts[alive].sum(axis=0)
        if not left.any():
            for b in rng.permutation(alive):  # blocks without labels (none in a checked multi-label dataset)
                place(int(b), None)
            break
        k = int(np.flatnonzero(left == left[left > 0].min())[0])  # the rarest label still to place
        for b in rng.permutation([b for b in alive if counts[b, k]]):
            place(int(b), k)
    kept = [blocks[b] for b in range(len(blocks)) if side[b] == 0]
    held = [blocks[b] for b in range(len(blocks)) if side[b] == 1]
    return kept, held


# ---------------------------------------------------------------- a generated multi-label set

# label -> chance that an image carries it (independently); an image drawn with none gets one at random
SHAPES = {"disc": 0.5, "square": 0.4, "stripes": 0.25}


def render_shapes(labels, rng: np.random.Generator, size: int = 48):
    """An RGB image on a noisy grey background: a red disc, a blue square, dark horizontal stripes, as labelled.

    Positions, sizes and shades vary, so the model must find each feature anywhere; the features never hide
    each other (the stripes are drawn first, the square and the disc on opposite halves)."""
    from PIL import Image, ImageDraw

    base = rng.uniform(110, 170)
    pixels = base + rng.normal(0, 12, (size, size, 3))
    if "stripes" in labels:
        period = int(rng.integers(4, 7))
        rows = (np.arange(size) + int(rng.integers(0, period))) % period < period // 2
        pixels[rows] *= rng.uniform(0.35, 0.55)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    r = size * rng.uniform(0.12, 0.2)
    left_half = rng.random() < 0.5
    for label, colour, half in (("disc", (220, 40, 40), left_half), ("square", (40, 60, 220), not left_half)):
        if label not in labels:
            continue
        x0 = rng.uniform(0, size / 2 - 2 * r) + (0 if half else size / 2)
        y0 = rng.uniform(0, size - 2 * r)
        shade = tuple(int(c * rng.uniform(0.8, 1.0)) for c in colour)
        (draw.ellipse if label == "disc" else draw.rectangle)([x0, y0, x0 + 2 * r, y0 + 2 * r], fill=shade)
    return image


def draw_labels(rng: np.random.Generator, chances: dict[str, float] = SHAPES) -> tuple[str, ...]:
    names = list(chances)
    labels = tuple(name for name in names if rng.random() < chances[name])
    return labels or (names[int(rng.integers(len(names)))],)


def manifest_line(ref: str, labels, job: str = "edgelabels-shapes") -> str:
    """A Ground Truth line with one image-classification attribute per label (as ListDatasetEntries returns)."""
    entry: dict = {"source-ref": ref}
    for label in labels:
        entry[label] = 1
        entry[f"{label}-metadata"] = {"confidence": 1, "job-name": f"labeling-job/{job}", "class-name": label,
                                      "human-annotated": "yes", "type": "groundtruth/image-classification"}
    return json.dumps(entry)


def generate_shapes(out_dir, n: int, seed: int = 0, size: int = 48, per_group: int = 4) -> Path:
    """n PNGs in OUT/images/ and OUT/manifest.jsonl (source-refs relative to OUT); returns the manifest path.

    File names start with a group (g0007_...: `per_group` images each, e.g. one photo session), so
    `data.group_by: "^(g\\d+)_"` keeps a group in one split."""
    if n < 1 or size < 16:
        raise UserError(f"generate_shapes: n must be >= 1 and size >= 16, not {n} and {size}")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        labels = draw_labels(rng)
        name = f"images/g{i // per_group:04d}_{i:05d}_{'-'.join(labels)}.png"
        render_shapes(labels, rng, size).save(out / name)
        lines.append(manifest_line(name, labels) + "\n")
    return atomic.write_text(out / "manifest.jsonl", "".join(lines))
