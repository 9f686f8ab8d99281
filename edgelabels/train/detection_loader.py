"""Detection batches: cached pixels + boxes -> box-aware augmentation -> CenterNet targets, as a Keras PyDataset.

Boxes come in pixels of the image as displayed (Sample.boxes); the cached pixels are already stretched to
the model input, so the boxes become ratios of the image once per sample (data.boxes) and stay ratios.
Training batches flip, scale, translate, recolour and blur image and boxes together (albumentations with
bbox_params; a box that leaves the image is dropped), then each box becomes a gaussian splat on its label's
heatmap channel (CenterNet's radius), its size and sub-cell offset at its centre cell, and a centre mask
(the losses' last target channel, models/detection_losses.py). An image without boxes is a negative:
an all-zero heatmap and no centre.

A tiled run (spec.tile_scale set, runtime/tiles.py) trains on tiles of the scaled image, as its export
answers: each image scaled once (ScaledCache); a training sample is a random tile-sized crop, centred near
a random box with chance BOX_CROP (else uniform), an epoch holding as many crops as the frames hold tiles' worth
of pixels; a box keeps its place in a crop when at least MIN_INSIDE of its area lies inside (clipped to it),
else it is dropped. Validation crops are the inference grid's tiles, the same every epoch.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import threading

import numpy as np

from edgelabels.data.boxes import clip_ratios, displayed_size, to_ratios
from edgelabels.data.preprocess import normalise
from edgelabels.errors import UserError
from edgelabels.runtime.tiles import crop, scaled_pixels, scaled_size, tile_boxes
from edgelabels.train.loader import ImageBatches

log = logging.getLogger("edgelabels.train")
MIN_OVERLAP = 0.7  # CenterNet's: a box shifted by the radius still overlaps the true one at IoU >= 0.7
BOX_CROP = 0.7  # chance that a training tile is placed around a random box rather than anywhere
# A box less than half inside a crop is dropped: the tiled Detector drops such partials where a neighbouring
# tile holds the object whole, so the model learns to answer the objects a tile holds mostly.
MIN_INSIDE = 0.5


def box_augmenter(seed: int | None = None, vertical_flip: float = 0.0):
    """(uint8 pixels, (M, 4) ratio boxes [left, top, width, height], (M,) class ids) -> the same, augmented.
    vertical_flip: its chance (with the horizontal flip, a half turn: an upside-down cassette)."""
    import albumentations as A
    import cv2

    compose = A.Compose(
        [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=vertical_flip),
         A.Affine(scale=(0.75, 1.25), translate_percent=(-0.1, 0.1), border_mode=cv2.BORDER_CONSTANT, fill=0, p=0.7),
         A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.5),
         A.Blur(blur_limit=(3, 3), p=0.1)],
        # "albumentations" = [x_min, y_min, x_max, y_max] as ratios; a box keeping under a quarter of its area
        # (or under 2 px a side) after scaling and translation is dropped: its object has left the image.
        bbox_params=A.BboxParams(format="albumentations", label_fields=["class_ids"], min_visibility=0.25,
                                 min_width=2, min_height=2, clip=True),
        seed=seed)

    def augment(pixels: np.ndarray, boxes: np.ndarray, class_ids: np.ndarray):
        corners = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)
        squeeze = pixels.ndim == 3 and pixels.shape[2] == 1
        result = compose(image=pixels[:, :, 0] if squeeze else pixels, bboxes=corners, class_ids=class_ids)
        image = result["image"][:, :, None] if squeeze else result["image"]
        out = np.asarray(result["bboxes"], np.float32).reshape(-1, 4)
        return image, np.concatenate([out[:, :2], out[:, 2:] - out[:, :2]], axis=1), \
            np.asarray(result["class_ids"], np.int64)

    return augment


def gaussian_radius(height: float, width: float, min_overlap: float = MIN_OVERLAP) -> float:
    """CenterNet's splat radius (cells) for a box of height x width cells: the smallest of its three cases
    (both corners inside, both outside, one of each), each the root of a quadratic in the corner shift."""
    b1 = height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1 ** 2 - 4 * c1)) / 2
    b2 = 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + math.sqrt(b2 ** 2 - 16 * c2)) / 2
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def centernet_targets(boxes: np.ndarray, class_ids: np.ndarray, num_classes: int, h: int, w: int):
    """(M, 4) ratio boxes + class ids -> heatmap (h, w, C), size (h, w, 3) = [w, h, mask] and
    offset (h, w, 3) = [dx, dy, mask] on an h x w grid."""
    heatmap = np.zeros((h, w, num_classes), np.float32)
    size = np.zeros((h, w, 3), np.float32)
    offset = np.zeros((h, w, 3), np.float32)
    for (left, top, bw, bh), c in zip(boxes, class_ids):
        cx, cy = (left + bw / 2) * w, (top + bh / 2) * h  # in cells
        ix, iy = min(int(cx), w - 1), min(int(cy), h - 1)
        radius = max(0, int(gaussian_radius(bh * h, bw * w)))
        _splat(heatmap[:, :, c], ix, iy, radius)
        size[iy, ix] = (bw, bh, 1.0)
        offset[iy, ix] = (cx - ix, cy - iy, 1.0)
    return heatmap, size, offset


def _splat(channel: np.ndarray, x: int, y: int, radius: int) -> None:
    """Max of the channel and a gaussian (sigma = diameter / 6) peaking at exactly 1.0 on (y, x)."""
    sigma = (2 * radius + 1) / 6
    offsets = np.arange(-radius, radius + 1)
    g = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * sigma ** 2))
    g[g < np.finfo(np.float32).eps * g.max()] = 0
    h, w = channel.shape
    top, bottom = min(y, radius), min(h - y, radius + 1)
    left, right = min(x, radius), min(w - x, radius + 1)
    window = channel[y - top:y + bottom, x - left:x + right]
    np.maximum(window, g[radius - top:radius + bottom, radius - left:radius + right], out=window)


class DetectionBatches(ImageBatches):
    """(x, {"heatmap", "size", "offset"}) batches; order, reshuffling and worker threads are ImageBatches'."""

    def __init__(self, cache, samples, labels: list[str], stride: int, batch_size: int = 16, augmenter=None,
                 shuffle: bool = False, seed: int = 0, workers: int = 2):
        """augmenter: seed -> a box_augmenter (one per batch, seeded as ImageBatches seeds its augmenters)."""
        super().__init__(cache, batch_size=batch_size, augmenter=augmenter, shuffle=shuffle, seed=seed,
                         workers=workers)
        self.samples = list(samples)
        self.index = {name: i for i, name in enumerate(labels)}
        self.grid = (cache.spec.height // stride, cache.spec.width // stride)
        self.ratios: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def boxes_of(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Sample i's boxes as (M, 4) ratios of the image, clipped to it, and their class ids (computed once)."""
        if i not in self.ratios:
            sample = self.samples[i]
            boxes, ids = [], []
            if sample.boxes:
                width, height = displayed_size(sample.path)
                for box in sample.boxes:
                    if box.label not in self.index:
                        raise UserError(f"{sample.path}: box label {box.label!r} is not one of the run's labels "
                                        f"{list(self.index)}")
                    ratios = clip_ratios(to_ratios(box, width, height))
                    if ratios[2] > 0 and ratios[3] > 0:
                        boxes.append(ratios)
                        ids.append(self.index[box.label])
            self.ratios[i] = np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(ids, np.int64)
        return self.ratios[i]

    def sample(self, row: int, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sample `row` of the order: (uint8 pixels, (M, 4) ratio boxes, class ids); rng: the batch's own."""
        return (self.cache[row], *self.boxes_of(row))

    def __getitem__(self, index: int):
        rows = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        # a tiled run's crops: drawn from (seed, epoch, batch) alone, a stream apart from the augmenter's
        rng = np.random.default_rng([self.seed, self.epoch, index, 1])
        pixels, targets = [], []
        augment = self.augment_for(index)
        for i in rows:
            image, boxes, ids = self.sample(int(i), rng)
            if augment is not None:
                image, boxes, ids = augment(image, boxes, ids)
            pixels.append(image)
            targets.append(centernet_targets(boxes, ids, len(self.index), *self.grid))
        x = normalise(np.stack(pixels), self.cache.spec)
        heatmap, size, offset = (np.stack(t) for t in zip(*targets))
        return x, {"heatmap": heatmap, "size": size, "offset": offset}


class ScaledCache:
    """Whole images scaled by spec.tile_scale (uint8, runtime.tiles.scaled_pixels), kept while within max_bytes
    (a 4000 x 3000 RGB frame at scale 1 holds 36 MB); past it an image is decoded and scaled each time."""

    def __init__(self, paths, spec, max_bytes: float, read):
        self.paths, self.spec, self.read = list(paths), spec, read
        self.max_bytes = max_bytes
        self.rows: dict[int, np.ndarray] = {}
        self.nbytes = 0
        self.lock = threading.Lock()

    def __getitem__(self, index: int) -> np.ndarray:
        pixels = self.rows.get(index)
        if pixels is None:
            pixels = scaled_pixels(self.read(self.paths[index]), self.spec)
            with self.lock:
                if index not in self.rows and self.nbytes + pixels.nbytes <= self.max_bytes:
                    self.rows[index] = pixels
                    self.nbytes += pixels.nbytes
        return pixels


class TiledDetectionBatches(DetectionBatches):
    """DetectionBatches over tiles of the scaled images: random crops (shuffle=True, training) or the inference
    grid's tiles (validation). `slots` lists (image, grid tile) per sample; a training crop ignores the tile."""

    def __init__(self, cache, samples, labels: list[str], stride: int, max_bytes: float, batch_size: int = 16,
                 augmenter=None, shuffle: bool = False, seed: int = 0, workers: int = 2):
        spec = cache.spec
        self.scaled = ScaledCache(cache.paths, spec, max_bytes, cache.read)
        self.slots = []
        self.planned = 0  # bytes the scaled images take
        for i, sample in enumerate(samples):
            width, height = displayed_size(sample.path)
            sw, sh = scaled_size(width, height, spec)
            self.planned += sw * sh * spec.channels
            if shuffle:  # as many crops as the scaled frame holds tiles' worth of pixels
                count = max(1, round(sw * sh / (spec.width * spec.height)))
                self.slots += [(i, 0)] * count
            else:
                self.slots += [(i, j) for j in range(len(tile_boxes(width, height, spec)))]
        super().__init__(cache, samples, labels, stride, batch_size=batch_size, augmenter=augmenter, shuffle=shuffle,
                         seed=seed, workers=workers)

    def _epoch_order(self) -> np.ndarray:
        n = len(self.slots)
        return np.random.default_rng([self.seed, self.epoch]).permutation(n) if self.shuffle else np.arange(n)

    def sample(self, slot: int, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One tile: (uint8 tile pixels, its boxes as (M, 4) ratios of the tile, class ids)."""
        i, j = self.slots[slot]
        pixels, (boxes, ids) = self.scaled[i], self.boxes_of(i)
        spec = self.cache.spec
        height, width = pixels.shape[:2]
        px = boxes * np.array([width, height, width, height], np.float32)
        if not self.shuffle:
            left, top = tile_boxes(width, height, dataclasses.replace(spec, tile_scale=1.0))[j][:2]
        else:
            if len(px) and rng.random() < BOX_CROP:  # the chosen box's centre anywhere in the tile
                box = px[rng.integers(len(px))]
                left = box[0] + box[2] / 2 - rng.uniform(0, spec.width)
                top = box[1] + box[3] / 2 - rng.uniform(0, spec.height)
            else:
                left, top = rng.uniform(0, width - spec.width), rng.uniform(0, height - spec.height)
            # inside the image (or at its origin when the image is smaller than a tile)
            left = int(round(max(0, min(left, width - spec.width))))
            top = int(round(max(0, min(top, height - spec.height))))
        x0 = np.clip(px[:, 0], left, left + spec.width)
        y0 = np.clip(px[:, 1], top, top + spec.height)
        x1 = np.clip(px[:, 0] + px[:, 2], left, left + spec.width)
        y1 = np.clip(px[:, 1] + px[:, 3], top, top + spec.height)
        inside = (x1 - x0) * (y1 - y0) >= MIN_INSIDE * px[:, 2] * px[:, 3]
        kept = np.stack([x0 - left, y0 - top, x1 - x0, y1 - y0], axis=1)[inside]
        kept /= np.array([spec.width, spec.height, spec.width, spec.height], np.float32)
        return crop(pixels, left, top, spec.width, spec.height), kept.astype(np.float32), ids[inside]


def detection_batches(config, split, labels: list[str], caches, augmenter):
    """(train, val) batches of images + CenterNet targets; training batches augment image and boxes together.

    `augmenter` is the config's image-only one (augment.preset / augment.transforms): it would move pixels
    without their boxes, so a detection run refuses one; detection's own box-aware transforms always apply.
    """
    if augmenter is not None:
        raise UserError("augment.preset / augment.transforms: a detection run augments image and boxes together "
                        "with its own transforms (flip, scale, translate, colour, blur); set augment.preset: none "
                        "and leave augment.transforms empty")
    t = config.train
    train_cache, val_cache = caches
    boxes = sum(len(s.boxes) for s in split.train)
    negatives = sum(not s.boxes for s in split.train)
    log.info("labels %s; train %d images (%d boxes, %d without boxes), val %d, test %d", labels, len(split.train),
             boxes, negatives, len(split.val), len(split.test))
    stride = config.model.stride
    augmenter = functools.partial(box_augmenter, vertical_flip=config.augment.vertical_flip)
    if train_cache.spec.tile_scale is not None:
        budget = config.data.cache_max_gb * 1e9
        train = TiledDetectionBatches(train_cache, split.train, labels, stride, budget, t.batch_size,
                                      augmenter=augmenter, shuffle=True, seed=config.seed, workers=t.workers)
        val = TiledDetectionBatches(val_cache, split.val, labels, stride, budget - min(budget, train.planned),
                                    t.batch_size, workers=t.workers)
        log.info("tiles: images scaled by %g into %dx%d tiles; %d training crops an epoch (%d%% around a box), "
                 "%d validation tiles", train_cache.spec.tile_scale, train_cache.spec.width,
                 train_cache.spec.height, len(train.slots), round(BOX_CROP * 100), len(val.slots))
        return train, val
    return (DetectionBatches(train_cache, split.train, labels, stride, t.batch_size, augmenter=augmenter,
                             shuffle=True, seed=config.seed, workers=t.workers),
            DetectionBatches(val_cache, split.val, labels, stride, t.batch_size, workers=t.workers))
