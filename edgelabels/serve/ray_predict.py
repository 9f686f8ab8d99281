"""`edgelabels predict MODEL --input FOLDER|GLOB|FILE_LIST --out DIR --engine ray`: batch inference on Ray Data.

Ray Data splits the sorted file list into blocks (`from_items`) and streams them through a pool of actors,
each reading its images from disk and holding one edge model (runtime/answers.py's `open_edge_model`: a
classifier, a detector or a chained export) whose onnxruntime uses as many threads as the actor has CPUs
(onnxruntime otherwise sizes its pool from the host's cores, ray#28044). Each image becomes one row, answered by
the one edge answer stream (`answer_images`, as in-process predict): its path, its DetectCustomLabels
`CustomLabels` as JSON (boxes included for a detector), or the error that made it unusable (missing,
unreadable, not an image). A bad image is a row, never a failed job. --address is checked with a TCP connect
first: a cluster that is not there is one line and exit 1, with nothing written into --out.

Why the actors read the files rather than `read_binary_files`: that puts every file's bytes into Ray's object
store, and its read tasks compete with the actors for the CPUs; on 2 cores the copies and the extra tasks cost
more than the reading itself (benchmarks/ray_predict.py). The paths must be readable where the actors run:
the same folder on one machine, a shared file system (NFS, EFS, a mounted bucket) on a cluster.

The layout of --out (the driver alone writes it, so only the driver needs to see it):

    DIR/ray-predict.json           the job: model, options, how many files, a hash of their sorted list
    DIR/parquet/part-00000.parquet one file per shard: columns path, labels (JSON text), error
    DIR/jsonl/part-00000.jsonl     the same rows, one JSON object a line ({"path", "labels", "error"})

The sorted file list is cut into fixed shards of --shard-size images; a shard is written atomically (both
files, Parquet first) as soon as its last row arrives, and a shard whose two files exist is skipped by the
next run. So a killed job run again with the same --out resumes: it predicts only the shards not yet
written, and no image is written twice. A rerun with another file list or other options is refused
(ray-predict.json would not match) rather than mixing two jobs in one folder.

Ray is imported inside functions only: `edgelabels predict --help` and the in-process engine never load it.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import warnings
from pathlib import Path

from edgelabels.errors import UserError
from edgelabels.runtime.answers import answer_images, list_images, open_edge_model

JOB_FILE = "ray-predict.json"
PARQUET_DIR, JSONL_DIR = "parquet", "jsonl"
DEFAULT_SHARD_SIZE = 1000
# Ray Data's default of about 200 blocks costs more in task start-ups than the work itself on a small machine:
# one block per this many files, at least two per actor so that none waits for its next batch.
FILES_PER_BLOCK = 250


# -- which images ------------------------------------------------------------------------------------

def input_files(spec: str) -> tuple[list[str], list[str]]:
    """--input (runtime/answers.py's list_images: a folder, recursively; a glob; a file list, whose entries need
    not exist: those become error rows; one image) -> (sorted, de-duplicated absolute paths, one line per problem
    such as a broken link). An input with no image at all is a UserError."""
    found, problems = list_images([spec])
    files = sorted({str(Path(p).absolute()) for p in found})
    if not files:
        raise UserError(f"--input {problems[0]}" if problems else f"--input {spec}: no PNG or JPEG images in it")
    return files, problems


# -- the model, on each actor --------------------------------------------------------------------

def answer_batch(model, paths, min_confidence=None, max_results=None) -> dict[str, list]:
    """One batch of image paths -> columns path, labels (CustomLabels as JSON text, None for a bad image), error
    (None, or what is wrong with the image: missing, unreadable, not an image), answered by the one edge answer
    stream (runtime/answers.py) as in-process predict is; one a crop stage finds nothing in gets an empty
    CustomLabels."""
    columns = {"path": list(paths), "labels": [], "error": []}
    for answer in answer_images(model, paths, batch_size=max(1, len(paths)), min_confidence=min_confidence,
                                max_results=max_results):
        columns["labels"].append(None if answer.error else json.dumps(answer.response["CustomLabels"]))
        columns["error"].append(answer.error)
    return columns


class EdgeModelActor:
    """The callable class Ray Data's map_batches runs on each actor: one edge model, loaded once by open_model
    (this module's open_edge_model when the job started: a test swaps in one of its own)."""

    def __init__(self, open_model, model_dir: str, precision: str, threads: int, min_confidence, max_results):
        self.model = open_model(model_dir, precision=precision, threads=threads)
        self.min_confidence, self.max_results = min_confidence, max_results

    def __call__(self, batch: dict):
        import pyarrow as pa

        columns = answer_batch(self.model, [str(p) for p in batch["path"]], self.min_confidence, self.max_results)
        # Typed columns: through numpy, a batch with no error would turn its all-None error column into floats.
        return pa.table({name: pa.array(values, pa.string()) for name, values in columns.items()})


# -- the output folder ------------------------------------------------------------------------------

class ShardedOut:
    """--out as the Ray engine lays it out (see the module docstring)."""

    def __init__(self, out: Path, job: dict):
        self.out = Path(out)
        self.job = job

    def claim(self) -> None:
        """Check that --out is empty or holds this same job, sweep what killed writers left, record the job."""
        from edgelabels import atomic

        job_path = self.out / JOB_FILE
        if job_path.is_file():
            earlier = json.loads(job_path.read_text())
            changed = sorted(key for key in set(earlier) | set(self.job) if earlier.get(key) != self.job.get(key))
            if changed:
                raise UserError(f"{self.out}: holds the results of another job ({', '.join(changed)} differ); "
                                "choose another --out, or remove it to start again")
        elif self.out.exists() and (not self.out.is_dir() or any(self.out.iterdir())):
            raise UserError(f"{self.out}: exists and is not a `predict --engine ray` output (no {JOB_FILE}); "
                            "choose another --out")
        try:
            if self.out.is_dir():
                atomic.sweep(self.out)
            atomic.write_json(job_path, self.job)
        except OSError as exc:  # a file in the way of its parents, no permission
            raise UserError(f"--out {self.out}: cannot write there ({exc.strerror or exc})") from None

    def name(self, index: int) -> str:
        return f"part-{index:05d}"

    def done(self, index: int) -> bool:
        return all(path.is_file() for path in self.paths(index))

    def paths(self, index: int) -> tuple[Path, Path]:
        return (self.out / PARQUET_DIR / f"{self.name(index)}.parquet",
                self.out / JSONL_DIR / f"{self.name(index)}.jsonl")

    def write(self, index: int, rows: list[dict]) -> None:
        """Both files of one shard, each atomically; Parquet first, so a shard is done once its JSONL exists."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from edgelabels import atomic

        parquet, jsonl = self.paths(index)
        table = pa.table({name: pa.array([row[name] for row in rows], pa.string())
                          for name in ("path", "labels", "error")})
        with atomic.temp_path(parquet) as tmp:
            pq.write_table(table, tmp)
        atomic.write_text(jsonl, "".join(json.dumps({"path": row["path"], "error": row["error"],
                                                     "labels": None if row["labels"] is None else
                                                     json.loads(row["labels"])}) + "\n" for row in rows))


def job_description(args, files: list[str], shard_size: int) -> dict:
    """What a rerun must share with the run that wrote --out for its shards to be the same shards."""
    return {"model": str(Path(args.model_dir).absolute()), "precision": args.precision,
            "min_confidence": args.min_confidence, "max_results": args.max_results,
            "shard_size": shard_size, "files": len(files),
            "files_sha256": hashlib.sha256("\n".join(files).encode("utf-8")).hexdigest()}


# -- the job ----------------------------------------------------------------------------------------

def predict_on_ray(args) -> int:
    """Predict every image of --input into --out's shards on Ray; 0 when every shard is written (bad images are
    rows with their error, counted on stderr), 1 when the cluster cannot be reached or the job fails."""
    from tqdm import tqdm

    shard_size = args.shard_size or DEFAULT_SHARD_SIZE
    files, problems = input_files(args.input)
    for problem in problems:
        print(f"edgelabels: {problem}", file=sys.stderr)
    out = ShardedOut(args.out, job_description(args, files, shard_size))
    open_edge_model(args.model_dir, precision=args.precision, threads=1)  # a bad export fails before Ray starts
    try:
        check_reachable(args.address)  # before --out holds a job record for a cluster that is not there
        out.claim()
        shards = [files[i:i + shard_size] for i in range(0, len(files), shard_size)]
        pending = {i: shard for i, shard in enumerate(shards) if not out.done(i)}
        print(f"edgelabels: {len(files)} images in {len(shards)} shards; {len(shards) - len(pending)} already in "
              f"{args.out}", file=sys.stderr, flush=True)
        if pending:
            with tqdm(total=sum(map(len, pending.values())), unit="img", file=sys.stderr) as bar:
                errors = _run_pending(args, out, pending, bar.update)
            print(f"edgelabels: {len(pending)} shards written, {errors} bad images (rows with an error) -> "
                  f"{args.out}", file=sys.stderr)
    except JobFailed as exc:
        print(f"edgelabels: error: {exc}", file=sys.stderr)
        return 1
    return 0


CONNECT_TIMEOUT_S = 3.0


def check_reachable(address: str | None) -> None:
    """A TCP connect, with a short timeout, to the GCS port of --address (HOST:PORT, ray://HOST:PORT, or what
    RAY_ADDRESS names for auto): with nothing listening, ray.init would retry for minutes, logging as it goes.
    An address of another form is left to Ray."""
    if address == "auto":
        address = os.environ.get("RAY_ADDRESS")
    host, colon, port = (address or "").split("://", 1)[-1].rpartition(":")
    if not colon or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise JobFailed(f"--address {address}: no Ray cluster answers there ({exc.strerror or exc}); "
                        "nothing was written") from None


def _run_pending(args, out: ShardedOut, pending: dict[int, list[str]], progress) -> int:
    """Stream the pending shards' images through the actors (each reads its own files: a missing or unreadable
    one is a row with its error); write each shard as soon as it is complete."""
    collecting = {i: {} for i in pending}
    shard_of = {path: i for i, shard in pending.items() for path in shard}
    errors = 0

    def keep(i: int, row: dict) -> None:
        nonlocal errors
        collecting[i][row["path"]] = row
        errors += row["error"] is not None
        if len(collecting[i]) == len(pending[i]):
            rows = collecting.pop(i)
            out.write(i, [rows[path] for path in pending[i]])

    import ray
    import ray.exceptions

    started = _connect(args.address)
    try:
        for batch in _dataset(args, list(shard_of)).iter_batches(batch_size=None, batch_format="pyarrow"):
            for row in batch.to_pylist():
                keep(shard_of[row["path"]], row)
            progress(batch.num_rows)
    except ray.exceptions.RayError as exc:
        done = len(pending) - len(collecting)
        raise JobFailed(f"the Ray job stopped: {_first_line(exc)}; {done} shards were written to {out.out} and "
                        "are kept: the same command again resumes after them") from None
    finally:
        if started:
            ray.shutdown()
    return errors


class JobFailed(Exception):
    """The Ray job itself failed (an actor died, the cluster went away): not the input's fault."""


