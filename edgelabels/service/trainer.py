"""The training worker: one daemon thread that claims queued versions' jobs and trains them, max_jobs at a time.

One job, for a version whose data was frozen into its folder by CreateProjectVersion (service/versions.py):
  1. its images: each s3:// source-ref copied once into DIR/s3-cache/BUCKET/KEY (with --s3-root the root already
     is that folder); an image that cannot be read becomes an error of its entry (validated manifest), not a
     failed training;
  2. its config: `edgelabels train SOURCE`'s (the recipe chooses from the data), with the service's budget and
     overrides, saved once as the version's version-config.yaml;
  3. the pipeline (train -> evaluate -> export) in a child process (jobs.run_job), its output in job.log. A job
     resumed after kill -9 starts the same pipeline again: finished steps are skipped, the run resumes from its
     last completed epoch;
  4. success: the outputs in OutputConfig's bucket (service/outputs.py), then TRAINING_COMPLETED with the F1 and
     the export in one store transaction: nothing half-written is ever started. Failure: TRAINING_FAILED with
     the reason. BillableTrainingTimeInSeconds is the seconds the job's child ran, over every attempt.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from edgelabels import atomic, jobs
from edgelabels.data import paths
from edgelabels.data.images import sniff_format
from edgelabels.errors import UserError
from edgelabels.service import outputs
from edgelabels.service.context import ServiceContext
from edgelabels.service.entries import EntriesError
from edgelabels.service.s3 import S3Error, parse_s3_uri
from edgelabels.service.store import InUse, NotFound, StoreError, TransitionRefused, now_ms
from edgelabels.service.versions import SIDES, manifest_path, validation_path

log = logging.getLogger("edgelabels.service")

IMAGE_MAX_BYTES = 15 * 1024 * 1024  # Rekognition's largest training or testing image
FETCHERS = 8  # S3 reads at once
RUN, CONFIG, LOG = "run", "version-config.yaml", "job.log"  # in the version's folder, beside its data
EVALUATE = {"gradcam_per_kind": 0, "progress": False}  # the report's gallery is no use to an API client
SAVE_BILLABLE_S = 5.0  # how often a running job's seconds are saved (a killed service loses at most this much)
MESSAGE_MAX = 1000


class Stopped(Exception):
    """The trainer is stopping: the job stays `running` in the store, for the next process to resume."""


class Trainer:
    """Claims jobs (those a killed process left first, then the queue) and runs each in a thread of its own."""

    def __init__(self, ctx: ServiceContext, poll_s: float = 0.5):
        self.ctx, self.poll_s = ctx, poll_s
        self._stopping = threading.Event()
        self._workers: list[threading.Thread] = []
        self.thread = threading.Thread(target=self._loop, daemon=True, name="service-trainer")

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._workers = [w for w in self._workers if w.is_alive()]
            job = None
            if len(self._workers) < max(1, self.ctx.settings.max_jobs):
                try:
                    job = self._next()
                except StoreError:
                    log.exception("claiming a training job failed")
            if job is None:
                self._stopping.wait(self.poll_s)
                continue
            worker = threading.Thread(target=self._work, args=(job,), daemon=True, name=f"training-{job['id']}")
            self._workers.append(worker)
            worker.start()

    def _next(self) -> dict | None:
        for left in self.ctx.store.jobs_to_resume():
            try:
                return self.ctx.store.resume(left["id"])
            except (InUse, NotFound):  # another process took it first
                continue
        if not self.ctx.store.jobs("queued"):  # a read: an idle trainer takes no write lock every poll
            return None
        return self.ctx.store.claim_next()

    def _work(self, job: dict) -> None:
        try:
            train_version(self.ctx, job, self._check)
        except Stopped:
            log.info("training job %s left to resume (the service is stopping)", job["id"])
        except Exception as exc:  # noqa: BLE001 - a bug must fail its version, not leave it training forever
            log.exception("training job %s failed", job["id"])
            fail(self.ctx, job, f"the service failed while training it ({type(exc).__name__}: {exc})")

    def _check(self) -> None:
        if self._stopping.is_set():
            raise Stopped()

    def stop(self, timeout: float = 60.0) -> None:
        """End the loop and every job's child (killed with everything it started); the jobs stay resumable."""
        self._stopping.set()
        for thread in [self.thread, *self._workers]:
            if thread.is_alive():
                thread.join(timeout)


def start(ctx: ServiceContext, poll_s: float = 0.5) -> Trainer:
    trainer = Trainer(ctx, poll_s)
    trainer.thread.start()
    return trainer


# ---------------------------------------------------------------- one job


