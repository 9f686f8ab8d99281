"""Load on `edgelabels serve` from concurrent boto3 clients, against the Predictor's offline speed.

    .venv/bin/python benchmarks/serve_load.py [--model RUN/export] [--clients 4 16] [--seconds 60]
        [--images DIR] [--workers 1] [--threads 1] [--max-concurrency 16] [--pin] [--out results.json]

For each client count: that many boto3 Rekognition clients (threads spread over at most 4
processes, so the clients' own Python does not serialise on one GIL) call DetectCustomLabels in a
loop for --seconds on loopback, with boto3's standard retry mode. Prints requests/s, latency
p50/p95/p99, errors by code, retries, and the ratio of served images/s to the Predictor's offline
images/s (Predictor.probabilities, batches of 32, decoding included) on the same model and images,
measured just before each phase. The clients run on the same machine as the server and take CPU
from it, so on a small or shared machine the wall-clock ratio understates what a separate client
machine would see; the CPU-normalised ratio (images per server CPU second / offline images per
CPU second) is printed beside it because it depends less on what else the machine runs. With
--pin the server and the offline measurement share CPU 0 and the clients get the other CPUs.

Default model: a real ONNX convolutional net at 224 px made with onnx.helper (about 0.2 GMAC per
image, the order of a small mobile backbone); default images: 64 of ../shared/data's chest X-rays
(224 px JPEG), or generated JPEGs when that folder is absent.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
DEFAULT_IMAGES = REPO.parent / "shared" / "data" / "chest-xray-pneumonia" / "train"


def load_images(folder: Path | None, n: int) -> list[bytes]:
    folder = folder or DEFAULT_IMAGES
    if folder.is_dir():
        paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
        paths = paths[:: max(1, len(paths) // n)][:n]
        return [p.read_bytes() for p in paths]
    from helpers.server import image_bytes

    return [image_bytes((40 * i % 255, 90, 160), size=(224, 224), fmt="JPEG", seed=i) for i in range(n)]


def offline_speed(model_dir: Path, images: list[bytes], threads, seconds: float = 10.0) -> tuple[float, float]:
    """(images per wall second, images per CPU second) of Predictor.probabilities in batches of 32."""
    from edgelabels.runtime.predictor import Predictor

    predictor = Predictor(model_dir, threads=threads)
    predictor.probabilities(images[:8])  # warm-up
    done, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        predictor.probabilities(images, batch_size=32)
        done += len(images)
    return done / (time.perf_counter() - start), done / (time.process_time() - cpu)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its direct children (uvicorn's workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def pin(pid: int, cpus: set[int]) -> None:
    """Pin every thread of a process and of its direct children (uvicorn's workers) to `cpus`."""
    pids = {str(pid)} | {stat.parent.name for stat in Path("/proc").glob("[0-9]*/stat")
                         if _parent(stat) == str(pid)}
    for p in pids:
        for task in Path(f"/proc/{p}/task").iterdir():
            os.sched_setaffinity(int(task.name), cpus)


def _parent(stat: Path) -> str | None:
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[1]
    except (OSError, IndexError):
        return None


def client_process(url, arn, images, threads, start_at, seconds, queue, cpus=None):
    """Runs `threads` boto3 clients until start_at + seconds; puts (latencies, codes, retries)."""
    import threading

    if cpus:
        os.sched_setaffinity(0, cpus)

    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError

    results = []

    def one_client(index):
        client = boto3.client("rekognition", endpoint_url=url, region_name="us-east-1",
                              aws_access_key_id="AKIDLOADTEST", aws_secret_access_key="secret",
                              config=Config(retries={"mode": "standard", "max_attempts": 5},
                                            max_pool_connections=2))
        client.describe_project_versions(ProjectArn=arn.split("/version/")[0] + "/1")  # connect before timing
        latencies, codes, retries = [], Counter(), 0
        i = index
        while time.time() < start_at:
            time.sleep(0.001)
        while time.time() < start_at + seconds:
            began = time.perf_counter()
            try:
                answer = client.detect_custom_labels(ProjectVersionArn=arn, Image={"Bytes": images[i % len(images)]},
                                                     MinConfidence=0)
                retries += answer["ResponseMetadata"]["RetryAttempts"]
                codes["ok"] += 1
                latencies.append(time.perf_counter() - began)
            except ClientError as exc:
                codes[exc.response["Error"]["Code"]] += 1
                retries += exc.response["ResponseMetadata"].get("RetryAttempts", 0)
            except Exception as exc:  # connection errors count as errors, not as crashes of the benchmark
                codes[type(exc).__name__] += 1
            i += 1
        results.append((latencies, codes, retries))

    workers = [threading.Thread(target=one_client, args=(k,)) for k in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    queue.put(([x for r in results for x in r[0]], sum((r[1] for r in results), Counter()), sum(r[2] for r in results)))


def load(url: str, arn: str, images: list[bytes], clients: int, seconds: float, client_cpus=None) -> dict:
    context = multiprocessing.get_context("spawn")
    processes = min(clients, 4)
    queue = context.Queue()
    start_at = time.time() + 3.0 + 0.5 * processes  # time for every process to import boto3 and connect
    jobs = []
    for p in range(processes):
        threads = clients // processes + (1 if p < clients % processes else 0)
        job = context.Process(target=client_process, args=(url, arn, images, threads, start_at, seconds, queue,
                                                                     client_cpus))
        job.start()
        jobs.append(job)
    latencies, codes, retries = [], Counter(), 0
    for _ in jobs:
        lat, c, r = queue.get(timeout=seconds + 120)
        latencies += lat
        codes += c
        retries += r
    for job in jobs:
        job.join()
    ms = np.asarray(latencies) * 1000.0
    served = codes.get("ok", 0)
    return {
        "clients": clients, "seconds": seconds, "requests": sum(codes.values()), "served": served,
        "requests_per_s": served / seconds,
        "p50_ms": float(np.percentile(ms, 50)) if served else None,
        "p95_ms": float(np.percentile(ms, 95)) if served else None,
        "p99_ms": float(np.percentile(ms, 99)) if served else None,
        "errors": {k: v for k, v in codes.items() if k != "ok"}, "retries": retries,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="exported model folder (default: a generated 224 px conv net)")
    parser.add_argument("--conv-channels", type=int, nargs="+", default=[16, 32, 32, 64, 64],
                        help="channels of the generated model's 3x3 convolutions (strides 2,1,2,1,...)")
    parser.add_argument("--images", type=Path, help=f"folder of images (default {DEFAULT_IMAGES})")
    parser.add_argument("--n-images", type=int, default=64)
    parser.add_argument("--clients", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="server's onnxruntime threads per request (default 1)")
    parser.add_argument("--offline-seconds", type=float, default=10.0)
    parser.add_argument("--max-concurrency", type=int, default=16)
    parser.add_argument("--pin", action="store_true",
                        help="server (and the offline measurement) on CPU 0, clients on the other CPUs, so "
                             "the clients do not take the server's core")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()

    from helpers.server import ServerProcess, write_model_dir

    tmp = Path(tempfile.mkdtemp(prefix="serve-load-"))
    model = args.model or write_model_dir(tmp / "loadtest" / "export", labels=("NORMAL", "PNEUMONIA"), size=224,
                                          conv_channels=tuple(args.conv_channels))
    images = load_images(args.images, args.n_images)
    print(f"model {model}; {len(images)} images, {sum(map(len, images)) / len(images) / 1024:.0f} KiB on average; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    options = ["--no-access-log", "--workers", str(args.workers), "--max-concurrency", str(args.max_concurrency),
               "--threads", str(args.threads)]
    if args.pin and (os.cpu_count() < 2 or args.threads != 1):
        # onnxruntime pins its own pool threads when it has more than one, which would undo the pinning.
        parser.error("--pin needs at least 2 CPUs and --threads 1")
    server = ServerProcess(model, *options, timeout=120, log_path=tmp / "server.log")
    server_cpus, client_cpus = None, None
    if args.pin:
        server_cpus, client_cpus = {0}, set(range(1, os.cpu_count()))
        pin(server.process.pid, server_cpus)
        os.sched_setaffinity(0, server_cpus)  # the offline measurement runs here, on the server's core
    rows = []
    try:
        for clients in args.clients:
            # Offline speed measured right before each load phase (the machine's other load drifts), with
            # onnxruntime's default threads (as `edgelabels predict`) and with the server's; the best is
            # the denominator, so the ratio is not flattered by a slow offline setting.
            offline = {f"threads={t}": offline_speed(model, images, t, args.offline_seconds)
                       for t in ((1,) if args.pin else (None, args.threads))}
            best_wall = max(v[0] for v in offline.values())
            best_cpu = max(v[1] for v in offline.values())
            cpu_before = cpu_seconds(server.process.pid)
            row = load(server.url, server.arn, images, clients, args.seconds, client_cpus)
            server_cpu = cpu_seconds(server.process.pid) - cpu_before
            row["offline_images_per_s"] = {k: v[0] for k, v in offline.items()}
            row["offline_images_per_cpu_s"] = {k: v[1] for k, v in offline.items()}
            row["ratio_to_offline"] = row["requests_per_s"] / best_wall
            row["server_cpu_s"] = server_cpu
            row["served_per_server_cpu_s"] = row["served"] / server_cpu if server_cpu else None
            row["cpu_ratio_to_offline"] = row["served_per_server_cpu_s"] / best_cpu if server_cpu else None
            rows.append(row)
            print("offline Predictor: " + ", ".join(f"{k}: {v[0]:.1f} images/s ({v[1]:.1f} per CPU s)"
                                                    for k, v in offline.items()))
            print(f"{clients:3d} clients: {row['requests_per_s']:7.1f} req/s  p50 {row['p50_ms']:.1f} ms  "
                  f"p95 {row['p95_ms']:.1f} ms  p99 {row['p99_ms']:.1f} ms  errors {row['errors'] or 0}  "
                  f"retries {row['retries']}  served/offline {row['ratio_to_offline']:.2f}  "
                  f"per server CPU s {row['served_per_server_cpu_s']:.1f} (x{row['cpu_ratio_to_offline']:.2f} offline)")
        alive = server.alive()
    finally:
        server.stop()
    print(f"server alive at the end: {alive}; load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    if args.out:
        args.out.write_text(json.dumps({"workers": args.workers, "threads": args.threads, "pinned": args.pin,
                                        "model": str(model), "rows": rows},
                                       indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
