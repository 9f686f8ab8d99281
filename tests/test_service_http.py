"""`edgelabels serve --projects DIR` over HTTP: botocore's model as the request check, Rekognition's error codes,
SigV4, metadata calls never shed, the body cap, a restart on the same DIR.

The model check (service/model.py) is tested in-process against requests botocore itself builds or refuses; the
rest against one real service process (tests/helpers/service.py) with --credentials and only 2 inference slots,
called with boto3 or, for what boto3 would never send, with raw HTTP requests signed by botocore's SigV4.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import threading
import time
from pathlib import Path

import pytest

for needed in ("boto3", "starlette", "uvicorn"):  # [aws], [serve]
    pytest.importorskip(needed)

from botocore.exceptions import ClientError, ParamValidationError  # noqa: E402
from helpers.service import ServiceProcess  # noqa: E402

from edgelabels.cli import main  # noqa: E402
from edgelabels.serve.api_errors import ApiError  # noqa: E402
from edgelabels.service.model import check_request, service_model  # noqa: E402

KEY, SECRET = "AKIASERVICEHTTPTEST1", "service-http-test-secret"
PROJECT = "arn:aws:rekognition:us-east-1:000000000000:project/bees/1700000000000"
DATASET = "arn:aws:rekognition:us-east-1:000000000000:project/bees/dataset/train/1700000000001"
VERSION = "arn:aws:rekognition:us-east-1:000000000000:project/bees/version/v1/1700000000002"


# -- the model check, in-process ------------------------------------------------------------------------------

def botocore_body(operation: str, params: dict) -> dict:
    """The JSON body botocore sends for `params` (after its own validation)."""
    from botocore.model import ServiceModel
    from botocore.serialize import create_serializer
    from botocore.validate import ParamValidator

    model = ServiceModel(service_model(), "rekognition").operation_model(operation)
    report = ParamValidator().validate(params, model.input_shape)
    assert not report.has_errors(), report.generate_report()
    return json.loads(create_serializer("json").serialize_to_request(params, model)["body"] or b"{}")


def botocore_refuses(operation: str, params: dict) -> bool:
    from botocore.model import ServiceModel
    from botocore.validate import ParamValidator

    model = ServiceModel(service_model(), "rekognition").operation_model(operation)
    return ParamValidator().validate(params, model.input_shape).has_errors()


def refusal(operation: str, params: dict) -> ApiError:
    with pytest.raises(ApiError) as caught:
        check_request(operation, params)
    return caught.value


SENT_BY_BOTOCORE = [
    ("CreateProject", {"ProjectName": "bees-2024", "Tags": {"team": "vision", "Clé à molette": "ünï 1"}}),
    ("DescribeProjects", {"ProjectNames": ["bees"], "MaxResults": 100}),
    ("CreateDataset", {"ProjectArn": PROJECT, "DatasetType": "TRAIN", "DatasetSource": {
        "GroundTruthManifest": {"S3Object": {"Bucket": "my-bucket", "Name": "bees/train.manifest"}}}}),
    ("UpdateDatasetEntries", {"DatasetArn": DATASET, "Changes": {"GroundTruth": b'{"source-ref": "s3://b/a.jpg"}'}}),
    ("ListDatasetEntries", {"DatasetArn": DATASET, "ContainsLabels": ["bee"], "Labeled": True, "HasErrors": False,
                            "SourceRefContains": "2024", "MaxResults": 10}),
    ("DistributeDatasetEntries", {"Datasets": [{"Arn": DATASET}, {"Arn": DATASET.replace("train", "test")}]}),
    ("CreateProjectVersion", {"ProjectArn": PROJECT, "VersionName": "v1.0", "OutputConfig": {
        "S3Bucket": "out-bucket", "S3KeyPrefix": "bees/"}, "TestingData": {"AutoCreate": True},
        "VersionDescription": "first (try): bees"}),
    ("DescribeProjectVersions", {"ProjectArn": PROJECT, "VersionNames": ["v1", "v2"]}),
    ("StartProjectVersion", {"ProjectVersionArn": VERSION, "MinInferenceUnits": 1, "MaxInferenceUnits": 2}),
    ("DetectCustomLabels", {"ProjectVersionArn": VERSION, "Image": {"Bytes": b"\xff\xd8\xff" + bytes(500)},
                            "MinConfidence": 55.5, "MaxResults": 3}),
    ("UntagResource", {"ResourceArn": VERSION, "TagKeys": ["team"]}),
]


@pytest.mark.parametrize("operation, params", SENT_BY_BOTOCORE, ids=[case[0] for case in SENT_BY_BOTOCORE])
def test_requests_botocore_sends_pass_the_model_check(operation, params):
    check_request(operation, botocore_body(operation, params))


# (operation, params, the member path the refusal names); botocore refuses each of these before sending.
REFUSED_BY_BOTOCORE = [
    ("CreateProject", {}, "ProjectName is required"),
    ("CreateProject", {"ProjectName": ""}, "ProjectName has 0 characters"),
    ("CreateProject", {"ProjectName": 7}, "ProjectName must be a string"),
    ("DescribeProjects", {"MaxResults": 0}, "MaxResults must be from 1 to 100"),
    ("DescribeProjects", {"MaxResults": "10"}, "MaxResults must be an integer"),
    ("DescribeProjects", {"ProjectNames": "bees"}, "ProjectNames must be a list"),
    ("DescribeProjects", {"ProjectNames": []}, "ProjectNames has 0 items"),
    ("CreateDataset", {"ProjectArn": PROJECT, "DatasetType": "TRAIN", "DatasetSource": {
        "GroundTruthManifest": {"S3Object": {"Bucket": "b", "Name": "m"}}}},
     "DatasetSource.GroundTruthManifest.S3Object.Bucket has 1 characters; at least 3"),
    ("CreateDataset", {"ProjectArn": PROJECT, "DatasetType": "TRAIN", "DatasetSource": {
        "GroundTruthManifest": {"S3Object": "s3://b/m"}}},
     "DatasetSource.GroundTruthManifest.S3Object must be an object"),
    ("CreateDataset", {"DatasetType": "TRAIN"}, "ProjectArn is required"),
    ("ListDatasetEntries", {"DatasetArn": DATASET, "Labeled": "yes"}, "Labeled must be true or false"),
    ("DistributeDatasetEntries", {"Datasets": [{"Arn": DATASET}]}, "Datasets has 1 items; at least 2"),
    ("DistributeDatasetEntries", {"Datasets": [{"Arn": DATASET}, {}]}, "Datasets[1].Arn is required"),
    ("DetectCustomLabels", {"ProjectVersionArn": VERSION, "Image": {"S3Object": {"Bucket": "bkt", "Name": "a.jpg"}},
                            "MinConfidence": "high"},
     "MinConfidence must be a finite number"),
    ("StartProjectVersion", {"ProjectVersionArn": VERSION}, "MinInferenceUnits is required"),
    ("StartProjectVersion", {"ProjectVersionArn": VERSION, "MinInferenceUnits": 0}, "MinInferenceUnits must be from 1"),
    ("TagResource", {"ResourceArn": VERSION, "Tags": {"team": 5}}, "Tags[team] must be a string"),
]


@pytest.mark.parametrize("operation, params, message", REFUSED_BY_BOTOCORE,
                         ids=[case[2] for case in REFUSED_BY_BOTOCORE])
def test_requests_botocore_refuses_are_refused_naming_the_member(operation, params, message):
    assert botocore_refuses(operation, params)  # the premise: boto3 would never send this
    error = refusal(operation, params)
    assert error.code == "InvalidParameterException" and str(error).startswith(message), str(error)


# What botocore leaves to the server (maximums, patterns, enums, Java's int range, base64): refused all the same.
REFUSED_BY_THE_SERVER_ONLY = [
    ("CreateProject", {"ProjectName": "a" * 256}, "ProjectName has 256 characters; at most 255"),
    ("CreateProject", {"ProjectName": "bees 2024"}, "ProjectName 'bees 2024' does not match"),
    ("CreateProject", {"ProjectName": "bees\n"}, "ProjectName 'bees\\n' does not match"),
    ("CreateProject", {"ProjectName": "bees", "Feature": "FACES"}, "Feature 'FACES' is not one of"),
    ("DescribeProjects", {"MaxResults": 101}, "MaxResults must be from 1 to 100"),
    ("DescribeProjects", {"ProjectNames": ["p"] * 11}, "ProjectNames has 11 items; at most 10"),
    ("DeleteProject", {"ProjectArn": "arn:aws:rekognition:us-east-1:000000000000:project/bees"},
     "ProjectArn 'arn:aws:rekognition:us-east-1:000000000000:project/bees' does not match"),
    ("CreateDataset", {"ProjectArn": PROJECT, "DatasetType": "VALIDATION"}, "DatasetType 'VALIDATION' is not one of"),
    ("DetectCustomLabels", {"ProjectVersionArn": VERSION, "Image": {"Bytes": "QUFB"}, "MaxResults": 2 ** 31},
     "MaxResults must be an integer from -2147483648 to 2147483647"),
    ("DetectCustomLabels", {"ProjectVersionArn": VERSION, "Image": {"Bytes": "not base64!"}},
     "Image.Bytes must be a base64 string"),
    ("DetectCustomLabels", {"ProjectVersionArn": VERSION, "Image": {"Bytes": "QUFB"}, "MinConfidence": float("nan")},
     "MinConfidence must be a finite number"),
    ("DetectCustomLabels", {"ProjectVersionArn": VERSION, "Image": {"Bytes": "QUFB"}, "MinConfidence": True},
     "MinConfidence must be a finite number"),
    ("UpdateDatasetEntries", {"DatasetArn": DATASET, "Changes": {"GroundTruth": ""}},
     "Changes.GroundTruth holds 0 bytes; at least 1"),
    ("TagResource", {"ResourceArn": VERSION, "Tags": {"aws:owner": "me"}}, "Tags key 'aws:owner' does not match"),
    ("TagResource", {"ResourceArn": VERSION, "Tags": {"team": "a\tb"}}, "Tags[team] 'a\\tb' does not match"),
]


@pytest.mark.parametrize("operation, params, message", REFUSED_BY_THE_SERVER_ONLY,
                         ids=[case[2] for case in REFUSED_BY_THE_SERVER_ONLY])
def test_limits_botocore_leaves_to_the_server_are_refused_naming_the_member(operation, params, message):
    error = refusal(operation, params)
    assert error.code == "InvalidParameterException" and str(error).startswith(message), str(error)


def test_an_image_past_image_blob_max_is_image_too_large_and_a_blob_at_the_max_passes():
    most = service_model()["shapes"]["ImageBlob"]["max"]
    at_most = base64.b64encode(bytes(most)).decode()
    check_request("DetectCustomLabels", {"ProjectVersionArn": VERSION, "Image": {"Bytes": at_most}})
    over = base64.b64encode(bytes(most + 1)).decode()
    assert refusal("DetectCustomLabels", {"ProjectVersionArn": VERSION, "Image": {"Bytes": over}}).code \
        == "ImageTooLargeException"


def test_unknown_members_are_ignored_and_null_counts_as_absent():
    check_request("CreateProject", {"ProjectName": "bees", "FutureMember": {"anything": [1]}, "Tags": None})
    assert str(refusal("CreateProject", {"ProjectName": None})) == "ProjectName is required"


def test_an_operation_rekognition_lacks_is_unknown_and_a_body_must_be_an_object():
    assert refusal("CreateBananas", {}).code == "UnknownOperationException"
    assert refusal("DescribeProjects", []).code == "InvalidParameterException"


# -- the command line -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, says", [
    (["serve"], "give MODEL_DIR"),
    (["serve", "some-export", "--projects", "dir"], "serve one or the other"),
    (["serve", "some-export", "--budget", "10m"], "--budget: only with --projects"),
    (["serve", "--projects", "dir", "--workers", "2"], "--workers 2"),
    (["serve", "--projects", "dir", "--set", "train.epochz=1"], "did you mean train.epochs"),
    (["serve", "--projects", "dir", "--budget", "10"], "--budget '10'"),
    (["serve", "--projects", "dir", "--max-jobs", "0"], "--max-jobs 0"),
])
def test_serve_arguments_that_cannot_work_are_one_line_and_exit_2(argv, says, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and says in error, error
    assert not (tmp_path / "dir").exists()  # nothing created for a refused start


# -- over HTTP ------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def service(tmp_path_factory):
    folder = tmp_path_factory.mktemp("service-http")
    (folder / "s3").mkdir()
    credentials = folder / "credentials"
    credentials.write_text(f"[default]\naws_access_key_id = {KEY}\naws_secret_access_key = {SECRET}\n")
    options = ("--credentials", str(credentials), "--max-concurrency", "2", "--s3-root", str(folder / "s3"),
               "--no-access-log")
    process = ServiceProcess(folder / "dir", *options)
    process.options = options
    yield process
    process.stop()


def client(service, **config):
    return service.client(KEY, SECRET, **config)


def error_of(call) -> tuple[int, str, str]:
    with pytest.raises(ClientError) as caught:
        call()
    response = caught.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"], response["Error"]["Message"]


def signed_post(service, target: str | None, body: bytes, secret: str = SECRET):
    """One request as boto3 would never send it, signed as botocore signs -> (status, JSON answer)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    headers = {"Content-Type": "application/x-amz-json-1.1"}
    if target:
        headers["X-Amz-Target"] = f"RekognitionService.{target}"
    request = AWSRequest("POST", service.url + "/", data=body, headers=headers)
    SigV4Auth(Credentials(KEY, secret), "rekognition", "us-east-1").add_auth(request)
    connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=120)
    try:
        connection.request("POST", "/", body=body, headers=dict(request.headers))
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read())
    finally:
        connection.close()


