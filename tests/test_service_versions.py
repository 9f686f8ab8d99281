"""Project versions through boto3's own Rekognition client (service/versions.py): CreateProjectVersion freezes and
queues, DescribeProjectVersions in botocore's shapes (its waiters work unchanged), Start/Stop/Delete and their
state errors, DetectCustomLabels equal to `edgelabels predict`'s answer, and recover() after a restart.

The client is boto3's, whole (request validation and serialisation, response parsing, waiters); only its HTTP
send is answered in-process by the operations (botocore's `before-send` event), so these tests check the
operations against botocore's model without the HTTP layer (tests of service/app.py do that).
Tests that need a trained version share one per module (tinycnn, 32 px, one epoch) and are marked slow.
"""

from __future__ import annotations

import json

import pytest
from helpers.service_ops import COLOURS, make_context, manifest_line, wait_for_status, write_bucket

boto3 = pytest.importorskip("boto3")

OUTPUT = {"S3Bucket": "results", "S3KeyPrefix": "out"}


class _Body:
    def __init__(self, data: bytes):
        self.data = data

    def stream(self, **kwargs):
        yield self.data


def rekognition(ctx):
    """boto3's Rekognition client whose requests the service's operations answer in this process."""
    from botocore.awsrequest import AWSResponse

    from edgelabels.service.versions import OPERATIONS

    client = boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test",
                                   region_name="us-east-1").client("rekognition", endpoint_url="http://service.test")

    def send(request, **kwargs):
        operation = request.headers["X-Amz-Target"].decode().split(".")[-1]
        try:
            body, status = OPERATIONS[operation](ctx, json.loads(request.body or b"{}")), 200
        except Exception as exc:  # noqa: BLE001 - the HTTP layer's rule: `code`, else an ARN error
            body, status = {"__type": getattr(exc, "code", "InvalidParameterException"), "message": str(exc)}, 400
        headers = {"x-amzn-RequestId": "test", "Content-Type": "application/x-amz-json-1.1"}
        return AWSResponse(request.url, status, headers, _Body(json.dumps(body).encode()))

    client.meta.events.register("before-send.rekognition", send)
    return client


def _code(excinfo) -> str:
    return excinfo.value.response["Error"]["Code"]


def _assets(key: str) -> dict:
    return {"Assets": [{"GroundTruthManifest": {"S3Object": {"Bucket": "data", "Name": key}}}]}


@pytest.fixture()
def ctx(tmp_path):
    context = make_context(tmp_path)
    write_bucket(context.s3.root, "data")
    yield context
    context.close()


def _project_with_datasets(ctx, name="pets", test=True, status="CREATE_COMPLETE"):
    project = ctx.store.create_project(name, status="CREATED")["arn"]
    for kind in ("train", "test")[:2 if test else 1]:
        dataset = ctx.store.create_dataset(project, kind)["arn"]
        lines = (ctx.s3.root / "data" / f"{kind}.manifest").read_text().splitlines()
        ctx.store.put_entries(dataset, [(line, []) for line in lines])
        if status != "CREATE_IN_PROGRESS":
            ctx.store.set_dataset_status(dataset, status)
    return project


# ---------------------------------------------------------------- CreateProjectVersion


def test_a_version_from_the_projects_datasets_freezes_their_entries_and_queues_its_job(ctx):
    from edgelabels.service.versions import manifest_path

    project = _project_with_datasets(ctx)
    client = rekognition(ctx)
    arn = client.create_project_version(ProjectArn=project, VersionName="v1", OutputConfig=OUTPUT,
                                        Tags={"team": "vision"})["ProjectVersionArn"]
    assert arn.split("/")[1] == "pets" and arn.split("/")[3] == "v1"
    assert [job["version_arn"] for job in ctx.store.jobs("queued")] == [arn]
    frozen = manifest_path(ctx.version_dir(arn), "train").read_text()
    train_dataset = [d for d in ctx.store.datasets(project) if d["type"] == "train"][0]["arn"]
    ctx.store.put_entries(train_dataset, [(manifest_line("data", "train/new.png", "red"), [])])
    assert manifest_path(ctx.version_dir(arn), "train").read_text() == frozen  # later edits change nothing
    assert len(frozen.splitlines()) == 2 * 12 + 1  # the dataset's lines (the missing image is found at training)
    assert ctx.store.tags(arn) == {"team": "vision"}


