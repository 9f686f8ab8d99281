"""Detection data: manifests, YOLO folders and COCO files -> checked boxes; splits keep them; to-manifest round trip."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgelabels import cli
from edgelabels.config import load_config
from edgelabels.data import splits as splits_module
from edgelabels.data.boxes import from_ratios, ratios_to_yolo, to_ratios, yolo_to_ratios
from edgelabels.data.dataset import Box, Dataset, Sample
from edgelabels.data.detection import detection_dataset, is_detection_source, load_detection_dataset
from edgelabels.data.sources import parse_manifest_line
from edgelabels.data.splits import Split, make_split, read_split, write_split
from edgelabels.data.to_manifest import to_manifest
from edgelabels.errors import UserError
from helpers.datasets import SHARED_DATA

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "rekognition"
needs_fixtures = pytest.mark.skipif(not FIXTURES.is_dir(), reason="../shared/fixtures/rekognition absent")
BEES = SHARED_DATA / "bees-yolo"


def picture(path: Path, width: int = 64, height: int = 48, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def blank(path: Path, width: int, height: int) -> Path:
    """A flat image of any size (fast even at 4000x2667: only its header matters to the box checks)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (90, 120, 150)).save(path, format="JPEG", quality=50)
    return path


def fixture_line(name: str) -> str:
    [line] = (FIXTURES / name).read_text(encoding="utf-8").splitlines()
    return line


def boxes_of(sample) -> list[tuple]:
    return [(b.label, b.left, b.top, b.width, b.height) for b in sample.boxes]


def problems_of(dataset, name: str) -> list[str]:
    return [p.problem for p in dataset.problems if Path(p.path.split(":")[0]).name == name]


# ---------------------------------------------------------------- Ground Truth manifests


@needs_fixtures
def test_documented_detection_manifest_reads_boxes_in_pixels_with_sorted_labels(tmp_path):
    blank(tmp_path / "s3" / "bucket" / "images" / "IMG_1186.png", 640, 480)
    dataset = load_detection_dataset(FIXTURES / "manifest-object-detection.jsonl", s3_root=tmp_path / "s3")
    [sample] = dataset.samples
    assert sample.labels == ("Echo", "Echo Dot")
    assert boxes_of(sample) == [("Echo Dot", 399, 251, 155, 101), ("Echo", 86, 65, 220, 334)]
    assert dataset.problems == []


@needs_fixtures
def test_four_class_manifest_with_label_attribute_bb(tmp_path):
    blank(tmp_path / "s3" / "bucket" / "image", 4000, 2667)  # the documented key has no suffix
    [sample] = load_detection_dataset(FIXTURES / "manifest-object-detection-four-classes.jsonl",
                                      s3_root=tmp_path / "s3").samples
    assert sample.labels == ("comparator", "ir_led", "ir_phototransistor", "pot_resistor")
    assert boxes_of(sample)[2] == ("ir_phototransistor", 2637, 1380, 676, 338)


@needs_fixtures
def test_image_size_as_an_object_is_read_and_a_smaller_image_gets_a_note_and_clipped_boxes(tmp_path):
    image = tmp_path / "s3" / "custom-labels-bucket" / "images" / "000000245915.jpg"
    manifest = FIXTURES / "manifest-object-detection-from-coco.jsonl"
    assert parse_manifest_line(fixture_line(manifest.name), detection=True)["image_size"] == (640, 480)
    blank(image, 640, 480)
    dataset = load_detection_dataset(manifest, s3_root=tmp_path / "s3")
    assert dataset.problems == []
    blank(image, 320, 240)  # a downscaled copy: the boxes were drawn on the 640x480 original
    dataset = load_detection_dataset(manifest, s3_root=tmp_path / "s3")
    notes = [p.problem for p in dataset.problems]
    assert any("image_size 640x480 in the manifest, but the image is 320x240" in n for n in notes), notes
    # Echo [399, 251, 155, 101] lies wholly outside 320x240; Echo Dot [86, 65, 220, 334] ends at y 399: height 175.
    [sample] = dataset.samples
    assert boxes_of(sample) == [("Echo Dot", 86, 65, 220, 175)]
    assert any("lies outside the 320x240 image: refused" in n for n in notes)
    assert any("partly outside the 320x240 image: clipped to [86, 65, 220, 175]" in n for n in notes)


