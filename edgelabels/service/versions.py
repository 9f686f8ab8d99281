"""Project versions: CreateProjectVersion queues a training, DescribeProjectVersions follows it, Start/Stop load and
unload its export, DetectCustomLabels answers with it, DeleteProjectVersion removes it.

A version's training data is frozen when it is created: its entries (from the project's TRAIN and TEST datasets,
or from the TrainingData/TestingData manifests in S3) are checked and written into its folder
(ctx.version_dir) before its job is queued, so editing or deleting a dataset later never changes a queued or
running training. Per data side (train, test) the folder holds:
    SIDE.validation.jsonl  every line of the side, each with its errors (the validation results file's lines)
    SIDE.manifest          the labelled lines without errors: what trains (or tests) the model
The trainer (service/trainer.py) adds image errors it finds to both, then trains.

Status messages are always a sentence a person can act on; state errors answer ResourceInUseException, the one
state error StartProjectVersion, StopProjectVersion and DeleteProjectVersion document.
"""

from __future__ import annotations

import logging
import shutil

from edgelabels import atomic
from edgelabels.serve.api_errors import ApiError
from edgelabels.serve.request_body import MAX_IMAGE_BYTES
from edgelabels.service import outputs
from edgelabels.service.context import ServiceContext
from edgelabels.service.entries import check_entry, distribute, is_labeled
from edgelabels.service.s3 import S3Error
from edgelabels.service.store import NotFound, TransitionRefused

log = logging.getLogger("edgelabels.service")

SIDES = ("train", "test")
MANIFEST_MAX_BYTES = 1 << 30  # Rekognition's largest manifest file: 1 GB
EVERYTHING = 10 ** 9  # a page size that holds every row
FEATURE = "CUSTOM_LABELS"
MESSAGES = {  # the status message when the status itself says it all
    "TRAINING_IN_PROGRESS": "The model is being trained.",
    "TRAINING_COMPLETED": "The model is ready to run.",
    "STARTING": "The model is being started.",
    "RUNNING": "The model is running.",
    "STOPPING": "The model is being stopped.",
    "STOPPED": "The model is ready to run.",
    "DELETING": "The model is being deleted.",
    "TRAINING_FAILED": "The training failed; see the version's job.log in the service directory.",
    "FAILED": "The model could not be started; start it again.",
}


def validation_path(folder, side: str):
    return folder / f"{side}.validation.jsonl"


def manifest_path(folder, side: str):
    return folder / f"{side}.manifest"


def refused(message: str, code: str = "InvalidParameterException") -> ApiError:
    return ApiError(code, message)


# ---------------------------------------------------------------- CreateProjectVersion


def create_project_version(ctx: ServiceContext, params: dict) -> dict:
    project_arn = params["ProjectArn"]
    ctx.store.project(project_arn)
    if not params["OutputConfig"].get("S3Bucket"):
        raise refused("OutputConfig.S3Bucket: name the bucket the training results are written to")
    sides, inputs = _training_data(ctx, project_arn, params)
    details = {"inputs": inputs, "feature": FEATURE}
    for key in ("VersionDescription", "KmsKeyId"):
        if params.get(key) is not None:
            details[key] = params[key]
    version = ctx.store.create_version(project_arn, params["VersionName"], output_config=params["OutputConfig"],
                                       tags=params.get("Tags") or {}, enqueue=False)
    ctx.store.update_version(version["arn"], details=details)
    try:
        freeze(ctx.version_dir(version["arn"]), sides)
    except OSError as exc:  # the service's own disk: the version exists, its training cannot start
        ctx.store.set_version_status(version["arn"], "TRAINING_FAILED", f"The training data could not be saved in "
                                     f"the service's directory ({exc}); free some space and create a new version.")
    else:
        ctx.store.enqueue(version["arn"])  # only now: a queued job always finds its data
    return {"ProjectVersionArn": version["arn"]}


