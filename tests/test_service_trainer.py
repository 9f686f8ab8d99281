"""The service's training job (service/trainer.py): frozen manifests -> images -> config -> pipeline child ->
outputs in the OutputConfig bucket -> TRAINING_COMPLETED, or TRAINING_FAILED with the reason; versions created at once
queue. (A job resumed after kill -9 of the service: tests/test_service_lifecycle.py.)

Trainings are tiny (tinycnn, 32 px, one epoch, 2 colours of generated images; one shared by the module's tests)
and marked slow. S3 is a --s3-root folder (S3Objects(root=...)), the service's own rule, except where the images
are copied from a real S3 server on loopback (moto's: helpers/service.py's S3Server) into the service's cache.
"""

from __future__ import annotations

import json
import time

import pytest

from helpers.service_ops import TINY, make_context, wait_for_status, write_bucket

def _create(ctx, name, bucket_manifest="train.manifest", test="test.manifest", output_prefix="out"):
    from edgelabels.service.versions import create_project_version

    project = ctx.store.create_project(f"p-{name}", status="CREATED")
    asset = lambda key: {"Assets": [{"GroundTruthManifest": {"S3Object": {"Bucket": "data", "Name": key}}}]}  # noqa
    return create_project_version(ctx, {
        "ProjectArn": project["arn"], "VersionName": name, "TrainingData": asset(bucket_manifest),
        "TestingData": asset(test), "OutputConfig": {"S3Bucket": "results", "S3KeyPrefix": output_prefix}},
    )["ProjectVersionArn"], project["arn"]


QUEUE = {}  # what the `trained` fixture saw of the queue: the most jobs running at once, the second version


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(context, version ARN, project ARN) of one version trained through the job worker. A second version is
    created at the same moment (two clients' CreateProjectVersion calls): the queue is watched while both train."""
    from concurrent.futures import ThreadPoolExecutor

    from edgelabels.service import trainer

    root = tmp_path_factory.mktemp("trainer")
    ctx = make_context(root)
    write_bucket(ctx.s3.root, "data")
    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda args: _create(ctx, args[0], output_prefix=args[1]), (("v1", "out"),
                                                                                             ("v2", "out/v2")))
    (arn, project), QUEUE["second"] = first, second[0]
    worker = trainer.start(ctx, poll_s=0.05)
    QUEUE["most_running"] = 0
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            states = [job["state"] for job in ctx.store.jobs()]
            QUEUE["most_running"] = max(QUEUE["most_running"], states.count("running"))
            if all(state in ("done", "failed") for state in states):
                break
            time.sleep(0.05)
    finally:
        worker.stop()
    yield ctx, arn, project
    ctx.close()


@pytest.mark.slow
def test_versions_created_at_once_queue_and_train_one_at_a_time(trained):
    ctx, arn, _ = trained
    assert QUEUE["most_running"] == 1  # max_jobs=1: the other waited in the queue
    assert [ctx.store.version(a)["status"] for a in (arn, QUEUE["second"])] == ["TRAINING_COMPLETED"] * 2


@pytest.mark.slow
def test_a_queued_version_trains_evaluates_and_exports_then_completes(trained):
    from edgelabels.artifacts import ExportDir

    ctx, arn, _ = trained
    version = ctx.store.version(arn)
    assert version["status"] == "TRAINING_COMPLETED", version["status_message"]
    assert ExportDir(version["export_dir"]).is_export()
    assert ctx.store.jobs()[0]["state"] == "done"
    assert 0.0 <= version["details"]["f1"] <= 1.0 and version["training_end_ms"] >= version["created_ms"]
    assert version["details"]["billable_s"] > 0


