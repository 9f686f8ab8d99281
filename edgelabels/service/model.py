"""Requests checked against botocore's Rekognition service model, as Rekognition's own front end checks them.

botocore's model (`botocore/data/rekognition/2016-06-27/service-2.json.gz`) is the contract: `check_request` refuses
what it forbids before an operation runs, so operations check only what the model cannot say (that an ARN names
something that exists, that a status allows the call). Checked: required members, types (strings, integers within
Java's int or long range, finite floats, booleans, lists, maps, structures, timestamps as epoch seconds, blobs as
base64 strings), string lengths (in characters, as Smithy counts them) and patterns (Java regexes, matched whole),
number ranges, enum values and list or map lengths. botocore itself checks only some of these (required members,
types and minimums) before sending; a raw HTTP client, or boto3 with `parameter_validation=False`, can send anything.

A member set to JSON null counts as absent. Unknown members are ignored, as AWS's JSON-protocol servers do (the
deserializers Smithy generates skip keys they do not know): a client whose botocore is newer than ours may send a
member our model does not list yet, and refusing it would break that client for nothing.

Every refusal is InvalidParameterException naming the member's path (`DatasetSource.GroundTruthManifest.S3Object.
Bucket`, `VersionNames[3]`, `Tags[key]`), except an Image.Bytes past ImageBlob's maximum: ImageTooLargeException,
which is what Rekognition answers for an image that is too large.
"""

from __future__ import annotations

import functools
import math
import re

from edgelabels.serve.api_errors import ApiError

INVALID = "InvalidParameterException"
# Java's Integer and Long: the model's `integer` and `long` shapes are those, so larger values are refused.
INT_RANGE = (-2 ** 31, 2 ** 31 - 1)
LONG_RANGE = (-2 ** 63, 2 ** 63 - 1)
# A blob too large is refused with its own code where Rekognition has one.
OVERSIZE_CODES = {"ImageBlob": "ImageTooLargeException"}
# Java's Unicode classes, which Python's re lacks (TagKey and TagValue use them): letters and numbers are what
# re's \w matches besides the underscore, and the separators (Z) are these few code points.
JAVA_CLASSES = {r"\p{L}": r"\w", r"\p{N}": r"\w",
                r"\p{Z}": "\u0020\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"}
# A regex, not a decode: the operation decodes the blob once; checking must not decode 5 MB a second time.
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")


@functools.cache
def service_model() -> dict:
    """botocore's Rekognition service model (loaded on first use, not at import)."""
    from botocore.loaders import Loader

    return Loader().load_service_model("rekognition", "service-2")


def operation_names() -> frozenset[str]:
    return frozenset(service_model()["operations"])


def check_request(operation: str, params: dict) -> None:
    """Refuse (ApiError) a request that botocore's model forbids; an operation the model lacks is unknown."""
    spec = service_model()["operations"].get(operation)
    if spec is None:
        raise ApiError("UnknownOperationException", f"Unknown operation {operation!r}: Rekognition has none by "
                                                     "that name")
    if not isinstance(params, dict):
        raise ApiError(INVALID, "Request body must be a JSON object")
    if "input" in spec:
        _check(spec["input"]["shape"], params, "")
    # An operation without input takes no members; anything sent is ignored as unknown members are.


