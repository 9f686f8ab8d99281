"""`evaluate` for a detector: boxes scored like Rekognition (per box, at assumed thresholds) and like COCO (mAP).

MODEL is a detection run (model.keras through its in-graph decoding; its test split) or an export of
one (model.onnx through the edge Detector, so what is measured is what ships; the split of the run one
level up); `data` names a detection source (Ground Truth manifest, YOLO folder, COCO file) instead.
Everything after prediction is `write_detection_evaluation`, which takes samples and arrays only.
The hooks driver.py runs come first; the review queue and Grad-CAM are the classifier's and are not taken.

Layout of MODEL/evaluation/ (or `out`), written next to its final place and renamed in whole:
  summary.json                 Rekognition's EvaluationSummary, detection shape (see build_detection_summary)
  metrics.json                 everything: per label at the assumed thresholds and at --min-confidence,
                               a threshold table, COCO mAP@0.5 and mAP@0.5:0.95 (pycocotools), IoU, counts, per image
  evaluation-manifest.jsonl    one line per test image in Rekognition's detection snapshot layout
  plots/                       precision_recall.png, precision_recall_vs_threshold.png
  gallery/                     test images with ground truth and predicted boxes drawn, worst first
  report.html, report.md
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from edgelabels import atomic
from edgelabels.artifacts import ExportDir, RunDir
from edgelabels.errors import UserError
from edgelabels.evaluate import detection_metrics as dm
from edgelabels.evaluate.bootstrap import detection_intervals
from edgelabels.evaluate.driver import EvaluationHooks, OpenModel, evaluated_line, show
from edgelabels.evaluate.evaluation import METRICS_FILE, SUMMARY_FILE, calibration_entry_in, check_output_folder
from edgelabels.evaluate.predictions import EVALUATION_JOB, TRAINING_JOB
from edgelabels.evaluate.summary import VERSION

MANIFEST_FILE = "evaluation-manifest.jsonl"  # the classifier's name for the same file
TRAINING_ATTRIBUTE = "rekognition-custom-labels-training-0"
EVALUATION_ATTRIBUTE = "rekognition-custom-labels-evaluation"  # no "-0" in AWS's detection snapshot entry
GALLERY_IMAGES = 12


# ---------------------------------------------------------------- the evaluate verb's hooks (driver.py runs them)


def open_run(run: RunDir, precision: str, batch_size: int, progress: bool) -> OpenModel:
    """A detection run's Keras model with its decoding in the graph (what the export will hold)."""
    from edgelabels.models.detector import inference_model
    from edgelabels.models.factory import keras_runner, load_model
    from edgelabels.runtime.runner import predict_files

    max_detections = int((run.config.get("model") or {}).get("max_detections", 100))
    runner = keras_runner(inference_model(load_model(run.model_path), max_detections))

    if run.spec.tile_scale is not None:  # a tiled run answers whole frames by merged tiles, as its export will
        from edgelabels.runtime.tiles import predict_tiled_files

        def predict(paths, stopwatch=None):
            return predict_tiled_files(paths, run.spec, runner, batch_size=batch_size, progress=progress,
                                       desc="keras tiles")
    else:
        def predict(paths, stopwatch=None):
            return list(predict_files(runner, paths, run.spec, batch_size=batch_size, progress=progress,
                                      desc="keras"))

    return OpenModel(f"Keras run ({run.model_path.name}, decoding {max_detections} boxes in the graph)", run.labels,
                     predict)


def open_export(export: ExportDir, precision: str, batch_size: int, progress: bool) -> OpenModel:
    """An exported detector through the edge Detector, so what is measured is what ships."""
    from edgelabels.runtime.detector import Detector

    detector = Detector(export.dir, precision=precision)

    def predict(paths, stopwatch=None):
        return list(detector.detections(paths, batch_size=batch_size, progress=progress))

    return OpenModel(f"exported ONNX detector ({detector.model_path.name})", list(detector.labels), predict)


def read_samples(source, labels: list[str]):
    """--data: a Ground Truth manifest, a YOLO folder or a COCO file; YOLO class ids without a data.yaml are read
    as the model's labels."""
    from edgelabels.data.detection import load_detection_dataset

    return load_detection_dataset(source, class_names=tuple(labels))