def assert_still_serving(service):
    assert "ProjectDescriptions" in client(service).describe_projects()
    assert service.alive()


def test_create_describe_delete_project_round_trip_through_boto3(service):
    rekognition = client(service)
    arn = rekognition.create_project(ProjectName="round-trip")["ProjectArn"]
    assert arn.startswith("arn:aws:rekognition:us-east-1:") and ":project/round-trip/" in arn
    described, = rekognition.describe_projects(ProjectNames=["round-trip"])["ProjectDescriptions"]
    assert (described["ProjectArn"], described["Status"]) == (arn, "CREATED")
    assert described["CreationTimestamp"].year >= 2024  # epoch seconds, parsed by botocore into a datetime
    assert rekognition.delete_project(ProjectArn=arn)["Status"] == "DELETING"
    assert rekognition.describe_projects(ProjectNames=["round-trip"])["ProjectDescriptions"] == []


def test_an_operation_rekognition_lacks_or_this_service_does_not_serve_is_unknown(service):
    for target in ("CreateBananas", "DetectFaces", None):
        status, answer = signed_post(service, target, b"{}")
        assert (status, answer["__type"]) == (400, "UnknownOperationException"), answer
    assert_still_serving(service)


RAW_INVALID = [
    ("CreateProject", {"ProjectName": "has space"}, "ProjectName"),
    ("DescribeProjects", {"MaxResults": 1000}, "MaxResults"),
    ("CreateDataset", {"ProjectArn": PROJECT, "DatasetType": "TRAIN", "DatasetSource": {
        "GroundTruthManifest": {"S3Object": {"Bucket": "", "Name": "m"}}}},
     "DatasetSource.GroundTruthManifest.S3Object.Bucket"),
    ("DescribeProjectVersions", {"ProjectArn": PROJECT, "VersionNames": ["v"] * 11}, "VersionNames"),
    ("StartProjectVersion", {"ProjectVersionArn": VERSION, "MinInferenceUnits": 2 ** 40}, "MinInferenceUnits"),
]


