"""The local service's dataset operations (issue 27), called in process over a --s3-root folder (and once through
boto3 against moto's S3 server on loopback): answers in botocore's output shapes, the status machine seen by a
polling client, Rekognition's error codes, entries with errors listed instead of failing the dataset, paging,
DistributeDatasetEntries' counts, recovery after a kill.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from helpers.service_ops import answers, check_shape, refusal
from test_service_s3 import BUCKET as S3_BUCKET
from test_service_s3 import server  # noqa: F401  (a fixture: moto's S3 server on loopback)

from edgelabels.service import datasets, projects
from edgelabels.service.context import ServiceContext
from edgelabels.service.s3 import S3Objects
from edgelabels.service.store import Store

BUCKET = "bucket"


def classification(name: str, label: str | None) -> str:
    line = {"source-ref": f"s3://{BUCKET}/images/{name}"}
    if label is not None:
        line |= {"animal": 1, "animal-metadata": {"class-name": label, "confidence": 1,
                                                  "type": "groundtruth/image-classification"}}
    return json.dumps(line)


def detection(name: str, boxes: list[tuple[int, int, int, int]], size: int = 3000) -> str:
    """A bee line on a size x size image; boxes are (left, top, width, height) in pixels."""
    return json.dumps({
        "source-ref": f"s3://{BUCKET}/images/{name}",
        "bounding-box": {"image_size": [{"width": size, "height": size, "depth": 3}],
                         "annotations": [{"class_id": 0, "left": left, "top": top, "width": w, "height": h}
                                         for left, top, w, h in boxes]},
        "bounding-box-metadata": {"objects": [{"confidence": 1} for _ in boxes], "class-map": {"0": "bee"},
                                  "type": "groundtruth/object-detection"}})


def make_ctx(root, executor=None) -> ServiceContext:
    (root / "s3" / BUCKET).mkdir(parents=True, exist_ok=True)
    extra = {"executor": executor} if executor is not None else {}
    return ServiceContext(root / "service", Store(root / "service"), S3Objects(root=root / "s3"), **extra)


def close(context: ServiceContext) -> None:
    """Stop as a service does, after its background work: a store closed under a running query is undefined."""
    context.executor.shutdown(wait=True)
    context.close()


@pytest.fixture
def ctx(tmp_path):
    context = make_ctx(tmp_path)
    yield context
    close(context)


@pytest.fixture
def paused(tmp_path):
    """A context whose background work waits until `release` is set: what a client polls in between is seen."""
    release = threading.Event()
    context = make_ctx(tmp_path, ThreadPoolExecutor(1))
    context.submit(release.wait)
    yield context, release
    release.set()
    close(context)


def put_manifest(ctx: ServiceContext, key: str, lines: list[str]) -> dict:
    (ctx.s3.root / BUCKET / key).parent.mkdir(parents=True, exist_ok=True)
    (ctx.s3.root / BUCKET / key).write_text("".join(line + "\n" for line in lines))
    return {"GroundTruthManifest": {"S3Object": {"Bucket": BUCKET, "Name": key}}}


def project(ctx: ServiceContext, name: str = "bees") -> str:
    return projects.create_project(ctx, {"ProjectName": name})["ProjectArn"]


def settled(ctx: ServiceContext, arn: str, timeout: float = 30) -> dict:
    """The dataset's description once its work is over, as a client polling DescribeDataset sees it."""
    deadline = time.monotonic() + timeout
    while True:
        description = answers("DescribeDataset", datasets.describe_dataset(ctx, {"DatasetArn": arn}))[
            "DatasetDescription"]
        if not description["Status"].endswith("_IN_PROGRESS"):
            return description
        assert time.monotonic() < deadline, f"{arn} still {description['Status']}"
        time.sleep(0.02)


def create(ctx: ServiceContext, project_arn: str, kind: str = "TRAIN", source: dict | None = None) -> str:
    params = {"ProjectArn": project_arn, "DatasetType": kind, **({"DatasetSource": source} if source else {})}
    return answers("CreateDataset", datasets.create_dataset(ctx, params))["DatasetArn"]


