import subprocess
import sys

import pytest

from edgelabels.config import load_config
from edgelabels.errors import UserError
from helpers.datasets import REPO

PNEUMONIA = REPO / "configs" / "pneumonia.yaml"


def test_set_overrides_parse_yaml_values():
    config = load_config(None, ["data.source=x", "train.epochs=3", "data.image_size=[64, 96]",
                                "train.class_weight={a: 2, b: 1}", "data.grayscale=true"])
    assert config.train.epochs == 3
    assert config.image_hw == (64, 96)
    assert config.train.class_weight == {"a": 2, "b": 1}
    assert config.data.grayscale is True


def test_unknown_key_is_refused_with_a_suggestion():
    with pytest.raises(UserError, match=r"unknown key train\.epoch .*did you mean train\.epochs"):
        load_config(None, ["data.source=x", "train.epoch=3"])


def test_wrong_type_and_bad_choice_are_refused():
    with pytest.raises(UserError, match="train.batch_size must be int"):
        load_config(None, ["data.source=x", "train.batch_size=big"])
    with pytest.raises(UserError, match="augment.preset must be one of"):
        load_config(None, ["data.source=x", "augment.preset=heavy"])


def test_invalid_yaml_names_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  source: [unclosed\n")
    with pytest.raises(UserError, match=r"bad.yaml: line \d+ invalid YAML"):
        load_config(bad)


def test_pneumonia_config_accepts_every_documented_key_through_set():
    keys = ["data.source=elsewhere", "data.test_source=t", "data.image_size=64", "data.grayscale=false",
            "data.group_by=^(x)", "data.limit_per_label=1000", "model.backbone=vgg16", "model.weights=none",
            "model.fine_tune_layers=4", "train.epochs=1", "train.fine_tune_epochs=0", "train.batch_size=128",
            "train.learning_rate=0.01", "train.class_weight=none", "augment.preset=none", "seed=7"]
    config = load_config(PNEUMONIA, keys)
    assert (config.data.limit_per_label, config.model.backbone, config.seed) == (1000, "vgg16", 7)


def test_resolved_config_round_trips_through_yaml(tmp_path):
    config = load_config(PNEUMONIA, ["train.class_weight={NORMAL: 3}"])
    saved = tmp_path / "config.yaml"
    saved.write_text(config.to_yaml())
    assert load_config(saved) == config


def test_train_cli_with_unknown_key_exits_2_with_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "edgelabels.cli", "train", str(PNEUMONIA), "--set", "model.backbon=x"],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "unknown key model.backbon" in result.stderr and "Traceback" not in result.stderr


def test_segment_and_masking_are_one_keep_lungs_stage_and_stages_is_the_same_shape(tmp_path):
    short = load_config(None, ["data.source=x", "segment=runs/unet", "masking.dilate=0.05", "masking.crop=true"])
    config = tmp_path / "stages.yaml"
    config.write_text("data: {source: x}\nstages:\n  - kind: keep-lungs\n    run: runs/unet\n"
                      "    masking: {dilate: 0.05, crop: true}\n")
    long = load_config(config)
    assert short.stage_list() == long.stage_list()
    (stage,) = long.stage_list()
    assert (stage.kind, stage.run, stage.masking.dilate, stage.masking.crop, stage.masking.threshold) == \
        ("keep-lungs", "runs/unet", 0.05, True, 0.5)
    assert load_config(None, ["data.source=x"]).stage_list() == []


@pytest.mark.parametrize("stages, message", [
    ("[{kind: sharpen, run: r}]", "stages\\[0\\].kind must be one of keep-lungs, crop-box, not 'sharpen'"),
    ("[{kind: keep-lungs}]", "stages\\[0\\].run is required"),
    ("[{kind: keep-lungs, run: r, masking: {dilate: 0.9}}]", "masking.dilate in \\[0, 0.5\\)"),
    ("[{kind: keep-lungs, run: r, mask: {}}]", "unknown key stages\\[0\\].mask \\(did you mean stages\\[0\\].masking\\?\\)"),
    ("[keep-lungs]", "stages\\[0\\] must be a mapping"),
])
def test_bad_stage_lists_are_refused_with_the_key_named(stages, message):
    with pytest.raises(UserError, match=message):
        load_config(None, ["data.source=x", f"stages={stages}"])


def test_segment_and_stages_together_or_on_a_unet_are_refused():
    with pytest.raises(UserError, match="give one of segment: .* or stages:"):
        load_config(None, ["data.source=x", "segment=r", "stages=[{kind: keep-lungs, run: r}]"])
    with pytest.raises(UserError, match="apply to classification runs"):
        load_config(None, ["data.source=x", "task=segmentation", "train.monitor=val_dice",
                           "stages=[{kind: keep-lungs, run: r}]"])
