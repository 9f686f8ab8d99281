"""The segmentation-models U-Net keeps build_unet's contract: shapes, our registry's normalisation, a nested
"backbone", save/load in a fresh process, ONNX parity, weight copy by name, and refusal under JAX."""

import importlib.util
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from edgelabels.errors import UserError

# The [sm] extra (CI installs it). Not importorskip: a bare `import segmentation_models` fails under Keras 3.
if importlib.util.find_spec("segmentation_models") is None:
    pytest.skip("segmentation-models is not installed (pip install -e '.[sm]')", allow_module_level=True)
keras = pytest.importorskip("keras")
if keras.backend.backend() != "tensorflow":
    pytest.skip("segmentation-models runs only under TensorFlow (its refusal under JAX is tested from TF)",
                allow_module_level=True)

from edgelabels.data.preprocess import normalise  # noqa: E402
from edgelabels.models.backbones import get_backbone  # noqa: E402
from edgelabels.models.sm_unet import build_sm_unet, import_segmentation_models, sm_backbones  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.slow  # every test builds a segmentation-models network (VGG16, ResNet50, EfficientNet graphs)


def pixels(n=2, height=64, width=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, height, width, 3)).astype(np.uint8)


def registry_input(backbone, pix):
    return normalise(pix, get_backbone(backbone).preprocess_spec(pix.shape[1], pix.shape[2], False))


def run_python(code, **env):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **env}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)


def test_supported_backbones_are_those_of_our_registry_and_of_sm():
    from edgelabels.models.backbones import BACKBONES

    sm = import_segmentation_models()

    assert set(sm_backbones()) == {"vgg16", "resnet50", "efficientnetb0", "efficientnetb1", "efficientnetb2",
                                   "efficientnetb3"}
    assert set(sm_backbones()) <= set(BACKBONES) & set(sm.get_available_backbone_names())


@pytest.mark.parametrize("backbone", sorted(sm_backbones()))
def test_registry_normalised_image_gives_the_mask_sm_gives_its_own_preprocessing(backbone):
    sm = import_segmentation_models()
    model = build_sm_unet(backbone, 64, 96)
    assert model.input.name == "input" and model.get_layer("backbone").name == "backbone"
    pix = pixels(width=96)
    out = np.asarray(model(registry_input(backbone, pix)))
    assert out.shape == (2, 64, 96, 1)
    assert out.min() >= 0 and out.max() <= 1
    # sm's encoder fed sm's own preprocessing must give the same mask: the input adapter is right.
    theirs = sm.get_preprocessing(backbone)(pix.astype(np.float32))
    direct = model.get_layer("decoder")(model.get_layer("backbone")(theirs))
    np.testing.assert_allclose(out, np.asarray(direct), atol=1e-5)


def test_trained_model_loads_in_a_fresh_process_with_custom_objects_and_predicts_the_same(tmp_path):
    from edgelabels.models.losses import bce_dice_loss

    model = build_sm_unet("efficientnetb0", 64, 64)
    # Eagerly: tracing this 270-layer graph for one step takes ten times longer than the step.
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=bce_dice_loss, run_eagerly=True)
    x = registry_input("efficientnetb0", pixels())
    y = (np.random.default_rng(1).uniform(size=(2, 64, 64, 1)) > 0.5).astype(np.float32)
    before = np.asarray(model(x))
    model.fit(x, y, epochs=1, batch_size=2, verbose=0)
    expected = np.asarray(model(x))
    assert np.abs(expected - before).max() > 1e-4  # the step did train
    model.save(tmp_path / "m.keras")
    np.save(tmp_path / "x.npy", x)
    # A fresh process that never imports segmentation_models (which registers its objects globally).
    result = run_python(f"""
        import sys, numpy as np, keras
        from edgelabels.models.sm_unet import custom_objects
        model = keras.saving.load_model({str(tmp_path / "m.keras")!r}, compile=False, custom_objects=custom_objects())
        np.save({str(tmp_path / "y.npy")!r}, np.asarray(model(np.load({str(tmp_path / "x.npy")!r}))))
        assert "segmentation_models" not in sys.modules
    """)
    assert result.returncode == 0, result.stderr[-2000:]
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), expected)


@pytest.mark.slow
def test_onnx_export_matches_keras(tmp_path):
    import onnxruntime as ort

    from edgelabels.export.onnx_export import PARITY_TOLERANCE, keras_to_onnx, parity

    model = build_sm_unet("efficientnetb0", 64, 64)
    x = registry_input("efficientnetb0", pixels(n=3))
    path = keras_to_onnx(model, tmp_path / "m.onnx")
    onnx_out = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    result = parity(np.asarray(model(x)).reshape(len(x), -1), onnx_out.reshape(len(x), -1))
    assert result["output_std"] > 1e-3  # the masks differ between images, so agreement means something
    assert result["max_abs_diff"] <= PARITY_TOLERANCE


