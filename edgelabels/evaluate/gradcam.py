"""Grad-CAM (Selvaraju et al. 2017): where the model looked, as a heatmap over the image.

The classifier is split at its last convolutional feature map into `features` (image -> map) and
`head` (map -> class scores); the heatmap is the ReLU of the feature channels weighted by the
spatially averaged gradient of the class score. Only that gradient depends on the Keras backend
(tf.GradientTape or jax.grad): it lives in gradients.py; everything here is backend-agnostic Keras
and numpy.

The backbone is usually a nested Functional model ("backbone") whose output is that last feature
map; the search descends into nested models. The class score is taken before the softmax, as in
the paper: a saturated probability (0.9999) has almost no gradient and would give a blank map.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from edgelabels.errors import UserError
from edgelabels.evaluate.gradients import class_gradients


def last_feature_map(model) -> list:
    """Path of layers (outer to inner) to the last layer with a 4-D (N, H, W, C) output."""
    import keras

    for layer in reversed(model.layers):
        if isinstance(layer, keras.layers.InputLayer) or len(layer.output.shape) != 4:
            continue
        if isinstance(layer, keras.Model):
            return [layer, *last_feature_map(layer)]
        return [layer]
    raise UserError(f"Grad-CAM: model {model.name!r} has no convolutional (4-D) feature map")


def split_at_feature_map(model):
    """(features, head): two Functional models with head(features(x)) == the model's scores (pre-softmax)."""
    path = last_feature_map(model)
    names = "/".join(layer.name for layer in path)
    try:
        features, head = _split(model, path, outermost=True)
    except (ValueError, TypeError) as exc:
        raise UserError(f"Grad-CAM: cannot split model {model.name!r} at {names} ({exc})") from None
    if head is None:
        raise UserError(f"Grad-CAM: model {model.name!r} ends at a feature map ({names}), not class scores")
    return features, head


def _split(model, path, outermost: bool):
    import keras

    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    index = next(i for i, layer in enumerate(layers) if layer is path[0])
    before, target, after = layers[:index], layers[index], layers[index + 1:]
    if len(path) == 1 and not after:
        return model, None  # the model's output is the map: use it whole, whatever its topology
    # Replaying layers one after the other is only right for a chain; check_split verifies it.
    inputs = keras.Input(model.inputs[0].shape[1:])
    x = inputs
    for layer in before:
        x = layer(x)
    if len(path) > 1:
        inner_features, inner_head = _split(target, path[1:], outermost=False)
        x = inner_features(x)
    else:
        x, inner_head = target(x), None
    features = keras.Model(inputs, x, name=f"{model.name}_features")
    if inner_head is None and not after:
        return features, None
    head_input = keras.Input(features.outputs[0].shape[1:])
    y = inner_head(head_input) if inner_head is not None else head_input
    for i, layer in enumerate(after):
        last = outermost and i == len(after) - 1
        y = _without_softmax(layer)(y) if last else layer(y)
    return features, keras.Model(head_input, y, name=f"{model.name}_head")


def _without_softmax(layer):
    """A copy of a softmax Dense layer that outputs its logits (same weights); other layers unchanged."""
    import keras

    if not (isinstance(layer, keras.layers.Dense) and layer.get_config().get("activation") == "softmax"):
        return layer
    linear = keras.layers.Dense.from_config({**layer.get_config(), "activation": "linear", "name": "class_scores"})
    linear.build(layer.input.shape)
    linear.set_weights(layer.get_weights())
    return linear


def check_split(model, features, head, x: np.ndarray) -> None:
    """head(features(x)) must reproduce the model's probabilities, or the heatmaps would explain another model."""
    expected = np.asarray(model.predict_on_batch(x))
    scores = np.asarray(head.predict_on_batch(features.predict_on_batch(x)), dtype=np.float64)
    if head.layers[-1].name == "class_scores":  # logits from _without_softmax
        scores = np.exp(scores - scores.max(axis=1, keepdims=True))
        scores /= scores.sum(axis=1, keepdims=True)
    if not np.allclose(scores, expected, atol=1e-3):
        raise UserError(f"Grad-CAM: model {model.name!r} cannot be split at its last feature map "
                        "(its layers do not form a chain)")


