"""Keras vs ONNX parity for every distinct backbone graph, at the smallest size each accepts.

Each model has its BatchNorm statistics re-estimated on the test images first, and the test
asserts the outputs vary across images: untrained EfficientNet/MobileNetV3 answer exactly 0.5 for
everything, which would make parity vacuous.
Cost: tf2onnx's conversion (tracing, freezing, its optimizer passes over the full-width graph) is most of each
test, so each distinct graph is converted once. EfficientNetB1-B3 are EfficientNetB0's builder with more and wider
blocks, MobileNetV3Large is MobileNetV3Small's with other blocks: those four are not converted here (they cost
76 s and 6 s of the file's 137 s, measured 2026-12-05 on a shared 2-core CPU; now 52 s). A cheap test (no tf2onnx)
checks instead what could make their conversion differ from their representative's: the same keras.applications
builder module, the same registry entry but for name, default size and weights files, and no layer type or
op-choosing layer setting (activation, kernel size, stride, padding, dilation, ...) that the converted
representative's graph lacks. `export` itself still checks parity on every real export.
ResNet50's conversion, the slowest by far (58 s of the ~100 s these cases took in a full run; 31 s in a fresh
process against 62 s after the other conversions in one, 2026-12-06), runs in a child process started as the
module's first conversion begins, while this process converts the others (tf2onnx's passes are single-threaded
Python: the second core was idle). Its case, ordered last, asserts on what the child measured with `converted`,
the function every case uses, and the same assertions.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgelabels.data.images import read_image
from edgelabels.data.preprocess import preprocess
from edgelabels.export.onnx_export import PARITY_TOLERANCE, keras_to_onnx, parity
from edgelabels.models.backbones import BACKBONES
from helpers.runs import LABELS, trained_classifier, write_images

pytestmark = pytest.mark.slow

# representative (converted) -> backbones built by the same keras.applications builder (checked without tf2onnx)
SAME_BUILDER = {"efficientnetb0": ("efficientnetb1", "efficientnetb2", "efficientnetb3"),
                "mobilenetv3small": ("mobilenetv3large",)}
MEMBERS = {member: representative for representative, members in SAME_BUILDER.items() for member in members}
IN_A_CHILD = ("resnet50",)  # converted in a child process alongside this one's conversions (see above)
CONVERTED = sorted(set(BACKBONES) - set(MEMBERS), key=lambda name: (name in IN_A_CHILD, name))
# The layer settings that choose which ONNX ops tf2onnx emits (widths and depths do not: they are tensor shapes).
OP_SETTINGS = ("activation", "kernel_size", "strides", "padding", "dilation_rate", "use_bias", "depth_multiplier",
               "pool_size", "scale", "offset", "axis", "epsilon", "interpolation", "keepdims", "data_format",
               "center", "mode")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_images(tmp_path_factory.mktemp("parity-images"), per_label=6, size=40)


def converted(backbone: str, images, folder: Path) -> dict:
    """`backbone`'s classifier converted: the parity check of its ONNX outputs against Keras', and its graph's
    inputs and outputs (JSON, as the child writes them)."""
    size = max(32, BACKBONES[backbone].min_size)
    spec = BACKBONES[backbone].preprocess_spec(size, size, grayscale=False)
    # BatchNorm re-estimated, head untrained: enough for outputs to vary (tf2onnx dominates the time).
    model = trained_classifier(backbone, images, spec, epochs=0)
    path = keras_to_onnx(model, folder / "model.onnx")

    x = np.stack([preprocess(read_image(p)[0], spec) for p, _ in images])
    import onnxruntime as ort

    onnx_out = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    graph = onnx.load(str(path)).graph
    batch = graph.input[0].type.tensor_type.shape.dim[0]
    return {"check": parity(np.asarray(model(x, training=False)), onnx_out),
            "inputs": [i.name for i in graph.input], "outputs": [o.name for o in graph.output],
            "batch_is_fixed": batch.HasField("dim_value"),
            "output_width": graph.output[0].type.tensor_type.shape.dim[1].dim_value}


@pytest.fixture(scope="module")
def children(images, request, tmp_path_factory):
    """backbone -> the child process converting it, for the IN_A_CHILD cases this session runs."""
    chosen = {item.callspec.params["backbone"] for item in request.session.items
              if item.module is request.module and item.originalname == "test_onnx_matches_keras_and_outputs_vary"}
    tests = Path(__file__).resolve().parent
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": os.pathsep.join([str(tests), *filter(None, [os.environ.get("PYTHONPATH")])])}
    started = {}
    for backbone in sorted(chosen & set(IN_A_CHILD)):
        folder = tmp_path_factory.mktemp(f"parity-{backbone}")
        script = ("import json, sys; from pathlib import Path; from test_export_parity import converted; "
                  "folder = Path(sys.argv[2]); images = [(Path(p), label) for p, label in json.loads(sys.argv[3])]; "
                  "(folder / 'answer.json').write_text(json.dumps(converted(sys.argv[1], images, folder)))")
        started[backbone] = (folder, subprocess.Popen(
            [sys.executable, "-c", script, backbone, str(folder), json.dumps([(str(p), label) for p, label in images])],
            cwd=tests.parent, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    yield started
    for _, child in started.values():
        if child.poll() is None:
            child.kill()
            child.wait()


@pytest.mark.parametrize("backbone", CONVERTED)
def test_onnx_matches_keras_and_outputs_vary(backbone, images, children, tmp_path):
    if backbone in children:
        folder, child = children[backbone]
        stderr = child.communicate(timeout=600)[1]
        assert child.returncode == 0, f"{backbone}'s conversion in a child failed:\n{stderr[-3000:]}"
        found = json.loads((folder / "answer.json").read_text())
    else:
        found = converted(backbone, images, tmp_path)
    check = found["check"]

    assert check["max_abs_diff"] <= PARITY_TOLERANCE, check
    assert check["top1_agreement"] == 1.0, check
    assert check["output_std"] > 1e-3, f"{backbone}: outputs barely vary, parity would be vacuous: {check}"

    assert found["inputs"] == ["input"]  # no captured Normalization mean/variance inputs
    assert found["outputs"] == ["probabilities"]
    assert not found["batch_is_fixed"], "batch dimension must be dynamic"
    assert found["output_width"] == len(LABELS)


def test_every_backbone_is_converted_or_shares_a_converted_builder():
    assert set(MEMBERS) <= set(BACKBONES) and set(SAME_BUILDER) <= set(CONVERTED)
    assert set(CONVERTED) | set(MEMBERS) == set(BACKBONES)


@functools.cache
def _graph_signature(backbone: str) -> frozenset:
    """Every (layer type, op-relevant settings) in the classifier built on `backbone` at the smallest size."""
    from edgelabels.models.classifier import build_classifier

    size = max(32, BACKBONES[backbone].min_size)
    signature = set()
    for layer in _all_layers(build_classifier(backbone, len(LABELS), size, size)):
        config = layer.get_config()
        signature.add((type(layer).__name__, *((key, repr(config[key])) for key in OP_SETTINGS if key in config)))
    return frozenset(signature)


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


@pytest.mark.parametrize("member", sorted(MEMBERS))
def test_an_unconverted_backbone_has_its_converted_representatives_builder_entry_and_op_set(member):
    import keras

    ours, theirs = BACKBONES[member], BACKBONES[MEMBERS[member]]
    builders = {name: getattr(keras.applications, BACKBONES[name].application).__module__
                for name in (member, MEMBERS[member])}
    assert len(set(builders.values())) == 1, f"not one keras.applications builder: {builders}"
    # Same preprocessing, minimum size, INT8 scheme and sm input scale; only names, size and weights files differ.
    same_sm = dataclasses.replace(ours.sm, imagenet_file=theirs.sm.imagenet_file,
                                  imagenet_url=theirs.sm.imagenet_url) if ours.sm else None
    assert dataclasses.replace(ours, name=theirs.name, application=theirs.application,
                               default_size=theirs.default_size, imagenet_file=theirs.imagenet_file,
                               imagenet_url=theirs.imagenet_url, sm=same_sm) == theirs, (ours, theirs)
    missing = _graph_signature(member) - _graph_signature(MEMBERS[member])
    assert not missing, f"{member} has layers {MEMBERS[member]}'s converted graph lacks: {sorted(missing)}"
