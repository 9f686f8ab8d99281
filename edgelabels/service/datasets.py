"""Rekognition's dataset operations: CreateDataset, DescribeDataset, ListDatasetEntries, ListDatasetLabels,
UpdateDatasetEntries, DistributeDatasetEntries, DeleteDataset (issue 27).

A dataset holds Ground Truth lines keyed by source-ref (the store's entries), each checked by Rekognition's rules
(entries.check_entry) with its errors kept beside it: an entry with errors stays in the dataset and is listed
with `cl-errors`, as Rekognition lists it, instead of failing the dataset. What fails a dataset is what AWS calls
a terminal error (Debugging terminal dataset errors): a manifest that cannot be read or has no file extension, is
too large, is empty, has too many lines, or whose lines are mostly unusable (not JSON, no source-ref: more than
20%, or all of them).

CreateDataset, UpdateDatasetEntries and DistributeDatasetEntries answer at once; their work runs in the
background (ctx.submit) while the dataset is *_IN_PROGRESS, and the store records that work (`request`) with the
status, so that `recover` redoes whatever a killed process left in progress. Each step is safe to redo: entries
are written by source-ref (a line written twice is one entry) and a distribution moves its entries and completes
both datasets in one transaction.
"""

from __future__ import annotations

import json
import logging

from edgelabels.data.sources import MAX_INVALID_FRACTION
from edgelabels.serve.api_errors import ApiError
from edgelabels.service import entries as rules
from edgelabels.service.arns import parse_dataset_arn, parse_project_arn
from edgelabels.service.context import ServiceContext
from edgelabels.service.projects import DATASET_MESSAGES, check_tags, seconds
from edgelabels.service.s3 import S3Error
from edgelabels.service.store import AlreadyExists, NotFound

log = logging.getLogger(__name__)

MAX_MANIFEST_BYTES = 1 << 30  # Custom Labels' quota on a manifest file (1 GB)
MAX_ENTRIES = 250_000  # Custom Labels' quota on the images of a dataset
INVALID = "InvalidParameterException"
READY = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_FAILED"}  # what ListDatasetEntries and friends read
DISTRIBUTABLE = {"CREATE_COMPLETE", "UPDATE_COMPLETE"}
_OURS = ("cl-metadata", "cl-errors")  # keys ListDatasetEntries adds; a line sent back in keeps none of them


class DatasetFailure(Exception):
    """A terminal dataset error the user can fix: the dataset fails with this message (StatusMessageCode
    CLIENT_ERROR)."""


# -- reading lines ----------------------------------------------------------------------------------------


def _own_line(line: str) -> str:
    """The line without the keys this service adds when listing, so that a listed entry sent back is the same."""
    try:
        document = json.loads(line)
    except ValueError:
        return line
    if not isinstance(document, dict) or not any(key in document for key in _OURS):
        return line
    return json.dumps({k: v for k, v in document.items() if k not in _OURS}, ensure_ascii=False)


def checked_lines(lines: list[str], where: str) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """([(compact line, errors)] of the lines a dataset keeps, [problems of the lines it cannot keep]).

    Blank lines are skipped. A line the dataset cannot keep has no source-ref to be known by (not JSON, or no
    source-ref); too many of those fail the manifest (DatasetFailure)."""
    kept, dropped, total = [], [], 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        total += 1
        if total > MAX_ENTRIES:
            raise DatasetFailure(f"ERROR_MANIFEST_ROWS_EXCEEDS_MAXIMUM: {where} has more than {MAX_ENTRIES} "
                                 f"JSON lines, the most a dataset holds; split it")
        source_ref, compact, errors = rules.check_entry(_own_line(line))
        if source_ref is None:
            dropped.append(f"line {number}: {errors[0] if errors else 'no source-ref'}")
        else:
            kept.append((compact, errors))
    if total == 0:
        raise DatasetFailure(f"ERROR_EMPTY_MANIFEST: {where} holds no JSON lines; add one line per image")
    if not kept or len(dropped) > MAX_INVALID_FRACTION * total:
        raise DatasetFailure(f"ERROR_TOO_MANY_INVALID_ROWS_IN_MANIFEST: {len(dropped)} of {total} lines of {where} "
                             f"cannot be used (more than {MAX_INVALID_FRACTION:.0%}); first, {dropped[0]}")
    return kept, dropped


