"""The job runner (edgelabels/jobs.py) on cheap children (python -c, no TensorFlow): how a job ends, and why."""

import sys
import time
from pathlib import Path

import pytest

from edgelabels.jobs import DEADLINE, run_job

PY = sys.executable


def _alive(pid: int) -> bool:
    """Running (a zombie, killed and not yet reaped by whoever adopted it, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def test_a_job_that_exits_0_is_ok_and_its_output_is_appended_to_the_log(tmp_path):
    log = tmp_path / "logs" / "job.log"
    log.parent.mkdir()
    log.write_text("an earlier session\n")
    outcome = run_job([PY, "-c", "print('hello from the job')"], log, limit_s=30)
    assert outcome.ok and outcome.code == 0 and outcome.reason is None and outcome.signal is None
    assert log.read_text() == "an earlier session\nhello from the job\n"


def test_a_job_exiting_7_is_reported_with_its_last_line_of_output(tmp_path):
    script = "import sys; print('loading'); print('  error: the data folder is empty  ', file=sys.stderr); sys.exit(7)"
    outcome = run_job([PY, "-c", script], tmp_path / "job.log", limit_s=30)
    assert not outcome.ok and outcome.code == 7 and not outcome.killed_at_deadline
    assert outcome.reason == "exited with code 7: error: the data folder is empty"


def test_a_job_killed_by_a_signal_says_which_and_suspects_memory_for_sigkill(tmp_path):
    outcome = run_job([PY, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"], tmp_path / "job.log", 30)
    assert outcome.code == -9 and outcome.signal == "SIGKILL"
    assert outcome.reason == "killed by SIGKILL (out of memory?)"


def test_a_job_past_its_deadline_is_killed_with_every_process_it_started(tmp_path):
    # The job starts a grandchild (as a data loader would) and prints its pid; both sleep far past the deadline.
    script = ("import subprocess, sys, time; "
              "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
              "print(p.pid, flush=True); time.sleep(60)")
    log = tmp_path / "job.log"
    started = time.monotonic()
    outcome = run_job([PY, "-c", script], log, limit_s=1.5)
    assert 1.5 <= time.monotonic() - started < 10
    assert outcome.killed_at_deadline and outcome.code is None and outcome.reason == DEADLINE
    grandchild = int(log.read_text().split()[0])
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:  # killed; reaped by init shortly after
        time.sleep(0.05)
    assert not _alive(grandchild)


def test_poll_is_called_while_the_job_runs_and_an_exception_from_it_kills_the_job(tmp_path):
    calls = []

    def poll():
        calls.append(time.monotonic())
        if len(calls) == 3:
            raise KeyboardInterrupt

    log = tmp_path / "job.log"
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        run_job([PY, "-c", "import os, time; print(os.getpid(), flush=True); time.sleep(60)"], log, 30, poll=poll)
    assert len(calls) == 3 and time.monotonic() - started < 10
    assert not _alive(int(log.read_text().split()[0]))


def test_a_child_that_calls_die_with_ends_when_its_parent_is_killed(tmp_path):
    # parent (a job) -> child (die_with(parent)) ; the parent is killed with SIGKILL, the child must follow.
    child = "import sys, time; from edgelabels.jobs import die_with; die_with(int(sys.argv[1])); time.sleep(60)"
    parent = (f"import os, subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', {child!r}, "
              "str(os.getpid())], start_new_session=True); print(p.pid, flush=True); time.sleep(1); "
              "os.kill(os.getpid(), 9)")
    log = tmp_path / "job.log"
    outcome = run_job([PY, "-c", parent], log, limit_s=30)
    assert outcome.signal == "SIGKILL"
    orphan = int(log.read_text().split()[0])
    deadline = time.monotonic() + 5
    while _alive(orphan) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(orphan)
