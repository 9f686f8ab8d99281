"""Where a name that came with the input may lead: one rule for every name someone else wrote.

A manifest's source-ref, an `s3://BUCKET/KEY` mapped under `--s3-root`, an S3Object sent to the
server and a COCO file's file_name are all resolved the same way: `..` and every symlink are followed
(realpath), and the result must lie inside the folder the name is relative to. For S3 that folder is
the bucket's own (`S3_ROOT/BUCKET`), so a key cannot reach a sibling bucket.
A folder dataset given on the command line is not held to it: it is the user's own filesystem, and
its label folders and images may be symlinks into an image store elsewhere (data/sources.py).

Only the standard library: the edge runtime uses it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# S3's bucket naming rules, as loose as the server has always accepted (3-255 of these characters).
S3_BUCKET = re.compile(r"^[0-9A-Za-z.\-_]{3,255}$")
MAX_S3_KEY = 1024


class Outside(ValueError):
    """A name that resolves to somewhere outside the folder it must stay in."""


def inside(base: str | Path, name: str | Path) -> Path:
    """base/name (absolute, not resolved: the name the user knows), if its real location lies inside base."""
    base = Path(os.path.abspath(base))
    candidate = Path(os.path.abspath(base / name))
    real, real_base = os.path.realpath(candidate), os.path.realpath(base)
    if os.path.commonpath([real, real_base]) != real_base:
        raise Outside(f"{name} leads outside {base}" + (f" (to {real})" if os.path.islink(candidate) else ""))
    return candidate


def split_s3_uri(uri: str) -> tuple[str, str]:
    """'s3://bucket/key' -> ('bucket', 'key'); ValueError if it has no bucket or no key."""
    if not uri.lower().startswith("s3://"):
        raise ValueError(f"{uri!r} is not an s3:// URI")
    bucket, _, key = uri[5:].partition("/")
    if not bucket or not key.strip("/"):
        raise ValueError(f"{uri} has no object key")
    return bucket, key


def s3_object(s3_root: str | Path, bucket: str, key: str) -> Path:
    """S3_ROOT/BUCKET/KEY, for a valid bucket name and a key that stays inside that bucket's folder."""
    if not S3_BUCKET.match(bucket) or bucket in (".", "..") or "/" in bucket:
        raise ValueError(f"invalid S3 bucket name {bucket!r}")
    if not key or len(key) > MAX_S3_KEY or "\x00" in key:
        raise ValueError(f"invalid S3 object key {key[:80]!r}")
    try:
        inside(s3_root, bucket)  # the bucket's folder itself is not a link out of S3_ROOT
        return inside(Path(s3_root) / bucket, key.lstrip("/"))  # S3 keys may start with '/'; the folder's names cannot
    except Outside:
        raise Outside(f"s3://{bucket}/{key} points outside its bucket folder {Path(s3_root) / bucket}") from None