@needs_fixtures
def test_rekognition_marked_too_small_box_is_dropped_and_the_other_kept(tmp_path):
    blank(tmp_path / "s3" / "bucket" / "Manifests" / "images" / "199940-1791.jpg", 3000, 3000)
    dataset = load_detection_dataset(FIXTURES / "validation-result-bounding-box-too-small.jsonl",
                                     s3_root=tmp_path / "s3")
    [sample] = dataset.samples
    assert boxes_of(sample) == [("Echo", 86, 65, 220, 334)]
    assert any("ERROR_BOUNDING_BOX_TOO_SMALL" in p.problem for p in dataset.problems)


def detection_line(ref: str, boxes, size=None, names=("thing",)) -> str:
    """A Ground Truth line; boxes = [(class_id, left, top, width, height)]."""
    value = {"annotations": [dict(zip(("class_id", "left", "top", "width", "height"), b)) for b in boxes]}
    if size:
        value["image_size"] = [{"width": size[0], "height": size[1], "depth": 3}]
    metadata = {"objects": [{"confidence": 1} for _ in boxes], "class-map": {str(i): n for i, n in enumerate(names)},
                "type": "groundtruth/object-detection", "human-annotated": "yes"}
    return json.dumps({"source-ref": ref, "bounding-box": value, "bounding-box-metadata": metadata})


def test_too_small_rule_is_rekognitions_above_1_px_after_scaling_to_1280(tmp_path):
    blank(tmp_path / "big.png", 3000, 3000)  # scale 1280/3000: a side of 2 px becomes 0.85, 3 px becomes 1.28
    blank(tmp_path / "small.png", 640, 480)  # not scaled: 1 px is not above 1, 2 px is
    lines = [detection_line("big.png", [(0, 10, 10, 2, 50), (0, 100, 100, 3, 3), (0, 200, 200, 50, 2)]),
             detection_line("small.png", [(0, 10, 10, 1, 30), (0, 100, 100, 2, 2)])]
    (tmp_path / "m.manifest").write_text("\n".join(lines) + "\n")
    dataset = load_detection_dataset(tmp_path / "m.manifest")
    by_name = {s.path.name: s for s in dataset.samples}
    assert boxes_of(by_name["big.png"]) == [("thing", 100, 100, 3, 3)]
    assert boxes_of(by_name["small.png"]) == [("thing", 100, 100, 2, 2)]
    too_small = [p for p in dataset.problems if "ERROR_BOUNDING_BOX_TOO_SMALL" in p.problem]
    assert len(too_small) == 3


@needs_fixtures
def test_line_without_boxes_is_a_negative_with_a_warning(tmp_path):
    blank(tmp_path / "s3" / "bucket" / "images" / "IMG_1186.png", 640, 480)
    blank(tmp_path / "s3" / "bucket" / "image", 4000, 2667)
    (tmp_path / "m.manifest").write_text(fixture_line("validation-result-warning-no-annotations.jsonl") + "\n"
                                         + fixture_line("manifest-object-detection-four-classes.jsonl") + "\n")
    dataset = load_detection_dataset(tmp_path / "m.manifest", s3_root=tmp_path / "s3")
    negative = next(s for s in dataset.samples if s.path.name == "IMG_1186.png")
    assert (negative.labels, negative.boxes) == ((), ())
    assert any("kept as an image without objects (a negative" in p for p in problems_of(dataset, "IMG_1186.png"))
    assert len(dataset.label_names) == 4


@needs_fixtures
def test_unannotated_record_and_unsupported_type_stay_invalid_lines():
    # Nobody labelled an unannotated record: it is not evidence of an empty image, so it is not a negative.
    with pytest.raises(ValueError, match="no label"):
        parse_manifest_line(fixture_line("validation-result-warning-unannotated-record.jsonl"), detection=True)
    with pytest.raises(ValueError, match="unsupported type 'groundtruth/wrongtype'"):
        parse_manifest_line(fixture_line("validation-result-unsupported-use-case.jsonl"), detection=True)


def test_image_whose_every_box_is_refused_is_left_out_not_a_negative(tmp_path):
    blank(tmp_path / "a.png", 64, 48)
    blank(tmp_path / "b.png", 64, 48)
    (tmp_path / "m.manifest").write_text("\n".join([
        detection_line("a.png", [(0, 100, 100, 10, 10)]),  # wholly outside the 64x48 image
        detection_line("b.png", [(0, 5, 5, 10, 10)])]) + "\n")
    dataset = load_detection_dataset(tmp_path / "m.manifest")
    assert [s.path.name for s in dataset.samples] == ["b.png"]
    assert any("ERROR_NO_VALID_ANNOTATIONS" in p for p in problems_of(dataset, "a.png"))


