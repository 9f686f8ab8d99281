"""Detection datasets: a Ground Truth object-detection manifest, a YOLO folder or data.yaml, a Pascal VOC folder
(data/voc.py) or a COCO file -> checked boxes.

Every reader gives samples with boxes in pixels of the image as displayed (after EXIF orientation); then one
check applies Rekognition's rules to every source alike, each decision listed as a Problem:
- a box whose pixel values are not all finite (NaN, or infinite once a YOLO ratio is scaled) leaves its image out,
  whatever the source: its annotation cannot be trusted, and the image without it is no negative;
- a box with no area (width or height not above 0, as a VOC xmax below xmin gives) is refused;
- a box partly outside the image is clipped to it (noted); one wholly outside, or empty once clipped, is refused;
- ERROR_BOUNDING_BOX_TOO_SMALL, as Rekognition documents it: once an image whose longer side exceeds 1280 px is
  scaled down to 1280, a box's width and height must both be greater than 1 px (so a 1x1 box on a 3000x3000
  image, the AWS example, is refused; on a 640x480 image a 2x2 box is kept);
- more than 50 boxes on an image (ERROR_TOO_MANY_BOUNDING_BOXES): the image is left out;
- an image that had boxes and kept none (ERROR_NO_VALID_ANNOTATIONS) is left out: it is not a negative;
- an image annotated with no box is kept as a negative (labels ()), with a warning; one with image-level labels
  only (a classification line) is left out: "shows a cat" is not evidence of an empty image;
- byte-identical images are listed (data/splits.py keeps them in one split);
- more than 250 labels (Rekognition's limit per dataset) is a UserError.
A sample's labels are the sorted labels of its boxes.

YOLO layout: `images/{train,val,test}/` + `labels/{same}/NAME.txt` (one `class cx cy w h` line per box,
normalised; a missing or empty .txt is an image without objects), or `images/` + `labels/` without split
folders; class names from `data.yaml` (`names:` list or {id: name}) else `class_names`. A folder with split
folders keeps them: `dataset.given_split = {"train": [...], "val": [...], "test": [...]}`.
YOLO data.yaml, as Ultralytics reads it (its data/utils.py check_det_dataset): SOURCE is the data.yaml or the
folder holding it, whose `train:`/`val:`/`test:` (`validation:` for val) each name a folder of images (searched
in depth), a .txt list of image paths (relative ones from the list's folder), or a list of those. They are
relative to `path:` (itself relative to the yaml's folder), else to the yaml's folder; a `../x` that is not
there is tried as `x`, then the same from the yaml's folder (Roboflow writes `train: ../train/images` beside
`train/images`). The label of .../images/X.jpg is .../labels/X.txt (the last /images/ becomes /labels/). A
Roboflow export folder (train/images, valid/images, test/images + labels) reads alike without split keys.
The split keys are the given split; a missing train or val folder is a UserError (as Ultralytics), a missing
test is noted; an image in two splits stays in the first (train, val, test), noted.
COCO: `bbox = [left, top, width, height]` in pixels, file names relative to the JSON file's folder; crowd
regions (`iscrowd: 1`) are not single objects and are left out (noted). Ids must be integers (1.0 is 1; 1.7 is
no id); two categories with one id and different names is a UserError (every box would take the last name);
two images with one id are both left out, and so are the images of two annotations with one id (listed).
A YOLO label file may start with a UTF-8 byte order mark (Windows editors write one). A symlink named like an
image that leads nowhere is listed, not skipped in silence.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from pathlib import Path

import numpy as np

from edgelabels.data.boxes import displayed_size
from edgelabels.data.dataset import Box, Dataset, Problem, Sample
from edgelabels.data.images import dangling_image_link, is_image_path
from edgelabels.data.paths import Outside, inside
from edgelabels.data.sources import (CLASSIFICATION, DETECTION, MANIFEST_SUFFIXES, MULTILABEL, OTHER_IMAGE_SUFFIXES,
                                     compile_group_by, group_of, read_manifest, size_mismatch, walk_files)
from edgelabels.data.voc import is_voc_folder, read_voc
from edgelabels.errors import UserError

log = logging.getLogger("edgelabels.train")

MAX_BOXES_PER_IMAGE = 50  # Rekognition: ERROR_TOO_MANY_BOUNDING_BOXES
MAX_LABELS = 250  # Rekognition: labels per dataset
TRAINING_SIDE = 1280  # Rekognition scales a larger image down to this before checking box sizes
MIN_BOX_SIDE = 1.0  # px at that scale; a box side must be greater
SPLIT_FOLDERS = ("train", "val", "test")
# A box edge on the image's edge, converted from YOLO ratios, can land a rounding error outside: clipped silently.
CLIP_NOTE_PX = 1e-6
YAML_NAMES = ("data.yaml", "data.yml")
# What a folder source is, as `dataset inspect` says it (folder_kind).
VOC, DATA_YAML, YOLO = "Pascal VOC folder", "YOLO data.yaml", "YOLO folder"
ROBOFLOW_FOLDERS = {"train": ("train",), "val": ("valid", "val"), "test": ("test",)}


def detection_dataset(config):
    """(training dataset, separate test dataset or None) for `task: detection`; problems logged, unusable left out."""
    d = config.data
    kwargs = {"class_names": d.class_names, "s3_root": d.s3_root, "group_by": d.group_by}
    if d.manifest:
        dataset = load_detection_dataset(d.manifest, root=d.source or None, **kwargs)
    else:
        dataset = load_detection_dataset(d.source, **kwargs)
    test = load_detection_dataset(d.test_source, **kwargs) if d.test_source else None
    return _usable(dataset), (_usable(test) if test is not None else None)


def _usable(dataset: Dataset) -> Dataset:
    """Log the dataset's problems and leave out images that do not decode (from given_split too)."""
    from edgelabels.data.validate import usable_samples

    for problem in dataset.problems:
        log.warning("%s: %s", problem.path, problem.problem)
    samples, problems = usable_samples(dataset, progress=False)
    for problem in problems:
        log.warning("skipped %s: %s", problem.path, problem.problem)
    kept = {s.path for s in samples}
    dataset.samples = samples
    if getattr(dataset, "given_split", None):
        dataset.given_split = {name: [s for s in part if s.path in kept] for name, part in dataset.given_split.items()}
    return dataset


