"""A dataset in the console: its grid of thumbnails, filters, bulk relabel, adding images, the split.

    GET  /console/projects/NAME/datasets/KIND           one page of entries (48), filtered by the query's label,
                                                        unlabelled, errors, suspects; next=TOKEN pages on
    POST /console/projects/NAME/datasets/KIND/relabel   (script, JSON {"refs", "label"}) -> {"changed", "message"}
    POST /console/projects/NAME/datasets/KIND/split     (form) an empty TEST dataset when there is none, then
                                                        DistributeDatasetEntries over both
    GET  /console/projects/NAME/datasets/KIND/add       the three ways to add images; POST adds them: a folder on
                                                        the service's machine (copied to S3), uploaded files (written
                                                        to S3), or an S3 prefix (read in place)

KIND is train or test. Every change is the service's UpdateDatasetEntries (CreateDataset, DistributeDatasetEntries),
so boto3 sees it. Those operations answer at once and work in the background while the dataset is *_IN_PROGRESS,
and a dataset takes one update at a time: a request here waits for each to settle, so the page it leads to shows
the result. The grid reads one ListDatasetEntries page; only the audit-suspects filter, which the operation does
not know, reads the store's entries and pages them itself.
"""

from __future__ import annotations

import base64
import io
import json
import re
import time
import urllib.parse
from pathlib import Path, PurePosixPath

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from edgelabels.console import lines
from edgelabels.console.kit import KINDS, Refused, dataset_of, dataset_url
from edgelabels.console.thumbnails import image_type, thumbnail_url
from edgelabels.data import paths
from edgelabels.data.images import is_image_path
from edgelabels.data.sources import read_folder
from edgelabels.errors import UserError
from edgelabels.service.datasets import listed_entry
from edgelabels.service.entries import filter_entries, shape_limit
from edgelabels.service.s3 import S3Error
from edgelabels.service.store import InvalidPaginationToken

PAGE_SIZE = 48
SETTLE_S = 600  # the longest a request waits for a dataset's background work
DEFAULT_BUCKET = "edgelabels-console"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


# -- the dataset and its operations --------------------------------------------------------------------------------


def settled(console, arn: str) -> dict:
    """DescribeDataset's description once the dataset's background work is over (or SETTLE_S has passed)."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        found = console.call("DescribeDataset", {"DatasetArn": arn})["DatasetDescription"]
        if not found["Status"].endswith("_IN_PROGRESS") or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def _finished(console, arn: str) -> dict:
    found = settled(console, arn)
    if found["Status"].endswith(("_FAILED", "_IN_PROGRESS")):
        raise Refused(f"the dataset is {found['Status']}: {found['StatusMessage']}")
    return found


def update_lines(console, arn: str, documents: list[dict]) -> int:
    """UpdateDatasetEntries with these Ground Truth lines, in as many requests as the GroundTruthBlob limit needs,
    each settled before the next (a dataset takes one update at a time); how many lines were sent."""
    most, batches, size = shape_limit("GroundTruthBlob"), [[]], 0
    for document in documents:
        line = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"
        if batches[-1] and size + len(line) > most:
            batches.append([])
            size = 0
        batches[-1].append(line)
        size += len(line)
    for batch in filter(None, batches):
        settled(console, arn)
        console.call("UpdateDatasetEntries", {"DatasetArn": arn, "Changes": {
            "GroundTruth": base64.b64encode(b"".join(batch)).decode("ascii")}})
        _finished(console, arn)
    return len(documents)


def ensure_dataset(console, name: str, kind: str) -> str:
    """The ARN of the project's KIND dataset, created empty (CreateDataset without a source) when there is none."""
    project = console.project(name)
    found = dataset_of(project, kind)
    if found is not None:
        return found["DatasetArn"]
    arn = console.call("CreateDataset", {"ProjectArn": project["ProjectArn"], "DatasetType": kind.upper()})
    _finished(console, arn["DatasetArn"])
    return arn["DatasetArn"]


def _suspects(ctx, name: str, kind: str) -> dict:
    from edgelabels.console.suspects import suspects_of

    return suspects_of(ctx, name, kind)


# -- the grid -------------------------------------------------------------------------------------------------------


def _filters(query) -> dict:
    """The grid's filters from the query string, as the links keep them."""
    found = {"label": query.get("label", "")} if query.get("label") else {}
    return {**found, **{k: "1" for k in ("unlabelled", "errors", "suspects") if query.get(k)}}


