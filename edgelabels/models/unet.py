"""U-Net whose encoder is any registered backbone; the decoder is ours, backend-agnostic Keras.

Skip connections are found by output stride (the deepest layer at strides 1, 2, 4, 8, 16 and the
bottleneck at the deepest stride), never by layer name: keras.applications names some layers by a
global counter (MobileNetV3's `activation_11`), which changes from one session to the next.
"""

from __future__ import annotations

from edgelabels.errors import UserError
from edgelabels.models.backbones import BN_MOMENTUM, build_backbone, get_backbone


def encoder_taps(backbone, height: int, width: int) -> list[str]:
    """Layer names, shallow to deep: the deepest layer at each power-of-two stride up to the bottleneck."""
    deepest: dict[int, str] = {}
    for layer in backbone.layers:
        shape = getattr(layer.output, "shape", None)
        if shape is None or len(shape) != 4 or not shape[1] or not shape[2]:
            continue
        stride = height // shape[1]
        # Exact strides only: padding layers (odd sizes) and squeeze-excite maps (1x1) do not qualify.
        if shape[1] * stride == height and shape[2] * stride == width and stride & (stride - 1) == 0 \
                and stride <= 32 and shape[1] > 1:
            deepest[stride] = layer.name
    return [deepest[s] for s in sorted(deepest)]


def build_unet(backbone: str, height: int, width: int, *, weights=None,
               decoder_filters: tuple[int, ...] = (256, 128, 64, 32, 16)):
    """Input (H, W, 3) normalised as the backbone's spec says -> (H, W, 1) lung probability."""
    import keras
    from keras import layers

    if height % 32 or width % 32:
        raise UserError(f"data.image_size: a U-Net needs sides divisible by 32, got {height}x{width}")
    spec = get_backbone(backbone)
    base = build_backbone(spec, height, width, None if weights in (None, "none") else weights)
    taps = encoder_taps(base, height, width)
    encoder = keras.Model(base.input, [base.get_layer(name).output for name in taps], name="backbone")

    inputs = keras.Input((height, width, 3), name="input")
    features = encoder(inputs)
    features = features if isinstance(features, (list, tuple)) else [features]
    x = features[-1]
    skips = list(reversed(features[:-1]))
    stride = height // x.shape[1]
    # One decoder stage per halving; a shallow encoder (stride 8) takes the last, narrowest stages, so the
    # widest convolutions never run at full resolution.
    stages = stride.bit_length() - 1
    if stages > len(decoder_filters):
        raise UserError(f"model.backbone: {backbone} downsamples more than the decoder can undo")
    for i, filters in enumerate(decoder_filters[len(decoder_filters) - stages:]):
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"decoder{i}_up")(x)
        stride //= 2
        if skips and height // skips[0].shape[1] == stride:
            x = layers.Concatenate(name=f"decoder{i}_concat")([x, skips.pop(0)])
        for j in range(2):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"decoder{i}_conv{j}")(x)
            x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"decoder{i}_bn{j}")(x)
            x = layers.Activation("relu", name=f"decoder{i}_relu{j}")(x)
    outputs = layers.Conv2D(1, 1, activation="sigmoid", name="mask")(x)
    return keras.Model(inputs, outputs, name=f"{backbone}_unet")
