"""A local endpoint that speaks Amazon Rekognition's JSON protocol, so boto3 works unchanged.

boto3 sends `POST /` with `X-Amz-Target: RekognitionService.<Operation>`, a JSON body
(`application/x-amz-json-1.1`) and image bytes base64-encoded inside it. Answers are JSON; errors
are `{"__type": name, "message": text}` with HTTP 400, or 500 for the two server faults botocore
retries (InternalServerError, ThrottlingException): api_errors.py. Load shedding answers
ProvisionedThroughputExceededException with 400: botocore retries that error code with backoff in
both its standard and legacy retry modes (`retries/standard.py` lists it as a throttling code;
`data/_retry.json` matches it on status 400). Every answer carries `x-amzn-RequestId`.

Operations: DetectCustomLabels, StartProjectVersion, StopProjectVersion, DescribeProjectVersions.
The HTTP machinery below (RekognitionEndpoint: receiving, serving, error answers) is shared with the
projects service (`serve --projects DIR`, service/app.py), which adds its own operations, a check of
every request against botocore's model, and a thread pool of its own for the cheap metadata calls.

Each uvicorn worker process builds its own app with `app_from_environment` (uvicorn needs an
import string for several workers) from the JSON settings file that `edgelabels serve` writes and
names in $EDGELABELS_SERVE_SETTINGS; each holds one edge model (one onnxruntime session): the
export's task picks it (runtime/answers.py's open_edge_model): a Predictor answers a classifier's labels,
a Detector one entry per box with Geometry.BoundingBox. Each image is answered by the same stream as
`edgelabels predict` (answer_images, for one image), so both give the same answer.
The model's RUNNING/STOPPED status lives in one small file in the run-state folder, written
atomically and read on every request, so a StopProjectVersion answered by one worker holds for
all of them, whatever the number of workers.

A request goes through two stages. Receiving: the cheap refusal of an unknown access key (from
the Authorization header alone), then the body, then (in a worker thread) the signature, the
X-Amz-Target and the JSON. Serving: the operation itself (decoding, inference), the only stage that
holds one of the `--max-concurrency` inference slots of the worker; a verified request that finds
them all taken is answered ProvisionedThroughputExceededException at once. So a client that sends
headers and then stalls, signed or not, never holds a slot.

What bounds a worker, and what each bound is for:
- inference slots (`--max-concurrency`): CPU and the decoded bitmaps (up to 4096x4096 pixels each);
- body budget (`ServeSettings.body_budget_bytes`, default two full-size bodies per slot): the memory
  of bodies being received or served. Each received chunk is reserved as it arrives and given back
  when the answer is sent, so a stalled client that sent one byte costs one byte; a request that
  cannot reserve its next chunk is drained (not kept) and answered
  ProvisionedThroughputExceededException, which boto3 retries;
- body size (request_body.py, with the body budget, the body time and the image's own limits): kept up to a
  cap just above what a 4 MB image needs once base64-encoded (the projects service: what UpdateDatasetEntries'
  largest blob needs), drained (not kept) up to 64 MB so the client reads ImageTooLargeException
  (InvalidParameterException for the projects service's metadata calls), dropped beyond;
- body time: at most `body_read_timeout_s` (10 s) between two chunks and `body_deadline_s` (60 s)
  for the whole body, else RequestTimeoutException (which boto3 retries) and the connection ends;
- connections: uvicorn's own `limit_concurrency` and keep-alive timeout, set by `edgelabels serve`
  (server_command.py says why).
A request that cannot be parsed (malformed or too deeply nested JSON, a header botocore cannot
canonicalise) is the client's fault: 400 (SerializationException or InvalidParameterException),
never the 500 that botocore would retry; only a fault while serving is InternalServerError.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Collection

import anyio
import anyio.to_thread
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from edgelabels import atomic
from edgelabels.data import paths
from edgelabels.errors import UserError
from edgelabels.runtime.answers import answer_images, open_edge_model
from edgelabels.serve.api_errors import CONTENT_TYPE, ApiError, error_response
from edgelabels.serve.request_body import (MAX_BODY_BYTES, MAX_IMAGE_BYTES, BodyBudget, decode, image_bytes,
                                           read_body)

SETTINGS_ENV = "EDGELABELS_SERVE_SETTINGS"
TARGET_PREFIX = "RekognitionService."
# Integer parameters are Java Integers in AWS's API models: larger values are refused, not truncated.
INT_MIN, INT_MAX = -2 ** 31, 2 ** 31 - 1

VERSION_ARN = re.compile(r"^arn:[a-z\d-]+:rekognition:[a-z\d-]+:\d{12}:project/([a-zA-Z0-9_.\-]{1,255})"
                         r"/version/([a-zA-Z0-9_.\-]{1,255})/[0-9]+$")
PROJECT_ARN = re.compile(r"^arn:[a-z\d-]+:rekognition:[a-z\d-]+:\d{12}:project/[a-zA-Z0-9_.\-]{1,255}/[0-9]+$")
VERSION_NAME = re.compile(r"^[a-zA-Z0-9_.\-]{1,255}$")

log = logging.getLogger("edgelabels.serve")


@dataclass(frozen=True)
class ServeSettings:
    """What every worker needs, written to JSON by `edgelabels serve` (no secrets: only file paths)."""

    model_dir: str
    project_version_arn: str
    creation_timestamp: float  # epoch seconds, shown by DescribeProjectVersions
    state_file: str  # RUNNING/STOPPED, shared by all workers
    max_concurrency: int = 16
    credentials: str | None = None  # INI file; None = no signature check (--no-auth or loopback)
    s3_root: str | None = None
    precision: str = "auto"
    threads: int | None = None
    body_read_timeout_s: float = 10.0  # the longest wait for the next chunk of a request body
    body_deadline_s: float = 60.0  # the longest time to receive a whole body
    body_budget_bytes: int | None = None  # body bytes held at once; None: 2 * max_concurrency full bodies

    def write(self, path: str | Path) -> Path:
        return atomic.write_json(path, dataclasses.asdict(self))

    @classmethod
    def read(cls, path: str | Path) -> "ServeSettings":
        return cls(**json.loads(Path(path).read_text(encoding="utf-8")))


def project_arn_prefix(version_arn: str) -> str:
    """`arn:...:project/NAME/` of a version ARN: a ProjectArn is this plus the project's own number."""
    return version_arn.split("/version/", 1)[0] + "/"


