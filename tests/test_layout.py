"""The on-disk contract: documented file names, layout versions, folders of the previous layout, clear refusals.

These tests spell the documented names themselves (README: Run directory, Export folder), so renaming a
file in edgelabels/artifacts.py fails here.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from helpers.server import image_bytes, write_model_dir
from edgelabels.artifacts import LAYOUT_VERSION, ExportDir, RunDir, open_model_dir
from edgelabels.errors import UserError
from edgelabels.runtime.predictor import Predictor


def test_run_and_export_folders_use_the_documented_names(tmp_path):
    run, export = RunDir(tmp_path / "run"), ExportDir(tmp_path / "run" / "export")
    names = {path.relative_to(tmp_path / "run").as_posix() for path in (
        run.config_path, run.labels_path, run.preprocess_path, run.model_path, run.history_path, run.log_path,
        run.last_path, run.state_path, run.stages_path, run.stage_cache(0), run.evaluation_dir, run.splits_dir,
        export.model_path, export.int8_path, export.labels_path, export.preprocess_path, export.thresholds_path,
        export.report_path, export.stages_path, export.stage_dir(0))}
    assert names == {"config.yaml", "labels.json", "preprocess.json", "model.keras", "history.csv", "train.log",
                     "checkpoint/last.keras", "checkpoint/state.json", "stages.json", "stage-cache/0", "evaluation",
                     "splits", "export/model.onnx", "export/model.int8.onnx", "export/labels.json",
                     "export/preprocess.json", "export/thresholds.json", "export/export_report.json",
                     "export/stages.json", "export/stages/0"}


def test_written_folders_carry_their_layout_version(tmp_path):
    run = RunDir(tmp_path / "run")
    run.start("task: classification\n")
    assert json.loads((tmp_path / "run" / "layout.json").read_text()) == {"layout": "run", "version": 2}
    folder = write_model_dir(tmp_path / "export")
    assert json.loads((folder / "layout.json").read_text()) == {"layout": "export", "version": 2,
                                                                "task": "classification"}
    assert LAYOUT_VERSION == 2


def test_a_newer_layout_is_explained_not_failed_on(tmp_path):
    folder = write_model_dir(tmp_path / "export")
    (folder / "layout.json").write_text(json.dumps({"layout": "export", "version": 3, "task": "classification"}))
    with pytest.raises(UserError, match=r"layout 3 by a newer edgelabels; this one reads layouts 1-2"):
        Predictor(folder)


def test_a_run_given_where_an_export_is_expected_and_back_is_named_as_such(tmp_path):
    run = RunDir(tmp_path / "run")
    run.start("task: classification\n")
    with pytest.raises(UserError, match="a run directory, not an export folder"):
        Predictor(run.dir)
    folder = write_model_dir(tmp_path / "export")
    with pytest.raises(UserError, match="an export folder, not a run directory"):
        RunDir.load(folder)
    with pytest.raises(UserError, match="not a finished run"):
        RunDir.load(run.dir)
    with pytest.raises(UserError, match="neither a run directory"):
        open_model_dir(tmp_path)


def _as_layout_1(folder):
    """The export folder exactly as edgelabels 0.1 wrote it: no layout.json."""
    (folder / "layout.json").unlink()
    return folder


def test_an_export_of_the_previous_layout_still_loads_and_predicts(tmp_path):
    folder = _as_layout_1(write_model_dir(tmp_path / "run" / "export"))
    (tmp_path / "run" / "config.yaml").write_text("task: classification\n")
    assert sorted(p.name for p in folder.iterdir()) == ["labels.json", "model.onnx", "preprocess.json",
                                                        "thresholds.json"]
    predictor = Predictor(folder)
    answer = predictor.detect(image_bytes((220, 30, 30)))
    assert answer["CustomLabels"][0]["Name"] == "red"


def test_a_chained_export_of_the_previous_layout_runs_its_unet_first(tmp_path):
    """Layout 1: segment.json {"model": "segment", "masking"} + segment/ (a U-Net export marked by segmentation.json)."""
    from helpers.server import write_unet_dir

    folder = _as_layout_1(write_model_dir(tmp_path / "run" / "export"))
    unet = write_unet_dir(folder / "segment", lung="left")
    (unet / "layout.json").unlink()
    (unet / "segmentation.json").write_text(json.dumps({"task": "segmentation", "threshold": 0.5,
                                                        "output": "lung probability (N, H, W, 1)"}))
    (folder / "segment.json").write_text(json.dumps({"model": "segment", "masking": {
        "threshold": 0.5, "dilate": 0.0, "crop": False, "fill": 0}}))
    assert ExportDir.load(unet).task == "segmentation"
    with pytest.raises(UserError, match="not a classifier"):
        Predictor(unet)
    chained, plain = Predictor(folder), Predictor(folder)
    plain.chain.stages = []
    # The image is red on the right half only; the U-Net keeps the left half (blank -> black): the chained
    # classifier sees far less red than the plain one.
    image = np.zeros((32, 32, 3), np.uint8)
    image[:, 16:] = (230, 20, 20)
    from PIL import Image

    with_chain = chained.probabilities([Image.fromarray(image)])[0]
    without = plain.probabilities([Image.fromarray(image)])[0]
    assert without[0] > with_chain[0] + 0.1  # label 0 is "red"


def test_a_chained_export_of_this_layout_reads_its_stage_list(tmp_path):
    from helpers.server import write_unet_dir

    folder = write_model_dir(tmp_path / "run" / "export")
    write_unet_dir(ExportDir(folder).stage_dir(0), lung="left")
    ExportDir(folder).write_stages([{"kind": "keep-lungs", "masking": {"threshold": 0.5, "dilate": 0.0,
                                                                        "crop": False, "fill": 0}}])
    described = json.loads((folder / "stages.json").read_text())
    assert described == {"stages": [{"kind": "keep-lungs", "model": "stages/0",
                                     "masking": {"threshold": 0.5, "dilate": 0.0, "crop": False, "fill": 0}}]}
    predictor = Predictor(folder)
    assert len(predictor.chain) == 1 and predictor.chain.stages[0].kind == "keep-lungs"
    shutil.rmtree(ExportDir(folder).stage_dir(0))
    with pytest.raises(UserError, match="stages/0"):
        Predictor(folder)


def test_an_unknown_stage_kind_is_refused_with_the_known_ones(tmp_path):
    folder = write_model_dir(tmp_path / "export")
    (folder / "stages.json").write_text(json.dumps({"stages": [{"kind": "sharpen", "model": "stages/0"}]}))
    with pytest.raises(UserError, match="stage kind must be one of keep-lungs, crop-box, not 'sharpen'"):
        Predictor(folder)


def test_a_task_this_version_does_not_know_is_named_with_its_file(tmp_path):
    folder = write_model_dir(tmp_path / "export")
    (folder / "layout.json").write_text(json.dumps({"layout": "export", "version": 2, "task": "keypoints"}))
    with pytest.raises(UserError, match=r"layout.json: task 'keypoints' is not one this edgelabels knows"):
        Predictor(folder)
    (folder / "layout.json").write_text("{not json")
    with pytest.raises(UserError, match=r"layout.json: not valid JSON"):
        Predictor(folder)