# ---------------------------------------------------------------- YOLO folders


def make_yolo(root: Path, files: dict[str, str | None], size=(64, 48), yaml_text: str | None = "names: [cat, dog]"):
    """files: 'split/name' or 'name' -> label file text (None: no .txt at all)."""
    for i, (name, text) in enumerate(files.items()):
        picture(root / "images" / f"{name}.png", *size, seed=i)
        (root / "labels" / name).parent.mkdir(parents=True, exist_ok=True)
        if text is not None:
            (root / "labels" / f"{name}.txt").write_text(text)
    if yaml_text is not None:
        (root / "data.yaml").write_text(yaml_text)
    return root


def test_yolo_folder_boxes_negatives_and_a_clipped_box(tmp_path):
    root = make_yolo(tmp_path / "yolo", {
        "a": "0 0.5 0.5 0.25 0.5\n",  # 64x48: centre (32, 24), 16 x 24 -> left 24, top 12
        "b": "",  # empty file: no objects
        "c": None,  # no file: no objects
        "d": "1 0.9 0.5 0.4 0.5\n",  # left 44.8, width 25.6: right edge 70.4 > 64 -> clipped to 19.2
        "e": "0 1.5 0.5 0.2 0.2\n",  # wholly outside: refused, and the image with it
    }, yaml_text="names: {0: cat, 1: dog}")
    dataset = load_detection_dataset(root)
    by_name = {s.path.stem: s for s in dataset.samples}
    assert sorted(by_name) == ["a", "b", "c", "d"]
    assert boxes_of(by_name["a"]) == [("cat", 24, 12, 16, 24)]
    [(label, left, top, width, height)] = boxes_of(by_name["d"])
    assert (label, left, top, width, height) == ("dog", pytest.approx(44.8), 12, pytest.approx(19.2), 24)
    assert by_name["b"].labels == by_name["c"].labels == ()
    assert any("partly outside the 64x48 image: clipped" in p for p in problems_of(dataset, "d.png"))
    assert any("lies outside" in p for p in problems_of(dataset, "e.png"))
    assert getattr(dataset, "given_split", None) is None  # no split folders
    assert is_detection_source(root) and not is_detection_source(tmp_path)


def test_yolo_boxes_are_in_the_frame_of_the_image_as_displayed(tmp_path):
    root = make_yolo(tmp_path / "yolo", {"a": "0 0.5 0.5 0.5 0.5"})
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 64 wide x 48 high, displayed rotated: 48 wide x 64 high
    Image.open(root / "images" / "a.png").convert("RGB").save(root / "images" / "a.jpg", exif=exif)
    (root / "images" / "a.png").unlink()
    [sample] = load_detection_dataset(root).samples
    assert boxes_of(sample) == [("cat", 12, 16, 24, 32)]


def test_manifest_line_with_image_level_labels_only_is_left_out(tmp_path):
    blank(tmp_path / "a.png", 64, 48)
    blank(tmp_path / "b.png", 64, 48)
    classification = {"source-ref": "a.png", "animal": 0,
                      "animal-metadata": {"class-name": "cat", "type": "groundtruth/image-classification"}}
    (tmp_path / "m.manifest").write_text(json.dumps(classification) + "\n"
                                         + detection_line("b.png", [(0, 5, 5, 10, 10)], names=("cat",)) + "\n")
    dataset = load_detection_dataset(tmp_path / "m.manifest")
    assert [s.path.name for s in dataset.samples] == ["b.png"]
    assert any("image-level labels (cat) but no boxes: left out" in p for p in problems_of(dataset, "a.png"))


def test_yolo_split_folders_are_kept_with_missing_splits_empty(tmp_path):
    root = make_yolo(tmp_path / "yolo", {"train/a": "0 0.5 0.5 0.5 0.5", "train/b": "1 0.3 0.3 0.2 0.2",
                                         "val/c": "0 0.5 0.5 0.5 0.5"})
    dataset = load_detection_dataset(root)
    assert {k: [s.path.name for s in v] for k, v in dataset.given_split.items()} == {
        "train": ["a.png", "b.png"], "val": ["c.png"], "test": []}
    [(label, *pixels)] = boxes_of(dataset.given_split["train"][1])  # 64x48: centre (19.2, 14.4), 12.8 x 9.6
    assert (label, pixels) == ("dog", pytest.approx([12.8, 9.6, 12.8, 9.6]))


