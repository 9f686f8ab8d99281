"""Detection on the edge: the Detector's DetectCustomLabels answers, `predict` (--json-beside, --draw, --watch),
`serve` through boto3, and `export` of a (tiny, untrained) detector checked against Keras.

The edge tests run a hand-built ONNX detector (tests/helpers/detection.py): four fixed boxes whose scores are
channel means of the image, so every expected answer below is worked out by hand from the colour.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgelabels.cli import main
from edgelabels.errors import UserError
from edgelabels.runtime.detector import Detector
from helpers.datasets import SHARED_DATA
from helpers.detection import solid_image, write_detector_dir

FIXTURE = SHARED_DATA.parent / "fixtures" / "rekognition" / "detect-custom-labels-response-detection.json"
# Channel means 0.8, 0.2, 0.4 -> scores: red box 0.8, green 0.2, blue 0.4, the small red box 0.75 * 0.8 = 0.6.
COLOUR = (204, 51, 102)
RED_BOX = {"Width": 0.3, "Height": 0.4, "Left": 0.1, "Top": 0.2}
GREEN_BOX = {"Width": 0.5, "Height": 0.5, "Left": 0.5, "Top": 0.5}  # (0.5, 0.5, 0.6, 0.6) clipped at 1
BLUE_BOX = {"Width": 0.2, "Height": 0.2, "Left": 0.0, "Top": 0.0}  # (-0.1, 0.0, 0.3, 0.2) clipped at 0
SMALL_RED_BOX = {"Width": 0.2, "Height": 0.2, "Left": 0.2, "Top": 0.2}


@pytest.fixture(scope="module")
def detector_dir(tmp_path_factory) -> Path:
    return write_detector_dir(tmp_path_factory.mktemp("detector") / "boxes" / "export")


def _expected(*entries):
    return [{"Name": name, "Confidence": pytest.approx(confidence, abs=1e-3),
             "Geometry": {"BoundingBox": {k: pytest.approx(v, abs=1e-6) for k, v in box.items()}}}
            for name, confidence, box in entries]


def _png(path: Path, colour=COLOUR, size=(100, 60)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    solid_image(colour, size).save(path)
    return path


# -- the Detector ------------------------------------------------------------------------------

def test_detect_answers_in_the_shape_of_rekognitions_documented_detection_response(detector_dir):
    documented = json.loads(FIXTURE.read_text()) if FIXTURE.is_file() else pytest.skip("no Rekognition fixtures")
    answer = Detector(detector_dir).detect(solid_image(COLOUR), min_confidence=0)

    def shape(entry):  # key names, order and nesting; value types
        box = entry["Geometry"]["BoundingBox"]
        return list(entry), list(entry["Geometry"]), list(box), [type(v) for v in box.values()], \
            type(entry["Confidence"])

    assert list(answer) == list(documented) == ["CustomLabels"]
    found = answer["CustomLabels"]
    assert found and all(shape(e) == shape(documented["CustomLabels"][0]) for e in found)


def test_omitted_min_confidence_applies_each_labels_assumed_threshold(detector_dir):
    # thresholds red 0.7, green 0.1, blue 0.5: red 0.8 passes, the small red 0.6 does not, green 0.2 passes,
    # blue 0.4 does not.
    answer = Detector(detector_dir).detect(solid_image(COLOUR))
    assert answer["CustomLabels"] == _expected(("red", 80, RED_BOX), ("green", 20, GREEN_BOX))


def test_min_confidence_and_max_results_keep_rekognitions_meaning_one_entry_per_box(detector_dir):
    detector = Detector(detector_dir)
    image = solid_image(COLOUR)
    everything = _expected(("red", 80, RED_BOX), ("red", 60, SMALL_RED_BOX), ("blue", 40, BLUE_BOX),
                           ("green", 20, GREEN_BOX))
    assert detector.detect(image, min_confidence=0)["CustomLabels"] == everything  # sorted, though the model is not
    assert detector.detect(image, min_confidence=30)["CustomLabels"] == everything[:3]
    assert detector.detect(image, min_confidence=0, max_results=2)["CustomLabels"] == everything[:2]
    assert detector.detect(image, min_confidence=100)["CustomLabels"] == []
    # Another colour, other answers: a blue image finds the blue box first.
    blue = detector.detect(solid_image((0, 0, 255)), min_confidence=50)["CustomLabels"]
    assert blue == _expected(("blue", 100, BLUE_BOX))
    with pytest.raises(UserError, match="MinConfidence"):
        detector.detect(image, min_confidence=101)


def test_custom_labels_clips_boxes_drops_those_outside_the_image_and_refuses_unknown_class_ids(detector_dir):
    detector = Detector(detector_dir)
    rows = np.array([[-0.5, -0.25, 1.0, 1.0, 0.9, 1],  # -> (0, 0, 0.5, 0.75)
                     [1.2, 0.1, 0.1, 0.1, 0.95, 0],  # wholly right of the image: no answer
                     [0.25, 0.5, 0.5, 0.25, 0.3, 2]], np.float32)
    assert detector.custom_labels(rows, min_confidence=0) == _expected(
        ("green", 90, {"Width": 0.5, "Height": 0.75, "Left": 0.0, "Top": 0.0}),
        ("blue", 30, {"Width": 0.5, "Height": 0.25, "Left": 0.25, "Top": 0.5}))
    with pytest.raises(UserError, match="class id 3 but labels.json names 3 labels"):
        detector.custom_labels(np.array([[0.1, 0.1, 0.2, 0.2, 0.9, 3]]), min_confidence=0)


def test_batched_detections_equal_one_image_at_a_time(detector_dir, tmp_path):
    detector = Detector(detector_dir)
    paths = [_png(tmp_path / f"{i}.png", colour) for i, colour in
             enumerate([COLOUR, (0, 0, 255), (10, 250, 30), (128, 128, 128)])]
    batched = detector.detect_many(paths, min_confidence=0, batch_size=3)
    for answer, path in zip(batched, paths, strict=True):  # a batch rounds ReduceMean differently: 1e-6 apart
        one = detector.detect(path, min_confidence=0)["CustomLabels"]
        assert answer["CustomLabels"] == _expected(*[(e["Name"], e["Confidence"], e["Geometry"]["BoundingBox"])
                                                     for e in one])
    assert detector.detections(paths).shape == (4, 4, 6)


def test_a_classifier_export_is_refused_with_the_verb_that_runs_it(tmp_path):
    from helpers.server import write_model_dir

    with pytest.raises(UserError, match="a classifier export, not a detector"):
        Detector(write_model_dir(tmp_path / "colours"))


# -- predict -----------------------------------------------------------------------------------

def _lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_predict_prints_boxes_and_json_beside_writes_image_json_next_to_each_image(detector_dir, tmp_path, capsys):
    photos = [_png(tmp_path / "photos" / "a.png"), _png(tmp_path / "photos" / "deeper" / "b.png", (0, 0, 255))]
    assert main(["predict", str(detector_dir), str(tmp_path / "photos"), "--json-beside"]) == 0
    printed = _lines(capsys.readouterr().out)
    assert [line["Image"] for line in printed] == [str(p) for p in photos]
    assert printed[0]["CustomLabels"] == _expected(("red", 80, RED_BOX), ("green", 20, GREEN_BOX))
    assert printed[1]["CustomLabels"] == _expected(("blue", 100, BLUE_BOX))
    for photo, line in zip(photos, printed):
        assert json.loads(photo.with_name(photo.name + ".json").read_text()) == line
    assert not [p for p in (tmp_path / "photos").rglob(".*")]  # atomic writes left no temp file


def test_draw_writes_each_image_with_its_boxes_where_the_ratios_say(detector_dir, tmp_path, capsys):
    from edgelabels.runtime.overlay import PREDICTED

    photo = _png(tmp_path / "in" / "a.png", size=(200, 120))
    assert main(["predict", str(detector_dir), str(photo), "--draw", str(tmp_path / "drawn")]) == 0
    capsys.readouterr()
    drawn = np.asarray(Image.open(tmp_path / "drawn" / "a.png").convert("RGB"))
    assert drawn.shape == (120, 200, 3)
    orange = tuple(int(c) for c in PREDICTED)
    # The red box (0.1, 0.2, 0.3, 0.4) of a 200x120 image spans x 20-79, y 24-71; the green one x 100-199, y 60-119.
    assert tuple(drawn[48, 20]) == orange and tuple(drawn[48, 79]) == orange  # its left and right edges
    assert tuple(drawn[71, 50]) == orange  # its bottom edge
    assert tuple(drawn[90, 199]) == orange and tuple(drawn[119, 150]) == orange  # green's right and bottom edges
    assert tuple(drawn[48, 50]) == COLOUR  # inside the red box: untouched
    assert tuple(drawn[100, 10]) == COLOUR  # outside every box and caption
    assert tuple(drawn[10, 180]) == COLOUR  # the small red and blue boxes were under their thresholds
    from helpers.server import write_model_dir

    classifier = write_model_dir(tmp_path / "colours")
    assert main(["predict", str(classifier), str(photo), "--draw", str(tmp_path / "x")]) == 2
    assert "--draw draws boxes" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_watch_answers_a_detector_with_boxes(detector_dir, tmp_path):
    from edgelabels.serve.watch import FolderWatcher

    folder = tmp_path / "inbox"
    _png(folder / "a.png")
    printed = []
    watcher = FolderWatcher(Detector(detector_dir), folder, settle=0.0, emit=printed.append)
    watcher.step()  # first sight
    assert watcher.step() == 1  # unchanged since: processed
    assert watcher.step() == 0  # exactly once
    result = json.loads((folder / "results" / "a.png.json").read_text())
    assert [json.loads(line) for line in printed] == [result]
    assert result["CustomLabels"] == _expected(("red", 80, RED_BOX), ("green", 20, GREEN_BOX))


# -- serve -------------------------------------------------------------------------------------

def test_serve_answers_detectcustomlabels_with_boxes_equal_to_detector_detect(detector_dir):
    for needed in ("boto3", "starlette", "uvicorn"):
        pytest.importorskip(needed)
    from helpers.server import ServerProcess, image_bytes, rekognition_client

    detector = Detector(detector_dir)
    server = ServerProcess(detector_dir, "--no-access-log")
    try:
        client = rekognition_client(server.url)
        images = [image_bytes(COLOUR, size=(96, 80)), image_bytes((30, 40, 230), size=(300, 120), fmt="JPEG"),
                  image_bytes((30, 220, 40), size=(64, 64))]
        for data in images:
            for options in ({}, {"MinConfidence": 0}, {"MinConfidence": 35.5}, {"MinConfidence": 0, "MaxResults": 2}):
                answer = client.detect_custom_labels(ProjectVersionArn=server.arn, Image={"Bytes": data}, **options)
                expected = detector.detect(data, min_confidence=options.get("MinConfidence"),
                                           max_results=options.get("MaxResults"))
                assert answer["CustomLabels"] == expected["CustomLabels"], options
        # Not vacuous: the noisy COLOUR image gets the red and green boxes at about 80 and 20.
        answer = client.detect_custom_labels(ProjectVersionArn=server.arn, Image={"Bytes": images[0]})
        assert [(e["Name"], e["Geometry"]["BoundingBox"]) for e in answer["CustomLabels"]] == \
            [("red", pytest.approx(RED_BOX, abs=1e-6)), ("green", pytest.approx(GREEN_BOX, abs=1e-6))]
        assert [e["Confidence"] for e in answer["CustomLabels"]] == pytest.approx([80, 20], abs=2)
    finally:
        server.stop()


# -- export ------------------------------------------------------------------------------------

def test_int8_ships_only_faster_and_within_one_point_of_validation_map():
    from edgelabels.export.detection import HOOKS

    detection_int8_verdict = HOOKS.int8.verdict

    assert detection_int8_verdict(10.0, 5.0, 0.900, 0.891)[0]  # 0.9 points lost: ships
    shipped, reason = detection_int8_verdict(10.0, 5.0, 0.900, 0.889)  # 1.1 points lost
    assert not shipped and "-1.1 points, more than 1" in reason
    assert not detection_int8_verdict(10.0, 10.0, 0.9, 0.95)[0]  # not faster: never, however accurate
    assert not detection_int8_verdict(10.0, 5.0, None, None)[0]  # no validation boxes: no evidence
    assert detection_int8_verdict(10.0, 5.0, 0.5, 0.6)[1].startswith("INT8 shipped: 2.0x faster")


def _detection_run(folder: Path) -> Path:
    """A run directory (through RunDir's writers) holding an untrained tinycnn detector: 64x64 input, photos
    80x64 with one or two squares, boxes in pixels. The size head gets a bias, so that boxes are not empty, and
    the heatmap head larger kernels, so that scores are not all tied."""
    import keras

    from edgelabels.artifacts import RunDir
    from edgelabels.data.dataset import Box, Sample
    from edgelabels.data.splits import Split
    from edgelabels.models.backbones import get_backbone
    from edgelabels.models.detector import build_detector

    rng = np.random.default_rng(0)
    samples = []
    for i in range(9):
        pixels = np.clip(rng.normal(128, 20, (64, 80, 3)), 0, 255)
        boxes = []
        for label, colour in (("red", (220, 40, 40)), ("blue", (40, 60, 220)))[: 1 + i % 2]:
            left, top = (int(v) for v in rng.integers(0, 40, 2))
            pixels[top:top + 20, left:left + 16] = colour
            boxes.append(Box(label, left, top, 16, 20))
        path = folder / "photos" / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels.astype(np.uint8)).save(path)
        samples.append(Sample(path, tuple(sorted({b.label for b in boxes})), str(i), tuple(boxes)))
    keras.utils.set_random_seed(0)
    model = build_detector("tinycnn", 2, 64, 64, weights=None)
    size = model.get_layer("size")
    size.set_weights([w + 0.25 if w.ndim == 1 else w for w in size.get_weights()])
    # The heads start nearly flat (CenterNet's std-0.001 kernels): scaled up, the heatmap has distinct peaks, so
    # parity compares real boxes, not near-ties at the tail of top-K.
    heatmap = model.get_layer("heatmap")
    heatmap.set_weights([w * 1000 if w.ndim > 1 else w for w in heatmap.get_weights()])
    run = RunDir(folder / "run")
    run.start("task: detection\nmodel:\n  backbone: tinycnn\n  weights: none\n  max_detections: 20\n"
              "data:\n  image_size: [64, 64]\n")
    run.write_split(Split(train=samples[:5], val=samples[5:8], test=samples[8:]))
    run.write_labels(["red", "blue"])
    run.write_preprocess(get_backbone("tinycnn").preprocess_spec(64, 64, grayscale=False))
    model.save(run.model_path)
    return run.dir


@pytest.mark.slow
def test_export_detection_matches_keras_and_the_detector_answers_from_the_folder(tmp_path, monkeypatch):
    import onnx

    from edgelabels.artifacts import ExportDir, RunDir
    from edgelabels.evaluate import detection_metrics
    from edgelabels.export.driver import export_lines as show_detection
    from edgelabels.export.driver import export_run
    from edgelabels.models.detector import inference_model
    from edgelabels.models.factory import load_model
    from edgelabels.runtime.calibration import read_calibration

    run = RunDir(_detection_run(tmp_path))
    if not any(s.boxes for s in run.split.val):
        pytest.fail("the run's split files lost the boxes (data/splits.py must keep them: splits/boxes.jsonl)")
    seen = []
    real = detection_metrics.assumed_thresholds
    monkeypatch.setattr(detection_metrics, "assumed_thresholds",
                        lambda truth, *rest, **kw: seen.append(truth) or real(truth, *rest, **kw))
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    report = export_run(run.dir, int8=True, calibration=4, parity_images=6)
    assert list(workdir.iterdir()) == []  # quantization leaves no temp files where the command was run

    export = ExportDir.load(run.export_dir)
    assert export.task == "detection" and export.labels == ["red", "blue"]
    assert [o.name for o in onnx.load(str(export.model_path)).graph.output] == ["detections"]
    p = report["parity"]
    assert p["images"] == 6 and p["rows_compared"] > 0 and p["max_abs_diff"] <= 1e-3
    # The validation truth handed to the thresholds is in ratios of each 80x64 image, labels as class indices.
    val = run.split.val
    assert len(seen) == 1 and len(seen[0]) == len(val)
    for (labels, boxes), sample in zip(seen[0], val):
        assert list(labels) == [["red", "blue"].index(b.label) for b in sample.boxes]
        np.testing.assert_allclose(boxes, [[b.left / 80, b.top / 64, 16 / 80, 20 / 64] for b in sample.boxes])
    thresholds = export.read_thresholds()
    assert set(thresholds) == {"red", "blue"} and all(0 <= v <= 1 for v in thresholds.values())
    assert report["int8"]["attempted"] and report["int8"]["shipped"] == export.int8_path.is_file()

    # Independently of the parity code: each image's scores, sorted, agree with the Keras inference model's.
    keras_model = inference_model(load_model(run.model_path), 20)
    detector = Detector(export.dir, precision="fp32")
    paths = [s.path for s in run.split.train]
    x = np.stack([detector.prepare(path) for path in paths])
    reference, candidate = np.asarray(keras_model.predict_on_batch(x)), detector.run(x)
    calibration = read_calibration(export.calibration_path)  # the edge answers calibrated scores: undo that map
    if calibration is not None:
        candidate = calibration.raw(candidate)
    assert candidate.shape == reference.shape == (len(paths), 20, 6)
    np.testing.assert_allclose(np.sort(candidate[..., 4], axis=1), np.sort(reference[..., 4], axis=1), atol=1e-4)
    assert reference[..., 4].std() > 1e-3  # the scores vary: the comparison means something
    answer = detector.detect(paths[0], min_confidence=0)["CustomLabels"]
    assert len(answer) == 20 and all(e["Geometry"]["BoundingBox"]["Width"] > 0 for e in answer)
    lines = show_detection(report, export.dir)
    assert lines[0].startswith(f"wrote {export.dir}/: model.onnx") and any("parity" in line for line in lines)