def _training_data(ctx: ServiceContext, project_arn: str, params: dict) -> tuple[dict, dict]:
    """({side: [(line, errors)]}, the inputs as TrainingDataResult/TestingDataResult show them)."""
    training, testing = params.get("TrainingData"), params.get("TestingData")
    datasets = {d["type"].lower(): d for d in ctx.store.datasets(project_arn)}
    if training is None and testing is None:
        return _from_datasets(ctx, project_arn, datasets), {}
    if datasets:
        raise refused(f"project {project_arn} has datasets: train it from them, without TrainingData and "
                      "TestingData (or delete its datasets)")
    if training is None or testing is None:
        raise refused("TrainingData and TestingData go together: give both (TestingData.AutoCreate=true splits "
                      "20% of the training data off for testing)")
    train = _from_assets(ctx, training.get("Assets") or [], "TrainingData")
    inputs = {"TrainingData": training, "TestingData": testing}
    if testing.get("AutoCreate"):
        if testing.get("Assets"):
            raise refused("TestingData: give Assets or AutoCreate=true, not both")
        _, moved = distribute([line for line, errors in train if not errors and is_labeled(line)])
        tested = set(moved)
        kept = [row for row in train if row[0] not in tested]
        return {"train": kept, "test": [(line, []) for line in moved]}, inputs
    return {"train": train, "test": _from_assets(ctx, testing.get("Assets") or [], "TestingData")}, inputs


def _from_datasets(ctx: ServiceContext, project_arn: str, datasets: dict) -> dict:
    missing = [side for side in SIDES if side not in datasets]
    if missing:
        raise refused(f"project {project_arn} has no {' and no '.join(s.upper() for s in missing)} dataset: create "
                      "it (CreateDataset), or give TrainingData and TestingData")
    sides = {}
    for side in SIDES:
        dataset = datasets[side]
        if dataset["status"].endswith("_IN_PROGRESS"):
            raise refused(f"dataset {dataset['arn']} is {dataset['status']}; train once it is CREATE_COMPLETE or "
                          "UPDATE_COMPLETE", "ResourceInUseException")
        if dataset["status"] not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
            why = dataset["status_message"] or "see DescribeDataset"
            raise refused(f"dataset {dataset['arn']} is {dataset['status']} ({why}); fix it (UpdateDatasetEntries) "
                          "or create it again, then train")
        rows = ctx.store.all_entries(dataset["arn"])
        sides[side] = [(row["line"], row["errors"]) for row in rows]
    return sides


def _from_assets(ctx: ServiceContext, assets: list, where: str) -> list:
    if not assets:
        raise refused(f"{where}.Assets: give a GroundTruthManifest")
    entries = []
    for i, asset in enumerate(assets):
        s3object = (asset.get("GroundTruthManifest") or {}).get("S3Object")
        if not s3object:
            raise refused(f"{where}.Assets[{i}]: give GroundTruthManifest.S3Object (Bucket, Name)")
        for line in ctx.s3.read_lines(outputs.uri(s3object), max_bytes=MANIFEST_MAX_BYTES):
            if line.strip():
                _, compact, errors = check_entry(line)
                entries.append((compact, errors))
    return entries


def freeze(folder, sides: dict) -> None:
    """Write each side's validation lines and manifest (see the module's docstring), each file whole or absent."""
    folder.mkdir(parents=True, exist_ok=True)
    for side in SIDES:
        rows = sides[side]
        atomic.write_text(validation_path(folder, side),
                          "".join(outputs.validation_line(line, errors) + "\n" for line, errors in rows))
        atomic.write_text(manifest_path(folder, side),
                          "".join(line + "\n" for line, errors in rows if not errors and is_labeled(line)))


# ---------------------------------------------------------------- DescribeProjectVersions


def describe_project_versions(ctx: ServiceContext, params: dict) -> dict:
    rows, token = ctx.store.versions(params["ProjectArn"], names=params.get("VersionNames"),
                                     max_results=params.get("MaxResults"), next_token=params.get("NextToken"))
    answer = {"ProjectVersionDescriptions": [description(row) for row in rows]}
    if token:
        answer["NextToken"] = token
    return answer


