"""CenterNet-style detector on any registered backbone: centre heatmap + size + offset, decoded in the graph.

Training model: backbone features -> a light neck to the output stride (4 or 8): bilinear upsampling with
the backbone's own skips (found by stride, as the U-Net's `encoder_taps`), or strided convolutions when the
backbone stops short of that stride (tinycnn) -> three heads on the stride-s grid:
  heatmap (num_classes, sigmoid): a peak of 1 at each object's centre cell;
  size (2): the box's width and height as ratios of the input;
  offset (2): the centre's position inside its cell (cells), lost by flooring to the grid.
`inference_model` appends the decoding (CenterNet's: a 3x3 max-pool peak test, then top-K over
cells x classes, no NMS loop), built from MaxPool, Equal, TopK, Gather and arithmetic only, so the ONNX export
returns boxes by itself. `decode_numpy` is the independent numpy reference of that decoding.
Backend-agnostic Keras (keras.ops): it trains under JAX.
"""

from __future__ import annotations

import functools

import numpy as np

from edgelabels.errors import UserError
from edgelabels.models.backbones import BN_MOMENTUM, build_backbone, get_backbone
from edgelabels.models.unet import encoder_taps

OUTPUTS = ("heatmap", "size", "offset")
# CenterNet's heatmap bias: sigmoid(-2.19) = 0.1, so the focal loss of the (mostly empty) map starts small.
HEATMAP_BIAS = -2.19
# Neck widths by the stride they produce; heads get 64 channels (CenterNet's ResNet heads).
NECK_FILTERS = {16: 256, 8: 128, 4: 64, 2: 64}
HEAD_FILTERS = 64


