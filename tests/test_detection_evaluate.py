"""A detector's evaluation folder from hand-made predictions: summary, metrics, manifest flags, plots, report."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgelabels.data.dataset import Box, Sample
from edgelabels.errors import UserError
from edgelabels.evaluate.detection import lines as detection_lines
from edgelabels.evaluate.detection import write_detection_evaluation
from edgelabels.evaluate.driver import evaluate_model
from edgelabels.evaluate.summary import read_summary

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "rekognition"
SCHEMA = FIXTURES / "evaluation-summary-nested-metrics.json"
SNAPSHOT = FIXTURES / "evaluation-manifest-snapshot.jsonl"
LABELS = ["bee", "wasp", "moth"]
WHEN = datetime(2026, 12, 2, 3, 0, tzinfo=timezone.utc)


def _hand_case(tmp_path):
    """Three test images, boxes in pixels, predictions in ratios, worked out by hand:

    img0 64x64: bees at (8, 8, 16, 16) and (40, 40, 16, 16). Predicted: bee 0.9 exactly on the first (TP),
      wasp 0.8 at (40, 8, 16, 16) where there is none (FP), bee 0.6 at (48, 48, 16, 16): IoU 64/448 with the
      second bee (FP at any threshold; that bee is missed).
    img1 80x40: wasp at (20, 10, 20, 20); predicted exactly, 0.7 (TP). Not square: ratios differ per axis.
    img2 64x64: no boxes (a negative); predicted bee 0.95 (FP).
    bee F1 by threshold: 0.95 -> 0, 0.9 -> 2/4, 0.6 -> 2/5: assumed 0.9 (P 1/2, R 1/2).
    wasp: 0.8 -> 0, 0.7 -> 2/3: assumed 0.7 (P 1/2, R 1). moth: nothing either way.
    """
    def image(name, size):
        path = tmp_path / "images" / name
        path.parent.mkdir(exist_ok=True)
        rng = np.random.default_rng(len(name))
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
        return path

    samples = [
        Sample(image("img0.png", (64, 64)), ("bee",), "g0", (Box("bee", 8, 8, 16, 16), Box("bee", 40, 40, 16, 16))),
        Sample(image("img1.png", (80, 40)), ("wasp",), "g1", (Box("wasp", 20, 10, 20, 20),)),
        Sample(image("img2.png", (64, 64)), (), "g2", ()),
    ]
    predictions = [
        np.array([[8 / 64, 8 / 64, 0.25, 0.25, 0.9, 0], [40 / 64, 8 / 64, 0.25, 0.25, 0.8, 1],
                  [0.75, 0.75, 0.25, 0.25, 0.6, 0], [0.0, 0.0, 0.1, 0.1, 0.01, 2]]),
        np.array([[0.25, 0.25, 0.25, 0.5, 0.7, 1]]),
        np.array([[0.0, 0.0, 0.5, 0.5, 0.95, 0]]),
    ]
    return samples, predictions


@pytest.fixture
def hand_case(tmp_path):
    return _hand_case(tmp_path)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """Written once for the tests that read it (plots take seconds); they only read."""
    tmp_path = tmp_path_factory.mktemp("evaluated")
    samples, predictions = _hand_case(tmp_path)
    out = tmp_path / "evaluation"
    result = write_detection_evaluation(out, samples=samples, predictions=predictions, labels=LABELS,
                                        run_id="runs/bees", number_of_training_images=70, min_confidence=0.5,
                                        created=WHEN, context={"model": "hand-made", "data": "three images"})
    return out, result


def _keys(value):
    """The nested key structure (first element of lists), without values; a class-map's keys are its labels."""
    if isinstance(value, dict):
        return {k: None if k == "class-map" else _keys(v) for k, v in value.items()}
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return [_keys(value[0])]
    return None