def gradcam(model, x: np.ndarray, class_indices, split=None) -> np.ndarray:
    """Heatmaps (N, H, W) in 0-1 at the input's resolution for model inputs x (N, H, W, C)."""
    from PIL import Image

    x = np.asarray(x, dtype=np.float32)
    features, head = split or split_at_feature_map(model)
    maps = np.asarray(features.predict_on_batch(x), dtype=np.float32)
    grads = class_gradients(head, maps, np.asarray(class_indices, dtype=np.int32).reshape(-1))
    weights = grads.mean(axis=(1, 2))  # one weight per channel
    cams = np.maximum((maps * weights[:, None, None, :]).sum(axis=-1), 0)
    height, width = x.shape[1:3]
    out = np.zeros((len(x), height, width), dtype=np.float32)
    for i, cam in enumerate(cams):
        top = cam.max()
        cam = cam / top if top > 0 else cam
        out[i] = np.asarray(Image.fromarray(cam.astype(np.float32), mode="F").resize((width, height),
                                                                                    Image.Resampling.BILINEAR))
    return np.clip(out, 0, 1)


def overlay(pixels: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """uint8 RGB image with the heatmap (0-1, same H x W) blended on top in the 'jet' colours."""
    from matplotlib import colormaps

    rgb = pixels if pixels.shape[-1] == 3 else np.repeat(pixels[..., :1], 3, axis=-1)
    colour = colormaps["jet"](heatmap)[..., :3] * 255
    return np.clip((1 - alpha) * rgb + alpha * colour, 0, 255).astype(np.uint8)


def write_gallery(folder: str | Path, model, spec, paths, y_true, probs, labels: list[str], per_kind: int = 4,
                  seed: int = 0, display: int = 224, read=None) -> list[dict]:
    """Grad-CAM panels (image | overlay) for the most confident wrong and a random sample of right predictions.

    read: path -> PIL image as the model saw it (a lung-chained run blanks everything but the lungs).
    """
    from PIL import Image

    from edgelabels.data.images import read_image
    from edgelabels.data.preprocess import normalise, to_pixels

    probs = np.asarray(probs)
    predicted = probs.argmax(axis=1)
    confidence = probs.max(axis=1)
    # An image with no answer (a row of zeros: its crop stage found nothing) has nothing the model saw.
    wrong = [int(i) for i in np.argsort(-confidence) if predicted[i] != y_true[i] and confidence[i] > 0][:per_kind]
    right = [int(i) for i in np.flatnonzero(predicted == np.asarray(y_true))]
    right = sorted(random.Random(seed).sample(right, min(per_kind, len(right))))
    chosen = [(i, "wrong") for i in wrong] + [(i, "right") for i in right]
    if not chosen:
        return []
    read = read or (lambda path: read_image(path)[0])
    pixels = np.stack([to_pixels(read(paths[i]), spec) for i, _ in chosen])
    x = normalise(pixels, spec)
    split = split_at_feature_map(model)
    check_split(model, *split, x[:1])
    heatmaps = gradcam(model, x, predicted[[i for i, _ in chosen]], split=split)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for n, ((i, kind), image, heatmap) in enumerate(zip(chosen, pixels, heatmaps), start=1):
        rgb = image if image.shape[-1] == 3 else np.repeat(image, 3, axis=-1)
        panel = np.concatenate([rgb, overlay(rgb, heatmap)], axis=1)
        scale = max(1, round(display / rgb.shape[0]))
        picture = Image.fromarray(panel).resize((panel.shape[1] * scale, panel.shape[0] * scale),
                                                Image.Resampling.BILINEAR)
        name = f"{n:02d}_{kind}.png"
        picture.save(folder / name)
        items.append({"file": f"{folder.name}/{name}", "path": str(paths[i]), "kind": kind,
                      "true_label": labels[int(y_true[i])], "predicted_label": labels[int(predicted[i])],
                      "confidence": float(confidence[i])})
    return items
