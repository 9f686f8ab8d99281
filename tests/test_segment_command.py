"""`edgelabels segment`: masks at each image's size (0/255 only), overlays, unique names, bad inputs, no TF for ONNX."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

from edgelabels.cli import main
from edgelabels.runtime.overlay import PREDICTED, TRUTH, mask_png, overlay
from helpers.segmentation import DARK, LIGHT, make_export, make_pixel_unet_run, rectangle, write_pair


@pytest.fixture(scope="module")
def unet(tmp_path_factory):
    """A U-Net run that calls dark pixels lung, and its ONNX export."""
    root = tmp_path_factory.mktemp("segment-command")
    paths = [write_pair(root / "data", f"{name}.png", rectangle((32, 32), (8, 24), (4, 14)),
                        rectangle((32, 32), (8, 24), (4, 14))) for name in ("a", "b")]
    run = make_pixel_unet_run(root / "run", paths)
    return {"run": run, "export": make_export(run)}


def write_xray(path, size=(48, 40), box=(10, 8, 30, 32)) -> np.ndarray:
    """A light image (width, height) with a dark box (left, top, right, bottom); returns where the box is."""
    dark = np.zeros(size[::-1], bool)
    dark[box[1]:box[3], box[0]:box[2]] = True
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.where(dark, DARK, LIGHT).astype(np.uint8)).save(path)
    return dark


def test_mask_png_is_0_and_255_with_the_threshold_inclusive():
    mask = np.asarray(mask_png(np.array([[0.2, 0.5], [0.7, 0.49]]), 0.5))
    assert mask.tolist() == [[0, 255], [255, 0]]


def test_overlay_tints_only_the_prediction_and_outlines_the_truth():
    image = Image.fromarray(np.full((40, 40), 100, np.uint8))
    probability = np.zeros((40, 40))
    probability[10:30, 10:20] = 0.9
    truth = rectangle((40, 40), (10, 30), (22, 32))  # a truth box beside the prediction
    picture = np.asarray(overlay(image, probability, truth)).astype(int)
    assert picture.shape == (40, 40, 3)
    assert (picture[0, 0] == 100).all() and (picture[20, 27] == 100).all()  # grey where nothing is drawn
    inside = picture[20, 15]
    assert inside[0] > 100 > inside[2]  # tinted orange, and the X-ray still shows through
    assert picture[10, 15].tolist() == PREDICTED.astype(int).tolist()  # predicted outline
    assert picture[20, 22].tolist() == TRUTH.astype(int).tolist()  # truth outline
    plain = np.asarray(overlay(image, probability)).astype(int)
    assert (plain[20, 22] == 100).all()  # no truth given: nothing drawn there


def test_segment_writes_masks_at_each_image_size_and_overlays(unet, tmp_path, capsys):
    dark = write_xray(tmp_path / "in" / "x1.png", size=(48, 40))
    write_xray(tmp_path / "in" / "deep" / "x2.jpg", size=(60, 64), box=(20, 16, 40, 48))
    assert main(["segment", str(unet["export"]), str(tmp_path / "in"), "--out", str(tmp_path / "out")]) == 0
    assert "segmented 2 images" in capsys.readouterr().out
    mask = np.asarray(Image.open(tmp_path / "out" / "x1.mask.png"))
    assert mask.shape == (40, 48) and set(np.unique(mask)) == {0, 255}
    # The dark box is the lung; one pixel of slack at its edges for the 48x40 -> 32x32 -> 48x40 resizes.
    assert np.mean((mask == 255) == dark) > 0.95
    assert (mask[12:28, 14:26] == 255).all() and (mask[:, :6] == 0).all()
    with Image.open(tmp_path / "out" / "deep" / "x2.mask.png") as deep:
        assert deep.size == (60, 64)
    picture = np.asarray(Image.open(tmp_path / "out" / "x1.overlay.png")).astype(int)
    assert picture.shape == (40, 48, 3)
    assert picture[20, 20, 0] > picture[20, 20, 2]  # lung: orange tint
    assert picture[2, 2, 0] == picture[2, 2, 2] == LIGHT  # background: the X-ray's own grey


def test_same_file_names_from_two_folders_get_distinct_outputs(unet, tmp_path, capsys):
    write_xray(tmp_path / "one" / "p1.png")
    write_xray(tmp_path / "two" / "p1.png", box=(0, 0, 10, 10))
    assert main(["segment", str(unet["run"]), str(tmp_path / "one"), str(tmp_path / "two"),
                 "--out", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "p1-2.mask.png", "p1-2.overlay.png", "p1.mask.png", "p1.overlay.png"]
    assert "p1-2.mask.png (name taken)" in capsys.readouterr().err
    # Each output is its own image's: the second box is in the top-left corner.
    assert np.asarray(Image.open(tmp_path / "out" / "p1-2.mask.png"))[3, 3] == 255
    assert np.asarray(Image.open(tmp_path / "out" / "p1.mask.png"))[3, 3] == 0


def test_a_second_run_does_not_segment_the_first_runs_outputs(unet, tmp_path, capsys):
    write_xray(tmp_path / "in" / "x.png")
    for _ in range(2):
        assert main(["segment", str(unet["export"]), str(tmp_path / "in"), "--out", str(tmp_path / "in" / "seg")]) == 0
        assert "segmented 1 image " in capsys.readouterr().out


def test_bad_images_are_reported_and_the_others_still_written(unet, tmp_path, capsys):
    write_xray(tmp_path / "in" / "good.png")
    (tmp_path / "in" / "broken.png").write_bytes(b"not an image")
    code = main(["segment", str(unet["export"]), str(tmp_path / "in"), str(tmp_path / "missing.png"),
                 "--out", str(tmp_path / "out")])
    assert code == 2
    err = capsys.readouterr().err
    assert "broken.png: not a PNG or JPEG image" in err and "missing.png: no such file or folder" in err
    assert "2 of 3 images failed" in err
    assert (tmp_path / "out" / "good.mask.png").is_file() and not (tmp_path / "out" / "broken.mask.png").exists()


def test_missing_or_classification_models_are_one_line_errors(unet, tmp_path, capsys):
    image = tmp_path / "x.png"
    write_xray(image)
    classifier = make_pixel_unet_run(tmp_path / "classifier", [image, image.with_name("y.png")],
                                     task="classification")
    (classifier / "export").mkdir()
    for name in ("model.onnx", "preprocess.json"):
        (classifier / "export" / name).write_bytes((unet["export"] / name).read_bytes())
    cases = {tmp_path / "nowhere": "no such run directory or export folder", classifier: "a classification run, not a U-Net",
             classifier / "export": "an export of a classification run"}
    for model, message in cases.items():
        assert main(["segment", str(model), str(image), "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    assert main(["segment", str(unet["export"]), str(image), "--out", str(tmp_path / "o"), "--threshold", "50"]) == 2
    assert "--threshold must be between 0 and 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_export_is_segmented_without_tensorflow_or_keras(unet, tmp_path):
    write_xray(tmp_path / "in" / "x.png")
    script = textwrap.dedent(f"""
        import sys
        from edgelabels.cli import main
        args = ["segment", {str(unet["export"])!r}, {str(tmp_path / "in")!r}, "--out", {str(tmp_path / "out")!r}]
        assert main(args) == 0
        loaded = [name for name in ("tensorflow", "keras") if name in sys.modules]
        assert not loaded, loaded
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "out" / "x.mask.png").is_file()
