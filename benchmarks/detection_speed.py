"""Detection at the edge: a trained detector run, Keras vs its ONNX export, end to end from a JPEG, in one run.

    .venv/bin/python benchmarks/detection_speed.py RUN_DIR [--images DIR] [--repeats 50] [--threads 2]

RUN_DIR is a trained detection run that has been exported (`edgelabels export RUN_DIR`). At batch 1:
Keras `predict` and direct call of the inference model (decoding in the graph), ONNX fp32 (and the
shipped INT8 model if export kept one), and end to end with the Detector from a JPEG file (decode +
preprocess + model + the DetectCustomLabels answer). JPEGs are the first images of --images (default:
the bee set's 320x240 validation frames). Prints p50/p95 ms and images/s, and the ratios.
Goal (issue 14): >= 30 images/s end to end at 320x240, batch 1, on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BEES = REPO.parent / "shared" / "data" / "bees-yolo" / "images" / "val"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from edge_latency import timed  # noqa: E402  (one timing loop for every latency benchmark)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a trained, exported detection run directory")
    parser.add_argument("--images", type=Path, default=BEES, help="JPEG/PNG frames to time end to end")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads (2 cores here)")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    from edgelabels.artifacts import RunDir
    from edgelabels.data.images import read_image
    from edgelabels.models.detector import inference_model
    from edgelabels.models.factory import load_model
    from edgelabels.runtime.detector import Detector

    run = RunDir(args.run)
    detector = Detector(run.export_dir, precision="fp32", threads=args.threads)
    frames = sorted(p for p in args.images.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:10]
    if not frames:
        print(f"{args.images}: no images", file=sys.stderr)
        return 2
    x = detector.prepare(frames[0])[None]
    keras_model = inference_model(load_model(run.model_path), run.config["model"]["max_detections"])

    rows = {}
    rows["keras predict"] = timed(lambda: keras_model.predict(x, verbose=0), args.repeats)
    rows["keras call"] = timed(lambda: np.asarray(keras_model(x, training=False)), args.repeats)
    rows["onnx fp32"] = timed(lambda: detector.run(x), args.repeats)
    if (run.export_dir / "model.int8.onnx").is_file():
        int8 = Detector(run.export_dir, precision="int8", threads=args.threads)
        rows["onnx int8"] = timed(lambda: int8.run(x), args.repeats)
    cycle = iter(range(10**9))

    def end_to_end():
        path = frames[next(cycle) % len(frames)]
        image, _ = read_image(path)
        detector.detect(image)

    rows["end to end (JPEG -> answer)"] = timed(end_to_end, args.repeats)
    size = read_image(frames[0])[0].size
    print(f"run {run.dir}; model input {x.shape[2]}x{x.shape[1]}; frames {size[0]}x{size[1]} from {args.images}; "
          f"batch 1; {args.repeats} repeats; onnxruntime threads {args.threads}")
    print(f"{'':30s} {'p50 ms':>8s} {'p95 ms':>8s} {'images/s':>9s} {'vs keras predict':>17s}")
    base = np.median(rows["keras predict"])
    for name, ms in rows.items():
        p50 = float(np.median(ms))
        print(f"{name:30s} {p50:8.2f} {float(np.percentile(ms, 95)):8.2f} {1000 / p50:9.1f} {base / p50:16.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
