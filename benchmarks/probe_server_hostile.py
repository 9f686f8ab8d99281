"""Stalled connections and deeply nested JSON against `edgelabels serve`: is a real client still served?

    .venv/bin/python benchmarks/probe_server_hostile.py [--stalled 16 64 256] [--drop-wait 15]

For the server without and with --credentials (default --max-concurrency 16), opens K connections
that each send DetectCustomLabels headers with Content-Length 100000 (with --credentials, also a
fake Authorization header naming the real access key) and one body byte, then stall. While they
stall, one signed boto3 DetectCustomLabels is timed without retries and one with boto3's standard
retries (4 attempts). Prints per K: latency and outcome (the label, or the error code), retries,
how many stalled connections the server still holds, and the server's RSS. Then: how long until the
server has answered or closed all of 16 stalled connections (capped at --drop-wait seconds), the
answer to a signed body nesting a JSON array 100,000 deep (median of 5), and (without
--credentials) the server's RSS and a boto3 call while --uploads connections each send 4 MB of a
5.5 MB body and stall (the memory that slow full-size uploads can make the server hold).
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

KEY, SECRET = "AKIAHOSTILEPROBE0001", "hostile-probe-secret"


def stall(port: int, count: int, authorization: str | None, length: int = 100_000, body: bytes = b"{") \
        -> list[socket.socket]:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    head = (f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Amz-Target: RekognitionService.DetectCustomLabels\r\n"
            f"Content-Type: application/x-amz-json-1.1\r\nContent-Length: {length}\r\n"
            + (f"X-Amz-Date: {stamp}\r\nAuthorization: {authorization}\r\n" if authorization else "") + "\r\n")
    sockets = []
    for _ in range(count):
        connection = socket.create_connection(("127.0.0.1", port), timeout=10)
        connection.sendall(head.encode() + body)
        sockets.append(connection)
    time.sleep(0.5)
    return sockets


def silent(connection: socket.socket) -> bool:
    connection.setblocking(False)
    try:
        connection.recv(1, socket.MSG_PEEK)
        return False  # an answer, or b"" for a close
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        connection.setblocking(True)


def timed_call(client, arn: str, image: bytes) -> tuple[float, str, int]:
    from botocore.exceptions import ClientError

    start = time.perf_counter()
    try:
        answer = client.detect_custom_labels(ProjectVersionArn=arn, Image={"Bytes": image})
        outcome, retries = answer["CustomLabels"][0]["Name"], answer["ResponseMetadata"]["RetryAttempts"]
    except ClientError as exc:
        outcome, retries = exc.response["Error"]["Code"], exc.response["ResponseMetadata"].get("RetryAttempts", 0)
    except Exception as exc:  # a connection error is an outcome too
        outcome, retries = type(exc).__name__, -1
    return (time.perf_counter() - start) * 1000, outcome, retries


def nested_json(port: int, arn: str, signed: bool) -> tuple[float, int, str]:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    depth = 100_000
    body = f'{{"ProjectVersionArn": "{arn}", "Image": '.encode() + b"[" * depth + b"]" * depth + b"}"
    request = AWSRequest(method="POST", url=f"http://127.0.0.1:{port}/", data=body,
                         headers={"X-Amz-Target": "RekognitionService.DetectCustomLabels",
                                  "Content-Type": "application/x-amz-json-1.1"})
    if signed:
        SigV4Auth(Credentials(KEY, SECRET), "rekognition", "us-east-1").add_auth(request)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    start = time.perf_counter()
    connection.request("POST", "/", body=body, headers=dict(request.headers.items()))
    answer = connection.getresponse()
    code = json.loads(answer.read()).get("__type", "")
    seconds = time.perf_counter() - start
    connection.close()
    return seconds * 1000, answer.status, code


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stalled", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--drop-wait", type=float, default=15.0, help="longest wait for stalled connections to end")
    parser.add_argument("--uploads", type=int, default=64, help="slow 4 MB uploads (0: skip)")
    args = parser.parse_args()

    from helpers.server import ServerProcess, image_bytes, rekognition_client, write_model_dir

    tmp = Path(tempfile.mkdtemp(prefix="probe-hostile-"))
    model = write_model_dir(tmp / "hostile" / "export")
    credentials = tmp / "credentials"
    credentials.write_text(f"[default]\naws_access_key_id = {KEY}\naws_secret_access_key = {SECRET}\n")
    image = image_bytes((40, 50, 210))
    day = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d")
    fake = (f"AWS4-HMAC-SHA256 Credential={KEY}/{day}/us-east-1/rekognition/aws4_request, "
            f"SignedHeaders=host;x-amz-date, Signature={'0' * 64}")

    rows, drops, nested = [], {}, {}
    for auth in ("none", "credentials"):
        options = ["--credentials", str(credentials)] if auth == "credentials" else []
        server = ServerProcess(model, "--no-access-log", *options, log_path=tmp / f"server-{auth}.log")
        try:
            once = rekognition_client(server.url, KEY, SECRET)
            retrying = rekognition_client(server.url, KEY, SECRET,
                                          retries={"total_max_attempts": 4, "mode": "standard"})
            timed_call(once, server.arn, image)  # warm-up
            for count in args.stalled:
                stalled = stall(server.port, count, fake if auth == "credentials" else None)
                first = timed_call(once, server.arn, image)
                retried = timed_call(retrying, server.arn, image)
                held = sum(map(silent, stalled))
                rows.append((auth, count, first, retried, held, rss_mib(server.process.pid)))
                for connection in stalled:
                    connection.close()
                time.sleep(1.0)  # the server notices the closes

            stalled = stall(server.port, 16, fake if auth == "credentials" else None)
            start = time.monotonic() - 0.5  # stall() waited 0.5 s after opening them
            while any(map(silent, stalled)) and time.monotonic() - start < args.drop_wait:
                time.sleep(0.1)
            remaining = sum(map(silent, stalled))
            drops[auth] = (time.monotonic() - start, remaining)
            for connection in stalled:
                connection.close()
            time.sleep(1.0)

            answers = [nested_json(server.port, server.arn, signed=auth == "credentials") for _ in range(5)]
            nested[auth] = (statistics.median(a[0] for a in answers), answers[0][1], answers[0][2],
                            "Traceback" in server.output())

            if auth == "none" and args.uploads:
                before = rss_mib(server.process.pid)
                slow = stall(server.port, args.uploads, None, length=5_500_000, body=b'{"x": "' + b"a" * 4_000_000)
                time.sleep(1.0)
                uploads = (before, rss_mib(server.process.pid), timed_call(once, server.arn, image),
                           sum(map(silent, slow)))
                for connection in slow:
                    connection.close()
        finally:
            server.stop()

    print(f"{'auth':<12} {'stalled':>7}  {'1 attempt':>10} {'outcome':<40} {'4 attempts':>10} {'outcome':<40} "
          f"{'retries':>7} {'held':>5} {'RSS MiB':>8}")
    for auth, count, first, retried, held, rss in rows:
        print(f"{auth:<12} {count:>7}  {first[0]:>8.0f}ms {first[1]:<40} {retried[0]:>8.0f}ms {retried[1]:<40} "
              f"{retried[2]:>7} {held:>5} {rss:>8.0f}")
    for auth, (seconds, remaining) in drops.items():
        ended = f"all 16 answered or closed after {seconds:.1f} s" if not remaining else \
            f"{remaining} of 16 still held after {seconds:.1f} s"
        print(f"stalled connections ({auth}): {ended}")
    if args.uploads:
        before, during, call, held = uploads
        print(f"{args.uploads} stalled 4 MB uploads (none): server RSS {before:.0f} -> {during:.0f} MiB, "
              f"{held} still held; a boto3 call meanwhile: {call[1]} in {call[0]:.0f} ms")
    for auth, (ms, status, code, traceback) in nested.items():
        print(f"JSON nested 100,000 deep ({auth}): {status} {code} in {ms:.0f} ms (median of 5); "
              f"traceback in the server log: {'yes' if traceback else 'no'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
