"""What every task's benchmark shares once both sides are scored: latency, Rekognition's cost, the images
both sides answered, McNemar's test.

Nothing here talks to a model or knows a task: the task's hooks (classification.py, multilabel.py,
detection.py) score both sides with the evaluation's metric code; the driver adds these.
"""

from __future__ import annotations

import math

import numpy as np

from edgelabels.errors import UserError

PRF = ("precision", "recall", "f1")  # the aggregates an EvaluationSummary gives a classifier
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


def mcnemar(local_right, remote_right) -> dict:
    """Both right, only one right, both wrong, and McNemar's exact test on the images exactly one side gets
    right (two-sided: under "equally good", who wins a discordant image is a coin flip)."""
    from scipy.stats import binomtest

    local_right, remote_right = np.asarray(local_right, bool), np.asarray(remote_right, bool)
    only_local, only_remote = int((local_right & ~remote_right).sum()), int((~local_right & remote_right).sum())
    discordant = only_local + only_remote
    return {
        "both_right": int((local_right & remote_right).sum()),
        "only_local_right": only_local,
        "only_rekognition_right": only_remote,
        "both_wrong": int((~local_right & ~remote_right).sum()),
        "mcnemar_p_value": float(binomtest(only_local, discordant, 0.5).pvalue) if discordant else 1.0,
    }


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
