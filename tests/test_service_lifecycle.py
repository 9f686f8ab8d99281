"""The local Rekognition as its users run it (issue 27's "Done when"): a boto3 script and the AWS CLI walk the whole
lifecycle unchanged but for the endpoint, a kill -9 during training resumes its epochs, and hostile calls get
Rekognition's error codes while the service keeps serving.

Real servers only: moto's S3 on loopback (the service reads it through AWS_ENDPOINT_URL_S3) and `edgelabels serve
--projects DIR` in a subprocess whose --set options make every training a seconds-long tinycnn at 32 px. The
boto3 script is benchmarks/service_lifecycle.py's `lifecycle` (what a user writes), run here on generated stripes.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("boto3")
pytest.importorskip("moto.server")

from botocore.exceptions import ClientError  # noqa: E402

from helpers.datasets import REPO, make_stripes_dataset  # noqa: E402
from helpers.detection import make_box_photos  # noqa: E402
from helpers.service import USER_AWS_VARIABLES, S3Server, ServiceProcess  # noqa: E402

pytestmark = pytest.mark.slow  # trains through the service (each job a child process importing TensorFlow)

BUCKET = "lifecycle-test"
AWS = Path(sys.executable).parent / "aws"
TINY = ("model.backbone=tinycnn", "model.weights=none", "data.image_size=32", "train.epochs=2",
        "train.fine_tune_epochs=0", "train.verbose=0", "train.workers=1", "train.patience=100", "seed=1")
KILL_EPOCHS = 10


def _benchmark():
    spec = importlib.util.spec_from_file_location("service_lifecycle", REPO / "benchmarks" / "service_lifecycle.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _benchmark()


def error_code(call, **params) -> str:
    with pytest.raises(ClientError) as caught:
        call(**params)
    return caught.value.response["Error"]["Code"]


# -- the servers and the data ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def s3_server(tmp_path_factory):
    server = S3Server(tmp_path_factory.mktemp("aws"))
    server.client().create_bucket(Bucket=BUCKET)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def s3(s3_server):
    return s3_server.client()


def stripes_set(s3, root: Path, prefix: str, per_label: int, size: int, test_every: int = 4) -> dict:
    """Generated stripes uploaded under prefix with TRAIN / TEST manifests (every test_every-th image tests)."""
    folder = make_stripes_dataset(root, per_label=per_label, size=size)
    pairs = [(path, path.parent.name) for path in sorted(folder.rglob("*.png"))]
    test = pairs[::test_every]
    train = [pair for pair in pairs if pair not in test]
    return {"manifests": bench.classification_set(s3, BUCKET, prefix, train, test, "stripes"),
            "train": train, "test": test}


@pytest.fixture(scope="module")
def stripes(s3, tmp_path_factory):
    return stripes_set(s3, tmp_path_factory.mktemp("stripes") / "images", "stripes/", per_label=12, size=64)


def service_options(*extra: str) -> list[str]:
    return ["--budget", "1m", *[f"--set={item}" for item in (*TINY, *extra)]]


@pytest.fixture(scope="module")
def service(s3_server, tmp_path_factory):
    running = ServiceProcess(tmp_path_factory.mktemp("service") / "DIR", *service_options(), env=s3_server.env)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def rekognition(service):
    return service.client()


def new_project(rekognition, name: str, manifests: dict) -> tuple[str, dict]:
    project_arn, dataset_arns, described = bench.create_project_with_datasets(rekognition, name, BUCKET, manifests,
                                                                              poll=0.2)
    assert {kind: d["Status"] for kind, d in described.items()} == {kind: "CREATE_COMPLETE" for kind in manifests}
    return project_arn, dataset_arns


def until(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


# -- the boto3 lifecycle --------------------------------------------------------------------------------------

def test_a_boto3_script_runs_the_lifecycle_end_to_end_and_detects_as_predict_does(service, rekognition, s3,
                                                                                   stripes):
    images = [path for path, _ in stripes["test"]]
    phases = bench.Phases()
    seen = bench.lifecycle(rekognition, s3, "stripes-boto3", BUCKET, stripes["manifests"], images, phases,
                           poll=0.5)

    project_arn, version_arn = seen["project_arn"], seen["version_arn"]
    assert project_arn.startswith("arn:aws:rekognition:us-east-1:") and ":project/stripes-boto3/" in project_arn
    assert version_arn.startswith(project_arn.rsplit("/", 1)[0] + "/version/v1/")
    assert seen["datasets"]["TRAIN"]["DatasetStats"]["TotalEntries"] == len(stripes["train"])
    assert seen["datasets"]["TEST"]["DatasetStats"]["TotalEntries"] == len(stripes["test"])
    version = seen["version"]
    assert version["Status"] == "TRAINING_COMPLETED" and isinstance(version["StatusMessage"], str)
    f1 = version["EvaluationResult"]["F1Score"]
    assert 0.0 <= f1 <= 1.0
    summary = seen["summary"]
    assert summary["EvaluationDetails"]["ProjectVersionArn"] == version_arn
    assert sorted(summary["EvaluationDetails"]["Labels"]) == ["horizontal", "vertical"]
    assert summary["EvaluationDetails"]["NumberOfTestingImages"] == len(stripes["test"])
    written = [item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET, Prefix="output/stripes-boto3/")["Contents"]]
    assert version["EvaluationResult"]["Summary"]["S3Object"]["Name"] in written

    assert set(seen["answers"]) == {path.name for path in images}
    predicted = bench.predict_answers(bench.version_run(service.directory, version_arn).export_dir, images)
    assert bench.differences(seen["answers"], predicted) == []
    assert any(seen["answers"].values())  # some image got a label: the comparison compared something

    bench.delete_everything(rekognition, project_arn, poll=0.2)
    assert rekognition.describe_projects(ProjectNames=["stripes-boto3"])["ProjectDescriptions"] == []
    assert error_code(rekognition.describe_project_versions, ProjectArn=project_arn) == "ResourceNotFoundException"


@pytest.fixture(scope="module")
def squares(s3, tmp_path_factory) -> dict:
    """Generated photos of red and blue squares with their boxes, uploaded with TRAIN / TEST object-detection
    manifests (every fourth photo tests)."""
    manifest, _ = make_box_photos(tmp_path_factory.mktemp("squares"), 24, seed=0, size=64)
    files, sides, test_images = {}, {"TRAIN": [], "TEST": []}, []
    for i, line in enumerate(manifest.read_text().splitlines()):
        entry = json.loads(line)
        name = entry["source-ref"]
        files[f"squares/{name}"] = manifest.parent / name
        entry["source-ref"] = f"s3://{BUCKET}/squares/{name}"
        sides["TEST" if i % 4 == 0 else "TRAIN"].append(json.dumps(entry))
        test_images += [manifest.parent / name] if i % 4 == 0 else []
    for kind, lines in sides.items():
        files[f"squares/{kind.lower()}.manifest"] = "\n".join(lines) + "\n"
    bench.upload(s3, BUCKET, files)
    return {"manifests": {"TRAIN": "squares/train.manifest", "TEST": "squares/test.manifest"}, "test": test_images}


def test_a_boto3_script_trains_a_detector_whose_boxes_are_those_predict_draws(service, rekognition, s3, squares):
    seen = bench.lifecycle(rekognition, s3, "squares-boto3", BUCKET, squares["manifests"], squares["test"],
                           bench.Phases(), poll=0.5)
    assert seen["version"]["Status"] == "TRAINING_COMPLETED"
    assert seen["datasets"]["TRAIN"]["DatasetStats"]["TotalLabels"] == 2  # red and blue
    metrics = seen["summary"]["AggregatedEvaluationResults"]["Metrics"]
    assert {"AveragePrecision", "AverageRecall"} <= set(metrics)  # a detector's summary, as Rekognition writes it
    export = bench.version_run(service.directory, seen["version_arn"]).export_dir
    predicted = bench.predict_answers(export, squares["test"])
    assert bench.differences(seen["answers"], predicted) == []
    boxes = [label for labels in seen["answers"].values() for label in labels if "Geometry" in label]
    assert boxes and all(label["Name"] in ("red", "blue") for label in boxes)  # some boxes were compared
    bench.delete_everything(rekognition, seen["project_arn"], poll=0.2)


# -- the AWS CLI walkthrough ----------------------------------------------------------------------------------

@pytest.fixture
def aws(service, s3_server, tmp_path):
    """`aws rekognition ...` as the README writes it, plus --endpoint-url; parsed JSON out. The waiters' 120 s and
    30 s delays are shortened to 1 s through botocore's documented data path (AWS_DATA_PATH), not the commands."""
    from botocore.loaders import Loader

    waiters = Loader().load_service_model("rekognition", "waiters-2")
    for waiter in waiters["waiters"].values():
        waiter["delay"] = 1
    folder = tmp_path / "models" / "rekognition" / "2016-06-27"
    folder.mkdir(parents=True)
    (folder / "waiters-2.json").write_text(json.dumps(waiters))
    environment = {name: value for name, value in os.environ.items() if name not in USER_AWS_VARIABLES}
    environment.update(s3_server.env, AWS_DATA_PATH=str(tmp_path / "models"))

    def run(*arguments: str):
        done = subprocess.run([str(AWS), "rekognition", *arguments, "--endpoint-url", service.url, "--output",
                               "json"], capture_output=True, text=True, env=environment, timeout=300)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout) if done.stdout.strip() else None

    return run