def train_version(ctx: ServiceContext, job: dict, check=lambda: None) -> None:
    """Run one claimed job to TRAINING_COMPLETED or TRAINING_FAILED (see the module's docstring)."""
    arn = job["version_arn"]
    try:
        version = ctx.store.version(arn)
    except NotFound:
        ctx.store.finish_job(job["id"], "failed", "its version was deleted before it trained")
        return
    folder = ctx.version_dir(arn)
    details = dict(version["details"])
    try:
        root = fetch_images(ctx, folder, check)
        for side, words, validation in (("train", "training", outputs.TRAINING_VALIDATION),
                                        ("test", "testing", outputs.TESTING_VALIDATION)):
            if not manifest_path(folder, side).read_text(encoding="utf-8").strip():
                raise UserError(f"the {words} data has no valid labelled image (see the errors in {validation} "
                                "in the output bucket); fix the manifest or dataset and create a new version")
        config = write_config(ctx, folder, root)
    except (UserError, S3Error, EntriesError, OSError, ValueError) as exc:
        fail(ctx, job, str(exc))
        return
    billable = Billable(ctx, arn, details, check)
    job_spec = pipeline_job(folder, config)
    from edgelabels.pipeline import pipeline_command

    outcome = jobs.run_job(pipeline_command(job_spec), folder / LOG, limit_s(ctx), poll=billable.poll)
    details["billable_s"] = billable.base + outcome.seconds
    if not outcome.ok:
        fail(ctx, job, f"{outcome.reason} (the whole log: {folder / LOG})", details)
        return
    try:
        details |= publish(ctx, version, folder, root)
    except (UserError, S3Error, OSError, ValueError, KeyError) as exc:
        fail(ctx, job, f"the model trained, but its results could not be written: {exc}", details)
        return
    from edgelabels.artifacts import RunDir

    run = RunDir(folder / RUN)
    try:
        ctx.store.finish_job(job["id"], "done", version_status="TRAINING_COMPLETED", run_dir=str(run.dir),
                             export_dir=str(run.export_dir), training_end_ms=now_ms(), details=details)
    except (NotFound, TransitionRefused):
        log.warning("version %s went away while it trained", arn)


def pipeline_job(folder: Path, config: Path):
    from edgelabels.pipeline import Job

    return Job(run=str(folder / RUN), config=str(config), evaluate=dict(EVALUATE), export={})


def limit_s(ctx: ServiceContext) -> float:
    """A generous deadline: the recipe plans within the budget; this only stops a training that hangs."""
    from edgelabels.config import parse_budget

    return 4 * parse_budget(ctx.settings.budget) + 1800 if ctx.settings.budget else 7 * 24 * 3600.0


class Billable:
    """The seconds a job's child has run, over every attempt, saved every few seconds into the version's details
    (a service killed mid-training loses at most SAVE_BILLABLE_S)."""

    def __init__(self, ctx: ServiceContext, arn: str, details: dict, check):
        self.ctx, self.arn, self.details, self.check = ctx, arn, details, check
        self.base = float(details.get("billable_s", 0.0))
        self.started = self.saved = time.monotonic()

    def poll(self) -> None:
        self.check()
        now = time.monotonic()
        if now - self.saved >= SAVE_BILLABLE_S:
            self.saved = now
            self.details["billable_s"] = self.base + now - self.started
            self.ctx.store.update_version(self.arn, details=self.details)


def fail(ctx: ServiceContext, job: dict, reason: str, details: dict | None = None) -> None:
    """TRAINING_FAILED with the reason; the validation files go to the output bucket first where the data was
    read (as Rekognition writes them for a failed training too: they say which lines were refused and why)."""
    message = f"The training failed: {reason}"[:MESSAGE_MAX]
    try:
        version = ctx.store.version(job["version_arn"])
        details = dict(version["details"] if details is None else details)
        details["outputs"] = publish_validation(ctx, version, ctx.version_dir(version["arn"]))
    except (NotFound, S3Error, OSError, ValueError, KeyError) as exc:
        log.warning("training job %s: no validation files written (%s)", job["id"], exc)
    fields = {"details": details} if details is not None else {}
    try:
        ctx.store.finish_job(job["id"], "failed", message, version_status="TRAINING_FAILED",
                             training_end_ms=now_ms(), **fields)
    except (NotFound, TransitionRefused):
        log.warning("training job %s ended (%s) after its version went away", job["id"], reason)


# ---------------------------------------------------------------- images and config


def fetch_images(ctx: ServiceContext, folder: Path, check=lambda: None) -> Path:
    """Make every image of the frozen manifests readable under the returned S3 root folder; an image that cannot be
    read leaves its manifest and gets an ERROR_INVALID_IMAGE in its validation line."""
    root = ctx.s3.root if ctx.s3.root is not None else ctx.s3_cache
    refs = sorted({json.loads(line)["source-ref"] for side in SIDES
                   for line in manifest_path(folder, side).read_text(encoding="utf-8").splitlines() if line})
    with ThreadPoolExecutor(FETCHERS, "s3-images") as pool:
        problems = {}
        for ref, problem in zip(refs, pool.map(lambda ref: _fetch(ctx, root, ref), refs)):
            check()
            if problem:
                problems[ref] = problem
    if problems:
        for side in SIDES:
            _drop(folder, side, problems)
    return root


