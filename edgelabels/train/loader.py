"""Batches for Keras: decode -> resize (cached) -> augment -> normalise, in parallel worker threads.

Decoded, resized uint8 pixels are cached in memory the first time an image is read, so later
epochs cost only augmentation and normalisation. Backend-agnostic (keras.utils.PyDataset).

An epoch's order and each batch's augmentation are drawn from generators seeded with (seed, epoch) and
(seed, epoch, batch) alone: epoch k's batches do not depend on how many epochs this process ran before (a
resumed run draws what the uninterrupted one drew) nor on which worker thread builds which batch first.
"""

from __future__ import annotations

import logging
import math
import threading

import keras
import numpy as np

from edgelabels.data.images import read_image
from edgelabels.data.preprocess import PreprocessSpec, normalise, to_pixels

log = logging.getLogger("edgelabels.train")


class PixelCache:
    """Resized uint8 pixels per image index, filled on first use (thread-safe: one row per image)."""

    def __init__(self, paths, spec: PreprocessSpec, max_bytes: float, read=None):
        """read: path -> PIL image (default: read_image; a chained run passes its keep-the-lungs reader)."""
        self.paths = [str(p) for p in paths]
        self.spec = spec
        self.read = read or _read
        row = spec.height * spec.width * spec.channels
        self.enabled = row * len(self.paths) <= max_bytes
        self.rows = np.zeros((len(self.paths), spec.height, spec.width, spec.channels), np.uint8) \
            if self.enabled else None
        self.filled = np.zeros(len(self.paths), bool)

    @property
    def nbytes(self) -> int:
        """Memory the cache holds (0 when the images did not fit the budget and are decoded each time)."""
        return self.rows.nbytes if self.enabled else 0

    def __getitem__(self, index: int) -> np.ndarray:
        if self.enabled and self.filled[index]:
            return self.rows[index]
        pixels = to_pixels(self.read(self.paths[index]), self.spec)
        if self.enabled:
            self.rows[index] = pixels
            self.filled[index] = True
        return pixels


def _read(path):
    return read_image(path)[0]


class MaskCache:
    """Segmentation targets: uint8 (H, W) masks (0/127/255) at the model's size, read once and kept."""

    def __init__(self, paths, height: int, width: int):
        from edgelabels.data.masks import mask_path_of

        self.paths = [mask_path_of(p) for p in paths]
        self.size = (height, width)
        self.rows: dict[int, np.ndarray] = {}

    def __getitem__(self, index: int) -> np.ndarray:
        from edgelabels.data.masks import read_mask

        if index not in self.rows:
            self.rows[index] = read_mask(self.paths[index], *self.size)
        return self.rows[index]


def batch_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of one batch: a function of (seed, epoch, batch) alone."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


class ImageBatches(keras.utils.PyDataset):
    """(x, one-hot y, sample weight) batches; or x only when `labels` is None (prediction).

    augmenter: seed -> augment callable (data.augment.build_augmenter with its settings bound), or None; each
    batch gets its own, seeded with batch_seed(seed, epoch, index). set_epoch(k) puts the batches at epoch k."""

    def __init__(self, cache: PixelCache, labels=None, num_classes: int = 0, batch_size: int = 32,
                 augmenter=None, class_weights=None, shuffle: bool = False, oversample: bool = False,
                 seed: int = 0, workers: int = 2):
        super().__init__(workers=max(1, workers), use_multiprocessing=False, max_queue_size=max(4, 2 * workers))
        self.cache = cache
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.num_classes = num_classes
        self.batch_size = batch_size
        self.augmenter = augmenter
        self.class_weights = None if class_weights is None else np.asarray(class_weights, np.float32)
        self.shuffle = shuffle
        self.oversample = oversample
        self.seed = seed
        self.lock = threading.Lock()
        self.epoch = 0
        self.order = self._epoch_order()

    def set_epoch(self, epoch: int) -> None:
        with self.lock:
            self.epoch = epoch
            self.order = self._epoch_order()

    def _epoch_order(self) -> np.ndarray:
        n = len(self.cache.paths)
        rng = np.random.default_rng([self.seed, self.epoch])
        if self.oversample and self.labels is not None:
            # Every label drawn equally often; the epoch keeps the dataset's size.
            present = np.unique(self.labels)
            per_label = math.ceil(n / len(present))
            order = np.concatenate([rng.choice(np.flatnonzero(self.labels == c), per_label, replace=True)
                                    for c in present])[:n]
            return rng.permutation(order)
        return rng.permutation(n) if self.shuffle else np.arange(n)

    def __len__(self) -> int:
        return math.ceil(len(self.order) / self.batch_size)

    def augment_for(self, index: int):
        """Batch `index`'s augment callable (None without augmentation)."""
        return None if self.augmenter is None else self.augmenter(batch_seed(self.seed, self.epoch, index))

    def __getitem__(self, index: int):
        rows = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        pixels = [self.cache[int(i)] for i in rows]
        augment = self.augment_for(index)
        if augment is not None:
            pixels = [augment(p) for p in pixels]
        x = normalise(np.stack(pixels), self.cache.spec)
        if self.labels is None:
            return (x,)
        y_index = self.labels[rows]
        y = np.eye(self.num_classes, dtype=np.float32)[y_index]
        if self.class_weights is None:
            return x, y
        return x, y, self.class_weights[y_index]

    def on_epoch_end(self) -> None:
        self.set_epoch(self.epoch + 1)  # the fit loop's callback (train/callbacks.py) also sets it at each start


