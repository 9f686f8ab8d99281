"""Dataset entries: the Ground Truth JSON lines a Rekognition dataset holds, checked, filtered, counted and split.

Pure functions over lines (no HTTP, no S3, no images): the dataset operations call them and keep the results
in the store. An entry is checked by Rekognition's rules for image-level, multi-label and object-detection lines
(data/sources.py parses the line; data/detection.py's limits apply to its boxes) and its errors are listed with
it, in Rekognition's error-code words, instead of failing the dataset: "CODE: what is wrong".
Boxes are checked against the `image_size` the line declares (Rekognition scales a side above 1280 px down
before the too-small test); without one, at scale 1. A line with a source-ref and no label attribute at all is
an unlabeled entry (ListDatasetEntries' `Labeled=false`), not an error. Warnings (WARNING_NO_ANNOTATIONS for a
box attribute with no box) are not errors.
Request limits (UpdateDatasetEntries' blob, ContainsLabels' length, an entry's length) are read from botocore's
Rekognition service model, the contract, when first needed.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgelabels.data.dataset import Box, Sample
from edgelabels.data.detection import MAX_BOXES_PER_IMAGE, MIN_BOX_SIDE, is_finite, too_small
from edgelabels.data.paths import split_s3_uri
from edgelabels.data.sources import NotJSONObject, parse_manifest_line
from edgelabels.data.splits import deal_by_first_label

DISTRIBUTE_FRACTION = 0.2  # DistributeDatasetEntries moves 20% of the training entries to the test dataset
_CODE = re.compile(r"\b(?:ERROR|WARNING)_[A-Z_]+\b")


class EntriesError(ValueError):
    """A request the entry rules refuse as a whole; `code` is the Rekognition error the operations answer with."""

    code = "InvalidParameterException"


@functools.cache
def shape_limit(shape: str, bound: str = "max") -> int:
    """A shape's `max` (or `min`) in botocore's Rekognition service model, e.g. shape_limit("GroundTruthBlob")."""
    from botocore.loaders import Loader  # the contract; loaded on first use, not at import

    return int(Loader().load_service_model("rekognition", "service-2")["shapes"][shape][bound])


@dataclass(frozen=True)
class Entry:
    """One line as the dataset keeps it: its key, its compact JSON, its labels, its kept boxes and its errors."""

    source_ref: str | None
    line: str
    labels: tuple[str, ...]
    boxes: tuple[Box, ...]
    errors: tuple[str, ...]


def check_entry(line: str) -> tuple[str | None, str, list[str]]:
    """(source-ref or None, the line as compact JSON, errors) for one Ground Truth line; never raises."""
    entry = read_entry(line)
    return entry.source_ref, entry.line, list(entry.errors)


def entry_labels(line: str) -> set[str]:
    """The labels an entry declares: image-level (class-name, multi-label class ids) and its boxes' classes."""
    return set(read_entry(line).labels)


def is_labeled(line: str) -> bool:
    return bool(read_entry(line).labels)


@functools.lru_cache(maxsize=65536)  # pure: listing and counting a dataset reads every line again
def read_entry(line: str) -> Entry:
    text = line.strip()
    if len(text) > shape_limit("DatasetEntry"):
        return Entry(_source_ref_of(text), text, (), (),
                     (f"ERROR_INVALID_JSON_LINE: {len(text)} characters, more than an entry's "
                      f"{shape_limit('DatasetEntry')} (botocore DatasetEntry)",))
    try:
        document = json.loads(text)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        return Entry(None, text, (), (), (f"ERROR_INVALID_JSON_LINE: {_not_json(text)}",))
    compact = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    ref = document.get("source-ref")
    if not isinstance(ref, str) or not ref.strip():
        return Entry(None, compact, (), (), ("ERROR_MISSING_SOURCE_REF: the line has no source-ref",))
    errors = []
    try:
        split_s3_uri(ref.strip())
    except ValueError as exc:
        errors.append(f"ERROR_INVALID_SOURCE_REF_FORMAT: {exc} (expected s3://bucket/key)")
    if not any(key.endswith("-metadata") for key in document):
        return Entry(ref, compact, (), (), tuple(errors))  # an image nobody has labeled yet
    try:
        parsed = parse_manifest_line(compact, detection=True)
    except ValueError as exc:
        reason = str(exc)
        code = ("ERROR_NO_VALID_ANNOTATIONS" if "box" in reason and "dropped" in reason
                else "ERROR_MISSING_CLASS_MAP_ID" if "not in its class-map" in reason
                else "ERROR_NO_VALID_LABEL_ATTRIBUTES")
        return Entry(ref, compact, (), (), (*errors, f"{code}: {reason}"))
    errors += [_coded(problem) for problem in parsed["problems"]]
    boxes, box_errors = check_boxes(parsed["boxes"], parsed["image_size"])
    errors += box_errors
    if parsed["boxes"] and not boxes:
        errors.append("ERROR_NO_VALID_ANNOTATIONS: every box of the line was refused")
    return Entry(ref, compact, tuple(parsed["labels"]), tuple(boxes), tuple(errors))


