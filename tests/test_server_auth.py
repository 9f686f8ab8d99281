"""SigV4 on `edgelabels serve`: botocore-signed requests pass, anything else is refused; unsafe binds refused.

The unit tests sign requests with botocore's own SigV4Auth (as boto3 does) and check the verifier
against them; the end-to-end tests run the server with --credentials and the real boto3 client.
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import subprocess

import pytest

for needed in ("boto3", "onnx", "starlette", "uvicorn"):  # [aws], [train] (model builder), [serve]
    pytest.importorskip(needed)

from helpers.server import (EDGELABELS, ServerProcess, free_port, image_bytes, rekognition_client,  # noqa: E402
                            write_model_dir)

import botocore.auth  # noqa: E402
from botocore.auth import SigV4Auth  # noqa: E402
from botocore.awsrequest import AWSRequest  # noqa: E402
from botocore.credentials import Credentials  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

from edgelabels.errors import UserError  # noqa: E402
from edgelabels.serve import server_command  # noqa: E402
from edgelabels.serve.sigv4 import SignatureProblem, SignatureVerifier, read_credentials  # noqa: E402

KEY, SECRET = "AKIAEDGELABELSTEST01", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
CREDENTIALS = f"""[default]
aws_access_key_id = {KEY}
aws_secret_access_key = {SECRET}

