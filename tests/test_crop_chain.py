"""A classifier behind a detector (issue 15): `detect:` trains on crops, evaluates, exports both models, and the
edge answers nothing where no box is found.

The detector is helpers.detection's hand-made ONNX export: its "red" box (0.1, 0.2, 0.3, 0.4) scores the
image's mean red, and passes its 0.7 threshold only on reddish images. So which images get a crop is known
in advance: reddish ones are cut to that box, bluish ones get no answer (Rekognition's empty CustomLabels),
are left out of training, and go to a human in evaluation.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgelabels.cli import main
from edgelabels.config import load_config
from edgelabels.evaluate.review import NO_ANSWER
from helpers.detection import write_detector_dir

SIZE = (60, 40)  # the red box is pixels 6..24 x 8..24
BOX = (6, 8, 24, 24)


def _photo(label: str, reddish: bool, rng) -> Image.Image:
    pixels = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
    pixels[...] = (235, 60, 60) if reddish else (40, 60, 230)
    inside = pixels[BOX[1]:BOX[3], BOX[0]:BOX[2]]
    inside[...] = (255, 255, 255) if label == "one" else (90, 0, 0)  # what the reader must tell apart
    inside += rng.integers(0, 20, inside.shape, dtype=np.uint8)
    return Image.fromarray(pixels)


def _folder(root: Path, reddish: int, bluish: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    for label in ("one", "two"):
        (root / label).mkdir(parents=True)
        for i in range(reddish + bluish):
            _photo(label, i < reddish, rng).save(root / label / f"{label}-{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def chained(tmp_path_factory):
    from edgelabels.train.fit import train

    root = tmp_path_factory.mktemp("crop-chain")
    detector = write_detector_dir(root / "detector", size=32)
    train_dir = _folder(root / "train", reddish=10, bluish=1, seed=0)
    fresh = _folder(root / "fresh", reddish=3, bluish=1, seed=1)
    config = load_config(None, [
        f"data.source={train_dir}", f"data.test_source={fresh}", "data.image_size=16", "data.val_fraction=0.25",
        "model.backbone=tinycnn", "model.weights=none", "train.epochs=2", "train.fine_tune_epochs=0",
        "train.batch_size=4", "train.verbose=0", "train.workers=1", f"detect={detector}", "crop.label=red",
        "crop.margin=0", "crop.size=16", "crop.aspect=null"])  # the red box is wider than tall: no cassette window
    run = train(config, root / "run")
    return {"root": root, "run": Path(run), "detector": detector, "fresh": fresh}


def test_crop_is_the_detected_box_of_the_image(chained):
    from edgelabels.runtime.stages import CropBox

    stage = CropBox.load(chained["detector"], {"crop": {"label": "red", "margin": 0, "size": [16, 18],
                                                        "aspect": None}})
    photo = _photo("one", True, np.random.default_rng(7))
    (crop,) = stage.apply([photo])
    expected = np.asarray(photo.crop(BOX).resize((18, 16), Image.Resampling.BILINEAR), np.float32)
    assert crop.size == (18, 16)
    assert np.abs(np.asarray(crop, np.float32) - expected).mean() < 8  # same pixels, resampled two ways
    bluish = _photo("one", False, np.random.default_rng(7))  # mean red about 0.26: under red's 0.7 threshold
    assert stage.apply([bluish]) == [None]
    lower = CropBox.load(chained["detector"], {"crop": {"label": "red", "margin": 0, "size": [16, 18],
                                                        "min_confidence": 0.1, "aspect": None}})
    assert lower.apply([bluish])[0].size == (18, 16)


def test_training_leaves_out_the_images_without_a_box(chained):
    log = (chained["run"] / "train.log").read_text()
    assert "found nothing in 2 training/validation images" in log
    assert "one-10.png" in log and "two-10.png" in log
    stages = json.loads((chained["run"] / "stages.json").read_text())["stages"]
    assert [s["kind"] for s in stages] == ["crop-box"] and stages[0]["crop"]["label"] == "red"


def test_evaluation_sends_images_without_a_box_to_a_human(chained):
    out = chained["root"] / "evaluation"
    assert main(["evaluate", str(chained["run"]), "--review-threshold", "0.99", "--out", str(out),
                 "--gradcam", "0"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["unanswered"] == 2 and metrics["number_of_images"] == 8
    assert all(row["discarded"] >= 2 for row in metrics["coverage"])
    assert any("2 images got no answer" in note for note in metrics["notes"])
    with open(out / "review" / "queue.csv") as f:
        queue = list(csv.DictReader(f))
    no_answer = [row for row in queue if row["reason"] == NO_ANSWER]
    assert sorted(Path(row["path"]).name for row in no_answer) == ["one-03.png", "two-03.png"]
    assert all((out / "review" / row["file"]).is_file() for row in no_answer)
    shown = json.loads((out / "review" / "summary.json").read_text())["no_answer_thumbnails"]
    assert len(shown) == 2 and all((out / t).is_file() for t in shown)
    assert "Photos with no answer" in (out / "report.html").read_text()
    with open(out / "predictions.csv") as f:
        predicted = {Path(row["path"]).name: row["predicted_label"] for row in csv.DictReader(f)}
    assert predicted["one-03.png"] == predicted["two-03.png"] == ""
    assert predicted["one-00.png"] in ("one", "two")


@pytest.fixture(scope="module")
def exported(chained):
    from edgelabels.export.driver import export_run

    return export_run(chained["run"], parity_images=8)


def test_export_ships_both_models_and_the_edge_answers_nothing_without_a_box(chained, exported):
    from edgelabels.runtime.predictor import Predictor

    report, export = exported, chained["run"] / "export"
    assert (export / "stages" / "0" / "model.onnx").is_file()
    assert report["chain"]["chain_parity"]["max_abs_diff"] <= report["chain"]["chain_parity"]["tolerance"]
    assert report["chain"]["chain_parity"]["images"] == 8
    predictor = Predictor(export)
    assert predictor.detect(chained["fresh"] / "one" / "one-03.png", min_confidence=0) == {"CustomLabels": []}
    answered = predictor.detect(chained["fresh"] / "one" / "one-00.png", min_confidence=0)["CustomLabels"]
    assert sorted(label["Name"] for label in answered) == ["one", "two"]
    many = predictor.detect_many([chained["fresh"] / "two" / "two-03.png", chained["fresh"] / "two" / "two-00.png"],
                                 min_confidence=0)
    assert many[0] == {"CustomLabels": []} and len(many[1]["CustomLabels"]) == 2


def test_predict_verb_prints_an_empty_answer_for_an_image_without_a_box(chained, exported, capsys):
    export = chained["run"] / "export"
    assert main(["predict", str(export), str(chained["fresh"] / "two" / "two-03.png")]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["CustomLabels"] == []
