"""The service's state: one embedded SQLite database (WAL) at DIR/service.db.

Projects, datasets (with their Ground Truth entries), versions, tags and the training job queue. Every
status change runs in one `BEGIN IMMEDIATE` transaction that checks the current status first, so two
threads (or two processes on the same DIR) cannot both move a resource. Each thread gets its own
connection. A restarted process sees everything, and `jobs_to_resume()` offers jobs a killed process
left "running".

The status machines are Rekognition's; a refused transition raises `TransitionRefused`, whose `code`
is the Rekognition error the operations answer with.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

from edgelabels.service.arns import ArnError, DatasetArn, ProjectArn, VersionArn, parse_arn, valid_name

DATABASE = "service.db"

# status -> the statuses it may move to. A status with no entry is final until the row is removed.
PROJECT_TRANSITIONS = {
    "CREATING": {"CREATED", "DELETING"},
    "CREATED": {"DELETING"},
    "DELETING": set(),
}
DATASET_TRANSITIONS = {
    "CREATE_IN_PROGRESS": {"CREATE_COMPLETE", "CREATE_FAILED"},
    "CREATE_COMPLETE": {"UPDATE_IN_PROGRESS", "DELETE_IN_PROGRESS"},
    "CREATE_FAILED": {"DELETE_IN_PROGRESS"},
    "UPDATE_IN_PROGRESS": {"UPDATE_COMPLETE", "UPDATE_FAILED"},
    "UPDATE_COMPLETE": {"UPDATE_IN_PROGRESS", "DELETE_IN_PROGRESS"},
    "UPDATE_FAILED": {"UPDATE_IN_PROGRESS", "DELETE_IN_PROGRESS"},
    "DELETE_IN_PROGRESS": set(),
}
VERSION_TRANSITIONS = {
    "TRAINING_IN_PROGRESS": {"TRAINING_COMPLETED", "TRAINING_FAILED"},
    "TRAINING_COMPLETED": {"STARTING", "DELETING"},
    "TRAINING_FAILED": {"DELETING"},
    "STARTING": {"RUNNING", "FAILED"},
    "RUNNING": {"STOPPING"},
    "FAILED": {"STARTING", "DELETING"},  # hosting failed; the model itself is intact
    "STOPPING": {"STOPPED"},
    "STOPPED": {"STARTING", "DELETING"},
    "DELETING": set(),
}
# A resource busy in one of these answers ResourceInUseException; otherwise it is not ready for the call.
BUSY = {"CREATING", "DELETING", "CREATE_IN_PROGRESS", "UPDATE_IN_PROGRESS", "DELETE_IN_PROGRESS",
        "TRAINING_IN_PROGRESS", "STARTING", "RUNNING", "STOPPING"}
JOB_STATES = ("queued", "running", "done", "failed")
VERSION_FIELDS = ("output_config", "run_dir", "export_dir", "training_end_ms", "details", "min_inference_units")
DATASET_CODES = ("SUCCESS", "SERVICE_ERROR", "CLIENT_ERROR")  # botocore's DatasetStatusMessageCode

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS projects (
  arn TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, status TEXT NOT NULL, created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS datasets (
  arn TEXT PRIMARY KEY, project_arn TEXT NOT NULL REFERENCES projects(arn), type TEXT NOT NULL,
  status TEXT NOT NULL, status_message TEXT NOT NULL DEFAULT '', stats TEXT NOT NULL DEFAULT '{}',
  created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL, UNIQUE (project_arn, type));
CREATE TABLE IF NOT EXISTS entries (
  dataset_arn TEXT NOT NULL REFERENCES datasets(arn), source_ref TEXT NOT NULL, line TEXT NOT NULL,
  errors TEXT NOT NULL DEFAULT '[]', seq INTEGER NOT NULL, PRIMARY KEY (dataset_arn, source_ref));
CREATE TABLE IF NOT EXISTS versions (
  arn TEXT PRIMARY KEY, project_arn TEXT NOT NULL REFERENCES projects(arn), name TEXT NOT NULL,
  status TEXT NOT NULL, status_message TEXT NOT NULL DEFAULT '', output_config TEXT NOT NULL DEFAULT '{}',
  created_ms INTEGER NOT NULL, training_end_ms INTEGER, run_dir TEXT, export_dir TEXT,
  min_inference_units INTEGER, details TEXT NOT NULL DEFAULT '{}', UNIQUE (project_arn, name));
CREATE TABLE IF NOT EXISTS tags (
  arn TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (arn, key));
CREATE TABLE IF NOT EXISTS jobs (
  id INTEGER PRIMARY KEY AUTOINCREMENT, version_arn TEXT NOT NULL, state TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0, owner TEXT, message TEXT NOT NULL DEFAULT '',
  queued_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL);
"""
# Columns added after the first release: (table, column, declaration). An existing service.db gains them on open.
# datasets.status_code: DescribeDataset's StatusMessageCode; datasets.request: the work a *_IN_PROGRESS status is
# doing (JSON), so that a restarted service redoes what a killed one left half done.
MIGRATIONS = (
    ("datasets", "status_code", "TEXT NOT NULL DEFAULT 'SUCCESS'"),
    ("datasets", "request", "TEXT"),
)