def check_boxes(boxes, image_size: tuple[int, int] | None) -> tuple[list[Box], list[str]]:
    """(kept boxes, errors) by Rekognition's box rules, against the declared (width, height) when there is one."""
    width, height = image_size or (math.inf, math.inf)
    kept, errors = [], []
    for index, box in enumerate(boxes):
        where = f"box {index} ({box.label}) [{box.left:g}, {box.top:g}, {box.width:g}, {box.height:g}]"
        if not is_finite(box) or box.left < 0 or box.top < 0 or \
                box.left + box.width > width or box.top + box.height > height:
            size = f" {image_size[0]}x{image_size[1]}" if image_size else ""
            errors.append(f"ERROR_INVALID_BOUNDING_BOX: {where} is not inside the{size} image")
            continue
        at = too_small(box, max(image_size) if image_size else None)
        if at is not None:
            errors.append(f"ERROR_BOUNDING_BOX_TOO_SMALL: {where}: width and height must be above "
                          f"{MIN_BOX_SIDE:g} px{at}")
            continue
        kept.append(box)
    if len(kept) > MAX_BOXES_PER_IMAGE:
        errors.append(f"ERROR_TOO_MANY_BOUNDING_BOXES: {len(kept)} boxes, more than {MAX_BOXES_PER_IMAGE} per image")
    return kept, errors


def _coded(problem: str) -> str:
    """A parser problem in Rekognition's words: a code it already carries, else an invalid box."""
    found = _CODE.search(problem)
    return f"{found.group(0) if found else 'ERROR_INVALID_BOUNDING_BOX'}: {problem}"


def _not_json(text: str) -> str:
    try:
        parse_manifest_line(text)
    except NotJSONObject as exc:
        return str(exc)
    except ValueError:
        pass
    return "not a JSON object"


def _source_ref_of(text: str) -> str | None:
    try:
        ref = json.loads(text).get("source-ref")
    except (ValueError, AttributeError):
        return None
    return ref if isinstance(ref, str) and ref.strip() else None


# ---------------------------------------------------------------- what ListDatasetEntries, DescribeDataset and
# ListDatasetLabels answer. An item is a line, or a stored entry {"line", "errors", ...} as Store.entries gives.


def _line(item) -> str:
    return item["line"] if isinstance(item, dict) else item


def _errors(item) -> list:
    return list(item["errors"]) if isinstance(item, dict) else list(read_entry(item).errors)


def filter_entries(lines, contains_labels=None, labeled=None, source_ref_contains=None, has_errors=None) -> list:
    """ListDatasetEntries' filters, all of those given at once; the items kept, in order.

    contains_labels: an entry with one or more of them (1 to 10 labels, botocore's DatasetLabels);
    labeled: True for entries with a label, False for those without; source_ref_contains: a substring of the
    source-ref (botocore's QueryString: 1-2048 characters, not only blanks); has_errors: entries with / without."""
    if contains_labels is not None:
        wanted = set(contains_labels)
        if not shape_limit("DatasetLabels", "min") <= len(contains_labels) <= shape_limit("DatasetLabels"):
            raise EntriesError(f"ContainsLabels holds {len(contains_labels)} labels; it takes "
                               f"{shape_limit('DatasetLabels', 'min')} to {shape_limit('DatasetLabels')}")
    if source_ref_contains is not None and not (
            shape_limit("QueryString", "min") <= len(source_ref_contains) <= shape_limit("QueryString")
            and source_ref_contains.strip()):
        raise EntriesError(f"SourceRefContains must be 1-{shape_limit('QueryString')} characters, not only blanks")
    kept = []
    for item in lines:
        entry = read_entry(_line(item))
        if contains_labels is not None and not wanted & set(entry.labels):
            continue
        if labeled is not None and bool(entry.labels) != labeled:
            continue
        if source_ref_contains is not None and source_ref_contains not in (entry.source_ref or ""):
            continue
        if has_errors is not None and bool(_errors(item)) != has_errors:
            continue
        kept.append(item)
    return kept