def load_detection_dataset(source, *, class_names=(), s3_root=None, group_by=None, root=None) -> Dataset:
    """A manifest, YOLO folder or COCO file -> Dataset of checked boxes; UserError when it cannot be used.

    `root` (manifests only): the folder relative source-refs point into (default: the manifest's folder).
    """
    if not source:
        raise UserError("no detection dataset given: set data.source to a manifest, a YOLO folder or a COCO file")
    dataset, _ = read_detection_source(source, class_names=class_names, s3_root=s3_root, group_by=group_by,
                                       root=root)
    return dataset


def read_detection_source(source, *, class_names=(), s3_root=None, group_by=None, root=None):
    """(checked Dataset, class names in the source's id order) for any kind of detection source."""
    pattern = compile_group_by(group_by)
    path = Path(source)
    given = None
    kind = DATA_YAML if path.is_file() and path.suffix.lower() in (".yaml", ".yml") else folder_kind(path)
    if kind == VOC:
        samples, problems, names, given = read_voc(path, pattern)
        dataset = Dataset(samples, str(path), problems)
    elif kind == DATA_YAML:
        samples, problems, names, given = read_data_yaml(path, class_names, pattern)
        dataset = Dataset(samples, str(path), problems)
    elif path.is_dir():
        samples, problems, names, given = read_yolo(path, class_names, pattern)
        dataset = Dataset(samples, str(path), problems)
    elif not path.is_file():
        raise UserError(f"{path}: detection source not found (a manifest, a YOLO folder or data.yaml, a Pascal VOC "
                        "folder or a COCO .json file)")
    elif is_coco(path):
        samples, problems, names = read_coco(path, pattern)
        dataset = Dataset(samples, str(path), problems)
    elif path.suffix.lower() in MANIFEST_SUFFIXES:
        if root and not Path(root).is_dir():
            raise UserError(f"{root}: folder not found (with a manifest, SOURCE is the folder its images are in)")
        dataset = read_manifest(path, root=Path(root) if root else None, s3_root=s3_root, pattern=pattern,
                                detection=True)
        names = sorted({b.label for s in dataset.samples for b in s.boxes})
    else:
        raise UserError(f"{path}: not a manifest ({', '.join(MANIFEST_SUFFIXES)}), a YOLO folder or data.yaml, a "
                        "Pascal VOC folder or a COCO .json file")
    dataset = check_boxes(dataset)
    if given is not None:
        kept = {s.path: s for s in dataset.samples}
        dataset.given_split = {name: [kept[s.path] for s in given.get(name, []) if s.path in kept]
                               for name in SPLIT_FOLDERS}
    labels = dataset.label_names
    if not labels:
        first = f"; first problem: {dataset.problems[0].path}: {dataset.problems[0].problem}" if dataset.problems else ""
        raise UserError(f"{dataset.source}: no usable box in {len(dataset.samples)} images "
                        f"(detection needs at least one labelled box){first}")
    if len(labels) > MAX_LABELS:
        raise UserError(f"{dataset.source}: {len(labels)} labels, more than Rekognition's {MAX_LABELS} per dataset")
    return dataset, names


