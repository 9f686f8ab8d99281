"""A YOLO folder or COCO file -> a SageMaker Ground Truth object-detection manifest, for importing into Rekognition.

The boxes written are the checked ones of data/detection.py (clipped to the image, too-small ones refused), so
Rekognition sees the same data edgelabels trains on. One line per image, in the layout of AWS's documented
example: `source-ref` = S3 prefix + the image's path relative to the source, attribute `bounding-box` with
`image_size` [{width, height, depth}] (the image as displayed) and `annotations` in pixels (written as read,
not rounded, so a round trip is exact), `bounding-box-metadata` with one `objects` entry per box and the
source's whole class-map (string keys: ids in the source's class order). An image without boxes gets empty
annotations: Rekognition ignores such a line (WARNING_NO_ANNOTATIONS), edgelabels reads it as a negative.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from edgelabels import atomic
from edgelabels.data.boxes import displayed_size
from edgelabels.data.detection import folder_kind, is_coco, read_detection_source
from edgelabels.data.sources import DETECTION
from edgelabels.errors import UserError

ATTRIBUTE = "bounding-box"
JOB_NAME = "edgelabels-to-manifest"


def to_manifest(source, s3_prefix: str, out, class_names=(), problems: list | None = None) -> int:
    """Write the manifest `out` (atomically) for a YOLO or COCO source; returns the number of lines.

    `problems`, if a list, receives what the checks clipped, refused or noted (data/dataset.py Problem).
    """
    source = Path(source)
    prefix = _check_prefix(s3_prefix)
    if not (source.is_dir() or is_coco(source) or folder_kind(source) is not None):
        raise UserError(f"{source}: to-manifest reads a YOLO folder (images/ + labels/, or a data.yaml), a Pascal "
                        "VOC folder or a COCO .json file")
    dataset, names = read_detection_source(source, class_names=class_names)
    if problems is not None:
        problems.extend(dataset.problems)
    base = Path(os.path.abspath(source if source.is_dir() else source.parent))
    ids = {name: i for i, name in enumerate(names)}
    class_map = {str(i): name for i, name in enumerate(names)}
    created = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")
    lines = []
    for sample in dataset.samples:
        relative = Path(os.path.abspath(sample.path)).relative_to(base).as_posix()
        width, height = displayed_size(sample.path)
        line = {
            "source-ref": prefix + relative,
            ATTRIBUTE: {
                "image_size": [{"width": width, "height": height, "depth": _depth(sample.path)}],
                "annotations": [{"class_id": ids[b.label], "left": b.left, "top": b.top, "width": b.width,
                                 "height": b.height} for b in sample.boxes],
            },
            f"{ATTRIBUTE}-metadata": {
                "objects": [{"confidence": 1} for _ in sample.boxes],
                "class-map": class_map,
                "type": DETECTION,
                "human-annotated": "yes",
                "creation-date": created,
                "job-name": JOB_NAME,
            },
        }
        lines.append(json.dumps(line) + "\n")
    atomic.write_text(out, "".join(lines))
    return len(lines)


def _check_prefix(prefix: str) -> str:
    if not prefix.lower().startswith("s3://") or not prefix[5:].split("/")[0]:
        raise UserError(f"--s3-prefix {prefix!r}: expected s3://bucket/path/ (where the images will be uploaded)")
    return prefix if prefix.endswith("/") else prefix + "/"


def _depth(path) -> int:
    """Colour channels as Ground Truth counts them: 1 for grey, else 3 (an alpha channel is not a colour)."""
    from PIL import Image

    with Image.open(path) as image:
        return 1 if image.mode in ("1", "L", "I", "I;16", "F") else 3
