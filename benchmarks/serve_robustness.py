"""Every malformed request of issue 7 item 3 and issue 13, 100 times each, between good requests to `edgelabels serve`.

    .venv/bin/python benchmarks/serve_robustness.py [--repeat 100] [--model RUN/export] [--out results.json]

The server runs with --credentials, so every request (good or bad) goes through SigV4
verification; bad requests are signed with botocore's SigV4Auth and sent raw (so that bodies boto3
would never build, such as broken JSON, can be sent). After each bad request one good request is
sent with boto3 and its answer compared with Predictor.detect on the same image. Prints, per case,
how many answers carried the expected error, and at the end: good requests lost (no answer or a
wrong one), server crashes (process gone, or a connection error), and the server's memory before
and after.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

KEY, SECRET = "AKIAROBUSTNESS000001", "robustness-secret"
OTHER_ARN = "arn:aws:rekognition:us-east-1:111122223333:project/p/version/p.2023-07-31T11.49.37/1690829378219"


def bomb_png(width: int = 30_000, height: int = 30_000) -> bytes:
    """A tiny PNG whose header claims width x height pixels: Pillow refuses it as a decompression bomb."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) \
        + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")


def noise_png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels, "RGB").save(buffer, "PNG", compress_level=0)
    return buffer.getvalue()


