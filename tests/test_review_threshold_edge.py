"""The export carries the review threshold to the edge (issue 25 item 10): a classifier's export holds review.json
when its run was evaluated with a review threshold (`evaluate --review-accuracy` chooses it on validation), and the
Predictor then says, per image, whether a person must look: top confidence below it, or no answer at all.
DetectCustomLabels keeps Rekognition's shape (`detect` answers CustomLabels only); an export without review.json
(every export written before it existed) says nothing.

The classifier is helpers.server's hand-made ONNX export: softmax of 6 * mean colour - 3, so a pure red image is
"red" at 99.5% and a mid-grey one is a three-way tie at 33.3%.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from edgelabels.artifacts import ExportDir, RunDir
from edgelabels.errors import UserError
from helpers.server import write_model_dir

RED, GREY = Image.new("RGB", (40, 40), (255, 0, 0)), Image.new("RGB", (40, 40), (128, 128, 128))


def test_an_export_without_review_json_says_nothing_about_review(tmp_path):
    from edgelabels.runtime.predictor import Predictor

    predictor = Predictor(write_model_dir(tmp_path / "export"))
    assert predictor.review_threshold is None
    assert predictor.human_review(predictor.probabilities([GREY])[0]) is None


def test_an_export_carrying_a_review_threshold_sends_the_unsure_and_the_unanswered_to_a_person(tmp_path):
    from edgelabels.runtime.predictor import Predictor

    folder = write_model_dir(tmp_path / "export")
    ExportDir(folder).write_review({"threshold": 0.9, "source": "test"})
    predictor = Predictor(folder)
    red, grey = predictor.probabilities([RED, GREY])
    assert red.max() > 0.99 and grey.max() < 0.34  # what the hand-made model answers, by construction
    assert predictor.human_review(red) == {"Needed": False, "Threshold": 90.0}
    assert predictor.human_review(grey) == {"Needed": True, "Threshold": 90.0}
    assert predictor.human_review(np.zeros(3)) == {"Needed": True, "Threshold": 90.0}  # no answer (no window)
    assert set(predictor.detect(GREY)) == {"CustomLabels"}  # DetectCustomLabels' shape is Rekognition's


@pytest.mark.parametrize("written", ['{"threshold": "high"}', '{"threshold": 7}', "[0.9]", "not json"])
def test_a_review_json_without_a_threshold_from_0_to_1_is_refused_naming_the_file(tmp_path, written):
    folder = write_model_dir(tmp_path / "export")
    ExportDir(folder).review_path.write_text(written)
    with pytest.raises(UserError, match="review.json"):
        ExportDir(folder).read_review_threshold()


def test_the_export_carries_the_review_threshold_the_runs_evaluation_was_written_with(tmp_path):
    from edgelabels.evaluate.review import write_review_queue
    from edgelabels.export.classification import review

    run = RunDir(tmp_path / "run")
    notes: list[str] = []
    assert review(run, notes) is None and notes == []  # never evaluated with a review threshold
    photos = []
    for i, colour in enumerate(((255, 0, 0), (128, 128, 128))):
        photos.append(tmp_path / f"photo{i}.png")
        Image.new("RGB", (8, 8), colour).save(photos[-1])
    probabilities = np.array([[0.95, 0.03, 0.02], [0.4, 0.35, 0.25]])
    write_review_queue(run.evaluation_dir / "review", photos, [0, 1], probabilities, ["red", "green", "blue"], 0.771)
    carried = review(run, notes)
    assert carried["threshold"] == 0.771 and carried["source"].endswith("summary.json")
    export = ExportDir(tmp_path / "export")
    export.dir.mkdir()
    export.write_review(carried)
    assert export.read_review_threshold() == 0.771


@pytest.mark.slow
def test_evaluate_review_accuracy_then_export_then_predict_says_human_review(tmp_path, capsys):
    """The whole way: the threshold chosen on validation reaches `predict`'s line; serve's shape is unchanged."""
    import json
    from pathlib import Path

    from helpers.datasets import make_stripes_dataset, tiny_config_overrides

    from edgelabels.cli import main
    from edgelabels.config import load_config
    from edgelabels.runtime.answers import answer_images, open_edge_model
    from edgelabels.train.fit import train

    data = make_stripes_dataset(tmp_path / "data", per_label=12)
    run = Path(train(load_config(None, tiny_config_overrides(data, **{"data.val_fraction": 0.25})), tmp_path / "run"))
    assert main(["evaluate", str(run), "--review-accuracy", "0.99", "--gradcam", "0"]) == 0
    assert main(["export", str(run)]) == 0
    review = json.loads((run / "export" / "review.json").read_text())
    capsys.readouterr()
    image = sorted((data / "horizontal").glob("*.png"))[0]
    assert main(["predict", str(run / "export"), str(image)]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(line) == {"Image", "CustomLabels", "HumanReview"}
    assert line["HumanReview"]["Threshold"] == pytest.approx(review["threshold"] * 100)
    (answer,) = answer_images(open_edge_model(run / "export"), [image])
    assert set(answer.response) == {"CustomLabels"}  # what serve's DetectCustomLabels returns
    (run / "evaluation" / "review" / "summary.json").unlink()  # a run never evaluated with a review threshold
    assert main(["export", str(run)]) == 0
    assert not (run / "export" / "review.json").exists()
    capsys.readouterr()
    assert main(["predict", str(run / "export"), str(image)]) == 0
    assert set(json.loads(capsys.readouterr().out.strip().splitlines()[-1])) == {"Image", "CustomLabels"}
