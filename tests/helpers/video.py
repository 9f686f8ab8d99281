"""Small synthetic videos for the video tests, written with PyAV (no fixtures on disk).

`write_video` encodes numpy frames; `moving_objects_video` draws coloured squares moving along known straight
tracks and returns where each one is in every frame (the ground truth a tracker should recover);
`truncated_copy` cuts a file short (a download or a recording killed half-way); `write_audio_only` is a valid
media file with no video stream.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, NamedTuple

import numpy as np

# Saturated colours far apart, so a detector (or a colour test) tells them apart after H.264 compression.
COLOURS = {
    "red": (230, 30, 30),
    "green": (30, 210, 30),
    "blue": (30, 60, 230),
    "yellow": (235, 220, 30),
    "white": (240, 240, 240),
}
BACKGROUND = (40, 40, 40)


def write_video(path, frames: Iterable[np.ndarray], fps: int = 10, codec: str = "libx264",
                options: dict | None = None) -> Path:
    """Encode `frames` (H x W x 3 uint8 RGB, all one size; width and height even for yuv420p) at `fps`.

    Frame i has pts i in the codec's time base 1/fps, so its timestamp is exactly i * 1000 / fps ms. A keyframe every second
    (gop = fps), so a truncated copy still decodes up to the cut. The container follows the suffix (.mp4, .ts,
    .mkv, .avi). `options`: the encoder's (libx264's default here: preset ultrafast, which makes no B-frames)."""
    import av

    path = Path(path)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = fps
        if options is not None or codec == "libx264":
            stream.options = options if options is not None else {"preset": "ultrafast"}
        count = 0
        for count, array in enumerate(frames, 1):
            if count == 1:
                stream.height, stream.width = array.shape[:2]
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array, np.uint8), format="rgb24")
            frame.pts = count - 1
            container.mux(stream.encode(frame))
        if count == 0:
            raise ValueError("write_video: no frames")
        container.mux(stream.encode(None))
    return path


def solid_frames(count: int, size=(64, 48)):
    """`count` uniform frames that carry their own index (up to 256 frames): red = 8 * (i % 32), green = 64 * (i //
    32) + 32; `frame_number` reads it back from a decoded frame (steps of 8 and 64 survive H.264)."""
    width, height = size
    for i in range(count):
        frame = np.empty((height, width, 3), np.uint8)
        frame[:] = (8 * (i % 32), 64 * (i // 32) + 32, 128)
        yield frame


def frame_number(image) -> int:
    """The index that `solid_frames` drew into a frame (a PIL image or an array), read from its centre pixel."""
    array = np.asarray(image)
    r, g = array[array.shape[0] // 2, array.shape[1] // 2, :2].astype(int)
    return int(round((g - 32) / 64)) * 32 + int(round(r / 8)) % 32


class TruthBox(NamedTuple):
    """Where object `id` (its index in `tracks`) is in one frame: a box in ratios of the frame size, clipped."""
    id: int
    label: str
    left: float
    top: float
    width: float
    height: float


class Track(NamedTuple):
    """An object of colour `label`, a square of side `side` (ratio of the frame width), whose centre moves in a
    straight line from `start` to `end` (ratios) between `appear_s` and `leave_s` (None: the video's end); it is
    absent outside that time."""
    label: str
    start: tuple[float, float]
    end: tuple[float, float]
    side: float = 0.12
    appear_s: float = 0.0
    leave_s: float | None = None


def moving_objects_video(path, tracks: list[Track], size=(320, 240), fps: int = 10, seconds: float = 3.0):
    """Write the video and return its ground truth: one list of TruthBox per frame (frame i at i / fps s), in the
    order of `tracks`; an object wholly outside the frame is not listed. Boxes are the drawn pixels divided by the
    frame size, so they are exact (no rounding between what is drawn and what is returned)."""
    width, height = size
    frame_count = int(round(seconds * fps))
    truth, frames = [], []
    for i in range(frame_count):
        t = i / fps
        image = np.empty((height, width, 3), np.uint8)
        image[:] = BACKGROUND
        boxes = []
        for object_id, track in enumerate(tracks):
            pixels = _square(track, t, seconds, width, height)
            if pixels is None:
                continue
            x0, y0, x1, y1 = pixels
            image[y0:y1, x0:x1] = COLOURS[track.label]
            boxes.append(TruthBox(object_id, track.label, x0 / width, y0 / height, (x1 - x0) / width,
                                  (y1 - y0) / height))
        frames.append(image)
        truth.append(boxes)
    write_video(path, frames, fps=fps)
    return truth


def _square(track: Track, t: float, seconds: float, width: int, height: int):
    """The object's pixel box (x0, y0, x1, y1), clipped to the frame, at time t; None when absent or outside."""
    leave = seconds if track.leave_s is None else track.leave_s
    if not track.appear_s <= t < leave:
        return None
    progress = (t - track.appear_s) / (leave - track.appear_s)
    cx = track.start[0] + (track.end[0] - track.start[0]) * progress
    cy = track.start[1] + (track.end[1] - track.start[1]) * progress
    half = track.side * width / 2
    x0, x1 = round(cx * width - half), round(cx * width + half)
    y0, y1 = round(cy * height - half), round(cy * height + half)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def truncated_copy(path, out, fraction: float) -> Path:
    """The first `fraction` of `path`'s bytes written to `out` (a copy cut short, as a killed download leaves)."""
    data = Path(path).read_bytes()
    out = Path(out)
    out.write_bytes(data[: int(len(data) * fraction)])
    return out


def write_audio_only(path, seconds: float = 1.0, rate: int = 8000) -> Path:
    """A valid media file (a 440 Hz tone, AAC in .mp4 or .m4a, PCM in .wav) with no video stream."""
    import av

    path = Path(path)
    codec = "pcm_s16le" if path.suffix == ".wav" else "aac"
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.layout = "mono"
        samples = int(seconds * rate)
        tone = (np.sin(np.arange(samples) * 2 * np.pi * 440 / rate) * 8000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(tone[None, :], format="s16", layout="mono")
        frame.sample_rate = rate
        frame.pts = 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path