def test_yolo_class_names_come_from_data_yaml_or_class_names_else_a_user_error(tmp_path):
    root = make_yolo(tmp_path / "yolo", {"a": "0 0.5 0.5 0.5 0.5"}, yaml_text=None)
    with pytest.raises(UserError, match="set data.class_names"):
        load_detection_dataset(root)
    assert load_detection_dataset(root, class_names=["bee"]).label_names == ["bee"]
    (root / "labels" / "a.txt").write_text("3 0.5 0.5 0.5 0.5")
    with pytest.raises(UserError, match=r"a.txt:1: class 3, but only 1 class names"):
        load_detection_dataset(root, class_names=["bee"])


def test_more_than_50_boxes_keeps_the_image_with_a_note_and_more_than_250_labels_is_refused(tmp_path):
    many = "".join(f"0 {0.1 + 0.015 * i} 0.5 0.02 0.1\n" for i in range(51))  # 1.28 x 4.8 px each
    root = make_yolo(tmp_path / "crowded", {"a": many, "b": "0 0.5 0.5 0.5 0.5"})
    dataset = load_detection_dataset(root)
    assert [(s.path.stem, len(s.boxes)) for s in dataset.samples] == [("a", 51), ("b", 1)]
    assert any("51 boxes, more than Rekognition's 50" in p and p.endswith("kept") for p in problems_of(dataset, "a.png"))
    # 6 images x 42 boxes of distinct classes: 252 labels, each image within the 50-box limit.
    names = [f"c{i}" for i in range(252)]
    files = {f"i{k}": "".join(f"{k * 42 + j} {0.02 + 0.023 * j} 0.5 0.02 0.2\n" for j in range(42)) for k in range(6)}
    root = make_yolo(tmp_path / "wide", files, size=(256, 64), yaml_text=json.dumps({"names": names}))
    with pytest.raises(UserError, match="252 labels, more than Rekognition's 250"):
        load_detection_dataset(root)


def test_byte_identical_images_are_listed(tmp_path):
    root = make_yolo(tmp_path / "yolo", {"a": "0 0.5 0.5 0.5 0.5", "b": "0 0.5 0.5 0.5 0.5"})
    shutil.copy(root / "images" / "a.png", root / "images" / "b.png")
    dataset = load_detection_dataset(root)
    assert any("byte-identical to" in p and "a.png" in p for p in problems_of(dataset, "b.png"))


@pytest.mark.skipif(not BEES.is_dir(), reason="../shared/data/bees-yolo absent")
def test_bees_yolo_counts_match_its_readme():
    dataset = load_detection_dataset(BEES, class_names=["bee"])
    counts = {name: (len(part), sum(len(s.boxes) for s in part)) for name, part in dataset.given_split.items()}
    # ../shared/data/README.md: train 70 images / 136 boxes, val 20 / 41, test 10 / 23.
    assert counts == {"train": (70, 136), "val": (20, 41), "test": (10, 23)}
    assert dataset.label_names == ["bee"] and dataset.problems == []


def test_detection_dataset_reads_the_config_and_logs_problems(tmp_path, caplog):
    root = make_yolo(tmp_path / "yolo", {"a": "0 0.5 0.5 0.5 0.5", "b": "", "z": "0 0.5 0.5 0.5 0.5"},
                     yaml_text=None)
    (root / "images" / "z.png").write_bytes(b"not an image")
    config = load_config(None, ["task=detection", f"data.source={root}", "data.class_names=[bee]"])
    with caplog.at_level(logging.WARNING, logger="edgelabels.train"):
        dataset, test = detection_dataset(config)
    assert test is None
    assert sorted(s.path.stem for s in dataset.samples) == ["a", "b"]
    assert "negative" in caplog.text and "z.png" in caplog.text


# ---------------------------------------------------------------- COCO