def _fetch(ctx: ServiceContext, root: Path, ref: str) -> str | None:
    """None when the image is there (copied now or before), else what is wrong with it."""
    try:
        if ctx.s3.root is not None:  # the image's own file: there, a file, within the size
            path = ctx.s3.local_copy(ref, root, max_bytes=IMAGE_MAX_BYTES)
        else:
            path = paths.s3_object(root, *parse_s3_uri(ref))
        if path.is_file():
            with open(path, "rb") as image:
                head = image.read(16)
        else:
            data = ctx.s3.read_bytes(ref, max_bytes=IMAGE_MAX_BYTES)
            head = data[:16]
            if sniff_format(head) in ("PNG", "JPEG"):
                atomic.write_bytes(path, data)
    except (S3Error, OSError, ValueError) as exc:
        return f"ERROR_INVALID_IMAGE: {exc}"
    found = sniff_format(head)
    if found in ("PNG", "JPEG"):
        return None
    return f"ERROR_INVALID_IMAGE: {ref} is {found or 'not an image'}, not PNG or JPEG"


def _drop(folder: Path, side: str, problems: dict) -> None:
    kept = [line for line in manifest_path(folder, side).read_text(encoding="utf-8").splitlines()
            if line and json.loads(line)["source-ref"] not in problems]
    validation = []
    for line in validation_path(folder, side).read_text(encoding="utf-8").splitlines():
        document = json.loads(line)
        problem = problems.get(document.get("source-ref"))
        if problem and not document.get("errors"):
            line = outputs.validation_line(line, [problem])
        validation.append(line)
    atomic.write_text(validation_path(folder, side), "".join(line + "\n" for line in validation))
    atomic.write_text(manifest_path(folder, side), "".join(line + "\n" for line in kept))


def write_config(ctx: ServiceContext, folder: Path, root: Path) -> Path:
    """The version's config: `edgelabels train TRAIN_MANIFEST`'s, test manifest and S3 root set; written
    once (a resumed job keeps what its first attempt chose, even if the service's settings changed since)."""
    from edgelabels.train.recipe import source_config

    path = folder / CONFIG
    if not path.is_file():
        overrides = [f"data.test_source={json.dumps(str(manifest_path(folder, 'test')))}",
                     f"data.s3_root={json.dumps(str(root))}", *ctx.settings.overrides]
        config = source_config(str(manifest_path(folder, "train")), overrides, ctx.settings.budget)
        atomic.write_text(path, config.to_yaml())
    return path


# ---------------------------------------------------------------- results


def _validation_files(folder: Path, task: str | None) -> dict:
    lines = {side: validation_path(folder, side).read_text(encoding="utf-8").splitlines() for side in SIDES}
    return {outputs.MANIFEST_SUMMARY: outputs.manifest_summary(lines["train"], lines["test"], task),
            outputs.TRAINING_VALIDATION: lines["train"], outputs.TESTING_VALIDATION: lines["test"]}


def publish_validation(ctx: ServiceContext, version: dict, folder: Path) -> dict:
    """The manifest summary and both validation files in the output bucket; what -> its S3Object."""
    return outputs.write_outputs(ctx.s3, version["output_config"], version["arn"], _validation_files(folder, None))


def publish(ctx: ServiceContext, version: dict, folder: Path, root: Path) -> dict:
    """Write the outputs to OutputConfig's bucket; the version's details to add: outputs, f1, task."""
    from edgelabels.artifacts import EVALUATION_DIR, RunDir
    from edgelabels.evaluate.detection import MANIFEST_FILE
    from edgelabels.evaluate.evaluation import SUMMARY_FILE
    from edgelabels.evaluate.summary import parse_summary

    run = RunDir(folder / RUN)
    evaluation = run.dir / EVALUATION_DIR
    summary = json.loads((evaluation / SUMMARY_FILE).read_text(encoding="utf-8"))
    f1 = parse_summary(summary, str(evaluation / SUMMARY_FILE)).f1
    task = run.task
    snapshot = (evaluation / MANIFEST_FILE).read_text(encoding="utf-8").splitlines()
    files = {
        **_validation_files(folder, task),
        outputs.SUMMARY: outputs.summary_for(summary, version["arn"]),
        outputs.TRAINING_OUTPUT: manifest_path(folder, "train").read_text(encoding="utf-8").splitlines(),
        outputs.TESTING_OUTPUT: outputs.as_s3_refs([line for line in snapshot if line], str(root)),
    }
    where = outputs.write_outputs(ctx.s3, version["output_config"], version["arn"], files)
    return {"outputs": where, "f1": float(f1 or 0.0), "task": task}
