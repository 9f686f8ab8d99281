"""A real Label Studio on loopback for the tests, started from its own environment (scripts/label-studio-env.sh).

Unattended start: the first user and a legacy API key come from `label-studio start --username --password
--user-token`; legacy keys are off by default in 1.23, so the server starts with --enable-legacy-api-token, and
the key is used once, to mint the user's Personal Access Token (POST /api/token/). `.token` is that PAT, which is
what a user copies from Label Studio's account page, so the client is tested with the current scheme.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SETUP = "run scripts/label-studio-env.sh (or set LABEL_STUDIO_ENV to a folder with bin/label-studio)"


def environment() -> Path:
    return Path(os.environ.get("LABEL_STUDIO_ENV") or REPO / ".venv-label-studio")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabelStudio:
    """`label-studio start` in `data_dir` (its SQLite, media and log), serving local files under `files_root`."""

    def __init__(self, data_dir, env_dir=None, files_root=None, timeout: float = 180.0):
        self.env_dir = Path(env_dir) if env_dir else environment()
        executable = self.env_dir / "bin" / "label-studio"
        if not executable.exists():
            raise FileNotFoundError(f"{executable} is missing: {SETUP}")
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.files_root = Path(files_root or self.data_dir)
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        legacy_key = secrets.token_hex(20)
        env = {**os.environ, "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
               "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(self.files_root),
               "LABEL_STUDIO_BASE_DATA_DIR": str(self.data_dir),
               "LATEST_VERSION_CHECK": "false", "COLLECT_ANALYTICS": "false",  # loopback only: no call to PyPI
               # Label Studio refuses an ML backend on a local address by default (SSRF guards: the backend's URL,
               # and the webhook it adds for the backend on connecting); the tests' backend (`edgelabels label
               # backend`) listens on loopback, as it would beside a Label Studio on one host
               "ML_BLOCK_LOCAL_IP": "false", "SSRF_PROTECTION_ENABLED": "false"}
        self.log_path = self.data_dir / "label-studio.log"
        started = time.monotonic()
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [str(executable), "start", "--no-browser", "--port", str(port), "--internal-host", "127.0.0.1",
                 "--data-dir", str(self.data_dir), "--username", "tests@edgelabels.invalid",
                 "--password", secrets.token_hex(12), "--user-token", legacy_key, "--enable-legacy-api-token"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True)  # its own process group, so stop() reaches the server's children too
        atexit.register(self.stop)  # its own session: an interrupted pytest would otherwise leave it running
        try:
            self._wait_healthy(timeout)
            self.token = self._personal_access_token(legacy_key)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"label-studio exited with {self.process.returncode}: {self._log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=5) as response:
                    if json.loads(response.read()).get("status") == "UP":
                        return
            except (OSError, ValueError):
                pass
            time.sleep(0.5)
        raise TimeoutError(f"label-studio not healthy after {timeout:.0f} s: {self._log_tail()}")

    def _personal_access_token(self, legacy_key: str) -> str:
        request = urllib.request.Request(self.url + "/api/token/", method="POST",
                                         headers={"Authorization": f"Token {legacy_key}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())["token"]

    def _log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else "(no log)"

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15)
