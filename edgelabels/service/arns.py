"""Rekognition Custom Labels ARNs, spelled exactly as AWS spells them, and parsers that refuse anything else.

Scripts split these strings (`arn.split("/")[1]` is the project name), so the format is the contract:
  arn:aws:rekognition:REGION:ACCOUNT:project/NAME/CREATION_MS
  arn:aws:rekognition:REGION:ACCOUNT:project/NAME/dataset/train|test/CREATION_MS
  arn:aws:rekognition:REGION:ACCOUNT:project/NAME/version/VERSION/CREATION_MS
NAME and VERSION follow botocore's ProjectName and VersionName shapes (tests read the service model to check).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# botocore's ProjectName / VersionName: pattern [a-zA-Z0-9_.\-]+, min 1, max 255.
NAME_CHARS = r"[a-zA-Z0-9_.\-]"
NAME_MIN, NAME_MAX = 1, 255
DATASET_TYPES = ("train", "test")  # botocore's DatasetType is TRAIN|TEST; the ARN spells it lower case
_NAME = re.compile(rf"{NAME_CHARS}{{{NAME_MIN},{NAME_MAX}}}")
_REGION = r"[a-z\d-]+"
_HEAD = rf"arn:aws:rekognition:(?P<region>{_REGION}):(?P<account>\d{{12}}):project/(?P<project>{NAME_CHARS}{{1,255}})"
_PROJECT = re.compile(rf"{_HEAD}/(?P<ms>[0-9]+)")
_DATASET = re.compile(rf"{_HEAD}/dataset/(?P<type>train|test)/(?P<ms>[0-9]+)")
_VERSION = re.compile(rf"{_HEAD}/version/(?P<version>{NAME_CHARS}{{1,255}})/(?P<ms>[0-9]+)")


class ArnError(ValueError):
    """Not a Rekognition ARN of the kind asked for (the operations answer InvalidParameterException)."""


def valid_name(name: str) -> bool:
    """True when `name` is a valid ProjectName / VersionName."""
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


def _check(what: str, value: str) -> None:
    if not valid_name(value):
        raise ArnError(f"{what} {value!r} must be 1-255 characters of a-z A-Z 0-9 _ . -")


def _check_head(region: str, account: str, ms: int) -> None:
    if not re.fullmatch(_REGION, region or ""):
        raise ArnError(f"region {region!r} is not a region name")
    if not re.fullmatch(r"\d{12}", account or ""):
        raise ArnError(f"account {account!r} must be 12 digits")
    if not isinstance(ms, int) or isinstance(ms, bool) or ms < 0:
        raise ArnError(f"creation time {ms!r} must be a non-negative integer of milliseconds")


@dataclass(frozen=True)
class ProjectArn:
    region: str
    account: str
    project: str
    creation_ms: int

    def __post_init__(self):
        _check_head(self.region, self.account, self.creation_ms)
        _check("project name", self.project)

    def __str__(self) -> str:
        return f"arn:aws:rekognition:{self.region}:{self.account}:project/{self.project}/{self.creation_ms}"


@dataclass(frozen=True)
class DatasetArn:
    region: str
    account: str
    project: str
    dataset_type: str  # "train" or "test"
    creation_ms: int

    def __post_init__(self):
        _check_head(self.region, self.account, self.creation_ms)
        _check("project name", self.project)
        if self.dataset_type not in DATASET_TYPES:
            raise ArnError(f"dataset type {self.dataset_type!r} must be one of {DATASET_TYPES}")

    def __str__(self) -> str:
        return (f"arn:aws:rekognition:{self.region}:{self.account}:project/{self.project}"
                f"/dataset/{self.dataset_type}/{self.creation_ms}")


@dataclass(frozen=True)
class VersionArn:
    region: str
    account: str
    project: str
    version: str
    creation_ms: int

    def __post_init__(self):
        _check_head(self.region, self.account, self.creation_ms)
        _check("project name", self.project)
        _check("version name", self.version)

    def __str__(self) -> str:
        return (f"arn:aws:rekognition:{self.region}:{self.account}:project/{self.project}"
                f"/version/{self.version}/{self.creation_ms}")


def _match(pattern: re.Pattern, kind: str, arn) -> re.Match:
    found = pattern.fullmatch(arn) if isinstance(arn, str) and len(arn) <= 2048 else None
    if found is None:
        raise ArnError(f"{arn!r} is not a {kind} ARN")
    return found


def parse_project_arn(arn: str) -> ProjectArn:
    m = _match(_PROJECT, "project", arn)
    return ProjectArn(m["region"], m["account"], m["project"], int(m["ms"]))


def parse_dataset_arn(arn: str) -> DatasetArn:
    m = _match(_DATASET, "dataset", arn)
    return DatasetArn(m["region"], m["account"], m["project"], m["type"], int(m["ms"]))


def parse_version_arn(arn: str) -> VersionArn:
    m = _match(_VERSION, "project version", arn)
    return VersionArn(m["region"], m["account"], m["project"], m["version"], int(m["ms"]))


def parse_arn(arn: str) -> ProjectArn | DatasetArn | VersionArn:
    """Any of the three kinds (for TagResource and friends)."""
    for parse in (parse_project_arn, parse_dataset_arn, parse_version_arn):
        try:
            return parse(arn)
        except ArnError:
            pass
    raise ArnError(f"{arn!r} is not a Rekognition project, dataset or project version ARN")
