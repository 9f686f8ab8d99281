"""Atomic writes (temp file in the same folder + rename): a result is either whole or absent.

Temporary names carry the writing process's id (`.NAME.PID.RANDOM.tmp`, `.STEM.PID.RANDOM.tmp.SUFFIX`,
`.NAME.old.PID`), so that `sweep` can remove what a killed process left without touching a live writer's.
Files and folders are created with modes 0666 / 0777 and the kernel applies the umask, as for any file a
user shares (tempfile's 0600 / 0700 would not).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
from pathlib import Path

# .NAME.PID.RANDOM.tmp[.SUFFIX]; earlier versions wrote temp_path's as .STEM.PID.tmp.SUFFIX (no RANDOM)
_TEMP = re.compile(r"^\..+?\.(?P<pid>\d+)\.(?:[0-9a-f]{8}\.)?tmp(?:\.[^.]+)?$")
_OLD = re.compile(r"^\.(?P<name>.+)\.old\.(?P<pid>\d+)$")


def is_temp_name(name: str) -> bool:
    """True for the name of a file being written here (a crash can leave one behind)."""
    return bool(_TEMP.match(name))


def _temp_name(path: Path, suffix: str = "") -> Path:
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    return path.with_name(f".{stem}.{os.getpid()}.{secrets.token_hex(4)}.tmp{suffix}")


def _create(path: Path) -> int:
    """A new file, opened for writing, mode 0666 less the umask."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)


def write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path)
    try:
        with os.fdopen(_create(tmp), "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj, indent: int = 2) -> Path:
    return write_text(path, json.dumps(obj, indent=indent, sort_keys=False) + "\n")


@contextlib.contextmanager
def temp_path(path: str | Path):
    """Yield a temporary sibling path to write (by any library); renamed onto `path` on success.

    The path exists (empty, 0666 less the umask) when yielded; a writer that replaces it with a file of its own
    making (0600, say) gets that mode back.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path, path.suffix)
    os.close(_create(tmp))
    mode = os.stat(tmp).st_mode & 0o777
    try:
        yield tmp
        if os.stat(tmp).st_mode & 0o777 != mode:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def directory(path: str | Path):
    """Yield a temporary sibling folder; on success it replaces `path` whole (old one removed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path)
    os.mkdir(tmp, 0o777)
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old.{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def sweep(folder: str | Path) -> list[Path]:
    """Remove, anywhere under `folder`, the temporary files and folders of writers whose process is gone (killed
    mid-write). A live process's (a concurrent `evaluate` or `export`) are kept. A `directory()` killed between
    its two renames left the earlier result as `.NAME.old.PID` and no NAME: that result is put back. Returns what
    was removed."""
    removed = []
    for parent, folders, files in os.walk(folder):
        for name in [*folders, *files]:
            match = _TEMP.match(name) or _OLD.match(name)
            if match is None or _alive(int(match["pid"])):
                continue
            path = Path(parent) / name
            if name in folders:
                folders.remove(name)  # not walked into
                original = path.with_name(match["name"]) if "name" in match.groupdict() else None
                if original is not None and not original.exists():
                    os.replace(path, original)
                    continue
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):
        return True  # another user's process (PermissionError), or no pid we can ask about: not ours to remove
    return True


def nearest_existing(folder: str | Path) -> Path:
    """`folder` itself if it exists, else the nearest folder above it that does (or the root): where making it
    starts, so what stands there decides whether it can be made. A caller phrases its own refusal: a file there
    (`not .is_dir()`) can never be the folder or hold it; os.access says whether this process may write in it."""
    folder = Path(folder)
    return next(p for p in (folder, *folder.parents) if p.exists() or p == p.parent)


def replaceable_folder(out: str | Path, markers: tuple[str, ...], what: str) -> Path:
    """`out` if `directory(out)` may replace it: absent, empty, or holding one of `markers` (an earlier result of
    the same kind). Anything else is the user's and is refused before any work starts."""
    from edgelabels.errors import UserError

    out = Path(out)
    earlier = any((out / marker).is_file() for marker in markers)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not earlier)):
        raise UserError(f"{out}: exists and is not {what} (no {' or '.join(markers)}); choose another --out")
    return out


def writable_folder(folder: str | Path, option: str) -> Path:
    """Create `folder` if needed and check that a file can be written in it: an unwritable output (a file in its
    way, no permission) is one line (UserError naming `option`) before any work starts, not a traceback half-way."""
    import tempfile

    from edgelabels.errors import UserError

    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except FileExistsError:
        raise UserError(f"{option} {folder}: cannot write there (a file, not a folder, is in the way)") from None
    except OSError as exc:
        raise UserError(f"{option} {folder}: cannot write there ({exc.strerror or exc})") from None
    return folder
