"""Detection at the edge: a trained detector run, Keras vs its ONNX export, end to end from a JPEG, in one run.

    .venv/bin/python benchmarks/detection_speed.py RUN_DIR [--images DIR] [--repeats 50] [--threads 2]

RUN_DIR is a trained detection run that has been exported (`edgelabels export RUN_DIR`). At batch 1:
Keras `predict` and direct call of the inference model (decoding in the graph), ONNX fp32 (and the
shipped INT8 model if export kept one), and end to end with the Detector from a JPEG file (decode +
preprocess + model + the DetectCustomLabels answer). JPEGs are the first images of --images (default:
the bee set's 320x240 validation frames). Prints p50/p95 ms and images/s, and the ratios.
Goal (issue 14): >= 30 images/s end to end at 320x240, batch 1, on 2 CPU cores.

Tiled (issue 26): end to end on a 1920x1080 frame (synthetic noise, JPEG-encoded once, decoded every time) and
on one real small-objects frame, untiled (the frame stretched to the model input) and tiled (scaled by
--tile-scale, cut into overlapping model-input tiles, merged: runtime/tiles.py). A tiled export is timed as it
is; an untiled one is also timed tiled, its model being what a tiled export of that input size runs per tile.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BEES = REPO.parent / "shared" / "data" / "bees-yolo" / "images" / "val"
SMALL_OBJECTS = REPO.parent / "shared" / "data" / "small-objects" / "images" / "val"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from edge_latency import timed  # noqa: E402  (one timing loop for every latency benchmark)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="a trained, exported detection run directory")
    parser.add_argument("--images", type=Path, default=BEES, help="JPEG/PNG frames to time end to end")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads (2 cores here)")
    parser.add_argument("--tile-scale", type=float, default=None,
                        help="tiled cases' scale (default: the export's tile_scale, or 1.0 for an untiled export)")
    parser.add_argument("--frame", type=Path, default=None,
                        help="the real frame of the tiled cases (default: the first small-objects val image)")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    import dataclasses

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
    # The model's own input (one tile of a tiled export): the frame stretched to it, as an untiled export reads it
    whole = Detector(run.export_dir, precision="fp32", threads=args.threads)
    whole.spec = dataclasses.replace(detector.spec, tile_scale=None)
    x = whole.prepare(frames[0])[None]
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
    tiled_rows, described = tiled_cases(detector, args)
    rows.update(tiled_rows)
    size = read_image(frames[0])[0].size
    print(f"run {run.dir}; model input {x.shape[2]}x{x.shape[1]}; frames {size[0]}x{size[1]} from {args.images}; "
          f"batch 1; {args.repeats} repeats; onnxruntime threads {args.threads}")
    print(f"{'':30s} {'p50 ms':>8s} {'p95 ms':>8s} {'images/s':>9s} {'vs keras predict':>17s}")
    base = np.median(rows["keras predict"])
    for name, ms in rows.items():
        p50 = float(np.median(ms))
        print(f"{name:30s} {p50:8.2f} {float(np.percentile(ms, 95)):8.2f} {1000 / p50:9.1f} {base / p50:16.1f}x")
    print("\n".join(described))
    return 0


def tiled_cases(detector, args) -> tuple[dict, list[str]]:
    """End-to-end times (JPEG bytes -> answer) on a synthetic 1920x1080 frame and a real frame, untiled and tiled
    (the same export's model), and lines describing the frames and tiles."""
    import dataclasses
    import io

    from PIL import Image

    from edgelabels.runtime.detector import Detector
    from edgelabels.runtime.tiles import tile_boxes

    scale = args.tile_scale or detector.spec.tile_scale or 1.0
    untiled = Detector(detector.dir, precision="fp32", threads=args.threads)
    untiled.spec = dataclasses.replace(detector.spec, tile_scale=None)
    tiled = Detector(detector.dir, precision="fp32", threads=args.threads)
    tiled.spec = dataclasses.replace(detector.spec, tile_scale=scale)
    noise = np.random.default_rng(0).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, format="JPEG", quality=90)
    frames = {"1920x1080": buffer.getvalue()}
    real = args.frame or next((p for p in sorted(SMALL_OBJECTS.glob("*")) if p.suffix.lower() in (".jpg", ".png")),
                              None)
    if real is not None and real.is_file():
        with Image.open(real) as image:
            frames[f"{image.size[0]}x{image.size[1]} real"] = real.read_bytes()
    rows, lines = {}, []
    for name, data in frames.items():
        rows[f"{name} untiled"] = timed(lambda: untiled.detect(data), args.repeats)
        rows[f"{name} tiled"] = timed(lambda: tiled.detect(data), max(5, args.repeats // 5))
        with Image.open(io.BytesIO(data)) as image:
            count = len(tile_boxes(*image.size, tiled.spec))
        lines.append(f"{name}: tiled at scale {scale:g}, overlap {tiled.spec.tile_overlap:g}: {count} tiles of "
                     f"{tiled.spec.width}x{tiled.spec.height}" + (f" ({real})" if "real" in name else ""))
    return rows, lines


if __name__ == "__main__":
    sys.exit(main())
