"""Rekognition Custom Labels' whole lifecycle, run as a boto3 user runs it, against `edgelabels serve --projects`.

    .venv/bin/python benchmarks/service_lifecycle.py [--images 300] [--budget 5m] [--set KEY=VALUE ...]
                                                     [--datasets pneumonia,bees] [--poll 2] [--keep DIR]

Starts a real S3 server on loopback (moto's ThreadedMotoServer) and `edgelabels serve --projects DIR` in a
subprocess (its S3 side found through AWS_ENDPOINT_URL_S3, the standard configuration; both through
tests/helpers/service.py), then per dataset:
- uploads the images and two Ground Truth manifests into a bucket: the bees (../shared/data/bees-yolo, YOLO
  boxes -> object-detection lines by `edgelabels dataset to-manifest`; train+val -> TRAIN, test -> TEST) and
  --images chest X-rays (../shared/data/chest-xray-pneumonia, half normal, half pneumonia, split 80/20 by
  patient; one image of each of 20 more patients held out for DetectCustomLabels; for the bees, the test frames);
- runs what a Rekognition user writes (`lifecycle`, plain boto3 calls and boto3's own waiters): create_project ->
  create_dataset TRAIN and TEST from the manifests in S3 -> describe_dataset until CREATE_COMPLETE ->
  create_project_version (OutputConfig: the bucket) -> waiter project_version_training_completed ->
  EvaluationResult.F1Score and the summary file read from S3 -> start_project_version -> waiter
  project_version_running -> detect_custom_labels on the held-out images -> stop_project_version;
- compares each answer with `edgelabels predict` on the version's export (the same labels, confidences within
  0.01 and boxes within 1e-4), then deletes the version, the datasets and the project (`delete_everything`).
Prints the wall time of each phase and in all. --set KEY=VALUE and --budget are given to the service (every
version it trains); the defaults train the recipe's choice within 5 minutes per version.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from botocore.exceptions import ClientError

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from helpers.service import S3Server, ServiceProcess  # noqa: E402  (a moto S3 server; `serve --projects DIR`)

DATA = REPO.parent / "shared" / "data"
EDGELABELS = Path(sys.executable).parent / "edgelabels"
BUCKET = "edgelabels-lifecycle"
PATIENT = re.compile(r"^(person\d+|IM-\d+|NORMAL2-IM-\d+)")
CONFIDENCE_TOLERANCE = 0.01  # percent; the same ONNX session on the same bytes answers the same numbers
BOX_TOLERANCE = 1e-4


# -- what a Rekognition user writes ---------------------------------------------------------------------------

class Phases(dict):
    """Wall seconds per named phase: `with phases("training"): ...`."""

    @contextlib.contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self[name] = self.get(name, 0.0) + time.perf_counter() - start


def wait_for_dataset(rekognition, dataset_arn: str, poll: float, timeout: float = 600) -> dict:
    """describe_dataset until the dataset leaves *_IN_PROGRESS (boto3 has no dataset waiter); the description."""
    deadline = time.monotonic() + timeout
    while True:
        description = rekognition.describe_dataset(DatasetArn=dataset_arn)["DatasetDescription"]
        if not description["Status"].endswith("_IN_PROGRESS"):
            return description
        if time.monotonic() > deadline:
            raise TimeoutError(f"{dataset_arn} still {description['Status']} after {timeout} s")
        time.sleep(poll)


def wait_for_version(rekognition, project_arn: str, version_name: str, status: str, poll: float,
                     timeout: float = 600) -> dict:
    """describe_project_versions until the version has `status` (for the states boto3 has no waiter for)."""
    deadline = time.monotonic() + timeout
    while True:
        description = rekognition.describe_project_versions(
            ProjectArn=project_arn, VersionNames=[version_name])["ProjectVersionDescriptions"][0]
        if description["Status"] == status:
            return description
        if time.monotonic() > deadline:
            raise TimeoutError(f"{version_name} still {description['Status']} after {timeout} s")
        time.sleep(poll)


def create_project_with_datasets(rekognition, project_name: str, bucket: str, manifests: dict,
                                 poll: float) -> tuple[str, dict, dict]:
    """create_project, then create_dataset from each Ground Truth manifest in S3 ({"TRAIN": key, "TEST": key}),
    waiting for each -> (project ARN, {kind: dataset ARN}, {kind: its DatasetDescription})."""
    project_arn = rekognition.create_project(ProjectName=project_name)["ProjectArn"]
    dataset_arns = {
        kind: rekognition.create_dataset(
            ProjectArn=project_arn, DatasetType=kind,
            DatasetSource={"GroundTruthManifest": {"S3Object": {"Bucket": bucket, "Name": key}}})["DatasetArn"]
        for kind, key in manifests.items()}
    return project_arn, dataset_arns, {kind: wait_for_dataset(rekognition, arn, poll)
                                       for kind, arn in dataset_arns.items()}


def lifecycle(rekognition, s3, project_name: str, bucket: str, manifests: dict, images: list[Path],
              phases: Phases, poll: float = 2.0, version_name: str = "v1") -> dict:
    """Project -> datasets from Ground Truth manifests in S3 -> a trained version -> its evaluation -> started ->
    DetectCustomLabels on `images` -> stopped. manifests: {"TRAIN": key, "TEST": key} in `bucket`.
    Returns what the script saw: arns, dataset descriptions, the version's description, the summary file and
    {image name: CustomLabels}."""
    seen = {}
    with phases("project + datasets"):
        project_arn, dataset_arns, seen["datasets"] = create_project_with_datasets(
            rekognition, project_name, bucket, manifests, poll)
    for kind, description in seen["datasets"].items():
        if description["Status"] != "CREATE_COMPLETE":
            raise RuntimeError(f"{kind} dataset {description['Status']}: {description['StatusMessage']}")

    with phases("training"):
        version_arn = rekognition.create_project_version(
            ProjectArn=project_arn, VersionName=version_name,
            OutputConfig={"S3Bucket": bucket, "S3KeyPrefix": f"output/{project_name}/"})["ProjectVersionArn"]
        rekognition.get_waiter("project_version_training_completed").wait(
            ProjectArn=project_arn, VersionNames=[version_name],
            WaiterConfig={"Delay": poll, "MaxAttempts": int(7200 / poll)})
    version = rekognition.describe_project_versions(
        ProjectArn=project_arn, VersionNames=[version_name])["ProjectVersionDescriptions"][0]
    summary_object = version["EvaluationResult"]["Summary"]["S3Object"]
    seen["summary"] = json.loads(s3.get_object(Bucket=summary_object["Bucket"],
                                               Key=summary_object["Name"])["Body"].read())

    with phases("start"):
        rekognition.start_project_version(ProjectVersionArn=version_arn, MinInferenceUnits=1)
        rekognition.get_waiter("project_version_running").wait(
            ProjectArn=project_arn, VersionNames=[version_name], WaiterConfig={"Delay": poll, "MaxAttempts": 300})
    with phases("detect"):
        seen["answers"] = {
            path.name: rekognition.detect_custom_labels(ProjectVersionArn=version_arn,
                                                        Image={"Bytes": path.read_bytes()})["CustomLabels"]
            for path in images}
    with phases("stop"):
        rekognition.stop_project_version(ProjectVersionArn=version_arn)
        wait_for_version(rekognition, project_arn, version_name, "STOPPED", poll)
    seen.update(project_arn=project_arn, dataset_arns=dataset_arns, version_arn=version_arn, version=version)
    return seen


def delete_everything(rekognition, project_arn: str, poll: float = 2.0) -> None:
    """Delete a project's versions, then its datasets, then the project (Rekognition refuses a project that still
    has either), waiting for each to be gone."""
    for version in rekognition.describe_project_versions(ProjectArn=project_arn)["ProjectVersionDescriptions"]:
        rekognition.delete_project_version(ProjectVersionArn=version["ProjectVersionArn"])
    while rekognition.describe_project_versions(ProjectArn=project_arn)["ProjectVersionDescriptions"]:
        time.sleep(poll)
    project = rekognition.describe_projects(ProjectNames=[project_arn.split("/")[1]])["ProjectDescriptions"][0]
    for dataset in project.get("Datasets", []):
        rekognition.delete_dataset(DatasetArn=dataset["DatasetArn"])
    for dataset in project.get("Datasets", []):
        while True:
            try:
                rekognition.describe_dataset(DatasetArn=dataset["DatasetArn"])
            except ClientError as error:
                if error.response["Error"]["Code"] == "ResourceNotFoundException":
                    break
                raise
            time.sleep(poll)
    rekognition.delete_project(ProjectArn=project_arn)
    while rekognition.describe_projects(ProjectNames=[project_arn.split("/")[1]])["ProjectDescriptions"]:
        time.sleep(poll)


# -- the data, as a user puts it into S3 ----------------------------------------------------------------------

def classification_line(uri: str, label: str, labels: list[str], job: str) -> str:
    """One Ground Truth image-classification line, as a labelling job writes it."""
    return json.dumps({
        "source-ref": uri, job: labels.index(label),
        f"{job}-metadata": {"confidence": 1, "class-name": label, "human-annotated": "yes",
                            "creation-date": "2026-12-06T00:00:00.000000", "type": "groundtruth/image-classification",
                            "job-name": f"labeling-job/{job}"}})


def upload(s3, bucket: str, files: dict) -> None:
    """files: {key: a Path or the bytes/str to write}."""
    for key, what in files.items():
        body = what.read_bytes() if isinstance(what, Path) else what.encode() if isinstance(what, str) else what
        s3.put_object(Bucket=bucket, Key=key, Body=body)


def classification_set(s3, bucket: str, prefix: str, train: list, test: list, job: str) -> dict:
    """Upload (path, label) pairs and their TRAIN / TEST manifests under prefix; {"TRAIN": key, "TEST": key}."""
    labels = sorted({label for _, label in train + test})
    manifests, files = {}, {}
    for kind, pairs in (("TRAIN", train), ("TEST", test)):
        lines = []
        for path, label in pairs:
            key = f"{prefix}{label}/{path.name}"
            files[key] = path
            lines.append(classification_line(f"s3://{bucket}/{key}", label, labels, job))
        manifests[kind] = f"{prefix}{kind.lower()}.manifest"
        files[manifests[kind]] = "\n".join(lines) + "\n"
    upload(s3, bucket, files)
    return manifests


def pneumonia_subset(count: int, held_out_patients: int = 20, seed: int = 0) -> tuple[list, list, list]:
    """About `count` chest X-rays (whole patients), half NORMAL, half PNEUMONIA, split 80/20 by patient ->
    (train, test, held-out images); held-out: one image of each of held_out_patients patients in neither set."""
    rng = random.Random(seed)
    root = DATA / "chest-xray-pneumonia" / "train"
    train, test, held_out = [], [], []
    for label in ("NORMAL", "PNEUMONIA"):
        patients: dict[str, list[Path]] = {}
        for path in sorted((root / label).iterdir()):
            patients.setdefault(PATIENT.match(path.name).group(1), []).append(path)
        order = sorted(patients)
        rng.shuffle(order)
        chosen, taken = [], 0
        while order and taken < count // 2:  # whole patients, so one patient's images stay on one side
            chosen.append(order.pop())
            taken += len(patients[chosen[-1]])
        for patient in chosen:
            side = train if sum(len(patients[p]) for p in chosen[: chosen.index(patient)]) < 0.8 * taken else test
            side += [(path, label) for path in patients[patient]]
        held_out += [patients[patient][0] for patient in order[: held_out_patients // 2]]
    return train, test, held_out


def bees_set(s3, bucket: str, prefix: str, work: Path) -> tuple[dict, list[Path]]:
    """The bees through `edgelabels dataset to-manifest`: images uploaded with their relative paths, the manifest
    split by folder (images/test -> TEST, the rest -> TRAIN). Returns the manifests' keys and the test images."""
    source = DATA / "bees-yolo"
    manifest = work / "bees.manifest"
    subprocess.run([str(EDGELABELS), "dataset", "to-manifest", str(source), "--class-names", "bee",
                    "--s3-prefix", f"s3://{bucket}/{prefix}", "--out", str(manifest)], check=True)
    lines = manifest.read_text().splitlines()
    test = [line for line in lines if "/images/test/" in json.loads(line)["source-ref"]]
    train = [line for line in lines if line not in test]
    files = {f"{prefix}{path.relative_to(source)}": path for path in sorted((source / "images").rglob("*.jpg"))}
    files[f"{prefix}train.manifest"] = "\n".join(train) + "\n"
    files[f"{prefix}test.manifest"] = "\n".join(test) + "\n"
    upload(s3, bucket, files)
    return {"TRAIN": f"{prefix}train.manifest", "TEST": f"{prefix}test.manifest"}, \
        sorted((source / "images" / "test").glob("*.jpg"))