def description(row: dict) -> dict:
    """A store row as botocore's ProjectVersionDescription (timestamps as epoch seconds)."""
    details = row["details"]
    status = row["status"]
    found = {
        "ProjectVersionArn": row["arn"],
        "CreationTimestamp": row["created_ms"] / 1000,
        "Status": status,
        "StatusMessage": row["status_message"] or MESSAGES.get(status, status),
        "OutputConfig": row["output_config"],
        "Feature": details.get("feature", FEATURE),
    }
    found["TrainingDataResult"], found["TestingDataResult"] = outputs.data_results(details.get("inputs", {}),
                                                                                   details.get("outputs"))
    if outputs.MANIFEST_SUMMARY in details.get("outputs", {}):
        found["ManifestSummary"] = {"S3Object": details["outputs"][outputs.MANIFEST_SUMMARY]}
    if row["training_end_ms"] is not None:
        found["TrainingEndTimestamp"] = row["training_end_ms"] / 1000
    if "f1" in details:  # trained: AWS bills (and answers BillableTrainingTimeInSeconds for) a successful training
        found["BillableTrainingTimeInSeconds"] = int(round(details.get("billable_s", 0)))
        found["EvaluationResult"] = {"F1Score": details["f1"],
                                     "Summary": {"S3Object": details["outputs"][outputs.SUMMARY]}}
    if status in ("STARTING", "RUNNING", "STOPPING") and row["min_inference_units"] is not None:
        found["MinInferenceUnits"] = row["min_inference_units"]
        found["MaxInferenceUnits"] = details.get("max_inference_units", row["min_inference_units"])
    for key in ("VersionDescription", "KmsKeyId"):
        if key in details:
            found[key] = details[key]
    return found


# ---------------------------------------------------------------- StartProjectVersion, StopProjectVersion


def start_project_version(ctx: ServiceContext, params: dict) -> dict:
    arn, units = params["ProjectVersionArn"], params["MinInferenceUnits"]
    most = params.get("MaxInferenceUnits")
    if most is not None and most < units:
        raise refused(f"MaxInferenceUnits ({most}) must be at least MinInferenceUnits ({units})")
    version = ctx.store.version(arn)
    if version["status"] == "TRAINING_FAILED":
        raise refused(f"{arn} failed to train ({version['status_message'] or 'see its job.log'}); it has no model "
                      "to start: train a new version", "ResourceInUseException")
    details = {**version["details"], "max_inference_units": most or units}
    _in_use(lambda: ctx.store.set_version_status(arn, "STARTING", min_inference_units=units, details=details))
    ctx.submit(load, ctx, arn)
    return {"Status": "STARTING"}


def load(ctx: ServiceContext, arn: str, then: str | None = "RUNNING") -> None:
    """Open the version's export into ctx.models; then move it to `then` (FAILED with the reason if it cannot)."""
    from edgelabels.runtime.answers import open_edge_model

    try:
        version = ctx.store.version(arn)
        model = open_edge_model(version["export_dir"], precision=ctx.settings.precision, threads=ctx.settings.threads)
    except NotFound:
        return
    except Exception as exc:  # noqa: BLE001 - whatever stops the model loading is the version's status message
        log.exception("starting %s failed", arn)
        message = f"The model could not be loaded ({exc}); start it again."
        if ctx.store.version(arn)["status"] == "RUNNING":  # after a restart: a running model can only stop
            ctx.store.set_version_status(arn, "STOPPING")
            ctx.store.set_version_status(arn, "STOPPED", message)
        else:
            ctx.store.set_version_status(arn, "FAILED", message)
        return
    with ctx.models_lock:
        ctx.models[arn] = model
    if then is not None:
        ctx.store.set_version_status(arn, then)


def stop_project_version(ctx: ServiceContext, params: dict) -> dict:
    return _move_then(ctx, params["ProjectVersionArn"], "STOPPING", unload)


def unload(ctx: ServiceContext, arn: str) -> None:
    with ctx.models_lock:
        ctx.models.pop(arn, None)
    ctx.store.set_version_status(arn, "STOPPED")


# ---------------------------------------------------------------- DeleteProjectVersion


def delete_project_version(ctx: ServiceContext, params: dict) -> dict:
    return _move_then(ctx, params["ProjectVersionArn"], "DELETING", remove)


def _move_then(ctx: ServiceContext, arn: str, status: str, finish) -> dict:
    """Move the version to `status` now (answered at once, as Rekognition does) and finish(ctx, arn) in the
    background."""
    _in_use(lambda: ctx.store.set_version_status(arn, status))
    ctx.submit(finish, ctx, arn)
    return {"Status": status}


