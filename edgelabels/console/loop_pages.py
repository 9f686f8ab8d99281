"""The label loop's way back: the review folders a version's evaluation sent to Label Studio (console/label_loop.py
writes them), and the corrections people made there written into the project's datasets.

    GET  /console/projects/NAME/label-loop          the project's review folders: date, version, images, imported
    GET  /console/projects/NAME/label-loop/FOLDER   its tasks, the next steps, the import form, what was imported
    POST /console/projects/NAME/label-loop/FOLDER   (multipart form: export = Label Studio's JSON export, csrf)

An import reads the export as `edgelabels label import` does (labeling/importing.py read_export and next_version
over the folder's review.manifest), so the corrected lines are the ones that command writes. Each corrected
image's images/BUCKET/KEY is the dataset's s3://BUCKET/KEY again, and its line goes into every dataset of the
project (TRAIN, TEST) that holds that ref, by UpdateDatasetEntries; a ref in neither is reported, never added. An
entry whose line is no longer the exported one (edited since the export) is not overwritten: the page says so.
Everything is checked before the first write, so an upload that is not JSON, not a Label Studio export, or one
holding another folder's tasks changes nothing. FOLDER is only ever a name the listing found on disk: no path
from the URL reaches the file system.
"""

from __future__ import annotations

import calendar
import json
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from pathlib import Path, PurePosixPath

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from edgelabels import atomic
from edgelabels.console.dataset_pages import settled, update_lines
from edgelabels.console.kit import Refused, utc
from edgelabels.console.label_loop import CONFIG, FOLDER_NAME, LABEL_LOOP, MANIFEST, TASKS, s3_ref_of
from edgelabels.data.paths import Outside, inside
from edgelabels.errors import UserError
from edgelabels.labeling.export import read_source
from edgelabels.labeling.importing import next_version, read_export
from edgelabels.labeling.studio import IMAGE_NAME

IMPORTED = "imported.json"
SHOWN = 3  # refs named in a message; imported.json keeps them all
_importing = threading.Lock()  # one import at a time: two would both read the lines as they were before either


# -- the folders ---------------------------------------------------------------------------------------------------


def _json(path: Path, default):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


def imports_of(folder: Path) -> list[dict]:
    """The imports recorded in the folder's imported.json, oldest first."""
    found = _json(folder / IMPORTED, {})
    return found.get("imports", []) if isinstance(found, dict) else []


def project_folders(console, name: str, only: str | None = None) -> list[dict]:
    """The project's review folders, newest first: {folder, path, version, date, images, imported (the latest
    import or None)}. Only what export_review made: a folder named VERSION-UTCSTAMP holding its tasks and manifest
    (with `only`, the one of that name, if it is one of them)."""
    console.project(name)  # refused: no such project
    try:
        root = inside(console.ctx.directory / LABEL_LOOP, name)
    except Outside as exc:
        raise Refused(str(exc)) from None
    rows = []
    for path in root.iterdir() if root.is_dir() else ():
        found = FOLDER_NAME.match(path.name) if only in (None, path.name) else None
        if not found or path.is_symlink() or not (path / TASKS).is_file() or not (path / MANIFEST).is_file():
            continue
        tasks, done = _json(path / TASKS, []), imports_of(path)
        stamp = calendar.timegm(time.strptime(found["stamp"], "%Y%m%dT%H%M%SZ"))
        rows.append({"folder": path.name, "path": path, "version": found["version"], "date": utc(stamp),
                     "order": (stamp, int(found["n"] or 1), path.name),
                     "images": len(tasks) if isinstance(tasks, list) else 0,
                     "imported": done[-1] if done else None})
    return sorted(rows, key=lambda row: row["order"], reverse=True)


def folder_of(console, name: str, folder: str) -> dict:
    """The listed folder named exactly FOLDER; Refused for any other name."""
    found = next(iter(project_folders(console, name, folder)), None)
    if found is None:
        raise Refused(f"project {name!r} has no review folder named {folder!r}")
    return found


# -- an import -----------------------------------------------------------------------------------------------------


def read_upload(filename: str, data: bytes) -> tuple[str, list[dict]]:
    """(the upload's name as shown, its tasks) by importing.py's reader, its messages naming the upload."""
    shown = PurePosixPath(filename.replace("\\", "/")).name or "the upload"
    with tempfile.TemporaryDirectory(prefix="edgelabels-export-") as temporary:
        path = Path(temporary) / "export.json"
        path.write_bytes(data)
        try:
            return shown, read_export(path)
        except UserError as exc:
            raise UserError(str(exc).replace(str(path), shown)) from None