def _stats(ctx: ServiceContext, arn: str) -> dict:
    return rules.dataset_stats(ctx.store.all_entries(arn))


# -- the work done in the background ----------------------------------------------------------------------


def _create(ctx: ServiceContext, arn: str, request: dict) -> str:
    """Fill a new dataset from its source; the StatusMessage it ends with."""
    if "manifest" in request:
        uri = request["manifest"]
        if "." not in uri.rsplit("/", 1)[1]:
            raise DatasetFailure(f"ERROR_MANIFEST_INACCESSIBLE_OR_UNSUPPORTED_FORMAT: {uri} has no file extension "
                                 f"(Rekognition requires one; by convention .manifest)")
        try:
            lines = ctx.s3.read_lines(uri, max_bytes=MAX_MANIFEST_BYTES)
        except S3Error as error:
            code = ("ERROR_MANIFEST_SIZE_TOO_LARGE" if error.problem == "TooLarge"
                    else "ERROR_MANIFEST_INACCESSIBLE_OR_UNSUPPORTED_FORMAT")
            raise DatasetFailure(f"{code}: {error}") from None
        kept, dropped = checked_lines(lines, uri)
    elif "copy" in request:
        try:
            source = ctx.store.dataset(request["copy"])
        except NotFound:
            raise DatasetFailure(f"the dataset to copy, {request['copy']}, no longer exists") from None
        if source["status"] not in READY:
            raise DatasetFailure(f"the dataset to copy, {request['copy']}, is {source['status']}")
        kept, dropped = [(item["line"], item["errors"]) for item in ctx.store.all_entries(source["arn"])], []
    else:
        kept, dropped = [], []
    ctx.store.put_entries(arn, kept)
    skipped = f"; {len(dropped)} lines skipped (first, {dropped[0]})" if dropped else ""
    return f"The dataset was successfully created with {len(kept)} entries{skipped}."


def _update(ctx: ServiceContext, arn: str, request: dict) -> str:
    kept, _ = checked_lines(request["lines"], "Changes.GroundTruth")
    ctx.store.put_entries(arn, kept)
    return f"The dataset was successfully updated ({len(kept)} entries added or replaced)."


def _distribute(ctx: ServiceContext, train: str, test: str) -> None:
    kept, moved = rules.distribute(ctx.store.all_entries(train))
    ctx.store.set_datasets_status(
        [train, test], "UPDATE_COMPLETE",
        f"The dataset was successfully updated ({len(moved)} entries moved from training to test).",
        stats={train: rules.dataset_stats(kept), test: rules.dataset_stats(moved)},
        moves=[(item["source_ref"], train, test) for item in moved])


def _work(ctx: ServiceContext, arn: str) -> None:
    """Do the work a dataset's *_IN_PROGRESS status records, and end that status (the background task)."""
    try:
        row = ctx.store.dataset(arn)
    except NotFound:
        return
    request, status = row["request"] or {}, row["status"]
    kind = request.get("kind")
    if kind == "distributed" or status not in ("CREATE_IN_PROGRESS", "UPDATE_IN_PROGRESS"):
        return  # the training dataset's work completes its test dataset; or there is no work (done, deleting)
    failed = "CREATE_FAILED" if status == "CREATE_IN_PROGRESS" else "UPDATE_FAILED"
    together = [arn, request["test"]] if kind == "distribute" else [arn]
    try:
        if kind == "distribute":
            _distribute(ctx, arn, request["test"])
        elif kind == "create" and status == "CREATE_IN_PROGRESS":
            ctx.store.set_dataset_status(arn, "CREATE_COMPLETE", _create(ctx, arn, request), _stats(ctx, arn))
        elif kind == "update" and status == "UPDATE_IN_PROGRESS":
            ctx.store.set_dataset_status(arn, "UPDATE_COMPLETE", _update(ctx, arn, request), _stats(ctx, arn))
        else:  # a service.db older than the `request` column: nothing says what the work was
            raise RuntimeError(f"no record of the work this {status} dataset was doing; send the request again")
    except DatasetFailure as failure:
        ctx.store.set_datasets_status(together, failed, str(failure), code="CLIENT_ERROR")
    except Exception as error:  # noqa: BLE001 - the dataset must not stay in progress; the log has the trace
        log.exception("dataset %s: %s", arn, error)
        ctx.store.set_datasets_status(together, failed, f"the service failed: {type(error).__name__}: {error}",
                                      code="SERVICE_ERROR")