def test_a_taken_version_name_is_refused_as_in_use(ctx):
    project = _project_with_datasets(ctx)
    client = rekognition(ctx)
    client.create_project_version(ProjectArn=project, VersionName="v1", OutputConfig=OUTPUT)
    with pytest.raises(client.exceptions.ResourceInUseException):
        client.create_project_version(ProjectArn=project, VersionName="v1", OutputConfig=OUTPUT)


def test_a_project_without_a_test_dataset_cannot_train(ctx):
    client = rekognition(ctx)
    project = _project_with_datasets(ctx, test=False)
    with pytest.raises(client.exceptions.InvalidParameterException, match="no TEST dataset"):
        client.create_project_version(ProjectArn=project, VersionName="v1", OutputConfig=OUTPUT)


def test_a_dataset_still_being_created_is_in_use(ctx):
    client = rekognition(ctx)
    project = _project_with_datasets(ctx, status="CREATE_IN_PROGRESS")
    with pytest.raises(client.exceptions.ResourceInUseException, match="CREATE_IN_PROGRESS"):
        client.create_project_version(ProjectArn=project, VersionName="v1", OutputConfig=OUTPUT)


def test_a_failed_dataset_is_refused_with_what_to_do(ctx):
    client = rekognition(ctx)
    project = _project_with_datasets(ctx, status="CREATE_FAILED")
    with pytest.raises(client.exceptions.InvalidParameterException, match="CREATE_FAILED.*fix it"):
        client.create_project_version(ProjectArn=project, VersionName="v1", OutputConfig=OUTPUT)


def test_training_data_needs_testing_data_and_a_project_without_datasets(ctx):
    client = rekognition(ctx)
    empty = ctx.store.create_project("empty", status="CREATED")["arn"]
    with pytest.raises(client.exceptions.InvalidParameterException, match="go together"):
        client.create_project_version(ProjectArn=empty, VersionName="v1", OutputConfig=OUTPUT,
                                      TrainingData=_assets("train.manifest"))
    project = _project_with_datasets(ctx)
    with pytest.raises(client.exceptions.InvalidParameterException, match="has datasets"):
        client.create_project_version(ProjectArn=project, VersionName="v1", OutputConfig=OUTPUT,
                                      TrainingData=_assets("train.manifest"), TestingData=_assets("test.manifest"))


def test_an_unknown_project_or_manifest_is_answered_with_rekognitions_codes(ctx):
    client = rekognition(ctx)
    gone = "arn:aws:rekognition:us-east-1:000000000000:project/nothing/1700000000000"
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.create_project_version(ProjectArn=gone, VersionName="v1", OutputConfig=OUTPUT)
    project = ctx.store.create_project("p", status="CREATED")["arn"]
    with pytest.raises(client.exceptions.InvalidParameterException, match="S3Bucket"):
        client.create_project_version(ProjectArn=project, VersionName="v1", OutputConfig={"S3KeyPrefix": "out"},
                                      TrainingData=_assets("train.manifest"), TestingData={"AutoCreate": True})
    with pytest.raises(client.exceptions.InvalidS3ObjectException, match="NoSuchKey"):
        client.create_project_version(ProjectArn=project, VersionName="v1", OutputConfig=OUTPUT,
                                      TrainingData=_assets("absent.manifest"), TestingData={"AutoCreate": True})
    assert ctx.store.versions(project)[0] == []  # nothing half-created