@pytest.mark.parametrize("operation, params, member", RAW_INVALID, ids=[case[2] for case in RAW_INVALID])
def test_requests_botocore_would_not_send_are_invalid_parameter_naming_the_member(service, operation, params, member):
    status, answer = signed_post(service, operation, json.dumps(params).encode())
    assert (status, answer["__type"]) == (400, "InvalidParameterException"), answer
    assert answer["message"].startswith(member + " "), answer


def test_malformed_json_and_a_body_that_is_no_object_are_client_errors(service):
    status, answer = signed_post(service, "DescribeProjects", b'{"MaxResults": ')
    assert (status, answer["__type"]) == (400, "SerializationException")
    status, answer = signed_post(service, "DescribeProjects", b"[1, 2]")
    assert (status, answer["__type"]) == (400, "InvalidParameterException")
    assert_still_serving(service)


def test_operation_errors_are_answered_with_their_rekognition_codes(service):
    rekognition = client(service)
    arn = rekognition.create_project(ProjectName="twice")["ProjectArn"]
    try:
        assert error_of(lambda: rekognition.create_project(ProjectName="twice"))[:2] \
            == (400, "ResourceInUseException")  # the store's AlreadyExists, through its `code`
        assert error_of(lambda: rekognition.describe_projects(NextToken="not-a-token-we-gave"))[:2] \
            == (400, "InvalidPaginationTokenException")
        # A ResourceArn that botocore's model lets through but that names no Rekognition resource: ArnError.
        assert error_of(lambda: rekognition.list_tags_for_resource(ResourceArn="arn:aws:s3:::some-bucket-name"))[:2] \
            == (400, "InvalidParameterException")
    finally:
        rekognition.delete_project(ProjectArn=arn)