# -- the operations ---------------------------------------------------------------------------------------


def _dataset(ctx: ServiceContext, value: str) -> dict:
    return ctx.store.dataset(str(parse_dataset_arn(value)))  # ArnError: InvalidParameter; NotFound


def _readable(ctx: ServiceContext, value: str) -> dict:
    """A dataset whose entries can be listed: ResourceInUse while its work runs, ResourceNotReady if it failed."""
    row = _dataset(ctx, value)
    if row["status"] not in READY:
        busy = row["status"].endswith("_IN_PROGRESS")
        raise ApiError("ResourceInUseException" if busy else "ResourceNotReadyException",
                       f"dataset {row['arn']} is {row['status']}; its entries can be read once it is complete")
    return row


def _source(ctx: ServiceContext, source: dict) -> dict:
    """CreateDataset's DatasetSource as the work to record: {"manifest": URI}, {"copy": ARN} or {} (empty)."""
    manifest, copy = source.get("GroundTruthManifest"), source.get("DatasetArn")
    if manifest is not None and copy is not None:
        raise ApiError(INVALID, "DatasetSource takes a GroundTruthManifest or a DatasetArn, not both")
    if manifest is not None:
        s3_object = manifest.get("S3Object") or {}
        if not s3_object.get("Bucket") or not s3_object.get("Name"):
            raise ApiError(INVALID, "DatasetSource.GroundTruthManifest.S3Object needs a Bucket and a Name")
        if s3_object.get("Version"):
            raise ApiError(INVALID, "S3Object.Version: this service reads the current object only; leave it out")
        return {"kind": "create", "manifest": f"s3://{s3_object['Bucket']}/{s3_object['Name']}"}
    if copy is not None:
        row = _dataset(ctx, copy)
        if row["status"] not in READY:
            raise ApiError(INVALID, f"dataset {row['arn']} is {row['status']}; copy one that is complete")
        return {"kind": "create", "copy": row["arn"]}
    return {"kind": "create"}


def create_dataset(ctx: ServiceContext, params: dict) -> dict:
    project = str(parse_project_arn(params["ProjectArn"]))
    request = _source(ctx, params.get("DatasetSource") or {})
    tags = params.get("Tags") or {}
    check_tags(tags, too_many="LimitExceededException")
    try:
        row = ctx.store.create_dataset(project, params["DatasetType"], request, tags)
    except AlreadyExists as error:  # CreateDataset's own code for it (the store's is ResourceInUse)
        raise ApiError("ResourceAlreadyExistsException", str(error)) from None
    ctx.submit(_work, ctx, row["arn"])
    return {"DatasetArn": row["arn"]}


def describe_dataset(ctx: ServiceContext, params: dict) -> dict:
    row = _dataset(ctx, params["DatasetArn"])
    stats = {"LabeledEntries": 0, "TotalEntries": 0, "TotalLabels": 0, "ErrorEntries": 0, **row["stats"]}
    return {"DatasetDescription": {
        "CreationTimestamp": seconds(row["created_ms"]),
        "LastUpdatedTimestamp": seconds(row["updated_ms"]),
        "Status": row["status"],
        "StatusMessage": row["status_message"] or DATASET_MESSAGES[row["status"]],
        "StatusMessageCode": row["status_code"],
        "DatasetStats": stats}}


def listed_entry(item: dict) -> str:
    """A stored entry as ListDatasetEntries answers it: the line, `cl-metadata.is_labeled` and, when it has
    errors, `cl-errors` ([{code, message}], the layout of AWS's validation results). An entry counts as
    labeled when it has a label attribute, valid or not, as in AWS's own example of a line in error."""
    document = json.loads(item["line"])
    document["cl-metadata"] = {"is_labeled": any(k.endswith("-metadata") for k in document if k not in _OURS)}
    if item["errors"]:
        document["cl-errors"] = [dict(zip(("code", "message"), (part.strip() for part in error.split(":", 1))))
                                 for error in item["errors"]]
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


