"""`edgelabels export RUN`: the RUN/export/ contract, thresholds, atomicity and the INT8 verdict, for every task
through the one driver (export/driver.py)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest

from edgelabels.cli import main
from edgelabels.errors import UserError
from edgelabels.export import driver
from edgelabels.export import quantize as q
from edgelabels.export.classification import HOOKS as CLASSIFICATION
from edgelabels.export.classification import HOOKS as CLASSIFIER_EXPORT
from edgelabels.export.multilabel import HOOKS as MULTILABEL
from edgelabels.export.onnx_export import check_inference_graph
from helpers.runs import LABELS, make_run

pytestmark = pytest.mark.slow
FIXTURES = __import__("pathlib").Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "rekognition"


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One tinycnn run for the module; tests copy it before exporting into it."""
    return make_run(tmp_path_factory.mktemp("runs") / "tiny", per_label=15, epochs=8)


@pytest.fixture
def run(trained_run, tmp_path):
    copy = tmp_path / "tiny"
    shutil.copytree(trained_run, copy, ignore=shutil.ignore_patterns("export"))
    return copy


def test_export_writes_the_contract_files_and_onnx_matches_keras(run, capsys):
    import subprocess
    import sys

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    killed = run / f".export.{gone.pid}.0badf00d.tmp"  # an export killed mid-write (its process is gone)
    (killed / "model.onnx").parent.mkdir()
    (killed / "model.onnx").write_bytes(b"half a model")
    assert main(["export", str(run), "--parity-images", "20"]) == 0
    assert not killed.exists()
    out = run / "export"
    assert sorted(p.name for p in out.iterdir()) == [
        "calibration.json", "export_report.json", "labels.json", "layout.json", "model.onnx", "preprocess.json",
        "thresholds.json"]
    assert (out / "labels.json").read_bytes() == (run / "labels.json").read_bytes()
    assert (out / "preprocess.json").read_bytes() == (run / "preprocess.json").read_bytes()
    thresholds = json.loads((out / "thresholds.json").read_text())
    assert list(thresholds) == list(LABELS) and all(0 <= t <= 1 for t in thresholds.values())

    report = json.loads((out / "export_report.json").read_text())
    assert report["parity"]["images"] == 20
    assert report["parity"]["max_abs_diff"] <= 1e-4  # tinycnn is well conditioned
    assert report["parity"]["top1_agreement"] == 1.0
    assert report["parity"]["output_std"] > 1e-2  # a trained model: parity is not vacuous
    assert report["sizes_bytes"]["model.onnx"] == (out / "model.onnx").stat().st_size
    assert report["latency_batch1_ms"]["onnx_fp32"] > 0
    assert "int8" not in report

    graph = onnx.load(str(out / "model.onnx")).graph
    assert [i.name for i in graph.input] == ["input"] and [o.name for o in graph.output] == ["probabilities"]
    printed = capsys.readouterr().out
    assert "parity Keras vs ONNX on 20 images" in printed and "thresholds from validation split" in printed


def _f1(scores, positives, threshold):
    predicted = scores >= threshold
    tp = np.sum(predicted & positives)
    return 2 * tp / (np.sum(predicted) + np.sum(positives))


def test_unevaluated_run_gets_f1_maximising_thresholds_from_its_validation_split(run):
    from edgelabels.runtime.predictor import Predictor
    from edgelabels.artifacts import RunDir

    driver.export_run(run)
    predictor = Predictor(run / "export")
    val = RunDir.load(run).split.val
    probabilities = predictor.probabilities([s.path for s in val])
    truth = np.array([LABELS.index(s.label) for s in val])
    for k, name in enumerate(LABELS):
        scores, positives = probabilities[:, k], truth == k
        chosen = predictor.thresholds[name]
        assert np.isclose(scores, chosen, atol=1e-6).any(), "the threshold is one of the label's confidences"
        assert _f1(scores, positives, chosen) >= max(_f1(scores, positives, t) for t in scores) - 1e-9


def test_evaluated_run_exports_the_evaluations_assumed_thresholds(run):
    document = json.loads((FIXTURES / "evaluation-summary-flat.json").read_text()) if FIXTURES.is_dir() else None
    if document is None:
        pytest.skip("shared/fixtures/rekognition absent")
    # AWS's documented summary, relabelled to this run's labels.
    document["EvaluationDetails"]["Labels"] = list(LABELS)
    results = document["LabelEvaluationResults"]
    results.append(json.loads(json.dumps(results[0])))
    for result, name, threshold in zip(results, LABELS, (0.9879502058029175, 0.014450683258473873, 0.25)):
        result["Label"], result["Metrics"]["Threshold"] = name, threshold
    (run / "evaluation").mkdir()
    (run / "evaluation" / "summary.json").write_text(json.dumps(document))

    report = driver.export_run(run)
    thresholds = json.loads((run / "export" / "thresholds.json").read_text())
    assert thresholds == {"circle": 0.9879502058029175, "square": 0.014450683258473873, "stripes": 0.25}
    assert report["thresholds"]["source"].startswith(str(run / "evaluation" / "summary.json"))