class StoreError(Exception):
    """A request the state refuses; `code` is the Rekognition error the operations answer with."""

    code = "InvalidParameterException"


class NotFound(StoreError):
    code = "ResourceNotFoundException"


class AlreadyExists(StoreError):
    code = "ResourceInUseException"  # Rekognition answers a taken project or version name with this


class InUse(StoreError):
    code = "ResourceInUseException"


class TransitionRefused(StoreError):
    """`current` may not move to `wanted`; busy resources answer ResourceInUse, others ResourceNotReady."""

    def __init__(self, arn: str, current: str, wanted: str):
        self.arn, self.current, self.wanted = arn, current, wanted
        self.code = "ResourceInUseException" if current in BUSY else "ResourceNotReadyException"
        super().__init__(f"{arn} is {current}; it cannot become {wanted}")


class InvalidPaginationToken(StoreError):
    code = "InvalidPaginationTokenException"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Store:
    """The state of one service directory. Safe to share between threads; open several on one DIR freely."""

    def __init__(self, directory, region: str = "us-east-1", account: str = "000000000000"):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / DATABASE
        self.region, self.account = region, account
        self.owner = uuid.uuid4().hex  # marks the jobs this Store's process claims
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        with self._transaction() as db:
            for statement in filter(str.strip, SCHEMA.split(";")):
                db.execute(statement)
            for table, column, declaration in MIGRATIONS:
                if column not in {row[1] for row in db.execute(f"PRAGMA table_info({table})")}:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
            db.execute("INSERT OR IGNORE INTO meta VALUES ('token_key', ?)", (secrets.token_hex(32),))
            self._token_key = bytes.fromhex(db.execute("SELECT value FROM meta WHERE key='token_key'").fetchone()[0])

    # -- connections and transactions --------------------------------------------------------------
    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            self._local.db = db
            with self._lock:
                self._connections.append(db)
        return db

    @contextmanager
    def _transaction(self):
        db = self._db()
        db.execute("BEGIN IMMEDIATE")  # take the write lock now: check-then-write cannot interleave
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            for db in self._connections:
                db.close()
            self._connections.clear()
        self._local = threading.local()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- paging ----------------------------------------------------------------------------------
    def _token(self, listing: str, offset: int) -> str:
        payload = base64.urlsafe_b64encode(json.dumps([listing, offset]).encode()).decode().rstrip("=")
        signature = hmac.new(self._token_key, payload.encode(), hashlib.sha256).hexdigest()[:32]
        return f"{payload}.{signature}"

    def _offset(self, listing: str, token: str) -> int:
        try:
            payload, signature = token.split(".")
            expected = hmac.new(self._token_key, payload.encode(), hashlib.sha256).hexdigest()[:32]
            if not hmac.compare_digest(signature, expected):
                raise ValueError("signature")
            issued_for, offset = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            if issued_for != listing or not isinstance(offset, int) or offset < 0:
                raise ValueError("listing")
        except (ValueError, TypeError, AttributeError) as error:
            raise InvalidPaginationToken(f"NextToken {str(token)[:64]!r} was not issued for this request") from error
        return offset

    def page(self, listing: str, rows: list, max_results: int | None, next_token: str | None):
        """(rows of this page, NextToken or None on the last page). `listing` names the request and its filters."""
        start = self._offset(listing, next_token) if next_token is not None else 0
        size = max_results if max_results and max_results > 0 else 100
        chunk = rows[start:start + size]
        more = start + size < len(rows)
        return chunk, (self._token(listing, start + size) if more else None)

    # -- projects --------------------------------------------------------------------------------
    def create_project(self, name: str, status: str = "CREATING") -> dict:
        if not valid_name(name):
            raise StoreError(f"project name {name!r} must be 1-255 characters of a-z A-Z 0-9 _ . -")
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM projects WHERE name=?", (name,)).fetchone():
                raise AlreadyExists(f"a project named {name!r} already exists")
            created, arn = self._fresh(db, lambda ms: ProjectArn(self.region, self.account, name, ms))
            db.execute("INSERT INTO projects VALUES (?,?,?,?)", (arn, name, status, created))
        return self.project(arn)

    def project(self, arn: str) -> dict:
        row = self._db().execute("SELECT * FROM projects WHERE arn=?", (arn,)).fetchone()
        if row is None:
            raise NotFound(f"project {arn} not found")
        return dict(row)

    def projects(self, names=None, max_results=None, next_token=None):
        rows = [dict(r) for r in self._db().execute("SELECT * FROM projects ORDER BY created_ms, arn")]
        if names is not None:
            rows = [r for r in rows if r["name"] in set(names)]
        return self.page(f"projects:{json.dumps(sorted(names) if names else None)}", rows, max_results, next_token)

    def set_project_status(self, arn: str, status: str) -> dict:
        with self._transaction() as db:
            self._move(db, "projects", arn, status, PROJECT_TRANSITIONS)
        return self.project(arn)

    def start_project_delete(self, arn: str) -> dict:
        """Move a project to DELETING, in the transaction that checks it has no datasets or versions left
        (ResourceInUse otherwise, and the project stays as it was)."""
        with self._transaction() as db:
            self._status(db, "projects", arn)
            self._refuse_children(db, arn)
            self._move(db, "projects", arn, "DELETING", PROJECT_TRANSITIONS)
        return self.project(arn)

    @staticmethod
    def _refuse_children(db, arn: str) -> None:
        for table in ("datasets", "versions"):
            if db.execute(f"SELECT 1 FROM {table} WHERE project_arn=?", (arn,)).fetchone():
                raise InUse(f"project {arn} still has {table}; delete them first")

    def delete_project(self, arn: str) -> None:
        """Remove a project already DELETING; refused while it has datasets or versions (as Rekognition does)."""
        with self._transaction() as db:
            current = self._status(db, "projects", arn)
            if current != "DELETING":
                raise TransitionRefused(arn, current, "deleted")
            self._refuse_children(db, arn)
            db.execute("DELETE FROM tags WHERE arn=?", (arn,))
            db.execute("DELETE FROM projects WHERE arn=?", (arn,))

    # -- datasets --------------------------------------------------------------------------------
    def create_dataset(self, project_arn: str, dataset_type: str, request: dict | None = None,
                       tags: dict | None = None) -> dict:
        """A new CREATE_IN_PROGRESS dataset with its tags; `request` (JSON) records the work its creation is doing."""
        kind = dataset_type.lower()
        with self._transaction() as db:
            name = self._project_taking(db, project_arn, "a new dataset")
            if db.execute("SELECT 1 FROM datasets WHERE project_arn=? AND type=?", (project_arn, kind)).fetchone():
                raise AlreadyExists(f"project {project_arn} already has a {kind} dataset")
            created, arn = self._fresh(db, lambda ms: DatasetArn(self.region, self.account, name, kind, ms))
            db.execute("INSERT INTO datasets (arn, project_arn, type, status, created_ms, updated_ms, request) "
                       "VALUES (?,?,?,?,?,?,?)", (arn, project_arn, kind, "CREATE_IN_PROGRESS", created, created,
                                                  None if request is None else json.dumps(request)))
            self._insert_tags(db, arn, tags)
        return self.dataset(arn)

    def dataset(self, arn: str) -> dict:
        row = self._db().execute("SELECT * FROM datasets WHERE arn=?", (arn,)).fetchone()
        if row is None:
            raise NotFound(f"dataset {arn} not found")
        return {**dict(row), "stats": json.loads(row["stats"]),
                "request": None if row["request"] is None else json.loads(row["request"])}

    def datasets(self, project_arn: str) -> list[dict]:
        rows = self._db().execute("SELECT arn FROM datasets WHERE project_arn=? ORDER BY type DESC", (project_arn,))
        return [self.dataset(r[0]) for r in rows]

    def set_dataset_status(self, arn: str, status: str, message: str = "", stats: dict | None = None,
                           code: str = "SUCCESS", request: dict | None = None) -> dict:
        """Move a dataset; `code` is its StatusMessageCode, `request` the work the new status is doing (None
        clears it: a finished status does no work)."""
        return self.set_datasets_status([arn], status, message, {arn: stats} if stats is not None else None,
                                         code, {arn: request} if request is not None else None)[0]

    def set_datasets_status(self, arns, status: str, message: str = "", stats: dict | None = None,
                            code: str = "SUCCESS", requests: dict | None = None, moves=()) -> list[dict]:
        """Move several datasets at once, all or none (DistributeDatasetEntries moves a train and a test dataset).

        stats / requests: {arn: value}; moves: (source-ref, from ARN, to ARN) entries to move between them in the
        same transaction."""
        if code not in DATASET_CODES:
            raise StoreError(f"{code!r} is not a StatusMessageCode; known: {DATASET_CODES}")
        with self._transaction() as db:
            for arn in arns:
                self._move(db, "datasets", arn, status, DATASET_TRANSITIONS, message)
                request = (requests or {}).get(arn)
                db.execute("UPDATE datasets SET updated_ms=?, status_code=?, request=? WHERE arn=?",
                           (now_ms(), code, None if request is None else json.dumps(request), arn))
            for source_ref, source, target in moves:
                db.execute("UPDATE entries SET dataset_arn=? WHERE dataset_arn=? AND source_ref=?",
                           (target, source, source_ref))
            for arn, value in (stats or {}).items():
                db.execute("UPDATE datasets SET stats=? WHERE arn=?", (json.dumps(value), arn))
        return [self.dataset(arn) for arn in arns]

    def datasets_in_progress(self) -> list[dict]:
        """Datasets a (killed) process left CREATE_ / UPDATE_ / DELETE_IN_PROGRESS, oldest first."""
        rows = self._db().execute("SELECT arn FROM datasets WHERE status LIKE '%_IN_PROGRESS' ORDER BY created_ms")
        return [self.dataset(r[0]) for r in rows]

    def delete_dataset(self, arn: str) -> None:
        """Remove a dataset already DELETE_IN_PROGRESS, with its entries and tags."""
        with self._transaction() as db:
            current = self._status(db, "datasets", arn)
            if current != "DELETE_IN_PROGRESS":
                raise TransitionRefused(arn, current, "deleted")
            db.execute("DELETE FROM entries WHERE dataset_arn=?", (arn,))
            db.execute("DELETE FROM tags WHERE arn=?", (arn,))
            db.execute("DELETE FROM datasets WHERE arn=?", (arn,))

    # -- dataset entries -------------------------------------------------------------------------
    def put_entries(self, dataset_arn: str, entries) -> int:
        """Add or replace entries: each is (Ground Truth JSON line, list of error strings); the key is its source-ref.

        Returns how many entries the dataset holds afterwards."""
        with self._transaction() as db:
            self._status(db, "datasets", dataset_arn)
            seq = db.execute("SELECT COALESCE(MAX(seq), 0) FROM entries WHERE dataset_arn=?",
                             (dataset_arn,)).fetchone()[0]
            for line, errors in entries:
                source_ref = json.loads(line).get("source-ref")
                if not isinstance(source_ref, str) or not source_ref:
                    raise StoreError(f"entry has no source-ref: {line[:200]}")
                seq += 1
                db.execute("INSERT INTO entries VALUES (?,?,?,?,?) ON CONFLICT (dataset_arn, source_ref) "
                           "DO UPDATE SET line=excluded.line, errors=excluded.errors",
                           (dataset_arn, source_ref, line, json.dumps(list(errors)), seq))
            return db.execute("SELECT COUNT(*) FROM entries WHERE dataset_arn=?", (dataset_arn,)).fetchone()[0]

    def all_entries(self, dataset_arn: str) -> list[dict]:
        """Every entry of the dataset as a dict {source_ref, line, errors}, in the order first added (unpaged)."""
        self.dataset(dataset_arn)
        return [{"source_ref": r["source_ref"], "line": r["line"], "errors": json.loads(r["errors"])}
                for r in self._db().execute("SELECT * FROM entries WHERE dataset_arn=? ORDER BY seq", (dataset_arn,))]

    def entry(self, dataset_arn: str, source_ref: str) -> dict | None:
        """The dataset's entry keyed `source_ref` ({source_ref, line, errors}), or None."""
        self.dataset(dataset_arn)
        row = self._db().execute("SELECT * FROM entries WHERE dataset_arn=? AND source_ref=?",
                                 (dataset_arn, source_ref)).fetchone()
        return None if row is None else {"source_ref": row["source_ref"], "line": row["line"],
                                         "errors": json.loads(row["errors"])}

    def entries(self, dataset_arn: str, source_ref_contains: str | None = None, has_errors: bool | None = None,
                max_results=None, next_token=None):
        """Entries as dicts {source_ref, line, errors}, in the order first added; paged."""
        rows = self.all_entries(dataset_arn)
        if source_ref_contains is not None:
            rows = [r for r in rows if source_ref_contains in r["source_ref"]]
        if has_errors is not None:
            rows = [r for r in rows if bool(r["errors"]) == has_errors]
        listing = f"entries:{json.dumps([dataset_arn, source_ref_contains, has_errors])}"
        return self.page(listing, rows, max_results, next_token)

    # -- versions --------------------------------------------------------------------------------
    def create_version(self, project_arn: str, name: str, output_config: dict | None = None,
                       tags: dict | None = None, enqueue: bool = True) -> dict:
        """A new TRAINING_IN_PROGRESS version, its tags and (by default) its queued job, in one transaction."""
        if not valid_name(name):
            raise StoreError(f"version name {name!r} must be 1-255 characters of a-z A-Z 0-9 _ . -")
        with self._transaction() as db:
            project_name = self._project_taking(db, project_arn, "a new version")
            if db.execute("SELECT 1 FROM versions WHERE project_arn=? AND name=?", (project_arn, name)).fetchone():
                raise AlreadyExists(f"project {project_arn} already has a version named {name!r}")
            created, arn = self._fresh(db, lambda ms: VersionArn(self.region, self.account, project_name, name, ms))
            db.execute("INSERT INTO versions (arn, project_arn, name, status, output_config, created_ms) "
                       "VALUES (?,?,?,?,?,?)",
                       (arn, project_arn, name, "TRAINING_IN_PROGRESS", json.dumps(output_config or {}), created))
            self._insert_tags(db, arn, tags)
            if enqueue:
                db.execute("INSERT INTO jobs (version_arn, state, queued_ms, updated_ms) VALUES (?,?,?,?)",
                           (arn, "queued", created, created))
        return self.version(arn)

    def version(self, arn: str) -> dict:
        row = self._db().execute("SELECT * FROM versions WHERE arn=?", (arn,)).fetchone()
        if row is None:
            raise NotFound(f"project version {arn} not found")
        return {**dict(row), "output_config": json.loads(row["output_config"]), "details": json.loads(row["details"])}

    def versions(self, project_arn: str, names=None, max_results=None, next_token=None):
        """A project's versions, newest first (as DescribeProjectVersions lists them); paged."""
        self.project(project_arn)
        arns = [r[0] for r in self._db().execute(
            "SELECT arn FROM versions WHERE project_arn=? ORDER BY created_ms DESC, arn DESC", (project_arn,))]
        rows = [self.version(a) for a in arns]
        if names is not None:
            rows = [r for r in rows if r["name"] in set(names)]
        listing = f"versions:{json.dumps([project_arn, sorted(names) if names else None])}"
        return self.page(listing, rows, max_results, next_token)

    def set_version_status(self, arn: str, status: str, message: str = "", **fields) -> dict:
        """Move a version, and set any of VERSION_FIELDS with it, in one transaction."""
        with self._transaction() as db:
            self._move(db, "versions", arn, status, VERSION_TRANSITIONS, message)
            self._set_version_fields(db, arn, fields)
        return self.version(arn)

    def update_version(self, arn: str, **fields) -> dict:
        """Set VERSION_FIELDS without changing the status (run and export directories, details)."""
        with self._transaction() as db:
            self._status(db, "versions", arn)
            self._set_version_fields(db, arn, fields)
        return self.version(arn)

    def delete_version(self, arn: str) -> None:
        """Remove a version already DELETING, with its tags and jobs."""
        with self._transaction() as db:
            current = self._status(db, "versions", arn)
            if current != "DELETING":
                raise TransitionRefused(arn, current, "deleted")
            for statement in ("DELETE FROM tags WHERE arn=?", "DELETE FROM jobs WHERE version_arn=?",
                              "DELETE FROM versions WHERE arn=?"):
                db.execute(statement, (arn,))

    @staticmethod
    def _set_version_fields(db, arn: str, fields: dict) -> None:
        for key, value in fields.items():
            if key not in VERSION_FIELDS:
                raise StoreError(f"unknown version field {key!r}; known: {VERSION_FIELDS}")
            if key in ("output_config", "details"):
                value = json.dumps(value)
            db.execute(f"UPDATE versions SET {key}=? WHERE arn=?", (value, arn))

    # -- tags ------------------------------------------------------------------------------------
    def _require(self, db, arn: str) -> None:
        try:
            kind = type(parse_arn(arn))
        except ArnError as error:
            raise StoreError(str(error)) from error
        table = {ProjectArn: "projects", DatasetArn: "datasets", VersionArn: "versions"}.get(kind)
        if table is None or db.execute(f"SELECT 1 FROM {table} WHERE arn=?", (arn,)).fetchone() is None:
            raise NotFound(f"resource {arn} not found")

    def tag(self, arn: str, tags: dict) -> None:
        with self._transaction() as db:
            self._require(db, arn)
            for key, value in tags.items():
                db.execute("INSERT INTO tags VALUES (?,?,?) ON CONFLICT (arn, key) DO UPDATE SET value=excluded.value",
                           (arn, key, value))

    def untag(self, arn: str, keys) -> None:
        with self._transaction() as db:
            self._require(db, arn)
            db.executemany("DELETE FROM tags WHERE arn=? AND key=?", [(arn, k) for k in keys])

    def tags(self, arn: str) -> dict:
        db = self._db()
        self._require(db, arn)
        rows = db.execute("SELECT key, value FROM tags WHERE arn=? ORDER BY key", (arn,))
        return {r["key"]: r["value"] for r in rows}

    # -- jobs ------------------------------------------------------------------------------------
    def enqueue(self, version_arn: str) -> int:
        with self._transaction() as db:
            self._status(db, "versions", version_arn)
            stamp = now_ms()
            return db.execute("INSERT INTO jobs (version_arn, state, queued_ms, updated_ms) VALUES (?,?,?,?)",
                              (version_arn, "queued", stamp, stamp)).lastrowid

    def job(self, job_id: int) -> dict:
        row = self._db().execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        if row is None:
            raise NotFound(f"job {job_id} not found")
        return dict(row)

    def jobs(self, state: str | None = None) -> list[dict]:
        if state is None:
            return [dict(r) for r in self._db().execute("SELECT * FROM jobs ORDER BY id")]
        return [dict(r) for r in self._db().execute("SELECT * FROM jobs WHERE state=? ORDER BY id", (state,))]

    def claim_next(self) -> dict | None:
        """The oldest queued job, now running and owned by this Store (attempts + 1); None when the queue is empty."""
        with self._transaction() as db:
            row = db.execute("SELECT id FROM jobs WHERE state='queued' ORDER BY id LIMIT 1").fetchone()
            if row is None:
                return None
            self._claim(db, row[0])
        return self.job(row[0])

    def resume(self, job_id: int) -> dict:
        """Take over a job another (killed) process left running; attempts + 1."""
        with self._transaction() as db:
            state = db.execute("SELECT state, owner FROM jobs WHERE id=?", (job_id,)).fetchone()
            if state is None:
                raise NotFound(f"job {job_id} not found")
            if state["state"] != "running" or state["owner"] == self.owner:
                raise InUse(f"job {job_id} is {state['state']} and not left behind by another process")
            self._claim(db, job_id)
        return self.job(job_id)

    def _claim(self, db, job_id: int) -> None:
        db.execute("UPDATE jobs SET state='running', attempts=attempts+1, owner=?, updated_ms=? WHERE id=?",
                   (self.owner, now_ms(), job_id))

    def jobs_to_resume(self) -> list[dict]:
        """Jobs marked running by a Store other than this one: a process that was killed or restarted."""
        return [dict(r) for r in self._db().execute(
            "SELECT * FROM jobs WHERE state='running' AND (owner IS NULL OR owner != ?) ORDER BY id", (self.owner,))]

    def finish_job(self, job_id: int, state: str, message: str = "", version_status: str | None = None,
                   **version_fields) -> dict:
        """End a running job as done|failed and, in the same transaction, move its version (with fields)."""
        if state not in ("done", "failed"):
            raise StoreError(f"a job finishes as done or failed, not {state!r}")
        with self._transaction() as db:
            row = db.execute("SELECT state, version_arn FROM jobs WHERE id=?", (job_id,)).fetchone()
            if row is None:
                raise NotFound(f"job {job_id} not found")
            if row["state"] != "running":
                raise TransitionRefused(f"job {job_id}", row["state"], state)
            db.execute("UPDATE jobs SET state=?, message=?, updated_ms=? WHERE id=?",
                       (state, message, now_ms(), job_id))
            if version_status is not None:
                self._move(db, "versions", row["version_arn"], version_status, VERSION_TRANSITIONS, message)
                self._set_version_fields(db, row["version_arn"], version_fields)
        return self.job(job_id)

    def _project_taking(self, db, project_arn: str, what: str) -> str:
        """The name of a project that may take `what` (a dataset or a version): only a CREATED one can."""
        project = self._status(db, "projects", project_arn)
        if project != "CREATED":
            raise TransitionRefused(project_arn, project, what)
        return db.execute("SELECT name FROM projects WHERE arn=?", (project_arn,)).fetchone()[0]

    @staticmethod
    def _insert_tags(db, arn: str, tags: dict | None) -> None:
        db.executemany("INSERT INTO tags VALUES (?,?,?)", [(arn, key, value) for key, value in (tags or {}).items()])

    @staticmethod
    def _fresh(db, make) -> tuple[int, str]:
        """(creation ms, ARN). Creation times only grow, so a resource deleted and created again within one
        millisecond (or after the clock stepped back) never gets an ARN that was issued before."""
        last = db.execute("SELECT value FROM meta WHERE key='last_created_ms'").fetchone()
        created = max(now_ms(), int(last[0]) + 1 if last else 0)
        db.execute("INSERT OR REPLACE INTO meta VALUES ('last_created_ms', ?)", (str(created),))
        return created, str(make(created))

    # -- the status machines ---------------------------------------------------------------------
    @staticmethod
    def _status(db, table: str, arn: str) -> str:
        row = db.execute(f"SELECT status FROM {table} WHERE arn=?", (arn,)).fetchone()
        if row is None:
            raise NotFound(f"{table[:-1]} {arn} not found")
        return row[0]

    def _move(self, db, table: str, arn: str, status: str, machine: dict, message: str = "") -> None:
        if status not in machine:
            raise StoreError(f"{status!r} is not a {table[:-1]} status; known: {sorted(machine)}")
        current = self._status(db, table, arn)
        if status not in machine[current]:
            raise TransitionRefused(arn, current, status)
        if table == "projects":
            db.execute("UPDATE projects SET status=? WHERE arn=?", (status, arn))
        else:
            db.execute(f"UPDATE {table} SET status=?, status_message=? WHERE arn=?", (status, message, arn))