class MaskBatches(ImageBatches):
    """(x, mask target) batches for a U-Net: image and mask augmented together; target 1 lung, 0 not, 0.5 ignore.

    Order, epoch reshuffling and worker threads are ImageBatches'; only the batch contents differ.
    """

    def __init__(self, cache: PixelCache, masks: MaskCache, batch_size: int = 8, augmenter=None,
                 shuffle: bool = False, seed: int = 0, workers: int = 2):
        super().__init__(cache, batch_size=batch_size, augmenter=augmenter, shuffle=shuffle, seed=seed,
                         workers=workers)
        self.masks = masks

    def __getitem__(self, index: int):
        from edgelabels.data.masks import mask_target

        rows = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        pairs = [(self.cache[int(i)], self.masks[int(i)]) for i in rows]
        augment = self.augment_for(index)
        if augment is not None:
            pairs = [augment(p, m) for p, m in pairs]
        x = normalise(np.stack([p for p, _ in pairs]), self.cache.spec)
        y = np.stack([mask_target(m) for _, m in pairs])[..., None]
        return x, y


# ---------------------------------------------------------------- per task (named in tasks.TASKS)


def class_weights(config, labels: list[str], y: np.ndarray) -> np.ndarray | None:
    """Per-label loss weights: balanced = n / (K * n_label), as scikit-learn computes them."""
    from edgelabels.errors import UserError

    cw = config.train.class_weight
    if cw == "none":
        return None
    if cw == "balanced":
        counts = np.bincount(y, minlength=len(labels)).astype(np.float64)
        present = counts > 0
        weights = np.ones(len(labels))
        weights[present] = len(y) / (present.sum() * counts[present])
        return weights.astype(np.float32)
    unknown = set(cw) - set(labels)
    if unknown:
        raise UserError(f"train.class_weight: unknown labels {sorted(unknown)} (labels: {labels})")
    return np.asarray([float(cw.get(name, 1.0)) for name in labels], np.float32)


def classification_batches(config, split, labels: list[str], caches, augmenter):
    """(train, val) batches of images + one-hot labels, class-weighted and (optionally) oversampled."""
    t = config.train
    train_cache, val_cache = caches
    index = {name: i for i, name in enumerate(labels)}
    y_train = np.array([index[s.label] for s in split.train])
    y_val = np.array([index[s.label] for s in split.val])
    weights = class_weights(config, labels, y_train)
    log.info("labels %s; train %d, val %d, test %d images; train counts %s; class weights %s", labels,
             len(split.train), len(split.val), len(split.test), np.bincount(y_train, minlength=len(labels)).tolist(),
             None if weights is None else np.round(weights, 3).tolist())
    return (ImageBatches(train_cache, y_train, len(labels), t.batch_size, augmenter=augmenter, class_weights=weights,
                         shuffle=True, oversample=t.oversample, seed=config.seed, workers=t.workers),
            ImageBatches(val_cache, y_val, len(labels), t.batch_size, workers=t.workers))


def segmentation_batches(config, split, labels: list[str], caches, augmenter):
    """(train, val) batches of images + mask targets, image and mask augmented together."""
    t = config.train
    train_cache, val_cache = caches
    spec = train_cache.spec
    log.info("train %d, val %d, test %d image/mask pairs", len(split.train), len(split.val), len(split.test))
    return (MaskBatches(train_cache, MaskCache(train_cache.paths, spec.height, spec.width), t.batch_size,
                        augmenter=augmenter, shuffle=True, seed=config.seed, workers=t.workers),
            MaskBatches(val_cache, MaskCache(val_cache.paths, spec.height, spec.width), t.batch_size,
                        workers=t.workers))
