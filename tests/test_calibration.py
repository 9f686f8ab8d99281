"""Calibration fitted on the validation split (evaluate/calibration.py) and applied at the edge
(runtime/calibration.py): a confidence of 80 should be right about 80% of the time."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from edgelabels import atomic
from edgelabels.evaluate import calibration as cal
from edgelabels.evaluate.metrics import expected_calibration_error
from edgelabels.runtime.calibration import from_json, read_calibration


def _softmax(logits):
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _overconfident_classifier(n=3000, k=3, seed=0):
    """(probabilities of a model whose logits are 3x the true ones, labels drawn from the true probabilities,
    the true probabilities)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, k)) * 1.5
    truth = _softmax(logits)
    labels = np.array([rng.choice(k, p=row) for row in truth])
    return _softmax(3 * logits), labels, truth


def test_overconfident_classifier_gets_a_temperature_near_3_and_a_lower_ece():
    probs, labels, _ = _overconfident_classifier()
    fitted = cal.fit("classification", probs, labels, ["a", "b", "c"])
    assert fitted["method"] == "temperature"
    assert fitted["parameters"]["temperature"] == pytest.approx(3.0, abs=0.3)
    assert fitted["ece_before"] > 0.1
    assert fitted["ece_after"] < fitted["ece_before"] / 3
    assert fitted["ece_before"] == pytest.approx(expected_calibration_error(labels, probs))


def test_temperature_keeps_each_top_label_and_leaves_a_row_of_zeros_alone():
    probs, labels, _ = _overconfident_classifier(n=200)
    probs[5] = 0.0  # an image a stage found nothing in
    calibration = from_json(cal.fit("classification", probs, labels, ["a", "b", "c"]))
    calibrated = calibration.apply(probs.astype(np.float32))
    assert np.array_equal(calibrated.argmax(axis=1), probs.argmax(axis=1))
    assert not calibrated[5].any()
    assert np.allclose(calibrated.sum(axis=1)[probs.any(axis=1)], 1.0, atol=1e-5)


def test_runtime_apply_is_softmax_of_log_probabilities_over_the_written_temperature(tmp_path):
    probs, labels, _ = _overconfident_classifier(n=300)
    fitted = cal.fit("classification", probs, labels, ["a", "b", "c"])
    atomic.write_json(tmp_path / "calibration.json", fitted)
    read = read_calibration(tmp_path / "calibration.json")
    t = fitted["parameters"]["temperature"]
    assert np.allclose(read.apply(probs), _softmax(np.log(probs) / t), atol=1e-9)
    assert np.allclose(read.raw(read.apply(probs)), probs, atol=1e-9)
    assert read_calibration(tmp_path / "absent.json") is None


def test_a_calibrated_classifier_is_left_alone():
    # 100 images at top confidence 0.8, 80 of them right: ECE 0 already; any temperature would move it
    probs = np.tile([[0.8, 0.2]], (100, 1))
    labels = np.array([0] * 80 + [1] * 20)
    fitted = cal.fit("classification", probs, labels, ["a", "b"])
    assert fitted["method"] == "none"
    assert "did not lower" in fitted["reason"]
    assert from_json(fitted).apply(probs) is probs


def test_fewer_than_20_validation_scores_fit_no_map():
    probs, labels, _ = _overconfident_classifier(n=19)
    fitted = cal.fit("classification", probs, labels, ["a", "b", "c"])
    assert fitted["method"] == "none" and "fewer than 20" in fitted["reason"]


def test_a_validation_split_without_a_wrong_answer_fits_no_map():
    # a temperature would be pushed to its bound, every confidence to 1: nothing says how sure to be
    probs = np.tile([[0.7, 0.3]], (50, 1))
    fitted = cal.fit("classification", probs, np.zeros(50, np.int64), ["a", "b"])
    assert fitted["method"] == "none" and "all 50 validation answers right" in fitted["reason"]


def test_a_multilabel_label_its_confidences_separate_perfectly_keeps_temperature_1():
    rng = np.random.default_rng(3)
    truth = rng.uniform(size=(400, 2)) < 0.5
    probs = np.where(truth, 0.9, 0.1)  # label a: perfectly separated
    probs[:, 1] = np.where(rng.uniform(size=400) < 0.5, 0.99, 0.01)  # label b: 99% sure, right half the time
    truth[:, 1] = rng.uniform(size=400) < 0.5
    fitted = cal.fit("multilabel", probs, truth, ["a", "b"])
    assert fitted["parameters"]["temperature"][0] == 1.0
    assert fitted["parameters"]["temperature"][1] > 5