def test_interrupted_export_keeps_the_previous_export_whole(run, monkeypatch):
    driver.export_run(run)
    before = {p.name: p.read_bytes() for p in (run / "export").iterdir()}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C after model.onnx is written and checked, before the rest

    monkeypatch.setattr(q, "batch1_latencies", interrupted)
    with pytest.raises(KeyboardInterrupt):
        driver.export_run(run)
    assert {p.name: p.read_bytes() for p in (run / "export").iterdir()} == before
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []  # no temp folder left behind


def test_interrupted_first_export_leaves_no_export_folder(run, monkeypatch):
    monkeypatch.setattr(q, "batch1_latencies", lambda *a, **kw: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        driver.export_run(run)
    assert not (run / "export").exists()
    assert [p.name for p in run.iterdir() if p.name.startswith(".")] == []


def test_int8_slower_than_fp32_is_not_shipped_and_says_why(run, monkeypatch, capsys):
    monkeypatch.setattr(q, "batch1_latencies", lambda sessions, x, **kw: {name: 2.0 if name == "int8" else 1.0
                                                                          for name in sessions})
    assert main(["export", str(run), "--int8", "--calibration", "8"]) == 0
    assert not (run / "export" / "model.int8.onnx").exists()
    report = json.loads((run / "export" / "export_report.json").read_text())
    assert report["int8"]["shipped"] is False
    assert "slower than fp32" in report["int8"]["reason"]
    assert "INT8 not shipped: slower than fp32" in capsys.readouterr().out


def test_int8_faster_and_as_accurate_is_shipped_and_picked_by_auto(run, monkeypatch):
    from edgelabels.artifacts import RunDir
    from edgelabels.runtime.predictor import Predictor

    monkeypatch.setattr(q, "batch1_latencies", lambda sessions, x, **kw: {name: 1.0 if name == "int8" else 2.0
                                                                          for name in sessions})
    report = driver.export_run(run, int8=True, calibration=12)
    if not report["int8"]["shipped"]:  # the accuracy rule may still refuse it: then it must say so
        assert "validation accuracy" in report["int8"]["reason"]
        assert not (run / "export" / "model.int8.onnx").exists()
        pytest.skip(f"INT8 refused on accuracy for this tiny model: {report['int8']['reason']}")
    assert report["int8"]["accuracy_change_points"] >= -CLASSIFIER_EXPORT.int8.max_drop_points
    assert report["int8"]["calibration_images"] == 12
    int8, fp32 = Predictor(run / "export"), Predictor(run / "export", precision="fp32")
    assert int8.precision == "int8" and int8.model_path.name == "model.int8.onnx"
    images = [s.path for s in RunDir.load(run).split.train[:12]]
    agreement = np.mean(int8.probabilities(images).argmax(1) == fp32.probabilities(images).argmax(1))
    assert agreement >= 0.9


@pytest.mark.parametrize("fp32_ms, int8_ms, fp32_acc, int8_acc, shipped, words", [
    (10.0, 4.0, 0.900, 0.900, True, "shipped"),
    (10.0, 4.0, 0.900, 0.896, True, "shipped"),  # -0.4 points: within the rule
    (10.0, 4.0, 0.900, 0.890, False, "-1.0 points"),
    (10.0, 12.0, 0.900, 0.950, False, "slower than fp32"),
    (10.0, 4.0, None, None, False, "no validation images"),
])
def test_int8_verdict_needs_faster_and_at_most_half_a_point_less_accurate(fp32_ms, int8_ms, fp32_acc, int8_acc,
                                                                          shipped, words):
    ok, reason = CLASSIFICATION.int8.verdict(fp32_ms, int8_ms, fp32_acc, int8_acc)
    assert ok is shipped and words in reason


def test_model_with_augmentation_layers_is_refused():
    import keras

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.RandomFlip("horizontal")(inputs)
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    with pytest.raises(UserError, match="augmentation layers"):
        check_inference_graph(keras.Model(inputs, outputs), "model.keras")


def test_export_of_a_missing_run_is_a_one_line_error(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope")]) == 2
    assert "run directory not found" in capsys.readouterr().err


def test_int8_for_a_backbone_measured_not_to_pay_is_not_attempted(run, monkeypatch, capsys):
    from dataclasses import replace

    from edgelabels.models.backbones import BACKBONES, Int8Scheme

    # The scheme travels with the backbone's registry entry: changing the entry is all it takes.
    monkeypatch.setitem(BACKBONES, "tinycnn", replace(BACKBONES["tinycnn"],
                                                      int8=Int8Scheme(pays=False, note="measured never faster")))
    assert main(["export", str(run), "--int8"]) == 0
    report = json.loads((run / "export" / "export_report.json").read_text())
    assert report["int8"]["attempted"] is False and report["int8"]["shipped"] is False
    assert not (run / "export" / "model.int8.onnx").exists()
    assert "INT8 not attempted for tinycnn: measured never faster" in capsys.readouterr().out


def test_detector_inference_model_takes_the_image_batch_without_a_keras_structure_warning(tmp_path):
    # inference_model used to build its Model on model.inputs (a list of the one input), so every call with an
    # image batch, as export's parity and latency checks make, printed Keras' UserWarning "The structure of
    # `inputs` doesn't match the expected structure".
    import warnings

    from edgelabels.export.driver import keras_batch1_ms
    from edgelabels.export.onnx_export import keras_to_onnx
    from edgelabels.models.detector import build_detector, inference_model

    model = inference_model(build_detector("tinycnn", 2, 64, 64), max_detections=5)
    x = np.random.default_rng(0).random((2, 64, 64, 3), np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert tuple(model(x, training=False).shape) == (2, 5, 6)
        keras_batch1_ms(model, x, runs=2)
        keras_to_onnx(model, tmp_path / "model.onnx", output_name="detections")
    structure = [str(w.message) for w in caught if "structure of `inputs`" in str(w.message)]
    assert structure == []
    graph = onnx.load(tmp_path / "model.onnx").graph
    assert [i.name for i in graph.input] == ["input"] and [o.name for o in graph.output] == ["detections"]


# ---------------------------------------------------------------- multi-label and U-Net runs through the same driver

ML_LABELS = ("red", "green", "blue")


def _multilabel_run(run_dir):
    """A multi-label run with a hand-set model (no training): each colour channel's mean decides its own label,
    sigmoid(6 * mean - 3), so an image's label set is known without a model to train."""
    import keras
    from PIL import Image

    from edgelabels.artifacts import RunDir
    from edgelabels.data.dataset import Sample
    from edgelabels.data.preprocess import PreprocessSpec
    from edgelabels.data.splits import Split

    rng = np.random.default_rng(3)
    images = run_dir.parent / "ml-images"
    images.mkdir(parents=True)
    samples = []
    for i in range(36):
        carried = [name for name in ML_LABELS if rng.random() < 0.5] or [ML_LABELS[i % 3]]
        colour = [220 if name in carried else 30 for name in ML_LABELS]
        pixels = np.clip(np.array(colour, np.float32) + rng.normal(0, 15, (32, 32, 3)), 0, 255).astype(np.uint8)
        path = images / f"g{i:02d}.png"
        Image.fromarray(pixels, "RGB").save(path)
        samples.append(Sample(path, tuple(carried), path.stem))

    inputs = keras.Input((32, 32, 3))
    dense = keras.layers.Dense(3, activation="sigmoid")
    model = keras.Model(inputs, dense(keras.layers.GlobalAveragePooling2D()(inputs)))
    dense.set_weights([np.diag([6.0, 6.0, 6.0]).astype(np.float32), np.full(3, -3.0, np.float32)])
    run = RunDir(run_dir)
    run.start("task: multilabel\nmodel: {backbone: tinycnn, weights: none}\n")
    model.save(run.model_path)
    run.write_preprocess(PreprocessSpec(height=32, width=32, mean=(0.0,) * 3, std=(255.0,) * 3))
    run.write_labels(list(ML_LABELS))
    run.write_split(Split(train=samples[:20], val=samples[20:28], test=samples[28:]))
    return run_dir


@pytest.fixture
def multilabel_run(tmp_path):
    return _multilabel_run(tmp_path / "ml")


def test_multilabel_int8_faster_and_as_good_on_label_sets_is_shipped_and_picked_by_auto(multilabel_run, monkeypatch):
    from edgelabels.artifacts import RunDir
    from edgelabels.runtime.predictor import Predictor

    monkeypatch.setattr(q, "batch1_latencies", lambda sessions, x, **kw: {name: 1.0 if name == "int8" else 2.0
                                                                          for name in sessions})
    report = driver.export_run(multilabel_run, int8=True, calibration=8)
    # The hand-set model ranks every colour's carriers first: average precision 1 for each label, fp32 and INT8.
    assert report["validation"]["subset_accuracy"] == 1.0
    assert report["int8"]["attempted"] and report["int8"]["calibration_images"] == 8
    assert report["int8"]["validation_per_label_ap"] == {"red": 1.0, "green": 1.0, "blue": 1.0}
    assert report["int8"]["validation_macro_ap"] == 1.0 and report["int8"]["macro_ap_change_points"] == 0.0
    assert report["int8"]["shipped"], report["int8"]["reason"]
    assert "validation macro average precision 1.000 vs 1.000" in report["int8"]["reason"]
    predictor, fp32 = Predictor(multilabel_run / "export"), Predictor(multilabel_run / "export", precision="fp32")
    assert predictor.precision == "int8"
    test = [s.path for s in RunDir.load(multilabel_run).split.test]
    assert np.abs(predictor.probabilities(test) - fp32.probabilities(test)).max() < 0.02


def test_multilabel_int8_slower_than_fp32_is_not_shipped(multilabel_run, monkeypatch, capsys):
    monkeypatch.setattr(q, "batch1_latencies", lambda sessions, x, **kw: {name: 2.0 if name == "int8" else 1.0
                                                                          for name in sessions})
    assert main(["export", str(multilabel_run), "--int8", "--calibration", "4"]) == 0
    assert not (multilabel_run / "export" / "model.int8.onnx").exists()
    printed = capsys.readouterr().out
    assert "INT8 not shipped: slower than fp32" in printed and "a multi-label classifier" in printed


@pytest.mark.parametrize("fp32, int8, shipped, words", [
    (1.0, 1.0, True, "validation macro average precision 1.000 vs 1.000"),
    (0.900, 0.896, True, "shipped"),  # -0.4 points: within the rule
    (0.900, 0.875, False, "-2.5 points, more than 0.5"),
    (None, None, False, "no validation images carrying a label"),
])
def test_multilabel_int8_verdict_allows_half_a_point_of_macro_average_precision(fp32, int8, shipped, words):
    ok, reason = MULTILABEL.int8.verdict(10.0, 4.0, fp32, int8)
    assert ok is shipped and words in reason


def test_multilabel_export_writes_each_labels_own_threshold_from_validation(multilabel_run):
    report = driver.export_run(multilabel_run)
    thresholds = json.loads((multilabel_run / "export" / "thresholds.json").read_text())
    assert list(thresholds) == list(ML_LABELS)
    # Validation confidences are ~0.9 for a carried label and ~0.1 for the others: the F1-maximising threshold is
    # the lowest confidence of the label's carriers.
    assert all(0.8 < value < 0.95 for value in thresholds.values()), thresholds
    assert report["thresholds"]["source"].startswith("validation split")
    assert report["notes"] == []
    lines = driver.export_lines(report, multilabel_run / "export")
    assert lines[0].startswith(f"wrote {multilabel_run / 'export'}/: model.onnx")
    assert any(line.startswith("validation (8 images) at these thresholds: subset accuracy 100.00%") for line in lines)


def test_unet_export_keeps_its_layout_and_notes_that_int8_is_not_attempted(tmp_path):
    from helpers.segmentation import make_pixel_unet_run, write_hand_counted_pairs

    write_hand_counted_pairs(tmp_path / "pairs")
    run = make_pixel_unet_run(tmp_path / "unet", sorted((tmp_path / "pairs" / "images").iterdir()))
    report = driver.export_run(run, int8=True)
    # The layout an older export wrote (and the Segmenter loads): no thresholds, no INT8 model.
    assert sorted(p.name for p in (run / "export").iterdir()) == [
        "export_report.json", "labels.json", "layout.json", "model.onnx", "preprocess.json"]
    assert report["parity"]["mask_pixel_agreement"] == 1.0 and "int8" not in report
    assert report["notes"] == ["--int8 is not attempted for a lung U-Net: fp32 only"]
    lines = driver.export_lines(report, run / "export")
    assert f"`edgelabels segment {run / 'export'} IMAGE...`" in lines[0]
    assert lines[-1] == "note: --int8 is not attempted for a lung U-Net: fp32 only"


def test_each_backbones_int8_scheme_is_its_registry_entrys_measured_one():
    from edgelabels.models.backbones import BACKBONES

    # What was measured (models/backbones.py): per-tensor conv INT8 pays for VGG16 and ResNet50; depthwise/SiLU/
    # squeeze-excite networks never gained; our own CNNs were not measured and get the default scheme.
    never = {"efficientnetb0", "efficientnetb1", "efficientnetb2", "efficientnetb3", "efficientnetv2b0",
             "mobilenetv3small", "mobilenetv3large"}
    assert {name for name, spec in BACKBONES.items() if not spec.int8.pays} == never
    for name in ("vgg16", "resnet50"):
        assert q.scheme_for(name).to_json() == {"pays": True, "per_channel": False, "activations_unsigned": True,
                                                "op_types": ["Conv", "MatMul", "Gemm"],
                                                "note": BACKBONES[name].int8.note}
        assert q.scheme_for(name).note.startswith("measured: per-tensor")
    assert q.scheme_for("tinycnn").note.startswith("not measured") and q.scheme_for(None).pays
