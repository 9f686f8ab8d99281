"""The edge Predictor: same answers as Keras, Rekognition's DetectCustomLabels semantics, no TensorFlow."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgelabels.errors import ImageProblem, UserError
from edgelabels.runtime.predictor import Predictor
from helpers.runs import LABELS, make_export

TRAIN_ONLY = ("tensorflow", "keras", "tf2onnx", "onnx", "sklearn", "matplotlib", "albumentations", "sympy")
FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "rekognition"


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    return make_export(tmp_path_factory.mktemp("predictor") / "run", per_label=10, epochs=8)


@pytest.fixture(scope="module")
def images(export_dir):
    return sorted((export_dir.parents[1] / "images-run").rglob("*.png"))


@pytest.fixture
def with_thresholds(export_dir, tmp_path):
    """A copy of the export with thresholds.json replaced."""
    def make(thresholds: dict) -> Predictor:
        copy = shutil.copytree(export_dir, tmp_path / "export")
        (copy / "thresholds.json").write_text(json.dumps(thresholds))
        return Predictor(copy)
    return make


def test_predictor_reads_the_export_contract(export_dir):
    predictor = Predictor(export_dir)
    assert predictor.labels == list(LABELS)
    assert set(predictor.thresholds) == set(LABELS)
    assert (predictor.spec.height, predictor.spec.width, predictor.spec.channels) == (32, 32, 3)
    assert predictor.precision == "fp32"  # auto without model.int8.onnx


def test_probabilities_match_the_keras_model_the_run_trained(export_dir, images):
    import keras

    from edgelabels.data.images import read_image
    from edgelabels.data.preprocess import preprocess

    model = keras.saving.load_model(export_dir.parent / "model.keras", compile=False)
    predictor = Predictor(export_dir)
    x = np.stack([preprocess(read_image(path)[0], predictor.spec) for path in images])
    expected = np.asarray(model(x, training=False))
    got = predictor.probabilities(images)
    assert got.shape == (len(images), len(LABELS))
    assert np.abs(got - expected).max() <= 1e-4
    assert got.std(axis=0).max() > 1e-2  # the comparison is not vacuous


def test_paths_bytes_and_pil_images_give_the_same_probabilities(export_dir, images):
    predictor = Predictor(export_dir)
    path = images[0]
    from_path, from_bytes, from_pil = predictor.probabilities([path, path.read_bytes(), Image.open(path)])
    np.testing.assert_allclose(from_path, from_bytes, atol=1e-7)
    np.testing.assert_allclose(from_path, from_pil, atol=1e-7)


def test_batched_probabilities_equal_one_image_at_a_time(export_dir, images):
    predictor = Predictor(export_dir)
    batched = predictor.probabilities(images, batch_size=32)
    single = predictor.probabilities(images, batch_size=1)
    np.testing.assert_allclose(batched, single, atol=1e-6)


def test_detect_without_min_confidence_applies_each_labels_assumed_threshold(export_dir, images, with_thresholds):
    p = Predictor(export_dir).probabilities(images[:1])[0]
    top = int(p.argmax())
    # The most likely label's threshold sits just above its probability; the others' at 0.
    thresholds = {name: (float(p[k]) + 1e-4 if k == top else 0.0) for k, name in enumerate(LABELS)}
    result = with_thresholds(thresholds).detect(images[0])
    names = [label["Name"] for label in result["CustomLabels"]]
    assert LABELS[top] not in names
    assert sorted(names) == sorted(name for k, name in enumerate(LABELS) if k != top)


def test_detect_min_confidence_zero_returns_every_label_most_confident_first(export_dir, images, with_thresholds):
    predictor = with_thresholds({name: 1.0 for name in LABELS})  # thresholds would hide every label
    p = predictor.probabilities(images[:1])[0]
    labels = predictor.detect(images[0], min_confidence=0)["CustomLabels"]
    assert [label["Name"] for label in labels] == [LABELS[k] for k in np.argsort(-p)]
    np.testing.assert_allclose([label["Confidence"] for label in labels], np.sort(p)[::-1] * 100, rtol=1e-5)
    assert predictor.detect(images[0])["CustomLabels"] == []


def test_detect_min_confidence_50_leaves_out_labels_below_50(export_dir, images):
    predictor = Predictor(export_dir)
    probabilities = predictor.probabilities(images)
    index = int(np.argmax(probabilities.max(axis=1)))  # an image with a confident label
    assert probabilities[index].max() >= 0.5
    labels = predictor.detect(images[index], min_confidence=50)["CustomLabels"]
    expected = {LABELS[k] for k, p in enumerate(probabilities[index]) if p * 100 >= 50}
    assert {label["Name"] for label in labels} == expected
    assert all(label["Confidence"] >= 50 for label in labels)


def test_detect_max_results_keeps_the_most_confident(export_dir, images):
    predictor = Predictor(export_dir)
    everything = predictor.detect(images[0], min_confidence=0)["CustomLabels"]
    assert predictor.detect(images[0], min_confidence=0, max_results=2)["CustomLabels"] == everything[:2]
    assert predictor.detect(images[0], min_confidence=0, max_results=0)["CustomLabels"] == []


def test_detect_answers_in_the_documented_detectcustomlabels_shape(export_dir, images):
    documented = FIXTURES / "detect-custom-labels-response-api-example.json"
    if not documented.is_file():
        pytest.skip("shared/fixtures/rekognition absent")
    reference = json.loads(documented.read_text())
    ours = json.loads(json.dumps(Predictor(export_dir).detect(images[0], min_confidence=0)))
    assert set(ours) == set(reference) == {"CustomLabels"}
    for label in ours["CustomLabels"]:
        assert set(label) == set(reference["CustomLabels"][0])  # Name, Confidence (no Geometry: classification)
        assert isinstance(label["Name"], str) and isinstance(label["Confidence"], float)
        assert 0 <= label["Confidence"] <= 100
    confidences = [label["Confidence"] for label in ours["CustomLabels"]]
    assert confidences == sorted(confidences, reverse=True)


def test_detect_many_equals_detect_per_image(export_dir, images):
    predictor = Predictor(export_dir)
    many = predictor.detect_many(images[:5], min_confidence=0)
    one_by_one = [predictor.detect(image, min_confidence=0) for image in images[:5]]
    for a, b in zip(many, one_by_one):
        assert [x["Name"] for x in a["CustomLabels"]] == [x["Name"] for x in b["CustomLabels"]]
        np.testing.assert_allclose([x["Confidence"] for x in a["CustomLabels"]],
                                   [x["Confidence"] for x in b["CustomLabels"]], atol=1e-4)


def test_a_truncated_image_is_rejected_naming_it(export_dir, images, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(images[0].read_bytes()[:60])
    with pytest.raises(ImageProblem, match="broken.png"):
        Predictor(export_dir).detect(broken)
    gif = io.BytesIO()
    Image.new("RGB", (8, 8)).save(gif, "GIF")
    with pytest.raises(ImageProblem, match="not a PNG or JPEG"):
        Predictor(export_dir).probabilities([gif.getvalue()])


def test_out_of_range_min_confidence_is_a_user_error(export_dir, images):
    with pytest.raises(UserError, match="MinConfidence"):
        Predictor(export_dir).detect(images[0], min_confidence=101)


def test_int8_requested_without_an_int8_export_is_a_clear_error(export_dir):
    with pytest.raises(UserError, match="model.int8.onnx: missing"):
        Predictor(export_dir, precision="int8")


def test_missing_thresholds_file_names_the_file(export_dir, tmp_path):
    copy = shutil.copytree(export_dir, tmp_path / "export")
    (copy / "thresholds.json").unlink()
    with pytest.raises(UserError, match="thresholds.json: missing"):
        Predictor(copy)


def test_threads_sets_onnxruntime_intra_op_threads(export_dir):
    assert Predictor(export_dir, threads=1).model.session.get_session_options().intra_op_num_threads == 1


def test_predict_never_imports_tensorflow_or_keras(export_dir, images):
    # The [train] extra's packages are made unimportable, as in a core install (no TensorFlow at all).
    script = (
        "import sys, json\n"
        "class CoreInstall:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {TRAIN_ONLY!r}:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r} (core install)', name=name)\n"
        "sys.meta_path.insert(0, CoreInstall())\n"
        "from edgelabels.cli import main\n"
        f"code = main(['predict', {str(export_dir)!r}, {str(images[0])!r}, '--min-confidence', '0'])\n"
        "from edgelabels.runtime.predictor import Predictor\n"
        f"Predictor({str(export_dir)!r}).detect({str(images[1])!r})\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf2onnx'))\n"
        "print(json.dumps({'code': code, 'heavy': heavy}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert json.loads(lines[0])["Image"] == str(images[0])
    assert json.loads(lines[-1]) == {"code": 0, "heavy": []}