def malformed_cases(arn: str, good: bytes):
    """name -> (X-Amz-Target, body bytes, (secret, region) to sign with or None for unsigned, expected __type)."""
    target = "RekognitionService.DetectCustomLabels"
    signed = (SECRET, "us-east-1")
    depth = 100_000

    def detect(image_bytes=None, raw_image=None, **fields) -> bytes:
        params = {"ProjectVersionArn": arn, **fields}
        if raw_image is not None:
            params["Image"] = raw_image
        elif image_bytes is not None:
            params["Image"] = {"Bytes": base64.b64encode(image_bytes).decode()}
        return json.dumps(params).encode()

    return {
        "image over 4 MB": (target, detect(b"\x89PNG\r\n\x1a\n" + b"\0" * (4 * 1024 * 1024)), signed,
                            "ImageTooLargeException"),
        "body over the cap (8 MB)": (target, detect(b"\xff\xd8\xff" + b"\0" * (6 * 1024 * 1024)), signed,
                                     "ImageTooLargeException"),
        "GIF": (target, detect(b"GIF89a" + os.urandom(500)), signed, "InvalidImageFormatException"),
        "random bytes": (target, detect(os.urandom(5000)), signed, "InvalidImageFormatException"),
        "truncated JPEG": (target, detect(good[: len(good) // 3]), signed, "InvalidImageFormatException"),
        "63 px wide": (target, detect(noise_png(63, 100)), signed, "InvalidParameterException"),
        "4097 px tall": (target, detect(noise_png(64, 4097)), signed, "InvalidParameterException"),
        "empty bytes": (target, detect(b""), signed, "InvalidParameterException"),
        "MinConfidence 101": (target, detect(good, MinConfidence=101), signed, "InvalidParameterException"),
        "MinConfidence -5": (target, detect(good, MinConfidence=-5), signed, "InvalidParameterException"),
        "malformed ARN": (target, detect(good, ProjectVersionArn="arn:aws:rekognition:nope"), signed,
                          "InvalidParameterException"),
        "unknown ARN": (target, detect(good, ProjectVersionArn=OTHER_ARN), signed, "ResourceNotFoundException"),
        "bad JSON": (target, b'{"ProjectVersionArn": "' + arn.encode() + b'", "Image": {"Bytes": "', signed,
                     "SerializationException"),
        "JSON nested 100,000 deep": (target, b'{"Image": ' + b"[" * depth + b"]" * depth + b"}", signed,
                                     "SerializationException"),
        "MaxResults 10**30": (target, detect(good, MaxResults=10 ** 30), signed, "InvalidParameterException"),
        "decompression bomb": (target, detect(bomb_png()), signed, "InvalidParameterException"),
        "signed for another region": (target, detect(good), (SECRET, "eu-west-1"), "InvalidSignatureException"),
        "missing Image": (target, detect(), signed, "InvalidParameterException"),
        "Image.Bytes not base64": (target, detect(raw_image={"Bytes": "%%%"}), signed, "InvalidParameterException"),
        "S3Object without --s3-root": (target, detect(raw_image={"S3Object": {"Bucket": "b", "Name": "x.png"}}),
                                       signed, "InvalidS3ObjectException"),
        "unknown operation": ("RekognitionService.DetectFaces", detect(good), signed, "UnknownOperationException"),
        "wrong secret": (target, detect(good), ("not-the-secret", "us-east-1"), "InvalidSignatureException"),
        "unsigned": (target, detect(good), None, "MissingAuthenticationTokenException"),
    }


def send_raw(port: int, target: str, body: bytes, signing: tuple[str, str] | None) -> tuple[int, str]:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method="POST", url=f"http://127.0.0.1:{port}/", data=body,
                         headers={"X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.1"})
    if signing is not None:
        secret, region = signing
        SigV4Auth(Credentials(KEY, secret), "rekognition", region).add_auth(request)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", "/", body=body, headers=dict(request.headers.items()))
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read()).get("__type", "")
    finally:
        connection.close()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="exported model folder (default: a generated one)")
    parser.add_argument("--repeat", type=int, default=100)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from botocore.exceptions import ClientError
    from helpers.server import ServerProcess, image_bytes, rekognition_client, write_model_dir

    from edgelabels.runtime.predictor import Predictor

    tmp = Path(tempfile.mkdtemp(prefix="serve-robust-"))
    model = args.model or write_model_dir(tmp / "robust" / "export")
    credentials = tmp / "credentials"
    credentials.write_text(f"[default]\naws_access_key_id = {KEY}\naws_secret_access_key = {SECRET}\n")
    goods = [image_bytes(c, size=(120, 100), fmt="JPEG", seed=i)
             for i, c in enumerate([(220, 30, 30), (30, 200, 40), (40, 50, 210), (150, 150, 150)])]
    predictor = Predictor(model)
    expected_good = [predictor.detect(g, min_confidence=0)["CustomLabels"] for g in goods]

    server = ServerProcess(model, "--no-access-log", "--credentials", str(credentials), log_path=tmp / "server.log")
    client = rekognition_client(server.url, KEY, SECRET)
    cases = malformed_cases(server.arn, goods[0])
    memory_before = rss_mib(server.process.pid)
    tally: dict[str, Counter] = {name: Counter() for name in cases}
    good_sent = good_correct = crashes = 0
    started = time.perf_counter()
    try:
        for _ in range(args.repeat):
            for name, (target, body, signing, expected) in cases.items():
                try:
                    status, code = send_raw(server.port, target, body, signing)
                    tally[name]["expected" if (code == expected and status == 400) else f"{status} {code}"] += 1
                except (OSError, http.client.HTTPException, ValueError) as exc:
                    tally[name][f"connection: {type(exc).__name__}"] += 1
                    crashes += 0 if server.alive() else 1
                k = good_sent % len(goods)
                good_sent += 1
                try:
                    answer = client.detect_custom_labels(ProjectVersionArn=server.arn, Image={"Bytes": goods[k]},
                                                         MinConfidence=0)
                    good_correct += answer["CustomLabels"] == expected_good[k]
                except (ClientError, OSError) as exc:
                    print(f"good request lost after {name!r}: {exc}")
                if not server.alive():
                    crashes += 1
                    raise RuntimeError(f"server died after {name!r}:\n{server.output()[-3000:]}")
        memory_after = rss_mib(server.process.pid)
        alive = server.alive()
    finally:
        server.stop()
    elapsed = time.perf_counter() - started

    width = max(map(len, cases))
    for name, counts in tally.items():
        others = {k: v for k, v in counts.items() if k != "expected"}
        print(f"{name:<{width}}  {counts['expected']:4d}/{args.repeat} {cases[name][3]}"
              + (f"  other: {others}" if others else ""))
    bad_total = sum(sum(c.values()) for c in tally.values())
    bad_expected = sum(c["expected"] for c in tally.values())
    print(f"malformed: {bad_expected}/{bad_total} got their error; good: {good_correct}/{good_sent} answered "
          f"correctly ({good_sent - good_correct} lost); crashes: {crashes}; server alive: {alive}; "
          f"server RSS {memory_before:.0f} -> {memory_after:.0f} MiB; {elapsed:.0f} s")
    if args.out:
        args.out.write_text(json.dumps({"cases": {n: dict(c) for n, c in tally.items()}, "good_sent": good_sent,
                                        "good_correct": good_correct, "crashes": crashes, "alive": alive,
                                        "rss_mib": [memory_before, memory_after], "seconds": elapsed}, indent=2))
    return 0 if (bad_expected == bad_total and good_correct == good_sent and crashes == 0 and alive) else 1


if __name__ == "__main__":
    sys.exit(main())
