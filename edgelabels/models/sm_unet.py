"""U-Net from the segmentation-models package (qubvel, 1.0.1): a second provider beside unet.py (issue 8).

Same contract as `build_unet`: input "input" (H, W, 3) normalised as our registry's PreprocessSpec for the
backbone says, output (H, W, 1) sigmoid lung probability, the encoder a nested model named "backbone" (so
freeze_backbone, unfreeze_top and run: transfer work unchanged) and sm's decoder a nested model "decoder".
Traps measured with TF 2.21 / Keras 3.15 / segmentation-models 1.0.1 (issue 8):
- sm picks its Keras when first imported, from SM_FRAMEWORK; only "tf.keras" works under Keras 3 (its default
  "keras" fails on keras.utils.generic_utils), and its layers call TensorFlow directly, so JAX is refused.
- sm's encoders take their own input scale (the registry entry's `sm`, an SmEncoder); a fixed Rescaling (and
  a channel flip for resnet50) at the input maps our registry's normalisation onto it, so callers keep one
  PreprocessSpec.
- sm's resnet50 is image-classifiers' MXNet port, not keras.applications' ResNet50: no layer names in common.
- efficientnet's layers save as the function "swish" and the class "FixedDropout": load with custom_objects().
Imports sm and TensorFlow only inside build_sm_unet; nothing happens at import time.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

from edgelabels.errors import UserError
from edgelabels.models.backbones import BACKBONES, BackboneSpec, get_backbone, keras_home


def sm_backbones() -> list[str]:
    """The registry's backbones that segmentation-models has an encoder for."""
    return [name for name, spec in BACKBONES.items() if spec.sm is not None]


def build_sm_unet(backbone: str, height: int, width: int, *, weights=None):
    """Input (H, W, 3) normalised as our registry's spec says -> (H, W, 1) lung probability, built by sm.Unet.

    weights: None/"none", "imagenet" (sm's own files), or a path to a no-top encoder weights file.
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        raise UserError("model.implementation: segmentation-models needs the TensorFlow backend "
                        "(KERAS_BACKEND=tensorflow); use model.implementation: edgelabels under "
                        f"{keras.backend.backend()}")
    spec = get_backbone(backbone)
    if spec.sm is None:
        raise UserError(f"model.backbone: segmentation-models U-Net supports {', '.join(sm_backbones())}, "
                        f"not {backbone!r}")
    if height % 32 or width % 32:
        raise UserError(f"data.image_size: a U-Net needs sides divisible by 32, got {height}x{width}")
    encoder_weights = None if weights in (None, "none") else str(weights)
    if encoder_weights not in (None, "imagenet") and not Path(encoder_weights).is_file():
        raise UserError(f"model.weights: {weights}: no such weights file")

    sm = import_segmentation_models()
    from segmentation_models.backbones.backbones_factory import Backbones

    theirs = spec.sm
    try:
        flat = sm.Unet(backbone, input_shape=(height, width, 3), encoder_weights=encoder_weights)
    except Exception as exc:
        if encoder_weights is None:
            raise
        if encoder_weights == "imagenet" and "fetch failure" in str(exc):
            # Offline: say exactly which file to place where (sm downloads through keras.utils.get_file).
            raise UserError(
                f"model.weights: segmentation-models imagenet weights for {backbone} cannot be downloaded here: "
                f"download {theirs.imagenet_url} and place it at {keras_home() / 'models' / theirs.imagenet_file} "
                "(or set model.weights to none, a local file, or run:RUN_DIR)") from None
        if isinstance(exc, (ValueError, OSError)):
            raise UserError(f"model.weights: cannot load {weights} into the sm {backbone} encoder: "
                            f"{' '.join(str(exc).split())}") from None
        raise

    # sm builds one flat graph. Cut it where its decoder starts (names fixed in sm 1.0.1's unet.py: a
    # "center_block" after VGG's final pooling, else "decoder_stage0"); Keras gives the decoder fresh inputs.
    skips = [flat.get_layer(name).output for name in Backbones.get_feature_layers(backbone, n=4)]
    first = next(layer for layer in flat.layers if layer.name.startswith(("center_block", "decoder_stage")))
    features = [first.input, *skips]
    encoder = keras.Model(flat.input, features, name="backbone")
    decoder = keras.Model(features, flat.output, name="decoder")

    inputs = keras.Input((height, width, 3), name="input")
    outputs = decoder(encoder(_to_sm_input(inputs, spec)))
    return keras.Model(inputs, outputs, name=f"{backbone}_sm_unet")


def import_segmentation_models():
    """The segmentation_models module, imported the one way that works under Keras 3."""
    # sm reads SM_FRAMEWORK once, at its first import; set it (not setdefault: "keras" cannot work here).
    os.environ["SM_FRAMEWORK"] = "tf.keras"
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # it prints its framework choice; our stdout is for results
            import segmentation_models as sm
    except ImportError as exc:
        raise UserError(f"model.implementation: segmentation-models is not usable ({exc}); "
                        "install it with pip install 'edgelabels[sm]'") from None
    return sm


def _to_sm_input(x, ours: BackboneSpec):
    """Undo our registry's normalisation and apply sm's (ours.sm), as fixed layers (none where the two agree)."""
    import numpy as np
    from keras import layers, ops

    theirs = ours.sm
    # Ours: y = (x_ours - m) / s, so x_ours = y * s + m; sm wants (x_theirs - m') / s'.
    mean, std = np.asarray(ours.mean, np.float64), np.asarray(ours.std, np.float64)
    if ours.channel_order != theirs.channel_order:
        x = ops.flip(x, axis=-1)
        mean, std = mean[::-1], std[::-1]
    scale = std / np.asarray(theirs.std)
    offset = (mean - np.asarray(theirs.mean)) / np.asarray(theirs.std)
    if np.allclose(scale, 1.0) and np.allclose(offset, 0.0):
        return x
    return layers.Rescaling(scale.tolist(), offset.tolist(), name="sm_input_scale")(x)


def custom_objects() -> dict:
    """What keras.saving.load_model needs for a saved sm U-Net; imports neither sm nor TensorFlow.

    efficientnet's "swish" is x * sigmoid(x), Keras' swish; its "FixedDropout" is a Keras 2 workaround
    whose only override (_get_noise_shape) Keras 3's Dropout never calls. Both load as the built-ins,
    so a saved model loads without sm installed, under any backend (measured: identical predictions).
    """
    import keras

    return {"swish": keras.activations.swish, "FixedDropout": keras.layers.Dropout}