def is_detection_source(source, manifest=None) -> bool:
    """True for a YOLO folder or data.yaml, a Pascal VOC folder, a COCO file, or a manifest with a box attribute."""
    if manifest:
        return _manifest_has_boxes(Path(manifest))
    if source is None:
        return False
    path = Path(source)
    if folder_kind(path) is not None:
        return True
    if not path.is_file():
        return False
    return is_coco(path) or (path.suffix.lower() in MANIFEST_SUFFIXES and _manifest_has_boxes(path))


def folder_kind(path) -> str | None:
    """VOC, DATA_YAML or YOLO for a folder (or a data.yaml file) holding that layout; None for anything else."""
    path = Path(path)
    if path.is_file():
        return DATA_YAML if _split_document(path) is not None else None
    if not path.is_dir():
        return None
    if is_voc_folder(path):
        return VOC
    if _split_yaml(path) is not None or _roboflow_entries(path):
        return DATA_YAML
    # labels/ must hold .txt files: a folder per label may have label folders named so
    if (path / "images").is_dir() and next((path / "labels").rglob("*.txt"), None) is not None:
        return YOLO
    return None


def _manifest_has_boxes(path: Path) -> bool:
    """True for a manifest whose boxes are what it labels: some line has a box attribute, unless every labelled
    line has an image-level label and some has no box attribute (a classification dataset in which a few images
    also carry boxes, as a person draws them in the console, trains a classifier)."""
    try:
        lines = path.read_bytes().split(b"\n")
    except OSError:
        return False
    boxed = unboxed = False
    image_level_everywhere = True
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        kinds = {value.get("type") for key, value in entry.items()
                 if key.endswith("-metadata") and isinstance(value, dict)} if isinstance(entry, dict) else set()
        if not kinds:
            continue
        boxed |= DETECTION in kinds
        unboxed |= DETECTION not in kinds
        image_level_everywhere &= bool(kinds & {CLASSIFICATION, MULTILABEL})
    return boxed and not (image_level_everywhere and unboxed)


# ---------------------------------------------------------------- the checks every source goes through


def check_boxes(dataset: Dataset) -> Dataset:
    """Clip, refuse and count boxes against each image's displayed size (the rules in the module docstring)."""
    samples, problems = [], list(dataset.problems)
    for sample in dataset.samples:
        checked, found = _check_sample(sample)
        problems.extend(Problem(str(sample.path), p) for p in found)
        if checked is not None:
            samples.append(checked)
    problems += _duplicates(samples)
    return Dataset(samples, dataset.source, problems, dataset.unlabelled)


