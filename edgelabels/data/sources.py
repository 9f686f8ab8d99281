"""Where images and labels come in: a folder per label, or a SageMaker Ground Truth manifest (JSON lines).

Folder rule (Rekognition's "Automatically attach labels to images based on the folder"): only the direct
child folders of SOURCE become labels; images in deeper folders take the label of their top-level child
folder; images directly in SOURCE are unlabelled. Hidden files and folders are ignored, and so are files
whose suffix is not .png/.jpg/.jpeg (other image formats are listed as problems, since Rekognition
refuses them).

Manifest rule (Rekognition's validation): label attributes are found through the `NAME` / `NAME-metadata`
pairing, never by a fixed key. Invalid lines are skipped and listed; more than 20% invalid lines (blank
lines count, as Rekognition counts them) fails the whole manifest. Read for detection (`detection=True`,
data/detection.py), a line whose box attribute holds no box is an image without objects (a negative, where
Rekognition would ignore the line), while a line whose every box was refused stays invalid (Rekognition's
ERROR_NO_VALID_ANNOTATIONS), and a declared `image_size` that differs from the image is noted.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

from edgelabels.data.boxes import displayed_size
from edgelabels.data.dataset import Box, Dataset, Problem, Sample
from edgelabels.data.images import dangling_image_link, is_image_path
from edgelabels.data.paths import Outside, inside, s3_object, split_s3_uri
from edgelabels.errors import UserError

MANIFEST_SUFFIXES = (".manifest", ".jsonl", ".json", ".ndjson")
MAX_INVALID_FRACTION = 0.2  # Rekognition fails an import with more than 20% invalid lines
# Image formats Rekognition refuses: worth telling the user about instead of silently ignoring.
OTHER_IMAGE_SUFFIXES = (".gif", ".bmp", ".tif", ".tiff", ".webp", ".heic", ".heif")
CLASSIFICATION = "groundtruth/image-classification"
MULTILABEL = "groundtruth/image-classification-multilabel"
DETECTION = "groundtruth/object-detection"
# Model output written into evaluation manifests: predictions, not ground truth.
EVALUATION_DETAILS = "rekognition-custom-labels-evaluation-details"


def load_dataset(source, *, manifest=None, s3_root=None, group_by: str | None = None) -> Dataset:
    """Read a folder per label or a manifest into a Dataset; UserError when it cannot be used for classification.

    With `manifest`, SOURCE is the folder its relative source-refs point into (and that they may not escape);
    SOURCE may then be None (the manifest's own folder is used).
    """
    pattern = compile_group_by(group_by)
    source = source or None  # a config's empty string means "not given", never the current folder
    if manifest:
        manifest = Path(manifest)
        root = Path(source) if source is not None else None
        if root is not None and not root.is_dir():
            raise UserError(f"{root}: folder not found (with --manifest, SOURCE is the folder its images are in)")
        dataset = read_manifest(manifest, root=root, s3_root=s3_root, pattern=pattern)
    else:
        if source is None:
            raise UserError("no dataset given: pass a folder per label or a manifest file")
        path = Path(source)
        if path.is_dir():
            dataset = read_folder(path, pattern)
        elif path.is_file():
            if path.suffix.lower() not in MANIFEST_SUFFIXES:
                raise UserError(f"{path}: not a folder or a manifest ({', '.join(MANIFEST_SUFFIXES)})")
            dataset = read_manifest(path, root=None, s3_root=s3_root, pattern=pattern)
        else:
            raise UserError(f"{path}: folder or manifest not found")
    check_classification(dataset)
    return dataset


def compile_group_by(group_by: str | None) -> re.Pattern | None:
    if not group_by:
        return None
    try:
        return re.compile(group_by)
    except re.error as exc:
        raise UserError(f"--group-by {group_by!r}: invalid regular expression ({exc})") from None


def group_of(path: Path, pattern: re.Pattern | None) -> str:
    """The group (e.g. patient id) from the start of the file name; no match: the image is its own group."""
    match = pattern.match(path.name) if pattern else None
    if match is None:
        return str(path)
    return match.group(1) if pattern.groups and match.group(1) is not None else match.group(0)


def check_classification(dataset: Dataset) -> None:
    """Rekognition's limits for a classification dataset: at least 2 labels, at least 1 image per label."""
    counts = dataset.label_counts
    if len(counts) < 2:
        found = f"only {next(iter(counts))!r}" if counts else "none"
        loose = (f"; {len(dataset.unlabelled)} images lie directly in it: put them in one sub-folder per label"
                 if dataset.unlabelled else "")
        raise UserError(f"{dataset.source}: found {len(counts)} label(s) ({found}); "
                        f"classification needs >= 2 labels with >= 1 image each{loose}")


# ---------------------------------------------------------------- folder per label


def read_folder(root: Path, pattern: re.Pattern | None) -> Dataset:
    root = Path(os.path.abspath(root))
    samples: list[Sample] = []
    problems: list[Problem] = []
    unlabelled: list[Path] = []
    for path in walk_files(root, problems):
        relative = path.relative_to(root)
        if not is_image_path(path):
            if path.suffix.lower() in OTHER_IMAGE_SUFFIXES:
                problems.append(Problem(str(path), f"{path.suffix.lower()[1:].upper()} is not accepted "
                                                   "(PNG or JPEG only, as Rekognition): skipped"))
            continue
        if len(relative.parts) == 1:
            unlabelled.append(path)
        else:
            samples.append(Sample(path, (relative.parts[0],), group_of(path, pattern)))
    dataset = Dataset(samples, str(root), problems, unlabelled)
    looped = {problem.path for problem in problems}  # a label folder that is a symlink back to the dataset
    empty = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                   and p.name not in dataset.label_counts and str(p) not in looped)
    if empty:
        raise UserError(f"{root / empty[0]}: label folder has no PNG/JPEG image "
                        "(classification needs >= 2 labels with >= 1 image each)")
    return dataset


