"""YOLO data.yaml as Ultralytics reads it (path:, train/val/test folders, lists, Roboflow's ../train/images), and
the images/{split} folder layout of the real sets unchanged."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from edgelabels import cli
from edgelabels.data.detection import is_detection_source, label_path, load_detection_dataset, read_yolo
from edgelabels.data.inspection import source_task
from edgelabels.errors import UserError
from helpers.datasets import SHARED_DATA

SMALL_OBJECTS = SHARED_DATA / "small-objects"
BEES = SHARED_DATA / "bees-yolo"
BOX = "0 0.5 0.5 0.5 0.25\n"  # on 48x48: left 12, top 18, 24 x 12


def pair(images: Path, name: str, label: str | None = BOX, labels: Path | None = None) -> Path:
    """images/NAME.png (48x48) and its label file in `labels` (default: the sibling labels/ folder)."""
    images.mkdir(parents=True, exist_ok=True)
    path = images / f"{name}.png"
    Image.new("RGB", (48, 48), (30, 60, 90)).save(path)
    if label is not None:
        labels = labels or images.parent / "labels"
        labels.mkdir(parents=True, exist_ok=True)
        (labels / f"{name}.txt").write_text(label)
    return path


def roboflow(root: Path, yaml_text: str | None) -> Path:
    """Roboflow's YOLOv8 export: train/, valid/, test/ each with images/ + labels/, data.yaml beside them."""
    pair(root / "train" / "images", "a")
    pair(root / "train" / "images", "b", "1 0.25 0.25 0.5 0.5\n")
    pair(root / "valid" / "images", "c")
    pair(root / "test" / "images", "d", None)
    if yaml_text is not None:
        (root / "data.yaml").write_text(yaml_text)
    return root


def split_names(dataset) -> dict[str, list[str]]:
    return {k: [s.path.stem for s in v] for k, v in dataset.given_split.items()}


ROBOFLOW_YAML = "train: ../train/images\nval: ../valid/images\ntest: ../test/images\nnc: 2\nnames: ['cat', 'dog']\n"


@pytest.mark.parametrize("yaml_text", [ROBOFLOW_YAML, ROBOFLOW_YAML.replace("../", "")])
def test_roboflow_export_reads_from_its_folder_or_its_yaml_with_valid_as_val(tmp_path, yaml_text):
    root = roboflow(tmp_path / "export", yaml_text)
    for source in (root, root / "data.yaml"):
        dataset = load_detection_dataset(source)
        assert split_names(dataset) == {"train": ["a", "b"], "val": ["c"], "test": ["d"]}
        by_name = {s.path.stem: [(b.label, b.left, b.top, b.width, b.height) for b in s.boxes]
                   for s in dataset.samples}
        assert by_name == {"a": [("cat", 12, 18, 24, 12)], "b": [("dog", 0, 0, 24, 24)], "c": [("cat", 12, 18, 24, 12)],
                           "d": []}
        assert is_detection_source(source) and source_task(source) == "detection"


def test_roboflow_folders_without_split_keys_read_with_the_yaml_names(tmp_path):
    root = roboflow(tmp_path / "export", "names: [cat, dog]\n")
    assert split_names(load_detection_dataset(root)) == {"train": ["a", "b"], "val": ["c"], "test": ["d"]}


def test_path_key_is_the_root_and_a_split_may_be_a_txt_list_or_a_list_of_folders(tmp_path):
    data = tmp_path / "datasets" / "shapes"
    pair(data / "images" / "train", "a", labels=data / "labels" / "train")
    pair(data / "images" / "extra" / "deep", "b", labels=data / "labels" / "extra" / "deep")  # folders in depth
    pair(data / "images" / "val", "c", labels=data / "labels" / "val")
    pair(data / "images" / "val", "d", labels=data / "labels" / "val")
    (data / "val.txt").write_text("./images/val/c.png\nimages/val/d.png\nimages/val/missing.png\n")
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "shapes.yaml").write_text("path: ../datasets/shapes\ntrain: [images/train, images/extra]\n"
                                         "val: val.txt\nnames: {0: cat}\n")
    dataset = load_detection_dataset(configs / "shapes.yaml")
    assert split_names(dataset) == {"train": ["a", "b"], "val": ["c", "d"], "test": []}
    assert all(len(s.boxes) == 1 for s in dataset.samples)
    assert any("1 listed image(s) not found" in p.problem for p in dataset.problems)


def test_the_label_of_an_image_is_found_by_replacing_its_last_images_folder(tmp_path):
    assert label_path(Path("/d/images/x/images/train/a.b.jpg")) == Path("/d/images/x/labels/train/a.b.txt")
    assert label_path(Path("/d/photos/a.jpg")) == Path("/d/photos/a.txt")  # no images/ folder: beside the image