def _tile(listed: str, suspects: dict, entry_base: str) -> dict:
    document = json.loads(listed)
    errors = [f"{e.get('code', '')}: {e.get('message', '')}" for e in document.pop("cl-errors", [])]
    document.pop("cl-metadata", None)
    ref = document["source-ref"]
    try:
        labels, boxes, size = lines.labels_and_boxes(document)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError):  # a line in error: its errors say why
        labels, boxes, size = [], [], None
    suspect = suspects.get(ref)
    if suspect is not None:
        confidence = suspect.get("confidence")
        reason = ": ".join(str(suspect[k]) for k in ("reason", "detail") if suspect.get(k))
        suspect = {"suggested": suspect.get("suggested") or "", "reason": reason,
                   "confidence": f"{confidence:.2f}" if isinstance(confidence, float) else str(confidence or "")}
    return {"ref": ref, "thumbnail": thumbnail_url(ref), "labels": labels, "boxes": boxes if size else [],
            "size": size, "errors": errors, "suspect": suspect,
            "editor": f"{entry_base}?{urllib.parse.urlencode({'ref': ref})}"}


def grid(console, name: str, kind: str, query) -> dict:
    """The grid's values: the dataset, its labels, this page's tiles and the next page's link."""
    project = console.project(name)
    found = dataset_of(project, kind)
    base = dataset_url(name, kind)
    values = {"name": name, "kind": kind, "base": base, "project_url": base.rsplit("/", 2)[0], "dataset": found,
              "tiles": [], "labels": [], "filters": _filters(query), "next_page": "", "paged": bool(query.get("next"))}
    if found is None:
        return values
    arn = found["DatasetArn"]
    values["description"] = description = console.call("DescribeDataset", {"DatasetArn": arn})["DatasetDescription"]
    if description["Status"] not in ("CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_FAILED"):
        return values
    values["labels"] = [d["LabelName"] for d in console.all_pages("ListDatasetLabels", {"DatasetArn": arn},
                                                                  "DatasetLabelDescriptions")]
    filters, suspects = values["filters"], _suspects(console.ctx, name, kind)
    asked = {**({"ContainsLabels": [filters["label"]]} if "label" in filters else {}),
             **({"Labeled": False} if "unlabelled" in filters else {}),
             **({"HasErrors": True} if "errors" in filters else {})}
    token = query.get("next") or None
    if "suspects" in filters:  # not an operation's filter: the store's entries, filtered and paged here
        items = filter_entries(console.ctx.store.all_entries(arn),
                               asked.get("ContainsLabels"), asked.get("Labeled"), None, asked.get("HasErrors"))
        items = [item for item in items if item["source_ref"] in suspects]
        listing = f"console-suspects:{json.dumps([arn, asked, sorted(suspects)], sort_keys=True)}"
        try:
            page, token = console.ctx.store.page(listing, items, PAGE_SIZE, token)
        except InvalidPaginationToken as error:  # a link from before the dataset changed
            raise Refused(str(error)) from None
        entries = [listed_entry(item) for item in page]
    else:
        answer = console.call("ListDatasetEntries", {"DatasetArn": arn, "MaxResults": PAGE_SIZE, **asked,
                                                     **({"NextToken": token} if token else {})})
        entries, token = answer["DatasetEntries"], answer.get("NextToken")
    values["tiles"] = [_tile(entry, suspects, f"{base}/entry") for entry in entries]
    if token:
        values["next_page"] = f"{base}?{urllib.parse.urlencode({**filters, 'next': token})}"
    values["first_page"] = f"{base}?{urllib.parse.urlencode(filters)}"
    return values


# -- relabel and split ---------------------------------------------------------------------------------------------


def relabel(console, name: str, kind: str, refs: list[str], label: str) -> int:
    """Each selected entry's line with `label` as its image-level label, in UpdateDatasetEntries; how many."""
    found = dataset_of(console.project(name), kind)
    if found is None:
        raise Refused(f"the project has no {kind} dataset")
    wanted = set(refs)
    items = console.ctx.store.all_entries(found["DatasetArn"])
    changed = [lines.relabelled(json.loads(item["line"]), label) for item in items if item["source_ref"] in wanted]
    if not changed:
        raise Refused(f"none of the selected images is in the {kind} dataset")
    return update_lines(console, found["DatasetArn"], changed)


def split(console, name: str) -> str:
    """Move 20% of the training dataset to the test dataset (created empty when there is none); the message."""
    project = console.project(name)
    train = dataset_of(project, "train")
    if train is None:
        raise Refused("the project has no training dataset to split: add images to it first")
    test = ensure_dataset(console, name, "test")
    _finished(console, train["DatasetArn"])
    console.call("DistributeDatasetEntries", {"Datasets": [{"Arn": train["DatasetArn"]}, {"Arn": test}]})
    return _finished(console, train["DatasetArn"])["StatusMessage"]