def test_overconfident_multilabel_gets_a_temperature_per_label_and_keeps_no_answer_rows_empty():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(4000, 2)) * 2
    logits[:, 1] *= 0.5
    truth = rng.uniform(size=logits.shape) < 1 / (1 + np.exp(-logits))
    probs = 1 / (1 + np.exp(-logits * np.array([3.0, 1.5])))  # label a 3x too sure, label b 1.5x
    fitted = cal.fit("multilabel", probs, truth, ["a", "b"])
    assert fitted["method"] == "temperature-per-label"
    assert fitted["parameters"]["temperature"] == pytest.approx([3.0, 1.5], abs=0.25)
    assert fitted["ece_after"] < fitted["ece_before"]
    calibrated = from_json(fitted).apply(np.array([[0.0, 0.0], [0.9, 0.9]], np.float32))
    assert not calibrated[0].any() and calibrated[1, 0] < 0.9


def _box_scores(n=20000, seed=2):
    """Per image one ground-truth box at BOX; one predicted row with a uniform score, on the box with probability
    score^2, else far from it: P(right | score) = score^2."""
    rng = np.random.default_rng(seed)
    box, elsewhere = (0.1, 0.1, 0.3, 0.3), (0.6, 0.6, 0.3, 0.3)
    truth, predictions = [], []
    for score in rng.uniform(cal.SCORE_FLOOR, 1, size=n):
        right = rng.uniform() < score ** 2
        predictions.append(np.array([[*(box if right else elsewhere), score, 0]], np.float32))
        truth.append((np.array([0]), np.array([box])))
    return predictions, truth


def test_box_map_where_p_right_is_score_squared_maps_0_8_to_about_0_64():
    predictions, truth = _box_scores()
    fitted = cal.fit("detection", predictions, truth, ["thing"])
    assert fitted["method"] == "isotonic"
    calibration = from_json(fitted)
    row = np.array([[[0.1, 0.1, 0.3, 0.3, 0.8, 0.0]]], np.float32)
    assert calibration.apply(row)[0, 0, 4] == pytest.approx(0.64, abs=0.04)
    assert np.array_equal(calibration.apply(row)[..., :4], row[..., :4])
    assert fitted["ece_after"] < fitted["ece_before"]


def test_box_map_strictly_increases_so_ranking_is_kept_and_it_inverts():
    predictions, truth = _box_scores(n=3000)
    calibration = from_json(cal.fit("detection", predictions, truth, ["thing"]))
    scores = np.linspace(0, 1, 1001)
    rows = np.zeros((1, len(scores), 6), np.float32)
    rows[0, :, 4] = scores
    mapped = calibration.apply(rows)[0, :, 4]
    assert np.all(np.diff(mapped) > 0)
    assert np.allclose(calibration.raw(calibration.apply(rows))[0, :, 4], scores, atol=1e-4)


def test_boxes_below_the_score_floor_do_not_enter_the_ece():
    predictions = [np.array([[0.1, 0.1, 0.3, 0.3, 0.9, 0], [0.6, 0.6, 0.3, 0.3, 0.01, 0]], np.float32)]
    truth = [(np.array([0]), np.array([(0.1, 0.1, 0.3, 0.3)]))]
    confidence, right = cal.pairs("detection", predictions, truth, ["thing"])
    assert confidence.tolist() == [pytest.approx(0.9)] and right.tolist() == [True]


def test_the_boxes_counted_after_calibration_are_those_the_model_itself_scored_above_the_floor():
    raw = [np.array([[0.1, 0.1, 0.3, 0.3, 0.3, 0], [0.6, 0.6, 0.3, 0.3, 0.2, 0]], np.float32)]
    mapped = [raw[0].copy()]
    mapped[0][:, 4] = [0.9, 0.01]  # a map that sends the wrong box below the floor
    truth = [(np.array([0]), np.array([(0.1, 0.1, 0.3, 0.3)]))]
    confidence, right = cal.pairs("detection", mapped, truth, ["thing"], raw=raw)
    assert confidence.tolist() == pytest.approx([0.9, 0.01]) and right.tolist() == [True, False]