def entries(ctx: ServiceContext, arn: str, **filters) -> list[dict]:
    answer = answers("ListDatasetEntries", datasets.list_dataset_entries(ctx, {"DatasetArn": arn, **filters}),
                     absent={"NextToken"})
    return [json.loads(line) for line in answer["DatasetEntries"]]


def stats(ctx: ServiceContext, arn: str) -> tuple[int, int, int, int]:
    s = settled(ctx, arn)["DatasetStats"]
    return s["TotalEntries"], s["LabeledEntries"], s["TotalLabels"], s["ErrorEntries"]


def blob(lines: list[str]) -> str:
    return base64.b64encode("\n".join(lines).encode()).decode()  # as botocore sends a blob in JSON


# -- CreateDataset ------------------------------------------------------------------------------------------


def test_empty_dataset_is_created_in_progress_then_complete(paused):
    ctx, release = paused
    arn = create(ctx, project(ctx), "TEST")
    assert arn.split(":project/")[1].startswith("bees/dataset/test/")
    description = datasets.describe_dataset(ctx, {"DatasetArn": arn})["DatasetDescription"]
    assert (description["Status"], description["StatusMessageCode"]) == ("CREATE_IN_PROGRESS", "SUCCESS")
    assert isinstance(description["StatusMessage"], str) and description["StatusMessage"]
    release.set()
    done = settled(ctx, arn)
    assert (done["Status"], done["StatusMessageCode"]) == ("CREATE_COMPLETE", "SUCCESS")
    assert done["DatasetStats"] == {"LabeledEntries": 0, "TotalEntries": 0, "TotalLabels": 0, "ErrorEntries": 0}
    assert done["LastUpdatedTimestamp"] >= done["CreationTimestamp"]


def test_calls_on_a_dataset_being_created_are_resource_in_use(paused):
    ctx, _ = paused
    arn = create(ctx, project(ctx))
    for call, params in ((datasets.list_dataset_entries, {}), (datasets.list_dataset_labels, {}),
                         (datasets.delete_dataset, {}),
                         (datasets.update_dataset_entries, {"Changes": {"GroundTruth": blob([classification(
                             "x.jpg", "cat")])}})):
        assert refusal(call, ctx, {"DatasetArn": arn, **params}) == "ResourceInUseException", call.__name__


def test_manifest_lines_are_checked_and_a_too_small_box_is_listed_not_fatal(ctx):
    lines = [classification("a.jpg", "cat"), classification("b.jpg", "dog"), classification("c.jpg", None),
             detection("d.jpg", [(0, 0, 1, 1), (86, 65, 220, 334)])]
    arn = create(ctx, project(ctx), source=put_manifest(ctx, "train.manifest", lines))
    done = settled(ctx, arn)
    assert (done["Status"], done["StatusMessageCode"]) == ("CREATE_COMPLETE", "SUCCESS")
    # 4 entries; labeled: a, b, d (its second box is kept); labels cat, dog, bee; one entry with an error
    assert stats(ctx, arn) == (4, 3, 3, 1)
    [bad] = entries(ctx, arn, HasErrors=True)
    assert bad["source-ref"] == f"s3://{BUCKET}/images/d.jpg"
    assert [e["code"] for e in bad["cl-errors"]] == ["ERROR_BOUNDING_BOX_TOO_SMALL"]
    assert bad["cl-metadata"] == {"is_labeled": True}
    assert len(entries(ctx, arn, HasErrors=False)) == 3


def test_a_listed_entry_sent_back_is_the_same_entry(ctx):
    arn = create(ctx, project(ctx), source=put_manifest(ctx, "m.manifest", [classification("a.jpg", "cat")]))
    settled(ctx, arn)
    [listed] = datasets.list_dataset_entries(ctx, {"DatasetArn": arn})["DatasetEntries"]
    datasets.update_dataset_entries(ctx, {"DatasetArn": arn, "Changes": {"GroundTruth": blob([listed])}})
    settled(ctx, arn)
    assert datasets.list_dataset_entries(ctx, {"DatasetArn": arn})["DatasetEntries"] == [listed]


