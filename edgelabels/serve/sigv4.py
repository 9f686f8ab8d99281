"""Verifying AWS Signature Version 4 on incoming requests, by recomputing it with botocore.

No crypto is written here: the request is rebuilt as a botocore `AWSRequest` holding exactly the
headers the client says it signed, and botocore's own `SigV4Auth` computes the canonical request,
the string to sign and the signature for the client's timestamp and credential scope. The two
signatures are compared in constant time.

`read_credentials` loads an INI file in the layout of `~/.aws/credentials`.
"""

from __future__ import annotations

import configparser
import datetime
import hmac
from dataclasses import dataclass
from pathlib import Path

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from edgelabels.errors import UserError

MAX_CLOCK_SKEW = datetime.timedelta(minutes=5)
_TIMESTAMP = "%Y%m%dT%H%M%SZ"


class SignatureProblem(Exception):
    """A request whose signature cannot be accepted; `code` is the AWS error name to answer with."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)


def read_credentials(path: str | Path) -> dict[str, str]:
    """access key id -> secret key, from every section of an INI credentials file."""
    path = Path(path)
    parser = configparser.ConfigParser(interpolation=None)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{path}: cannot read credentials file ({exc.strerror or exc})") from None
    try:
        parser.read_string(text, source=str(path))
    except configparser.Error as exc:
        raise UserError(f"{path}: not an INI credentials file ({str(exc).splitlines()[0]})") from None
    keys: dict[str, str] = {}
    for section in parser.sections():
        key_id = parser[section].get("aws_access_key_id", "").strip()
        secret = parser[section].get("aws_secret_access_key", "").strip()
        if not key_id or not secret:
            raise UserError(f"{path}: section [{section}] needs both aws_access_key_id and aws_secret_access_key")
        if keys.get(key_id, secret) != secret:
            raise UserError(f"{path}: access key {key_id} appears twice with different secrets")
        keys[key_id] = secret
    if not keys:
        raise UserError(f"{path}: no [section] with aws_access_key_id / aws_secret_access_key")
    return keys


@dataclass(frozen=True)
class Authorization:
    """The parts of an `Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...` header."""

    access_key: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


def parse_authorization(value: str | None) -> Authorization:
    if not value:
        raise SignatureProblem("MissingAuthenticationTokenException", "Missing Authentication Token")
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != "AWS4-HMAC-SHA256":
        raise SignatureProblem("IncompleteSignatureException",
                               f"Unsupported authorization algorithm {algorithm!r} (expected AWS4-HMAC-SHA256)")
    fields = {}
    for part in rest.split(","):
        name, _, field = part.strip().partition("=")
        fields[name] = field
    missing = [name for name in ("Credential", "SignedHeaders", "Signature") if not fields.get(name)]
    if missing:
        raise SignatureProblem("IncompleteSignatureException",
                               f"Authorization header is missing {', '.join(missing)}")
    scope = fields["Credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request" or not all(scope):
        raise SignatureProblem("IncompleteSignatureException",
                               "Credential must be ACCESS_KEY/YYYYMMDD/REGION/SERVICE/aws4_request")
    signed = tuple(fields["SignedHeaders"].lower().split(";"))
    return Authorization(scope[0], scope[1], scope[2], scope[3], signed, fields["Signature"])


class SignatureVerifier:
    """Checks requests signed with any of the keys in `secrets` (access key id -> secret key).

    `region`: the only region a credential scope may name (None: any), as an AWS endpoint has one.
    """

    def __init__(self, secrets: dict[str, str], service: str = "rekognition", region: str | None = None):
        self.secrets = dict(secrets)
        self.service = service
        self.region = region

    def check_key(self, authorization: str | None) -> Authorization:
        """The cheap checks (header shape, known key, service, region), done before the body is read."""
        auth = parse_authorization(authorization)
        if auth.access_key not in self.secrets:
            raise SignatureProblem("UnrecognizedClientException",
                                   "The security token included in the request is invalid.")
        if auth.service != self.service:
            raise SignatureProblem("InvalidSignatureException",
                                   f"Credential should be scoped to correct service: '{self.service}'.")
        if self.region is not None and auth.region != self.region:
            raise SignatureProblem("InvalidSignatureException",
                                   f"Credential should be scoped to a valid region. This endpoint serves "
                                   f"'{self.region}', not '{auth.region}'.")
        return auth

    def verify(self, *, method: str, path: str, query: str, headers: list[tuple[str, str]],
               body: bytes, now: datetime.datetime | None = None) -> str:
        """Verify one request; returns the access key id or raises SignatureProblem.

        headers: the request's (name, value) pairs as received (repeated names allowed).
        """
        received: dict[str, list[str]] = {}
        for name, value in headers:
            received.setdefault(name.lower(), []).append(value)
        auth = self.check_key(_first(received, "authorization"))
        for required in ("host", "x-amz-date"):
            if required not in auth.signed_headers:
                raise SignatureProblem("InvalidSignatureException", f"The {required} header must be signed.")
        missing = [name for name in auth.signed_headers if name not in received]
        if missing:
            raise SignatureProblem("InvalidSignatureException",
                                   f"Signed headers missing from the request: {', '.join(missing)}")

        amz_date = _first(received, "x-amz-date")
        try:
            when = datetime.datetime.strptime(amz_date, _TIMESTAMP).replace(tzinfo=datetime.timezone.utc)
        except ValueError:
            raise SignatureProblem("IncompleteSignatureException",
                                   f"X-Amz-Date {amz_date!r} is not in the form YYYYMMDDTHHMMSSZ") from None
        now = now or datetime.datetime.now(datetime.timezone.utc)
        if abs(now - when) > MAX_CLOCK_SKEW:
            raise SignatureProblem("InvalidSignatureException",
                                   f"Signature expired: {amz_date} is more than 5 minutes away from the "
                                   f"server time {now.strftime(_TIMESTAMP)}.")

        # The rebuilt request carries only the headers the client says it signed (repeats kept:
        # HTTPHeaders' item assignment appends), so botocore's headers_to_sign picks exactly those.
        url = f"http://{_first(received, 'host')}{path}" + (f"?{query}" if query else "")
        rebuilt = AWSRequest(method=method.upper(), url=url, data=body)
        for name in auth.signed_headers:
            for value in received[name]:
                rebuilt.headers[name] = value
        rebuilt.context["timestamp"] = amz_date
        signer = SigV4Auth(Credentials(auth.access_key, self.secrets[auth.access_key]), auth.service, auth.region)

        # A signed x-amz-content-sha256 header stands in for the body in the canonical request, so
        # it must be the body's real hash (botocore computes it when the header is absent).
        claimed = _first(received, "x-amz-content-sha256")
        if claimed is not None:
            del rebuilt.headers["x-amz-content-sha256"]
            actual = signer.payload(rebuilt)
            if not hmac.compare_digest(claimed.encode(), actual.encode()):
                raise SignatureProblem("InvalidSignatureException", "x-amz-content-sha256 does not match the body.")
            if "x-amz-content-sha256" in auth.signed_headers:
                rebuilt.headers["x-amz-content-sha256"] = claimed

        if auth.date != amz_date[:8]:
            raise SignatureProblem("InvalidSignatureException",
                                   f"Credential date {auth.date} does not match X-Amz-Date {amz_date}.")
        canonical = signer.canonical_request(rebuilt)
        expected = signer.signature(signer.string_to_sign(rebuilt, canonical), rebuilt)
        if signer.signed_headers(signer.headers_to_sign(rebuilt)) != ";".join(sorted(auth.signed_headers)) \
                or not hmac.compare_digest(expected.encode(), auth.signature.encode()):
            raise SignatureProblem("InvalidSignatureException",
                                   "The request signature we calculated does not match the signature you provided. "
                                   "Check your AWS Secret Access Key and signing method.")
        return auth.access_key


def _first(received: dict[str, list[str]], name: str) -> str | None:
    values = received.get(name)
    return values[0] if values else None
