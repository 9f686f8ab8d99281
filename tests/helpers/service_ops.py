"""What the local service's in-process tests share: botocore's output shapes as the check of every answer, the
Rekognition code a call is refused with, and a ServiceContext over a --s3-root folder with a tiny training recipe
and a bucket of generated images."""

from __future__ import annotations

import json
import time

import pytest
from botocore.loaders import Loader

from edgelabels.service.arns import ArnError

from helpers.runs import make_image

MODEL = Loader().load_service_model("rekognition", "service-2")
SHAPES = MODEL["shapes"]


def check_shape(value, shape: str, absent=(), path: str = "$") -> None:
    """`value` is what botocore's `shape` describes: every member present (but those named in `absent`), no
    member the shape lacks, each of its type, enums, lengths and ranges as the model says. Timestamps are the
    epoch seconds the JSON protocol carries."""
    spec = SHAPES[shape]
    kind = spec["type"]
    if kind == "structure":
        assert isinstance(value, dict), f"{path}: {value!r} is not a structure"
        assert not set(value) - set(spec["members"]), f"{path}: members {set(value) - set(spec['members'])} unknown"
        for name, member in spec["members"].items():
            if name in value:
                check_shape(value[name], member["shape"], absent, f"{path}.{name}")
            else:
                assert name in absent and name not in spec.get("required", ()), f"{path}.{name} is missing"
    elif kind == "list":
        assert isinstance(value, list), f"{path}: {value!r} is not a list"
        assert spec.get("min", 0) <= len(value) <= spec.get("max", len(value)), f"{path}: {len(value)} items"
        for index, item in enumerate(value):
            check_shape(item, spec["member"]["shape"], absent, f"{path}[{index}]")
    elif kind == "map":
        assert isinstance(value, dict), f"{path}: {value!r} is not a map"
        for key, item in value.items():
            check_shape(key, spec["key"]["shape"], absent, f"{path} key")
            check_shape(item, spec["value"]["shape"], absent, f"{path}[{key!r}]")
    elif kind == "string":
        assert isinstance(value, str), f"{path}: {value!r} is not a string"
        assert spec.get("min", 0) <= len(value) <= spec.get("max", len(value)), f"{path}: length {len(value)}"
        assert value in spec.get("enum", [value]), f"{path}: {value!r} not in {spec['enum']}"
    elif kind in ("integer", "long"):
        assert isinstance(value, int) and not isinstance(value, bool), f"{path}: {value!r} is not an integer"
        assert spec.get("min", value) <= value <= spec.get("max", value), f"{path}: {value} out of range"
    elif kind in ("float", "double"):
        assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{path}: {value!r} not a number"
    elif kind == "timestamp":
        assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{path}: {value!r} not epoch s"
    elif kind == "boolean":
        assert isinstance(value, bool), f"{path}: {value!r} is not a boolean"
    else:
        raise AssertionError(f"{path}: shape type {kind} not checked here")


def answers(operation: str, value: dict, absent=()) -> dict:
    """`value` has the output shape of `operation`; returned for further checks."""
    check_shape(value, MODEL["operations"][operation]["output"]["shape"], absent)
    return value


def refusal(call, *args) -> str:
    """The Rekognition error code `call(*args)` is refused with (an ArnError is answered InvalidParameter)."""
    with pytest.raises(Exception) as caught:
        call(*args)
    if isinstance(caught.value, ArnError):
        return "InvalidParameterException"
    return caught.value.code


# `edgelabels train SOURCE` made tiny: the recipe still chooses the rest from the data.
TINY = ("model.backbone=tinycnn", "model.weights=none", "data.image_size=32", "train.epochs=1",
        "train.fine_tune_epochs=0", "train.batch_size=8", "train.verbose=0", "train.workers=1", "seed=1",
        "augment.preset=none")
COLOURS = ("red", "green")




def make_context(root, store=None, extra=(), **settings):
    """A ServiceContext over root/service with root/s3 standing in for S3 (the --s3-root rule), bucket `results`
    there."""
    from edgelabels.service.context import ServiceContext, ServiceSettings
    from edgelabels.service.s3 import S3Objects
    from edgelabels.service.store import Store

    (root / "s3" / "results").mkdir(parents=True, exist_ok=True)  # the OutputConfig bucket
    return ServiceContext(root / "service", store or Store(root / "service"), S3Objects(root=root / "s3"),
                          ServiceSettings(budget=None, overrides=(*TINY, *extra), **settings))


def manifest_line(bucket: str, key: str, label: str) -> str:
    return json.dumps({"source-ref": f"s3://{bucket}/{key}", "colour": COLOURS.index(label), "colour-metadata": {
        "class-name": label, "confidence": 1, "type": "groundtruth/image-classification", "human-annotated": "yes",
        "creation-date": "2026-12-05T00:00:00", "job-name": "labeling-job/colours"}})


def write_bucket(s3_root, bucket: str, per_label: int = 12, test_per_label: int = 4) -> None:
    """s3://BUCKET/train/*.png, test/*.png and their manifests train.manifest (plus one line naming a missing
    image) and test.manifest."""
    import numpy as np

    rng = np.random.default_rng(0)
    folder = s3_root / bucket
    for side, count in (("train", per_label), ("test", test_per_label)):
        (folder / side).mkdir(parents=True, exist_ok=True)
        lines = []
        for i, label in enumerate(COLOURS):
            for j in range(count):
                key = f"{side}/{label}-{j:02d}.png"
                make_image(i, rng, 64).save(folder / key, "PNG")  # DetectCustomLabels takes 64 px and up
                lines.append(manifest_line(bucket, key, label))
        if side == "train":
            lines.append(manifest_line(bucket, "train/missing.png", "red"))
        (folder / f"{side}.manifest").write_text("\n".join(lines) + "\n")


def wait_for_status(ctx, arn: str, wanted: set, timeout_s: float = 300) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        version = ctx.store.version(arn)
        if version["status"] in wanted or time.monotonic() > deadline:
            return version
        time.sleep(0.2)