@pytest.mark.parametrize("content, problem", [
    (None, "ERROR_MANIFEST_INACCESSIBLE_OR_UNSUPPORTED_FORMAT"),
    ("no-extension", "ERROR_MANIFEST_INACCESSIBLE_OR_UNSUPPORTED_FORMAT"),
    ([], "ERROR_EMPTY_MANIFEST"),
    (["", "   "], "ERROR_EMPTY_MANIFEST"),
    (["not json", "{also not"], "ERROR_TOO_MANY_INVALID_ROWS_IN_MANIFEST"),
    # one line of three without a source-ref: 33%, more than Rekognition's 20%
    ([classification("a.jpg", "cat"), classification("b.jpg", "cat"), json.dumps({"animal": 1})],
     "ERROR_TOO_MANY_INVALID_ROWS_IN_MANIFEST"),
])
def test_unusable_manifests_fail_the_dataset_with_a_client_error(ctx, content, problem):
    if content is None:
        source = {"GroundTruthManifest": {"S3Object": {"Bucket": BUCKET, "Name": "missing.manifest"}}}
    elif content == "no-extension":  # a good line, in an object whose name has no extension
        source = put_manifest(ctx, "manifests/train", [classification("a.jpg", "cat")])
    else:
        source = put_manifest(ctx, "bad.manifest", content)
    done = settled(ctx, create(ctx, project(ctx), source=source))
    assert (done["Status"], done["StatusMessageCode"]) == ("CREATE_FAILED", "CLIENT_ERROR")
    assert done["StatusMessage"].startswith(problem) and "\n" not in done["StatusMessage"]
    if content is None:
        assert f"s3://{BUCKET}/missing.manifest" in done["StatusMessage"]


def test_a_few_unusable_lines_are_skipped_and_said(ctx):
    lines = [classification(f"{i}.jpg", "cat") for i in range(9)] + ["{not json"]  # 10%: within the 20%
    done = settled(ctx, create(ctx, project(ctx), source=put_manifest(ctx, "m.manifest", lines)))
    assert done["Status"] == "CREATE_COMPLETE" and done["DatasetStats"]["TotalEntries"] == 9
    assert "1 lines skipped" in done["StatusMessage"] and "line 10" in done["StatusMessage"]


def test_a_failed_dataset_lists_nothing_and_can_be_deleted(ctx):
    arn = create(ctx, project(ctx), source=put_manifest(ctx, "empty.manifest", []))
    assert settled(ctx, arn)["Status"] == "CREATE_FAILED"
    assert refusal(datasets.list_dataset_entries, ctx, {"DatasetArn": arn}) == "ResourceNotReadyException"
    answers("DeleteDataset", datasets.delete_dataset(ctx, {"DatasetArn": arn}))
    assert refusal(datasets.describe_dataset, ctx, {"DatasetArn": arn}) == "ResourceNotFoundException"


def test_a_dataset_copied_from_another_has_its_entries(ctx):
    lines = [classification("a.jpg", "cat"), detection("d.jpg", [(0, 0, 1, 1), (10, 10, 50, 50)])]
    first = create(ctx, project(ctx), source=put_manifest(ctx, "m.manifest", lines))
    settled(ctx, first)
    copy = create(ctx, project(ctx, "other"), "TEST", {"DatasetArn": first})
    assert settled(ctx, copy)["Status"] == "CREATE_COMPLETE"
    assert entries(ctx, copy) == entries(ctx, first)
    assert stats(ctx, copy) == stats(ctx, first) == (2, 2, 2, 1)