def dataset_stats(entries) -> dict:
    """DescribeDataset's DatasetStats of these entries."""
    read = [(read_entry(_line(item)), _errors(item)) for item in entries]
    return {"LabeledEntries": sum(1 for entry, _ in read if entry.labels),
            "TotalEntries": len(read),
            "TotalLabels": len({label for entry, _ in read for label in entry.labels}),
            "ErrorEntries": sum(1 for _, errors in read if errors)}


def dataset_labels(entries) -> list[dict]:
    """ListDatasetLabels' DatasetLabelDescriptions, by label name: entries with the label, and its boxes."""
    entry_count: dict[str, int] = {}
    box_count: dict[str, int] = {}
    for item in entries:
        entry = read_entry(_line(item))
        for label in entry.labels:
            entry_count[label] = entry_count.get(label, 0) + 1
        for box in entry.boxes:
            box_count[box.label] = box_count.get(box.label, 0) + 1
    return [{"LabelName": name,
             "LabelStats": {"EntryCount": entry_count[name], "BoundingBoxCount": box_count.get(name, 0)}}
            for name in sorted(entry_count)]


# ---------------------------------------------------------------- DistributeDatasetEntries, UpdateDatasetEntries


def distribute(train_lines, seed: int = 0) -> tuple[list, list]:
    """(kept in train, moved to test): 20% of the entries, stratified by first label (data/splits.py's dealer).

    Entries without a label are a stratum of their own. The same entries give the same answer for a seed,
    whatever their order; each side keeps the input order."""
    items = list(train_lines)
    refs = [read_entry(_line(item)).source_ref or _line(item) for item in items]
    order = sorted(range(len(items)), key=lambda i: refs[i])
    # One block per entry (Rekognition knows no groups); a sample's path is the entry's index, read back below.
    blocks = [[Sample(Path(str(i)), read_entry(_line(items[i])).labels, refs[i])] for i in order]
    _, held = deal_by_first_label(blocks, DISTRIBUTE_FRACTION, np.random.default_rng(seed))
    moved = {int(str(block[0].path)) for block in held}
    return ([item for i, item in enumerate(items) if i not in moved],
            [item for i, item in enumerate(items) if i in moved])


def decode_update(changes_b64: bytes | str) -> list[str]:
    """UpdateDatasetEntries' Changes.GroundTruth (base64 of JSON lines) -> its non-blank lines.

    Refused (EntriesError) past botocore's GroundTruthBlob max, before decoding a blob that large, or when it
    is not base64 of UTF-8 text."""
    most = shape_limit("GroundTruthBlob")
    raw = (changes_b64.encode("ascii", "replace") if isinstance(changes_b64, str) else bytes(changes_b64)).strip()
    if len(raw) > 4 * math.ceil(most / 3):  # the base64 of `most` bytes
        raise EntriesError(f"Changes.GroundTruth is larger than {most} bytes (botocore GroundTruthBlob max)")
    try:
        blob = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise EntriesError(f"Changes.GroundTruth is not base64 ({exc})") from None
    if not shape_limit("GroundTruthBlob", "min") <= len(blob) <= most:
        raise EntriesError(f"Changes.GroundTruth holds {len(blob)} bytes; it takes "
                           f"{shape_limit('GroundTruthBlob', 'min')} to {most} (botocore GroundTruthBlob)")
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise EntriesError(f"Changes.GroundTruth is not UTF-8 text (byte {exc.start})") from None
    return [line for line in text.splitlines() if line.strip()]