@needs_fixtures
def test_coco_example_boxes_and_category_names(tmp_path):
    shutil.copy(FIXTURES / "coco-example.json", tmp_path / "coco.json")
    blank(tmp_path / "xxxxxxxxx.jpg", 426, 640)
    blank(tmp_path / "nnnnnnnnnn.jpg", 640, 480)
    dataset = load_detection_dataset(tmp_path / "coco.json")
    by_name = {s.path.name: s for s in dataset.samples}
    assert boxes_of(by_name["xxxxxxxxx.jpg"]) == [("echo", 19.23, 383.18, 314.5, 244.46)]
    assert boxes_of(by_name["nnnnnnnnnn.jpg"]) == [("echo", 399, 251, 155, 101), ("echo dot", 86, 65, 220, 334)]
    assert by_name["nnnnnnnnnn.jpg"].labels == ("echo", "echo dot")
    assert dataset.problems == []
    assert is_detection_source(tmp_path / "coco.json")


# ---------------------------------------------------------------- boxes.py conversions


def test_box_conversions_round_trip_pixels_ratios_yolo():
    box = Box("bee", 10, 20, 30, 40)  # on a 100 x 200 image
    ratios = to_ratios(box, 100, 200)
    assert ratios == pytest.approx((0.1, 0.1, 0.3, 0.2))
    yolo = ratios_to_yolo(*ratios)
    assert yolo == pytest.approx((0.25, 0.2, 0.3, 0.2))  # centre (25, 40) px / (100, 200)
    back = from_ratios("bee", yolo_to_ratios(*yolo), 100, 200)
    assert boxes_of(Sample(Path("x"), ("bee",), "x", (back,))) == [
        ("bee", pytest.approx(10), pytest.approx(20), pytest.approx(30), pytest.approx(40))]


# ---------------------------------------------------------------- splits keep boxes


def detection_split(tmp_path) -> Split:
    a = Sample(tmp_path / "a.png", ("bee", "wasp"), "a.png",
               (Box("bee", 1.5, 2.25, 3, 4), Box("wasp", 0, 0, 10, 12.125)))
    negative = Sample(tmp_path / "n.png", (), "n.png")
    c = Sample(tmp_path / "c.png", ("bee",), "c.png", (Box("bee", 7, 8, 9, 1e-3),))
    return Split(train=[a, negative], val=[c], test=[])


def test_split_files_keep_boxes_and_negatives(tmp_path, monkeypatch):
    written = []
    real = splits_module.atomic.write_text
    monkeypatch.setattr(splits_module.atomic, "write_text", lambda path, text: (written.append(Path(path).name),
                                                                                 real(path, text))[1])
    split = detection_split(tmp_path)
    write_split(split, tmp_path / "splits")
    assert written[0] == "boxes.jsonl" and written[-1] == "train.txt"
    lines = (tmp_path / "splits" / "boxes.jsonl").read_text().splitlines()
    assert json.loads(lines[0]) == {"path": str(tmp_path / "a.png"),
                                    "boxes": [["bee", 1.5, 2.25, 3, 4], ["wasp", 0, 0, 10, 12.125]]}
    assert len(lines) == 2  # the negative has no line
    assert (tmp_path / "splits" / "train.txt").read_text().splitlines()[1] == f"{tmp_path / 'n.png'}\t-\tn.png"
    assert read_split(tmp_path / "splits") == split


def test_classification_split_writes_no_boxes_file_and_drops_a_stale_one(tmp_path):
    write_split(detection_split(tmp_path), tmp_path / "splits")
    plain = Split(train=[Sample(tmp_path / "a.png", ("cat",), "a")], val=[], test=[])
    write_split(plain, tmp_path / "splits")
    assert not (tmp_path / "splits" / "boxes.jsonl").exists()
    assert read_split(tmp_path / "splits").train[0].boxes == ()


def test_make_split_deals_negatives_as_a_stratum_of_their_own(tmp_path):
    boxed = [Sample(tmp_path / f"b{i}.png", ("bee",), f"b{i}", (Box("bee", 0, 0, 5, 5),)) for i in range(20)]
    negatives = [Sample(tmp_path / f"n{i}.png", (), f"n{i}") for i in range(10)]
    split = make_split(Dataset(boxed + negatives, "x"), test_fraction=0.2, val_fraction=0.0, seed=0)
    assert len(split.train) + len(split.test) == 30
    assert 1 <= sum(not s.labels for s in split.test) <= 3  # about 20% of the 10 negatives
    assert all(s.boxes for s in split.test if s.labels)