def test_the_aws_cli_walkthrough_runs_unchanged_but_for_the_endpoint(aws, rekognition, stripes):
    project = aws("create-project", "--project-name", "stripes-cli")["ProjectArn"]
    datasets = [aws("create-dataset", "--project-arn", project, "--dataset-type", kind, "--dataset-source",
                    json.dumps({"GroundTruthManifest": {"S3Object": {"Bucket": BUCKET, "Name": key}}}))["DatasetArn"]
                for kind, key in stripes["manifests"].items()]
    for dataset in datasets:
        assert bench.wait_for_dataset(rekognition, dataset, poll=0.2)["Status"] == "CREATE_COMPLETE"
    version = aws("create-project-version", "--project-arn", project, "--version-name", "v1", "--output-config",
                  json.dumps({"S3Bucket": BUCKET, "S3KeyPrefix": "cli-output/"}))["ProjectVersionArn"]
    aws("wait", "project-version-training-completed", "--project-arn", project, "--version-names", "v1")
    described = aws("describe-project-versions", "--project-arn", project, "--version-names", "v1")
    assert described["ProjectVersionDescriptions"][0]["Status"] == "TRAINING_COMPLETED"
    assert 0.0 <= described["ProjectVersionDescriptions"][0]["EvaluationResult"]["F1Score"] <= 1.0

    assert aws("start-project-version", "--project-version-arn", version, "--min-inference-units", "1")["Status"] \
        == "STARTING"
    aws("wait", "project-version-running", "--project-arn", project, "--version-names", "v1")
    image, label = stripes["test"][0]
    from_bytes = aws("detect-custom-labels", "--project-version-arn", version, "--image-bytes", f"fileb://{image}",
                     "--min-confidence", "0")
    from_s3 = aws("detect-custom-labels", "--project-version-arn", version, "--min-confidence", "0", "--image",
                  json.dumps({"S3Object": {"Bucket": BUCKET, "Name": f"stripes/{label}/{image.name}"}}))
    assert from_bytes == from_s3 and {item["Name"] for item in from_bytes["CustomLabels"]} == {"horizontal",
                                                                                             "vertical"}
    assert aws("stop-project-version", "--project-version-arn", version)["Status"] == "STOPPING"
    bench.wait_for_version(rekognition, project, "v1", "STOPPED", poll=0.2)

    aws("delete-project-version", "--project-version-arn", version)
    until(lambda: not rekognition.describe_project_versions(ProjectArn=project)["ProjectVersionDescriptions"])
    for dataset in datasets:
        aws("delete-dataset", "--dataset-arn", dataset)
    until(lambda: not rekognition.describe_projects(ProjectNames=["stripes-cli"])["ProjectDescriptions"][0].get(
        "Datasets"))
    aws("delete-project", "--project-arn", project)
    until(lambda: not aws("describe-projects", "--project-names", "stripes-cli")["ProjectDescriptions"])


