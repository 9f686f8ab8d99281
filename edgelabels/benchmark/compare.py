"""The side-by-side comparison, from arrays: both models scored by evaluate_arrays, plus latency and cost.

Nothing here talks to a model. Each side is (confidences (N, K), per-request latencies, its own
thresholds); the same true labels and the same metric code score both, so a difference in the
numbers is a difference between the models, not between two scoring programs.

Three operating points, because Rekognition has three:
- top label (MinConfidence 0, every label returned, the most confident one taken): accuracy,
  balanced accuracy, macro precision / recall / F1;
- assumed thresholds, Rekognition's definition (per label, the confidence that maximises that
  label's F1 on the test set), derived on this test set for each model alike;
- each model's shipped thresholds (what DetectCustomLabels returns with MinConfidence omitted):
  thresholds.json for the local model, the EvaluationSummary's for Rekognition when given.
"""

from __future__ import annotations

import math

import numpy as np

from edgelabels.artifacts import ExportDir
from edgelabels.errors import UserError
from edgelabels.evaluate.metrics import evaluate_arrays
from edgelabels.evaluate.thresholds import label_metrics, macro_mean

SIDES = ("local", "rekognition")
HOURS_PER_MONTH = 730  # AWS's pricing pages count a month as 730 hours


def latency_stats(seconds) -> dict:
    values = np.asarray(seconds, dtype=np.float64) * 1000.0
    if not len(values):
        return {"requests": 0, "p50_ms": None, "p95_ms": None, "mean_ms": None, "max_ms": None}
    return {"requests": int(len(values)), "p50_ms": float(np.percentile(values, 50)),
            "p95_ms": float(np.percentile(values, 95)), "mean_ms": float(values.mean()), "max_ms": float(values.max())}


def busy_seconds(intervals) -> float:
    """Length of the union of (start, duration) intervals: wall time with at least one request in flight.

    Gaps (a benchmark resumed the next day) do not count, and overlapping concurrent requests count once.
    """
    total, end = 0.0, -math.inf
    for start, duration in sorted(intervals):
        stop = start + duration
        if stop > end:
            total += stop - max(start, end)
            end = stop
    return total


def at_thresholds(y_true, probs, labels, thresholds: dict | None, source: str | None) -> dict:
    """Rekognition's label metrics at a model's own per-label thresholds (0-1), or unavailable."""
    if thresholds is None:
        return {"source": None, "thresholds": None, "precision": None, "recall": None, "f1": None, "per_label": None}
    rows = label_metrics(y_true, probs, [thresholds.get(label) for label in labels])
    return {"source": source, "thresholds": {label: thresholds.get(label) for label in labels},
            **{key: macro_mean(rows, key) for key in ("precision", "recall", "f1")},
            "per_label": [{"label": label, **row} for label, row in zip(labels, rows)]}


def top_label_per_label(y_true, probs, labels) -> list[dict]:
    """Per-label precision / recall / F1 of the top label (scikit-learn; None where undefined)."""
    from sklearn.metrics import precision_recall_fscore_support

    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, probs.argmax(axis=1), labels=list(range(len(labels))), zero_division=np.nan)
    return [{"label": label, "support": int(support[k]), "precision": _finite(precision[k]),
             "recall": _finite(recall[k]), "f1": _finite(f1[k]) if support[k] else None}
            for k, label in enumerate(labels)]


def side_report(y_true, probs, labels, *, latencies, thresholds, threshold_source, model_size_bytes,
                throughput) -> dict:
    metrics = evaluate_arrays(y_true, probs, labels, min_confidence=0.5)
    return {
        "top_label": {key: metrics[key] for key in
                      ("accuracy", "balanced_accuracy", "precision_macro", "recall_macro", "f1_macro")},
        "at_assumed_thresholds": {**metrics["at_assumed_thresholds"],
                                  "thresholds": {row["label"]: row["assumed_threshold"] for row in metrics["per_label"]}},
        "at_model_thresholds": at_thresholds(y_true, probs, labels, thresholds, threshold_source),
        "per_label_top": top_label_per_label(y_true, probs, labels),
        "latency": latency_stats(latencies),
        "throughput_images_per_s": throughput,
        "model_size_bytes": model_size_bytes,
        "metrics": metrics,  # the whole metrics.json the evaluation writes, for anyone who wants more
    }


