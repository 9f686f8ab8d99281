"""`edgelabels serve` against the real boto3 client: answers, errors, model status, auth, load shedding.

Every test starts the real server (`.venv/bin/edgelabels serve` in a subprocess on a free port)
over a real exported-model folder (tests/helpers/server.py) and talks to it with boto3, or with
raw HTTP for requests boto3 would never send.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from PIL import Image

for needed in ("boto3", "onnx", "starlette", "uvicorn"):  # [aws], [train] (model builder), [serve]
    pytest.importorskip(needed)

from helpers.server import (EDGELABELS, ServerProcess, image_bytes, rekognition_client,  # noqa: E402
                             write_model_dir)

from edgelabels.runtime.predictor import Predictor  # noqa: E402

from botocore.exceptions import ClientError  # noqa: E402

RED, GREEN, BLUE = (220, 30, 30), (30, 200, 40), (40, 50, 210)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    # Unequal assumed thresholds, so "MinConfidence omitted" is seen to apply each label's own.
    return write_model_dir(tmp_path_factory.mktemp("serve") / "colours" / "export",
                           thresholds={"red": 0.9, "green": 0.2, "blue": 0.5})


@pytest.fixture(scope="module")
def server(model_dir):
    process = ServerProcess(model_dir, "--no-access-log")
    yield process
    process.stop()


def error_code(call) -> str:
    with pytest.raises(ClientError) as caught:
        call()
    return caught.value.response["Error"]["Code"]


def raw_post(server, body: bytes, target: str | None = "RekognitionService.DetectCustomLabels",
             headers: dict | None = None, method: str = "POST", path: str = "/"):
    """One HTTP request as boto3 would never send it -> (status, headers, JSON body)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    sent = {"Content-Type": "application/x-amz-json-1.1", **(headers or {})}
    if target:
        sent["X-Amz-Target"] = target
    connection.request(method, path, body=body, headers=sent)
    answer = connection.getresponse()
    payload = answer.read()
    connection.close()
    return answer.status, {k.lower(): v for k, v in answer.getheaders()}, json.loads(payload)


def png(size=(96, 80), colour=RED, fmt="PNG") -> bytes:
    return image_bytes(colour, size=size, fmt=fmt)


def assert_still_serving(server, client=None):
    client = client or rekognition_client(server.url)
    answer = client.detect_custom_labels(ProjectVersionArn=server.arn, Image={"Bytes": png(colour=GREEN)})
    assert answer["CustomLabels"][0]["Name"] == "green"
    assert server.alive()


# -- answers -----------------------------------------------------------------------------------

def test_detect_custom_labels_answers_equal_predictor_detect(server, model_dir):
    client = rekognition_client(server.url)
    predictor = Predictor(model_dir)
    images = [png(colour=c, size=s, fmt=f) for c, s, f in
              [(RED, (96, 80), "PNG"), (GREEN, (64, 64), "JPEG"), (BLUE, (300, 120), "PNG"),
               ((120, 120, 120), (80, 90), "JPEG")]]
    for data in images:
        for options in ({}, {"MinConfidence": 0}, {"MinConfidence": 30.5}, {"MinConfidence": 0, "MaxResults": 2},
                        {"MinConfidence": 100}):
            answer = client.detect_custom_labels(ProjectVersionArn=server.arn, Image={"Bytes": data}, **options)
            expected = predictor.detect(data, min_confidence=options.get("MinConfidence"),
                                        max_results=options.get("MaxResults"))
            assert answer["CustomLabels"] == expected["CustomLabels"], options
    # The answers are not vacuous: colours get their labels, MinConfidence 0 returns all three.
    everything = client.detect_custom_labels(ProjectVersionArn=server.arn, Image={"Bytes": images[2]}, MinConfidence=0)
    assert [label["Name"] for label in everything["CustomLabels"]][0] == "blue"
    assert len(everything["CustomLabels"]) == 3
    confidences = [label["Confidence"] for label in everything["CustomLabels"]]
    assert confidences == sorted(confidences, reverse=True) and 0 <= min(confidences) and max(confidences) <= 100
    # Omitted MinConfidence applies each label's assumed threshold: a grey image (about 1/3 each)
    # passes only green's 0.2; a red one passes red's 0.9.
    def names(data):
        return [l["Name"] for l in client.detect_custom_labels(ProjectVersionArn=server.arn,
                                                              Image={"Bytes": data})["CustomLabels"]]
    assert names(images[3]) == ["green"] and names(images[0]) == ["red"]