@pytest.mark.slow
def test_the_outputs_land_in_the_output_bucket_under_rekognitions_names(trained):
    ctx, arn, project = trained
    folder = ctx.s3.root / "results" / "out"
    names = sorted(p.name for p in folder.iterdir() if p.is_file())
    assert names == sorted(f"{what}-p-v1-v1.json" for what in (
        "EvaluationResultSummary", "ManifestSummary", "TrainingManifestWithValidation",
        "TestingManifestWithValidation", "TrainingGroundTruth", "TestingGroundTruth"))
    summary = json.loads((folder / "EvaluationResultSummary-p-v1-v1.json").read_text())
    assert summary["EvaluationDetails"]["ProjectVersionArn"] == arn
    assert summary["AggregatedEvaluationResults"]["Metrics"]["F1Score"] == ctx.store.version(arn)["details"]["f1"]
    statistics = json.loads((folder / "ManifestSummary-p-v1-v1.json").read_text())["statistics"]
    # write_bucket: 12 images a colour for training with one line naming a missing image, 4 a colour for testing
    assert statistics["training"]["total_json_lines"] == 25 and statistics["training"]["invalid_json_lines"] == 1
    assert statistics["testing"]["total_json_lines"] == 8 and statistics["testing"]["invalid_json_lines"] == 0
    validation = (folder / "TrainingManifestWithValidation-p-v1-v1.json").read_text().splitlines()
    bad = [json.loads(line) for line in validation if "errors" in json.loads(line)]
    assert [e["code"] for e in bad[0]["errors"]] == ["ERROR_INVALID_IMAGE"] and "missing" in bad[0]["source-ref"]
    snapshot = [json.loads(line) for line in (folder / "TestingGroundTruth-p-v1-v1.json").read_text().splitlines()]
    assert len(snapshot) == 8 and all(line["source-ref"].startswith("s3://data/test/") for line in snapshot)


@pytest.mark.slow
def test_the_version_freezes_its_data_so_later_bucket_edits_change_nothing(trained):
    from edgelabels.service.versions import manifest_path

    ctx, arn, _ = trained
    frozen = manifest_path(ctx.version_dir(arn), "train").read_text().splitlines()
    assert len(frozen) == 24 and all(json.loads(line)["source-ref"].startswith("s3://data/train/") for line in frozen)


@pytest.mark.slow
def test_a_child_that_fails_fails_the_version_with_the_reason(tmp_path):
    from edgelabels.service import trainer

    ctx = make_context(tmp_path, extra=("data.limit_per_label=1",))  # a valid config, too few images for the child
    write_bucket(ctx.s3.root, "data")
    arn, _ = _create(ctx, "bad")
    job = ctx.store.claim_next()
    trainer.train_version(ctx, job)
    version = ctx.store.version(arn)
    assert version["status"] == "TRAINING_FAILED"
    assert version["status_message"].startswith("The training failed: exited with code 2: ")
    assert "too few images" in version["status_message"]  # the child's own one-line error
    assert ctx.store.job(job["id"])["state"] == "failed"
    ctx.close()


def test_a_config_the_settings_make_invalid_fails_the_version_before_any_child_starts(tmp_path):
    from edgelabels.service import trainer

    ctx = make_context(tmp_path, extra=("train.epochs=0",))
    write_bucket(ctx.s3.root, "data")
    arn, _ = _create(ctx, "refused")
    trainer.train_version(ctx, ctx.store.claim_next())
    version = ctx.store.version(arn)
    assert version["status"] == "TRAINING_FAILED" and "train.epochs" in version["status_message"]
    assert not (ctx.version_dir(arn) / trainer.LOG).exists()
    ctx.close()


def test_a_version_whose_images_are_all_unreadable_fails_saying_so(tmp_path):
    from edgelabels.service import trainer
    from edgelabels.service.versions import description

    ctx = make_context(tmp_path)
    write_bucket(ctx.s3.root, "data")
    for image in (ctx.s3.root / "data" / "test").iterdir():
        image.write_bytes(b"not an image")
    arn, _ = _create(ctx, "unreadable")
    trainer.train_version(ctx, ctx.store.claim_next())
    version = ctx.store.version(arn)
    assert version["status"] == "TRAINING_FAILED" and "testing data has no valid labelled image" in \
        version["status_message"]
    # as Rekognition does for a failed training, the validation files say which lines were refused, and why
    validation = version["details"]["outputs"]["TestingManifestWithValidation"]
    assert validation == {"Bucket": "results",
                          "Name": "out/TestingManifestWithValidation-p-unreadable-unreadable.json"}
    lines = [json.loads(line) for line in (ctx.s3.root / "results" / validation["Name"]).read_text().splitlines()]
    assert len(lines) == 8 and all(line["errors"][0]["code"] == "ERROR_INVALID_IMAGE" for line in lines)
    assert "EvaluationResult" not in description(version) and "Output" not in description(version)["TestingDataResult"]
    ctx.close()


