"""`predict --watch DIR`: every image that lands in DIR is processed exactly once, across restarts.

A plain poll loop (works on network shares and bind mounts, where file events often do not):
- a file is read only once its size and mtime have been unchanged for `settle` seconds, so an
  image still being copied in is never read half-way (writers that rename into place are fine too;
  names starting with "." and non-image suffixes such as "x.jpg.part" are ignored);
- each image's result is written atomically to OUT/<name>.json, then committed to the ledger
  OUT/.watch-ledger.jsonl (one fsync'ed line: name, size, mtime, "printed": false), then printed, then
  marked printed (`"printed": false}` overwritten in place by `"printed": true }`: the same length,
  so the ledger stays one valid JSON line per image).
  On start the ledger is read back, so a restart, even after kill -9, neither reprocesses a committed
  image nor misses one (an image whose result was written but not committed is simply done again,
  rewriting the same result), and a committed result whose line was never printed is printed then,
  from its result file: every committed result reaches stdout once (twice only if the watcher dies
  between a print and its mark, or the power fails before the mark, not fsync'ed, reaches the disk).
  Lines from before the "printed" field count as printed;
- an unreadable image is moved to DIR/rejected/ beside a <name>.reason.txt saying why; a broken symbolic link
  named like an image is reported once (the lister's problem, runtime/answers.py) and left where it is.
Images are listed and answered by runtime/answers.py, the stream `predict`, `--engine ray` and `serve` share.
Inputs are otherwise left where they are; replacing a file (new mtime) makes it a new image.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from edgelabels import atomic
from edgelabels.runtime.answers import answer_images, list_images

LEDGER = ".watch-ledger.jsonl"
_UNPRINTED, _PRINTED = b'"printed": false}', b'"printed": true }'  # the same length: one is written over the other


class FolderWatcher:
    def __init__(self, predictor, folder: str | Path, out: str | Path | None = None, *, min_confidence=None,
                 max_results=None, settle: float = 1.0, batch_size: int = 32, emit=None, warn=None,
                 clock=time.monotonic):
        self.predictor = predictor
        self.folder = Path(folder)
        self.out = Path(out) if out is not None else self.folder / "results"
        self.rejected = self.folder / "rejected"
        self.min_confidence, self.max_results = min_confidence, max_results
        self.settle, self.batch_size = settle, batch_size
        self.clock = clock
        self.emit = emit or (lambda line: print(line, flush=True))
        self.warn = warn or (lambda message: print(f"edgelabels: {message}", file=sys.stderr, flush=True))
        self.out.mkdir(parents=True, exist_ok=True)
        self.ledger_path = self.out / LEDGER
        self.done, self.unprinted = self._read_ledger()
        self._first_seen: dict[str, tuple[int, int, float]] = {}  # name -> (size, mtime_ns, when unchanged since)
        self._warned: set[str] = set()

    def _read_ledger(self) -> tuple[set[tuple[str, int, int]], dict[tuple[str, int, int], int]]:
        """(committed keys, {committed key whose result was never printed: where its mark goes})."""
        done, unprinted, offset = set(), {}, 0
        data = self.ledger_path.read_bytes() if self.ledger_path.is_file() else b""
        for line in data.splitlines(keepends=True):
            try:
                entry = json.loads(line)
                key = (entry["name"], entry["size"], entry["mtime_ns"])
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
                key = None  # a torn line (a power cut mid-append): that image is simply done again
            if key is not None:
                done.add(key)
                unprinted.pop(key, None)
                # Lines written before the "printed" field existed count as printed.
                if entry.get("printed", True) is False and line.rstrip(b"\n").endswith(_UNPRINTED):
                    unprinted[key] = offset + len(line.rstrip(b"\n")) - len(_UNPRINTED)
            offset += len(line)
        if data and not data.endswith(b"\n"):  # end a torn last line, so the next commit starts a line of its own
            with open(self.ledger_path, "ab") as ledger:
                ledger.write(b"\n")
        return done, unprinted

    def _commit(self, key: tuple[str, int, int]) -> int:
        """Append the key's ledger line (fsync'ed); returns where its printed mark goes (for _mark_printed)."""
        name, size, mtime_ns = key
        line = (json.dumps({"name": name, "size": size, "mtime_ns": mtime_ns})[:-1] + ", " + _UNPRINTED.decode()
                + "\n").encode("utf-8")
        fd = os.open(self.ledger_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
            end = os.lseek(fd, 0, os.SEEK_CUR)  # O_APPEND: just past the line written
        finally:
            os.close(fd)
        self.done.add(key)
        return end - 1 - len(_UNPRINTED)

    def _mark_printed(self, offset: int) -> None:
        # Same length as `false}`, so nothing moves; a plain write (no O_APPEND) lands at the offset given.
        fd = os.open(self.ledger_path, os.O_WRONLY)
        try:
            os.pwrite(fd, _PRINTED, offset)
        finally:
            os.close(fd)

    def _print_unprinted(self) -> None:
        """Results committed by an earlier run that was stopped before printing them (kill -9)."""
        for key in sorted(self.unprinted):
            try:
                result = json.loads((self.out / f"{key[0]}.json").read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                self.warn(f"{self.out / key[0]}.json: committed result unreadable ({exc}); processing it again")
                self.done.discard(key)
            else:
                self.emit(json.dumps(result))
            self._mark_printed(self.unprinted.pop(key))

    def ready(self) -> list[tuple[str, int, int]]:
        """Images not yet committed whose size and mtime have been stable for `settle` seconds."""
        now = self.clock()
        ready, present = [], set()
        images, problems = list_images([self.folder], recursive=False)
        for problem in set(problems) - self._warned:  # a broken link stays broken: said once, not every poll
            self.warn(problem)
        self._warned = set(problems)
        for path in images:
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            key = (path.name, st.st_size, st.st_mtime_ns)
            present.add(path.name)
            if key in self.done:
                continue
            seen = self._first_seen.get(path.name)
            if seen is None or seen[:2] != key[1:]:
                self._first_seen[path.name] = (st.st_size, st.st_mtime_ns, now)
            elif now - seen[2] >= self.settle:
                ready.append(key)
        for name in set(self._first_seen) - present:
            del self._first_seen[name]
        return sorted(ready)

    def step(self) -> int:
        """Process what is ready; returns how many images were committed or rejected."""
        if self.unprinted:
            self._print_unprinted()
        ready = self.ready()
        count = 0
        for start in range(0, len(ready), self.batch_size):
            count += self._process(ready[start:start + self.batch_size])
        return count

    def _unchanged(self, key) -> bool:
        try:
            st = (self.folder / key[0]).stat()
        except FileNotFoundError:
            return False
        return (st.st_size, st.st_mtime_ns) == key[1:]

    def _process(self, keys) -> int:
        count = 0
        paths = [self.folder / key[0] for key in keys]
        for key, answer in zip(keys, answer_images(self.predictor, paths, batch_size=self.batch_size,
                                                   min_confidence=self.min_confidence, max_results=self.max_results)):
            if not self._unchanged(key):  # it changed while we read it: still being written, let it settle again
                self._first_seen.pop(key[0], None)
            elif answer.error:
                self._reject(answer.path, answer.error)
                count += 1
            else:
                result = {"Image": str(answer.path), **answer.response}
                atomic.write_json(self.out / f"{key[0]}.json", result)
                mark = self._commit(key)
                self.emit(json.dumps(result))
                self._mark_printed(mark)
                count += 1
        return count

    def _reject(self, path: Path, problem: str) -> None:
        atomic.write_text(self.rejected / f"{path.name}.reason.txt", problem + "\n")
        os.replace(path, self.rejected / path.name)
        self._first_seen.pop(path.name, None)
        self.warn(f"{path}: {problem} (moved to {self.rejected}/)")

    def run(self, poll: float = 0.2, stop=lambda: False) -> None:
        """Poll until `stop()` is true (or KeyboardInterrupt / SIGTERM from the caller)."""
        while not stop():
            self.step()
            time.sleep(poll)
