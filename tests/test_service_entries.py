"""Dataset entries (issue 27): Ground Truth lines checked by Rekognition's rules, ListDatasetEntries' filters,
DatasetStats, ListDatasetLabels, DistributeDatasetEntries' 20% and UpdateDatasetEntries' blob.

Shapes and limits are read from botocore's Rekognition service model (the contract), never restated here."""

from __future__ import annotations

import base64
import json

import pytest
from botocore.loaders import Loader

from edgelabels.service.entries import (
    EntriesError, check_entry, dataset_labels, dataset_stats, decode_update, distribute, entry_labels,
    filter_entries, is_labeled,
)


@pytest.fixture(scope="module")
def shapes():
    return Loader().load_service_model("rekognition", "service-2")["shapes"]


def classification(ref: str, label: str) -> str:
    return json.dumps({"source-ref": ref, "animal": 1, "animal-metadata": {
        "confidence": 1, "class-name": label, "human-annotated": "yes",
        "creation-date": "2026-12-05T00:00:00", "type": "groundtruth/image-classification"}})


def multilabel(ref: str, labels: list[str]) -> str:
    return json.dumps({"source-ref": ref, "tags": list(range(len(labels))), "tags-metadata": {
        "class-map": {str(i): name for i, name in enumerate(labels)}, "confidence-map": {},
        "human-annotated": "yes", "type": "groundtruth/image-classification-multilabel"}})


def detection(ref: str, boxes: list[tuple], size=(640, 480)) -> str:
    names = sorted({b[0] for b in boxes}) or ["bee"]
    ids = {name: i for i, name in enumerate(names)}
    return json.dumps({"source-ref": ref, "bounding-box": {
        "image_size": [{"width": size[0], "height": size[1], "depth": 3}],
        "annotations": [{"class_id": ids[n], "left": x, "top": y, "width": w, "height": h} for n, x, y, w, h in boxes]},
        "bounding-box-metadata": {"objects": [{"confidence": 1}] * len(boxes),
                                  "class-map": {str(i): n for n, i in ids.items()},
                                  "type": "groundtruth/object-detection", "human-annotated": "yes"}})


CAT = classification("s3://bucket/cat1.jpg", "cat")
MULTI = multilabel("s3://bucket/street.jpg", ["car", "tree"])
BEES = detection("s3://bucket/hive/bees.jpg", [("bee", 10, 20, 30, 40), ("queen", 100, 100, 50, 50)])
TINY = detection("s3://bucket/hive/tiny.jpg", [("bee", 10, 10, 1, 1), ("bee", 50, 50, 20, 20)])
CROWD = detection("s3://bucket/hive/crowd.jpg", [("bee", 5 * i, 5, 4, 4) for i in range(51)])
NOT_JSON = '{"source-ref": "s3://bucket/broken.jpg", '
NO_REF = json.dumps({"animal": 1, "animal-metadata": {"class-name": "cat", "type": "groundtruth/image-classification"}})
UNLABELED = json.dumps({"source-ref": "s3://bucket/new.jpg"})
ALL = [CAT, MULTI, BEES, TINY, CROWD, NOT_JSON, NO_REF, UNLABELED]


def codes(errors: list[str]) -> list[str]:
    return [e.split(":", 1)[0] for e in errors]


# ---------------------------------------------------------------- one line


def test_classification_line_is_valid_and_labeled():
    ref, line, errors = check_entry(CAT + "\n")
    assert (ref, errors) == ("s3://bucket/cat1.jpg", [])
    assert json.loads(line) == json.loads(CAT) and "\n" not in line and line.startswith("{")
    assert entry_labels(CAT) == {"cat"} and is_labeled(CAT)


def test_multilabel_line_has_every_class_of_its_class_map():
    assert check_entry(MULTI)[2] == []
    assert entry_labels(MULTI) == {"car", "tree"}


def test_detection_line_takes_the_labels_of_its_boxes():
    assert check_entry(BEES) == ("s3://bucket/hive/bees.jpg", check_entry(BEES)[1], [])
    assert entry_labels(BEES) == {"bee", "queen"}


def test_too_small_box_is_an_error_on_its_entry_and_the_other_box_stays():
    ref, _, errors = check_entry(TINY)
    assert ref == "s3://bucket/hive/tiny.jpg" and codes(errors) == ["ERROR_BOUNDING_BOX_TOO_SMALL"]
    assert dataset_labels([TINY])[0]["LabelStats"] == {"EntryCount": 1, "BoundingBoxCount": 1}


