"""runtime/video.py: frames out of files and HTTP streams (sampling, resume, reconnect, stall), refusals in one line,
the atomic VideoWriter and probe. Videos are made here with PyAV (tests/helpers/video.py); streams come from a
loopback http.server serving MPEG-TS, told per request to serve, drop half-way, or accept and say nothing."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from helpers.datasets import REPO
from helpers.video import frame_number, solid_frames, truncated_copy, write_audio_only, write_video

import av  # the video extra (make setup installs it): without it these tests fail, never skip

from edgelabels.errors import UserError
from edgelabels.runtime.video import Every, VideoWriter, open_frames, parse_every, probe


def _indices(frames):
    return [(frame.index, frame.timestamp_ms) for frame in frames]


def _one_line_error(call) -> str:
    with pytest.raises(UserError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.fixture(scope="module")
def ten_fps(tmp_path_factory):
    """30 frames at 10 fps (3 s): frame i at i * 100 ms, its index drawn into it."""
    return write_video(tmp_path_factory.mktemp("video") / "ten.mp4", solid_frames(30), fps=10)


@pytest.mark.parametrize("text, every", [
    ("2s", Every(frames=None, seconds=2.0)), ("0.5s", Every(frames=None, seconds=0.5)),
    ("500ms", Every(frames=None, seconds=0.5)), ("5", Every(frames=5)), ("5f", Every(frames=5)),
    (None, Every(frames=1)), ("", Every(frames=1)),
])
def test_parse_every_reads_seconds_and_frames(text, every):
    assert parse_every(text) == every


@pytest.mark.parametrize("text", ["0", "0s", "-1s", "abc", "2.5f", "s", "1h"])
def test_parse_every_refuses_what_is_not_a_positive_interval(text):
    assert "--every" in _one_line_error(lambda: parse_every(text))


def test_every_frame_of_a_10_fps_file_has_its_index_and_index_times_100_ms(ten_fps):
    frames = list(open_frames(ten_fps))
    assert _indices(frames) == [(i, i * 100) for i in range(30)]
    assert [frame_number(frame.image) for frame in frames] == list(range(30))  # the image is that frame's
    assert frames[0].image.mode == "RGB" and frames[0].image.size == (64, 48)


def test_every_half_second_at_10_fps_samples_frames_0_5_10(ten_fps):
    assert _indices(open_frames(ten_fps, every=parse_every("0.5s"))) == [
        (0, 0), (5, 500), (10, 1000), (15, 1500), (20, 2000), (25, 2500)]


def test_every_7th_frame_samples_indices_0_7_14_21_28(ten_fps):
    assert [frame.index for frame in open_frames(ten_fps, every=parse_every("7f"))] == [0, 7, 14, 21, 28]


def test_every_quarter_second_at_30_fps_takes_the_first_frame_at_or_after_each_multiple(tmp_path):
    # frame k at k * 1000 / 30 ms: 250 ms falls between frames 7 (233) and 8 (267), 750 between 22 (733) and 23
    path = write_video(tmp_path / "thirty.mp4", solid_frames(31), fps=30)
    assert _indices(open_frames(path, every=parse_every("0.25s"))) == [
        (0, 0), (8, 267), (15, 500), (23, 767), (30, 1000)]
    # a run resumed after 267 ms samples what the whole run sampled after it
    assert _indices(open_frames(path, every=parse_every("0.25s"), start_ms=268)) == [(15, 500), (23, 767), (30, 1000)]


def test_start_ms_skips_the_frames_before_it_and_keeps_their_numbers(ten_fps):
    frames = list(open_frames(ten_fps, start_ms=1200))
    assert _indices(frames) == [(i, i * 100) for i in range(12, 30)]
    assert frame_number(frames[0].image) == 12
    assert [frame.index for frame in open_frames(ten_fps, every=parse_every("0.5s"), start_ms=1001)] == [15, 20, 25]


def test_a_video_with_b_frames_comes_out_in_display_order(tmp_path):
    path = write_video(tmp_path / "bframes.mp4", solid_frames(40), fps=25, options={"preset": "medium", "bf": "3"})
    frames = list(open_frames(path))
    assert _indices(frames) == [(i, i * 40) for i in range(40)]
    assert [frame_number(frame.image) for frame in frames] == list(range(40))


# --- files that are not (whole) videos: one line naming the file, before any frame where nothing can be read --


def test_empty_file_is_refused_in_one_line(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    assert _one_line_error(lambda: open_frames(tmp_path / "empty.mp4")) == \
        f"{tmp_path / 'empty.mp4'}: empty file (0 bytes), not a video"


def test_missing_file_and_folder_are_refused_in_one_line(tmp_path):
    assert _one_line_error(lambda: open_frames(tmp_path / "gone.mp4")) == f"{tmp_path / 'gone.mp4'}: no such file"
    assert _one_line_error(lambda: open_frames(tmp_path)) == f"{tmp_path}: is a folder, not a video file"


def test_audio_only_file_has_no_video_stream(tmp_path):
    path = write_audio_only(tmp_path / "tone.m4a")
    assert _one_line_error(lambda: open_frames(path)) == f"{path}: has no video stream (audio only)"


def test_text_file_is_not_a_video(tmp_path):
    (tmp_path / "notes.mp4").write_text("not a video\n" * 50)
    message = _one_line_error(lambda: open_frames(tmp_path / "notes.mp4"))
    assert message.startswith(f"{tmp_path / 'notes.mp4'}: not a video this can read")


def test_mp4_cut_short_is_refused_before_any_frame(tmp_path, ten_fps):
    # an MP4 written the usual way has its index (moov) at the end: a cut copy has none
    cut = truncated_copy(ten_fps, tmp_path / "cut.mp4", 0.6)
    assert "truncated, corrupt" in _one_line_error(lambda: open_frames(cut))


def test_matroska_cut_short_yields_its_frames_then_says_where_it_ends(tmp_path):
    whole = write_video(tmp_path / "whole.mkv", solid_frames(50), fps=10)
    cut = truncated_copy(whole, tmp_path / "cut.mkv", 0.7)
    got = []
    with pytest.raises(UserError) as caught:
        for frame in open_frames(cut):
            got.append(frame.index)
    assert 20 < len(got) < 50 and got == list(range(len(got)))
    assert str(caught.value) == (f"{cut}: truncated or corrupt at {(len(got) - 1) / 10:.1f} s "
                                 f"(its header says 5.0 s)")


def test_whole_matroska_file_is_not_called_truncated(tmp_path):
    path = write_video(tmp_path / "whole.mkv", solid_frames(50), fps=10)
    assert len(list(open_frames(path))) == 50


def test_without_pyav_video_says_how_to_install_it(monkeypatch, ten_fps):
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` now raises ImportError
    assert "pip install 'edgelabels[video]'" in _one_line_error(lambda: open_frames(ten_fps))


def test_importing_the_module_does_not_import_pyav():
    code = "import sys, edgelabels.runtime.video; assert 'av' not in sys.modules, 'av imported'"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)


# --- streams ---------------------------------------------------------------------------------------------------


class _Server:
    """A loopback HTTP server of one MPEG-TS file; request k is answered as plan[k] says (the last one repeats):
    "whole" (with Content-Length), "live" (no length: a stream that never says how long it is), "trickle" (live, at
    about real time for the A/V clip), "half" (half the
    bytes, then the connection dropped), "half-silent" (half, then nothing, connection held), "silent" (accepts,
    sends nothing), "missing" (404), "page" (an HTML page)."""

    def __init__(self, data: bytes, plan: list[str]):
        self.requests = 0
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                mode = plan[min(outer.requests, len(plan) - 1)]
                outer.requests += 1
                if mode == "silent":
                    outer.release.wait(30)
                    return
                if mode == "missing":
                    self.send_error(404)
                    return
                if mode == "page":
                    self._page()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "video/mp2t")
                if mode not in ("live", "trickle"):
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if mode == "trickle":
                    self._trickle()
                    return
                self.wfile.write(data if mode in ("whole", "live") else data[: len(data) // 2])
                self.wfile.flush()
                if mode == "half":
                    self.connection.shutdown(socket.SHUT_RDWR)
                elif mode == "half-silent":
                    outer.release.wait(30)

            def _trickle(self):
                """The bytes at about 24 KB/s (the A/V clip below in real time), until the client hangs up."""
                for start in range(0, len(data), 2400):
                    try:
                        self.wfile.write(data[start:start + 2400])
                        self.wfile.flush()
                    except OSError:
                        return
                    if outer.release.wait(0.1):
                        return

            def _page(self):
                body = b"<html><body>Camera login</body></html>" * 20
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hive.ts"

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def stream_bytes(tmp_path_factory):
    """50 frames at 10 fps (5 s) of MPEG-TS, the format cameras and encoders stream over HTTP."""
    return write_video(tmp_path_factory.mktemp("ts") / "hive.ts", solid_frames(50), fps=10).read_bytes()


@pytest.fixture
def serve(stream_bytes):
    servers = []

    def start(*plan):
        servers.append(_Server(stream_bytes, list(plan)))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_http_stream_served_whole_gives_every_frame(serve):
    server = serve("whole")
    assert _indices(open_frames(server.url, log=pytest.fail)) == [(i, i * 100) for i in range(50)]


def test_http_stream_dropped_half_way_reconnects_and_its_frames_continue(serve):
    server = serve("half", "whole")
    lines = []
    frames = list(open_frames(server.url, log=lines.append))
    assert _indices(frames) == [(i, i * 100) for i in range(50)]  # each once: the replayed start is skipped
    assert [frame_number(frame.image) for frame in frames] == list(range(50))
    assert lines[0] == f"{server.url}: connection lost (Input/output error); reconnecting in 0.5 s (attempt 1)"
    assert lines[1].startswith(f"{server.url}: reconnected; frames continue at ")
    assert len(lines) == 2 and server.requests == 2


def test_live_stream_dropped_goes_on_numbering_and_never_repeats_a_timestamp(serve):
    server = serve("live")  # no length: each connection is new footage, and each ends in an error
    lines = []
    frames = []
    for frame in open_frames(server.url, log=lines.append):
        frames.append(frame)
        if len(frames) == 70:
            break
    assert [frame.index for frame in frames] == list(range(70))
    assert [frame.timestamp_ms for frame in frames[:50]] == [i * 100 for i in range(50)]
    # the second connection starts after the last timestamp plus the time away (at least the 0.5 s back-off)
    assert frames[50].timestamp_ms >= 4900 + 500
    assert all(b.timestamp_ms - a.timestamp_ms == 100 for a, b in zip(frames[50:], frames[51:]))
    assert "reconnecting in 0.5 s (attempt 1)" in lines[0]


def test_dropped_stream_without_reconnect_is_one_line(serve):
    server = serve("half")
    frames = open_frames(server.url, reconnect=False)
    with pytest.raises(UserError) as caught:
        for _ in frames:
            pass
    assert str(caught.value) == f"{server.url}: connection lost (Input/output error)"


def test_source_that_accepts_and_sends_nothing_stalls_within_stall_s(serve):
    server = serve("silent")
    started = time.monotonic()
    message = _one_line_error(lambda: open_frames(server.url, stall_s=2))
    assert message == f"{server.url}: no frame for 2 s (stalled)"
    assert 1.8 <= time.monotonic() - started <= 2 + 2


def test_stream_that_goes_silent_tries_again_then_stalls_within_stall_s_of_its_last_frame(serve):
    server = serve("half-silent", "silent")
    lines = []
    last_frame_at = None
    with pytest.raises(UserError) as caught:
        for _ in open_frames(server.url, stall_s=2, log=lines.append):
            last_frame_at = time.monotonic()
    assert last_frame_at is not None
    assert str(caught.value) == f"{server.url}: no frame for 2 s (stalled)"
    assert 1.5 <= time.monotonic() - last_frame_at <= 2 + 2
    assert lines == [f"{server.url}: connection lost (no data for 1 s); reconnecting in 0.5 s (attempt 1)"]


def _video_then_audio_only(path, rate=16000):
    """MPEG-TS: 1 s of video (10 frames) and 6 s of (silent) audio, interleaved: after the first second only audio
    packets come."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=10)
        video.width, video.height, video.pix_fmt, video.options = 64, 48, "yuv420p", {"preset": "ultrafast"}
        audio = container.add_stream("mp2", rate=rate)
        audio.layout = "mono"
        images, sample = list(solid_frames(10)), 0
        for ms in range(0, 6000, 50):
            if ms % 100 == 0 and ms // 100 < len(images):
                frame = av.VideoFrame.from_ndarray(images[ms // 100], format="rgb24")
                frame.pts = ms // 100
                container.mux(video.encode(frame))
            while sample * 1000 / rate <= ms:
                sound = av.AudioFrame.from_ndarray(np.zeros((1, 1152), np.int16), format="s16", layout="mono")
                sound.sample_rate, sound.pts = rate, sample
                container.mux(audio.encode(sound))
                sample += 1152
        container.mux(video.encode(None))
        container.mux(audio.encode(None))
    return path


def test_stream_whose_video_stops_while_its_audio_flows_stalls_within_stall_s(tmp_path):
    # FFmpeg holds the audio packets back while it waits for the next video packet (PyAV reads with genpts), so
    # the read times out as on a silent stream; the one reconnect finds a server that says nothing
    server = _Server(_video_then_audio_only(tmp_path / "av.ts").read_bytes(), ["trickle", "silent"])
    lines = []
    try:
        last_frame_at = None
        with pytest.raises(UserError) as caught:
            for _ in open_frames(server.url, stall_s=1.5, log=lines.append):
                last_frame_at = time.monotonic()
        assert str(caught.value) == f"{server.url}: no frame for 1.5 s (stalled)"
        assert last_frame_at is not None and 1.4 <= time.monotonic() - last_frame_at <= 1.5 + 2
        assert all("connection lost (" in line for line in lines)
    finally:
        server.close()


def test_unreachable_url_is_refused_at_once_in_one_line():
    with socket.socket() as probe_socket:  # a loopback port nothing listens on
        probe_socket.bind(("127.0.0.1", 0))
        port = probe_socket.getsockname()[1]
    started = time.monotonic()
    url = f"rtsp://viewer:secret@127.0.0.1:{port}/hive"
    message = _one_line_error(lambda: open_frames(url))
    assert message == f"rtsp://viewer:***@127.0.0.1:{port}/hive: cannot connect (Connection refused)"
    assert time.monotonic() - started < 2


def test_url_answering_404_or_a_web_page_is_refused_in_one_line(serve):
    server = serve("missing")
    assert _one_line_error(lambda: open_frames(server.url)) == \
        f"{server.url}: cannot connect (Server returned 404 Not Found)"
    server = serve("page")
    assert _one_line_error(lambda: open_frames(server.url)).startswith(
        f"{server.url}: not a video stream this can read (")


def test_unknown_scheme_and_missing_camera_are_refused_in_one_line():
    assert "ftp:// is not a stream" in _one_line_error(lambda: open_frames("ftp://example.com/a.mp4"))
    if sys.platform.startswith("linux"):
        assert _one_line_error(lambda: open_frames("camera:63")) == \
            "camera:63: no such camera (/dev/video63 does not exist)"


# --- writing and probing ---------------------------------------------------------------------------------------


def test_video_writer_writes_a_file_pyav_reads_back_frame_for_frame(tmp_path):
    out = tmp_path / "drawn.mp4"
    with VideoWriter(out, fps=6, size=(65, 49)) as video:  # odd sides: yuv420p keeps 64 x 48
        for array in solid_frames(12, size=(65, 49)):
            video.write(Image.fromarray(array))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drawn.mp4"]  # no temporary file left
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        decoded = [frame.to_image() for frame in container.decode(stream)]
        assert (stream.codec_context.name, stream.average_rate) == ("h264", 6)
    assert [frame_number(image) for image in decoded] == list(range(12))
    assert decoded[0].size == (64, 48)


def test_video_writer_interrupted_leaves_nothing_under_the_final_name(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with VideoWriter(tmp_path / "drawn.mp4", fps=10, size=(64, 48)) as video:
            video.write(Image.fromarray(np.zeros((48, 64, 3), np.uint8)))
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_video_writer_refuses_a_suffix_it_cannot_write(tmp_path):
    message = _one_line_error(lambda: VideoWriter(tmp_path / "drawn.xyz", fps=10, size=(64, 48)))
    assert message.startswith(f"{tmp_path / 'drawn.xyz'}: cannot write a video here")
    assert list(tmp_path.iterdir()) == []


def test_probe_reports_rate_frames_length_and_size(ten_fps, stream_bytes, tmp_path):
    assert probe(ten_fps) == {"fps": 10.0, "frames": 30, "duration_s": 3.0, "width": 64, "height": 48}
    (tmp_path / "hive.ts").write_bytes(stream_bytes)  # MPEG-TS does not count its frames
    assert probe(tmp_path / "hive.ts") == {"fps": 10.0, "frames": None, "duration_s": 5.0, "width": 64, "height": 48}
