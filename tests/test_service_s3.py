"""Where the local service reads and writes S3 (issue 27, point 2): boto3's client against a real S3 server on
loopback (moto's ThreadedMotoServer), and the --s3-root folder that stands in for S3. No client is stubbed.
"""

from __future__ import annotations

import json
import urllib.request

import pytest

boto3 = pytest.importorskip("boto3")  # the [aws] extra; moto[server] comes with the [dev] one
pytest.importorskip("moto.server")

from botocore.config import Config  # noqa: E402
from botocore.loaders import Loader  # noqa: E402
from helpers.server import free_port  # noqa: E402
from helpers.service import S3Server  # noqa: E402

from edgelabels.errors import UserError  # noqa: E402
from edgelabels.service.s3 import S3Error, S3Objects, parse_s3_uri  # noqa: E402

BUCKET = "edgelabels-test"
ODD_KEY = "datasets/bees 2024/ünïcødé 蜂 image (1).jpg"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real S3 protocol server on a free loopback port; the standard AWS configuration points at it."""
    s3_server = S3Server(tmp_path_factory.mktemp("aws"))
    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_DEFAULT_PROFILE"):
            mp.delenv(name, raising=False)
        for name, value in s3_server.env.items():  # no profile of the machine's user leaks in
            mp.setenv(name, value)
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        yield s3_server.endpoint
    s3_server.stop()


@pytest.fixture
def s3(server):
    return S3Objects.from_environment()


def test_client_comes_from_the_standard_configuration(s3, server):
    assert s3.client.meta.endpoint_url == server  # AWS_ENDPOINT_URL_S3, read by boto3 itself
    assert s3.client.meta.region_name == "us-east-1"


def test_bytes_round_trip_with_spaces_and_unicode_in_the_key(s3):
    uri = f"s3://{BUCKET}/{ODD_KEY}"
    assert not s3.exists(uri)
    s3.write_bytes(uri, b"\xff\xd8 not really a jpeg")
    assert s3.exists(uri)
    assert s3.read_bytes(uri) == b"\xff\xd8 not really a jpeg"
    # the key is stored literally: boto3 itself lists the same name
    listed = boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="datasets/bees 2024/")["Contents"]
    assert [o["Key"] for o in listed] == [ODD_KEY]


def test_json_round_trip(s3):
    uri = f"s3://{BUCKET}/output/evaluation/summary.json"
    summary = {"Version": 1, "EvaluationDetails": {"F1Score": 0.93, "Label": "蜂"}}
    s3.write_json(uri, summary)
    assert json.loads(s3.read_bytes(uri)) == summary
    head = boto3.client("s3").head_object(Bucket=BUCKET, Key="output/evaluation/summary.json")
    assert head["ContentType"] == "application/json"


def test_manifest_of_three_lines_reads_back_as_three_json_lines(s3):
    entries = [{"source-ref": f"s3://{BUCKET}/images/{name}", "bee": 1, "bee-metadata": {"class-name": name}}
               for name in ("a b.jpg", "ünï.jpg", "line\u2028sep.jpg")]
    body = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries).encode("utf-8")
    uri = f"s3://{BUCKET}/manifests/train.manifest"
    s3.write_bytes(uri, body)
    lines = s3.read_lines(uri)
    assert len(lines) == 3  # U+2028 inside a JSON string does not split a line
    assert [json.loads(line) for line in lines] == entries


def test_manifest_with_crlf_bom_and_blank_line_keeps_line_numbers(s3):
    uri = f"s3://{BUCKET}/manifests/windows.manifest"
    s3.write_bytes(uri, b'\xef\xbb\xbf{"a": 1}\r\n\r\n{"b": 2}\r\n')
    assert s3.read_lines(uri) == ['{"a": 1}', "", '{"b": 2}']


def test_manifest_that_is_not_utf8_is_refused_naming_the_uri(s3):
    uri = f"s3://{BUCKET}/manifests/latin1.manifest"
    s3.write_bytes(uri, '{"label": "café"}\n'.encode("latin-1"))
    with pytest.raises(S3Error, match="latin1.manifest: NotUtf8") as caught:
        s3.read_lines(uri)
    assert caught.value.code == "InvalidParameterException"


def test_object_over_max_bytes_is_refused_before_reading(s3):
    uri = f"s3://{BUCKET}/big.bin"
    s3.write_bytes(uri, b"x" * 1000)
    assert s3.read_bytes(uri, max_bytes=1000) == b"x" * 1000
    with pytest.raises(S3Error, match="TooLarge") as caught:
        s3.read_bytes(uri, max_bytes=999)
    assert caught.value.problem == "TooLarge"


def test_local_copy_is_fetched_once_into_the_cache(s3, tmp_path):
    uri = f"s3://{BUCKET}/images/{ODD_KEY}.PNG"
    s3.write_bytes(uri, b"first")
    path = s3.local_copy(uri, tmp_path / "cache")
    assert path.read_bytes() == b"first" and path.suffix == ".png"
    assert path.is_relative_to(tmp_path / "cache")
    s3.write_bytes(uri, b"second")  # the cache is not asked again
    assert s3.local_copy(uri, tmp_path / "cache") == path
    assert path.read_bytes() == b"first"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left beside it


def test_local_copy_of_a_missing_key_leaves_nothing_in_the_cache(s3, tmp_path):
    with pytest.raises(S3Error, match="NoSuchKey"):
        s3.local_copy(f"s3://{BUCKET}/images/missing.jpg", tmp_path / "cache")
    assert not any(p.is_file() for p in (tmp_path / "cache").rglob("*"))


def rekognition_errors() -> set[str]:
    model = Loader().load_service_model("rekognition", "service-2")
    return {name for name, shape in model["shapes"].items() if shape.get("exception")}


def test_missing_key_names_the_uri_and_maps_to_invalid_s3_object(s3):
    uri = f"s3://{BUCKET}/nothing/here.jpg"
    with pytest.raises(S3Error) as caught:
        s3.read_bytes(uri)
    error = caught.value
    assert (error.problem, error.code, error.uri) == ("NoSuchKey", "InvalidS3ObjectException", uri)
    assert str(error).startswith(f"{uri}: NoSuchKey") and "\n" not in str(error)
    assert error.code in rekognition_errors()
    assert isinstance(error, UserError)


def test_missing_bucket_is_an_error_for_every_operation(s3, tmp_path):
    uri = "s3://no-such-bucket-here/a.jpg"
    calls = [lambda: s3.read_bytes(uri), lambda: s3.read_lines(uri), lambda: s3.exists(uri),
             lambda: s3.write_bytes(uri, b"x"), lambda: s3.write_json(uri, {}),
             lambda: s3.local_copy(uri, tmp_path)]
    for call in calls:
        with pytest.raises(S3Error, match="no-such-bucket-here/a.jpg: NoSuchBucket") as caught:
            call()
        assert caught.value.code == "InvalidS3ObjectException"


def set_no_auth_allowance(server: str, count: str) -> None:
    """How many more requests moto serves before it checks IAM ('inf': never)."""
    request = urllib.request.Request(f"{server}/moto-api/reset-auth", data=count.encode(), method="POST",
                                     headers={"Content-Type": "text/plain"})
    urllib.request.urlopen(request, timeout=10).close()


def test_access_denied_maps_to_access_denied_exception(server):
    """moto enforces IAM once its no-auth allowance is spent: a user whose policy grants nothing is refused."""
    iam = boto3.client("iam", endpoint_url=server)
    iam.create_user(UserName="nobody")
    keys = iam.create_access_key(UserName="nobody")["AccessKey"]
    boto3.client("s3").put_object(Bucket=BUCKET, Key="private.jpg", Body=b"secret")
    set_no_auth_allowance(server, "0")
    try:
        client = boto3.client("s3", aws_access_key_id=keys["AccessKeyId"],
                              aws_secret_access_key=keys["SecretAccessKey"])
        s3 = S3Objects(client=client)
        uri = f"s3://{BUCKET}/private.jpg"
        for call in (lambda: s3.read_bytes(uri), lambda: s3.write_bytes(uri, b"x")):
            with pytest.raises(S3Error, match="private.jpg: AccessDenied") as caught:
                call()
            assert caught.value.code == "AccessDeniedException" in rekognition_errors()
    finally:
        set_no_auth_allowance(server, "inf")


def test_unreachable_endpoint_names_the_endpoint_and_fails_fast(server, monkeypatch):
    closed = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", closed)
    s3 = S3Objects.from_environment(config=Config(connect_timeout=1, retries={"total_max_attempts": 1}))
    uri = f"s3://{BUCKET}/a.jpg"
    for call in (lambda: s3.read_bytes(uri), lambda: s3.exists(uri), lambda: s3.write_bytes(uri, b"x")):
        with pytest.raises(S3Error, match=f"a.jpg: EndpointUnreachable .*{closed}") as caught:
            call()
        assert caught.value.code == "InvalidS3ObjectException"


def test_no_credentials_maps_to_access_denied(server, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    s3 = S3Objects.from_environment()
    with pytest.raises(S3Error, match="NoCredentials") as caught:
        s3.read_bytes(f"s3://{BUCKET}/a.jpg")
    assert caught.value.code == "AccessDeniedException"


@pytest.mark.parametrize("uri", ["", "s3://", "s3://bucket", "s3://bucket/", "https://bucket.s3.amazonaws.com/k",
                                 "/local/path.jpg", "s3:/bucket/key", "S3://bucket/key", "s3://b/key",
                                 "s3://bad*bucket/key", "s3://bucket/" + "k" * 1025, None])
def test_parse_refuses_anything_but_s3_bucket_key(uri):
    with pytest.raises(S3Error) as caught:
        parse_s3_uri(uri)
    assert caught.value.code == "InvalidParameterException"


def test_parse_keeps_the_key_literally():
    assert parse_s3_uri(f"s3://{BUCKET}/{ODD_KEY}") == (BUCKET, ODD_KEY)
    assert parse_s3_uri("s3://bucket/a%20b+c//d") == ("bucket", "a%20b+c//d")
    assert parse_s3_uri("s3://my.bucket-1/ü") == ("my.bucket-1", "ü")


# -- the --s3-root folder --------------------------------------------------------------------------------


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "root" / BUCKET).mkdir(parents=True)
    return S3Objects.from_environment(s3_root=tmp_path / "root")


def test_s3_root_maps_bucket_and_key_to_a_file(folder, tmp_path):
    uri = f"s3://{BUCKET}/{ODD_KEY}"
    assert not folder.exists(uri)
    folder.write_bytes(uri, b"pixels")
    assert (tmp_path / "root" / BUCKET / ODD_KEY).read_bytes() == b"pixels"
    assert folder.exists(uri) and folder.read_bytes(uri) == b"pixels"
    assert folder.local_copy(uri, tmp_path / "cache") == tmp_path / "root" / BUCKET / ODD_KEY
    folder.write_json(f"s3://{BUCKET}/out/summary.json", {"F1Score": 1.0})
    assert json.loads(folder.read_bytes(f"s3://{BUCKET}/out/summary.json")) == {"F1Score": 1.0}
    folder.write_bytes(f"s3://{BUCKET}/m.manifest", b'{"a": 1}\n{"b": 2}\n{"c": 3}\n')
    lines = folder.read_lines(f"s3://{BUCKET}/m.manifest")
    assert [json.loads(line) for line in lines] == [{"a": 1}, {"b": 2}, {"c": 3}]


def test_s3_root_errors_match_the_servers(folder, tmp_path):
    with pytest.raises(S3Error, match="NoSuchBucket") as caught:
        folder.read_bytes("s3://other-bucket/a.jpg")
    assert caught.value.code == "InvalidS3ObjectException"
    with pytest.raises(S3Error, match="NoSuchBucket"):
        folder.write_bytes("s3://other-bucket/a.jpg", b"x")
    with pytest.raises(S3Error, match="NoSuchKey"):
        folder.read_bytes(f"s3://{BUCKET}/missing.jpg")
    (tmp_path / "root" / BUCKET / "sub").mkdir()
    with pytest.raises(S3Error, match="NoSuchKey"):  # a folder is no object
        folder.read_bytes(f"s3://{BUCKET}/sub")


def test_s3_root_keys_cannot_leave_their_bucket(folder, tmp_path):
    (tmp_path / "root" / "sibling").mkdir()
    (tmp_path / "root" / "sibling" / "secret.jpg").write_bytes(b"secret")
    (tmp_path / "root" / BUCKET / "link").symlink_to(tmp_path / "root" / "sibling")
    with pytest.raises(S3Error, match="AccessDenied") as caught:
        folder.read_bytes(f"s3://{BUCKET}/link/secret.jpg")
    assert caught.value.code == "AccessDeniedException"
    # '..' in a key is a literal name in S3, never a way up
    assert not folder.exists(f"s3://{BUCKET}/../sibling/secret.jpg")
    with pytest.raises(S3Error, match="NoSuchKey"):
        folder.read_bytes(f"s3://{BUCKET}/../sibling/secret.jpg")
    with pytest.raises(S3Error, match="CannotStore"):
        folder.write_bytes(f"s3://{BUCKET}/a//b.jpg", b"x")


def test_s3_root_must_be_a_folder(tmp_path):
    with pytest.raises(UserError, match="no such folder"):
        S3Objects.from_environment(s3_root=tmp_path / "absent")
