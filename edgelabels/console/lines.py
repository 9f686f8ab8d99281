"""The Ground Truth lines the console reads and writes: what an entry shows (its image-level labels, its boxes) and
the line a change saves, built on labeling/studio.py's readers and writers so that the console, Label Studio's
loop and the audit write the same lines.

A box here is a dict {label, left, top, width, height} in pixels of the image as displayed (the JSON the editor
sends). A line's attribute names are kept: a change rewrites the attribute the line already has; a new
image-level label goes in "label" and new boxes in "bounding-box" (the names `edgelabels label import` and the
audit write).
"""

from __future__ import annotations

from datetime import datetime, timezone

from edgelabels.data.dataset import Box
from edgelabels.data.sources import CLASSIFICATION, DETECTION, MULTILABEL
from edgelabels.labeling.studio import attribute_of, line_label, with_boxes, with_label

LABEL_ATTRIBUTE, BOX_ATTRIBUTE = "label", "bounding-box"
JOB_NAME = "labeling-job/edgelabels-console"


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")


def _metadata(kind: str) -> dict:
    return {"type": kind, "human-annotated": "yes", "creation-date": _now(), "job-name": JOB_NAME}


def _multilabels(line: dict) -> list[str]:
    name = attribute_of(line, MULTILABEL)
    if name is None or not isinstance(line.get(name), list):
        return []
    classes = _class_map(line[f"{name}-metadata"])
    return [classes.get(str(i), str(i)) for i in line[name]]


def _class_map(metadata: dict) -> dict:
    classes = metadata.get("class-map")
    return classes if isinstance(classes, dict) else {}


def _size(value) -> tuple[int, int] | None:
    """Ground Truth's image_size [{"width", "height", ...}] as (width, height), or None."""
    size = value[0] if isinstance(value, list) and value else value
    try:
        width, height = int(size["width"]), int(size["height"])
    except (KeyError, TypeError, ValueError):
        return None
    return (width, height) if width > 0 and height > 0 else None


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def labels_and_boxes(line: dict) -> tuple[list[str], list[dict], tuple[int, int] | None]:
    """(image-level labels, boxes as dicts in pixels, the (width, height) the boxes are drawn on or None).

    Never raises: a line the dataset lists with errors shows what can be read of it (a box without four numbers
    is left out; the entry's errors say why)."""
    name = attribute_of(line, CLASSIFICATION)
    label = line[f"{name}-metadata"].get("class-name") if name is not None else None
    labels = [label] if isinstance(label, str) and label else []
    labels += [n for n in _multilabels(line) if n not in labels]
    name = attribute_of(line, DETECTION)
    value = line.get(name) if name is not None else None
    if not isinstance(value, dict):
        return labels, [], None
    classes = _class_map(line[f"{name}-metadata"])
    boxes = [{"label": classes.get(str(a.get("class_id")), str(a.get("class_id"))),
              **{k: a[k] for k in ("left", "top", "width", "height")}}
             for a in value.get("annotations") or [] if isinstance(a, dict)
             and all(_number(a.get(k)) for k in ("left", "top", "width", "height"))]
    return labels, boxes, _size(value.get("image_size"))


def classification_line(ref: str, label: str, class_id: int = 0) -> dict:
    """A Ground Truth image-classification line for the image at `ref` (the class id is Ground Truth's number for
    the label: nothing reads it back but the label's name, which the class-name holds)."""
    return {"source-ref": ref, LABEL_ATTRIBUTE: class_id,
            f"{LABEL_ATTRIBUTE}-metadata": {"class-name": label, "confidence": 1, **_metadata(CLASSIFICATION)}}


def relabelled(line: dict, label: str) -> dict:
    """A copy of `line` whose image-level label is `label`: the classification attribute's class-name changed (or a
    multi-label attribute reduced to this one label), or a "label" attribute added when the line has none."""
    if attribute_of(line, CLASSIFICATION) is not None:
        if line_label(line) == label:
            return dict(line)
        changed = with_label(line, label, 0)
        name = attribute_of(changed, CLASSIFICATION)
        changed[f"{name}-metadata"].update(confidence=1, **{"creation-date": _now(), "job-name": JOB_NAME})
        return changed
    name = attribute_of(line, MULTILABEL)
    if name is not None:
        metadata = line[f"{name}-metadata"]
        ids = {n: int(i) for i, n in metadata.get("class-map", {}).items()}
        class_id = ids.get(label, max(ids.values(), default=-1) + 1)
        return {**line, name: [class_id], f"{name}-metadata": {
            **metadata, "class-map": {str(class_id): label}, "confidence-map": {str(class_id): 1},
            "human-annotated": "yes", "creation-date": _now(), "job-name": JOB_NAME}}
    return {**line, **{k: v for k, v in classification_line(line["source-ref"], label).items() if k != "source-ref"}}


def _without_image_labels(line: dict) -> dict:
    names = {attribute_of(line, CLASSIFICATION), attribute_of(line, MULTILABEL)} - {None}
    return {k: v for k, v in line.items() if k not in names and k.removesuffix("-metadata") not in names}


def _with_image_labels(line: dict, labels: list[str]) -> dict:
    if not labels:
        return _without_image_labels(line)
    if len(labels) == 1:
        return relabelled(line, labels[0])
    # Several labels: one multi-label attribute (named as the line's image-level attribute, else "label").
    name = attribute_of(line, MULTILABEL) or attribute_of(line, CLASSIFICATION) or LABEL_ATTRIBUTE
    return {**_without_image_labels(line), name: list(range(len(labels))), f"{name}-metadata": {
        "class-map": {str(i): n for i, n in enumerate(labels)}, "confidence-map": {str(i): 1 for i in
                                                                                      range(len(labels))},
        **_metadata(MULTILABEL)}}


def _with_boxes(line: dict, boxes: list[dict], image_size: tuple[int, int] | None) -> dict:
    name = attribute_of(line, DETECTION)
    if name is None and not boxes:
        return line
    if name is None or not isinstance(line[name], dict):  # none yet, or one too broken to keep (never its name)
        if image_size is None:
            raise ValueError("boxes need the image's size (width, height) to be saved")
        name = name or BOX_ATTRIBUTE
        line = {**line, name: {"image_size": [{"width": int(image_size[0]), "height": int(image_size[1]),
                                               "depth": 3}], "annotations": []},
                f"{name}-metadata": {"objects": [], "class-map": {}, **_metadata(DETECTION)}}
    elif image_size is not None:
        sizes = line[name].get("image_size")
        first = sizes[0] if isinstance(sizes, list) and sizes and isinstance(sizes[0], dict) else {"depth": 3}
        line = {**line, name: {**line[name], "image_size": [
            {**first, "width": int(image_size[0]), "height": int(image_size[1])}]}}
    metadata = line[f"{name}-metadata"]
    line = {**line, f"{name}-metadata": {**metadata, "class-map": _class_map(metadata)}}
    changed = with_boxes(line, [Box(b["label"], b["left"], b["top"], b["width"], b["height"]) for b in boxes])
    changed[f"{name}-metadata"].update({"creation-date": _now(), "job-name": JOB_NAME})
    return changed


def with_labels_and_boxes(line: dict, labels: list[str], boxes: list[dict],
                          image_size: tuple[int, int] | None) -> dict:
    """The line the editor saves: `labels` as the image-level labels (none: the image-level attribute removed) and
    `boxes` as its boxes. A line with a box attribute keeps it (with no box when every box was deleted); a line
    without one gets a "bounding-box" attribute drawn on `image_size` only when boxes are drawn."""
    return _with_boxes(_with_image_labels(line, list(labels)), list(boxes), image_size)
