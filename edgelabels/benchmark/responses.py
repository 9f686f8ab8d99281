"""Recorded DetectCustomLabels answers: one JSON line per test image, and their probability arrays.

A live benchmark appends one line per answered image to DIR/rekognition-responses.jsonl as soon as
the answer arrives: the line is written with one os.write on a file opened O_APPEND and fsynced, so a
crash loses at most the line being written, and a partial last line is cut off before appending again.
`--rekognition-responses FILE` replays such a file, so the comparison can be re-run without paying
for a running model again.

Lines are matched to test images by the SHA-256 of the image bytes, not by path: a test folder that
moved, or a manifest that names the same images differently, still finds its answers, and an image
whose content changed since the recording is not silently given an old answer.

A line: {"version", "image" (path as read), "sha256", "bytes", "project_version_arn", "endpoint",
"min_confidence" (0), "timestamp" (UTC, first attempt), "latency_s" (the answered attempt),
"elapsed_s" (first attempt to answer, backoff included), "attempts", "response" (the answer without
ResponseMetadata) or "error" ({"Code", "Message"}: an image Rekognition refused), "request_id",
"concurrency" (requests in flight), "inference_units", "billable_training_seconds"}.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

import numpy as np

from edgelabels.errors import UserError

RECORD_VERSION = 1
FILE_NAME = "rekognition-responses.jsonl"


def image_key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_records(path: str | Path) -> tuple[list[dict], bool]:
    """(records in file order, whether a partial last line was dropped); UserError for a malformed file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: recorded responses not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder; pass the rekognition-responses.jsonl file inside it") from None
    lines = raw.split(b"\n")
    # Everything after the last newline is a line a crash interrupted (or nothing at all).
    complete, tail = lines[:-1], lines[-1]
    records = []
    for number, line in enumerate(complete, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, UnicodeDecodeError) as exc:
            raise UserError(f"{path}:{number}: not a JSON line ({exc})") from None
        if not isinstance(record, dict):
            raise UserError(f"{path}:{number}: not a JSON object")
        missing = [key for key in ("sha256", "project_version_arn", "latency_s") if key not in record]
        if missing or ("response" not in record and "error" not in record):
            raise UserError(f"{path}:{number}: not a recorded DetectCustomLabels answer "
                            f"(no {', '.join(missing) or 'response'})")
        if record.get("version", RECORD_VERSION) != RECORD_VERSION:
            raise UserError(f"{path}:{number}: record version {record.get('version')!r}; this edgelabels reads "
                            f"version {RECORD_VERSION}")
        records.append(record)
    return records, bool(tail.strip())


class ResponseLog:
    """Append-only JSONL that survives crashes line by line; safe to append to from several threads."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.records: list[dict] = []
        self.dropped_partial = False
        if self.path.exists():
            self.records, self.dropped_partial = read_records(self.path)
            if self.dropped_partial:  # cut the interrupted line, or the next append would be glued to it
                raw = self.path.read_bytes()
                os.truncate(self.path, raw.rfind(b"\n") + 1)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._lock = threading.Lock()

    def append(self, record: dict) -> None:
        data = (json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n").encode("utf-8")
        with self._lock:
            written = os.write(self._fd, data)
            while written < len(data):  # a short write to a regular file is rare; finish the line
                written += os.write(self._fd, data[written:])
            os.fsync(self._fd)
            self.records.append(record)

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def single_arn(records: list[dict], name: str) -> str:
    """The one model the records were answered by; UserError when a file mixes models."""
    arns = sorted({record["project_version_arn"] for record in records})
    if not arns:
        raise UserError(f"{name}: no recorded responses in it")
    if len(arns) > 1:
        raise UserError(f"{name}: holds answers of {len(arns)} models ({', '.join(arns)}); "
                        "keep one model's lines per file")
    return arns[0]


def by_image(records: list[dict]) -> dict[str, dict]:
    """sha256 -> record (a later line for the same image wins: it is the newer answer)."""
    return {record["sha256"]: record for record in records}


def to_probabilities(responses: list[dict], labels: list[str], name: str) -> tuple[np.ndarray, list[str]]:
    """DetectCustomLabels answers (MinConfidence 0) -> confidences (N, K) in `labels` order, and notes.

    A label the answer omits counts 0. A label the local model does not know is an error (the two
    models were trained on different labels, and no score would be fair). Confidence is 0-100 on
    the wire, 0-1 here. A label named twice (an object-detection model's boxes) keeps its highest
    confidence, and a note says the boxes were ignored.
    """
    index = {label: k for k, label in enumerate(labels)}
    probs = np.zeros((len(responses), len(labels)), dtype=np.float64)
    unknown: set[str] = set()
    boxes = 0
    for i, response in enumerate(responses):
        for item in response.get("CustomLabels", []):
            label, confidence = item.get("Name"), item.get("Confidence")
            if label not in index:
                unknown.add(str(label))
                continue
            if not isinstance(confidence, (int, float)) or not 0 <= confidence <= 100:
                raise UserError(f"{name}: label {label!r} answered with confidence {confidence!r} (not 0-100)")
            boxes += "Geometry" in item
            probs[i, index[label]] = max(probs[i, index[label]], confidence / 100.0)
    if unknown:
        raise UserError(f"{name}: Rekognition answered labels {sorted(unknown)} that the local model does not "
                        f"have ({', '.join(labels)}); compare models trained on the same labels")
    notes = []
    if boxes:
        notes.append(f"{boxes} Rekognition labels came with bounding boxes (an object-detection model): each label "
                     "counts with its highest confidence on the image, and the boxes are ignored")
    return probs, notes
