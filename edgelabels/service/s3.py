"""Where the local service reads and writes S3 objects: boto3's S3 client, or a folder standing in for S3.

`S3Objects.from_environment()` builds boto3's `client("s3")` from the standard configuration, so the endpoint is
whatever it names (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, a profile's endpoint_url, or AWS itself): real buckets,
MinIO or any S3-compatible store. With `s3_root=DIR`, s3://BUCKET/KEY is the file DIR/BUCKET/KEY, the rule
`--s3-root` follows everywhere else (data/paths.py).

Every failure is an `S3Error`: one line naming the URI and the problem (NoSuchBucket, NoSuchKey, AccessDenied,
EndpointUnreachable, ...), and `code`, the Rekognition error an operation answers with (InvalidS3ObjectException
or AccessDeniedException, from botocore's Rekognition service model; InvalidParameterException for a URI that
is not s3://BUCKET/KEY or content that cannot be what was asked for).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path, PurePosixPath

from edgelabels import atomic
from edgelabels.data import paths
from edgelabels.errors import UserError

INVALID_S3_OBJECT = "InvalidS3ObjectException"
ACCESS_DENIED = "AccessDeniedException"
INVALID_PARAMETER = "InvalidParameterException"

# S3's error codes (GetObject, PutObject; HEAD answers carry only the status) -> our problem names.
_MISSING_KEY = {"NoSuchKey", "404", "NotFound"}
_DENIED = {"AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
           "InvalidToken", "AccountProblem", "AllAccessDisabled"}
_CHUNK = 1 << 20


class S3Error(UserError):
    """An S3 object that cannot be read or written: `uri`, `problem` (S3's error code or ours) and `code`, the
    Rekognition error to answer with. The message is one line: `s3://bucket/key: Problem (detail)`."""

    def __init__(self, uri: str, problem: str, detail: str = "", code: str = INVALID_S3_OBJECT):
        self.uri, self.problem, self.code = uri, problem, code
        detail = " ".join(str(detail).split())  # one line, whatever the server sent
        super().__init__(f"{uri}: {problem}" + (f" ({detail})" if detail else ""))


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """'s3://bucket/key' -> ('bucket', 'key'), the key exactly as written (spaces, unicode, no %-decoding);
    S3Error (InvalidParameterException) for anything else."""
    if not isinstance(uri, str):
        raise S3Error(repr(uri), "InvalidUri", "not a string", INVALID_PARAMETER)
    try:
        bucket, key = paths.split_s3_uri(uri)
    except ValueError:
        raise S3Error(uri, "InvalidUri", "expected s3://BUCKET/KEY", INVALID_PARAMETER) from None
    if not uri.startswith("s3://"):
        raise S3Error(uri, "InvalidUri", "the scheme must be s3:// in lower case", INVALID_PARAMETER)
    if not paths.S3_BUCKET.match(bucket):
        raise S3Error(uri, "InvalidBucketName", "3-255 characters of a-z A-Z 0-9 . - _", INVALID_PARAMETER)
    if len(key.encode("utf-8")) > paths.MAX_S3_KEY:
        raise S3Error(uri, "KeyTooLong", f"over {paths.MAX_S3_KEY} bytes", INVALID_PARAMETER)
    return bucket, key


class S3Objects:
    """Read and write s3:// objects through one boto3 S3 client, or under a local folder (`root`)."""

    def __init__(self, client=None, root: str | Path | None = None):
        if (client is None) == (root is None):
            raise ValueError("S3Objects needs exactly one of a boto3 S3 client and a root folder")
        self.client = client
        self.root = Path(root).resolve() if root is not None else None

    @classmethod
    def from_environment(cls, s3_root: str | Path | None = None, *, config=None) -> S3Objects:
        """boto3's S3 client from the standard configuration (endpoint, credentials, region, retries), or the
        folder `s3_root`. `config` (a botocore Config) overrides timeouts or retries, as tests do."""
        if s3_root is not None:
            if not Path(s3_root).is_dir():
                raise UserError(f"{s3_root}: no such folder (--s3-root)")
            return cls(root=s3_root)
        try:
            import boto3
        except ImportError:
            raise UserError("reading S3 needs boto3: pip install 'edgelabels[aws]' (or pass --s3-root DIR)") from None
        # A session of its own: boto3's default session keeps the credentials it first found, and creating clients
        # from it is not thread-safe; a new one reads the configuration as it stands now.
        return cls(client=boto3.session.Session().client("s3", config=config))

    def __repr__(self) -> str:
        where = self.root if self.root is not None else self.client.meta.endpoint_url
        return f"S3Objects({where})"

    # -- reading ------------------------------------------------------------------------------------------

    def read_bytes(self, uri: str, max_bytes: int | None = None) -> bytes:
        """The object's bytes; S3Error TooLarge (InvalidParameterException) past `max_bytes`, before reading."""
        return b"".join(self._chunks(uri, max_bytes))

    def read_lines(self, uri: str, max_bytes: int | None = None) -> list[str]:
        """A Ground Truth manifest's lines (UTF-8, a BOM allowed), without their line ends. Blank lines are kept so
        that line numbers stay those of the file; a final newline adds no line. Only '\\n' ends a line: JSON
        strings may hold U+2028 and other characters that str.splitlines would split on."""
        data = self.read_bytes(uri, max_bytes)
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise S3Error(uri, "NotUtf8", f"byte {exc.start} is not UTF-8; a manifest is UTF-8 JSON lines",
                          INVALID_PARAMETER) from None
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        return [line[:-1] if line.endswith("\r") else line for line in lines]

    def exists(self, uri: str) -> bool:
        """True if the object exists, False if its bucket holds no such key; S3Error for a missing bucket, denied
        access or an unreachable endpoint (never False for a store that could not be asked)."""
        bucket, key = parse_s3_uri(uri)
        if self.root is not None:
            self._bucket_folder(uri, bucket)
            path = self._path(uri, bucket, key, missing=False)
            return path is not None and path.is_file()
        try:
            self.client.head_object(Bucket=bucket, Key=key)
            return True
        except Exception as exc:  # noqa: BLE001 - every botocore failure becomes an S3Error or False
            error = self._error(uri, exc)
        if error.problem != "NoSuchKey":
            raise error
        self._check_bucket(uri, bucket)  # HEAD says only 404: tell a missing bucket from a missing key
        return False

    def local_copy(self, uri: str, cache_dir: str | Path, max_bytes: int | None = None) -> Path:
        """A local file holding the object, fetched once: a later call for the same URI returns the cached file.
        Written atomically, so a killed fetch leaves no half file under the cache's name. With a root folder the
        object's own file is returned (it is already local)."""
        bucket, key = parse_s3_uri(uri)
        if self.root is not None:
            return self._readable(uri, bucket, key, max_bytes)
        suffix = PurePosixPath(key).suffix
        suffix = suffix.lower() if re.fullmatch(r"\.[A-Za-z0-9]{1,8}", suffix) else ""
        target = Path(cache_dir) / bucket / (hashlib.sha256(uri.encode("utf-8")).hexdigest()[:32] + suffix)
        if target.is_file():
            return target
        with atomic.temp_path(target) as tmp:
            with open(tmp, "wb") as f:
                for chunk in self._chunks(uri, max_bytes):
                    f.write(chunk)
        return target

    def list_keys(self, prefix_uri: str) -> list[str]:
        """The s3:// URIs of every object whose key starts with the prefix of `prefix_uri` (s3://BUCKET/ for the
        whole bucket), sorted. With a root folder, the files under the bucket's folder; a file that leads outside
        it (a symlink) is not listed, as it could not be read."""
        bucket, _, prefix = prefix_uri[5:].partition("/") if prefix_uri.startswith("s3://") else ("", "", "")
        if not paths.S3_BUCKET.match(bucket):
            raise S3Error(prefix_uri, "InvalidUri", "expected s3://BUCKET/PREFIX", INVALID_PARAMETER)
        if self.root is not None:
            return sorted(f"s3://{bucket}/{key}" for key in self._local_keys(prefix_uri, bucket, prefix))
        keys = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                keys += [item["Key"] for item in page.get("Contents", ()) if not item["Key"].endswith("/")]
        except Exception as exc:  # noqa: BLE001
            raise self._error(prefix_uri, exc) from None
        return sorted(f"s3://{bucket}/{key}" for key in keys)

    # -- writing ------------------------------------------------------------------------------------------

    def write_bytes(self, uri: str, data: bytes, content_type: str | None = None) -> None:
        bucket, key = parse_s3_uri(uri)
        if self.root is not None:
            self._bucket_folder(uri, bucket)
            path = self._path(uri, bucket, key, missing=True)
            try:
                atomic.write_bytes(path, data)
            except PermissionError as exc:
                raise S3Error(uri, "AccessDenied", exc.strerror, ACCESS_DENIED) from None
            except OSError as exc:  # e.g. a file where the key needs a folder (keys a and a/b)
                raise S3Error(uri, "CannotStore", f"{path}: {exc.strerror}") from None
            return
        extra = {"ContentType": content_type} if content_type else {}
        try:
            self.client.put_object(Bucket=bucket, Key=key, Body=data, **extra)
        except Exception as exc:  # noqa: BLE001
            raise self._error(uri, exc) from None

    def write_json(self, uri: str, obj) -> None:
        self.write_bytes(uri, (json.dumps(obj, indent=2) + "\n").encode("utf-8"), "application/json")

    # -- the two stores -----------------------------------------------------------------------------------

    def _chunks(self, uri: str, max_bytes: int | None):
        bucket, key = parse_s3_uri(uri)
        if self.root is not None:
            path = self._readable(uri, bucket, key, max_bytes)
            try:
                with open(path, "rb") as f:
                    while chunk := f.read(_CHUNK):
                        yield chunk
            except PermissionError as exc:
                raise S3Error(uri, "AccessDenied", exc.strerror, ACCESS_DENIED) from None
            return
        try:
            answer = self.client.get_object(Bucket=bucket, Key=key)
            self._check_size(uri, answer.get("ContentLength"), max_bytes)
            body = answer["Body"]
            try:
                while chunk := body.read(_CHUNK):
                    yield chunk
            finally:
                body.close()
        except S3Error:
            raise
        except Exception as exc:  # noqa: BLE001
            raise self._error(uri, exc) from None

    def _check_bucket(self, uri: str, bucket: str) -> None:
        try:
            self.client.head_bucket(Bucket=bucket)
        except Exception as exc:  # noqa: BLE001
            error = self._error(uri, exc)
            if error.problem == "NoSuchKey":  # HEAD on a bucket: 404 means the bucket
                raise S3Error(uri, "NoSuchBucket", f"bucket {bucket} does not exist") from None
            raise error from None

    def _bucket_folder(self, uri: str, bucket: str) -> Path:
        try:
            folder = paths.inside(self.root, bucket)
        except paths.Outside:
            raise S3Error(uri, "AccessDenied", "the bucket's folder leads outside the S3 root", ACCESS_DENIED) \
                from None
        if not folder.is_dir():
            raise S3Error(uri, "NoSuchBucket", f"no folder {folder}")
        return folder

    def _path(self, uri: str, bucket: str, key: str, missing: bool) -> Path | None:
        """The file for KEY; None (or, when writing, an error) for a key no file can stand for. S3 keys are
        literal: `a//b`, `./a` and `a/` name objects that a path would normalise into others."""
        parts = key.lstrip("/").split("/")
        if any(part in ("", ".", "..") for part in parts) or "\x00" in key:
            if missing:
                raise S3Error(uri, "CannotStore", "a folder cannot hold a key with empty, '.' or '..' parts")
            return None
        try:
            return paths.s3_object(self.root, bucket, key)
        except paths.Outside:
            raise S3Error(uri, "AccessDenied", "the key leads outside its bucket's folder", ACCESS_DENIED) from None

    def _local_keys(self, uri: str, bucket: str, prefix: str):
        """The keys under the bucket's folder that start with `prefix`: a walk of the prefix's folder only."""
        folder = self._bucket_folder(uri, bucket)
        real_bucket = os.path.realpath(folder)
        start = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        try:
            top = paths.inside(folder, start) if start else folder
        except paths.Outside:
            raise S3Error(uri, "AccessDenied", "the prefix leads outside its bucket's folder", ACCESS_DENIED) from None
        for here, _, files in os.walk(top):
            for name in files:
                path = Path(here) / name
                key = path.relative_to(folder).as_posix()
                inside = os.path.commonpath([os.path.realpath(path), real_bucket]) == real_bucket
                if key.startswith(prefix) and inside and not atomic.is_temp_name(name):  # a write under way
                    yield key

    def _readable(self, uri: str, bucket: str, key: str, max_bytes: int | None) -> Path:
        self._bucket_folder(uri, bucket)
        path = self._path(uri, bucket, key, missing=False)
        if path is None or not path.is_file():
            raise S3Error(uri, "NoSuchKey", f"no file under the bucket's folder {self.root / bucket}")
        self._check_size(uri, path.stat().st_size, max_bytes)
        return path

    @staticmethod
    def _check_size(uri: str, size: int | None, max_bytes: int | None) -> None:
        if max_bytes is not None and size is not None and size > max_bytes:
            raise S3Error(uri, "TooLarge", f"{size} bytes, over the limit of {max_bytes}", INVALID_PARAMETER)

    def _error(self, uri: str, exc: Exception) -> S3Error:
        """botocore's exception -> S3Error naming the URI and the problem."""
        from botocore import exceptions as bx

        if isinstance(exc, bx.ClientError):
            error = exc.response.get("Error", {})
            code, message = str(error.get("Code", "")), error.get("Message") or ""
            if code == "NoSuchBucket":
                return S3Error(uri, "NoSuchBucket", message or "the bucket does not exist")
            if code in _MISSING_KEY:
                return S3Error(uri, "NoSuchKey", message or "no such key")
            if code in _DENIED:
                problem = "AccessDenied" if code in ("403", "Forbidden") else code
                return S3Error(uri, problem, message or "access denied", ACCESS_DENIED)
            return S3Error(uri, code or "S3Error", message)
        if isinstance(exc, (bx.EndpointConnectionError, bx.ConnectTimeoutError)):
            return S3Error(uri, "EndpointUnreachable", f"cannot connect to {self.client.meta.endpoint_url}")
        if isinstance(exc, (bx.ReadTimeoutError, bx.ConnectionClosedError, bx.ResponseStreamingError)):
            return S3Error(uri, "EndpointUnreachable", f"{self.client.meta.endpoint_url}: {exc}")
        if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError)):
            return S3Error(uri, "NoCredentials", str(exc), ACCESS_DENIED)
        if isinstance(exc, bx.BotoCoreError):
            return S3Error(uri, type(exc).__name__, str(exc))
        raise exc
