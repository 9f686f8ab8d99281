"""What every evaluation report adds: intervals beside each headline figure (metrics.json, report, printed lines),
the recipe of a run trained from the data alone (recipe.json), and the calibration section."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from edgelabels.artifacts import ExportDir, RunDir
from edgelabels.errors import UserError
from edgelabels.evaluate.evaluation import calibrator, run_recipe, write_evaluation

RECIPE = {"version": 1, "source": "data/bees", "task": "detection", "budget_s": 1800.0,
          "choices": [{"key": "data.image_size", "value": [288, 512],
                       "reason": "input 288x512: the median box is 14 px, 3.5 heatmap cells"},
                      {"key": "train.epochs", "value": 40, "reason": "40 epochs fit 30 min at 31 images/s"}],
          "measured": {"images_per_second": 31.2}}


def _images(folder, n, rng):
    paths = []
    for i in range(n):
        path = folder / "images" / f"img_{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def _classifier_evaluation(tmp_path, **given):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    probs = rng.dirichlet([1, 1], 60) * 0.5 + np.eye(2)[y] * 0.5
    return write_evaluation(tmp_path / "evaluation", y_true=y, probs=probs, labels=["cat", "dog"],
                            paths=_images(tmp_path, 60, rng), run_id="runs/pets", **given)


def _run_with_recipe(tmp_path):
    run = RunDir(tmp_path / "run")
    run.dir.mkdir()
    run.config_path.write_text("task: detection\n")
    run.recipe_path.write_text(json.dumps(RECIPE))
    return run


def test_report_shows_the_recipe_table_of_the_run_and_of_its_export(tmp_path):
    run = _run_with_recipe(tmp_path)
    assert run_recipe(run) == RECIPE
    assert run_recipe(ExportDir(run.dir / "export")) == RECIPE  # an export reads the run it sits in
    result = _classifier_evaluation(tmp_path, recipe=run_recipe(run))
    html = (result["out"] / "report.html").read_text()
    assert ("<tr><td>data.image_size</td><td>[288, 512]</td><td>input 288x512: the median box is 14 px, 3.5 heatmap "
            "cells</td></tr>") in html
    assert "<tr><td>train.epochs</td><td>40</td>" in html and "within a budget of 30 min" in html
    assert "<tr><td>images_per_second</td><td>31.2</td></tr>" in html  # what the recipe measured
    markdown = (result["out"] / "report.md").read_text()
    assert "## Recipe" in markdown and "| train.epochs | 40 | 40 epochs fit 30 min at 31 images/s |" in markdown


def test_a_run_without_recipe_json_has_no_recipe_section(tmp_path):
    run = RunDir(tmp_path / "run")
    run.dir.mkdir()
    assert run_recipe(run) is None and run_recipe(ExportDir(tmp_path / "copied-export")) is None
    result = _classifier_evaluation(tmp_path, recipe=None)
    assert "Recipe" not in (result["out"] / "report.html").read_text()


def test_a_broken_recipe_json_is_refused_naming_the_file(tmp_path):
    run = _run_with_recipe(tmp_path)
    run.recipe_path.write_text("{not json")
    with pytest.raises(UserError, match="recipe.json: not valid JSON"):
        run_recipe(run)
    run.recipe_path.write_text('{"version": 1}')
    with pytest.raises(UserError, match="recipe.json: not a recipe"):
        run_recipe(run)


def test_calibration_section_shows_ece_before_and_after_and_the_reliability_diagram(tmp_path, monkeypatch):
    def calibrate(plots):
        Image.new("RGB", (40, 30), "white").save(plots / "reliability.png")
        return {"method": "temperature scaling (T = 1.7)", "fitted_on": "the validation split (80 images)",
                "ece_before": 0.1234, "ece_after": 0.0217, "plot": plots / "reliability.png"}

    monkeypatch.chdir(tmp_path)  # a relative --out: the plot's path is relative to the working folder
    result = _classifier_evaluation(tmp_path.relative_to(tmp_path), calibrate=calibrate)
    written = json.loads((result["out"] / "metrics.json").read_text())["calibration"]
    assert written["plot"] == "plots/reliability.png"  # inside the folder, wherever it was written first
    assert (result["out"] / written["plot"]).is_file()
    html = (result["out"] / "report.html").read_text()
    assert "<h2>Calibration</h2>" in html
    assert "temperature scaling (T = 1.7), fitted on the validation split (80 images): expected calibration error " \
           "0.1234 before, 0.0217 after" in html
    assert "](plots/reliability.png)" in (result["out"] / "report.md").read_text()


def test_an_evaluation_without_calibration_draws_no_calibration_section(tmp_path):
    assert calibrator(SimpleNamespace(calibration=None)) is None
    assert calibrator(SimpleNamespace()) is None  # an Evaluation from before calibration existed
    result = _classifier_evaluation(tmp_path)
    assert "calibration" not in result["metrics"]
    assert "<h2>Calibration</h2>" not in (result["out"] / "report.html").read_text()


def _has_intervals(metrics: dict, keys) -> None:
    for key in keys:
        value = metrics
        for part in key.split("."):
            value = value[part]
        found = metrics["intervals"][key]
        assert found["value"] == pytest.approx(value), key
        assert found["low"] <= found["value"] <= found["high"], key
        assert (found["level"], found["resamples"], found["unit"]) == (0.95, 1000, "image")


def test_classifier_metrics_report_and_lines_carry_intervals(tmp_path):
    from edgelabels.evaluate.classification import lines

    result = _classifier_evaluation(tmp_path)
    written = json.loads((result["out"] / "metrics.json").read_text())
    _has_intervals(written, ("accuracy", "f1_macro", "roc_auc_macro", "at_assumed_thresholds.precision",
                             "at_assumed_thresholds.recall", "at_assumed_thresholds.f1"))
    assert set(written["intervals"]["per_label"]) == {"cat", "dog"}
    accuracy = written["intervals"]["accuracy"]
    html = (result["out"] / "report.html").read_text()
    # the card shows the figure large and its interval beneath it
    assert (f"<div class='v'>{written['accuracy']:.2%}</div><div class='ci'>95% CI "
            f"{accuracy['low']:.1%}-{accuracy['high']:.1%}</div>".replace("%-", "-") in html)
    shown = lines({**result, "task": "classification", "review_choice": None,
                   "speed": {"images": 60, "seconds": 1.0, "images_per_second": 60.0}})
    assert shown[1].startswith(f"accuracy {written['accuracy']:.2%} (95% CI ")
    assert f"ROC AUC {written['roc_auc_macro']:.4f} (95% CI " in shown[1]


def test_multilabel_metrics_carry_intervals_and_macro_average_precision(tmp_path):
    from edgelabels.evaluate.multilabel import write_multilabel_evaluation

    rng = np.random.default_rng(1)
    truth = rng.random((50, 3)) < 0.4
    probs = np.clip(truth * 0.5 + rng.random((50, 3)) * 0.5, 0, 1)
    result = write_multilabel_evaluation(tmp_path / "evaluation", paths=_images(tmp_path, 50, rng), truth=truth,
                                         probs=probs, labels=["a", "b", "c"], run_id="runs/tags", recipe=RECIPE)
    written = json.loads((result["out"] / "metrics.json").read_text())
    _has_intervals(written, ("at_assumed_thresholds.subset_accuracy", "at_assumed_thresholds.macro_f1",
                             "average_precision_macro", "at_assumed_thresholds.f1"))
    html = (result["out"] / "report.html").read_text()
    assert "Macro average precision" in html and "<h2>Recipe</h2>" in html


def test_detection_metrics_carry_intervals_per_label_and_overall(tmp_path):
    from edgelabels.data.dataset import Box, Sample
    from edgelabels.evaluate.detection import write_detection_evaluation

    rng = np.random.default_rng(2)
    paths = _images(tmp_path, 8, rng)  # 32 x 24
    samples = [Sample(p, ("bee",), f"g{i}", (Box("bee", 4, 4, 8, 8),)) for i, p in enumerate(paths)]
    found = [np.array([[4 / 32, 4 / 24, 8 / 32, 8 / 24, 0.9 - 0.05 * i, 0]]) if i % 3 else
             np.array([[0.6, 0.6, 0.2, 0.2, 0.5, 0]]) for i in range(8)]
    result = write_detection_evaluation(tmp_path / "evaluation", samples=samples, predictions=found,
                                        labels=["bee"], run_id="runs/bees", recipe=RECIPE)
    written = json.loads((result["out"] / "metrics.json").read_text())
    _has_intervals(written, ("map_50", "at_assumed_thresholds.average_precision",
                             "at_assumed_thresholds.average_recall", "at_assumed_thresholds.f1"))
    assert set(written["intervals"]["per_label"]["bee"]) == {"precision", "recall", "f1", "coco_ap_50"}
    html = (result["out"] / "report.html").read_text()
    assert f"{written['map_50']:.4f} (95% CI " in html and "<h2>Recipe</h2>" in html


def test_segmentation_metrics_carry_dice_and_iou_intervals(tmp_path):
    from edgelabels.data.masks import read_mask
    from edgelabels.evaluate import segmentation
    from helpers.segmentation import write_hand_counted_pairs

    write_hand_counted_pairs(tmp_path / "pairs")
    paths = sorted((tmp_path / "pairs" / "images").iterdir())
    truths = [read_mask(tmp_path / "pairs" / "masks" / p.name, *Image.open(p).size[::-1]) for p in paths]
    evaluation = SimpleNamespace(
        min_confidence=0.5, paths=paths, samples=paths, described="hand pairs", overlays=0,
        predictions=[(t == 255).astype(np.float64) for t in truths], found=_run_with_recipe(tmp_path),
        model=SimpleNamespace(description="perfect U-Net", drawn_with=None),
        speed=lambda: {"images": 3, "seconds": 1.0, "images_per_second": 3.0})
    result = segmentation.write(tmp_path / "evaluation", evaluation)
    written = json.loads((tmp_path / "evaluation" / "metrics.json").read_text())
    _has_intervals(written, ("dice", "iou"))
    shown = segmentation.lines({**result, "out": tmp_path / "evaluation"})
    assert shown[0].startswith("evaluated 3 image/mask pairs: Dice 1.0000 (95% CI 1.000-1.000), IoU ")
    assert "<h2>Recipe</h2>" in (tmp_path / "evaluation" / "report.html").read_text()