@pytest.mark.skipif(not SCHEMA.exists(), reason="../shared/fixtures/rekognition is absent")
def test_summary_has_the_schema_names_and_rekognition_detection_values(evaluated):
    out, _ = evaluated
    summary = json.loads((out / "summary.json").read_text())
    schema = _keys(json.loads(SCHEMA.read_text()))
    del schema["AggregatedEvaluationResults"]["Metrics"]["ConfusionMatrix"]  # boxes have no image confusion matrix
    schema["EvaluationDetails"].update({"IoU": None, "Matching": None})  # ours: Rekognition documents no IoU
    assert _keys(summary) == schema

    aggregate = summary["AggregatedEvaluationResults"]["Metrics"]
    assert aggregate["AveragePrecision"] == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert aggregate["AverageRecall"] == pytest.approx((1 / 2 + 1) / 2)
    assert aggregate["F1Score"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    details = summary["EvaluationDetails"]
    assert details["IoU"] == 0.5 and details["NumberOfTestingImages"] == 3 and details["NumberOfTrainingImages"] == 70
    assert details["EvaluationEndTimestamp"] == "2026-12-02T03:00:00.000000"
    by_label = {r["Label"]: r for r in summary["LabelEvaluationResults"]}
    assert [r["Label"] for r in summary["LabelEvaluationResults"]] == ["wasp", "bee", "moth"]  # best F1 first
    assert by_label["bee"]["Metrics"] == {"Threshold": 0.9, "Precision": 0.5, "Recall": 0.5, "F1Score": 0.5}
    assert by_label["wasp"]["Metrics"] == pytest.approx({"Threshold": 0.7, "Precision": 0.5, "Recall": 1.0,
                                                         "F1Score": 2 / 3})
    assert by_label["moth"]["Metrics"] == {"Threshold": None, "Precision": None, "Recall": None, "F1Score": None}
    assert [by_label[n]["NumberOfTestingImages"] for n in LABELS] == [1, 1, 0]
    # The project's own reader takes it (what export and benchmark read thresholds with).
    assert read_summary(out / "summary.json").thresholds == {"wasp": 0.7, "bee": 0.9, "moth": None}


def test_metrics_hold_coco_map_counts_and_both_thresholds(evaluated):
    out, _ = evaluated
    metrics = json.loads((out / "metrics.json").read_text())
    # COCO, 101 recall points: bee reaches recall 1/2 at precision 1/2 (51 points x 0.5); wasp recall 1 at
    # precision 1/2 (101 points x 0.5). Boxes are exact, so every IoU threshold agrees.
    assert metrics["map_50"] == pytest.approx((25.5 / 101 + 50.5 / 101) / 2)
    assert metrics["map_50_95"] == pytest.approx(metrics["map_50"])
    assert (metrics["iou"], metrics["number_of_boxes"], metrics["number_of_negative_images"]) == (0.5, 3, 1)
    bee = metrics["per_label"][0]
    assert (bee["label"], bee["boxes"], bee["images"], bee["predictions"]) == ("bee", 2, 1, 3)
    assert bee["at_assumed_threshold"] | {} == {"threshold": 0.9, "precision": 0.5, "recall": 0.5, "f1": 0.5,
                                                "tp": 1, "fp": 1, "fn": 1}
    # At --min-confidence 0.5 the bee at 0.6 is returned too: one more false positive.
    assert bee["at_min_confidence"]["fp"] == 2 and bee["at_min_confidence"]["precision"] == pytest.approx(1 / 3)
    at_09 = next(row for row in bee["by_threshold"] if row["threshold"] == 0.9)
    assert (at_09["tp"], at_09["fp"]) == (1, 1)
    moth = metrics["per_label"][2]
    assert moth["at_min_confidence"] == {"threshold": 0.5, "precision": None, "recall": None, "f1": None,
                                         "tp": 0, "fp": 0, "fn": 0}  # its one prediction scores 0.01
    assert any("moth" in note for note in metrics["notes"])
    assert [(r["tp"], r["fp"], r["fn"]) for r in metrics["per_image"]] == [(1, 1, 1), (1, 0, 0), (0, 1, 0)]


@pytest.mark.skipif(not SNAPSHOT.exists(), reason="../shared/fixtures/rekognition is absent")
def test_manifest_lines_follow_aws_detection_entry_with_per_box_flags(evaluated):
    out, _ = evaluated
    lines = [json.loads(line) for line in (out / "evaluation-manifest.jsonl").read_text().splitlines()]
    aws = json.loads(SNAPSHOT.read_text().splitlines()[1])
    assert len(lines) == 3
    assert _keys(lines[0]) == _keys(aws)

    def boxes(line, attribute):
        return [(a["class_id"], a["left"], a["top"], a["width"], a["height"]) for a in line[attribute]["annotations"]]

    def flags(line):
        return [(o["confidence"], o["rekognition-custom-labels-evaluation-details"]["is-true-positive"],
                 o["rekognition-custom-labels-evaluation-details"]["is-false-positive"],
                 o["rekognition-custom-labels-evaluation-details"]["is-false-negative"],
                 o["rekognition-custom-labels-evaluation-details"]["is-present-in-ground-truth"])
                for o in line["rekognition-custom-labels-evaluation-metadata"]["objects"]]

    img0, img1, img2 = lines
    assert boxes(img0, "rekognition-custom-labels-training-0") == [(0, 8, 8, 16, 16), (0, 40, 40, 16, 16)]
    # Returned at the assumed thresholds (bee 0.9, wasp 0.7): the bee at 0.6 is not; then the missed bee.
    assert boxes(img0, "rekognition-custom-labels-evaluation") == [(0, 8, 8, 16, 16), (1, 40, 8, 16, 16),
                                                                   (0, 40, 40, 16, 16)]
    assert flags(img0) == [(0.9, True, False, False, True), (0.8, False, True, False, False),
                           (0.0, False, False, True, True)]
    assert img0["rekognition-custom-labels-evaluation-metadata"]["confidence"] == 0.9
    assert img0["rekognition-custom-labels-evaluation-metadata"]["class-map"] == {"0": "bee", "1": "wasp", "2": "moth"}
    assert boxes(img1, "rekognition-custom-labels-evaluation") == [(1, 20, 10, 20, 20)]  # back to pixels of 80x40
    assert img1["rekognition-custom-labels-training-0"]["image_size"] == [{"width": 80, "height": 40, "depth": 3}]
    assert flags(img1) == [(0.7, True, False, False, True)]
    assert boxes(img2, "rekognition-custom-labels-training-0") == []
    assert flags(img2) == [(0.95, False, True, False, False)]
    assert img0["source-ref"].endswith("img0.png")


def test_plots_gallery_and_report_are_written_worst_first(evaluated):
    out, result = evaluated
    for name in ("precision_recall.png", "precision_recall_vs_threshold.png"):
        with Image.open(out / "plots" / name) as plot:
            assert plot.width > 400 and plot.height > 300
        assert (out / "plots" / name).stat().st_size > 10_000  # curves and text, not an empty canvas
    assert result["plots"]["precision_recall"] == out / "plots" / "precision_recall.png"
    gallery = sorted(p.name for p in (out / "gallery").iterdir())
    assert gallery == ["01-fp1-fn1-img0.png", "02-fp1-fn0-img2.png", "03-fp0-fn0-img1.png"]
    with Image.open(out / "gallery" / gallery[0]) as drawn:
        pixels = np.asarray(drawn.convert("RGB"))
    # The missed bee's ground-truth outline (blue) and the returned bee's box (orange) are drawn.
    assert (pixels == (30, 144, 255)).all(axis=2).sum() > 30
    assert (pixels == (255, 140, 0)).all(axis=2).sum() > 30
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2 + 3
    assert "COCO mAP@0.5" in html and "wasp" in html and "IoU &gt;= 0.5" in html
    assert (out / "report.md").read_text().count("](gallery/") == 3


def test_detection_lines_show_per_label_metrics_map_and_the_report(evaluated):
    out, result = evaluated
    lines = detection_lines(result)
    text = "\n".join(lines)
    # each headline figure followed by its bootstrap interval
    assert "average precision 0.5000 (95% CI 0.000-1.000), average recall 0.7500 (95% CI " in text
    assert "F1 0.5833 (95% CI " in text
    assert f"COCO mAP@0.5 {(25.5 / 101 + 50.5 / 101) / 2:.4f} (95% CI " in text
    bee = next(line for line in lines if line.startswith("bee "))
    assert bee.split() == ["bee", "2", "0.9000", "0.5000", "0.5000", "0.5000", f"{25.5 / 101:.4f}"]
    assert lines[-1].endswith(f"{out / 'report.html'})")


def test_labels_the_model_does_not_know_are_refused(tmp_path, hand_case):
    samples, predictions = hand_case
    with pytest.raises(UserError, match="wasp"):
        write_detection_evaluation(tmp_path / "e", samples=samples, predictions=predictions, labels=["bee", "moth"],
                                   run_id="r")


def test_a_model_that_finds_nothing_is_scored_zero_not_an_error(tmp_path, hand_case):
    samples, _ = hand_case
    empty = [np.zeros((0, 6))] * len(samples)
    result = write_detection_evaluation(tmp_path / "e", samples=samples, predictions=empty, labels=LABELS,
                                        run_id="r")
    bee = result["metrics"]["per_label"][0]
    assert bee["assumed_threshold"] is None and bee["at_assumed_threshold"]["recall"] == 0.0
    assert bee["at_assumed_threshold"]["fn"] == 2 and result["metrics"]["map_50"] == 0.0
    assert "bee: never predicted" in result["metrics"]["notes"]
    assert (tmp_path / "e" / "report.html").is_file()


# ---- evaluate_model on an exported ONNX detector (tests/helpers/detection.py: boxes fixed, scores = colour)

def test_an_out_of_range_min_confidence_and_a_missing_test_set_are_user_errors(tmp_path):
    from helpers.detection import write_detector_dir

    from edgelabels.artifacts import ExportDir

    export = ExportDir.load(write_detector_dir(tmp_path / "export"))
    with pytest.raises(UserError, match=r"0-1, got 50 \(Rekognition's 0-100 scale\? use 0.5\)"):
        evaluate_model(export, out=tmp_path / "e", min_confidence=50)
    with pytest.raises(UserError, match="pass --data SOURCE"):
        evaluate_model(export, out=tmp_path / "e", progress=False)


def test_the_classifiers_review_options_are_refused_for_a_detector(tmp_path):
    from helpers.detection import write_detector_dir

    export = write_detector_dir(tmp_path / "export")
    for option, flag in (({"review_accuracy": 0.99}, "--review-accuracy"),
                         ({"review_threshold": 0.9}, "--review-threshold")):
        with pytest.raises(UserError, match=f"{flag} does not apply to a detector"):
            evaluate_model(export, out=tmp_path / "e", progress=False, **option)
    assert not (tmp_path / "e").exists()


def test_an_exported_detector_is_evaluated_on_a_ground_truth_manifest(tmp_path):
    pytest.importorskip("edgelabels.data.detection")
    from helpers.detection import solid_image, write_detector_dir

    from edgelabels.artifacts import ExportDir

    export = ExportDir.load(write_detector_dir(tmp_path / "export"))
    data = tmp_path / "data"
    data.mkdir()
    # A: mean R 0.8 -> red box (10, 12, 30, 24) on 100x60 at 0.8 (TP), the small red one at 0.6 (IoU 1/3: FP).
    # B: mean G 0.6 -> green box, clipped to (50, 30, 50, 30), at 0.6 (TP); A's green row scores 0.2 (FP).
    solid_image((204, 51, 0)).save(data / "a.png")
    solid_image((0, 153, 0)).save(data / "b.png")
    lines = [{"source-ref": name, "bounding-box": {"image_size": [{"width": 100, "height": 60, "depth": 3}],
                                                   "annotations": [{"class_id": c, **box}]},
              "bounding-box-metadata": {"objects": [{"confidence": 1}], "class-map": {"0": "red", "1": "green"},
                                        "type": "groundtruth/object-detection", "human-annotated": "yes",
                                        "creation-date": "2026-12-01T00:00:00", "job-name": "labeling-job/colours"}}
             for name, c, box in (("a.png", 0, {"left": 10, "top": 12, "width": 30, "height": 24}),
                                  ("b.png", 1, {"left": 50, "top": 30, "width": 50, "height": 30}))]
    (data / "boxes.manifest").write_text("".join(json.dumps(line) + "\n" for line in lines))

    result = evaluate_model(export, data=data / "boxes.manifest", out=tmp_path / "e", progress=False)
    thresholds = {r["label"]: r["assumed_threshold"] for r in result["metrics"]["per_label"]}
    assert thresholds["red"] == pytest.approx(0.8, abs=1e-4) and thresholds["green"] == pytest.approx(0.6, abs=1e-4)
    assert thresholds["blue"] is None
    assert result["metrics"]["map_50"] == pytest.approx(1.0) and result["speed"]["images"] == 2
    assert result["summary"]["AggregatedEvaluationResults"]["Metrics"]["F1Score"] == pytest.approx(1.0)
    assert (tmp_path / "e" / "report.html").is_file()


# ---- evaluate_model on a run directory (an untrained tiny detector: the wiring, not the quality)

@pytest.mark.slow
def test_a_run_is_evaluated_through_its_keras_model_with_the_decoding_in_the_graph(tmp_path):
    from edgelabels.artifacts import RunDir
    from edgelabels.data.images import read_image
    from edgelabels.data.preprocess import preprocess
    from edgelabels.data.splits import Split
    from edgelabels.models.backbones import get_backbone
    from edgelabels.models.detector import build_detector, decode_numpy

    rng = np.random.default_rng(0)
    samples = []
    for i in range(6):
        path = tmp_path / "images" / f"photo{i}.png"
        path.parent.mkdir(exist_ok=True)
        pixels = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
        pixels[10:30, 20:40] = (220, 40, 40)
        Image.fromarray(pixels).save(path)
        samples.append(Sample(path, ("red",), f"g{i}", (Box("red", 20, 10, 20, 20),)))
    spec = get_backbone("tinycnn").preprocess_spec(64, 64, grayscale=False)
    model = build_detector("tinycnn", 2, 64, 64, weights=None, stride=4)
    run = RunDir(tmp_path / "run")
    run.start("task: detection\nmodel:\n  backbone: tinycnn\n  weights: none\n  max_detections: 7\n"
              "data:\n  image_size: [64, 64]\n")
    run.write_split(Split(train=samples[:2], val=samples[2:3], test=samples[3:]))
    run.write_labels(["red", "blue"])
    run.write_preprocess(spec)
    model.save(run.model_path)

    result = evaluate_model(RunDir.load(run.dir), out=run.evaluation_dir, batch_size=2, progress=False)
    metrics = result["metrics"]
    assert result["speed"]["images"] == metrics["number_of_images"] == 3
    assert metrics["number_of_boxes"] == 3 and result["summary"]["EvaluationDetails"]["NumberOfTrainingImages"] == 2
    assert sum(row["predictions"] for row in metrics["per_label"]) == 3 * 7  # model.max_detections rows per image

    # The same numbers from the training model's heads decoded by the numpy reference, scored directly.
    heads = model.predict(np.stack([preprocess(read_image(s.path)[0], spec) for s in samples[3:]]), verbose=0)
    reference = decode_numpy(heads["heatmap"], heads["size"], heads["offset"], 7)
    direct = write_detection_evaluation(tmp_path / "direct", samples=samples[3:], predictions=list(reference),
                                        labels=["red", "blue"], run_id="direct")
    assert metrics["map_50"] == pytest.approx(direct["metrics"]["map_50"], abs=1e-6)
    assert [r["assumed_threshold"] for r in metrics["per_label"]] == \
        pytest.approx([r["assumed_threshold"] for r in direct["metrics"]["per_label"]], abs=1e-5)
