"""`edgelabels export RUN`: the RUN/export/ contract, thresholds, atomicity and the INT8 verdict."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest

from edgelabels.cli import main
from edgelabels.errors import UserError
from edgelabels.export import export_run as export_module
from edgelabels.export import quantize as q
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
        "export_report.json", "labels.json", "layout.json", "model.onnx", "preprocess.json", "thresholds.json"]
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

    export_module.export_run(run)
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

    report = export_module.export_run(run)
    thresholds = json.loads((run / "export" / "thresholds.json").read_text())
    assert thresholds == {"circle": 0.9879502058029175, "square": 0.014450683258473873, "stripes": 0.25}
    assert report["thresholds"]["source"].startswith(str(run / "evaluation" / "summary.json"))


def test_interrupted_export_keeps_the_previous_export_whole(run, monkeypatch):
    export_module.export_run(run)
    before = {p.name: p.read_bytes() for p in (run / "export").iterdir()}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C after model.onnx is written, before the rest

    monkeypatch.setattr(export_module, "assumed_thresholds", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export_module.export_run(run)
    assert {p.name: p.read_bytes() for p in (run / "export").iterdir()} == before
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []  # no temp folder left behind


def test_interrupted_first_export_leaves_no_export_folder(run, monkeypatch):
    monkeypatch.setattr(export_module, "assumed_thresholds", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        export_module.export_run(run)
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
    report = export_module.export_run(run, int8=True, calibration=12)
    if not report["int8"]["shipped"]:  # the accuracy rule may still refuse it: then it must say so
        assert "validation accuracy" in report["int8"]["reason"]
        assert not (run / "export" / "model.int8.onnx").exists()
        pytest.skip(f"INT8 refused on accuracy for this tiny model: {report['int8']['reason']}")
    assert report["int8"]["accuracy_change_points"] >= -q.MAX_ACCURACY_DROP_POINTS
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
    ok, reason = q.int8_verdict(fp32_ms, int8_ms, fp32_acc, int8_acc)
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
    monkeypatch.setitem(q.SCHEMES, "tinycnn", q.Int8Scheme(pays=False, note="measured never faster"))
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

    from edgelabels.export.export_run import keras_batch1_ms
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
