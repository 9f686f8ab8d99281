"""The live Rekognition side: a boto3 client that checks the model runs, then DetectCustomLabels with backoff.

It starts nothing: a model that is not RUNNING is a one-line UserError giving the exact command to
start it and what it costs per hour, before any DetectCustomLabels call is sent. Every call asks for
MinConfidence 0, so every label comes back with its confidence (Rekognition otherwise returns only
labels above each label's assumed threshold, and a missing label cannot be scored).

botocore's own retries are switched off (total_max_attempts 1) so that throttling is retried here,
with exponential backoff and jitter, and the attempts are counted in the recorded line.
`endpoint_url` points the same code at any server of this protocol (`edgelabels serve` included).
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass

from edgelabels.errors import UserError

THROTTLING = frozenset({"ThrottlingException", "ProvisionedThroughputExceededException"})
RETRYABLE = THROTTLING | {"InternalServerError"}  # Rekognition's docs: "try your call again"
# Refusals that concern one image (too large, not PNG/JPEG, sides outside 64..4096 px): recorded,
# and the image is left out of both sides' scores; any other error stops the benchmark.
IMAGE_ERRORS = frozenset({"ImageTooLargeException", "InvalidImageFormatException", "InvalidParameterException"})
VERSION_ARN = re.compile(r"^arn:(?P<partition>[a-z\d-]+):rekognition:(?P<region>[a-z\d-]+):(?P<account>\d{12}):"
                         r"project/(?P<project>[a-zA-Z0-9_.\-]{1,255})/version/(?P<version>[a-zA-Z0-9_.\-]{1,255})"
                         r"/(?P<number>[0-9]+)$")


@dataclass(frozen=True)
class ModelVersion:
    arn: str
    region: str
    project: str
    version: str
    number: str

    @property
    def project_prefix(self) -> str:
        """`arn:...:project/NAME/`: a ProjectArn is this plus the project's own creation number."""
        return self.arn.split("/version/", 1)[0] + "/"


def parse_version_arn(arn: str) -> ModelVersion:
    match = VERSION_ARN.match(arn or "")
    if not match:
        raise UserError(f"--rekognition-arn {arn!r}: not a model ARN "
                        "(arn:aws:rekognition:REGION:ACCOUNT:project/NAME/version/VERSION/NUMBER)")
    return ModelVersion(arn, match["region"], match["project"], match["version"], match["number"])


def rekognition_client(region: str, endpoint_url: str | None = None, concurrency: int = 1):
    """A boto3 Rekognition client with botocore's retries off (this module retries throttling itself)."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise UserError("the live benchmark needs boto3: pip install 'edgelabels[aws]'") from None
    config = Config(retries={"total_max_attempts": 1, "mode": "standard"}, connect_timeout=10, read_timeout=60,
                    max_pool_connections=max(10, concurrency))
    return boto3.client("rekognition", region_name=region, endpoint_url=endpoint_url, config=config)


@dataclass
class Answer:
    """One image's outcome: `response` (without ResponseMetadata) or `error` ({"Code", "Message"})."""

    response: dict | None
    error: dict | None
    request_id: str | None
    timestamp: float  # epoch seconds at the first attempt
    latency_s: float  # the answered attempt alone: what one request costs
    elapsed_s: float  # first attempt to answer, backoff included
    attempts: int


