"""The local service's project and tag operations (issue 27), called in process: answers checked against
botocore's Rekognition output shapes (the contract), error codes as Rekognition's, recovery after a kill.
"""

from __future__ import annotations

import time

import pytest

from helpers.service_ops import MODEL, answers, check_shape, refusal

from edgelabels.service import projects
from edgelabels.service.context import ServiceContext
from edgelabels.service.s3 import S3Objects
from edgelabels.service.store import Store

@pytest.fixture
def ctx(tmp_path):
    (tmp_path / "s3").mkdir()
    context = ServiceContext(tmp_path / "service", Store(tmp_path / "service"), S3Objects(root=tmp_path / "s3"))
    yield context
    context.close()


def create(ctx, name: str, **params) -> str:
    return answers("CreateProject", projects.create_project(ctx, {"ProjectName": name, **params}))["ProjectArn"]


def test_created_project_is_described_with_every_member_of_the_shape(ctx):
    before = time.time()
    arn = create(ctx, "bees")
    assert arn.startswith("arn:aws:rekognition:us-east-1:000000000000:project/bees/")
    [project] = answers("DescribeProjects", projects.describe_projects(ctx, {}), absent={"NextToken"})[
        "ProjectDescriptions"]
    assert project["ProjectArn"] == arn and project["Status"] == "CREATED" and project["Datasets"] == []
    assert before - 0.01 <= project["CreationTimestamp"] <= time.time()
    assert int(arn.rsplit("/", 1)[1]) == round(project["CreationTimestamp"] * 1000)  # the ARN's creation ms
    assert (project["Feature"], project["AutoUpdate"]) == ("CUSTOM_LABELS", "DISABLED")


def test_a_taken_project_name_is_resource_in_use(ctx):
    create(ctx, "bees")
    assert refusal(projects.create_project, ctx, {"ProjectName": "bees"}) == "ResourceInUseException"


def test_other_features_and_auto_update_are_refused(ctx):
    assert refusal(projects.create_project, ctx, {"ProjectName": "m", "Feature": "CONTENT_MODERATION"}) \
        == "InvalidParameterException"
    assert refusal(projects.create_project, ctx, {"ProjectName": "m", "AutoUpdate": "ENABLED"}) \
        == "InvalidParameterException"
    assert projects.describe_projects(ctx, {})["ProjectDescriptions"] == []  # nothing was created


def test_describe_projects_pages_with_a_next_token_absent_on_the_last_page(ctx):
    arns = [create(ctx, name) for name in ("a", "b", "c")]
    first = answers("DescribeProjects", projects.describe_projects(ctx, {"MaxResults": 2}))
    assert [p["ProjectArn"] for p in first["ProjectDescriptions"]] == arns[:2]
    last = projects.describe_projects(ctx, {"MaxResults": 2, "NextToken": first["NextToken"]})
    assert [p["ProjectArn"] for p in last["ProjectDescriptions"]] == arns[2:]
    assert "NextToken" not in last
    # a token is good only for the request it was issued for
    assert refusal(projects.describe_projects, ctx, {"ProjectNames": ["a"], "NextToken": first["NextToken"]}) \
        == "InvalidPaginationTokenException"


def test_project_names_and_features_filter_the_listing(ctx):
    create(ctx, "a")
    b = create(ctx, "b")
    named = projects.describe_projects(ctx, {"ProjectNames": ["b", "missing"]})["ProjectDescriptions"]
    assert [p["ProjectArn"] for p in named] == [b]
    assert projects.describe_projects(ctx, {"Features": ["CONTENT_MODERATION"]})["ProjectDescriptions"] == []
    assert len(projects.describe_projects(ctx, {"Features": ["CUSTOM_LABELS"]})["ProjectDescriptions"]) == 2


def test_a_projects_datasets_are_listed_with_their_six_fields(ctx):
    arn = create(ctx, "bees")
    train = ctx.store.create_dataset(arn, "TRAIN")["arn"]
    ctx.store.set_dataset_status(train, "CREATE_FAILED", "ERROR_EMPTY_MANIFEST: no lines", code="CLIENT_ERROR")
    [project] = projects.describe_projects(ctx, {})["ProjectDescriptions"]
    [dataset] = project["Datasets"]
    check_shape(dataset, "DatasetMetadata")
    assert dataset["DatasetArn"] == train and dataset["DatasetType"] == "TRAIN"
    assert (dataset["Status"], dataset["StatusMessageCode"]) == ("CREATE_FAILED", "CLIENT_ERROR")
    assert dataset["StatusMessage"] == "ERROR_EMPTY_MANIFEST: no lines"


def test_delete_project_answers_deleting_and_the_project_is_gone(ctx):
    arn = create(ctx, "bees", Tags={"team": "x"})
    assert answers("DeleteProject", projects.delete_project(ctx, {"ProjectArn": arn})) == {"Status": "DELETING"}
    assert projects.describe_projects(ctx, {})["ProjectDescriptions"] == []
    assert refusal(projects.delete_project, ctx, {"ProjectArn": arn}) == "ResourceNotFoundException"
    assert refusal(projects.list_tags_for_resource, ctx, {"ResourceArn": arn}) == "ResourceNotFoundException"
    assert create(ctx, "bees") != arn  # the name is free again, under a new ARN


def test_delete_project_is_refused_while_it_has_a_dataset_and_the_project_stays(ctx):
    arn = create(ctx, "bees")
    ctx.store.create_dataset(arn, "TRAIN")
    assert refusal(projects.delete_project, ctx, {"ProjectArn": arn}) == "ResourceInUseException"
    assert projects.describe_projects(ctx, {})["ProjectDescriptions"][0]["Status"] == "CREATED"


