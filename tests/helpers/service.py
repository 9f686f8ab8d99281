"""The local Rekognition service for tests: `edgelabels serve --projects DIR` in a subprocess, and an S3 server.

    s3 = S3Server(tmp_path / "aws")                 # moto's S3 on a free loopback port
    s3.client().create_bucket(Bucket="data")
    service = ServiceProcess(tmp_path / "dir", "--set", "train.epochs=1", env=s3.env)
    rekognition = service.client()                  # boto3, endpoint_url = service.url
    ...
    service.kill()                                  # SIGKILL, as a crash; start a new ServiceProcess on the same DIR
    service.stop()                                  # SIGTERM, a clean stop
    s3.stop()

Each ServiceProcess costs seconds (a Python start-up and the import of boto3 and starlette): share one per module.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from helpers.server import EDGELABELS, REPO, free_port

# The variables through which a machine's own AWS configuration could leak into a test.
USER_AWS_VARIABLES = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL",
                      "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


class S3Server:
    """moto's S3 protocol server (ThreadedMotoServer) on a free loopback port.

    `env`: the environment that points boto3's standard configuration at it (AWS_ENDPOINT_URL_S3, dummy
    credentials, region us-east-1, no profile of the machine's user); give it to a ServiceProcess, or to
    `client()`."""

    def __init__(self, folder: Path):
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        folder.mkdir(parents=True, exist_ok=True)
        empty = folder / "no-aws-config"
        empty.write_text("")
        self.env = {"AWS_ENDPOINT_URL_S3": self.endpoint, "AWS_ACCESS_KEY_ID": "testing",
                    "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                    "AWS_CONFIG_FILE": str(empty), "AWS_SHARED_CREDENTIALS_FILE": str(empty)}
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()

    def client(self):
        """A boto3 S3 client of this server."""
        import boto3

        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1", aws_access_key_id="testing",
            aws_secret_access_key="testing")

    def stop(self) -> None:
        self.server.stop()


class ServiceProcess:
    """`edgelabels serve --projects DIRECTORY --port FREE *options` in a subprocess, healthy when constructed.

    `env`: variables added to this process's environment (a None value removes one), e.g. S3Server.env; without
    it the machine's own AWS variables are removed, so a test never reaches a real account by accident.
    `.url`, `.port`, `.output()` (its log so far), `.client()`, `.stop()` (SIGTERM), `.kill()` (SIGKILL)."""

    def __init__(self, directory: Path, *options: str, env: dict | None = None, timeout: float = 60.0):
        self.directory = Path(directory)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.directory.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = self.directory.parent / f"{self.directory.name}-serve-{self.port}.log"
        environment = {k: v for k, v in os.environ.items() if k not in USER_AWS_VARIABLES}
        environment.update(PYTHONUNBUFFERED="1", **(env or {}))
        environment = {k: v for k, v in environment.items() if v is not None}
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [str(EDGELABELS), "serve", "--projects", str(self.directory), "--port", str(self.port), *options],
                stdout=log, stderr=subprocess.STDOUT, env=environment, cwd=REPO)
        self._wait_healthy(timeout)

    def _wait_healthy(self, timeout: float) -> None:
        give_up = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < give_up:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"serve --projects not healthy (exit code {self.process.returncode}):\n{self.output()}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process.poll() is None

    def client(self, key_id: str = "AKIDEXAMPLE", secret: str = "secret", **config):
        """A boto3 Rekognition client of this service: region us-east-1, standard retries (`config` adds to a
        botocore Config, e.g. max_pool_connections=100)."""
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "rekognition", endpoint_url=self.url, region_name="us-east-1", aws_access_key_id=key_id,
            aws_secret_access_key=secret, config=Config(**{"retries": {"mode": "standard"}, **config}))

    def stop(self) -> int:
        """SIGTERM, as a service manager stops it; SIGKILL if it has not ended in 30 s. Its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL: the process ends at once, as in a crash (its training child is not told)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
