"""The edge answers a multi-label export as Rekognition answers a multi-label model: every label at or above its
threshold (or MinConfidence), through the Predictor, `predict` and boto3 against `serve`."""

import json
import subprocess

import pytest

from edgelabels.errors import UserError
from edgelabels.runtime.predictor import Predictor
from helpers.multilabel import write_multilabel_export
from helpers.server import EDGELABELS, ServerProcess, image_bytes, rekognition_client

YELLOW, RED = (220, 220, 30), (220, 30, 30)  # yellow: red and green channels high -> labels red and green


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return write_multilabel_export(tmp_path_factory.mktemp("ml") / "export")


def names(answer):
    return sorted(label["Name"] for label in answer["CustomLabels"])


def test_predictor_lists_every_label_at_or_above_its_threshold(export):
    predictor = Predictor(export)
    assert names(predictor.detect(image_bytes(YELLOW))) == ["green", "red"]
    assert names(predictor.detect(image_bytes(RED))) == ["red"]  # one label: exactly one
    assert names(predictor.detect(image_bytes(RED), min_confidence=0)) == ["blue", "green", "red"]
    assert names(predictor.detect(image_bytes(YELLOW), max_results=1)) in (["green"], ["red"])


def test_each_label_has_its_own_threshold(tmp_path):
    folder = write_multilabel_export(tmp_path / "export", thresholds={"red": 0.5, "green": 0.97, "blue": 0.5})
    assert names(Predictor(folder).detect(image_bytes(YELLOW))) == ["red"]  # green ~0.9 is below its 0.97


def test_predict_verb_prints_both_labels(export, tmp_path):
    image = tmp_path / "yellow.png"
    image.write_bytes(image_bytes(YELLOW))
    done = subprocess.run([str(EDGELABELS), "predict", str(export), str(image)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert names(json.loads(done.stdout.splitlines()[-1])) == ["green", "red"]


def test_boto3_against_serve_returns_several_labels(export):
    server = ServerProcess(export, "--no-access-log")
    try:
        client = rekognition_client(server.url)
        answer = client.detect_custom_labels(ProjectVersionArn=server.arn, Image={"Bytes": image_bytes(YELLOW)})
        assert names(answer) == ["green", "red"]
        assert all(label["Confidence"] > 80 for label in answer["CustomLabels"])
        answer = client.detect_custom_labels(ProjectVersionArn=server.arn, Image={"Bytes": image_bytes(RED)})
        assert names(answer) == ["red"]
    finally:
        server.stop()


def test_a_segmentation_export_is_still_refused_by_the_predictor(tmp_path):
    from helpers.server import write_unet_dir

    with pytest.raises(UserError, match="not a classifier"):
        Predictor(write_unet_dir(tmp_path / "unet"))
