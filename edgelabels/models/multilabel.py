"""Multi-label classification: a sigmoid head (models/classifier.py) and its loss, metrics and compile arguments.

Each label is its own yes/no question, so the loss is binary cross-entropy (or binary focal loss) per label and
per image, left unreduced as an (N, K) array: the loader's (N, K) sample weights then weigh each label's
positives by the label's rarity (train/multilabel_loader.py), the way PyTorch's BCEWithLogitsLoss pos_weight
does, and Keras averages over every image and label.
"""

from __future__ import annotations

import functools

EPS = 1e-7


@functools.cache
def _loss_class():
    # Built on first use (no Keras import, no registration at import time) and registered so that a checkpoint
    # compiled with it (--resume loads last.keras compiled) reads back.
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="edgelabels")
    class MultilabelLoss(keras.losses.Loss):
        """Per image and label: -(y log p + (1 - y) log(1 - p)), times (1 - p_t)^gamma when gamma > 0 (focal)."""

        def __init__(self, gamma: float = 0.0, name: str = "multilabel_loss", **kwargs):
            super().__init__(name=name, **kwargs)
            self.gamma = float(gamma)

        def call(self, y_true, y_pred):
            y_true = ops.cast(y_true, y_pred.dtype)
            p = ops.clip(y_pred, EPS, 1 - EPS)
            loss = -(y_true * ops.log(p) + (1 - y_true) * ops.log(1 - p))
            if self.gamma:
                p_true = y_true * p + (1 - y_true) * (1 - p)
                loss = loss * ops.power(1 - p_true, self.gamma)
            return loss  # (N, K): not averaged over labels, so (N, K) sample weights apply per label

        def get_config(self):
            return {**super().get_config(), "gamma": self.gamma}

    return MultilabelLoss


def multilabel_loss(gamma: float = 0.0):
    return _loss_class()(gamma=gamma)


def keras_objects() -> dict:
    """What a multi-label checkpoint was compiled with, for keras.saving.load_model."""
    return {"MultilabelLoss": _loss_class()}


def multilabel_objectives(train) -> dict:
    """compile() arguments for a multi-label classifier; train: the config's TrainConfig (loss, focal_gamma)."""
    import keras

    if train.label_smoothing:
        from edgelabels.errors import UserError

        raise UserError("train.label_smoothing applies to single-label classification, not to task multilabel")
    gamma = train.focal_gamma if train.loss == "focal" else 0.0
    return {"loss": multilabel_loss(gamma),
            # accuracy: the share of (image, label) answers right at 0.5, i.e. 1 - Hamming loss
            "metrics": [keras.metrics.BinaryAccuracy(name="accuracy"),
                        keras.metrics.AUC(name="auc", multi_label=True)],
            "weighted_metrics": []}