def test_create_dataset_refusals(ctx):
    arn = project(ctx)
    create(ctx, arn, "TRAIN")
    assert refusal(datasets.create_dataset, ctx, {"ProjectArn": arn, "DatasetType": "TRAIN"}) \
        == "ResourceAlreadyExistsException"
    unknown = arn.rsplit("/", 1)[0] + "/1"
    assert refusal(datasets.create_dataset, ctx, {"ProjectArn": unknown, "DatasetType": "TEST"}) \
        == "ResourceNotFoundException"
    both = {"DatasetArn": arn.replace("/bees/", "/bees/dataset/train/"), "GroundTruthManifest": {"S3Object": {
        "Bucket": BUCKET, "Name": "m.manifest"}}}
    versioned = {"GroundTruthManifest": {"S3Object": {"Bucket": BUCKET, "Name": "m.manifest", "Version": "3"}}}
    for source in (both, versioned, {"GroundTruthManifest": {"S3Object": {"Bucket": BUCKET}}}):
        assert refusal(datasets.create_dataset, ctx, {"ProjectArn": arn, "DatasetType": "TEST",
                                                      "DatasetSource": source}) == "InvalidParameterException"
    missing_copy = {"DatasetArn": arn.rsplit("/", 1)[0] + "/dataset/test/5"}
    assert refusal(datasets.create_dataset, ctx, {"ProjectArn": arn, "DatasetType": "TEST",
                                                  "DatasetSource": missing_copy}) == "ResourceNotFoundException"


def test_projects_list_their_datasets_and_refuse_deletion_until_they_are_gone(ctx):
    arn = project(ctx)
    train = create(ctx, arn)
    settled(ctx, train)
    [described] = projects.describe_projects(ctx, {})["ProjectDescriptions"]
    assert [(d["DatasetArn"], d["Status"]) for d in described["Datasets"]] == [(train, "CREATE_COMPLETE")]
    assert refusal(projects.delete_project, ctx, {"ProjectArn": arn}) == "ResourceInUseException"
    datasets.delete_dataset(ctx, {"DatasetArn": train})
    assert projects.delete_project(ctx, {"ProjectArn": arn}) == {"Status": "DELETING"}


# -- listing --------------------------------------------------------------------------------------------------


def test_entries_and_labels_page_with_a_next_token_absent_on_the_last_page(ctx):
    lines = [classification(f"{i}.jpg", f"label{i}") for i in range(5)]
    arn = create(ctx, project(ctx), source=put_manifest(ctx, "m.manifest", lines))
    settled(ctx, arn)
    for operation, call, key in (("ListDatasetEntries", datasets.list_dataset_entries, "DatasetEntries"),
                                 ("ListDatasetLabels", datasets.list_dataset_labels, "DatasetLabelDescriptions")):
        seen, token, sizes = [], None, []
        while True:
            page = answers(operation, call(ctx, {"DatasetArn": arn, "MaxResults": 2,
                                                 **({"NextToken": token} if token else {})}), absent={"NextToken"})
            sizes.append(len(page[key]))
            seen += page[key]
            token = page.get("NextToken")
            if token is None:
                break
        assert sizes == [2, 2, 1], operation
        assert len({json.dumps(item, sort_keys=True) for item in seen}) == 5
    assert refusal(datasets.list_dataset_entries, ctx, {"DatasetArn": arn, "NextToken": "forged.token"}) \
        == "InvalidPaginationTokenException"


def test_entry_filters(ctx):
    lines = [classification("cat-1.jpg", "cat"), classification("dog-1.jpg", "dog"),
             classification("new.jpg", None), detection("bee.jpg", [(10, 10, 50, 50)])]
    arn = create(ctx, project(ctx), source=put_manifest(ctx, "m.manifest", lines))
    settled(ctx, arn)

    def refs(**filters):
        return [e["source-ref"].rsplit("/", 1)[1] for e in entries(ctx, arn, **filters)]

    assert refs(ContainsLabels=["cat", "bee"]) == ["cat-1.jpg", "bee.jpg"]
    assert refs(Labeled=False) == ["new.jpg"]
    assert refs(Labeled=True, SourceRefContains="-1") == ["cat-1.jpg", "dog-1.jpg"]
    assert entries(ctx, arn, Labeled=False)[0]["cl-metadata"] == {"is_labeled": False}


