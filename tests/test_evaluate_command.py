"""`edgelabels evaluate` on a tiny run directory and on its ONNX export."""

from __future__ import annotations

import json
import os

import pytest

pytest.importorskip("keras")

from edgelabels.cli import main  # noqa: E402
from edgelabels.data.splits import read_split  # noqa: E402
from edgelabels.evaluate.summary import read_summary  # noqa: E402
from helpers.runs import LABELS, make_run, write_images  # noqa: E402


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("runs") / "tiny", per_label=10)


@pytest.fixture(scope="module")
def evaluated(run_dir):
    assert main(["evaluate", str(run_dir), "--review-threshold", "0.99", "--gradcam", "2"]) == 0
    return run_dir / "evaluation"


def test_run_directory_evaluates_its_test_split(run_dir, evaluated, capsys):
    split = read_split(run_dir / "splits")
    summary = read_summary(evaluated / "summary.json")
    assert summary.labels == list(LABELS)
    assert summary.number_of_testing_images == len(split.test)
    assert summary.number_of_training_images == len(split.train)
    assert summary.project_version_arn == str(run_dir)
    metrics = json.loads((evaluated / "metrics.json").read_text())
    assert metrics["number_of_images"] == len(split.test)
    assert (evaluated / "review" / "queue.csv").is_file()


def test_keras_run_gets_a_grad_cam_gallery_in_the_report(evaluated):
    panels = sorted(p.name for p in (evaluated / "gradcam").iterdir())
    assert panels and all(name.endswith(".png") for name in panels)
    html = (evaluated / "report.html").read_text()
    # 5 plots, the panels, and the run's calibration (fitted on its validation split) drawn as a reliability diagram
    assert (evaluated / "plots" / "reliability.png").is_file()
    assert html.count("data:image/png;base64,") == 5 + len(panels) + 1


def test_data_folder_is_evaluated_with_labels_matched_by_name(run_dir, tmp_path, capsys):
    fresh = tmp_path / "fresh"
    write_images(fresh, labels=("stripes", "circle"), per_label=3, seed=5)  # a subset, another order
    out = tmp_path / "out"
    assert main(["evaluate", str(run_dir), "--data", str(fresh), "--out", str(out), "--gradcam", "0"]) == 0
    rows = (out / "predictions.csv").read_text().splitlines()[1:]
    assert len(rows) == 6
    assert {row.split(",")[1] for row in rows} == {"stripes", "circle"}
    assert "images/s" in capsys.readouterr().out
    assert not (out / "gradcam").exists()


def test_data_with_a_label_the_model_does_not_know_is_a_user_error(run_dir, tmp_path, capsys):
    write_images(tmp_path / "other", labels=("circle", "triangle"), per_label=2)
    assert main(["evaluate", str(run_dir), "--data", str(tmp_path / "other"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "edgelabels: error:" in err and "triangle" in err and "Traceback" not in err


def test_confidence_on_rekognitions_0_100_scale_is_refused_with_a_hint(run_dir, capsys):
    assert main(["evaluate", str(run_dir), "--min-confidence", "50"]) == 2
    assert "use 0.5" in capsys.readouterr().err


def test_out_that_is_a_file_or_lies_under_one_is_a_one_line_error_and_nothing_is_written(run_dir, tmp_path, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    for out, reason in ((notes / "evaluation", f"{notes / 'evaluation'}: cannot be made, {notes} is a file"),
                        (notes, f"{notes}: is a file, not a folder")):
        assert main(["evaluate", str(run_dir), "--out", str(out), "--gradcam", "0"]) == 2
        err = capsys.readouterr().err
        assert reason in err and err.count("\n") == 1 and "Traceback" not in err
    assert notes.read_text() == "keep me" and [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_an_option_a_task_does_not_take_is_refused_in_one_line(run_dir, capsys):
    assert main(["evaluate", str(run_dir), "--overlays", "2"]) == 2
    assert "--overlays does not apply to a classifier" in capsys.readouterr().err


def test_folder_that_is_not_a_model_is_a_user_error(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path)]) == 2
    assert "neither a run directory" in capsys.readouterr().err


@pytest.mark.slow  # exports to ONNX first
def test_exported_onnx_model_evaluates_to_the_same_metrics_as_its_run(run_dir, evaluated):
    from edgelabels.export.driver import export_run

    export_run(run_dir, parity_images=4)
    assert main(["evaluate", str(run_dir / "export"), "--precision", "fp32"]) == 0
    keras_metrics = json.loads((evaluated / "metrics.json").read_text())
    onnx_metrics = json.loads((run_dir / "export" / "evaluation" / "metrics.json").read_text())
    for key in ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc_macro"):
        assert onnx_metrics[key] == keras_metrics[key]
    for key in ("log_loss", "expected_calibration_error"):
        assert onnx_metrics[key] == pytest.approx(keras_metrics[key], abs=1e-5)
    for ours, theirs in zip(onnx_metrics["per_label"], keras_metrics["per_label"]):
        assert ours["assumed_threshold"] == pytest.approx(theirs["assumed_threshold"], abs=1e-5)
        assert ours["at_assumed_threshold"]["f1"] == pytest.approx(theirs["at_assumed_threshold"]["f1"])
    assert onnx_metrics["coverage"] == keras_metrics["coverage"]
    assert read_summary(run_dir / "export" / "evaluation" / "summary.json").number_of_training_images > 0


def test_evaluate_sweeps_temp_files_a_killed_writer_left_in_the_model_folder(run_dir, tmp_path):
    import subprocess
    import sys

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # its pid now names a process that no longer exists
    left = run_dir / "evaluation" / f".summary.json.{gone.pid}.0badf00d.tmp"
    left.parent.mkdir(exist_ok=True)
    left.write_bytes(b"half a summary")
    ours = run_dir / f".notes.{os.getpid()}.0badf00d.tmp"  # a live writer's (this process): kept
    ours.write_bytes(b"being written")
    assert main(["evaluate", str(run_dir), "--out", str(tmp_path / "eval"), "--gradcam", "0"]) == 0
    assert not left.exists() and ours.exists()
    ours.unlink()
