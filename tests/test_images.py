"""read_image on every kind of bad or unusual PNG/JPEG a user's folder may hold (fixtures made here)."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from edgelabels.data.images import is_image_path, read_image
from edgelabels.errors import ImageProblem


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def noise(height=48, width=64, seed=0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_plain_png_and_jpeg_decode_without_notes(tmp_path):
    for name, fmt in (("a.png", "PNG"), ("b.jpg", "JPEG"), ("c.JPEG", "JPEG")):
        (tmp_path / name).write_bytes(encode(noise(), fmt))
        image, notes = read_image(tmp_path / name)
        assert (image.mode, image.size, notes) == ("RGB", (64, 48), [])


def test_zero_byte_file_is_refused(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageProblem, match=r"empty\.png: empty file \(0 bytes\)"):
        read_image(tmp_path / "empty.png")


@pytest.mark.parametrize("fmt,suffix", [("JPEG", ".jpg"), ("PNG", ".png")])
def test_truncated_image_is_refused(tmp_path, fmt, suffix):
    data = encode(noise(), fmt)
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageProblem) as caught:
        read_image(path)
    assert caught.value.problem == "truncated image data"
    assert caught.value.path == str(path)


def test_header_only_file_gets_a_stable_message_without_object_addresses(tmp_path):
    path = tmp_path / "header.jpg"
    path.write_bytes(encode(noise(), "JPEG")[:20])
    with pytest.raises(ImageProblem) as caught:
        read_image(path)
    assert caught.value.problem == "cannot decode JPEG (header unreadable: truncated or corrupt)"


def test_gif_named_png_is_refused_naming_the_real_format(tmp_path):
    path = tmp_path / "animation.png"
    path.write_bytes(encode(noise(), "GIF"))
    with pytest.raises(ImageProblem, match=r"not a PNG or JPEG image \(found GIF\)"):
        read_image(path)


def test_text_file_with_image_suffix_is_refused(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("not an image")
    with pytest.raises(ImageProblem, match=r"unrecognised content"):
        read_image(path)


def test_png_named_jpg_decodes_with_a_suffix_note(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(encode(noise(), "PNG"))
    image, notes = read_image(path)
    assert image.size == (64, 48)
    assert notes == ["suffix .jpg but content is PNG"]


def test_16_bit_png_is_scaled_to_8_bit(tmp_path):
    values = np.array([[0, 32768, 65535, 257]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")  # really stored as 16-bit
    image, notes = read_image(path)
    assert image.mode == "L"
    assert np.asarray(image).tolist() == [[0, 128, 255, 1]]
    assert notes == ["16-bit image scaled to 8-bit"]


def test_cmyk_jpeg_is_converted_to_rgb(tmp_path):
    path = tmp_path / "print.jpg"
    path.write_bytes(encode(Image.new("RGB", (40, 40), (200, 30, 30)).convert("CMYK"), "JPEG", quality=95))
    assert Image.open(path).mode == "CMYK"
    image, notes = read_image(path)
    assert image.mode == "RGB" and notes == ["CMYK converted to RGB"]
    red, green, blue = np.asarray(image).reshape(-1, 3).mean(axis=0)
    assert red > 150 and green < 80 and blue < 80  # still red, not inverted


def test_palette_png_is_converted_to_rgb_with_its_colours(tmp_path):
    path = tmp_path / "palette.png"
    rgb = Image.new("RGB", (20, 10), (0, 0, 255))
    rgb.paste((255, 255, 0), (0, 0, 10, 10))
    rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=4).save(path)
    assert Image.open(path).mode == "P"
    image, notes = read_image(path)
    assert image.mode == "RGB" and notes == ["palette image converted to RGB"]
    assert tuple(np.asarray(image)[5, 2]) == (255, 255, 0) and tuple(np.asarray(image)[5, 15]) == (0, 0, 255)


def test_exif_rotated_jpeg_is_turned_upright(tmp_path):
    # Stored 60 wide x 30 high with a red block in the stored top-left corner; orientation 6 means
    # "rotate 90 degrees clockwise to display", so the viewer sees 30 x 60 with the block top-right.
    stored = Image.new("RGB", (60, 30), (255, 255, 255))
    stored.paste((255, 0, 0), (0, 0, 12, 12))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    path.write_bytes(encode(stored, "JPEG", quality=95, exif=exif.tobytes()))
    image, notes = read_image(path)
    assert notes == ["EXIF orientation 6 applied"]
    assert image.size == (30, 60)
    pixels = np.asarray(image).astype(int)
    assert pixels[3, 26, 0] > 200 and pixels[3, 26, 1] < 60  # top-right is red
    assert pixels[3, 3].min() > 200  # top-left is white


def test_bytes_input_uses_the_given_name_in_problems():
    with pytest.raises(ImageProblem, match=r"^upload-1: empty file"):
        read_image(b"", name="upload-1")


def test_missing_file_is_a_problem_not_a_traceback(tmp_path):
    with pytest.raises(ImageProblem, match="file not found"):
        read_image(tmp_path / "gone.png")


def test_image_suffixes_are_png_and_jpeg_only(tmp_path):
    assert [is_image_path(tmp_path / n) for n in ("a.PNG", "b.jpeg", "c.Jpg", "d.gif", "e.bmp", "f")] == \
        [True, True, True, False, False, False]


def old_scaling(values: np.ndarray, high: float) -> np.ndarray:
    """The float64 formula 16-bit, 'I' and 'F' images were always scaled with (the expected values)."""
    return np.clip(values.astype(np.float64) / high * 255.0 + 0.5, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("block_pixels", [1 << 20, 50])  # one block, and many blocks with a short last one
def test_scaling_to_8_bit_in_blocks_gives_what_the_float64_formula_gave(monkeypatch, block_pixels):
    from edgelabels.data import images

    monkeypatch.setattr(images, "_BLOCK_PIXELS", block_pixels)
    rng = np.random.default_rng(0)
    every = np.arange(65536, dtype=np.uint16).reshape(256, 256)  # every 16-bit value once
    wide = rng.integers(-70000, 140000, (37, 23)).astype(np.int32)  # 'I' beyond 0..65535 on both sides
    narrow = rng.integers(-300, 256, (37, 23)).astype(np.int32)  # 'I' at most 255: scaled by 255
    floats = rng.uniform(-10, 70000, (37, 23)).astype(np.float32)
    small_floats = rng.uniform(-2, 255, (37, 23)).astype(np.float32)
    cases = [  # image, its values, the divisor the old code chose, the note
        (Image.fromarray(every), every, 65535, "16-bit image scaled to 8-bit"),
        (Image.frombytes("I;16B", (256, 256), every.astype(">u2").tobytes()), every, 65535,
         "16-bit image scaled to 8-bit"),
        (Image.fromarray(wide), wide, 65535, "16-bit image scaled to 8-bit"),
        (Image.fromarray(narrow), narrow, 255, "I image scaled to 8-bit"),
        (Image.fromarray(floats), floats, 65535, "16-bit image scaled to 8-bit"),
        (Image.fromarray(small_floats), small_floats, 255, "F image scaled to 8-bit"),
    ]
    for image, values, high, note in cases:
        notes = []
        scaled = images._to_8_bit(image, notes)
        assert scaled.mode == "L" and scaled.size == image.size
        assert np.array_equal(np.asarray(scaled), old_scaling(values, high)), image.mode
        assert notes == [note]


PEAK_RSS_OF_ONE_DECODE = """
import io, sys
from pathlib import Path
from PIL import Image
from edgelabels.data.images import decode_image