def test_dataset_labels_count_entries_and_boxes(ctx):
    lines = [classification("a.jpg", "cat"), classification("b.jpg", "cat"),
             detection("c.jpg", [(10, 10, 50, 50), (100, 100, 50, 50)])]
    arn = create(ctx, project(ctx), source=put_manifest(ctx, "m.manifest", lines))
    settled(ctx, arn)
    labels = answers("ListDatasetLabels", datasets.list_dataset_labels(ctx, {"DatasetArn": arn}),
                     absent={"NextToken"})["DatasetLabelDescriptions"]
    assert labels == [{"LabelName": "bee", "LabelStats": {"EntryCount": 1, "BoundingBoxCount": 2}},
                      {"LabelName": "cat", "LabelStats": {"EntryCount": 2, "BoundingBoxCount": 0}}]


# -- UpdateDatasetEntries --------------------------------------------------------------------------------------


def test_update_replaces_by_source_ref_and_adds_the_rest_through_update_in_progress(paused):
    ctx, release = paused
    arn = create(ctx, project(ctx), source=put_manifest(ctx, "m.manifest", [
        classification("a.jpg", "cat"), classification("b.jpg", "cat")]))
    release.set()
    settled(ctx, arn)
    gate = threading.Event()
    ctx.submit(gate.wait)  # hold the next piece of work until the status has been seen
    answers("UpdateDatasetEntries", datasets.update_dataset_entries(ctx, {"DatasetArn": arn, "Changes": {
        "GroundTruth": blob([classification("b.jpg", "dog"), classification("c.jpg", "bird")])}}))
    assert datasets.describe_dataset(ctx, {"DatasetArn": arn})["DatasetDescription"]["Status"] == "UPDATE_IN_PROGRESS"
    gate.set()
    assert settled(ctx, arn)["Status"] == "UPDATE_COMPLETE"
    labels = {e["source-ref"].rsplit("/", 1)[1]: e["animal-metadata"]["class-name"] for e in entries(ctx, arn)}
    assert labels == {"a.jpg": "cat", "b.jpg": "dog", "c.jpg": "bird"}
    assert stats(ctx, arn) == (3, 3, 3, 0)


@pytest.mark.parametrize("changes", [
    "not base64!",
    base64.b64encode(b"\xff\xfe not utf-8").decode(),
    blob([classification("ok.jpg", "cat"), json.dumps({"animal": 1})]),  # a line without a source-ref
])
def test_a_refused_update_leaves_the_dataset_unchanged(ctx, changes):
    arn = create(ctx, project(ctx), source=put_manifest(ctx, "m.manifest", [classification("a.jpg", "cat")]))
    before = settled(ctx, arn)
    assert refusal(datasets.update_dataset_entries, ctx, {"DatasetArn": arn, "Changes": {"GroundTruth": changes}}) \
        == "InvalidParameterException"
    assert settled(ctx, arn) == before
    assert [e["source-ref"] for e in entries(ctx, arn)] == [f"s3://{BUCKET}/images/a.jpg"]


# -- DistributeDatasetEntries ----------------------------------------------------------------------------------


def test_distribute_moves_twenty_percent_of_each_label_to_the_empty_test_dataset(ctx):
    arn = project(ctx)
    lines = [classification(f"a{i}.jpg", "a") for i in range(10)] + \
        [classification(f"b{i}.jpg", "b") for i in range(5)]
    train = create(ctx, arn, "TRAIN", put_manifest(ctx, "m.manifest", lines))
    test = create(ctx, arn, "TEST")
    settled(ctx, train), settled(ctx, test)
    answers("DistributeDatasetEntries", datasets.distribute_dataset_entries(
        ctx, {"Datasets": [{"Arn": test}, {"Arn": train}]}))
    assert settled(ctx, train)["Status"] == settled(ctx, test)["Status"] == "UPDATE_COMPLETE"
    # by hand: 20% of label a's 10 entries is 2, of b's 5 is 1; the rest stays in training
    assert stats(ctx, train) == (12, 12, 2, 0) and stats(ctx, test) == (3, 3, 2, 0)
    moved = [e["animal-metadata"]["class-name"] for e in entries(ctx, test)]
    assert sorted(moved) == ["a", "a", "b"]
    kept = {e["source-ref"] for e in entries(ctx, train)}
    assert not kept & {e["source-ref"] for e in entries(ctx, test)}


