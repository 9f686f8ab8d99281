"""Decoding and checking PNG/JPEG images: one implementation for `dataset inspect`, training and the edge.

`read_image` returns an 8-bit "RGB" or "L" Pillow image plus notes about what it had to fix
(EXIF rotation, CMYK, palette, 16-bit, a suffix that lies about the content). Images it cannot use
raise `ImageProblem` naming the path and the problem: `decode_image` is the one boundary, so whatever
a corrupt file makes Pillow or numpy raise is that image's problem, never a crash. 16-bit images are
scaled to 8-bit a block of rows at a time (peak memory: the image, its 8-bit copy and a few MB).
Only numpy and Pillow: the edge runtime uses it.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from edgelabels.errors import ImageProblem

# Rekognition Custom Labels accepts PNG and JPEG only.
SUFFIXES = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"))
_OTHER_MAGIC = (
    (b"GIF8", "GIF"), (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"),
    (b"RIFF", "WEBP/RIFF"), (b"%PDF", "PDF"),
)


def is_image_path(path: Path) -> bool:
    """True for names Rekognition would consider images (by suffix, case-insensitive)."""
    return path.suffix.lower() in SUFFIXES


def dangling_image_link(path: Path) -> str | None:
    """The problem to list for a symlink named like an image that leads nowhere (the user meant an image there);
    None for anything else."""
    if path.is_symlink() and not path.exists() and is_image_path(path):
        return f"symlink to {os.readlink(path)}, which does not exist: skipped"
    return None


def sniff_format(head: bytes) -> str | None:
    """'PNG', 'JPEG', another format's name, or None, from the first bytes."""
    for magic, name in _MAGIC + _OTHER_MAGIC:
        if head.startswith(magic):
            return name
    return None