def check_box_labels(samples, labels: list[str], described: str) -> None:
    """Refuse, before predicting, boxes of a label the model does not know."""
    unknown = sorted({box.label for s in samples for box in s.boxes} - set(labels))
    if unknown:
        raise UserError(f"{described}: box labels {unknown} are not among the model's labels {list(labels)}")


def write(out: Path, evaluation) -> dict:
    from edgelabels.evaluate.evaluation import calibrator, run_recipe

    context = evaluation.context(f"Object detection: evaluation of {evaluation.found.dir}")
    return write_detection_evaluation(out, samples=evaluation.samples, predictions=evaluation.predictions,
                                      labels=evaluation.model.labels, run_id=str(evaluation.found.dir),
                                      number_of_training_images=evaluation.number_of_training_images,
                                      min_confidence=evaluation.min_confidence, context=context,
                                      recipe=run_recipe(evaluation.found), calibrate=calibrator(evaluation))


# ---------------------------------------------------------------- scoring and writing


def write_detection_evaluation(out: str | Path, *, samples, predictions, labels: list[str], run_id: str,
                               number_of_training_images: int = 0, min_confidence: float = 0.5,
                               iou: float = dm.IOU, context: dict | None = None,
                               gallery_images: int = GALLERY_IMAGES, created: datetime | None = None,
                               recipe: dict | None = None, calibrate=None) -> dict:
    """Evaluate ready predictions into folder `out`. samples: data.dataset.Sample with boxes in pixels of the
    image as displayed; predictions: per sample an (N, 6) array [left, top, width, height, score, class_id],
    box in ratios of the image, class_id indexing `labels`. `recipe`, `calibrate`: as
    evaluation.write_evaluation's.

    Returns {"metrics", "summary", "out", "plots", "gallery"} for the caller to print from.
    """
    from edgelabels.data.boxes import displayed_size, to_ratios
    from edgelabels.evaluate.detection_report import draw_gallery, precision_recall_plots, write_report

    out = check_output_folder(out)
    if len(predictions) != len(samples):
        raise ValueError(f"{len(predictions)} prediction arrays for {len(samples)} images")
    if not samples:
        raise UserError("no images to evaluate")
    index = {name: k for k, name in enumerate(labels)}
    unknown = sorted({box.label for s in samples for box in s.boxes} - set(index))
    if unknown:
        raise UserError(f"box labels {unknown} are not among the model's labels {list(labels)}")
    sizes = [displayed_size(s.path) for s in samples]
    ground_truth = [(np.array([index[b.label] for b in s.boxes], np.int64),
                     np.array([to_ratios(b, w, h) for b in s.boxes], np.float64).reshape(-1, 4))
                    for s, (w, h) in zip(samples, sizes)]
    # Scored as served: the Detector clips boxes to the image before answering.
    predictions = [_clipped(dm.prediction_rows(p)) for p in predictions]

    metrics = detection_metrics(ground_truth, predictions, labels, sizes, min_confidence=min_confidence, iou=iou)
    thresholds = {row["label"]: row["assumed_threshold"] for row in metrics["per_label"]}
    metrics["intervals"] = detection_intervals(ground_truth, predictions, labels, thresholds, iou=iou)
    flags = [_flags(truth, pred, thresholds, labels, iou) for truth, pred in zip(ground_truth, predictions)]
    metrics["per_image"] = [{"path": str(s.path), "boxes": len(s.boxes), "tp": int(f["tp"].sum()),
                             "fp": int((f["kept"] & ~f["tp"]).sum()), "fn": int((~f["matched"]).sum())}
                            for s, f in zip(samples, flags)]
    metrics.update({k: v for k, v in (context or {}).items() if k in ("model", "data")})
    summary = build_detection_summary(metrics, run_id=run_id, number_of_training_images=number_of_training_images,
                                      end_time=created)
    lines = manifest_lines(samples, sizes, ground_truth, predictions, flags, labels, created=created)
    with atomic.directory(out) as folder:
        calibration = calibration_entry_in(folder, calibrate)
        if calibration is not None:
            metrics["calibration"] = calibration
        atomic.write_json(folder / SUMMARY_FILE, summary)
        atomic.write_json(folder / METRICS_FILE, _public(metrics))
        atomic.write_text(folder / MANIFEST_FILE, "".join(_json_line(line) for line in lines))
        plots = precision_recall_plots(folder / "plots", metrics)
        gallery = draw_gallery(folder / "gallery", samples, ground_truth, predictions, flags, labels,
                               metrics["per_image"], count=gallery_images)
        write_report(folder, metrics=metrics, summary=summary, plots=plots, gallery=gallery, context=context or {},
                     recipe=recipe)
        plots = {name: out / path.relative_to(folder) for name, path in plots.items()}  # where they are after
    return {"metrics": _public(metrics), "summary": summary, "out": out, "plots": plots, "gallery": gallery}


