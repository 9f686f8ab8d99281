"""`edgelabels label import`: people's answers in Label Studio -> the dataset's next version, and what they changed.

Every image of SOURCE is written, in SOURCE's order: with the person's label and boxes where a task was annotated
(the latest annotation not skipped), else as given; a task nobody answered changes nothing, whatever its
pre-annotation says. Only what a person changed is rewritten, so every other line keeps its attributes and
metadata. A box comes back from Label Studio's percent as pixels; one a person left where it was (every edge within
studio.UNMOVED_PX) is the given box itself, so an untouched box never drifts by a rounding.

The changes file (CSV: image, what, before, after) has one row per changed image label and one per changed box
(before or after empty for a box drawn or deleted); a box reads "label left top width height" in pixels.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter
from pathlib import Path

from edgelabels import atomic
from edgelabels.data.dataset import Box
from edgelabels.errors import UserError
from edgelabels.labeling.export import Source
from edgelabels.labeling.studio import (final_result, line_boxes, line_label, percent_to_box, unmoved, with_boxes,
                                        with_label)

CHANGES_COLUMNS = ("image", "what", "before", "after")


def read_export(path) -> list[dict]:
    """Label Studio's JSON export file (Export > JSON): a list of tasks with their annotations in full."""
    path = Path(path)
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise UserError(f"{path}: cannot read ({error.strerror or error})") from None
    except ValueError as error:
        raise UserError(f"{path}: not a Label Studio JSON export ({error})") from None
    if not isinstance(tasks, list) or not all(isinstance(t, dict) and isinstance(t.get("data"), dict) for t in tasks):
        raise UserError(f"{path}: not a Label Studio JSON export (a list of tasks, each with its data)")
    return tasks


def next_version(source: Source, tasks: list[dict]) -> tuple[list[dict], list[dict], int]:
    """(the next version's lines, the changes, how many of SOURCE's images a person answered)."""
    answers = {}
    for task in tasks:
        result, human = final_result(task)
        if human:
            answers[task["data"].get("source_ref")] = (task, result)
    ids = source.class_ids()
    lines, changes = [], []
    for line in source.lines:
        answered = answers.get(line["source-ref"])
        new = line if answered is None else _answered(line, *answered, ids)
        lines.append(new)
        changes += _changes(line, new)
    return lines, changes, sum(line["source-ref"] in answers for line in source.lines)


def _answered(line: dict, task: dict, result: list[dict], ids: dict[str, int]) -> dict:
    """`line` with the person's image label and boxes where they differ from the given ones."""
    new = line
    given = line_label(line)
    choices = [r for r in result if r.get("type") == "choices" and r["value"].get("choices")]
    if given is not None and choices and choices[-1]["value"]["choices"][0] != given:
        name = choices[-1]["value"]["choices"][0]
        ids.setdefault(name, max(ids.values(), default=-1) + 1)  # a label new to the source: the next id
        new = with_label(new, name, ids[name])
    drawn = line_boxes(line)
    if drawn is not None:
        boxes, width, height = drawn
        try:
            found = unmoved([percent_to_box(r["value"], r.get("original_width") or width,
                                            r.get("original_height") or height)
                             for r in result if r.get("type") == "rectanglelabels"], boxes)
        except ValueError as error:
            raise UserError(f"Label Studio task {task.get('id')} ({line['source-ref']}): {error}") from None
        if Counter(found) != Counter(boxes):  # regions may come back in another order: that is no change
            new = with_boxes(new, found)
    return new


def _changes(old: dict, new: dict) -> list[dict]:
    if old is new:
        return []
    image, rows = old["source-ref"], []
    if line_label(old) != line_label(new):
        rows.append({"image": image, "what": "label", "before": line_label(old), "after": line_label(new)})
    before = Counter(line_boxes(old)[0] if line_boxes(old) else ())
    after = Counter(line_boxes(new)[0] if line_boxes(new) else ())
    gone, drawn = list((before - after).elements()), list((after - before).elements())
    for box in gone:  # a box of the same label drawn elsewhere is that box moved
        moved = next((b for b in drawn if b.label == box.label), None)
        if moved is not None:
            drawn.remove(moved)
        rows.append({"image": image, "what": "box", "before": _box(box), "after": _box(moved)})
    rows += [{"image": image, "what": "box", "before": "", "after": _box(b)} for b in drawn]
    return rows


def _box(box: Box | None) -> str:
    return "" if box is None else f"{box.label} {box.left:g} {box.top:g} {box.width:g} {box.height:g}"


def write_next_version(source: Source, tasks: list[dict], out, diff=None) -> dict:
    """Writes the next version's manifest and its changes (atomically); returns the counts and paths."""
    out = Path(out)
    diff = Path(diff) if diff else out.with_name(out.name.rsplit(".", 1)[0] + ".changes.csv")
    lines, changes, answered = next_version(source, tasks)
    folder = Path(os.path.realpath(out.parent if str(out.parent) else "."))
    root = Path(os.path.realpath(source.path.parent if source.path.is_file() else source.path))
    if folder != root:  # source-refs are relative to the manifest's folder (and may not leave it)
        lines = [_moved(line, image, folder) for line, image in zip(lines, source.images)]
    atomic.write_text(out, "".join(json.dumps(line) + "\n" for line in lines))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CHANGES_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(changes)
    atomic.write_text(diff, buffer.getvalue())
    return {"manifest": out, "changes": diff, "images": len(lines), "answered": answered,
            "labels": sum(c["what"] == "label" for c in changes), "boxes": sum(c["what"] == "box" for c in changes)}


def _moved(line: dict, image: Path, folder: Path) -> dict:
    relative = os.path.relpath(os.path.realpath(image), folder)
    if relative.startswith(".."):
        raise UserError(f"{folder}: the next manifest must lie in a folder that holds its images "
                        f"({image} is outside it; Ground Truth source-refs may not leave the manifest's folder)")
    return {**line, "source-ref": relative}


def summary_line(counts: dict) -> str:
    return (f"{counts['images']} images, {counts['answered']} answered by people: {counts['labels']} labels and "
            f"{counts['boxes']} boxes changed -> {counts['manifest']} (changes: {counts['changes']})")