def walk_files(root: Path, problems: list[Problem]):
    """Every non-hidden file under root, sorted, following symlinks wherever they lead (no loops).

    A folder given on the command line is the user's own filesystem: a label folder or an image may be a symlink
    into an image store elsewhere (a "symlink farm"), as Keras' image_dataset_from_directory, torchvision's
    ImageFolder and Ultralytics accept. Names that come from someone else (a manifest's source-ref, an S3 key)
    keep data/paths.py's rule instead. A symlink named like an image that leads nowhere is listed.
    """
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        ancestors = Path(folder).relative_to(root).parents
        if any(os.path.realpath(root / above) == real for above in ancestors):
            problems.append(Problem(folder, f"symlink back to {real}, a folder above it: not read again"))
            dirs[:] = []
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(folder) / name
            if name.startswith("."):
                continue
            dangling = dangling_image_link(path)
            if dangling:
                problems.append(Problem(str(path), dangling))
                continue
            yield path


# ---------------------------------------------------------------- Ground Truth manifest


def read_manifest(manifest: Path, *, root: Path | None, s3_root, pattern: re.Pattern | None,
                  detection: bool = False) -> Dataset:
    manifest = Path(manifest)
    if not manifest.is_file():
        raise UserError(f"{manifest}: manifest not found")
    try:
        raw = manifest.read_bytes()
    except OSError as exc:
        raise UserError(f"{manifest}: cannot read manifest ({exc.strerror or exc})") from None
    # JSON lines are separated by \n only; each line is decoded on its own, so one line that is not UTF-8
    # is one invalid line (counted under the 20% rule), not a refused manifest.
    lines = [_decode_line(line) for line in raw.split(b"\n")]
    text = "\n".join(line if isinstance(line, str) else "" for line in lines)
    while lines and isinstance(lines[-1], str) and not lines[-1].strip():
        lines.pop()  # the newline after the last line is not a dataset object
    if not lines:
        raise UserError(f"{manifest}: empty manifest")
    if all(isinstance(line, UnicodeDecodeError) or not line.strip() for line in lines):
        raise UserError(f"{manifest}: not a JSON lines manifest (not UTF-8 text)")
    _refuse_single_document(manifest, text, lines)
    root = Path(os.path.abspath(root if root is not None else manifest.parent))
    s3_root = Path(os.path.abspath(s3_root)) if s3_root else None

    samples: dict[Path, Sample] = {}
    first_line: dict[Path, int] = {}
    problems: list[Problem] = []
    invalid: list[Problem] = []
    parsed_any = False
    for number, line in enumerate(lines, start=1):
        where = f"{manifest}:{number}"
        try:
            if isinstance(line, UnicodeDecodeError):
                raise NotJSONObject(f"not UTF-8 text (byte 0x{line.object[line.start]:02x} at column {line.start + 1})")
            entry = parse_manifest_line(line, detection=detection)
            path = resolve_source_ref(entry["source-ref"], root, s3_root)
            if not path.is_file():
                raise ValueError(f"image not found: {path}")
            if detection and entry["image_size"] is not None:
                entry["problems"].extend(size_mismatch(path, entry["image_size"], "image_size {} in the manifest"))
        except ValueError as exc:
            parsed_any |= not isinstance(exc, NotJSONObject)
            invalid.append(Problem(where, str(exc)))
            problems.append(invalid[-1])
            continue
        parsed_any = True
        problems.extend(Problem(where, p) for p in entry["problems"])
        sample = Sample(path, entry["labels"], group_of(path, pattern), entry["boxes"])
        if path in samples:
            # Several lines for one image (as UpdateDatasetEntries allows): their labels add up.
            old = samples[path]
            labels = old.labels + tuple(x for x in sample.labels if x not in old.labels)
            samples[path] = Sample(path, labels, old.group, old.boxes + sample.boxes)
            problems.append(Problem(where, f"same source-ref as line {first_line[path]}: labels merged"))
        else:
            samples[path] = sample
            first_line[path] = number
    if not parsed_any:
        raise UserError(f"{manifest}: not a JSON lines manifest (no line is a JSON object)")
    if len(invalid) > MAX_INVALID_FRACTION * len(lines):
        first = invalid[0]
        raise UserError(f"{manifest}: {len(invalid)} of {len(lines)} lines invalid (more than 20%, Rekognition's "
                        f"limit); first, line {first.path.rsplit(':', 1)[1]}: {first.problem}")
    return Dataset(list(samples.values()), str(manifest), problems, [])


