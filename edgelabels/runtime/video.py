"""Frames out of video files, HTTP/RTSP streams and cameras (PyAV: FFmpeg's libraries), and an atomic video writer.

`open_frames(source)` yields `Frame(index, timestamp_ms, image)`: index is the 0-based number of the decoded frame
(DetectCustomLabels' video cousins call it FrameNumber), timestamp_ms the milliseconds since the first frame
(Rekognition Video's Timestamp), image an RGB PIL image. Only sampled frames are converted to RGB.

- Sampling (`--every`): every Nth decoded frame, or the first frame at or after each multiple of S seconds (10 fps
  every 0.5 s: frames 0, 5, 10, ...). The choice depends only on the frame and the one decoded before it, so a
  resumed run (`start_ms`: frames before it are decoded, not yielded) samples exactly the frames a whole run would.
- Files are decoded to their end. An error part-way, or a file that ends before the length its header states
  (a cut Matroska file), raises UserError "truncated or corrupt at 3.2 s" after the frames it had; an MP4 cut
  short has no index at all and is refused before any frame. A cut MPEG-TS file cannot be told from a short one.
- Streams (URLs, cameras) never block for ever: `stall_s` bounds the time without a frame. Losing the connection
  (an error, a read with no data for stall_s / 2) reconnects with back-off (0.5 s doubling to 30 s), one `log`
  line per attempt, until a frame comes or stall_s has passed since the last one ("no frame for 10 s (stalled)").
  A source that ends cleanly (a served file) has ended. After a reconnect, a source of known size (a file served
  over HTTP) is sent again from its start: the frames already decoded are skipped, indices and timestamps are the
  file's own. A live source's frames go on numbering after the last one, timestamps after the last plus the time
  the source was away, so no timestamp is given twice. The first connection is not retried: a wrong URL fails
  at once, in one line.
A blocking read is not interrupted by a signal (PyAV's only interrupt is its timeout): on a silent stream Ctrl-C
takes effect when the read gives up, within stall_s / 2. While connecting, PyAV 18 loses a KeyboardInterrupt
raised by Python's default handler (the attempt still ends at its timeout); a handler that sets a flag is safe.
Decoding uses FFmpeg's own threads (thread_type AUTO). `av` is imported on first use: the edge runtime works
without the video extra, and asking for video without it says how to install it.
"""

from __future__ import annotations

import os
import re
import stat
import sys
import time
from contextlib import ExitStack
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator, NamedTuple
from urllib.parse import urlsplit

from edgelabels import atomic
from edgelabels.errors import UserError

STREAM_SCHEMES = ("rtsp", "rtsps", "http", "https")
FIRST_DELAY_S, MAX_DELAY_S = 0.5, 30.0


class Every(NamedTuple):
    """Which frames to sample: every `frames`-th one, or (when `seconds` is set) one per `seconds`."""
    frames: int | None = 1
    seconds: float | None = None


class Frame(NamedTuple):
    index: int
    timestamp_ms: int
    image: object  # PIL.Image.Image, RGB


def print_to_stderr(line: str) -> None:
    print(f"edgelabels: {line}", file=sys.stderr, flush=True)


def parse_every(text: str | None) -> Every:
    """"2s" / "0.5s" / "500ms": one frame per interval; "5" / "5f": every 5th frame; None or "": every frame."""
    if text is None or not str(text).strip():
        return Every(frames=1)
    match = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)\s*(s|ms|f)?", str(text).strip().lower())
    if match is None:
        raise UserError(f"--every {text!r}: give seconds (2s, 0.5s, 500ms) or a number of frames (5, 5f)")
    number, unit = float(match[1]), match[2] or "f"
    if number <= 0:
        raise UserError(f"--every {text!r}: must be more than 0")
    if unit == "f":
        if number != int(number):
            raise UserError(f"--every {text!r}: a number of frames is a whole number")
        return Every(frames=int(number))
    return Every(frames=None, seconds=number / 1000 if unit == "ms" else number)


def _sampled(every: Every, index: int, ms: int, previous_ms: int) -> bool:
    if every.seconds is not None:
        period = every.seconds * 1000
        return ms // period > previous_ms // period  # the first frame at or after a multiple of the period
    return index % (every.frames or 1) == 0


class _Target(NamedTuple):
    name: str  # what messages call it (a URL's password hidden)
    url: str  # what FFmpeg opens
    format: str | None
    options: dict
    live: bool  # a stream or a camera: reconnect, time out


