"""`edgelabels benchmark` for a detection export: both sides' boxes scored alike, and where they differ, drawn.

The local side is the exported detector (edge Detector) asked as Rekognition is asked, MinConfidence 0:
every box comes back. Both sides' DetectCustomLabels answers become per-image (N, 6) arrays
[left, top, width, height, score 0-1, class_id] over the local model's labels (boxes clipped to the
image, as the Detector answers), and go through the evaluation's detection metrics (IoU >= 0.5):
per-label precision / recall / F1 at each side's assumed threshold, Rekognition's aggregate
(unweighted means over labels) and COCO mAP@0.5. Boxes whose label the local model does not know
are counted and reported, not scored. "Disagreements" are the test images whose TP / FP / FN counts
(each side at its own assumed thresholds) differ most; each is drawn as two panels, ground truth
(blue) with each side's kept boxes (orange), into DIR/disagreements/.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from edgelabels.errors import UserError

SIDES = ("local", "rekognition")
DISAGREEMENTS = "disagreements"
PANEL_SIDE = 320  # px: smaller test images are drawn enlarged to this


def is_detection_export(model_dir) -> bool:
    from edgelabels.artifacts import ExportDir

    return ExportDir.load(model_dir).task == "detection"


def to_rows(responses: list[dict], labels: list[str], name: str) -> tuple[list[np.ndarray], Counter]:
    """DetectCustomLabels answers -> per image (N, 6) rows over `labels`, and {unknown label: boxes} left out.

    Confidence 0-100 on the wire, 0-1 here; BoundingBox ratios clipped to the image (an empty box is
    left out, as the Detector leaves it out). A label without Geometry (a classification answer) is an error.
    """
    from edgelabels.data.boxes import clip_ratios

    index = {label: k for k, label in enumerate(labels)}
    unknown: Counter = Counter()
    out = []
    for response in responses:
        rows = []
        for item in response.get("CustomLabels", []):
            label, confidence = item.get("Name"), item.get("Confidence")
            if not isinstance(confidence, (int, float)) or not 0 <= confidence <= 100:
                raise UserError(f"{name}: label {label!r} answered with confidence {confidence!r} (not 0-100)")
            box = (item.get("Geometry") or {}).get("BoundingBox")
            if not isinstance(box, dict):
                raise UserError(f"{name}: label {label!r} answered without Geometry.BoundingBox: the local model is "
                                "a detector, so compare it with a Rekognition object-detection model")
            if label not in index:
                unknown[str(label)] += 1
                continue
            try:
                ratios = clip_ratios((box["Left"], box["Top"], box["Width"], box["Height"]))
            except (KeyError, TypeError, ValueError):
                raise UserError(f"{name}: label {label!r} has a BoundingBox without numeric Left, Top, Width, "
                                f"Height ({box})") from None
            if ratios[2] > 0 and ratios[3] > 0:
                rows.append([*ratios, confidence / 100.0, index[label]])
        out.append(np.array(rows, np.float64).reshape(-1, 6))
    return out, unknown


def ground_truth_of(samples, labels):
    """(ground truth per image as (class ids, (M, 4) ratios), (width, height) per image)."""
    from edgelabels.data.boxes import displayed_size, to_ratios

    index = {label: k for k, label in enumerate(labels)}
    sizes = [displayed_size(s.path) for s in samples]
    truth = [(np.array([index[b.label] for b in s.boxes], np.int64),
              np.array([to_ratios(b, w, h) for b in s.boxes], np.float64).reshape(-1, 4))
             for s, (w, h) in zip(samples, sizes)]
    return truth, sizes


def test_samples(source, labels: list[str]):
    from edgelabels.data.detection import load_detection_dataset

    dataset = load_detection_dataset(source, class_names=labels)
    if not dataset.samples:
        raise UserError(f"{source}: no test images with boxes")
    unknown = sorted({b.label for s in dataset.samples for b in s.boxes} - set(labels))
    if unknown:
        raise UserError(f"{source}: box labels {unknown} are not among the local model's labels {labels}")
    return dataset


def image_counts(truth, pred, thresholds: dict, labels, iou: float) -> dict:
    """One image at per-label thresholds ({label: 0-1 or None}): kept rows, their TP flags, and TP / FP / FN."""
    from edgelabels.evaluate import detection_metrics as dm

    pred = dm.prediction_rows(pred)
    cut = np.array([np.inf if thresholds.get(name) is None else thresholds[name] for name in labels])
    kept = pred[:, 4] >= cut[pred[:, 5].astype(np.int64)] if len(pred) else np.zeros(0, bool)
    tp, _ = dm.match(truth[0], truth[1], pred[kept], iou)
    tps = int(tp.sum())
    return {"kept": pred[kept], "tp_flags": tp, "tp": tps, "fp": int(len(tp) - tps), "fn": int(len(truth[0]) - tps)}


def side_report(truth, predictions, labels, sizes, *, latencies, own_thresholds, model_size_bytes,
                throughput) -> dict:
    from edgelabels.evaluate import detection_metrics as dm
    from edgelabels.evaluate.detection import detection_metrics

    metrics = detection_metrics(truth, predictions, labels, sizes, min_confidence=0.5)
    per_label = [{key: value for key, value in row.items() if not key.startswith("_")}
                 for row in metrics["per_label"]]
    if own_thresholds is not None:
        own_rows = dm.label_metrics(truth, predictions, labels, own_thresholds)
        own = {"thresholds": {label: own_thresholds.get(label) for label in labels}, **dm.aggregate(own_rows),
               "per_label": own_rows}
    else:
        own = None
    return {
        "at_assumed_thresholds": {**metrics["at_assumed_thresholds"],
                                  "thresholds": {row["label"]: row["assumed_threshold"] for row in per_label}},
        "at_model_thresholds": own,
        "map_50": metrics["map_50"], "map_50_95": metrics["map_50_95"],
        "per_label": per_label,
        "latency": _latency(latencies),
        "throughput_images_per_s": throughput,
        "model_size_bytes": model_size_bytes,
        "metrics": {key: value for key, value in metrics.items() if key != "per_label"},
    }


def _latency(seconds):
    from edgelabels.benchmark.compare import latency_stats

    return latency_stats(seconds)


def disagreements(truth, local_pred, remote_pred, labels, paths, local_thresholds, remote_thresholds,
                  iou: float) -> list[dict]:
    """Images whose TP / FP / FN counts differ, most different first (sum of the absolute differences)."""
    rows = []
    for i, (t, lp, rp) in enumerate(zip(truth, local_pred, remote_pred)):
        a = image_counts(t, lp, local_thresholds, labels, iou)
        b = image_counts(t, rp, remote_thresholds, labels, iou)
        difference = sum(abs(a[k] - b[k]) for k in ("tp", "fp", "fn"))
        if difference:
            rows.append({"index": i, "path": str(paths[i]), "boxes": int(len(t[0])), "difference": difference,
                         "local": {k: a[k] for k in ("tp", "fp", "fn")},
                         "rekognition": {k: b[k] for k in ("tp", "fp", "fn")}})
    rows.sort(key=lambda r: (-r["difference"], r["path"]))
    return rows


def draw_disagreement(path, truth, sides: dict, labels):
    """Two panels side by side, each the image with one side's kept boxes (orange, captioned) and the ground
    truth (blue, drawn last so that it shows where a box sits exactly on it)."""
    from PIL import Image, ImageDraw, ImageFont

    from edgelabels.data.images import read_image
    from edgelabels.runtime.overlay import TRUTH, draw_boxes

    image, _notes = read_image(path)
    image = image.convert("RGB")
    if max(image.size) < PANEL_SIDE:  # a thumbnail-sized test image: enlarged so that captions fit
        scale = PANEL_SIDE / max(image.size)
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.NEAREST)
    panels = []
    for title, (rows, counts) in sides.items():
        picture = draw_boxes(image, [(f"{labels[int(round(r[5]))]} {r[4] * 100:.1f}%", tuple(r[:4]))
                                     for r in rows[::-1]])  # least confident first: the most confident on top
        picture = draw_boxes(picture, [("", tuple(box)) for box in truth[1]], TRUTH)  # truth on top: always seen
        font = ImageFont.load_default(size=max(10, round(picture.width / 22)))
        lines = [title, f"TP {counts['tp']}  FP {counts['fp']}  FN {counts['fn']}"]
        height = font.getbbox("TPFN")[3] + 4
        framed = Image.new("RGB", (picture.width, picture.height + height * len(lines) + 4), (255, 255, 255))
        framed.paste(picture, (0, height * len(lines) + 4))
        draw = ImageDraw.Draw(framed)
        for k, line in enumerate(lines):
            draw.text((3, 2 + k * height), line, fill=(0, 0, 0), font=font)
        panels.append(framed)
    gap = 6
    out = Image.new("RGB", (sum(p.width for p in panels) + gap * (len(panels) - 1), max(p.height for p in panels)),
                    (255, 255, 255))
    x = 0
    for panel in panels:
        out.paste(panel, (x, 0))
        x += panel.width + gap
    return out


def detect_locally(detector, paths, progress: bool):
    """(DetectCustomLabels answers at MinConfidence 0 (None where refused), per-image seconds, {index: problem})."""
    from tqdm import tqdm

    from edgelabels.errors import ImageProblem

    answers, seconds, problems = [None] * len(paths), [0.0] * len(paths), {}
    warmed = False
    for i, path in enumerate(tqdm(paths, unit="img", desc=f"local {detector.precision}", file=sys.stderr,
                                  disable=not progress)):
        if not warmed:  # the first onnxruntime call allocates; a served model is warm, so is this one
            try:
                detector.detect(path, min_confidence=0)
                warmed = True
            except ImageProblem:
                pass
        start = time.perf_counter()
        try:
            answers[i] = detector.detect(path, min_confidence=0)
        except ImageProblem as exc:
            problems[i] = exc.problem
            continue
        seconds[i] = time.perf_counter() - start
    return answers, seconds, problems


def summary_averages(path) -> dict:
    """AveragePrecision and AverageRecall of Rekognition's detection EvaluationSummary (None where absent).

    evaluate/summary.read_summary reads everything else of the file (and has checked it is a summary); its
    Summary has no field for these two detection-only aggregates, so they are picked from the same place it
    reads the others: `AggregatedEvaluationResults.Metrics`, or `AggregatedEvaluationResults` (flat layout).
    """
    import json

    aggregated = json.loads(Path(path).read_text(encoding="utf-8"))["AggregatedEvaluationResults"]
    metrics = aggregated.get("Metrics", aggregated)
    averages = {}
    for key, name in (("average_precision", "AveragePrecision"), ("average_recall", "AverageRecall")):
        value = metrics.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise UserError(f"{path}: malformed evaluation summary ({name} is {value!r}, not a number)")
        averages[key] = None if value is None else float(value)
    return averages


def load_local(local, test, precision: str):
    """(Detector, test Dataset with boxes over its labels, notes), before any Rekognition answer is read."""
    from edgelabels.runtime.detector import Detector

    detector = Detector(local, precision=precision)
    dataset = test_samples(test, detector.labels)
    notes = []
    if dataset.problems:
        notes.append(f"{len(dataset.problems)} problems in {test} noted by the dataset reader "
                     f"(e.g. {dataset.problems[0].path}: {dataset.problems[0].problem})")
    return detector, dataset, notes


def score_and_write(*, detector, samples, used: list[dict], name: str, notes: list, out: Path, test, local,
                    arn: str, mode: str, training_hours, price_training: float, price_inference_unit_hour: float,
                    gallery: int, write_responses, progress: bool, summary=None, summary_name: str = "",
                    summary_averages: dict | None = None) -> dict:
    """The comparison of a detection benchmark, written into `out` (replaced whole).

    used: the recorded answer of each test image (command.py gathers them, replayed or live, as for
    classification); write_responses(folder) writes rekognition-responses.jsonl into the new folder.
    summary: Rekognition's EvaluationSummary (evaluate.summary.Summary) or None; when given, Rekognition is also
    scored here at its thresholds, and the summary's own figures are shown beside (summary_averages: its
    AveragePrecision / AverageRecall).
    """
    from edgelabels import atomic
    from edgelabels.benchmark import compare, report
    from edgelabels.evaluate import detection_metrics as dm

    labels = detector.labels
    unique = list({r["sha256"]: r for r in used}.values())  # a duplicated test image was asked once
    answered = [i for i, r in enumerate(used) if r.get("response") is not None]
    remote_rows, unknown = to_rows([used[i]["response"] for i in answered], labels, name)
    remote_row = dict(zip(answered, remote_rows))
    if unknown:
        notes.append(f"Rekognition answered {sum(unknown.values())} box(es) with labels the local model does not "
                     f"have ({', '.join(f'{k}: {v}' for k, v in sorted(unknown.items()))}); they are not scored")

    local_answers, local_latencies, local_problems = detect_locally(detector, [s.path for s in samples], progress)
    scored, excluded = compare.answered_by_both(samples, used, local_problems, test, notes)
    local_rows, _ = to_rows([local_answers[i] for i in scored], labels, str(local))  # its own labels only
    remote_rows = [remote_row[i] for i in scored]
    kept_samples = [samples[i] for i in scored]
    truth, sizes = ground_truth_of(kept_samples, labels)

    training_source = "--training-hours" if training_hours is not None else None
    billable = next((r.get("billable_training_seconds") for r in used if r.get("billable_training_seconds")), None)
    if training_hours is None and billable:
        training_hours, training_source = billable / 3600.0, "BillableTrainingTimeInSeconds (DescribeProjectVersions)"
    units = next((r.get("inference_units") for r in used if r.get("inference_units")), None) or 1
    recorded_concurrency = next((r.get("concurrency") for r in used if r.get("concurrency")), None)
    remote_intervals = [(r.get("timestamp", 0.0), r.get("elapsed_s", r["latency_s"])) for r in unique]
    cost = compare.rekognition_cost(images=len(remote_intervals), busy_s=compare.busy_seconds(remote_intervals),
                                    training_hours=training_hours, training_source=training_source,
                                    inference_units=units, price_training=price_training,
                                    price_inference_unit_hour=price_inference_unit_hour)
    local_seconds = float(np.sum([local_latencies[i] for i in scored]))
    sides = {
        "local": side_report(truth, local_rows, labels, sizes, latencies=[local_latencies[i] for i in scored],
                             own_thresholds=detector.thresholds, model_size_bytes=detector.model_path.stat().st_size,
                             throughput=len(scored) / local_seconds if local_seconds > 0 else None),
        "rekognition": side_report(truth, remote_rows, labels, sizes,
                                   latencies=[r["latency_s"] for r in unique if r.get("response") is not None],
                                   own_thresholds=summary.thresholds if summary is not None else None,
                                   model_size_bytes=None,
                                   throughput=cost["throughput_images_per_s"]),
    }
    thresholds = {side: sides[side]["at_assumed_thresholds"]["thresholds"] for side in SIDES}
    paths = [s.path for s in kept_samples]
    different = disagreements(truth, local_rows, remote_rows, labels, paths, thresholds["local"],
                              thresholds["rekognition"], dm.IOU)
    if training_hours is None:
        notes.append("Rekognition training cost unknown: pass --training-hours H (the console shows the training "
                     "duration; DescribeProjectVersions' BillableTrainingTimeInSeconds when live)")
    comparison = {
        "task": "detection",
        "labels": list(labels),
        "scored_images": len(scored),
        "iou": dm.IOU,
        "sides": sides,
        "unknown_labels": dict(sorted(unknown.items())),
        "disagreements": different,
        "cost": {"rekognition": cost, "local": {"compute_seconds": local_seconds, "images": len(scored),
                                                "images_per_s": sides["local"]["throughput_images_per_s"]}},
        "assumptions": compare.assumptions(cost, recorded_concurrency),
        "context": {
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "test": str(test), "test_images": len(samples),
            "local_model": str(detector.model_path), "local_precision": detector.precision,
            "rekognition_model": arn, "rekognition_mode": mode, "concurrency": recorded_concurrency,
        },
        "excluded": excluded,
        "rekognition_summary": None,  # filled below: summary_beside reads the sides scored above
        "notes": notes,
    }

    if summary is not None:
        comparison["rekognition_summary"] = report.summary_beside(summary, summary_name, comparison,
                                                                  averages=summary_averages)
    with atomic.directory(out) as folder:
        drawn = folder / DISAGREEMENTS
        drawn.mkdir()
        for n, item in enumerate(different[:gallery], 1):
            i = item["index"]
            kept = {side: image_counts(truth[i], rows[i], thresholds[side], labels, dm.IOU)["kept"]
                    for side, rows in (("local", local_rows), ("rekognition", remote_rows))}
            picture = draw_disagreement(paths[i], truth[i], {"edgelabels": (kept["local"], item["local"]),
                                                             "Rekognition": (kept["rekognition"],
                                                                             item["rekognition"])}, labels)
            file = f"{n:03d}-{Path(paths[i]).stem}.png"
            picture.save(drawn / file)
            item["picture"] = f"{DISAGREEMENTS}/{file}"
        atomic.write_json(folder / "comparison.json", comparison)
        report.write_markdown(folder / "comparison.md", comparison)
        report.write_html(folder / "comparison.html", comparison, gallery=gallery)
        write_responses(folder)
    return comparison
