"""`evaluate`'s one driver: every task's evaluation runs through `evaluate_model`; a task supplies hooks.

Like Ultralytics' BaseValidator.__call__, with one record per task (tasks.py names each task's
`EvaluationHooks` as its `evaluation` piece). The steps, the same for every task:
  1. check the common options, once, and refuse an option the task's hooks do not take
  2. open the model: a run directory (Keras) or an export folder (ONNX through the edge runtime, so what is
     measured is what ships)
  3. the samples: the run's test split (an export's run is the folder it sits in), or --data read by the task
  4. predict, timed; a run's predictions calibrated with RUN/calibration.json (fitted on the validation split the
     first time: evaluate/calibration.py), as its export will answer them
  5. score and write the folder (the task's hook: written next to its final place and renamed in whole)
Nothing prints: `evaluation_lines(result)` gives what `edgelabels evaluate` shows.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, replace
from typing import Callable

from edgelabels import atomic
from edgelabels.artifacts import ExportDir, RunDir, open_model_dir
from edgelabels.errors import UserError
from edgelabels.evaluate.calibration import check_for, run_calibration
from edgelabels.evaluate.evaluation import check_output_folder
from edgelabels.runtime.calibration import from_json, read_calibration
from edgelabels.tasks import get_task


@dataclass(frozen=True)
class OpenModel:
    """A run or an export, opened by its task's hook."""
    description: str  # what the report calls it: "Keras run (model.keras)", "exported ONNX model (model.onnx)"
    labels: list[str]
    predict: Callable  # (paths, stopwatch) -> the task's predictions for those images, in order
    drawn_with: object = None  # what the write hook draws with: a run's Keras model (Grad-CAM), a Segmenter
    spec: object = None  # a run's PreprocessSpec (Grad-CAM reads its images as the model did)
    chain: object = None  # the stages a classifier reads through (runtime.stages.Chain), or None


@dataclass(frozen=True)
class EvaluationHooks:
    """What differs per task. An option whose hook is absent is refused for that task by the driver."""
    open_run: Callable  # (RunDir, precision, batch_size, progress) -> OpenModel
    open_export: Callable  # (ExportDir, precision, batch_size, progress) -> OpenModel
    samples: Callable  # (--data source, model labels) -> data.dataset.Dataset: what --data names, read for this task
    check: Callable  # (samples, model labels, where they come from) -> None; UserError before predicting
    write: Callable  # (out, Evaluation) -> result dict ("metrics", "out", ...): score, write the folder
    lines: Callable  # (result) -> list[str]: what `edgelabels evaluate` prints
    data_hint: str = "SOURCE"  # what --data names, in messages
    review_queue: bool = False  # takes --review-threshold
    choose_review_threshold: Callable | None = None  # (model, split, accuracy, where) -> choice: --review-accuracy
    overlays: int | None = None  # takes `overlays` (images per kind in the report); its default


class Stopwatch:
    """Seconds spent predicting. The driver times the predict hook's call; a hook that yields its predictions as
    they are consumed (the U-Net's: a test set of large films is never held in memory whole) times its batches
    with `timing()` itself."""

    def __init__(self):
        self.seconds = 0.0

    @contextlib.contextmanager
    def timing(self):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds += time.perf_counter() - start

    def speed(self, images: int) -> dict:
        return {"images": images, "seconds": self.seconds,
                "images_per_second": images / self.seconds if self.seconds else 0.0}


@dataclass(frozen=True)
class Evaluation:
    """What the driver hands the task's write hook."""
    found: RunDir | ExportDir
    model: OpenModel
    samples: list  # data.dataset.Sample, in the order of predictions
    described: str  # "test split of RUN" or the --data source
    predictions: object  # what model.predict returned (possibly lazy: read `speed()` after consuming it)
    stopwatch: Stopwatch
    number_of_training_images: int
    min_confidence: float
    review_threshold: float | None
    review_choice: dict | None  # how --review-accuracy chose review_threshold, or None
    gradcam_per_kind: int
    overlays: int | None
    # evaluate.calibration.CalibrationCheck: the calibration `predictions` carry and the scores before it (what
    # calibration_entry reports); None for an export without calibration.json, or a task that is not calibrated
    calibration: object = None

    @property
    def paths(self) -> list:
        return [s.path for s in self.samples]

    def speed(self) -> dict:
        return self.stopwatch.speed(len(self.samples))

    def context(self, title: str) -> dict:
        """The report's header lines every task shows."""
        return {"title": title, "model": self.model.description,
                "data": f"{self.described} ({len(self.samples)} images)",
                "prediction speed": f"{self.speed()['images_per_second']:.1f} images/s"}


