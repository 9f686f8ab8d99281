"""Corrupt PNG/JPEG files: each decodes to an image or an ImageProblem, and every command treats them alike.

The decoder is one boundary (data.images.decode_image): whatever a damaged file makes Pillow or numpy
raise (struct.error from a mangled EXIF tag, IndexError, ...) is that image's ImageProblem. The fuzz
cases are seeded bit flips, byte overwrites and truncations of small files made here; the EXIF case is
a phone-style JPEG (orientation 6, a Make tag) whose Make tag number lost one bit pattern (0x010F ->
0x0100, ImageWidth): Pillow opens it, and re-writing the EXIF in exif_transpose raises struct.error.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import subprocess

import numpy as np
import pytest
from PIL import Image, ImageOps

from edgelabels.data.images import decode_image, read_image
from edgelabels.errors import ImageProblem


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def noise(width=96, height=64, seed=0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def phone_jpeg(colour=None) -> bytes:
    """A JPEG as a phone writes it: EXIF with orientation 6 (rotate to display) and the camera's make."""
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    exif[0x010F] = "edgelabels"  # Make
    exif[0x0110] = "fuzz"  # Model
    exif[0x011A] = exif[0x011B] = 72.0  # XResolution, YResolution (rationals)
    exif[0x0128] = 2  # ResolutionUnit: inches
    image = Image.new("RGB", (96, 64), colour) if colour else noise()
    return encode(image, "JPEG", quality=90, exif=exif.tobytes())


def corrupt_exif_jpeg() -> bytes:
    """phone_jpeg with one byte changed: the Make tag (0x010F, ASCII) becomes ImageWidth (0x0100, a number)."""
    data = bytearray(phone_jpeg(colour=(220, 30, 30)))
    make = data.index(b"\x01\x0f\x00\x02", data.index(b"Exif\x00\x00"))  # tag 0x010F, type 2 (ASCII), big-endian
    data[make + 1] = 0x00
    return bytes(data)


def seed_files() -> dict[str, bytes]:
    deep = np.linspace(0, 65535, 40 * 30).astype(np.uint16).reshape(30, 40)
    return {
        "photo.jpg": encode(noise(), "JPEG", quality=85),
        "phone.jpg": phone_jpeg(),
        "colour.png": encode(noise(48, 40, seed=1), "PNG"),
        "deep.png": encode(Image.fromarray(deep), "PNG"),
        "palette.png": encode(noise(40, 30, seed=2).convert("P", palette=Image.Palette.ADAPTIVE, colors=16), "PNG"),
    }


def exif_segment(data: bytes) -> tuple[int, int]:
    """(start, end) of a JPEG's EXIF block (APP1 after its 'Exif' header), or (0, 0)."""
    start = data.find(b"Exif\x00\x00")
    if start < 4 or data[start - 4:start - 2] != b"\xff\xe1":
        return 0, 0
    return start + 6, start - 2 + int.from_bytes(data[start - 2:start], "big")


def mutations(data: bytes, rng: np.random.Generator, n: int) -> list[bytes]:
    """n damaged copies, in turn: 1-4 bit flips; 1-8 overwritten bytes (half of the time within the first
    200 bytes, where the headers are); a truncation."""
    out = []
    for i in range(n):
        damaged = bytearray(data)
        if i % 3 == 0:
            for _ in range(rng.integers(1, 5)):
                position = int(rng.integers(0, len(damaged)))
                damaged[position] ^= 1 << int(rng.integers(0, 8))
        elif i % 3 == 1:
            limit = min(200, len(damaged)) if rng.random() < 0.5 else len(damaged)
            for _ in range(rng.integers(1, 9)):
                damaged[int(rng.integers(0, limit))] = int(rng.integers(0, 256))
        else:
            damaged = damaged[: int(rng.integers(1, len(damaged)))]
        out.append(bytes(damaged))
    return out


def exif_mutations(data: bytes, rng: np.random.Generator, n: int) -> list[bytes]:
    """n copies of a JPEG with one or two bytes of its EXIF block (tag numbers, types, counts, offsets) overwritten."""
    start = data.index(b"Exif\x00\x00")
    end = start - 2 + int.from_bytes(data[start - 2:start], "big")  # the APP1 length counts its own 2 bytes
    out = []
    for _ in range(n):
        damaged = bytearray(data)
        for _ in range(rng.integers(1, 3)):
            damaged[int(rng.integers(start + 6, end))] = int(rng.integers(0, 256))
        out.append(bytes(damaged))
    return out


