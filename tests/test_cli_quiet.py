"""Without --verbose the CLI prints none of TensorFlow's start-up logging; with it, TensorFlow logs as it likes.

The noise below was measured with TF 2.21 on CPU (`edgelabels train`, `export`, `evaluate` of a tiny run,
no TF_CPP_* variable set). A fake `tensorflow` package that writes such lines to file descriptor 2
while it loads checks the filter without waiting for the real one.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

from helpers.datasets import REPO, make_stripes_dataset, tiny_config_overrides

NOISE = [
    "All log messages before absl::InitializeLog()",  # absl, once per TensorFlow library that logs while loading
    "cudart_stub.cc",  # "Could not find cuda drivers on your machine, GPU will not be used."
    "cpu_feature_guard.cc",  # "This TensorFlow binary is optimized to use available CPU instructions..."
    "failed call to cuInit",
    "generator_dataset_op.cc",  # "Memory patch applied: M_TRIM_THRESHOLD=128 kb was set."
    "single_machine.cc",  # grappler's "Starting new session" during export
    "WARNING:tensorflow:",  # tf.function retracing hints during evaluate
]
CPP_LOG_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\]", re.MULTILINE)


def noise_in(stderr: str) -> list[str]:
    lines = stderr.replace("\r", "\n")  # progress bars redraw with \r; a C++ line may follow one
    return [pattern for pattern in NOISE if pattern in lines] + CPP_LOG_LINE.findall(lines)


def child_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP_")}  # conftest sets one
    return {**env, **extra}


def run_python(code: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="TensorFlow is not installed ([train])")
def test_train_prints_none_of_tensorflows_start_up_logging_but_its_own_lines(stripes, tmp_path):
    run = tmp_path / "run"
    sets = tiny_config_overrides(stripes, **{"data.group_by": "null", "train.epochs": 1, "train.fine_tune_epochs": 0})
    done = subprocess.run([sys.executable, "-m", "edgelabels.cli", "train", str(REPO / "configs" / "pneumonia.yaml"),
                           "--out", str(run), *[x for s in sets for x in ("--set", s)]],
                          cwd=REPO, env=child_env(KERAS_BACKEND="tensorflow"), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert noise_in(done.stderr) == [], done.stderr
    assert f"run written to {run}" in done.stderr  # our own output is untouched
    assert "decode:" in done.stderr  # and so is the progress bar


FAKE_TENSORFLOW = """\
import os, sys
os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n")
os.write(2, b"I0000 00:00:1796163618.306037    4093 cudart_stub.cc:31] Could not find cuda drivers\\n")
os.write(2, b"W0000 00:00:1796163618.306040    4093 fake.cc:7] a warning\\n")
os.write(2, b"E0000 00:00:1796163629.493646    4093 cuda_platform.cc:52] failed call to cuInit\\n")
print("a Python line while tensorflow loads", file=sys.stderr)
"""
FAKE_LINES = ["WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
              "I0000 00:00:1796163618.306037    4093 cudart_stub.cc:31] Could not find cuda drivers",
              "W0000 00:00:1796163618.306040    4093 fake.cc:7] a warning",
              "E0000 00:00:1796163629.493646    4093 cuda_platform.cc:52] failed call to cuInit",
              "a Python line while tensorflow loads"]


@pytest.fixture
def fake_tensorflow(tmp_path):
    """A folder to put first on PYTHONPATH: its `tensorflow` prints FAKE_LINES while it loads."""
    (tmp_path / "fake" / "tensorflow").mkdir(parents=True)
    (tmp_path / "fake" / "tensorflow" / "__init__.py").write_text(FAKE_TENSORFLOW)
    return tmp_path / "fake"


@pytest.mark.parametrize("level, kept", [
    (None, FAKE_LINES[4:]),  # ours: 3, only FATAL
    ("2", FAKE_LINES[3:]),  # ERROR and above
    ("0", FAKE_LINES),  # the user asked for everything: nothing filtered
])
def test_lines_tensorflow_prints_while_loading_are_dropped_below_the_log_level_the_rest_kept(fake_tensorflow,
                                                                                            level, kept):
    env = child_env(PYTHONPATH=str(fake_tensorflow), **({"TF_CPP_MIN_LOG_LEVEL": level} if level else {}))
    done = run_python("""
        import sys
        from edgelabels.cli import quiet_tensorflow_start_up
        quiet_tensorflow_start_up()
        import tensorflow
        print("after the import", file=sys.stderr)
        print(type(tensorflow.__spec__.loader).__name__, tensorflow.__file__)
        """, env)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [*kept, "after the import"]  # in order, nothing else
    loader, path = done.stdout.split()  # the real loader is put back on the module
    assert loader == "SourceFileLoader" and path == str(fake_tensorflow / "tensorflow" / "__init__.py")


@pytest.mark.parametrize("args, user_level, level", [
    (["dataset", "inspect", "DATA"], None, "3"),
    (["dataset", "inspect", "DATA"], "1", "1"),  # the user's own setting wins
    (["--verbose", "dataset", "inspect", "DATA"], None, None),
    (["dataset", "--verbose", "inspect", "DATA"], None, None),  # after the verb
])
def test_verbose_leaves_tensorflows_logging_to_tensorflow(tmp_path, fake_tensorflow, args, user_level, level):
    data = make_stripes_dataset(tmp_path / "data", per_label=2)
    args = [str(data) if a == "DATA" else a for a in args]
    env = child_env(PYTHONPATH=str(fake_tensorflow), **({"TF_CPP_MIN_LOG_LEVEL": user_level} if user_level else {}))
    done = run_python(f"""
        import json, logging, os
        from edgelabels.cli import main
        code = main({args!r})
        import tensorflow  # after main, as a verb would
        print(json.dumps({{"code": code, "level": os.environ.get("TF_CPP_MIN_LOG_LEVEL"),
                          "tf_logger": logging.getLogger("tensorflow").level}}))
        """, env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["code"] == 0 and result["level"] == level
    if level is None:
        assert result["tf_logger"] == 0  # logging.NOTSET: TensorFlow's default
        assert all(line in done.stderr.splitlines() for line in FAKE_LINES)
    else:
        assert result["tf_logger"] == 40  # logging.ERROR
        assert FAKE_LINES[1] not in done.stderr.splitlines()  # an INFO line
