"""The local Rekognition service's state: ARNs as AWS spells them, and the SQLite store (issue 27).

Name rules are read from botocore's Rekognition service model (the contract), never restated here.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading

import pytest
from botocore.loaders import Loader

from edgelabels.service.arns import (
    NAME_CHARS, NAME_MAX, NAME_MIN, ArnError, DatasetArn, ProjectArn, VersionArn, parse_arn,
    parse_dataset_arn, parse_project_arn, parse_version_arn, valid_name,
)
from edgelabels.service.store import (
    DATASET_TRANSITIONS, PROJECT_TRANSITIONS, VERSION_TRANSITIONS, AlreadyExists, InUse,
    InvalidPaginationToken, NotFound, Store, StoreError, TransitionRefused,
)


@pytest.fixture(scope="module")
def shapes():
    return Loader().load_service_model("rekognition", "service-2")["shapes"]


def botocore_accepts(shape: dict, value: str) -> bool:
    """What the service model says about a string: its pattern, min and max."""
    return (shape.get("min", 0) <= len(value) <= shape.get("max", 10**9)
            and re.search(shape["pattern"], value) is not None
            and (shape["pattern"].startswith("(^") or re.fullmatch(shape["pattern"], value) is not None))


NAMES = ["a", "bees", "my-project_2.v1", "A" * 255, "x.y-z_0"]
BAD_NAMES = ["", "A" * 256, "has space", "slash/inside", "colon:", "ünï", "semi;colon", "star*"]


def test_name_rule_is_botocores_project_and_version_name(shapes):
    for shape in ("ProjectName", "VersionName"):
        assert shapes[shape]["pattern"] == NAME_CHARS + "+"
        assert (shapes[shape]["min"], shapes[shape]["max"]) == (NAME_MIN, NAME_MAX)
        for name in NAMES + BAD_NAMES:
            assert valid_name(name) == botocore_accepts(shapes[shape], name), name
    assert [t.lower() for t in shapes["DatasetType"]["enum"]] == ["train", "test"]


@pytest.mark.parametrize("name", NAMES)
def test_arns_round_trip_and_match_botocores_arn_patterns(shapes, name):
    project = ProjectArn("eu-west-1", "123456789012", name, 1700000000123)
    assert str(project) == f"arn:aws:rekognition:eu-west-1:123456789012:project/{name}/1700000000123"
    assert parse_project_arn(str(project)) == project == parse_arn(str(project))
    assert botocore_accepts(shapes["ProjectArn"], str(project))
    for kind in ("train", "test"):
        dataset = DatasetArn("us-east-1", "000000000000", name, kind, 17)
        assert str(dataset) == f"arn:aws:rekognition:us-east-1:000000000000:project/{name}/dataset/{kind}/17"
        assert parse_dataset_arn(str(dataset)) == dataset == parse_arn(str(dataset))
        assert botocore_accepts(shapes["DatasetArn"], str(dataset))
    version = VersionArn("us-east-1", "000000000000", "p", name, 42)
    assert str(version) == f"arn:aws:rekognition:us-east-1:000000000000:project/p/version/{name}/42"
    assert parse_version_arn(str(version)) == version == parse_arn(str(version))
    assert botocore_accepts(shapes["ProjectVersionArn"], str(version))
    assert str(version).split("/")[1] == "p" and str(version).split("/")[3] == name  # how scripts split them


BAD_ARNS = [
    "",
    "arn:aws:rekognition:us-east-1:000000000000:project/p",  # no creation time
    "arn:aws:rekognition:us-east-1:00000000000:project/p/1",  # 11-digit account
    "arn:aws:s3:us-east-1:000000000000:project/p/1",  # another service
    "arn:aws:rekognition:us-east-1:000000000000:project/p q/1",  # space in the name
    "arn:aws:rekognition:us-east-1:000000000000:project/p/1x",
    "arn:aws:rekognition:us-east-1:000000000000:project/p/dataset/validation/1",
    "arn:aws:rekognition:us-east-1:000000000000:project/p/dataset/TRAIN/1",
    "arn:aws:rekognition:us-east-1:000000000000:project/p/version//1",
    "arn:aws:rekognition:us-east-1:000000000000:project/p/version/v/1/extra",
    "arn:aws:rekognition:US-EAST-1:000000000000:project/p/1",
    f"arn:aws:rekognition:us-east-1:000000000000:project/{'a' * 256}/1",
    " arn:aws:rekognition:us-east-1:000000000000:project/p/1",
    "arn:aws:rekognition:us-east-1:000000000000:project/p/1\n",
]


@pytest.mark.parametrize("arn", BAD_ARNS)
def test_parsers_refuse_what_is_not_an_aws_arn(shapes, arn):
    with pytest.raises(ArnError):
        parse_arn(arn)
    # and botocore's patterns agree for each kind this could have been
    for parse, shape in ((parse_project_arn, "ProjectArn"), (parse_dataset_arn, "DatasetArn"),
                         (parse_version_arn, "ProjectVersionArn")):
        with pytest.raises(ArnError):
            parse(arn)
        if "\n" not in arn:  # botocore's `$` also matches before a final newline; ours refuses it
            assert not botocore_accepts(shapes[shape], arn)


def test_arn_constructors_refuse_bad_parts():
    with pytest.raises(ArnError):
        ProjectArn("us-east-1", "000000000000", "bad name", 1)
    with pytest.raises(ArnError):
        DatasetArn("us-east-1", "000000000000", "p", "validation", 1)
    with pytest.raises(ArnError):
        VersionArn("us-east-1", "12", "p", "v", 1)
    with pytest.raises(ArnError):
        parse_version_arn(str(ProjectArn("us-east-1", "000000000000", "p", 1)))  # right string, wrong kind


# -- the store ---------------------------------------------------------------------------------------

@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "svc") as opened:
        yield opened


def created_project(store, name="bees"):
    project = store.create_project(name)
    return store.set_project_status(project["arn"], "CREATED")


def test_project_names_are_unique_and_arns_are_aws_shaped(store):
    project = created_project(store)
    assert parse_project_arn(project["arn"]).project == "bees"
    assert project["status"] == "CREATED"
    with pytest.raises(AlreadyExists) as error:
        store.create_project("bees")
    assert error.value.code == "ResourceInUseException"
    with pytest.raises(StoreError):
        store.create_project("no spaces allowed")


def test_unknown_arns_are_not_found(store):
    ghost = "arn:aws:rekognition:us-east-1:000000000000:project/ghost/1"
    for call in (lambda: store.project(ghost), lambda: store.set_project_status(ghost, "CREATED"),
                 lambda: store.version(ghost.replace("/1", "/version/v/1")),
                 lambda: store.dataset(ghost.replace("/1", "/dataset/train/1")),
                 lambda: store.tags(ghost), lambda: store.versions(ghost)):
        with pytest.raises(NotFound) as error:
            call()
        assert error.value.code == "ResourceNotFoundException"


def walk(machine: dict, move, start: str):
    """Every allowed transition succeeds and every other one is refused, from each reachable status."""
    for current in machine:
        for wanted in machine:
            arn = start(current)
            if wanted in machine[current]:
                assert move(arn, wanted)["status"] == wanted
            else:
                with pytest.raises(TransitionRefused) as error:
                    move(arn, wanted)
                assert error.value.code in ("ResourceInUseException", "ResourceNotReadyException")


def test_project_status_machine(store):
    assert PROJECT_TRANSITIONS["CREATING"] >= {"CREATED"} and PROJECT_TRANSITIONS["CREATED"] == {"DELETING"}
    counter = iter(range(10**6))

    def start(status):
        project = store.create_project(f"p{next(counter)}")
        for step in {"CREATING": [], "CREATED": ["CREATED"], "DELETING": ["CREATED", "DELETING"]}[status]:
            store.set_project_status(project["arn"], step)
        return project["arn"]

    walk(PROJECT_TRANSITIONS, store.set_project_status, start)


# how each status is reached from the first one
DATASET_PATHS = {
    "CREATE_IN_PROGRESS": [], "CREATE_COMPLETE": ["CREATE_COMPLETE"], "CREATE_FAILED": ["CREATE_FAILED"],
    "UPDATE_IN_PROGRESS": ["CREATE_COMPLETE", "UPDATE_IN_PROGRESS"],
    "UPDATE_COMPLETE": ["CREATE_COMPLETE", "UPDATE_IN_PROGRESS", "UPDATE_COMPLETE"],
    "UPDATE_FAILED": ["CREATE_COMPLETE", "UPDATE_IN_PROGRESS", "UPDATE_FAILED"],
    "DELETE_IN_PROGRESS": ["CREATE_COMPLETE", "DELETE_IN_PROGRESS"],
}
VERSION_PATHS = {
    "TRAINING_IN_PROGRESS": [], "TRAINING_COMPLETED": ["TRAINING_COMPLETED"], "TRAINING_FAILED": ["TRAINING_FAILED"],
    "STARTING": ["TRAINING_COMPLETED", "STARTING"], "RUNNING": ["TRAINING_COMPLETED", "STARTING", "RUNNING"],
    "FAILED": ["TRAINING_COMPLETED", "STARTING", "FAILED"],
    "STOPPING": ["TRAINING_COMPLETED", "STARTING", "RUNNING", "STOPPING"],
    "STOPPED": ["TRAINING_COMPLETED", "STARTING", "RUNNING", "STOPPING", "STOPPED"],
    "DELETING": ["TRAINING_COMPLETED", "DELETING"],
}


def test_dataset_status_machine(store):
    assert set(DATASET_PATHS) == set(DATASET_TRANSITIONS)
    counter = iter(range(10**6))

    def start(status):
        project = created_project(store, f"d{next(counter)}")
        dataset = store.create_dataset(project["arn"], "TRAIN")
        assert dataset["status"] == "CREATE_IN_PROGRESS" and parse_dataset_arn(dataset["arn"]).dataset_type == "train"
        for step in DATASET_PATHS[status]:
            store.set_dataset_status(dataset["arn"], step)
        return dataset["arn"]

    walk(DATASET_TRANSITIONS, store.set_dataset_status, start)


def test_version_status_machine_and_busy_versus_not_ready_codes(store):
    assert set(VERSION_PATHS) == set(VERSION_TRANSITIONS)
    project = created_project(store)
    counter = iter(range(10**6))

    def start(status):
        version = store.create_version(project["arn"], f"v{next(counter)}", enqueue=False)
        for step in VERSION_PATHS[status]:
            store.set_version_status(version["arn"], step)
        return version["arn"]

    walk(VERSION_TRANSITIONS, store.set_version_status, start)
    training = start("TRAINING_IN_PROGRESS")
    with pytest.raises(TransitionRefused) as busy:  # start while training
        store.set_version_status(training, "STARTING")
    assert busy.value.code == "ResourceInUseException"
    stopped = start("STOPPED")
    with pytest.raises(TransitionRefused) as not_ready:  # stop what is not running
        store.set_version_status(stopped, "STOPPING")
    assert not_ready.value.code == "ResourceNotReadyException"


def test_a_failed_status_change_leaves_the_row_as_it_was(store):
    project = created_project(store)
    version = store.create_version(project["arn"], "v1", enqueue=False)
    with pytest.raises(StoreError):
        store.set_version_status(version["arn"], "TRAINING_COMPLETED", "done", run_dir="/r", no_such_field=1)
    after = store.version(version["arn"])
    assert (after["status"], after["status_message"], after["run_dir"]) == ("TRAINING_IN_PROGRESS", "", None)
    done = store.set_version_status(version["arn"], "TRAINING_COMPLETED", "", run_dir="/r", export_dir="/e",
                                    details={"F1Score": 0.9}, training_end_ms=5)
    assert (done["run_dir"], done["export_dir"], done["training_end_ms"]) == ("/r", "/e", 5)
    assert done["details"] == {"F1Score": 0.9}


def test_version_names_are_unique_per_project_only(store):
    bees = created_project(store, "bees")
    wasps = created_project(store, "wasps")
    store.create_version(bees["arn"], "v1", output_config={"S3Bucket": "b", "S3KeyPrefix": "out/"})
    store.create_version(wasps["arn"], "v1")
    with pytest.raises(AlreadyExists):
        store.create_version(bees["arn"], "v1")
    (only,), _ = store.versions(bees["arn"])
    assert only["output_config"] == {"S3Bucket": "b", "S3KeyPrefix": "out/"}
    assert parse_version_arn(only["arn"]).version == "v1"


def test_deleting_a_project_is_refused_while_versions_or_datasets_remain(store):
    project = created_project(store)
    version = store.create_version(project["arn"], "v1")
    dataset = store.create_dataset(project["arn"], "test")
    store.set_project_status(project["arn"], "DELETING")
    with pytest.raises(InUse):
        store.delete_project(project["arn"])
    store.set_version_status(version["arn"], "TRAINING_FAILED", "no images")
    store.set_version_status(version["arn"], "DELETING")
    store.delete_version(version["arn"])
    assert store.jobs() == [] and store.versions(project["arn"]) == ([], None)
    store.set_dataset_status(dataset["arn"], "CREATE_FAILED", "manifest unreadable")
    store.set_dataset_status(dataset["arn"], "DELETE_IN_PROGRESS")
    store.delete_dataset(dataset["arn"])
    store.delete_project(project["arn"])
    with pytest.raises(NotFound):
        store.project(project["arn"])


def test_entries_replace_by_source_ref_and_filter(store):
    project = created_project(store)
    dataset = store.create_dataset(project["arn"], "train")
    lines = [(json.dumps({"source-ref": f"s3://b/{i}.jpg", "label": i % 2}), ["bad box"] if i == 3 else [])
             for i in range(5)]
    assert store.put_entries(dataset["arn"], lines) == 5
    assert store.put_entries(dataset["arn"], [(json.dumps({"source-ref": "s3://b/1.jpg", "label": 9}), [])]) == 5
    rows, token = store.entries(dataset["arn"])
    assert token is None and [r["source_ref"] for r in rows] == [f"s3://b/{i}.jpg" for i in range(5)]
    assert json.loads(rows[1]["line"])["label"] == 9
    assert [r["source_ref"] for r in store.entries(dataset["arn"], has_errors=True)[0]] == ["s3://b/3.jpg"]
    assert len(store.entries(dataset["arn"], has_errors=False)[0]) == 4
    assert [r["source_ref"] for r in store.entries(dataset["arn"], source_ref_contains="/2.")[0]] == ["s3://b/2.jpg"]
    with pytest.raises(StoreError):
        store.put_entries(dataset["arn"], [(json.dumps({"label": 1}), [])])
    stats = {"LabeledEntries": 5, "TotalEntries": 5, "TotalLabels": 2, "ErrorEntries": 1}
    assert store.set_dataset_status(dataset["arn"], "CREATE_COMPLETE", "", stats=stats)["stats"] == stats


def test_paging_ends_without_a_token_and_refuses_forged_ones(store):
    for i in range(7):
        created_project(store, f"p{i}")
    names, token, pages = [], None, 0
    while True:
        rows, token = store.projects(max_results=3, next_token=token)
        names += [r["name"] for r in rows]
        pages += 1
        if token is None:
            break
        assert len(token) <= 255  # botocore's PaginationToken max
    assert names == [f"p{i}" for i in range(7)] and pages == 3
    _, exactly = store.projects(max_results=7)
    assert exactly is None  # the last page carries no token even when it is full
    _, real = store.projects(max_results=2)
    payload, signature = real.split(".")
    for forged in ("x", "", real + "0", payload + "." + "0" * len(signature), real.replace(".", ""),
                   store._token("projects:null", 2).replace(payload[:3], "AAA")):
        with pytest.raises(InvalidPaginationToken) as error:
            store.projects(max_results=2, next_token=forged)
        assert error.value.code == "InvalidPaginationTokenException"
    project = store.projects(names=["p0"])[0][0]
    with pytest.raises(InvalidPaginationToken):  # issued for another listing
        store.versions(project["arn"], next_token=real)


def test_tokens_and_state_survive_a_second_store_on_the_same_directory(tmp_path):
    first = Store(tmp_path)
    assert first._db().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    project = created_project(first)
    version = first.create_version(project["arn"], "v1", tags={"team": "bees"})
    for i in range(3):
        first.create_version(project["arn"], f"w{i}")
    _, token = first.versions(project["arn"], max_results=2)
    second = Store(tmp_path)
    assert second.project(project["arn"])["status"] == "CREATED"
    assert second.tags(version["arn"]) == {"team": "bees"}
    rows, last = second.versions(project["arn"], max_results=2, next_token=token)
    assert len(rows) == 2 and last is None
    second.set_version_status(version["arn"], "TRAINING_COMPLETED")
    assert first.version(version["arn"])["status"] == "TRAINING_COMPLETED"  # and the other way round
    first.close()
    second.close()
    assert (tmp_path / "service.db").is_file()


def test_tags_add_replace_remove_and_need_a_resource(store):
    project = created_project(store)
    store.tag(project["arn"], {"a": "1", "b": "2"})
    store.tag(project["arn"], {"a": "3"})
    store.untag(project["arn"], ["b"])
    assert store.tags(project["arn"]) == {"a": "3"}
    with pytest.raises(NotFound):
        store.tag(project["arn"].replace("/bees/", "/wasps/"), {"a": "1"})
    with pytest.raises(StoreError) as error:
        store.tag("not-an-arn", {"a": "1"})
    assert error.value.code == "InvalidParameterException"


def test_eight_threads_creating_versions_get_unique_consistent_rows(tmp_path):
    store = Store(tmp_path)
    project = created_project(store)
    errors, won = [], []
    barrier = threading.Barrier(8)

    def create(thread: int):
        barrier.wait()
        for i in range(10):
            store.create_version(project["arn"], f"t{thread}-v{i}")
            try:  # every thread also races for one shared name: exactly one wins
                store.create_version(project["arn"], "shared")
                won.append(thread)
            except AlreadyExists:
                pass
            except Exception as error:  # noqa: BLE001 -- collected and asserted below
                errors.append(error)

    threads = [threading.Thread(target=create, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(won) == 1
    rows, token = store.versions(project["arn"], max_results=1000)
    assert token is None and len(rows) == 81
    assert len({r["arn"] for r in rows}) == len({r["name"] for r in rows}) == 81
    assert all(parse_version_arn(r["arn"]).version == r["name"] for r in rows)
    jobs = store.jobs()
    assert len(jobs) == 81 and {j["version_arn"] for j in jobs} == {r["arn"] for r in rows}
    store.close()


def test_jobs_queue_in_order_and_a_running_job_of_a_reopened_store_is_resumed(tmp_path):
    first = Store(tmp_path)
    project = created_project(first)
    v1 = first.create_version(project["arn"], "v1")
    v2 = first.create_version(project["arn"], "v2")
    job = first.claim_next()
    assert (job["version_arn"], job["state"], job["attempts"]) == (v1["arn"], "running", 1)
    assert first.jobs_to_resume() == []  # its own running job is not left behind
    first.close()  # the process dies here

    second = Store(tmp_path)
    (left,) = second.jobs_to_resume()
    assert left["id"] == job["id"] and left["version_arn"] == v1["arn"]
    resumed = second.resume(left["id"])
    assert (resumed["attempts"], resumed["owner"]) == (2, second.owner)
    assert second.jobs_to_resume() == []
    with pytest.raises(InUse):
        second.resume(left["id"])
    done = second.finish_job(job["id"], "done", version_status="TRAINING_COMPLETED", run_dir="/runs/v1")
    assert done["state"] == "done"
    assert second.version(v1["arn"])["status"] == "TRAINING_COMPLETED"
    assert second.version(v1["arn"])["run_dir"] == "/runs/v1"
    with pytest.raises(TransitionRefused):
        second.finish_job(job["id"], "failed")
    following = second.claim_next()
    assert following["version_arn"] == v2["arn"]
    second.finish_job(following["id"], "failed", "no labels in the training dataset", version_status="TRAINING_FAILED")
    failed = second.version(v2["arn"])
    assert (failed["status"], failed["status_message"]) == ("TRAINING_FAILED", "no labels in the training dataset")
    assert second.claim_next() is None
    second.close()


def test_a_job_finishing_against_a_refused_version_transition_changes_nothing(store):
    project = created_project(store)
    version = store.create_version(project["arn"], "v1")
    job = store.claim_next()
    store.set_version_status(version["arn"], "TRAINING_FAILED", "dataset deleted")
    with pytest.raises(TransitionRefused):
        store.finish_job(job["id"], "done", version_status="TRAINING_COMPLETED")
    assert store.job(job["id"])["state"] == "running"  # one transaction: the job did not end either
    assert store.version(version["arn"])["status_message"] == "dataset deleted"


def test_a_resource_deleted_and_created_again_gets_a_new_arn(store):
    arns = set()
    for _ in range(20):  # fast enough that several fall in the same millisecond
        project = created_project(store, "again")
        arns.add(project["arn"])
        store.set_project_status(project["arn"], "DELETING")
        store.delete_project(project["arn"])
    assert len(arns) == 20


WRITER = """
import sys
from edgelabels.service.store import AlreadyExists, Store
store = Store(sys.argv[1])
project = store.projects(names=["bees"])[0][0]["arn"]
won = 0
for i in range(15):
    store.create_version(project, f"{sys.argv[2]}-{i}")
    try:
        store.create_version(project, "shared")
        won += 1
    except AlreadyExists:
        pass
print(won)
"""


def test_two_processes_on_one_directory_share_one_consistent_state(tmp_path):
    store = Store(tmp_path)
    project = created_project(store)
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), name], stdout=subprocess.PIPE, text=True)
               for name in ("a", "b")]
    wins = [int(w.communicate(timeout=60)[0]) for w in writers]
    assert [w.returncode for w in writers] == [0, 0] and sum(wins) == 1
    rows, _ = store.versions(project["arn"], max_results=1000)
    assert len(rows) == len({r["arn"] for r in rows}) == 31
    store.close()