def test_box_size_is_judged_once_a_large_image_is_scaled_to_1280():
    # 2x2 px is kept on a 640x480 image but is 0.85 px once a 3000 px image is scaled to 1280 (AWS's example).
    assert check_entry(detection("s3://b/small.jpg", [("bee", 5, 5, 2, 2)]))[2] == []
    errors = check_entry(detection("s3://b/large.jpg", [("bee", 5, 5, 2, 2), ("bee", 50, 50, 90, 90)],
                                   size=(3000, 3000)))[2]
    assert codes(errors) == ["ERROR_BOUNDING_BOX_TOO_SMALL"] and "1280" in errors[0]


def test_51_boxes_are_too_many():
    assert codes(check_entry(CROWD)[2]) == ["ERROR_TOO_MANY_BOUNDING_BOXES"]
    assert check_entry(detection("s3://b/fifty.jpg", [("bee", 5 * i, 5, 4, 4) for i in range(50)]))[2] == []


def test_box_outside_the_declared_image_and_a_line_of_only_bad_boxes():
    assert codes(check_entry(detection("s3://b/out.jpg", [("bee", -3, 5, 20, 20), ("bee", 9, 9, 20, 20)]))[2]) \
        == ["ERROR_INVALID_BOUNDING_BOX"]
    assert codes(check_entry(detection("s3://b/none.jpg", [("bee", 5, 5, 0, 20)]))[2]) == \
        ["ERROR_NO_VALID_ANNOTATIONS"]


def test_line_that_is_not_json_is_listed_with_an_error_not_raised():
    ref, line, errors = check_entry(NOT_JSON)
    assert ref is None and line == NOT_JSON.strip() and codes(errors) == ["ERROR_INVALID_JSON_LINE"]
    assert codes(check_entry("[1, 2]")[2]) == ["ERROR_INVALID_JSON_LINE"]
    assert entry_labels(NOT_JSON) == set() and not is_labeled(NOT_JSON)


def test_line_without_source_ref():
    ref, _, errors = check_entry(NO_REF)
    assert ref is None and codes(errors) == ["ERROR_MISSING_SOURCE_REF"]


def test_source_ref_must_be_an_s3_uri():
    assert codes(check_entry(classification("https://example.com/cat.jpg", "cat"))[2]) == \
        ["ERROR_INVALID_SOURCE_REF_FORMAT"]


def test_line_with_a_broken_label_attribute_has_no_valid_label_attribute():
    line = json.dumps({"source-ref": "s3://b/x.jpg", "animal": 1,
                       "animal-metadata": {"type": "groundtruth/image-classification"}})
    assert codes(check_entry(line)[2]) == ["ERROR_NO_VALID_LABEL_ATTRIBUTES"]


def test_box_whose_class_id_is_not_in_the_class_map():
    line = json.loads(BEES)
    line["bounding-box"]["annotations"][0]["class_id"] = 7
    assert codes(check_entry(json.dumps(line))[2]) == ["ERROR_MISSING_CLASS_MAP_ID"]


def test_line_with_only_a_source_ref_is_an_unlabeled_entry_without_error():
    assert check_entry(UNLABELED)[2] == [] and not is_labeled(UNLABELED)


def test_entry_longer_than_botocore_allows_is_an_error(shapes):
    long = json.dumps({"source-ref": "s3://b/long.jpg", "note": "x" * shapes["DatasetEntry"]["max"]})
    ref, _, errors = check_entry(long)
    assert ref == "s3://b/long.jpg" and codes(errors) == ["ERROR_INVALID_JSON_LINE"]


# ---------------------------------------------------------------- ListDatasetEntries' filters


def test_contains_labels_keeps_entries_with_any_of_them():
    assert filter_entries(ALL, contains_labels=["queen", "car"]) == [MULTI, BEES]
    assert filter_entries(ALL, contains_labels=["cat"]) == [CAT]


def test_labeled_true_and_false_split_the_entries():
    assert filter_entries(ALL, labeled=True) == [CAT, MULTI, BEES, TINY, CROWD]
    assert filter_entries(ALL, labeled=False) == [NOT_JSON, NO_REF, UNLABELED]


def test_source_ref_contains_is_a_substring_of_the_source_ref():
    assert filter_entries(ALL, source_ref_contains="hive/") == [BEES, TINY, CROWD]


def test_has_errors_reads_stored_errors_or_checks_the_line():
    assert filter_entries(ALL, has_errors=True) == [TINY, CROWD, NOT_JSON, NO_REF]
    assert filter_entries(ALL, has_errors=False) == [CAT, MULTI, BEES, UNLABELED]
    stored = [{"source_ref": "s3://bucket/cat1.jpg", "line": CAT, "errors": ["ERROR_INVALID_IMAGE: not a JPEG"]}]
    assert filter_entries(stored, has_errors=True) == stored


