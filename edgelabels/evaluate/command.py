"""`edgelabels evaluate MODEL`: the thin CLI over evaluate/driver.py (one driver; a task supplies hooks).

MODEL is a run directory (model.keras) or an exported model folder (model.onnx, run through the
edge runtime, so what is measured is what ships). The run's own test split is evaluated unless
--data names another source. This module parses and prints; the driver returns data.
"""

from __future__ import annotations

from pathlib import Path

# evaluate_model is imported from here too (by callers written before driver.py)
from edgelabels.evaluate.driver import evaluate_model, evaluation_lines

EXAMPLES = """\
examples:
  edgelabels evaluate runs/cassettes                             # the run's test split
  edgelabels evaluate runs/cassettes --data photos/fresh --review-threshold 0.99
  edgelabels evaluate runs/cassettes/export --precision int8     # the exported ONNX model, as shipped

writes MODEL/evaluation/ (or --out): summary.json (Rekognition EvaluationSummary), metrics.json,
predictions.csv, evaluation-manifest.jsonl, plots/, gradcam/, review/, report.html, report.md"""


def add_arguments(parser) -> None:
    parser.epilog = EXAMPLES
    parser.add_argument("model", type=Path, help="run directory (model.keras) or exported model folder (model.onnx)")
    parser.add_argument("--data", default=None, metavar="SOURCE",
                        help="evaluate this source instead of the run's test split: a folder per label or a manifest "
                             "(a detector: also a YOLO folder or a COCO file; a U-Net: a folder with images/ + masks/)")
    parser.add_argument("--min-confidence", type=float, default=0.5, metavar="X",
                        help="also report label metrics at this confidence, 0-1 (default 0.5); for a U-Net, the "
                             "lung probability above which a pixel is lung")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="output folder (default MODEL/evaluation)")
    parser.add_argument("--batch-size", type=int, default=32, metavar="N", help="prediction batch size (default 32)")
    parser.add_argument("--precision", choices=("auto", "fp32", "int8"), default="auto",
                        help="exported models only: which ONNX file to evaluate (default auto: INT8 if exported)")
    # Options only some tasks take (a task that does not take one refuses it): grouped by task in --help.
    review = parser.add_argument_group("classifiers and multi-label classifiers")
    review.add_argument("--review-threshold", type=float, default=None, metavar="X",
                        help="copy images whose top confidence is below X (0-1) into review/ for a person; "
                             "multi-label: list in review/queue.csv the images with a label within X of its threshold")
    classifiers = parser.add_argument_group("classifiers")
    classifiers.add_argument("--review-accuracy", type=float, default=None, metavar="A",
                             help="choose the review threshold on the run's validation split, before the test images "
                                  "are seen: the lowest top confidence at which at least A of the accepted validation "
                                  "images are right (e.g. 0.996); replaces --review-threshold")
    classifiers.add_argument("--gradcam", type=int, default=4, metavar="N",
                             help="Grad-CAM panels per kind (wrong, right) for Keras runs; 0 for none (default 4)")
    unets = parser.add_argument_group("U-Nets")
    unets.add_argument("--overlays", type=int, default=None, metavar="N",
                       help="overlay images per kind (lowest Dice, highest) in the report (default 6)")


def run(args) -> int:
    result = evaluate_model(args.model, data=args.data, min_confidence=args.min_confidence,
                            review_threshold=args.review_threshold, out=args.out, batch_size=args.batch_size,
                            precision=args.precision, gradcam_per_kind=args.gradcam,
                            review_accuracy=args.review_accuracy, overlays=args.overlays)
    for line in evaluation_lines(result):
        print(line)
    return 0
