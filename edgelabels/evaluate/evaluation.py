"""Write a whole evaluation folder from arrays: the one entry point `evaluate`, the benchmark and parity checks share.

Layout: summary.json (Rekognition EvaluationSummary), metrics.json, predictions.csv,
evaluation-manifest.jsonl, plots/*.png, gradcam/*.png (Keras models only), review/ (with a
review threshold), report.html, report.md. The folder is written next to its final place and
renamed into it whole, so a crash never leaves half an evaluation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

from edgelabels import atomic
from edgelabels.artifacts import ExportDir, RunDir
from edgelabels.errors import UserError
from edgelabels.evaluate.bootstrap import classification_intervals
from edgelabels.evaluate.metrics import check_arrays, evaluate_arrays
from edgelabels.evaluate.predictions import evaluation_manifest_lines, write_evaluation_manifest, write_predictions_csv
from edgelabels.evaluate.report import write_report
from edgelabels.evaluate.review import write_review_queue
from edgelabels.evaluate.summary import build_summary


SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.json"


def check_output_folder(out: str | Path) -> Path:
    """The folder is replaced whole: refuse one that holds anything but an earlier evaluation (of any task), and
    one that cannot be a folder at all (it, or a folder above it, is a file), before any work starts."""
    out = Path(out)
    existing = atomic.nearest_existing(out)
    if existing.exists() and not existing.is_dir():
        where = "is a file" if existing == out else f"cannot be made, {existing} is a file"
        raise UserError(f"{out}: {where}, not a folder; choose another --out")
    return atomic.replaceable_folder(out, (SUMMARY_FILE, METRICS_FILE), "an evaluation folder")


def run_recipe(found: RunDir | ExportDir) -> dict | None:
    """The recipe.json of the evaluated run (an export's: of the run it sits in), or None where the run had no
    `auto` key (or the export was copied out of its run)."""
    run = found if isinstance(found, RunDir) else found.run
    if run is None or not run.recipe_path.is_file():
        return None
    try:
        recipe = json.loads(run.recipe_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{run.recipe_path}: not valid JSON ({exc})") from None
    if not isinstance(recipe, dict) or not isinstance(recipe.get("choices"), list):
        raise UserError(f"{run.recipe_path}: not a recipe (no list of choices)")
    return recipe


def calibrator(evaluation) -> Callable[[Path], dict | None] | None:
    """What draws the calibration section (evaluate/calibration.py), given the plots folder; None where the
    evaluation carries no calibration."""
    if getattr(evaluation, "calibration", None) is None:
        return None
    from edgelabels.evaluate.calibration import calibration_entry

    return lambda plots: calibration_entry(evaluation, plots)


def write_figures(folder: Path, summary: dict, metrics: dict, calibrate) -> None:
    """summary.json and metrics.json into an evaluation folder being written, metrics with its calibration entry
    (whose reliability plot lands in folder/plots)."""
    calibration = calibration_entry_in(folder, calibrate)
    if calibration is not None:
        metrics["calibration"] = calibration
    atomic.write_json(folder / SUMMARY_FILE, summary)
    atomic.write_json(folder / METRICS_FILE, metrics)


def calibration_entry_in(folder: Path, calibrate: Callable[[Path], dict | None] | None) -> dict | None:
    """metrics["calibration"]: the calibration's entry, its plot drawn into folder/plots and named relative to
    the evaluation folder (the folder is renamed after, so an absolute path would point nowhere)."""
    if calibrate is None:
        return None
    (folder / "plots").mkdir(parents=True, exist_ok=True)
    entry = calibrate(folder / "plots")
    if entry is not None and entry.get("plot"):
        entry = {**entry, "plot": Path(entry["plot"]).resolve().relative_to(Path(folder).resolve()).as_posix()}
    return entry


def write_evaluation(out: str | Path, *, y_true, probs, labels: list[str], paths: list, run_id: str,
                     number_of_training_images: int = 0, min_confidence: float = 0.5,
                     review_threshold: float | None = None, model=None, spec=None, gradcam_per_kind: int = 4,
                     context: dict | None = None, read=None, recipe: dict | None = None,
                     calibrate: Callable[[Path], dict | None] | None = None) -> dict:
    """Evaluate arrays into folder `out`; `model` + `spec` (a Keras model) add the Grad-CAM gallery,
    its images read through `read` (a runtime.stages.Chain of a run trained behind stages, or None).
    `recipe` (run_recipe's) adds the report's recipe section; `calibrate` (calibrator's) its calibration section.

    Returns {"metrics", "summary", "review", "gallery", "gradcam_note", "out"} for the caller to print from.
    """
    from edgelabels.evaluate.plots import write_plots

    out = check_output_folder(out)
    y_true, probs = check_arrays(y_true, probs, labels)
    if len(paths) != len(y_true):
        raise ValueError(f"{len(paths)} paths for {len(y_true)} predictions")
    context = dict(context or {})
    metrics = evaluate_arrays(y_true, probs, labels, min_confidence=min_confidence)
    summary = build_summary(metrics, run_id=run_id, number_of_training_images=number_of_training_images)
    thresholds = [row["assumed_threshold"] for row in metrics["per_label"]]
    metrics["intervals"] = classification_intervals(y_true, probs, labels, thresholds)
    with atomic.directory(out) as folder:
        write_figures(folder, summary, metrics, calibrate)
        write_predictions_csv(folder / "predictions.csv", paths, y_true, probs, labels)
        write_evaluation_manifest(folder / "evaluation-manifest.jsonl",
                                  evaluation_manifest_lines(paths, y_true, probs, labels, thresholds))
        review = None
        if review_threshold is not None:
            review = write_review_queue(folder / "review", paths, y_true, probs, labels, review_threshold)
        plots = write_plots(folder / "plots", y_true, probs, labels, metrics)
        gallery = []
        if model is not None and gradcam_per_kind:
            try:
                from edgelabels.evaluate.gradcam import write_gallery

                gallery = write_gallery(folder / "gradcam", model, spec, paths, y_true, probs, labels,
                                        per_kind=gradcam_per_kind, read=read)
            except UserError as exc:
                context["gradcam"] = f"No Grad-CAM gallery: {exc}"
        elif model is None and "gradcam" not in context:
            context["gradcam"] = "No Grad-CAM gallery: it needs the Keras model (evaluate the run directory)."
        write_report(folder, metrics=metrics, summary=summary, plots=plots, review=review, gallery=gallery,
                     context=context, recipe=recipe)
    note = context.get("gradcam") if model is not None and gradcam_per_kind and not gallery else None
    return {"metrics": metrics, "summary": summary, "review": review, "gallery": gallery, "gradcam_note": note,
            "out": out}

