"""Training losses and Keras metrics per task (backend-agnostic keras.ops), for compile and for loading.

Segmentation: BCE + Dice loss and Dice/IoU metrics over non-ignored pixels (target 0.5 = mask value 127,
see data.masks.mask_target). Classification: crossentropy or focal loss, accuracy and AUC.
`compile_objectives(task, train_config)` is what the fit loop compiles with; `keras_objects()` is what
`load_model` needs to read a checkpoint back.

The segmentation and detection losses normalise over the whole batch (valid pixels, objects), so Keras' sample
weights, which it multiplies into a per-sample loss after the fact, cannot reach them: `row_weighted(fn)` hands
them the weights (train/distribute.py gives padded rows weight 0, which must leave no trace in the loss).
"""

from __future__ import annotations

import functools


def per_row(mask, rows):
    """mask weighed by `rows`, one weight per row of the batch (None: mask as it is)."""
    from keras import ops

    if rows is None:
        return mask
    return mask * ops.reshape(ops.cast(rows, mask.dtype), (-1,) + (1,) * (len(mask.shape) - 1))


def bce_dice_loss(y_true, y_pred, smooth: float = 1.0, rows=None):
    """Binary cross-entropy + (1 - soft Dice), both over non-ignored pixels (target 0.5 = ignore).
    rows: a weight per image (see row_weighted); None weighs each image 1."""
    from keras import ops

    valid = per_row(ops.cast(ops.abs(y_true - 0.5) > 0.25, y_pred.dtype), rows)
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


@functools.cache
def _row_weighted_class():
    import keras

    @keras.saving.register_keras_serializable(package="edgelabels")
    class RowWeightedLoss(keras.losses.Loss):
        """A loss function that reduces over the whole batch, given Keras' sample weights (one per row) itself.

        With weights w: mean(w) * fn over the rows weighed w / max(w). A row of weight 0 then counts nowhere (not
        in the valid pixels, nor in the objects); equal weights give fn's value times that weight, as Keras'
        per-sample losses do; no weights give fn's value unchanged."""

        def __init__(self, fn, reduction="sum_over_batch_size", name=None, dtype=None):
            super().__init__(name=name or fn.__name__, reduction=reduction, dtype=dtype)
            self.fn = fn
            self.__name__ = fn.__name__  # it stands for fn: a compiled model's loss reads as fn's name

        def call(self, y_true, y_pred):
            return self.fn(y_true, y_pred)

        def __call__(self, y_true, y_pred, sample_weight=None):
            if sample_weight is None:
                return super().__call__(y_true, y_pred)
            from keras import ops

            y_true, y_pred = (ops.convert_to_tensor(y, self.dtype) for y in (y_true, y_pred))
            weight = ops.reshape(ops.convert_to_tensor(sample_weight, self.dtype), (-1,))
            rows = weight / ops.maximum(ops.max(weight), 1e-12)
            return ops.mean(weight) * self.fn(y_true, y_pred, rows=rows)

        def get_config(self):
            return {**super().get_config(), "fn": keras.saving.serialize_keras_object(self.fn)}

        @classmethod
        def from_config(cls, config):
            return cls(**{**config, "fn": keras.saving.deserialize_keras_object(config["fn"])})

    return RowWeightedLoss


def row_weighted(fn):
    """fn (y_true, y_pred, rows=None) -> one batch value, as a Keras loss that honours sample weights."""
    return _row_weighted_class()(fn)


def keras_objects() -> dict:
    """The loss and metrics a U-Net checkpoint was compiled with, for keras.saving.load_model (the bare
    bce_dice_loss for checkpoints written before it was compiled through row_weighted)."""
    return {"bce_dice_loss": bce_dice_loss, "RowWeightedLoss": _row_weighted_class(),
            "dice_coefficient": dice_coefficient, "iou_coefficient": iou_coefficient}


def classification_objectives(train) -> dict:
    """compile() arguments for a classifier; train: the config's TrainConfig."""
    import keras

    if train.loss == "focal":
        loss = keras.losses.CategoricalFocalCrossentropy(gamma=train.focal_gamma, label_smoothing=train.label_smoothing)
    else:
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=train.label_smoothing)
    return {"loss": loss, "metrics": [keras.metrics.CategoricalAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")],
            "weighted_metrics": []}


def segmentation_objectives(train) -> dict:
    """compile() arguments for a U-Net: BCE + Dice loss, Dice and IoU metrics (val_dice can be monitored)."""
    import keras

    return {"loss": row_weighted(bce_dice_loss),
            "metrics": [keras.metrics.MeanMetricWrapper(dice_coefficient, name="dice"),
                        keras.metrics.MeanMetricWrapper(iou_coefficient, name="iou")]}
