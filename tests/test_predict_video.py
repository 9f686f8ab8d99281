"""`predict --video` and video_answers: answers per sampled frame, objects counted once, resume, signals, hostile
sources, and AWS's published video-frames example pointed at `edgelabels serve`.

Models are hand-made ONNX exports (no training): helpers.server's classifier (the mean colour decides the label)
and, written here, a "colour detector" whose one box per colour is the bounding box of that colour's pixels, so it
follows the squares of helpers.video.moving_objects_video and its answers are known by hand. Videos are a few
seconds of small frames written with PyAV.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import av  # the video extra (make setup installs it): without it these tests fail, never skip
import numpy as np
import pytest

from edgelabels.cli import main
from edgelabels.runtime.video_answers import video_answers
from helpers.server import REPO, ServerProcess, _write_export, free_port, write_model_dir
from helpers.video import COLOURS, Track, moving_objects_video, truncated_copy, write_audio_only, write_video


DETECTOR_LABELS = ("red", "blue")
EDGELABELS = Path(sys.executable).parent / "edgelabels"


def write_colour_detector(folder: Path, size: int = 64) -> Path:
    """An export whose "detector" answers, per label, the bounding box of the pixels of that colour (the channel
    above 0.5 and the other two below it), score 0.9 when there is any and 0 when there is none: rows
    [left, top, width, height, score, class_id] in ratios, computed with ArgMax over the row and column
    profiles of the colour's mask."""
    from onnx import TensorProto, helper, numpy_helper

    channel_of = {"red": 0, "green": 1, "blue": 2}
    nodes, inits = [], [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in
                        (("half", 0.5), ("score_scale", 0.9), ("one", 1.0), ("size", float(size)))]
    inits.append(numpy_helper.from_array(np.array([1], np.int64), "axis1"))
    rows = []
    for class_id, label in enumerate(DETECTOR_LABELS):
        p = f"{label}_"
        inits.append(numpy_helper.from_array(np.array([[float(class_id)]], np.float32), p + "class"))
        parts = []
        for c in range(3):
            nodes.append(helper.make_node("Gather", ["input", p + f"i{c}"], [p + f"ch{c}"], axis=3))
            inits.append(numpy_helper.from_array(np.array(c, np.int64), p + f"i{c}"))
            test = "Greater" if c == channel_of[label] else "Less"
            nodes.append(helper.make_node(test, [p + f"ch{c}", "half"], [p + f"is{c}"]))
            parts.append(p + f"is{c}")
        nodes += [helper.make_node("And", parts[:2], [p + "and01"]),
                  helper.make_node("And", [p + "and01", parts[2]], [p + "maskb"]),
                  helper.make_node("Cast", [p + "maskb"], [p + "mask"], to=TensorProto.FLOAT),  # (N, H, W)
                  helper.make_node("ReduceMax", [p + "mask"], [p + "cols"], axes=[1], keepdims=0),  # (N, W)
                  helper.make_node("ReduceMax", [p + "mask"], [p + "rows"], axes=[2], keepdims=0),  # (N, H)
                  helper.make_node("ReduceMax", [p + "cols"], [p + "any"], axes=[1], keepdims=1),  # (N, 1)
                  helper.make_node("Mul", [p + "any", "score_scale"], [p + "score"])]
        for profile, start, extent in (("cols", "left", "width"), ("rows", "top", "height")):
            first, last = p + profile + "_first", p + profile + "_last"
            nodes += [helper.make_node("ArgMax", [p + profile], [first + "i"], axis=1, keepdims=1),
                      helper.make_node("ArgMax", [p + profile], [last + "i"], axis=1, keepdims=1,
                                       select_last_index=1),
                      helper.make_node("Cast", [first + "i"], [first], to=TensorProto.FLOAT),
                      helper.make_node("Cast", [last + "i"], [last], to=TensorProto.FLOAT),
                      helper.make_node("Div", [first, "size"], [p + start]),
                      helper.make_node("Sub", [last, first], [p + extent + "_less1"]),
                      helper.make_node("Add", [p + extent + "_less1", "one"], [p + extent + "_px"]),
                      helper.make_node("Div", [p + extent + "_px", "size"], [p + extent])]
        nodes += [helper.make_node("Mul", [p + "any", "one"], [p + "ones"]),
                  helper.make_node("Mul", [p + "ones", p + "class"], [p + "class_col"]),
                  helper.make_node("Concat", [p + "left", p + "top", p + "width", p + "height", p + "score",
                                              p + "class_col"], [p + "row"], axis=1),  # (N, 6)
                  helper.make_node("Unsqueeze", [p + "row", "axis1"], [p + "row3"])]  # (N, 1, 6)
        rows.append(p + "row3")
    nodes.append(helper.make_node("Concat", rows, ["detections"], axis=1))
    graph = helper.make_graph(
        nodes, "colour_detector",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", size, size, 3])],
        [helper.make_tensor_value_info("detections", TensorProto.FLOAT, ["N", len(DETECTOR_LABELS), 6])], inits)
    export = _write_export(folder, graph, "detection", list(DETECTOR_LABELS), size)
    export.write_thresholds({label: 0.5 for label in DETECTOR_LABELS})
    return folder