def test_reliability_ece_equals_metrics_top1_ece_for_a_classifier():
    probs, labels, _ = _overconfident_classifier(n=500)
    found = cal.reliability(*cal.pairs("classification", probs, labels, ["a", "b", "c"]))
    assert found["ece"] == pytest.approx(expected_calibration_error(labels, probs))
    assert sum(row["count"] for row in found["bins"]) == 500


def test_each_calibrated_task_names_its_hooks_in_the_task_table_and_segmentation_is_not_calibrated():
    from edgelabels.runtime.calibration import Calibration

    assert cal.calibrating("classification") is cal.CLASSIFICATION
    assert cal.calibrating("multilabel") is cal.MULTILABEL
    assert cal.calibrating("detection") is cal.DETECTION
    assert cal.calibrating("segmentation") is None
    masks = np.full((2, 8, 8, 1), 0.9, np.float32)
    assert cal.check_for(Calibration(method="temperature", temperature=(2.0,)), masks, "segmentation") is None


def test_a_detectors_fitted_on_counts_its_validation_boxes_and_a_classifiers_only_images():
    from types import SimpleNamespace

    samples = [SimpleNamespace(boxes=[1, 2]), SimpleNamespace(boxes=[]), SimpleNamespace(boxes=[3])]
    assert cal.DETECTION.fitted_on(samples) == {"split": "val", "images": 3, "boxes": 3}
    assert cal.CLASSIFICATION.fitted_on(samples) == {"split": "val", "images": 3}


def test_the_runtime_applies_the_map_the_file_names_whatever_task_it_says():
    p = np.array([[0.9, 0.2, 0.6]], np.float64)
    per_label = from_json({"version": 1, "method": "temperature-per-label", "parameters": {"temperature": [2, 2, 2]}})
    logits = np.log(p / (1 - p))
    assert np.allclose(per_label.apply(p), 1 / (1 + np.exp(-logits / 2)), atol=1e-9)
    softmax = from_json({"version": 1, "method": "temperature", "task": "detection",
                         "parameters": {"temperature": 2.0}})
    assert np.allclose(softmax.apply(p), _softmax(np.log(p) / 2), atol=1e-9)


def test_a_multilabel_calibration_json_written_as_temperature_still_reads_as_one_temperature_per_label():
    # files written before "temperature-per-label" had its name: method "temperature" beside task "multilabel"
    old = from_json({"version": 1, "task": "multilabel", "method": "temperature",
                     "parameters": {"temperature": [3.0, 0.5]}})
    assert old.method == "temperature-per-label"
    p = np.array([[0.8, 0.7]])
    logits = np.log(p / (1 - p))
    assert np.allclose(old.apply(p), 1 / (1 + np.exp(-logits / np.array([3.0, 0.5]))), atol=1e-9)


def test_a_calibration_json_with_an_unknown_method_is_refused_naming_the_methods():
    from edgelabels.errors import UserError

    with pytest.raises(UserError, match="temperature-per-label, isotonic, none"):
        from_json({"version": 1, "method": "platt", "parameters": {}})


def test_a_multilabel_evaluation_reports_ece_over_image_label_pairs_before_and_after_its_map(tmp_path):
    from types import SimpleNamespace

    rng = np.random.default_rng(4)
    logits = rng.normal(size=(600, 2)) * 2
    present = rng.uniform(size=logits.shape) < 1 / (1 + np.exp(-logits))
    raw = 1 / (1 + np.exp(-3 * logits))  # 3x too sure
    samples = [SimpleNamespace(labels=[name for name, on in zip("ab", row) if on]) for row in present]
    fitted = cal.fit("multilabel", raw, present, ["a", "b"])
    calibration = from_json(fitted)
    check = cal.check_for(calibration, calibration.apply(raw), "multilabel")
    evaluation = SimpleNamespace(calibration=check, samples=samples, model=SimpleNamespace(labels=["a", "b"]))
    entry = cal.calibration_entry(evaluation, tmp_path / "plots")
    assert entry["method"] == "temperature-per-label" and entry["what"] == "each (image, label) pair"
    assert entry["scores"] == 1200
    assert entry["ece_before"] == pytest.approx(fitted["ece_before"])  # the same images the map was fitted on
    assert entry["ece_after"] == pytest.approx(fitted["ece_after"]) and entry["ece_after"] < entry["ece_before"] / 2
    assert (tmp_path / "plots" / "reliability.png").stat().st_size > 1000


