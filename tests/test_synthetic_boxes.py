"""Boxes of the synthetic cassettes (issue 14): the manifest's format, and boxes that sit on the drawn pixels.

The pixel checks do not trust the generator's geometry: each photo is rendered twice from the same random
stream, once as is and once with one part changed (the body repainted, the well's hole repainted, the T line
removed); the pixels that differ are where that part really is, and the manifest's box must fit them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from edgelabels.data import synthetic
from edgelabels.data.boxes import displayed_size, iou_matrix
from edgelabels.data.dataset import Box
from edgelabels.data.sources import read_manifest
from edgelabels.data.synthetic import BOXES_FILE, generate_cassettes
from edgelabels.errors import UserError

SIZE = (640, 480)
MARKER = (0, 255, 0)  # pure green: far from the off-white body and the grey hole in every channel
TOLERANCE = 3  # px: measured edge error of the boxes against the drawn pixels is at most 3 px (20 seeds)


def _manifest(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / BOXES_FILE).read_text().splitlines()]


def _boxes_of(entry: dict) -> dict[str, tuple[int, int, int, int]]:
    names = entry["bounding-box-metadata"]["class-map"]
    return {names[str(a["class_id"])]: (a["left"], a["top"], a["width"], a["height"])
            for a in entry["bounding-box"]["annotations"]}


def _index(entry: dict) -> int:
    return int(re.fullmatch(r"\w+/cassette-(\d{5})\.jpg", entry["source-ref"]).group(1))


def _render(seed: int, index: int, result: str, nuisance: float, **kwargs) -> tuple[np.ndarray, float]:
    """Photo `index` of a dataset made with `seed`, as the module docstring says it is drawn (no JPEG),
    and the cassette's in-plane turn in degrees."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1, index]))
    image, geometry = synthetic.render_cassette_with_geometry(result, rng, SIZE, nuisance=nuisance, **kwargs)
    return np.asarray(image, np.int16), geometry.rotation


def _painted(part: str):
    """A stand-in for the generator's flat cassette drawing that repaints `part` in MARKER, drawing the
    same random numbers (so the rest of the photo is unchanged). The well's hole is found in the flat
    drawing's pixels: from the well's centre (the pad) walk up to the first other colour (the hole around
    the pad), and flood-fill both."""
    real = synthetic._draw_cassette

    def draw(rng, length, c_strength, t_strength):
        image, points, line_w = real(rng, length, c_strength, t_strength)
        alpha = image.getchannel("A")
        if part == "cassette":
            rgb = Image.new("RGB", image.size, MARKER)
        else:
            rgb = image.convert("RGB")
            x, y = (int(v) for v in points["well"][0])
            pad = rgb.getpixel((x, y))
            top = y
            while rgb.getpixel((x, top)) == pad:
                top -= 1
            ImageDraw.floodfill(rgb, (x, top), MARKER)
            ImageDraw.floodfill(rgb, (x, y), MARKER)
        rgb.putalpha(alpha)
        return rgb, points, line_w

    return draw


