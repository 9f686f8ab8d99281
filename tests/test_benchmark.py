"""`edgelabels benchmark` without a server: AWS through botocore's Stubber, recorded JSONL replayed offline.

The live path against a real server (`edgelabels serve`) is in test_benchmark_live.py. Here the calls
that would reach AWS are answered by botocore's Stubber, which also checks every request against
Rekognition's API model (parameter names and types) and fails on any call not queued.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

for needed in ("boto3", "onnx"):
    pytest.importorskip(needed)

from helpers.benchmark import COLOURS, image_paths, make_test_folder  # noqa: E402
from helpers.server import write_model_dir  # noqa: E402

from edgelabels.benchmark.driver import run_benchmark  # noqa: E402
from edgelabels.benchmark.responses import ResponseLog, image_key, read_records  # noqa: E402
from edgelabels.cli import main  # noqa: E402
from edgelabels.errors import UserError  # noqa: E402
from edgelabels.runtime.predictor import Predictor  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "rekognition"
ARN = "arn:aws:rekognition:eu-west-1:123456789012:project/colours/version/colours.2024-05-01T10.00.00/1714557600000"
PROJECT_ARN = "arn:aws:rekognition:eu-west-1:123456789012:project/colours/1714000000000"


def answer(confidences: dict) -> dict:
    """A DetectCustomLabels answer as Rekognition sends it: most confident first, 0-100."""
    ordered = sorted(confidences.items(), key=lambda kv: -kv[1])
    return {"CustomLabels": [{"Name": name, "Confidence": value} for name, value in ordered]}


def remote_guess(path: Path) -> dict:
    """The stand-in Rekognition model: right on every image except index 0 of 'blue', which it calls green."""
    label = path.parent.name
    said = "green" if path.name == "blue0.png" else label
    return {name: (88.0 if name == said else 6.0) for name in COLOURS}


def write_recording(path: Path, images: list[Path], guess=remote_guess, arn=ARN) -> Path:
    lines = []
    for i, image in enumerate(images):
        data = image.read_bytes()
        lines.append(json.dumps({"version": 1, "image": str(image), "sha256": image_key(data), "bytes": len(data),
                                 "project_version_arn": arn, "timestamp": 1_700_000_000.0 + i * 0.1,
                                 "latency_s": 0.08, "elapsed_s": 0.08, "attempts": 1, "concurrency": 1,
                                 "response": answer(guess(image))}))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    model = write_model_dir(tmp_path / "run" / "export", thresholds={"red": 0.6, "green": 0.4, "blue": 0.5})
    test = make_test_folder(tmp_path / "test")
    return model, test


def stubbed_client(region="eu-west-1"):
    import boto3
    from botocore.stub import Stubber

    client = boto3.client("rekognition", region_name=region, aws_access_key_id="AKIDEXAMPLE",
                          aws_secret_access_key="secret")
    return client, Stubber(client)


def queue_describe(stubber, status="RUNNING", **extra):
    stubber.add_response("describe_projects", {"ProjectDescriptions": [{"ProjectArn": PROJECT_ARN, "Status": "CREATED"}]},
                         {"ProjectNames": ["colours"]})
    description = {"ProjectVersionArn": ARN, "Status": status, **extra}
    stubber.add_response("describe_project_versions", {"ProjectVersionDescriptions": [description]},
                         {"ProjectArn": PROJECT_ARN, "VersionNames": ["colours.2024-05-01T10.00.00"]})


def queue_detect(stubber, image: Path, confidences: dict | None = None):
    stubber.add_response("detect_custom_labels", answer(confidences or remote_guess(image)),
                         {"ProjectVersionArn": ARN, "Image": {"Bytes": image.read_bytes()}, "MinConfidence": 0})


# -- live against AWS, through the Stubber --------------------------------------------------------

def test_aws_arn_path_checks_running_asks_every_image_at_min_confidence_0_and_records_each(setup, tmp_path,
                                                                                          monkeypatch, capsys):
    model, test = setup
    client, stubber = stubbed_client()
    queue_describe(stubber, MinInferenceUnits=2, BillableTrainingTimeInSeconds=7200,
                   EvaluationResult={"F1Score": 0.9, "Summary": {"S3Object": {"Bucket": "my-bucket", "Name": "s.json"}}})
    for image in image_paths(test):
        queue_detect(stubber, image)
    monkeypatch.setattr("edgelabels.benchmark.clients.rekognition_client", lambda region, endpoint, n: client)
    out = tmp_path / "bench"
    with stubber:
        code = main(["benchmark", "--test", str(test), "--local", str(model), "--rekognition-arn", ARN,
                     "--region", "eu-west-1", "--out", str(out)])
        stubber.assert_no_pending_responses()
    assert code == 0
    printed = capsys.readouterr().out
    assert "stop-project-version --project-version-arn " + ARN in printed  # the model is still billed

    comparison = json.loads((out / "comparison.json").read_text())
    remote = comparison["sides"]["rekognition"]
    assert remote["top_label"]["accuracy"] == pytest.approx(11 / 12)
    assert comparison["sides"]["local"]["top_label"]["accuracy"] == 1.0
    assert comparison["agreement"]["only_local_right"] == 1 and comparison["agreement"]["only_rekognition_right"] == 0
    assert [d["path"].endswith("blue0.png") for d in comparison["disagreements"]] == [True]
    cost = comparison["cost"]["rekognition"]
    # 2 hours of billable training at $1 + one running hour x 2 inference units x $4.
    assert cost["training_hours"] == 2.0 and cost["inference_units"] == 2 and cost["total_cost"] == pytest.approx(10.0)
    assert any("s3://my-bucket/s.json" in note for note in comparison["notes"])

    records, partial = read_records(out / "rekognition-responses.jsonl")
    assert not partial and len(records) == 12
    first = records[0]
    assert {"image", "sha256", "timestamp", "latency_s", "response", "attempts"} <= set(first)
    assert first["response"]["CustomLabels"][0]["Confidence"] == 88.0 and "ResponseMetadata" not in first["response"]
    assert Path(first["image"]).read_bytes() and first["min_confidence"] == 0


def test_stopped_model_is_a_one_line_error_with_the_start_command_and_no_detect_call(setup, tmp_path, capsys):
    model, test = setup
    client, stubber = stubbed_client()
    queue_describe(stubber, status="STOPPED")
    # No detect_custom_labels queued: the Stubber fails the test if one is sent.
    with stubber, pytest.raises(UserError) as caught:
        run_benchmark(test=test, local=model, out=tmp_path / "bench", rekognition_arn=ARN, client=client,
                      progress=False)
    message = str(caught.value)
    assert "\n" not in message and "STOPPED" in message
    assert f"aws rekognition start-project-version --project-version-arn {ARN} --min-inference-units 1 " \
           "--region eu-west-1" in message
    assert "$4.00 per inference unit per hour" in message
    assert not (tmp_path / "bench").exists()


def test_throttling_is_retried_with_exponential_backoff_and_counted(setup, tmp_path):
    model, test = setup
    client, stubber = stubbed_client()
    queue_describe(stubber)
    images = image_paths(test)
    stubber.add_client_error("detect_custom_labels", "ThrottlingException", "Rate exceeded", http_status_code=400)
    stubber.add_client_error("detect_custom_labels", "ProvisionedThroughputExceededException", "busy",
                             http_status_code=400)
    for image in images:
        queue_detect(stubber, image)
    slept = []
    with stubber:
        result = run_benchmark(test=test, local=model, out=tmp_path / "bench", rekognition_arn=ARN, client=client,
                               live_options={"sleep": slept.append, "backoff_base_s": 1.0}, progress=False)
    assert len(slept) == 2 and 0 <= slept[0] <= 1.0 and 0 <= slept[1] <= 2.0  # full jitter under base * 2^n
    records, _ = read_records(tmp_path / "bench" / "rekognition-responses.jsonl")
    assert [r["attempts"] for r in records] == [3] + [1] * (len(images) - 1)
    assert any("throttled 2 requests" in note for note in result["comparison"]["notes"])


def test_throttled_past_the_attempt_limit_stops_with_advice_and_keeps_answers(setup, tmp_path):
    model, test = setup
    client, stubber = stubbed_client()
    queue_describe(stubber)
    images = image_paths(test)
    queue_detect(stubber, images[0])
    for _ in range(3):
        stubber.add_client_error("detect_custom_labels", "ThrottlingException", "Rate exceeded", http_status_code=400)
    with stubber, pytest.raises(UserError, match="ThrottlingException 3 times in a row; lower --concurrency"):
        run_benchmark(test=test, local=model, out=tmp_path / "bench", rekognition_arn=ARN, client=client,
                      live_options={"sleep": lambda s: None, "max_attempts": 3}, progress=False)
    records, _ = read_records(tmp_path / "bench" / "rekognition-responses.jsonl")
    assert len(records) == 1 and records[0]["image"] == str(images[0])


def test_interrupted_recording_is_resumed_without_asking_twice(setup, tmp_path):
    model, test = setup
    images = image_paths(test)
    out = tmp_path / "bench"
    out.mkdir()
    log = write_recording(out / "rekognition-responses.jsonl", images[:-2])
    with open(log, "a") as f:
        f.write('{"version": 1, "image": "half a li')  # the crash happened mid-line
    client, stubber = stubbed_client()
    queue_describe(stubber)
    for image in images[-2:]:  # only the two unanswered images may be sent
        queue_detect(stubber, image)
    with stubber:
        result = run_benchmark(test=test, local=model, out=out, rekognition_arn=ARN, client=client, progress=False)
        stubber.assert_no_pending_responses()
    records, partial = read_records(out / "rekognition-responses.jsonl")
    assert not partial and len(records) == len(images)
    assert result["comparison"]["scored_images"] == len(images)


def test_recording_of_another_model_in_the_out_folder_is_refused(setup, tmp_path):
    model, test = setup
    out = tmp_path / "bench"
    out.mkdir()
    other = ARN.replace("colours.2024", "other.2024")
    write_recording(out / "rekognition-responses.jsonl", image_paths(test)[:2], arn=other)
    client, stubber = stubbed_client()
    queue_describe(stubber)
    with stubber, pytest.raises(UserError, match="another model"):
        run_benchmark(test=test, local=model, out=out, rekognition_arn=ARN, client=client, progress=False)


def test_response_log_lines_survive_a_crash_one_line_at_a_time(tmp_path):
    path = tmp_path / "r.jsonl"
    with ResponseLog(path) as log:
        log.append({"sha256": "a", "project_version_arn": ARN, "latency_s": 0.1, "response": {}})
    with open(path, "ab") as f:
        f.write(b'{"sha256": "b", "proj')
    records, partial = read_records(path)
    assert [r["sha256"] for r in records] == ["a"] and partial
    with ResponseLog(path) as log:  # reopening cuts the partial line before appending
        assert log.dropped_partial
        log.append({"sha256": "c", "project_version_arn": ARN, "latency_s": 0.1, "response": {}})
    assert [r["sha256"] for r in read_records(path)[0]] == ["a", "c"]


# -- offline, from a recording ----------------------------------------------------------------------

def test_recorded_answers_are_scored_by_the_evaluation_code(setup, tmp_path):
    model, test = setup
    images = image_paths(test)
    recording = write_recording(tmp_path / "answers.jsonl", images)
    result = run_benchmark(test=test, local=model, out=tmp_path / "bench", responses=recording, progress=False)
    comparison = result["comparison"]
    # Counted by hand from remote_guess: 0.88 for the label it says, 0.06 for the other two; 4 images per label,
    # all right except blue0, called green. Recall red 1, green 1, blue 3/4; green's precision 4/5.
    # ROC AUC: green's 4 positives outscore 7 of its 8 negatives and tie blue0 (a tie counts half): 30/32;
    # blue's 3 right positives outscore all 8 negatives, blue0 ties all 8: 28/32.
    expected = {"accuracy": 11 / 12, "balanced_accuracy": (1 + 1 + 3 / 4) / 3,
                "f1_macro": (1 + 2 * 0.8 / 1.8 + 2 * 0.75 / 1.75) / 3, "roc_auc_macro": (1 + 30 / 32 + 28 / 32) / 3,
                "log_loss": -(11 * np.log(0.88) + np.log(0.06)) / 12}
    got = comparison["sides"]["rekognition"]["metrics"]
    for key, value in expected.items():
        assert got[key] == pytest.approx(value), key
    # The local side: the mean negative log of the probability the predictor gives each image's true label.
    labels = ["red", "green", "blue"]
    y_true = np.array([labels.index(p.parent.name) for p in images])
    probs = Predictor(model).probabilities(images)
    local_log_loss = -np.mean(np.log(probs[np.arange(len(images)), y_true]))
    assert comparison["sides"]["local"]["metrics"]["log_loss"] == pytest.approx(local_log_loss, rel=1e-4)
    # The local model is scored at its thresholds.json too; Rekognition's are unknown without a summary.
    assert comparison["sides"]["local"]["at_model_thresholds"]["thresholds"] == {"red": 0.6, "green": 0.4, "blue": 0.5}
    assert comparison["sides"]["rekognition"]["at_model_thresholds"]["f1"] is None
    # Per-label top-label F1: blue lost one image to green.
    per_label = {row["label"]: row["f1"] for row in comparison["sides"]["rekognition"]["per_label_top"]}
    assert per_label["red"] == 1.0 and per_label["blue"] == pytest.approx(2 * 3 / (2 * 3 + 1))
    assert comparison["sides"]["local"]["model_size_bytes"] == (model / "model.onnx").stat().st_size
    assert comparison["sides"]["rekognition"]["model_size_bytes"] is None
    # Latency and cost come from the recording: 12 requests of 80 ms, 0.1 s apart.
    assert comparison["sides"]["rekognition"]["latency"]["p50_ms"] == pytest.approx(80.0)
    cost = comparison["cost"]["rekognition"]
    assert cost["busy_seconds"] == pytest.approx(12 * 0.08)
    assert cost["running_hours_for_test_set"] == 1 and cost["inference_cost"] == 4.0 and cost["training_cost"] is None
    assert read_records(tmp_path / "bench" / "rekognition-responses.jsonl") == read_records(recording)


def test_labels_missing_from_an_answer_count_zero_and_unknown_labels_are_named(setup, tmp_path, capsys):
    model, test = setup
    images = image_paths(test)
    only_top = write_recording(tmp_path / "top.jsonl", images, guess=lambda p: {p.parent.name: 97.0})
    result = run_benchmark(test=test, local=model, out=tmp_path / "a", responses=only_top, progress=False)
    assert result["comparison"]["sides"]["rekognition"]["top_label"]["accuracy"] == 1.0

    dog = write_recording(tmp_path / "dog.jsonl", images, guess=lambda p: {"dog": 60.0, "red": 40.0})
    code = main(["benchmark", "--test", str(test), "--local", str(model), "--rekognition-responses", str(dog),
                 "--out", str(tmp_path / "b")])
    error = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bars
    assert code == 2 and error.startswith("edgelabels: error: ") and "['dog']" in error and "dog.jsonl" in error


def test_recording_without_an_answer_for_some_test_image_is_refused(setup, tmp_path):
    model, test = setup
    partial = write_recording(tmp_path / "some.jsonl", image_paths(test)[:5])
    with pytest.raises(UserError, match=r"no recorded answer for 7 of the 12 test images"):
        run_benchmark(test=test, local=model, out=tmp_path / "bench", responses=partial, progress=False)


def test_image_rekognition_refused_is_left_out_of_both_sides(setup, tmp_path):
    model, test = setup
    images = image_paths(test)
    recording = write_recording(tmp_path / "answers.jsonl", images)
    lines = recording.read_text().splitlines()
    refused = json.loads(lines[0])
    del refused["response"]
    refused["error"] = {"Code": "InvalidImageFormatException", "Message": "Request has unsupported image format"}
    recording.write_text("\n".join([json.dumps(refused)] + lines[1:]) + "\n")
    comparison = run_benchmark(test=test, local=model, out=tmp_path / "bench", responses=recording,
                               progress=False)["comparison"]
    assert comparison["scored_images"] == 11
    assert comparison["excluded"] == [{"path": str(images[0]), "side": "rekognition",
                                       "problem": "InvalidImageFormatException: Request has unsupported image format"}]
    assert comparison["sides"]["local"]["metrics"]["number_of_images"] == 11


# -- Rekognition's EvaluationSummary, both documented layouts ---------------------------------------

@pytest.mark.skipif(not (FIXTURES / "evaluation-summary-flat.json").exists(), reason="../shared/fixtures absent")
def test_both_documented_summary_layouts_load_and_show_beside_our_figures(tmp_path, monkeypatch):
    # AWS's example summary is for labels CAP and WATCH: a local model and test set with those labels.
    colours = {"CAP": (220, 30, 30), "WATCH": (30, 200, 40)}
    model = write_model_dir(tmp_path / "run" / "export", labels=tuple(colours))
    test = make_test_folder(tmp_path / "test", colours=colours)
    images = image_paths(test)
    recording = write_recording(tmp_path / "answers.jsonl", images,
                                guess=lambda p: {"CAP": 99.0, "WATCH": 1.0} if p.parent.name == "CAP"
                                else {"CAP": 3.0, "WATCH": 97.0})
    flat = FIXTURES / "evaluation-summary-flat.json"
    document = json.loads(flat.read_text())
    nested = copy.deepcopy(document)
    nested["AggregatedEvaluationResults"] = {"Metrics": {**document["AggregatedEvaluationResults"],
                                                         "AveragePrecision": 0.9, "AverageRecall": 0.9}}
    (tmp_path / "nested.json").write_text(json.dumps(nested))

    shown = []
    for summary, out in ((flat, "flat"), (tmp_path / "nested.json", "nested")):
        comparison = run_benchmark(test=test, local=model, out=tmp_path / out, responses=recording, summary=summary,
                                   progress=False)["comparison"]
        beside = comparison["rekognition_summary"]
        assert beside["summary"]["f1"] == pytest.approx(0.9726959470546408)
        assert beside["number_of_testing_images"] == 624 and beside["number_of_training_images"] == 5216
        cap = next(row for row in beside["per_label"] if row["label"] == "CAP")
        assert cap["threshold"] == pytest.approx(0.9879502058029175)
        # Rekognition is scored here at the summary's own thresholds: CAP at 0.988 catches the 0.99 answers only.
        remote = comparison["sides"]["rekognition"]["at_model_thresholds"]
        assert remote["thresholds"]["WATCH"] == pytest.approx(0.014450683258473873)
        assert cap["rekognition_measured"]["recall"] == 1.0 and cap["rekognition_measured"]["precision"] == 1.0
        html = (tmp_path / out / "comparison.html").read_text()
        assert "EvaluationSummary beside this test set" in html and "0.9727" in html
        shown.append(beside["per_label"])
    assert shown[0] == shown[1]


@pytest.mark.skipif(not (FIXTURES / "evaluation-summary-flat.json").exists(), reason="../shared/fixtures absent")
def test_summary_of_a_model_with_other_labels_is_refused(setup, tmp_path):
    model, test = setup
    recording = write_recording(tmp_path / "answers.jsonl", image_paths(test))
    with pytest.raises(UserError, match=r"evaluation-summary-flat.json: its labels \['CAP', 'WATCH'\]"):
        run_benchmark(test=test, local=model, out=tmp_path / "bench", responses=recording,
                      summary=FIXTURES / "evaluation-summary-flat.json", progress=False)


# -- outputs and bad inputs ---------------------------------------------------------------------------

def test_html_is_self_contained_with_a_gallery_of_the_disagreements(setup, tmp_path):
    model, test = setup
    recording = write_recording(tmp_path / "answers.jsonl", image_paths(test))
    out = tmp_path / "bench"
    run_benchmark(test=test, local=model, out=out, responses=recording, progress=False)
    html = (out / "comparison.html").read_text()
    assert "src='http" not in html and "href=" not in html and "<link" not in html
    assert html.count("<figure>") == 1 and html.count("data:image/jpeg;base64,") == 1
    assert "blue0.png" in html
    md = (out / "comparison.md").read_text()
    assert "| Accuracy (top label, MinConfidence 0) | **100.00%** | 91.67% |" in md
    assert sorted(p.name for p in out.iterdir()) == ["comparison.html", "comparison.json", "comparison.md",
                                                      "rekognition-responses.jsonl"]


@pytest.mark.parametrize("extra, message", [
    ([], "say which Rekognition model"),
    (["--rekognition-endpoint", "http://127.0.0.1:9"], "--rekognition-endpoint needs --rekognition-arn"),
    (["--rekognition-arn", ARN, "--rekognition-responses", "x.jsonl"], "does not go with"),
    (["--rekognition-arn", "arn:aws:rekognition:eu-west-1:1:project/x"], "not a model ARN"),
    (["--rekognition-arn", ARN, "--region", "us-east-1"], "lives in eu-west-1"),
    (["--rekognition-responses", "missing.jsonl"], "recorded responses not found"),
    (["--rekognition-responses", "missing.jsonl", "--price-training", "-1"], "--price-training -1.0: must be 0"),
    (["--rekognition-responses", "missing.jsonl", "--concurrency", "0"], "--concurrency 0"),
])
def test_bad_inputs_are_one_line_errors_with_exit_code_2(setup, tmp_path, capsys, extra, message):
    model, test = setup
    code = main(["benchmark", "--test", str(test), "--local", str(model), "--out", str(tmp_path / "bench"), *extra])
    error = capsys.readouterr().err.strip()
    assert code == 2 and error.startswith("edgelabels: error: ") and "\n" not in error
    assert message in error


def test_out_folder_holding_other_files_is_refused(setup, tmp_path):
    model, test = setup
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "thesis.tex").write_text("mine")
    recording = write_recording(tmp_path / "answers.jsonl", image_paths(test))
    with pytest.raises(UserError, match="not a benchmark folder"):
        run_benchmark(test=test, local=model, out=tmp_path / "busy", responses=recording, progress=False)
    assert (tmp_path / "busy" / "thesis.tex").read_text() == "mine"


def test_byte_identical_test_images_are_asked_once_and_both_scored(setup, tmp_path):
    model, test = setup
    (test / "red" / "dup.png").write_bytes((test / "red" / "red0.png").read_bytes())
    client, stubber = stubbed_client()
    queue_describe(stubber)
    seen = set()
    for image in image_paths(test):  # the dataset's order; the copy is sent once
        if image.read_bytes() not in seen:
            seen.add(image.read_bytes())
            queue_detect(stubber, image)
    with stubber:
        comparison = run_benchmark(test=test, local=model, out=tmp_path / "bench", rekognition_arn=ARN, client=client,
                                   progress=False)["comparison"]
        stubber.assert_no_pending_responses()
    assert comparison["scored_images"] == 13 and comparison["sides"]["rekognition"]["latency"]["requests"] == 12