# ---------------------------------------------------------------- the edge runtime


def _image(path, colour):
    Image.new("RGB", (32, 32), colour).save(path)
    return path


def test_a_detector_export_with_calibration_json_answers_mapped_scores_and_one_without_as_before(tmp_path):
    from helpers.detection import write_detector_dir

    from edgelabels.runtime.detector import Detector

    folder = write_detector_dir(tmp_path / "export")
    image = _image(tmp_path / "red.png", (204, 0, 0))  # red box scores 0.8
    before = Detector(folder).detections([image])
    atomic.write_json(folder / "calibration.json", {
        "version": 1, "task": "detection", "method": "isotonic", "parameters": {"x": [0.0, 1.0], "y": [0.0, 0.5]}})
    after = Detector(folder).detections([image])
    assert before[0, 0, 4] == pytest.approx(0.8, abs=0.01)
    assert np.allclose(after[..., 4], before[..., 4] * 0.5, atol=1e-6)
    assert np.array_equal(after[..., :4], before[..., :4])


def test_a_multilabel_export_with_calibration_json_answers_tempered_confidences(tmp_path):
    from helpers.multilabel import write_multilabel_export

    from edgelabels.runtime.predictor import Predictor

    folder = write_multilabel_export(tmp_path / "export")
    image = _image(tmp_path / "yellow.png", (230, 230, 20))
    before = Predictor(folder).probabilities([image])
    atomic.write_json(folder / "calibration.json", {
        "version": 1, "task": "multilabel", "method": "temperature", "parameters": {"temperature": [2.0, 1.0, 1.0]}})
    after = Predictor(folder).probabilities([image])
    logit = np.log(before[0, 0] / (1 - before[0, 0]))
    assert after[0, 0] == pytest.approx(1 / (1 + np.exp(-logit / 2)), abs=1e-5)
    assert after[0, 1:] == pytest.approx(before[0, 1:], abs=1e-6)


def test_a_calibration_json_of_another_version_is_refused_in_one_line(tmp_path):
    from edgelabels.errors import UserError

    path = atomic.write_json(tmp_path / "calibration.json", {"version": 9, "method": "temperature"})
    with pytest.raises(UserError, match="calibration.json: not a calibration"):
        read_calibration(path)


# ---------------------------------------------------------------- a tiny run: evaluate and export


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from helpers.runs import make_run

    return make_run(tmp_path_factory.mktemp("calibration") / "run", per_label=40, epochs=2)


def _evaluate_capturing(run_dir, monkeypatch, **options):
    """evaluate_model, and the Evaluation its write hook was given."""
    from dataclasses import replace

    from edgelabels.evaluate import classification
    from edgelabels.evaluate.driver import evaluate_model

    seen = {}

    def write(out, evaluation):
        seen["evaluation"] = evaluation
        return classification.write(out, evaluation)

    monkeypatch.setattr(classification, "HOOKS", replace(classification.HOOKS, write=write))
    result = evaluate_model(run_dir, progress=False, gradcam_per_kind=0, **options)
    return result, seen["evaluation"]