def agreement(y_true, local_probs, remote_probs) -> dict:
    """How often the top labels agree, and McNemar's exact test on the images exactly one side gets right."""
    from scipy.stats import binomtest

    local_right = local_probs.argmax(axis=1) == y_true
    remote_right = remote_probs.argmax(axis=1) == y_true
    only_local, only_remote = int((local_right & ~remote_right).sum()), int((~local_right & remote_right).sum())
    same = local_probs.argmax(axis=1) == remote_probs.argmax(axis=1)
    discordant = only_local + only_remote
    return {
        "images": int(len(y_true)),
        "same_top_label": int(same.sum()),
        "same_top_label_fraction": float(same.mean()),
        "both_right": int((local_right & remote_right).sum()),
        "only_local_right": only_local,
        "only_rekognition_right": only_remote,
        "both_wrong": int((~local_right & ~remote_right).sum()),
        # Two-sided exact McNemar: under "equally accurate", who wins a discordant image is a coin flip.
        "mcnemar_p_value": float(binomtest(only_local, discordant, 0.5).pvalue) if discordant else 1.0,
    }


def disagreements(y_true, local_probs, remote_probs, labels, paths) -> list[dict]:
    """Images whose top labels differ: one side right first, then both wrong; most confident first."""
    rows = []
    for i in np.flatnonzero(local_probs.argmax(axis=1) != remote_probs.argmax(axis=1)):
        lk, rk = int(local_probs[i].argmax()), int(remote_probs[i].argmax())
        right = "local" if lk == y_true[i] else "rekognition" if rk == y_true[i] else "neither"
        rows.append({"path": str(paths[i]), "true": labels[y_true[i]], "right": right,
                     "local": {"label": labels[lk], "confidence": float(local_probs[i, lk])},
                     "rekognition": {"label": labels[rk], "confidence": float(remote_probs[i, rk])}})
    rows.sort(key=lambda r: (r["right"] == "neither", -max(r["local"]["confidence"], r["rekognition"]["confidence"])))
    return rows


def rekognition_cost(*, images: int, busy_s: float, training_hours: float | None, training_source: str | None,
                     inference_units: int, price_training: float, price_inference_unit_hour: float) -> dict:
    """Training hours x price, plus the running hours needed for the measured load (whole hours, at least 1)."""
    throughput = images / busy_s if busy_s > 0 else None
    serve_hours = max(1, math.ceil(busy_s / 3600)) if throughput else None
    inference = serve_hours * inference_units * price_inference_unit_hour if serve_hours else None
    training = training_hours * price_training if training_hours is not None else None
    per_hour = inference_units * price_inference_unit_hour
    return {
        "training_hours": training_hours, "training_hours_source": training_source,
        "price_training_per_hour": price_training, "training_cost": training,
        "inference_units": inference_units, "price_inference_unit_hour": price_inference_unit_hour,
        "measured_images": images, "busy_seconds": busy_s, "throughput_images_per_s": throughput,
        "running_hours_for_test_set": serve_hours, "inference_cost": inference,
        "total_cost": (training or 0.0) + inference if inference is not None else None,
        # What 1,000 images cost if the model were kept busy at the measured rate the whole hour.
        "cost_per_1000_images_fully_loaded": per_hour / (throughput * 3600) * 1000 if throughput else None,
        "running_cost_per_day": 24 * per_hour, "running_cost_per_month": HOURS_PER_MONTH * per_hour,
    }