# -- adding images -------------------------------------------------------------------------------------------------


def _prefix(text: str, what: str) -> tuple[str, str]:
    """(bucket, key prefix ending in / or empty) of s3://BUCKET/PREFIX; Refused for anything else."""
    text = text.strip()
    bucket, _, prefix = text[5:].partition("/") if text.startswith("s3://") else ("", "", "")
    if not paths.S3_BUCKET.match(bucket) or any(part in (".", "..") for part in prefix.split("/")):
        raise Refused(f"{what} {text!r} is not s3://BUCKET/FOLDER/")
    return bucket, prefix if prefix.endswith("/") or not prefix else prefix + "/"


def _destination(console, text: str) -> str:
    """s3://BUCKET/PREFIX/ to copy images to; with --s3-root, the bucket's folder is made when it is missing."""
    bucket, prefix = _prefix(text, "the destination")
    if console.ctx.s3.root is not None:
        try:
            paths.inside(console.ctx.s3.root, bucket).mkdir(exist_ok=True)
        except (paths.Outside, OSError) as error:
            raise Refused(f"the destination's bucket s3://{bucket}/ cannot be made: {error}") from None
    return f"s3://{bucket}/{prefix}"


def _safe(name: str) -> str:
    """A file or folder name as an S3 key part: no separators, nothing a shell or URL would trip on."""
    return _UNSAFE.sub("_", name).strip("._") or "image"


def _line(ref: str, label: str | None) -> dict:
    return lines.classification_line(ref, label) if label else {"source-ref": ref}


def from_folder(console, folder: str, destination: str) -> tuple[list[dict], list[str]]:
    """(lines, notes) of a folder per label on the service's machine, as `edgelabels train FOLDER` reads it, its
    images copied under the destination (DEST/LABEL/NAME)."""
    root = Path(folder.strip()).expanduser()
    if not folder.strip() or not root.is_dir():
        raise Refused(f"{folder.strip()!r} is not a folder on the service's machine")
    try:
        found = read_folder(root, None)
    except UserError as error:
        raise Refused(str(error)) from None
    images = [(s.path, s.labels[0]) for s in found.samples] + [(path, None) for path in found.unlabelled]
    if not images:
        raise Refused(f"{root} holds no PNG or JPEG image (one sub-folder per label)")
    target, made = _destination(console, destination), []
    for path, label in images:
        ref = target + "/".join(_safe(part) for part in path.relative_to(found.source).parts)
        try:
            data = path.read_bytes()
            console.ctx.s3.write_bytes(ref, data, image_type(data))
        except OSError as error:
            raise Refused(f"{path}: {error.strerror}") from None
        except S3Error as error:
            raise Refused(str(error)) from None
        made.append(_line(ref, label))
    return made, [f"{p.path}: {p.reason}" for p in found.problems]


def from_uploads(console, files: list[tuple[str, bytes]], label: str, destination: str):
    """(lines, notes) of uploaded files written under the destination (DEST/LABEL/NAME); a file that is not a PNG
    or JPEG image is not added, and a note says so."""
    from PIL import Image

    made, notes, target = [], [], None
    for filename, data in files:
        shown = PurePosixPath(filename.replace("\\", "/")).name or "(no name)"
        try:
            if image_type(data) is None:
                raise ValueError(shown)
            with Image.open(io.BytesIO(data)) as image:
                image.verify()
        except Exception:  # noqa: BLE001 - whatever Pillow makes of it, it is no image to add
            notes.append(f"{shown} is not an image (PNG or JPEG): not added")
            continue
        target = target or _destination(console, destination)
        suffix = ".png" if image_type(data) == "image/png" else ".jpg"
        stem = _safe(PurePosixPath(shown).stem)
        ref = f"{target}{_safe(label) + '/' if label else ''}{stem}{suffix}"
        try:
            console.ctx.s3.write_bytes(ref, data, image_type(data))
        except S3Error as error:
            raise Refused(str(error)) from None
        made.append(_line(ref, label or None))
    return made, notes


def from_s3(console, source: str) -> tuple[list[dict], list[str]]:
    """(lines, notes) of the images under s3://BUCKET/PREFIX/, read in place: a folder per label beneath it, images
    directly in it unlabelled."""
    bucket, prefix = _prefix(source, "the S3 source")
    top = f"s3://{bucket}/{prefix}"
    try:
        uris = console.ctx.s3.list_keys(top)
    except S3Error as error:
        raise Refused(str(error)) from None
    made, skipped = [], 0
    for uri in uris:
        parts = PurePosixPath(uri[len(top):]).parts
        if not is_image_path(PurePosixPath(uri)) or any(part.startswith(".") for part in parts):
            skipped += 1
            continue
        made.append(_line(uri, parts[0] if len(parts) > 1 else None))
    if not made:
        raise Refused(f"no PNG or JPEG image under {top}")
    return made, [f"{skipped} objects that are not PNG or JPEG images were skipped"] if skipped else []