def _classification_run(folder, backbone: str):
    """A run directory holding a (random) classifier with this backbone: what `weights: run:DIR` reads."""
    import yaml

    from edgelabels.artifacts import RunDir
    from edgelabels.models.classifier import build_classifier

    run = RunDir(folder)
    run.start(yaml.safe_dump({"model": {"backbone": backbone}}))
    build_classifier(backbone, 2, 64, 64).save(run.model_path)
    return folder


def test_vgg16_classification_run_initialises_the_sm_encoder(tmp_path):
    from edgelabels.models.factory import copy_backbone_from_run
    from edgelabels.models.factory import load_model as load_keras_model

    run = _classification_run(tmp_path / "run", "vgg16")
    source = load_keras_model(run / "model.keras").get_layer("backbone")
    target = build_sm_unet("vgg16", 64, 64)
    encoder = target.get_layer("backbone")
    names = [layer.name for layer in source.layers if layer.weights]
    assert not np.array_equal(encoder.get_layer("block1_conv1").get_weights()[0],
                              source.get_layer("block1_conv1").get_weights()[0])
    assert copy_backbone_from_run(target, run, "vgg16") == len(names) == 13
    for name in names:
        for ours, theirs in zip(encoder.get_layer(name).get_weights(), source.get_layer(name).get_weights()):
            np.testing.assert_array_equal(ours, theirs)


def test_a_run_with_another_backbone_is_refused(tmp_path):
    from edgelabels.models.factory import copy_backbone_from_run

    run = _classification_run(tmp_path / "run", "tinycnn")
    with pytest.raises(UserError, match="trained a tinycnn backbone, not vgg16"):
        copy_backbone_from_run(build_sm_unet("vgg16", 64, 64), run, "vgg16")


def test_two_stage_training_freezes_exactly_the_sm_encoder():
    from edgelabels.models.classifier import freeze_backbone, unfreeze_top

    model = build_sm_unet("vgg16", 32, 32)
    encoder_weights = {id(w) for w in model.get_layer("backbone").weights}
    freeze_backbone(model)
    assert model.trainable_weights and not encoder_weights & {id(w) for w in model.trainable_weights}
    assert unfreeze_top(model, 2) == 2
    assert len(encoder_weights & {id(w) for w in model.trainable_weights}) == 4  # block5_conv2/3 kernel + bias


def test_unsupported_backbone_is_refused_naming_the_supported_ones():
    with pytest.raises(UserError, match="vgg16, resnet50, efficientnetb0"):
        build_sm_unet("mobilenetv3small", 64, 64)


def test_sizes_not_divisible_by_32_and_missing_weights_files_are_refused(tmp_path):
    with pytest.raises(UserError, match="divisible by 32"):
        build_sm_unet("vgg16", 48, 64)
    with pytest.raises(UserError, match="no such weights file"):
        build_sm_unet("vgg16", 64, 64, weights=str(tmp_path / "missing.h5"))


@pytest.mark.parametrize("backbone", ["vgg16", "resnet50", "efficientnetb0"])
def test_offline_imagenet_names_the_file_sm_wants_and_where_to_put_it(backbone, monkeypatch, tmp_path):
    import tensorflow as tf

    asked = {}

    def offline_get_file(fname, origin, **kwargs):  # what keras.utils.get_file raises without a network
        asked.update(fname=fname, origin=origin, subdir=kwargs.get("cache_subdir"))
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -2] Name or service not known")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(tf.keras.utils, "get_file", offline_get_file)  # the module sm downloads through
    with pytest.raises(UserError) as caught:
        build_sm_unet(backbone, 64, 64, weights="imagenet")
    message = str(caught.value)
    assert asked["subdir"] == "models"
    assert asked["origin"] in message and str(tmp_path / "models" / asked["fname"]) in message
    assert "\n" not in message


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed (the [dev] extra)")
def test_jax_backend_is_refused_with_a_user_error():
    result = run_python("""
        from edgelabels.errors import UserError
        from edgelabels.models.sm_unet import build_sm_unet
        try:
            build_sm_unet("vgg16", 64, 64)
        except UserError as exc:
            print(exc)
    """, KERAS_BACKEND="jax")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "needs the TensorFlow backend" in result.stdout and "model.implementation: edgelabels" in result.stdout

