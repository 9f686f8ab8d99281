"""Pascal VOC folders (the XML that LabelImg and CVAT write) -> samples with boxes in pixels, for data/detection.py.

Two layouts:
- VOC's own: `Annotations/NAME.xml`, images in `JPEGImages/`, optionally `ImageSets/Main/{train,val,test}.txt`
  (one NAME per line; `trainval.txt` stands for train where there is no train.txt). Lists are the source's own
  split (`dataset.given_split`, as a YOLO folder's split folders); an annotated image in no list is left out
  (counted in one problem): the source says what each image is for, and says nothing of that one. Without
  lists: every annotated image, no given split.
- LabelImg's default save: images and their NAME.xml side by side in one folder.
An XML's image is its <filename> in the images folder, else the image named like the XML (images get renamed and
<filename> goes stale). An image without an XML is listed and not read: nobody said it shows nothing.
Coordinates: VOC counts pixels from 1 and xmax/ymax name the last pixel inside the box, so the box in pixels of
the image is (xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1), and xmax = width reaches the right edge.
A value in [0, 1) can only come from a writer that counts from 0 (CVAT's Datumaro): it is the image's edge, not a
pixel outside. Floats are read as written.
`difficult` and `truncated` objects are kept as ordinary boxes: Rekognition has no such flag, and a hard object
is still one the model should find. VOC's own metric ignores difficult boxes while our evaluation counts them (a
stricter mAP), so one problem line says how many there are, rather than one line per box.
An XML that does not parse, an object without a name or without four bndbox numbers: a problem naming the
file, and the image left out (its other boxes alone would teach that the missing object is background).
A <size> that is not the image's size as displayed is noted, the boxes kept as written (as for COCO).
Class names: the sorted names found (VOC has no id list).
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from edgelabels.data.dataset import Box, Problem, Sample
from edgelabels.data.images import dangling_image_link, is_image_path
from edgelabels.data.paths import Outside, inside
from edgelabels.data.sources import group_of, size_mismatch

ANNOTATIONS, IMAGES = "Annotations", "JPEGImages"
LISTS = Path("ImageSets") / "Main"
SPLITS = ("train", "val", "test")
CORNERS = ("xmin", "ymin", "xmax", "ymax")


def is_voc_folder(path) -> bool:
    """True for a folder with Annotations/*.xml, or with VOC XML files (root <annotation>) beside its images."""
    path = Path(path)
    if not path.is_dir():
        return False
    if (path / ANNOTATIONS).is_dir():
        return next((path / ANNOTATIONS).glob("*.xml"), None) is not None
    first = next((p for p in path.glob("*.xml") if not p.name.startswith(".")), None)
    return first is not None and _root_tag(first) == "annotation"


def _root_tag(path: Path) -> str | None:
    try:
        for _, element in ElementTree.iterparse(path, events=("start",)):
            return element.tag
    except (ElementTree.ParseError, OSError):
        return None
    return None


def read_voc(root: Path, pattern):
    """(samples, problems, class names, given split or None) of a Pascal VOC folder."""
    root = Path(os.path.abspath(root))
    standard = (root / ANNOTATIONS).is_dir()
    xml_folder, image_folder = (root / ANNOTATIONS, root / IMAGES) if standard else (root, root)
    problems: list[Problem] = []
    images = _images(image_folder, problems)
    xmls = {p.stem: p for p in sorted(xml_folder.glob("*.xml")) if not p.name.startswith(".")}
    lists = _split_lists(root / LISTS, xmls, problems) if standard else None
    wanted = [stem for names in lists.values() for stem in names] if lists else list(xmls)
    if lists:
        unlisted = sorted(set(xmls) - set(wanted))
        if unlisted:
            problems.append(Problem(str(xmls[unlisted[0]]), f"{len(unlisted)} annotated image(s) in no "
                                                            f"{LISTS}/*.txt list: not read"))
    read: dict[str, Sample] = {}
    used: set[Path] = set()
    difficult = 0
    for stem in wanted:
        sample, found, hard = read_annotation(xmls[stem], image_folder, images, pattern)
        problems += found
        difficult += hard
        if sample is not None:
            read[stem] = sample
            used.add(sample.path)
    # An image whose XML was refused is already listed with that XML; only images no XML names are listed here.
    named = used | {images.get(stem) for stem in xmls}
    problems += [Problem(str(p), f"no annotation XML ({p.stem}.xml): not read") for p in images.values()
                 if p not in named]
    if difficult:
        problems.append(Problem(str(xml_folder), f"{difficult} boxes marked difficult: kept as ordinary boxes "
                                                 "(trained and evaluated; VOC's own metric ignores them)"))
    names = sorted({b.label for s in read.values() for b in s.boxes})
    given = {split: [read[s] for s in lists.get(split, ()) if s in read] for split in SPLITS} if lists else None
    return list(read.values()), problems, names, given


def _images(folder: Path, problems: list[Problem]) -> dict[str, Path]:
    """The folder's PNG/JPEG images by name and by stem (an XML names its image either way)."""
    found: dict[str, Path] = {}
    if not folder.is_dir():
        return found
    for path in sorted(p for p in folder.iterdir() if not p.name.startswith(".")):
        dangling = dangling_image_link(path)
        if dangling:
            problems.append(Problem(str(path), dangling))
        elif path.is_file() and is_image_path(path):
            found.setdefault(path.stem, path)
    return found


def _split_lists(folder: Path, xmls: dict[str, Path], problems: list[Problem]) -> dict[str, list[str]] | None:
    """{split: XML stems} from ImageSets/Main; None without lists. A name in two lists stays in the first."""
    files = {split: folder / f"{split}.txt" for split in SPLITS}
    if not files["train"].is_file() and (folder / "trainval.txt").is_file():
        files["train"] = folder / "trainval.txt"
    files = {split: path for split, path in files.items() if path.is_file()}
    if not files:
        return None
    lists: dict[str, list[str]] = {}
    seen: dict[str, str] = {}
    for split, path in files.items():
        names = [line.split()[0] for line in path.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
        missing = [n for n in names if n not in xmls]
        if missing:
            problems.append(Problem(str(path), f"{len(missing)} listed name(s) without {ANNOTATIONS}/NAME.xml, "
                                               f"first {missing[0]!r}: not read"))
        twice = [n for n in names if n in seen]
        if twice:
            problems.append(Problem(str(path), f"{len(twice)} name(s) also in {seen[twice[0]]}.txt, first "
                                               f"{twice[0]!r}: kept in {seen[twice[0]]} only"))
        lists[split] = list(dict.fromkeys(n for n in names if n in xmls and n not in seen))
        seen.update((n, split) for n in lists[split])
    return lists


def read_annotation(xml: Path, folder: Path, images: dict[str, Path], pattern) -> tuple[Sample | None, list, int]:
    """(sample or None, problems, difficult boxes) of one VOC XML file."""
    try:
        annotation = ElementTree.parse(xml).getroot()
    except (ElementTree.ParseError, OSError) as exc:
        return None, [Problem(str(xml), f"not readable XML ({exc}): image left out")], 0
    if annotation.tag != "annotation":
        return None, [Problem(str(xml), f"not a Pascal VOC annotation (root <{annotation.tag}>): not read")], 0
    image = _image_of(annotation, xml, folder, images)
    if image is None:
        written = (annotation.findtext("filename") or "").strip()
        return None, [Problem(str(xml), f"its image ({written or xml.stem + '.*'}) is not in {folder}: not read")], 0
    boxes, difficult = [], 0
    for index, item in enumerate(annotation.findall("object")):
        name = (item.findtext("name") or "").strip()
        bndbox = item.find("bndbox")
        corners = [bndbox.findtext(k) if bndbox is not None else None for k in CORNERS]
        try:
            xmin, ymin, xmax, ymax = (float(v) for v in corners)
        except (TypeError, ValueError):
            return None, [Problem(str(xml), f"object {index} ({name or 'no name'}) needs bndbox numbers "
                                            f"xmin/ymin/xmax/ymax, got {corners}: image left out")], 0
        if not name:
            return None, [Problem(str(xml), f"object {index} has no <name>: image left out")], 0
        left, top = _first_pixel(xmin), _first_pixel(ymin)
        boxes.append(Box(name, left, top, xmax - left, ymax - top))
        difficult += int((item.findtext("difficult") or "0").strip() == "1")
    notes = [Problem(str(image), note) for note in _size_note(annotation, image, xml)]
    sample = Sample(image, tuple(sorted({b.label for b in boxes})), group_of(image, pattern), tuple(boxes))
    return sample, notes, difficult


def _first_pixel(value: float) -> float:
    """The left (top) edge in pixels of VOC's 1-based first pixel; [0, 1) is a 0-based writer's edge (docstring)."""
    return 0.0 if 0 <= value < 1 else value - 1


def _image_of(annotation, xml: Path, folder: Path, images: dict[str, Path]) -> Path | None:
    written = (annotation.findtext("filename") or "").strip()
    if written:
        try:
            path = inside(folder, written)
        except Outside:
            path = None
        if path is not None and path.is_file() and is_image_path(path):
            return path
    return images.get(xml.stem)


def _size_note(annotation, image: Path, xml: Path) -> list[str]:
    try:
        declared = tuple(int(float(annotation.find("size").findtext(k))) for k in ("width", "height"))
    except (AttributeError, TypeError, ValueError, OverflowError):
        return []  # no <size>: nothing to compare
    if 0 in declared:  # some tools write 0 for "unknown"
        return []
    return size_mismatch(image, declared, f"<size> {{}} in {xml.name}")