def assumptions(cost: dict, concurrency: int | None) -> list[str]:
    at = f"at --concurrency {concurrency}" if concurrency else "as recorded"
    return [
        f"Rekognition bills each inference unit for every hour the model runs, used or not (${cost['price_inference_unit_hour']:.2f}"
        f" per unit-hour here) and training by the hour (${cost['price_training_per_hour']:.2f} here); both prices are "
        "options (--price-inference-unit-hour, --price-training), check your region's price list.",
        "Running hours for the test set: the time the measured requests kept the model busy, rounded up to whole "
        "hours (billing counts running hours), at least 1 hour; starting and stopping the model (minutes each) "
        "are not counted.",
        f"Throughput is what this benchmark achieved {at} from this machine, including the network; one inference "
        "unit may serve more with more concurrent clients (AWS: a unit's transactions per second depend on the model "
        "and image size).",
        "Local cost is measured compute time: one image per call, sequentially, in this process (decode, "
        "preprocessing and ONNX inference), on hardware you already run; no hourly price is assumed for it.",
        "Latency is per request: Rekognition's includes the network round trip and the upload of the image bytes; "
        "the local one includes decoding the image.",
    ]


def build_comparison(*, y_true, labels: list[str], paths: list, local_probs, remote_probs, local_latencies,
                     remote_latencies, remote_intervals, local_thresholds: dict, remote_thresholds: dict | None,
                     remote_threshold_source: str | None, local_model_size: int, cost_options: dict,
                     concurrency: int | None) -> dict:
    """comparison.json's core (the caller adds context, excluded images and the EvaluationSummary)."""
    y_true = np.asarray(y_true, dtype=np.int64)
    local_probs, remote_probs = np.asarray(local_probs, np.float64), np.asarray(remote_probs, np.float64)
    local_seconds = float(np.sum(local_latencies))
    busy = busy_seconds(remote_intervals)
    cost = rekognition_cost(images=len(remote_intervals), busy_s=busy, **cost_options)
    sides = {
        "local": side_report(y_true, local_probs, labels, latencies=local_latencies, thresholds=local_thresholds,
                             threshold_source=ExportDir.THRESHOLDS, model_size_bytes=local_model_size,
                             throughput=len(y_true) / local_seconds if local_seconds > 0 else None),
        "rekognition": side_report(y_true, remote_probs, labels, latencies=remote_latencies,
                                   thresholds=remote_thresholds, threshold_source=remote_threshold_source,
                                   model_size_bytes=None, throughput=cost["throughput_images_per_s"]),
    }
    return {
        "labels": list(labels),
        "scored_images": int(len(y_true)),
        "sides": sides,
        "agreement": agreement(y_true, local_probs, remote_probs),
        "disagreements": disagreements(y_true, local_probs, remote_probs, labels, paths),
        "cost": {"rekognition": cost,
                 "local": {"compute_seconds": local_seconds, "images": int(len(y_true)),
                           "images_per_s": sides["local"]["throughput_images_per_s"]}},
        "assumptions": assumptions(cost, concurrency),
    }


def _finite(value) -> float | None:
    return float(value) if np.isfinite(value) else None


def answered_by_both(samples, used: list[dict], local_problems: dict, test, notes: list) -> tuple[list, list]:
    """(indices of the test images both sides answered, [{"path", "side", "problem"}] for the rest): an image
    one side refused is left out of both sides' scores, so they are scored on the same images."""
    excluded, scored = [], []
    for i, (sample, record) in enumerate(zip(samples, used)):
        if record.get("error"):
            excluded.append({"path": str(sample.path), "side": "rekognition",
                             "problem": f"{record['error'].get('Code')}: {record['error'].get('Message', '')}"})
        elif i in local_problems:
            excluded.append({"path": str(sample.path), "side": "local", "problem": local_problems[i]})
        else:
            scored.append(i)
    if not scored:
        raise UserError(f"{test}: no test image was answered by both models (e.g. {excluded[0]['path']}: "
                        f"{excluded[0]['problem']})")
    if excluded:
        notes.append(f"{len(excluded)} images left out of both sides' scores because one side refused them "
                     "(listed under Left out)")
    return scored, excluded