@pytest.mark.slow
def test_evaluating_a_run_fits_its_calibration_once_and_reports_ece_before_and_after(tiny_run, tmp_path,
                                                                                    monkeypatch):
    from edgelabels.artifacts import RunDir

    run = RunDir.load(tiny_run)
    run.calibration_path.unlink(missing_ok=True)
    result, evaluation = _evaluate_capturing(tiny_run, monkeypatch, out=tmp_path / "evaluation")
    written = json.loads(run.calibration_path.read_text())
    assert written["fitted_on"] == {"split": "val", "images": 24}
    assert written["method"] in ("temperature", "none")
    entry = cal.calibration_entry(evaluation, tmp_path / "plots")
    assert entry["method"] == written["method"]
    assert (tmp_path / "plots" / "reliability.png").stat().st_size > 1000
    probs = np.asarray(evaluation.predictions, np.float64)
    truth = [run.labels.index(s.label) for s in evaluation.samples]
    assert entry["ece_after"] == pytest.approx(expected_calibration_error(np.array(truth), probs), abs=1e-12)
    assert entry["ece_after"] == pytest.approx(result["metrics"]["expected_calibration_error"])
    written_entry = json.loads((tmp_path / "evaluation" / "metrics.json").read_text())["calibration"]
    assert (written_entry["ece_before"], written_entry["ece_after"]) == pytest.approx((entry["ece_before"],
                                                                                      entry["ece_after"]))
    assert (tmp_path / "evaluation" / written_entry["plot"]).is_file()
    stamp = run.calibration_path.stat().st_mtime_ns
    _evaluate_capturing(tiny_run, monkeypatch, out=tmp_path / "again")
    assert run.calibration_path.stat().st_mtime_ns == stamp  # reused, not fitted again


@pytest.mark.slow
def test_an_export_carries_the_runs_calibration_and_chooses_thresholds_on_calibrated_scores(tiny_run, tmp_path,
                                                                                           monkeypatch):
    from edgelabels.artifacts import ExportDir, RunDir
    from edgelabels.evaluate.thresholds import assumed_thresholds
    from edgelabels.export.driver import export_into, predict_samples
    from edgelabels.runtime.predictor import Predictor
    from edgelabels.runtime.runner import OnnxModel

    run = RunDir.load(tiny_run)
    # a hand-set temperature far from 1, so the calibrated scale differs from the model's own
    atomic.write_json(run.calibration_path, {"version": 1, "task": "classification", "method": "temperature",
                                             "parameters": {"temperature": 4.0}, "ece_before": 0.2, "ece_after": 0.1,
                                             "reason": "hand-set", "fitted_on": {"split": "val", "images": 24}})
    folder = tmp_path / "export"
    folder.mkdir()
    report = export_into(run, ExportDir(folder), parity_images=6)
    assert json.loads((folder / "calibration.json").read_text())["parameters"] == {"temperature": 4.0}
    assert report["calibration"]["method"] == "temperature"
    raw = predict_samples(OnnxModel(folder / "model.onnx"), run.split.val, run.spec)
    truth = np.array(run.label_indices(run.split.val))
    expected = dict(zip(run.labels, assumed_thresholds(truth, _softmax(np.log(raw) / 4.0))))
    thresholds = json.loads((folder / "thresholds.json").read_text())
    for name in run.labels:
        assert thresholds[name] == pytest.approx(expected[name] if expected[name] is not None else 0.5, abs=1e-5)
    # the edge answers on that scale; with the file gone it answers the model's own probabilities
    answered = Predictor(folder).probabilities([s.path for s in run.split.val])
    assert np.allclose(answered, _softmax(np.log(raw) / 4.0), atol=1e-5)
    (folder / "calibration.json").unlink()
    assert np.allclose(Predictor(folder).probabilities([s.path for s in run.split.val]), raw, atol=1e-6)
    run.calibration_path.unlink()


def test_an_evaluation_older_than_the_runs_calibration_is_not_read_on_the_exports_scale(tmp_path):
    import os

    from edgelabels.artifacts import RunDir
    from edgelabels.export.driver import evaluated_on_export_scale

    run = RunDir(tmp_path / "run")
    metrics = atomic.write_json(run.evaluation_dir / "metrics.json", {"accuracy": 1.0})
    assert evaluated_on_export_scale(run)  # neither calibrated
    atomic.write_json(run.calibration_path, {"version": 1, "task": "classification", "method": "temperature",
                                             "parameters": {"temperature": 2.0}})
    os.utime(metrics, ns=(1, 1))
    assert not evaluated_on_export_scale(run)  # evaluated before the calibration was fitted
    os.utime(metrics)
    assert evaluated_on_export_scale(run)  # evaluated since, so with it
    atomic.write_json(metrics, {"calibration": {"method": "temperature", "parameters": {"temperature": 3.0}}})
    assert not evaluated_on_export_scale(run)  # with another calibration
    atomic.write_json(metrics, {"calibration": {"method": "temperature", "parameters": {"temperature": 2.0}}})
    assert evaluated_on_export_scale(run)