def list_dataset_entries(ctx: ServiceContext, params: dict) -> dict:
    row = _readable(ctx, params["DatasetArn"])
    filters = {"contains_labels": params.get("ContainsLabels"), "labeled": params.get("Labeled"),
               "source_ref_contains": params.get("SourceRefContains"), "has_errors": params.get("HasErrors")}
    items = rules.filter_entries(ctx.store.all_entries(row["arn"]), **filters)
    listing = f"dataset-entries:{json.dumps([row['arn'], filters], sort_keys=True)}"
    page, token = ctx.store.page(listing, items, params.get("MaxResults"), params.get("NextToken"))
    return {"DatasetEntries": [listed_entry(item) for item in page], **({"NextToken": token} if token else {})}


def list_dataset_labels(ctx: ServiceContext, params: dict) -> dict:
    row = _readable(ctx, params["DatasetArn"])
    labels = rules.dataset_labels(ctx.store.all_entries(row["arn"]))
    page, token = ctx.store.page(f"dataset-labels:{row['arn']}", labels, params.get("MaxResults"),
                                 params.get("NextToken"))
    return {"DatasetLabelDescriptions": page, **({"NextToken": token} if token else {})}


def update_dataset_entries(ctx: ServiceContext, params: dict) -> dict:
    row = _dataset(ctx, params["DatasetArn"])
    lines = rules.decode_update(params["Changes"]["GroundTruth"])  # EntriesError: refused, nothing changed
    try:
        checked_lines(lines, "Changes.GroundTruth")
    except DatasetFailure as failure:
        raise ApiError(INVALID, str(failure)) from None
    if row["stats"].get("TotalEntries", 0) + len(lines) > MAX_ENTRIES:  # counting every line as an addition
        raise ApiError("LimitExceededException", f"dataset {row['arn']} would hold more than {MAX_ENTRIES} entries")
    ctx.store.set_dataset_status(row["arn"], "UPDATE_IN_PROGRESS", request={"kind": "update", "lines": lines})
    ctx.submit(_work, ctx, row["arn"])
    return {}


def distribute_dataset_entries(ctx: ServiceContext, params: dict) -> dict:
    rows = [_dataset(ctx, item["Arn"]) for item in params["Datasets"]]
    by_type = {row["type"]: row for row in rows}
    if sorted(by_type) != ["test", "train"]:
        raise ApiError(INVALID, "Datasets must be a project's training dataset and its test dataset")
    train, test = by_type["train"], by_type["test"]
    if train["project_arn"] != test["project_arn"]:
        raise ApiError(INVALID, f"{train['arn']} and {test['arn']} belong to different projects")
    for row in rows:
        if row["status"] not in DISTRIBUTABLE:
            raise ApiError("ResourceNotReadyException", f"dataset {row['arn']} is {row['status']}; "
                           f"distribute datasets whose creation or update completed")
    if ctx.store.all_entries(test["arn"]):
        raise ApiError(INVALID, f"the test dataset {test['arn']} must be empty to receive 20% of the training one")
    ctx.store.set_datasets_status([train["arn"], test["arn"]], "UPDATE_IN_PROGRESS", requests={
        train["arn"]: {"kind": "distribute", "test": test["arn"]},
        test["arn"]: {"kind": "distributed", "train": train["arn"]}})  # the train dataset's work does both
    ctx.submit(_work, ctx, train["arn"])
    return {}


def delete_dataset(ctx: ServiceContext, params: dict) -> dict:
    row = _dataset(ctx, params["DatasetArn"])
    ctx.store.set_dataset_status(row["arn"], "DELETE_IN_PROGRESS")  # refused while created or updated
    ctx.store.delete_dataset(row["arn"])
    return {}


OPERATIONS = {
    "CreateDataset": create_dataset,
    "DescribeDataset": describe_dataset,
    "ListDatasetEntries": list_dataset_entries,
    "ListDatasetLabels": list_dataset_labels,
    "UpdateDatasetEntries": update_dataset_entries,
    "DistributeDatasetEntries": distribute_dataset_entries,
    "DeleteDataset": delete_dataset,
}


def recover(ctx: ServiceContext) -> None:
    """Redo the work a killed process left in progress (in the background, as the first time), and finish the
    deletions it started."""
    for row in ctx.store.datasets_in_progress():
        if row["status"] == "DELETE_IN_PROGRESS":
            ctx.store.delete_dataset(row["arn"])
        elif (row["request"] or {}).get("kind") != "distributed":  # the train dataset's work redoes it
            ctx.submit(_work, ctx, row["arn"])