def test_unknown_arns_are_resource_not_found(service):
    rekognition = client(service)
    for call in (lambda: rekognition.delete_project(ProjectArn=PROJECT),
                 lambda: rekognition.list_tags_for_resource(ResourceArn=VERSION),
                 lambda: rekognition.describe_project_versions(ProjectArn=PROJECT)):
        status, code, message = error_of(call)
        assert (status, code) == (400, "ResourceNotFoundException") and message
    assert_still_serving(service)


def all_at_once(call, count: int = 100) -> list:
    """`count` threads make `call()` at the same moment -> the answers' HTTP statuses, or the errors' reprs."""
    start, outcomes = threading.Barrier(count), []

    def one():
        start.wait()
        try:
            outcomes.append(call()["ResponseMetadata"]["HTTPStatusCode"])
        except Exception as exc:  # noqa: BLE001 (collected and shown)
            outcomes.append(repr(exc))

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return outcomes


def test_a_hundred_concurrent_describe_projects_are_all_answered_past_the_inference_slots(service):
    # --max-concurrency 2: were metadata calls given the inference slots, 98 of these would be shed.
    rekognition = client(service, max_pool_connections=100, retries={"total_max_attempts": 1})
    assert all_at_once(rekognition.describe_projects) == [200] * 100


def test_update_dataset_entries_blobs_up_to_botocore_max_pass_and_larger_ones_are_invalid(service):
    most = service_model()["shapes"]["GroundTruthBlob"]["max"]

    def update(size: int):
        blob = base64.b64encode(b"{" + b" " * (size - 2) + b"}").decode()
        return signed_post(service, "UpdateDatasetEntries",
                           json.dumps({"DatasetArn": DATASET, "Changes": {"GroundTruth": blob}}).encode())

    # At the maximum the request reaches the operation, which finds no such dataset.
    status, answer = update(most)
    assert (status, answer["__type"]) == (400, "ResourceNotFoundException"), answer
    status, answer = update(most + 1)  # the body fits under the cap; the model refuses the blob
    assert (status, answer["__type"]) == (400, "InvalidParameterException")
    assert answer["message"].startswith("Changes.GroundTruth holds"), answer
    status, answer = update(2 * most)  # the body itself is past the cap: refused while it is received
    assert (status, answer["__type"]) == (400, "InvalidParameterException"), answer
    assert_still_serving(service)


