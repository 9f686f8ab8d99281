"""`predict --engine ray` against in-process `predict` on the same photos (issue 17, item 2).

    .venv/bin/python benchmarks/ray_predict.py [--work bench-ray] [--n 2000] [--rounds 1] [--actors N] [--batch-size 32]

Generates --n synthetic cassette photos at 640x480 (`edgelabels dataset synth-cassettes`), trains and exports a
tiny classifier on them (tinycnn, 64 px, one epoch: what is measured is the engine, not the model), then times
two whole commands, start-up included (Python, the model, and for Ray the local cluster and its actors):

    edgelabels predict EXPORT PHOTOS > local.jsonl                           # in-process, stdout only
    edgelabels predict EXPORT --input PHOTOS --out RAY_OUT --engine ray      # Ray Data, Parquet + JSONL shards

images/s = n / wall time of each; with --rounds R the two alternate R times (on a shared machine the load
changes from one minute to the next) and the median ratio is printed too (target: Ray >= 0.8x in-process on a
2-core machine). Also printed: the seconds a bare local Ray takes to start and stop (the part of the Ray
engine's time that does not shrink with fewer photos), the machine's busy CPU-seconds during each kind of run
(Linux), and whether the answers agree (those of the last round): the same labels in the same order for every
photo, and the largest confidence difference (onnxruntime rounds float32 products differently for different
batch compositions, so the last digits may differ). Photos, run and export are kept in --work and reused by the
next run; RAY_OUT is removed first, so Ray always predicts every photo.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

EDGELABELS = str(Path(sys.executable).parent / "edgelabels")

CONFIG = """\
task: classification
seed: 0
data:
  source: {photos}
  image_size: 64
model:
  backbone: tinycnn
  weights: none
train:
  epochs: 1
  fine_tune_epochs: 0
  batch_size: 32
"""


def busy_cpu_s() -> float | None:
    """CPU-seconds the whole machine has spent busy since boot (Linux /proc/stat), None elsewhere. The Ray
    engine's work is spread over processes the command does not wait for (Ray's daemons and actors), so the
    machine's busy time, not the command's rusage, is what it cost."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq = fields[:7]
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


CPU_S: dict[str, list[float]] = {}  # command kind -> machine CPU-seconds of each run


def timed(command: list[str], stdout=subprocess.DEVNULL, kind: str | None = None) -> float:
    """Wall seconds of one whole command; its stderr is shown only if it fails."""
    cpu = busy_cpu_s()
    began = time.perf_counter()
    done = subprocess.run(command, stdout=stdout, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}")
    if kind and cpu is not None:
        CPU_S.setdefault(kind, []).append(busy_cpu_s() - cpu)
    return seconds


def prepare(work: Path, n: int) -> tuple[Path, Path]:
    """(photos folder, export folder), made once and reused."""
    photos, run = work / "photos", work / "run"
    if not (photos / "photos.csv").is_file():
        shutil.rmtree(photos, ignore_errors=True)
        seconds = timed([EDGELABELS, "dataset", "synth-cassettes", str(photos), "--n", str(n), "--size", "640x480",
                         "--workers", "2"])
        print(f"photos: {n} in {seconds:.0f} s", flush=True)
    if not (run / "export" / "model.onnx").is_file():
        (work / "tiny.yaml").write_text(CONFIG.format(photos=photos.absolute()))
        seconds = timed([EDGELABELS, "train", str(work / "tiny.yaml"), "--out", str(run)])
        seconds += timed([EDGELABELS, "export", str(run)])
        print(f"tiny classifier trained and exported in {seconds:.0f} s", flush=True)
    return photos, run / "export"


def compare(local: dict[str, list], ray_rows: dict[str, list]) -> tuple[int, int, float]:
    """(photos whose labels agree in names and order, photos compared, largest confidence difference)."""
    agree, largest = 0, 0.0
    for path, expected in local.items():
        got = ray_rows.get(path)
        if got is not None and [label["Name"] for label in got] == [label["Name"] for label in expected]:
            agree += 1
            largest = max([largest, *(abs(a["Confidence"] - b["Confidence"]) for a, b in zip(got, expected))])
    return agree, len(local), largest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("bench-ray"), help="photos, run and results (kept)")
    parser.add_argument("--n", type=int, default=2000, help="photos (default 2000)")
    parser.add_argument("--actors", type=int, help="--actors for the Ray engine (default: its own)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per model call, both engines")
    parser.add_argument("--rounds", type=int, default=1, help="in-process then Ray, this many times (default 1)")
    args = parser.parse_args()

    photos, export = prepare(args.work, args.n)
    n = sum(1 for p in photos.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    local_out, ray_out = args.work / "local.jsonl", args.work / "ray-out"
    ray_command = [EDGELABELS, "predict", str(export), "--input", str(photos), "--out", str(ray_out),
                   "--engine", "ray", "--batch-size", str(args.batch_size)]
    ray_command += ["--actors", str(args.actors)] if args.actors else []
    print(f"cores: {os.cpu_count()} (os.cpu_count; shared with whatever else runs here)")
    ratios = []
    for round_ in range(1, args.rounds + 1):
        with open(local_out, "w") as stdout:
            local_s = timed([EDGELABELS, "predict", str(export), str(photos), "--batch-size", str(args.batch_size)],
                            stdout, kind="in-process")
        shutil.rmtree(ray_out, ignore_errors=True)
        ray_s = timed(ray_command, kind="ray")
        ratios.append(local_s / ray_s)
        print(f"round {round_}: in-process {n} photos in {local_s:.1f} s = {n / local_s:.1f} images/s; "
              f"--engine ray {ray_s:.1f} s = {n / ray_s:.1f} images/s; ratio {local_s / ray_s:.2f}x", flush=True)

    local = {line["Image"]: line["CustomLabels"] for line in map(json.loads, local_out.read_text().splitlines())}
    local = {os.path.abspath(path): labels for path, labels in local.items()}
    rows = [json.loads(line) for shard in sorted((ray_out / "jsonl").glob("*.jsonl"))
            for line in shard.read_text().splitlines()]
    agree, compared, largest = compare(local, {row["path"]: row["labels"] for row in rows})
    errors = sum(row["error"] is not None for row in rows)
    bare = timed([sys.executable, "-c", "import ray; ray.init(address='local', include_dashboard=False, "
                  "logging_level='ERROR'); ray.shutdown()"], kind="bare Ray")
    print(f"a local Ray started and shut down, with no work: {bare:.1f} s (the fixed part of each Ray run)")
    if CPU_S:
        print("machine CPU-seconds per run (median; every process, Ray's daemons and actors included): " +
              ", ".join(f"{kind} {statistics.median(values):.1f}" for kind, values in CPU_S.items()))
    print(f"ratio ray / in-process (images/s): median {statistics.median(ratios):.2f}x of {len(ratios)} rounds "
          f"(target >= 0.8x); last Ray run: {len(rows)} rows, {errors} errors")
    print(f"answers: {agree}/{compared} photos with the same labels in the same order; "
          f"largest confidence difference {largest:.2e} points")
    return 0 if agree == compared == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