# -- the version's export, answered by `edgelabels predict` ---------------------------------------------------

def version_run(service_dir: Path, version_arn: str):
    """The run directory (edgelabels.artifacts.RunDir) that a version of the service in service_dir trains into:
    DIR/versions/PROJECT/VERSION-MS/run (service/context.py's layout); its export_dir is what the version serves."""
    from edgelabels.artifacts import RunDir
    from edgelabels.service.arns import parse_version_arn
    from edgelabels.service.context import VERSIONS
    from edgelabels.service.trainer import RUN

    arn = parse_version_arn(version_arn)
    return RunDir(service_dir / VERSIONS / arn.project / f"{arn.version}-{arn.creation_ms}" / RUN)


def predict_answers(export: Path, images: list[Path]) -> dict:
    """{image name: CustomLabels} from `edgelabels predict EXPORT IMAGE...` (one JSON line per image)."""
    done = subprocess.run([str(EDGELABELS), "predict", str(export), *map(str, images)], check=True,
                          capture_output=True, text=True)
    return {Path(answer["Image"]).name: answer["CustomLabels"] for answer in map(json.loads, done.stdout.splitlines())}


def differences(served: dict, predicted: dict) -> list[str]:
    """Where DetectCustomLabels and `edgelabels predict` disagree (label names and order, confidences, boxes)."""
    problems = []
    for name in sorted(set(served) | set(predicted)):
        a, b = served.get(name), predicted.get(name)
        if a is None or b is None or [x["Name"] for x in a] != [x["Name"] for x in b]:
            problems.append(f"{name}: served {a}, predicted {b}")
            continue
        for x, y in zip(a, b):
            box_x = x.get("Geometry", {}).get("BoundingBox", {})
            box_y = y.get("Geometry", {}).get("BoundingBox", {})
            if abs(x["Confidence"] - y["Confidence"]) > CONFIDENCE_TOLERANCE or box_x.keys() != box_y.keys() or \
                    any(abs(box_x[k] - box_y[k]) > BOX_TOLERANCE for k in box_x):
                problems.append(f"{name}: served {x}, predicted {y}")
    return problems


