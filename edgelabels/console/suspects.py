"""A dataset's label audit, as the console keeps it: where it lies, and its suspects by source-ref.

console/audit_pages.py runs the audit (audit/) and leaves in ctx.directory/console/audits/PROJECT/KIND/:
    suspects.csv    audit/page.py's columns, each image named by its entry's source-ref (s3://bucket/key)
    audit.json      the estimate and how it was made (audit/page.py)
    audit.html      the audit's own report (thumbnails worst first)
    status.json     running | done | failed, with the reason, the counts and the last progress line
    work/           the audit's working folder: the fetched manifest, the fold runs and their logs

`suspects_of` is what the dataset grid reads on every page: the latest finished audit's suspects, cached by the
file's modification time, so that a page of 48 tiles over 5,000 entries costs one stat().
"""

from __future__ import annotations

import csv
import threading
from pathlib import Path

from edgelabels.audit.page import SUSPECTS
from edgelabels.data.paths import Outside, inside

AUDITS = Path("console") / "audits"  # under the service's directory
STATUS = "status.json"

_lock = threading.Lock()
_cache: dict[Path, tuple[tuple[int, int], dict]] = {}  # suspects.csv -> ((mtime_ns, size), its suspects)


def audit_folder(ctx, project_name: str, kind: str) -> Path:
    """ctx.directory/console/audits/PROJECT/KIND; Outside for names that would lead out of it."""
    return inside(ctx.directory / AUDITS, Path(project_name) / kind)


def suspects_of(ctx, project_name: str, kind: str) -> dict[str, dict]:
    """{source-ref: {"suggested", "confidence", "reason", "detail", "rank"}} of the latest finished audit of the
    dataset (its worst reason when an image is listed more than once); {} when none has finished."""
    try:
        path = audit_folder(ctx, project_name, kind) / SUSPECTS
        stat = path.stat()
    except (Outside, OSError):
        return {}
    stamp = (stat.st_mtime_ns, stat.st_size)
    with _lock:
        cached = _cache.get(path)
    if cached is not None and cached[0] == stamp:
        return dict(cached[1])
    found = read_suspects(path)
    with _lock:
        _cache[path] = (stamp, found)
    return dict(found)


def read_suspects(path: Path) -> dict[str, dict]:
    """suspects.csv by image (a source-ref once the console wrote it), the first row (best rank) of each image kept.
    A file that cannot be read is no suspects, never a broken grid."""
    found: dict[str, dict] = {}
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error):
        return {}
    for row in sorted(rows, key=lambda r: _rank(r.get("rank"))):
        ref = row.get("image") or ""
        if ref and ref not in found:
            found[ref] = {"suggested": row.get("suggested") or None, "confidence": _number(row.get("confidence")),
                          "reason": row.get("reason") or "", "detail": row.get("detail") or "",
                          "rank": _rank(row.get("rank"))}
    return found


def _number(text) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def _rank(text) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        return 1 << 30
