"""Rekognition's project and tag operations: CreateProject, DescribeProjects, DeleteProject, TagResource,
UntagResource, ListTagsForResource (issue 27).

A project is created CREATED at once (Rekognition's CREATING lasts moments; a client polling sees CREATED) and
deleted at once: DeleteProject answers DELETING and the project is gone from DescribeProjects right after. It is
refused (ResourceInUseException) while the project still has datasets or versions, as Rekognition's API does
(only its console deletes them for you). This service trains Custom Labels models: every project is
Feature CUSTOM_LABELS, and a request for another feature is refused.

Tags follow AWS's rules (Tagging AWS resources): a key is 1-128 characters, a value 0-256, the `aws:` prefix is
reserved, and a resource holds at most 50 tags (past that: ServiceQuotaExceededException for TagResource,
LimitExceededException for the create calls, the codes botocore's model lists for each).
"""

from __future__ import annotations

from edgelabels.serve.api_errors import ApiError
from edgelabels.service.arns import parse_arn, parse_project_arn
from edgelabels.service.context import ServiceContext
from edgelabels.service.store import NotFound

FEATURE = "CUSTOM_LABELS"
MAX_TAGS = 50
TAG_KEY_MAX, TAG_VALUE_MAX = 128, 256
RESERVED_TAG_PREFIX = "aws:"
INVALID = "InvalidParameterException"

# What DescribeProjects / DescribeDataset say when a status carries no message of its own (StatusMessage is
# always a string for clients that print it).
DATASET_MESSAGES = {
    "CREATE_IN_PROGRESS": "The dataset is being created.",
    "CREATE_COMPLETE": "The dataset was successfully created.",
    "CREATE_FAILED": "The dataset could not be created.",
    "UPDATE_IN_PROGRESS": "The dataset is being updated.",
    "UPDATE_COMPLETE": "The dataset was successfully updated.",
    "UPDATE_FAILED": "The dataset could not be updated.",
    "DELETE_IN_PROGRESS": "The dataset is being deleted.",
}


def seconds(ms: int | None) -> float | None:
    """A store time (epoch milliseconds) as the epoch seconds botocore parses into a datetime."""
    return None if ms is None else ms / 1000


def dataset_metadata(row: dict) -> dict:
    """A project's dataset as DescribeProjects lists it (botocore's DatasetMetadata: six members)."""
    return {"CreationTimestamp": seconds(row["created_ms"]),
            "DatasetType": row["type"].upper(),
            "DatasetArn": row["arn"],
            "Status": row["status"],
            "StatusMessage": row["status_message"] or DATASET_MESSAGES[row["status"]],
            "StatusMessageCode": row.get("status_code") or "SUCCESS"}


def check_tags(tags: dict, existing: dict | None = None, too_many: str = "ServiceQuotaExceededException") -> None:
    """AWS's tag rules for `tags` added to a resource that holds `existing`; ApiError when one is broken."""
    for key, value in tags.items():
        if not isinstance(key, str) or not 1 <= len(key) <= TAG_KEY_MAX:
            raise ApiError(INVALID, f"tag key {str(key)[:40]!r} must be 1-{TAG_KEY_MAX} characters")
        if key.startswith(RESERVED_TAG_PREFIX):
            raise ApiError(INVALID, f"tag key {key!r}: the prefix {RESERVED_TAG_PREFIX!r} is reserved for AWS")
        if not isinstance(value, str) or len(value) > TAG_VALUE_MAX:
            raise ApiError(INVALID, f"tag {key!r}: the value must be a string of at most {TAG_VALUE_MAX} characters")
    total = len(set(existing or {}) | set(tags))
    if total > MAX_TAGS:
        raise ApiError(too_many, f"a resource holds at most {MAX_TAGS} tags; this request would make {total}")


def _project_arn(value: str) -> str:
    return str(parse_project_arn(value))  # ArnError -> InvalidParameterException (the HTTP layer answers it)