def _av():
    try:
        import av
    except ImportError:
        raise UserError("video needs PyAV, which is not installed: pip install 'edgelabels[video]'") from None
    return av


def _target(source) -> _Target:
    text = str(source)
    camera = re.fullmatch(r"camera:(\d+)|/dev/video(\d+)", text)
    if camera:
        return _camera(text, int(camera[1] or camera[2]))
    if "://" in text:
        scheme = text.split("://", 1)[0].lower()
        name = _hide_password(text)
        if scheme not in STREAM_SCHEMES:
            raise UserError(f"{name}: {scheme}:// is not a stream this reads (rtsp, rtsps, http, https; or a file, "
                            f"/dev/videoN, camera:N)")
        # RTSP over TCP: UDP loses packets (smeared frames) on any network but the quietest, and crosses no NAT
        options = {"rtsp_transport": "tcp"} if scheme.startswith("rtsp") else {}
        return _Target(name, text, None, options, True)
    try:
        info = os.stat(text)
    except FileNotFoundError:
        raise UserError(f"{text}: no such file") from None
    except OSError as exc:
        raise UserError(f"{text}: cannot read ({exc.strerror})") from None
    if stat.S_ISDIR(info.st_mode):
        raise UserError(f"{text}: is a folder, not a video file")
    if stat.S_ISCHR(info.st_mode) and sys.platform.startswith("linux"):  # /dev/v4l/by-id/...: a camera's stable name
        return _Target(text, text, "v4l2", {}, True)
    if stat.S_ISREG(info.st_mode) and info.st_size == 0:
        raise UserError(f"{text}: empty file (0 bytes), not a video")
    if not os.access(text, os.R_OK):
        raise UserError(f"{text}: cannot read (permission denied)")
    return _Target(text, text, None, {}, False)


def _camera(text: str, number: int) -> _Target:
    if sys.platform.startswith("linux"):
        device = f"/dev/video{number}"
        if not os.path.exists(device):
            raise UserError(f"{text}: no such camera ({device} does not exist)")
        return _Target(text, device, "v4l2", {}, True)
    if sys.platform == "darwin":
        return _Target(text, str(number), "avfoundation", {}, True)
    raise UserError(f"{text}: cameras are read on Linux (/dev/videoN) and macOS; give the camera's RTSP URL instead")


def _hide_password(url: str) -> str:
    try:
        password = urlsplit(url).password
    except ValueError:  # not a URL urllib can parse (FFmpeg will say what is wrong with it)
        return url
    if password is None:
        return url
    return url.replace(f":{password}@", ":***@", 1)


def _reason(exc: BaseException) -> str:
    """FFmpeg's one-line reason ("Connection refused"), without the path it repeats."""
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())


def _stalled(target: _Target, stall_s: float) -> UserError:
    return UserError(f"{target.name}: no frame for {stall_s:g} s (stalled)")


def _connect(target: _Target, open_s: float, read_s: float):
    """(container, its first video stream); FFmpeg's errors raised as they come (the caller decides: refuse or
    retry)."""
    av = _av()
    timeout = (max(open_s, 0.1), read_s) if target.live else None
    container = av.open(target.url, format=target.format, options=target.options, timeout=timeout)
    stream = next(iter(container.streams.video), None)
    if stream is None:
        what = " (audio only)" if container.streams.audio else ""
        container.close()
        raise UserError(f"{target.name}: has no video stream{what}")
    stream.codec_context.thread_type = "AUTO"
    return container, stream


def _first_connection(target: _Target, stall_s: float):
    av = _av()
    try:
        return _connect(target, stall_s, stall_s / 2)
    except av.error.ExitError:
        raise _stalled(target, stall_s) from None
    except av.error.FFmpegError as exc:
        if target.live and not isinstance(exc, av.error.InvalidDataError):
            verb = "open the camera" if target.format else "connect"
            raise UserError(f"{target.name}: cannot {verb} ({_reason(exc)})") from None
        if target.live:
            raise UserError(f"{target.name}: not a video stream this can read ({_reason(exc)})") from None
        raise UserError(f"{target.name}: not a video this can read (truncated, corrupt or another kind of file: "
                        f"{_reason(exc)})") from None


def open_frames(source, *, every: Every | None = None, start_ms: int = 0, stall_s: float = 10.0,
                reconnect: bool = True, log: Callable[[str], None] = print_to_stderr) -> Iterator[Frame]:
    """The sampled frames of `source` (a file, an rtsp/rtsps/http/https URL, /dev/videoN or camera:N) at or after
    start_ms. The source is opened here: a missing, empty or unreadable file, a file with no video stream and an
    unreachable URL raise UserError before this returns."""
    target = _target(source)
    container, stream = _first_connection(target, stall_s)
    return _frames(target, container, stream, every or Every(), start_ms, stall_s, reconnect, log)