def detection_metrics(ground_truth, predictions, labels, sizes, *, min_confidence: float = 0.5,
                      iou: float = dm.IOU) -> dict:
    """metrics.json's content (per_image added by the caller). Per label: the assumed threshold, counts and
    P/R/F1 there and at min_confidence, a threshold table, COCO AP, and (kept in memory for the plots, not
    written) the whole curve under "_curve"."""
    thresholds = dm.assumed_thresholds(ground_truth, predictions, labels, iou)
    assumed = dm.label_metrics(ground_truth, predictions, labels, thresholds, iou)
    at_min = dm.label_metrics(ground_truth, predictions, labels, float(min_confidence), iou)
    scores = dm.label_scores(ground_truth, predictions, labels, iou)
    coco = dm.coco_map(ground_truth, predictions, labels, sizes)
    per_label = []
    for at, low, name in zip(assumed, at_min, labels):
        found = scores[name]
        per_label.append({
            "label": name, "images": at["images"], "boxes": at["boxes"], "predictions": len(found["scores"]),
            "assumed_threshold": at["threshold"],
            "at_assumed_threshold": _counts(at), "at_min_confidence": _counts(low),
            "by_threshold": [_counts(dm.counts_at(found["scores"], found["tp"], found["boxes"], t))
                             for t in dm.THRESHOLD_TABLE],
            "coco_ap_50": coco["per_label"][name]["ap_50"], "coco_ap_50_95": coco["per_label"][name]["ap_50_95"],
            "_curve": dm.curve(found["scores"], found["tp"], found["boxes"]),
        })
    notes = [f"{row['label']}: no ground-truth box in the test images, so no assumed threshold, recall or F1; "
             "its predictions count at --min-confidence only" for row in per_label if not row["boxes"]]
    notes += [f"{row['label']}: never predicted" for row in per_label if row["boxes"] and not row["predictions"]]
    return {
        "task": "detection", "iou": float(iou), "labels": list(labels),
        "number_of_images": len(ground_truth), "number_of_boxes": int(sum(len(g) for g, _ in ground_truth)),
        "number_of_negative_images": int(sum(len(g) == 0 for g, _ in ground_truth)),
        "min_confidence": float(min_confidence),
        "at_assumed_thresholds": dm.aggregate(assumed), "at_min_confidence": dm.aggregate(at_min),
        "map_50": coco["map_50"], "map_50_95": coco["map_50_95"],
        "coco": {"library": _pycocotools_version(), "max_detections": coco["max_detections"],
                 "interpolation": "101 recall points", "iou_thresholds": "0.50:0.05:0.95"},
        "per_label": per_label, "notes": notes,
    }