def remove(ctx: ServiceContext, arn: str) -> None:
    """Finish a delete: the loaded model, the version's folder (its frozen data, run and export), then its row."""
    with ctx.models_lock:
        ctx.models.pop(arn, None)
    shutil.rmtree(ctx.version_dir(arn), ignore_errors=True)
    ctx.store.delete_version(arn)


def _in_use(move):
    """Run a status move; a refused one answers ResourceInUseException (the state error these operations name)."""
    try:
        return move()
    except TransitionRefused as exc:
        raise refused(f"{exc.arn} is {exc.current}; it cannot be {exc.wanted.lower()} now",
                      "ResourceInUseException") from None


# ---------------------------------------------------------------- DetectCustomLabels


def detect_custom_labels(ctx: ServiceContext, params: dict) -> dict:
    from edgelabels.runtime.answers import answer_images
    from edgelabels.serve.request_body import decode, image_bytes

    arn = params["ProjectVersionArn"]
    version = ctx.store.version(arn)
    with ctx.models_lock:
        model = ctx.models.get(arn)
    if version["status"] != "RUNNING" or model is None:
        raise refused(f"{arn} is {version['status']}; start it with StartProjectVersion and wait until it is RUNNING",
                      "ResourceNotReadyException")
    image = params["Image"]
    if ("Bytes" in image) == ("S3Object" in image):
        raise refused("Image must hold exactly one of Bytes and S3Object")
    data = image_bytes(image["Bytes"]) if "Bytes" in image else _s3_image(ctx, image["S3Object"])
    # The same code as `edgelabels predict` and the one-export server, for one image: the same answer.
    answer, = answer_images(model, [decode(data)], min_confidence=params.get("MinConfidence"),
                            max_results=params.get("MaxResults"))
    if answer.error:
        raise refused(f"Image cannot be used: {answer.error}", "InvalidImageFormatException")
    return answer.response


def _s3_image(ctx: ServiceContext, s3object: dict) -> bytes:
    if s3object.get("Version"):
        raise refused("Image.S3Object.Version is not supported: name the object's current version")
    try:
        return ctx.s3.read_bytes(outputs.uri(s3object), max_bytes=MAX_IMAGE_BYTES)
    except S3Error as exc:
        if exc.problem == "TooLarge":
            raise refused(f"{exc.uri} is over {MAX_IMAGE_BYTES} bytes (4 MB)", "ImageTooLargeException") from None
        raise


# ---------------------------------------------------------------- after a restart


def all_versions(ctx: ServiceContext) -> list[dict]:
    projects, _ = ctx.store.projects(max_results=EVERYTHING)
    return [row for project in projects for row in ctx.store.versions(project["arn"], max_results=EVERYTHING)[0]]


def recover(ctx: ServiceContext) -> None:
    """Finish what a killed process left: running models load again (Rekognition keeps a running model running),
    starts and stops complete, deletes finish; a version whose job was never queued is queued or failed."""
    queued = {job["version_arn"] for job in ctx.store.jobs()}
    for row in all_versions(ctx):
        arn, status = row["arn"], row["status"]
        if status == "RUNNING":
            load(ctx, arn, then=None)
        elif status == "STARTING":
            ctx.submit(load, ctx, arn)
        elif status == "STOPPING":
            unload(ctx, arn)
        elif status == "DELETING":
            remove(ctx, arn)
        elif status == "TRAINING_IN_PROGRESS" and arn not in queued:
            _queue_or_fail(ctx, arn)


def _queue_or_fail(ctx: ServiceContext, arn: str) -> None:
    folder = ctx.version_dir(arn)
    if all(manifest_path(folder, side).is_file() and validation_path(folder, side).is_file() for side in SIDES):
        ctx.store.enqueue(arn)
    else:
        ctx.store.set_version_status(arn, "TRAINING_FAILED", "The service stopped while this version was being "
                                     "created, before its data was saved; create the version again.")


OPERATIONS = {
    "CreateProjectVersion": create_project_version,
    "DescribeProjectVersions": describe_project_versions,
    "StartProjectVersion": start_project_version,
    "StopProjectVersion": stop_project_version,
    "DeleteProjectVersion": delete_project_version,
    "DetectCustomLabels": detect_custom_labels,
}
