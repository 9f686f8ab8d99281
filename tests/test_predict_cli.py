"""`edgelabels predict`: JSON lines, --out files, bad images, and --watch exactly once across kill -9."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edgelabels.cli import main
from edgelabels.runtime.predictor import Predictor
from edgelabels.serve.watch import LEDGER, FolderWatcher
from helpers.detection import write_detector_dir
from helpers.runs import LABELS, make_export, make_image, write_images
from helpers.server import image_bytes, write_model_dir


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    return make_export(tmp_path_factory.mktemp("predict-cli") / "run", per_label=6, epochs=3)


@pytest.fixture
def photos(tmp_path):
    """A folder with 6 generated images in two subfolders."""
    write_images(tmp_path / "photos", labels=LABELS[:2], per_label=3, seed=7)
    return tmp_path / "photos"


def _lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_predict_prints_one_detectcustomlabels_line_per_image(export_dir, photos, capsys):
    single = sorted(photos.rglob("*.png"))[0]
    assert main(["predict", str(export_dir), str(single), str(photos), "--min-confidence", "0"]) == 0
    lines = _lines(capsys.readouterr().out)
    assert [line["Image"] for line in lines] == [str(single)] + [str(p) for p in sorted(photos.rglob("*.png"))]
    for line in lines:
        assert set(line) == {"Image", "CustomLabels"}
        assert sorted(label["Name"] for label in line["CustomLabels"]) == sorted(LABELS)  # MinConfidence 0: all


def test_predict_max_results_and_min_confidence_are_passed_through(export_dir, photos, capsys):
    assert main(["predict", str(export_dir), str(photos), "--min-confidence", "0", "--max-results", "1"]) == 0
    assert all(len(line["CustomLabels"]) == 1 for line in _lines(capsys.readouterr().out))
    assert main(["predict", str(export_dir), str(photos), "--min-confidence", "100.0"]) == 0
    assert all(line["CustomLabels"] == [] for line in _lines(capsys.readouterr().out))


def test_out_writes_one_json_per_image_equal_to_the_printed_line(export_dir, photos, tmp_path, capsys):
    out = tmp_path / "results"
    assert main(["predict", str(export_dir), str(photos), "--out", str(out), "--batch-size", "4"]) == 0
    printed = {line["Image"]: line for line in _lines(capsys.readouterr().out)}
    written = sorted(out.rglob("*.json"))
    assert len(written) == len(printed) == 6
    for path in written:
        result = json.loads(path.read_text())
        assert printed[result["Image"]] == result
        relative = Path(result["Image"]).relative_to(photos)
        assert path == out / relative.parent / f"{relative.name}.json"  # <image name>.json, folders kept
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temp files left


def test_a_bad_image_is_one_stderr_line_the_others_still_run_and_exit_code_is_2(export_dir, photos, capsys):
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (photos / "empty.png").write_bytes(b"")
    code = main(["predict", str(export_dir), str(photos), str(photos / "missing.png")])
    captured = capsys.readouterr()
    assert code == 2
    assert len(_lines(captured.out)) == 6
    errors = [line for line in captured.err.splitlines() if line.startswith("edgelabels:")]
    assert any("broken.jpg" in line for line in errors)
    assert any("empty.png" in line and "empty file" in line for line in errors)
    assert any("missing.png" in line and "no such file" in line for line in errors)
    assert errors[-1] == "edgelabels: 3 of 9 images failed"


def test_invalid_min_confidence_is_a_one_line_error(export_dir, photos, capsys):
    assert main(["predict", str(export_dir), str(photos), "--min-confidence", "150"]) == 2
    assert "--min-confidence must be between 0 and 100" in capsys.readouterr().err


@pytest.mark.parametrize("option", ["--out", "--draw"])
@pytest.mark.parametrize("under", ["", "sub"])
def test_an_out_or_draw_folder_that_cannot_be_written_is_one_line_exit_2_and_nothing_written(
        tmp_path, option, under, capsys):
    # Issue 25 item 5: a file where the folder (or one of its parents) should be ended in a traceback.
    detector = write_detector_dir(tmp_path / "detector")
    (tmp_path / "a.png").write_bytes(image_bytes((220, 30, 30)))
    (tmp_path / "a-file").write_text("mine")
    folder = tmp_path / "a-file" / under if under else tmp_path / "a-file"
    code = main(["predict", str(detector), str(tmp_path / "a.png"), option, str(folder)])
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"edgelabels: error: {option} {folder}: cannot write there") and "Traceback" not in err[0]
    assert captured.out == "" and (tmp_path / "a-file").read_text() == "mine"


def test_a_dangling_link_named_like_an_image_in_a_folder_is_reported_not_skipped(tmp_path, capsys):
    classifier = write_model_dir(tmp_path / "classifier")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "red.png").write_bytes(image_bytes((220, 30, 30)))
    os.symlink(tmp_path / "moved-away.png", tmp_path / "photos" / "gone.png")
    code = main(["predict", str(classifier), str(tmp_path / "photos")])
    captured = capsys.readouterr()
    assert [line["Image"] for line in _lines(captured.out)] == [str(tmp_path / "photos" / "red.png")]
    assert code == 2
    assert captured.err.splitlines() == [
        f"edgelabels: {tmp_path / 'photos' / 'gone.png'}: broken symbolic link (to {tmp_path / 'moved-away.png'})",
        "edgelabels: 1 of 2 images failed"]


def test_draw_is_refused_for_an_export_that_answers_no_boxes(tmp_path, capsys):
    classifier = write_model_dir(tmp_path / "classifier")
    (tmp_path / "a.png").write_bytes(image_bytes((220, 30, 30)))
    assert main(["predict", str(classifier), str(tmp_path / "a.png"), "--draw", str(tmp_path / "drawn")]) == 2
    assert "--draw draws boxes" in capsys.readouterr().err and not (tmp_path / "drawn").exists()


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_watch_does_not_read_a_file_still_being_written(export_dir, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    make_image(0, __import__("numpy").random.default_rng(0), 40).save(tmp_path / "whole.png")
    data = (tmp_path / "whole.png").read_bytes()
    clock, emitted = FakeClock(), []
    watcher = FolderWatcher(Predictor(export_dir), inbox, settle=1.0, emit=emitted.append, clock=clock)

    with open(inbox / "arriving.png", "wb") as f:
        f.write(data[: len(data) // 2])
        f.flush()
        assert watcher.step() == 0  # first sight
        clock.now = 0.6
        assert watcher.step() == 0  # unchanged, but not for long enough
        f.write(data[len(data) // 2:])
        f.flush()
    clock.now = 1.2
    assert watcher.step() == 0  # changed since last look: the clock restarts
    clock.now = 2.3
    assert watcher.step() == 1
    assert not (inbox / "rejected").exists()
    result = json.loads((inbox / "results" / "arriving.png.json").read_text())
    assert json.loads(emitted[0]) == result and result["Image"] == str(inbox / "arriving.png")
    clock.now = 10
    assert watcher.step() == 0  # done once, never again


def test_watch_moves_unreadable_files_to_rejected_with_a_reason(export_dir, tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "notes.jpg").write_text("this is text, not a photo")
    (inbox / "ignored.txt").write_text("not an image name: left alone")
    clock, warnings = FakeClock(), []
    watcher = FolderWatcher(Predictor(export_dir), inbox, tmp_path / "out", settle=0.5, emit=lambda line: None,
                            warn=warnings.append, clock=clock)
    watcher.step()
    clock.now = 1.0
    assert watcher.step() == 1
    assert not (inbox / "notes.jpg").exists()
    assert (inbox / "rejected" / "notes.jpg").read_text() == "this is text, not a photo"
    assert "not a PNG or JPEG" in (inbox / "rejected" / "notes.jpg.reason.txt").read_text()
    assert "notes.jpg" in warnings[0]
    assert (inbox / "ignored.txt").exists() and not (tmp_path / "out" / "notes.jpg.json").exists()


def test_watch_warns_once_of_a_dangling_link_named_like_an_image(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    os.symlink(tmp_path / "moved-away.jpg", inbox / "gone.jpg")
    (inbox / "red.png").write_bytes(image_bytes((220, 30, 30)))
    clock, warnings, emitted = FakeClock(), [], []
    watcher = FolderWatcher(Predictor(write_model_dir(tmp_path / "classifier")), inbox, settle=0.5,
                            emit=emitted.append, warn=warnings.append, clock=clock)
    watcher.step()
    clock.now = 1.0
    assert watcher.step() == 1 and json.loads(emitted[0])["CustomLabels"][0]["Name"] == "red"
    watcher.step()
    assert warnings == [f"{inbox / 'gone.jpg'}: broken symbolic link (to {tmp_path / 'moved-away.jpg'})"]
    assert (inbox / "gone.jpg").is_symlink()  # not moved: it is not an image that arrived


def _ledger_names(out: Path) -> list[str]:
    path = out / LEDGER
    return [json.loads(line)["name"] for line in path.read_text().splitlines()] if path.exists() else []


def _wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the watcher")
        time.sleep(0.05)


@pytest.mark.slow
def test_watch_processes_each_image_exactly_once_across_kill_9_and_restart(export_dir, tmp_path):
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    source = write_images(tmp_path / "source", labels=LABELS, per_label=4, seed=3)  # 12 images
    command = [sys.executable, "-m", "edgelabels.cli", "predict", str(export_dir), "--watch", str(inbox),
               "--out", str(out), "--settle", "0.2", "--batch-size", "1"]

    def start(log: Path):
        return subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT)

    first = start(tmp_path / "first.log")
    for path, _ in source[:5]:
        shutil.copy(path, inbox / path.name)
    _wait_for(lambda: len(_ledger_names(out)) >= 3)
    for path, _ in source[5:8]:  # arriving while the first watcher runs, killed before they settle
        shutil.copy(path, inbox / path.name)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    for path, _ in source[8:]:  # and while no watcher runs
        shutil.copy(path, inbox / path.name)

    second = start(tmp_path / "second.log")
    _wait_for(lambda: len(set(_ledger_names(out))) == len(source))
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=30) == 0

    names = _ledger_names(out)
    assert sorted(names) == sorted(path.name for path, _ in source)  # every image committed exactly once
    for path, _ in source:
        assert json.loads((out / f"{path.name}.json").read_text())["Image"] == str(inbox / path.name)
    printed = [json.loads(line)["Image"] for log in ("first.log", "second.log")
               for line in (tmp_path / log).read_text().splitlines() if line.startswith("{")]
    assert len(printed) == len(set(printed))  # no image reported twice
    assert not (inbox / "rejected").exists()
