"""Detection through every verb: a Ground Truth box manifest -> train -> evaluate -> export -> predict -> serve.

A tiny detector (tinycnn, 64 px) on photos made in code: one or two squares per image, red ("red") or blue
("blue"), on a grey noisy background, so that boxes are learnable in a few epochs on 2 CPU cores.
Each verb runs through the CLI's own entry (edgelabels.cli.main: argument parsing, handler, exit code) in this
process: four `python -m edgelabels.cli` subprocesses paid four TensorFlow start-ups (the file took 38 s
with them, 22 s without; measured 2026-12-05 on a shared 2-core CPU).
That the module runs as a command is tests/test_cli_quiet.py's and tests/test_config.py's to check.
"""

from __future__ import annotations

import json

import pytest

from edgelabels.cli import main
from helpers.datasets import REPO
from helpers.detection import make_box_photos as _photos

pytestmark = pytest.mark.slow


def _cli(capsys, *args) -> None:
    code = main(list(args))
    assert code == 0, f"edgelabels {args[0]} exited {code}: {capsys.readouterr().err[-3000:]}"


def test_a_tiny_detector_trains_evaluates_exports_and_predicts_rekognition_shaped_boxes(tmp_path, capsys):
    manifest, _ = _photos(tmp_path / "data", 48, seed=0)
    run = tmp_path / "run"
    # 12 epochs: test mAP@50 1.0 (8 epochs: 0.89, 25: 1.0; untrained: about 0), measured 2026-12-06.
    sets = [f"data.source={manifest}", "data.image_size=64", "model.backbone=tinycnn",
            "model.weights=none", "model.max_detections=20", "train.epochs=12", "train.fine_tune_epochs=0",
            "train.batch_size=8", "train.learning_rate=0.005", "train.class_weight=none", "train.verbose=0",
            "augment.preset=none", "data.test_fraction=0.2", "data.val_fraction=0.15"]
    _cli(capsys, "train", str(REPO / "configs" / "bees.yaml"), "--out", str(run),
         *[arg for s in sets for arg in ("--set", s)])
    assert (run / "model.keras").is_file() and (run / "splits" / "boxes.jsonl").is_file()

    _cli(capsys, "evaluate", str(run))
    summary = json.loads((run / "evaluation" / "summary.json").read_text())
    metrics = json.loads((run / "evaluation" / "metrics.json").read_text())
    assert "AggregatedEvaluationResults" in json.dumps(summary)
    assert (run / "evaluation" / "report.html").is_file()
    # A learnable problem: the detector must find most squares (far above chance) on images it never saw.
    coco = {k: v for k, v in metrics.items() if "map" in k.lower()}
    assert coco, metrics.keys()
    assert max(v for v in coco.values() if isinstance(v, (int, float))) > 0.3, coco

    _cli(capsys, "export", str(run))
    report = json.loads((run / "export" / "export_report.json").read_text())
    assert report["parity"]["max_abs_diff"] <= 1e-3, report["parity"]

    image = sorted((tmp_path / "data").glob("*.png"))[0]
    _cli(capsys, "predict", str(run / "export"), str(image), "--json-beside")
    answer = json.loads(image.with_name(image.name + ".json").read_text())  # IMAGE.json beside IMAGE
    labels = answer["CustomLabels"]
    assert labels and all(set(box["Geometry"]["BoundingBox"]) == {"Width", "Height", "Left", "Top"} for box in labels)
    confidences = [box["Confidence"] for box in labels]
    assert confidences == sorted(confidences, reverse=True) and all(0 <= c <= 100 for c in confidences)