def test_filters_combine():
    assert filter_entries(ALL, contains_labels=["bee"], has_errors=False, source_ref_contains="hive") == [BEES]
    assert filter_entries(ALL) == ALL


def test_filters_past_botocore_limits_are_refused(shapes):
    too_many = [f"label{i}" for i in range(shapes["DatasetLabels"]["max"] + 1)]
    with pytest.raises(EntriesError):
        filter_entries(ALL, contains_labels=too_many)
    with pytest.raises(EntriesError):
        filter_entries(ALL, source_ref_contains=" ")


# ---------------------------------------------------------------- DatasetStats and ListDatasetLabels


def members_match(value: dict, shape: str, shapes: dict) -> None:
    """Every member of the botocore shape is present with the type it names (integers for UInteger)."""
    spec = shapes[shape]
    assert set(value) == set(spec["members"])
    for name, member in spec["members"].items():
        inner = shapes[member["shape"]]
        if inner["type"] == "structure":
            members_match(value[name], member["shape"], shapes)
        elif inner["type"] == "integer":
            assert isinstance(value[name], int) and value[name] >= inner.get("min", 0)
        elif inner["type"] == "string":
            assert isinstance(value[name], str) and len(value[name]) >= inner.get("min", 0)


def test_dataset_stats_has_the_datasetstats_shape(shapes):
    stats = dataset_stats(ALL)
    members_match(stats, "DatasetStats", shapes)
    # labels: cat, car, tree, bee, queen
    assert stats == {"LabeledEntries": 5, "TotalEntries": 8, "TotalLabels": 5, "ErrorEntries": 4}
    assert dataset_stats([]) == {"LabeledEntries": 0, "TotalEntries": 0, "TotalLabels": 0, "ErrorEntries": 0}


def test_dataset_labels_have_the_dataset_label_description_shape(shapes):
    labels = dataset_labels(ALL)
    for description in labels:
        members_match(description, "DatasetLabelDescription", shapes)
    by_name = {d["LabelName"]: d["LabelStats"] for d in labels}
    assert list(by_name) == ["bee", "car", "cat", "queen", "tree"]
    # bee: 1 box on bees.jpg, the one kept on tiny.jpg, 51 on crowd.jpg
    assert by_name["bee"] == {"EntryCount": 3, "BoundingBoxCount": 53}
    assert by_name["cat"] == {"EntryCount": 1, "BoundingBoxCount": 0}


# ---------------------------------------------------------------- DistributeDatasetEntries


def training_lines(n_per_label: int = 25) -> list[str]:
    return [classification(f"s3://bucket/{label}/{i:03d}.jpg", label)
            for label in ("cat", "dog", "fox") for i in range(n_per_label)]


def test_distribute_moves_20_percent_of_each_label():
    lines = training_lines()
    kept, moved = distribute(lines, seed=0)
    assert sorted(kept + moved) == sorted(lines) and not set(kept) & set(moved)
    assert len(moved) == 15  # 20% of 75
    for label in ("cat", "dog", "fox"):
        assert len(filter_entries(moved, contains_labels=[label])) == 5


def test_distribute_is_deterministic_for_a_seed_whatever_the_order():
    lines = training_lines()
    assert distribute(lines, seed=3) == distribute(lines, seed=3)
    assert sorted(distribute(list(reversed(lines)), seed=3)[1]) == sorted(distribute(lines, seed=3)[1])
    assert distribute(lines, seed=3)[1] != distribute(lines, seed=4)[1]


def test_distribute_takes_stored_entries_too():
    stored = [{"source_ref": json.loads(line)["source-ref"], "line": line, "errors": []} for line in training_lines(5)]
    kept, moved = distribute(stored)
    assert len(moved) == 3 and all(isinstance(item, dict) for item in kept + moved)


# ---------------------------------------------------------------- UpdateDatasetEntries' blob


def test_decode_update_gives_the_lines():
    blob = base64.b64encode(f"{CAT}\n\n{BEES}\n".encode())
    assert decode_update(blob) == [CAT, BEES]
    assert decode_update(blob.decode() + "\n") == [CAT, BEES]


def test_blob_past_botocore_max_is_refused(shapes):
    most = shapes["GroundTruthBlob"]["max"]
    line = CAT + "\n"
    text = (line * (most // len(line) + 1)).encode()
    assert len(text) > most
    with pytest.raises(EntriesError, match=str(most)):
        decode_update(base64.b64encode(text))
    fits = (line * (most // len(line))).encode()
    assert len(decode_update(base64.b64encode(fits))) == most // len(line)


def test_blob_that_is_not_base64_or_empty_is_refused():
    for bad in (b"not base64!", b"", base64.b64encode(b"\xff\xfe")):
        with pytest.raises(EntriesError):
            decode_update(bad)