# -- the benchmark --------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=300, help="chest X-rays in the classification datasets")
    parser.add_argument("--budget", default="5m", help="each training's time budget (the service's --budget)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config override the service gives every training (repeatable)")
    parser.add_argument("--datasets", default="pneumonia,bees", help="which lifecycles to run, in order")
    parser.add_argument("--poll", type=float, default=2.0, help="seconds between a waiter's calls")
    parser.add_argument("--keep", type=Path, help="keep the service's DIR and logs here (default: a temporary one)")
    args = parser.parse_args(argv)
    unknown = set(args.datasets.split(",")) - {"pneumonia", "bees"}
    if unknown:
        parser.error(f"--datasets: {', '.join(sorted(unknown))} unknown (pneumonia, bees)")

    work = args.keep or Path(tempfile.mkdtemp(prefix="service-lifecycle-"))
    work.mkdir(parents=True, exist_ok=True)
    total = time.perf_counter()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs every request
    s3_server = S3Server(work / "aws")
    options = ["--budget", args.budget, *[f"--set={item}" for item in args.set]]
    service = ServiceProcess(work / "service", *options, env=s3_server.env)
    print(f"S3 {s3_server.endpoint}, service {service.url} (DIR {service.directory}, log {service.log_path})",
          flush=True)
    failures = 0
    try:
        s3 = s3_server.client()
        s3.create_bucket(Bucket=BUCKET)
        rekognition = service.client()
        for name in args.datasets.split(","):
            phases = Phases()
            with phases("upload"):
                if name == "pneumonia":
                    train, test, images = pneumonia_subset(args.images)
                    manifests = classification_set(s3, BUCKET, "chest-xray/", train, test, "chest-xray")
                else:
                    manifests, images = bees_set(s3, BUCKET, "bees/", work)
            seen = lifecycle(rekognition, s3, name, BUCKET, manifests, images, phases, poll=args.poll)
            with phases("predict (CLI)"):
                predicted = predict_answers(version_run(service.directory, seen["version_arn"]).export_dir, images)
            problems = differences(seen["answers"], predicted)
            with phases("delete"):
                delete_everything(rekognition, seen["project_arn"], poll=args.poll)
            failures += bool(problems)
            report(name, seen, phases, images, problems)
    finally:
        service.stop()
        s3_server.stop()
    print(f"total wall time {time.perf_counter() - total:.1f} s")
    return 1 if failures else 0


