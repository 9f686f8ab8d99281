"""A trained version's files in its OutputConfig bucket, named and shaped as Rekognition writes them.

Rekognition writes, under `S3Bucket/S3KeyPrefix/` (AWS's DescribeProjectVersions example, and its guide's
"Getting the validation results" and "Accessing the summary file and evaluation manifest snapshot"):
    EvaluationResultSummary-PROJECT-VERSION.json        EvaluationResult.Summary: the EvaluationSummary document
    ManifestSummary-PROJECT-VERSION.json                ManifestSummary: counts and errors of both manifests
    TrainingManifestWithValidation-PROJECT-VERSION.json TrainingDataResult.Validation: every line, with its errors
    TestingManifestWithValidation-PROJECT-VERSION.json  TestingDataResult.Validation
    TrainingGroundTruth-PROJECT-VERSION.json            TrainingDataResult.Output: the lines trained on
    TestingGroundTruth-PROJECT-VERSION.json             TestingDataResult.Output: the evaluation manifest snapshot
A validation line is the entry with `"errors": [{"code", "message"}]` added (AWS's validation results files).

Pure functions but `write_outputs`, which puts the files through the service's S3Objects.
"""

from __future__ import annotations

import json

from edgelabels.service.arns import parse_version_arn

SUMMARY = "EvaluationResultSummary"
MANIFEST_SUMMARY = "ManifestSummary"
TRAINING_VALIDATION = "TrainingManifestWithValidation"
TESTING_VALIDATION = "TestingManifestWithValidation"
TRAINING_OUTPUT = "TrainingGroundTruth"
TESTING_OUTPUT = "TestingGroundTruth"
USE_CASES = {"classification": "CLASSIFICATION", "multilabel": "CLASSIFICATION", "detection": "OBJECT_DETECTION"}


def s3_object(output_config: dict, what: str, version_arn: str) -> dict:
    """The S3Object {Bucket, Name} of one output file (`what`: one of the names above)."""
    arn = parse_version_arn(version_arn)
    prefix = output_config.get("S3KeyPrefix") or ""
    name = f"{what}-{arn.project}-{arn.version}.json"
    return {"Bucket": output_config["S3Bucket"], "Name": f"{prefix.rstrip('/')}/{name}" if prefix else name}


def uri(s3object: dict) -> str:
    return f"s3://{s3object['Bucket']}/{s3object['Name']}"


def validation_line(line: str, errors) -> str:
    """The entry as a validation results file shows it: its JSON with the errors, each {"code", "message"}."""
    try:
        document = json.loads(line)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        document = {"source-ref": None, "line": line}  # not JSON: the text itself, so the file stays JSON lines
    if errors:
        document["errors"] = [_coded(error) for error in errors]
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


def _coded(error: str) -> dict:
    code, _, message = str(error).partition(": ")
    if not message or not code.startswith(("ERROR_", "WARNING_")):
        return {"code": "ERROR_INVALID_JSON_LINE", "message": str(error)}
    return {"code": code, "message": message}


def line_errors(validation: str) -> list[str]:
    """The errors of a validation line, back as "CODE: message" strings."""
    return [f"{e['code']}: {e['message']}" for e in json.loads(validation).get("errors", [])]


def manifest_statistics(validation_lines: list[str], task: str | None) -> dict:
    """One side (training or testing) of the manifest summary, from its validation lines."""
    errors = [i for i, line in enumerate(validation_lines) if json.loads(line).get("errors")]
    return {"use_case": USE_CASES.get(task or "", "NOT_DETERMINED"),
            "total_json_lines": len(validation_lines), "valid_json_lines": len(validation_lines) - len(errors),
            "invalid_json_lines": len(errors), "ignored_json_lines": 0, "errors": [],
            "error_json_line_indices": errors}


def manifest_summary(training: list[str], testing: list[str], task: str | None) -> dict:
    return {"errors": [], "statistics": {"training": manifest_statistics(training, task),
                                         "testing": manifest_statistics(testing, task)}}


def summary_for(summary: dict, version_arn: str) -> dict:
    """The run's summary.json as the version's: EvaluationDetails names the version, not the run folder."""
    return {**summary, "EvaluationDetails": {**summary.get("EvaluationDetails", {}), "ProjectVersionArn": version_arn}}


def as_s3_refs(lines: list[str], local_root: str) -> list[str]:
    """Evaluation manifest lines whose source-ref is the image's local file under `local_root` (the S3 root or
    the service's copy of S3) -> the s3://BUCKET/KEY it came from, as Rekognition's snapshot shows."""
    root = str(local_root).rstrip("/") + "/"
    out = []
    for line in lines:
        document = json.loads(line)
        ref = document.get("source-ref")
        if isinstance(ref, str) and ref.startswith(root):
            document["source-ref"] = "s3://" + ref[len(root):]
        out.append(json.dumps(document, ensure_ascii=False, separators=(",", ":")))
    return out


def write_outputs(s3, output_config: dict, version_arn: str, files: dict) -> dict:
    """Put each file (what -> a JSON document, or a list of JSON lines) under OutputConfig; what -> its S3Object.
    The summary is written last: a client that finds it finds the others."""
    where = {}
    for what in sorted(files, key=lambda name: name == SUMMARY):
        where[what] = s3_object(output_config, what, version_arn)
        content = files[what]
        if isinstance(content, list):
            s3.write_bytes(uri(where[what]), "".join(line + "\n" for line in content).encode("utf-8"),
                           "application/json")
        else:
            s3.write_json(uri(where[what]), content)
    return where


def data_results(inputs: dict, where: dict | None) -> tuple[dict, dict]:
    """(TrainingDataResult, TestingDataResult): Input as given; Output and Validation for the files written (a
    failed training has its validation files only)."""
    where = where or {}
    training = {"Input": inputs.get("TrainingData", {})}
    testing = {"Input": inputs.get("TestingData", {"AutoCreate": False})}

    def assets(what: str) -> dict:
        return {"Assets": [{"GroundTruthManifest": {"S3Object": where[what]}}]}

    for result, output, validation in ((training, TRAINING_OUTPUT, TRAINING_VALIDATION),
                                       (testing, TESTING_OUTPUT, TESTING_VALIDATION)):
        if output in where:
            result["Output"] = assets(output)
        if validation in where:
            result["Validation"] = assets(validation)
    if "Output" in testing:
        testing["Output"]["AutoCreate"] = bool(testing["Input"].get("AutoCreate", False))
    return training, testing