class ModelState:
    """The RUNNING/STOPPED status in a small JSON file: atomic writes, one read per request."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def write(self, status: str, min_inference_units: int = 1) -> None:
        atomic.write_json(self.path, {"Status": status, "MinInferenceUnits": min_inference_units})

    def read(self) -> dict:
        try:
            return json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ApiError("InternalServerError", f"model status unreadable ({exc})") from None


class RekognitionEndpoint:
    """The HTTP side of a Rekognition endpoint: `handle` is the ASGI endpoint for `POST /`.

    Shared by `serve MODEL_DIR` (RekognitionService below) and `serve --projects DIR` (service/app.py). It receives a
    request (the key check, the body within its budget and timeouts, then in a worker thread the signature, the
    X-Amz-Target and the JSON), checks it (`check(name, params)`, if given), then serves it: `operations[name](params)`
    in a worker thread. The operations named in `inference` (all of them when None) hold one of the
    `max_concurrency` slots and are shed past it; the others are cheap metadata calls that queue for a thread of
    their own, larger pool instead (`metadata_threads`), so a burst of DescribeProjectVersions during a training is
    answered, not shed. A body past `max_body_bytes` is ImageTooLargeException for an inference (as today's
    one-export endpoint answers), InvalidParameterException for the others. An exception an operation raises
    becomes the ApiError that `errors(exc)` returns, or InternalServerError (logged) when it returns None.
    """

    def __init__(self, operations: dict[str, Callable[[dict], dict]], *, max_concurrency: int = 16,
                 credentials: str | None = None, region: str | None = None, inference: Collection[str] | None = None,
                 check: Callable[[str, dict], None] | None = None,
                 errors: Callable[[Exception], ApiError | None] | None = None, metadata_threads: int = 128,
                 body_read_timeout_s: float = 10.0, body_deadline_s: float = 60.0,
                 body_budget_bytes: int | None = None, max_body_bytes: int = MAX_BODY_BYTES):
        self.operations = operations
        self.inference = None if inference is None else frozenset(inference)
        self.check, self.errors = check, errors
        self.verifier = None
        if credentials:  # botocore is only needed when signatures are checked
            from edgelabels.serve.sigv4 import SignatureProblem, SignatureVerifier, read_credentials

            self.verifier = SignatureVerifier(read_credentials(credentials), region=region)
            self.signature_problem = SignatureProblem
        self.max_concurrency = max_concurrency
        self.in_flight = 0  # only touched on the event loop thread
        self.limiter = anyio.CapacityLimiter(max_concurrency)
        self.metadata_limiter = anyio.CapacityLimiter(metadata_threads)
        self.body_read_timeout_s, self.body_deadline_s = body_read_timeout_s, body_deadline_s
        self.max_body_bytes = max_body_bytes
        self.budget = BodyBudget(body_budget_bytes or 2 * max_concurrency * max_body_bytes)

    async def handle(self, request: Request) -> Response:
        request_id = str(uuid.uuid4())
        body = b""
        try:
            if self.verifier:  # refuse unknown keys before spending time on the body
                try:
                    self.verifier.check_key(request.headers.get("authorization"))
                except self.signature_problem as exc:
                    raise ApiError(exc.code, str(exc)) from None
            body = await read_body(request, self.budget, self.body_read_timeout_s, self.body_deadline_s,
                                   self.max_body_bytes, self.too_large(request.headers.get("x-amz-target", "")))
            headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.scope["headers"]]
            try:
                name, params = await anyio.to_thread.run_sync(
                    self.parse, headers, request.scope.get("raw_path") or request.url.path.encode(),
                    request.scope.get("query_string", b""), body)
            except ApiError:
                raise
            except Exception as exc:  # the request is at fault, not the server: 400, which botocore does not retry
                log.warning("request %s not parseable: %s: %s", request_id, type(exc).__name__, exc)
                raise ApiError("InvalidParameterException",
                               f"Request could not be parsed ({type(exc).__name__})") from None
            if self.check:  # outside the handler above: a fault in the check is ours, not the client's
                await anyio.to_thread.run_sync(self.check, name, params, limiter=self.metadata_limiter)
            result = await self.serve(name, params)
            # allow_nan=False: a model answering NaN becomes an InternalServerError, not invalid JSON.
            return Response(json.dumps(result, allow_nan=False), 200, media_type=CONTENT_TYPE,
                            headers={"x-amzn-RequestId": request_id})
        except ApiError as exc:
            return error_response(exc, request_id)
        except ClientDisconnect:
            return error_response(ApiError("InvalidParameterException", "client disconnected"), request_id)
        except Exception as exc:
            known = self.errors(exc) if self.errors else None
            if known is None:
                log.exception("request %s failed", request_id)
                known = ApiError("InternalServerError", "Internal server error.")
            return error_response(known, request_id)
        finally:
            self.budget.give_back(len(body))

    def too_large(self, target: str) -> str:
        """The error for a body past max_body_bytes: an image's for an inference, a parameter's for the rest."""
        name = target[len(TARGET_PREFIX):] if target.startswith(TARGET_PREFIX) else ""
        return "InvalidParameterException" if self.inference is not None and name not in self.inference \
            else "ImageTooLargeException"

    def parse(self, headers: list[tuple[str, str]], raw_path: bytes, query: bytes, body: bytes):
        """Runs in a worker thread: signature, operation name, JSON -> (operation name, params)."""
        if self.verifier:
            try:
                self.verifier.verify(method="POST", path=raw_path.decode("latin-1"), query=query.decode("latin-1"),
                                     headers=headers, body=body)
            except self.signature_problem as exc:
                raise ApiError(exc.code, str(exc)) from None
        target = next((v for k, v in headers if k.lower() == "x-amz-target"), "")
        name = target[len(TARGET_PREFIX):] if target.startswith(TARGET_PREFIX) else None
        if name not in self.operations:
            raise ApiError("UnknownOperationException",
                           f"Unknown operation {target!r}; this endpoint serves "
                           + ", ".join(TARGET_PREFIX + name for name in self.operations))
        try:
            params = json.loads(body or b"{}")
        except RecursionError:
            raise ApiError("SerializationException", "Request body is JSON nested too deeply") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError("SerializationException", f"Request body is not valid JSON ({exc})") from None
        if not isinstance(params, dict):
            raise ApiError("InvalidParameterException", "Request body must be a JSON object")
        return name, params

    async def serve(self, name: str, params: dict) -> dict:
        """The operation in a worker thread: an inference holds one of the max_concurrency slots, or is shed."""
        operation = self.operations[name]
        if self.inference is not None and name not in self.inference:
            return await anyio.to_thread.run_sync(operation, params, limiter=self.metadata_limiter)
        if self.in_flight >= self.max_concurrency:
            raise ApiError("ProvisionedThroughputExceededException",
                           f"More than {self.max_concurrency} requests in flight; retry later.")
        self.in_flight += 1
        try:
            return await anyio.to_thread.run_sync(operation, params, limiter=self.limiter)
        finally:
            self.in_flight -= 1


class RekognitionService:
    """The four operations, over one edge model (a Predictor or a Detector), behind a RekognitionEndpoint."""

    def __init__(self, settings: ServeSettings, predictor=None):
        self.settings = settings
        self.predictor = predictor or open_edge_model(settings.model_dir, precision=settings.precision,
                                                      threads=settings.threads)
        self.arn = settings.project_version_arn
        match = VERSION_ARN.match(self.arn)
        if not match:
            raise UserError(f"project version ARN {self.arn!r} is not of the form "
                            "arn:aws:rekognition:REGION:ACCOUNT:project/NAME/version/VERSION/NUMBER")
        self.version_name = match.group(2)
        self.state = ModelState(settings.state_file)
        self.s3_root = Path(settings.s3_root).resolve() if settings.s3_root else None
        operations = {
            "DetectCustomLabels": self.detect_custom_labels,
            "StartProjectVersion": self.start_project_version,
            "StopProjectVersion": self.stop_project_version,
            "DescribeProjectVersions": self.describe_project_versions,
        }
        # Requests must be signed for the region of the ARN served, as AWS requires. Every operation holds a slot:
        # with one model, the status calls are as few as the inferences they accompany.
        self.endpoint = RekognitionEndpoint(
            operations, max_concurrency=settings.max_concurrency, credentials=settings.credentials,
            region=self.arn.split(":")[3], body_read_timeout_s=settings.body_read_timeout_s,
            body_deadline_s=settings.body_deadline_s, body_budget_bytes=settings.body_budget_bytes)
        self.handle = self.endpoint.handle

    async def health(self, request: Request) -> Response:
        status = self.state.read().get("Status", "UNKNOWN")
        return health_response({"status": "ok", "model": status})

    # -- operations ------------------------------------------------------------------------------

    def detect_custom_labels(self, params: dict) -> dict:
        self.check_version_arn(params.get("ProjectVersionArn"))
        min_confidence = params.get("MinConfidence")
        if min_confidence is not None and (not _is_number(min_confidence) or not 0 <= min_confidence <= 100):
            raise ApiError("InvalidParameterException",
                           f"MinConfidence must be a number from 0 to 100, not {min_confidence!r}")
        max_results = params.get("MaxResults")
        if max_results is not None and (not _is_int(max_results) or max_results < 0):
            raise ApiError("InvalidParameterException",
                           f"MaxResults must be an integer from 0 to {INT_MAX}, not {max_results!r}")
        image = params.get("Image")
        if not isinstance(image, dict) or ("Bytes" in image) == ("S3Object" in image):
            raise ApiError("InvalidParameterException", "Image must hold exactly one of Bytes or S3Object")
        self.check_running()
        data = image_bytes(image["Bytes"]) if "Bytes" in image else self.s3_bytes(image["S3Object"])
        # The same answer stream as `predict`, for one image: the same code produces the same answer.
        answer, = answer_images(self.predictor, [decode(data)], min_confidence=min_confidence,
                                max_results=max_results)
        if answer.error:
            raise ApiError("InvalidImageFormatException", f"Image cannot be used: {answer.error}")
        return answer.response

    def start_project_version(self, params: dict) -> dict:
        self.check_version_arn(params.get("ProjectVersionArn"))
        units = params.get("MinInferenceUnits")
        if not _is_int(units) or units < 1:
            raise ApiError("InvalidParameterException",
                           f"MinInferenceUnits must be an integer from 1 to {INT_MAX}, not {units!r}")
        most = params.get("MaxInferenceUnits")
        if most is not None and (not _is_int(most) or most < units):
            raise ApiError("InvalidParameterException",
                           f"MaxInferenceUnits must be an integer >= MinInferenceUnits, not {most!r}")
        if self.state.read().get("Status") == "RUNNING":
            return {"Status": "RUNNING"}
        # Starting is instantaneous here; answering STARTING as Rekognition does keeps client code
        # that waits with the project_version_running waiter on its usual path.
        self.state.write("RUNNING", units)
        return {"Status": "STARTING"}

    def stop_project_version(self, params: dict) -> dict:
        self.check_version_arn(params.get("ProjectVersionArn"))
        if self.state.read().get("Status") != "RUNNING":
            return {"Status": "STOPPED"}
        self.state.write("STOPPED")
        return {"Status": "STOPPING"}

    def describe_project_versions(self, params: dict) -> dict:
        project = params.get("ProjectArn")
        if not isinstance(project, str) or not PROJECT_ARN.match(project):
            raise ApiError("InvalidParameterException",
                           f"ProjectArn {project!r} is not of the form "
                           "arn:aws:rekognition:REGION:ACCOUNT:project/NAME/NUMBER")
        # The project's own number cannot be derived from a version ARN: any number is accepted.
        if not project.startswith(project_arn_prefix(self.arn)):
            raise ApiError("ResourceNotFoundException", f"Project {project} not found (this endpoint serves "
                           f"{project_arn_prefix(self.arn)}...)")
        names = params.get("VersionNames")
        if names is not None and (not isinstance(names, list) or not 1 <= len(names) <= 10
                                  or not all(isinstance(n, str) and VERSION_NAME.match(n) for n in names)):
            raise ApiError("InvalidParameterException", "VersionNames must be a list of 1 to 10 version names")
        most = params.get("MaxResults")
        if most is not None and (not _is_int(most) or not 1 <= most <= 100):
            raise ApiError("InvalidParameterException", f"MaxResults must be an integer from 1 to 100, not {most!r}")
        if params.get("NextToken"):
            raise ApiError("InvalidPaginationTokenException", "This endpoint never hands out a NextToken")
        if names is not None and self.version_name not in names:
            return {"ProjectVersionDescriptions": []}
        state = self.state.read()
        status = state.get("Status", "STOPPED")
        description = {
            "ProjectVersionArn": self.arn,
            "CreationTimestamp": self.settings.creation_timestamp,
            "Status": status,
            "StatusMessage": "The model is running." if status == "RUNNING" else "The model is ready to run.",
        }
        if status == "RUNNING":
            description["MinInferenceUnits"] = state.get("MinInferenceUnits", 1)
        return {"ProjectVersionDescriptions": [description]}

    # -- checks ----------------------------------------------------------------------------------

    def check_version_arn(self, arn) -> None:
        if not isinstance(arn, str) or not 20 <= len(arn) <= 2048 or not VERSION_ARN.match(arn):
            raise ApiError("InvalidParameterException",
                           f"ProjectVersionArn {arn!r} is not of the form "
                           "arn:aws:rekognition:REGION:ACCOUNT:project/NAME/version/VERSION/NUMBER")
        if arn != self.arn:
            raise ApiError("ResourceNotFoundException", f"Model {arn} not found (this endpoint serves {self.arn})")

    def check_running(self) -> None:
        status = self.state.read().get("Status")
        if status != "RUNNING":
            raise ApiError("ResourceNotReadyException",
                           f"Model {self.arn} is {status}; start it with StartProjectVersion")

    def s3_bytes(self, s3_object) -> bytes:
        if self.s3_root is None:
            raise ApiError("InvalidS3ObjectException",
                           "This endpoint reads images sent as Image.Bytes; Image.S3Object needs the server "
                           "started with --s3-root DIR (it then reads DIR/BUCKET/NAME)")
        if not isinstance(s3_object, dict) or not isinstance(s3_object.get("Bucket"), str) \
                or not isinstance(s3_object.get("Name"), str) or not s3_object["Name"]:
            raise ApiError("InvalidParameterException", "Image.S3Object needs Bucket and Name strings")
        if s3_object.get("Version") is not None:
            raise ApiError("InvalidParameterException", "Image.S3Object.Version is not supported by --s3-root folders")
        bucket, name = s3_object["Bucket"], s3_object["Name"]
        missing = ApiError("InvalidS3ObjectException",
                           f"Unable to get object s3://{bucket}/{name}: no such file under --s3-root")
        # S3 keys are literal: `good.jpg/` or `a//b.jpg` name other objects than the file a path would normalise
        # them to, and a folder can hold no such object.
        if any(part in ("", ".") for part in name.lstrip("/").split("/")):
            raise missing
        try:  # the rule manifests' s3:// source-refs follow too (data/paths.py)
            path = paths.s3_object(self.s3_root, bucket, name)
        except paths.Outside:
            raise ApiError("InvalidS3ObjectException", f"S3 object s3://{bucket}/{name} is outside the bucket") from None
        except ValueError as exc:
            raise ApiError("InvalidParameterException", f"Invalid S3 bucket or object name ({exc})") from None
        try:
            size = path.stat().st_size
            if not path.is_file():
                raise FileNotFoundError(path)
            if size > MAX_IMAGE_BYTES:
                raise ApiError("ImageTooLargeException", f"s3://{bucket}/{name} is over {MAX_IMAGE_BYTES} bytes (4 MB)")
            return path.read_bytes()
        except OSError:
            raise missing from None


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and INT_MIN <= value <= INT_MAX


async def _http_error(request: Request, exc: HTTPException) -> Response:
    code = "UnknownOperationException" if exc.status_code in (404, 405) else "InvalidParameterException"
    error = ApiError(code, f"{request.method} {request.url.path}: {exc.detail}; Rekognition operations are "
                     "POST / with an X-Amz-Target header")
    return error_response(error, str(uuid.uuid4()))


async def _server_error(request: Request, exc: Exception) -> Response:
    return error_response(ApiError("InternalServerError", "Internal server error."), str(uuid.uuid4()))


def health_response(answer: dict) -> Response:
    return Response(json.dumps(answer), 200, media_type="application/json",
                    headers={"x-amzn-RequestId": str(uuid.uuid4())})


def endpoint_app(endpoint: RekognitionEndpoint, health: Callable, lifespan=None) -> Starlette:
    """`POST /` for the endpoint and `GET /health`; anything else answered in Rekognition's error format."""
    return Starlette(
        routes=[Route("/", endpoint.handle, methods=["POST"]), Route("/health", health, methods=["GET"])],
        exception_handlers={HTTPException: _http_error, Exception: _server_error}, lifespan=lifespan)


def create_app(settings: ServeSettings, predictor=None) -> Starlette:
    service = RekognitionService(settings, predictor)
    app = endpoint_app(service.endpoint, service.health)
    app.state.service = service
    return app


def app_from_environment() -> Starlette:
    """uvicorn's factory for each worker process: settings from the file named in $EDGELABELS_SERVE_SETTINGS."""
    path = os.environ.get(SETTINGS_ENV)
    if not path:
        raise UserError(f"${SETTINGS_ENV} is not set: start the server with `edgelabels serve MODEL_DIR`")
    return create_app(ServeSettings.read(path))
