"""Keras vs ONNX parity for every registered backbone, at the smallest size each accepts.

Each model has its BatchNorm statistics re-estimated on the test images first, and the test
asserts the outputs vary across images: untrained EfficientNet/MobileNetV3 answer exactly 0.5 for
everything, which would make parity vacuous.
Cost (measured 2026-12-05, 175 s for the file on a shared 2-core CPU): each backbone is built and converted exactly
once, at the smallest size it takes, and tf2onnx's conversion (tracing, freezing, its optimizer passes over the
full-width graph) is most of each test (VGG16: 13.1 of 14.9 s; EfficientNetB3: 37 s converting, 2 s
re-estimating and running it, plus its build).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from edgelabels.data.images import read_image
from edgelabels.data.preprocess import preprocess
from edgelabels.export.onnx_export import PARITY_TOLERANCE, keras_to_onnx, parity
from edgelabels.models.backbones import BACKBONES
from helpers.runs import LABELS, trained_classifier, write_images

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_images(tmp_path_factory.mktemp("parity-images"), per_label=6, size=40)


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_onnx_matches_keras_and_outputs_vary(backbone, images, tmp_path):
    size = max(32, BACKBONES[backbone].min_size)
    spec = BACKBONES[backbone].preprocess_spec(size, size, grayscale=False)
    # BatchNorm re-estimated, head untrained: enough for outputs to vary (tf2onnx dominates the time).
    model = trained_classifier(backbone, images, spec, epochs=0)
    path = keras_to_onnx(model, tmp_path / "model.onnx")

    x = np.stack([preprocess(read_image(p)[0], spec) for p, _ in images])
    import onnxruntime as ort

    onnx_out = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    check = parity(np.asarray(model(x, training=False)), onnx_out)

    assert check["max_abs_diff"] <= PARITY_TOLERANCE, check
    assert check["top1_agreement"] == 1.0, check
    assert check["output_std"] > 1e-3, f"{backbone}: outputs barely vary, parity would be vacuous: {check}"

    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["input"]  # no captured Normalization mean/variance inputs
    assert [o.name for o in graph.output] == ["probabilities"]
    batch = graph.input[0].type.tensor_type.shape.dim[0]
    assert not batch.HasField("dim_value"), "batch dimension must be dynamic"
    assert graph.output[0].type.tensor_type.shape.dim[1].dim_value == len(LABELS)