def _description(ctx: ServiceContext, row: dict) -> dict:
    return {"ProjectArn": row["arn"],
            "CreationTimestamp": seconds(row["created_ms"]),
            "Status": row["status"],
            "Datasets": [dataset_metadata(d) for d in ctx.store.datasets(row["arn"])],
            "Feature": FEATURE,
            "AutoUpdate": "DISABLED"}  # automatic retraining applies to adapters only, never to Custom Labels


# -- projects ----------------------------------------------------------------------------------------------


def create_project(ctx: ServiceContext, params: dict) -> dict:
    if params.get("Feature", FEATURE) != FEATURE:
        raise ApiError(INVALID, f"Feature {params['Feature']!r}: this service trains {FEATURE} models only")
    if params.get("AutoUpdate", "DISABLED") != "DISABLED":
        raise ApiError(INVALID, "AutoUpdate applies to CONTENT_MODERATION adapters only, not CUSTOM_LABELS projects")
    tags = params.get("Tags") or {}
    check_tags(tags, too_many="LimitExceededException")
    project = ctx.store.create_project(params["ProjectName"])
    if tags:
        ctx.store.tag(project["arn"], tags)
    ctx.store.set_project_status(project["arn"], "CREATED")
    return {"ProjectArn": project["arn"]}


def describe_projects(ctx: ServiceContext, params: dict) -> dict:
    features = params.get("Features")
    names = params.get("ProjectNames")
    rows, token = ctx.store.projects(names, params.get("MaxResults"), params.get("NextToken"))
    if features is not None and FEATURE not in features:
        rows, token = [], None  # every project here is a Custom Labels project
    answer = {"ProjectDescriptions": [_description(ctx, row) for row in rows]}
    if token is not None:
        answer["NextToken"] = token
    return answer


def delete_project(ctx: ServiceContext, params: dict) -> dict:
    arn = _project_arn(params["ProjectArn"])
    ctx.store.start_project_delete(arn)  # refused while datasets or versions remain
    ctx.store.delete_project(arn)
    return {"Status": "DELETING"}


# -- tags ----------------------------------------------------------------------------------------------------


def _resource(ctx: ServiceContext, value: str) -> str:
    arn = str(parse_arn(value))
    ctx.store.tags(arn)  # NotFound (ResourceNotFoundException) for a resource that does not exist
    return arn


def tag_resource(ctx: ServiceContext, params: dict) -> dict:
    arn = _resource(ctx, params["ResourceArn"])
    check_tags(params["Tags"], ctx.store.tags(arn))
    ctx.store.tag(arn, params["Tags"])
    return {}


def untag_resource(ctx: ServiceContext, params: dict) -> dict:
    arn = _resource(ctx, params["ResourceArn"])
    reserved = [key for key in params["TagKeys"] if key.startswith(RESERVED_TAG_PREFIX)]
    if reserved:
        raise ApiError(INVALID, f"tag key {reserved[0]!r}: the prefix {RESERVED_TAG_PREFIX!r} is reserved for AWS")
    ctx.store.untag(arn, params["TagKeys"])
    return {}


def list_tags_for_resource(ctx: ServiceContext, params: dict) -> dict:
    return {"Tags": ctx.store.tags(_resource(ctx, params["ResourceArn"]))}


OPERATIONS = {
    "CreateProject": create_project,
    "DescribeProjects": describe_projects,
    "DeleteProject": delete_project,
    "TagResource": tag_resource,
    "UntagResource": untag_resource,
    "ListTagsForResource": list_tags_for_resource,
}


def all_projects(ctx: ServiceContext) -> list[dict]:
    rows, token = ctx.store.projects(max_results=100)
    while token is not None:
        more, token = ctx.store.projects(max_results=100, next_token=token)
        rows += more
    return rows


def recover(ctx: ServiceContext) -> None:
    """Finish what a killed process left: a project CREATING becomes CREATED, one DELETING is removed."""
    for row in all_projects(ctx):
        try:
            if row["status"] == "CREATING":
                ctx.store.set_project_status(row["arn"], "CREATED")
            elif row["status"] == "DELETING":
                ctx.store.delete_project(row["arn"])
        except NotFound:
            continue  # removed meanwhile by another process on the same DIR