def evaluate_model(model_dir, *, data=None, min_confidence: float = 0.5, review_threshold: float | None = None,
                   out=None, batch_size: int = 32, precision: str = "auto", gradcam_per_kind: int = 4,
                   progress: bool = True, review_accuracy: float | None = None, overlays: int | None = None) -> dict:
    """Evaluate a run or an export with its task's hooks; writes MODEL/evaluation/ (or `out`) whole.

    review_accuracy (classifiers): choose the review threshold on the run's validation split, before any test
    image is predicted. overlays (U-Nets): images per kind (worst, best) drawn in the report.
    Returns the task's result ("task", "out", "metrics", "speed", ...)."""
    found = open_model_dir(model_dir)
    task = get_task(found.task)
    hooks: EvaluationHooks = task.piece("evaluation")
    _refuse_options_not_taken(hooks, task.noun, found, review_threshold=review_threshold,
                              review_accuracy=review_accuracy, overlays=overlays)
    _check_options(min_confidence, review_threshold, review_accuracy, batch_size, overlays)
    atomic.sweep(found.dir)  # what a killed evaluation (or save) left; a live writer's files stay
    out = check_output_folder(out if out is not None else found.evaluation_dir)  # before predicting, not after

    if isinstance(found, RunDir):
        run, model = found, hooks.open_run(found, precision, batch_size, progress)
        calibration, model = _calibrated(found, model)
    else:  # the edge runtime answers calibrated confidences already when the export carries calibration.json
        run, model = found.run, hooks.open_export(found, precision, batch_size, progress)
        calibration = read_calibration(found.calibration_path)
    split = run.split if run is not None and run.has_split() else None
    choice = None
    if review_accuracy is not None:
        choice = hooks.choose_review_threshold(model, split, review_accuracy, found.dir)
        review_threshold = choice["threshold"]
    samples, described = _samples(hooks, found, run, split, data, model.labels)
    hooks.check(samples, model.labels, described)

    stopwatch = Stopwatch()
    with stopwatch.timing():
        predictions = model.predict([s.path for s in samples], stopwatch)
    trained_on = len(split.train) if split is not None else 0
    evaluation = Evaluation(found=found, model=model, samples=samples, described=described, predictions=predictions,
                            stopwatch=stopwatch, number_of_training_images=trained_on, min_confidence=min_confidence,
                            review_threshold=review_threshold, review_choice=choice, gradcam_per_kind=gradcam_per_kind,
                            overlays=hooks.overlays if overlays is None else overlays,
                            calibration=check_for(calibration, predictions, found.task))
    result = hooks.write(out, evaluation)
    return {"task": found.task, **result, "out": out, "speed": evaluation.speed()}


def _calibrated(run: RunDir, model: OpenModel):
    """(the run's calibration, the model answering calibrated confidences): fitted on the validation split when
    the run has none yet, so the test split, --review-accuracy's choice and every threshold read calibrated
    confidences as the export will answer them."""
    described = run_calibration(run, model)
    if described is None:
        return None, model
    calibration = from_json(described, run.calibration_path)
    if not calibration.changes_scores:
        return calibration, model
    raw = model.predict
    return calibration, replace(model, predict=lambda paths, stopwatch=None: calibration.apply(raw(paths, stopwatch)))


def evaluation_lines(result: dict) -> list[str]:
    """What `edgelabels evaluate` prints for a result of evaluate_model."""
    return get_task(result["task"]).piece("evaluation").lines(result)


def evaluated_line(result: dict, what: str) -> str:
    """The first line every task prints: what was evaluated, and how fast it was predicted."""
    speed = result["speed"]
    return f"evaluated {what} ({speed['images_per_second']:.1f} images/s, {speed['seconds']:.1f} s predicting)"


def show(value) -> str:
    """A metric in printed lines: 4 decimals, or n/a where it is undefined."""
    return "n/a" if value is None else f"{value:.4f}"


def _refuse_options_not_taken(hooks: EvaluationHooks, noun: str, found, **given) -> None:
    taken = {"review_threshold": hooks.review_queue, "review_accuracy": hooks.choose_review_threshold is not None,
             "overlays": hooks.overlays is not None}
    for name, value in given.items():
        if value is not None and not taken[name]:
            raise UserError(f"{found.dir}: --{name.replace('_', '-')} does not apply to a {noun}")


def _check_options(min_confidence, review_threshold, review_accuracy, batch_size, overlays) -> None:
    for name, value in (("--min-confidence", min_confidence), ("--review-threshold", review_threshold)):
        if value is not None and not 0 <= value <= 1:
            hint = f" (Rekognition's 0-100 scale? use {value / 100:g})" if 1 < value <= 100 else ""
            raise UserError(f"{name} must be a confidence within 0-1, got {value:g}{hint}")
    if review_accuracy is not None and (review_threshold is not None or not 0 < review_accuracy <= 1):
        raise UserError("--review-accuracy takes an accuracy in (0, 1], e.g. 0.996, and replaces --review-threshold")
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {batch_size}")
    if overlays is not None and overlays < 0:
        raise UserError(f"--overlays must be 0 or more, got {overlays}")


def _samples(hooks: EvaluationHooks, found, run, split, data, labels) -> tuple[list, str]:
    """(samples, where they come from): --data read by the task's hook, else the run's test split."""
    if data is not None:
        dataset = hooks.samples(data, labels)
        if not dataset.samples:
            raise UserError(f"{data}: no images to evaluate")
        if dataset.problems:
            print(f"edgelabels: {len(dataset.problems)} files in {data} skipped (e.g. {dataset.problems[0].path}: "
                  f"{dataset.problems[0].problem})", file=sys.stderr)
        return dataset.samples, str(data)
    if split is None:
        where = "in this run" if run is found else "beside this export"
        raise UserError(f"{found.dir}: no run test split {where}; pass --data {hooks.data_hint}")
    if not split.test:
        raise UserError(f"{run.dir}: the test split is empty; pass --data {hooks.data_hint} to evaluate other images")
    return split.test, f"test split of {run.dir}"


def check_labels(samples, labels: list[str], described: str) -> None:
    """Refuse, before predicting, images labelled with a label the model does not know (matched by name)."""
    unknown = sorted({name for s in samples for name in s.labels} - set(labels))
    if unknown:
        raise UserError(f"{described}: labels {unknown} are not among the model's labels {labels}")

