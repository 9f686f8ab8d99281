"""A classifier's evaluation hooks (driver.py runs them): open, read --data, write, lines.

A run directory predicts with its Keras model through its stages (a lung U-Net first, if trained so)
and adds the Grad-CAM gallery; an export folder runs through the edge Predictor, so what is measured
is what ships. Everything after prediction is evaluation.py, which takes arrays only. The multi-label
classifier opens and reads its models and --data the same way (`open_run`, `open_export`, `read_samples`).
"""

from __future__ import annotations

from pathlib import Path

from edgelabels.artifacts import ExportDir, RunDir
from edgelabels.errors import UserError
from edgelabels.evaluate.driver import EvaluationHooks, OpenModel, check_labels, evaluated_line


def open_run(run: RunDir, precision: str, batch_size: int, progress: bool) -> OpenModel:
    """A classifier run's Keras model, read through its stages; `precision` is an export's and is not used."""
    from edgelabels.models.factory import keras_runner, load_model
    from edgelabels.runtime.runner import predict_files
    from edgelabels.runtime.stages import run_chain

    model = load_model(run.model_path)
    width = model.outputs[0].shape[-1]
    if width != len(run.labels):
        raise UserError(f"{run.model_path}: {width} outputs but {run.labels_path} names {len(run.labels)}")
    chain = run_chain(run) or None
    description = f"Keras run ({run.model_path.name})" if chain is None else \
        f"Keras run ({run.model_path.name}) behind its stages: {chain.describe()}"
    runner = keras_runner(model)

    def predict(paths, stopwatch=None):
        if chain is not None:
            chain.precompute(paths, progress=progress)
        return predict_files(runner, paths, run.spec, chain, batch_size=batch_size, progress=progress,
                             desc="keras", width=len(run.labels))

    return OpenModel(description, run.labels, predict, drawn_with=model, spec=run.spec, chain=chain)


def open_export(export: ExportDir, precision: str, batch_size: int, progress: bool) -> OpenModel:
    """An exported classifier through the edge Predictor (its stages included)."""
    from edgelabels.runtime.predictor import Predictor

    predictor = Predictor(export.dir, precision=precision)
    description = f"exported ONNX model ({predictor.model_path.name})"
    if predictor.chain:
        description += f" behind its stages: {predictor.chain.describe()}"

    def predict(paths, stopwatch=None):
        return predictor.probabilities(paths, batch_size=batch_size, progress=progress)

    return OpenModel(description, predictor.labels, predict, spec=predictor.spec)


def read_samples(source, labels: list[str]):
    """--data: a folder per label or a manifest (labels are matched to the model's by name, in any order)."""
    from edgelabels.data.sources import load_dataset

    return load_dataset(source)


def choose_review_threshold(model: OpenModel, split, accuracy: float, where: Path) -> dict:
    """The lowest top confidence at which at least `accuracy` of the validation images accepted are right
    (metrics.review_threshold_for), chosen on the run's validation split before any test image is predicted."""
    from edgelabels.evaluate.metrics import review_threshold_for

    if split is None or not split.val:
        raise UserError(f"{where}: --review-accuracy needs the run's validation split (none beside this model); "
                        "give --review-threshold instead")
    index = {name: i for i, name in enumerate(model.labels)}
    probs = model.predict([s.path for s in split.val])
    return {**review_threshold_for([index[s.label] for s in split.val], probs, accuracy), "target": accuracy}


def describe_review_choice(choice: dict) -> str:
    got = choice["accepted_accuracy"]
    reached = f"{got:.2%} right, {choice['sent_to_human']:.1%} sent to a human" if got is not None else \
        "not reached at any threshold: every image goes to a human"
    return (f"{choice['threshold']:.4f}, chosen on the validation split ({choice['images']} images) as the lowest "
            f"top confidence with >= {choice['target']:.1%} of the accepted right ({reached} there)")


def write(out: Path, evaluation) -> dict:
    """evaluation.py's folder (summary, metrics, predictions, plots, Grad-CAM of a run, review queue, report)."""
    from edgelabels.evaluate.evaluation import calibrator, run_recipe, write_evaluation

    model = evaluation.model
    index = {name: i for i, name in enumerate(model.labels)}
    context = evaluation.context(f"Evaluation of {evaluation.found.dir}")
    if evaluation.review_choice is not None:
        context["review threshold"] = describe_review_choice(evaluation.review_choice)
    result = write_evaluation(out, y_true=[index[s.label] for s in evaluation.samples], probs=evaluation.predictions,
                              labels=model.labels, paths=evaluation.paths, run_id=str(evaluation.found.dir),
                              number_of_training_images=evaluation.number_of_training_images,
                              min_confidence=evaluation.min_confidence, review_threshold=evaluation.review_threshold,
                              model=model.drawn_with, spec=model.spec, gradcam_per_kind=evaluation.gradcam_per_kind,
                              context=context, read=model.chain, recipe=run_recipe(evaluation.found),
                              calibrate=calibrator(evaluation))
    return {**result, "review_choice": evaluation.review_choice}


def lines(result: dict) -> list[str]:
    """What `edgelabels evaluate` prints for a classifier."""
    from edgelabels.evaluate.report import estimate

    metrics = result["metrics"]
    shown = [evaluated_line(result, f"{metrics['number_of_images']} images"),
             f"accuracy {estimate(metrics, 'accuracy', '%')}, balanced {metrics['balanced_accuracy']:.2%}, "
             f"Rekognition F1 {estimate(metrics, 'at_assumed_thresholds.f1')} (precision "
             f"{estimate(metrics, 'at_assumed_thresholds.precision')}, recall "
             f"{estimate(metrics, 'at_assumed_thresholds.recall')}), ROC AUC {estimate(metrics, 'roc_auc_macro')}",
             "accept if top confidence >=  accuracy of accepted  sent to a human"]
    for row in metrics["coverage"]:
        accuracy = "-" if row["accuracy"] is None else f"{row['accuracy']:.2%}"
        shown.append(f"{row['threshold']:>27g}  {accuracy:>20}  {row['discarded_fraction']:>15.1%}")
    if result.get("review_choice") is not None:
        shown.append(f"review threshold {describe_review_choice(result['review_choice'])}")
    if result["review"] is not None:
        review = result["review"]
        shown.append(f"review queue: {review['count']} images below {review['threshold']:g} in "
                     f"{result['out'] / 'review'}")
    notes = metrics["notes"] + ([result["gradcam_note"]] if result["gradcam_note"] else [])
    shown += [f"note: {note}" for note in notes]
    shown.append(f"wrote {result['out']}/ (open report.html)")
    return shown


HOOKS = EvaluationHooks(open_run=open_run, open_export=open_export, samples=read_samples, check=check_labels,
                        write=write, lines=lines, review_queue=True, choose_review_threshold=choose_review_threshold)