def test_requests_must_be_signed_with_a_listed_key(service):
    for key, secret in ((KEY, "wrong-secret"), ("AKIAUNKNOWNKEY000000", SECRET)):
        code = error_of(lambda: service.client(key, secret, retries={"total_max_attempts": 1}).describe_projects())[1]
        assert code in ("InvalidSignatureException", "UnrecognizedClientException")
    status, answer = signed_post(service, "DescribeProjects", b"{}", secret="wrong-secret")
    assert (status, answer["__type"]) == (400, "InvalidSignatureException")
    connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)
    connection.request("POST", "/", body=b"{}", headers={"X-Amz-Target": "RekognitionService.DescribeProjects"})
    answer = connection.getresponse()
    assert answer.status == 400 and json.loads(answer.read())["__type"] != "InternalServerError"
    connection.close()
    assert_still_serving(service)


def test_health_answers_without_a_signature(service):
    import urllib.request

    with urllib.request.urlopen(service.url + "/health", timeout=10) as answer:
        assert answer.status == 200 and json.loads(answer.read())["status"] == "ok"


def test_a_second_service_on_a_served_directory_is_one_line_and_exit_2(service, capsys):
    from helpers.server import free_port

    assert main(["serve", "--projects", str(service.directory), "--port", str(free_port())]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "already served by edgelabels serve (pid" in error, error
    assert_still_serving(service)


def test_a_restart_on_the_same_directory_keeps_the_projects(service):
    # Last in this module: it stops the module's service and checks a new one on the same DIR.
    arn = client(service).create_project(ProjectName="survivor")["ProjectArn"]
    assert service.stop() == 0  # SIGTERM: a clean stop
    again = ServiceProcess(service.directory, *service.options)
    try:
        described = client(again).describe_projects(ProjectNames=["survivor"])["ProjectDescriptions"]
        assert [p["ProjectArn"] for p in described] == [arn]
    finally:
        again.stop()


# -- a clean stop during a training ---------------------------------------------------------------------------

def training_children(directory) -> list[int]:
    """Process ids of pipeline children training under `directory` (read from /proc: Linux)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if entry.name.isdigit() and "edgelabels.pipeline" in command and str(directory) in command:
            found.append(int(entry.name))
    return found


def wait_for(condition, timeout: float, what: str, service=None):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} within {timeout} s" + (f":\n{service.output()[-3000:]}" if service else ""))
        time.sleep(0.1)
    return value


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc"), reason="finds the training child through /proc")
def test_sigterm_during_a_training_stops_cleanly_and_the_next_start_resumes_the_job(tmp_path):
    from helpers.datasets import make_stripes_dataset

    from edgelabels.service.store import Store

    bucket = tmp_path / "s3" / "data"
    images = make_stripes_dataset(bucket / "stripes", per_label=12, size=40)
    (tmp_path / "s3" / "out").mkdir()
    lines = [json.dumps({"source-ref": f"s3://data/{path.relative_to(bucket)}", "stripes": 0,
                         "stripes-metadata": {"class-name": path.parent.name, "confidence": 1,
                                              "type": "groundtruth/image-classification", "human-annotated": "yes",
                                              "job-name": "labeling-job/stripes",
                                              "creation-date": "2026-12-06T00:00:00.000000"}})
             for path in sorted(images.rglob("*.png"))]
    (bucket / "train.manifest").write_text("\n".join(lines) + "\n")
    options = ("--s3-root", str(tmp_path / "s3"), "--budget", "none", "--no-access-log",
               "--set", "model.backbone=tinycnn", "--set", "model.weights=none", "--set", "data.image_size=32",
               "--set", "train.epochs=50", "--set", "train.fine_tune_epochs=0", "--set", "train.workers=1")
    first = ServiceProcess(tmp_path / "DIR", *options)
    try:
        rekognition = first.client()
        project = rekognition.create_project(ProjectName="stopped")["ProjectArn"]
        version = rekognition.create_project_version(
            ProjectArn=project, VersionName="v1", OutputConfig={"S3Bucket": "out", "S3KeyPrefix": "v1/"},
            TrainingData={"Assets": [{"GroundTruthManifest": {"S3Object": {"Bucket": "data",
                                                                          "Name": "train.manifest"}}}]},
            TestingData={"AutoCreate": True})["ProjectVersionArn"]
        child, = wait_for(lambda: training_children(first.directory), 120, "training child", first)
        # During the training, a hundred pollers at once are all answered (no retries: none shed).
        pollers = first.client(max_pool_connections=100, retries={"total_max_attempts": 1})
        assert all_at_once(lambda: pollers.describe_project_versions(ProjectArn=project)) == [200] * 100
        assert training_children(first.directory) == [child]  # still training while they were answered
    finally:
        code = first.stop()
    assert code == 0, first.output()[-3000:]
    # Gone when the service has ended: the trainer killed it on the way out (an orphan would still be there).
    wait_for(lambda: not training_children(first.directory), 0.3, "end of the training child")
    with Store(first.directory) as store:
        assert store.version(version)["status"] == "TRAINING_IN_PROGRESS"
        assert [job["state"] for job in store.jobs()] == ["running"]  # left to resume, neither failed nor done

    second = ServiceProcess(tmp_path / "DIR", *options)
    try:
        resumed, = wait_for(lambda: training_children(second.directory), 120, "resumed training child", second)
        assert resumed != child
    finally:
        assert second.stop() == 0