def _check_sample(sample: Sample) -> tuple[Sample | None, list[str]]:
    try:
        width, height = displayed_size(sample.path)
    except Exception as exc:  # noqa: BLE001  Pillow raises many kinds for a broken file; the image is listed
        return None, [f"cannot read the image's size ({exc}): left out"]
    if not sample.boxes and sample.labels:  # "shows a cat" without a box: not evidence of an empty image
        return None, [f"image-level labels ({', '.join(sample.labels)}) but no boxes: left out (not a negative)"]
    if not sample.boxes:
        return sample, ["no boxes: kept as an image without objects (a negative; Rekognition ignores such manifest "
                        "lines, WARNING_NO_ANNOTATIONS)"]
    broken = [f"box {i} ({b.label}) {_px(b)}" for i, b in enumerate(sample.boxes) if not is_finite(b)]
    if broken:
        return None, [f"{where} is not finite numbers in pixels (NaN or infinite): image left out"
                      for where in broken]
    boxes, notes = [], []
    for index, box in enumerate(sample.boxes):
        x1, y1 = max(box.left, 0.0), max(box.top, 0.0)
        x2, y2 = min(box.left + box.width, width), min(box.top + box.height, height)
        where = f"box {index} ({box.label}) {_px(box)}"
        if box.width <= 0 or box.height <= 0:
            notes.append(f"{where} has no area (width or height not above 0): refused")
            continue
        if x2 <= x1 or y2 <= y1:
            notes.append(f"{where} lies outside the {width}x{height} image: refused")
            continue
        beyond = max(-box.left, -box.top, box.left + box.width - width, box.top + box.height - height)
        clipped = box if beyond <= 0 else Box(box.label, x1, y1, x2 - x1, y2 - y1)
        if beyond > CLIP_NOTE_PX:
            notes.append(f"{where} is partly outside the {width}x{height} image: clipped to {_px(clipped)}")
        at = too_small(clipped, max(width, height))
        if at is not None:
            notes.append(f"{where} is too small (ERROR_BOUNDING_BOX_TOO_SMALL: Rekognition needs width and height "
                         f"above {MIN_BOX_SIDE:g} px{at}): refused")
            continue
        boxes.append(clipped)
    if len(boxes) > MAX_BOXES_PER_IMAGE:
        # Kept: the crowded frames are the ones a small-object detector most needs (25 of small-objects' 77
        # training frames), and nothing here is limited to 50 (model.max_detections; a tiled model counts per tile).
        notes.append(f"{len(boxes)} boxes, more than Rekognition's {MAX_BOXES_PER_IMAGE} per image "
                     "(Rekognition refuses it: ERROR_TOO_MANY_BOUNDING_BOXES): kept")
    if not boxes:
        return None, notes + ["every box refused (ERROR_NO_VALID_ANNOTATIONS): left out, not used as a negative"]
    labels = tuple(sorted({b.label for b in boxes}))
    return Sample(sample.path, labels, sample.group, tuple(boxes)), notes


def too_small(box: Box, longer_side: float | None) -> str | None:
    """ERROR_BOUNDING_BOX_TOO_SMALL as Rekognition documents it: None when both of the box's sides stay above
    MIN_BOX_SIDE once an image whose longer side (None: not known, judged as it is) exceeds TRAINING_SIDE is
    scaled down to it; else where it was judged, for the message ("" or " once the image is scaled to 1280 px")."""
    scale = min(1.0, TRAINING_SIDE / longer_side) if longer_side else 1.0
    if box.width * scale > MIN_BOX_SIDE and box.height * scale > MIN_BOX_SIDE:
        return None
    return f" once the image is scaled to {TRAINING_SIDE} px" if scale < 1 else ""


def is_finite(box: Box) -> bool:
    """The one rule for every reader: a box's pixel values are all finite numbers."""
    return all(math.isfinite(v) for v in (box.left, box.top, box.width, box.height))


def _px(box: Box) -> str:
    return f"[{box.left:g}, {box.top:g}, {box.width:g}, {box.height:g}]"


def _duplicates(samples: list[Sample]) -> list[Problem]:
    first: dict[str, Path] = {}
    problems = []
    for sample in samples:
        try:
            digest = hashlib.sha256(Path(sample.path).read_bytes()).hexdigest()
        except OSError:
            continue  # reported when the image is decoded
        if digest in first:
            problems.append(Problem(str(sample.path), f"byte-identical to {first[digest]} (a duplicate image)"))
        else:
            first[digest] = sample.path
    return problems


# ---------------------------------------------------------------- YOLO folder


def read_yolo(root: Path, class_names, pattern):
    """(samples, problems, class names, given split or None) of a YOLO folder."""
    root = Path(os.path.abspath(root))
    images, labels = root / "images", root / "labels"
    if not images.is_dir() or not labels.is_dir():
        raise UserError(f"{root}: not a YOLO folder (needs images/ and labels/; a folder per label is for "
                        "classification)")
    names = _yolo_names(root, class_names)
    splits = [name for name in SPLIT_FOLDERS if (images / name).is_dir()]
    problems: list[Problem] = []
    given = {} if splits else None
    samples: list[Sample] = []
    for part in splits or [""]:
        these = _read_yolo_part(images / part, labels / part, names, pattern, problems)
        samples += these
        if given is not None:
            given[part] = these
    others = sorted(p.name for p in images.iterdir() if p.is_dir() and p.name not in SPLIT_FOLDERS
                    and not p.name.startswith("."))
    if others:
        problems.append(Problem(str(images / others[0]), f"{len(others)} folder(s) in images/ other than "
                                                        f"{', '.join(SPLIT_FOLDERS)}: not read"))
    if not samples:
        raise UserError(f"{images}: no PNG/JPEG image found")
    return samples, problems, names, given


