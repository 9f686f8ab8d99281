"""Dice and IoU for lung masks, and the BCE + Dice training loss; mask value 127 means "ignore".

Masks on disk: 255 = lung, 0 = background, 127 = ignore (rare: a region the annotator left open).
Ignored pixels count in neither the metrics nor the loss. The numpy functions score predictions;
`bce_dice_loss` is backend-agnostic (keras.ops), for training under TensorFlow or JAX.
"""

from __future__ import annotations

import numpy as np

IGNORE = 127


def _valid_and_truth(truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    truth = np.asarray(truth)
    return truth != IGNORE, truth > IGNORE


def dice_iou(predicted, truth, threshold: float = 0.5) -> tuple[float, float]:
    """Mean per-image Dice and IoU. predicted: probabilities or 0/1 (N, H, W) or (H, W); truth: 0/127/255."""
    predicted = np.asarray(predicted, dtype=np.float64)
    truth = np.asarray(truth)
    if predicted.shape != truth.shape:
        raise ValueError(f"prediction shape {predicted.shape} differs from mask shape {truth.shape}")
    if predicted.ndim == 2:
        predicted, truth = predicted[None], truth[None]
    dices, ious = [], []
    for p, t in zip(predicted, truth):
        valid, positive = _valid_and_truth(t)
        guess = (p >= threshold) & valid
        positive &= valid
        inter = np.logical_and(guess, positive).sum()
        total = guess.sum() + positive.sum()
        union = np.logical_or(guess, positive).sum()
        dices.append(1.0 if total == 0 else 2 * inter / total)  # both empty: a perfect answer
        ious.append(1.0 if union == 0 else inter / union)
    return float(np.mean(dices)), float(np.mean(ious))


def mask_target(mask: np.ndarray) -> np.ndarray:
    """uint8 0/127/255 mask -> float32 target: 1 lung, 0 background, 0.5 ignore (what the loss expects)."""
    mask = np.asarray(mask)
    return np.where(mask == IGNORE, 0.5, (mask > IGNORE).astype(np.float32)).astype(np.float32)


def bce_dice_loss(y_true, y_pred, smooth: float = 1.0):
    """Binary cross-entropy + (1 - soft Dice), both over non-ignored pixels (target 0.5 = ignore)."""
    from keras import ops

    valid = ops.cast(ops.abs(y_true - 0.5) > 0.25, y_pred.dtype)
    eps = 1e-7
    p = ops.clip(y_pred, eps, 1 - eps)
    bce = -(y_true * ops.log(p) + (1 - y_true) * ops.log(1 - p))
    bce = ops.sum(bce * valid) / ops.maximum(ops.sum(valid), 1.0)
    inter = ops.sum(y_pred * y_true * valid)
    total = ops.sum(y_pred * valid) + ops.sum(y_true * valid)
    return bce + 1 - (2 * inter + smooth) / (total + smooth)


def _hard_overlap(y_true, y_pred):
    from keras import ops

    valid = ops.cast(ops.abs(y_true - 0.5) > 0.25, y_pred.dtype)
    guess = ops.cast(y_pred >= 0.5, y_pred.dtype) * valid
    truth = ops.cast(y_true > 0.5, y_pred.dtype) * valid
    axes = tuple(range(1, len(y_pred.shape)))
    inter = ops.sum(guess * truth, axis=axes)
    return inter, ops.sum(guess, axis=axes), ops.sum(truth, axis=axes)


def dice_coefficient(y_true, y_pred):
    """Per-image Dice of the thresholded prediction (keras.ops; Keras averages it over images)."""
    from keras import ops

    inter, guess, truth = _hard_overlap(y_true, y_pred)
    total = guess + truth
    return ops.where(total > 0, 2 * inter / ops.maximum(total, 1.0), 1.0)


def iou_coefficient(y_true, y_pred):
    """Per-image IoU of the thresholded prediction (keras.ops)."""
    from keras import ops

    inter, guess, truth = _hard_overlap(y_true, y_pred)
    union = guess + truth - inter
    return ops.where(union > 0, inter / ops.maximum(union, 1.0), 1.0)


def keras_objects() -> dict:
    """The loss and metrics a U-Net checkpoint was compiled with, for keras.saving.load_model."""
    return {"bce_dice_loss": bce_dice_loss, "dice_coefficient": dice_coefficient, "iou_coefficient": iou_coefficient}
