"""`edgelabels serve` under hostile input: stalled bodies, memory held by slow uploads, deep JSON, odd values.

Stalled clients send their headers and a sliver of the body, then nothing. They must not hold the
inference slots (`--max-concurrency`), with or without --credentials, and they are dropped after the
per-read timeout. The other cases are single requests that must get Rekognition's error (400), not
a 500 or an acceptance.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import http.client
import io
import json
import os
import socket
import struct
import subprocess
import sys
import time
import urllib.request
import zlib
from pathlib import Path

import pytest
from PIL import Image

for needed in ("boto3", "onnx", "starlette", "uvicorn"):  # [aws], [train] (model builder), [serve]
    pytest.importorskip(needed)

from helpers.server import (REPO, ServerProcess, free_port, image_bytes, rekognition_client,  # noqa: E402
                            write_model_dir)

from botocore.exceptions import ClientError  # noqa: E402

KEY, SECRET = "AKIAHOSTILETEST00001", "hostile-test-secret"
RED, BLUE = (220, 30, 30), (40, 50, 210)
STALLED_LENGTH = 100_000


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return write_model_dir(tmp_path_factory.mktemp("hostile") / "colours" / "export")


def started(server: ServerProcess, client) -> ServerProcess:
    """The server after one real call (the first inference warms onnxruntime up, off the timed path)."""
    answer = client.detect_custom_labels(ProjectVersionArn=server.arn, Image={"Bytes": image_bytes(RED)})
    assert answer["CustomLabels"][0]["Name"] == "red"
    return server


@pytest.fixture(scope="module")
def open_server(model_dir):
    server = ServerProcess(model_dir, "--no-access-log", "--max-concurrency", "2")
    yield started(server, rekognition_client(server.url))
    server.stop()


@pytest.fixture(scope="module")
def signed_server(model_dir):
    credentials = model_dir.parent / "credentials"
    credentials.write_text(f"[default]\naws_access_key_id = {KEY}\naws_secret_access_key = {SECRET}\n")
    server = ServerProcess(model_dir, "--no-access-log", "--max-concurrency", "2", "--credentials", str(credentials))
    yield started(server, rekognition_client(server.url, KEY, SECRET))
    server.stop()


def fake_authorization(key: str = KEY, region: str = "us-east-1") -> str:
    """An Authorization header naming a real key, service and region, with a signature that is not one."""
    day = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d")
    return (f"AWS4-HMAC-SHA256 Credential={key}/{day}/{region}/rekognition/aws4_request, "
            f"SignedHeaders=host;x-amz-date, Signature={'0' * 64}")


def stall(port: int, count: int, authorization: str | None = None, body: bytes = b"{",
          length: int = STALLED_LENGTH) -> list[socket.socket]:
    """`count` connections that each send a DetectCustomLabels header block and `body`, then nothing."""
    head = (f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Amz-Target: RekognitionService.DetectCustomLabels\r\n"
            f"Content-Type: application/x-amz-json-1.1\r\nContent-Length: {length}\r\n")
    if authorization:
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        head += f"X-Amz-Date: {stamp}\r\nAuthorization: {authorization}\r\n"
    sockets = []
    for _ in range(count):
        connection = socket.create_connection(("127.0.0.1", port), timeout=10)
        connection.sendall(head.encode() + b"\r\n" + body)
        sockets.append(connection)
    time.sleep(0.5)  # the server has taken every one of them up
    return sockets


def silent(connection: socket.socket) -> bool:
    """Nothing answered and the connection still open."""
    connection.setblocking(False)
    try:
        connection.recv(1, socket.MSG_PEEK)
        return False  # an answer, or b"" for a close
    except BlockingIOError:
        return True
    finally:
        connection.setblocking(True)


def timed_detect(client, arn: str, image: bytes) -> tuple[float, str]:
    start = time.perf_counter()
    answer = client.detect_custom_labels(ProjectVersionArn=arn, Image={"Bytes": image})
    return time.perf_counter() - start, answer["CustomLabels"][0]["Name"]


def error_code(call) -> str:
    with pytest.raises(ClientError) as caught:
        call()
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return caught.value.response["Error"]["Code"]


# -- stalled connections ------------------------------------------------------------------------

def test_stalled_bodies_far_past_max_concurrency_leave_a_boto3_call_served_at_once(open_server):
    client = rekognition_client(open_server.url)  # no retries: the first attempt must be served
    stalled = stall(open_server.port, 24)  # --max-concurrency 2
    try:
        seconds, label = timed_detect(client, open_server.arn, image_bytes(BLUE))
        assert label == "blue" and seconds < 2.0
        assert all(silent(s) for s in stalled)  # they were still stalled, holding their connections
    finally:
        for s in stalled:
            s.close()


def test_stalled_bodies_with_a_known_key_id_leave_a_signed_call_served_at_once(signed_server):
    client = rekognition_client(signed_server.url, KEY, SECRET)
    stalled = stall(signed_server.port, 24, authorization=fake_authorization())
    try:
        seconds, label = timed_detect(client, signed_server.arn, image_bytes(BLUE))
        assert label == "blue" and seconds < 2.0
        assert all(silent(s) for s in stalled)
    finally:
        for s in stalled:
            s.close()
    # The same header with an unknown key is refused before its body, as before.
    (unknown,) = stall(signed_server.port, 1, authorization=fake_authorization(key="AKIANOTLISTED0000000"))
    with unknown:
        assert b"UnrecognizedClientException" in closed_after(unknown, time.monotonic())[1]


@contextlib.contextmanager
def settings_server(model_dir: Path, tmp_path: Path, **fields):
    """uvicorn in a subprocess serving `app_from_environment` with ServeSettings fields set directly."""
    from edgelabels.serve.server import SETTINGS_ENV, ModelState, ServeSettings

    arn = "arn:aws:rekognition:us-east-1:000000000000:project/hostile/version/hostile.1/1"
    settings = ServeSettings(model_dir=str(model_dir), project_version_arn=arn, creation_timestamp=0.0,
                             state_file=str(tmp_path / "status.json"), **fields)
    ModelState(settings.state_file).write("RUNNING")
    port = free_port()
    log = open(tmp_path / "uvicorn.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "--no-access-log", "--port", str(port),
                                "edgelabels.serve.server:app_from_environment"], stdout=log, stderr=subprocess.STDOUT,
                               env=dict(os.environ, **{SETTINGS_ENV: str(settings.write(tmp_path / "settings.json"))}),
                               cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (tmp_path / "uvicorn.log").read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "uvicorn.log").read_text()
                time.sleep(0.1)
        yield port, arn
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()


def closed_after(connection: socket.socket, started_at: float) -> tuple[float, bytes]:
    """Seconds from `started_at` until the server closed the connection, and what it sent before."""
    connection.settimeout(10)
    data = b""
    while chunk := connection.recv(4096):
        data += chunk
    return time.monotonic() - started_at, data


def test_a_stalled_body_is_dropped_after_the_read_timeout_and_a_trickling_one_after_the_deadline(model_dir, tmp_path):
    with settings_server(model_dir, tmp_path, body_read_timeout_s=1.0, body_deadline_s=2.0) as (port, _):
        begun = time.monotonic()
        (stalled,) = stall(port, 1)
        seconds, data = closed_after(stalled, begun)
        assert b" 400 " in data.split(b"\r\n")[0] and b"RequestTimeoutException" in data
        assert seconds < 2.0
        stalled.close()

        begun = time.monotonic()
        (trickling,) = stall(port, 1)
        try:
            while silent(trickling) and time.monotonic() - begun < 6:
                trickling.sendall(b" ")  # one byte every 0.3 s: never 1 s without a chunk
                time.sleep(0.3)
            seconds = time.monotonic() - begun
            data = closed_after(trickling, begun)[1]  # to the close: the headers and the body may come apart
        except (BrokenPipeError, ConnectionResetError):  # the close raced a byte sent just before it
            seconds, data = time.monotonic() - begun, None
        assert 1.9 < seconds < 3.0  # ended by the 2 s deadline, though never idle for 1 s
        assert data is None or b"RequestTimeoutException" in data
        trickling.close()


def test_slow_uploads_past_the_body_budget_shed_a_big_request_while_small_ones_are_served(model_dir, tmp_path):
    small, big = image_bytes(RED, size=(96, 80)), image_bytes(BLUE, size=(200, 170))
    budget, hog = 300_000, 250_000
    # Preconditions of the case: the small body fits beside the hog, the big one only alone.
    assert len(base64.b64encode(small)) + 1000 < budget - hog < len(base64.b64encode(big)) < budget - 1000
    with settings_server(model_dir, tmp_path, body_budget_bytes=budget) as (port, arn):
        client = rekognition_client(f"http://127.0.0.1:{port}")
        (slow,) = stall(port, 1, body=b'{"Image": "' + b"a" * (hog - 11), length=1_000_000)
        assert error_code(lambda: client.detect_custom_labels(ProjectVersionArn=arn, Image={"Bytes": big})) \
            == "ProvisionedThroughputExceededException"
        assert timed_detect(client, arn, small)[1] == "red"
        assert silent(slow)
        slow.close()  # its 250 KB are given back
        time.sleep(0.3)
        assert timed_detect(client, arn, big)[1] == "blue"


# -- single hostile requests --------------------------------------------------------------------

def raw_post(port: int, body: bytes) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("POST", "/", body=body, headers={"X-Amz-Target": "RekognitionService.DetectCustomLabels",
                                                         "Content-Type": "application/x-amz-json-1.1"})
    answer = connection.getresponse()
    status, payload = answer.status, json.loads(answer.read())
    connection.close()
    return status, payload


def test_json_nested_100000_deep_is_a_serialization_error_without_a_traceback(open_server):
    depth = 100_000
    body = (f'{{"ProjectVersionArn": "{open_server.arn}", "Image": ').encode() + b"[" * depth + b"]" * depth + b"}"
    status, answer = raw_post(open_server.port, body)
    assert (status, answer["__type"]) == (400, "SerializationException")
    assert timed_detect(rekognition_client(open_server.url), open_server.arn, image_bytes(RED))[1] == "red"
    assert "Traceback" not in open_server.output()


def test_a_request_botocore_cannot_canonicalise_is_a_client_error_not_a_server_fault(signed_server):
    connection = http.client.HTTPConnection("127.0.0.1", signed_server.port, timeout=10)
    connection.putrequest("POST", "/", skip_host=True)
    connection.putheader("Host", "[")  # botocore's URL parsing raises ValueError while checking the signature
    connection.putheader("X-Amz-Target", "RekognitionService.DescribeProjectVersions")
    connection.putheader("X-Amz-Date", datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ"))
    connection.putheader("Authorization", fake_authorization())
    connection.putheader("Content-Length", "2")
    connection.endheaders(b"{}")
    answer = connection.getresponse()
    assert (answer.status, json.loads(answer.read())["__type"]) == (400, "InvalidParameterException")
    connection.close()
    assert "Traceback" not in signed_server.output()


def test_a_request_signed_for_another_region_is_refused(signed_server):
    import boto3
    from botocore.config import Config

    client = boto3.client("rekognition", endpoint_url=signed_server.url, region_name="eu-west-1",
                          aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                          config=Config(retries={"total_max_attempts": 1}))
    with pytest.raises(ClientError) as caught:
        client.detect_custom_labels(ProjectVersionArn=signed_server.arn, Image={"Bytes": image_bytes(RED)})
    assert caught.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert "region" in caught.value.response["Error"]["Message"]


def test_max_results_past_a_java_integer_is_invalid(open_server):
    client = rekognition_client(open_server.url, parameter_validation=False)
    for too_many in (10 ** 30, 2 ** 31):
        assert error_code(lambda most=too_many: client.detect_custom_labels(
            ProjectVersionArn=open_server.arn, Image={"Bytes": image_bytes(RED)}, MaxResults=most)) \
            == "InvalidParameterException"
    answer = client.detect_custom_labels(ProjectVersionArn=open_server.arn, Image={"Bytes": image_bytes(RED)},
                                         MaxResults=2 ** 31 - 1, MinConfidence=0)
    assert len(answer["CustomLabels"]) == 3


def bomb_png(width: int = 30_000, height: int = 30_000) -> bytes:
    """A 69-byte PNG whose header claims width x height pixels (Pillow refuses it at open)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) \
        + chunk(b"IEND", b"")


