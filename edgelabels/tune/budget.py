"""The wall-clock budget of a study: "30m" parsed, what is left, and the time spent kept in the tune directory.

The budget covers everything (searching, the final evaluation and export), across sessions: budget.json's
spent_s is brought up to date every second, so a study killed with kill -9 loses at most that much of
its accounting, and `--resume` continues with what is left.
"""

from __future__ import annotations

import time

from edgelabels.config import parse_budget  # noqa: F401  (tune's --budget reads as train's)

OVERRUN = 0.05  # the study may end this share of the budget late, never more
SAVE_EVERY_S = 1.0


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