def test_detect_custom_labels_agrees_with_edgelabels_predict(server, model_dir, tmp_path):
    client = rekognition_client(server.url)
    paths = []
    for name, colour in (("a.png", RED), ("b.png", BLUE), ("c.png", (128, 140, 100))):
        (tmp_path / name).write_bytes(png(colour=colour))
        paths.append(tmp_path / name)
    done = subprocess.run([str(EDGELABELS), "predict", str(model_dir), *map(str, paths), "--min-confidence", "0"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    predicted = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(predicted) == len(paths)
    for path, line in zip(paths, predicted):
        served = client.detect_custom_labels(ProjectVersionArn=server.arn, Image={"Bytes": path.read_bytes()},
                                             MinConfidence=0)["CustomLabels"]
        assert [l["Name"] for l in served] == [l["Name"] for l in line["CustomLabels"]]
        for a, b in zip(served, line["CustomLabels"]):
            assert a["Confidence"] == pytest.approx(b["Confidence"], abs=1e-3)


def test_every_answer_carries_a_request_id_and_health_says_ok(server):
    client = rekognition_client(server.url)
    answer = client.describe_project_versions(ProjectArn=server.project_arn)
    assert answer["ResponseMetadata"]["RequestId"]
    status, headers, body = raw_post(server, b"", target=None, method="GET", path="/health")
    assert status == 200 and body == {"status": "ok", "model": "RUNNING"} and headers["x-amzn-requestid"]
    for method, path in (("GET", "/"), ("POST", "/nowhere"), ("PUT", "/health")):
        status, headers, body = raw_post(server, b"{}", method=method, path=path)
        assert status in (400, 404, 405) and body["__type"] == "UnknownOperationException"
        assert headers["x-amzn-requestid"]


# -- bad requests ------------------------------------------------------------------------------

def _bytes_case(data, **extra):
    return ("detect_custom_labels", {"Image": {"Bytes": data}, **extra})


def _noise_png(width, height) -> bytes:
    import numpy as np

    buffer = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels, "RGB").save(buffer, "PNG", compress_level=0)
    return buffer.getvalue()


OTHER_ARN = ("arn:aws:rekognition:us-east-1:111122223333:project/my-project/version/my-project.2023-07-31T11.49.37"
             "/1690829378219")

BAD_REQUESTS = {
    # name: ((boto3 method, params) with the served ARN added unless given, expected error)
    "image over 4 MB": (_bytes_case(b"\x89PNG\r\n\x1a\n" + b"\0" * (4 * 1024 * 1024)), "ImageTooLargeException"),
    "body far over the cap": (_bytes_case(b"\xff\xd8\xff" + b"\0" * (7 * 1024 * 1024)), "ImageTooLargeException"),
    "GIF image": (_bytes_case(b"GIF89a" + b"\0" * 200), "InvalidImageFormatException"),
    "random bytes": (_bytes_case(os.urandom(3000)), "InvalidImageFormatException"),
    "truncated PNG": (_bytes_case(png(size=(200, 200))[:300]), "InvalidImageFormatException"),
    "too small": (_bytes_case(png(size=(63, 100))), "InvalidParameterException"),
    "too large in pixels": (_bytes_case(_noise_png(4097, 64)), "InvalidParameterException"),
    "empty bytes": (_bytes_case(b""), "InvalidParameterException"),
    "MinConfidence over 100": (_bytes_case(png(), MinConfidence=100.5), "InvalidParameterException"),
    "MinConfidence below 0": (_bytes_case(png(), MinConfidence=-1), "InvalidParameterException"),
    "malformed ARN": (_bytes_case(png(), ProjectVersionArn="arn:aws:rekognition:model/x"), "InvalidParameterException"),
    "unknown ARN": (_bytes_case(png(), ProjectVersionArn=OTHER_ARN), "ResourceNotFoundException"),
    "missing Image": (("detect_custom_labels", {}), "InvalidParameterException"),
    "both Bytes and S3Object": (("detect_custom_labels", {"Image": {"Bytes": png(), "S3Object": {"Bucket": "bkt",
                                                                                                "Name": "a.png"}}}),
                                "InvalidParameterException"),
    "S3Object without --s3-root": (("detect_custom_labels",
                                    {"Image": {"S3Object": {"Bucket": "bkt", "Name": "a.png"}}}),
                                   "InvalidS3ObjectException"),
    "negative MaxResults": (_bytes_case(png(), MaxResults=-1), "InvalidParameterException"),
    "start without MinInferenceUnits": (("start_project_version", {}), "InvalidParameterException"),
    "describe a malformed project": (("describe_project_versions", {"ProjectArn": "project/x"}),
                                     "InvalidParameterException"),
    "describe another project": (("describe_project_versions",
                                  {"ProjectArn": "arn:aws:rekognition:us-east-1:111122223333:project/other/1"}),
                                 "ResourceNotFoundException"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_each_bad_request_gets_its_rekognition_error_and_the_server_keeps_serving(server, case):
    (method, params), expected = BAD_REQUESTS[case]
    # Client-side validation off: boto3 would refuse some of these before sending.
    client = rekognition_client(server.url, parameter_validation=False)
    params = dict(params)
    if method != "describe_project_versions":
        params.setdefault("ProjectVersionArn", server.arn)
    assert error_code(lambda: getattr(client, method)(**params)) == expected
    assert_still_serving(server, client)


RAW_BAD_REQUESTS = {
    "bad JSON": (b'{"ProjectVersionArn": "x", "Image": {', "RekognitionService.DetectCustomLabels",
                 "SerializationException"),
    "JSON that is not an object": (b"[1, 2]", "RekognitionService.DetectCustomLabels", "InvalidParameterException"),
    "Image.Bytes not base64": (None, "RekognitionService.DetectCustomLabels", "InvalidParameterException"),
    "MinConfidence a string": (None, "RekognitionService.DetectCustomLabels", "InvalidParameterException"),
    "unknown operation": (b"{}", "RekognitionService.DetectFaces", "UnknownOperationException"),
    "another service's target": (b"{}", "DynamoDB_20120810.ListTables", "UnknownOperationException"),
    "no target": (b"{}", None, "UnknownOperationException"),
}


@pytest.mark.parametrize("case", list(RAW_BAD_REQUESTS))
def test_raw_bad_requests_get_json_errors_with_status_400_and_a_request_id(server, case):
    body, target, expected = RAW_BAD_REQUESTS[case]
    if case == "Image.Bytes not base64":
        body = json.dumps({"ProjectVersionArn": server.arn, "Image": {"Bytes": "not base64!!"}}).encode()
    if case == "MinConfidence a string":
        body = json.dumps({"ProjectVersionArn": server.arn, "MinConfidence": "high",
                           "Image": {"Bytes": base64.b64encode(png()).decode()}}).encode()
    status, headers, answer = raw_post(server, body, target=target)
    assert (status, answer["__type"]) == (400, expected)
    assert answer["message"] and headers["x-amzn-requestid"]
    assert headers["content-type"] == "application/x-amz-json-1.1"
    assert_still_serving(server)


def test_a_body_over_the_cap_is_refused_without_reading_it(server):
    # A declared length past the drain limit is answered at once, before any body is sent.
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.putrequest("POST", "/")
    connection.putheader("X-Amz-Target", "RekognitionService.DetectCustomLabels")
    connection.putheader("Content-Length", str(10 ** 9))
    connection.endheaders()
    answer = connection.getresponse()
    assert answer.status == 400 and json.loads(answer.read())["__type"] == "ImageTooLargeException"
    connection.close()
    assert_still_serving(server)


# -- model status ------------------------------------------------------------------------------

def test_stop_then_detect_is_not_ready_and_the_running_waiter_works_after_start(model_dir):
    server = ServerProcess(model_dir, "--no-access-log")
    try:
        client = rekognition_client(server.url)
        version = server.arn.split("/")[-2]
        described = client.describe_project_versions(ProjectArn=server.project_arn, VersionNames=[version])
        (description,) = described["ProjectVersionDescriptions"]
        assert description["ProjectVersionArn"] == server.arn and description["Status"] == "RUNNING"
        assert client.describe_project_versions(ProjectArn=server.project_arn,
                                                VersionNames=["other.version"])["ProjectVersionDescriptions"] == []

        assert client.stop_project_version(ProjectVersionArn=server.arn)["Status"] == "STOPPING"
        assert error_code(lambda: client.detect_custom_labels(
            ProjectVersionArn=server.arn, Image={"Bytes": png()})) == "ResourceNotReadyException"
        assert client.describe_project_versions(ProjectArn=server.project_arn)[
            "ProjectVersionDescriptions"][0]["Status"] == "STOPPED"
        assert client.stop_project_version(ProjectVersionArn=server.arn)["Status"] == "STOPPED"

        assert client.start_project_version(ProjectVersionArn=server.arn, MinInferenceUnits=2)["Status"] == "STARTING"
        client.get_waiter("project_version_running").wait(
            ProjectArn=server.project_arn, VersionNames=[version], WaiterConfig={"Delay": 1, "MaxAttempts": 3})
        assert client.describe_project_versions(ProjectArn=server.project_arn)[
            "ProjectVersionDescriptions"][0]["MinInferenceUnits"] == 2
        assert_still_serving(server, client)
        assert error_code(lambda: client.start_project_version(ProjectVersionArn=OTHER_ARN, MinInferenceUnits=1)) \
            == "ResourceNotFoundException"
    finally:
        server.stop()


def test_model_status_is_shared_by_all_worker_processes(model_dir):
    server = ServerProcess(model_dir, "--no-access-log", "--workers", "2", timeout=120)
    try:
        rekognition_client(server.url).stop_project_version(ProjectVersionArn=server.arn)
        # Fresh clients open fresh connections, which the kernel spreads over both workers.
        codes = {error_code(lambda: rekognition_client(server.url).detect_custom_labels(
            ProjectVersionArn=server.arn, Image={"Bytes": png()})) for _ in range(12)}
        assert codes == {"ResourceNotReadyException"}
        rekognition_client(server.url).start_project_version(ProjectVersionArn=server.arn, MinInferenceUnits=1)
        for _ in range(12):
            assert_still_serving(server)
    finally:
        server.stop()


FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "rekognition"


@pytest.mark.skipif(not FIXTURES.is_dir(), reason="needs ../shared/fixtures/rekognition")
def test_aws_documented_request_works_unchanged_with_its_arn_and_s3_object(model_dir, tmp_path):
    request = json.loads((FIXTURES / "detect-custom-labels-request-api-example.json").read_text())
    documented = json.loads((FIXTURES / "detect-custom-labels-response-api-example.json").read_text())
    described = json.loads((FIXTURES / "describe-project-versions-response.json").read_text())
    s3 = request["Image"]["S3Object"]
    image = tmp_path / "s3" / s3["Bucket"] / s3["Name"]
    image.parent.mkdir(parents=True)
    image.write_bytes(png(colour=RED, fmt="JPEG"))
    server = ServerProcess(model_dir, "--no-access-log", "--project-version-arn", request["ProjectVersionArn"],
                           "--s3-root", str(tmp_path / "s3"))
    try:
        assert server.arn == request["ProjectVersionArn"]
        client = rekognition_client(server.url)
        answer = client.detect_custom_labels(**request)  # the documented request, as is
        assert answer["CustomLabels"] == Predictor(model_dir).detect(
            image, min_confidence=request["MinConfidence"], max_results=request["MaxResults"])["CustomLabels"]
        assert answer["CustomLabels"] and all(set(label) == set(documented["CustomLabels"][0])
                                              for label in answer["CustomLabels"])
        assert all(label["Confidence"] >= request["MinConfidence"] for label in answer["CustomLabels"])

        # The project's own number is not part of a version ARN: any number under the project is accepted.
        project = request["ProjectVersionArn"].split("/version/")[0] + "/1690556751958"
        (ours,) = client.describe_project_versions(ProjectArn=project)["ProjectVersionDescriptions"]
        theirs = described["ProjectVersionDescriptions"][0]
        assert ours["ProjectVersionArn"] == request["ProjectVersionArn"] and ours["Status"] == "RUNNING"
        assert {"ProjectVersionArn", "CreationTimestamp", "Status", "StatusMessage"} <= set(theirs) & set(ours)
        assert ours["CreationTimestamp"].year >= 2020  # epoch seconds on the wire, a datetime in boto3
    finally:
        server.stop()


# -- load shedding -----------------------------------------------------------------------------

def test_past_max_concurrency_requests_are_shed_and_boto3_retries_them(model_dir):
    server = ServerProcess(model_dir, "--no-access-log", "--max-concurrency", "1")
    big = _noise_png(1100, 1100)  # 3.6 MB, slow enough to decode that requests overlap
    try:
        def hammer(retries: dict, results: list):
            client = rekognition_client(server.url, retries=retries)
            for _ in range(4):
                try:
                    answer = client.detect_custom_labels(ProjectVersionArn=server.arn, Image={"Bytes": big})
                    results.append(("ok", answer["ResponseMetadata"]["RetryAttempts"]))
                except ClientError as exc:
                    results.append((exc.response["Error"]["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"]))

        def run(retries) -> list:
            results: list = []
            threads = [threading.Thread(target=hammer, args=(retries, results)) for _ in range(6)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            return results

        without_retries = run({"total_max_attempts": 1, "mode": "standard"})
        shed = [r for r in without_retries if r[0] != "ok"]
        assert shed and set(shed) == {("ProvisionedThroughputExceededException", 400)}
        with_retries = run({"max_attempts": 20, "mode": "standard"})
        assert all(r[0] == "ok" for r in with_retries), with_retries
        assert sum(r[1] for r in with_retries) > 0  # boto3 retried the shed requests by itself
        assert_still_serving(server)
    finally:
        server.stop()


# -- S3Object from local folders ---------------------------------------------------------------

def test_s3_object_reads_from_s3_root_and_cannot_escape_it(model_dir, tmp_path):
    root = tmp_path / "s3"
    (root / "bucket" / "photos").mkdir(parents=True)
    (root / "bucket" / "photos" / "red.png").write_bytes(png())
    (tmp_path / "secret.png").write_bytes(png(colour=BLUE))
    (root / "bucket" / "link.png").symlink_to(tmp_path / "secret.png")
    server = ServerProcess(model_dir, "--no-access-log", "--s3-root", str(root))
    try:
        client = rekognition_client(server.url, parameter_validation=False)
        answer = client.detect_custom_labels(ProjectVersionArn=server.arn,
                                             Image={"S3Object": {"Bucket": "bucket", "Name": "photos/red.png"}})
        assert [l["Name"] for l in answer["CustomLabels"]] == ["red"]
        for bucket, name, expected in (
                ("bucket", "../../secret.png", "InvalidS3ObjectException"),
                ("bucket", "/etc/passwd", "InvalidS3ObjectException"),
                ("bucket", "link.png", "InvalidS3ObjectException"),  # a link pointing out of the bucket
                ("bucket", "photos/missing.png", "InvalidS3ObjectException"),
                ("nobucket", "x.png", "InvalidS3ObjectException"),
                ("..", "secret.png", "InvalidParameterException"),
                ("bucket/..", "secret.png", "InvalidParameterException")):
            code = error_code(lambda: client.detect_custom_labels(
                ProjectVersionArn=server.arn, Image={"S3Object": {"Bucket": bucket, "Name": name}}))
            assert code == expected, (bucket, name)
        assert_still_serving(server, client)
    finally:
        server.stop()


# -- TLS ---------------------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_tls_certificate_and_key_serve_https(model_dir, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    server = ServerProcess(model_dir, "--no-access-log", "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        assert server.url.startswith("https://")
        client = rekognition_client(server.url, verify=str(cert))
        answer = client.detect_custom_labels(ProjectVersionArn=server.arn, Image={"Bytes": png(colour=BLUE)})
        assert answer["CustomLabels"][0]["Name"] == "blue"
        client.close()  # an open TLS connection would hold the server's graceful shutdown for its 10 s
    finally:
        server.stop()
