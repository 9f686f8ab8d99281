"""Atomic writers: results take their mode from the umask; `sweep` removes what a killed writer left, never a
live writer's."""

import os
import signal
import stat
import subprocess
import sys
import tempfile

import pytest

from edgelabels import atomic
from helpers.datasets import REPO


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask():
    """Set the process umask for one test (no threads run here), restored after."""
    earlier = os.umask(0o022)
    yield lambda value: os.umask(value)
    os.umask(earlier)


def test_written_files_and_folders_take_their_mode_from_the_umask(tmp_path, umask):
    for mask, file_mode, folder_mode in ((0o022, 0o644, 0o755), (0o077, 0o600, 0o700)):
        umask(mask)
        out = tmp_path / f"umask{mask:03o}"
        written = [atomic.write_bytes(out / "a.bin", b"x"), atomic.write_json(out / "b.json", {"x": 1})]
        with atomic.temp_path(out / "c.keras") as tmp:
            tmp.write_bytes(b"x")  # a library opening the path
        with atomic.temp_path(out / "d.onnx") as tmp:
            fd, own = tempfile.mkstemp(dir=out)  # a library writing its own temp file (0600) onto the path
            os.close(fd)
            os.replace(own, tmp)
        with atomic.directory(out / "export") as folder:
            atomic.write_json(folder / "e.json", {})
        written += [out / "c.keras", out / "d.onnx", out / "export" / "e.json"]
        assert {p.name: oct(_mode(p)) for p in written} == {p.name: oct(file_mode) for p in written}, f"umask {mask:o}"
        assert oct(_mode(out / "export")) == oct(folder_mode), f"umask {mask:o}"


# Killed (SIGKILL: no `finally` runs) at a given point of a given writer.
KILLED_WRITER = r"""
import os, signal, sys
from pathlib import Path
from edgelabels import atomic

def die(*args):
    os.kill(os.getpid(), signal.SIGKILL)

how, target = sys.argv[1], Path(sys.argv[2])
real_replace = os.replace
if how == "write_bytes":  # the data written, not yet renamed
    os.replace = die
    atomic.write_bytes(target, b"half")
elif how == "temp_path":  # a library half-way through its save
    with atomic.temp_path(target) as tmp:
        tmp.write_bytes(b"half")
        die()
elif how == "directory":  # an export half written
    with atomic.directory(target) as folder:
        (folder / "model.onnx").write_bytes(b"half")
        die()
elif how == "directory-swap":  # the earlier result moved aside, the new one not yet moved in
    moves = []
    def replace(src, dst):
        moves.append(src)
        if len(moves) == 2:
            die()
        real_replace(src, dst)
    os.replace = replace
    with atomic.directory(target) as folder:
        (folder / "new.json").write_text("{}")
"""


def _killed_writer(how, target):
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, how, str(target)], cwd=REPO, capture_output=True,
                          text=True, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    return proc


def test_sweep_removes_what_killed_writers_left_and_puts_back_a_result_moved_aside(tmp_path):
    run = tmp_path / "run"
    (run / "evaluation").mkdir(parents=True)
    (run / "evaluation" / "summary.json").write_text('{"earlier": true}')
    (run / "checkpoint").mkdir()
    for how, target in (("write_bytes", run / "checkpoint" / "state.json"), ("temp_path", run / "model.keras"),
                        ("directory", run / "export"), ("directory-swap", run / "evaluation")):
        _killed_writer(how, target)
    left = sorted(p.relative_to(run).as_posix() for p in run.rglob(".*"))
    assert len(left) == 5 and not (run / "evaluation").exists(), left  # 4 temporaries + the result moved aside

    removed = atomic.sweep(run)
    assert len(removed) == 4
    assert sorted(p.relative_to(run).as_posix() for p in run.rglob("*")) == [
        "checkpoint", "evaluation", "evaluation/summary.json"]
    assert (run / "evaluation" / "summary.json").read_text() == '{"earlier": true}'


def test_sweep_keeps_the_temp_files_of_live_writers(tmp_path):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # a concurrent export, say
    try:
        theirs = tmp_path / f".model.{other.pid}.0badf00d.tmp.onnx"
        theirs.write_bytes(b"half")
        with atomic.temp_path(tmp_path / "model.keras") as mine, atomic.directory(tmp_path / "export") as folder:
            mine.write_bytes(b"whole")
            (folder / "model.onnx").write_bytes(b"whole")
            assert atomic.sweep(tmp_path) == []
            assert mine.read_bytes() == b"whole" and (folder / "model.onnx").is_file() and theirs.is_file()
    finally:
        other.kill()
        other.wait()
    assert (tmp_path / "model.keras").read_bytes() == b"whole" and (tmp_path / "export" / "model.onnx").is_file()
    assert atomic.sweep(tmp_path) == [theirs]  # its writer is gone now
