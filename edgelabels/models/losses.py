"""Training losses and Keras metrics per task (backend-agnostic keras.ops), for compile and for loading.

Segmentation: BCE + Dice loss and Dice/IoU metrics over non-ignored pixels (target 0.5 = mask value 127,
see data.masks.mask_target). Classification: crossentropy or focal loss, accuracy and AUC.
`compile_objectives(task, train_config)` is what the fit loop compiles with; `keras_objects()` is what
`load_model` needs to read a checkpoint back.
"""

from __future__ import annotations


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

    return {"loss": bce_dice_loss,
            "metrics": [keras.metrics.MeanMetricWrapper(dice_coefficient, name="dice"),
                        keras.metrics.MeanMetricWrapper(iou_coefficient, name="iou")]}
