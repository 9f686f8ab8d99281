"""Data-parallel training on CPU (issue 17): 4 devices against 1 with the same global batch, and 2 processes.

    .venv/bin/python benchmarks/distribute.py [--work /tmp/bench-distribute] [--epochs 4]

Runs `edgelabels train` under KERAS_BACKEND=jax on a small generated folder-per-label set (tinycnn at 32 px,
dropout 0, the same seed, a batch of 8 that every epoch fills): once on 1 device, once on 4 fake CPU devices
(XLA_FLAGS=--xla_force_host_platform_device_count=4, train.distribute: data_parallel), then as 2 processes on
localhost (coordinator 127.0.0.1, gloo collectives). Prints each run's per-epoch training loss, the largest
relative difference per epoch between 1 and 4 devices (target <= 1e-3) and the wall times, and checks that the
2-process run wrote one run directory.
"""

from __future__ import annotations

import argparse
import csv
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def train(config: Path, out: Path, epochs: int, devices: int, extra: list[str] = (), wait: bool = True):
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3",
           "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    sets = ["model.backbone=tinycnn", "model.weights=none", "data.image_size=32", f"train.epochs={epochs}",
            "train.fine_tune_epochs=0", "train.batch_size=8", "train.verbose=0", "train.workers=1",
            "data.test_fraction=0.2", "data.val_fraction=0.25", "model.dropout=0", "train.distribute=data_parallel"]
    command = [sys.executable, "-m", "edgelabels.cli", "train", str(config), "--out", str(out),
               *[a for s in sets for a in ("--set", s)], *extra]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if wait:
        _, err = process.communicate()
        if process.returncode:
            sys.exit(f"training failed:\n{err}")
    return process


def losses(run: Path) -> list[float]:
    with open(run / "history.csv") as f:
        return [float(row["loss"]) for row in csv.DictReader(f)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench-distribute"))
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    from helpers.runs import write_images

    images = args.work / "images"
    if not images.is_dir():
        write_images(images, per_label=12)  # 24 training images: 3 whole batches of 8
    config = args.work / "tiny.yaml"
    config.write_text(f"data:\n  source: {images}\n")
    timings, curves = {}, {}
    for devices in (1, 4):
        out = args.work / f"devices{devices}"
        if out.exists():
            import shutil

            shutil.rmtree(out)
        began = time.perf_counter()
        train(config, out, args.epochs, devices)
        timings[devices], curves[devices] = time.perf_counter() - began, losses(out)
        print(f"{devices} device(s): {time.perf_counter() - began:.1f} s, loss per epoch "
              + ", ".join(f"{v:.6f}" for v in curves[devices]))
    worst = max(abs(a - b) / abs(a) for a, b in zip(curves[1], curves[4]))
    print(f"largest relative difference per epoch, 4 devices vs 1: {worst:.2e} (target <= 1e-3)")

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = args.work / "processes2"
    if out.exists():
        import shutil

        shutil.rmtree(out)
    began = time.perf_counter()
    procs = [train(config, out, args.epochs, 1, ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                                                  "--process-id", str(i)], wait=False) for i in (0, 1)]
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            sys.exit(f"process training failed:\n{err}")
    print(f"2 processes on localhost: {time.perf_counter() - began:.1f} s, one run directory {out} "
          f"({len(losses(out))} epochs in history.csv), loss per epoch " + ", ".join(f"{v:.6f}" for v in losses(out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
