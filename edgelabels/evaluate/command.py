"""`edgelabels evaluate MODEL`: predict a test set with a run (Keras) or an export (ONNX), then evaluate.

MODEL is a run directory (model.keras) or an exported model folder (model.onnx, run through the
edge Predictor, so what is measured is what ships). The run's own test split is evaluated unless
--data names another folder per label or manifest. Everything after prediction is evaluation.py,
which takes arrays only.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from edgelabels.errors import UserError

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
                        help="copy images whose top confidence is below X (0-1) into review/ for a person")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR", help="output folder (default MODEL/evaluation)")
    parser.add_argument("--batch-size", type=int, default=32, metavar="N", help="prediction batch size (default 32)")
    parser.add_argument("--precision", choices=("auto", "fp32", "int8"), default="auto",
                        help="exported models only: which ONNX file to evaluate (default auto: INT8 if exported)")
    parser.add_argument("--gradcam", type=int, default=4, metavar="N",
                        help="Grad-CAM panels per kind (wrong, right) for Keras runs; 0 for none (default 4)")


def run(args) -> int:
    result = evaluate_model(args.model, data=args.data, min_confidence=args.min_confidence,
                            review_threshold=args.review_threshold, out=args.out, batch_size=args.batch_size,
                            precision=args.precision, gradcam_per_kind=args.gradcam)
    metrics, speed = result["metrics"], result["speed"]
    if metrics.get("task") == "segmentation":
        print(f"evaluated {metrics['images']} image/mask pairs: Dice {metrics['dice']:.4f}, IoU {metrics['iou']:.4f} "
              f"(median Dice {metrics['dice_median']:.4f}, worst {metrics['dice_min']:.4f})")
        print(f"wrote {result['out']}/ (metrics.json, overlays/, report)")
        return 0
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
    if result["review"] is not None:
        review = result["review"]
        print(f"review queue: {review['count']} images below {review['threshold']:g} in {result['out'] / 'review'}")
    for note in metrics["notes"] + ([result["gradcam_note"]] if result["gradcam_note"] else []):
        print(f"note: {note}")
    print(f"wrote {result['out']}/ (open report.html)")
    return 0


def _show(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def evaluate_model(model_dir, *, data=None, min_confidence: float = 0.5, review_threshold: float | None = None,
                   out=None, batch_size: int = 32, precision: str = "auto", gradcam_per_kind: int = 4,
                   progress: bool = True) -> dict:
    """Predict with a run or an export, write the evaluation folder; returns write_evaluation's dict + speed."""
    from edgelabels.evaluate.evaluation import check_output_folder, write_evaluation

    model_dir = Path(model_dir)
    out = Path(out) if out is not None else model_dir / "evaluation"
    from edgelabels.train.run import task_of

    if task_of(model_dir) == "segmentation":
        from edgelabels.evaluate.segmentation import evaluate_segmentation

        return evaluate_segmentation(model_dir, data=data, out=out, threshold=min_confidence, batch_size=batch_size,
                                     progress=progress)
    check_output_folder(out)  # before predicting, not after
    for name, value in (("--min-confidence", min_confidence), ("--review-threshold", review_threshold)):
        if value is not None and not 0 <= value <= 1:
            hint = f" (Rekognition's 0-100 scale? use {value / 100:g})" if 1 < value <= 100 else ""
            raise UserError(f"{name} must be a confidence within 0-1, got {value:g}{hint}")
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {batch_size}")
    read = None
    if (model_dir / "model.keras").is_file():
        kind, predict, labels, spec, split, keras_model, read = _keras_run(model_dir, batch_size, progress)
    elif (model_dir / "model.onnx").is_file():
        kind, predict, labels, spec, split, keras_model = _onnx_export(model_dir, precision, batch_size, progress)
        if (model_dir / "segment.json").is_file():
            kind += " chained after its lung U-Net (segment/model.onnx)"
    else:
        raise UserError(f"{model_dir}: neither a run directory (model.keras) nor an exported model (model.onnx)")

    if data is not None:
        samples, described = _external_samples(data), str(data)
    elif split is not None:
        run_folder = model_dir if keras_model is not None else model_dir.parent
        samples, described = split.test, f"test split of {run_folder}"
        if not samples:
            raise UserError(f"{model_dir}: the test split is empty; pass --data SOURCE to evaluate other images")
    else:
        raise UserError(f"{model_dir}: no run test split beside this export; pass --data SOURCE")
    unknown = sorted({s.label for s in samples} - set(labels))
    if unknown:
        raise UserError(f"{described}: labels {unknown} are not among the model's labels {labels}")
    index = {name: i for i, name in enumerate(labels)}
    paths = [s.path for s in samples]
    y_true = [index[s.label] for s in samples]

    start = time.perf_counter()
    probs = predict(paths)
    seconds = time.perf_counter() - start
    speed = {"images": len(paths), "seconds": seconds, "images_per_second": len(paths) / seconds if seconds else 0.0}
    context = {"title": f"Evaluation of {model_dir}", "model": kind, "data": f"{described} ({len(paths)} images)",
               "prediction speed": f"{speed['images_per_second']:.1f} images/s"}
    result = write_evaluation(out, y_true=y_true, probs=probs, labels=labels,
                              paths=paths, run_id=str(model_dir),
                              number_of_training_images=len(split.train) if split is not None else 0,
                              min_confidence=min_confidence, review_threshold=review_threshold,
                              model=keras_model, spec=spec, gradcam_per_kind=gradcam_per_kind, context=context,
                              read=read)
    return {**result, "speed": speed}