def _yolo_names(root: Path, class_names) -> list[str]:
    yaml_path = next((root / n for n in YAML_NAMES if (root / n).is_file()), None)
    return _names_in(_yaml_document(yaml_path) if yaml_path else {}, yaml_path or root, class_names)


def _yaml_document(yaml_path: Path) -> dict:
    import yaml

    try:
        document = yaml.safe_load(yaml_path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as exc:
        raise UserError(f"{yaml_path}: not a YAML mapping with names ({exc})") from None
    if not isinstance(document, dict):
        raise UserError(f"{yaml_path}: not a YAML mapping with names")
    return document


def _names_in(document: dict, yaml_path: Path, class_names) -> list[str]:
    """Class names in id order: the yaml's `names:` (list or {id: name}), else class_names, else a UserError."""
    if "names" not in document:
        if not class_names:
            raise UserError(f"{yaml_path}: no data.yaml with class names: set data.class_names (e.g. [bee]) "
                            "or --class-names, in the order of the class ids")
        return [str(n) for n in class_names]
    names = document["names"]
    if isinstance(names, dict):
        try:
            by_id = {int(k): str(v) for k, v in names.items()}
        except (TypeError, ValueError):
            raise UserError(f"{yaml_path}: names must map class ids (integers) to names") from None
        if sorted(by_id) != list(range(len(by_id))):
            raise UserError(f"{yaml_path}: names must have ids 0..{len(by_id) - 1}, got {sorted(by_id)}")
        names = [by_id[i] for i in range(len(by_id))]
    if not isinstance(names, list) or not names:
        raise UserError(f"{yaml_path}: no `names:` list (or id: name map) of class names")
    return [str(n) for n in names]


def _read_yolo_part(images: Path, labels: Path, names: list[str], pattern, problems: list[Problem]) -> list[Sample]:
    samples = []
    stems = set()
    for path in sorted(p for p in images.iterdir() if not p.name.startswith(".")):
        if not path.is_file():
            dangling = dangling_image_link(path)
            if dangling:
                problems.append(Problem(str(path), dangling))
            continue
        if not is_image_path(path):
            problems.append(Problem(str(path), "not a PNG/JPEG image: skipped"))
            continue
        stems.add(path.stem)
        sample = _yolo_sample(path, labels / f"{path.stem}.txt", names, pattern, problems)
        if sample is not None:
            samples.append(sample)
    if labels.is_dir():
        orphans = sorted(p for p in labels.glob("*.txt") if p.stem not in stems)
        problems += [Problem(str(p), "label file without an image: not read") for p in orphans]
    return samples


def _yolo_sample(image: Path, text_path: Path, names: list[str], pattern, problems: list[Problem]) -> Sample | None:
    """The image with the boxes of its label file (none when there is no file); None when the file is unusable."""
    try:
        boxes = _read_yolo_labels(text_path, image, names) if text_path.is_file() else ()
    except ValueError as exc:
        problems.append(Problem(str(text_path), f"{exc}: image left out"))
        return None
    return Sample(image, tuple(sorted({b.label for b in boxes})), group_of(image, pattern), boxes)


def _read_yolo_labels(text_path: Path, image: Path, names: list[str]) -> tuple[Box, ...]:
    lines = [line for line in text_path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    if not lines:
        return ()
    try:
        width, height = displayed_size(image)
    except Exception as exc:  # noqa: BLE001  Pillow raises many kinds for a broken file; the image is listed
        raise ValueError(f"cannot read the size of {image.name} ({exc})") from None
    boxes = []
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        try:
            class_id, cx, cy, w, h = int(fields[0]), *(float(v) for v in fields[1:])
        except (ValueError, TypeError, IndexError):
            raise ValueError(f"line {number}: expected `class cx cy w h`, got {line[:60]!r}") from None
        if not 0 <= class_id < len(names):
            raise UserError(f"{text_path}:{number}: class {class_id}, but only {len(names)} class names are known "
                            f"({', '.join(names)}): set data.class_names / data.yaml names for every class id")
        if not all(np.isfinite([cx, cy, w, h])):
            raise ValueError(f"line {number}: coordinates are not finite numbers")
        boxes.append(Box(names[class_id], (cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height))
    return tuple(boxes)


# ---------------------------------------------------------------- YOLO data.yaml (Ultralytics, Roboflow)


def read_data_yaml(path: Path, class_names, pattern):
    """(samples, problems, class names, given split) of a data.yaml, the folder holding it, or a Roboflow export."""
    path = Path(os.path.abspath(path))
    yaml_path = path if path.is_file() else next((path / n for n in YAML_NAMES if (path / n).is_file()), None)
    document = _yaml_document(yaml_path) if yaml_path else {}
    folder = yaml_path.parent if yaml_path else path
    where = yaml_path or folder
    root = Path(os.path.abspath(folder / str(document["path"]))) if document.get("path") else folder
    entries = _split_entries(document) or _roboflow_entries(folder)
    if not entries.get("train"):
        raise UserError(f"{where}: no `train:` (a folder of images, a .txt list of image paths, or a list of them)")
    names = _names_in(document, where, class_names)
    problems: list[Problem] = []
    given: dict[str, list[Sample]] = {split: [] for split in SPLIT_FOLDERS}
    owner: dict[Path, str] = {}
    for split in SPLIT_FOLDERS:
        entry = entries.get(split) or []
        for name in entry if isinstance(entry, list) else [entry]:
            place = _ultralytics_place(str(name), root, folder)
            if place is None and split == "test":
                problems.append(Problem(str(where), f"test: {name} not found: no test images from it"))
                continue
            if place is None:
                raise UserError(f"{where}: {split}: {name} not found (relative to {root}, as Ultralytics resolves "
                                "it, or to the yaml's folder)")
            images = _images_at(place, problems)
            elsewhere = [p for p in images if p in owner]
            if elsewhere:
                problems.append(Problem(str(place), f"{len(elsewhere)} image(s) of {split} also in "
                                                    f"{owner[elsewhere[0]]}: kept there only"))
            for image in (p for p in images if p not in owner):
                owner[image] = split
                sample = _yolo_sample(image, label_path(image), names, pattern, problems)
                if sample is not None:
                    given[split].append(sample)
    samples = [s for split in SPLIT_FOLDERS for s in given[split]]
    if not samples:
        raise UserError(f"{where}: no PNG/JPEG image found in its train/val/test")
    return samples, problems, names, given


def label_path(image: Path) -> Path:
    """Ultralytics' rule (img2label_paths): the last /images/ of the path becomes /labels/, the suffix .txt."""
    head, images, tail = str(image).rpartition(f"{os.sep}images{os.sep}")
    return Path(head + f"{os.sep}labels{os.sep}" + tail if images else str(image)).with_suffix(".txt")


def _split_document(path: Path) -> dict | None:
    """A .yaml/.yml file's mapping when it names a train split (a path or a list: a run's config.yaml has a
    `train:` section, a mapping, and is no data.yaml); None otherwise."""
    if path.suffix.lower() not in (".yaml", ".yml") or not path.is_file():
        return None
    try:
        document = _yaml_document(path)
    except UserError:
        return None
    return document if _split_entries(document) else None


def _split_yaml(folder: Path) -> Path | None:
    return next((folder / n for n in YAML_NAMES if _split_document(folder / n) is not None), None)


def _split_entries(document: dict) -> dict:
    """{split: path or list of paths} of a data.yaml; `validation:` is val (Ultralytics renames it so)."""
    entries = {split: document.get(split) for split in SPLIT_FOLDERS}
    entries["val"] = entries["val"] or document.get("validation")
    entries = {k: v for k, v in entries.items() if isinstance(v, (str, list)) and v}
    return entries if "train" in entries else {}


def _roboflow_entries(folder: Path) -> dict:
    """Roboflow's export without split keys: {split: "train/images", ...} for the folders there (train needed)."""
    entries = {}
    for split, names in ROBOFLOW_FOLDERS.items():
        found = next((n for n in names if (folder / n / "images").is_dir()), None)
        if found:
            entries[split] = f"{found}/images"
    has_labels = next((folder / "train" / "labels").rglob("*.txt"), None) is not None
    return entries if "train" in entries and has_labels else {}


def _ultralytics_place(name: str, root: Path, folder: Path) -> Path | None:
    """Where Ultralytics finds a split entry (root/name, root/name less a leading ../), then the same from the
    yaml's folder; None when none exists."""
    tries = [base / name for base in (root, folder)]
    if name.startswith("../"):
        tries = [tries[0], root / name[3:], tries[1], folder / name[3:]]
    return next((Path(os.path.abspath(p)) for p in tries if p.exists()), None)


def _images_at(place: Path, problems: list[Problem]) -> list[Path]:
    """The PNG/JPEG images of a folder (in depth) or of a .txt list (one path a line, relative to its folder)."""
    if place.is_dir():
        files = list(walk_files(place, problems))
    else:
        try:
            lines = [line.strip() for line in place.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
        except UnicodeDecodeError:
            raise UserError(f"{place}: a split is a folder of images or a .txt list of image paths") from None
        files = [Path(os.path.abspath(place.parent / line)) for line in lines]
        missing = [p for p in files if not p.is_file()]
        if missing:
            problems.append(Problem(str(place), f"{len(missing)} listed image(s) not found, first {missing[0]}: "
                                                "not read"))
        files = [p for p in files if p.is_file()]
    for path in files:
        if path.suffix.lower() in OTHER_IMAGE_SUFFIXES:
            problems.append(Problem(str(path), f"{path.suffix.lower()[1:].upper()} is not accepted (PNG or JPEG "
                                               "only, as Rekognition): skipped"))
    return [Path(os.path.abspath(p)) for p in files if is_image_path(p)]


# ---------------------------------------------------------------- COCO file


def is_coco(path: Path) -> bool:
    if path.suffix.lower() != ".json" or not path.is_file():
        return False
    try:
        document = json.loads(path.read_bytes())
    except (ValueError, OSError):
        return False
    return isinstance(document, dict) and isinstance(document.get("images"), list) and "annotations" in document


def read_coco(path: Path, pattern):
    """(samples, problems, category names by id order) of a COCO detection file."""
    path = Path(os.path.abspath(path))
    try:
        document = json.loads(path.read_bytes())
        categories = _coco_categories(path, document.get("categories") or [])
        listed = [(_coco_id(i["id"]), i) for i in document["images"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: not a COCO detection file (images with id and file_name, categories with id "
                        f"and name: {exc})") from None
    problems: list[Problem] = []
    images, bad = _coco_images(path, listed, problems)
    boxes: dict[int, list[Box]] = {i: [] for i in images}
    annotation_ids: dict = {}  # id -> (index, image id) of the first annotation with it
    for index, a in enumerate(document.get("annotations") or []):
        where = f"{path}:annotations[{index}]"
        try:
            image_id, category = _coco_id(a["image_id"]), _coco_id(a["category_id"])
            left, top, width, height = (float(v) for v in a["bbox"])
        except (KeyError, TypeError, ValueError):
            problems.append(Problem(where, "needs integer image_id and category_id, and bbox [left, top, width, "
                                           "height]: skipped"))
            continue
        if "id" in a and isinstance(a["id"], (int, float, str)):
            first = annotation_ids.setdefault(a["id"], (index, image_id))
            if first[0] != index:  # one id, two annotations: which box is meant is unknown
                problems.append(Problem(where, f"id {a['id']} is also annotations[{first[0]}]'s: "
                                               "the images of both left out"))
                bad.update((image_id, first[1]))
        if image_id not in images:
            problems.append(Problem(where, f"image_id {image_id} is not in images: skipped"))
        elif category not in categories:
            problems.append(Problem(where, f"category_id {category} is not in categories: its image is left out"))
            bad.add(image_id)
        elif a.get("iscrowd"):
            problems.append(Problem(where, "a crowd region (iscrowd 1), not one object: left out"))
        else:
            boxes[image_id].append(Box(categories[category], left, top, width, height))
    samples = []
    for image_id, (index, image) in images.items():
        name = str(image.get("file_name") or "")
        try:
            file = inside(path.parent, name) if name else None
        except Outside:
            problems.append(Problem(f"{path}:images[{index}]", f"file_name {name!r} points outside {path.parent}"))
            continue
        if file is None or not file.is_file():
            problems.append(Problem(f"{path}:images[{index}]", f"image not found: {file or '(no file_name)'}"))
            continue
        if image_id in bad:
            continue
        problems += _coco_size_note(file, image)
        these = tuple(boxes[image_id])
        samples.append(Sample(file, tuple(sorted({b.label for b in these})), group_of(file, pattern), these))
    return samples, problems, [categories[i] for i in sorted(categories)]


def _coco_id(value) -> int:
    """A COCO id: an integer (1.0 and "1" too); ValueError for 1.7, true, or anything else."""
    if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
        raise ValueError(f"id {value!r} is not an integer")
    return int(value)


def _coco_categories(path: Path, listed: list) -> dict[int, str]:
    """Category names by id; two names for one id would rename every box of it, so that is refused."""
    names: dict[int, str] = {}
    for category in listed:
        key, name = _coco_id(category["id"]), str(category["name"])
        if names.setdefault(key, name) != name:
            raise UserError(f"{path}: categories has id {key} twice ({names[key]!r} and {name!r}): give each "
                            "category its own id")
    return names


def _coco_images(path: Path, listed: list, problems: list[Problem]):
    """({image id: (index in images[], image)}, ids left out): two images with one id are both left out, since
    their annotations cannot be told apart."""
    images: dict[int, tuple[int, dict]] = {}
    bad: set[int] = set()
    for index, (image_id, image) in enumerate(listed):
        if image_id in images:
            first = images[image_id][0]
            problems.append(Problem(f"{path}:images[{index}]", f"id {image_id} is also images[{first}]'s: both "
                                                              "images left out (whose boxes are whose is unknown)"))
            bad.add(image_id)
            continue
        images[image_id] = (index, image)
    return images, bad


def _coco_size_note(file: Path, image: dict) -> list[Problem]:
    try:
        declared = (int(image["width"]), int(image["height"]))
    except (KeyError, TypeError, ValueError, OverflowError):  # no declared size: nothing to compare
        return []
    return [Problem(str(file), note) for note in size_mismatch(file, declared, "{} in the COCO file")]


# ---------------------------------------------------------------- what `dataset inspect` shows


def box_statistics(dataset: Dataset) -> dict:
    """Boxes per label, boxes per image (min/median/max), images without boxes; box sides in px and in ratios."""
    per_image = np.array([len(s.boxes) for s in dataset.samples])
    per_label: dict[str, int] = {}
    sides_px, sides_ratio = [], []
    for sample in dataset.samples:
        if sample.boxes:
            width, height = displayed_size(sample.path)
        for box in sample.boxes:
            per_label[box.label] = per_label.get(box.label, 0) + 1
            sides_px.append((box.width, box.height))
            sides_ratio.append((box.width / width, box.height / height))
    return {
        "images": len(dataset.samples),
        "boxes": int(per_image.sum()) if len(per_image) else 0,
        "boxes_per_label": {name: per_label[name] for name in sorted(per_label)},
        "boxes_per_image": {"min": int(per_image.min()), "median": float(np.median(per_image)),
                            "max": int(per_image.max())} if len(per_image) else {},
        "images_without_boxes": [str(s.path) for s in dataset.samples if not s.boxes],
        "box_sides_px": [list(map(float, p)) for p in sides_px],
        "box_sides_ratio": [list(map(float, p)) for p in sides_ratio],
    }


def plot_box_sizes(stats: dict, out) -> Path:
    """A PNG of box widths and heights: in pixels, and as shares of their image's sides."""
    from matplotlib.figure import Figure  # no pyplot: no global backend, no window

    from edgelabels import atomic

    figure = Figure(figsize=(9, 3.6))
    panels = (("box_sides_px", "pixels"), ("box_sides_ratio", "share of image"))
    for axis, (key, unit) in zip(figure.subplots(1, 2), panels):
        sides = np.array(stats[key], dtype=float).reshape(-1, 2)
        bins = np.histogram_bin_edges(sides, bins=20) if len(sides) else 10
        axis.hist(sides[:, 0], bins=bins, alpha=0.6, label="width")
        axis.hist(sides[:, 1], bins=bins, alpha=0.6, label="height")
        axis.set_xlabel(f"box side ({unit})")
        axis.set_ylabel("boxes")
        axis.legend()
    figure.suptitle(f"box sizes: {stats['boxes']} boxes on {stats['images']} images")
    figure.tight_layout()
    out = Path(out)
    with atomic.temp_path(out) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    return out