def test_auto_create_tests_on_20_percent_of_the_training_entries(ctx):
    from edgelabels.service.versions import manifest_path, validation_path

    client = rekognition(ctx)
    project = ctx.store.create_project("p", status="CREATED")["arn"]
    arn = client.create_project_version(ProjectArn=project, VersionName="v1", OutputConfig=OUTPUT,
                                        TrainingData=_assets("train.manifest"),
                                        TestingData={"AutoCreate": True})["ProjectVersionArn"]
    folder = ctx.version_dir(arn)
    train, test = (manifest_path(folder, side).read_text().splitlines() for side in ("train", "test"))
    refs = lambda lines: {json.loads(line)["source-ref"] for line in lines}  # noqa: E731
    assert len(test) == 5 and len(train) + len(test) == 25 and not refs(train) & refs(test)  # 20% of 25 entries
    assert {json.loads(line)["colour-metadata"]["class-name"] for line in test} == set(COLOURS)
    assert len(validation_path(folder, "train").read_text().splitlines()) == 25 - len(test)
    description = client.describe_project_versions(ProjectArn=project)["ProjectVersionDescriptions"][0]
    assert description["TestingDataResult"]["Input"] == {"AutoCreate": True}
    assert description["TrainingDataResult"]["Input"] == _assets("train.manifest")


def test_manifest_lines_with_errors_are_kept_out_of_the_training_with_their_errors(ctx):
    from edgelabels.service.versions import manifest_path, validation_path

    (ctx.s3.root / "data" / "odd.manifest").write_text(
        (ctx.s3.root / "data" / "train.manifest").read_text() + "not json\n")
    client = rekognition(ctx)
    project = ctx.store.create_project("p", status="CREATED")["arn"]
    arn = client.create_project_version(ProjectArn=project, VersionName="v1", OutputConfig=OUTPUT,
                                        TrainingData=_assets("odd.manifest"),
                                        TestingData=_assets("test.manifest"))["ProjectVersionArn"]
    folder = ctx.version_dir(arn)
    assert len(manifest_path(folder, "train").read_text().splitlines()) == 25
    last = json.loads(validation_path(folder, "train").read_text().splitlines()[-1])
    assert [error["code"] for error in last["errors"]] == ["ERROR_INVALID_JSON_LINE"]


# ---------------------------------------------------------------- DescribeProjectVersions and wrong states


def _members(shape) -> set:
    return set(shape.members)


def _check_shape(value, shape, where="") -> None:
    """Every member of the answer is one of its botocore shape's (recursively)."""
    if shape.type_name == "structure":
        unknown = set(value) - _members(shape)
        assert not unknown, f"{where}: {unknown} not in botocore's {shape.name}"
        for key, item in value.items():
            _check_shape(item, shape.members[key], f"{where}.{key}")
    elif shape.type_name == "list":
        for i, item in enumerate(value):
            _check_shape(item, shape.member, f"{where}[{i}]")


def test_a_version_in_training_is_described_in_botocores_shape_and_refuses_start_stop_delete(ctx):
    client = rekognition(ctx)
    project = _project_with_datasets(ctx)
    arn = client.create_project_version(ProjectArn=project, VersionName="v1", OutputConfig=OUTPUT,
                                        VersionDescription="first try")["ProjectVersionArn"]
    answer = client.describe_project_versions(ProjectArn=project)
    shape = client.meta.service_model.operation_model("DescribeProjectVersions").output_shape
    answer.pop("ResponseMetadata")
    _check_shape(answer, shape)
    description, = answer["ProjectVersionDescriptions"]
    assert description["Status"] == "TRAINING_IN_PROGRESS" and description["StatusMessage"]
    assert description["OutputConfig"] == OUTPUT and description["VersionDescription"] == "first try"
    assert description["TrainingDataResult"]["Input"] == {} and "EvaluationResult" not in description
    with pytest.raises(client.exceptions.ResourceInUseException):
        client.start_project_version(ProjectVersionArn=arn, MinInferenceUnits=1)
    with pytest.raises(client.exceptions.ResourceInUseException):
        client.stop_project_version(ProjectVersionArn=arn)
    with pytest.raises(client.exceptions.ResourceInUseException):
        client.delete_project_version(ProjectVersionArn=arn)
    image = (ctx.s3.root / "data" / "test" / "red-00.png").read_bytes()
    with pytest.raises(client.exceptions.ResourceNotReadyException):
        client.detect_custom_labels(ProjectVersionArn=arn, Image={"Bytes": image})


