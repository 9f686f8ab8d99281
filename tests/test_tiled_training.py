"""Tiled detection training (train/detection_loader.py, spec.tile_scale set): random crops of the scaled image
around its boxes, boxes clipped to the crop (dropped when less than half stays inside), the inference grid's
tiles for validation, crops drawn from (seed, epoch, batch) alone, and one epoch of a tiny detector on them.

Images are large dark frames with small bright squares; a crop's targets are checked against its own pixels:
the centre cell of every target box holds a square's colour, and every square wholly inside the crop is a target.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgelabels.config import load_config
from edgelabels.data.dataset import Box, Sample

LABELS = ["blue", "red"]
COLOURS = {"blue": (40, 60, 230), "red": (230, 40, 40)}
TILE = 32


def make_frames(folder: Path, n: int = 4, width: int = 160, height: int = 120, side: int = 10, seed: int = 0):
    """n dark frames, each with 4 squares (side px) apart from each other; the samples' boxes in pixels."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    samples = []
    for i in range(n):
        # one square per quadrant: never touching
        corners = [(int(rng.integers(0, width // 2 - side)) + (j % 2) * width // 2,
                    int(rng.integers(0, height // 2 - side)) + (j // 2) * height // 2) for j in range(4)]
        boxes = tuple(Box(LABELS[(i + j) % 2], x, y, side, side) for j, (x, y) in enumerate(corners))
        pixels = rng.integers(0, 30, (height, width, 3)).astype(np.uint8)
        for box in boxes:
            pixels[box.top:box.top + side, box.left:box.left + side] = COLOURS[box.label]
        Image.fromarray(pixels).save(folder / f"frame{i:02d}.png")
        samples.append(Sample(folder / f"frame{i:02d}.png", tuple(sorted({b.label for b in boxes})), f"g{i}", boxes))
    return samples


class Split:
    def __init__(self, train, val, test=()):
        self.train, self.val, self.test = list(train), list(val), list(test)


def tiled_batches(folder: Path, samples, scale: float = 1.0, batch_size: int = 4, seed: int = 0):
    from edgelabels.models.backbones import get_backbone
    from edgelabels.train.detection_loader import detection_batches
    from edgelabels.train.loader import PixelCache

    sets = {"task": "detection", "data.source": str(folder), "data.image_size": TILE, "model.backbone": "tinycnn",
            "model.weights": "none", "train.batch_size": batch_size, "train.workers": 1, "seed": seed}
    config = load_config(None, [f"{k}={v}" for k, v in sets.items()])
    spec = dataclasses.replace(get_backbone("tinycnn").preprocess_spec(TILE, TILE, grayscale=False),
                               tile_scale=scale, tile_overlap=0.25)
    caches = PixelCache([s.path for s in samples], spec, 1e8), PixelCache([s.path for s in samples], spec, 1e8)
    return (*detection_batches(config, Split(samples, samples), LABELS, caches, None), config)


def test_an_epoch_holds_as_many_crops_as_the_frames_hold_tiles_and_validation_the_grid(tmp_path):
    samples = make_frames(tmp_path / "frames", n=3)
    train, val, _ = tiled_batches(tmp_path / "frames", samples, batch_size=4)
    assert len(train.slots) == 3 * round(160 * 120 / TILE ** 2)  # 19 crops per 160x120 frame
    assert len(train) == -(-3 * 19 // 4)
    # the inference grid: lefts 0 24 48 72 96 120 128 (steps of 24, the last shifted back), tops 0 24 48 72 88
    assert len(val.slots) == 3 * 7 * 5
    assert len(val) == -(-3 * 35 // 4)


def _check_targets(x, y, spec):
    """Each target centre cell holds its label's colour in the crop; returns how many targets there were."""
    pixels = x * np.asarray(spec.std) + np.asarray(spec.mean)  # back to 0-255 RGB
    count = 0
    for n in range(len(x)):
        for row, col, c in zip(*np.nonzero(y["heatmap"][n] == 1.0)):
            w, h = y["size"][n, row, col, :2] * TILE
            dx, dy = y["offset"][n, row, col, :2]
            cx, cy = (col + dx) * 4, (row + dy) * 4  # stride 4
            # a 10 px square, scaled by 0.75-1.25 and possibly pushed partly out by the affine (albumentations keeps
            # a quarter or more)
            assert 2 <= w <= 12.5 and 2 <= h <= 12.5
            colour = pixels[n, int(cy), int(cx)]  # recoloured in training: the label's channel still dominates
            assert colour.argmax() == np.argmax(COLOURS[LABELS[c]]) and colour.max() > 150, colour
            count += 1
    return count


def test_training_crops_hold_boxes_clipped_to_them_where_their_pixels_are(tmp_path):
    samples = make_frames(tmp_path / "frames", n=3)
    train, val, _ = tiled_batches(tmp_path / "frames", samples, batch_size=8)
    spec = train.cache.spec
    targets = sum(_check_targets(*train[i], spec) for i in range(len(train)))
    # crops centred near a box 70% of the time: far more boxes than uniform crops would hold (12 squares in
    # 3 x 19 crops of a 160 x 120 frame: about 0.5 per uniform crop)
    assert targets >= 0.7 * len(train.slots)
    assert sum(_check_targets(*val[i], spec) for i in range(len(val))) >= 12  # every square in some grid tile


def test_a_box_less_than_half_inside_the_crop_is_dropped_and_one_mostly_inside_is_clipped(tmp_path):
    from edgelabels.train.detection_loader import TiledDetectionBatches

    samples = make_frames(tmp_path / "frames", n=1)
    train, _, _ = tiled_batches(tmp_path / "frames", samples)
    val = TiledDetectionBatches(train.cache, samples, LABELS, 4, 1e8)
    square = samples[0].boxes[0]  # in the top-left quadrant
    # put a grid tile's left edge through the square: move the first tile of the grid by hand
    val.slots = [(0, 0)]
    pixels, boxes, ids = _crop_at(val, square.left + 6, square.top - 5)  # 4 of its 10 px columns inside: dropped
    assert not any(np.allclose(b[:2] * TILE, (0, 5), atol=1e-4) for b in boxes)
    pixels, boxes, ids = _crop_at(val, square.left + 3, square.top - 5)  # 7 of 10 px inside: kept, clipped
    np.testing.assert_allclose(boxes[0] * TILE, (0, 5, 7, 10), atol=1e-4)


def _crop_at(batches, left: int, top: int):
    """The sample of a tile at (left, top) of image 0 (the grid's first tile, moved)."""
    import edgelabels.train.detection_loader as loader

    grid = loader.tile_boxes
    try:
        loader.tile_boxes = lambda *a: [(left, top, TILE, TILE)]
        return batches.sample(0, None)
    finally:
        loader.tile_boxes = grid


def test_crops_are_drawn_from_seed_epoch_and_batch_alone_and_validation_tiles_never_change(tmp_path):
    samples = make_frames(tmp_path / "frames", n=2)
    a, val_a, _ = tiled_batches(tmp_path / "frames", samples)
    b, val_b, _ = tiled_batches(tmp_path / "frames", samples)
    b.set_epoch(2)
    b.set_epoch(1)  # b reached epoch 1 another way than a
    a.set_epoch(1)
    np.testing.assert_array_equal(a[3][0], b[3][0])
    a.set_epoch(2)
    assert not np.array_equal(a[3][0], b[3][0])
    first = val_a[1][0]
    val_a.set_epoch(5)
    np.testing.assert_array_equal(val_a[1][0], first)
    np.testing.assert_array_equal(val_b[1][0], first)


@pytest.mark.slow
def test_a_tiny_detector_trains_one_epoch_on_tiles(tmp_path):
    import keras

    from edgelabels.models.detection_losses import detection_objectives
    from edgelabels.models.factory import create_model

    samples = make_frames(tmp_path / "frames", n=3)
    train, val, config = tiled_batches(tmp_path / "frames", samples, scale=0.5, batch_size=8)
    keras.utils.set_random_seed(0)
    model = create_model(config, len(LABELS))
    model.compile(optimizer=keras.optimizers.Adam(3e-3), **detection_objectives(config.train))
    history = model.fit(train, validation_data=val, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0]) and np.isfinite(history["val_loss"][0])
    assert model.input_shape[1:3] == (TILE, TILE)
