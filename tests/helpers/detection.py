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

import json
from pathlib import Path

import numpy as np
from PIL import Image

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
    return Image.new("RGB", size, tuple(colour))


SQUARE_COLOURS = {"red": (220, 40, 40), "blue": (40, 60, 220)}


def make_box_photos(folder, n: int, seed: int, size: int = 64):
    """n photos with 1-2 squares each, and the Ground Truth object-detection manifest describing them."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    lines, truth = [], {}
    for i in range(n):
        pixels = np.clip(rng.normal(128, 12, (size, size, 3)), 0, 255)
        annotations, boxes = [], []
        for _ in range(int(rng.integers(1, 3))):
            label = ("red", "blue")[int(rng.integers(0, 2))]
            side = int(rng.integers(14, 22))
            left, top = (int(v) for v in rng.integers(0, size - side, 2))
            pixels[top:top + side, left:left + side] = SQUARE_COLOURS[label]
            annotations.append({"class_id": 0 if label == "red" else 1, "left": left, "top": top,
                                "width": side, "height": side})
            boxes.append((label, left, top, side, side))
        name = f"photo_{seed}_{i:03d}.png"
        Image.fromarray(pixels.astype(np.uint8)).save(folder / name)
        truth[name] = boxes
        lines.append(json.dumps({
            "source-ref": name,
            "bounding-box": {"image_size": [{"width": size, "height": size, "depth": 3}], "annotations": annotations},
            "bounding-box-metadata": {"objects": [{"confidence": 1}] * len(annotations),
                                      "class-map": {"0": "red", "1": "blue"}, "type": "groundtruth/object-detection",
                                      "human-annotated": "yes", "creation-date": "2026-12-01T00:00:00",
                                      "job-name": "labeling-job/squares"}}))
    manifest = folder / "boxes.manifest"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest, truth
