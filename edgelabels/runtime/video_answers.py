"""Answers over time: a video file, a stream or a camera answered frame by frame as DetectCustomLabels would.

    for answer in video_answers("runs/bees/export", "hive.mp4", every="1s"):
        print(answer["Timestamp"], answer["CustomLabels"])

One dict per sampled frame: {"Timestamp": milliseconds from the start (Rekognition Video's unit), "FrameNumber":
the decoded frame's 0-based index, "CustomLabels": DetectCustomLabels' list for that frame}. Frames come from
runtime/video.py (PyAV: files, rtsp/http streams, cameras; reconnection, stalls, `start_ms` to resume); each is
answered by the export's edge object (runtime/answers.open_edge_model: classifier, multi-label, detector, tiled
detector, chains such as the cassette reader), one frame a model call (a live source has one frame at a time).
Over time (runtime/tracking.py):
- a detector's boxes go through a Tracker: a reported box whose track is confirmed carries "TrackId", and
  summary() counts distinct objects per label (when each appeared and left) and crossings of `line`;
- a classifier's top label per frame (None: no label) goes through LabelSegments: summary()["Segments"].
numpy, Pillow, onnxruntime and PyAV only (never TensorFlow or Keras).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from edgelabels.errors import UserError
from edgelabels.runtime.tracking import LabelSegments, LineCounter, Tracker


def video_answers(model_dir_or_model, source, *, every=None, min_confidence: float | None = None,
                  max_results: int | None = None, line=None, start_ms: int = 0, stall_s: float = 10.0,
                  log=None) -> "VideoAnswers":
    """An iterator of one answer per sampled frame (see the module's docstring); its summary() says what was seen
    so far. model_dir_or_model: an export folder or an already opened edge object; every: "2s", "5f", an Every or
    None (every frame); line: (x1, y1, x2, y2) in ratios of the frame, crossings counted by a detector's tracks."""
    from edgelabels.runtime.answers import open_edge_model

    model = model_dir_or_model
    if isinstance(model, (str, Path)):
        model = open_edge_model(model)
    return VideoAnswers(model, source, every=every, min_confidence=min_confidence, max_results=max_results,
                        line=line, start_ms=start_ms, stall_s=stall_s, log=log)


class VideoAnswers:
    """The iterator video_answers returns; pairs() gives each answer with its decoded frame (for drawing)."""

    def __init__(self, model, source, *, every=None, min_confidence=None, max_results=None, line=None,
                 start_ms: int = 0, stall_s: float = 10.0, log=None):
        if min_confidence is not None and not 0 <= min_confidence <= 100:
            raise UserError(f"MinConfidence must be between 0 and 100, not {min_confidence}")
        if max_results is not None and max_results < 0:
            raise UserError(f"MaxResults must be 0 or more, not {max_results}")
        self.model, self.source = model, source
        self.every, self.start_ms, self.stall_s, self.log = every, start_ms, stall_s, log
        self.min_confidence, self.max_results = min_confidence, max_results
        self.boxes = getattr(model, "answers_boxes", False)
        if line is not None and not self.boxes:
            raise UserError(f"a line counts the crossings of tracked boxes, and {getattr(model, 'dir', 'this model')}"
                            " is not a detector export")
        self.tracker = Tracker(line=LineCounter(*line) if line is not None else None) if self.boxes else None
        self.segments = None if self.boxes else LabelSegments()
        self.frames, self.seconds = 0, 0.0  # frames answered, and the time they took (decoding included)
        self.replayed = 0  # of those frames, the ones a resumed run read back instead of answering

    def __iter__(self):
        for _frame, answer in self.pairs():
            yield answer

    def pairs(self):
        """(frame, answer) per sampled frame: frame.image is the decoded PIL image the answer's boxes are on."""
        from edgelabels.runtime import video

        every = video.parse_every(self.every) if isinstance(self.every, str) else self.every
        options = {"every": every} if every is not None else {}
        if self.log is not None:
            options["log"] = self.log
        began = time.perf_counter()
        for frame in video.open_frames(self.source, start_ms=self.start_ms, stall_s=self.stall_s, **options):
            answer = self.answer(frame.image, frame.index, frame.timestamp_ms)
            now = time.perf_counter()
            self.seconds += now - began
            yield frame, answer
            began = time.perf_counter()  # the time the caller spends between frames is not ours

    def answer(self, image, frame_number: int, timestamp_ms: int) -> dict:
        """One decoded frame (PIL) -> its answer, the tracker or the label segments updated."""
        model = self.model
        row = model.run_many([model.prepare(image)])[0]  # prepare: None when a chain's stage finds nothing
        labels = model.custom_labels(row, self.min_confidence)
        if self.tracker is not None:
            labels = self._tracked(row, labels, timestamp_ms)
        else:
            self.segments.update(labels[0]["Name"] if labels else None, timestamp_ms)
        self.frames += 1
        if self.max_results is not None:  # after tracking: MaxResults trims the answer, not what is counted
            labels = labels[:self.max_results]
        return {"Timestamp": timestamp_ms, "FrameNumber": frame_number, "CustomLabels": labels}

    def _tracked(self, row, reported: list[dict], timestamp_ms: int) -> list[dict]:
        """The reported boxes, each with "TrackId" once its track is confirmed.

        ByteTrack's high boxes are the ones the answer reports (each label's assumed threshold, or MinConfidence):
        the tracker sees every box in the frame with its score divided by its bar and scaled so that the bar lands
        on the tracker's `high`; its low boxes, which only keep a known track going, are then those down to a
        fifth of the bar (tracker.low / tracker.high)."""
        high = self.tracker.high
        wanted = Counter(_key(label) for label in reported)
        boxes, reported_at = [], {}
        for label in self.model.custom_labels(row, 0):  # every box inside the frame, clipped, most confident first
            name, score = label["Name"], label["Confidence"] / 100.0
            bar = self.model.thresholds[name] if self.min_confidence is None else self.min_confidence / 100.0
            relative = 1.0 if bar <= 0 else min(1.0, score / bar * high)
            if wanted[_key(label)] > 0:  # reported (the same rows give the same dicts): high, whatever rounding says
                wanted[_key(label)] -= 1
                reported_at[len(boxes)] = len(reported_at)
                relative = max(relative, high)
            else:
                relative = min(relative, high * (1 - 1e-9))  # not reported: never starts a track
            box = label["Geometry"]["BoundingBox"]
            boxes.append((box["Left"], box["Top"], box["Width"], box["Height"], relative, name))
        ids = {reported_at[b.detection]: b.track_id for b in self.tracker.update(boxes, timestamp_ms)
               if b.detection in reported_at}
        return [dict(label, TrackId=ids[i]) if i in ids else label for i, label in enumerate(reported)]

    def replay(self, answers) -> None:
        """Earlier answers of the same source (a resumed run's JSON lines) fed to the tracker or the segments, so
        that summary() covers the whole source; their boxes were the reported ones, so they count as high."""
        for answer in answers:
            labels, timestamp_ms = answer["CustomLabels"], answer["Timestamp"]
            if self.tracker is not None:
                boxes = [(*(label["Geometry"]["BoundingBox"][k] for k in ("Left", "Top", "Width", "Height")), 1.0,
                          label["Name"]) for label in labels if "Geometry" in label]
                self.tracker.update(boxes, timestamp_ms)
            else:
                self.segments.update(labels[0]["Name"] if labels else None, timestamp_ms)
            self.frames += 1
            self.replayed += 1

    def summary(self) -> dict:
        """{"Source", "Frames" (answered, a resumed run's earlier ones included), "Seconds" and "FramesPerSecond"
        (this run's, decoding included), then a detector's "Objects" (and "Crossings" with a line) or a
        classifier's "Segments"}."""
        summary = {"Source": str(self.source), "Frames": self.frames, "Seconds": round(self.seconds, 3)}
        answered = self.frames - self.replayed
        summary["FramesPerSecond"] = round(answered / self.seconds, 2) if self.seconds > 0 else None
        if self.tracker is not None:
            summary.update(self.tracker.summary())
        else:
            summary["Segments"] = self.segments.segments()
        return summary


def _key(label: dict) -> tuple:
    box = label["Geometry"]["BoundingBox"]
    return label["Name"], label["Confidence"], box["Left"], box["Top"], box["Width"], box["Height"]
