"""`create_model(config, num_classes)`: the one way a model is made, and `load_model` the one way it is read back.

Like timm's create_model: the task table names the builder (classifier or U-Net, from the backbone
registry), then `model.weights` decides the start: imagenet | none | a no-top file | run:RUN_DIR (the
backbone of an earlier run, copied layer by layer: in-domain transfer).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edgelabels.artifacts import RunDir
from edgelabels.errors import UserError
from edgelabels.tasks import get_task

log = logging.getLogger("edgelabels.train")


def create_model(config, num_classes: int):
    """A fresh model for `config` (a Config): its task's builder, then `run:` weights if asked."""
    weights = config.model.weights
    from_run = weights.startswith("run:")
    model = get_task(config.task).piece("model")(config, num_classes, None if from_run else weights)
    if from_run:
        copy_backbone_from_run(model, Path(weights[4:]), config.model.backbone)
    return model


def classifier(config, num_classes: int, weights):
    from edgelabels.models.classifier import build_classifier

    m = config.model
    return build_classifier(m.backbone, num_classes, *config.image_hw, weights=weights, dropout=m.dropout,
                            dense_units=m.dense_units, pooling=m.pooling)


def multilabel_classifier(config, num_classes: int, weights):
    """The classifier with a sigmoid head: one independent confidence per label (task multilabel)."""
    from edgelabels.models.classifier import build_classifier

    m = config.model
    return build_classifier(m.backbone, num_classes, *config.image_hw, weights=weights, dropout=m.dropout,
                            dense_units=m.dense_units, pooling=m.pooling, activation="sigmoid")


def unet(config, num_classes: int, weights):
    """A U-Net from the chosen provider: ours (backend-agnostic) or segmentation-models (TensorFlow only)."""
    if config.model.implementation == "segmentation-models":
        from edgelabels.models.sm_unet import build_sm_unet

        return build_sm_unet(config.model.backbone, *config.image_hw, weights=weights)
    from edgelabels.models.unet import build_unet

    return build_unet(config.model.backbone, *config.image_hw, weights=weights)


def detector(config, num_classes: int, weights):
    """A centre-heatmap detector (models/detector.py) on the configured backbone."""
    from edgelabels.models.detector import build_detector

    m = config.model
    return build_detector(m.backbone, num_classes, *config.image_hw, weights=weights, stride=m.stride)


def load_model(path: str | Path, compile: bool = False):
    """A model.keras (or checkpoint) of any run: classifier, our U-Net, a segmentation-models U-Net or a detector."""
    import keras

    from edgelabels.models import detection_losses, detector, multilabel
    from edgelabels.models.losses import keras_objects
    from edgelabels.models.sm_unet import custom_objects  # keras-only stand-ins; sm itself is not imported

    return keras.saving.load_model(path, compile=compile, custom_objects={
        **keras_objects(), **custom_objects(), **detection_losses.keras_objects(), **detector.keras_objects(),
        **multilabel.keras_objects()})


def keras_runner(model):
    """x (N, H, W, C) -> outputs as numpy, inference mode: a Keras model for runtime.runner's loops."""
    return lambda x: np.asarray(model.predict_on_batch(np.ascontiguousarray(x, np.float32)), np.float32)


def copy_backbone_from_run(model, source_dir: Path, backbone: str) -> int:
    """In-domain transfer: initialise the backbone with the one trained in an earlier run.

    Weights go layer by layer, so a classifier's backbone initialises another classifier or a U-Net's
    encoder (which holds the backbone's layers up to its deepest skip). Layers pair by name when every
    name is found (keras.applications -> segmentation-models' encoder, which lacks the Normalization
    layer), else by graph order: keras.applications names some layers by a session counter
    (EfficientNet's `normalization_3`). Each pair must be the same kind of layer with the same weight
    shapes. Returns layers copied.
    """
    source_run = RunDir(source_dir)
    if not source_run.model_path.is_file():
        raise UserError(f"model.weights: run:{source_dir}: no {RunDir.MODEL} there (train that run first)")
    source_backbone = source_run.backbone
    if source_backbone != backbone:
        raise UserError(f"model.weights: run:{source_dir} trained a {source_backbone} backbone, not {backbone}")
    source = [layer for layer in load_model(source_run.model_path).get_layer("backbone").layers if layer.weights]
    target = [layer for layer in model.get_layer("backbone").layers if layer.weights]
    by_name = {layer.name: layer for layer in source}
    if all(layer.name in by_name for layer in target):
        pairs = [(layer, by_name[layer.name]) for layer in target]  # e.g. keras.applications -> sm's encoder
    elif 0 < len(target) <= len(source):
        pairs = list(zip(target, source))
    else:
        raise UserError(f"model.weights: run:{source_dir}: its backbone has {len(source)} weighted layers, "
                        f"this model's needs {len(target)}")
    for mine, theirs in pairs:
        shapes = [tuple(w.shape) for w in mine.weights], [tuple(w.shape) for w in theirs.weights]
        if type(mine) is not type(theirs) or shapes[0] != shapes[1]:
            raise UserError(f"model.weights: run:{source_dir}: layer {theirs.name} {shapes[1]} does not fit "
                            f"{mine.name} {shapes[0]}")
        mine.set_weights(theirs.get_weights())
    log.info("model.weights: %d backbone layers copied from %s", len(target), source_dir)
    return len(target)
