"""`edgelabels export RUN [--int8]`: ONNX for the edge runtime, checked against Keras (see driver.py)."""

from __future__ import annotations

from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("run", type=Path, help="run directory written by `edgelabels train`")
    parser.add_argument("--int8", action="store_true",
                        help="also write model.int8.onnx (static QDQ); kept only if faster than fp32 and within "
                             "0.5 points of its validation accuracy (a multi-label model: validation "
                             "macro average precision; a detector: 1 point of validation mAP@0.5)")
    parser.add_argument("--calibration", type=int, default=100, metavar="N",
                        help="training images to calibrate INT8 on (default 100)")
    parser.add_argument("--parity-images", type=int, default=32, metavar="N",
                        help="real images from the run's splits to compare Keras and ONNX on (default 32)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="onnxruntime threads for the latency measurements (default: one per core)")


def run(args) -> int:
    from edgelabels.artifacts import RunDir
    from edgelabels.errors import UserError
    from edgelabels.export.driver import export_lines, export_run

    if args.calibration < 1 or args.parity_images < 2:
        raise UserError("export: --calibration must be >= 1 and --parity-images >= 2")
    report = export_run(args.run, int8=args.int8, calibration=args.calibration,
                        parity_images=args.parity_images, threads=args.threads)
    for line in export_lines(report, RunDir(args.run).export_dir):
        print(line)
    return 0