def test_an_unknown_version_is_not_found_for_every_version_operation(ctx):
    client = rekognition(ctx)
    gone = "arn:aws:rekognition:us-east-1:000000000000:project/p/version/v9/1700000000000"
    for call in (lambda: client.start_project_version(ProjectVersionArn=gone, MinInferenceUnits=1),
                 lambda: client.stop_project_version(ProjectVersionArn=gone),
                 lambda: client.delete_project_version(ProjectVersionArn=gone),
                 lambda: client.detect_custom_labels(ProjectVersionArn=gone, Image={"Bytes": b"\x89PNG"})):
        with pytest.raises(client.exceptions.ResourceNotFoundException):
            call()


def test_describe_pages_newest_first_and_filters_by_name(ctx):
    client = rekognition(ctx)
    project = _project_with_datasets(ctx)
    arns = [client.create_project_version(ProjectArn=project, VersionName=f"v{i}", OutputConfig=OUTPUT)
            ["ProjectVersionArn"] for i in range(3)]
    first = client.describe_project_versions(ProjectArn=project, MaxResults=2)
    second = client.describe_project_versions(ProjectArn=project, MaxResults=2, NextToken=first["NextToken"])
    seen = [d["ProjectVersionArn"] for d in first["ProjectVersionDescriptions"] + second["ProjectVersionDescriptions"]]
    assert seen == arns[::-1] and "NextToken" not in second
    named = client.describe_project_versions(ProjectArn=project, VersionNames=["v1"])["ProjectVersionDescriptions"]
    assert [d["ProjectVersionArn"] for d in named] == [arns[1]]
    with pytest.raises(client.exceptions.InvalidPaginationTokenException):
        client.describe_project_versions(ProjectArn=project, NextToken="forged.token")


def test_the_training_waiter_stops_at_a_failed_training_and_the_message_says_why(ctx):
    from botocore.exceptions import WaiterError

    client = rekognition(ctx)
    project = ctx.store.create_project("p", status="CREATED")["arn"]
    arn = ctx.store.create_version(project, "v1", OUTPUT)["arn"]
    ctx.store.set_version_status(arn, "TRAINING_FAILED", "The training failed: killed at the deadline")
    with pytest.raises(WaiterError, match="terminal failure state"):
        client.get_waiter("project_version_training_completed").wait(
            ProjectArn=project, WaiterConfig={"Delay": 1, "MaxAttempts": 2})
    description, = client.describe_project_versions(ProjectArn=project)["ProjectVersionDescriptions"]
    assert description["StatusMessage"] == "The training failed: killed at the deadline"
    assert "EvaluationResult" not in description and "BillableTrainingTimeInSeconds" not in description
    with pytest.raises(client.exceptions.ResourceInUseException, match="failed to train"):
        client.start_project_version(ProjectVersionArn=arn, MinInferenceUnits=1)


# ---------------------------------------------------------------- recover()


def test_recover_finishes_deletes_and_stops_and_queues_a_version_created_but_not_queued(ctx):
    from edgelabels.service.versions import freeze, recover

    project = ctx.store.create_project("p", status="CREATED")["arn"]
    deleting, stopping, unqueued, lost = (ctx.store.create_version(project, name, OUTPUT, enqueue=False)["arn"]
                                          for name in ("deleting", "stopping", "unqueued", "lost"))
    for arn, path in ((deleting, ["TRAINING_COMPLETED", "DELETING"]),
                      (stopping, ["TRAINING_COMPLETED", "STARTING", "RUNNING", "STOPPING"])):
        for status in path:
            ctx.store.set_version_status(arn, status)
    ctx.version_dir(deleting).mkdir(parents=True)
    freeze(ctx.version_dir(unqueued), {"train": [(manifest_line("data", "train/red-00.png", "red"), [])],
                                       "test": [(manifest_line("data", "test/red-00.png", "red"), [])]})
    recover(ctx)
    assert [v["name"] for v in ctx.store.versions(project)[0]] == ["lost", "unqueued", "stopping"]
    assert not ctx.version_dir(deleting).exists()
    assert ctx.store.version(stopping)["status"] == "STOPPED"
    assert [job["version_arn"] for job in ctx.store.jobs("queued")] == [unqueued]
    lost_version = ctx.store.version(lost)
    assert lost_version["status"] == "TRAINING_FAILED" and "create the version again" in lost_version["status_message"]