def test_distribute_refusals(ctx):
    arn, other = project(ctx), project(ctx, "other")
    train = create(ctx, arn, "TRAIN", put_manifest(ctx, "m.manifest", [classification("a.jpg", "a")]))
    test = create(ctx, arn, "TEST", put_manifest(ctx, "t.manifest", [classification("t.jpg", "a")]))
    other_test = create(ctx, other, "TEST")
    for dataset in (train, test, other_test):
        settled(ctx, dataset)
    invalid = ([{"Arn": train}, {"Arn": test}],  # the test dataset is not empty
               [{"Arn": train}, {"Arn": other_test}],  # two projects
               [{"Arn": train}, {"Arn": train}])  # not a train and a test dataset
    for pair in invalid:
        assert refusal(datasets.distribute_dataset_entries, ctx, {"Datasets": pair}) == "InvalidParameterException"
    assert settled(ctx, train)["Status"] == settled(ctx, test)["Status"] == "CREATE_COMPLETE"


def test_distribute_waits_for_complete_datasets(paused):
    ctx, _ = paused
    arn = project(ctx)
    train, test = create(ctx, arn, "TRAIN"), create(ctx, arn, "TEST")
    assert refusal(datasets.distribute_dataset_entries, ctx, {"Datasets": [{"Arn": train}, {"Arn": test}]}) \
        == "ResourceNotReadyException"


# -- restart ----------------------------------------------------------------------------------------------------


def test_recover_redoes_the_work_a_killed_process_left_in_progress(tmp_path):
    ctx = make_ctx(tmp_path)
    put_manifest(ctx, "m.manifest", [classification("a.jpg", "cat"), classification("b.jpg", "dog")])
    arn = project(ctx)
    # what a killed process leaves: rows in progress with their work recorded, nothing done
    created = ctx.store.create_dataset(arn, "TRAIN", {"kind": "create", "manifest": f"s3://{BUCKET}/m.manifest"})
    other = project(ctx, "other")
    updated = ctx.store.create_dataset(other, "TRAIN")["arn"]
    ctx.store.set_dataset_status(updated, "CREATE_COMPLETE")
    ctx.store.set_dataset_status(updated, "UPDATE_IN_PROGRESS", request={
        "kind": "update", "lines": [classification("c.jpg", "bird")]})
    close(ctx)

    restarted = make_ctx(tmp_path)
    try:
        datasets.recover(restarted)
        assert settled(restarted, created["arn"])["Status"] == "CREATE_COMPLETE"
        assert stats(restarted, created["arn"]) == (2, 2, 2, 0)
        assert settled(restarted, updated)["Status"] == "UPDATE_COMPLETE"
        assert stats(restarted, updated) == (1, 1, 1, 0)
    finally:
        close(restarted)


def test_recover_redoes_a_distribution_and_finishes_a_deletion(tmp_path):
    ctx = make_ctx(tmp_path)
    arn = project(ctx)
    lines = [classification(f"a{i}.jpg", "a") for i in range(5)]
    train, test = create(ctx, arn, "TRAIN", put_manifest(ctx, "m.manifest", lines)), create(ctx, arn, "TEST")
    settled(ctx, train), settled(ctx, test)
    ctx.store.set_datasets_status([train, test], "UPDATE_IN_PROGRESS", requests={
        train: {"kind": "distribute", "test": test}, test: {"kind": "distributed", "train": train}})
    deleting = create(ctx, project(ctx, "other"))
    settled(ctx, deleting)
    ctx.store.set_dataset_status(deleting, "DELETE_IN_PROGRESS")
    close(ctx)

    restarted = make_ctx(tmp_path)
    try:
        datasets.recover(restarted)
        assert stats(restarted, train)[0] == 4 and stats(restarted, test)[0] == 1  # 20% of 5, by hand
        assert refusal(datasets.describe_dataset, restarted, {"DatasetArn": deleting}) == "ResourceNotFoundException"
    finally:
        close(restarted)


