"""`edgelabels benchmark` with a multi-label export: every label scored on its own, for both sides.

The local model is the hand-built multi-label export of helpers/multilabel.py (each colour channel's mean decides
its own label, about 0.9 when high and 0.1 when low, thresholds 0.5), so on these solid colours it is right on
every label of every image. The "Rekognition" answers are recorded by hand (the responses.py JSONL format), and
every expected number below is counted by hand in the comments.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("onnx")

from helpers.multilabel import write_multilabel_export  # noqa: E402
from helpers.server import image_bytes, write_unet_dir  # noqa: E402

from edgelabels.benchmark.driver import run_benchmark  # noqa: E402
from edgelabels.benchmark.responses import image_key  # noqa: E402
from edgelabels.cli import main  # noqa: E402
from edgelabels.errors import UserError  # noqa: E402

ARN = "arn:aws:rekognition:eu-west-1:123456789012:project/shapes/version/shapes.v1/1714557600000"
LABELS = ("red", "green", "blue")
# image -> (colour, its labels): a channel at 220 carries its label, one at 30 does not
IMAGES = {
    "a": ((220, 30, 30), ("red",)),
    "b": ((220, 220, 30), ("red", "green")),
    "c": ((30, 220, 220), ("green", "blue")),
    "d": ((30, 30, 220), ("blue",)),
    "e": ((30, 220, 30), ("green",)),
    "f": ((220, 220, 220), ("red", "green", "blue")),
}
# The hand-made Rekognition at MinConfidence 0 (red, green, blue confidences, 0-100):
#   red   positives a 90, b 85, f 70; negatives c 5, d 60, e 5   -> assumed 0.70: TP 3, FP 0: P = R = F1 = 1
#   green positives b 20, c 80, e 88, f 70; negatives a 30, d 5 -> at 0.20: TP 4, FP 1 (a): F1 8/9 (best; at 0.70
#         TP 3, FN 1: 6/7; at 0.30: TP 3, FP 1, FN 1: 3/4)                       -> P 0.8, R 1
#   blue  positives c 75, d 95, f 70; negatives a, b, e 5        -> assumed 0.70: P = R = F1 = 1
# Label sets at those thresholds: a {red, green} (wrong), the five others right: subset accuracy 5/6.
CONFIDENCES = {"a": (90, 30, 5), "b": (85, 20, 5), "c": (5, 80, 75), "d": (60, 5, 95), "e": (5, 88, 5),
               "f": (70, 70, 70)}
# What Rekognition returned when asked without MinConfidence (each label above its own threshold):
#   red:   a, b, d, f -> TP 3 (a b f), FP 1 (d): P 3/4, R 1, F1 6/7
#   green: c, e, f    -> TP 3, FN 1 (b):          P 1, R 3/4, F1 6/7
#   blue:  c, d, f    -> TP 3:                    P = R = F1 = 1
# Label sets: b (misses green) and d (adds red) wrong: subset accuracy 4/6.
RETURNED = {"a": ("red",), "b": ("red",), "c": ("green", "blue"), "d": ("red", "blue"), "e": ("green",),
            "f": ("red", "green", "blue")}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench-multilabel")
    export = write_multilabel_export(root / "run" / "export")
    test = root / "test"
    data = {}
    for name, (colour, labels) in IMAGES.items():
        data[name] = image_bytes(colour, size=(80, 72))
        for label in labels:  # an image with several labels: the same bytes in each label's folder
            (test / label).mkdir(parents=True, exist_ok=True)
            (test / label / f"{name}.png").write_bytes(data[name])

    def recording(path, answers, min_confidence):
        with path.open("w") as file:
            for n, name in enumerate(IMAGES):
                file.write(json.dumps({
                    "version": 1, "image": f"{name}.png", "sha256": image_key(data[name]), "bytes": len(data[name]),
                    "project_version_arn": ARN, "timestamp": 1000.0 + n, "latency_s": 0.1, "elapsed_s": 0.1,
                    "attempts": 1, **({"min_confidence": 0} if min_confidence == 0 else {}),
                    "response": {"CustomLabels": answers[name]}}) + "\n")
        return path

    at_zero = {name: [{"Name": label, "Confidence": float(c)} for label, c in zip(LABELS, CONFIDENCES[name])]
               for name in IMAGES}
    returned = {name: [{"Name": label, "Confidence": float(CONFIDENCES[name][LABELS.index(label)])}
                       for label in RETURNED[name]] for name in IMAGES}
    return {"root": root, "export": export, "test": test,
            "at_zero": recording(root / "at-zero.jsonl", at_zero, 0),
            "returned": recording(root / "returned.jsonl", returned, None)}


@pytest.fixture(scope="module")
def recorded(folders):
    out = folders["root"] / "bench"
    result = run_benchmark(test=folders["test"], local=folders["export"], out=out, responses=folders["at_zero"],
                           progress=False)
    return out, result["comparison"]


def by_label(side: dict) -> dict:
    return {row["label"]: row for row in side["per_label"]}


def test_each_label_of_rekognition_is_scored_at_its_assumed_threshold(recorded):
    remote = recorded[1]["sides"]["rekognition"]
    rows = by_label(remote)
    assert rows["red"]["support"] == 3 and rows["green"]["support"] == 4 and rows["blue"]["support"] == 3
    assert recorded[1]["task"] == "multilabel" and recorded[1]["scored_images"] == 6
    for label in ("red", "blue"):
        assert rows[label]["at_assumed_threshold"]["threshold"] == pytest.approx(0.70), label
        assert rows[label]["at_assumed_threshold"]["f1"] == pytest.approx(1.0), label
    green = rows["green"]["at_assumed_threshold"]
    assert green["threshold"] == pytest.approx(0.20)
    assert (green["tp"], green["fp"], green["fn"]) == (4, 1, 0)
    assert green["precision"] == pytest.approx(0.8) and green["recall"] == 1.0 and green["f1"] == pytest.approx(8 / 9)
    assert remote["at_assumed_thresholds"]["subset_accuracy"] == pytest.approx(5 / 6)
    assert remote["at_assumed_thresholds"]["f1"] == pytest.approx((1 + 8 / 9 + 1) / 3)


def test_local_side_is_scored_per_label_at_thresholds_json(recorded):
    _, comparison = recorded
    local = comparison["sides"]["local"]
    assert local["at_model_thresholds"]["thresholds"] == {"red": 0.5, "green": 0.5, "blue": 0.5}
    for label, row in by_label(local).items():
        own = row["at_model_threshold"]
        assert (own["precision"], own["recall"], own["f1"]) == (1.0, 1.0, 1.0), label
    assert local["at_model_thresholds"]["subset_accuracy"] == 1.0
    assert local["at_assumed_thresholds"]["subset_accuracy"] == 1.0
    assert local["latency"]["requests"] == 6


def test_answers_asked_at_min_confidence_0_leave_rekognitions_own_thresholds_unknown(recorded):
    out, comparison = recorded
    own = comparison["sides"]["rekognition"]["at_model_thresholds"]
    assert own["f1"] is None and own["per_label"] is None
    assert all(row["at_model_threshold"] is None for row in comparison["sides"]["rekognition"]["per_label"])
    assert "pass it with --rekognition-summary" in (out / "comparison.md").read_text()


def test_label_sets_are_compared_image_by_image(recorded, folders):
    _, comparison = recorded
    # Only a differs: Rekognition adds green (30 >= 0.20); the local model is right on it.
    assert comparison["agreement"]["same_label_set"] == 5
    assert comparison["agreement"]["only_local_right"] == 1 and comparison["agreement"]["only_rekognition_right"] == 0
    assert comparison["agreement"]["mcnemar_p_value"] == 1.0  # one discordant image: a coin flip
    assert comparison["disagreements"] == [{"path": str(folders["test"] / "red" / "a.png"), "true": ["red"],
                                            "right": "local", "local": ["red"], "rekognition": ["red", "green"]}]


def test_report_shows_both_sides_per_label(recorded):
    out, _ = recorded
    md = (out / "comparison.md").read_text()
    # Label | images | own thr. local, Rekognition | P/R/F1 own: local, Rekognition | P/R/F1 assumed: local, Rek.
    assert "| green | 4 | 0.5000 | n/a | 1.0000 / 1.0000 / 1.0000 | n/a / n/a / n/a | 1.0000 / 1.0000 / 1.0000 " \
           "| 0.8000 / 1.0000 / 0.8889 |" in md
    assert "| Subset accuracy (every label right) at assumed thresholds | **100.00%** | 83.33% |" in md
    html = (out / "comparison.html").read_text()
    assert "(multi-label)" in html and html.count("<figure>") == 1 and "a.png" in html
    assert json.loads((out / "comparison.json").read_text())["sides"]["rekognition"]["per_label"][1]["label"] == \
        "green"


def test_labels_rekognition_returned_without_min_confidence_are_its_own_operating_point(folders):
    comparison = run_benchmark(test=folders["test"], local=folders["export"], out=folders["root"] / "returned",
                               responses=folders["returned"], progress=False)["comparison"]
    own = comparison["sides"]["rekognition"]["at_model_thresholds"]
    assert own["source"].startswith("the labels Rekognition returned")
    rows = {row["label"]: row for row in own["per_label"]}
    assert (rows["red"]["precision"], rows["red"]["recall"]) == (0.75, 1.0)
    assert rows["red"]["f1"] == pytest.approx(6 / 7)
    assert (rows["green"]["precision"], rows["green"]["recall"]) == (1.0, 0.75)
    assert rows["blue"]["f1"] == 1.0
    assert own["subset_accuracy"] == pytest.approx(4 / 6)


def test_evaluation_summary_thresholds_score_each_label_of_rekognition(folders, tmp_path):
    # Rekognition's own thresholds red 0.65, green 0.25, blue 0.90 on the MinConfidence-0 answers:
    #   red   a 90, b 85, f 70 kept; d 60 not           -> TP 3:             P = R = F1 = 1
    #   green a 30 (FP), c 80, e 88, f 70 kept; b 20 not -> TP 3, FP 1, FN 1: P = R = F1 = 3/4
    #   blue  d 95 kept; c 75, f 70 not                  -> TP 1, FN 2:       P 1, R 1/3, F1 1/2
    # Label sets right: d {blue} and e {green} only -> subset accuracy 2/6.
    thresholds = {"red": 0.65, "green": 0.25, "blue": 0.90}
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({
        "Version": 1,
        "AggregatedEvaluationResults": {"F1Score": 0.9, "Precision": 0.91, "Recall": 0.89},
        "EvaluationDetails": {"EvaluationEndTimestamp": "2026-01-02T03:04:05", "Labels": list(LABELS),
                              "NumberOfTestingImages": 50, "NumberOfTrainingImages": 200, "ProjectVersionArn": ARN},
        "LabelEvaluationResults": [
            {"Label": label, "NumberOfTestingImages": 20,
             "Metrics": {"F1Score": 0.9, "Precision": 0.9, "Recall": 0.9, "Threshold": threshold}}
            for label, threshold in thresholds.items()]}))
    comparison = run_benchmark(test=folders["test"], local=folders["export"], out=tmp_path / "bench",
                               responses=folders["at_zero"], summary=summary, progress=False)["comparison"]
    own = comparison["sides"]["rekognition"]["at_model_thresholds"]
    assert own["thresholds"] == thresholds
    rows = {row["label"]: row for row in own["per_label"]}
    assert (rows["red"]["precision"], rows["red"]["recall"], rows["red"]["f1"]) == (1.0, 1.0, 1.0)
    assert (rows["green"]["tp"], rows["green"]["fp"], rows["green"]["fn"]) == (3, 1, 1)
    assert rows["green"]["f1"] == pytest.approx(0.75)
    assert rows["blue"]["recall"] == pytest.approx(1 / 3) and rows["blue"]["f1"] == pytest.approx(0.5)
    assert own["subset_accuracy"] == pytest.approx(2 / 6)
    beside = comparison["rekognition_summary"]
    assert beside["rekognition_measured"]["f1"] == pytest.approx((1 + 0.75 + 0.5) / 3)
    assert {row["label"]: row["rekognition_measured"]["f1"] for row in beside["per_label"]} == \
        {"red": 1.0, "green": pytest.approx(0.75), "blue": pytest.approx(0.5)}
    assert "EvaluationSummary beside this test set" in (tmp_path / "bench" / "comparison.md").read_text()


def test_cli_prints_per_label_f1_for_both_sides(folders, tmp_path, capsys):
    code = main(["benchmark", "--test", str(folders["test"]), "--local", str(folders["export"]),
                 "--rekognition-responses", str(folders["returned"]), "--out", str(tmp_path / "bench")])
    assert code == 0
    printed = capsys.readouterr().out.splitlines()
    assert [line.split()[-2:] for line in printed if line.startswith("F1 red (own thr.)")] == [["1.0000", "0.8571"]]
    assert any(line.startswith("subset accuracy (own thr.)") and line.split()[-2:] == ["100.00%", "66.67%"]
               for line in printed)


def test_a_label_the_local_model_lacks_in_the_test_set_is_refused(folders, tmp_path):
    import shutil

    test = shutil.copytree(folders["test"], tmp_path / "test")
    (test / "purple").mkdir()
    (test / "purple" / "p.png").write_bytes(image_bytes((160, 30, 200)))
    with pytest.raises(UserError, match=r"labels \['purple'\] are not among the local model's labels"):
        run_benchmark(test=test, local=folders["export"], out=tmp_path / "out", responses=folders["at_zero"],
                      progress=False)


def test_a_segmentation_export_is_refused_in_one_line(folders, tmp_path):
    unet = write_unet_dir(tmp_path / "unet")
    with pytest.raises(UserError) as caught:
        run_benchmark(test=folders["test"], local=unet, out=tmp_path / "out", responses=folders["at_zero"],
                      progress=False)
    message = str(caught.value)
    assert "\n" not in message and "Rekognition Custom Labels has no segmentation" in message
    assert not (tmp_path / "out").exists()
