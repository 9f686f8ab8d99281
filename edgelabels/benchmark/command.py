"""`edgelabels benchmark`: the same test images through the local model and a Rekognition model, scored alike.

The Rekognition side is live (boto3 against AWS with --rekognition-arn, or against any endpoint of
its protocol with --rekognition-endpoint, `edgelabels serve` included) or replayed from the JSONL a
live run recorded (--rekognition-responses), so a comparison can be re-run without paying for a
running model again. The local side is the exported ONNX model on the edge. This module parses and
prints; driver.py runs the benchmark, whatever the export's task, with that task's hooks
(classification.py, multilabel.py, detection.py).
"""

from __future__ import annotations

from pathlib import Path

from edgelabels.benchmark.driver import run_benchmark

EXAMPLES = """\
examples:
  # live, against a RUNNING Rekognition model (the benchmark starts nothing and says how to)
  edgelabels benchmark --test data/test --local runs/cassettes/export \\
      --rekognition-arn arn:aws:rekognition:us-east-1:123456789012:project/cassettes/version/v1/1690000000000 \\
      --rekognition-summary EvaluationResultSummary-cassettes-v1.json --training-hours 1.2 --out bench/
  # offline again from what that run recorded (no calls, no cost)
  edgelabels benchmark --test data/test --local runs/cassettes/export \\
      --rekognition-responses bench/rekognition-responses.jsonl --out bench-again/
  # live against any server of the protocol, e.g. another `edgelabels serve`
  edgelabels benchmark --test data/test --local runs/a/export --rekognition-endpoint http://127.0.0.1:8080 \\
      --rekognition-arn ARN_PRINTED_BY_SERVE --out bench-serve/

writes DIR/comparison.json, comparison.md, comparison.html (self-contained) and
rekognition-responses.jsonl (one line per answered image, appended as answers arrive: a live run
that stops half-way is resumed by running the same command again, without asking twice); with a
multi-label export every label is scored on its own at each side's thresholds (and the whole label set:
subset accuracy); with a detection export both sides' boxes are scored per box (IoU >= 0.5) and the
images where their TP/FP/FN counts differ are drawn into DIR/disagreements/; a lung U-Net export is
refused (Rekognition Custom Labels has no segmentation)"""


def add_arguments(parser) -> None:
    parser.epilog = EXAMPLES
    parser.add_argument("--test", required=True, metavar="SOURCE",
                        help="test images: a folder per label or a Ground Truth manifest (multi-label: an image in "
                             "several label folders, or a manifest giving it several labels); for a detection export, "
                             "a YOLO folder, a COCO .json or an object-detection manifest")
    parser.add_argument("--local", required=True, type=Path, metavar="MODEL_DIR",
                        help="exported model folder (RUN/export, written by `edgelabels export`)")
    parser.add_argument("--rekognition-arn", metavar="ARN", help="live: the model version ARN (ProjectVersionArn)")
    parser.add_argument("--region", metavar="R", help="AWS region of the model (default: the ARN's region)")
    parser.add_argument("--rekognition-endpoint", metavar="URL",
                        help="live, against this endpoint_url instead of AWS (any server of Rekognition's protocol)")
    parser.add_argument("--rekognition-responses", type=Path, metavar="FILE.jsonl",
                        help="offline: answers recorded by an earlier live run (no calls, no cost)")
    parser.add_argument("--rekognition-summary", type=Path, metavar="FILE",
                        help="Rekognition's EvaluationSummary JSON (either documented layout), shown beside ours; "
                             "its thresholds score Rekognition at its own operating point")
    parser.add_argument("--training-hours", type=float, metavar="H",
                        help="Rekognition training hours (default: the model's BillableTrainingTimeInSeconds when live)")
    parser.add_argument("--price-training", type=float, default=1.0, metavar="USD",
                        help="Rekognition price per training hour (default 1.0)")
    parser.add_argument("--price-inference-unit-hour", type=float, default=4.0, metavar="USD",
                        help="Rekognition price per inference-unit hour (default 4.0)")
    parser.add_argument("--concurrency", type=int, default=1, metavar="N",
                        help="live: DetectCustomLabels requests in flight (default 1: latency of one request alone)")
    parser.add_argument("--precision", choices=("auto", "fp32", "int8"), default="auto",
                        help="local ONNX file: auto = model.int8.onnx when exported (default auto)")
    parser.add_argument("--gallery", type=int, default=60, metavar="N",
                        help="at most N disagreeing images in the HTML gallery (default 60)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (replaced whole)")


def run(args) -> int:
    result = run_benchmark(
        test=args.test, local=args.local, out=args.out, rekognition_arn=args.rekognition_arn, region=args.region,
        endpoint=args.rekognition_endpoint, responses=args.rekognition_responses, summary=args.rekognition_summary,
        training_hours=args.training_hours, price_training=args.price_training,
        price_inference_unit_hour=args.price_inference_unit_hour, concurrency=args.concurrency,
        precision=args.precision, gallery=args.gallery)
    comparison = result["comparison"]
    print(f"scored {comparison['scored_images']} images"
          + (f" ({len(comparison['excluded'])} left out: see comparison.md)" if comparison["excluded"] else ""))
    print(f"{'':34}{'local':>12}{'rekognition':>14}")
    for line in result["hooks"].lines(comparison, result["out"]):
        print(line)
    cost = comparison["cost"]["rekognition"]
    if cost["total_cost"] is not None:
        print(f"Rekognition cost: ${cost['total_cost']:.2f} ({cost['running_hours_for_test_set']} running hour(s) x "
              f"{cost['inference_units']} unit(s)" + (f" + {cost['training_hours']:.2f} training hours" if
                                                     cost["training_hours"] is not None else "") +
              f"); local: {comparison['cost']['local']['compute_seconds']:.2f} compute seconds")
    if result["stop_hint"]:
        print(f"reminder: the Rekognition model is still RUNNING and billed ${cost['running_cost_per_day']:.2f} a day; "
              f"stop it when done: {result['stop_hint']}")
    print(f"wrote {result['out']}/ (open comparison.html)")
    return 0