def test_a_decompression_bomb_is_refused_like_any_oversize_image(open_server):
    bomb = bomb_png()
    with pytest.raises(Image.DecompressionBombError):  # the case is a real bomb to Pillow
        Image.open(io.BytesIO(bomb))
    client = rekognition_client(open_server.url)
    assert error_code(lambda: client.detect_custom_labels(ProjectVersionArn=open_server.arn,
                                                          Image={"Bytes": bomb})) == "InvalidParameterException"
    assert timed_detect(client, open_server.arn, image_bytes(RED))[1] == "red"


# -- answers that say what is wrong, in-process (issue 25 item 9) ----------------------------------

def service(model_dir: Path, tmp_path: Path, **fields):
    """The Rekognition operations in this process, over the hand-made classifier."""
    from edgelabels.serve.server import ModelState, RekognitionService, ServeSettings

    settings = ServeSettings(model_dir=str(model_dir), creation_timestamp=0.0, state_file=str(tmp_path / "state"),
                             project_version_arn="arn:aws:rekognition:us-east-1:000000000000:project/colours/"
                             "version/colours.1/1", **fields)
    ModelState(settings.state_file).write("RUNNING")
    return RekognitionService(settings)


def detect(served, image: dict) -> dict:
    return served.detect_custom_labels({"ProjectVersionArn": served.arn, "Image": image})