def test_an_image_in_two_splits_stays_in_the_first_and_a_missing_test_is_noted(tmp_path):
    root = roboflow(tmp_path / "export", "train: train/images\nval: valid/images\ntest: [valid/images, nowhere]\n"
                                         "names: [cat, dog]\n")
    dataset = load_detection_dataset(root)
    assert split_names(dataset) == {"train": ["a", "b"], "val": ["c"], "test": []}
    problems = [p.problem for p in dataset.problems]
    assert "1 image(s) of test also in val: kept there only" in problems
    assert "test: nowhere not found: no test images from it" in problems


def test_a_missing_val_folder_is_a_user_error_as_in_ultralytics(tmp_path):
    root = roboflow(tmp_path / "export", "train: train/images\nval: validation/images\nnames: [cat, dog]\n")
    with pytest.raises(UserError, match=r"data.yaml: val: validation/images not found"):
        load_detection_dataset(root)


def test_a_run_config_with_a_train_section_is_no_data_yaml(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("task: detection\ntrain:\n  epochs: 3\n")
    assert not is_detection_source(config)
    with pytest.raises(UserError, match="no `train:`"):
        load_detection_dataset(config)


def test_dataset_inspect_names_a_data_yaml_source(tmp_path, capsys):
    root = roboflow(tmp_path / "export", ROBOFLOW_YAML)
    assert cli.main(["dataset", "inspect", str(root)]) == 0
    assert f"dataset: {root} (YOLO data.yaml, its own splits train 2 val 1 test 1)" in capsys.readouterr().out


@pytest.mark.skipif(not SMALL_OBJECTS.is_dir(), reason="../shared/data/small-objects absent")
def test_small_objects_keeps_its_images_split_folders_and_counts():
    given = read_yolo(SMALL_OBJECTS, (), None)[3]
    # ../shared/data/README.md: train 77 images / 2,324 boxes, val 13 / 291, test 32 / 982.
    assert {k: (len(v), sum(len(s.boxes) for s in v)) for k, v in given.items()} == {
        "train": (77, 2324), "val": (13, 291), "test": (32, 982)}
    dataset = load_detection_dataset(SMALL_OBJECTS)
    # 25 training frames hold more than Rekognition's 50 boxes per image: kept, each with a note.
    assert {k: len(v) for k, v in dataset.given_split.items()} == {"train": 77, "val": 13, "test": 32}
    assert sum("more than Rekognition's 50" in p.problem for p in dataset.problems) == 25
    assert dataset.label_names == ["bus", "car", "minibus", "truck"]


@pytest.mark.skipif(not BEES.is_dir(), reason="../shared/data/bees-yolo absent")
def test_bees_yolo_without_data_yaml_reads_as_before_and_is_a_yolo_folder(capsys):
    dataset = load_detection_dataset(BEES, class_names=["bee"])
    assert {k: len(v) for k, v in dataset.given_split.items()} == {"train": 70, "val": 20, "test": 10}
    assert cli.main(["dataset", "inspect", os.fspath(BEES), "--class-names", "bee"]) == 0
    assert "(YOLO folder, its own splits train 70 val 20 test 10)" in capsys.readouterr().out


def test_a_label_without_training_images_is_left_out_of_the_sources_own_val_and_test_not_refused(tmp_path, caplog):
    from edgelabels.data.detection import load_detection_dataset
    from edgelabels.data.prepare import keep_given_split

    root = tmp_path / "yolo"
    for part, files in {"train": {"a": "0 0.5 0.5 0.2 0.2"}, "val": {"b": "0 0.5 0.5 0.2 0.2\n1 0.2 0.2 0.1 0.1"},
                        "test": {"c": "0 0.3 0.3 0.2 0.2\n1 0.7 0.7 0.2 0.2", "d": "1 0.5 0.5 0.2 0.2"}}.items():
        (root / "images" / part).mkdir(parents=True)
        (root / "labels" / part).mkdir(parents=True)
        for stem, text in files.items():  # distinct pixels: byte-identical images across splits are refused
            Image.new("RGB", (48, 48), (90, 90, ord(stem))).save(root / "images" / part / f"{stem}.png")
            (root / "labels" / part / f"{stem}.txt").write_text(text + "\n")
    dataset = load_detection_dataset(root, class_names=["car", "truck"])
    split = keep_given_split(dataset, dataset.given_split, None, test_fraction=0.2, val_fraction=0.1, seed=0)
    assert [(s.path.stem, s.labels, len(s.boxes)) for s in split.test] == [("c", ("car",), 1), ("d", (), 0)]
    assert [(s.path.stem, s.labels, len(s.boxes)) for s in split.val] == [("b", ("car",), 1)]
    assert "test label(s) 'truck' have no training image: their 2 test boxes are left out" in caplog.text
    assert "validation label(s) 'truck' have no training image: their 1 validation boxes" in caplog.text
