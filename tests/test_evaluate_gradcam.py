"""Grad-CAM on tiny 32 px conv models: nested backbone found, heatmap shape, TensorFlow and JAX agree."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from edgelabels.errors import UserError  # noqa: E402
from edgelabels.evaluate.gradcam import (check_split, gradcam, last_feature_map, split_at_feature_map,  # noqa: E402
                                         write_gallery)
from edgelabels.models.classifier import build_classifier  # noqa: E402


@pytest.fixture(scope="module")
def classifier():
    keras.utils.set_random_seed(0)
    return build_classifier("tinycnn", 3, 32, 32)  # backbone = nested Functional model "backbone"


def spatial_inputs():
    # A bright square on the left half: something spatial to look at.
    x = np.random.default_rng(0).normal(0, 0.2, (3, 32, 32, 3)).astype("float32")
    x[:, 8:20, 2:14] += 1.5
    return x


@pytest.fixture(scope="module")
def inputs():
    return spatial_inputs()


def test_last_feature_map_is_found_inside_the_nested_backbone(classifier):
    path = last_feature_map(classifier)
    assert [layer.name for layer in path] == ["backbone", "block2_relu"]


def test_heatmap_has_the_image_shape_lies_in_0_1_and_is_not_constant(classifier, inputs):
    predicted = classifier.predict_on_batch(inputs).argmax(axis=1)
    heatmaps = gradcam(classifier, inputs, predicted)
    assert heatmaps.shape == (3, 32, 32) and heatmaps.dtype == np.float32
    assert heatmaps.min() >= 0 and heatmaps.max() <= 1
    assert all(h.std() > 1e-3 for h in heatmaps)


def test_split_reproduces_the_model_probabilities(classifier, inputs):
    features, head = split_at_feature_map(classifier)
    check_split(classifier, features, head, inputs)  # raises if head(features(x)) != model(x)
    assert head.layers[-1].name == "class_scores"  # scores before softmax


def test_flat_functional_model_without_nested_backbone_works(inputs):
    keras.utils.set_random_seed(1)
    x_in = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv_a")(x_in)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv_b")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(x_in, keras.layers.Dense(2, activation="softmax")(x))
    assert [layer.name for layer in last_feature_map(model)] == ["conv_b"]
    assert gradcam(model, inputs, [0, 1, 0]).shape == (3, 32, 32)


def test_model_without_a_feature_map_is_a_user_error():
    x_in = keras.Input((4,))
    model = keras.Model(x_in, keras.layers.Dense(2, activation="softmax")(x_in))
    with pytest.raises(UserError, match="no convolutional"):
        last_feature_map(model)


def heatmaps(root):
    """A JAX job (helpers/jax_worker.py): the tiny classifier saved, and its heatmaps once read back under JAX."""
    keras.utils.set_random_seed(0)
    path = root / "model.keras"
    build_classifier("tinycnn", 3, 32, 32).save(path)
    model = keras.saving.load_model(path)
    return {"backend": keras.backend.backend(), "model": str(path),
            "maps": gradcam(model, spatial_inputs(), [0, 1, 2]).tolist()}


@pytest.mark.slow  # runs in the JAX child
def test_jax_backend_gives_the_same_heatmaps_as_tensorflow(request, inputs):
    from helpers.jax_worker import result

    answer = result("test_evaluate_gradcam:heatmaps", 1, request)
    assert answer["backend"] == "jax"
    model = keras.saving.load_model(answer["model"])  # the same weights, under TensorFlow
    np.testing.assert_allclose(np.array(answer["maps"]), gradcam(model, inputs, [0, 1, 2]), atol=2e-3)


def test_gallery_writes_right_and_wrong_panels(tmp_path, classifier):
    from PIL import Image

    from edgelabels.models.backbones import get_backbone

    spec = get_backbone("tinycnn").preprocess_spec(32, 32, grayscale=False)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(6):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    probs = np.tile([0.7, 0.2, 0.1], (6, 1))
    y_true = np.array([0, 0, 0, 1, 2, 1])  # three right, three wrong
    items = write_gallery(tmp_path / "gradcam", classifier, spec, paths, y_true, probs, ["a", "b", "c"], per_kind=2)
    assert [item["kind"] for item in items] == ["wrong", "wrong", "right", "right"]
    for item in items:
        picture = Image.open(tmp_path / item["file"])
        assert picture.size == (448, 224)  # image | overlay, scaled from 32 px to 224