# -- the routes ----------------------------------------------------------------------------------------------------


def routes(console) -> list:
    notes: dict[str, str] = {}  # session -> the message the next grid page shows (after a redirect)

    def where(request: Request) -> tuple[str, str]:
        return request.path_params["name"], request.path_params["kind"]


    async def grid_page(request: Request) -> Response:
        session = await console.session(request)
        if session is None:
            return console.locked_out()
        name, kind = where(request)
        if kind not in KINDS:
            return console.message(name, f"{kind!r} is not a dataset type (train or test)", 404)
        try:
            values = await console.run(grid, console, name, kind, request.query_params)
        except Refused as error:
            return console.message(name, str(error), 404)
        return console.page("dataset.html", 200, session, message=notes.pop(session, ""), **values)

    async def relabel_answer(request: Request) -> Response:
        session, body = await console.fetch(request)
        if session is None:
            return body
        name, kind = where(request)
        refs, label = body.get("refs"), body.get("label")
        label = label.strip() if isinstance(label, str) else ""
        if not isinstance(refs, list) or not refs or not all(isinstance(r, str) for r in refs):
            return console.json({"message": "Select one or more images first."}, 400)
        if not 1 <= len(label) <= 255:
            return console.json({"message": "Type the label (1 to 255 characters) to give the selected images."},
                                400)
        try:
            changed = await console.run(relabel, console, name, kind, refs, label)
        except Refused as error:
            return console.json({"message": f"Not relabelled: {error}"}, 400)
        notes[session] = f"{changed} image{'' if changed == 1 else 's'} relabelled {label!r}."
        return console.json({"changed": changed, "message": notes[session]})

    async def split_answer(request: Request) -> Response:
        session, form = await console.post(request)
        if session is None:
            return form
        name, _ = where(request)
        try:
            notes[session] = await console.run(split, console, name)
        except Refused as error:
            notes[session] = f"Not split: {error}"
        return RedirectResponse(dataset_url(name, "train"), 303)

    def add_page(session: str, name: str, kind: str, message: str = "", status: int = 200, form=None):
        return console.page("add.html", status, session, name=name, kind=kind, grid=dataset_url(name, kind),
                            message=message, form=form or {},
                            destination=f"s3://{DEFAULT_BUCKET}/{_safe(name)}/")

    async def add(request: Request) -> Response:
        name, kind = where(request)
        session, form = (await console.session(request), {}) if request.method == "GET" else \
            await console.post(request)
        if session is None:
            return form or console.locked_out()
        if kind not in KINDS:
            return console.message(name, f"{kind!r} is not a dataset type (train or test)", 404)
        if request.method == "GET":
            return add_page(session, name, kind)
        way, destination = form.get("from"), form.get("destination") or f"s3://{DEFAULT_BUCKET}/{_safe(name)}/"
        try:
            if way == "folder":
                made, problems = await console.run(from_folder, console, form.get("folder", ""), destination)
            elif way == "upload":
                files = [(f.filename or "", await f.read()) for f in form.getlist("images")
                         if hasattr(f, "read") and (f.filename or f.size)]
                if not files:
                    raise Refused("choose one or more PNG or JPEG images to upload")
                made, problems = await console.run(from_uploads, console, files, (form.get("label") or "").strip(),
                                                   destination)
            elif way == "s3":
                made, problems = await console.run(from_s3, console, form.get("source", ""))
            else:
                raise Refused("choose a folder, files to upload, or an S3 prefix")
            if not made:
                raise Refused(" ".join(problems) or "nothing to add")
            arn = await console.run(ensure_dataset, console, name, kind)
            await console.run(update_lines, console, arn, made)
        except Refused as error:
            return add_page(session, name, kind, f"Nothing added: {error}", 400, form)
        shown = "; ".join(problems[:3]) + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else "")
        notes[session] = f"{len(made)} images added to the {kind} dataset." + (f" {shown}" if shown else "")
        return RedirectResponse(dataset_url(name, kind), 303)

    return [Route("/projects/{name}/datasets/{kind}", grid_page, methods=["GET"]),
            Route("/projects/{name}/datasets/{kind}/relabel", relabel_answer, methods=["POST"]),
            Route("/projects/{name}/datasets/{kind}/split", split_answer, methods=["POST"]),
            Route("/projects/{name}/datasets/{kind}/add", add, methods=["GET", "POST"])]