def test_work_with_no_record_fails_as_a_service_error_instead_of_hanging(tmp_path):
    ctx = make_ctx(tmp_path)
    arn = ctx.store.create_dataset(project(ctx), "TRAIN")["arn"]  # as a service.db from before `request`
    datasets.recover(ctx)
    try:
        done = settled(ctx, arn)
        assert (done["Status"], done["StatusMessageCode"]) == ("CREATE_FAILED", "SERVICE_ERROR")
    finally:
        close(ctx)


def test_a_service_db_from_before_the_request_column_is_migrated(tmp_path):
    folder = tmp_path / "service"
    folder.mkdir()
    with sqlite3.connect(folder / "service.db") as db:  # the first release's datasets table
        db.execute("CREATE TABLE datasets (arn TEXT PRIMARY KEY, project_arn TEXT NOT NULL, type TEXT NOT NULL, "
                   "status TEXT NOT NULL, status_message TEXT NOT NULL DEFAULT '', stats TEXT NOT NULL DEFAULT '{}', "
                   "created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL, UNIQUE (project_arn, type))")
        db.execute("INSERT INTO datasets VALUES ('arn:aws:rekognition:us-east-1:000000000000:project/p/dataset/"
                   "train/2', 'arn:aws:rekognition:us-east-1:000000000000:project/p/1', 'train', "
                   "'CREATE_COMPLETE', '', '{}', 2, 2)")
    ctx = make_ctx(tmp_path)
    try:
        row = ctx.store.dataset("arn:aws:rekognition:us-east-1:000000000000:project/p/dataset/train/2")
        assert (row["status_code"], row["request"]) == ("SUCCESS", None)
        description = datasets.describe_dataset(ctx, {"DatasetArn": row["arn"]})["DatasetDescription"]
        check_shape(description, "DatasetDescription")
    finally:
        close(ctx)


def test_operations_table_names_rekognitions_dataset_operations():
    assert set(datasets.OPERATIONS) == {"CreateDataset", "DescribeDataset", "ListDatasetEntries",
                                        "ListDatasetLabels", "UpdateDatasetEntries", "DistributeDatasetEntries",
                                        "DeleteDataset"}


# -- a manifest read through boto3 from a real S3 server on loopback --------------------------------------------


def test_manifest_read_through_boto3_from_an_s3_server(server, tmp_path):
    """test_service_s3's server: moto's S3 on loopback, named by AWS_ENDPOINT_URL_S3, with its bucket."""
    import boto3

    lines = [classification("a.jpg", "cat"), detection("d.jpg", [(0, 0, 1, 1), (10, 10, 50, 50)])]
    boto3.client("s3").put_object(Bucket=S3_BUCKET, Key="manifests/train 1.manifest", Body="\n".join(lines).encode())
    ctx = ServiceContext(tmp_path, Store(tmp_path), S3Objects.from_environment())
    try:
        arn = create(ctx, project(ctx), source={"GroundTruthManifest": {"S3Object": {
            "Bucket": S3_BUCKET, "Name": "manifests/train 1.manifest"}}})
        assert settled(ctx, arn)["Status"] == "CREATE_COMPLETE"
        assert stats(ctx, arn) == (2, 2, 2, 1)
        missing = create(ctx, project(ctx, "other"), source={"GroundTruthManifest": {"S3Object": {
            "Bucket": S3_BUCKET, "Name": "manifests/absent.manifest"}}})
        failed = settled(ctx, missing)
        assert (failed["Status"], failed["StatusMessageCode"]) == ("CREATE_FAILED", "CLIENT_ERROR")
        assert "NoSuchKey" in failed["StatusMessage"]
    finally:
        close(ctx)