def test_delete_project_of_a_malformed_arn_is_invalid_parameter(ctx):
    assert refusal(projects.delete_project, ctx, {"ProjectArn": "arn:aws:s3:::bucket"}) == "InvalidParameterException"


def test_tags_are_set_listed_replaced_and_removed(ctx):
    arn = create(ctx, "bees", Tags={"team": "vision", "cost": "1"})
    assert answers("ListTagsForResource", projects.list_tags_for_resource(ctx, {"ResourceArn": arn})) == {
        "Tags": {"team": "vision", "cost": "1"}}
    answers("TagResource", projects.tag_resource(ctx, {"ResourceArn": arn, "Tags": {"team": "edge", "new": ""}}))
    answers("UntagResource", projects.untag_resource(ctx, {"ResourceArn": arn, "TagKeys": ["cost", "absent"]}))
    assert projects.list_tags_for_resource(ctx, {"ResourceArn": arn})["Tags"] == {"team": "edge", "new": ""}


def test_datasets_and_versions_take_tags_too(ctx):
    project = create(ctx, "bees")
    for arn in (ctx.store.create_dataset(project, "TEST")["arn"], ctx.store.create_version(project, "v1")["arn"]):
        projects.tag_resource(ctx, {"ResourceArn": arn, "Tags": {"k": "v"}})
        assert projects.list_tags_for_resource(ctx, {"ResourceArn": arn}) == {"Tags": {"k": "v"}}


def test_tags_of_an_unknown_resource_are_not_found_and_a_non_arn_is_invalid(ctx):
    project = create(ctx, "bees")
    unknown = project.rsplit("/", 1)[0] + "/version/v9/123"
    for call, params in ((projects.tag_resource, {"Tags": {"k": "v"}}), (projects.untag_resource, {"TagKeys": ["k"]}),
                         (projects.list_tags_for_resource, {})):
        assert refusal(call, ctx, {"ResourceArn": unknown, **params}) == "ResourceNotFoundException"
        assert refusal(call, ctx, {"ResourceArn": "not-an-arn", **params}) == "InvalidParameterException"


def test_aws_prefixed_tag_keys_are_reserved(ctx):
    arn = create(ctx, "bees")
    assert refusal(projects.tag_resource, ctx, {"ResourceArn": arn, "Tags": {"aws:owner": "x"}}) \
        == "InvalidParameterException"
    assert refusal(projects.untag_resource, ctx, {"ResourceArn": arn, "TagKeys": ["aws:owner"]}) \
        == "InvalidParameterException"
    assert refusal(projects.create_project, ctx, {"ProjectName": "p", "Tags": {"aws:x": "1"}}) \
        == "InvalidParameterException"


def test_fifty_tags_per_resource_at_most(ctx):
    fifty = {f"key{i}": str(i) for i in range(50)}
    arn = create(ctx, "bees", Tags=fifty)
    projects.tag_resource(ctx, {"ResourceArn": arn, "Tags": {"key0": "replaced"}})  # a replacement adds none
    assert refusal(projects.tag_resource, ctx, {"ResourceArn": arn, "Tags": {"key50": "x"}}) \
        == "ServiceQuotaExceededException"
    assert len(projects.list_tags_for_resource(ctx, {"ResourceArn": arn})["Tags"]) == 50
    assert refusal(projects.create_project, ctx, {"ProjectName": "p", "Tags": {**fifty, "one-more": ""}}) \
        == "LimitExceededException"


def test_tag_key_and_value_lengths_follow_aws(ctx):
    arn = create(ctx, "bees")
    projects.tag_resource(ctx, {"ResourceArn": arn, "Tags": {"k" * 128: "v" * 256}})
    assert refusal(projects.tag_resource, ctx, {"ResourceArn": arn, "Tags": {"k" * 129: ""}}) \
        == "InvalidParameterException"
    assert refusal(projects.tag_resource, ctx, {"ResourceArn": arn, "Tags": {"k": "v" * 257}}) \
        == "InvalidParameterException"


def test_recover_finishes_a_creation_and_a_deletion_a_killed_process_left(tmp_path):
    store = Store(tmp_path)
    creating = store.create_project("half-created")["arn"]  # killed before it became CREATED
    deleting = store.create_project("half-deleted", status="CREATED")["arn"]
    store.start_project_delete(deleting)  # killed before the row was removed
    store.close()
    ctx = ServiceContext(tmp_path, Store(tmp_path), S3Objects(root=tmp_path))  # the restarted service
    try:
        projects.recover(ctx)
        described = projects.describe_projects(ctx, {})["ProjectDescriptions"]
        assert [(p["ProjectArn"], p["Status"]) for p in described] == [(creating, "CREATED")]
    finally:
        ctx.close()


def test_operations_table_names_rekognitions_operations():
    assert set(projects.OPERATIONS) <= set(MODEL["operations"])
    assert set(projects.OPERATIONS) == {"CreateProject", "DescribeProjects", "DeleteProject", "TagResource",
                                        "UntagResource", "ListTagsForResource"}


def test_the_shape_check_catches_a_missing_member_a_wrong_type_and_an_unknown_member():
    good = {"ProjectArn": "arn:aws:rekognition:us-east-1:000000000000:project/p/1", "CreationTimestamp": 1.5,
            "Status": "CREATED", "Datasets": [], "Feature": "CUSTOM_LABELS", "AutoUpdate": "DISABLED"}
    check_shape(good, "ProjectDescription")
    for broken in ({k: v for k, v in good.items() if k != "Datasets"}, {**good, "Status": "READY"},
                   {**good, "CreationTimestamp": "2024-01-01"}, {**good, "Extra": 1}):
        with pytest.raises(AssertionError):
            check_shape(broken, "ProjectDescription")
