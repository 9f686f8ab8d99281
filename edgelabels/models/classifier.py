"""Image classifier = registered backbone + pooling/dropout/dense head. One Functional, inference-only graph.

The backbone is a nested model named "backbone", always called with training=False so BatchNorm stays
in inference mode in both stages (keras.io transfer-learning guide). No augmentation layers: augmentation
lives in the loader, so the exported graph is exactly the trained one.
"""

from __future__ import annotations

from edgelabels.models.backbones import build_backbone, get_backbone


def build_classifier(backbone: str, num_classes: int, height: int, width: int, *, weights=None,
                     dropout: float = 0.3, dense_units: int = 0, pooling: str = "avg", activation: str = "softmax"):
    """activation: softmax (one label per image) or sigmoid (each label on its own: task multilabel)."""
    import keras
    from keras import layers

    spec = get_backbone(backbone)
    base = build_backbone(spec, height, width, None if weights in (None, "none") else weights)
    inputs = keras.Input((height, width, 3), name="input")
    x = base(inputs, training=False)
    pool = layers.GlobalMaxPooling2D if pooling == "max" else layers.GlobalAveragePooling2D
    x = pool(name="pool")(x)
    if dense_units:
        x = layers.Dense(dense_units, activation="relu", name="head_dense")(x)
    if dropout:
        x = layers.Dropout(dropout, name="head_dropout")(x)
    outputs = layers.Dense(num_classes, activation=activation, name="probabilities")(x)
    return keras.Model(inputs, outputs, name=f"{backbone}_classifier")


def backbone_of(model):
    """The nested backbone model of a classifier built here."""
    return model.get_layer("backbone")


def freeze_backbone(model) -> None:
    backbone_of(model).trainable = False


def unfreeze_top(model, n_layers: int) -> int:
    """Make the top `n_layers` weighted layers of the backbone trainable (BatchNorm stays frozen).

    n_layers < 0 unfreezes all. Returns how many layers became trainable.
    """
    from keras import layers

    base = backbone_of(model)
    base.trainable = True
    weighted = [layer for layer in base.layers if layer.weights]
    chosen = weighted if n_layers < 0 else weighted[max(0, len(weighted) - n_layers):] if n_layers else []
    chosen_ids = {id(layer) for layer in chosen}
    count = 0
    for layer in base.layers:
        trainable = id(layer) in chosen_ids and not isinstance(layer, layers.BatchNormalization)
        layer.trainable = trainable
        count += trainable
    return count