# ---------------------------------------------------------------- a trained version (slow)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(context, client, project ARN, version ARN): one version trained through the job worker, waited for with
    boto3's project_version_training_completed waiter."""
    from edgelabels.service import trainer

    root = tmp_path_factory.mktemp("versions")
    context = make_context(root)
    write_bucket(context.s3.root, "data")
    client = rekognition(context)
    project = context.store.create_project("colours", status="CREATED")["arn"]
    arn = client.create_project_version(ProjectArn=project, VersionName="v1", OutputConfig=OUTPUT,
                                        TrainingData=_assets("train.manifest"),
                                        TestingData=_assets("test.manifest"))["ProjectVersionArn"]
    worker = trainer.start(context, poll_s=0.1)
    try:
        client.get_waiter("project_version_training_completed").wait(
            ProjectArn=project, VersionNames=["v1"], WaiterConfig={"Delay": 1, "MaxAttempts": 600})
    finally:
        worker.stop()
    yield context, client, project, arn
    context.close()


@pytest.mark.slow
def test_a_trained_version_has_every_member_of_aws_example_description(trained):
    from pathlib import Path

    context, client, project, arn = trained
    answer = client.describe_project_versions(ProjectArn=project)
    description, = answer["ProjectVersionDescriptions"]
    example = json.loads((Path(__file__).parents[2] / "shared" / "fixtures" / "rekognition" /
                          "describe-project-versions-response.json").read_text())["ProjectVersionDescriptions"][0]
    assert set(example) <= set(description)
    for key in ("TrainingDataResult", "TestingDataResult"):
        assert set(example[key]) <= set(description[key])
    assert (description["Status"], description["StatusMessage"]) == ("TRAINING_COMPLETED", "The model is ready to run.")
    summary = description["EvaluationResult"]["Summary"]["S3Object"]
    assert summary == {"Bucket": "results", "Name": "out/EvaluationResultSummary-colours-v1.json"}
    written = json.loads((context.s3.root / "results" / summary["Name"]).read_text())
    assert written["AggregatedEvaluationResults"]["Metrics"]["F1Score"] == \
        pytest.approx(description["EvaluationResult"]["F1Score"])
    assert description["TrainingEndTimestamp"] >= description["CreationTimestamp"]
    assert description["BillableTrainingTimeInSeconds"] >= 1
    answer.pop("ResponseMetadata")
    _check_shape(answer, client.meta.service_model.operation_model("DescribeProjectVersions").output_shape)


def _predict(export_dir, image_path, **options) -> dict:
    from edgelabels.runtime.answers import answer_images, open_edge_model

    answer, = answer_images(open_edge_model(export_dir), [image_path], **options)
    return answer.response


