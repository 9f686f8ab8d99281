"""A real exported detector folder for the edge tests, built without training (no TensorFlow, no Keras).

`write_detector_dir` writes what `edgelabels export` writes for a detection run, through the layout
module's writers: layout.json task "detection", labels.json, preprocess.json (0-255 -> 0-1),
thresholds.json and model.onnx, a graph made with onnx.helper whose input is float32 NHWC "input"
(dynamic batch) and whose one output "detections" is (N, 4, 6) rows [left, top, width, height,
score, class_id]. The four boxes are fixed (BOXES: one reaches past the right and bottom edges, one
past the left edge, to exercise clipping); each score is a weight times one channel's mean (0-1), so
an image's colour decides which boxes pass which threshold: answers are not vacuous and can be
computed by hand. Rows are deliberately NOT sorted by score, so the Detector's own sorting is tested.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from helpers.server import _write_export

LABELS = ("red", "green", "blue")
# (left, top, width, height) ratios, class id, channel whose mean is the score, weight.
BOXES = (
    ((0.1, 0.2, 0.3, 0.4), 0, 0, 1.0),   # red box: score = mean R
    ((0.5, 0.5, 0.6, 0.6), 1, 1, 1.0),   # green: mean G; clipped to (0.5, 0.5, 0.5, 0.5)
    ((-0.1, 0.0, 0.3, 0.2), 2, 2, 1.0),  # blue: mean B; clipped to (0.0, 0.0, 0.2, 0.2)
    ((0.2, 0.2, 0.2, 0.2), 0, 0, 0.75),  # a second, smaller red box: 0.75 * mean R
)
THRESHOLDS = {"red": 0.7, "green": 0.1, "blue": 0.5}


def write_detector_dir(folder: Path, size: int = 32, thresholds: dict | None = None) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    k = len(BOXES)
    weights = np.zeros((3, k), np.float32)  # mean colour (N, 3) @ weights -> scores (N, K)
    for i, (_, _, channel, weight) in enumerate(BOXES):
        weights[channel, i] = weight
    boxes = np.array([b for b, _, _, _ in BOXES], np.float32)  # (K, 4)
    classes = np.array([[c] for _, c, _, _ in BOXES], np.float32)  # (K, 1)
    inits = [numpy_helper.from_array(weights, "score_w"), numpy_helper.from_array(boxes, "boxes"),
             numpy_helper.from_array(classes, "classes"), numpy_helper.from_array(np.zeros(1, np.float32), "zero"),
             numpy_helper.from_array(np.array([2], np.int64), "last_axis")]
    nodes = [
        helper.make_node("ReduceMean", ["input"], ["mean"], axes=[1, 2], keepdims=0),
        helper.make_node("MatMul", ["mean", "score_w"], ["scores"]),
        helper.make_node("Unsqueeze", ["scores", "last_axis"], ["score_col"]),  # (N, K, 1)
        # zeros (N, K, 1) broadcast the fixed boxes and class ids over the batch
        helper.make_node("Mul", ["score_col", "zero"], ["zeros"]),
        helper.make_node("Add", ["zeros", "boxes"], ["box_cols"]),  # (N, K, 4)
        helper.make_node("Add", ["zeros", "classes"], ["class_col"]),  # (N, K, 1)
        helper.make_node("Concat", ["box_cols", "score_col", "class_col"], ["detections"], axis=2),
    ]
    graph = helper.make_graph(
        nodes, "edge_test_detector",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", size, size, 3])],
        [helper.make_tensor_value_info("detections", TensorProto.FLOAT, ["N", k, 6])], inits)
    export = _write_export(folder, graph, "detection", list(LABELS), size)
    export.write_thresholds(thresholds or THRESHOLDS)
    return folder


def solid_image(colour, size=(100, 60)):
    """A PIL image of one colour (its channel means are colour / 255 exactly, whatever the resize)."""
    from PIL import Image

    return Image.new("RGB", size, tuple(colour))
