"""`edgelabels benchmark` with a detection export: recorded and live Rekognition answers, scored per box.

The local model is the hand-made detector of helpers/detection.py (fixed boxes, each scored by one colour
channel's mean), so on solid-colour images its answers are known exactly. The test set is a YOLO folder of
four 100x100 images; the recorded "Rekognition" answers are chosen by hand: right boxes, a box with the
wrong label, a missed box, a low-confidence false positive and a label the local model does not know.
Every expected number below is counted by hand in the comments, not by the code under test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("onnx")
pytest.importorskip("pycocotools")

from helpers.detection import solid_image, write_detector_dir  # noqa: E402

from edgelabels.benchmark.driver import run_benchmark  # noqa: E402
from edgelabels.benchmark.responses import image_key  # noqa: E402
from edgelabels.cli import main  # noqa: E402
from edgelabels.errors import UserError  # noqa: E402

ARN = "arn:aws:rekognition:us-east-1:123456789012:project/boxes/version/v1/1690000000000"
R1 = (0.1, 0.2, 0.3, 0.4)  # the detector's red box (score = mean R)
R2 = (0.2, 0.2, 0.2, 0.2)  # its second red box (0.75 x mean R); IoU with R1 = 0.04 / 0.12 < 0.5
G = (0.5, 0.5, 0.5, 0.5)  # its green box, after clipping
B = (0.0, 0.0, 0.2, 0.2)  # its blue box, after clipping
# image name -> (colour, ground-truth boxes as (class id, (left, top, width, height) ratios))
IMAGES = {
    "a": ((255, 0, 0), [(0, R1)]),
    "b": ((0, 255, 0), [(1, G)]),
    "c": ((0, 0, 255), [(2, B)]),
    "d": ((255, 255, 0), [(0, R1), (1, G)]),
}


def box(name, confidence, ratios):
    left, top, width, height = ratios
    return {"Name": name, "Confidence": confidence,
            "Geometry": {"BoundingBox": {"Width": width, "Height": height, "Left": left, "Top": top}}}


# The hand-made "Rekognition":
#   a: red 90 on R1 (TP)
#   b: red 92 on the green box (wrong label: a red FP, the green box missed)
#   c: nothing blue (missed), a red 30 FP elsewhere
#   d: red 95 on R1 moved by 0.02 (IoU 0.112 / 0.128 = 0.875: TP), green 70 on G (TP), a "cat" (unknown label)
ANSWERS = {
    "a": [box("red", 90.0, R1)],
    "b": [box("red", 92.0, G)],
    "c": [box("red", 30.0, (0.6, 0.1, 0.2, 0.2))],
    "d": [box("red", 95.0, (0.12, 0.2, 0.3, 0.4)), box("green", 70.0, G), box("cat", 50.0, (0.0, 0.6, 0.3, 0.3))],
}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench-detection")
    export = write_detector_dir(root / "run" / "export")
    test = root / "test"
    (test / "images").mkdir(parents=True)
    (test / "labels").mkdir()
    for name, (colour, boxes) in IMAGES.items():
        solid_image(colour, size=(100, 100)).save(test / "images" / f"{name}.png")
        (test / "labels" / f"{name}.txt").write_text("".join(
            f"{k} {l + w / 2} {t + h / 2} {w} {h}\n" for k, (l, t, w, h) in boxes))
    responses = root / "recorded.jsonl"
    with responses.open("w") as file:
        for n, name in enumerate(IMAGES):
            data = (test / "images" / f"{name}.png").read_bytes()
            file.write(json.dumps({"version": 1, "image": f"{name}.png", "sha256": image_key(data),
                                   "bytes": len(data), "project_version_arn": ARN, "min_confidence": 0,
                                   "timestamp": 1000.0 + n, "latency_s": 0.2, "elapsed_s": 0.2, "attempts": 1,
                                   "response": {"CustomLabels": ANSWERS[name]}}) + "\n")
    return {"root": root, "export": export, "test": test, "responses": responses}


@pytest.fixture(scope="module")
def recorded(folders):
    out = folders["root"] / "bench"
    code = main(["benchmark", "--test", str(folders["test"]), "--local", str(folders["export"]),
                 "--rekognition-responses", str(folders["responses"]), "--out", str(out)])
    assert code == 0
    return out, json.loads((out / "comparison.json").read_text())


def per_label(side):
    return {row["label"]: row for row in side["per_label"]}


def test_recorded_rekognition_side_per_label_numbers_match_hand_counts(recorded):
    _, comparison = recorded
    assert comparison["task"] == "detection" and comparison["scored_images"] == 4
    remote = comparison["sides"]["rekognition"]
    rows = per_label(remote)
    # red: .95 TP, .92 FP, .90 TP, .30 FP over 2 boxes; F1 = 2TP / (TP + FP + boxes): .667, .5, .8, .667 -> .90
    assert rows["red"]["assumed_threshold"] == pytest.approx(0.90)
    assert rows["red"]["at_assumed_threshold"]["tp"] == 2 and rows["red"]["at_assumed_threshold"]["fp"] == 1
    assert rows["red"]["at_assumed_threshold"]["precision"] == pytest.approx(2 / 3)
    assert rows["red"]["at_assumed_threshold"]["recall"] == pytest.approx(1.0)
    assert rows["red"]["at_assumed_threshold"]["f1"] == pytest.approx(0.8)
    # green: one TP at .70, 2 boxes
    assert rows["green"]["assumed_threshold"] == pytest.approx(0.70)
    assert rows["green"]["at_assumed_threshold"]["precision"] == pytest.approx(1.0)
    assert rows["green"]["at_assumed_threshold"]["recall"] == pytest.approx(0.5)
    assert rows["green"]["at_assumed_threshold"]["f1"] == pytest.approx(2 / 3)
    # blue: never predicted, 1 box missed
    assert rows["blue"]["assumed_threshold"] is None
    assert rows["blue"]["at_assumed_threshold"]["precision"] is None
    assert rows["blue"]["at_assumed_threshold"]["recall"] == 0 and rows["blue"]["at_assumed_threshold"]["fn"] == 1
    # Rekognition's aggregate: unweighted means over labels where defined
    aggregate = remote["at_assumed_thresholds"]
    assert aggregate["average_precision"] == pytest.approx((2 / 3 + 1) / 2)
    assert aggregate["average_recall"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert aggregate["f1"] == pytest.approx((0.8 + 2 / 3 + 0) / 3)
    # COCO AP@0.5, 101 recall points: red precision 1 up to recall .5 (51 points), 2/3 above (50 points);
    # green 1 up to .5 (51 points) then nothing; blue 0
    assert rows["red"]["coco_ap_50"] == pytest.approx((51 + 50 * 2 / 3) / 101)
    assert rows["green"]["coco_ap_50"] == pytest.approx(51 / 101)
    assert remote["map_50"] == pytest.approx(((51 + 50 * 2 / 3) / 101 + 51 / 101 + 0) / 3)
    assert comparison["unknown_labels"] == {"cat": 1}
    assert any("cat: 1" in note for note in comparison["notes"])


def test_local_side_is_the_detectors_boxes(recorded):
    _, comparison = recorded
    local = comparison["sides"]["local"]
    rows = per_label(local)
    # Solid colours: every right box scores 1.0, every other box 0.75 (R2) or 0, so at threshold 1.0 each label
    # finds all its boxes and nothing else.
    for label, boxes in (("red", 2), ("green", 2), ("blue", 1)):
        assert rows[label]["assumed_threshold"] == pytest.approx(1.0), label
        assert rows[label]["at_assumed_threshold"]["tp"] == boxes and rows[label]["at_assumed_threshold"]["fp"] == 0
    assert local["at_assumed_thresholds"]["f1"] == pytest.approx(1.0)
    assert local["map_50"] == pytest.approx(1.0)
    # At thresholds.json (red .7, green .1, blue .5): red also keeps R2 (0.75) on a and d -> 2 TP, 2 FP
    own = {row["label"]: row for row in local["at_model_thresholds"]["per_label"]}
    assert own["red"]["precision"] == pytest.approx(0.5) and own["red"]["recall"] == pytest.approx(1.0)
    assert own["green"]["precision"] == pytest.approx(1.0) and own["blue"]["f1"] == pytest.approx(1.0)


def test_disagreements_are_counted_drawn_and_reported(recorded, folders):
    out, comparison = recorded
    different = comparison["disagreements"]
    # local: every image all TP. Rekognition at .90 / .70 / none: b TP0 FP1 FN1 (diff 3), c FN1 (diff 2)
    assert [(d["path"], d["difference"]) for d in different] == [
        (str(folders["test"] / "images" / "b.png"), 3), (str(folders["test"] / "images" / "c.png"), 2)]
    assert different[0]["local"] == {"tp": 1, "fp": 0, "fn": 0}
    assert different[0]["rekognition"] == {"tp": 0, "fp": 1, "fn": 1}
    pictures = sorted(p.name for p in (out / "disagreements").iterdir())
    assert pictures == ["001-b.png", "002-c.png"]
    from PIL import Image

    with Image.open(out / "disagreements" / "001-b.png") as picture:
        assert picture.width > 1.5 * picture.height  # two square panels side by side
    md = (out / "comparison.md").read_text()
    assert "disagreements/001-b.png" in md and "COCO mAP@0.5" in md
    html = (out / "comparison.html").read_text()
    assert html.count("<figure") == 2 and "data:image/png;base64" in html
    lines = (lambda path: [json.loads(line) for line in path.read_text().splitlines()])
    assert lines(out / "rekognition-responses.jsonl") == lines(folders["responses"])  # replayable from DIR


def test_classification_answer_for_a_detector_is_a_user_error(folders, tmp_path):
    bad = tmp_path / "bad.jsonl"
    records = []
    for name in IMAGES:
        data = (folders["test"] / "images" / f"{name}.png").read_bytes()
        records.append(json.dumps({"sha256": image_key(data), "project_version_arn": ARN, "latency_s": 0.1,
                                   "timestamp": 1.0, "response": {"CustomLabels": [
                                       {"Name": "red", "Confidence": 80.0}]}}))
    bad.write_text("\n".join(records) + "\n")
    with pytest.raises(UserError, match="without Geometry"):
        run_benchmark(test=folders["test"], local=folders["export"], out=tmp_path / "out", responses=bad,
                      progress=False)


def test_live_against_serve_of_the_same_export_scores_both_sides_alike(folders, monkeypatch):
    for needed in ("boto3", "starlette", "uvicorn"):
        pytest.importorskip(needed)
    from helpers.server import ServerProcess

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    server = ServerProcess(folders["export"], "--no-access-log")
    try:
        out = folders["root"] / "live"
        result = run_benchmark(test=folders["test"], local=folders["export"], out=out, endpoint=server.url,
                               rekognition_arn=server.arn, progress=False)
    finally:
        server.stop()
    comparison = result["comparison"]
    local, remote = comparison["sides"]["local"], comparison["sides"]["rekognition"]
    assert remote["latency"]["requests"] == 4
    for key in ("average_precision", "average_recall", "f1", "tp", "fp", "fn"):
        assert remote["at_assumed_thresholds"][key] == local["at_assumed_thresholds"][key], key
    assert remote["at_assumed_thresholds"]["f1"] == pytest.approx(1.0)  # the detector finds every box (see above)
    assert remote["map_50"] == local["map_50"] == pytest.approx(1.0)
    assert [r["at_assumed_threshold"] for r in remote["per_label"]] == \
        [r["at_assumed_threshold"] for r in local["per_label"]]
    assert comparison["disagreements"] == [] and comparison["unknown_labels"] == {}
    assert len((out / "rekognition-responses.jsonl").read_text().splitlines()) == 4


def test_cli_prints_both_sides_and_gallery_0_draws_nothing(folders, tmp_path, capsys):
    out = tmp_path / "bench"
    code = main(["benchmark", "--test", str(folders["test"]), "--local", str(folders["export"]),
                 "--rekognition-responses", str(folders["responses"]), "--gallery", "0", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    # mAP hand-counted above: ((51 + 50 * 2/3) / 101 + 51 / 101) / 3 = 406 / 909 = 0.4466
    assert [line.split()[-2:] for line in printed.splitlines() if line.startswith("COCO mAP@0.5")] == \
        [["1.0000", "0.4466"]]
    assert "2 images where the TP/FP/FN counts differ" in printed
    assert list((out / "disagreements").iterdir()) == []
    assert "<figure" not in (out / "comparison.html").read_text()
    comparison = json.loads((out / "comparison.json").read_text())
    assert len(comparison["disagreements"]) == 2 and all("picture" not in d for d in comparison["disagreements"])


# -- Rekognition's EvaluationSummary beside a detection benchmark -------------------------------------

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "rekognition"
FLAT = FIXTURES / "evaluation-summary-flat.json"
SCHEMA = FIXTURES / "evaluation-summary-nested-metrics.json"
needs_fixtures = pytest.mark.skipif(not FLAT.exists(), reason="../shared/fixtures absent")
# AWS's example summary is for labels CAP and WATCH (CAP threshold 0.98795, WATCH 0.01445): a two-label
# detector of the helper's kind, CAP scored by mean R on R1, WATCH by mean G on G.
SUMMARY_BOXES = (((0.1, 0.2, 0.3, 0.4), 0, 0, 1.0), ((0.5, 0.5, 0.6, 0.6), 1, 1, 1.0))
SUMMARY_IMAGES = {  # name -> (colour, ground truth)
    "a": ((255, 0, 0), [(0, R1)]),
    "b": ((0, 255, 0), [(1, G)]),
    "c": ((255, 255, 0), [(0, R1), (1, G)]),
    "d": ((128, 0, 0), [(0, R1)]),  # CAP scored 128/255 = 0.502 by the local model: under its 0.7
}
# Rekognition at the summary's thresholds (CAP 0.98795, WATCH 0.01445):
#   a: CAP 99 on R1 -> TP.   b: WATCH 50 on G -> TP; CAP 95 on G -> under 0.988, not kept.
#   c: CAP 98 on R1 -> under 0.988 (CAP missed); WATCH 1 on G -> under 0.0145 (WATCH missed); WATCH 2 elsewhere -> FP.
#   d: CAP 99.5 on R1 -> TP.
# CAP: TP 2, FP 0, FN 1 -> P 1, R 2/3, F1 4/5.  WATCH: TP 1, FP 1, FN 1 -> P 1/2, R 1/2, F1 1/2.
SUMMARY_ANSWERS = {
    "a": [box("CAP", 99.0, R1)],
    "b": [box("WATCH", 50.0, G), box("CAP", 95.0, G)],
    "c": [box("CAP", 98.0, R1), box("WATCH", 1.0, G), box("WATCH", 2.0, (0.0, 0.6, 0.3, 0.3))],
    "d": [box("CAP", 99.5, R1)],
}


def write_yolo_test(folder, images):
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    for name, (colour, boxes) in images.items():
        solid_image(colour, size=(100, 100)).save(folder / "images" / f"{name}.png")
        (folder / "labels" / f"{name}.txt").write_text("".join(
            f"{k} {l + w / 2} {t + h / 2} {w} {h}\n" for k, (l, t, w, h) in boxes))
    return folder


def write_answers(path, test, answers):
    with path.open("w") as file:
        for n, name in enumerate(answers):
            data = (test / "images" / f"{name}.png").read_bytes()
            file.write(json.dumps({"version": 1, "image": f"{name}.png", "sha256": image_key(data),
                                   "bytes": len(data), "project_version_arn": ARN, "min_confidence": 0,
                                   "timestamp": 1000.0 + n, "latency_s": 0.2, "elapsed_s": 0.2, "attempts": 1,
                                   "response": {"CustomLabels": answers[name]}}) + "\n")
    return path


@pytest.fixture(scope="module")
def cap_watch(tmp_path_factory):
    import helpers.detection

    root = tmp_path_factory.mktemp("bench-detection-summary")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(helpers.detection, "LABELS", ("CAP", "WATCH"))
        patch.setattr(helpers.detection, "BOXES", SUMMARY_BOXES)
        export = write_detector_dir(root / "run" / "export", thresholds={"CAP": 0.7, "WATCH": 0.1})
    test = write_yolo_test(root / "test", SUMMARY_IMAGES)
    # The flat layout is AWS's real example; the nested one is the schema page's layout holding the same values
    # plus the detection-only AveragePrecision / AverageRecall (values chosen here: the schema gives only types).
    document = json.loads(FLAT.read_text())
    nested = json.loads(FLAT.read_text())
    nested["AggregatedEvaluationResults"] = {"Metrics": {**document["AggregatedEvaluationResults"],
                                                         "AveragePrecision": 0.961, "AverageRecall": 0.943}}
    schema = json.loads(SCHEMA.read_text())
    assert set(nested["AggregatedEvaluationResults"]["Metrics"]) == \
        set(schema["AggregatedEvaluationResults"]["Metrics"])  # the documented detection layout, key for key
    (root / "nested.json").write_text(json.dumps(nested))
    return {"root": root, "export": export, "test": test, "nested": root / "nested.json",
            "responses": write_answers(root / "answers.jsonl", test, SUMMARY_ANSWERS)}


@needs_fixtures
@pytest.mark.parametrize("layout", ["flat", "nested"])
def test_summary_scores_rekognition_at_its_thresholds_and_is_shown_beside(cap_watch, layout):
    summary = FLAT if layout == "flat" else cap_watch["nested"]
    out = cap_watch["root"] / f"bench-{layout}"
    comparison = run_benchmark(test=cap_watch["test"], local=cap_watch["export"], out=out,
                               responses=cap_watch["responses"], summary=summary, progress=False)["comparison"]
    remote = comparison["sides"]["rekognition"]["at_model_thresholds"]
    assert remote["thresholds"] == {"CAP": pytest.approx(0.9879502058029175),
                                    "WATCH": pytest.approx(0.014450683258473873)}
    own = {row["label"]: row for row in remote["per_label"]}
    assert (own["CAP"]["tp"], own["CAP"]["fp"], own["CAP"]["fn"]) == (2, 0, 1)
    assert (own["WATCH"]["tp"], own["WATCH"]["fp"], own["WATCH"]["fn"]) == (1, 1, 1)
    assert remote["average_precision"] == pytest.approx((1 + 1 / 2) / 2)
    assert remote["average_recall"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert remote["f1"] == pytest.approx((4 / 5 + 1 / 2) / 2)

    beside = comparison["rekognition_summary"]
    assert beside["file"] == str(summary)
    assert beside["number_of_testing_images"] == 624 and beside["number_of_training_images"] == 5216
    assert beside["summary"]["f1"] == pytest.approx(0.9726959470546408)
    if layout == "nested":
        assert beside["summary"]["average_precision"] == pytest.approx(0.961)
        assert beside["summary"]["average_recall"] == pytest.approx(0.943)
    else:  # AWS's flat example has no AveragePrecision / AverageRecall: shown as unknown, not invented
        assert beside["summary"]["average_precision"] is None and beside["summary"]["average_recall"] is None
    assert beside["rekognition_measured"] == {"average_precision": pytest.approx(0.75),
                                              "average_recall": pytest.approx(7 / 12), "f1": pytest.approx(0.65)}
    # edgelabels at thresholds.json (CAP 0.7, WATCH 0.1): CAP misses d (0.502) -> P 1, R 2/3; WATCH finds b, c
    assert beside["local_measured"] == {"average_precision": pytest.approx(1.0),
                                        "average_recall": pytest.approx((2 / 3 + 1) / 2), "f1": pytest.approx(0.9)}
    rows = {row["label"]: row for row in beside["per_label"]}
    assert rows["CAP"]["threshold"] == pytest.approx(0.9879502058029175)
    assert rows["CAP"]["summary"] == {"precision": pytest.approx(0.9819587628865979),
                                      "recall": pytest.approx(0.9769230769230769),
                                      "f1": pytest.approx(0.9794344473007711), "test_images": 390}
    assert rows["WATCH"]["rekognition_measured"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5}
    assert rows["CAP"]["local_measured"] == {"precision": 1.0, "recall": pytest.approx(2 / 3),
                                             "f1": pytest.approx(0.8)}
    for page in ("comparison.md", "comparison.html"):
        text = (out / page).read_text()
        assert "EvaluationSummary beside this test set" in text and "0.9727" in text and "0.9794" in text, page
        assert ("0.9610" in text) == (layout == "nested"), page
    assert json.loads((out / "comparison.json").read_text())["rekognition_summary"]["file"] == str(summary)


@needs_fixtures
def test_cli_prints_the_summary_line(cap_watch, tmp_path, capsys):
    code = main(["benchmark", "--test", str(cap_watch["test"]), "--local", str(cap_watch["export"]),
                 "--rekognition-responses", str(cap_watch["responses"]), "--rekognition-summary",
                 str(cap_watch["nested"]), "--gallery", "0", "--out", str(tmp_path / "bench")])
    assert code == 0
    printed = capsys.readouterr().out
    assert ("Rekognition's EvaluationSummary (its own test set, 624 images): AveragePrecision 0.9610, "
            "AverageRecall 0.9430, F1 0.9727; at its thresholds here: 0.7500, 0.5833, 0.6500") in printed


@needs_fixtures
def test_summary_of_a_model_with_other_labels_is_refused_for_a_detector(folders, tmp_path):
    with pytest.raises(UserError, match=r"evaluation-summary-flat.json: its labels \['CAP', 'WATCH'\] are not "
                                        r"the local model's \['red', 'green', 'blue'\]"):
        run_benchmark(test=folders["test"], local=folders["export"], out=tmp_path / "out",
                      responses=folders["responses"], summary=FLAT, progress=False)
    assert not (tmp_path / "out").exists()


def test_without_a_summary_rekognitions_own_threshold_rows_say_how_to_fill_them(recorded):
    out, comparison = recorded
    assert comparison["rekognition_summary"] is None
    assert comparison["sides"]["rekognition"]["at_model_thresholds"] is None
    assert "pass it with --rekognition-summary" in (out / "comparison.md").read_text()
