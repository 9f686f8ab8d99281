"""`edgelabels label export`: a Label Studio project filled with the images people should look at.

Which images, in this order: the audit's suspects (AUDIT_DIR/suspects.csv, by rank), then an evaluation's review
queue (EVALUATION_DIR/review/queue.csv, least confident first); without either, the whole SOURCE. Each task holds
our answer as a pre-annotation (the suggested label; for a box suspect, the given boxes with that box added,
relabelled or taken away), why it was picked and the label as given. Filling a project again adds only the images
it does not hold yet (tasks are matched by source-ref).

Images are never uploaded: Label Studio shows them from its own disk through a local-files storage, which
serves only files below its LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT (and not directly in it), so SOURCE must lie
there, on the machine Label Studio runs on.

SOURCE is a folder per label or a Ground Truth manifest whose lines hold an image label, boxes, or both (a
cassette photo's result and its cassette, window and well boxes); reading it is `read_source`, which the import
shares, so both sides see the same lines. Every line must be one a person can be shown (a local image, a label or
boxes): the first that is not is a one-line error, where training would skip it.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

from edgelabels.data.boxes import iou_matrix
from edgelabels.data.dataset import Box
from edgelabels.data.sources import MANIFEST_SUFFIXES, load_dataset, resolve_source_ref
from edgelabels.errors import UserError
from edgelabels.labeling.studio import (CLASSIFICATION, DETECTION, LabelStudioClient, attribute_of, label_config,
                                        line_boxes, line_label, local_files_url, task_of, with_boxes, with_label)

MODEL_VERSION = "edgelabels"
SAME_BOX_IOU = 0.5  # a suspect box overlapping a given box this much is about that box (relabel or remove it)
WHOLE = "the whole dataset (no suspects or review queue given)"
NO_ID = -1  # the class id of a suggested label in a pre-annotation: Label Studio sees only names


@dataclass
class Source:
    """A dataset as Ground Truth lines (a folder's images get a classification line each) and their images."""

    path: Path
    lines: list[dict]
    images: list[Path]

    @property
    def labels(self) -> list[str]:
        return sorted({label for label in map(line_label, self.lines) if label is not None})

    @property
    def box_labels(self) -> list[str]:
        """Box labels in class-id order of the class-maps (the order a person sees them in)."""
        found: dict[str, int] = {}
        for line in self.lines:
            attribute = attribute_of(line, DETECTION)
            for i, name in (line[f"{attribute}-metadata"].get("class-map", {}) if attribute else {}).items():
                found.setdefault(name, int(i))
        return sorted(found, key=found.get)

    def class_ids(self) -> dict[str, int]:
        """Image label -> the class id the source gives it."""
        ids: dict[str, int] = {}
        for line in self.lines:
            attribute = attribute_of(line, CLASSIFICATION)
            if attribute and isinstance(line[attribute], int):
                ids.setdefault(line[f"{attribute}-metadata"]["class-name"], line[attribute])
        return ids


def read_source(source) -> Source:
    """A folder per label (data/sources.py's rule) or a Ground Truth manifest, line by line as written."""
    path = Path(source)
    if path.is_dir():
        dataset = load_dataset(path)
        names = dataset.label_names
        lines = [{"source-ref": str(s.path), "label": names.index(s.label),
                  "label-metadata": {"class-name": s.label, "confidence": 1, "type": CLASSIFICATION,
                                     "human-annotated": "yes", "job-name": f"labeling-job/{path.name}"}}
                 for s in dataset.samples]
        return Source(path, lines, [s.path for s in dataset.samples])
    if not path.is_file() or path.suffix.lower() not in MANIFEST_SUFFIXES:
        raise UserError(f"{path}: not a folder per label or a Ground Truth manifest ({', '.join(MANIFEST_SUFFIXES)})")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: cannot read the manifest ({error})") from None
    lines, images = [], []
    for number, text in enumerate(text.splitlines(), start=1):
        if not text.strip():
            continue
        try:
            line = json.loads(text)
            images.append(resolve_source_ref(line["source-ref"], path.parent, None))
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise UserError(f"{path}:{number}: not a Ground Truth line with a local source-ref ({error})") from None
        if line_label(line) is None and line_boxes(line) is None:
            raise UserError(f"{path}:{number}: no image label and no boxes to show a person")
        lines.append(line)
    if not lines:
        raise UserError(f"{path}: empty manifest")
    return Source(path, lines, images)


# --- which images, and our answer for each -----------------------------------------------------------------------

@dataclass
class Pick:
    index: int  # the line in the source
    reason: str
    answer: dict  # the line as we would label it
    score: float | None = None


def picks(source: Source, suspects: Path | None = None, review: Path | None = None) -> list[Pick]:
    """Suspects by rank, then the review queue, each image once; without either, every image as given."""
    if suspects is None and review is None:
        return [Pick(i, WHOLE, line) for i, line in enumerate(source.lines)]
    find = _finder(source)
    chosen: dict[int, Pick] = {}
    if suspects is not None:
        rows = sorted(_csv(Path(suspects) / "suspects.csv"), key=lambda r: int(r["rank"]))
        for row in rows:
            index = find(row["image"])
            if index is None:
                continue
            pick = chosen.setdefault(index, Pick(index, "", source.lines[index], _number(row["confidence"])))
            pick.reason = "; ".join(filter(None, (pick.reason, _reason(row))))
            pick.answer = _suggest(pick.answer, row, source)
    if review is not None:
        for row in _csv(Path(review) / "review" / "queue.csv"):
            index = find(row["path"])
            if index is None or index in chosen:
                continue
            answer = source.lines[index]
            if row["predicted_label"] and line_label(answer) is not None:
                answer = with_label(answer, row["predicted_label"], NO_ID)
            chosen[index] = Pick(index, f"review: {row['reason']}", answer, _number(row["confidence"]))
    return list(chosen.values())


def _csv(path: Path) -> list[dict]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except OSError as error:
        raise UserError(f"{path}: cannot read ({error.strerror or error})") from None


def _finder(source: Source):
    """An image named by an audit or an evaluation (its source-ref, or a path absolute or relative to the current
    folder or the source's) -> its line index, or None for an image that is not in SOURCE."""
    by_ref = {line["source-ref"]: i for i, line in enumerate(source.lines)}
    by_path = {os.path.realpath(p): i for i, p in enumerate(source.images)}
    root = source.path if source.path.is_dir() else source.path.parent

    def find(name: str) -> int | None:
        if name in by_ref:
            return by_ref[name]
        return by_path.get(os.path.realpath(name), by_path.get(os.path.realpath(root / name)))
    return find


def _number(text: str) -> float | None:
    return float(text) if text not in ("", None) else None


def _reason(row: dict) -> str:
    said = f"suspect {row['rank']}: {row['reason']}"
    if row.get("suggested"):
        said += f" (suggested {row['suggested']}"
        said += f", confidence {float(row['confidence']):.2f})" if row.get("confidence") else ")"
    return said + (f"; {row['detail']}" if row.get("detail") else "")


def _suggest(line: dict, row: dict, source: Source) -> dict:
    """Our answer after one suspect: its suggested image label, or for a box suspect the given boxes with that box
    relabelled (a given box overlapping it), taken away (no suggestion) or added (a missed label)."""
    if not row.get("box"):
        return with_label(line, row["suggested"], NO_ID) if row.get("suggested") and line_label(line) else line
    drawn = line_boxes(line)
    if drawn is None:
        return line
    left, top, width, height = (float(v) for v in json.loads(row["box"]))  # audit/page.py: a JSON list, pixels
    suspect = Box(row.get("suggested") or "", left, top, width, height)
    boxes = list(drawn[0])
    overlaps = iou_matrix([(b.left, b.top, b.width, b.height) for b in boxes], [(left, top, width, height)])[:, 0]
    best, at = (float(overlaps.max()), int(overlaps.argmax())) if len(boxes) else (0.0, -1)
    if best >= SAME_BOX_IOU:
        if suspect.label:
            boxes[at] = Box(suspect.label, boxes[at].left, boxes[at].top, boxes[at].width, boxes[at].height)
        else:
            del boxes[at]
    elif suspect.label:
        boxes.append(suspect)
    return with_boxes(line, boxes)


# --- the project --------------------------------------------------------------------------------------------------

def export_project(client: LabelStudioClient, source: Source, *, document_root, project: str | None = None,
                   suspects=None, review=None, limit: int | None = None) -> dict:
    """Creates the project (`project`: a title, or the id of one that exists; default the source's name) or fills
    it; returns {"project", "url", "added", "already", "picked"}."""
    chosen = picks(source, suspects, review)[:limit]
    if not chosen:
        raise UserError(f"{source.path}: no image to export (no suspect or review image is in it)")
    missing = next((source.images[p.index] for p in chosen if not source.images[p.index].is_file()), None)
    if missing is not None:
        raise UserError(f"{missing}: image not found (named in {source.path})")
    root = Path(os.path.realpath(document_root))
    folder = Path(os.path.commonpath([os.path.realpath(source.images[p.index].parent) for p in chosen]))
    if root not in folder.parents:
        where = "the root itself" if folder == root else "elsewhere"
        raise UserError(f"{folder}: Label Studio serves local files only from below its document root {root} "
                        f"(LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT), not from {where}: move the images into a "
                        "sub-folder of it")
    number = _project(client, source, project)
    # Label Studio checks a storage's folder against its document root as IT was given (a link not followed): name
    # the folder from the root as the user gave it, whatever links lie on the way
    storage = Path(document_root) / folder.relative_to(root)
    if not any(Path(p) == f or Path(p) in f.parents for p in client.local_files(number) for f in (storage, folder)):
        client.add_local_files(number, str(storage))
    there = {t["data"].get("source_ref") for t in client.tasks(number)}
    tasks = [_task(source, pick, root) for pick in chosen if source.lines[pick.index]["source-ref"] not in there]
    added = client.import_tasks(number, tasks) if tasks else 0
    return {"project": number, "url": f"{client.url}/projects/{number}/data", "added": added,
            "already": len(chosen) - len(tasks), "picked": len(chosen)}


def _project(client: LabelStudioClient, source: Source, project: str | None) -> int:
    if project is not None and str(project).isdigit():
        return client.project(int(project))["id"]
    title = project or source.path.name
    found = client.find_project(title)
    if found is not None:
        return found
    labels, boxes = source.labels, source.box_labels
    config = label_config(labels, box_labels=boxes) if labels else label_config(boxes, boxes=True)
    return client.create_project(title, config, f"edgelabels label export {source.path}")


def _task(source: Source, pick: Pick, root: Path) -> dict:
    line = source.lines[pick.index]
    image = Path(os.path.realpath(source.images[pick.index])).relative_to(root)
    task = task_of(pick.answer, local_files_url(str(image)), reason=pick.reason, model_version=MODEL_VERSION,
                   score=pick.score)
    task["data"]["given"] = _given(line)
    return task


def _given(line: dict) -> str:
    """The labels as given, for a person to read beside the image: the image label and the boxes' labels."""
    label, drawn = line_label(line), line_boxes(line)
    boxes = ", ".join(b.label for b in drawn[0]) if drawn else ""
    return "; ".join(filter(None, (label, f"boxes: {boxes}" if drawn else "")))