def report(name: str, seen: dict, phases: Phases, images: list, problems: list) -> None:
    version = seen["version"]
    aggregated = seen["summary"].get("AggregatedEvaluationResults", {})
    metrics = aggregated.get("Metrics", aggregated)  # AWS's reference nests them in Metrics; its example does not
    figures = ", ".join(f"{key} {metrics[key]:.4f}" for key in ("Precision", "Recall", "F1Score", "AveragePrecision",
                                                                 "AverageRecall") if key in metrics)
    stats = {kind: described["DatasetStats"] for kind, described in seen["datasets"].items()}
    print(f"\n{name}: {stats['TRAIN']['TotalEntries']} training / {stats['TEST']['TotalEntries']} testing images "
          f"({stats['TRAIN']['TotalLabels']} labels); {version['Status']} ({version['StatusMessage']})")
    print(f"  EvaluationResult.F1Score {version['EvaluationResult']['F1Score']:.4f}; summary file: {figures}")
    print(f"  BillableTrainingTimeInSeconds {version.get('BillableTrainingTimeInSeconds')}")
    answered = sum(len(labels) for labels in seen["answers"].values())
    right = sum(bool(labels) and labels[0]["Name"] == path.parent.name for path in images
                for labels in [seen["answers"][path.name]])
    print(f"  DetectCustomLabels on {len(images)} held-out images: {answered} labels"
          + (f", top label right on {right}" if right else "") + "; "
          + ("the same as `edgelabels predict`" if not problems else f"{len(problems)} differ from predict"))
    for problem in problems[:5]:
        print(f"    {problem}")
    for phase, seconds in phases.items():
        print(f"  {phase:<20} {seconds:8.1f} s")
    print(f"  {'in all':<20} {sum(phases.values()):8.1f} s")


if __name__ == "__main__":
    sys.exit(main())
