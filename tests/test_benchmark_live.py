"""`edgelabels benchmark` live, end to end, against our own `edgelabels serve` (real boto3, real HTTP).

The server plays the Rekognition model (`--rekognition-endpoint`): a different exported model from the
local one, so the two sides disagree on some images. It is started with --max-concurrency 1, so that
concurrent benchmark requests are shed with ProvisionedThroughputExceededException and must be retried.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score, roc_auc_score

for needed in ("boto3", "onnx", "starlette", "uvicorn"):
    pytest.importorskip(needed)

from helpers.server import ServerProcess, image_bytes, rekognition_client, write_model_dir  # noqa: E402
from helpers.benchmark import image_paths, make_test_folder  # noqa: E402

from edgelabels.benchmark.clients import rekognition_client as benchmark_client  # noqa: E402
from edgelabels.benchmark.driver import run_benchmark  # noqa: E402
from edgelabels.benchmark.responses import read_records  # noqa: E402
from edgelabels.cli import main  # noqa: E402
from edgelabels.errors import UserError  # noqa: E402
from edgelabels.runtime.predictor import Predictor  # noqa: E402

LABELS = ["red", "green", "blue"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    local = write_model_dir(root / "local" / "export", thresholds={"red": 0.6, "green": 0.4, "blue": 0.5})
    # The "Rekognition" model: small random convolutions, so it is wrong on some images.
    remote = write_model_dir(root / "remote" / "export", size=64, conv_channels=(16, 16), seed=1)
    test = make_test_folder(root / "test")
    # 48 px: the local model takes it, Rekognition's limits (64..4096 px) refuse it.
    (test / "red" / "tiny.png").write_bytes(image_bytes((220, 30, 30), size=(48, 48)))
    return {"root": root, "local": local, "remote": remote, "test": test}


@pytest.fixture(scope="module")
def server(folders):
    process = ServerProcess(folders["remote"], "--no-access-log", "--max-concurrency", "1")
    yield process
    process.stop()


@pytest.fixture(autouse=True)
def credentials(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")


@pytest.fixture(scope="module")
def live_run(folders, server):
    out = folders["root"] / "live"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
        code = main(["benchmark", "--test", str(folders["test"]), "--local", str(folders["local"]),
                     "--rekognition-endpoint", server.url, "--rekognition-arn", server.arn, "--out", str(out)])
    assert code == 0, server.output()
    return out


def test_live_run_scores_both_sides_like_the_predictor_and_leaves_out_what_rekognition_refuses(folders, live_run):
    comparison = json.loads((live_run / "comparison.json").read_text())
    assert comparison["excluded"] == [{"path": str(folders["test"] / "red" / "tiny.png"), "side": "rekognition",
                                       "problem": comparison["excluded"][0]["problem"]}]
    assert comparison["excluded"][0]["problem"].startswith("InvalidParameterException: Image is 48x48 pixels")
    images = image_paths(folders["test"])
    images.remove(folders["test"] / "red" / "tiny.png")
    y_true = np.array([LABELS.index(p.parent.name) for p in images])
    for side, model in (("local", folders["local"]), ("rekognition", folders["remote"])):
        # What scikit-learn makes of the Predictor's own probabilities for the images both sides scored.
        probs = Predictor(model).probabilities(images)
        y_pred = probs.argmax(axis=1)
        expected = {"accuracy": accuracy_score(y_true, y_pred),
                    "balanced_accuracy": balanced_accuracy_score(y_true, y_pred),
                    "f1_macro": f1_score(y_true, y_pred, average="macro"),
                    "roc_auc_macro": np.mean([roc_auc_score(y_true == k, probs[:, k]) for k in range(len(LABELS))])}
        got = comparison["sides"][side]["metrics"]
        for key, value in expected.items():
            assert got[key] == pytest.approx(value, abs=1e-6), (side, key)
        counts = confusion_matrix(y_true, y_pred, labels=range(len(LABELS))).tolist()
        assert got["confusion_matrix"]["counts"] == counts, side
    remote = comparison["sides"]["rekognition"]
    assert remote["latency"]["requests"] == 12 and remote["latency"]["p50_ms"] > 0
    assert comparison["sides"]["local"]["latency"]["requests"] == 12
    assert comparison["cost"]["rekognition"]["running_hours_for_test_set"] == 1
    assert comparison["agreement"]["same_top_label"] < 12  # the two models differ, and the report shows where
    html = (live_run / "comparison.html").read_text()
    assert html.count("<figure>") == len(comparison["disagreements"]) > 0

    records, partial = read_records(live_run / "rekognition-responses.jsonl")
    assert not partial and len(records) == 13 and {r["project_version_arn"] for r in records} == {comparison["context"]["rekognition_model"]}
    refused = [r for r in records if "error" in r]
    assert [r["image"] for r in refused] == [str(folders["test"] / "red" / "tiny.png")]
    answered = [r for r in records if "response" in r]
    assert all(len(r["response"]["CustomLabels"]) == 3 for r in answered)  # MinConfidence 0: every label


def test_recorded_rerun_gives_the_same_comparison_as_the_live_run(folders, live_run):
    again = folders["root"] / "again"
    code = main(["benchmark", "--test", str(folders["test"]), "--local", str(folders["local"]),
                 "--rekognition-responses", str(live_run / "rekognition-responses.jsonl"), "--out", str(again)])
    assert code == 0
    live, replay = (json.loads((folder / "comparison.json").read_text()) for folder in (live_run, again))
    assert replay["sides"]["rekognition"] == live["sides"]["rekognition"]
    for key in ("top_label", "at_assumed_thresholds", "at_model_thresholds", "per_label_top"):
        assert replay["sides"]["local"][key] == live["sides"]["local"][key], key  # deterministic ONNX
    for key in ("agreement", "disagreements", "excluded", "scored_images", "assumptions"):
        assert replay[key] == live[key], key
    assert replay["cost"]["rekognition"] == live["cost"]["rekognition"]


def test_stopped_model_is_refused_before_any_detect_call(folders, server, tmp_path):
    control = rekognition_client(server.url)
    control.stop_project_version(ProjectVersionArn=server.arn)
    client = benchmark_client("us-east-1", server.url)
    detect_calls = []
    client.meta.events.register("before-call.rekognition.DetectCustomLabels", lambda **kw: detect_calls.append(1))
    try:
        with pytest.raises(UserError) as caught:
            run_benchmark(test=folders["test"], local=folders["local"], out=tmp_path / "bench",
                          rekognition_arn=server.arn, endpoint=server.url, client=client, progress=False)
    finally:
        control.start_project_version(ProjectVersionArn=server.arn, MinInferenceUnits=1)
    message = str(caught.value)
    assert "is STOPPED, not RUNNING" in message and "\n" not in message
    assert f"aws rekognition start-project-version --project-version-arn {server.arn} --min-inference-units 1 " \
           f"--region us-east-1 --endpoint-url {server.url}" in message
    assert detect_calls == [] and not (tmp_path / "bench").exists()


def test_requests_shed_by_the_server_are_retried_until_every_image_is_answered(folders, server, tmp_path):
    # 4 requests in flight against a server that takes 1: most collide and are shed.
    test = make_test_folder(tmp_path / "test", per_label=8)
    out = tmp_path / "bench"
    result = run_benchmark(test=test, local=folders["local"], out=out, rekognition_arn=server.arn,
                           endpoint=server.url, concurrency=4, progress=False,
                           live_options={"backoff_base_s": 0.05})
    records, _ = read_records(out / "rekognition-responses.jsonl")
    assert len(records) == 24 and all("response" in r for r in records)
    assert sum(r["attempts"] for r in records) > 24, "no request was shed: the retry path did not run"
    assert any("throttled" in note for note in result["comparison"]["notes"])
    assert server.alive()