def size_mismatch(path: Path, declared, said: str) -> list[str]:
    """A note when a declared (width, height) is not the image's displayed size (boxes are kept as written).

    `said` names where the size was declared, "{}" standing for it: "image_size {} in the manifest".
    """
    try:
        actual = displayed_size(path)
    except Exception:  # noqa: BLE001  Pillow raises many kinds; an image that does not open is reported when decoded
        return []
    if tuple(actual) == tuple(declared):
        return []
    return [(f"{said.replace('{}', f'{declared[0]}x{declared[1]}', 1)}, but the image is {actual[0]}x{actual[1]} "
             "as displayed: boxes kept in pixels as written, checked against the image")]


def _decode_line(line: bytes) -> str | UnicodeDecodeError:
    try:
        return line.removesuffix(b"\r").decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc


def _refuse_single_document(manifest: Path, text: str, lines: list) -> None:
    """A pretty-printed JSON file (a COCO file, one big object) is not JSON lines: say so instead of 100% bad lines."""
    if len(lines) < 2 or not isinstance(lines[0], str):
        return
    try:
        json.loads(lines[0])
        return
    except ValueError:
        pass
    try:
        document = json.loads(text)
    except ValueError:
        return
    hint = " (a COCO file? convert it to a Ground Truth manifest)" if isinstance(document, dict) and \
        "annotations" in document and "images" in document else ""
    raise UserError(f"{manifest}: not a JSON lines manifest: one JSON document over {len(lines)} lines{hint}")