# -- kill -9 during training ----------------------------------------------------------------------------------

def history_rows(run) -> list[dict]:
    if not run.history_path.is_file():
        return []
    with open(run.history_path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_kill_9_during_training_resumes_its_epochs_after_a_restart_on_the_same_dir(s3_server, s3, tmp_path):
    # 120 images of 64 px at batch size 1: epochs of about half a second, so the kill lands between two of them
    slow = stripes_set(s3, tmp_path / "images", "slow-stripes/", per_label=60, size=64)
    options = service_options(f"train.epochs={KILL_EPOCHS}", "data.image_size=64", "train.batch_size=1")
    killed = ServiceProcess(tmp_path / "DIR", *options, env=s3_server.env)
    try:
        rekognition = killed.client()
        project, _ = new_project(rekognition, "kill-9", slow["manifests"])
        version = rekognition.create_project_version(ProjectArn=project, VersionName="v1", OutputConfig={
            "S3Bucket": BUCKET, "S3KeyPrefix": "kill-9/"})["ProjectVersionArn"]
        run = bench.version_run(killed.directory, version)
        deadline = time.monotonic() + 240
        while len(history_rows(run)) < 2:  # row 2 comes after epoch 1's checkpoint: something to resume
            assert time.monotonic() < deadline, f"no two epochs within 240 s:\n{killed.output()[-3000:]}"
            time.sleep(0.02)
    finally:
        killed.kill()
    time.sleep(1.5)  # the orphaned training child notices its parent is gone (it polls every 0.5 s) and exits
    before = history_rows(run)
    assert 2 <= len(before) < KILL_EPOCHS, f"the kill came after epoch {len(before)}: nothing left to resume"

    restarted = ServiceProcess(tmp_path / "DIR", *options, env=s3_server.env)
    try:
        restarted.client().get_waiter("project_version_training_completed").wait(
            ProjectArn=project, VersionNames=["v1"], WaiterConfig={"Delay": 1, "MaxAttempts": 300})
    finally:
        restarted.stop()
    after = history_rows(run)
    assert [row["epoch"] for row in after] == [str(epoch) for epoch in range(1, KILL_EPOCHS + 1)]
    log = run.log_path.read_text()
    resumed = re.search(r"resumed from stage a epoch (\d+)", log)
    # the last checkpoint before the kill: the row of an epoch killed before its checkpoint is trained again
    assert resumed and 1 <= int(resumed[1]) <= len(before), log
    assert after[: int(resumed[1])] == before[: int(resumed[1])]  # the epochs done before the kill are kept


# -- hostile and wrong-state calls ----------------------------------------------------------------------------

def test_a_manifest_that_is_not_ground_truth_fails_the_dataset_with_the_reason(rekognition, s3):
    s3.put_object(Bucket=BUCKET, Key="hostile/garbage.manifest", Body=b"\x00\xff not json\n{\"a\": [1,\n" * 20)
    _, _, described = bench.create_project_with_datasets(rekognition, "hostile-garbage", BUCKET,
                                                         {"TRAIN": "hostile/garbage.manifest"}, poll=0.2)
    assert described["TRAIN"]["Status"] == "CREATE_FAILED"
    assert described["TRAIN"]["StatusMessage"] and described["TRAIN"]["StatusMessageCode"] == "CLIENT_ERROR"
    assert rekognition.describe_projects(ProjectNames=["hostile-garbage"])["ProjectDescriptions"]  # still serving


def test_a_bad_entry_among_good_ones_is_listed_with_its_error_and_the_dataset_completes(rekognition, s3,
                                                                                       stripes):
    lines = s3.get_object(Bucket=BUCKET, Key=stripes["manifests"]["TRAIN"])["Body"].read().decode().splitlines()
    bad = json.loads(lines[0])
    bad["source-ref"] = f"s3://{BUCKET}/stripes/odd.png"
    bad["stripes-metadata"]["class-name"] = ""  # a label with no name: Rekognition refuses the entry
    s3.put_object(Bucket=BUCKET, Key="hostile/one-bad.manifest", Body="\n".join([*lines, json.dumps(bad)]) + "\n")
    _, arns, described = bench.create_project_with_datasets(rekognition, "hostile-one-bad", BUCKET,
                                                            {"TRAIN": "hostile/one-bad.manifest"}, poll=0.2)
    assert described["TRAIN"]["Status"] == "CREATE_COMPLETE"
    assert described["TRAIN"]["DatasetStats"]["ErrorEntries"] == 1
    errors = rekognition.list_dataset_entries(DatasetArn=arns["TRAIN"], HasErrors=True)["DatasetEntries"]
    assert len(errors) == 1 and "odd.png" in errors[0] and "ERROR_" in errors[0]


def test_unknown_arns_answer_not_found_and_malformed_ones_invalid_parameter(rekognition):
    unknown_project = "arn:aws:rekognition:us-east-1:123456789012:project/nobody/1700000000000"
    unknown_version = "arn:aws:rekognition:us-east-1:123456789012:project/nobody/version/v1/1700000000000"
    unknown_dataset = "arn:aws:rekognition:us-east-1:123456789012:project/nobody/dataset/train/1700000000000"
    assert error_code(rekognition.describe_project_versions, ProjectArn=unknown_project) == "ResourceNotFoundException"
    assert error_code(rekognition.describe_dataset, DatasetArn=unknown_dataset) == "ResourceNotFoundException"
    assert error_code(rekognition.start_project_version, ProjectVersionArn=unknown_version,
                      MinInferenceUnits=1) == "ResourceNotFoundException"
    assert error_code(rekognition.detect_custom_labels, ProjectVersionArn=unknown_version,
                      Image={"Bytes": b"\x89PNG"}) == "ResourceNotFoundException"
    assert error_code(rekognition.delete_project, ProjectArn=unknown_project) == "ResourceNotFoundException"
    assert error_code(rekognition.create_dataset, ProjectArn=unknown_project, DatasetType="TEST") \
        == "ResourceNotFoundException"
    # the client does not check botocore's ProjectArn pattern: the service refuses an ARN without its creation time
    assert error_code(rekognition.describe_project_versions,
                      ProjectArn="arn:aws:rekognition:us-east-1:123456789012:project/x") == "InvalidParameterException"
    assert rekognition.describe_projects()["ResponseMetadata"]["HTTPStatusCode"] == 200


def test_wrong_state_calls_answer_rekognition_codes_while_the_service_keeps_serving(service, rekognition,
                                                                                    stripes):
    project, _ = new_project(rekognition, "hostile-states", stripes["manifests"])
    version = rekognition.create_project_version(
        ProjectArn=project, VersionName="v1", OutputConfig={"S3Bucket": BUCKET, "S3KeyPrefix": "states/"})[
        "ProjectVersionArn"]
    image = {"Bytes": stripes["test"][0][0].read_bytes()}
    # while it trains: no start, no detect, no delete
    assert error_code(rekognition.start_project_version, ProjectVersionArn=version, MinInferenceUnits=1) \
        == "ResourceInUseException"
    assert error_code(rekognition.detect_custom_labels, ProjectVersionArn=version, Image=image) \
        == "ResourceNotReadyException"
    assert error_code(rekognition.delete_project_version, ProjectVersionArn=version) == "ResourceInUseException"
    assert error_code(rekognition.create_project_version, ProjectArn=project, VersionName="v1",
                      OutputConfig={"S3Bucket": BUCKET, "S3KeyPrefix": "states/"}) == "ResourceInUseException"
    pollers = service.client(max_pool_connections=100)  # 100 scripts polling the training at once: all answered
    with ThreadPoolExecutor(100) as pool:
        statuses = list(pool.map(lambda _: pollers.describe_project_versions(ProjectArn=project)[
            "ProjectVersionDescriptions"][0]["Status"], range(100)))
    assert len(statuses) == 100 and set(statuses) <= {"TRAINING_IN_PROGRESS", "TRAINING_COMPLETED"}
    rekognition.get_waiter("project_version_training_completed").wait(
        ProjectArn=project, VersionNames=["v1"], WaiterConfig={"Delay": 0.5, "MaxAttempts": 600})
    # trained, never started: no detect
    assert error_code(rekognition.detect_custom_labels, ProjectVersionArn=version, Image=image) \
        == "ResourceNotReadyException"
    rekognition.start_project_version(ProjectVersionArn=version, MinInferenceUnits=1)
    rekognition.get_waiter("project_version_running").wait(
        ProjectArn=project, VersionNames=["v1"], WaiterConfig={"Delay": 0.5, "MaxAttempts": 120})
    assert error_code(rekognition.delete_project_version, ProjectVersionArn=version) == "ResourceInUseException"
    assert error_code(rekognition.delete_project, ProjectArn=project) == "ResourceInUseException"
    assert rekognition.detect_custom_labels(ProjectVersionArn=version, Image=image)["CustomLabels"] is not None
    rekognition.stop_project_version(ProjectVersionArn=version)
    bench.wait_for_version(rekognition, project, "v1", "STOPPED", poll=0.2)
    # stopped: no detect
    assert error_code(rekognition.detect_custom_labels, ProjectVersionArn=version, Image=image) \
        == "ResourceNotReadyException"
    bench.delete_everything(rekognition, project, poll=0.2)
    assert rekognition.describe_projects(ProjectNames=["hostile-states"])["ProjectDescriptions"] == []