def _frames(target, container, stream, every, start_ms, stall_s, reconnect, log):
    av = _av()
    seen = -1  # timestamp of the last decoded frame, sampled or not
    next_index = 0
    attempt = 0  # reconnects since the last frame
    last_frame_at = time.monotonic()
    source_origin = None  # the first frame's pts: timestamps count from it
    while True:
        # A file, or a resource of known size or length, comes again from its start (or, live HLS, goes on) on the
        # source's own clock: what was decoded already is skipped. Other streams restart their clock.
        replay = not target.live or container.size > 0 or container.duration is not None
        origin = source_origin if replay else None
        seen_before, index_before, offset, last = seen, next_index, 0, None
        try:
            for n, frame in enumerate(_decoded(target, container, stream, stall_s, last_frame_at)):
                last = frame
                if origin is None:
                    origin = frame.pts
                    if not replay and seen_before >= 0:  # after the last timestamp plus the time away
                        offset = seen_before + max(1, round((time.monotonic() - last_frame_at) * 1000))
                source_origin = origin if source_origin is None else source_origin
                ms = offset + _ms(frame, stream, origin, n)
                index = n if replay else index_before + n
                if replay and ms <= seen_before:
                    continue  # decoded before the connection dropped
                ms = max(ms, seen + 1)  # a stream's clock can stall or step back: never the same timestamp twice
                if attempt:
                    log(f"{target.name}: reconnected; frames continue at {ms / 1000:.1f} s")
                    attempt = 0
                sample = _sampled(every, index, ms, seen)
                seen, next_index, last_frame_at = ms, index + 1, time.monotonic()
                if sample and ms >= start_ms:
                    yield Frame(index, ms, frame.to_image())
            if not target.live:
                _check_length(target, container, stream, seen, last)
            return  # the end of the video
        except av.error.ExitError:
            lost = f"no data for {stall_s / 2:g} s"
        except av.error.FFmpegError as exc:
            if not target.live:
                raise UserError(f"{target.name}: truncated or corrupt at {max(seen, 0) / 1000:.1f} s "
                                f"({_reason(exc)})") from None
            lost = _reason(exc)
        finally:
            container.close()
        if not reconnect:
            raise UserError(f"{target.name}: connection lost ({lost})")
        container, stream, attempt = _reconnect(target, lost, attempt, last_frame_at + stall_s, stall_s, log)


def _decoded(target: _Target, container, stream, stall_s: float, since: float):
    """The stream's decoded frames. A live stream joined between keyframes has packets that cannot be decoded
    until the next keyframe: those are skipped there (a file's are an error), as long as some frame comes within
    stall_s (packets that never make a frame, or only other streams' packets, are a stall too). When reading
    fails, the frames the decoder still holds (its threads keep a few) come out before the error."""
    av = _av()
    packets = container.demux()
    while True:
        try:
            packet = next(packets, None)
        except av.error.FFmpegError:
            yield from _flushed(stream)
            raise
        if packet is None:
            return
        if target.live and time.monotonic() - since > stall_s:
            raise _stalled(target, stall_s)
        if packet.stream.index != stream.index:
            continue
        try:
            frames = stream.decode(packet)
        except av.error.InvalidDataError:
            if not target.live:
                yield from _flushed(stream)
                raise
            continue
        for frame in frames:
            yield frame
            since = time.monotonic()


def _flushed(stream) -> list:
    try:
        return stream.decode(None)
    except Exception:  # noqa: BLE001 - a decoder that cannot flush has nothing more to give; the read error counts
        return []


def _ms(frame, stream, origin, n: int) -> int:
    if frame.pts is None or origin is None:  # no timestamps (a raw stream): the nominal rate
        rate = stream.average_rate or stream.guessed_rate or 25
        return round(n * 1000 / float(rate))
    return round((frame.pts - origin) * Fraction(stream.time_base) * 1000)