def build_detection_summary(metrics: dict, *, run_id: str, number_of_training_images: int,
                            end_time: datetime | None = None) -> dict:
    """The EvaluationSummary in the schema's nested layout, for detection.

    Per label: Threshold (0-1: the assumed threshold), Precision, Recall, F1Score counted per box there,
    NumberOfTestingImages = test images holding a box of that label. Aggregate (Rekognition's definition for
    detection): AveragePrecision and AverageRecall = unweighted means over labels of those per-box values,
    F1Score the mean of the per-label F1s; Precision and Recall repeat the two means so that readers of the
    classification layout (summary.read_summary) find them. No ConfusionMatrix: boxes have none. IoU (which
    Rekognition does not document) is ours, 0.5, written as EvaluationDetails.IoU with the matching rule.
    COCO's mAP is in metrics.json, not here.
    """
    end_time = end_time or datetime.now(timezone.utc)
    timestamp = end_time.astimezone(timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds")
    results = []
    for row in metrics["per_label"]:
        at = row["at_assumed_threshold"]
        results.append({"Label": row["label"], "NumberOfTestingImages": row["images"],
                        "Metrics": {"Threshold": row["assumed_threshold"], "Precision": at["precision"],
                                    "Recall": at["recall"], "F1Score": at["f1"]}})
    results.sort(key=lambda r: (r["Metrics"]["F1Score"] is None, -(r["Metrics"]["F1Score"] or 0.0)))
    aggregate = metrics["at_assumed_thresholds"]
    return {
        "Version": VERSION,
        "EvaluationDetails": {
            "ProjectVersionArn": run_id, "EvaluationEndTimestamp": timestamp, "Labels": list(metrics["labels"]),
            "NumberOfTrainingImages": int(number_of_training_images),
            "NumberOfTestingImages": metrics["number_of_images"],
            "IoU": metrics["iou"],
            "Matching": (f"a predicted box is a true positive when it overlaps an unmatched ground-truth box of the "
                         f"same label at IoU >= {metrics['iou']:g}, greedily by score within each image"),
        },
        "AggregatedEvaluationResults": {
            "Metrics": {"Precision": aggregate["average_precision"], "Recall": aggregate["average_recall"],
                        "F1Score": aggregate["f1"], "AveragePrecision": aggregate["average_precision"],
                        "AverageRecall": aggregate["average_recall"]},
        },
        "LabelEvaluationResults": results,
    }


def manifest_lines(samples, sizes, ground_truth, predictions, flags, labels, created: datetime | None = None) \
        -> list[dict]:
    """One line per image in the layout of AWS's detection snapshot entry: the ground truth as a Ground Truth
    object-detection attribute, the predictions as a second one whose `objects[i]` carry
    `rekognition-custom-labels-evaluation-details`. Listed are the boxes predicted at their label's assumed
    threshold (true or false positives), most confident first, then each missed ground-truth box (a false
    negative, confidence 0). Boxes in pixels, rounded, as Ground Truth writes them."""
    stamp = (created or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(tzinfo=None).isoformat()
    class_map = {str(k): name for k, name in enumerate(labels)}
    lines = []
    for sample, (width, height), (g_labels, g_boxes), pred, f in zip(samples, sizes, ground_truth, predictions,
                                                                     flags):
        image_size = [{"width": int(width), "height": int(height), "depth": 3}]  # the model reads RGB
        scale = np.array([width, height, width, height], np.float64)
        kept = np.flatnonzero(f["kept"])
        kept = kept[np.argsort(-pred[kept, 4], kind="stable")]
        found = [(_annotation(int(pred[i, 5]), pred[i, :4] * scale), float(pred[i, 4]),
                  _details(tp=bool(f["tp"][i]))) for i in kept]
        missed = [(_annotation(int(g_labels[j]), g_boxes[j] * scale), 0.0, _details(fn=True))
                  for j in np.flatnonzero(~f["matched"])]
        lines.append({
            "source-ref": str(sample.path),
            TRAINING_ATTRIBUTE: {"annotations": [_annotation(int(c), b * scale) for c, b in zip(g_labels, g_boxes)],
                                 "image_size": image_size},
            f"{TRAINING_ATTRIBUTE}-metadata": {
                "job-name": TRAINING_JOB, "class-map": class_map, "human-annotated": "yes",
                "objects": [{"confidence": 1.0} for _ in g_labels], "creation-date": stamp,
                "type": "groundtruth/object-detection"},
            EVALUATION_ATTRIBUTE: {"annotations": [a for a, _, _ in found + missed], "image_size": image_size},
            f"{EVALUATION_ATTRIBUTE}-metadata": {
                "confidence": round(max((c for _, c, _ in found), default=0.0), 6), "job-name": EVALUATION_JOB,
                "class-map": class_map, "human-annotated": "no",
                "objects": [{"confidence": round(c, 6), "rekognition-custom-labels-evaluation-details": d}
                            for _, c, d in found + missed],
                "creation-date": stamp, "type": "groundtruth/object-detection"},
        })
    return lines


def lines(result: dict) -> list[str]:
    """The lines `edgelabels evaluate` prints for a detector."""
    from edgelabels.evaluate.report import estimate

    metrics = result["metrics"]
    shown = []
    if "speed" in result:  # evaluate_model's result (write_detection_evaluation's alone has none)
        what = f"{metrics['number_of_images']} images, {metrics['number_of_boxes']} boxes"
        shown.append(evaluated_line(result, what))
    shown.append(f"Rekognition (IoU >= {metrics['iou']:g}, assumed thresholds): average precision "
                 f"{estimate(metrics, 'at_assumed_thresholds.average_precision')}, average recall "
                 f"{estimate(metrics, 'at_assumed_thresholds.average_recall')}, "
                 f"F1 {estimate(metrics, 'at_assumed_thresholds.f1')}")
    shown.append(f"COCO mAP@0.5 {estimate(metrics, 'map_50')}, mAP@0.5:0.95 {show(metrics['map_50_95'])}")
    shown.append(f"{'label':<20} {'boxes':>6} {'threshold':>9} {'precision':>9} {'recall':>7} {'F1':>7} {'AP@0.5':>7}")
    for row in metrics["per_label"]:
        a = row["at_assumed_threshold"]
        shown.append(f"{row['label']:<20} {row['boxes']:>6} {show(row['assumed_threshold']):>9} "
                     f"{show(a['precision']):>9} {show(a['recall']):>7} {show(a['f1']):>7} "
                     f"{show(row['coco_ap_50']):>7}")
    shown += [f"note: {note}" for note in metrics["notes"]]
    shown.append(f"wrote {result['out']}/ (open {Path(result['out']) / 'report.html'})")
    return shown


def _flags(truth, pred, thresholds: dict, labels, iou: float) -> dict:
    """Per prediction: kept (score >= its label's assumed threshold) and tp; per ground-truth box: matched
    by a kept prediction. Matching the kept boxes alone gives the same pairs (see detection_metrics)."""
    cut = np.array([np.inf if thresholds.get(name) is None else thresholds[name] for name in labels])
    classes = pred[:, 5].astype(np.int64)
    valid = (classes >= 0) & (classes < len(labels))
    kept = valid & (pred[:, 4] >= cut[np.clip(classes, 0, len(labels) - 1)])
    tp = np.zeros(len(pred), bool)
    tp_kept, matched = dm.match(truth[0], truth[1], pred[kept], iou)
    tp[kept] = tp_kept
    return {"kept": kept, "tp": tp, "matched": matched}


def _clipped(rows: np.ndarray) -> np.ndarray:
    from edgelabels.data.boxes import clip_ratios

    rows = rows.copy()
    for row in rows:
        row[:4] = clip_ratios(row[:4])
    return rows


def _details(tp: bool = False, fn: bool = False) -> dict:
    return {"version": 1, "ground-truth-labelling-jobs": [TRAINING_JOB], "is-true-positive": tp,
            "is-true-negative": False, "is-false-positive": not tp and not fn, "is-false-negative": fn,
            "is-present-in-ground-truth": tp or fn}


def _annotation(class_id: int, pixels) -> dict:
    left, top, width, height = (round(float(v)) for v in pixels)
    return {"class_id": class_id, "width": width, "top": top, "height": height, "left": left}


def _counts(row: dict) -> dict:
    return {k: row[k] for k in ("threshold", "precision", "recall", "f1", "tp", "fp", "fn")}


def _public(metrics: dict) -> dict:
    """metrics without the in-memory curves (JSON-ready)."""
    return {**metrics, "per_label": [{k: v for k, v in row.items() if not k.startswith("_")}
                                     for row in metrics["per_label"]]}


def _json_line(line: dict) -> str:
    import json

    return json.dumps(line) + "\n"


def _pycocotools_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"pycocotools {version('pycocotools')}"
    except PackageNotFoundError:
        return "pycocotools"


HOOKS = EvaluationHooks(open_run=open_run, open_export=open_export, samples=read_samples, check=check_box_labels,
                        write=write, lines=lines)