def check_tasks(tasks: list[dict], refs: set[str], shown: str, project: str, folder: str) -> None:
    """Every task one of this folder's: its source_ref in the folder's manifest and its image below this folder
    (the same image sent twice has the same source_ref in two folders; only the image's path tells them apart)."""
    if not tasks:
        raise UserError(f"{shown}: the export holds no task")
    for task in tasks:
        ref, image = task["data"].get("source_ref"), task["data"].get(IMAGE_NAME)
        query = urllib.parse.urlsplit(image).query if isinstance(image, str) else ""
        where = urllib.parse.parse_qs(query).get("d", [""])[0]
        if not isinstance(ref, str) or ref not in refs or not f"/{where}".endswith(f"/{project}/{folder}/{ref}"):
            raise UserError(f"{shown}: task {task.get('id', '?')} ({where or 'no local image'}) is not one of this "
                            f"review's tasks: export the Label Studio project that holds {folder}'s tasks")


def corrections(folder: Path, shown: str, tasks: list[dict]) -> tuple[dict, list[str], int]:
    """({s3 ref: (the exported line, the corrected line, Counter of what changed)}, the corrected images/BUCKET/KEY
    that name no S3 object, how many tasks people answered), as `edgelabels label import` computes them."""
    source = read_source(folder / MANIFEST)
    check_tasks(tasks, {line["source-ref"] for line in source.lines}, shown, folder.parent.name, folder.name)
    try:
        lines, changes, answered = next_version(source, tasks)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise UserError(f"{shown}: not a Label Studio JSON export of these tasks ({type(exc).__name__}: {exc})") \
            from None
    what = {}
    for row in changes:
        what.setdefault(row["image"], Counter())[row["what"]] += 1
    found, unnamed = {}, []
    for old, new in zip(source.lines, lines):
        local = old["source-ref"]
        if local in what:
            ref = s3_ref_of(local)
            if ref is None:
                unnamed.append(local)
            else:
                found[ref] = ({**old, "source-ref": ref}, {**new, "source-ref": ref}, what[local])
    return found, unnamed, answered


def write_corrections(console, project: dict, found: dict) -> dict:
    """Each corrected line into every dataset that holds its ref and still has the exported line there ->
    {"datasets": {TYPE: {labels, boxes, entries}}, "corrected": {TYPE: refs}, "failed": {TYPE: why}, "missing",
    "edited", "already"}. A dataset that refuses the update is reported, and the others are still corrected."""
    ctx, written, corrected, failed, held = console.ctx, {}, {}, {}, set()
    edited, already = [], []
    for dataset in sorted(project["Datasets"], key=lambda d: d["DatasetType"] != "TRAIN"):
        arn = dataset["DatasetArn"]
        settled(console, arn)
        rows = ctx.store.all_entries(arn)
        lines, counts = [], Counter()
        for row in rows:
            if row["source_ref"] not in found:
                continue
            held.add(row["source_ref"])
            old, new, what = found[row["source_ref"]]
            line = json.loads(row["line"])
            if line == new:
                already.append(row["source_ref"])
            elif line != old:
                edited.append(row["source_ref"])
            else:
                lines.append(new)
                counts.update(what)
        try:
            if lines:
                update_lines(console, arn, lines)
        except Refused as exc:
            failed[dataset["DatasetType"]], lines, counts = str(exc), [], Counter()
        written[dataset["DatasetType"]] = {"labels": counts["label"], "boxes": counts["box"], "entries": len(lines)}
        corrected[dataset["DatasetType"]] = [line["source-ref"] for line in lines]
    return {"datasets": written, "corrected": corrected, "failed": failed, "missing": sorted(set(found) - held),
            "edited": edited, "already": already}


