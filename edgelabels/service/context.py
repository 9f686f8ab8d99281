"""What every operation of the local service is given: the state, S3, the service's settings, the loaded models.

An operation is a function `(ctx: ServiceContext, params: dict) -> dict` (the response), listed by its module in
`OPERATIONS = {"CreateProject": create_project, ...}`. The HTTP layer (service/app.py) has already checked the
request against botocore's service model (required members, types, lengths, patterns, enums), so an operation
checks only what the model cannot say. It refuses by raising an exception with a `code` attribute naming a
Rekognition error (the store's, S3's, the entries' and the ARNs' errors all have one; serve.api_errors.ApiError
too); the HTTP layer answers with that code and the exception's message.

Work that outlives a request (a dataset read from S3, a model being loaded, a training job) runs in the background
(`ctx.submit`, or the trainer's own thread), and its resource says where it stands through its status, as
Rekognition's do.

DIR's layout (everything the service keeps; a restart on the same DIR continues where it stopped):
    service.db                  the store (projects, datasets and their entries, versions, tags, jobs)
    service.lock                held (flock) by the one process serving DIR, released when it ends, kill -9 too
    versions/PROJECT/VERSION-MS/  one version: its frozen train/test manifests, the run, its job log
    s3-cache/BUCKET/KEY         images fetched from S3 for training, kept for the next version
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from edgelabels.errors import UserError
from edgelabels.service.arns import parse_version_arn
from edgelabels.service.s3 import S3Objects
from edgelabels.service.store import Store

VERSIONS = "versions"
S3_CACHE = "s3-cache"
LOCK = "service.lock"


@dataclass
class ServiceSettings:
    """The service's own settings (Rekognition's API carries no hyperparameters: these apply to every version).

    budget: each training's time budget (`train --budget`); overrides: `--set KEY=VALUE` given to every training
    (tests use them for tiny models); max_jobs: trainings at once; precision / threads: how started versions'
    ONNX sessions run (as `serve MODEL_DIR`)."""

    budget: str | None = "30m"
    overrides: tuple[str, ...] = ()
    max_jobs: int = 1
    precision: str = "auto"
    threads: int = 1


@dataclass
class ServiceContext:
    directory: Path
    store: Store
    s3: S3Objects
    settings: ServiceSettings = field(default_factory=ServiceSettings)
    models: dict = field(default_factory=dict)  # version ARN -> its loaded edge model (runtime.answers)
    models_lock: threading.Lock = field(default_factory=threading.Lock)
    executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(4, "service-background"))

    def submit(self, work: Callable, *args) -> Future:
        """Run work(*args) in the background; an exception it raises is logged by the caller's wrapper, not lost
        here: background work records its own failure in the resource's status."""
        return self.executor.submit(work, *args)

    def version_dir(self, version_arn: str) -> Path:
        arn = parse_version_arn(version_arn)
        return self.directory / VERSIONS / arn.project / f"{arn.version}-{arn.creation_ms}"

    @property
    def s3_cache(self) -> Path:
        return self.directory / S3_CACHE

    def close(self) -> None:
        # Running work finishes (a dataset's is short); queued work is cancelled and stays *_IN_PROGRESS with its
        # request recorded, so recover() redoes it at the next start. Closing the store under a query can crash.
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.store.close()


def lock_directory(directory: Path):
    """Hold DIR for this process: a second service on the same DIR would take over the first one's running
    trainings as if they had been left behind. The lock is the kernel's (flock), so a killed process leaves none.
    Returns the open lock file (keep it open while serving)."""
    import fcntl

    directory.mkdir(parents=True, exist_ok=True)
    handle = open(directory / LOCK, "a+", encoding="utf-8")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise UserError(f"--projects {directory}: already served by {holder}; stop it first (one service per DIR)") \
            from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"edgelabels serve (pid {os.getpid()})")
    handle.flush()
    return handle