@pytest.mark.parametrize("data", [b"\xff\xd8\xff" + b"\0" * 100, b"\xff\xd8\xff\xe0\0\x10JFIF" + b"\xff" * 50])
def test_a_corrupt_jpeg_is_invalid_image_format_without_a_python_repr(model_dir, tmp_path, data):
    from edgelabels.serve.api_errors import ApiError

    with pytest.raises(ApiError) as refused:
        detect(service(model_dir, tmp_path), {"Bytes": base64.b64encode(data).decode()})
    assert refused.value.code == "InvalidImageFormatException"
    assert "truncated or corrupt" in str(refused.value)
    assert " at 0x" not in str(refused.value) and "<" not in str(refused.value)


def test_s3_keys_are_literal_a_trailing_slash_or_empty_segment_names_no_object(model_dir, tmp_path):
    from edgelabels.serve.api_errors import ApiError

    (tmp_path / "s3" / "bucket" / "photos").mkdir(parents=True)
    (tmp_path / "s3" / "bucket" / "photos" / "good.jpg").write_bytes(image_bytes(RED, fmt="JPEG"))
    served = service(model_dir, tmp_path, s3_root=str(tmp_path / "s3"))
    assert detect(served, {"S3Object": {"Bucket": "bucket", "Name": "photos/good.jpg"}})["CustomLabels"][0]["Name"] \
        == "red"
    for key in ("photos/good.jpg/", "photos//good.jpg", "photos/./good.jpg"):
        with pytest.raises(ApiError) as refused:
            detect(served, {"S3Object": {"Bucket": "bucket", "Name": key}})
        assert refused.value.code == "InvalidS3ObjectException", key
        assert f"Unable to get object s3://bucket/{key}" in str(refused.value)