@pytest.fixture()
def s3_server(tmp_path):
    pytest.importorskip("moto.server")
    from helpers.service import S3Server

    server = S3Server(tmp_path / "aws")
    yield server
    server.stop()


def test_images_and_outputs_go_through_a_real_s3_server_and_its_images_are_copied_once(tmp_path, s3_server):
    from edgelabels.service import outputs, trainer
    from edgelabels.service.context import ServiceContext, ServiceSettings
    from edgelabels.service.s3 import S3Objects
    from edgelabels.service.store import Store
    from edgelabels.service.versions import manifest_path, validation_path

    local = tmp_path / "local"
    write_bucket(local, "data", per_label=3, test_per_label=2)
    client = s3_server.client()
    for bucket in ("data", "results"):
        client.create_bucket(Bucket=bucket)
    for path in (local / "data").rglob("*"):
        if path.is_file():
            client.put_object(Bucket="data", Key=path.relative_to(local / "data").as_posix(), Body=path.read_bytes())
    ctx = ServiceContext(tmp_path / "service", Store(tmp_path / "service"), S3Objects(client=client),
                         ServiceSettings(budget=None, overrides=TINY))
    arn, _ = _create(ctx, "remote")
    folder = ctx.version_dir(arn)
    assert trainer.fetch_images(ctx, folder) == ctx.s3_cache
    cached = ctx.s3_cache / "data" / "train" / "red-00.png"
    assert cached.read_bytes() == (local / "data" / "train" / "red-00.png").read_bytes()
    client.delete_object(Bucket="data", Key="train/red-00.png")  # a second fetch reads the cache, not S3
    trainer.fetch_images(ctx, folder)
    assert len(manifest_path(folder, "train").read_text().splitlines()) == 6  # the missing image dropped
    errors = [json.loads(line)["errors"] for line in validation_path(folder, "train").read_text().splitlines()
              if "errors" in json.loads(line)]
    assert len(errors) == 1 and "NoSuchKey" in errors[0][0]["message"]
    where = outputs.write_outputs(ctx.s3, {"S3Bucket": "results", "S3KeyPrefix": "runs/"}, arn,
                                  {outputs.MANIFEST_SUMMARY: {"errors": []}, outputs.TRAINING_OUTPUT: ["{}", "{}"]})
    assert where[outputs.TRAINING_OUTPUT] == {"Bucket": "results",
                                              "Name": "runs/TrainingGroundTruth-p-remote-remote.json"}
    body = client.get_object(Bucket="results", Key=where[outputs.TRAINING_OUTPUT]["Name"])["Body"].read()
    assert body == b"{}\n{}\n"
    ctx.close()


@pytest.mark.slow
def test_a_version_trained_deterministically_has_the_metrics_of_train_and_evaluate_in_process(tmp_path):
    from edgelabels.config import load_config
    from edgelabels.evaluate.driver import evaluate_model
    from edgelabels.service import trainer
    from edgelabels.train.fit import train

    ctx = make_context(tmp_path, extra=("train.deterministic=true", "train.epochs=2"))
    write_bucket(ctx.s3.root, "data")
    arn, _ = _create(ctx, "same")
    trainer.train_version(ctx, ctx.store.claim_next())
    version = ctx.store.version(arn)
    assert version["status"] == "TRAINING_COMPLETED", version["status_message"]
    # the same manifests (frozen), S3 root and settings: the version's config, as `edgelabels train` gets it
    here = train(load_config(ctx.version_dir(arn) / trainer.CONFIG), tmp_path / "in-process")
    evaluate_model(here, gradcam_per_kind=0, progress=False)
    service = json.loads((ctx.version_dir(arn) / "run" / "evaluation" / "metrics.json").read_text())
    in_process = json.loads((tmp_path / "in-process" / "evaluation" / "metrics.json").read_text())
    assert service["log_loss"] > 0 and service == in_process  # every figure, to the last digit
    ctx.close()
