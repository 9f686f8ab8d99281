"""The crop-box stage (issue 15): a detected box -> the image cut to it, turned upright by the well's box.

Geometry first, by hand: crop_affine's coefficients on boxes whose crops are known. Then synthetic cassettes,
whose generator knows where the C line, the T line and the well landed: the crop (from the generator's own
boxes, standing in for a detector) holds the whole window and puts T below C, for an upright photo and for the
same photo turned upside down, and the two crops show the same thing.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from edgelabels.config import CropConfig, load_config
from edgelabels.data.synthetic import BOX_LABELS, render_cassette_with_geometry
from edgelabels.errors import UserError
from edgelabels.runtime.stages import CropBox, crop_affine


def _forward(affine, point):
    """Input (image) pixel -> output (crop) pixel: the inverse of PIL's output -> input affine."""
    a, b, c, d, e, f = affine
    m = np.array([[a, b], [d, e]])
    return np.linalg.solve(m, np.asarray(point, float) - [c, f])


def test_axis_aligned_crop_without_margin_is_the_box_resampled():
    crop = CropConfig(label="window", margin=0.0, size=[20, 10])
    # 200x100 image, box 80..100 x 40..60 (pixels) -> a 10 wide, 20 high crop: x scale 2, y scale 1
    affine = crop_affine((0.4, 0.4, 0.1, 0.2), (200, 100), crop)
    assert np.allclose(affine, [2.0, 0.0, 80.0, 0.0, 1.0, 40.0])


def test_margin_adds_its_share_on_each_side():
    crop = CropConfig(label="window", margin=0.5, size=[40, 40])
    affine = crop_affine((0.4, 0.4, 0.1, 0.2), (200, 100), crop)  # 20x20 box -> 40x40 span centred on (90, 50)
    assert np.allclose(affine, [1.0, 0.0, 70.0, 0.0, 1.0, 30.0])


def test_toward_a_box_above_turns_the_crop_upside_down():
    crop = CropConfig(label="window", margin=0.0, size=[20, 20], orient_by="well")
    affine = crop_affine((0.4, 0.4, 0.1, 0.2), (200, 100), crop, toward=(0.4, 0.0, 0.1, 0.2))  # well above
    # the crop's (0, 0) is the box's bottom-right corner (100, 60); its x runs left, its y up
    assert np.allclose(affine, [-1.0, 0.0, 100.0, 0.0, -1.0, 60.0])


def test_toward_a_box_to_the_right_turns_the_long_side_back_down():
    crop = CropConfig(label="window", margin=0.0, size=[40, 20], orient_by="well")
    # a window lying across the image (40 wide, 20 high, centre (100, 50)) with the well to its right
    affine = crop_affine((0.4, 0.4, 0.2, 0.2), (200, 100), crop, toward=(0.8, 0.4, 0.05, 0.2))
    # crop down = image +x; crop right = image -y; the 20x40 crop spans the 40x20 box
    assert np.allclose(affine, [0.0, 1.0, 80.0, -1.0, 0.0, 60.0])


def _stub_detector(boxes: dict):
    """Stands in for runtime.detector.Detector: answers `boxes` (label -> ratio box) for any image."""
    class Stub:
        labels = list(BOX_LABELS)
        dir = model_path = "stub"

        def custom_labels(self, rows, min_confidence=None):
            return [{"Name": name, "Confidence": 99.0, "Geometry": {"BoundingBox": dict(
                Left=b[0], Top=b[1], Width=b[2], Height=b[3])}} for name, b in rows]

        def detections(self, images, batch_size=16):
            return [list(boxes.items()) for _ in images]
    return Stub()


def _cassette(result: str, seed: int):
    rng = np.random.default_rng(seed)
    photo, geometry = render_cassette_with_geometry(result, rng, size=(640, 480), nuisance=0.3)
    w, h = photo.size
    boxes = {b.label: (b.left / w, b.top / h, b.width / w, b.height / h) for b in geometry.boxes}
    return photo, geometry, boxes