def _first_line(exc: Exception) -> str:
    """The cause's own message, without Ray's tracebacks: the last non-blank line of the innermost error (for a
    dead actor, what usually kills one)."""
    import ray.exceptions

    if isinstance(exc, ray.exceptions.ActorDiedError):
        return ("an actor's process died (a native crash, such as a decoder's on one image, or the OOM killer; "
                "Ray's logs say which: /tmp/ray/session_latest/logs on the node)")
    cause = getattr(exc, "cause", None) or exc
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    text = f"{type(cause).__name__}: {lines[-1]}" if lines else type(cause).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _connect(address: str | None) -> bool:
    """Join the Ray cluster at --address ("auto": the one RAY_ADDRESS or `ray start` names), or start a local
    one; a Ray already initialised in this process (a test's) is used as it is. True if this call started it."""
    import logging

    import ray

    if ray.is_initialized():
        return False
    try:
        # log_to_driver=False: the actors' and raylet's own output stays in Ray's session logs, not on our stderr
        ray.init(address=address or "local", include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    except ConnectionError as exc:
        raise JobFailed(f"--address {address}: no Ray cluster there ({_first_line(exc)})") from None
    return True


def _dataset(args, paths: list[str]):
    """Ray Data: the paths in blocks, map_batches through a fixed pool of EdgeModelActor, fractional CPUs each."""
    import logging

    import ray
    import ray.data
    from ray.data import ActorPoolStrategy

    # Our own bar counts images; Ray's per-operator bars and its INFO lines about the plan would interleave, and
    # a failed job is our one line (JobFailed), not its logged traceback.
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.CRITICAL)
    cpus = float(ray.cluster_resources().get("CPU", 1))
    actors = args.actors or max(1, int(cpus))
    actor_cpus = max(0.1, cpus / actors)
    # onnxruntime's pool is the actor's share of the CPUs (--threads if given), not the host's cores
    threads = args.threads or max(1, int(actor_cpus))
    blocks = max(2 * actors, -(-len(paths) // FILES_PER_BLOCK))
    ds = ray.data.from_items([{"path": path} for path in paths], override_num_blocks=blocks)
    # max_restarts=0: Ray Data's default restarts a dead actor and retries its batch forever, so one image that
    # crashes the decoder in native code would never end the job; with 0, the job stops with the error and a rerun
    # resumes. (It also keeps Ray's core_worker from printing, on every run, that restarts cannot rebuild the
    # actor's arguments from its object store: ray#57733.)
    # Ray 2.60 has no named parameter for max_restarts yet and warns about the generic ones it still accepts.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "`ray_remote_args` is deprecated", DeprecationWarning)
        return ds.map_batches(
            EdgeModelActor, batch_size=args.batch_size, batch_format="numpy",
            compute=ActorPoolStrategy(size=actors), num_cpus=actor_cpus, max_restarts=0,
            fn_constructor_kwargs={"open_model": open_edge_model, "model_dir": str(Path(args.model_dir).absolute()),
                                   "precision": args.precision, "threads": threads,
                                   "min_confidence": args.min_confidence, "max_results": args.max_results})
