"""The detector's losses (CenterNet's), backend-agnostic keras.ops, one per output of models/detector.py.

- heatmap: penalty-reduced pixel-wise focal loss (alpha 2, beta 4), summed over the batch and divided by
  the number of objects (cells whose target is exactly 1: the loader puts 1.0 at each centre);
- size, offset: L1 at object centres only. Their targets carry the centre mask as a last channel
  ([w, h, mask] and [dx, dy, mask], built by train/detection_loader.py), because a Keras loss sees only
  its own output's target; the sum is divided by the number of masked values (CenterNet's RegL1Loss).
Each loss returns one number for the whole batch (Keras' mean over a scalar is that scalar); compiled through
models.losses.row_weighted, each takes Keras' sample weights as a weight per image (`rows`), so that a padded
row of weight 0 is neither a pixel nor an object of the batch (train/distribute.py).
"""

from __future__ import annotations

import functools

from edgelabels.models.losses import per_row, row_weighted

# CenterNet weighs size 0.1 with sizes in output cells; ours are ratios of the input (cells / 80 on a
# 320-wide, stride-4 map), so the same balance needs ~8. Measured on the tiny test (tinycnn, 64 px, 15 epochs):
# weight 5 found 7 of 22 squares at IoU > 0.5 (boxes too small), 10 found 17, 20 found 21 with weaker peaks
# (before the heads' small initial kernels; with them, 10 finds 20).
LOSS_WEIGHTS = {"heatmap": 1.0, "size": 5.0, "offset": 1.0}
ALPHA, BETA = 2.0, 4.0
_EPS = 1e-4  # CenterNet clamps the sigmoid to [1e-4, 1 - 1e-4] before the log


def heatmap_focal_loss(y_true, y_pred, rows=None):
    """CenterNet's focal loss: -(sum over positives of (1-p)^a log p + over the rest of (1-y)^b p^a log(1-p)) / N.
    rows: a weight per image (models.losses.row_weighted); None weighs each image 1."""
    from keras import ops

    p = ops.clip(y_pred, _EPS, 1 - _EPS)
    hit = ops.cast(ops.equal(y_true, 1.0), p.dtype)
    positive, negative = per_row(hit, rows), per_row(1 - hit, rows)
    positive_loss = ops.log(p) * ops.power(1 - p, ALPHA) * positive
    negative_loss = ops.log(1 - p) * ops.power(p, ALPHA) * ops.power(1 - y_true, BETA) * negative
    objects = ops.sum(positive)
    return -(ops.sum(positive_loss) + ops.sum(negative_loss)) / ops.maximum(objects, 1.0)


def centre_l1_loss(y_true, y_pred, rows=None):
    """Mean |prediction - target| over the centre cells (y_true's last channel is the mask); 0 with no object."""
    from keras import ops

    mask = per_row(y_true[..., -1:], rows)
    masked = ops.abs(y_pred - y_true[..., :-1]) * mask
    return ops.sum(masked) / (ops.sum(mask) * y_pred.shape[-1] + 1e-4)


def size_relative_l1_loss(y_true, y_pred, rows=None):
    """Mean |prediction - target| / target over the centre cells: a 2-px error on a 12-px window weighs what a
    10-px error on a 60-px cassette does (plain L1 on ratios lets the large boxes drown the small ones)."""
    from keras import ops

    mask = per_row(y_true[..., -1:], rows)
    target = y_true[..., :-1]
    masked = ops.abs(y_pred - target) / ops.maximum(target, 1e-3) * mask
    return ops.sum(masked) / (ops.sum(mask) * y_pred.shape[-1] + 1e-4)


@functools.cache
def _registered():
    # Registered so that a checkpoint compiled with them (--resume loads last.keras compiled) reads back.
    import keras

    register = keras.saving.register_keras_serializable(package="edgelabels")
    return {"heatmap_focal_loss": register(heatmap_focal_loss), "centre_l1_loss": register(centre_l1_loss),
            "size_relative_l1_loss": register(size_relative_l1_loss)}


def keras_objects() -> dict:
    """The losses a detector checkpoint was compiled with, for keras.saving.load_model."""
    return dict(_registered())


def detection_objectives(train) -> dict:
    """compile() arguments for a detector (train: the config's TrainConfig; nothing in it changes them yet)."""
    losses = _registered()
    return {"loss": {"heatmap": row_weighted(losses["heatmap_focal_loss"]),
                     "size": row_weighted(losses["size_relative_l1_loss"]),
                     "offset": row_weighted(losses["centre_l1_loss"])},
            "loss_weights": dict(LOSS_WEIGHTS)}