class NotJSONObject(ValueError):
    """A line that is not a JSON object at all (as opposed to a JSON object Rekognition would refuse)."""


def parse_manifest_line(line: str, *, detection: bool = False) -> dict:
    """One Ground Truth line -> {"source-ref", "labels", "boxes", "problems", "image_size"}; ValueError if invalid.

    `image_size` is (width, height) declared by a box attribute, or None. With `detection`, a line whose box
    attribute has no box at all returns labels () (an image without objects) instead of failing.
    """
    if not line.strip():
        raise NotJSONObject("blank line")
    try:
        entry = json.loads(line)
    except ValueError as exc:
        raise NotJSONObject(f"not valid JSON ({exc})") from None
    if not isinstance(entry, dict):
        raise NotJSONObject(f"not a JSON object (a {type(entry).__name__})")
    ref = entry.get("source-ref")
    if not isinstance(ref, str) or not ref.strip():
        raise ValueError("no source-ref")
    labels: list[str] = []
    boxes: list[Box] = []
    problems: list[str] = []
    refused: list[str] = []
    box_attributes = 0
    image_size = None
    for name, value in entry.items():
        metadata = entry.get(f"{name}-metadata")
        if name == "source-ref" or not isinstance(metadata, dict):
            continue
        if _is_prediction(metadata):
            continue
        try:
            found_labels, found_boxes, found_problems = _read_attribute(name, value, metadata)
        except ValueError as exc:
            refused.append(str(exc))
            continue
        labels.extend(x for x in found_labels if x not in labels)
        boxes.extend(found_boxes)
        problems.extend(found_problems)
        if isinstance(value, dict) and "annotations" in value:
            box_attributes += 1
            image_size = image_size or _image_size(value.get("image_size"))
    # Read for a classifier, a line's boxes name its objects, not the image: their labels stand in for image-level
    # labels only on a line that has none (a classification dataset where a few images also carry boxes).
    if detection or not labels:
        for box in boxes:
            if box.label not in labels:
                labels.append(box.label)
    if detection and not labels and box_attributes and not problems and not refused:
        # An image annotated with no box: data/detection.py keeps it as a negative and says so.
        return {"source-ref": ref, "labels": (), "boxes": (), "problems": problems, "image_size": image_size}
    if detection and not labels:
        refused += problems  # every box was refused: Rekognition's ERROR_NO_VALID_ANNOTATIONS
    if not labels:
        reasons = refused + _codes(entry)
        detail = f" ({'; '.join(reasons)})" if reasons else ""
        raise ValueError(f"no label: no attribute NAME with NAME-metadata holding a class-name or boxes{detail}")
    return {"source-ref": ref, "labels": tuple(labels), "boxes": tuple(boxes), "problems": problems,
            "image_size": image_size}


def _image_size(value) -> tuple[int, int] | None:
    """(width, height) of Ground Truth's `image_size`: a one-element list, or an object (the COCO-derived line)."""
    if isinstance(value, list) and value:
        value = value[0]
    if not isinstance(value, dict):
        return None
    try:
        width, height = int(value["width"]), int(value["height"])
    except (KeyError, TypeError, ValueError):
        return None
    return (width, height) if width > 0 and height > 0 else None


def _is_prediction(metadata: dict) -> bool:
    objects = metadata.get("objects")
    return EVALUATION_DETAILS in metadata or (
        isinstance(objects, list) and any(isinstance(o, dict) and EVALUATION_DETAILS in o for o in objects))


def _codes(obj: dict) -> list[str]:
    """Rekognition's own validation codes left in a line (`errors`, `cl-errors`, `warnings`)."""
    codes = []
    for key in ("errors", "cl-errors", "warnings"):
        for item in obj.get(key) or []:
            if isinstance(item, dict) and item.get("code"):
                codes.append(str(item["code"]))
    return codes


