"""Per-image outputs: predictions.csv, the Rekognition-style evaluation manifest, the review queue."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgelabels.evaluate.predictions import evaluation_manifest_lines, write_evaluation_manifest, write_predictions_csv
from edgelabels.evaluate.review import write_review_queue

SNAPSHOT = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "rekognition" / "evaluation-manifest-snapshot.jsonl"
LABELS = ["normal", "pneumonia"]


@pytest.fixture
def images(tmp_path):
    paths = []
    for i, value in enumerate((10, 60, 110, 160, 210)):
        path = tmp_path / "in" / f"xray {i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(np.full((20, 20), value, np.uint8)).save(path)
        paths.append(path)
    y_true = np.array([0, 0, 1, 1, 1])
    probs = np.array([[0.97, 0.03], [0.55, 0.45], [0.40, 0.60], [0.80, 0.20], [0.01, 0.99]])
    return paths, y_true, probs


def _shape(value):
    """Keys and value types, recursively (the snapshot's structure without its values)."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(v) for v in value[:1]]
    return "number" if isinstance(value, (int, float)) and not isinstance(value, bool) else type(value).__name__


def test_predictions_csv_has_one_row_per_image_with_every_label_confidence(tmp_path, images):
    paths, y_true, probs = images
    write_predictions_csv(tmp_path / "p.csv", paths, y_true, probs, LABELS)
    rows = list(csv.DictReader((tmp_path / "p.csv").open()))
    assert len(rows) == 5
    assert list(rows[0]) == ["path", "true_label", "predicted_label", "confidence", "confidence:normal",
                             "confidence:pneumonia"]
    assert rows[3]["true_label"] == "pneumonia" and rows[3]["predicted_label"] == "normal"
    assert float(rows[3]["confidence"]) == pytest.approx(0.8) and float(rows[3]["confidence:pneumonia"]) == 0.2
    assert rows[0]["path"] == str(paths[0])


@pytest.mark.skipif(not SNAPSHOT.exists(), reason="../shared/fixtures/rekognition is absent")
def test_manifest_lines_have_the_structure_of_aws_classification_snapshot(images):
    paths, y_true, probs = images
    aws = json.loads(SNAPSHOT.read_text().splitlines()[0])
    lines = evaluation_manifest_lines(paths, y_true, probs, LABELS, thresholds=[0.6, 0.5])
    for line in lines:
        assert _shape(json.loads(json.dumps(line))) == _shape(aws)
    assert lines[2]["rekognition-custom-labels-training-0-metadata"]["class-name"] == "pneumonia"
    assert lines[2]["rekognition-custom-labels-evaluation-0-metadata"]["confidence"] == pytest.approx(0.6)


def test_manifest_flags_follow_the_assumed_threshold_of_the_top_label(images):
    paths, y_true, probs = images
    lines = evaluation_manifest_lines(paths, y_true, probs, LABELS, thresholds=[0.6, 0.5])
    flags = [line["rekognition-custom-labels-evaluation-0-metadata"]["rekognition-custom-labels-evaluation-details"]
             for line in lines]
    kinds = [[k for k in ("is-true-positive", "is-true-negative", "is-false-positive", "is-false-negative")
              if f[k]] for f in flags]
    # 0.97 normal (right, >= 0.6): TP; 0.55 normal (right, < 0.6): FN; 0.60 pneumonia (right, >= 0.5): TP;
    # 0.80 normal (wrong, >= 0.6): FP; 0.99 pneumonia (right): TP.
    assert kinds == [["is-true-positive"], ["is-false-negative"], ["is-true-positive"], ["is-false-positive"],
                     ["is-true-positive"]]
    assert [f["is-present-in-ground-truth"] for f in flags] == [True, True, True, False, True]
    low = evaluation_manifest_lines(paths[3:4], [1], [[0.55, 0.45]], LABELS, thresholds=[0.6, 0.5])
    assert low[0]["rekognition-custom-labels-evaluation-0-metadata"][
        "rekognition-custom-labels-evaluation-details"]["is-true-negative"]  # wrong guess, below its threshold


def test_manifest_file_is_json_lines(tmp_path, images):
    paths, y_true, probs = images
    write_evaluation_manifest(tmp_path / "m.jsonl", evaluation_manifest_lines(paths, y_true, probs, LABELS, [0.5, 0.5]))
    text = (tmp_path / "m.jsonl").read_text()
    assert text.endswith("\n") and [json.loads(line)["source-ref"] for line in text.splitlines()] == [
        str(p) for p in paths]


def test_review_queue_holds_exactly_the_low_confidence_images(tmp_path, images):
    paths, y_true, probs = images
    summary = write_review_queue(tmp_path / "review", paths, y_true, probs, LABELS, threshold=0.9)
    rows = list(csv.DictReader((tmp_path / "review" / "queue.csv").open()))
    assert [Path(r["path"]).name for r in rows] == ["xray 1.png", "xray 2.png", "xray 3.png"]  # least confident first
    assert [float(r["confidence"]) for r in rows] == [0.55, 0.6, 0.8]
    copies = sorted(p.name for p in (tmp_path / "review" / "images").iterdir())
    assert copies == ["0001_normal_0.550_xray-1.png", "0002_pneumonia_0.600_xray-2.png",
                      "0003_normal_0.800_xray-3.png"]
    assert all((tmp_path / "review" / r["file"]).read_bytes() == Path(r["path"]).read_bytes() for r in rows)
    assert summary["count"] == 3 and summary["fraction"] == pytest.approx(0.6) and summary["wrong_in_queue"] == 1


def test_review_queue_is_empty_when_every_image_is_confident(tmp_path, images):
    paths, y_true, probs = images
    summary = write_review_queue(tmp_path / "review", paths, y_true, probs, LABELS, threshold=0.5)
    assert summary["count"] == 0 and list((tmp_path / "review" / "images").iterdir()) == []
    assert (tmp_path / "review" / "queue.csv").read_text().count("\n") == 1  # header only
