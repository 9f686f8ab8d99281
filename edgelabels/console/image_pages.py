"""One dataset entry's editor: its image with its boxes, its image-level label, saved as one UpdateDatasetEntries.

    GET  /console/projects/NAME/datasets/KIND/entry?ref=S3URI   the editor (templates/entry.html, static/editor.js)
    POST /console/projects/NAME/datasets/KIND/entry             fetch() JSON {"ref", "labels": [..], "boxes": [{label,
                                                                left, top, width, height}]} -> {"message": "Saved"}

The boxes are checked before anything is written, by the service's own rules (service/entries.py check_boxes)
against the size the line declares, else the image's displayed size: a box the dataset would list as an error is
refused with its reason instead. The answer waits for the update's background work, so "Saved" means that boto3's
ListDatasetEntries already shows the change.
"""

from __future__ import annotations

import base64
import io
import json
import math
import time
import urllib.parse

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from edgelabels.console.kit import KINDS, Refused, dataset_of, dataset_url
from edgelabels.console.lines import labels_and_boxes, with_labels_and_boxes
from edgelabels.console.suspects import suspects_of
from edgelabels.console.thumbnails import image_url
from edgelabels.service import entries as rules
from edgelabels.service.s3 import S3Error

MAX_IMAGE_BYTES = 64 * 1024 * 1024  # read only to learn its size when the line declares none
SAVE_WAIT_S = 30.0  # the update's work is one SQLite write; past this the page says it is still running


class NotSaved(Exception):
    """A change the editor refuses: its one-line reason."""


def _image_size(console, ref: str, line: dict) -> tuple[int, int] | None:
    """The size the line's boxes are drawn on: the one it declares, else the image's as displayed (None when the
    image cannot be read)."""
    declared = labels_and_boxes(line)[2]
    if declared is not None:
        return declared
    from edgelabels.data.boxes import displayed_size

    try:
        return displayed_size(io.BytesIO(console.ctx.s3.read_bytes(ref, max_bytes=MAX_IMAGE_BYTES)))
    except (S3Error, OSError, ValueError):
        return None


def _entry(console, name: str, kind: str, ref: str) -> dict:
    """What the editor shows for one entry, read from the store (a dataset being updated is still shown)."""
    arn = console.dataset(name, kind)[1]["DatasetArn"]
    items = console.ctx.store.all_entries(arn)
    index = next((i for i, item in enumerate(items) if item["source_ref"] == ref), None)
    if index is None:
        raise Refused(f"the {kind} dataset of {name!r} has no entry {ref}")
    line = json.loads(items[index]["line"])
    labels, boxes, _ = labels_and_boxes(line)
    size = _image_size(console, ref, line)
    base = dataset_url(name, kind)
    near = {side: f"{base}/entry?{urllib.parse.urlencode({'ref': items[i]['source_ref']})}"
            for side, i in (("prev", index - 1), ("next", index + 1)) if 0 <= i < len(items)}
    return {"ref": ref, "labels": labels, "boxes": boxes, "width": size[0] if size else None,
            "height": size[1] if size else None, "errors": items[index]["errors"], "position": index + 1,
            "count": len(items), "near": near, "grid": base, "save": f"{base}/entry",
            "known": [d["LabelName"] for d in rules.dataset_labels(items)],
            "suspect": suspects_of(console.ctx, name, kind).get(ref)}  # the latest label audit's word on it


# ---------------------------------------------------------------- checking a change


def _label(value, what: str) -> str:
    most = rules.shape_limit("DatasetLabel")
    if not isinstance(value, str) or not value.strip() or len(value) > most:
        shown = f"{value[:30]!r}... ({len(value)} characters)" if isinstance(value, str) and len(value) > 40 \
            else repr(value)
        raise NotSaved(f"{what} {shown} is not a label: 1 to {most} characters, not only blanks")
    return value.strip()


def _box(value, index: int) -> dict:
    if not isinstance(value, dict):
        raise NotSaved(f"box {index + 1} is not a box")
    box = {"label": _label(value.get("label"), f"box {index + 1}'s label")}
    for key in ("left", "top", "width", "height"):
        number = value.get(key)
        if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
            raise NotSaved(f"box {index + 1} ({box['label']}): {key} {number!r} is not a number")
        box[key] = round(number, 2)
    return box


