"""`edgelabels evaluate MODEL`: predict a test set with a run (Keras) or an export (ONNX), then evaluate.

MODEL is a run directory (model.keras) or an exported model folder (model.onnx, run through the
edge Predictor, so what is measured is what ships). The run's own test split is evaluated unless
--data names another folder per label or manifest. Everything after prediction is evaluation.py,
which takes arrays only.
"""

from __future__ import annotations

from pathlib import Path

from edgelabels import atomic
from edgelabels.tasks import get_task

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
                        help="evaluate this folder per label or manifest instead of the run's test split")
    parser.add_argument("--min-confidence", type=float, default=0.5, metavar="X",
                        help="also report label metrics at this confidence, 0-1 (default 0.5); for a U-Net, the "
                             "lung probability above which a pixel is lung")
    parser.add_argument("--review-threshold", type=float, default=None, metavar="X",
                        help="copy images whose top confidence is below X (0-1) into review/ for a person; multi-label: "
                             "list in review/queue.csv the images with a label within X of its threshold")
    parser.add_argument("--review-accuracy", type=float, default=None, metavar="A",
                        help="classifiers: choose the review threshold on the run's validation split, before the "
                             "test images are seen: the lowest top confidence at which at least A of the accepted "
                             "validation images are right (e.g. 0.996); replaces --review-threshold")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR", help="output folder (default MODEL/evaluation)")
    parser.add_argument("--batch-size", type=int, default=32, metavar="N", help="prediction batch size (default 32)")
    parser.add_argument("--precision", choices=("auto", "fp32", "int8"), default="auto",
                        help="exported models only: which ONNX file to evaluate (default auto: INT8 if exported)")
    parser.add_argument("--gradcam", type=int, default=4, metavar="N",
                        help="Grad-CAM panels per kind (wrong, right) for Keras runs; 0 for none (default 4)")


def run(args) -> int:
    extra = {} if args.review_accuracy is None else {"review_accuracy": args.review_accuracy}
    result = evaluate_model(args.model, data=args.data, min_confidence=args.min_confidence,
                            review_threshold=args.review_threshold, out=args.out, batch_size=args.batch_size,
                            precision=args.precision, gradcam_per_kind=args.gradcam, **extra)
    lines = get_task(result["task"]).piece("show_evaluation")(result)
    for line in lines or ():  # detection returns its lines; classification and segmentation print their own
        print(line)
    return 0


def show_segmentation(result: dict) -> None:
    metrics = result["metrics"]
    print(f"evaluated {metrics['images']} image/mask pairs: Dice {metrics['dice']:.4f}, IoU {metrics['iou']:.4f} "
          f"(median Dice {metrics['dice_median']:.4f}, worst {metrics['dice_min']:.4f})")
    print(f"wrote {result['out']}/ (metrics.json, overlays/, report)")


def show_classification(result: dict) -> None:
    metrics, speed = result["metrics"], result["speed"]
    at = metrics["at_assumed_thresholds"]
    print(f"evaluated {metrics['number_of_images']} images ({speed['images_per_second']:.1f} images/s, "
          f"{speed['seconds']:.1f} s predicting)")
    print(f"accuracy {metrics['accuracy']:.2%}, balanced {metrics['balanced_accuracy']:.2%}, "
          f"Rekognition F1 {_show(at['f1'])} (precision {_show(at['precision'])}, recall {_show(at['recall'])}), "
          f"ROC AUC {_show(metrics['roc_auc_macro'])}")
    print("accept if top confidence >=  accuracy of accepted  sent to a human")
    for row in metrics["coverage"]:
        accuracy = "-" if row["accuracy"] is None else f"{row['accuracy']:.2%}"
        print(f"{row['threshold']:>27g}  {accuracy:>20}  {row['discarded_fraction']:>15.1%}")
    if result.get("review_choice") is not None:
        from edgelabels.evaluate.classification import describe_review_choice

        print(f"review threshold {describe_review_choice(result['review_choice'])}")
    if result["review"] is not None:
        review = result["review"]
        print(f"review queue: {review['count']} images below {review['threshold']:g} in {result['out'] / 'review'}")
    for note in metrics["notes"] + ([result["gradcam_note"]] if result["gradcam_note"] else []):
        print(f"note: {note}")
    print(f"wrote {result['out']}/ (open report.html)")


def _show(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def evaluate_model(model_dir, *, data=None, min_confidence: float = 0.5, review_threshold: float | None = None,
                   out=None, batch_size: int = 32, precision: str = "auto", gradcam_per_kind: int = 4,
                   progress: bool = True, **classifier_only) -> dict:
    """Evaluate a run or an export with its task's evaluator (tasks.py); writes MODEL/evaluation/ (or out).
    classifier_only: review_accuracy (a classifier's review threshold chosen on its validation split)."""
    from edgelabels.artifacts import open_model_dir
    from edgelabels.errors import UserError

    found = open_model_dir(model_dir)
    if classifier_only and found.task != "classification":
        raise UserError(f"--review-accuracy applies to classifiers, not to a {found.task} model ({found.dir})")
    atomic.sweep(found.dir)  # what a killed evaluation (or save) left; a live writer's files stay
    out = Path(out) if out is not None else found.evaluation_dir
    return {"task": found.task} | get_task(found.task).piece("evaluate")(found, data=data, out=out, min_confidence=min_confidence,
                                                  review_threshold=review_threshold, batch_size=batch_size,
                                                  precision=precision, gradcam_per_kind=gradcam_per_kind,
                                                  progress=progress, **classifier_only)