# Red crosses the middle left to right (In), leaves, then a second red crosses it right to left (Out) lower down;
# blue goes down the left quarter, below the first red's path and above the second's, and crosses nothing. Each
# moves less than half its side a frame, so a box overlaps its place in the frame before (IoU > 0.3: the tracker's
# match_iou, which a new track, without a velocity yet, needs). 10 frames a second for 3 s: frame i at i * 100 ms.
TRACKS = [Track("red", (0.1, 0.3), (0.9, 0.3), appear_s=0.0, leave_s=1.5),
          Track("red", (0.8, 0.7), (0.2, 0.7), appear_s=1.8, leave_s=3.0),
          Track("blue", (0.25, 0.5), (0.25, 0.9))]
MIDDLE = "0.5,1,0.5,0"  # drawn bottom to top: left to right across it is In


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("video")
    # sides of 64 pixels at least: DetectCustomLabels (and `serve`) refuse smaller images
    colours = [np.full((64, 96, 3), COLOURS[name], np.uint8) for name in ("red", "green", "blue") for _ in range(10)]
    return {"detector": write_colour_detector(root / "detector"), "classifier": write_model_dir(root / "classifier"),
            "truth": moving_objects_video(root / "objects.mp4", TRACKS, size=(320, 240), fps=10, seconds=3.0),
            "objects": root / "objects.mp4", "colours": write_video(root / "colours.mp4", colours, fps=10),
            "objects_mkv": moving_objects_video(root / "objects.mkv", TRACKS, size=(320, 240), fps=10, seconds=3.0)
            and root / "objects.mkv"}


