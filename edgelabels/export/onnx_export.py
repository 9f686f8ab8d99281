"""Keras -> ONNX with tf2onnx, and the parity check that proves the two give the same answers.

The only TensorFlow-specific code in the project (TensorFlow is imported inside functions).
Traps measured with TF 2.21 / Keras 3.15 / tf2onnx 1.17 / onnxruntime 1.32 (issue 6):
- keras.applications EfficientNet(V2) have a Normalization layer whose mean and variance are
  eager tensors captured by the traced function; Keras' `model.export(format="onnx")` and
  `tf2onnx.convert.from_function` turn them into two extra graph inputs that onnxruntime refuses.
  We replace them with numpy constants first, then convert with `from_keras` and an explicit
  input signature (dynamic batch), which is the path measured to match Keras within 2e-5.
- Augmentation layers make invalid ONNX; they belong in the loader, so a model holding one is refused.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edgelabels.errors import UserError

OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "probabilities"
# Max abs difference in probabilities. Trained or ImageNet-like models measure <= 2e-5, but a deep random
# ResNet50 with re-estimated BatchNorm amplifies float32 rounding ~500x (Keras alone moves 5e-3 for a 1e-5
# input change) and measures 3e-4. Conversion bugs (padding, a lost normalisation) show up at 1e-2 and above.
PARITY_TOLERANCE = 1e-3


def all_layers(model):
    """Every layer, descending into nested models (the classifier's "backbone")."""
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from all_layers(layer)


def check_inference_graph(model, source: str) -> None:
    """Refuse what cannot become a faithful ONNX graph: subclassed models and augmentation layers."""
    if not getattr(model, "inputs", None) or len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UserError(f"{source}: export needs a Functional Keras model with one input and one output")
    augmenting = [layer.name for layer in all_layers(model) if type(layer).__name__.startswith("Random")]
    if augmenting:
        raise UserError(f"{source}: augmentation layers {augmenting} in the model; augmentation belongs in "
                        "the data loader (they make invalid ONNX)")
    shape = tuple(model.inputs[0].shape[1:])
    if len(shape) != 3 or None in shape:
        raise UserError(f"{source}: model input must be (height, width, channels) with known sizes, got {shape}")


def freeze_normalization(model) -> int:
    """Make every Normalization layer's mean/variance numpy constants (see module docstring). Returns count."""
    import keras

    count = 0
    for layer in all_layers(model):
        if isinstance(layer, keras.layers.Normalization) and layer.mean is not None:
            layer.mean = np.asarray(layer.mean)
            layer.variance = np.asarray(layer.variance)
            count += 1
    return count


def keras_to_onnx(model, path: str | Path, source: str = "model", output_name: str = OUTPUT_NAME) -> Path:
    """Write `model` as ONNX: input "input" float32 (N, H, W, C) with dynamic N, output "probabilities"."""
    import onnx
    import tensorflow as tf
    import tf2onnx

    check_inference_graph(model, source)
    freeze_normalization(model)
    signature = [tf.TensorSpec((None, *model.inputs[0].shape[1:]), tf.float32, name=INPUT_NAME)]
    # tf2onnx logs a traceback when one of its graph optimisers gives up (it happens on MobileNetV3's
    # transpose pass) and keeps the unoptimised graph: harmless, and the parity check guards correctness.
    tf2onnx_log = logging.getLogger("tf2onnx")
    level = tf2onnx_log.level
    tf2onnx_log.setLevel(logging.ERROR)
    try:
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=OPSET)
    finally:
        tf2onnx_log.setLevel(level)
    _rename_output(proto, output_name)
    onnx.checker.check_model(proto)
    path = Path(path)
    onnx.save(proto, str(path))
    return path


def _rename_output(proto, name: str) -> None:
    # tf2onnx names the output after the Keras output layer; the contract fixes "probabilities".
    old = proto.graph.output[0].name
    if old == name:
        return
    for node in proto.graph.node:
        node.input[:] = [name if x == old else x for x in node.input]
        node.output[:] = [name if x == old else x for x in node.output]
    proto.graph.output[0].name = name


def parity(reference: np.ndarray, candidate: np.ndarray) -> dict:
    """How closely two (N, K) probability arrays agree, and whether the comparison means anything.

    output_std is the largest per-label standard deviation across images: near 0 means the model
    answers the same for every image (an untrained EfficientNet saturates), so parity would be vacuous.
    """
    return {
        "images": int(len(reference)),
        "max_abs_diff": float(np.max(np.abs(reference - candidate))),
        "top1_agreement": float(np.mean(reference.argmax(1) == candidate.argmax(1))),
        "output_std": float(reference.std(axis=0).max()) if len(reference) > 1 else 0.0,
    }
