"""Training a version and using it (issue 29):

    GET  /console/projects/NAME/train                     the datasets, what the recipe will choose, the Train form
    POST /console/projects/NAME/train                     CreateProjectVersion -> the version's page
    GET  /console/projects/NAME/versions/VERSION          status, live progress, start/stop, try a photo, commands
    GET  /console/projects/NAME/versions/VERSION/events   server-sent events: "progress" (console/training_progress.py)
                                                          while the version is training, starting or stopping; "end"
    POST /console/projects/NAME/versions/VERSION/start    StartProjectVersion (MinInferenceUnits 1), a form
    POST /console/projects/NAME/versions/VERSION/stop     StopProjectVersion, a form
    POST /console/projects/NAME/versions/VERSION/detect?name=FILE   the image's bytes -> DetectCustomLabels -> JSON

The boto3 and AWS CLI commands on the page name the endpoint the browser reached (the request's host) and the
version's ARN, so what is copied runs against this service as it is.
"""

from __future__ import annotations

import base64
import json
import re
import shlex

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from edgelabels.console import training_progress
from edgelabels.console.kit import Refused, project_url, utc, version_url
from edgelabels.serve.request_body import MAX_IMAGE_BYTES
from edgelabels.service.arns import parse_version_arn
from edgelabels.service.store import NotFound

DEFAULT_BUCKET = "edgelabels-console"
# An S3 bucket name as S3 allows it (no "..": with --s3-root the name becomes a folder under the root).
BUCKET = re.compile(r"[a-z0-9](?:[a-z0-9-]|\.(?!\.)){1,61}[a-z0-9]")
TRAINED = ("TRAINING_COMPLETED", "STARTING", "RUNNING", "STOPPING", "STOPPED", "FAILED")
MAX_NAME = 120  # of a photo's file name repeated in a message


