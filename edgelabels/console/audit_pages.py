"""The label audit of a dataset, and a version's review queue sent to the label loop:

    GET  /console/projects/NAME/datasets/KIND/audit         its status (running, done with its suspects, failed with
                                                            the reason) and a form to start one
    POST /console/projects/NAME/datasets/KIND/audit         start one in the background (form: csrf, folds, rounds)
    GET  /console/projects/NAME/datasets/KIND/audit/report  the audit's own report (audit.html)
    POST /console/projects/NAME/versions/VERSION/review     JSON {"refs": [...]}: those entries for Label Studio
                                                            (console/label_loop.py) -> {"message", "folder", "tasks"}

The audit is `edgelabels dataset audit`'s driver (audit/auditor.py audit_with) on the dataset's labelled entries
without errors, its images fetched as a training fetches them (service/trainer.py fetch_images) and its config a
training's (the recipe, the service's budget and --set overrides); quick by default (2 folds, 1 round: each fold is
a training). Its files are kept as console/suspects.py describes, each suspect named by its entry's source-ref.
One audit per dataset at a time, in a thread of its own: an audit is minutes of training, and the service's
background pool is for short work (and waits for it when the service stops).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import shutil
import threading
import time
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Route

from edgelabels import atomic
from edgelabels.console.kit import Refused, dataset_url, utc
from edgelabels.console.label_loop import export_review
from edgelabels.console.suspects import STATUS, audit_folder, suspects_of
from edgelabels.console.thumbnails import thumbnail_url
from edgelabels.data.paths import Outside, s3_object, split_s3_uri
from edgelabels.errors import UserError
from edgelabels.service.versions import manifest_path

log = logging.getLogger("edgelabels.console")

QUICK = {"folds": 2, "rounds": 1}  # two trainings: a first look in minutes; the form asks for more
SHOWN = 50  # suspects listed on the page (all of them in the grid's filter and suspects.csv)
WORK = "work"
# audit.html is a page of its own (inline CSS, data: thumbnails, no script): its own policy, nothing else allowed.
REPORT_HEADERS = {"Content-Security-Policy": "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
                                             "frame-ancestors 'none'; sandbox",
                  "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}

_running: set[Path] = set()  # audit folders with a thread at work in this process
_running_lock = threading.Lock()


def routes(console) -> list[Route]:
    async def page(request: Request) -> Response:
        session = console.session_of(request)
        if session is None:
            return console.locked_out()
        return await console.run(status_page, console, session, request.path_params["name"],
                                 request.path_params["kind"], "", 200)

    async def start(request: Request) -> Response:
        session, form = await console.post(request)
        if session is None:
            return form
        name, kind = request.path_params["name"], request.path_params["kind"]
        try:
            await console.run(start_audit, console, name, kind, form)
        except (Refused, UserError) as exc:
            return await console.run(status_page, console, session, name, kind, f"No audit started: {exc}", 400)
        return RedirectResponse(audit_url(name, kind), 303)

    async def report(request: Request) -> Response:
        if console.session_of(request) is None:
            return console.locked_out()
        try:
            path = audit_folder(console.ctx, request.path_params["name"], request.path_params["kind"]) / "audit.html"
        except Outside:
            path = None
        if path is None or not path.is_file():
            return console.message("No audit report", "This dataset has no finished audit.", 404)
        return FileResponse(path, media_type="text/html", headers=REPORT_HEADERS)

    async def review(request: Request) -> Response:
        session, body = await console.fetch(request)
        if session is None:
            return body
        refs = body.get("refs") if isinstance(body, dict) else None
        if not isinstance(refs, list) or not refs or not all(isinstance(r, str) and r for r in refs):
            return console.json({"message": "Send {\"refs\": [...]}: the source-refs of the images to review."}, 400)
        try:
            done = await console.run(export_review, console, request.path_params["name"],
                                     request.path_params["version"], refs)
        except Refused as exc:
            return console.json({"message": str(exc)}, 404)
        except UserError as exc:
            return console.json({"message": str(exc)}, 400)
        return console.json(done)

    base = "/projects/{name}/datasets/{kind}/audit"
    return [Route(base, page, methods=["GET"]), Route(base, start, methods=["POST"]),
            Route(base + "/report", report, methods=["GET"]),
            Route("/projects/{name}/versions/{version}/review", review, methods=["POST"])]


def audit_url(name: str, kind: str) -> str:
    return f"{dataset_url(name, kind)}/audit"


# ---------------------------------------------------------------- the page


def status_page(console, session: str, name: str, kind: str, message: str, status: int) -> Response:
    try:
        dataset = find_dataset(console, name, kind)
        record = read_status(console.ctx, name, kind)
    except (Refused, Outside) as exc:
        return console.message("No such dataset", str(exc), 404)
    suspects = sorted(suspects_of(console.ctx, name, kind).items(), key=lambda item: item[1]["rank"])
    shown = [{"ref": ref, "thumbnail": thumbnail_url(ref, 64), **value} for ref, value in suspects[:SHOWN]]
    report = record.get("state") == "done" and (audit_folder(console.ctx, name, kind) / "audit.html").is_file()
    return console.page("audit.html", status, session, name=name, kind=kind, dataset_status=dataset["Status"],
                        record=record, started=utc(record.get("started")), finished=utc(record.get("finished")),
                        suspects=shown, total=len(suspects), report=report, quick=QUICK, message=message)


def read_status(ctx, name: str, kind: str) -> dict:
    """status.json, or {} before the first audit; a `running` audit no thread of this process runs (the service
    was stopped under it) reads as failed, with what to do."""
    folder = audit_folder(ctx, name, kind)
    try:
        record = json.loads((folder / STATUS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    with _running_lock:
        alive = folder in _running
    if record.get("state") == "running" and not alive:
        record.update(state="failed", reason="the service stopped while it ran: start it again (the finished "
                                             "folds are not kept)")
    return record


def find_dataset(console, name: str, kind: str) -> dict:
    """The project's dataset of KIND (DescribeProjects' Datasets item); Refused when there is none."""
    project, found = console.dataset(name, kind)
    return {**found, "ProjectArn": project["ProjectArn"]}


# ---------------------------------------------------------------- starting and running an audit


def start_audit(console, name: str, kind: str, form: dict) -> None:
    """Check the request, then the audit in a thread of its own; Refused / UserError say why none started."""
    from edgelabels.audit.folds import check_folds, check_rounds

    dataset = find_dataset(console, name, kind)
    if dataset["Status"].endswith("_IN_PROGRESS"):
        raise UserError(f"the {kind} dataset is {dataset['Status']}: audit it once that is done")
    folds, rounds = (_whole(form.get(key), QUICK[key], key) for key in ("folds", "rounds"))
    check_folds(folds)
    check_rounds(rounds)
    try:
        folder = audit_folder(console.ctx, name, kind)
    except Outside:
        raise UserError(f"project name {name!r} cannot name a folder") from None
    with _running_lock:
        if folder in _running:
            raise UserError("an audit of this dataset is running: wait for it to end")
        _running.add(folder)
    try:
        write_status(folder, state="running", started=time.time(), folds=folds, rounds=rounds,
                     progress="fetching the images")
        thread = threading.Thread(target=run_audit, args=(console.ctx, folder, dataset["DatasetArn"], folds, rounds),
                                  daemon=True, name=f"audit-{name}-{kind}")
        thread.start()
    except BaseException:
        with _running_lock:
            _running.discard(folder)
        raise


def _whole(text, default: int, key: str) -> int:
    if text in (None, ""):
        return default
    try:
        return int(text)
    except ValueError:
        raise UserError(f"{key} {text!r}: give a whole number") from None


def write_status(folder: Path, **fields) -> None:
    atomic.write_json(folder / STATUS, fields)


def run_audit(ctx, folder: Path, dataset_arn: str, folds: int, rounds: int) -> None:
    """The audit from the dataset's entries to the files console/suspects.py reads; status.json follows it."""
    from edgelabels.service.entries import EntriesError
    from edgelabels.service.s3 import S3Error

    record = json.loads((folder / STATUS).read_text(encoding="utf-8"))

    def say(line: str) -> None:
        record["progress"] = line
        write_status(folder, **record)

    try:
        record |= audit_dataset(ctx, folder, dataset_arn, folds, rounds, say)
        record.update(state="done")
    except (UserError, S3Error, EntriesError, OSError, ValueError) as exc:
        # the audit names the manifest it read, a file of the console's own: the user knows it as the dataset
        record.update(state="failed", reason=str(exc).replace(f"{frozen(folder)}: ", "the dataset: "))
    except Exception as exc:  # noqa: BLE001 - a bug must end as a failed audit, not as one running forever
        log.exception("the audit in %s failed", folder)
        record.update(state="failed", reason=f"the audit failed ({type(exc).__name__}: {exc})")
    finally:
        record["finished"] = time.time()
        write_status(folder, **record)
        with _running_lock:
            _running.discard(folder)