def read_image(source: str | Path | bytes, name: str | None = None) -> tuple[Image.Image, list[str]]:
    """Decode a PNG/JPEG file (or its bytes) into an 8-bit RGB or L image.

    Returns (image, notes). Notes describe fixes applied to a usable image. Raises ImageProblem
    for an empty, truncated, undecodable or non-PNG/JPEG input.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        label = name or "<image bytes>"
        suffix = None
    else:
        path = Path(source)
        label = name or str(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ImageProblem(label, "file not found") from None
        except OSError as exc:
            raise ImageProblem(label, f"cannot read file ({exc.strerror or exc})") from None
        suffix = path.suffix.lower()
    return decode_image(data, label, suffix)


def decode_image(data: bytes, label: str, suffix: str | None = None) -> tuple[Image.Image, list[str]]:
    """The one decoding boundary: bytes in, an 8-bit RGB/L image and notes out, or ImageProblem.

    Any exception raised while decoding or normalising this one image becomes its ImageProblem: a corrupt
    file makes Pillow and numpy raise far more than OSError (struct.error from a mangled EXIF tag,
    IndexError, ZeroDivisionError, MemoryError, ...), and every caller (inspect, training, predict, watch,
    serve) must treat them all as one bad image rather than crash. KeyboardInterrupt and SystemExit pass.
    """
    notes: list[str] = []
    if not data:
        raise ImageProblem(label, "empty file (0 bytes)")
    fmt = sniff_format(data[:16])
    if fmt not in ("PNG", "JPEG"):
        found = f"found {fmt}" if fmt else "unrecognised content"
        raise ImageProblem(label, f"not a PNG or JPEG image ({found})")
    if suffix is not None and SUFFIXES.get(suffix) != fmt:
        notes.append(f"suffix {suffix or '(none)'} but content is {fmt}")
    stage = f"cannot decode {fmt}"
    try:
        image = _open(data, label, fmt)
        stage = "corrupt EXIF data"
        image = _upright(image, notes)
        stage = f"cannot convert its {image.mode} pixels"
        return _to_8_bit(image, notes), notes
    except ImageProblem:
        raise
    except MemoryError:
        raise ImageProblem(label, "not enough memory to decode it") from None
    except Exception as exc:  # noqa: BLE001 (the boundary: see the docstring)
        raise ImageProblem(label, f"{stage} ({_describe(exc)})") from None


def _describe(exc: Exception) -> str:
    """'struct.error: required argument is not an integer': one line, at most 160 characters."""
    kind = type(exc).__qualname__
    if type(exc).__module__ != "builtins":
        kind = f"{type(exc).__module__.rsplit('.', 1)[-1]}.{kind}"
    text = " ".join(f"{kind}: {exc}".split()) if str(exc) else kind
    return text if len(text) <= 160 else text[:157] + "..."


def _open(data: bytes, label: str, fmt: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageProblem(label, "image too large (decompression bomb guard)") from None
    except Image.UnidentifiedImageError:
        # Pillow's message names an in-memory buffer object (a different address each run): say what it means.
        raise ImageProblem(label, f"cannot decode {fmt} (header unreadable: truncated or corrupt)") from None
    except OSError as exc:
        message = str(exc)
        if "truncated" in message.lower() or isinstance(exc, EOFError):
            raise ImageProblem(label, "truncated image data") from None
        raise ImageProblem(label, f"cannot decode {fmt} ({message})") from None
    except (ValueError, SyntaxError, EOFError) as exc:
        raise ImageProblem(label, f"cannot decode {fmt} ({exc or 'truncated'})") from None
    if image.width < 1 or image.height < 1:
        raise ImageProblem(label, "image has zero width or height")
    return image


def _upright(image: Image.Image, notes: list[str]) -> Image.Image:
    orientation = image.getexif().get(0x0112, 1)
    if orientation not in (None, 1):
        image = ImageOps.exif_transpose(image)
        notes.append(f"EXIF orientation {orientation} applied")
    return image


def _to_8_bit(image: Image.Image, notes: list[str]) -> Image.Image:
    mode = image.mode
    if mode in ("RGB", "L"):
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _scale_to_8_bit(image, notes)
    if mode == "CMYK":
        notes.append("CMYK converted to RGB")
        return image.convert("RGB")
    if mode in ("P", "PA"):
        notes.append("palette image converted to RGB")
        return image.convert("RGBA").convert("RGB")
    if mode == "LA":
        notes.append("alpha channel dropped")
        return image.convert("L")
    if mode == "1":
        return image.convert("L")
    notes.append("alpha channel dropped" if mode == "RGBA" else f"{mode} converted to RGB")
    return image.convert("RGB")


# value / high * 255 + 0.5, clipped to 0-255 and floored, for every integer value 0..high: the rounding
# 16-bit images have always had, evaluated once per value instead of once per pixel in float64.
_LUT = {high: np.clip(np.arange(high + 1, dtype=np.float64) / high * 255.0 + 0.5, 0, 255).astype(np.uint8)
        for high in (255, 65535)}
_BLOCK_PIXELS = 1 << 20  # pixels converted at a time: a few MB whatever the image's size


def _scale_to_8_bit(image: Image.Image, notes: list[str]) -> Image.Image:
    """A 16-bit ('I;16*'), 32-bit integer ('I') or float ('F') grey image -> 'L', a block of rows at a time.

    Peak memory is the image plus its 8-bit copy plus one block: a 4096x4096 16-bit PNG as a whole
    float64 array cost 128 MB per copy (420 MB at peak). 'I;16*' and 'I' go through the lookup table
    (values clipped to 0..high first, which is what the clip after scaling did); 'F' is scaled in float64
    per block, as before.
    """
    mode, (width, height) = image.mode, image.size
    rows = max(1, _BLOCK_PIXELS // width)
    blocks = [(top, min(top + rows, height)) for top in range(0, height, rows)]

    def block(top: int, bottom: int) -> np.ndarray:
        return np.asarray(image.crop((0, top, width, bottom)))

    if mode.startswith("I;16"):
        high = 65535
    elif mode == "I":
        high = 65535 if image.getextrema()[1] > 255 else 255
    else:  # 'F': NaN anywhere makes the maximum NaN, which is not > 255 (as np.max of the whole image was)
        peak = np.max([block(top, bottom).max(initial=0) for top, bottom in blocks])
        high = 65535 if peak > 255 else 255
    notes.append(f"{'16-bit' if high > 255 else mode} image scaled to 8-bit")
    out = np.empty((height, width), dtype=np.uint8)
    for top, bottom in blocks:
        values = block(top, bottom)
        if mode == "F":
            out[top:bottom] = np.clip(values.astype(np.float64) / high * 255.0 + 0.5, 0, 255).astype(np.uint8)
        else:
            out[top:bottom] = _LUT[high][np.clip(values, 0, high) if mode == "I" else values]
    return Image.fromarray(out)