def status(field):  # KiB; VmHWM is this process's own peak (ru_maxrss would carry the parent's across exec)
    return int(Path("/proc/self/status").read_text().split(field + ":")[1].split()[0])

warm = io.BytesIO(); Image.new("I;16", (8, 8)).save(warm, "PNG"); decode_image(warm.getvalue(), "warm-up")
data = Path(sys.argv[1]).read_bytes()
Path("/proc/self/clear_refs").write_text("5")  # peak := now
before = status("VmRSS")
image, notes = decode_image(data, "deep.png")
assert image.mode == "L" and image.size == (4096, 4096) and notes == ["16-bit image scaled to 8-bit"], notes
print(status("VmHWM") - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_decoding_a_16_bit_4096_png_costs_under_150_mb_of_peak_memory(tmp_path):
    # 32 MB of 16-bit pixels and their 16 MB 8-bit copy are needed; the whole image as float64 cost 420 MB.
    row = (np.arange(4096, dtype=np.uint32) * 65535 // 4095).astype(np.uint16)
    Image.fromarray(np.ascontiguousarray(np.broadcast_to(row, (4096, 4096)))).save(tmp_path / "deep.png")
    assert (tmp_path / "deep.png").stat().st_size < 100_000  # a small upload
    result = subprocess.run([sys.executable, "-c", PEAK_RSS_OF_ONE_DECODE, str(tmp_path / "deep.png")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) < 150 * 1024, f"peak RSS grew by {int(result.stdout) / 1024:.0f} MB"
