"""U-Net evaluation: Dice/IoU against hand-computed masks, the folder it writes, the inputs it refuses.

The "U-Net" here is one 1x1 convolution that calls every dark pixel lung (no training, so every
number is known in advance): images are dark rectangles on a light background, and a mask that
differs from its image's rectangle gives a Dice that can be counted by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgelabels.errors import UserError
from edgelabels.evaluate.driver import evaluate_model
from edgelabels.evaluate.segmentation import segmentation_metrics
from helpers.segmentation import (SIZE, make_export, make_pixel_unet_run, rectangle, write_hand_counted_pairs,  # noqa: F401
                                  write_pair)

@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """Data with hand-counted scores, a run whose test split is all of it (plus a train image), its export."""
    root = tmp_path_factory.mktemp("segment-evaluation")
    expected = write_hand_counted_pairs(root / "data")
    train = write_pair(root / "train", "t.png", rectangle((SIZE, SIZE), (4, 8), (4, 8)),
                       rectangle((SIZE, SIZE), (4, 8), (4, 8)))
    paths = [train] + sorted((root / "data" / "images").iterdir())
    run = make_pixel_unet_run(root / "run", paths)
    return {"root": root, "data": root / "data", "run": run, "export": make_export(run), "expected": expected}


def _scores(metrics) -> dict[str, tuple[float, float]]:
    return {Path(row["path"]).name: (row["dice"], row["iou"]) for row in metrics["per_image"]}


def test_metrics_match_hand_counts_and_ignore_127():
    truth = rectangle((4, 4), (0, 2), (0, 4))  # 8 lung pixels
    half = np.zeros((4, 4))
    half[0, :] = 0.9  # 4 predicted, all lung
    half[3, 0] = 0.7  # 1 false positive
    ignored = truth.copy()
    ignored[3, :] = 127  # ... which the annotator said to ignore
    metrics = segmentation_metrics([half, half], [truth, ignored], ["x.png", "y.png"])
    assert [(row["path"], row["dice"], row["iou"]) for row in metrics["per_image"]] == [
        ("x.png", pytest.approx(8 / 13), pytest.approx(4 / 9)), ("y.png", pytest.approx(8 / 12), pytest.approx(4 / 8))]
    assert metrics["dice"] == pytest.approx((8 / 13 + 8 / 12) / 2)
    assert metrics["iou"] == pytest.approx((4 / 9 + 4 / 8) / 2)
    assert metrics["dice_min"] == pytest.approx(8 / 13)
    assert metrics["images"] == 2 and metrics["task"] == "segmentation"


def test_metrics_threshold_decides_what_counts_as_lung():
    truth = rectangle((2, 2), (0, 1), (0, 2))
    probability = np.array([[0.6, 0.6], [0.6, 0.2]])
    assert segmentation_metrics([probability], [truth], ["x"], threshold=0.5)["dice"] == pytest.approx(4 / 5)
    assert segmentation_metrics([probability], [truth], ["x"], threshold=0.7)["dice"] == 0.0


def test_metrics_take_generators_and_refuse_a_missing_mask():
    truth = rectangle((3, 3), (0, 3), (0, 1))
    metrics = segmentation_metrics((p for p in [truth / 255.0] * 3), iter([truth] * 3), ["a", "b", "c"])
    assert metrics["dice"] == 1.0 and metrics["images"] == 3
    with pytest.raises(ValueError):
        segmentation_metrics([truth / 255.0] * 2, [truth], ["a", "b"])


def test_run_evaluation_scores_the_test_split_and_writes_the_whole_folder(toy):
    result = evaluate_model(toy["run"], overlays=1, progress=False)
    out = toy["run"] / "evaluation"
    assert result["out"] == out
    metrics = json.loads((out / "metrics.json").read_text())
    assert _scores(metrics) == {name: (pytest.approx(d), pytest.approx(i)) for name, (d, i) in toy["expected"].items()}
    assert metrics["dice"] == pytest.approx((1 + 320 / 384 + 1) / 3)
    assert metrics["threshold"] == 0.5 and metrics["images"] == 3 and "test split" in metrics["data"]
    # One worst and one best; ties in Dice are broken by path, so "best" is the last 1.0 by name.
    assert sorted(p.name for p in (out / "overlays").iterdir()) == [
        "best-01-dice1.000-c-ignored-blob.png", "worst-01-dice0.833-b-wider-truth.png"]
    assert (out / "plots" / "dice_histogram.png").stat().st_size > 1000
    report = (out / "report.md").read_text()
    assert "overlays/worst-01-dice0.833-b-wider-truth.png" in report and "plots/dice_histogram.png" in report
    assert "data:image/png;base64," in (out / "report.html").read_text()
    assert result["speed"]["images"] == 3


def test_export_evaluation_uses_the_split_of_its_run_and_scores_like_keras(toy, tmp_path):
    result = evaluate_model(toy["export"], out=tmp_path / "eval", overlays=0, progress=False)
    expected = {name: (pytest.approx(d), pytest.approx(i)) for name, (d, i) in toy["expected"].items()}
    assert _scores(result["metrics"]) == expected
    assert "model.onnx" in result["metrics"]["model"]
    assert not (tmp_path / "eval" / "overlays").exists()


def test_masks_larger_than_the_unet_are_scored_at_their_own_size(toy, tmp_path):
    """64x48 pairs for a 32x32 U-Net: scored and drawn at 64x48 (the probability is resized, not the mask)."""
    shape = (48, 64)
    lung = rectangle(shape, (8, 40), (8, 28))
    write_pair(tmp_path / "big", "big.png", lung, lung)
    # A truth wider by 1 mask pixel (half a U-Net pixel): only at 64x48 does it cost exactly 1 column of 32 rows.
    write_pair(tmp_path / "big", "wide.png", lung, rectangle(shape, (8, 40), (8, 29)))
    metrics = evaluate_model(toy["run"], data=tmp_path / "big", out=tmp_path / "eval", overlays=2,
                                    progress=False)["metrics"]
    scores = _scores(metrics)
    assert scores["big.png"] == (1.0, 1.0)
    assert scores["wide.png"] == (pytest.approx(2 * 640 / (640 + 672)), pytest.approx(640 / 672))
    with Image.open(next((tmp_path / "eval" / "overlays").iterdir())) as overlay:
        assert overlay.size == (64, 48)  # drawn on the image as it is, not on the U-Net's 32x32


def test_evaluating_again_replaces_the_folder_but_a_foreign_folder_is_refused(toy, tmp_path):
    out = tmp_path / "eval"
    evaluate_model(toy["run"], out=out, overlays=3, progress=False)
    assert len(list((out / "overlays").iterdir())) == 3  # 3 images: each shown once, never twice
    evaluate_model(toy["run"], out=out, overlays=1, progress=False)
    assert len(list((out / "overlays").iterdir())) == 2
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="not an evaluation folder"):
        evaluate_model(toy["run"], out=foreign, progress=False)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_the_classifiers_options_are_refused_for_a_unet_before_anything_is_written(toy, tmp_path):
    for option, flag in (({"review_threshold": 0.9}, "--review-threshold"),
                         ({"review_accuracy": 0.99}, "--review-accuracy")):
        with pytest.raises(UserError, match=f"{flag} does not apply to a lung U-Net"):
            evaluate_model(toy["run"], out=tmp_path / "eval", progress=False, **option)
    assert not (tmp_path / "eval").exists()


def test_missing_model_empty_split_and_missing_masks_are_one_line_errors(toy, tmp_path):
    with pytest.raises(UserError, match="no such run directory"):
        evaluate_model(tmp_path / "nowhere", progress=False)
    empty = make_pixel_unet_run(tmp_path / "empty", sorted((toy["data"] / "images").iterdir())[:1])
    with pytest.raises(UserError, match="test split is empty"):
        evaluate_model(empty, progress=False)
    lonely = make_pixel_unet_run(tmp_path / "lonely", sorted((toy["data"] / "images").iterdir()))
    (tmp_path / "copy" / "images").mkdir(parents=True)
    for path in sorted((toy["data"] / "images").iterdir()):  # the same images, their masks gone
        (tmp_path / "copy" / "images" / path.name).write_bytes(path.read_bytes())
    (lonely / "splits" / "test.txt").write_text(
        "".join(f"{p}\tlung\t{p.stem}\n" for p in sorted((tmp_path / "copy" / "images").iterdir())))
    with pytest.raises(UserError, match="no mask for test image"):
        evaluate_model(lonely, progress=False)
    for bad in ({"min_confidence": 1.5}, {"batch_size": 0}, {"overlays": -1}):
        with pytest.raises(UserError):
            evaluate_model(toy["run"], out=tmp_path / "x", progress=False, **bad)