def routes(console) -> list:
    # --- training -------------------------------------------------------------------------------------------------
    def label_counts(dataset_arn: str) -> list[tuple[str, int]]:
        """(label, images with it), most images first: how balanced the data is."""
        found = console.all_pages("ListDatasetLabels", {"DatasetArn": dataset_arn}, "DatasetLabelDescriptions")
        counts = [(d["LabelName"], d.get("LabelStats", {}).get("EntryCount", 0)) for d in found]
        return sorted(counts, key=lambda pair: (-pair[1], pair[0]))

    def train_page(session: str, name: str, values: dict | None = None, message: str = "", status: int = 200):
        project = console.project(name)
        stats = [{"type": meta["DatasetType"], "status": meta["Status"],
                  **console.call("DescribeDataset", {"DatasetArn": meta["DatasetArn"]})["DatasetDescription"].get(
                      "DatasetStats", {}), "labels": label_counts(meta["DatasetArn"])}
                 for meta in project["Datasets"]]
        taken = {parse_version_arn(v["ProjectVersionArn"]).version for v in console.all_pages(
            "DescribeProjectVersions", {"ProjectArn": project["ProjectArn"]}, "ProjectVersionDescriptions")}
        number = len(taken) + 1
        while f"v{number}" in taken:
            number += 1
        form = {"version_name": f"v{number}", "bucket": DEFAULT_BUCKET, "prefix": f"{name}/", **(values or {})}
        return console.page("train.html", status, session, name=name, datasets=stats, form=form, message=message,
                            plan=recipe_plan(console.ctx.settings), local_s3=console.ctx.s3.root is not None)

    def create(name: str, form: dict) -> str:
        bucket, version = form.get("bucket", "").strip(), form.get("version_name", "").strip()
        if console.ctx.s3.root is not None:  # a bucket is a folder there: make the one named (S3 would refuse it)
            if not BUCKET.fullmatch(bucket):
                raise Refused(f"bucket {bucket!r} is not a valid S3 bucket name (3-63 lowercase letters, digits, "
                              "dots and hyphens)")
            (console.ctx.s3.root / bucket).mkdir(parents=True, exist_ok=True)
        project = console.project(name)
        console.call("CreateProjectVersion", {
            "ProjectArn": project["ProjectArn"], "VersionName": version,
            "OutputConfig": {"S3Bucket": bucket, "S3KeyPrefix": form.get("prefix", "").strip()}})
        return version

    async def train(request: Request) -> Response:
        name = request.path_params["name"]
        if request.method == "GET":
            session = console.session_of(request)
            if session is None:
                return console.locked_out()
            values, message, status = None, "", 200
        else:
            session, form = await console.post(request)
            if session is None:
                return form
            values = {key: str(form.get(key, "")) for key in ("version_name", "bucket", "prefix")}
            try:
                version = await console.run(create, name, values)
                return RedirectResponse(version_url(name, version), 303)
            except Refused as exc:
                message, status = f"The version was not created: {exc}", 400
        try:
            return await console.run(train_page, session, name, values, message, status)
        except Refused as exc:
            return console.message(name, str(exc), 404)

    # --- a version ------------------------------------------------------------------------------------------------
    def version_page(request: Request, session: str, message: str = "", status: int = 200) -> Response:
        name, version = request.path_params["name"], request.path_params["version"]
        project, found = console.version(name, version)
        project_arn = project["ProjectArn"]
        arn = found["ProjectVersionArn"]
        now = training_progress.progress(console.ctx, arn)
        endpoint = f"{request.url.scheme}://{request.headers.get('host') or request.url.netloc}"
        return console.page(
            "version.html", status, session, name=name, version=version, arn=arn, message=message,
            created=utc(found["CreationTimestamp"]), progress=now, trained=TRAINED,
            project_url=project_url(name), url=version_url(name, version),
            boto3=boto3_commands(endpoint, project_arn, arn), cli=cli_commands(endpoint, project_arn, arn))

    async def show(request: Request) -> Response:
        session = console.session_of(request)
        if session is None:
            return console.locked_out()
        try:
            return await console.run(version_page, request, session)
        except Refused as exc:
            return console.message(request.path_params["version"], str(exc), 404)

    async def events(request: Request) -> Response:
        from sse_starlette.sse import EventSourceResponse

        if console.session_of(request) is None:
            return console.locked_out()
        try:
            _, found = await console.run(console.version, request.path_params["name"], request.path_params["version"])
        except Refused as exc:
            return console.message(request.path_params["version"], str(exc), 404)
        return EventSourceResponse(stream(found["ProjectVersionArn"]), headers={"Cache-Control": "no-store"})

    async def stream(arn: str):
        import anyio

        sent = None
        while True:
            try:
                now = await console.run(training_progress.progress, console.ctx, arn)
            except NotFound:
                yield {"event": "end", "data": json.dumps({"message": "This version has been deleted."})}
                return
            for update in training_progress.changes(sent, now):
                yield {"event": "progress", "data": json.dumps(update)}
            sent = now
            if now["status"] not in training_progress.PASSING:
                yield {"event": "end", "data": json.dumps({"status": now["status"]})}
                return
            await anyio.sleep(training_progress.POLL_S)

    def move(operation: str, extra: dict):
        async def handler(request: Request) -> Response:
            session, form = await console.post(request)
            if session is None:
                return form
            name, version = request.path_params["name"], request.path_params["version"]
            try:
                _, found = await console.run(console.version, name, version)
                await console.run(console.call, operation, {"ProjectVersionArn": found["ProjectVersionArn"], **extra})
            except Refused as exc:
                try:
                    return await console.run(version_page, request, session, str(exc), 409)
                except Refused:
                    return console.message(version, str(exc), 404)
            return RedirectResponse(version_url(name, version), 303)

        return handler

    async def detect(request: Request) -> Response:
        """The photo's bytes (the request's body) through DetectCustomLabels; a clear message for what is no PNG or
        JPEG, or when the version is not running."""
        from edgelabels.data.images import sniff_format

        session, refusal = console.script_session(request)
        if session is None:
            return refusal
        file_name = request.query_params.get("name", "the photo")[:MAX_NAME]
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > MAX_IMAGE_BYTES:
                return console.json({"message": f"{file_name} is over {MAX_IMAGE_BYTES // 2**20} MB: "
                                                "DetectCustomLabels takes images up to 4 MB"}, 413)
        if sniff_format(data[:16]) not in ("PNG", "JPEG"):
            return console.json({"message": f"{file_name} is not an image (PNG or JPEG)"}, 400)
        try:
            _, found = await console.run(console.version, request.path_params["name"], request.path_params["version"])
            image = {"Bytes": base64.b64encode(bytes(data)).decode()}  # as the JSON protocol carries it
            params = {"ProjectVersionArn": found["ProjectVersionArn"], "Image": image}
            if request.query_params.get("min_confidence", "").strip():  # else the model's assumed thresholds
                params["MinConfidence"] = float(request.query_params["min_confidence"])
            answer = await console.run(console.call, "DetectCustomLabels", params)
        except ValueError:
            return console.json({"message": "Min confidence must be a number from 0 to 100"}, 400)
        except Refused as exc:
            return console.json({"message": str(exc)}, 409)
        return console.json({"CustomLabels": answer["CustomLabels"]})

    base = "/projects/{name}/versions/{version}"
    return [Route("/projects/{name}/train", train, methods=["GET", "POST"]),
            Route(base, show, methods=["GET"]),
            Route(f"{base}/events", events, methods=["GET"]),
            Route(f"{base}/start", move("StartProjectVersion", {"MinInferenceUnits": 1}), methods=["POST"]),
            Route(f"{base}/stop", move("StopProjectVersion", {}), methods=["POST"]),
            Route(f"{base}/detect", detect, methods=["POST"])]


