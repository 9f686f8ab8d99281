"""Tiled detection at the edge (runtime/tiles.py, runtime/detector.py): the tile grid, the merge of overlapping
tiles' boxes into one answer, and a tiled export answering whole frames through the Detector.

The Detector tests run the hand-built ONNX detector of tests/helpers/detection.py (fixed boxes, scores the
channel means of the model's input), its preprocess.json rewritten with a tile_scale: each tile answers with
the same fixed boxes, scored by that tile's colour, so the expected whole-image boxes are worked out by hand.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image

from edgelabels.artifacts import ExportDir
from edgelabels.data.preprocess import PreprocessSpec
from edgelabels.errors import UserError
from edgelabels.runtime.answers import answer_images
from edgelabels.runtime.detector import Detector
from edgelabels.runtime.tiles import merge_rows, merge_tile_rows, tile_boxes, tiled_detections
from helpers.detection import write_detector_dir


def _spec(size=32, scale=1.0, overlap=0.25, **kw) -> PreprocessSpec:
    return PreprocessSpec(height=size, width=size, tile_scale=scale, tile_overlap=overlap, **kw)


# -- the grid ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("w, h, scale", [(100, 70, 1.0), (1920, 1080, 0.5), (4000, 3000, 0.25)])
def test_tiles_cover_every_pixel_of_the_scaled_image_stay_inside_it_and_overlap_as_asked(w, h, scale):
    spec = PreprocessSpec(height=32, width=48, tile_scale=scale, tile_overlap=0.25)
    sw, sh = round(w * scale), round(h * scale)
    covered = np.zeros((sh, sw), bool)
    boxes = tile_boxes(w, h, spec)
    for left, top, tw, th in boxes:
        assert (tw, th) == (48, 32)
        assert 0 <= left and left + tw <= sw and 0 <= top and top + th <= sh  # edge tiles shifted inside
        covered[top:top + th, left:left + tw] = True
    assert covered.all()
    lefts, tops = sorted({b[0] for b in boxes}), sorted({b[1] for b in boxes})
    assert all(b - a <= 48 - 12 for a, b in zip(lefts, lefts[1:]))  # neighbours share at least 25% (12 px)
    assert all(b - a <= 32 - 8 for a, b in zip(tops, tops[1:]))
    assert lefts[1] - lefts[0] == 36 and tops[1] - tops[0] == 24  # and exactly that away from the last edge


def test_an_image_smaller_than_a_tile_is_one_tile_at_the_origin():
    assert tile_boxes(20, 10, _spec(32)) == [(0, 0, 32, 32)]
    # narrow: one column, padded; steps of 24 px (8 px overlap), the last tile shifted back to end at 60
    assert tile_boxes(20, 60, _spec(32)) == [(0, 0, 32, 32), (0, 24, 32, 32), (0, 28, 32, 32)]
    assert tile_boxes(64, 64, _spec(32, scale=0.5)) == [(0, 0, 32, 32)]


def test_no_overlap_cuts_a_grid_of_disjoint_tiles():
    assert tile_boxes(64, 32, _spec(32, overlap=0.0)) == [(0, 0, 32, 32), (32, 0, 32, 32)]


def test_preprocess_json_without_tile_keys_loads_untiled_and_a_tiled_spec_round_trips():
    old = PreprocessSpec(height=8, width=8).to_json()
    del old["tile_scale"], old["tile_overlap"]
    assert PreprocessSpec.from_json(old).tile_scale is None
    tiled = _spec(scale=0.5, overlap=0.2)
    assert PreprocessSpec.from_json(json.loads(json.dumps(tiled.to_json()))) == tiled
    with pytest.raises(UserError, match="tile_overlap"):
        _spec(overlap=1.0)
    with pytest.raises(UserError, match="tile_scale"):
        _spec(scale=0)


# -- merging -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("merge, right", [("nms", 31), ("union", 31.5)])
def test_a_box_seen_whole_by_two_overlapping_tiles_comes_out_once(merge, right):
    # Tiles (0, 0) and (24, 0) of a 56 x 32 image (tile 32, overlap 8 px); a 6 px car at x 26-32 lies in both.
    boxes = np.array([[0, 0, 32, 32], [24, 0, 32, 32]])
    per_tile = np.zeros((2, 1, 6), np.float32)
    per_tile[0, 0] = (25 / 32, 10 / 32, 6 / 32, 6 / 32, 0.9, 0)  # x 25-31 in the first tile
    per_tile[1, 0] = (1.5 / 32, 10 / 32, 6 / 32, 6 / 32, 0.8, 0)  # x 25.5-31.5 in the second
    rows = merge_tile_rows(per_tile, boxes, (56, 32), merge=merge)
    assert rows.shape == (1, 6)  # nms keeps the stronger box, union grows it over the weaker one
    np.testing.assert_allclose(rows[0], (25 / 56, 10 / 32, (right - 25) / 56, 6 / 32, 0.9, 0), atol=1e-6)


def test_a_box_cut_by_a_tile_border_inside_the_overlap_is_dropped_for_the_neighbours_whole_one():
    boxes = np.array([[0, 0, 32, 32], [24, 0, 32, 32]])
    per_tile = np.zeros((2, 1, 6), np.float32)
    per_tile[0, 0] = (28 / 32, 10 / 32, 4 / 32, 6 / 32, 0.95, 0)  # x 28-32: cut at the first tile's right edge
    per_tile[1, 0] = (4 / 32, 10 / 32, 8 / 32, 6 / 32, 0.7, 0)  # x 28-36 whole in the second
    for merge in ("nms", "union"):  # either would keep the stronger partial box, or grow it, were it not dropped
        rows = merge_tile_rows(per_tile, boxes, (56, 32), merge=merge)
        np.testing.assert_allclose(rows, [(28 / 56, 10 / 32, 8 / 56, 6 / 32, 0.7, 0)], atol=1e-6)


def test_a_box_wider_than_the_overlap_is_kept_from_both_tiles_and_merged():
    boxes = np.array([[0, 0, 32, 32], [24, 0, 32, 32]])
    per_tile = np.zeros((2, 1, 6), np.float32)
    per_tile[0, 0] = (16 / 32, 0, 16 / 32, 1, 0.6, 1)  # x 16-32 of an object at x 16-40: no tile holds it whole
    per_tile[1, 0] = (0, 0, 16 / 32, 1, 0.5, 1)  # x 24-40
    nms = merge_tile_rows(per_tile, boxes, (56, 32), merge="nms")
    union = merge_tile_rows(per_tile, boxes, (56, 32), merge="union")
    assert len(nms) == 2  # IoU 8/24: two boxes stay under NMS...
    np.testing.assert_allclose(union, [(16 / 56, 0, 24 / 56, 1, 0.6, 1)], atol=1e-6)  # ...one grown box under union


@pytest.mark.parametrize("merge", ["nms", "union"])
def test_merge_keeps_other_classes_and_distant_boxes_and_sorts_by_score(merge):
    rows = np.array([[0.1, 0.1, 0.2, 0.2, 0.5, 0], [0.1, 0.1, 0.2, 0.2, 0.9, 1], [0.11, 0.1, 0.2, 0.2, 0.7, 0],
                     [0.6, 0.6, 0.2, 0.2, 0.3, 0]], np.float32)
    merged = merge_rows(rows, merge)
    np.testing.assert_allclose(merged[:, 4], [0.9, 0.7, 0.3])
    np.testing.assert_allclose(merged[:, 5], [1, 0, 0])


def test_a_box_cut_by_a_horizontal_tile_border_is_dropped_too():
    boxes = np.array([[0, 0, 32, 32], [0, 24, 32, 32]])  # one column, two rows
    per_tile = np.zeros((2, 1, 6), np.float32)
    per_tile[0, 0] = (10 / 32, 29 / 32, 6 / 32, 3 / 32, 0.95, 0)  # y 29-32: cut at the upper tile's bottom edge
    per_tile[1, 0] = (10 / 32, 5 / 32, 6 / 32, 6 / 32, 0.7, 0)  # y 29-35 whole in the lower tile
    rows = merge_tile_rows(per_tile, boxes, (32, 56))
    np.testing.assert_allclose(rows, [(10 / 32, 29 / 56, 6 / 32, 6 / 56, 0.7, 0)], atol=1e-6)


# -- the Detector on a tiled export --------------------------------------------------------------------

@pytest.fixture
def tiled_dir(tmp_path):
    folder = write_detector_dir(tmp_path / "export", size=32)
    export = ExportDir(folder)
    export.write_preprocess(dataclasses.replace(ExportDir.load(folder).spec, tile_scale=1.0, tile_overlap=0.0))
    return folder


def _half_red(size=(64, 32)):
    """Left half red (204, 0, 0), right half black: only the left tile scores."""
    pixels = np.zeros((size[1], size[0], 3), np.uint8)
    pixels[:, : size[0] // 2, 0] = 204
    return Image.fromarray(pixels)


def test_a_tiled_detector_answers_in_ratios_of_the_whole_image(tiled_dir):
    detector = Detector(tiled_dir)
    assert detector.tiled
    # Left tile (0-32 px) scores its red boxes 0.8 and 0.6; its green and blue (means 0) fall below MIN_SCORE;
    # the black right tile scores nothing. The small red box lies inside the big one (intersection over the
    # smaller box 1): merged into it. Red box (0.1, 0.2, 0.3, 0.4) of a 32 px tile at x 0 -> a 64 px wide image.
    answer = detector.detect(_half_red(), min_confidence=50)["CustomLabels"]
    assert [(a["Name"], round(a["Confidence"], 3)) for a in answer] == [("red", 80.0)]
    box = answer[0]["Geometry"]["BoundingBox"]
    assert box == pytest.approx({"Left": 0.05, "Top": 0.2, "Width": 0.15, "Height": 0.4}, abs=1e-6)


def test_a_tiled_detector_scales_the_image_before_cutting(tiled_dir):
    export = ExportDir(tiled_dir)
    export.write_preprocess(dataclasses.replace(ExportDir.load(tiled_dir).spec, tile_scale=0.5))
    answer = Detector(tiled_dir).detect(_half_red((128, 64)), min_confidence=70)["CustomLabels"]
    assert answer[0]["Geometry"]["BoundingBox"] == pytest.approx(
        {"Left": 0.05, "Top": 0.2, "Width": 0.15, "Height": 0.4}, abs=1e-6)


def test_tiled_detections_detect_many_and_answer_images_agree(tiled_dir, tmp_path):
    detector = Detector(tiled_dir)
    paths = []
    for i, size in enumerate([(64, 32), (96, 40), (20, 20)]):
        paths.append(tmp_path / f"frame{i}.png")
        _half_red(size).save(paths[-1])
    one = [detector.detect(p) for p in paths]
    assert detector.detect_many(paths, batch_size=2) == one
    assert [a.response for a in answer_images(detector, paths, batch_size=2)] == one
    rows = detector.detections(paths)
    assert rows.shape[0] == 3 and rows.shape[2] == 6
    direct = tiled_detections(Image.open(paths[1]).convert("RGB"), detector.spec, detector.run)
    np.testing.assert_allclose(rows[1, :len(direct)], direct)
    assert not rows[1, len(direct):].any()  # padding rows: score 0, no box


def test_an_untiled_export_answers_as_before(tmp_path):
    folder = write_detector_dir(tmp_path / "export", size=32)
    detector = Detector(folder)
    assert not detector.tiled
    image = _half_red()
    rows = detector.detections([image])
    assert rows.shape == (1, 4, 6)  # the model's own K rows, unmerged
    np.testing.assert_allclose(rows[0], detector.run(detector.prepare(image)[None])[0])
