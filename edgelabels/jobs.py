"""A job: a command in a child process with a deadline, its output in a log, and why it ended.

Every long step that must not take its caller down with it runs here: a tune trial, a study's final
evaluation and export, a training requested from a service (`python -m edgelabels.pipeline SPEC`). The
child runs in its own session so that a kill reaches everything it started (the data loader's worker
processes); a crash, an out-of-memory kill or the deadline is the job's outcome, never the caller's end.

The child side: `die_with(parent)`, called first thing in the child, ends it as soon as its caller is gone
(a caller killed with kill -9 runs no cleanup that could stop it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

DEADLINE = "killed at the deadline"
POLL_S = 0.2
PARENT_GONE_EXIT = 137


@dataclass(frozen=True)
class Outcome:
    """How a job ended: `code` is its exit code (negative: the signal that killed it), None when it was killed
    at its deadline; `reason` is None when it exited 0, else one line (the log's last line for an exit code)."""

    code: int | None
    seconds: float
    reason: str | None

    @property
    def ok(self) -> bool:
        return self.code == 0

    @property
    def killed_at_deadline(self) -> bool:
        return self.code is None

    @property
    def signal(self) -> str | None:
        """The name of the signal that ended it (SIGKILL: out of memory, or someone's kill -9), or None."""
        return signal.Signals(-self.code).name if self.code is not None and self.code < 0 else None


def run_job(command: list[str], log_path: Path, limit_s: float, poll: Callable[[], None] | None = None,
            cwd: Path | None = None) -> Outcome:
    """Run `command` until it ends or limit_s seconds have passed (then it is killed, with all it started).
    Its stdout and stderr are appended to log_path; poll() is called every POLL_S while it runs. Ctrl-C (or
    any exception from poll) kills it too, then propagates."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(log_path, "ab") as log:
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True, cwd=cwd)
        code = _wait(child, started + limit_s, poll)
    seconds = round(time.monotonic() - started, 1)
    return Outcome(code, seconds, None if code == 0 else why(code, log_path))


def _wait(child: subprocess.Popen, deadline: float, poll) -> int | None:
    try:
        while child.poll() is None:
            if time.monotonic() >= deadline:
                _kill(child)
                return None
            if poll is not None:
                poll()
            time.sleep(POLL_S)
    except BaseException:
        _kill(child)
        raise
    return child.returncode


def _kill(child: subprocess.Popen) -> None:
    try:
        os.killpg(child.pid, signal.SIGKILL)  # its own session: the loader's processes and anything it started
    except ProcessLookupError:
        pass
    child.wait()


def why(code: int | None, log_path: Path) -> str:
    """One line saying why a job ended with `code` (see Outcome)."""
    if code is None:
        return DEADLINE
    if code < 0:
        name = signal.Signals(-code).name
        return f"killed by {name}" + (" (out of memory?)" if -code == signal.SIGKILL else "")
    text = Path(log_path).read_text(errors="replace") if Path(log_path).is_file() else ""
    lines = [line for line in text.splitlines() if line.strip()]
    last = lines[-1].strip()[:300] if lines else "no output"
    return f"exited with code {code}: {last}"


def die_with(parent: int) -> None:
    """In the child: exit as soon as the process `parent` is no longer this one's parent."""
    def watch():
        while True:
            if os.getppid() != parent:
                os._exit(PARENT_GONE_EXIT)
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()
