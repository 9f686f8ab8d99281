"""Multi-label batches: images + multi-hot targets (N, K), each label's positives weighted by its rarity.

Order, epoch reshuffling, caching and worker threads are ImageBatches'; only the targets and weights differ.
Weights are (N, K) sample weights, one per image and label (models/multilabel.py keeps the loss per label), so
a label present in 1 image in 10 has its positives count 9 times: the positive weight n_negative / n_positive
(PyTorch's BCEWithLogitsLoss pos_weight) with train.class_weight balanced; {label: weight} sets them by hand.
"""

from __future__ import annotations

import logging

import numpy as np

from edgelabels.data.multilabel import multi_hot
from edgelabels.errors import UserError
from edgelabels.train.loader import ImageBatches

log = logging.getLogger("edgelabels.train")


def positive_weights(class_weight, labels: list[str], y: np.ndarray) -> np.ndarray | None:
    """Per label, the weight of a positive (negatives weigh 1): n_negative / n_positive when balanced."""
    if class_weight == "none":
        return None
    if class_weight == "balanced":
        positives = y.sum(axis=0)
        negatives = len(y) - positives
        # A label with no training positive has nothing to weigh; one present everywhere has no negative.
        return np.where(positives > 0, np.maximum(negatives, 1) / np.maximum(positives, 1), 1.0).astype(np.float32)
    unknown = set(class_weight) - set(labels)
    if unknown:
        raise UserError(f"train.class_weight: unknown labels {sorted(unknown)} (labels: {labels})")
    return np.asarray([float(class_weight.get(name, 1.0)) for name in labels], np.float32)


class MultiHotBatches(ImageBatches):
    """(x, multi-hot y, per-label weights) batches; (x, y) without weights."""

    def __init__(self, cache, targets: np.ndarray, batch_size: int = 32, augmenter=None, pos_weight=None,
                 shuffle: bool = False, seed: int = 0, workers: int = 2):
        super().__init__(cache, batch_size=batch_size, augmenter=augmenter, shuffle=shuffle, seed=seed,
                         workers=workers)
        self.targets = np.asarray(targets, np.float32)
        self.pos_weight = None if pos_weight is None else np.asarray(pos_weight, np.float32)

    def __getitem__(self, index: int):
        (x,) = super().__getitem__(index)
        y = self.targets[self.order[index * self.batch_size:(index + 1) * self.batch_size]]
        if self.pos_weight is None:
            return x, y
        return x, y, 1.0 + (self.pos_weight[None, :] - 1.0) * y


def multilabel_batches(config, split, labels: list[str], caches, augmenter):
    """(train, val) batches of images + multi-hot labels, positives weighted per label (train.class_weight)."""
    t = config.train
    if t.oversample:
        raise UserError("train.oversample draws images per label, which a multi-label image does not have; "
                        "task multilabel weighs each label's positives instead (train.class_weight: balanced)")
    train_cache, val_cache = caches
    y_train, y_val = multi_hot(split.train, labels), multi_hot(split.val, labels)
    weights = positive_weights(t.class_weight, labels, y_train)
    log.info("labels %s; train %d, val %d, test %d images; train positives %s; positive weights %s", labels,
             len(split.train), len(split.val), len(split.test), y_train.sum(axis=0).astype(int).tolist(),
             None if weights is None else np.round(weights, 3).tolist())
    return (MultiHotBatches(train_cache, y_train, t.batch_size, augmenter=augmenter, pos_weight=weights, shuffle=True,
                            seed=config.seed, workers=t.workers),
            MultiHotBatches(val_cache, y_val, t.batch_size, workers=t.workers))
