"""Evaluate a classifier: predict a test set with a run (Keras) or an export (ONNX), then evaluation.py.

A run directory predicts with its Keras model through its stages (a lung U-Net first, if trained so)
and adds the Grad-CAM gallery; an export folder runs through the edge Predictor, so what is measured
is what ships. The run's own test split is evaluated unless `data` names another folder per label or
manifest. Everything after prediction is evaluation.py, which takes arrays only.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from edgelabels.artifacts import ExportDir, RunDir
from edgelabels.errors import UserError


def evaluate_classification(found: RunDir | ExportDir, *, data=None, out: Path, min_confidence: float = 0.5,
                            review_threshold: float | None = None, batch_size: int = 32, precision: str = "auto",
                            gradcam_per_kind: int = 4, progress: bool = True,
                            review_accuracy: float | None = None) -> dict:
    """Returns write_evaluation's dict + "speed" (+ "review_choice" with review_accuracy).

    review_accuracy: choose the review threshold on the run's validation split, before any test image is
    predicted: the lowest top confidence at which the validation images accepted are at least that share right
    (metrics.review_threshold_for)."""
    from edgelabels.evaluate.evaluation import check_output_folder, write_evaluation

    check_output_folder(out)  # before predicting, not after
    for name, value in (("--min-confidence", min_confidence), ("--review-threshold", review_threshold)):
        if value is not None and not 0 <= value <= 1:
            hint = f" (Rekognition's 0-100 scale? use {value / 100:g})" if 1 < value <= 100 else ""
            raise UserError(f"{name} must be a confidence within 0-1, got {value:g}{hint}")
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {batch_size}")
    if review_accuracy is not None and (review_threshold is not None or not 0 < review_accuracy <= 1):
        raise UserError("--review-accuracy takes an accuracy in (0, 1], e.g. 0.996, and replaces --review-threshold")
    if isinstance(found, RunDir):
        kind, predict, labels, spec, split, keras_model, chain = _keras_run(found, batch_size, progress)
        run = found
    else:
        kind, predict, labels, spec, keras_model, chain = _onnx_export(found, precision, batch_size, progress)
        run = found.run  # RUN/export/ sits inside its run: the run's split (test images, training count) is next door
        split = run.split if run is not None and run.has_split() else None

    choice = None
    if review_accuracy is not None:
        choice = _review_choice(run, split, labels, predict, review_accuracy, found)
        review_threshold = choice["threshold"]

    if data is not None:
        samples, described = _external_samples(data), str(data)
    elif split is not None:
        samples, described = split.test, f"test split of {run.dir}"
        if not samples:
            raise UserError(f"{found.dir}: the test split is empty; pass --data SOURCE to evaluate other images")
    else:
        raise UserError(f"{found.dir}: no run test split beside this export; pass --data SOURCE")
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
    context = {"title": f"Evaluation of {found.dir}", "model": kind, "data": f"{described} ({len(paths)} images)",
               "prediction speed": f"{speed['images_per_second']:.1f} images/s"}
    if choice is not None:
        context["review threshold"] = describe_review_choice(choice)
    result = write_evaluation(out, y_true=y_true, probs=probs, labels=labels,
                              paths=paths, run_id=str(found.dir),
                              number_of_training_images=len(split.train) if split is not None else 0,
                              min_confidence=min_confidence, review_threshold=review_threshold,
                              model=keras_model, spec=spec, gradcam_per_kind=gradcam_per_kind, context=context,
                              read=chain)
    return {**result, "speed": speed, "review_choice": choice}


def _review_choice(run, split, labels: list[str], predict, accuracy: float, found) -> dict:
    from edgelabels.evaluate.metrics import review_threshold_for

    if run is None or split is None or not split.val:
        raise UserError(f"{found.dir}: --review-accuracy needs the run's validation split (none beside this model); "
                        "give --review-threshold instead")
    index = {name: i for i, name in enumerate(labels)}
    probs = predict([s.path for s in split.val])
    return {**review_threshold_for([index[s.label] for s in split.val], probs, accuracy), "target": accuracy}


def describe_review_choice(choice: dict) -> str:
    got = choice["accepted_accuracy"]
    reached = f"{got:.2%} right, {choice['sent_to_human']:.1%} sent to a human" if got is not None else \
        "not reached at any threshold: every image goes to a human"
    return (f"{choice['threshold']:.4f}, chosen on the validation split ({choice['images']} images) as the lowest "
            f"top confidence with >= {choice['target']:.1%} of the accepted right ({reached} there)")


def _keras_run(run: RunDir, batch_size: int, progress: bool):
    from edgelabels.models.factory import keras_runner, load_model
    from edgelabels.runtime.runner import predict_files
    from edgelabels.runtime.stages import run_chain

    model = load_model(run.model_path)
    width = model.outputs[0].shape[-1]
    if width != len(run.labels):
        raise UserError(f"{run.model_path}: {width} outputs but {run.labels_path} names {len(run.labels)}")
    chain = run_chain(run) or None
    kind = f"Keras run ({run.model_path.name})" if chain is None else \
        f"Keras run ({run.model_path.name}) behind its stages: {chain.describe()}"
    runner = keras_runner(model)

    def predict(paths):
        if chain is not None:
            chain.precompute(paths, progress=progress)
        return predict_files(runner, paths, run.spec, chain, batch_size=batch_size, progress=progress,
                             desc="keras", width=len(run.labels))

    return kind, predict, run.labels, run.spec, run.split, model, chain


def _onnx_export(export: ExportDir, precision: str, batch_size: int, progress: bool):
    from edgelabels.runtime.predictor import Predictor

    predictor = Predictor(export.dir, precision=precision)
    kind = f"exported ONNX model ({predictor.model_path.name})"
    if predictor.chain:
        kind += f" behind its stages: {predictor.chain.describe()}"

    def predict(paths):
        return predictor.probabilities(paths, batch_size=batch_size, progress=progress)

    return kind, predict, predictor.labels, predictor.spec, None, None


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
