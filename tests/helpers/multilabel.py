"""A hand-built multi-label export (no training): each colour channel's mean decides its own label.

Sigmoid(6 * mean - 3) per channel, so a yellow image (red and green high, blue low) carries "red" and
"green" at about 0.9 each and "blue" at about 0.1: the answer is known without a model to train.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from helpers.server import _write_export

LABELS = ("red", "green", "blue")


def write_multilabel_export(folder: Path, size: int = 32, thresholds: dict | None = None) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    weights = np.diag([6.0, 6.0, 6.0]).astype(np.float32)
    bias = np.full(3, -3.0, np.float32)
    nodes = [helper.make_node("ReduceMean", ["input"], ["pooled"], axes=[1, 2], keepdims=0),
             helper.make_node("MatMul", ["pooled", "fc_w"], ["mm"]),
             helper.make_node("Add", ["mm", "fc_b"], ["logits"]),
             helper.make_node("Sigmoid", ["logits"], ["probabilities"])]
    graph = helper.make_graph(
        nodes, "multilabel_test_model",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", size, size, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 3])],
        [numpy_helper.from_array(weights, "fc_w"), numpy_helper.from_array(bias, "fc_b")])
    export = _write_export(folder, graph, "multilabel", list(LABELS), size)
    export.write_thresholds(thresholds or {name: 0.5 for name in LABELS})
    return folder