def test_dataset_split_of_a_yolo_folder_writes_boxes_and_keeps_its_own_splits(tmp_path, capsys):
    root = make_yolo(tmp_path / "yolo", {
        "train/a": "0 0.5 0.5 0.25 0.5\n",  # 64x48: ("cat", 24, 12, 16, 24)
        "train/b": "1 0.9 0.5 0.4 0.5\n",  # partly outside: clipped to ("dog", 44.8, 12, 19.2, 24)
        "train/n": "",  # a negative
        "val/c": "1 0.25 0.25 0.5 0.5\n",  # ("dog", 0, 0, 32, 24)
        "test/d": "0 0.5 0.5 0.25 0.5\n0 0.25 0.75 0.5 0.5\n",  # ("cat", 24, 12, 16, 24), ("cat", 0, 24, 32, 24)
    })
    out = tmp_path / "splits"
    assert cli.main(["dataset", "split", str(root), "--out", str(out), "--seed", "3"]) == 0
    captured = capsys.readouterr()
    assert "kept the source's own train/val/test split" in captured.out
    assert f"written to {out}/train.txt, val.txt, test.txt and boxes.jsonl" in captured.out
    assert "b.png" in captured.err and "clipped" in captured.err  # the reader's decision is said, not hidden
    split = read_split(out)
    by_name = {name: {s.path.name: boxes_of(s) for s in part} for name, part in split.parts().items()}
    assert by_name["train"] == {"a.png": [("cat", 24, 12, 16, 24)], "b.png": [("dog", pytest.approx(44.8), 12,
                                                                                pytest.approx(19.2), 24)],
                                "n.png": []}
    assert by_name["val"] == {"c.png": [("dog", 0, 0, 32, 24)]}
    assert by_name["test"] == {"d.png": [("cat", 24, 12, 16, 24), ("cat", 0, 24, 32, 24)]}
    assert [s.labels for s in split.train] == [("cat",), ("dog",), ()]


def test_dataset_split_of_a_boxes_manifest_deals_images_with_their_boxes(tmp_path, capsys):
    lines = []
    for i in range(10):
        picture(tmp_path / f"i{i}.png", seed=i)
        lines.append(detection_line(f"i{i}.png", [(0, i, 2 * i, 10, 12)], size=(64, 48), names=("bee",)))
    (tmp_path / "boxes.manifest").write_text("\n".join(lines) + "\n")
    out = tmp_path / "splits"
    assert cli.main(["dataset", "split", str(tmp_path / "boxes.manifest"), "--out", str(out),
                     "--test-fraction", "0.2", "--val-fraction", "0.25"]) == 0
    split = read_split(out)
    assert sorted(len(part) for part in split.parts().values()) == [2, 2, 6]  # 20% test, 25% of the rest val
    everything = [s for part in split.parts().values() for s in part]
    assert sorted(s.path.name for s in everything) == [f"i{i}.png" for i in range(10)]
    for sample in everything:  # each image keeps its own box: i -> ("bee", i, 2i, 10, 12)
        i = int(sample.path.stem[1:])
        assert boxes_of(sample) == [("bee", i, 2 * i, 10, 12)]
    assert "no boxes" in capsys.readouterr().out


def test_dataset_split_refuses_a_test_source_without_boxes_for_a_detection_source(tmp_path, capsys):
    root = make_yolo(tmp_path / "yolo", {"a": "0 0.5 0.5 0.25 0.5\n", "b": "1 0.5 0.5 0.25 0.5\n"})
    picture(tmp_path / "test" / "cat" / "x.png")
    code = cli.main(["dataset", "split", str(root), "--out", str(tmp_path / "s"), "--test-source",
                     str(tmp_path / "test")])
    assert code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "not a detection source" in line and "needs them too" in line
    assert not (tmp_path / "s").exists()


# ---------------------------------------------------------------- to-manifest


