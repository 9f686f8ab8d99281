"""The local Rekognition Custom Labels service over HTTP: `create_service_app(ctx)` -> a Starlette app.

`POST /` speaks Rekognition's JSON protocol through serve/server.py's RekognitionEndpoint, the same receiving
and serving machinery as the one-export `serve MODEL_DIR`: the key check, the body budget and timeouts, SigV4, the
X-Amz-Target, the JSON. Each request is then checked against botocore's model (service/model.py) and dispatched to
the operation of that name in service.projects, service.datasets or service.versions, called `(ctx, params)`.

Only DetectCustomLabels holds one of the `max_concurrency` inference slots (and is shed past them, as `serve
MODEL_DIR` sheds). The other operations are metadata calls on the store: they queue for a pool of
`metadata_threads` threads instead, so a hundred DescribeProjectVersions polled during a training are all
answered, none shed.

Errors: an exception with a string `code` (the store's, S3's, the entries' errors, ApiError) is that Rekognition
error, with its message; an ARN that does not parse (ArnError) is InvalidParameterException; anything else is
InternalServerError, logged with its traceback.

Lifespan: at start-up each operations module's `recover(ctx)` finishes or fails what a killed process left in
progress, then the trainer starts (service.trainer.start); at shutdown the trainer stops (its child is killed and
the job left "running", so the next start resumes it).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import math
import re
from types import ModuleType

import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount

from edgelabels.console.app import PREFIX as CONSOLE, create_console_app
from edgelabels.serve.api_errors import ApiError
from edgelabels.serve.server import RekognitionEndpoint, endpoint_app, health_response
from edgelabels.service.arns import ArnError
from edgelabels.service.context import ServiceContext
from edgelabels.service.model import check_request, service_model

OPERATION_MODULES = ("edgelabels.service.projects", "edgelabels.service.datasets", "edgelabels.service.versions")
TRAINER_MODULE = "edgelabels.service.trainer"
INFERENCE = frozenset({"DetectCustomLabels"})
METADATA_THREADS = 128  # well above the clients that poll at once; each thread holds one SQLite connection
# A Rekognition error name: what a `code` attribute must look like to be answered as one (SystemExit and
# urllib's HTTPError have a `code` too, which is no error name).
ERROR_CODE = re.compile(r"[A-Z][A-Za-z]+(?:Exception|Error)")

log = logging.getLogger("edgelabels.service")


def _optional_module(name: str) -> ModuleType | None:
    """The module, or None while it is not written yet (a module that fails to import for another reason raises)."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        log.warning("%s is missing: its operations are not served", name)
        return None


def operation_modules() -> list[ModuleType]:
    return [module for module in map(_optional_module, OPERATION_MODULES) if module is not None]


def bound_operations(ctx: ServiceContext, modules: list[ModuleType]) -> dict:
    """Every module's OPERATIONS, merged and bound to ctx: name -> callable(params) -> response."""
    operations: dict = {}
    for module in modules:
        for name, operation in module.OPERATIONS.items():
            if name in operations:
                raise ValueError(f"operation {name} is defined twice ({module.__name__} and another module)")
            operations[name] = functools.partial(operation, ctx)
    return operations


def max_body_bytes() -> int:
    """UpdateDatasetEntries' blob travels base64 in the JSON: its largest (botocore's GroundTruthBlob max) plus the
    other members. DetectCustomLabels' image stays limited to 4 MB by the operation itself."""
    return 4 * math.ceil(service_model()["shapes"]["GroundTruthBlob"]["max"] / 3) + 64 * 1024


def api_error(exc: Exception) -> ApiError | None:
    """The Rekognition error an operation's exception stands for, or None for a fault of ours."""
    if isinstance(exc, ArnError):
        return ApiError("InvalidParameterException", str(exc))
    code = getattr(exc, "code", None)
    if isinstance(code, str) and ERROR_CODE.fullmatch(code):
        return ApiError(code, str(exc))
    return None


def create_service_app(ctx: ServiceContext, *, max_concurrency: int = 16, credentials: str | None = None,
                       region: str | None = None, metadata_threads: int = METADATA_THREADS) -> Starlette:
    """The service's app. `credentials`: an INI file whose keys sign requests (None: no signature check);
    `region`: the one region signatures may be scoped to (None: any)."""
    modules = operation_modules()
    endpoint = RekognitionEndpoint(
        bound_operations(ctx, modules), max_concurrency=max_concurrency, credentials=credentials, region=region,
        inference=INFERENCE, check=check_request, errors=api_error, metadata_threads=metadata_threads,
        max_body_bytes=max_body_bytes())

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        for module in modules:
            if hasattr(module, "recover"):
                await anyio.to_thread.run_sync(module.recover, ctx)
        trainer_module = _optional_module(TRAINER_MODULE)
        trainer = trainer_module.start(ctx) if trainer_module is not None else None
        app.state.trainer = trainer
        try:
            yield
        finally:
            if trainer is not None:
                await anyio.to_thread.run_sync(trainer.stop)

    async def health(request: Request) -> Response:
        # No signature needed, so nothing about the machine (not even DIR's path): that it answers, and what.
        return health_response({"status": "ok", "service": "projects", "operations": len(endpoint.operations)})

    app = endpoint_app(endpoint, health, lifespan=lifespan)
    console = create_console_app(ctx, credentials)  # the pages over the same ctx: one state for both
    app.router.routes.append(Mount(CONSOLE, app=console))
    app.state.ctx, app.state.endpoint, app.state.console = ctx, endpoint, console
    return app