def _check_length(target: _Target, container, stream, seen: int, last) -> None:
    """A file whose frames stop short of the length its header states (more than half a frame) was cut short.
    The container's length counts only when the video is its one stream (audio may run longer)."""
    if last is None:
        raise UserError(f"{target.name}: no video frame could be decoded (truncated or corrupt)")
    if stream.duration:
        stated = stream.duration * Fraction(stream.time_base) * 1000
    elif container.duration and len(container.streams) == 1:
        stated = Fraction(container.duration, 1000)
    else:
        return
    rate = float(stream.average_rate or stream.guessed_rate or 25)
    interval = 1000 / rate
    shown_ms = last.duration * Fraction(stream.time_base) * 1000 if last.duration else interval
    if seen + shown_ms < stated - interval / 2:
        raise UserError(f"{target.name}: truncated or corrupt at {max(seen, 0) / 1000:.1f} s (its header says "
                        f"{float(stated) / 1000:.1f} s)")


def _reconnect(target: _Target, lost: str, attempt: int, deadline: float, stall_s: float, log):
    """(container, stream, attempts made) once the source answers again; UserError (stalled) at the deadline."""
    av = _av()
    while True:
        attempt += 1
        delay = min(FIRST_DELAY_S * 2 ** (attempt - 1), MAX_DELAY_S)
        remaining = deadline - time.monotonic()
        if remaining <= delay:
            time.sleep(max(remaining, 0))
            raise _stalled(target, stall_s)
        log(f"{target.name}: connection lost ({lost}); reconnecting in {delay:g} s (attempt {attempt})")
        time.sleep(delay)
        try:
            container, stream = _connect(target, deadline - time.monotonic(), stall_s / 2)
            return container, stream, attempt
        except av.error.FFmpegError as exc:
            lost = _reason(exc)
        except UserError:  # it answered, without a video stream
            lost = "no video stream"


def probe(source, stall_s: float = 10.0) -> dict:
    """{"fps", "frames" (None when the container does not say), "duration_s" (or None), "width", "height"}."""
    target = _target(source)
    container, stream = _first_connection(target, stall_s)
    with container:
        rate = stream.average_rate or stream.guessed_rate
        if stream.duration:
            duration = float(stream.duration * Fraction(stream.time_base))
        else:
            duration = container.duration / 1e6 if container.duration else None
        return {"fps": float(rate) if rate else None, "frames": stream.frames or None, "duration_s": duration,
                "width": stream.codec_context.width, "height": stream.codec_context.height}


class VideoWriter:
    """`with VideoWriter("out.mp4", fps, (width, height)) as video: video.write(image)`: H.264 (libx264, yuv420p;
    MPEG-4 part 2 where this FFmpeg has no libx264) in the container the suffix names, written under a temporary
    name and renamed into place when closed without an error: a killed run never leaves a half file under the
    final name. yuv420p needs even sides: an odd width or height loses its last column or row. Images of another
    size are resized."""

    def __init__(self, path, fps: float, size: tuple[int, int]):
        av = _av()
        self.path = Path(path)
        width, height = size
        self.size = (width - width % 2, height - height % 2)
        self.frames_written = 0
        self._stack = ExitStack()
        try:
            temp = self._stack.enter_context(atomic.temp_path(self.path))
            options = {"movflags": "+faststart"} if self.path.suffix.lower() in (".mp4", ".mov", ".m4v") else {}
            self._container = av.open(str(temp), "w", container_options=options)
        except (av.error.FFmpegError, ValueError, OSError) as exc:
            self._stack.__exit__(type(exc), exc, exc.__traceback__)  # the temporary file goes, nothing is renamed
            raise UserError(f"{self.path}: cannot write a video here ({_reason(exc)}; use .mp4, .mkv or .avi)") \
                from None
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        self._stream = self._container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        self._stream.width, self._stream.height = self.size
        self._stream.pix_fmt = "yuv420p"

    def write(self, image) -> None:
        av = _av()
        image = image if image.mode == "RGB" else image.convert("RGB")
        if image.size != self.size:
            image = image.resize(self.size)
        frame = av.VideoFrame.from_image(image)
        frame.pts = self.frames_written
        self._container.mux(self._stream.encode(frame))
        self.frames_written += 1

    def close(self) -> None:
        """Finish the file and put it in place (idempotent)."""
        if self._container is None:
            return
        try:
            self._container.mux(self._stream.encode(None))
            self._container.close()
        except BaseException as exc:
            self._abandon(exc)
            raise
        self._container = None
        self._stack.close()

    def _abandon(self, exc: BaseException) -> None:
        """Drop the temporary file: nothing appears under the final name."""
        container, self._container = self._container, None
        if container is not None:
            try:
                container.close()
            except Exception:  # noqa: BLE001 - the file is being thrown away; the first error is the one to see
                pass
        self._stack.__exit__(type(exc), exc, exc.__traceback__)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._abandon(exc)