def build_detector(backbone: str, num_classes: int, height: int, width: int, *, weights=None, stride: int = 4):
    """Input (H, W, 3) normalised as the backbone's spec says -> {"heatmap", "size", "offset"} at stride `stride`."""
    import keras
    from keras import layers

    if stride not in (4, 8):
        raise UserError(f"model.stride: must be 4 or 8, not {stride}")
    if height % stride or width % stride:
        raise UserError(f"data.image_size: a stride-{stride} detector needs sides divisible by {stride}, "
                        f"got {height}x{width}")
    spec = get_backbone(backbone)
    base = build_backbone(spec, height, width, None if weights in (None, "none") else weights)
    taps = encoder_taps(base, height, width)
    deepest = height // base.get_layer(taps[-1]).output.shape[1]
    # Only the skips the neck joins (strides between the output's and the deepest) leave the backbone.
    used = [name for name in taps[:-1] if stride <= height // base.get_layer(name).output.shape[1]] + [taps[-1]]
    encoder = keras.Model(base.input, [base.get_layer(name).output for name in used], name="backbone")

    inputs = keras.Input((height, width, 3), name="input")
    # No training=False: a backbone trained from scratch needs its BatchNorm statistics to follow; a frozen
    # one (stage a, or BatchNorm kept frozen by unfreeze_top) runs in inference mode by itself in Keras 3.
    features = encoder(inputs)
    features = list(features) if isinstance(features, (list, tuple)) else [features]
    x = features.pop()
    skips = {height // f.shape[1]: f for f in features}
    at = deepest
    while at > stride:  # up with skips, like the U-Net decoder but one conv per stage
        at //= 2
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"neck_up{at}")(x)
        if at in skips:
            x = layers.Concatenate(name=f"neck_concat{at}")([x, skips[at]])
        x = _conv_bn_relu(x, NECK_FILTERS[at], f"neck{at}")
    while at < stride:  # a shallow backbone (tinycnn stops at stride 2): down with strided convolutions
        at *= 2
        x = _conv_bn_relu(x, NECK_FILTERS[at], f"neck{at}", strides=2)
    heads = {
        "heatmap": _head(x, num_classes, "heatmap", "sigmoid", keras.initializers.Constant(HEATMAP_BIAS)),
        "size": _head(x, 2, "size", None, "zeros"),
        "offset": _head(x, 2, "offset", None, "zeros"),
    }
    return keras.Model(inputs, heads, name=f"{backbone}_detector")


def _conv_bn_relu(x, filters: int, name: str, strides: int = 1):
    from keras import layers

    x = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def _head(x, channels: int, name: str, activation, bias):
    import keras
    from keras import layers

    x = layers.Conv2D(HEAD_FILTERS, 3, padding="same", activation="relu", name=f"{name}_head")(x)
    # CenterNet's small output kernels (std 0.001): the heads start at their bias (heatmap 0.1, sizes 0), not at
    # random boxes whose L1 swamps the first epochs.
    return layers.Conv2D(channels, 1, activation=activation, bias_initializer=bias, name=name,
                         kernel_initializer=keras.initializers.RandomNormal(stddev=0.001))(x)


def inference_model(model, max_detections: int = 100):
    """The training model + decoding: one output "detections" float32 (N, K, 6), rows sorted by score.

    Each row is [left, top, width, height, score, class_id], the box in ratios of the input; rows past the
    real peaks are still there with low (often 0) scores: consumers filter by score.
    """
    import keras

    heads = [model.get_layer(name).output for name in OUTPUTS]
    _, h, w, classes = heads[0].shape
    if max_detections > h * w * classes:
        raise UserError(f"model.max_detections: {max_detections} is more than the {h}x{w} heatmap's "
                        f"{h * w * classes} cells x classes")
    detections = decode_layer()(max_detections, name="detections")(heads)
    # model.input (the one input tensor, as build_detector made it), not model.inputs (a list of it): a model
    # built on a list expects a list when called, and Keras warns "The structure of `inputs` doesn't match" on
    # every call with the image batch (export's parity and latency calls).
    return keras.Model(model.input, detections, name=f"{model.name}_inference")


@functools.cache
def decode_layer():
    """The Keras layer class of the decoding, defined on first use: importing this module imports no Keras."""
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="edgelabels")
    class DetectionDecode(keras.layers.Layer):
        """[heatmap, size, offset] -> (N, K, 6) boxes: 3x3 max-pool peaks, top-K over cells x classes."""

        def __init__(self, max_detections: int = 100, **kwargs):
            super().__init__(**kwargs)
            self.max_detections = int(max_detections)

        def call(self, inputs):
            heatmap, size, offset = inputs
            _, h, w, classes = heatmap.shape
            pooled = ops.max_pool(heatmap, pool_size=3, strides=1, padding="same")
            # A cell is a peak when it equals its neighbourhood's maximum; the rest score 0 (multiply by the
            # mask: ONNX Equal + Cast + Mul), so top-K returns peaks first, ties by lowest index everywhere.
            scores = heatmap * ops.cast(ops.equal(heatmap, pooled), heatmap.dtype)
            scores, index = ops.top_k(ops.reshape(scores, (-1, h * w * classes)), k=self.max_detections)
            cell = index // classes
            class_id = index - cell * classes
            y = cell // w
            x = cell - y * w

            def at(head, channel):  # the head's channel at each chosen cell: (N, K)
                return ops.take_along_axis(ops.reshape(head[..., channel], (-1, h * w)), cell, axis=1)

            cx = (ops.cast(x, "float32") + at(offset, 0)) / w
            cy = (ops.cast(y, "float32") + at(offset, 1)) / h
            box_w, box_h = at(size, 0), at(size, 1)
            return ops.stack([cx - box_w / 2, cy - box_h / 2, box_w, box_h, scores,
                              ops.cast(class_id, "float32")], axis=-1)

        def compute_output_shape(self, input_shapes):
            return (input_shapes[0][0], self.max_detections, 6)

        def get_config(self):
            return {**super().get_config(), "max_detections": self.max_detections}

    return DetectionDecode


def keras_objects() -> dict:
    """What load_model needs to read back a model holding the decoding layer."""
    return {"DetectionDecode": decode_layer()}


def decode_numpy(heatmap, size, offset, max_detections: int) -> np.ndarray:
    """Numpy reference of the graph decoding: (N, h, w, C), (N, h, w, 2), (N, h, w, 2) -> (N, K, 6) float32."""
    heatmap = np.asarray(heatmap, np.float32)
    n, h, w, classes = heatmap.shape
    padded = np.pad(heatmap, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
    neighbourhood = np.max([padded[:, dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)], axis=0)
    scores = np.where(heatmap == neighbourhood, heatmap, 0.0).reshape(n, -1)
    out = np.zeros((n, max_detections, 6), np.float32)
    for i in range(n):
        order = np.argsort(-scores[i], kind="stable")[:max_detections]  # ties: lowest index first
        cell, class_id = np.divmod(order, classes)
        y, x = np.divmod(cell, w)
        box_w, box_h = size[i, y, x, 0], size[i, y, x, 1]
        cx = (x + offset[i, y, x, 0]) / w
        cy = (y + offset[i, y, x, 1]) / h
        out[i] = np.stack([cx - box_w / 2, cy - box_h / 2, box_w, box_h, scores[i, order], class_id], axis=-1)
    return out