def audit_dataset(ctx, folder: Path, dataset_arn: str, folds: int, rounds: int, say) -> dict:
    """Freeze the labelled entries as a training freezes them, fetch their images, audit, publish; the counts."""
    from edgelabels.audit.auditor import audit_with
    from edgelabels.service.trainer import fetch_images
    from edgelabels.service.versions import freeze
    from edgelabels.train.recipe import source_config

    work = folder / WORK
    shutil.rmtree(work, ignore_errors=True)  # an earlier audit's folds would be refused (other images), not resumed
    rows = ctx.store.all_entries(dataset_arn)
    manifest = frozen(folder)
    data = manifest.parent
    freeze(data, {"train": [(row["line"], row["errors"]) for row in rows], "test": []})
    if not manifest.read_text(encoding="utf-8").strip():
        raise UserError("the dataset has no labelled entry without errors: label some images first")
    root = fetch_images(ctx, data)
    config = source_config(str(manifest), [f"data.s3_root={json.dumps(str(root))}", *ctx.settings.overrides],
                           ctx.settings.budget)
    result = audit_with(config, work / "audit", folds=folds, rounds=rounds, say=say)
    refs = [json.loads(line)["source-ref"] for line in manifest.read_text(encoding="utf-8").splitlines() if line]
    publish(work / "audit", folder, data, root, refs)
    summary, how = result["summary"], result["how"]
    return {"images": result["images"], "suspects": result["suspects"], "estimated": summary["estimated_count"],
            "share": summary.get("estimated_share"), "counts": summary.get("counts") or {},
            "seconds": how.get("seconds"), "folds": how.get("folds") or folds, "rounds": how.get("rounds", 1),
            "progress": "done"}


def frozen(folder: Path) -> Path:
    """The audited entries as a training freezes them (service/versions.py): work/data/train.manifest."""
    return manifest_path(folder / WORK / "data", "train")


def publish(out: Path, folder: Path, data: Path, root: Path, refs: list[str]) -> None:
    """The audit's files into the dataset's audit folder, suspects.csv's images named by their source-refs (the
    audit names them by the fetched copies' paths: absolute, or relative to the manifest's folder)."""
    by_path = {}
    for ref in refs:
        try:
            by_path[os.path.realpath(s3_object(root, *split_s3_uri(ref)))] = ref
        except ValueError:
            continue
    with open(out / "suspects.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    image, detail = rows[0].index("image"), rows[0].index("detail")
    for row in rows[1:]:
        row[image] = by_path.get(os.path.realpath(data / row[image]), row[image])
        row[detail] = row[detail].replace(f"{root}{os.sep}", "s3://")  # "identical to ROOT/bucket/key (labelled x)"
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    atomic.write_text(folder / "audit.json", (out / "audit.json").read_text(encoding="utf-8"))
    atomic.write_text(folder / "audit.html", (out / "audit.html").read_text(encoding="utf-8"))
    atomic.write_text(folder / "suspects.csv", buffer.getvalue())
