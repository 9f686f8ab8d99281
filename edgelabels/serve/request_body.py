"""What a request may bring in: its body (received within a size cap, a time limit and the worker's memory budget)
and its image (Rekognition Custom Labels' documented limits, checked before the pixels are decoded).

Each error is the ApiError Rekognition answers (api_errors.py); server.py says why each bound is what it is.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import re
import warnings

import anyio
from PIL import Image
from starlette.requests import ClientDisconnect, Request

from edgelabels.data.images import read_image, sniff_format
from edgelabels.errors import ImageProblem
from edgelabels.serve.api_errors import ApiError

# Rekognition Custom Labels' documented limits.
MAX_IMAGE_BYTES = 4 * 1024 * 1024
MIN_SIDE, MAX_SIDE = 64, 4096
# base64 grows bytes by 4/3; the slack covers the ARN and the other JSON fields.
MAX_BODY_BYTES = math.ceil(MAX_IMAGE_BYTES / 3) * 4 + 64 * 1024
# A body past the cap is still drained (not kept) up to this size, so that the client reads a
# clean ImageTooLargeException instead of a connection reset; beyond it the connection is dropped.
MAX_DRAIN_BYTES = 64 * 1024 * 1024


class BodyBudget:
    """Bytes of request bodies held at once by one worker (only used on its event loop thread)."""

    def __init__(self, limit: int):
        self.limit, self.held = limit, 0

    def take(self, size: int) -> bool:
        if self.held + size > self.limit:
            return False
        self.held += size
        return True

    def give_back(self, size: int) -> None:
        self.held -= size


async def read_body(request: Request, budget: BodyBudget, read_timeout: float, deadline: float,
                    max_bytes: int = MAX_BODY_BYTES, too_large: str = "ImageTooLargeException") -> bytes:
    """The request body, each chunk reserved in `budget`; the caller gives back len(body) when done.

    Refused with `too_large` past `max_bytes` (the projects service takes UpdateDatasetEntries' larger blob:
    service/app.py), ProvisionedThroughputExceededException
    when the budget is spent, RequestTimeoutException when the client is too slow. A refused body is
    still drained (not kept) up to MAX_DRAIN_BYTES, so that the client reads the error.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_DRAIN_BYTES:
        raise ApiError(too_large, f"Request body of {declared} bytes; {_limit(max_bytes)}", close=True)
    chunks, size, kept, shed = [], 0, 0, False
    give_up_at = anyio.current_time() + deadline
    try:
        while True:
            with anyio.move_on_after(min(read_timeout, give_up_at - anyio.current_time())) as waiting:
                message = await request.receive()
            if waiting.cancelled_caught:
                raise ApiError("RequestTimeoutException",
                               f"Request body not received in time ({read_timeout:.0f} s between chunks, "
                               f"{deadline:.0f} s in all)", close=True)
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_DRAIN_BYTES:
                break
            if size <= max_bytes and not shed:
                if budget.take(len(chunk)):
                    chunks.append(chunk)
                    kept += len(chunk)
                else:
                    shed = True
            if (size > max_bytes or shed) and kept:  # draining from here on: keep nothing
                chunks.clear()
                budget.give_back(kept)
                kept = 0
            if not message.get("more_body", False):
                break
    except BaseException:
        budget.give_back(kept)
        raise
    if size > max_bytes:
        raise ApiError(too_large, f"Request body of {size}+ bytes; {_limit(max_bytes)}", close=size > MAX_DRAIN_BYTES)
    if shed:
        raise ApiError("ProvisionedThroughputExceededException",
                       f"Request bodies being received fill this worker's {budget.limit // 2 ** 20} MiB; retry later.")
    return b"".join(chunks)


def _limit(max_bytes: int) -> str:
    return "the image limit is 4 MB" if max_bytes == MAX_BODY_BYTES else f"the limit is {max_bytes} bytes"


def image_bytes(encoded) -> bytes:
    """Image.Bytes as the JSON protocol carries it (base64) -> the image's bytes; refused past 4 MB before decoding.
    `decode` then checks the bytes themselves."""
    if not isinstance(encoded, str):
        raise ApiError("InvalidParameterException", "Image.Bytes must be a base64 string")
    if len(encoded) > math.ceil(MAX_IMAGE_BYTES / 3) * 4:
        raise ApiError("ImageTooLargeException", f"Image.Bytes is over {MAX_IMAGE_BYTES} bytes (4 MB)")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError("InvalidParameterException", "Image.Bytes is not valid base64") from None


def decode(data: bytes) -> Image.Image:
    """Image bytes -> decoded image, with Rekognition's limits and error names."""
    if not data:
        raise ApiError("InvalidParameterException", "Image.Bytes is empty")
    if len(data) > MAX_IMAGE_BYTES:
        raise ApiError("ImageTooLargeException", f"Image is {len(data)} bytes; the limit is {MAX_IMAGE_BYTES} (4 MB)")
    found = sniff_format(data[:16])
    if found not in ("PNG", "JPEG"):
        raise ApiError("InvalidImageFormatException",
                       f"Request has unsupported image format ({found or 'unrecognised content'}); send PNG or JPEG")
    # Check the size from the header before decoding the pixels, so a small file that inflates
    # into a huge bitmap is refused without allocating it.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as header:
                width, height = header.size
    except Image.DecompressionBombError as exc:  # Pillow's own limit, far past 4096x4096: the same refusal
        raise ApiError("InvalidParameterException",
                       f"Image is too large ({exc}); each side must be {MIN_SIDE} to {MAX_SIDE} pixels") from None
    except Image.UnidentifiedImageError:  # its message is the repr of our in-memory buffer: say what it means
        raise ApiError("InvalidImageFormatException",
                       f"Cannot read the {found} header: the image is truncated or corrupt") from None
    except Exception as exc:  # Pillow raises many types for a broken header
        raise ApiError("InvalidImageFormatException", f"Cannot read the {found} header ({_without_reprs(exc)})") \
            from None
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise ApiError("InvalidParameterException",
                       f"Image is {width}x{height} pixels; each side must be {MIN_SIDE} to {MAX_SIDE}")
    try:
        image, _notes = read_image(data, name="Image.Bytes")
    except ImageProblem as exc:
        raise ApiError("InvalidImageFormatException", exc.problem) from None
    return image


def _without_reprs(exc: Exception) -> str:
    """An exception's message with any object repr (`<_io.BytesIO object at 0x7f...>`) replaced: a client reads what
    is wrong with its image, not our process's addresses."""
    return re.sub(r"<[^<>]* at 0x[0-9a-fA-F]+>", "the image", str(exc)) or type(exc).__name__
