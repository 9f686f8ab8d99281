"""`edgelabels predict EXPORT --video SOURCE`: a video file, a stream or a camera answered frame by frame.

SOURCE: a file, an rtsp:// rtsps:// http:// https:// URL, or a camera (/dev/video0, camera:0). Each sampled frame
(`--every 1s` or `--every 5f`; default every frame) is one JSON line on stdout, {"Timestamp" (ms), "FrameNumber",
"CustomLabels"} (runtime/video_answers.py; a detector's tracked boxes carry "TrackId"), and with --out one line
appended to that file, flushed as it is written. At the end a summary ({"Source", "Frames", "Seconds",
"FramesPerSecond", a detector's "Objects" and, with --line, "Crossings"; a classifier's "Segments"}) goes to
--summary (written atomically) or to stderr; `--draw OUT.mp4` writes the sampled frames with their boxes, track ids
or label drawn (H.264 at the sampled rate, renamed into place when finished).

Resume: an --out file that already holds answers (an earlier run of the same source stopped or killed) is continued
after its last Timestamp; its answers are read back into the tracker, so the summary covers the whole source (a
torn last line, from a kill mid-write, is dropped and that frame answered again). --draw cannot resume.

Ctrl-C or SIGTERM stops after the current frame: the summary so far is written, the --draw video finished, and the
exit code is 130 (SIGINT) or 143 (SIGTERM), 128 + the signal as a shell reports it, so that a script can tell a run
stopped half-way from one that reached the end of its file (0). A second signal stops at once. A source that
cannot be read is one line and exit 2; one that breaks off half-way (a truncated file) keeps what it answered,
writes the summary with its "Error" and exits 2.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from fractions import Fraction
from pathlib import Path

from edgelabels.errors import UserError

_OTHER_INPUTS = (("paths", "PATH"), ("watch", "--watch"), ("input", "--input"), ("json_beside", "--json-beside"))


def add_arguments(parser) -> None:
    """The --video options of `edgelabels predict` (--out, --draw, --min-confidence, --max-results are shared)."""
    parser.add_argument("--video", metavar="SOURCE",
                        help="answer a video file, an rtsp/http(s) stream URL or a camera (/dev/video0, camera:0) "
                        "frame by frame: one JSON line per sampled frame (--out FILE.jsonl: appended, and resumed "
                        "after its last Timestamp); `pip install 'edgelabels[video]'`")
    parser.add_argument("--every", metavar="1s|5f",
                        help="--video: answer one frame every so many seconds (2s, 0.5s) or frames (5f, 5); "
                        "default every frame")
    parser.add_argument("--line", metavar="X1,Y1,X2,Y2",
                        help="--video, detectors: count tracked objects crossing this line (ratios of the frame): "
                        "In from its left to its right as seen from X1,Y1 looking to X2,Y2, Out the other way")
    parser.add_argument("--summary", type=Path, metavar="FILE",
                        help="--video: write the summary (objects counted, crossings, label segments) to this JSON "
                        "file instead of stderr")
    parser.add_argument("--stall", type=float, default=10.0, metavar="SECONDS",
                        help="--video: a stream that sends no frame for this long is an error (default 10)")


def run_video(args) -> int:
    from edgelabels.runtime import video
    from edgelabels.runtime.answers import open_edge_model
    from edgelabels.runtime.video_answers import VideoAnswers

    for name, option in _OTHER_INPUTS:
        if getattr(args, name, None):
            raise UserError(f"predict --video answers one source; {option} is for images")
    if args.engine != "local":
        raise UserError("predict --video runs in this process; --engine ray is for images")
    if args.stall <= 0:
        raise UserError(f"--stall must be above 0 seconds, not {args.stall}")
    every = video.parse_every(args.every) if args.every is not None else None
    line = parse_line(args.line) if args.line is not None else None
    for option, path in (("--out", args.out), ("--summary", args.summary), ("--draw", args.draw)):
        if path is not None:
            writable_file(path, option)
    earlier = earlier_answers(args.out) if args.out is not None else []
    if earlier and args.draw is not None:
        raise UserError(f"--out {args.out} already holds answers (this run would continue it) and --draw cannot "
                        "continue a video: give a new --out, or leave --draw out")
    model = open_edge_model(args.model_dir, precision=args.precision, threads=args.threads)
    start_ms = earlier[-1]["Timestamp"] + 1 if earlier else 0
    answers = VideoAnswers(model, args.video, every=every, min_confidence=args.min_confidence,
                           max_results=args.max_results, line=line, start_ms=start_ms, stall_s=args.stall)
    if earlier:
        answers.replay(earlier)
        print(f"edgelabels: {args.out} holds {len(earlier)} answers up to {earlier[-1]['Timestamp'] / 1000:g} s; "
              "continuing after them", file=sys.stderr, flush=True)
    stopped, error = _answer_all(answers, args, every)
    summary = answers.summary()
    if stopped:
        summary["Stopped"] = signal.Signals(stopped).name
    if error:
        summary["Error"] = error
    if answers.frames:  # nothing answered (a source refused before its first frame): nothing to summarise
        if args.summary is not None:
            from edgelabels import atomic

            atomic.write_json(args.summary, summary)
        else:
            print(f"edgelabels: summary {json.dumps(summary)}", file=sys.stderr, flush=True)
    if error:
        print(f"edgelabels: error: {error}", file=sys.stderr, flush=True)
        return 2
    return 128 + stopped if stopped else 0


def _answer_all(answers, args, every) -> tuple[int, str | None]:
    """Print, append and draw each answer until the source ends, a signal arrives (-> its number) or the source
    breaks off (-> its one-line error, when some frame was answered; before that the error is raised)."""
    stopping: list[int] = []

    def stop(signum, _frame):
        if stopping:  # a second signal: stop now, whatever the frame
            raise KeyboardInterrupt
        stopping.append(signum)

    # signal handlers can only be set from the main thread (a caller on another thread stops the usual way)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)} if main_thread else {}
    out = None
    drawing = Drawing(args.draw, args.video, every) if args.draw is not None else None
    try:
        for frame, answer in answers.pairs():
            text = json.dumps(answer)
            print(text, flush=True)
            if args.out is not None:
                try:
                    out = out or open(args.out, "a", encoding="utf-8")
                    out.write(text + "\n")  # one write, then flushed: a kill leaves at most the last line torn
                    out.flush()
                except OSError as exc:
                    raise UserError(f"--out {args.out}: cannot write ({exc.strerror or exc})") from None
            if drawing is not None:
                drawing.add(frame.image, answer["CustomLabels"], frame.timestamp_ms)
            if stopping:
                break
    except UserError as exc:
        if not answers.frames - answers.replayed:
            raise
        return 0, str(exc)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if out is not None:
            out.close()
        if drawing is not None:
            drawing.finish()  # finished and renamed into place: the frames drawn so far
    return (stopping[0] if stopping else 0), None


class Drawing:
    """--draw: runtime.video's VideoWriter at the sampled rate, opened on the first frame: 1 / the seconds of
    `--every 2s`; a file's frame rate divided by the frames of `--every 5f`; a stream's or a camera's (whose rate
    a second connection cannot ask: a camera is busy) measured between its first two sampled frames."""

    def __init__(self, path: Path, source, every):
        self.path, self.writer, self.pending = path, None, None
        seconds, frames = getattr(every, "seconds", None), getattr(every, "frames", None) or 1
        self.fps = None
        if seconds:
            self.fps = 1 / Fraction(seconds).limit_denominator(1000)
        elif Path(str(source)).is_file():
            from edgelabels.runtime.video import probe

            self.fps = Fraction(probe(source)["fps"] or 25).limit_denominator(1001) / frames

    def add(self, image, custom_labels: list[dict], timestamp_ms: int) -> None:
        picture = _drawn(image, custom_labels)
        if self.writer is None and self.fps is None and self.pending is None:
            self.pending = (picture, timestamp_ms)  # the rate is known at the second frame
            return
        if self.writer is None:
            if self.fps is None:
                self.fps = Fraction(1000, max(1, timestamp_ms - self.pending[1]))
            self._open(picture.size)
        self.writer.write(picture)

    def _open(self, size) -> None:
        from edgelabels.runtime.video import VideoWriter

        self.writer = VideoWriter(self.path, self.fps, size)
        if self.pending is not None:
            self.writer.write(self.pending[0])
            self.pending = None

    def finish(self) -> None:
        if self.writer is None and self.pending is not None:  # one frame only: any rate shows it
            self.fps = self.fps or Fraction(1)
            self._open(self.pending[0].size)
        if self.writer is not None:
            self.writer.close()


def _drawn(image, custom_labels: list[dict]):
    """The frame with each box captioned "label 97.3%" (and "#TrackId" when tracked); a classifier's labels as
    one caption across the top of the frame."""
    from edgelabels.runtime.overlay import draw_boxes

    boxes = [(f"{label['Name']} {label['Confidence']:.1f}%" + (f" #{label['TrackId']}" if "TrackId" in label else ""),
              tuple(label["Geometry"]["BoundingBox"][k] for k in ("Left", "Top", "Width", "Height")))
             for label in reversed(custom_labels) if "Geometry" in label]  # the most confident drawn last, on top
    if custom_labels and not boxes:
        # The whole frame as the box: its caption band sits inside the top edge.
        boxes = [(", ".join(f"{label['Name']} {label['Confidence']:.1f}%" for label in custom_labels),
                  (0.0, 0.0, 1.0, 1.0))]
    return draw_boxes(image, boxes)


def parse_line(text: str) -> tuple[float, float, float, float]:
    """"x1,y1,x2,y2" in ratios of the frame (0-1) -> the four numbers; anything else is one line."""
    try:
        numbers = tuple(float(part) for part in text.split(","))
    except ValueError:
        numbers = ()
    if len(numbers) != 4 or not all(0 <= n <= 1 for n in numbers):
        raise UserError(f"--line {text}: give x1,y1,x2,y2, four ratios of the frame between 0 and 1 "
                        "(0.5,0,0.5,1: a vertical line across the middle)")
    if numbers[:2] == numbers[2:]:
        raise UserError(f"--line {text}: its two ends are the same point")
    return numbers


def writable_file(path: Path, option: str) -> None:
    """A file this run will write: its folder created, writable, and no folder in the file's place; one line
    otherwise, before any frame is read."""
    from edgelabels import atomic

    if path.is_dir():
        raise UserError(f"{option} {path}: a folder is in the way (give a file name)")
    atomic.writable_folder(path.parent, option)


def earlier_answers(path: Path) -> list[dict]:
    """The answers an earlier run appended to `path` (none when it is absent or empty). A torn last line (a kill
    mid-write) is cut off the file, so that appending starts a line of its own."""
    if not path.is_file():
        return []
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"--out {path}: cannot read it to continue it ({exc.strerror or exc})") from None
    whole = data[: data.rfind(b"\n") + 1]
    if len(whole) < len(data):
        os.truncate(path, len(whole))
    answers = []
    for number, line in enumerate(whole.splitlines(), 1):
        try:
            answer = json.loads(line)
            ok = isinstance(answer["Timestamp"], int) and isinstance(answer["CustomLabels"], list)
        except (ValueError, TypeError, KeyError):
            ok = False
        if not ok:
            raise UserError(f"--out {path}: line {number} is not an answer of `predict --video`; give a new --out "
                            "file (an existing one is continued)")
        answers.append(answer)
    return answers