def recipe_plan(settings) -> dict:
    """What is known of a training before it starts: the service's budget, the keys its --set fixes, the keys the
    recipe will choose from the data, and the backbone it will start from."""
    from edgelabels.config import AUTO_KEYS, auto_keys
    from edgelabels.train.recipe import DEFAULT_BUDGET, PRETRAINED, source_config
    from edgelabels.train.recipe_facts import imagenet_on_disk
    from edgelabels.train.recipe_resolution import BUDGET_SHARE

    config = source_config("dataset.manifest", settings.overrides, settings.budget)
    chosen, raw = set(auto_keys(config)), config.to_dict()
    fixed = []
    for key in AUTO_KEYS:
        if key not in chosen:
            value = raw
            for part in key.split("."):
                value = value[part]
            fixed.append({"key": key, "value": value})
    if "model.backbone" not in chosen:
        start = f"{config.model.backbone}, as the service sets it"
    elif imagenet_on_disk().get(PRETRAINED):
        start = f"{PRETRAINED} with its ImageNet weights (found on this machine), fine-tuned"
    else:
        start = "a CNN trained from scratch, sized to the data (no ImageNet weights on this machine)"
    return {"budget": settings.budget or "", "default_budget": DEFAULT_BUDGET, "share": f"{BUDGET_SHARE:.0%}",
            "fixed": fixed, "chosen": [key for key in AUTO_KEYS if key in chosen], "start": start}


def boto3_commands(endpoint: str, project_arn: str, arn: str) -> str:
    """A Python script that starts the version, waits until it runs, detects labels in photo.jpg and stops it."""
    parsed = parse_version_arn(arn)
    return f"""import boto3

rekognition = boto3.client("rekognition", endpoint_url={endpoint!r}, region_name={parsed.region!r})
project_arn = {project_arn!r}
version_arn = {arn!r}

rekognition.start_project_version(ProjectVersionArn=version_arn, MinInferenceUnits=1)
rekognition.get_waiter("project_version_running").wait(ProjectArn=project_arn, VersionNames=[{parsed.version!r}])
described = rekognition.describe_project_versions(ProjectArn=project_arn, VersionNames=[{parsed.version!r}])
print(described["ProjectVersionDescriptions"][0]["Status"])

with open("photo.jpg", "rb") as photo:
    answer = rekognition.detect_custom_labels(ProjectVersionArn=version_arn, Image={{"Bytes": photo.read()}})
for label in answer["CustomLabels"]:
    print(label["Name"], round(label["Confidence"], 1))

rekognition.stop_project_version(ProjectVersionArn=version_arn)
"""


def cli_commands(endpoint: str, project_arn: str, arn: str) -> str:
    """The same steps with the AWS CLI."""
    parsed = parse_version_arn(arn)
    where = f"--endpoint-url {shlex.quote(endpoint)} --region {shlex.quote(parsed.region)}"
    project_arn, version, arn = shlex.quote(project_arn), shlex.quote(parsed.version), shlex.quote(arn)
    return "\n".join([
        f"aws rekognition start-project-version --project-version-arn {arn} --min-inference-units 1 {where}",
        f"aws rekognition wait project-version-running --project-arn {project_arn} --version-names {version} {where}",
        f"aws rekognition describe-project-versions --project-arn {project_arn} --version-names {version} {where}",
        f"aws rekognition detect-custom-labels --project-version-arn {arn} --image-bytes fileb://photo.jpg {where}",
        f"aws rekognition stop-project-version --project-version-arn {arn} {where}"]) + "\n"