def test_a_jpeg_whose_exif_makes_pillow_raise_struct_error_is_an_image_problem_naming_the_file(tmp_path):
    opened = Image.open(io.BytesIO(corrupt_exif_jpeg()))
    opened.load()
    assert opened.getexif()[0x0112] == 6
    with pytest.raises(struct.error):  # the fixture is the real case: Pillow opens it, exif_transpose raises
        ImageOps.exif_transpose(opened)
    path = tmp_path / "bad.jpeg"
    path.write_bytes(corrupt_exif_jpeg())
    with pytest.raises(ImageProblem) as caught:
        read_image(path)
    assert caught.value.path == str(path)
    assert caught.value.problem.startswith("corrupt EXIF data (struct.error: ")
    assert "\n" not in str(caught.value) and len(caught.value.problem) <= 200


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's "Corrupt EXIF data" warnings on damaged files
def test_hundreds_of_damaged_files_each_decode_to_an_image_or_an_image_problem():
    rng = np.random.default_rng(13)
    cases = [("bad.jpeg", corrupt_exif_jpeg())]
    for name, data in seed_files().items():
        cases += [(f"{name}#{i}", damaged) for i, damaged in enumerate(mutations(data, rng, 60))]
    cases += [(f"phone.jpg#exif{i}", damaged) for i, damaged in enumerate(exif_mutations(phone_jpeg(), rng, 150))]
    unexpected, images, problems = [], 0, 0
    for name, data in cases:
        try:
            image, notes = decode_image(data, name, "." + name.split("#")[0].rsplit(".", 1)[1])
        except ImageProblem as exc:
            assert exc.path == name and exc.problem and "\n" not in exc.problem
            problems += 1
        except Exception as exc:  # anything else is the bug under test
            unexpected.append(f"{name}: {type(exc).__module__}.{type(exc).__name__}: {exc}")
        else:
            assert image.mode in ("RGB", "L") and min(image.size) >= 1 and isinstance(notes, list)
            image.tobytes()  # fully decoded, nothing left to fail later
            images += 1
    assert not unexpected, "\n".join(unexpected[:20])
    assert len(cases) == 451 and images > 40 and problems > 40  # both outcomes exercised


# -- the same corrupt file through every command ------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    pytest.importorskip("onnx")
    from helpers.server import write_model_dir

    return write_model_dir(tmp_path_factory.mktemp("fuzz") / "colours" / "export")


def red_jpeg() -> bytes:
    return encode(Image.new("RGB", (96, 64), (220, 30, 30)), "JPEG", quality=90)


def test_predict_reports_the_corrupt_jpeg_in_one_line_and_still_predicts_the_good_one(model_dir, tmp_path):
    from helpers.server import EDGELABELS

    (tmp_path / "bad.jpeg").write_bytes(corrupt_exif_jpeg())
    (tmp_path / "good.jpeg").write_bytes(red_jpeg())
    command = [str(EDGELABELS), "predict", str(model_dir), "bad.jpeg", "good.jpeg"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["Image"] for line in lines] == ["good.jpeg"]
    assert [label["Name"] for label in lines[0]["CustomLabels"]] == ["red"]
    naming = [line for line in result.stderr.splitlines() if "bad.jpeg" in line]
    assert len(naming) == 1 and naming[0].startswith("edgelabels: bad.jpeg: corrupt EXIF data"), result.stderr
    assert result.stderr.splitlines()[-1] == "edgelabels: 1 of 2 images failed"


def test_predict_goes_on_past_a_corrupt_jpeg_in_the_middle_of_a_batch(model_dir, tmp_path, capsys):
    from edgelabels.cli import main

    names = ["a.jpeg", "bad.jpeg", "c.jpeg"]
    for name in names:
        (tmp_path / name).write_bytes(corrupt_exif_jpeg() if name == "bad.jpeg" else red_jpeg())
    code = main(["predict", str(model_dir), *(str(tmp_path / name) for name in names), "--batch-size", "3"])
    captured = capsys.readouterr()
    assert code == 2
    assert [json.loads(line)["Image"] for line in captured.out.splitlines()] == \
        [str(tmp_path / "a.jpeg"), str(tmp_path / "c.jpeg")]
    assert "bad.jpeg: corrupt EXIF data" in captured.err