def _upside_down(photo, geometry, boxes):
    w, h = photo.size
    turn = lambda p: (w - p[0], h - p[1])  # noqa: E731
    turned = {name: (1 - b[0] - b[2], 1 - b[1] - b[3], b[2], b[3]) for name, b in boxes.items()}
    lines = {"c": [turn(p) for p in geometry.c_line], "t": [turn(p) for p in geometry.t_line],
             "window": [turn(p) for p in geometry.window]}
    return photo.rotate(180), lines, turned


@pytest.mark.parametrize("result,seed", [("positive", 3), ("invalid", 5), ("positive", 11)])
def test_crop_holds_the_window_and_puts_t_below_c_upright_and_upside_down(result, seed):
    photo, geometry, boxes = _cassette(result, seed)
    crop = CropConfig(label="window", margin=0.25, size=[64, 32], orient_by="well")
    upright_lines = {"c": geometry.c_line, "t": geometry.t_line, "window": geometry.window}
    turned_photo, turned_lines, turned_boxes = _upside_down(photo, geometry, boxes)
    crops = []
    for image, lines, found in ((photo, upright_lines, boxes), (turned_photo, turned_lines, turned_boxes)):
        stage = CropBox(_stub_detector(found), crop)
        geometry_of = stage.geometry(list(found.items()), image.size)
        affine = geometry_of["affine"]
        corners = np.array([_forward(affine, p) for p in lines["window"]])
        # the window's corners land inside the crop (perspective and the tilt estimate: a 2 px allowance)
        assert corners.min() >= -2 and corners[:, 0].max() <= 32 + 2 and corners[:, 1].max() <= 64 + 2
        c_y = np.mean([_forward(affine, p)[1] for p in lines["c"]])
        t_y = np.mean([_forward(affine, p)[1] for p in lines["t"]])
        assert t_y > c_y + 3, "T (nearer the well) must be the lower line of the crop"
        crops.append(np.asarray(stage.apply([image])[0], np.float32))
    # the upside-down photo's crop shows what the upright one's does (not its 180-degree turn)
    same = np.abs(crops[0] - crops[1]).mean()
    flipped = np.abs(crops[0] - crops[1][::-1, ::-1]).mean()
    assert same < 0.5 * flipped


def test_no_box_of_the_label_gives_no_image():
    photo, _, boxes = _cassette("negative", 2)
    del boxes["window"]
    stage = CropBox(_stub_detector(boxes), CropConfig(label="window", orient_by="well"))
    assert stage.apply([photo]) == [None]
    assert stage.finds_nothing("k") is False  # nothing cached under that key yet
    stage.apply([photo], ["k"])
    assert stage.finds_nothing("k") is True


def test_crop_label_must_be_one_of_the_detectors():
    with pytest.raises(UserError, match="'door' is not one of the detector's labels"):
        CropBox(_stub_detector({}), CropConfig(label="door"))


def test_config_detect_becomes_one_crop_box_stage_and_refuses_segment_beside_it():
    config = load_config(None, ["data.source=x", "detect=runs/d", "crop.orient_by=well", "crop.size=[48,24]"])
    (stage,) = config.stage_list()
    assert (stage.kind, stage.run, stage.crop.hw, stage.crop.orient_by) == ("crop-box", "runs/d", (48, 24), "well")
    with pytest.raises(UserError, match="give one of segment"):
        load_config(None, ["data.source=x", "detect=runs/d", "segment=runs/u"])
    with pytest.raises(UserError, match="did you mean crop.margin"):
        load_config(None, ["data.source=x", "detect=runs/d", "crop.margins=0.1"])
    with pytest.raises(UserError, match="crop.margin must be in"):
        load_config(None, ["data.source=x", "detect=runs/d", "crop.margin=5"])