def _keras_run(model_dir: Path, batch_size: int, progress: bool):
    from edgelabels.train.run import Run, predict_paths

    run = Run.load(model_dir)
    model = run.load_model()
    width = model.outputs[0].shape[-1]
    if width != len(run.labels):
        raise UserError(f"{run.model_path}: {width} outputs but {run.dir / 'labels.json'} names {len(run.labels)}")
    read = run.image_reader()
    kind = "Keras run (model.keras)" if read is None else \
        f"Keras run (model.keras) on lungs only, masked by U-Net {read.segmenter.source}"

    def predict(paths):
        if read is not None:
            read.precompute(paths, progress=progress)
        return predict_paths(model, paths, run.spec, batch_size=batch_size, progress=progress, read=read)

    return kind, predict, run.labels, run.spec, run.split, model, read


def _onnx_export(model_dir: Path, precision: str, batch_size: int, progress: bool):
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    from edgelabels.data.splits import read_split
    from edgelabels.runtime.predictor import Predictor

    predictor = Predictor(model_dir, precision=precision)
    # RUN/export/ sits inside its run: the run's split (test images, training count) is next door.
    split = read_split(model_dir.parent / "splits") if (model_dir.parent / "splits" / "train.txt").is_file() else None

    def predict(paths):
        import numpy as np

        # Predictor.probabilities is prepare + run per batch; here the next batch is decoded on threads
        # while onnxruntime runs the current one, so decoding does not add to the model's time.
        rows = []
        with ThreadPoolExecutor(max_workers=2) as pool, \
                tqdm(total=len(paths), unit="img", desc=f"onnx {predictor.precision}", file=sys.stderr,
                     disable=not progress) as bar:
            pending = [pool.submit(predictor.prepare, path) for path in paths[:batch_size]]
            for start in range(0, len(paths), batch_size):
                batch = np.stack([job.result() for job in pending])
                following = paths[start + batch_size:start + 2 * batch_size]
                pending = [pool.submit(predictor.prepare, path) for path in following]
                rows.append(predictor.run(batch))
                bar.update(len(batch))
        return np.concatenate(rows)

    return f"exported ONNX model ({predictor.model_path.name})", predict, predictor.labels, predictor.spec, split, None


def _external_samples(source):
    """The --data samples (labels are matched to the model's by name, in any order)."""
    from edgelabels.data.sources import load_dataset

    dataset = load_dataset(source)
    if not dataset.samples:
        raise UserError(f"{source}: no labelled images to evaluate")
    if dataset.problems:
        print(f"edgelabels: {len(dataset.problems)} files in {source} skipped (e.g. {dataset.problems[0].path}: "
              f"{dataset.problems[0].problem})", file=sys.stderr)
    return dataset.samples