def test_watch_moves_the_corrupt_jpeg_to_rejected_with_its_reason_and_processes_the_good_one(model_dir, tmp_path):
    from edgelabels.runtime.predictor import Predictor
    from edgelabels.serve.watch import FolderWatcher

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "bad.jpeg").write_bytes(corrupt_exif_jpeg())
    (inbox / "good.jpeg").write_bytes(red_jpeg())
    emitted, warnings = [], []
    watcher = FolderWatcher(Predictor(model_dir), inbox, settle=0.0, emit=emitted.append, warn=warnings.append,
                            clock=lambda: 0.0)
    assert watcher.step() == 0  # first sight
    assert watcher.step() == 2
    assert not (inbox / "bad.jpeg").exists() and (inbox / "rejected" / "bad.jpeg").exists()
    assert (inbox / "rejected" / "bad.jpeg.reason.txt").read_text().startswith("corrupt EXIF data")
    assert [json.loads(line)["Image"] for line in emitted] == [str(inbox / "good.jpeg")]
    assert len(warnings) == 1 and "bad.jpeg" in warnings[0]


def test_dataset_inspect_lists_the_corrupt_jpeg_as_unusable_like_an_empty_file(tmp_path, capsys):
    from edgelabels.cli import main

    for label, seed in (("cats", 0), ("dogs", 1)):
        (tmp_path / label).mkdir()
        for i in range(3):
            (tmp_path / label / f"{label}{i}.png").write_bytes(encode(noise(seed=10 * seed + i), "PNG"))
    (tmp_path / "cats" / "bad.jpeg").write_bytes(corrupt_exif_jpeg())
    (tmp_path / "dogs" / "empty.png").write_bytes(b"")
    assert main(["dataset", "inspect", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "usable: 6 of 8 images decode; 2 will be skipped" in out
    assert "problems: 2" in out
    assert "  cats/bad.jpeg: corrupt EXIF data (struct.error: " in out
    assert "  dogs/empty.png: empty file (0 bytes)" in out


def asgi_post(app, payload: dict, target: str = "RekognitionService.DetectCustomLabels") -> tuple[int, dict]:
    """One POST / through the ASGI app, in process (starlette's TestClient needs httpx, not a dependency)."""
    import anyio

    body = json.dumps(payload).encode()
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/", "raw_path": b"/", "query_string": b"", "root_path": "", "client": ("127.0.0.1", 50000),
             "server": ("127.0.0.1", 80),
             "headers": [(b"content-type", b"application/x-amz-json-1.1"), (b"x-amz-target", target.encode()),
                         (b"content-length", str(len(body)).encode())]}
    incoming = [{"type": "http.request", "body": body, "more_body": False}]
    sent = []

    async def receive():
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    async def call():
        await app(scope, receive, send)

    anyio.run(call)
    return sent[0]["status"], json.loads(b"".join(m.get("body", b"") for m in sent[1:]))


def test_serve_answers_the_corrupt_jpeg_with_400_invalid_image_format(model_dir, tmp_path):
    pytest.importorskip("starlette")
    from edgelabels.runtime.predictor import Predictor
    from edgelabels.serve.server import ModelState, ServeSettings, create_app

    arn = "arn:aws:rekognition:us-east-1:111122223333:project/colours/version/colours.1/1"
    settings = ServeSettings(model_dir=str(model_dir), project_version_arn=arn, creation_timestamp=0.0,
                             state_file=str(tmp_path / "status.json"))
    ModelState(settings.state_file).write("RUNNING")
    app = create_app(settings, Predictor(model_dir))

    def detect(data: bytes):
        return asgi_post(app, {"ProjectVersionArn": arn, "Image": {"Bytes": base64.b64encode(data).decode()}})

    status, answer = detect(red_jpeg())
    assert status == 200 and answer["CustomLabels"][0]["Name"] == "red"  # the app answers through this path
    status, answer = detect(corrupt_exif_jpeg())
    assert (status, answer["__type"]) == (400, "InvalidImageFormatException"), answer
    assert answer["message"].startswith("corrupt EXIF data")