def _extent(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(left, top, width, height) of the True pixels."""
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max() + 1 - xs.min()), int(ys.max() + 1 - ys.min())


def _fits(box, found) -> bool:
    """Every edge of `box` within TOLERANCE of the pixels' extent, and IoU >= 0.8 (a 40 px well with every
    edge 2 px off has IoU 0.83)."""
    edges = np.array([box[0], box[1], box[0] + box[2], box[1] + box[3]])
    truth = np.array([found[0], found[1], found[0] + found[2], found[1] + found[3]])
    return bool(np.abs(edges - truth).max() <= TOLERANCE and iou_matrix([box], [found])[0, 0] >= 0.8)


def _misplaced(box) -> list[tuple]:
    """The same box shifted by 3% of the photo each way, and with x and y swapped (unless that is the same
    box: a round well whose centre lies on the photo's diagonal)."""
    left, top, width, height = box
    dx, dy = round(0.03 * SIZE[0]), round(0.03 * SIZE[1])
    swapped = [(top, left, height, width)] if max(abs(top - left), abs(height - width)) > TOLERANCE else []
    return [(left + dx, top, width, height), (left - dx, top, width, height), (left, top + dy, width, height),
            (left, top - dy, width, height)] + swapped


@pytest.fixture(scope="module", params=[0.0, 1.0], ids=["clean", "full-nuisance"])
def positives(request, tmp_path_factory):
    """Three 640x480 positives with boxes: (folder, seed, nuisance)."""
    folder = tmp_path_factory.mktemp("boxes") / "out"
    generate_cassettes(folder, 3, seed=4, mix={"positive": 1.0}, size=SIZE, progress=False, nuisance=request.param,
                       boxes=True)
    return folder, 4, request.param


def test_manifest_is_a_ground_truth_object_detection_manifest_that_reads_back(tmp_path):
    out = tmp_path / "out"
    generate_cassettes(out, 5, seed=2, progress=False, boxes=True)  # random phone sizes
    lines = (out / BOXES_FILE).read_text().splitlines()
    assert len(lines) == 5
    entries = [json.loads(line) for line in lines]
    assert [_index(e) for e in entries] == [0, 1, 2, 3, 4]  # one line per photo, in index order
    for entry in entries:
        meta = entry["bounding-box-metadata"]
        assert meta["type"] == "groundtruth/object-detection" and meta["human-annotated"] == "yes"
        assert meta["class-map"] == {"0": "cassette", "1": "window", "2": "well"}
        assert meta["objects"] == [{"confidence": 1}] * 3
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", meta["creation-date"]) and meta["job-name"]
        photo = out / entry["source-ref"]  # relative to the output folder
        with Image.open(photo) as image:
            assert 0x0112 not in image.getexif()  # no EXIF orientation: stored frame = displayed frame
            assert entry["bounding-box"]["image_size"] == [{"width": image.width, "height": image.height, "depth": 3}]
        assert displayed_size(photo) == (image.width, image.height)
        assert [a["class_id"] for a in entry["bounding-box"]["annotations"]] == [0, 1, 2]
        assert all(isinstance(a[k], int) for a in entry["bounding-box"]["annotations"]
                   for k in ("left", "top", "width", "height"))

    dataset = read_manifest(out / BOXES_FILE, root=None, s3_root=None, pattern=None)
    assert dataset.problems == []
    by_path = {s.path: s for s in dataset.samples}
    assert len(by_path) == 5
    for entry in entries:
        sample = by_path[(out / entry["source-ref"]).resolve()]
        assert sorted(sample.labels) == ["cassette", "well", "window"]
        assert sample.boxes == tuple(Box(a, *b) for a, b in _boxes_of(entry).items())


@pytest.mark.parametrize("size", [None, (64, 64)], ids=["phone-sizes", "64px"])
def test_boxes_lie_inside_the_photo_and_window_and_well_inside_the_cassette(tmp_path, size):
    out = tmp_path / "out"
    generate_cassettes(out, 8, seed=9, size=size, progress=False, boxes=True)
    for entry in _manifest(out):
        width, height = (entry["bounding-box"]["image_size"][0][k] for k in ("width", "height"))
        boxes = _boxes_of(entry)
        assert list(boxes) == ["cassette", "window", "well"]
        for left, top, w, h in boxes.values():
            assert w >= 1 and h >= 1
            assert 0 <= left and left + w <= width and 0 <= top and top + h <= height
        cl, ct, cw, ch = boxes["cassette"]
        for part in ("window", "well"):
            left, top, w, h = boxes[part]
            assert cl <= left and left + w <= cl + cw and ct <= top and top + h <= ct + ch, part
            assert w * h < 0.5 * cw * ch, part  # a part, not the whole cassette
        # window and well are two different places along the cassette: they do not overlap
        assert iou_matrix([boxes["window"]], [boxes["well"]])[0, 0] == 0


@pytest.mark.parametrize("size", [(64, 64), (64, 160), (160, 64)], ids=["64x64", "64x160", "160x64"])
def test_at_the_smallest_sizes_every_box_is_inside_and_the_reader_keeps_it_unchanged(tmp_path, size):
    # The data reader applies Rekognition's rules (a box past the edge is clipped, a 1 px box refused) and lists
    # each decision: at the smallest photos the generator allows, it must have nothing to decide.
    from edgelabels.data.detection import load_detection_dataset

    out = tmp_path / "out"
    generate_cassettes(out, 12, seed=5, size=size, progress=False, boxes=True)
    width, height = size
    written = {}
    for entry in _manifest(out):
        for left, top, w, h in _boxes_of(entry).values():
            assert 0 <= left and left + w <= width and 0 <= top and top + h <= height, (entry["source-ref"], size)
            assert w > 1 and h > 1  # Rekognition refuses a box of 1 px or less
        written[entry["source-ref"]] = sorted(_boxes_of(entry).items())
    dataset = load_detection_dataset(out / BOXES_FILE)
    assert dataset.problems == []
    read = {str(s.path.relative_to(out)): sorted((b.label, (b.left, b.top, b.width, b.height)) for b in s.boxes)
            for s in dataset.samples}
    assert read == written


def test_a_size_below_64_px_is_refused_in_one_line_before_anything_is_written(tmp_path, capsys):
    from edgelabels.cli import main

    assert main(["dataset", "synth-cassettes", str(tmp_path / "out"), "--n", "2", "--size", "48x36", "--boxes"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "edgelabels: error: --size '48x36': width and height must be at least 64 pixels"]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("part", ["cassette", "well"])
def test_box_fits_the_pixels_of_the_repainted_part(positives, monkeypatch, part):
    folder, seed, nuisance = positives
    for entry in _manifest(folder):
        index = _index(entry)
        plain, _ = _render(seed, index, "positive", nuisance)
        monkeypatch.setattr(synthetic, "_draw_cassette", _painted(part))
        marked, _ = _render(seed, index, "positive", nuisance)
        monkeypatch.undo()
        found = _extent(np.abs(plain - marked).max(-1) > 40)
        box = _boxes_of(entry)[part]
        assert _fits(box, found), (index, box, found)
        assert not any(_fits(wrong, found) for wrong in _misplaced(box))  # the check sees a misplaced box


def test_window_box_holds_the_t_line(positives):
    """The T line (where the photo with T differs from the one without) lies inside the window box, on its
    middle (the line's centre is on the window's axis; turned 25 degrees it moves off the box's centre by
    under 0.1 of the box's width), at 0.62-0.70 of the strip's length from C's end as drawn (0.30-0.38 from
    the box's top when the photo is upside down); upright, it runs across the whole box."""
    folder, seed, nuisance = positives

    def holds(box, line, upside_down) -> bool:
        left, top, w, h = box
        inside = (left - 1 <= line[0] and line[0] + line[2] <= left + w + 1 and
                  top - 1 <= line[1] and line[1] + line[3] <= top + h + 1)
        centred = abs(line[0] + line[2] / 2 - (left + w / 2)) <= 0.15 * w + 1
        along = (line[1] + line[3] / 2 - top) / h
        spans = nuisance > 0 or abs(line[0] - left) <= TOLERANCE and abs(line[0] + line[2] - left - w) <= TOLERANCE
        return inside and centred and spans and (0.28 <= along <= 0.42 if upside_down else 0.58 <= along <= 0.72)

    for entry in _manifest(folder):
        index = _index(entry)
        with_t, rotation = _render(seed, index, "positive", nuisance, t_strength=0.9)
        without_t, _ = _render(seed, index, "positive", nuisance, t_strength=0.0)
        upside_down = abs(rotation) > 90
        line = _extent(np.abs(with_t - without_t)[..., 1] > 20)  # the red-purple line absorbs green
        box = _boxes_of(entry)["window"]
        assert holds(box, line, upside_down), (index, box, line)
        assert not any(holds(wrong, line, upside_down) for wrong in _misplaced(box))


def test_same_seed_gives_the_same_manifest_bytes_with_any_number_of_workers(tmp_path):
    generate_cassettes(tmp_path / "a", 4, seed=6, size=(160, 120), progress=False, boxes=True)
    generate_cassettes(tmp_path / "b", 4, seed=6, size=(160, 120), progress=False, boxes=True, workers=2)
    generate_cassettes(tmp_path / "c", 4, seed=7, size=(160, 120), progress=False, boxes=True)
    a, b, c = ((tmp_path / x / BOXES_FILE).read_bytes() for x in "abc")
    assert a == b
    assert a != c


def test_boxes_leave_the_photos_as_they_were(tmp_path):
    generate_cassettes(tmp_path / "plain", 5, seed=3, size=(160, 120), progress=False)
    generate_cassettes(tmp_path / "boxed", 5, seed=3, size=(160, 120), progress=False, boxes=True)

    def photos(root):
        return {p.relative_to(root): p.read_bytes() for p in root.rglob("*.jpg")}

    assert photos(tmp_path / "plain") == photos(tmp_path / "boxed")
    assert not (tmp_path / "plain" / BOXES_FILE).exists()
    marker = json.loads((tmp_path / "boxed" / synthetic.MARKER_FILE).read_text())
    assert marker["boxes"] == BOXES_FILE
    assert "boxes" not in json.loads((tmp_path / "plain" / synthetic.MARKER_FILE).read_text())


def test_interrupted_generation_with_boxes_leaves_no_manifest_and_no_dataset(tmp_path, monkeypatch):
    real, calls = synthetic.cassette_jpeg_with_geometry, []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(synthetic, "cassette_jpeg_with_geometry", failing)
    with pytest.raises(KeyboardInterrupt):
        generate_cassettes(tmp_path / "out", 5, size=(160, 120), progress=False, boxes=True)
    assert list(tmp_path.iterdir()) == []


def test_boxes_must_be_a_bool(tmp_path):
    with pytest.raises(UserError, match="boxes must be True or False") as info:
        generate_cassettes(tmp_path / "out", 2, size=(160, 120), progress=False, boxes="no")
    assert str(tmp_path / "out") in str(info.value)