def _read_attribute(name: str, value, metadata: dict) -> tuple[list[str], list[Box], list[str]]:
    kind = metadata.get("type")
    if kind is None:  # not written by every tool: infer it from the shape
        kind = CLASSIFICATION if "class-name" in metadata else DETECTION if isinstance(value, dict) else None
    if kind == CLASSIFICATION:
        label = metadata.get("class-name")
        if not isinstance(label, str) or not label.strip():
            raise ValueError(f"attribute {name!r}: no class-name in its metadata")
        return [label], [], []
    class_map = metadata.get("class-map")
    if kind == MULTILABEL:
        if not isinstance(value, list) or not isinstance(class_map, dict):
            raise ValueError(f"attribute {name!r}: multi-label needs a list of class ids and a class-map")
        return [_class_name(class_map, i, name) for i in value], [], []
    if kind == DETECTION:
        if not isinstance(value, dict) or not isinstance(class_map, dict):
            raise ValueError(f"attribute {name!r}: bounding boxes need annotations and a class-map")
        return [], *_read_boxes(name, value, class_map)
    codes = _codes(metadata)
    raise ValueError(f"attribute {name!r}: unsupported type {kind!r}" + (f" ({', '.join(codes)})" if codes else ""))


def _class_name(class_map: dict, class_id, attribute: str) -> str:
    label = class_map.get(str(class_id))
    if not isinstance(label, str) or not label:
        raise ValueError(f"attribute {attribute!r}: class id {class_id!r} not in its class-map")
    return label


def _read_boxes(name: str, value: dict, class_map: dict) -> tuple[list[Box], list[str]]:
    annotations = value.get("annotations")
    if not isinstance(annotations, list):
        raise ValueError(f"attribute {name!r}: annotations is not a list")
    boxes, problems = [], []
    for index, a in enumerate(annotations):
        if not isinstance(a, dict):
            raise ValueError(f"attribute {name!r}: annotation {index} is not an object")
        if a.get("errors") or a.get("cl-errors"):
            # Rekognition's validation output marks boxes it refused: keep its verdict.
            problems.append(f"attribute {name!r}: box {index} dropped ({', '.join(_codes(a))})")
            continue
        try:
            left, top, width, height = (float(a[k]) for k in ("left", "top", "width", "height"))
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"attribute {name!r}: annotation {index} needs numeric left, top, width, height") from None
        # Non-finite values pass on to data/detection.py, whose one rule for every reader leaves the image out.
        if all(math.isfinite(v) for v in (left, top, width, height)) and (width <= 0 or height <= 0):
            problems.append(f"attribute {name!r}: box {index} dropped (zero width or height)")
            continue
        boxes.append(Box(_class_name(class_map, a.get("class_id"), name), left, top, width, height))
    return boxes, problems


def resolve_source_ref(ref: str, root: Path, s3_root: Path | None) -> Path:
    """A local path inside root, or s3://bucket/key mapped to S3_ROOT/bucket/key; ValueError if it escapes.

    The rule (data/paths.py) is the server's for S3Object: after '..' and symlinks, a local ref stays inside
    root and an S3 key inside its own bucket's folder.
    """
    ref = ref.strip()
    if ref.lower().startswith("s3://"):
        if s3_root is None:
            raise ValueError(f"source-ref {ref} is in S3: pass --s3-root DIR (a local copy holding DIR/bucket/key)")
        try:
            return s3_object(s3_root, *split_s3_uri(ref))
        except ValueError as exc:
            raise ValueError(f"source-ref {exc}: refused" if isinstance(exc, Outside) else f"source-ref {ref}: {exc}") \
                from None
    if "://" in ref:
        raise ValueError(f"source-ref {ref!r} is neither s3://bucket/key nor a local path")
    try:
        return inside(root, ref)  # an absolute ref must still lie inside root
    except Outside:
        raise ValueError(f"source-ref {ref!r} points outside {root}: refused") from None