def _n(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def _refs(refs: list[str]) -> str:
    return ", ".join(refs[:SHOWN]) + (f" and {len(refs) - SHOWN} more" if len(refs) > SHOWN else "")


def summary(shown: str, answered: int, tasks: int, result: dict, unnamed: list[str]) -> str:
    parts = [f"{_n(c['labels'], 'label', 'labels')} and {_n(c['boxes'], 'box', 'boxes')}" + (
        " corrected" if i == 0 else "") + f" in {kind}" for i, (kind, c) in enumerate(result["datasets"].items())]
    text = f"{shown}: {answered} of {_n(tasks, 'task', 'tasks')} answered; " + (
        ", ".join(parts) if parts else "the project has no dataset to correct") + "."
    missing = result["missing"] + unnamed
    if missing:
        text += f" {_n(len(missing), 'image is', 'images are')} in neither dataset, not added: {_refs(missing)}."
    if result["edited"]:
        text += (f" {_n(len(result['edited']), 'entry was', 'entries were')} edited since the export, not "
                 f"overwritten: {_refs(result['edited'])}.")
    for kind, why in result["failed"].items():
        text += f" The {kind} dataset was not corrected: {why}."
    if result["already"]:
        text += f" {_n(len(result['already']), 'entry was', 'entries were')} corrected already."
    return text


def import_corrections(console, name: str, folder_name: str, filename: str, data: bytes) -> str:
    """Label Studio's export of a review folder's tasks into the project's datasets; the summary line. UserError:
    the upload cannot be imported, and nothing was changed."""
    project = console.project(name)
    folder = folder_of(console, name, folder_name)["path"]
    shown, tasks = read_upload(filename, data)
    found, unnamed, answered = corrections(folder, shown, tasks)
    with _importing:
        result = write_corrections(console, project, found)
        message = summary(shown, answered, len(tasks), result, unnamed)
        record = {"at": time.time(), "export": shown, "tasks": len(tasks), "answered": answered,
                  "message": message, **result, "missing": result["missing"] + unnamed}
        atomic.write_json(folder / IMPORTED, {"imports": [*imports_of(folder), record]})
    return message


# -- the routes ----------------------------------------------------------------------------------------------------


def listing_page(console, session: str, name: str) -> Response:
    try:
        rows = project_folders(console, name)
    except Refused as exc:
        return console.message(name, str(exc), 404)
    for row in rows:
        row["imported_at"] = utc(row["imported"]["at"]) if row["imported"] else ""
    return console.page("label_loop.html", 200, session, name=name, folders=rows)


def folder_page(console, session: str, name: str, folder: str, message: str = "", status: int = 200) -> Response:
    try:
        row = folder_of(console, name, folder)
    except Refused as exc:
        return console.message("No such review folder", str(exc), 404)
    done = [{**record, "date": utc(record.get("at"))} for record in reversed(imports_of(row["path"]))]
    return console.page("label_loop_folder.html", status, session, name=name, row=row, imports=done,
                        message=message, paths=step_paths(row["path"], f"{name}-{row['version']}-review"))


def step_paths(folder, title: str) -> dict:
    """What the next steps name, for the page to lay them out as commands (next-steps.txt says the same in one
    paragraph): the folder's files, Label Studio's document root (the label-loop folder) and the project title."""
    return {"tasks": folder / TASKS, "config": folder / CONFIG, "images": folder / "images", "root": folder.parent.parent,
            "manifest": folder / MANIFEST, "next": folder / "next.manifest", "title": title}


def routes(console) -> list[Route]:
    async def listing(request: Request) -> Response:
        session = console.session_of(request)
        if session is None:
            return console.locked_out()
        return await console.run(listing_page, console, session, request.path_params["name"])

    async def folder(request: Request) -> Response:
        session = console.session_of(request)
        if session is None:
            return console.locked_out()
        return await console.run(folder_page, console, session, request.path_params["name"],
                                 request.path_params["folder"])

    async def upload(request: Request) -> Response:
        session, form = await console.post(request)
        if session is None:
            return form
        name, where = request.path_params["name"], request.path_params["folder"]
        export = form.get("export")
        try:
            if not hasattr(export, "read") or not (export.filename or export.size):
                raise UserError("choose Label Studio's JSON export of this review (Export > JSON) to upload")
            data = await export.read()
            message = await console.run(import_corrections, console, name, where, export.filename or "", data)
        except Refused as exc:
            return console.message("No such review folder", str(exc), 404)
        except UserError as exc:
            return await console.run(folder_page, console, session, name, where, f"Nothing imported: {exc}", 400)
        return await console.run(folder_page, console, session, name, where, message)

    base = "/projects/{name}/label-loop"
    return [Route(base, listing, methods=["GET"]), Route(base + "/{folder}", folder, methods=["GET"]),
            Route(base + "/{folder}", upload, methods=["POST"])]
