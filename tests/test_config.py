import subprocess
import sys

import pytest

from edgelabels.config import config_from_dict, load_config
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


@pytest.mark.parametrize("override, message", [
    ("seed=-1", "seed must be in [0, 4294967295], not -1"),
    ("seed=4294967296", "seed must be in [0, 4294967295], not 4294967296"),
    ("model.dropout=1.5", "model.dropout must be in [0, 1), not 1.5"),
    ("data.image_size=100000", "data.image_size must be in [1, 4096], not 100000"),
    ("data.image_size=[64, 100000]", "data.image_size must be in [1, 4096], not 100000"),
    ("data.image_size=0", "data.image_size must be in [1, 4096], not 0"),
    ("train.learning_rate=-1", "train.learning_rate must be in (0, 10], not -1.0"),
    ("train.fine_tune_learning_rate=0", "train.fine_tune_learning_rate must be in (0, 10], not 0.0"),
    ("train.epochs=100000000000000000000000", "train.epochs must be in [1, 10000], not 100000000000000000000000"),
    ("train.batch_size=0", "train.batch_size must be in [1, 65536], not 0"),
    ("train.label_smoothing=1", "train.label_smoothing must be in [0, 1), not 1.0"),
    ("train.verbose=3", "train.verbose must be in [0, 2], not 3"),
    ("data.test_fraction=1", "data.test_fraction must be in [0, 1), not 1.0"),
    ("model.max_detections=0", "model.max_detections must be in [1, 10000], not 0"),
    ("tune.reduction_factor=1", "tune.reduction_factor must be in [2, 100], not 1"),
    ("train.learning_rate=.nan", "train.learning_rate must be in (0, 10], not nan"),
])
def test_a_number_outside_its_range_is_refused_naming_key_value_and_range(override, message):
    with pytest.raises(UserError) as refused:
        load_config(None, ["data.source=x", override])
    assert str(refused.value) == f"config: {message}"


def test_every_numeric_key_has_a_range_or_its_own_check():
    import dataclasses
    import typing

    from edgelabels.config import RANGES, Config

    own_checks = {"model.stride", "masking.threshold", "masking.dilate", "masking.fill", "crop.margin", "crop.size",
                  "crop.min_confidence"}  # a choice, or checked with the stages' copies of masking: and crop:
    numeric = set()
    for section in dataclasses.fields(Config):
        hint = typing.get_type_hints(Config)[section.name]
        fields = [(f"{section.name}.{f.name}", typing.get_type_hints(hint)[f.name]) for f in dataclasses.fields(hint)] \
            if dataclasses.is_dataclass(hint) else [(section.name, hint)]
        for key, kind in fields:
            kinds = set(typing.get_args(kind)) or {kind}
            if kinds & {int, float} and not kinds & {dict} and not key.startswith("tune.") or \
                    key in ("tune.min_epochs", "tune.reduction_factor"):
                numeric.add(key)
    assert "train.learning_rate" in numeric and "data.image_size" in numeric
    assert numeric - own_checks == set(RANGES)


def test_the_largest_allowed_values_are_accepted():
    config = load_config(None, ["data.source=x", "seed=4294967295", "data.image_size=[4096, 4096]",
                                "model.dropout=0.99", "train.epochs=10000", "train.learning_rate=10"])
    assert (config.seed, config.image_hw, config.train.epochs) == (2 ** 32 - 1, (4096, 4096), 10000)


def test_crop_without_detect_is_refused_in_one_line():
    with pytest.raises(UserError, match="crop: applies with detect:") as refused:
        load_config(None, ["data.source=x", "crop.label=window"])
    assert "\n" not in str(refused.value)
    with pytest.raises(UserError, match="crop: applies with detect:"):
        load_config(None, ["data.source=x", "segment=runs/unet", "crop.margin=0.5"])
    config = load_config(None, ["data.source=x", "detect=runs/d", "crop.label=window", "crop.margin=0.5"])
    assert config.stage_list()[0].crop.margin == 0.5
    plain = load_config(None, ["data.source=x"])
    assert config_from_dict(plain.to_dict()) == plain  # a saved config's default crop: is not "set"


def test_a_saved_config_with_crop_at_its_defaults_and_no_detect_still_loads(tmp_path):
    saved = tmp_path / "config.yaml"
    saved.write_text("data: {source: x}\ndetect: null\ncrop: {label: window, margin: 0.25}\n")  # an older run's
    assert load_config(saved).crop.margin == 0.25
    saved.write_text("data: {source: x}\ndetect: null\ncrop: {label: cassette}\n")
    with pytest.raises(UserError, match="crop: applies with detect:"):
        load_config(saved)


def test_a_learning_rate_written_1e_minus_4_is_the_number_not_text():
    # YAML 1.1 reads 1e-4 (no dot) as a string; a user writing --set train.learning_rate=1e-4 means 0.0001.
    config = load_config(None, ["data.source=x", "train.learning_rate=1e-4", "train.focal_gamma=2E0"])
    assert config.train.learning_rate == 0.0001 and config.train.focal_gamma == 2.0
    with pytest.raises(UserError, match="train.learning_rate must be float"):
        load_config(None, ["data.source=x", "train.learning_rate=fast"])