@pytest.mark.slow
def test_started_it_answers_as_predict_does_and_stopped_it_refuses(trained):
    context, client, project, arn = trained
    running = client.get_waiter("project_version_running")
    assert client.start_project_version(ProjectVersionArn=arn, MinInferenceUnits=1)["Status"] == "STARTING"
    running.wait(ProjectArn=project, VersionNames=["v1"], WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    description, = client.describe_project_versions(ProjectArn=project)["ProjectVersionDescriptions"]
    assert description["MinInferenceUnits"] == 1 and description["StatusMessage"] == "The model is running."
    with pytest.raises(client.exceptions.ResourceInUseException):
        client.delete_project_version(ProjectVersionArn=arn)
    image = context.s3.root / "data" / "test" / "green-01.png"
    export = context.store.version(arn)["export_dir"]
    for options in ({}, {"MinConfidence": 0}, {"MinConfidence": 0, "MaxResults": 1}):
        answer = client.detect_custom_labels(ProjectVersionArn=arn, Image={"Bytes": image.read_bytes()}, **options)
        answer.pop("ResponseMetadata")
        expected = _predict(export, image, min_confidence=options.get("MinConfidence"),
                            max_results=options.get("MaxResults"))
        assert answer == json.loads(json.dumps(expected))
    from_s3 = client.detect_custom_labels(ProjectVersionArn=arn, MinConfidence=0,
                                          Image={"S3Object": {"Bucket": "data", "Name": "test/green-01.png"}})
    assert from_s3["CustomLabels"] == client.detect_custom_labels(
        ProjectVersionArn=arn, MinConfidence=0, Image={"Bytes": image.read_bytes()})["CustomLabels"]
    with pytest.raises(client.exceptions.InvalidImageFormatException):
        client.detect_custom_labels(ProjectVersionArn=arn, Image={"Bytes": b"GIF89a not what we read"})
    with pytest.raises(client.exceptions.ImageTooLargeException):
        client.detect_custom_labels(ProjectVersionArn=arn, Image={"Bytes": b"\x89PNG" + bytes(4 * 2 ** 20)})
    assert client.stop_project_version(ProjectVersionArn=arn)["Status"] == "STOPPING"
    assert wait_for_status(context, arn, {"STOPPED"}, timeout_s=30)["status"] == "STOPPED"
    with pytest.raises(client.exceptions.ResourceNotReadyException):
        client.detect_custom_labels(ProjectVersionArn=arn, Image={"Bytes": image.read_bytes()})
    assert arn not in context.models


@pytest.mark.slow
def test_two_versions_run_at_once_each_answering_with_its_own_model(trained):
    context, client, project, arn = trained
    other = context.store.create_version(project, "v2", OUTPUT, enqueue=False)["arn"]
    context.store.set_version_status(other, "TRAINING_COMPLETED", export_dir=context.store.version(arn)["export_dir"],
                                     training_end_ms=context.store.version(arn)["training_end_ms"])
    for version in (arn, other):
        client.start_project_version(ProjectVersionArn=version, MinInferenceUnits=1)
    client.get_waiter("project_version_running").wait(ProjectArn=project,
                                                      WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    assert set(context.models) == {arn, other} and context.models[arn] is not context.models[other]
    image = {"Bytes": (context.s3.root / "data" / "test" / "red-01.png").read_bytes()}
    answers = [client.detect_custom_labels(ProjectVersionArn=v, Image=image, MinConfidence=0)["CustomLabels"]
               for v in (arn, other)]
    assert answers[0] == answers[1] and answers[0]
    for version in (arn, other):
        client.stop_project_version(ProjectVersionArn=version)
        wait_for_status(context, version, {"STOPPED"}, timeout_s=30)
    client.delete_project_version(ProjectVersionArn=other)


@pytest.mark.slow
def test_recover_loads_a_running_version_again_after_a_restart(trained):
    from edgelabels.service.store import Store
    from edgelabels.service.versions import recover

    context, client, project, arn = trained
    client.start_project_version(ProjectVersionArn=arn, MinInferenceUnits=2, MaxInferenceUnits=3)
    wait_for_status(context, arn, {"RUNNING"}, timeout_s=60)
    restarted = make_context(context.directory.parent, store=Store(context.directory))
    recover(restarted)
    assert arn in restarted.models and restarted.store.version(arn)["status"] == "RUNNING"
    again = rekognition(restarted)
    image = {"Bytes": (context.s3.root / "data" / "test" / "red-02.png").read_bytes()}
    assert again.detect_custom_labels(ProjectVersionArn=arn, Image=image)["CustomLabels"] == \
        client.detect_custom_labels(ProjectVersionArn=arn, Image=image)["CustomLabels"]
    description, = again.describe_project_versions(ProjectArn=project)["ProjectVersionDescriptions"]
    assert (description["MinInferenceUnits"], description["MaxInferenceUnits"]) == (2, 3)
    again.stop_project_version(ProjectVersionArn=arn)
    wait_for_status(restarted, arn, {"STOPPED"}, timeout_s=30)
    restarted.close()


@pytest.mark.slow
def test_zz_a_deleted_version_is_gone_with_its_files(trained):
    context, client, project, arn = trained
    wait_for_status(context, arn, {"STOPPED", "TRAINING_COMPLETED"}, timeout_s=30)
    folder = context.version_dir(arn)
    assert folder.is_dir()
    assert client.delete_project_version(ProjectVersionArn=arn)["Status"] == "DELETING"
    context.executor.shutdown(wait=True)  # the delete finishes in the background
    assert client.describe_project_versions(ProjectArn=project)["ProjectVersionDescriptions"] == []
    assert not folder.exists() and context.store.jobs() == []
