"""Memory of decoding 16-bit PNGs: one decode's peak RSS, and a real server's under 16 concurrent requests.

    .venv/bin/python benchmarks/probe_decode_memory.py [--size 4096] [--requests 16] [--rounds 3]

(a) One 16-bit SIZExSIZE PNG (a smooth gradient: about 40 KB on disk, 32 MB as pixels) decoded with
    data.images.decode_image in a fresh subprocess: its peak RSS (VmHWM) minus the RSS before decoding.
(b) `edgelabels serve --workers 1` (uvicorn runs the app in the process it starts) over a tiny exported
    model (tests/helpers/server.py), sent --requests concurrent DetectCustomLabels with that PNG,
    --rounds times: the server process's peak RSS (VmHWM in /proc/PID/status), and its RSS (VmRSS)
    before, and 2 s after the last round. The 16-bit decode used to cost ~420 MB per image in float64.

Run it against another checkout (the code before a change) with PYTHONPATH=THAT_CHECKOUT from a copy
of this file in THAT_CHECKOUT/benchmarks/.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

# ru_maxrss survives exec (a child starts with its parent's high-water mark), so the child reads its own
# VmHWM, reset to the current RSS just before decoding (writing 5 to clear_refs, Linux >= 4.0).
ONE_DECODE = """
import io, sys
from pathlib import Path
from PIL import Image
from edgelabels.data.images import decode_image
def status(field):
    return int(Path("/proc/self/status").read_text().split(field + ":")[1].split()[0])
warm = io.BytesIO(); Image.new("I;16", (8, 8)).save(warm, "PNG"); decode_image(warm.getvalue(), "warm-up")
data = Path(sys.argv[1]).read_bytes()
Path("/proc/self/clear_refs").write_text("5")
before = status("VmRSS")
image, notes = decode_image(data, "deep.png")
print(status("VmHWM") - before, image.mode, image.size[0], image.size[1])
"""


def gradient_png(path: Path, size: int) -> Path:
    """A 16-bit grey PNG, 0 to 65535 left to right: every row the same, so it compresses to ~40 KB at 4096."""
    row = (np.arange(size, dtype=np.uint32) * 65535 // max(1, size - 1)).astype(np.uint16)
    Image.fromarray(np.ascontiguousarray(np.broadcast_to(row, (size, size)))).save(path)
    return path


def one_decode_kib(png: Path) -> int:
    """Peak RSS growth (KiB) of one decode_image call in a fresh process."""
    out = subprocess.run([sys.executable, "-c", ONE_DECODE, str(png)], capture_output=True, text=True, check=True)
    kib, mode, width, height = out.stdout.split()
    assert mode == "L" and (int(width), int(height)) == Image.open(png).size, out.stdout
    return int(kib)


def proc_status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def serve_figures(png: Path, requests: int, rounds: int, folder: Path) -> dict:
    from helpers.server import ServerProcess, rekognition_client, write_model_dir

    model_dir = write_model_dir(folder / "model" / "export")
    server = ServerProcess(model_dir, "--workers", "1", "--no-access-log", "--max-concurrency", str(requests))
    try:
        pid = server.process.pid
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert b"serve" in cmdline, cmdline  # the process ServerProcess started is the server itself
        clients = [rekognition_client(server.url) for _ in range(requests)]
        small = {"Bytes": gradient_png(folder / "small.png", 64).read_bytes()}
        clients[0].detect_custom_labels(ProjectVersionArn=server.arn, Image=small)  # warm-up
        figures = {"rss_before_mb": proc_status_kib(pid, "VmRSS") / 1024}
        image = {"Bytes": png.read_bytes()}
        answers, failures = [], []

        def call(client, barrier):
            barrier.wait()
            try:
                answers.append(client.detect_custom_labels(ProjectVersionArn=server.arn, Image=image))
            except Exception as exc:  # reported below, not raised in a thread
                failures.append(f"{type(exc).__name__}: {exc}")

        began = time.perf_counter()
        for _ in range(rounds):
            barrier = threading.Barrier(requests)
            threads = [threading.Thread(target=call, args=(client, barrier)) for client in clients]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        figures["seconds"] = time.perf_counter() - began
        figures["peak_mb"] = proc_status_kib(pid, "VmHWM") / 1024
        time.sleep(2.0)
        figures["rss_after_mb"] = proc_status_kib(pid, "VmRSS") / 1024
        figures["answered"], figures["failed"] = len(answers), failures[:3] + (["..."] if len(failures) > 3 else [])
        return figures
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=4096, help="PNG side in pixels (default 4096, the serve limit)")
    parser.add_argument("--requests", type=int, default=16, help="concurrent requests per round (default 16)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of concurrent requests (default 3)")
    args = parser.parse_args()
    import edgelabels

    print(f"edgelabels from {Path(edgelabels.__file__).parent}")
    with tempfile.TemporaryDirectory(prefix="probe-decode-memory-") as tmp:
        folder = Path(tmp)
        png = gradient_png(folder / "deep.png", args.size)
        print(f"16-bit {args.size}x{args.size} gradient PNG: {png.stat().st_size / 1024:.1f} KB")
        print(f"(a) one decode: peak RSS +{one_decode_kib(png) / 1024:.1f} MB")
        figures = serve_figures(png, args.requests, args.rounds, folder)
        print(f"(b) serve --workers 1, {args.rounds} x {args.requests} concurrent DetectCustomLabels "
              f"({figures['answered']} answered in {figures['seconds']:.1f} s): "
              f"RSS before {figures['rss_before_mb']:.0f} MB, peak {figures['peak_mb']:.0f} MB, 2 s after {figures['rss_after_mb']:.0f} MB"
              + (f"; failures: {json.dumps(figures['failed'])}" if figures["failed"] else ""))
        verdict = "meets" if figures["peak_mb"] < 1536 else "misses"
        print(f"    target: peak under 1536 MB ({verdict})")


if __name__ == "__main__":
    main()
