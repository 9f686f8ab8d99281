"""The wall-clock budget of a study: "30m" parsed, what is left, and the time spent kept in the tune directory.

The budget covers everything (searching, the final evaluation and export), across sessions: budget.json's
spent_s is brought up to date every second, so a study killed with kill -9 loses at most that much of
its accounting, and `--resume` continues with what is left.
"""

from __future__ import annotations

import re
import time

from edgelabels.errors import UserError

_PART = re.compile(r"(\d+(?:\.\d+)?)([hms])")
_SECONDS = {"h": 3600, "m": 60, "s": 1}
OVERRUN = 0.05  # the study may end this share of the budget late, never more
SAVE_EVERY_S = 1.0


def parse_budget(text: str) -> float:
    """Seconds in "30m", "90s", "1h", "1h30m", "2.5m"; a bare number is refused (minutes or seconds?)."""
    cleaned = text.strip().lower().replace(" ", "")
    parts = _PART.findall(cleaned)
    if not cleaned or "".join(n + u for n, u in parts) != cleaned:
        raise UserError(f"--budget {text!r}: give a duration with its unit, e.g. 30m, 90s, 1h30m")
    seconds = sum(float(n) * _SECONDS[u] for n, u in parts)
    if seconds <= 0:
        raise UserError(f"--budget {text!r}: must be more than nothing")
    return seconds


def show_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds < 3600 else \
        f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Clock:
    """This session's share of the budget: `total_s` is the whole budget, `spent_before_s` what earlier sessions
    used; `save` writes the time spent through `write` (TuneDir.write_budget), at most every SAVE_EVERY_S."""

    def __init__(self, total_s: float, spent_before_s: float, write):
        self.total_s, self.spent_before_s, self._write = total_s, spent_before_s, write
        self.started = time.monotonic()
        self._saved = -SAVE_EVERY_S

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def spent(self) -> float:
        return self.spent_before_s + self.elapsed

    def left(self) -> float:
        """Seconds of the budget left (negative once overrun)."""
        return self.total_s - self.spent

    def hard_left(self) -> float:
        """Seconds until the study must have ended: the budget plus OVERRUN of it."""
        return self.left() + OVERRUN * self.total_s

    def save(self, force: bool = False) -> None:
        now = self.elapsed
        if force or now - self._saved >= SAVE_EVERY_S:
            self._write({"budget_s": self.total_s, "spent_s": round(self.spent, 3)})
            self._saved = now