def test_to_manifest_round_trips_yolo_boxes_through_s3_root(tmp_path):
    root = make_yolo(tmp_path / "yolo", {"train/a": "0 0.5 0.5 0.25 0.5\n1 0.123456 0.654321 0.1 0.2\n",
                                         "train/b": "", "val/c": "1 0.3 0.7 0.33 0.21"})
    original = {s.path.relative_to(root).as_posix(): s for s in load_detection_dataset(root).samples}
    out = tmp_path / "out.manifest"
    assert cli.main(["dataset", "to-manifest", str(root), "--s3-prefix", "s3://bucket/path/", "--out", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 3 and lines[0]["source-ref"] == "s3://bucket/path/images/train/a.png"
    shutil.copytree(root, tmp_path / "s3" / "bucket" / "path")
    back = load_detection_dataset(out, s3_root=tmp_path / "s3")
    assert len(back.samples) == 3
    for sample in back.samples:
        before = original[sample.path.relative_to(tmp_path / "s3" / "bucket" / "path").as_posix()]
        assert sample.labels == before.labels
        assert np.allclose([b[1:] for b in boxes_of(sample)], [b[1:] for b in boxes_of(before)], atol=1e-6, rtol=0) \
            if sample.boxes else not before.boxes
        assert [b.label for b in sample.boxes] == [b.label for b in before.boxes]


@needs_fixtures
def test_to_manifest_lines_have_the_documented_layout(tmp_path):
    shutil.copy(FIXTURES / "coco-example.json", tmp_path / "coco.json")
    blank(tmp_path / "xxxxxxxxx.jpg", 426, 640)
    blank(tmp_path / "nnnnnnnnnn.jpg", 640, 480)
    assert to_manifest(tmp_path / "coco.json", "s3://custom-labels-bucket/images", tmp_path / "m.manifest") == 2
    ours = json.loads((tmp_path / "m.manifest").read_text().splitlines()[1])
    documented = json.loads(fixture_line("manifest-object-detection.jsonl"))
    assert set(ours) == set(documented)
    for key in ("bounding-box", "bounding-box-metadata"):
        assert set(ours[key]) == set(documented[key])
    assert set(ours["bounding-box"]["image_size"][0]) == {"width", "height", "depth"}
    assert ours["source-ref"] == "s3://custom-labels-bucket/images/nnnnnnnnnn.jpg"
    assert ours["bounding-box"]["image_size"] == [{"width": 640, "height": 480, "depth": 3}]
    # The guide's own conversion of this COCO image (manifest-object-detection-from-coco.jsonl): same boxes.
    guide = json.loads(fixture_line("manifest-object-detection-from-coco.jsonl"))["bounding-box"]["annotations"]
    assert [[a[k] for k in ("left", "top", "width", "height")] for a in ours["bounding-box"]["annotations"]] == \
        [[a[k] for k in ("left", "top", "width", "height")] for a in guide]
    assert ours["bounding-box-metadata"]["class-map"] == {"0": "echo", "1": "echo dot"}
    assert ours["bounding-box-metadata"]["type"] == "groundtruth/object-detection"


def test_to_manifest_refuses_a_prefix_that_is_not_s3(tmp_path):
    root = make_yolo(tmp_path / "yolo", {"a": "0 0.5 0.5 0.5 0.5"})
    with pytest.raises(UserError, match="expected s3://bucket/path/"):
        to_manifest(root, "bucket/path/", tmp_path / "m.manifest")


# ---------------------------------------------------------------- dataset inspect


def test_inspect_on_a_yolo_folder_reports_boxes_and_writes_the_histogram(tmp_path, capsys):
    root = make_yolo(tmp_path / "yolo", {"train/a": "0 0.5 0.5 0.25 0.5\n1 0.2 0.2 0.1 0.1\n0 0.7 0.7 0.2 0.2\n",
                                         "train/b": "", "val/c": "0 0.5 0.5 0.5 0.5"})
    report = tmp_path / "report" / "inspect.json"
    assert cli.main(["dataset", "inspect", str(root), "--json", str(report)]) == 0
    printed = capsys.readouterr().out
    assert "YOLO folder" in printed and "boxes: 4 on 3 images; per image 0 min, 1 median, 3 max" in printed
    detection = json.loads(report.read_text())["detection"]
    assert detection["boxes_per_label"] == {"cat": 3, "dog": 1}
    assert [Path(p).name for p in detection["images_without_boxes"]] == ["b.png"]
    histogram = tmp_path / "report" / "box-sizes.png"
    assert histogram.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert Image.open(histogram).size[0] > 100


def test_synth_cassettes_with_boxes_writes_a_manifest_the_detection_reader_takes(tmp_path, capsys):
    out = tmp_path / "cassettes"
    assert cli.main(["dataset", "synth-cassettes", str(out), "--n", "3", "--seed", "1", "--size", "96x64",
                     "--boxes"]) == 0
    dataset = load_detection_dataset(out / "boxes.manifest")
    assert len(dataset.samples) == 3
    assert {"cassette", "window"} <= set(dataset.label_names)
    assert all(s.boxes for s in dataset.samples)
