"""`predict --watch`: a result committed but not yet printed when the watcher died is printed after restart, once.

The watcher writes a result, commits it to the ledger, prints it, then marks it printed. A watcher killed
between the commit and the print (simulated by an `emit` that raises SystemExit, or that SIGKILLs its own
process) must print that result when it starts again, and nothing twice.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PIL import Image

from edgelabels.serve.watch import LEDGER, FolderWatcher

COLOURS = {"a.png": (220, 30, 30), "b.png": (30, 200, 40), "c.png": (40, 50, 210), "d.png": (200, 40, 40)}


@pytest.fixture(scope="module")
def predictor(tmp_path_factory):
    pytest.importorskip("onnx")
    from helpers.server import write_model_dir

    from edgelabels.runtime.predictor import Predictor

    return Predictor(write_model_dir(tmp_path_factory.mktemp("watch") / "colours" / "export"))


def inbox_with_images(folder: Path, names) -> Path:
    folder.mkdir()
    for name in names:
        Image.new("RGB", (48, 40), COLOURS[name]).save(folder / name)
    return folder


def dies_on(name: str, emitted: list):
    """An emit that records lines, but raises SystemExit (as a kill would end it) on `name`'s line."""
    def emit(line: str) -> None:
        if json.loads(line)["Image"].endswith(name):
            raise SystemExit(137)
        emitted.append(line)
    return emit


def run_until_idle(watcher: FolderWatcher) -> None:
    watcher.step()  # first sight (settle 0: ready on the next look)
    watcher.step()


def test_a_result_committed_but_never_printed_is_printed_once_after_restart(predictor, tmp_path):
    inbox = inbox_with_images(tmp_path / "inbox", ["a.png", "b.png", "c.png"])
    emitted: list[str] = []
    first = FolderWatcher(predictor, inbox, settle=0.0, emit=dies_on("b.png", emitted), clock=lambda: 0.0)
    first.step()
    with pytest.raises(SystemExit):
        first.step()
    assert (inbox / "results" / "b.png.json").exists()  # b was written and committed, not printed; c not reached
    assert not (inbox / "results" / "c.png.json").exists()

    run_until_idle(FolderWatcher(predictor, inbox, settle=0.0, emit=emitted.append, clock=lambda: 0.0))
    run_until_idle(FolderWatcher(predictor, inbox, settle=0.0, emit=emitted.append, clock=lambda: 0.0))
    printed = sorted(Path(json.loads(line)["Image"]).name for line in emitted)
    assert printed == ["a.png", "b.png", "c.png"]  # each once, over three runs
    for line in emitted:
        result = json.loads(line)
        assert json.loads((inbox / "results" / f"{Path(result['Image']).name}.json").read_text()) == result


def test_old_ledger_lines_count_as_printed_while_an_unprinted_commit_is_printed(predictor, tmp_path):
    inbox = inbox_with_images(tmp_path / "inbox", ["a.png", "b.png"])
    out = inbox / "results"
    out.mkdir()
    st = (inbox / "a.png").stat()  # a.png: committed by a watcher from before the "printed" field
    (out / LEDGER).write_text(json.dumps({"name": "a.png", "size": st.st_size, "mtime_ns": st.st_mtime_ns}) + "\n")
    (out / "a.png.json").write_text(json.dumps({"Image": str(inbox / "a.png"), "CustomLabels": []}))
    emitted: list[str] = []
    first = FolderWatcher(predictor, inbox, settle=0.0, emit=dies_on("b.png", emitted), clock=lambda: 0.0)
    first.step()
    with pytest.raises(SystemExit):
        first.step()

    again: list[str] = []
    run_until_idle(FolderWatcher(predictor, inbox, settle=0.0, emit=again.append, clock=lambda: 0.0))
    assert emitted == [] and [json.loads(line)["Image"] for line in again] == [str(inbox / "b.png")]
    lines = [json.loads(line) for line in (out / LEDGER).read_text().splitlines()]
    assert [line["name"] for line in lines] == ["a.png", "b.png"]  # one line per image, still valid JSON


CHILD = textwrap.dedent("""
    import json, os, signal, sys
    from edgelabels.runtime.predictor import Predictor
    from edgelabels.serve.watch import FolderWatcher

    model, inbox, victim = sys.argv[1:4]

    def emit(line):
        if victim and json.loads(line)["Image"].endswith(victim):
            os.kill(os.getpid(), signal.SIGKILL)  # after the commit, before the print: nothing more runs
        print(line, flush=True)

    watcher = FolderWatcher(Predictor(model), inbox, settle=0.0, batch_size=1, emit=emit, clock=lambda: 0.0)
    watcher.step()
    watcher.step()
""")


def test_a_watcher_killed_with_sigkill_between_commit_and_print_prints_that_result_after_restart(
        predictor, tmp_path):
    inbox = inbox_with_images(tmp_path / "inbox", ["a.png", "b.png", "c.png", "d.png"])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                                       os.environ.get("PYTHONPATH", "")]))

    def child(victim: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", CHILD, str(predictor.dir), str(inbox), victim],
                              capture_output=True, text=True, timeout=120, env=env)

    killed = child("b.png")
    assert killed.returncode == -9, killed.stderr
    restarted = child("")
    assert restarted.returncode == 0, restarted.stderr
    committed = [json.loads(line)["name"] for line in (inbox / "results" / LEDGER).read_text().splitlines()]
    printed = [json.loads(line)["Image"] for run in (killed, restarted) for line in run.stdout.splitlines()]
    assert sorted(committed) == sorted(COLOURS)
    assert sorted(printed) == sorted(str(inbox / name) for name in committed)  # every committed result, once
