"""The suite's JAX-backend work in one child process per fake-device count, instead of one or two per test.

The suite runs on TensorFlow; a JAX test needs a process started with KERAS_BACKEND=jax, and each such process
pays the start-up of TensorFlow (edgelabels' CLI imports it), JAX, Keras and edgelabels (4 to 10 s here), then
JAX's compilation of what it trains. So every JAX job of the suite is listed in JOBS under the device count it
needs; the first test that asks for a job of a count starts one child that runs, in order, the jobs of that count
whose test modules this session runs, and the answers are kept for the session. A job is a function
`job(root: Path) -> dict` (JSON-serialisable) defined in the test module whose test asserts on it, next to that
test; a job that raises gives its traceback to its own test only.

Run as `python -m helpers.jax_worker ROOT JOB...` (by `result` below, never by hand).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent

# Per device count, the jobs in the order they run. Data-parallel jobs come first and in the same order for
# every count, so that a run compared across counts starts from the same process state (train() seeds itself
# anyway; this keeps the comparison from depending on it).
JOBS = {
    1: ["test_distribute:padded_classifier", "test_padded_losses:padded_unet_and_detector",
        "test_distribute:four_device_run", "test_train:classifier_cli", "test_detector:tiny_detector",
        "test_lung_chain:unet_cli", "test_evaluate_gradcam:heatmaps"],
    3: ["test_distribute:padded_classifier", "test_padded_losses:padded_unet_and_detector",
        "test_resume_exact:data_parallel_resume"],
    4: ["test_distribute:four_device_run", "test_distribute:indivisible_batch"],
}

_answers: dict[int, dict] = {}


def result(job: str, devices: int, request) -> dict:
    """What `job` returned in the child with `devices` fake CPU devices; the test fails with its traceback if it
    raised (or if the child died before answering). Starts that child the first time a count is asked for, with
    the jobs of the test modules among the session's tests (`pytest -k one_test` does not pay for the others)."""
    import pytest

    pytest.importorskip("jax")
    assert job in JOBS.get(devices, ()), f"{job} is not listed in helpers/jax_worker.py JOBS[{devices}]"
    if devices not in _answers:
        modules = {item.module.__name__ for item in request.session.items if getattr(item, "module", None)}
        jobs = [j for j in JOBS[devices] if j == job or j.split(":")[0] in modules]
        root = request.getfixturevalue("tmp_path_factory").mktemp(f"jax{devices}")
        _answers[devices] = _run_child(jobs, devices, root)
    answer = _answers[devices].get(job) or {"error": "the JAX child gave no answer for this job"}
    if "error" in answer:
        pytest.fail(f"{job} under JAX ({devices} devices):\n{answer['error']}", pytrace=False)
    return answer


def _run_child(jobs: list[str], devices: int, root: Path) -> dict:
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
           "PYTHONPATH": os.pathsep.join([str(TESTS), *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run([sys.executable, "-m", "helpers.jax_worker", str(root), *jobs], env=env,
                          cwd=TESTS.parent, capture_output=True, text=True, timeout=600)
    answers_file = root / "answers.json"
    answers = json.loads(answers_file.read_text()) if answers_file.is_file() else {}
    if done.returncode:  # the jobs that did not answer get the child's own end
        for job in jobs:
            answers.setdefault(job, {"error": f"child exited {done.returncode}:\n{done.stderr[-3000:]}"})
    return answers


def _main(root: Path, jobs: list[str]) -> None:
    import importlib

    import keras

    answers = {}
    for job in jobs:
        module, name = job.split(":")
        folder = root / job.replace(":", "-")
        folder.mkdir(parents=True)
        try:
            answers[job] = getattr(importlib.import_module(module), name)(folder)
        except BaseException:  # noqa: BLE001  (a job's failure is its test's, not the other jobs')
            answers[job] = {"error": traceback.format_exc()[-4000:]}
        keras.distribution.set_distribution(None)  # a data-parallel job leaves its distribution set
        # written after each job: a child that dies later still answers for the jobs before
        (root / "answers.json.tmp").write_text(json.dumps(answers))
        (root / "answers.json.tmp").replace(root / "answers.json")


if __name__ == "__main__":
    _main(Path(sys.argv[1]), sys.argv[2:])