def _check(shape_name: str, value, path: str) -> None:
    shape = service_model()["shapes"][shape_name]
    kind = shape["type"]
    where = path or "request"
    if kind == "structure":
        if not isinstance(value, dict):
            raise ApiError(INVALID, f"{where} must be an object")
        for name in shape.get("required", ()):
            if value.get(name) is None:
                raise ApiError(INVALID, f"{_join(path, name)} is required")
        for name, member in shape.get("members", {}).items():
            if value.get(name) is not None:
                _check(member["shape"], value[name], _join(path, name))
    elif kind == "list":
        if not isinstance(value, list):
            raise ApiError(INVALID, f"{where} must be a list")
        _check_size(shape, len(value), where, "items")
        for i, item in enumerate(value):
            if item is None:
                raise ApiError(INVALID, f"{where}[{i}] is null")
            _check(shape["member"]["shape"], item, f"{where}[{i}]")
    elif kind == "map":
        if not isinstance(value, dict):
            raise ApiError(INVALID, f"{where} must be an object")
        _check_size(shape, len(value), where, "entries")
        for key, item in value.items():
            _check(shape["key"]["shape"], key, f"{where} key")
            if item is None:
                raise ApiError(INVALID, f"{where}[{key}] is null")
            _check(shape["value"]["shape"], item, f"{where}[{key}]")
    elif kind == "string":
        _check_string(shape_name, shape, value, where)
    elif kind in ("integer", "long"):
        low, high = INT_RANGE if kind == "integer" else LONG_RANGE
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ApiError(INVALID, f"{where} must be an integer from {low} to {high}, not {_shown(value)}")
        _check_range(shape, value, where)
    elif kind in ("float", "double"):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise ApiError(INVALID, f"{where} must be a finite number, not {_shown(value)}")
        _check_range(shape, value, where)
    elif kind == "boolean":
        if not isinstance(value, bool):
            raise ApiError(INVALID, f"{where} must be true or false, not {_shown(value)}")
    elif kind == "timestamp":  # the JSON protocol sends epoch seconds
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise ApiError(INVALID, f"{where} must be a timestamp in epoch seconds, not {_shown(value)}")
    elif kind == "blob":
        _check_blob(shape_name, shape, value, where)
    else:  # the model holds no other kind today; a new one is accepted unchecked rather than refused
        return


def _check_string(shape_name: str, shape: dict, value, where: str) -> None:
    if not isinstance(value, str):
        raise ApiError(INVALID, f"{where} must be a string, not {_shown(value)}")
    if "enum" in shape and value not in shape["enum"]:
        raise ApiError(INVALID, f"{where} {_shown(value)} is not one of {', '.join(shape['enum'])}")
    _check_size(shape, len(value), where, "characters")
    pattern = _pattern(shape_name)
    if pattern is not None and not pattern.fullmatch(value):
        raise ApiError(INVALID, f"{where} {_shown(value)} does not match the pattern {shape['pattern']}")


def _check_blob(shape_name: str, shape: dict, value, where: str) -> None:
    if not isinstance(value, str) or len(value) % 4 or not _BASE64.fullmatch(value):
        raise ApiError(INVALID, f"{where} must be a base64 string")
    size = len(value) // 4 * 3 - (len(value) - len(value.rstrip("=")))
    if "max" in shape and size > shape["max"]:
        raise ApiError(OVERSIZE_CODES.get(shape_name, INVALID),
                       f"{where} holds {size} bytes; at most {shape['max']} are allowed")
    if size < shape.get("min", 0):
        raise ApiError(INVALID, f"{where} holds {size} bytes; at least {shape['min']} are needed")


def _check_size(shape: dict, size: int, where: str, unit: str) -> None:
    if size < shape.get("min", 0):
        raise ApiError(INVALID, f"{where} has {size} {unit}; at least {shape['min']} are needed")
    if "max" in shape and size > shape["max"]:
        raise ApiError(INVALID, f"{where} has {size} {unit}; at most {shape['max']} are allowed")


def _check_range(shape: dict, value, where: str) -> None:
    if ("min" in shape and value < shape["min"]) or ("max" in shape and value > shape["max"]):
        bounds = f"from {shape.get('min', '-inf')} to {shape.get('max', 'inf')}"
        raise ApiError(INVALID, f"{where} must be {bounds}, not {_shown(value)}")


@functools.cache
def _pattern(shape_name: str) -> re.Pattern | None:
    pattern = service_model()["shapes"][shape_name].get("pattern")
    if pattern is None:
        return None
    for java, python in JAVA_CLASSES.items():
        pattern = pattern.replace(java, python)
    return re.compile(pattern)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _shown(value) -> str:
    """A value as an error message quotes it: short, whatever its size."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
