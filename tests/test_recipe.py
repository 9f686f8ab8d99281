"""The recipe (train/recipe.py): every `auto` key chosen from the data, a budget and a measured throughput.

`choose` is pure: its tests build the facts by hand and pass a throughput, so they need no Keras. Expected values
are worked out here from the rules the recipe states (cells at stride 4, multiples of 32, 80% of the budget).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math

import numpy as np
import pytest
from PIL import Image

from edgelabels.artifacts import RunDir
from edgelabels.config import AUTO_KEYS, auto_keys, load_config
from edgelabels.errors import UserError
from edgelabels.train import recipe
from edgelabels.train.command import _source_name, is_config_file
from edgelabels.train.recipe import Facts, apply_recipe, choose, read_facts, source_config, source_task_of

MPX = 1e6


def auto_config(*overrides: str, budget: str | None = None) -> object:
    return source_config("data/somewhere", overrides, budget)


def detection_facts(boxes, sizes, train=80, val=20, grey=False, labels=()) -> Facts:
    """boxes: (box width, box height, image width, image height) in pixels."""
    return Facts("detection", "detection: boxes", train, val, tuple(sizes), {"car": len(boxes)}, grey,
                 "colour: sampled", tuple(boxes), tuple(labels))


def image_facts(task="classification", counts=None, side=224, train=1000, val=100, grey=False, on_disk=None) -> Facts:
    counts = counts or {"a": 500, "b": 500}
    return Facts(task, f"{task}: as found", train, val, ((side, side),) * 10, counts, grey,
                 "grey: all sampled" if grey else "colour: sampled", (), imagenet_on_disk=on_disk or {})


def values(choices) -> dict:
    return {c.key: c.value for c in choices}


# ---------------------------------------------------------------- detection input


def test_small_boxes_in_small_frames_get_a_whole_frame_input_where_the_tenth_percentile_box_covers_four_cells():
    # 12 px boxes in 320x240 frames: 4 cells of stride 4 need 16 px, so the frame is scaled by 16/12.
    boxes = [(12, 12, 320, 240)] * 20 + [(30, 30, 320, 240)] * 80
    config, choices = choose(auto_config(), detection_facts(boxes, [(320, 240)] * 100), {"pixels_per_s": 50 * MPX})
    assert config.data.tile_scale is None
    assert config.data.image_size == [320, 448]  # 240 * 4/3 = 320; 320 * 4/3 = 426.7 -> 448
    h, w = config.data.image_size
    assert 12 * w / 320 / 4 >= 4 - 1e-9 and 12 * h / 240 / 4 >= 4 - 1e-9
    assert "input 320x448" in next(c.reason for c in choices if c.key == "data.image_size")


def test_large_boxes_scale_a_frame_down_as_far_as_the_boxes_allow():
    boxes = [(64, 80, 640, 480)] * 50  # p10 short side 64 px: scale 16/64 = 0.25
    config, _ = choose(auto_config(), detection_facts(boxes, [(640, 480)] * 50), {"pixels_per_s": 5 * MPX})
    assert config.data.image_size == [128, 160]  # 480 * 0.25 = 120 -> 128; 640 * 0.25 = 160
    assert config.data.tile_scale is None


def test_a_rare_label_of_small_objects_sets_the_scale_not_the_ten_percent_of_all_boxes():
    # 90 red cells of 80 px and 10 platelets of 20 px: the 10th percentile of all boxes would be ~80 px, 0.2 scale
    boxes = [(80, 80, 640, 480)] * 90 + [(20, 20, 640, 480)] * 10
    labels = ["RBC"] * 90 + ["Platelets"] * 10
    config, choices = choose(auto_config(), detection_facts(boxes, [(640, 480)] * 50, labels=labels),
                             {"pixels_per_s": 5 * MPX})
    assert config.data.image_size == [384, 512]  # scale 16/20 = 0.8: 480 * 0.8 = 384, 640 * 0.8 = 512
    assert "Platelets box" in next(c.reason for c in choices if c.key == "data.image_size")


def test_frames_past_the_compute_cap_shrink_toward_it_but_keep_the_tenth_percentile_box_one_and_a_half_cells():
    # Cassette photos: 800x768, windows 36 px (p10): 4 cells need scale 16/36, a 352x384 input (135,168 px).
    boxes = [(36, 80, 800, 768)] * 600
    facts = detection_facts(boxes, [(800, 768)] * 600, train=430, val=100)
    roomy, _ = choose(auto_config(), facts, {"pixels_per_s": 100 * MPX})
    assert roomy.data.image_size == [352, 384]
    # At 0.3 Mpx/s a 30-minute budget fits 30 epochs of 430 + 0.35 * 100 images at 1440 * 0.3e6 / (30 * 465) =
    # 30,968 px each: each side shrinks by sqrt(30968 / 135168) = 0.479, up to multiples of 32.
    config, choices = choose(auto_config(), facts, {"pixels_per_s": 0.3 * MPX})
    assert config.data.image_size == [192, 192] and config.data.tile_scale is None  # 168.6 and 183.9 -> 192
    assert "to fit it" in next(c.reason for c in choices if c.key == "data.image_size")
    # At 0.1 Mpx/s the cap (10,323 px) would cost the windows their cells: the input stops at 1.5/4 of each side.
    config, choices = choose(auto_config(), facts, {"pixels_per_s": 0.1 * MPX})
    assert config.data.image_size == [160, 160]  # 352 * 0.375 = 132, 384 * 0.375 = 144 -> 160
    reason = next(c.reason for c in choices if c.key == "data.image_size")
    assert "past the compute cap" in reason and "as far as 1.5 cells allow" in reason


def test_tiny_boxes_in_large_frames_are_tiled_near_native_scale_past_the_compute_cap():
    # 4000x3000 frames, cars 20 px: a whole frame at scale 0.8 would be 2400x3200, past any cap at 1 Mpx/s.
    boxes = [(20, 40, 4000, 3000)] * 200
    facts = detection_facts(boxes, [(4000, 3000)] * 60, train=60, val=10)
    config, choices = choose(auto_config(), facts, {"pixels_per_s": 1 * MPX})
    assert config.data.tile_scale == pytest.approx(16 / 20)
    h, w = config.data.image_size
    assert h == w and h % 32 == 0 and 256 <= h <= 512
    assert h >= 4 * 40 * 0.8  # the 90th-percentile box (40 px, 32 px scaled) fits a tile 4 times over
    reason = next(c.reason for c in choices if c.key == "data.tile_scale")
    assert "compute cap" in reason and "tiled at scale 0.80" in reason
    assert "tiles" in next(c.reason for c in choices if c.key == "data.image_size")


def test_a_config_that_sets_the_input_size_is_never_tiled_by_the_recipe():
    boxes = [(20, 40, 4000, 3000)] * 200
    config, _ = choose(auto_config("data.image_size=[512, 640]"), detection_facts(boxes, [(4000, 3000)] * 60),
                       {"pixels_per_s": 1 * MPX})
    assert config.data.image_size == [512, 640] and config.data.tile_scale is None


# ---------------------------------------------------------------- what the user set, and the schedule


def test_keys_the_user_set_are_kept_and_the_choices_that_depend_on_them_read_them():
    facts = image_facts(train=400, val=40)
    config, choices = choose(auto_config("train.batch_size=4", "train.epochs=7", "data.image_size=96"), facts,
                             {"pixels_per_s": 2 * MPX})
    assert (config.train.batch_size, config.train.epochs, config.data.image_size) == (4, 7, 96)
    assert not {"train.batch_size", "train.epochs", "data.image_size"} & set(values(choices))
    # patience follows the user's 7 epochs (15%, at least 5); warm-up counts steps of the user's batch of 4
    assert config.train.patience == 5
    assert config.train.warmup_epochs == 1  # 100 steps at 400 / 4 = 100 steps per epoch


def test_epochs_fill_eighty_percent_of_the_budget_at_the_measured_throughput():
    facts = image_facts(side=64, train=1000, val=0)
    config, _ = choose(auto_config("data.image_size=64", budget="10m"), facts, {"pixels_per_s": 1 * MPX})
    epoch_s = 1000 * 64 * 64 / 1e6 + 1.0  # pixels / throughput + 1 s of saving per epoch
    assert config.train.epochs == math.floor(0.8 * 600 / epoch_s)
    assert config.train.budget == "10m"


def test_a_budget_too_short_for_ten_epochs_plans_what_fits_and_names_the_budget_that_would_fit_ten():
    # 5000 images of 64x64 at 0.1 Mpx/s: 204.8 s + 1 s per epoch; 80% of 10 min is 480 s: 2 epochs fit
    config, choices = choose(auto_config("data.image_size=64", budget="10m"), image_facts(train=5000, val=0),
                             {"pixels_per_s": 0.1 * MPX})
    assert config.train.epochs == 2
    assert "--budget 43m would fit 10" in next(c.reason for c in choices if c.key == "train.epochs")


def test_a_missing_budget_is_thirty_minutes_and_said_so():
    config, choices = choose(auto_config(), image_facts(), {"pixels_per_s": 1 * MPX})
    assert config.train.budget == "30m"
    assert "30m" in values(choices)["train.budget"]


def test_imagenet_weights_are_used_where_the_file_is_on_disk():
    facts = image_facts(on_disk={"efficientnetb0": True})
    config, choices = choose(auto_config(), facts, {"pixels_per_s": 2 * MPX})
    assert (config.model.backbone, config.model.weights) == ("efficientnetb0", "imagenet")
    assert config.train.fine_tune_epochs > 0 and config.train.fine_tune_learning_rate < config.train.learning_rate


def test_a_pretrained_backbone_with_time_for_one_epoch_plans_that_epoch_and_no_fine_tuning():
    # 5000 images of 224x224 at 0.1 Mpx/s: 2,510 s per epoch, none fits 80% of 10 min: one planned, as stage a
    facts = image_facts(train=5000, val=0, on_disk={"efficientnetb0": True})
    config, choices = choose(auto_config("data.image_size=224", budget="10m"), facts, {"pixels_per_s": 0.1 * MPX})
    assert (config.train.epochs, config.train.fine_tune_epochs) == (1, 0)
    assert "would fit 10" in next(c.reason for c in choices if c.key == "train.epochs")


def test_without_the_imagenet_file_a_from_scratch_backbone_is_chosen_and_stated():
    config, choices = choose(auto_config(), image_facts(), {"pixels_per_s": 2 * MPX})
    assert (config.model.backbone, config.model.weights) == ("smallcnn", "none")
    assert config.train.fine_tune_epochs == 0
    reason = next(c.reason for c in choices if c.key == "model.weights")
    assert "not found" in reason and "smallcnn" in reason


def test_a_small_dataset_averages_its_weights_and_a_large_one_does_not():
    small, _ = choose(auto_config(), image_facts(train=500), {"pixels_per_s": 2 * MPX})
    large, _ = choose(auto_config(), image_facts(train=20_000, counts={"a": 10_000, "b": 10_000}),
                      {"pixels_per_s": 20 * MPX})
    assert small.train.ema == 0.99 and large.train.ema is None


# ---------------------------------------------------------------- classification, segmentation


def test_grey_films_read_as_grayscale_with_the_xray_preset_and_colour_photos_with_the_photo_preset():
    grey, _ = choose(auto_config(), image_facts(grey=True), {"pixels_per_s": 2 * MPX})
    colour, _ = choose(auto_config(), image_facts(grey=False), {"pixels_per_s": 2 * MPX})
    assert (grey.data.grayscale, grey.augment.preset) == (True, "xray")
    assert (colour.data.grayscale, colour.augment.preset) == (False, "photo")


def test_a_label_nine_times_rarer_is_oversampled_and_a_three_times_rarer_one_weighed():
    rare, _ = choose(auto_config(), image_facts(counts={"neg": 900, "pos": 100}), {"pixels_per_s": 2 * MPX})
    uneven, _ = choose(auto_config(), image_facts(counts={"pneumonia": 3000, "normal": 1000}),
                       {"pixels_per_s": 2 * MPX})
    even, _ = choose(auto_config(), image_facts(counts={"a": 510, "b": 490}), {"pixels_per_s": 2 * MPX})
    assert (rare.train.oversample, rare.train.class_weight) == (True, "none")
    assert (uneven.train.oversample, uneven.train.class_weight) == (False, "balanced")
    assert (even.train.oversample, even.train.class_weight) == (False, "none")
    assert rare.train.monitor == "val_auc"


def test_the_input_side_is_the_largest_at_which_twelve_epochs_fit_the_budget():
    # 1000 train images, 1 Mpx/s, 10 min: 12 epochs of (1000 * s^2 / 1e6 + 1) s must fit 480 s: s^2 <= 39000
    config, _ = choose(auto_config(budget="10m"), image_facts(side=512, train=1000, val=0), {"pixels_per_s": 1 * MPX})
    assert config.data.image_size == 192  # 192^2 = 36864 fits; 224^2 = 50176 does not
    fast, _ = choose(auto_config(budget="10m"), image_facts(side=224, train=1000, val=0), {"pixels_per_s": 100 * MPX})
    assert fast.data.image_size == 224  # never past the images' own size


def test_segmentation_gets_a_u_net_encoder_sides_in_multiples_of_32_and_val_dice():
    facts = image_facts(task="segmentation", counts={"lung": 400}, side=256, train=300, val=40, grey=True)
    config, _ = choose(auto_config(), facts, {"pixels_per_s": 0.5 * MPX})
    assert config.task == "segmentation" and config.model.backbone == "deepcnn"
    assert config.data.image_size % 32 == 0 and config.train.monitor == "val_dice"


# ---------------------------------------------------------------- each task's record in the task table


def test_choose_takes_what_differs_per_task_from_the_record_the_task_table_names(monkeypatch):
    facts = detection_facts([(20, 20, 320, 240)] * 30, [(320, 240)] * 30, train=800)
    before, _ = choose(auto_config(), facts, {"pixels_per_s": 2 * MPX})
    monkeypatch.setattr(recipe, "DETECTION", dataclasses.replace(recipe.DETECTION, batch=16, learning_rate=5e-4))
    after, choices = choose(auto_config(), facts, {"pixels_per_s": 2 * MPX})
    assert (before.train.batch_size, before.train.learning_rate) == (8, 2e-3)
    assert (after.train.batch_size, after.train.learning_rate) == (16, 5e-4)
    assert "detection's usual 16" in next(c.reason for c in choices if c.key == "train.batch_size")


# ---------------------------------------------------------------- vertical flips, completeness


def test_objects_lying_every_way_are_flipped_vertically_and_upright_ones_are_not():
    every_way = [(30, 12, 600, 400)] * 50 + [(12, 30, 600, 400)] * 50
    upright = [(12, 30, 600, 400)] * 100
    flipped, reason = _flip(every_way)
    kept, kept_reason = _flip(upright)
    assert flipped == 0.5 and "every way" in reason
    assert kept == 0 and "have an up" in kept_reason


def _flip(boxes):
    config, choices = choose(auto_config(), detection_facts(boxes, [(600, 400)] * 50), {"pixels_per_s": 5 * MPX})
    return config.augment.vertical_flip, next(c.reason for c in choices if c.key == "augment.vertical_flip")


@pytest.mark.parametrize("facts", [image_facts(), image_facts(task="multilabel"),
                                   image_facts(task="segmentation", counts={"lung": 100}),
                                   detection_facts([(20, 20, 320, 240)] * 30, [(320, 240)] * 30)],
                         ids=["classification", "multilabel", "segmentation", "detection"])
def test_every_auto_key_is_resolved_with_a_reason_and_the_config_passes_the_normal_checks(facts):
    config, choices = choose(auto_config(), facts, {"pixels_per_s": 2 * MPX})
    assert auto_keys(config) == []
    assert config.task == facts.task
    assert set(AUTO_KEYS) <= set(values(choices))
    assert all(len(c.reason) > 10 for c in choices)


# ---------------------------------------------------------------- the facts of a source


def make_yolo(root, n=12, size=(96, 64), grey=False, seed=0):
    """A YOLO folder with data.yaml; every image holds one 16x24 px box (width x height)."""
    rng = np.random.default_rng(seed)
    for part in ("images", "labels"):
        (root / part).mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text("names: [bee]\n")
    width, height = size
    for i in range(n):
        pixels = rng.integers(0, 255, (height, width, 1 if grey else 3), dtype=np.uint8)
        left, top = int(rng.integers(0, width - 16)), int(rng.integers(0, height - 24))
        pixels[top:top + 24, left:left + 16] = 255
        Image.fromarray(pixels.squeeze()).convert("RGB").save(root / "images" / f"f{i}.png")
        cx, cy = (left + 8) / width, (top + 12) / height
        (root / "labels" / f"f{i}.txt").write_text(f"0 {cx} {cy} {16 / width} {24 / height}\n")
    return root


def test_the_facts_of_a_yolo_folder_are_its_boxes_in_pixels_and_its_colour(tmp_path):
    source = make_yolo(tmp_path / "bees", n=10, grey=True)
    facts = read_facts(load_config(None, [f"data.source={source}", "task=auto"]), "detection")
    assert facts.label_counts == {"bee": 10}
    assert np.allclose(np.array(facts.boxes), [[16, 24, 96, 64]] * 10)
    assert facts.grey and facts.train_images + facts.val_images < 10  # the test fraction held out


def test_the_facts_of_a_folder_per_label_count_images_per_label_and_see_colour(tmp_path):
    for label, n in (("a", 6), ("b", 3)):
        (tmp_path / label).mkdir()
        for i in range(n):
            Image.new("RGB", (80, 60), (200, 30 * i, 10)).save(tmp_path / label / f"{i}.png")
    facts = read_facts(load_config(None, [f"data.source={tmp_path}", "task=auto"]), "classification")
    assert facts.label_counts == {"a": 6, "b": 3}
    assert set(facts.image_sizes) == {(80, 60)} and not facts.grey


def test_the_facts_of_an_images_and_masks_folder_are_a_segmentation_of_grey_films(tmp_path):
    from helpers.lungs import make_lung_pairs

    source = make_lung_pairs(tmp_path / "lungs", n=10, size=64)
    config = load_config(None, [f"data.source={source}", "task=auto"])
    assert source_task_of(config) == "segmentation"
    facts = read_facts(config, "segmentation")
    assert facts.grey and set(facts.image_sizes) == {(64, 64)} and sum(facts.label_counts.values()) == 10


# ---------------------------------------------------------------- the command


def test_a_yaml_file_is_a_config_and_anything_else_a_source(tmp_path):
    (tmp_path / "exp.yaml").write_text("task: classification\ndata: {source: x}\n")
    (tmp_path / "data.yaml").write_text("names: [car, bus]\ntrain: images/train\n")
    assert is_config_file(str(tmp_path / "exp.yaml"))
    assert not is_config_file(str(tmp_path / "data.yaml"))  # a YOLO data.yaml names a source
    assert not is_config_file(str(tmp_path)) and not is_config_file("x/boxes.manifest")


def test_a_source_runs_into_runs_slash_its_folder_name(tmp_path):
    (tmp_path / "bees-yolo").mkdir()
    (tmp_path / "shots").mkdir()
    (tmp_path / "shots" / "boxes.manifest").write_text("")
    assert _source_name(str(tmp_path / "bees-yolo") + "/") == "bees-yolo"
    assert _source_name(str(tmp_path / "shots" / "boxes.manifest")) == "shots"


def test_a_source_config_is_all_auto_with_its_source_budget_and_overrides_winning():
    config = source_config("../data/bees", ["train.epochs=3"], "20s")
    assert config.data.source == "../data/bees" and config.train.budget == "20s"
    assert config.train.epochs == 3
    assert set(auto_keys(config)) == set(AUTO_KEYS) - {"train.epochs"}


def test_a_source_config_refuses_a_budget_without_a_unit():
    with pytest.raises(UserError, match="with its unit"):
        source_config("../data/bees", (), "30")


# ---------------------------------------------------------------- apply_recipe (builds a model to time it)


@pytest.mark.slow
def test_apply_recipe_writes_recipe_json_and_logs_every_choice(tmp_path, caplog):
    source = make_yolo(tmp_path / "bees", n=12)
    run = RunDir(tmp_path / "run")
    config = source_config(str(source), ["model.backbone=tinycnn"], "20s")
    with caplog.at_level(logging.INFO, logger="edgelabels.train"):
        resolved = apply_recipe(config, run)
    recipe = json.loads(run.recipe_path.read_text())
    assert recipe["version"] == 1 and recipe["task"] == "detection" and recipe["budget_s"] == 20
    assert recipe["source"] == str(source)
    assert recipe["measured"]["pixels_per_s"] > 0 and recipe["measured"]["backbone"] == "tinycnn"
    chosen = {c["key"]: c["value"] for c in recipe["choices"]}
    assert chosen["data.image_size"] == resolved.data.image_size and "model.backbone" not in chosen
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("recipe: data.image_size")]
    assert logged and "heatmap cells" in logged[0]
    assert auto_keys(resolved) == []


# ---------------------------------------------------------------- `edgelabels train SOURCE`, end to end


def _train_source(source, out, *extra):
    from edgelabels.cli import main

    return main(["train", str(source), "--out", str(out), "--budget", "20s", "--set", "model.weights=none",
                 "--set", "train.verbose=0", "--set", "train.workers=1", *extra])


@pytest.mark.slow
def test_train_from_a_yolo_folder_alone_resolves_every_key_into_the_run(tmp_path):
    source = make_yolo(tmp_path / "bees", n=16)
    out = tmp_path / "run"
    assert _train_source(source, out, "--set", "model.backbone=tinycnn") == 0
    saved = load_config(out / "config.yaml")
    assert saved.task == "detection" and auto_keys(saved) == []
    recipe = json.loads((out / "recipe.json").read_text())
    assert {c["key"] for c in recipe["choices"]} >= set(AUTO_KEYS) - {"model.backbone", "model.weights"}
    assert "recipe: data.image_size" in (out / "train.log").read_text()
    assert (out / "model.keras").is_file()


@pytest.mark.slow
def test_train_from_a_folder_per_label_alone_picks_classification_and_its_monitor(tmp_path):
    from helpers.datasets import make_stripes_dataset

    source = make_stripes_dataset(tmp_path / "stripes", per_label=12, size=40)
    out = tmp_path / "run"
    assert _train_source(source, out, "--set", "model.backbone=tinycnn") == 0
    saved = load_config(out / "config.yaml")
    assert (saved.task, saved.train.monitor, saved.data.grayscale) == ("classification", "val_auc", True)
    assert saved.data.image_size == 64  # stripes are 40 px: the smallest input tried
    assert (out / "model.keras").is_file()


def test_an_input_at_the_smallest_side_that_fits_the_epochs_is_not_said_to_miss_them():
    # 1000 + 0.35 * 100 samples of 64x64 at 1 Mpx/s: 4.2 s + 1 s overhead per epoch, 12 epochs in 62 s; a 96 px
    # input would need 12 * (9.5 + 1) = 126 s. A 2-minute budget plans 96 s: 64 px fits, 96 does not.
    config, choices = choose(auto_config(budget="2m"), image_facts(train=1000, val=100), {"pixels_per_s": 1 * MPX})
    assert config.data.image_size == 64
    reason = next(c.reason for c in choices if c.key == "data.image_size")
    assert "the largest at which 12 epochs" in reason and "does not fit" not in reason
