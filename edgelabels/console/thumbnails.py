"""The images every console page shows: GET /console/thumbnail?ref=S3URI&size=N (a JPEG whose longest side is N,
64-512, default 256) and GET /console/image?ref=S3URI (the image's own bytes, PNG or JPEG only).

Images are read through the service's S3 (ctx.s3: boto3's client or the --s3-root folder): a fetched object is
kept in the service's s3-cache, as the trainer keeps it, and each thumbnail is made once, cached under
DIR/console/thumbnails/ by a key of the ref, the size and the local copy's mtime and length (a changed image gets a
new thumbnail). A ref that is not s3://, cannot be read or is not an image answers 404 with one line of text.
"""

from __future__ import annotations

import hashlib
import io
import urllib.parse
from pathlib import Path

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from edgelabels import atomic
from edgelabels.console.kit import HEADERS, PREFIX
from edgelabels.data.images import sniff_format
from edgelabels.service.s3 import S3Error

SIZES = (64, 512)
DEFAULT_SIZE = 256
MAX_IMAGE_BYTES = 50 * 1024 * 1024
# Thumbnails and images change only with their bytes (the thumbnail's URL stays, its cache key does not): a
# browser may keep them a little while, privately, unlike the pages.
IMAGE_HEADERS = {**HEADERS, "Cache-Control": "private, max-age=300"}


def thumbnail_url(ref: str, size: int = DEFAULT_SIZE) -> str:
    return f"{PREFIX}/thumbnail?{urllib.parse.urlencode({'ref': ref, 'size': size})}"


def image_url(ref: str) -> str:
    return f"{PREFIX}/image?{urllib.parse.urlencode({'ref': ref})}"


def image_type(data: bytes) -> str | None:
    """The Content-Type of PNG or JPEG bytes (by their signature: data/images.py's sniff_format), else None."""
    return {"PNG": "image/png", "JPEG": "image/jpeg"}.get(sniff_format(data[:16]))


class Unreadable(Exception):
    """A ref the console cannot show: one line saying why."""


def local_image(ctx, ref: str) -> Path:
    """A local file holding the image at `ref` (the --s3-root file itself, or the s3-cache's copy)."""
    if not isinstance(ref, str) or not ref.startswith("s3://"):
        raise Unreadable(f"{ref!r} is not an s3:// URI")
    try:
        return ctx.s3.local_copy(ref, ctx.s3_cache, max_bytes=MAX_IMAGE_BYTES)
    except S3Error as error:
        raise Unreadable(str(error)) from None


def thumbnail(ctx, ref: str, size: int) -> Path:
    """The cached JPEG thumbnail of `ref` (made now when it is not cached yet)."""
    from PIL import Image, ImageOps

    source = local_image(ctx, ref)
    stat = source.stat()
    key = hashlib.sha256(f"{ref}\0{size}\0{stat.st_mtime_ns}\0{stat.st_size}".encode()).hexdigest()
    target = ctx.directory / "console" / "thumbnails" / key[:2] / f"{key}.jpg"
    if target.is_file():
        return target
    try:
        with Image.open(source) as image:
            if image.format not in ("PNG", "JPEG"):
                raise Unreadable(f"{ref} is not a PNG or JPEG image")
            image.draft("RGB", (size, size))  # a JPEG decodes at the nearest smaller scale: much faster
            small = ImageOps.exif_transpose(image).convert("RGB")
            small.thumbnail((size, size))
    except (OSError, Image.DecompressionBombError, SyntaxError, ValueError) as error:
        raise Unreadable(f"{ref} cannot be read as an image ({type(error).__name__})") from None
    data = io.BytesIO()
    small.save(data, "JPEG", quality=85)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_bytes(target, data.getvalue())
    return target


def _size(text: str | None) -> int:
    try:
        return min(max(int(text), SIZES[0]), SIZES[1]) if text else DEFAULT_SIZE
    except ValueError:
        return DEFAULT_SIZE


def routes(console) -> list:
    async def thumbnail_answer(request: Request) -> Response:
        if await console.session(request) is None:
            return console.locked_out()
        ref = request.query_params.get("ref", "")
        try:
            path = await console.run(thumbnail, console.ctx, ref, _size(request.query_params.get("size")))
        except Unreadable as error:
            return PlainTextResponse(str(error), 404, headers=HEADERS)
        return Response(path.read_bytes(), media_type="image/jpeg", headers=IMAGE_HEADERS)

    async def image_answer(request: Request) -> Response:
        if await console.session(request) is None:
            return console.locked_out()
        ref = request.query_params.get("ref", "")
        try:
            data = await console.run(lambda: local_image(console.ctx, ref).read_bytes())
        except Unreadable as error:
            return PlainTextResponse(str(error), 404, headers=HEADERS)
        kind = image_type(data)
        if kind is None:
            return PlainTextResponse(f"{ref} is not a PNG or JPEG image", 404, headers=HEADERS)
        return Response(data, media_type=kind, headers=IMAGE_HEADERS)

    return [Route("/thumbnail", thumbnail_answer, methods=["GET"]), Route("/image", image_answer, methods=["GET"])]
