"""Pascal VOC folders (data/voc.py): XML boxes in pixels, ImageSets splits, LabelImg's side-by-side save, problems."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from edgelabels import cli
from edgelabels.data.detection import is_detection_source, load_detection_dataset
from edgelabels.data.inspection import source_task
from helpers.datasets import SHARED_DATA

BCCD = SHARED_DATA / "bccd-voc"


def image(path: Path, width: int = 48, height: int = 48) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (120, 90, 60)).save(path)
    return path


def xml(path: Path, filename: str, *objects, size=(48, 48)) -> Path:
    """A VOC annotation; each object is (name, xmin, ymin, xmax, ymax) or (name, corners..., difficult)."""
    parts = [f"<annotation><filename>{filename}</filename>"]
    if size is not None:
        parts.append(f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>")
    for name, *corners in objects:
        difficult = corners[4] if len(corners) > 4 else 0
        box = "".join(f"<{k}>{v}</{k}>" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), corners[:4]))
        parts.append(f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox>{box}</bndbox></object>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(parts) + "</annotation>\n")
    return path


def voc(root: Path, annotations: dict[str, tuple], lists: dict[str, str] | None = None) -> Path:
    """root/JPEGImages/NAME.jpg + root/Annotations/NAME.xml, and ImageSets/Main/SPLIT.txt from `lists`."""
    for name, objects in annotations.items():
        image(root / "JPEGImages" / f"{name}.jpg")
        xml(root / "Annotations" / f"{name}.xml", f"{name}.jpg", *objects)
    for split, text in (lists or {}).items():
        (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text(text)
    return root


def boxes_of(sample) -> list[tuple]:
    return [(b.label, b.left, b.top, b.width, b.height) for b in sample.boxes]


def problems_of(dataset, name: str) -> list[str]:
    return [p.problem for p in dataset.problems if Path(p.path).name == name]


def test_voc_corners_are_one_based_inclusive_pixels(tmp_path):
    root = voc(tmp_path / "voc", {"a": (("cat", 1, 1, 48, 48), ("dog", 11, 21, 20, 30))})
    [sample] = load_detection_dataset(root).samples
    # xmin 1 is the first pixel (left edge 0); xmax 48 the last of 48: the whole image. 11..20 are 10 pixels.
    assert boxes_of(sample) == [("cat", 0, 0, 48, 48), ("dog", 10, 20, 10, 10)]
    assert sample.labels == ("cat", "dog")


def test_a_zero_coordinate_is_the_image_edge_and_float_corners_are_kept(tmp_path):
    root = voc(tmp_path / "voc", {"a": (("cat", 0, 0.5, 10.5, 12.25),)})
    dataset = load_detection_dataset(root)
    assert boxes_of(dataset.samples[0]) == [("cat", 0, 0, 10.5, 12.25)]
    assert dataset.problems == []  # not "partly outside": nothing was clipped


def test_imagesets_lists_are_the_given_split_and_trainval_stands_for_a_missing_train(tmp_path):
    annotations = {n: (("cat", 5, 5, 20, 20),) for n in "abcde"}
    root = voc(tmp_path / "voc", annotations, {"train": "a\nb\n", "val": "c\n", "test": "d 1\n"})
    dataset = load_detection_dataset(root)
    assert {k: [s.path.stem for s in v] for k, v in dataset.given_split.items()} == {
        "train": ["a", "b"], "val": ["c"], "test": ["d"]}
    assert [s.path.stem for s in dataset.samples] == ["a", "b", "c", "d"]  # e is in no list
    assert any("1 annotated image(s) in no" in p for p in problems_of(dataset, "e.xml"))
    (root / "ImageSets" / "Main" / "train.txt").unlink()
    (root / "ImageSets" / "Main" / "trainval.txt").write_text("a\nb\ne\n")
    dataset = load_detection_dataset(root)
    assert [s.path.stem for s in dataset.given_split["train"]] == ["a", "b", "e"]


def test_a_name_in_two_lists_stays_in_the_first_and_a_listed_name_without_xml_is_noted(tmp_path):
    root = voc(tmp_path / "voc", {n: (("cat", 5, 5, 20, 20),) for n in "ab"},
               {"train": "a\n", "val": "b\nghost\n", "test": "a\n"})
    dataset = load_detection_dataset(root)
    assert {k: [s.path.stem for s in v] for k, v in dataset.given_split.items()} == {
        "train": ["a"], "val": ["b"], "test": []}
    assert any("without Annotations/NAME.xml, first 'ghost'" in p for p in problems_of(dataset, "val.txt"))
    assert any("also in train.txt" in p and "kept in train only" in p for p in problems_of(dataset, "test.txt"))


def test_voc_without_imagesets_reads_every_annotation_without_a_given_split(tmp_path):
    root = voc(tmp_path / "voc", {"a": (("cat", 5, 5, 20, 20),), "b": ()})
    dataset = load_detection_dataset(root)
    assert [s.path.stem for s in dataset.samples] == ["a", "b"]
    assert dataset.samples[1].boxes == ()  # an XML without objects: a negative
    assert dataset.given_split is None


def test_labelimg_images_and_xml_side_by_side_read_and_an_image_without_xml_is_listed(tmp_path):
    folder = tmp_path / "labelimg"
    image(folder / "a.png", 64, 48)
    xml(folder / "a.xml", "a.png", ("cat", 11, 11, 30, 40), size=(64, 48))
    image(folder / "b.jpg")
    image(folder / "renamed.jpg")
    xml(folder / "renamed.xml", "old-name.jpg", ("dog", 1, 1, 10, 10))  # stale <filename>: the XML's stem finds it
    dataset = load_detection_dataset(folder)
    assert {s.path.name: boxes_of(s) for s in dataset.samples} == {
        "a.png": [("cat", 10, 10, 20, 30)], "renamed.jpg": [("dog", 0, 0, 10, 10)]}
    assert problems_of(dataset, "b.jpg") == ["no annotation XML (b.xml): not read"]
    assert is_detection_source(folder) and source_task(folder) == "detection"


def test_broken_xml_and_missing_bndbox_numbers_leave_their_image_out_naming_the_file(tmp_path):
    root = voc(tmp_path / "voc", {"good": (("cat", 5, 5, 20, 20),), "nonumber": (("cat", 5, "", 20, 20),)})
    image(root / "JPEGImages" / "broken.jpg")
    (root / "Annotations" / "broken.xml").write_text("<annotation><object>")
    dataset = load_detection_dataset(root)
    assert [s.path.stem for s in dataset.samples] == ["good"]
    [broken] = problems_of(dataset, "broken.xml")
    assert broken.startswith("not readable XML") and broken.endswith("image left out")
    [numbers] = problems_of(dataset, "nonumber.xml")
    assert "object 0 (cat) needs bndbox numbers xmin/ymin/xmax/ymax" in numbers and numbers.endswith("image left out")


def test_declared_size_differing_from_the_image_is_noted_and_boxes_kept(tmp_path):
    root = voc(tmp_path / "voc", {})
    image(root / "JPEGImages" / "a.jpg", 48, 48)
    xml(root / "Annotations" / "a.xml", "a.jpg", ("cat", 5, 5, 20, 20), size=(640, 480))
    dataset = load_detection_dataset(root)
    assert boxes_of(dataset.samples[0]) == [("cat", 4, 4, 16, 16)]
    assert problems_of(dataset, "a.jpg") == ["<size> 640x480 in a.xml, but the image is 48x48 as displayed: boxes kept "
                                             "in pixels as written, checked against the image"]


def test_difficult_boxes_are_kept_and_counted_in_one_line_and_an_inverted_box_is_refused(tmp_path):
    root = voc(tmp_path / "voc", {"a": (("cat", 5, 5, 20, 20, 1), ("cat", 25, 25, 40, 40, 1), ("dog", 30, 5, 10, 20))})
    dataset = load_detection_dataset(root)
    assert [b.label for b in dataset.samples[0].boxes] == ["cat", "cat"]
    assert problems_of(dataset, "Annotations") == ["2 boxes marked difficult: kept as ordinary boxes (trained and "
                                                   "evaluated; VOC's own metric ignores them)"]
    assert any("box 2 (dog)" in p and "has no area" in p for p in problems_of(dataset, "a.jpg"))


def test_dataset_inspect_names_a_voc_folder_and_its_splits(tmp_path, capsys):
    root = voc(tmp_path / "voc", {n: (("cat", 5, 5, 20, 20),) for n in "abc"}, {"train": "a\nb\n", "val": "c\n"})
    assert source_task(root) == "detection"
    assert cli.main(["dataset", "inspect", str(root)]) == 0
    assert f"dataset: {root} (Pascal VOC folder, its own splits train 2 val 1 test 0)" in capsys.readouterr().out


@pytest.mark.skipif(not BCCD.is_dir(), reason="../shared/data/bccd-voc absent")
def test_bccd_voc_splits_and_labels_match_its_readme():
    dataset = load_detection_dataset(BCCD)
    # ../shared/data/bccd-voc/README.md: 205 / 87 / 72 images; RBC, WBC, Platelets; 4,888 boxes of which two
    # have no size (a 1x1 box each once read as 1-based pixels: refused as too small).
    assert {k: len(v) for k, v in dataset.given_split.items()} == {"train": 205, "val": 87, "test": 72}
    assert dataset.label_names == ["Platelets", "RBC", "WBC"]
    assert sum(len(s.boxes) for s in dataset.samples) == 4888 - 2
    assert len(dataset.problems) == 2 and all("too small" in p.problem for p in dataset.problems)
