"""Segmentation runs and the lung chain: U-Net training, masks cached once, chained evaluation and export."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgelabels.config import load_config
from edgelabels.data.preprocess import PreprocessSpec
from edgelabels.errors import UserError
from edgelabels.config import MaskingConfig
from edgelabels.runtime.stages import Chain, KeepLungs
from edgelabels.runtime.segmenter import Segmenter
from helpers.lungs import lung_mask, make_lung_pairs, make_lung_xrays

UNET = {"task": "segmentation", "data.image_size": 64, "data.grayscale": "true", "data.group_by": r"^(p\d+)",
        "model.backbone": "tinycnn", "model.weights": "none", "train.epochs": 3, "train.fine_tune_epochs": 0,
        "train.batch_size": 4, "train.learning_rate": 0.01, "train.monitor": "val_dice", "train.verbose": 0,
        "train.workers": 1, "data.test_fraction": 0.2, "data.val_fraction": 0.2}
CLASSIFIER = {"data.image_size": 32, "data.grayscale": "true", "model.backbone": "tinycnn", "model.weights": "none",
              "train.epochs": 2, "train.fine_tune_epochs": 0, "train.batch_size": 8, "train.verbose": 0,
              "train.workers": 1, "masking.dilate": 0.05}


def overrides(values: dict, **extra) -> list[str]:
    return [f"{k}={v}" for k, v in {**values, **extra}.items()]


def train(run_dir, values: dict, **extra):
    from edgelabels.train.fit import train as fit

    return fit(load_config(None, overrides(values, **extra)), run_dir)


@pytest.fixture(scope="module")
def unet_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("lungs")
    return train(root / "unet", UNET, **{"data.source": make_lung_pairs(root / "pairs", n=16)})


@pytest.fixture(scope="module")
def chained_run(tmp_path_factory, unet_run):
    root = tmp_path_factory.mktemp("chained")
    return train(root / "covid", CLASSIFIER, **{"data.source": make_lung_xrays(root / "xrays"), "segment": unet_run})


def fake_segmenter(probability: np.ndarray) -> Segmenter:
    """A Segmenter that answers `probability` (H, W) for every image, and counts its calls."""
    h, w = probability.shape
    spec = PreprocessSpec(h, w, grayscale=True)

    def run_batch(x):
        run_batch.calls += len(x)
        return np.repeat(probability[None, :, :, None], len(x), axis=0)

    run_batch.calls = 0
    return Segmenter(spec, run_batch, "fake")


# ---------------------------------------------------------------- the keep-lungs stage through a Chain


def test_keep_lungs_stage_blanks_everything_outside_the_dilated_lungs(tmp_path):
    mask = lung_mask(64, np.random.default_rng(0))
    image = np.full((64, 64), 200, np.uint8)
    Image.fromarray(image).save(tmp_path / "film.png")
    reader = Chain([KeepLungs(fake_segmenter(mask / 255.0), MaskingConfig(dilate=0.0))])
    kept = np.asarray(reader(tmp_path / "film.png"))
    assert (kept[mask == 0] == 0).all()
    assert (kept[mask == 255] == 200).all()


def test_keep_lungs_stage_works_at_the_images_own_size_and_crops(tmp_path):
    probability = np.zeros((32, 32), np.float32)
    probability[8:24, 4:12] = 1.0  # at U-Net resolution; the image is 4x larger
    Image.fromarray(np.full((128, 128, 3), 90, np.uint8)).save(tmp_path / "big.png")
    reader = Chain([KeepLungs(fake_segmenter(probability), MaskingConfig(dilate=0.0, crop=True))])
    kept = np.asarray(reader(tmp_path / "big.png"))
    assert kept.shape[:2] == (64, 32)  # the lungs' bounding box, in the image's pixels
    assert (kept[1:-1] == 90).all()  # bilinear upsampling may round the box's corners off


def test_lung_masks_are_computed_once_then_read_from_the_cache(tmp_path):
    paths = []
    for i in range(3):
        Image.fromarray(np.full((40, 40), 100 + i, np.uint8)).save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    probability = np.zeros((32, 32), np.float32)
    probability[4:20, 4:20] = 0.9
    segmenter = fake_segmenter(probability)
    reader = Chain([KeepLungs(segmenter, MaskingConfig(), cache_dir=tmp_path / "cache")])
    assert reader.precompute(paths, progress=False) == 3
    first = [np.asarray(reader(p)) for p in paths]
    assert reader.precompute(paths, progress=False) == 0
    assert segmenter.run_batch.calls == 3  # reading after precompute never ran the U-Net again
    again = Chain([KeepLungs(segmenter, MaskingConfig(), cache_dir=tmp_path / "cache")])  # a resumed run: the disk cache
    assert again.precompute(paths, progress=False) == 0
    assert all((np.asarray(again(p)) == f).all() for p, f in zip(paths, first))


# ---------------------------------------------------------------- U-Net runs


def test_segmentation_run_learns_the_lungs_and_logs_dice(unet_run):
    import csv

    rows = list(csv.DictReader((unet_run / "history.csv").open()))
    assert {"dice", "iou", "val_dice", "val_iou"} <= set(rows[0])
    assert float(rows[-1]["dice"]) > float(rows[0]["dice"])  # it learns
    assert json.loads((unet_run / "labels.json").read_text()) == ["lung"]
    split = (unet_run / "splits" / "test.txt").read_text()
    assert "images" in split


def test_segmenter_from_a_run_gives_probability_maps_at_the_unet_size(unet_run, tmp_path):
    Image.fromarray(np.full((100, 80), 120, np.uint8)).save(tmp_path / "x.png")
    maps = Segmenter.load(unet_run).probabilities([tmp_path / "x.png"])
    assert maps.shape == (1, 64, 64)
    assert 0 <= maps.min() and maps.max() <= 1


def test_segmenter_refuses_a_classification_run(chained_run):
    with pytest.raises(UserError, match="classification run, not a U-Net"):
        Segmenter.load(chained_run)


def test_unet_export_matches_keras_and_marks_itself_as_a_unet(unet_run):
    from edgelabels.export.driver import export_run
    from edgelabels.runtime.predictor import Predictor

    report = export_run(unet_run)
    assert report["task"] == "segmentation"
    assert report["parity"]["max_abs_diff"] <= 1e-3
    assert json.loads((unet_run / "export" / "layout.json").read_text())["task"] == "segmentation"
    with pytest.raises(UserError, match="U-Net export, not a classifier"):
        Predictor(unet_run / "export")


# ---------------------------------------------------------------- classification behind the U-Net


def test_classification_run_with_segment_records_the_chain_and_caches_masks(chained_run, unet_run):
    (stage,) = json.loads((chained_run / "stages.json").read_text())["stages"]
    assert stage["kind"] == "keep-lungs" and stage["run"] == str(unet_run.resolve())
    assert stage["masking"]["dilate"] == 0.05
    cached = list((chained_run / "stage-cache" / "0").glob("*.png"))
    assert len(cached) == 20  # every image of every split, once


def test_chained_run_evaluates_through_the_lungs(chained_run, unet_run):
    import csv

    from edgelabels.data.images import read_image
    from edgelabels.data.preprocess import preprocess
    from edgelabels.evaluate.driver import evaluate_model
    from edgelabels.runtime.masking import keep_lungs
    from edgelabels.runtime.segmenter import at_image_size

    result = evaluate_model(chained_run, gradcam_per_kind=1, progress=False)
    test = [line.split("\t") for line in (chained_run / "splits" / "test.txt").read_text().splitlines()]
    assert result["metrics"]["number_of_images"] == len(test)
    assert (chained_run / "evaluation" / "summary.json").is_file()
    # The confidences evaluated are the classifier's on lungs-only images, computed here by hand: the U-Net's
    # probability (rounded to 1/255 as the chain does) -> keep_lungs -> preprocess -> the Keras classifier.
    import keras

    unet, classifier = Segmenter.load(unet_run), keras.saving.load_model(chained_run / "model.keras")
    spec = PreprocessSpec.from_json(json.loads((chained_run / "preprocess.json").read_text()))
    x = []
    for path, _label, _group in test:
        image = read_image(path)[0]
        probability = np.rint(unet.probabilities([image])[0] * 255) / 255
        kept = keep_lungs(np.asarray(image), at_image_size(probability.astype(np.float32), image.size),
                          threshold=0.5, dilate_fraction=0.05)
        x.append(preprocess(Image.fromarray(kept), spec))
    expected = np.asarray(classifier(np.stack(x), training=False))
    rows = {row["path"]: row for row in csv.DictReader((chained_run / "evaluation" / "predictions.csv").open())}
    labels = json.loads((chained_run / "labels.json").read_text())
    got = np.array([[float(rows[path][f"confidence:{name}"]) for name in labels] for path, _, _ in test])
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_chained_export_writes_both_models_and_the_onnx_chain_equals_the_keras_chain(chained_run):
    from edgelabels.data.images import read_image
    from edgelabels.data.preprocess import preprocess
    from edgelabels.export.driver import export_run
    from edgelabels.artifacts import RunDir
    from edgelabels.models.factory import load_model
    from edgelabels.runtime.predictor import Predictor

    report = export_run(chained_run)
    out = chained_run / "export"
    assert (out / "model.onnx").is_file() and (out / "stages" / "0" / "model.onnx").is_file()
    assert report["chain"]["chain_parity"]["max_abs_diff"] <= 1e-3

    # Independently of export's own check: Keras U-Net -> masking -> Keras classifier vs the Predictor.
    run = RunDir.load(chained_run)
    samples = run.split.test + run.split.val
    (stage,) = json.loads((chained_run / "stages.json").read_text())["stages"]
    (exported,) = json.loads((out / "stages.json").read_text())["stages"]
    reader = Chain([KeepLungs(Segmenter.load(stage["run"]), MaskingConfig(**exported["masking"]))])
    x = np.stack([preprocess(reader.image(read_image(s.path)[0]), run.spec) for s in samples])
    keras_chain = np.asarray(load_model(run.model_path)(x, training=False))
    predictor = Predictor(out)
    onnx_chain = predictor.probabilities([s.path for s in samples])
    assert np.abs(keras_chain - onnx_chain).max() <= 1e-3
    # ...and the chain is really there: without the U-Net the classifier sees the marker and answers otherwise.
    plain = predictor.run(np.stack([preprocess(read_image(s.path)[0], run.spec) for s in samples]))
    assert np.abs(plain - onnx_chain).max() > 1e-4


def test_chained_predictor_imports_neither_tensorflow_nor_keras(chained_run):
    from edgelabels.export.driver import export_run

    if not (chained_run / "export" / "stages.json").is_file():
        export_run(chained_run)
    image = next((chained_run.parent / "xrays" / "COVID").glob("*.png"))
    code = ("import sys, json; from edgelabels.runtime.predictor import Predictor; "
            f"p = Predictor({str(chained_run / 'export')!r}); print(json.dumps(p.detect({str(image)!r}))); "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "CustomLabels" in done.stdout


# ---------------------------------------------------------------- configs


@pytest.mark.parametrize("extra, message", [
    ({"task": "segmentation", "segment": "runs/x"}, "apply to classification runs"),
    ({"train.monitor": "val_dice"}, "train.monitor for classification"),
    ({"task": "segmentation", "train.monitor": "val_auc"}, "train.monitor for segmentation"),
    ({"model.implementation": "segmentation-models"}, "is for segmentation"),
    ({"masking.threshold": 1.5}, "masking.threshold"),
    ({"model.implementation": "smp"}, "model.implementation must be one of"),
])
def test_bad_segmentation_configs_are_refused(extra, message):
    with pytest.raises(UserError, match=message):
        load_config(None, overrides({"data.source": "x"}, **extra))


def test_segment_naming_a_classification_run_fails_before_training(chained_run, tmp_path):
    with pytest.raises(UserError, match="not a U-Net"):
        train(tmp_path / "bad", CLASSIFIER, **{"data.source": chained_run.parent / "xrays", "segment": chained_run})


@pytest.mark.slow
def test_segmentation_run_resumes_from_its_checkpoint(tmp_path):
    import csv

    import yaml

    from edgelabels.train.fit import train as fit

    run = train(tmp_path / "unet", UNET, **{"data.source": make_lung_pairs(tmp_path / "pairs", n=10),
                                            "train.epochs": 1})
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["train"]["epochs"] = 2  # as if it had been stopped after epoch 1 of 2
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    state = json.loads((run / "checkpoint" / "state.json").read_text())
    (run / "checkpoint" / "state.json").write_text(json.dumps({**state, "done": False}))
    fit(load_config(run / "config.yaml"), run, resume=True)  # loads last.keras with its BCE+Dice loss
    rows = list(csv.DictReader((run / "history.csv").open()))
    assert [(r["stage"], int(r["epoch"])) for r in rows] == [("a", 1), ("a", 2)]


def unet_cli(root):
    """A JAX job (helpers/jax_worker.py): the train command, one epoch of the tiny U-Net, in the JAX child."""
    from edgelabels.cli import main

    config = root / "empty.yaml"
    config.write_text("{}\n")
    values = {**UNET, "data.source": make_lung_pairs(root / "pairs", n=8), "train.epochs": 1}
    run = root / "jaxunet"
    code = main(["train", "--out", str(run), *[a for item in overrides(values) for a in ("--set", item)], str(config)])
    return {"code": code, "run": str(run)}


@pytest.mark.slow  # trains in the JAX child
def test_unet_trains_under_the_jax_backend(request):
    from helpers.jax_worker import result

    answer = result("test_lung_chain:unet_cli", 1, request)
    assert answer["code"] == 0
    assert "backend jax" in (Path(answer["run"]) / "train.log").read_text()
    assert "val_dice" in (Path(answer["run"]) / "history.csv").read_text()


def test_unet_encoder_starts_from_a_classification_runs_backbone(chained_run, unet_run):
    from edgelabels.models.unet import build_unet
    from edgelabels.models.factory import copy_backbone_from_run, load_model

    unet = build_unet("tinycnn", 64, 64)
    copied = copy_backbone_from_run(unet, chained_run, "tinycnn")
    source = load_model(chained_run / "model.keras").get_layer("backbone")
    assert copied >= 2
    for layer in unet.get_layer("backbone").layers:
        if layer.weights:
            for mine, theirs in zip(layer.get_weights(), source.get_layer(layer.name).get_weights()):
                np.testing.assert_array_equal(mine, theirs)


# ---------------------------------------------------------------- data


def test_mask_pairs_report_images_without_a_mask_and_masks_of_another_size(tmp_path):
    from edgelabels.data.masks import load_mask_pairs

    root = make_lung_pairs(tmp_path / "pairs", n=4)
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(root / "images" / "orphan.png")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(root / "masks" / "p0-0.png")
    dataset = load_mask_pairs(root, group_by=r"^(p\d+)")
    problems = {p.path.split("/")[-1]: p.problem for p in dataset.problems}
    assert "no mask" in problems["orphan.png"]
    assert "32x32" in problems["p0-0.png"]
    assert len(dataset) == 3 and {s.group for s in dataset.samples} == {"p0", "p1"}


def test_a_folder_without_images_and_masks_is_refused(tmp_path):
    from edgelabels.data.masks import load_mask_pairs

    (tmp_path / "images").mkdir()
    with pytest.raises(UserError, match="needs .*images.* and .*masks"):
        load_mask_pairs(tmp_path)


def test_read_mask_keeps_only_lung_background_and_ignore(tmp_path):
    from edgelabels.data.masks import read_mask

    mask = np.array([[0, 10, 120, 127], [140, 200, 255, 60]], np.uint8)
    Image.fromarray(mask).save(tmp_path / "m.png")
    assert read_mask(tmp_path / "m.png", 2, 4).tolist() == [[0, 0, 127, 127], [127, 255, 255, 0]]


def test_augmentation_moves_the_mask_with_the_image():
    from edgelabels.data.augment import build_augmenter

    augment = build_augmenter("none", [{"Affine": {"translate_px": {"x": 10, "y": 0}, "p": 1.0}}], seed=0)
    image = np.zeros((64, 64, 1), np.uint8)
    image[20:40, 10:20] = 255
    moved_image, moved_mask = augment(image, image[:, :, 0].copy())
    assert (moved_image[:, :, 0] == moved_mask).all()
    assert moved_mask[20:40, 20:30].all() and not moved_mask[20:40, 10:20].any()


@pytest.mark.slow
def test_segmentation_models_unet_trains_evaluates_and_exports_like_ours(tmp_path):
    import importlib.util

    if importlib.util.find_spec("segmentation_models") is None:
        pytest.skip("segmentation-models not installed (pip install -e '.[sm]')")
    from edgelabels.evaluate.driver import evaluate_model
    from edgelabels.export.driver import export_run

    # 32 px films at 32 px, VGG16's smallest side (5 poolings): the checks are of the chain, not of mask quality
    run = train(tmp_path / "sm", UNET, **{"data.source": make_lung_pairs(tmp_path / "pairs", n=10, size=32),
                                          "model.implementation": "segmentation-models", "model.backbone": "vgg16",
                                          "data.image_size": 32, "train.epochs": 1, "train.learning_rate": 0.001})
    from edgelabels.data.masks import read_mask

    result = evaluate_model(run, progress=False)
    assert (run / "evaluation" / "metrics.json").is_file()
    # The Dice reported is the mean over test images of 2|P&T| / (|P| + |T|), computed here by hand from the
    # U-Net's masks (ignore pixels, 127, left out; both empty counts as 1).
    test = [line.split("\t")[0] for line in (run / "splits" / "test.txt").read_text().splitlines()]
    maps = Segmenter.load(run).probabilities(test)
    dices = []
    for path, probability in zip(test, maps):
        truth = read_mask(Path(path).parent.parent / "masks" / Path(path).name, 32, 32)
        valid, lung, guess = truth != 127, truth == 255, probability >= 0.5
        both = (guess & lung & valid).sum()
        total = (guess & valid).sum() + (lung & valid).sum()
        dices.append(1.0 if total == 0 else 2 * both / total)
    assert result["metrics"]["dice"] == pytest.approx(float(np.mean(dices)), abs=1e-6)
    report = export_run(run)
    assert report["implementation"] == "segmentation-models" and report["parity"]["max_abs_diff"] <= 1e-3
    exported = evaluate_model(run / "export", out=tmp_path / "eval-export", progress=False)
    assert exported["metrics"]["dice"] == pytest.approx(result["metrics"]["dice"], abs=1e-3)
    maps = Segmenter.load(run / "export").probabilities([next((tmp_path / "pairs" / "images").glob("*.png"))])
    assert maps.shape == (1, 32, 32)