[ci]
aws_access_key_id = AKIASECONDKEY0000000
aws_secret_access_key = another-secret
"""


def signed(body: bytes = b'{"ProjectArn": "x"}', secret: str = SECRET, key: str = KEY, host: str = "127.0.0.1:8080",
           when: datetime.datetime | None = None, monkeypatch=None, service: str = "rekognition",
           region: str = "eu-west-1") -> AWSRequest:
    """A request signed exactly as boto3 signs a Rekognition call."""
    request = AWSRequest(method="POST", url=f"http://{host}/", data=body, headers={
        "X-Amz-Target": "RekognitionService.DescribeProjectVersions",
        "Content-Type": "application/x-amz-json-1.1", "User-Agent": "Boto3/test"})
    if when is not None:
        monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: when)
    SigV4Auth(Credentials(key, secret), service, region).add_auth(request)
    return request


def verify(request: AWSRequest, verifier=None, extra_headers=(), body=None) -> str:
    verifier = verifier or SignatureVerifier({KEY: SECRET})
    headers = [("host", "127.0.0.1:8080"), *request.headers.items(), *extra_headers]
    return verifier.verify(method="POST", path="/", query="", headers=headers,
                           body=request.body if body is None else body)


def problem(call) -> str:
    with pytest.raises(SignatureProblem) as caught:
        call()
    return caught.value.code


# -- the verifier ------------------------------------------------------------------------------

def test_a_request_signed_by_botocore_verifies():
    assert verify(signed()) == KEY


def test_a_wrong_secret_a_changed_body_or_header_fails_the_signature():
    assert problem(lambda: verify(signed(secret="not-the-secret"))) == "InvalidSignatureException"
    assert problem(lambda: verify(signed(), body=b'{"ProjectArn": "y"}')) == "InvalidSignatureException"
    request = signed()
    request.headers.replace_header("X-Amz-Target", "RekognitionService.StopProjectVersion")
    assert problem(lambda: verify(request)) == "InvalidSignatureException"


def test_an_unknown_key_is_unrecognized_and_a_missing_header_is_reported():
    assert problem(lambda: verify(signed(key="AKIAUNKNOWN000000000"))) == "UnrecognizedClientException"
    request = signed()
    del request.headers["Authorization"]
    assert problem(lambda: verify(request)) == "MissingAuthenticationTokenException"
    request = signed()
    request.headers.replace_header("Authorization", "AWS4-HMAC-SHA256 Credential=x")
    assert problem(lambda: verify(request)) in ("IncompleteSignatureException", "UnrecognizedClientException")


def test_a_timestamp_more_than_five_minutes_off_is_refused(monkeypatch):
    now = datetime.datetime.now(datetime.timezone.utc)
    assert verify(signed(when=now - datetime.timedelta(minutes=4), monkeypatch=monkeypatch)) == KEY
    for skew in (datetime.timedelta(minutes=6), -datetime.timedelta(minutes=6)):
        old = signed(when=now - skew, monkeypatch=monkeypatch)
        assert problem(lambda: verify(old)) == "InvalidSignatureException"


def test_a_signature_for_another_service_or_a_lying_content_hash_is_refused():
    assert problem(lambda: verify(signed(service="s3"))) == "InvalidSignatureException"
    # An unsigned header claiming another body hash must not replace the real one.
    request = signed()
    lie = ("x-amz-content-sha256", "0" * 64)
    assert problem(lambda: verify(request, extra_headers=[lie])) == "InvalidSignatureException"


def test_a_verifier_bound_to_a_region_refuses_a_signature_scoped_to_another():
    request = signed()  # scoped to eu-west-1
    assert verify(request, SignatureVerifier({KEY: SECRET}, region="eu-west-1")) == KEY
    verifier = SignatureVerifier({KEY: SECRET}, region="us-east-1")
    assert problem(lambda: verify(request, verifier)) == "InvalidSignatureException"
    with pytest.raises(SignatureProblem, match="valid region"):
        verifier.check_key(request.headers["Authorization"])  # refused from the header, before the body


def test_credentials_file_needs_complete_sections(tmp_path):
    good = tmp_path / "credentials"
    good.write_text(CREDENTIALS)
    assert read_credentials(good) == {KEY: SECRET, "AKIASECONDKEY0000000": "another-secret"}
    bad = tmp_path / "bad"
    bad.write_text("[default]\naws_access_key_id = AKIA\n")
    with pytest.raises(UserError, match="aws_secret_access_key"):
        read_credentials(bad)
    with pytest.raises(UserError, match="cannot read"):
        read_credentials(tmp_path / "missing")


# -- end to end --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def signed_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("auth")
    model = write_model_dir(folder / "auth-model" / "export")
    credentials = folder / "credentials"
    credentials.write_text(CREDENTIALS)
    server = ServerProcess(model, "--no-access-log", "--credentials", str(credentials))
    yield server
    server.stop()


def test_boto3_with_a_listed_key_is_served(signed_server):
    for key, secret in ((KEY, SECRET), ("AKIASECONDKEY0000000", "another-secret")):
        client = rekognition_client(signed_server.url, key, secret)
        answer = client.detect_custom_labels(ProjectVersionArn=signed_server.arn, Image={"Bytes": image_bytes()})
        assert answer["CustomLabels"][0]["Name"] == "red"


def test_boto3_with_a_wrong_secret_or_unknown_key_is_refused(signed_server):
    for key, secret, expected in ((KEY, "wrong", "InvalidSignatureException"),
                                  ("AKIANOTLISTED0000000", SECRET, "UnrecognizedClientException")):
        client = rekognition_client(signed_server.url, key, secret)
        with pytest.raises(ClientError) as caught:
            client.detect_custom_labels(ProjectVersionArn=signed_server.arn, Image={"Bytes": image_bytes()})
        assert caught.value.response["Error"]["Code"] == expected
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    # and the server still serves the right key
    rekognition_client(signed_server.url, KEY, SECRET).describe_project_versions(ProjectArn=signed_server.project_arn)


def test_unsigned_requests_are_refused_but_health_needs_no_signature(signed_server):
    connection = http.client.HTTPConnection("127.0.0.1", signed_server.port, timeout=10)
    connection.request("POST", "/", body=b"{}", headers={"X-Amz-Target": "RekognitionService.DescribeProjectVersions"})
    answer = connection.getresponse()
    assert answer.status == 400 and json.loads(answer.read())["__type"] == "MissingAuthenticationTokenException"
    connection.request("GET", "/health")
    answer = connection.getresponse()
    assert answer.status == 200 and json.loads(answer.read()) == {"status": "ok", "model": "RUNNING"}
    connection.close()


def test_a_replayed_request_with_an_old_timestamp_is_refused(signed_server, monkeypatch):
    old = signed(body=json.dumps({"ProjectArn": signed_server.project_arn}).encode(),
                 host=f"127.0.0.1:{signed_server.port}", monkeypatch=monkeypatch, region="us-east-1",
                 when=datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=10))
    connection = http.client.HTTPConnection("127.0.0.1", signed_server.port, timeout=10)
    connection.request("POST", "/", body=old.body, headers=dict(old.headers.items()))
    answer = connection.getresponse()
    body = json.loads(answer.read())
    assert answer.status == 400 and body["__type"] == "InvalidSignatureException" and "expired" in body["message"]
    connection.close()


# -- binding -----------------------------------------------------------------------------------

def _args(**overrides):
    parser = argparse.ArgumentParser()
    server_command.add_arguments(parser)
    args = parser.parse_args(["model"])
    for name, value in overrides.items():
        setattr(args, name, value)
    return args


def test_non_loopback_host_without_credentials_is_refused_unless_no_auth(tmp_path):
    for host in ("0.0.0.0", "192.168.1.20", "::", "myhost.example"):
        with pytest.raises(UserError, match="--credentials"):
            server_command.check_arguments(_args(host=host))
    server_command.check_arguments(_args(host="0.0.0.0", no_auth=True))
    server_command.check_arguments(_args(host="0.0.0.0", credentials="creds.ini"))
    for host in ("127.0.0.1", "127.0.0.5", "::1", "localhost"):
        server_command.check_arguments(_args(host=host))
    with pytest.raises(UserError, match="together"):
        server_command.check_arguments(_args(tls_cert="cert.pem"))

    model = write_model_dir(tmp_path / "m" / "export")
    done = subprocess.run([str(EDGELABELS), "serve", str(model), "--host", "0.0.0.0"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("edgelabels: error: --host 0.0.0.0") and "Traceback" not in done.stderr


def test_a_bad_model_folder_or_arn_is_one_line_and_exit_2(tmp_path):
    port = str(free_port())  # not the default 8080, which anything else on the machine may hold
    done = subprocess.run([str(EDGELABELS), "serve", str(tmp_path / "nothing"), "--port", port], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "nothing" in done.stderr
    model = write_model_dir(tmp_path / "m" / "export")
    done = subprocess.run([str(EDGELABELS), "serve", str(model), "--project-version-arn", "arn:aws:s3:::bucket",
                           "--port", port], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--project-version-arn" in done.stderr


def test_derived_arn_is_stable_and_valid(tmp_path):
    from edgelabels.serve.server import VERSION_ARN

    model = write_model_dir(tmp_path / "my run" / "export")
    first, created = server_command.derived_arn(model, model / "model.onnx", "eu-west-1")
    assert VERSION_ARN.match(first), first
    assert first.startswith("arn:aws:rekognition:eu-west-1:000000000000:project/my-run/version/my-run.")
    assert server_command.derived_arn(model, model / "model.onnx", "eu-west-1") == (first, created)


def test_a_taken_port_is_one_line_and_exit_2(tmp_path):
    import socket

    model = write_model_dir(tmp_path / "m" / "export")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([str(EDGELABELS), "serve", str(model), "--port", str(port)],
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and f"--port {port}" in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""  # refused before the start-up banner
