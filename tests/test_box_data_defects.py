"""Box data that used to slip through: non-finite boxes, COCO's duplicate or fractional ids, a BOM, dead symlinks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgelabels import cli
from edgelabels.data.detection import load_detection_dataset
from edgelabels.data.masks import load_mask_pairs
from edgelabels.data.splits import make_split, write_split
from edgelabels.data.to_manifest import to_manifest
from edgelabels.errors import UserError

NAN, INF = float("nan"), float("inf")


def picture(path: Path, seed: int = 0, width: int = 64, height: int = 48) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def manifest_line(ref: str, boxes) -> str:
    """A Ground Truth object-detection line; boxes = [(left, top, width, height)] of class 0, "thing"."""
    value = {"annotations": [{"class_id": 0, "left": b[0], "top": b[1], "width": b[2], "height": b[3]}
                             for b in boxes]}
    metadata = {"objects": [{"confidence": 1} for _ in boxes], "class-map": {"0": "thing"},
                "type": "groundtruth/object-detection", "human-annotated": "yes"}
    return json.dumps({"source-ref": ref, "bounding-box": value, "bounding-box-metadata": metadata})


def coco(folder: Path, images, annotations, categories=({"id": 1, "name": "thing"},)) -> Path:
    """A COCO file beside its images; images = [(id, file name)], pictures written for each name."""
    for seed, (_, name) in enumerate(images):
        if not (folder / name).exists():
            picture(folder / name, seed)
    document = {"images": [{"id": i, "file_name": name} for i, name in images],
                "annotations": list(annotations), "categories": list(categories)}
    path = folder / "coco.json"
    path.write_text(json.dumps(document))  # json writes NaN and Infinity as Python reads them back
    return path


def box(image_id, bbox, annotation_id=None, category_id=1) -> dict:
    entry = {"image_id": image_id, "category_id": category_id, "bbox": list(bbox)}
    if annotation_id is not None:
        entry["id"] = annotation_id
    return entry


def finite(dataset) -> bool:
    return all(math.isfinite(v) for s in dataset.samples for b in s.boxes for v in (b.left, b.top, b.width, b.height))


def listed(dataset, text: str) -> list[str]:
    return [f"{Path(p.path.split(':')[0]).name}: {p.problem}" for p in dataset.problems if text in p.problem]


# ---------------------------------------------------------------- one rule for non-finite boxes


def test_a_manifest_box_with_nan_or_infinite_values_leaves_its_image_out_and_is_listed(tmp_path):
    for name in ("nan.png", "inf.png", "good.png"):
        picture(tmp_path / name)
    (tmp_path / "m.manifest").write_text("\n".join([
        manifest_line("nan.png", [(NAN, 5, 10, 10), (5, 5, 10, 10)]),
        manifest_line("inf.png", [(5, 5, INF, 10)]),
        manifest_line("good.png", [(5, 5, 10, 10)])]) + "\n")
    dataset = load_detection_dataset(tmp_path / "m.manifest")
    assert [s.path.name for s in dataset.samples] == ["good.png"]
    assert len(listed(dataset, "not finite")) == 2
    assert finite(dataset)


def test_a_coco_bbox_with_nan_or_infinite_width_leaves_its_image_out_instead_of_being_clipped(tmp_path):
    path = coco(tmp_path, [(1, "nan.png"), (2, "inf.png"), (3, "good.png")],
                [box(1, (NAN, 5, 10, 10)), box(2, (5, 5, INF, 10)), box(3, (5, 5, 10, 10))])
    dataset = load_detection_dataset(path)
    assert [s.path.name for s in dataset.samples] == ["good.png"]
    assert sorted(listed(dataset, "not finite")) == [
        "inf.png: box 0 (thing) [5, 5, inf, 10] is not finite numbers in pixels (NaN or infinite): image left out",
        "nan.png: box 0 (thing) [nan, 5, 10, 10] is not finite numbers in pixels (NaN or infinite): image left out"]


def test_a_yolo_box_that_is_infinite_once_scaled_to_pixels_leaves_its_image_out(tmp_path):
    root = tmp_path / "yolo"
    for name, line in (("huge", "0 0.5 0.5 1e308 1e308"), ("good", "0 0.5 0.5 0.5 0.5")):
        picture(root / "images" / f"{name}.png")
        (root / "labels").mkdir(parents=True, exist_ok=True)
        (root / "labels" / f"{name}.txt").write_text(line + "\n")
    dataset = load_detection_dataset(root, class_names=("thing",))
    assert [s.path.name for s in dataset.samples] == ["good.png"]
    assert listed(dataset, "not finite") and finite(dataset)


def test_inspect_lists_a_nan_box_and_writes_a_json_report_without_nan(tmp_path, capsys):
    for name in ("nan.png", "good.png"):
        picture(tmp_path / "data" / name)
    (tmp_path / "data" / "m.manifest").write_text(
        manifest_line("nan.png", [(NAN, 5, 10, 10)]) + "\n" + manifest_line("good.png", [(5, 5, 10, 10)]) + "\n")
    report = tmp_path / "report" / "inspect.json"
    assert cli.main(["dataset", "inspect", str(tmp_path / "data" / "m.manifest"), "--json", str(report)]) == 0
    printed = capsys.readouterr().out
    assert "problems: none" not in printed and "nan.png: box 0 (thing) [nan, 5, 10, 10] is not finite" in printed
    document = json.loads(report.read_text(), parse_constant=lambda word: pytest.fail(f"{word} in the report"))
    assert document["detection"]["boxes"] == 1 and document["task"] == "detection"


def test_a_nan_box_reaches_neither_the_split_boxes_file_nor_to_manifest(tmp_path):
    path = coco(tmp_path / "src", [(i, f"{i}.png") for i in range(1, 7)],
                [box(1, (NAN, 5, 10, 10))] + [box(i, (5, 5, 10, 10)) for i in range(2, 7)])
    split = make_split(load_detection_dataset(path), test_fraction=0.2, val_fraction=0.2, seed=0)
    write_split(split, tmp_path / "splits")
    assert "NaN" not in (tmp_path / "splits" / "boxes.jsonl").read_text()
    assert to_manifest(path, "s3://bucket/src/", tmp_path / "out.manifest") == 5
    assert "NaN" not in (tmp_path / "out.manifest").read_text()


# ---------------------------------------------------------------- COCO ids


def test_two_coco_images_with_one_id_are_both_left_out_and_listed(tmp_path):
    path = coco(tmp_path, [(1, "a.png"), (1, "b.png"), (2, "c.png")],
                [box(1, (5, 5, 10, 10)), box(2, (5, 5, 20, 20))])
    dataset = load_detection_dataset(path)
    assert [s.path.name for s in dataset.samples] == ["c.png"]
    assert [p.path.rsplit(":", 1)[1] for p in dataset.problems if "also images[0]" in p.problem] == ["images[1]"]


def test_two_coco_categories_with_one_id_and_different_names_are_refused(tmp_path):
    path = coco(tmp_path, [(1, "a.png")], [box(1, (5, 5, 10, 10))],
                categories=({"id": 1, "name": "cat"}, {"id": 1, "name": "dog"}))
    with pytest.raises(UserError, match=r"categories has id 1 twice \('cat' and 'dog'\)"):
        load_detection_dataset(path)


def test_two_coco_annotations_with_one_id_leave_their_images_out(tmp_path):
    path = coco(tmp_path, [(1, "a.png"), (2, "b.png"), (3, "c.png")],
                [box(1, (5, 5, 10, 10), annotation_id=7), box(2, (5, 5, 20, 20), annotation_id=7),
                 box(3, (5, 5, 20, 20), annotation_id=8)])
    dataset = load_detection_dataset(path)
    assert [s.path.name for s in dataset.samples] == ["c.png"]
    assert len(listed(dataset, "id 7 is also annotations[0]'s")) == 1


def test_a_fractional_coco_image_id_is_listed_not_rounded_onto_another_image(tmp_path):
    path = coco(tmp_path, [(1, "a.png"), (2, "b.png")],
                [box(1.7, (5, 5, 10, 10)), box(1.0, (5, 5, 30, 30)), box(2, (5, 5, 20, 20))])
    dataset = load_detection_dataset(path)
    by_name = {s.path.name: [(b.width, b.height) for b in s.boxes] for s in dataset.samples}
    assert by_name == {"a.png": [(30, 30)], "b.png": [(20, 20)]}  # 1.0 is image 1; 1.7 is no image
    assert [p.path.rsplit(":", 1)[1] for p in dataset.problems if "integer image_id" in p.problem] == [
        "annotations[0]"]


# ---------------------------------------------------------------- a BOM, a symlink that leads nowhere


def test_a_yolo_label_file_starting_with_a_utf8_bom_is_read(tmp_path):
    root = tmp_path / "yolo"
    picture(root / "images" / "a.png")
    (root / "labels").mkdir()
    (root / "labels" / "a.txt").write_bytes("\ufeff0 0.5 0.5 0.5 0.5\r\n".encode("utf-8"))
    [sample] = load_detection_dataset(root, class_names=("thing",)).samples
    assert [(b.label, b.width, b.height) for b in sample.boxes] == [("thing", 32, 24)]


def test_a_dangling_symlink_named_like_an_image_is_listed_in_a_yolo_and_a_mask_folder(tmp_path):
    yolo = tmp_path / "yolo"
    picture(yolo / "images" / "a.png")
    (yolo / "labels").mkdir()
    (yolo / "labels" / "a.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (yolo / "images" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    dataset = load_detection_dataset(yolo, class_names=("thing",))
    assert listed(dataset, "does not exist") == [f"gone.png: symlink to {tmp_path / 'nowhere.png'}, which does not "
                                                 "exist: skipped"]
    masks = tmp_path / "lungs"
    picture(masks / "images" / "a.png")
    picture(masks / "masks" / "a.png")
    (masks / "images" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    assert listed(load_mask_pairs(masks), "does not exist") == [
        f"gone.png: symlink to {tmp_path / 'nowhere.png'}, which does not exist: skipped"]


def test_a_coco_file_whose_every_image_is_left_out_says_why_in_its_one_line(tmp_path):
    """Two images of one id leave no usable box: the refusal names the first problem, not just the count."""
    for name in ("a.png", "b.png"):
        Image.new("RGB", (80, 64), (200, 40, 40)).save(tmp_path / name)
    (tmp_path / "ann.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.png", "width": 80, "height": 64},
                   {"id": 1, "file_name": "b.png", "width": 80, "height": 64}],
        "categories": [{"id": 1, "name": "bee"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 20, 10]}]}))
    with pytest.raises(UserError, match=r"no usable box .*first problem: .*id 1 is also images\[0\]'s"):
        load_detection_dataset(tmp_path / "ann.json")
