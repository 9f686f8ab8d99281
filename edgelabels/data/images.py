"""Decoding and checking PNG/JPEG images: one implementation for `dataset inspect`, training and the edge.

`read_image` returns an 8-bit "RGB" or "L" Pillow image plus notes about what it had to fix
(EXIF rotation, CMYK, palette, 16-bit, a suffix that lies about the content). Images it cannot use
raise `ImageProblem` naming the path and the problem. Only numpy and Pillow: the edge runtime uses it.
"""

from __future__ import annotations

import io
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
    notes: list[str] = []
    if not data:
        raise ImageProblem(label, "empty file (0 bytes)")
    fmt = sniff_format(data[:16])
    if fmt not in ("PNG", "JPEG"):
        found = f"found {fmt}" if fmt else "unrecognised content"
        raise ImageProblem(label, f"not a PNG or JPEG image ({found})")
    if suffix is not None and SUFFIXES.get(suffix) != fmt:
        notes.append(f"suffix {suffix or '(none)'} but content is {fmt}")
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
    return _normalise_mode(image, notes), notes


def _normalise_mode(image: Image.Image, notes: list[str]) -> Image.Image:
    orientation = image.getexif().get(0x0112, 1)
    if orientation not in (None, 1):
        image = ImageOps.exif_transpose(image)
        notes.append(f"EXIF orientation {orientation} applied")
    mode = image.mode
    if mode in ("RGB", "L"):
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        high = 65535.0 if mode.startswith("I;16") or array.max(initial=0) > 255 else 255.0
        notes.append(f"{'16-bit' if high > 255 else mode} image scaled to 8-bit")
        return Image.fromarray(np.clip(array / high * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
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