def _lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _frames_in(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def _assert_boxes_near(answers: list[dict], truth: list, dx: float, dy: float) -> None:
    """Each frame answers the labels drawn in it, each box within dx (dy) of the drawn square's edges."""
    assert len(answers) == len(truth)
    for answer, drawn in zip(answers, truth):
        assert sorted(label["Name"] for label in answer["CustomLabels"]) == sorted(box.label for box in drawn)
        for label in answer["CustomLabels"]:
            box = label["Geometry"]["BoundingBox"]
            true = next(t for t in drawn if t.label == label["Name"])
            assert abs(box["Left"] - true.left) <= dx and abs(box["Width"] - true.width) <= dx
            assert abs(box["Top"] - true.top) <= dy and abs(box["Height"] - true.height) <= dy


# -- the Python API ---------------------------------------------------------------------------------

def test_video_answers_gives_each_frame_its_timestamp_number_and_boxes(media):
    answers = list(video_answers(media["detector"], media["objects"]))
    assert [a["FrameNumber"] for a in answers] == list(range(30))
    assert [a["Timestamp"] for a in answers] == [100 * i for i in range(30)]
    # the detector sees 64x64 pixels: its box is within two of them (1/32) of the drawn square
    _assert_boxes_near(answers, media["truth"], 1 / 32, 1 / 32)


def test_video_answers_counts_each_object_once_and_the_crossings_of_a_line(media):
    answers = video_answers(media["detector"], str(media["objects"]), line=(0.5, 1, 0.5, 0))
    frames = list(answers)
    summary = answers.summary()
    assert {label: entry["Count"] for label, entry in summary["Objects"].items()} == {"red": 2, "blue": 1}
    assert summary["Crossings"] == {"red": {"In": 1, "Out": 1}, "blue": {"In": 0, "Out": 0}}
    assert summary["Frames"] == 30 and summary["Source"] == str(media["objects"])
    # a track is confirmed on its second frame (min_hits 2): from then on each box carries its id
    ids = [{label["Name"]: label.get("TrackId") for label in frame["CustomLabels"]} for frame in frames]
    assert ids[0] == {"red": None, "blue": None}
    first_red, blue = ids[1]["red"], ids[1]["blue"]
    assert {ids[i]["red"] for i in range(1, 15)} == {first_red} and {ids[i]["blue"] for i in range(1, 30)} == {blue}
    second_red = ids[19]["red"]  # the second red appears at 1.8 s (frame 18), confirmed at frame 19
    assert second_red not in (first_red, blue) and {ids[i]["red"] for i in range(19, 30)} == {second_red}
    tracks = {t["TrackId"]: t for entry in summary["Objects"].values() for t in entry["Tracks"]}
    assert (tracks[first_red]["Appeared"], tracks[first_red]["Left"]) == (0, 1400)
    assert (tracks[second_red]["Appeared"], tracks[second_red]["Left"]) == (1800, 2900)


def test_a_tiled_detector_answers_video_frames_and_counts_the_same_objects(media, tmp_path):
    import dataclasses

    from edgelabels.artifacts import ExportDir

    tiled = write_colour_detector(tmp_path / "tiled")
    export = ExportDir.load(tiled)
    export.write_preprocess(dataclasses.replace(export.spec, tile_scale=1.0))  # 64-pixel tiles of the 320x240 frame
    answers = video_answers(tiled, media["objects"], line=(0.5, 1, 0.5, 0))
    # native pixels, the cut boxes of neighbouring tiles merged: within 3 pixels of the drawn square
    _assert_boxes_near(list(answers), media["truth"], 3 / 320, 3 / 240)
    summary = answers.summary()
    assert {label: entry["Count"] for label, entry in summary["Objects"].items()} == {"red": 2, "blue": 1}
    assert summary["Crossings"]["red"] == {"In": 1, "Out": 1} and summary["Frames"] == 30


def test_video_answers_segments_a_classifier_labels_over_time(media):
    answers = video_answers(media["classifier"], media["colours"])
    tops = [a["CustomLabels"][0]["Name"] for a in answers]
    assert tops == ["red"] * 10 + ["green"] * 10 + ["blue"] * 10
    assert answers.summary()["Segments"] == [{"Name": "red", "Start": 0, "End": 900},
                                             {"Name": "green", "Start": 1000, "End": 1900},
                                             {"Name": "blue", "Start": 2000, "End": 2900}]
    assert "Objects" not in answers.summary()


def test_video_answers_samples_every_half_second_from_start_ms(media):
    answers = list(video_answers(media["classifier"], media["colours"], every="0.5s", start_ms=1000))
    # 10 frames a second: every 0.5 s is every 5th frame; from 1 s on: frames 10, 15, 20, 25
    assert [(a["FrameNumber"], a["Timestamp"]) for a in answers] == [(10, 1000), (15, 1500), (20, 2000),
                                                                    (25, 2500)]
    assert [a["CustomLabels"][0]["Name"] for a in answers] == ["green", "green", "blue", "blue"]


def test_max_results_trims_the_answer_but_not_what_is_counted(media):
    answers = video_answers(media["detector"], media["objects"], max_results=1)
    assert all(len(a["CustomLabels"]) <= 1 for a in answers)
    assert {label: entry["Count"] for label, entry in answers.summary()["Objects"].items()} == {"red": 2, "blue": 1}


def test_a_line_for_a_classifier_is_refused_in_one_line(media):
    from edgelabels.errors import UserError

    with pytest.raises(UserError, match="not a detector export"):
        video_answers(media["classifier"], media["colours"], line=(0.5, 0, 0.5, 1))


# -- the CLI ----------------------------------------------------------------------------------------

def test_predict_video_prints_and_appends_lines_draws_boxes_and_summarises(media, tmp_path, capsys):
    out, summary, drawn = tmp_path / "a.jsonl", tmp_path / "summary.json", tmp_path / "drawn.mp4"
    code = main(["predict", str(media["detector"]), "--video", str(media["objects"]), "--out", str(out),
                 "--summary", str(summary), "--draw", str(drawn), "--line", MIDDLE])
    assert code == 0
    printed = capsys.readouterr().out
    assert printed == out.read_text()
    lines = _lines(printed)
    assert [line["FrameNumber"] for line in lines] == list(range(30))
    assert [line["Timestamp"] for line in lines] == list(range(0, 3000, 100))
    written = json.loads(summary.read_text())
    assert written["Frames"] == 30 and written["Crossings"]["red"] == {"In": 1, "Out": 1}
    assert {label: entry["Count"] for label, entry in written["Objects"].items()} == {"red": 2, "blue": 1}
    assert written["Source"] == str(media["objects"]) and written["Seconds"] > 0 and written["FramesPerSecond"] > 0
    assert _frames_in(drawn) == 30
    with av.open(str(drawn)) as container:
        first = next(container.decode(video=0)).to_ndarray(format="rgb24")
    # frame 0: the red square's box is outlined in orange (255, 140, 0), the overlay's colour for a predicted box
    red = next(label for label in lines[0]["CustomLabels"] if label["Name"] == "red")["Geometry"]["BoundingBox"]
    left, top = round(red["Left"] * 320), round(red["Top"] * 240)
    around = first[top + 8, max(left - 2, 0):left + 3].astype(int)
    assert any(abs(r - 255) < 40 and abs(g - 140) < 40 and b < 60 for r, g, b in around)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl", "drawn.mp4", "summary.json"]


def test_predict_video_draws_the_sampled_frames_at_the_sampled_rate(media, tmp_path, capsys):
    drawn = tmp_path / "drawn.mkv"
    assert main(["predict", str(media["classifier"]), "--video", str(media["colours"]), "--every", "0.5s",
                 "--draw", str(drawn)]) == 0
    captured = capsys.readouterr()
    assert [line["FrameNumber"] for line in _lines(captured.out)] == [0, 5, 10, 15, 20, 25]
    summary = json.loads(captured.err.split("edgelabels: summary ", 1)[1])
    assert summary["Frames"] == 6 and summary["Source"] == str(media["colours"])
    assert _frames_in(drawn) == 6
    with av.open(str(drawn)) as container:
        assert float(container.streams.video[0].average_rate) == pytest.approx(2.0)  # one frame every 0.5 s


def test_an_http_stream_is_answered_and_drawn_at_the_rate_measured_between_its_frames(media, tmp_path, capsys):
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    frames = [np.full((64, 96, 3), COLOURS[name], np.uint8) for name in ("red", "green", "blue") for _ in range(10)]
    write_video(tmp_path / "live.ts", frames, fps=10)
    quiet = type("Quiet", (SimpleHTTPRequestHandler,), {"log_message": lambda *_: None})
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(quiet, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/live.ts"
        drawn = tmp_path / "drawn.mp4"
        assert main(["predict", str(media["classifier"]), "--video", url, "--every", "5f", "--draw", str(drawn),
                     "--summary", str(tmp_path / "summary.json")]) == 0
    finally:
        server.shutdown()
        server.server_close()
    lines = _lines(capsys.readouterr().out)
    assert [(line["FrameNumber"], line["Timestamp"]) for line in lines] == [(i, 100 * i) for i in range(0, 30, 5)]
    assert [line["CustomLabels"][0]["Name"] for line in lines] == ["red", "red", "green", "green", "blue", "blue"]
    assert json.loads((tmp_path / "summary.json").read_text())["Source"] == url
    with av.open(str(drawn)) as container:
        # a stream's rate is not asked (a camera would be busy): 500 ms between the first two sampled frames
        assert float(container.streams.video[0].average_rate) == pytest.approx(2.0)
        assert sum(1 for _ in container.decode(video=0)) == 6


def test_predict_video_resumes_after_the_last_whole_line_and_summarises_the_whole(media, tmp_path, capsys):
    whole, resumed = tmp_path / "whole.jsonl", tmp_path / "resumed.jsonl"
    assert main(["predict", str(media["detector"]), "--video", str(media["objects"]), "--out", str(whole),
                 "--summary", str(tmp_path / "whole.json"), "--line", MIDDLE]) == 0
    capsys.readouterr()
    text = whole.read_text()
    kept = text.splitlines(keepends=True)[:12]
    resumed.write_text("".join(kept) + text.splitlines()[12][:25])  # killed while writing line 13
    assert main(["predict", str(media["detector"]), "--video", str(media["objects"]), "--out", str(resumed),
                 "--summary", str(tmp_path / "resumed.json"), "--line", MIDDLE]) == 0
    captured = capsys.readouterr()
    assert [line["FrameNumber"] for line in _lines(captured.out)] == list(range(12, 30))
    assert "holds 12 answers up to 1.1 s" in captured.err
    assert [line["FrameNumber"] for line in _lines(resumed.read_text())] == list(range(30))
    first, second = json.loads((tmp_path / "whole.json").read_text()), json.loads((tmp_path / "resumed.json")
                                                                                 .read_text())
    assert second["Frames"] == 30 and second["Objects"] == first["Objects"]
    assert second["Crossings"] == first["Crossings"]


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_stops_after_the_current_frame_with_the_summary_and_a_whole_video(tmp_path, signum, code):
    source = write_video(tmp_path / "long.mp4", (np.full((240, 320, 3), COLOURS["red"], np.uint8)
                                                 for _ in range(600)), fps=10)
    model = write_model_dir(tmp_path / "classifier")
    summary, drawn = tmp_path / "summary.json", tmp_path / "drawn.mp4"
    process = subprocess.Popen([str(EDGELABELS), "predict", str(model), "--video", str(source), "--summary",
                                str(summary), "--draw", str(drawn)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, cwd=REPO)
    first = process.stdout.readline()
    process.send_signal(signum)
    rest, err = process.communicate(timeout=60)
    assert process.returncode == code, err
    assert json.loads(first)["FrameNumber"] == 0
    lines = _lines(first + rest)
    written = json.loads(summary.read_text())
    assert written["Stopped"] == signal.Signals(signum).name and written["Frames"] == len(lines) < 600
    assert _frames_in(drawn) == len(lines)
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["classifier", "drawn.mp4", "long.mp4", "summary.json"]


# -- hostile sources --------------------------------------------------------------------------------

def _closed_port_url() -> str:
    return f"http://127.0.0.1:{free_port()}/live.ts"


@pytest.fixture
def silent_url():
    """An HTTP "camera" that accepts connections and never sends a byte (a hung encoder)."""
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    accepted = []
    threading.Thread(target=lambda: [accepted.append(server.accept()) for _ in range(20)], daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/live.ts"
    server.close()
    for connection, _ in accepted:
        connection.close()


@pytest.mark.parametrize("make", ["zero_bytes", "audio_only", "unreachable_url", "silent_url", "missing_file",
                                  "truncated_mp4"])
def test_an_unreadable_source_is_one_line_exit_2_and_nothing_written(media, tmp_path, make, silent_url, capsys):
    source = {"zero_bytes": lambda: (tmp_path / "empty.mp4").write_bytes(b"") or tmp_path / "empty.mp4",
              "audio_only": lambda: write_audio_only(tmp_path / "tone.m4a"),
              "unreachable_url": _closed_port_url,
              "silent_url": lambda: silent_url,
              "missing_file": lambda: tmp_path / "nowhere.mp4",
              # an MP4 cut short has lost its index (written at the end): not one frame can be read
              "truncated_mp4": lambda: truncated_copy(media["objects"], tmp_path / "cut.mp4", 0.5)}[make]()
    results = tmp_path / "results"
    code = main(["predict", str(media["detector"]), "--video", str(source), "--out", str(results / "a.jsonl"),
                 "--summary", str(results / "summary.json"), "--draw", str(results / "drawn.mp4"),
                 "--stall", "3"])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("edgelabels: error: ")
    assert str(source) in captured.err
    assert list(results.iterdir()) == []
    if make == "silent_url":
        assert "no frame for 3 s (stalled)" in captured.err


def test_a_truncated_mkv_keeps_what_it_answered_then_exits_2(media, tmp_path, capsys):
    source = truncated_copy(media["objects_mkv"], tmp_path / "cut.mkv", 0.5)
    results = tmp_path / "results"
    code = main(["predict", str(media["detector"]), "--video", str(source), "--out", str(results / "a.jsonl"),
                 "--summary", str(results / "summary.json"), "--draw", str(results / "drawn.mp4")])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.count("\n") == 1 and captured.err.startswith(f"edgelabels: error: {source}: truncated")
    lines = _lines(captured.out)
    assert 0 < len(lines) < 30 and [line["FrameNumber"] for line in lines] == list(range(len(lines)))
    assert _lines((results / "a.jsonl").read_text()) == lines
    written = json.loads((results / "summary.json").read_text())
    assert written["Frames"] == len(lines) and written["Error"] == captured.err[len("edgelabels: error: "):-1]
    assert _frames_in(results / "drawn.mp4") == len(lines)
    assert sorted(p.name for p in results.iterdir()) == ["a.jsonl", "drawn.mp4", "summary.json"]


@pytest.mark.parametrize("options, message", [
    (["--line", "0.5,0,0.5"], "four ratios"),
    (["--line", "0.5,0,0.5,1.5"], "four ratios"),
    (["--line", "0.2,0.2,0.2,0.2"], "same point"),
    (["--every", "often"], "often"),
    (["--watch", "."], "--watch is for images"),
])
def test_bad_video_options_are_one_line_before_any_frame(media, options, message, capsys):
    code = main(["predict", str(media["detector"]), "--video", str(media["objects"]), *options])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == "" and message in captured.err and captured.err.count("\n") == 1


def test_draw_is_refused_when_out_would_be_continued(media, tmp_path, capsys):
    out = tmp_path / "a.jsonl"
    out.write_text('{"Timestamp": 0, "FrameNumber": 0, "CustomLabels": []}\n')
    assert main(["predict", str(media["detector"]), "--video", str(media["objects"]), "--out", str(out), "--draw",
                 str(tmp_path / "drawn.mp4")]) == 2
    assert "--draw cannot continue a video" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl"]


def test_an_out_file_of_other_lines_is_refused_not_appended_to(media, tmp_path, capsys):
    out = tmp_path / "notes.jsonl"
    out.write_text('{"Image": "a.png", "CustomLabels": []}\n')
    assert main(["predict", str(media["detector"]), "--video", str(media["objects"]), "--out", str(out)]) == 2
    assert "line 1 is not an answer of `predict --video`" in capsys.readouterr().err
    assert out.read_text() == '{"Image": "a.png", "CustomLabels": []}\n'


# -- AWS's published example against `edgelabels serve` ---------------------------------------------

# The Rekognition Custom Labels developer guide's "Analyzing video frames" example as published (MIT-0):
# https://github.com/awsdocs/amazon-rekognition-custom-labels-developer-guide/blob/master/doc_source/ex-video-extraction.md
# (docs.aws.amazon.com/rekognition/latest/customlabels-dg/ex-video-extraction.html). Only the three values it asks
# its user to change are filled in, and `endpoint_url` is added to its client.
AWS_VIDEO_EXAMPLE = '''
#Copyright 2020 Amazon.com, Inc. or its affiliates. All Rights Reserved.
#PDX-License-Identifier: MIT-0 (For details, see https://github.com/awsdocs/amazon-rekognition-custom-labels-developer-guide/blob/master/LICENSE-SAMPLECODE.)

import json
import boto3
import cv2
import math
import io

def analyzeVideo():
    videoFile = "VIDEO_FILE"
    projectVersionArn = "PROJECT_VERSION_ARN"

    rekognition = boto3.client('rekognition', endpoint_url="ENDPOINT_URL")
    customLabels = []
    cap = cv2.VideoCapture(videoFile)
    frameRate = cap.get(5) #frame rate
    while(cap.isOpened()):
        frameId = cap.get(1) #current frame number
        print("Processing frame id: {}".format(frameId))
        ret, frame = cap.read()
        if (ret != True):
            break
        if (frameId % math.floor(frameRate) == 0):
            hasFrame, imageBytes = cv2.imencode(".jpg", frame)

            if(hasFrame):
                response = rekognition.detect_custom_labels(
                    Image={
                        'Bytes': imageBytes.tobytes(),
                    },
                    ProjectVersionArn = projectVersionArn
                )

            for elabel in response["CustomLabels"]:
                elabel["Timestamp"] = (frameId/frameRate)*1000
                customLabels.append(elabel)

    print(customLabels)

    with open(videoFile + ".json", "w") as f:
        f.write(json.dumps(customLabels))

    cap.release()

analyzeVideo()
'''
CONFIDENCE_TOLERANCE = 2.0  # percentage points: the example sends JPEG (OpenCV's quality 95) of what we decode


@pytest.mark.parametrize("model", ["classifier", "detector"])
def test_aws_video_example_against_serve_gives_the_labels_predict_video_gives(media, model, tmp_path, capsys):
    source = tmp_path / "clip.mp4"
    source.write_bytes(media["objects" if model == "detector" else "colours"].read_bytes())
    server = ServerProcess(media[model], "--no-access-log", log_path=tmp_path / "serve.log")
    try:
        script = (AWS_VIDEO_EXAMPLE.replace("VIDEO_FILE", str(source)).replace("PROJECT_VERSION_ARN", server.arn)
                  .replace("ENDPOINT_URL", server.url))
        (tmp_path / "example.py").write_text(script)
        env = dict(os.environ, AWS_DEFAULT_REGION="us-east-1", AWS_ACCESS_KEY_ID="AKIDEXAMPLE",
                   AWS_SECRET_ACCESS_KEY="secret")
        ran = subprocess.run([sys.executable, str(tmp_path / "example.py")], capture_output=True, text=True,
                             env=env, timeout=120, cwd=tmp_path)
        assert ran.returncode == 0, ran.stderr
    finally:
        server.stop()
    theirs: dict = {}
    for label in json.loads(Path(str(source) + ".json").read_text()):
        theirs.setdefault(round(label.pop("Timestamp")), []).append(label)
    frame_rate = 10  # what OpenCV reads as the clip's frame rate: the example answers every floor(10)th frame
    assert main(["predict", str(media[model]), "--video", str(source), "--every", f"{math.floor(frame_rate)}f"]) == 0
    ours = {line["Timestamp"]: line["CustomLabels"] for line in _lines(capsys.readouterr().out)}
    assert sorted(ours) == [0, 1000, 2000]
    assert set(theirs) <= set(ours)  # a frame with no label adds nothing to the example's list
    for timestamp, labels in ours.items():
        mine = sorted(labels, key=lambda label: label["Name"])
        other = sorted(theirs.get(timestamp, []), key=lambda label: label["Name"])
        assert [label["Name"] for label in mine] == [label["Name"] for label in other]
        for a, b in zip(mine, other):
            assert abs(a["Confidence"] - b["Confidence"]) <= CONFIDENCE_TOLERANCE
            if "Geometry" in a:
                for key in ("Left", "Top", "Width", "Height"):  # JPEG can move an edge by a pixel of 64
                    assert abs(a["Geometry"]["BoundingBox"][key] - b["Geometry"]["BoundingBox"][key]) <= 1 / 32
