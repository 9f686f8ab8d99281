"""`edgelabels export RUN [--int8]`: ONNX for the edge runtime, checked against Keras (see export_run.py)."""

from __future__ import annotations

from pathlib import Path

from edgelabels.tasks import get_task


def add_arguments(parser) -> None:
    parser.add_argument("run", type=Path, help="run directory written by `edgelabels train`")
    parser.add_argument("--int8", action="store_true",
                        help="also write model.int8.onnx (static QDQ); kept only if faster than fp32 and within "
                             "0.5 points of its validation accuracy (a detector: 1 point of validation mAP@0.5)")
    parser.add_argument("--calibration", type=int, default=100, metavar="N",
                        help="training images to calibrate INT8 on (default 100)")
    parser.add_argument("--parity-images", type=int, default=32, metavar="N",
                        help="real images from the run's splits to compare Keras and ONNX on (default 32)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="onnxruntime threads for the latency measurements (default: one per core)")


def run(args) -> int:
    from edgelabels.artifacts import RunDir
    from edgelabels.errors import UserError
    from edgelabels.export.export_run import export_run

    if args.calibration < 1 or args.parity_images < 2:
        raise UserError("export: --calibration must be >= 1 and --parity-images >= 2")
    report = export_run(args.run, int8=args.int8, calibration=args.calibration,
                        parity_images=args.parity_images, threads=args.threads)
    lines = get_task(report["task"]).piece("show_export")(report, RunDir(args.run).export_dir)
    for line in lines or ():  # a task's show_export returns its lines (detection) or prints them itself
        print(line)
    return 0


def show_segmentation(report: dict, out: Path) -> None:
    from edgelabels.artifacts import ExportDir

    p, onnx_name = report["parity"], ExportDir.MODEL
    print(f"wrote {out}/: {onnx_name} ({report['sizes_bytes'][onnx_name] / 1e6:.1f} MB), a lung U-Net "
          f"(run it with `edgelabels segment {out} IMAGE...`)")
    print(f"parity Keras vs ONNX on {p['images']} images: max abs diff {p['max_abs_diff']:.1e}, "
          f"mask pixels agreeing {p['mask_pixel_agreement']:.4%}")
    print(f"batch-1 latency: ONNX fp32 {report['latency_batch1_ms']['onnx_fp32']:.3g} ms")
    for note in report["notes"]:
        print(f"note: {note}")


def show_classification(report: dict, out: Path) -> None:
    from edgelabels.artifacts import ExportDir

    p, onnx_name, int8_name = report["parity"], ExportDir.MODEL, ExportDir.MODEL_INT8
    print(f"wrote {out}/: {onnx_name} ({report['sizes_bytes'][onnx_name] / 1e6:.1f} MB)"
          + (f", {int8_name}" if report.get("int8", {}).get("shipped") else ""))
    print(f"parity Keras vs ONNX on {p['images']} images: max abs diff {p['max_abs_diff']:.1e}, "
          f"top-1 agreement {p['top1_agreement']:.0%}, output std {p['output_std']:.3f}")
    latency = report["latency_batch1_ms"]
    print(f"batch-1 latency: ONNX fp32 {latency['onnx_fp32']:.3g} ms, Keras {latency['keras_call']:.3g} ms")
    if "chain" in report:
        chain = report["chain"]["chain_parity"]
        stages = ", ".join(f"{s['kind']} with {s['run']}" for s in report["chain"]["stages"])
        print(f"chained after its stages ({stages}; exported in {out}/stages/): ONNX chain vs "
              f"Keras chain max abs diff {chain['max_abs_diff']:.1e} on {chain['images']} images")
    print(f"thresholds from {report['thresholds']['source']}")
    if "int8" in report:
        print(report["int8"]["reason"])
    for note in report["notes"]:
        print(f"note: {note}")


def show_detection(report: dict, out: Path) -> list[str]:
    """The lines `edgelabels export` prints for a detector."""
    from edgelabels.artifacts import ExportDir

    p, onnx_name, int8_name = report["parity"], ExportDir.MODEL, ExportDir.MODEL_INT8
    latency, validation = report["latency_batch1_ms"], report["validation"]
    found = validation["map_fp32"]
    thresholds = ", ".join(f"{name} {value:.2f}" for name, value in report["thresholds"]["values"].items())
    int8 = f", {int8_name}" if report.get("int8", {}).get("shipped") else ""
    lines = [f"wrote {out}/: {onnx_name} ({report['sizes_bytes'][onnx_name] / 1e6:.1f} MB){int8}, a detector "
             f"with its decoding in the graph (up to {report['max_detections']} boxes per image; run it with "
             f"`edgelabels predict {out} IMAGE...`)",
             f"parity Keras vs ONNX on {p['images']} images: max abs diff {p['max_abs_diff']:.1e} over "
             f"{p['rows_compared']} boxes scoring >= {p['min_score']} (boxes and scores)",
             f"batch-1 latency: ONNX fp32 {latency['onnx_fp32']:.3g} ms, Keras {latency['keras_call']:.3g} ms",
             f"validation: {validation['images']} images, {validation['boxes']} boxes, mAP@0.5 "
             f"{'n/a (no boxes)' if found is None else f'{found:.3f}'}",
             f"thresholds from {report['thresholds']['source']}: {thresholds}"]
    if "int8" in report:
        lines.append(report["int8"]["reason"])
    lines += [f"note: {note}" for note in report["notes"]]
    return lines
