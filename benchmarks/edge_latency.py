"""Edge latency: Keras vs the exported ONNX models, and end to end from a JPEG, in one run.

    .venv/bin/python benchmarks/edge_latency.py [--backbones vgg16 efficientnetb0 mobilenetv3small]
        [--size 224] [--repeats 20] [--threads 2] [--jpeg-size 640 480]

For each backbone (weights none: BatchNorm re-estimated and the head briefly fitted on generated
images, so outputs are not constant): a run directory is made as training would (tests/helpers/runs.py)
and exported with `export --int8` (the real path: parity, thresholds, INT8 verdict). Then, at batch 1
(p50/p95 ms) and batch 32 (images/s): Keras `predict`, Keras direct call, ONNX fp32, ONNX INT8 (the
shipped model, or, where export refuses or does not attempt INT8, the default scheme quantized here
to show why), and end to end with the Predictor from a JPEG file (decode + preprocess + model), with
the share of preprocessing. The JPEG is a real chest X-ray from ../shared/data resized to --jpeg-size
(a camera-sized image), or a generated one when that folder is absent.
Goals (issue 6): VGG16 INT8 >= 6x faster than Keras predict at batch 1; preprocessing <= 20% of end to end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
XRAYS = REPO.parent / "shared" / "data" / "chest-xray-pneumonia" / "train" / "NORMAL"
sys.path.insert(0, str(REPO / "tests"))  # helpers.runs: hand-made run directories


def timed(fn, repeats: int) -> np.ndarray:
    fn()  # warm-up (graph tracing, allocation)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return np.array(times) * 1000


def make_jpeg(folder: Path, size: tuple[int, int]) -> Path:
    from PIL import Image

    from helpers.runs import make_image

    sources = sorted(XRAYS.glob("*.jpeg"))[:1] if XRAYS.is_dir() else []
    image = Image.open(sources[0]).convert("RGB") if sources else make_image(0, np.random.default_rng(0), 256)
    path = folder / "photo.jpg"
    image.resize(size, Image.Resampling.BILINEAR).save(path, "JPEG", quality=90)
    return path


def bench_backbone(backbone: str, size: int, repeats: int, threads: int, jpeg: Path, work: Path) -> dict:
    import keras

    from edgelabels.export import quantize as q
    from edgelabels.export.driver import export_run, load_inputs
    from edgelabels.artifacts import RunDir
    from edgelabels.runtime.predictor import Predictor
    from edgelabels.runtime.runner import OnnxModel
    from helpers.runs import make_run

    t = time.perf_counter()
    run = make_run(work / backbone, backbone=backbone, size=size, per_label=10, epochs=1, image_size=size + 32)
    report = export_run(run, int8=True, calibration=16, parity_images=16, threads=threads)
    setup_s = time.perf_counter() - t
    export = run / "export"
    int8_path = export / "model.int8.onnx"
    if not report["int8"]["shipped"]:
        int8_path = work / f"{backbone}.int8.onnx"  # measured here to show why export kept fp32
        trained = RunDir.load(run)
        q.quantize(export / "model.onnx", int8_path, load_inputs(trained.split.train[:16], trained.spec),
                   q.INT8_UNMEASURED)

    model = keras.saving.load_model(run / "model.keras", compile=False)
    predictor = Predictor(export, precision="fp32", threads=threads)
    x32 = np.stack([predictor.prepare(jpeg)] * 32)
    x1 = x32[:1]
    fp32, int8 = OnnxModel(export / "model.onnx", threads), OnnxModel(int8_path, threads)
    best = Predictor(export, precision="auto", threads=threads)  # what the edge runs: int8 if shipped
    few = max(3, repeats // 5)

    rows = {}
    for name, one, many in (
        ("Keras predict", lambda: model.predict(x1, verbose=0), lambda: model.predict(x32, batch_size=32, verbose=0)),
        ("Keras call", lambda: model(x1, training=False), lambda: model(x32, training=False)),
        ("ONNX fp32", lambda: fp32(x1), lambda: fp32(x32)),
        ("ONNX INT8", lambda: int8(x1), lambda: int8(x32)),
        (f"JPEG end to end ({best.precision})", lambda: best.detect(jpeg), lambda: best.probabilities([jpeg] * 32)),
    ):
        b1 = timed(one, repeats)
        b32 = timed(many, few)
        rows[name] = {"p50_ms": float(np.median(b1)), "p95_ms": float(np.percentile(b1, 95)),
                      "batch32_img_s": float(32 / (np.median(b32) / 1000))}
    prep = timed(lambda: predictor.prepare(jpeg), repeats)
    return {"rows": rows, "preprocess_p50_ms": float(np.median(prep)), "setup_s": setup_s,
            "parity": report["parity"], "int8_verdict": report["int8"]["reason"],
            "int8_shipped": report["int8"]["shipped"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbones", nargs="+", default=["vgg16", "efficientnetb0", "mobilenetv3small"])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=20, help="batch-1 timings per row (batch 32: a fifth)")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads")
    parser.add_argument("--jpeg-size", type=int, nargs=2, default=[640, 480], metavar=("W", "H"))
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    results = {}
    with tempfile.TemporaryDirectory(prefix="edge-latency-") as tmp:
        jpeg = make_jpeg(Path(tmp), tuple(args.jpeg_size))
        for backbone in args.backbones:
            results[backbone] = r = bench_backbone(backbone, args.size, args.repeats, args.threads, jpeg, Path(tmp))
            print_table(backbone, r, args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def print_table(backbone: str, r: dict, args) -> None:
    rows = r["rows"]
    keras_p50 = rows["Keras predict"]["p50_ms"]
    print(f"\n## {backbone} at {args.size} px, {args.threads} onnxruntime threads, {os.cpu_count()} CPUs "
          f"(setup {r['setup_s']:.0f} s)")
    print(f"parity Keras vs ONNX: max abs diff {r['parity']['max_abs_diff']:.1e}, top-1 agreement "
          f"{r['parity']['top1_agreement']:.0%}, output std {r['parity']['output_std']:.3f}")
    print(f"export --int8: {r['int8_verdict']}")
    print(f"| {'':32} | batch-1 p50 ms | p95 ms | x vs Keras predict | batch-32 img/s |")
    print(f"|{'-' * 34}|---------------:|-------:|-------------------:|---------------:|")
    for name, row in rows.items():
        print(f"| {name:32} | {row['p50_ms']:14.2f} | {row['p95_ms']:6.2f} | {keras_p50 / row['p50_ms']:18.1f} | "
              f"{row['batch32_img_s']:14.1f} |")
    end_to_end = next(row for name, row in rows.items() if name.startswith("JPEG"))
    share = r["preprocess_p50_ms"] / end_to_end["p50_ms"]
    print(f"preprocessing (decode {args.jpeg_size[0]}x{args.jpeg_size[1]} JPEG + resize + normalise): "
          f"{r['preprocess_p50_ms']:.2f} ms = {share:.0%} of end to end", flush=True)


if __name__ == "__main__":
    sys.exit(main())
