"""What `edgelabels train` refuses in one line before it writes anything: an --out that cannot be a folder, a Keras
backend that cannot be loaded."""

import os
import subprocess
import sys

import pytest

from edgelabels.config import load_config
from edgelabels.errors import UserError
from helpers.datasets import REPO, tiny_config_overrides


def test_an_out_that_is_a_file_or_lies_under_one_is_refused_naming_the_file(tmp_path):
    from edgelabels.train.fit import train

    config = load_config(None, tiny_config_overrides(tmp_path))
    afile = tmp_path / "notes.txt"
    afile.write_text("mine")
    with pytest.raises(UserError, match=f"^{afile}: is a file, not a folder"):
        train(config, afile)
    with pytest.raises(UserError, match=f"^{afile / 'run'}: cannot be made: {afile} is a file, not a folder"):
        train(config, afile / "run")
    with pytest.raises(UserError, match=f"^{afile / 'a' / 'run'}: cannot be made: {afile} is a file"):
        train(config, afile / "a" / "run", resume=True)
    assert afile.read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_backend_keras_cannot_load_is_refused_in_one_line_before_the_run_folder_is_made(tmp_path):
    run = tmp_path / "run"
    sets = [x for item in tiny_config_overrides(tmp_path) for x in ("--set", item)]
    result = subprocess.run([sys.executable, "-m", "edgelabels.cli", "train", str(REPO / "configs" / "pneumonia.yaml"),
                             "--out", str(run), *sets], capture_output=True, text=True, cwd=REPO,
                            env={**os.environ, "KERAS_BACKEND": "bogus"})
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "KERAS_BACKEND=bogus" in result.stderr, result.stderr
    assert not run.exists()