class LiveRekognition:
    """A running Rekognition model (or any endpoint of its protocol) behind one boto3 client."""

    def __init__(self, client, model: ModelVersion, *, endpoint_url: str | None = None,
                 price_inference_unit_hour: float = 4.0, max_attempts: int = 8, backoff_base_s: float = 0.25,
                 backoff_cap_s: float = 20.0, sleep=time.sleep):
        self.client = client
        self.model = model
        self.endpoint_url = endpoint_url
        self.price = price_inference_unit_hour
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.sleep = sleep
        self.description: dict = {}
        self.throttled = 0  # attempts answered with a throttling error, over all images

    # -- before any paid call --------------------------------------------------------------------

    def aws_command(self, verb: str, *arguments: str) -> str:
        endpoint = f" --endpoint-url {self.endpoint_url}" if self.endpoint_url else ""
        return " ".join(["aws rekognition", verb, *arguments]) + f" --region {self.model.region}{endpoint}"

    def project_arn(self) -> str:
        """The ProjectArn DescribeProjectVersions needs; its number is not part of the version ARN."""
        from botocore.exceptions import ClientError

        try:
            answer = self.client.describe_projects(ProjectNames=[self.model.project])
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "UnknownOperationException":
                raise self.problem("DescribeProjects", exc) from None
            # An endpoint without DescribeProjects (`edgelabels serve` has the four model operations
            # only) takes any project number; it prints the version's own number, as used here.
            return self.model.project_prefix + self.model.number
        except Exception as exc:
            raise self.problem("DescribeProjects", exc) from None
        for project in answer.get("ProjectDescriptions", []):
            if project.get("ProjectArn", "").startswith(self.model.project_prefix):
                return project["ProjectArn"]
        raise UserError(f"--rekognition-arn {self.model.arn}: project {self.model.project!r} not found in "
                        f"{self.model.region} for these credentials")

    def check_running(self) -> dict:
        """DescribeProjectVersions; returns the description when RUNNING, else a UserError saying what to do."""
        project_arn = self.project_arn()
        try:
            answer = self.client.describe_project_versions(ProjectArn=project_arn,
                                                           VersionNames=[self.model.version])
        except Exception as exc:
            raise self.problem("DescribeProjectVersions", exc) from None
        found = [d for d in answer.get("ProjectVersionDescriptions", []) if d.get("ProjectVersionArn") == self.model.arn]
        if not found:
            raise UserError(f"--rekognition-arn {self.model.arn}: no such model version in project {project_arn}")
        self.description = found[0]
        status = self.description.get("Status", "UNKNOWN")
        arn = f"--project-version-arn {self.model.arn}"
        cost = (f"a running model is billed ${self.price:.2f} per inference unit per hour, used or not, "
                f"until you stop it with `{self.aws_command('stop-project-version', arn)}`")
        wait = self.aws_command("wait project-version-running", f"--project-arn {project_arn}",
                                f"--version-names {self.model.version}")
        if status == "RUNNING":
            return self.description
        if status == "STARTING":
            raise UserError(f"{self.model.arn} is STARTING: wait for it with `{wait}`, then run the benchmark again "
                            f"({cost})")
        if status in ("TRAINING_COMPLETED", "STOPPED", "STOPPING", "COPYING_COMPLETED"):
            start = self.aws_command("start-project-version", arn, "--min-inference-units 1")
            raise UserError(f"{self.model.arn} is {status}, not RUNNING, and the benchmark starts nothing by itself: "
                            f"start it with `{start}`, wait with `{wait}`, then run the benchmark again ({cost})")
        message = self.description.get("StatusMessage", "")
        raise UserError(f"{self.model.arn} is {status} and cannot serve" + (f": {message}" if message else ""))

    # -- the paid calls --------------------------------------------------------------------------

    def backoff(self, attempt: int) -> float:
        """Exponential with full jitter (AWS's recommendation): uniform in 0..base*2^(attempt-1), capped."""
        return random.uniform(0, min(self.backoff_cap_s, self.backoff_base_s * 2 ** (attempt - 1)))

    def detect(self, data: bytes) -> Answer:
        from botocore.exceptions import ClientError

        timestamp, first = time.time(), time.perf_counter()
        for attempt in range(1, self.max_attempts + 1):
            start = time.perf_counter()
            try:
                answer = self.client.detect_custom_labels(ProjectVersionArn=self.model.arn, Image={"Bytes": data},
                                                          MinConfidence=0)
            except ClientError as exc:
                code = exc.response["Error"]["Code"]
                if code in RETRYABLE:
                    self.throttled += code in THROTTLING
                    if attempt < self.max_attempts:
                        self.sleep(self.backoff(attempt))
                        continue
                    raise UserError(f"{self.model.arn}: DetectCustomLabels answered {code} {attempt} times in a row; "
                                    "lower --concurrency or give the model more inference units, then run again "
                                    "(answers so far are recorded and not asked again)") from None
                if code in IMAGE_ERRORS:
                    end = time.perf_counter()
                    return Answer(None, {"Code": code, "Message": exc.response["Error"].get("Message", "")},
                                  exc.response.get("ResponseMetadata", {}).get("RequestId"), timestamp,
                                  end - start, end - first, attempt)
                raise self.problem("DetectCustomLabels", exc) from None
            except Exception as exc:
                raise self.problem("DetectCustomLabels", exc) from None
            end = time.perf_counter()
            request_id = answer.pop("ResponseMetadata", {}).get("RequestId")
            return Answer(answer, None, request_id, timestamp, end - start, end - first, attempt)
        raise AssertionError("unreachable")

    def problem(self, operation: str, exc: Exception) -> UserError:
        """botocore's exceptions as one line that names the model and what to fix."""
        from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

        where = self.endpoint_url or f"Rekognition in {self.model.region}"
        if isinstance(exc, NoCredentialsError):
            return UserError(f"{operation} for {self.model.arn}: no AWS credentials found "
                             "(run `aws configure`, or set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)")
        if isinstance(exc, EndpointConnectionError):
            return UserError(f"{operation}: cannot reach {where} ({exc})")
        if isinstance(exc, ClientError):
            error = exc.response["Error"]
            return UserError(f"{operation} for {self.model.arn} at {where}: {error.get('Code')}: "
                             f"{error.get('Message', '')}".rstrip(": "))
        name = type(exc).__name__
        if type(exc).__module__.startswith(("botocore", "urllib3")):
            return UserError(f"{operation} at {where} failed: {name}: {exc}")
        raise exc
