"""Folder-per-label and Ground Truth manifest import, against AWS's documented manifest lines."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgelabels.data.sources import load_dataset, parse_manifest_line, resolve_source_ref
from edgelabels.errors import UserError

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "rekognition"
needs_fixtures = pytest.mark.skipif(not FIXTURES.is_dir(), reason="../shared/fixtures/rekognition absent")
PEDIATRIC = r"^(person\d+|IM-\d+|NORMAL2-IM-\d+)"


def image(path: Path, seed: int = 0, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, fmt)
    return path


def fixture_lines(name: str) -> list[str]:
    return (FIXTURES / name).read_text(encoding="utf-8").splitlines()


def write_manifest(path: Path, lines) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def line(ref: str, label: str, attribute: str = "animal") -> dict:
    return {"source-ref": ref, attribute: 0, f"{attribute}-metadata": {
        "class-name": label, "confidence": 1, "type": "groundtruth/image-classification",
        "human-annotated": "yes", "creation-date": "2020-03-06T17:46:39.176", "job-name": "labeling-job/x"}}


# ---------------------------------------------------------------- folder per label


def test_only_direct_child_folders_become_labels(tmp_path):
    root = tmp_path / "devices"
    image(root / "echo" / "echo-1.png")
    image(root / "echo-dot" / "echo-dot-1.png", 1)
    image(root / "echo-dot" / "white-echo-dot" / "white-1.png", 2)  # deeper: still echo-dot, as Rekognition
    image(root / "loose.png", 3)
    dataset = load_dataset(root)
    labels = {p.name: s.labels for s in dataset.samples for p in [s.path]}
    assert labels == {"echo-1.png": ("echo",), "echo-dot-1.png": ("echo-dot",), "white-1.png": ("echo-dot",)}
    assert [p.name for p in dataset.unlabelled] == ["loose.png"]
    assert dataset.label_counts == {"echo": 1, "echo-dot": 2}
    assert all(s.path.is_absolute() for s in dataset.samples)


def test_hidden_and_non_image_files_are_ignored_but_other_image_formats_are_listed(tmp_path):
    root = tmp_path / "data"
    image(root / "a" / "1.png")
    image(root / "b" / "2.jpg", 1, "JPEG")
    image(root / "b" / ".hidden.png", 2)
    image(root / ".cache" / "3.png", 3)
    (root / "a" / "README.txt").write_text("about")
    image(root / "a" / "scan.gif", 4, "GIF")
    image(root / "a" / "lying.png", 5, "GIF")  # an image suffix: kept, validation refuses its content
    dataset = load_dataset(root)
    assert sorted(s.path.name for s in dataset.samples) == ["1.png", "2.jpg", "lying.png"]
    assert [(Path(p.path).name, p.problem) for p in dataset.problems] == [
        ("scan.gif", "GIF is not accepted (PNG or JPEG only, as Rekognition): skipped")]


def test_missing_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match=r"nowhere: folder or manifest not found$"):
        load_dataset(tmp_path / "nowhere")


def test_single_label_is_a_user_error(tmp_path):
    image(tmp_path / "only" / "a.png")
    with pytest.raises(UserError, match=r"found 1 label\(s\) \(only 'only'\); classification needs >= 2 labels"):
        load_dataset(tmp_path)


def test_label_folder_without_images_is_a_user_error(tmp_path):
    image(tmp_path / "cats" / "a.png")
    image(tmp_path / "dogs" / "b.png", 1)
    (tmp_path / "birds").mkdir()
    (tmp_path / "birds" / "list.txt").write_text("todo")
    with pytest.raises(UserError, match=r"birds: label folder has no PNG/JPEG image"):
        load_dataset(tmp_path)


def test_a_file_that_is_neither_folder_nor_manifest_is_refused(tmp_path):
    path = image(tmp_path / "one.png")
    with pytest.raises(UserError, match=r"one\.png: not a folder or a manifest"):
        load_dataset(path)


def test_group_by_uses_first_capture_group_then_whole_match_then_own_path(tmp_path):
    for name in ("person12_virus_3.jpeg", "person12_bacteria_4.jpeg", "IM-0115-0001.jpeg",
                 "NORMAL2-IM-0587-0001-0002.jpeg", "other.jpeg"):
        image(tmp_path / ("PNEUMONIA" if name.startswith("person") else "NORMAL") / name, fmt="JPEG")
    groups = {s.path.name: s.group for s in load_dataset(tmp_path, group_by=PEDIATRIC).samples}
    assert groups["person12_virus_3.jpeg"] == groups["person12_bacteria_4.jpeg"] == "person12"
    assert groups["IM-0115-0001.jpeg"] == "IM-0115"
    assert groups["NORMAL2-IM-0587-0001-0002.jpeg"] == "NORMAL2-IM-0587"
    assert groups["other.jpeg"] == str(tmp_path / "NORMAL" / "other.jpeg")
    whole = {s.path.name: s.group for s in load_dataset(tmp_path, group_by=r"person\d+").samples}
    assert whole["person12_virus_3.jpeg"] == "person12"
    assert whole["IM-0115-0001.jpeg"].endswith("IM-0115-0001.jpeg")  # no match: its own group


def test_invalid_group_by_regex_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match=r"--group-by '\(unclosed': invalid regular expression"):
        load_dataset(tmp_path, group_by="(unclosed")


# ---------------------------------------------------------------- documented manifest lines


@needs_fixtures
def test_every_documented_manifest_line_parses_as_documented():
    expected = {
        "manifest-classification.jsonl": (("Sunrise",), 0),
        "manifest-classification-console.jsonl": (("Echo Dot",), 0),
        "manifest-classification-multilabel.jsonl": (("football", "ball"), 0),
        "manifest-classification-multilabel-list-dataset-entries.jsonl": (("camellia", "with_leaves"), 0),
        "manifest-classification-multilabel-update-dataset-entries.jsonl": (("mediterranean_spurge", "with_leaves"), 0),
        "manifest-object-detection.jsonl": (("Echo Dot", "Echo"), 2),  # TAB characters inside the line
        "manifest-object-detection-four-classes.jsonl":
            (("comparator", "pot_resistor", "ir_phototransistor", "ir_led"), 4),
        "manifest-object-detection-from-coco.jsonl": (("Echo", "Echo Dot"), 2),  # image_size as an object
        "validation-result-bounding-box-too-small.jsonl": (("Echo",), 1),
    }
    names = {p.name for pattern in ("manifest-*.jsonl", "validation-result-*.jsonl") for p in FIXTURES.glob(pattern)}
    assert set(expected) <= names
    for name, (labels, n_boxes) in expected.items():
        [text] = fixture_lines(name)
        entry = parse_manifest_line(text)
        assert (entry["labels"], len(entry["boxes"])) == (labels, n_boxes), name


@needs_fixtures
def test_bounding_boxes_keep_pixels_and_class_map_names():
    [text] = fixture_lines("manifest-object-detection.jsonl")
    boxes = parse_manifest_line(text)["boxes"]
    assert [(b.label, b.left, b.top, b.width, b.height) for b in boxes] == [
        ("Echo Dot", 399, 251, 155, 101), ("Echo", 86, 65, 220, 334)]


@needs_fixtures
def test_box_marked_with_a_rekognition_error_is_dropped_and_reported():
    [text] = fixture_lines("validation-result-bounding-box-too-small.jsonl")
    entry = parse_manifest_line(text)
    assert [b.label for b in entry["boxes"]] == ["Echo"]
    assert entry["problems"] == ["attribute 'bounding-box': box 0 dropped (ERROR_BOUNDING_BOX_TOO_SMALL)"]


@needs_fixtures
@pytest.mark.parametrize("name,code", [
    ("validation-result-unsupported-use-case.jsonl", "ERROR_UNSUPPORTED_USE_CASE_TYPE"),
    ("validation-result-warning-no-annotations.jsonl", "WARNING_NO_ANNOTATIONS"),
    ("validation-result-warning-unannotated-record.jsonl", "WARNING_UNANNOTATED_RECORD"),
])
def test_documented_lines_without_a_usable_label_are_refused_with_their_codes(name, code):
    [text] = fixture_lines(name)
    with pytest.raises(ValueError, match=rf"^no label: .*{code}"):
        parse_manifest_line(text)


@needs_fixtures
def test_evaluation_manifest_predictions_are_not_taken_as_ground_truth():
    classification, detection = fixture_lines("evaluation-manifest-snapshot.jsonl")
    assert parse_manifest_line(classification)["labels"] == ("Football",)
    entry = parse_manifest_line(detection)
    assert entry["labels"] == ("Cap",) and len(entry["boxes"]) == 1  # the -evaluation boxes are left out


@needs_fixtures
def test_all_documented_manifests_load_through_an_s3_root(tmp_path):
    s3 = tmp_path / "s3"
    lines = []
    for name in sorted(FIXTURES.glob("manifest-*.jsonl")):
        for text in fixture_lines(name.name):
            ref = json.loads(text)["source-ref"]
            if ref.startswith("s3://"):
                image(s3 / ref[len("s3://"):], len(lines), fmt="PNG")
            lines.append(text)
    manifest = write_manifest(tmp_path / "all.manifest", lines)
    dataset = load_dataset(manifest, s3_root=s3)
    # 8 lines; the multi-label example's source-ref is the placeholder "S3 bucket location": skipped.
    assert len(dataset) == 7
    [problem] = dataset.problems
    assert problem.path == f"{manifest}:4" and problem.problem.startswith("image not found: ")
    by_name = {s.path.name: s for s in dataset.samples}
    assert by_name["sunrise.png"].path == Path(os.path.abspath(s3 / "bucket" / "images" / "sunrise.png"))
    assert by_name["sunrise.png"].labels == ("Sunrise",)
    assert by_name["camellia4.jpg"].labels == ("camellia", "with_leaves")
    assert len(by_name["image"].boxes) == 4  # s3://bucket/image: a key without suffix is still an image


@needs_fixtures
def test_documented_multilabel_line_loads_once_its_placeholder_is_replaced(tmp_path):
    [text] = fixture_lines("manifest-classification-multilabel.jsonl")
    entry = json.loads(text)
    entry["source-ref"] = "images/match.jpg"
    image(tmp_path / "images" / "match.jpg", fmt="JPEG")
    dataset = load_dataset(write_manifest(tmp_path / "sport.manifest", [entry]))
    assert [s.labels for s in dataset.samples] == [("football", "ball")]


# ---------------------------------------------------------------- manifest rules


def test_relative_source_refs_resolve_against_the_manifest_folder(tmp_path):
    image(tmp_path / "images" / "a.png")
    image(tmp_path / "images" / "b.png", 1)
    manifest = write_manifest(tmp_path / "train.manifest", [line("images/a.png", "cat"), line("images/b.png", "dog")])
    dataset = load_dataset(manifest)
    assert [(s.path.name, s.labels) for s in dataset.samples] == [("a.png", ("cat",)), ("b.png", ("dog",))]
    assert dataset.source == str(manifest)


def test_manifest_option_resolves_against_the_source_folder(tmp_path):
    image(tmp_path / "pictures" / "a.png")
    image(tmp_path / "pictures" / "b.png", 1)
    manifest = write_manifest(tmp_path / "labels" / "train.jsonl", [line("a.png", "cat"), line("b.png", "dog")])
    dataset = load_dataset(tmp_path / "pictures", manifest=manifest)
    assert [s.path.parent.name for s in dataset.samples] == ["pictures", "pictures"]


def test_s3_ref_without_s3_root_says_how_to_map_it(tmp_path):
    with pytest.raises(ValueError, match=r"pass --s3-root DIR"):
        resolve_source_ref("s3://bucket/a.png", tmp_path, None)


@pytest.mark.parametrize("ref", ["../outside.png", "/etc/passwd", "images/../../outside.png", "link/secret.png"])
def test_source_ref_escaping_its_root_is_refused(tmp_path, ref):
    root = tmp_path / "root"
    image(root / "images" / "inside.png")
    image(tmp_path / "outside.png")
    image(tmp_path / "elsewhere" / "secret.png")
    (root / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ValueError, match="points outside"):
        resolve_source_ref(ref, root, None)
    with pytest.raises(ValueError, match="points outside"):
        resolve_source_ref("s3://bucket/../../" + ref.lstrip("/"), root, root)


def test_absolute_source_ref_inside_the_root_is_accepted(tmp_path):
    path = image(tmp_path / "images" / "a.png")
    assert resolve_source_ref(str(path), tmp_path, None) == path


def test_s3_refs_map_to_root_bucket_key(tmp_path):
    assert resolve_source_ref("s3://my-bucket/dir/x.jpg", tmp_path / "unused", tmp_path / "s3") == \
        tmp_path / "s3" / "my-bucket" / "dir" / "x.jpg"


def test_escaping_line_is_skipped_and_listed_with_its_line_number(tmp_path):
    lines = [line(f"images/{i}.png", "cat" if i % 2 else "dog") for i in range(9)]
    for i in range(9):
        image(tmp_path / "images" / f"{i}.png", i)
    lines.append(line("../../etc/passwd", "cat"))
    manifest = write_manifest(tmp_path / "m.manifest", lines)
    dataset = load_dataset(manifest)
    assert len(dataset) == 9
    assert [p.path for p in dataset.problems] == [f"{manifest}:10"]
    assert "points outside" in dataset.problems[0].problem


def test_up_to_20_percent_bad_lines_are_skipped_and_listed(tmp_path):
    lines = []
    for i in range(8):
        image(tmp_path / f"{i}.png", i)
        lines.append(line(f"{i}.png", "cat" if i % 2 else "dog"))
    lines[2] = "{not json"
    lines.insert(5, {"source-ref": "5.png"})  # no label
    lines.append(line("0.png", "dog"))  # a second line for one image: not invalid, its labels merge
    manifest = write_manifest(tmp_path / "m.manifest", lines)  # 10 lines, 2 invalid = 20%: allowed
    dataset = load_dataset(manifest)
    assert len(dataset) == 7
    assert [(p.path.rsplit(":", 1)[1], p.problem.split(" (")[0]) for p in dataset.problems] == [
        ("3", "not valid JSON"), ("6", "no label: no attribute NAME with NAME-metadata holding a class-name or boxes"),
        ("10", "same source-ref as line 1: labels merged")]


def test_manifest_with_more_than_20_percent_bad_lines_fails(tmp_path):
    lines = []
    for i in range(7):
        image(tmp_path / f"{i}.png", i)
        lines.append(line(f"{i}.png", "cat" if i % 2 else "dog"))
    lines += ["", "[1, 2]"]  # a blank line counts as a dataset object, as Rekognition counts it
    manifest = write_manifest(tmp_path / "m.manifest", lines)
    with pytest.raises(UserError, match=r"m\.manifest: 2 of 9 lines invalid \(more than 20%, Rekognition's limit\); "
                                        r"first, line 8: blank line$"):
        load_dataset(manifest)


def test_missing_images_count_as_invalid_lines(tmp_path):
    image(tmp_path / "a.png")
    manifest = write_manifest(tmp_path / "m.manifest", [line("a.png", "cat"), line("gone.png", "dog")])
    with pytest.raises(UserError, match=r"1 of 2 lines invalid .* line 2: image not found: "):
        load_dataset(manifest)


def test_manifest_not_found_and_not_json_lines_are_user_errors(tmp_path):
    with pytest.raises(UserError, match=r"missing\.manifest: folder or manifest not found"):
        load_dataset(tmp_path / "missing.manifest")
    with pytest.raises(UserError, match=r"labels\.manifest: manifest not found"):
        load_dataset(tmp_path, manifest=tmp_path / "labels.manifest")
    csv = tmp_path / "labels.jsonl"
    csv.write_text("path,label\na.png,cat\n")
    with pytest.raises(UserError, match=r"labels\.jsonl: not a JSON lines manifest \(no line is a JSON object\)"):
        load_dataset(csv)
    empty = tmp_path / "empty.manifest"
    empty.write_text("\n")
    with pytest.raises(UserError, match=r"empty\.manifest: empty manifest"):
        load_dataset(empty)
    binary = tmp_path / "binary.manifest"
    binary.write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(UserError, match=r"not a JSON lines manifest \(not UTF-8 text\)"):
        load_dataset(binary)


@needs_fixtures
def test_pretty_printed_coco_file_is_refused_with_a_hint(tmp_path):
    with pytest.raises(UserError, match=r"coco-example\.json: not a JSON lines manifest: one JSON document .*COCO"):
        load_dataset(FIXTURES / "coco-example.json")


def test_manifest_with_a_single_label_is_a_user_error(tmp_path):
    image(tmp_path / "a.png")
    with pytest.raises(UserError, match=r"found 1 label\(s\) \(only 'cat'\)"):
        load_dataset(write_manifest(tmp_path / "m.manifest", [line("a.png", "cat")]))


def test_ground_truth_multilabel_attribute_uses_its_class_map(tmp_path):
    entry = {"source-ref": "a.png", "tags": [0, 2], "tags-metadata": {
        "class-map": {"0": "cat", "1": "dog", "2": "indoor"}, "type": "groundtruth/image-classification-multilabel"}}
    assert parse_manifest_line(json.dumps(entry))["labels"] == ("cat", "indoor")


def test_group_by_applies_to_manifest_file_names(tmp_path):
    image(tmp_path / "person1_a.png")
    image(tmp_path / "person1_b.png", 1)
    manifest = write_manifest(tmp_path / "m.jsonl", [line("person1_a.png", "cat"), line("person1_b.png", "dog")])
    assert {s.group for s in load_dataset(manifest, group_by=r"person\d+").samples} == {"person1"}


def test_images_without_label_folders_are_a_user_error_that_says_what_to_do(tmp_path):
    image(tmp_path / "a.png")
    image(tmp_path / "b.png", 1)
    with pytest.raises(UserError, match=r"found 0 label\(s\) \(none\); .* 2 images lie directly in it: put them in "
                                        r"one sub-folder per label$"):
        load_dataset(tmp_path)


# ---------------------------------------------------------------- hostile input (issue 13)


def test_a_line_that_is_not_utf8_is_one_bad_line_named_by_number(tmp_path):
    lines = []
    for i in range(6):
        image(tmp_path / f"{i}.png", i)
        lines.append(json.dumps(line(f"{i}.png", "cat" if i % 2 else "dog")).encode())
    lines.insert(3, b'{"source-ref": "caf\xe9.png"}')  # Latin-1, not UTF-8: 1 of 7 lines
    manifest = tmp_path / "m.manifest"
    manifest.write_bytes(b"\n".join(lines) + b"\n")
    dataset = load_dataset(manifest)
    assert len(dataset) == 6
    assert [(p.path.rsplit(":", 1)[1], p.problem) for p in dataset.problems] == [
        ("4", "not UTF-8 text (byte 0xe9 at column 20)")]


def test_manifest_with_more_than_20_percent_non_utf8_lines_fails_naming_the_first(tmp_path):
    image(tmp_path / "a.png")
    lines = [json.dumps(line("a.png", "cat")).encode(), b"\xff\xfe", json.dumps(line("a.png", "cat")).encode()]
    manifest = tmp_path / "m.manifest"
    manifest.write_bytes(b"\n".join(lines))
    with pytest.raises(UserError, match=r"1 of 3 lines invalid .*first, line 2: not UTF-8 text \(byte 0xff"):
        load_dataset(manifest)


def test_an_s3_key_with_dot_dot_cannot_reach_another_bucket(tmp_path):
    s3 = tmp_path / "s3"
    image(s3 / "mine" / "x.png")
    image(s3 / "other" / "x.png")
    assert resolve_source_ref("s3://mine/sub/../x.png", tmp_path, s3) == s3 / "mine" / "x.png"
    for ref in ("s3://mine/../other/x.png", "s3://mine/a/../../other/x.png", "s3://../other/x.png",
                "s3://mine//../other/x.png"):
        with pytest.raises(ValueError, match="refused|invalid S3 bucket"):
            resolve_source_ref(ref, tmp_path, s3)


def test_an_s3_key_symlinked_out_of_its_bucket_is_refused(tmp_path):
    s3 = tmp_path / "s3"
    image(s3 / "other" / "x.png")
    (s3 / "mine").mkdir()
    (s3 / "mine" / "x.png").symlink_to(s3 / "other" / "x.png")
    with pytest.raises(ValueError, match="points outside its bucket folder"):
        resolve_source_ref("s3://mine/x.png", tmp_path, s3)


def symlink_farm(tmp_path) -> Path:
    """A dataset made of links: label folders linked to a store elsewhere, and images linked one by one."""
    store, root = tmp_path / "store", tmp_path / "farm"
    for i in range(3):
        image(store / "all-cats" / f"c{i}.png", i)
        image(store / "loose" / f"d{i}.png", 10 + i)
    root.mkdir()
    (root / "cat").symlink_to(store / "all-cats")
    (root / "dog").mkdir()
    for i in range(3):
        (root / "dog" / f"d{i}.png").symlink_to(store / "loose" / f"d{i}.png")
    return root


def test_a_folder_dataset_made_of_symlinks_into_an_image_store_elsewhere_loads(tmp_path):
    root = symlink_farm(tmp_path)
    dataset = load_dataset(root)
    assert sorted(s.path.relative_to(root).as_posix() for s in dataset.samples) == [
        "cat/c0.png", "cat/c1.png", "cat/c2.png", "dog/d0.png", "dog/d1.png", "dog/d2.png"]
    assert dataset.label_counts == {"cat": 3, "dog": 3}
    assert dataset.problems == []


def test_a_symlink_farm_splits_with_each_label_in_train_val_and_test(tmp_path):
    from edgelabels.data.splits import make_split

    for i in range(3, 12):  # enough images for three non-empty parts per label
        image(tmp_path / "store" / "all-cats" / f"c{i}.png", i)
    root = symlink_farm(tmp_path)
    for i in range(3, 12):
        image(tmp_path / "store" / "loose" / f"d{i}.png", 10 + i)
        (root / "dog" / f"d{i}.png").symlink_to(tmp_path / "store" / "loose" / f"d{i}.png")
    split = make_split(load_dataset(root), test_fraction=0.25, val_fraction=0.2, seed=0)
    for part in (split.train, split.val, split.test):
        assert {s.label for s in part} == {"cat", "dog"}
    assert all(str(s.path).startswith(str(root)) for part in split.parts().values() for s in part)


@pytest.mark.slow
def test_a_tiny_run_trains_on_a_symlink_farm_and_its_split_names_the_links(tmp_path):
    from edgelabels.config import load_config
    from edgelabels.train.fit import train
    from helpers.datasets import make_stripes_dataset, tiny_config_overrides

    store = make_stripes_dataset(tmp_path / "store", per_label=8)
    farm = tmp_path / "farm"
    (farm / "vertical").mkdir(parents=True)
    (farm / "horizontal").symlink_to(store / "horizontal")  # a linked label folder
    for path in sorted((store / "vertical").iterdir()):  # and linked images
        (farm / "vertical" / path.name).symlink_to(path)
    run = train(load_config(None, tiny_config_overrides(farm, **{"train.epochs": 1, "train.fine_tune_epochs": 0})),
                tmp_path / "run")
    listed = [line.split("\t")[0] for name in ("train", "val", "test")
              for line in (run / "splits" / f"{name}.txt").read_text().splitlines()]
    assert len(listed) == 16 and all(path.startswith(str(farm)) for path in listed)
    assert (run / "model.keras").is_file()


def test_a_folder_dataset_lists_a_symlink_that_leads_nowhere_and_one_back_to_itself(tmp_path):
    root = symlink_farm(tmp_path)
    (root / "dog" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (root / "cat-again").symlink_to(root)  # a loop: the dataset inside itself
    dataset = load_dataset(root)
    assert dataset.label_counts == {"cat": 3, "dog": 3}
    listed = {Path(p.path).relative_to(root).as_posix(): p.problem for p in dataset.problems}
    assert listed["dog/gone.png"] == f"symlink to {tmp_path / 'nowhere.png'}, which does not exist: skipped"
    assert listed["cat-again"].startswith("symlink back to")


def test_a_manifest_ref_symlinked_out_of_its_s3_root_is_still_refused(tmp_path):
    store, s3 = tmp_path / "store", tmp_path / "s3"
    image(store / "x.png")
    (s3 / "bucket").mkdir(parents=True)
    (s3 / "bucket" / "x.png").symlink_to(store / "x.png")  # a folder dataset may do this; an S3 key may not
    manifest = tmp_path / "train.manifest"
    manifest.write_text(json.dumps({"source-ref": "s3://bucket/x.png", "cat": 0,
                                    "cat-metadata": {"class-name": "cat"}}) + "\n")
    with pytest.raises(UserError, match="points outside its bucket folder"):
        load_dataset(manifest, s3_root=s3)


def test_an_s3_bucket_folder_linked_out_of_the_s3_root_is_refused(tmp_path):
    image(tmp_path / "elsewhere" / "x.png")
    (tmp_path / "s3").mkdir()
    (tmp_path / "s3" / "mine").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ValueError, match="points outside"):
        resolve_source_ref("s3://mine/x.png", tmp_path, tmp_path / "s3")


def _console_line(name: str, label: str, boxes=()) -> str:
    """A Ground Truth line as the console writes one: an image label, and boxes where a person drew some."""
    line = {"source-ref": name, "label": 0 if label == "red" else 1, "label-metadata": {
        "class-name": label, "confidence": 1, "type": "groundtruth/image-classification", "human-annotated": "yes",
        "creation-date": "2026-12-06T00:00:00", "job-name": "labeling-job/edgelabels-console"}}
    if boxes:
        line["bounding-box"] = {"image_size": [{"width": 32, "height": 32, "depth": 3}], "annotations": [
            {"class_id": 0, "left": 2, "top": 2, "width": 10, "height": 10} for _ in boxes]}
        line["bounding-box-metadata"] = {"class-map": {"0": "spot"}, "objects": [{"confidence": 1} for _ in boxes],
                                         "type": "groundtruth/object-detection", "human-annotated": "yes",
                                         "creation-date": "2026-12-06T00:00:00", "job-name": "labeling-job/x"}
    return json.dumps(line)


def test_a_classification_manifest_where_two_images_also_carry_boxes_still_trains_a_classifier(tmp_path):
    from edgelabels.data.inspection import source_task

    lines = []
    for i in range(8):
        label = ("red", "green")[i % 2]
        Image.new("RGB", (32, 32), label).save(tmp_path / f"{i}.png")
        lines.append(_console_line(f"{i}.png", label, boxes=("spot",) if i < 2 else ()))
    manifest = tmp_path / "train.manifest"
    manifest.write_text("\n".join(lines) + "\n")
    assert source_task(tmp_path, manifest) == "classification"
    dataset = load_dataset(tmp_path, manifest=manifest)
    assert dataset.label_names == ["green", "red"]  # "spot", a box's label, is no image label
    assert len(dataset.samples) == 8 and all(len(s.labels) == 1 for s in dataset.samples)


def test_a_manifest_whose_every_line_has_boxes_is_still_a_detection_source(tmp_path):
    from edgelabels.data.inspection import source_task

    for i in range(4):
        Image.new("RGB", (32, 32), "red").save(tmp_path / f"{i}.png")
    manifest = tmp_path / "train.manifest"
    manifest.write_text("\n".join(_console_line(f"{i}.png", "red", boxes=("spot",)) for i in range(4)) + "\n")
    assert source_task(tmp_path, manifest) == "detection"
