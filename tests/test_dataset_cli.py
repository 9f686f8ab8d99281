"""`edgelabels dataset ...` as a user runs it: exit codes, one-line errors, never a traceback."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
EDGELABELS = REPO / ".venv" / "bin" / "edgelabels"


def edgelabels(*args, cwd=None) -> subprocess.CompletedProcess:
    command = [str(EDGELABELS)] if EDGELABELS.exists() else [sys.executable, "-m", "edgelabels.cli"]
    return subprocess.run(command + [str(a) for a in args], capture_output=True, text=True, cwd=cwd, timeout=120)


def assert_one_line_error(result: subprocess.CompletedProcess, pattern: str) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("edgelabels: error: ")
    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


def picture(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(path)


@pytest.fixture
def folder(tmp_path) -> Path:
    root = tmp_path / "data"
    for i in range(6):
        picture(root / "cats" / f"p{i}_cat.png", i)
        picture(root / "dogs" / f"p{i}_dog.png", 100 + i)
    (root / "dogs" / "zero.png").write_bytes(b"")
    (root / "cats" / "p0_copy.png").write_bytes((root / "cats" / "p0_cat.png").read_bytes())
    return root


def test_inspect_prints_a_summary_and_writes_the_json_report(folder, tmp_path):
    result = edgelabels("dataset", "inspect", folder, "--json", tmp_path / "out" / "report.json")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "images: 14 in 2 labels, 14 groups" in out
    assert "dogs" in out and "(1 unusable)" in out
    assert "problems: 1\n  dogs/zero.png: empty file (0 bytes)" in out
    assert "duplicates: 1 byte-identical pair (1 redundant file)\n  cats/p0_cat.png == cats/p0_copy.png" in out
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["images"] == 14 and report["labels"] == {"cats": 7, "dogs": 7}
    assert [Path(p).name for p in report["duplicates"][0]] == ["p0_cat.png", "p0_copy.png"]
    assert list((tmp_path / "out").iterdir()) == [tmp_path / "out" / "report.json"]  # no temp file left


def test_inspect_truncates_long_lists(folder):
    for i in range(4):
        (folder / "cats" / f"empty{i}.png").write_bytes(b"")
    result = edgelabels("dataset", "inspect", folder, "--show", "2")
    assert result.returncode == 0
    assert "problems: 5" in result.stdout and "  ... and 3 more" in result.stdout


def test_inspect_group_by_counts_groups(folder):
    result = edgelabels("dataset", "inspect", folder, "--group-by", r"^(p\d+)_")
    assert result.returncode == 0
    assert "images: 14 in 2 labels, 7 groups" in result.stdout  # p0..p5 plus zero.png on its own


def test_missing_folder_exits_2_with_one_line(tmp_path):
    assert_one_line_error(edgelabels("dataset", "inspect", tmp_path / "nope"), r"nope: folder or manifest not found$")


def test_single_label_exits_2_with_one_line(tmp_path):
    picture(tmp_path / "only" / "a.png", 0)
    assert_one_line_error(edgelabels("dataset", "inspect", tmp_path),
                          r"found 1 label\(s\) \(only 'only'\); classification needs >= 2 labels")


def test_manifest_with_too_many_bad_lines_exits_2_naming_it(tmp_path):
    picture(tmp_path / "a.png", 0)
    good = {"source-ref": "a.png", "x": 0, "x-metadata": {"class-name": "cat",
                                                         "type": "groundtruth/image-classification"}}
    (tmp_path / "bad.manifest").write_text(json.dumps(good) + "\n{oops\n")
    assert_one_line_error(edgelabels("dataset", "inspect", tmp_path / "bad.manifest"),
                          r"bad\.manifest: 1 of 2 lines invalid \(more than 20%")


def test_bad_regex_and_bad_manifest_path_exit_2(folder, tmp_path):
    assert_one_line_error(edgelabels("dataset", "inspect", folder, "--group-by", "(x"), r"invalid regular expression")
    assert_one_line_error(edgelabels("dataset", "inspect", folder, "--manifest", tmp_path / "m.jsonl"),
                          r"m\.jsonl: manifest not found")
    assert_one_line_error(edgelabels("dataset", "inspect"), r"no dataset given")


def test_label_without_any_decodable_image_exits_2_after_the_summary(tmp_path):
    picture(tmp_path / "good" / "a.png", 0)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    result = edgelabels("dataset", "inspect", tmp_path)
    assert "problems: 1" in result.stdout
    assert_one_line_error(result, r"label 'broken' has no image that decodes")


def test_split_writes_reproducible_grouped_file_lists(folder, tmp_path):
    first = edgelabels("dataset", "split", folder, "--out", tmp_path / "s1", "--group-by", r"^(p\d+)_", "--seed", 3)
    second = edgelabels("dataset", "split", folder, "--out", tmp_path / "s2", "--group-by", r"^(p\d+)_", "--seed", 3)
    assert first.returncode == 0 and second.returncode == 0, first.stderr
    assert "skipped" in first.stderr and "zero.png" in first.stderr  # undecodable images are left out
    for name in ("train", "val", "test"):
        assert (tmp_path / "s1" / f"{name}.txt").read_text() == (tmp_path / "s2" / f"{name}.txt").read_text()
    homes = {}
    for name in ("train", "val", "test"):
        for line in (tmp_path / "s1" / f"{name}.txt").read_text().splitlines():
            path, label, group = line.split("\t")
            assert homes.setdefault(group, name) == name
    assert len(homes) == 6 and "zero.png" not in "".join(str(p) for p in homes)
    assert "train" in first.stdout and "written to" in first.stdout


def test_split_with_a_bad_fraction_exits_2(folder, tmp_path):
    assert_one_line_error(edgelabels("dataset", "split", folder, "--out", tmp_path / "s", "--test-fraction", "1"),
                          r"test fraction 1\.0: must be at least 0 and below 1")


def test_help_explains_options_with_examples():
    result = edgelabels("dataset", "inspect", "--help")
    assert result.returncode == 0
    for option in ("--manifest", "--s3-root", "--group-by", "--json"):
        assert option in result.stdout
    assert "e.g." in result.stdout and "example:" in result.stdout
    top = edgelabels("dataset", "--help")
    assert all(action in top.stdout for action in ("inspect", "split", "augment", "synth-cassettes"))


def test_synth_cassettes_writes_a_folder_per_label(tmp_path):
    result = edgelabels("dataset", "synth-cassettes", tmp_path / "c", "--n", 4, "--seed", 1, "--size", "160x120")
    assert result.returncode == 0, result.stderr
    images = sorted((tmp_path / "c").glob("*/*.jpg"))
    assert len(images) == 4 and Image.open(images[0]).size == (160, 120)
    assert_one_line_error(edgelabels("dataset", "synth-cassettes", tmp_path / "d", "--size", "big"),
                          r"--size 'big': expected WIDTHxHEIGHT")


def test_augment_grows_the_folder_to_the_requested_size(folder, tmp_path):
    (folder / "dogs" / "zero.png").unlink()
    (folder / "cats" / "p0_copy.png").unlink()
    result = edgelabels("dataset", "augment", folder, "--to", 20, "--out", tmp_path / "aug", "--seed", 1)
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "aug").glob("*/*.png"))) == 20
    assert "20 images written" in result.stdout


def test_a_verb_whose_module_is_missing_fails_loudly_instead_of_saying_not_yet_available(monkeypatch):
    from edgelabels import cli

    monkeypatch.setitem(cli.VERBS, "typo", ("edgelabels.no_such_command", "a verb whose module name is misspelt"))
    with pytest.raises(ModuleNotFoundError, match="edgelabels.no_such_command"):
        cli.build_parser()


def test_the_train_verbs_help_names_every_tasks_model():
    from edgelabels import cli
    from edgelabels.tasks import TASKS

    help_text = cli.build_parser()._subparsers._group_actions[0].choices["train"].description
    assert all(task.noun in help_text for task in TASKS.values()), help_text
    assert "multi-label classifier" in help_text and "detector" in help_text
