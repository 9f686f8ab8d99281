"""Rekognition's error answers: `{"__type": name, "message": text}` with HTTP 400, or 500 for the two faults
botocore retries (InternalServerError, ThrottlingException), every one carrying x-amzn-RequestId."""

from __future__ import annotations

import json

from starlette.responses import Response

CONTENT_TYPE = "application/x-amz-json-1.1"
FAULTS = {"InternalServerError", "ThrottlingException"}  # answered with HTTP 500


class ApiError(Exception):
    """An answer in Rekognition's error format: `code` is the __type botocore turns into an exception.

    `close`: the answer ends the connection (sent before the request body was all received).
    """

    def __init__(self, code: str, message: str, close: bool = False):
        self.code = code
        self.status = 500 if code in FAULTS else 400
        self.close = close
        super().__init__(message)


def error_response(error: ApiError, request_id: str) -> Response:
    body = json.dumps({"__type": error.code, "message": str(error)})
    headers = {"x-amzn-RequestId": request_id, **({"Connection": "close"} if error.close else {})}
    return Response(body, error.status, media_type=CONTENT_TYPE, headers=headers)