def checked_change(body: dict, size: tuple[int, int] | None) -> tuple[list[str], list[dict]]:
    """(labels, boxes) of the editor's request; NotSaved with the first reason a person can fix."""
    labels, boxes = body.get("labels", []), body.get("boxes", [])
    if not isinstance(labels, list) or not isinstance(boxes, list):
        raise NotSaved("labels and boxes must be lists")
    labels = [_label(value, "the image label") for value in labels]
    labels = [value for i, value in enumerate(labels) if value not in labels[:i]]
    boxes = [_box(value, i) for i, value in enumerate(boxes)]
    if boxes and size is None:
        raise NotSaved("the image cannot be read, so its boxes cannot be checked: fix the image first")
    from edgelabels.data.dataset import Box

    drawn = [Box(b["label"], b["left"], b["top"], b["width"], b["height"]) for b in boxes]
    for number, box in enumerate(drawn, 1):  # one at a time: the service's words, numbered as the page lists them
        _, problems = rules.check_boxes([box], size)
        if problems:
            raise NotSaved(problems[0].partition(": ")[2].replace("box 0 ", f"box {number} ", 1))
    _, problems = rules.check_boxes(drawn, size)
    if problems:
        raise NotSaved(problems[0].partition(": ")[2])
    return labels, boxes


def save(console, name: str, kind: str, body: dict) -> str:
    """Check the change, write it as one UpdateDatasetEntries and wait for the update; the message to show."""
    ref = body.get("ref")
    if not isinstance(ref, str) or not ref:
        raise NotSaved("the request names no entry (ref)")
    arn = console.dataset(name, kind)[1]["DatasetArn"]
    row = console.ctx.store.dataset(arn)
    if row["status"].endswith("_IN_PROGRESS"):
        raise NotSaved(f"the dataset is {row['status']}: save again in a moment")
    found = console.ctx.store.entry(arn, ref)
    if found is None:
        raise NotSaved(f"the dataset has no entry {ref}")
    line = json.loads(found["line"])
    size = _image_size(console, ref, line)
    labels, boxes = checked_change(body, size)
    try:
        changed = with_labels_and_boxes(line, labels, boxes, size)
    except (ValueError, TypeError, KeyError) as exc:  # a line too broken to rewrite (its errors are listed)
        raise NotSaved(f"the entry's line cannot be changed here ({exc}): fix it with UpdateDatasetEntries") from None
    blob = base64.b64encode((json.dumps(changed, ensure_ascii=False) + "\n").encode()).decode()
    console.call("UpdateDatasetEntries", {"DatasetArn": arn, "Changes": {"GroundTruth": blob}})
    deadline = time.monotonic() + SAVE_WAIT_S
    while (row := console.ctx.store.dataset(arn))["status"] == "UPDATE_IN_PROGRESS":
        if time.monotonic() > deadline:
            return "Saved; the dataset is still being updated"
        time.sleep(0.05)
    if row["status"] != "UPDATE_COMPLETE":
        raise NotSaved(f"the update failed ({row['status']}): {row['status_message']}")
    return "Saved"


# ---------------------------------------------------------------- the routes


def routes(console) -> list:
    async def editor(request: Request) -> Response:
        session = await console.session(request)
        if session is None:
            return console.locked_out()
        name, kind = request.path_params["name"], request.path_params["kind"]
        ref = request.query_params.get("ref", "")
        try:
            entry = await console.run(_entry, console, name, kind, ref)
        except Refused as exc:
            return console.message(name, str(exc), 404)
        return console.page("entry.html", 200, session, name=name, kind=kind, entry=entry,
                            image=image_url(ref), title=ref.rsplit("/", 1)[-1])

    async def save_entry(request: Request) -> Response:
        session, body = await console.fetch(request)
        if session is None:
            return body
        if not isinstance(body, dict):
            return console.json({"message": "Not saved: the request is not a JSON object"}, 400)
        try:
            message = await console.run(save, console, request.path_params["name"], request.path_params["kind"],
                                        body)
        except (NotSaved, Refused) as exc:
            return console.json({"message": f"Not saved: {exc}"}, 400)
        return console.json({"message": message})

    async def find_entry(request: Request) -> Response:
        """An image named by its ref alone (an evaluation's mistake): the editor of the dataset that holds it."""
        session = await console.session(request)
        if session is None:
            return console.locked_out()
        name, ref = request.path_params["name"], request.query_params.get("ref", "")
        try:
            kind = await console.run(_kind_holding, console, name, ref)
        except Refused as exc:
            return console.message(name, str(exc), 404)
        query = urllib.parse.urlencode({"ref": ref})
        return RedirectResponse(f"{dataset_url(name, kind)}/entry?{query}",
                                303)

    path = "/projects/{name}/datasets/{kind}/entry"
    return [Route(path, editor, methods=["GET"]), Route(path, save_entry, methods=["POST"]),
            Route("/projects/{name}/entry", find_entry, methods=["GET"])]


def _kind_holding(console, name: str, ref: str) -> str:
    """train or test: the project's dataset that holds an entry `ref` (TRAIN first); Refused when neither does."""
    project = console.project(name)
    for kind in KINDS:
        found = dataset_of(project, kind)
        if found is not None and console.ctx.store.entry(found["DatasetArn"], ref) is not None:
            return kind
    raise Refused(f"no dataset of {name!r} holds {ref or 'that image'} now (it may have been removed since)")
