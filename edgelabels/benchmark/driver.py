"""The one benchmark driver: every task's benchmark runs here; a task supplies only its hooks (BenchmarkHooks).

run_benchmark: check the options, open the local export (its task comes from the export's layout, its hooks
from the task table's `benchmarking` piece), read the test images with their truth, get Rekognition's answers
(recorded, or live and recorded as they arrive: rekognition.py), answer every image locally through the edge
answer stream with one image per call (timed, as a request would be), turn both sides' DetectCustomLabels
answers into the task's scores with the same hook, score both alike, add latency, cost and context, and write
comparison.json / .md / .html (and the task's pictures) into --out, replaced whole. Like Ultralytics'
BaseValidator: one pipeline, the hooks a task overrides.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from edgelabels.benchmark.compare import PRF
from edgelabels.errors import UserError


@dataclass(frozen=True)
class BenchmarkHooks:
    """What differs per task (edgelabels.benchmark.{classification,multilabel,detection}:HOOKS)."""

    # (source, labels) -> Dataset whose samples carry the truth; UserError when it cannot be scored
    test_samples: Callable
    # (DetectCustomLabels answers, labels, name of their file) -> (per-image scores, notes, keys for
    # comparison.json); the same hook reads both sides, so both are scored from answers of one shape
    read_answers: Callable
    # (samples, labels, local scores, Rekognition scores, own={side: (thresholds or None, their source)},
    # records=the recorded lines) -> ({"sides": {side: metrics}, ...task keys}, draw(folder, gallery) or None)
    score: Callable
    cards: Callable  # comparison -> [(name, local, Rekognition)]: the report's headline
    # (page, comparison, gallery: at most this many pictures, None in the Markdown): the task's sections of the
    # report, before and after the shared ones (EvaluationSummary, cost, images left out)
    sections: Callable
    gallery: Callable  # where the two sides disagree
    lines: Callable  # (comparison, out folder) -> the lines `edgelabels benchmark` prints about the scores
    summary_keys: tuple[str, ...] = PRF  # the aggregates set beside Rekognition's EvaluationSummary
    summary_extras: Callable | None = None  # (summary path) -> aggregates the summary holds that Summary lacks
    title: str = ""  # after the report's title


def hooks_of(local) -> tuple:
    """(task, its BenchmarkHooks) from the export's layout; a task without a Rekognition counterpart is refused."""
    from edgelabels.artifacts import ExportDir
    from edgelabels.tasks import get_task

    export = ExportDir.load(local)
    task = get_task(export.task)
    if not task.benchmarking:  # the one refusal: nothing in Rekognition Custom Labels to compare with
        raise UserError(f"{export.dir}: a {task.noun} export has no Rekognition counterpart to benchmark against "
                        "(Rekognition Custom Labels has no segmentation)")
    return task, task.piece("benchmarking")


def scorable(source, dataset, found: set, labels: list[str], *, empty: str, what: str = "labels"):
    """The test set a task's test_samples read, refused in one line when it has no image (`empty` says what it
    lacks) or `found` (its truth's labels) names one the local model lacks."""
    if not dataset.samples:
        raise UserError(f"{source}: {empty}")
    unknown = sorted(found - set(labels))
    if unknown:
        raise UserError(f"{source}: {what} {unknown} are not among the local model's labels {labels}")
    return dataset


def check_options(*, rekognition_arn, endpoint, responses, training_hours, price_training, price_inference_unit_hour,
                  concurrency, gallery) -> None:
    if responses is not None and (rekognition_arn or endpoint):
        raise UserError("--rekognition-responses replays a recorded run: it does not go with --rekognition-arn or "
                        "--rekognition-endpoint")
    if endpoint and not rekognition_arn:
        raise UserError("--rekognition-endpoint needs --rekognition-arn: the model ARN that endpoint serves "
                        "(`edgelabels serve` prints it as ProjectVersionArn)")
    if responses is None and not rekognition_arn:
        raise UserError("say which Rekognition model to compare with: --rekognition-arn ARN (live, optionally with "
                        "--rekognition-endpoint URL) or --rekognition-responses FILE.jsonl (recorded)")
    for name, value in (("--training-hours", training_hours), ("--price-training", price_training),
                        ("--price-inference-unit-hour", price_inference_unit_hour)):
        if value is not None and not value >= 0:
            raise UserError(f"{name} {value}: must be 0 or more")
    if concurrency < 1:
        raise UserError(f"--concurrency {concurrency}: must be at least 1")
    if gallery < 0:
        raise UserError(f"--gallery {gallery}: must be 0 or more")


def check_output_folder(out: Path) -> Path:
    """--out is replaced whole: refuse a folder holding anything but an earlier benchmark."""
    from edgelabels import atomic
    from edgelabels.benchmark.responses import FILE_NAME

    return atomic.replaceable_folder(out, ("comparison.json", FILE_NAME), "a benchmark folder")


def read_keys(samples) -> list[str]:
    from edgelabels.benchmark.responses import image_key

    keys = []
    for sample in samples:
        try:
            keys.append(image_key(Path(sample.path).read_bytes()))
        except OSError as exc:
            raise UserError(f"{sample.path}: cannot read ({exc.strerror or exc})") from None
    return keys


def answer_locally(model, paths, progress: bool) -> tuple[list, list[float], dict]:
    """(DetectCustomLabels answers at MinConfidence 0, None where refused; per-image seconds; {index: problem}).

    Through the edge answer stream, one image per call after one warm-up (the first onnxruntime call
    allocates; a served model is warm), so each time is one request's: decoding, stages and the model."""
    from tqdm import tqdm

    from edgelabels.runtime.answers import answer_images

    def ask(path):
        answer, = answer_images(model, [path], batch_size=1, min_confidence=0)  # run to the end: nothing left open
        return answer

    answers, seconds, problems = [None] * len(paths), [0.0] * len(paths), {}
    warmed = False
    for i, path in enumerate(tqdm(paths, unit="img", desc=f"local {model.precision}", file=sys.stderr,
                                  disable=not progress)):
        warmed = warmed or ask(path).error is None
        start = time.perf_counter()
        answer = ask(path)
        if answer.error is not None:
            problems[i] = answer.error
            continue
        seconds[i] = time.perf_counter() - start
        answers[i] = answer.response
    return answers, seconds, problems


def run_benchmark(*, test, local, out, rekognition_arn=None, region=None, endpoint=None, responses=None, summary=None,
                  training_hours=None, price_training=1.0, price_inference_unit_hour=4.0, concurrency=1,
                  precision="auto", gallery=60, client=None, live_options: dict | None = None,
                  progress: bool = True) -> dict:
    """The whole benchmark, for any task with a Rekognition counterpart; `client` (a boto3 Rekognition client, e.g.
    under botocore's Stubber) replaces the one built from region/endpoint. Returns {"comparison", "out",
    "stop_hint" (the command that stops a live model, or None), "hooks"}."""
    from edgelabels import atomic
    from edgelabels.artifacts import ExportDir
    from edgelabels.benchmark import compare, report
    from edgelabels.benchmark.rekognition import rekognition_answers, rekognition_summary
    from edgelabels.benchmark.responses import FILE_NAME
    from edgelabels.runtime.answers import open_edge_model

    check_options(rekognition_arn=rekognition_arn, endpoint=endpoint, responses=responses,
                  training_hours=training_hours, price_training=price_training,
                  price_inference_unit_hour=price_inference_unit_hour, concurrency=concurrency, gallery=gallery)
    out = check_output_folder(out)
    task, hooks = hooks_of(local)
    model = open_edge_model(local, precision=precision)
    labels = list(model.labels)
    summary_doc = rekognition_summary(summary, labels) if summary is not None else None
    extras = hooks.summary_extras(summary) if summary is not None and hooks.summary_extras else None
    dataset = hooks.test_samples(test, labels)
    samples = dataset.samples
    keys = read_keys(samples)
    notes = []
    if dataset.problems:
        notes.append(f"{len(dataset.problems)} files in {test} were skipped by the dataset reader "
                     f"(e.g. {dataset.problems[0].path}: {dataset.problems[0].problem})")

    # -- the Rekognition side: recorded answers, or live calls (recorded as they arrive) ----------
    recorded, arn, mode, stop_hint, write_responses = rekognition_answers(
        samples, keys, notes, responses=responses, out=out, arn=rekognition_arn, region=region, endpoint=endpoint,
        summary=summary, concurrency=concurrency, price_inference_unit_hour=price_inference_unit_hour,
        client=client, live_options=live_options, progress=progress)
    used = [recorded[key] for key in keys]  # a test image's answer, duplicates included
    unique = list({r["sha256"]: r for r in used}.values())  # a duplicated test image was asked once
    answered = [i for i, r in enumerate(used) if r.get("response") is not None]
    name = str(responses) if responses is not None else str(out / FILE_NAME)
    remote_scores, remote_notes, remote_keys = hooks.read_answers([used[i]["response"] for i in answered], labels,
                                                                  name)
    remote_of = dict(zip(answered, remote_scores))
    notes += remote_notes

    # -- the local side: one image per call, as a request would be ------------------------------
    local_answers, local_seconds, local_problems = answer_locally(model, [s.path for s in samples], progress)
    scored, excluded = compare.answered_by_both(samples, used, local_problems, test, notes)
    local_scores, _, _ = hooks.read_answers([local_answers[i] for i in scored], labels, str(local))

    # -- both scored alike by the task's hook; then what every task shares ----------------------
    sources = {"local": (model.thresholds, ExportDir.THRESHOLDS),
               "rekognition": (summary_doc.thresholds, f"EvaluationSummary {summary}") if summary_doc else (None, None)}
    part, draw = hooks.score([samples[i] for i in scored], labels, local_scores, [remote_of[i] for i in scored],
                             own=sources, records=[used[i] for i in scored])
    training_source = "--training-hours" if training_hours is not None else None
    billable = next((r.get("billable_training_seconds") for r in used if r.get("billable_training_seconds")), None)
    if training_hours is None and billable:
        training_hours, training_source = billable / 3600.0, "BillableTrainingTimeInSeconds (DescribeProjectVersions)"
    if training_hours is None:
        notes.append("Rekognition training cost unknown: pass --training-hours H (the console shows the training "
                     "duration; DescribeProjectVersions' BillableTrainingTimeInSeconds when live)")
    units = next((r.get("inference_units") for r in used if r.get("inference_units")), None) or 1
    recorded_concurrency = next((r.get("concurrency") for r in used if r.get("concurrency")), None)
    intervals = [(r.get("timestamp", 0.0), r.get("elapsed_s", r["latency_s"])) for r in unique]
    cost = compare.rekognition_cost(images=len(intervals), busy_s=compare.busy_seconds(intervals),
                                    training_hours=training_hours, training_source=training_source,
                                    inference_units=units, price_training=price_training,
                                    price_inference_unit_hour=price_inference_unit_hour)
    local_latencies = [local_seconds[i] for i in scored]
    local_total = float(sum(local_latencies))
    sides = part["sides"]
    sides["local"].update(latency=compare.latency_stats(local_latencies),
                          throughput_images_per_s=len(scored) / local_total if local_total > 0 else None,
                          model_size_bytes=model.model_path.stat().st_size)
    sides["rekognition"].update(
        latency=compare.latency_stats([r["latency_s"] for r in unique if r.get("response") is not None]),
        throughput_images_per_s=cost["throughput_images_per_s"], model_size_bytes=None)
    comparison = {
        "task": task.name, "labels": labels, "scored_images": len(scored), **remote_keys, **part,
        "cost": {"rekognition": cost, "local": {"compute_seconds": local_total, "images": len(scored),
                                                "images_per_s": sides["local"]["throughput_images_per_s"]}},
        "assumptions": compare.assumptions(cost, recorded_concurrency),
        "context": {
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "test": str(test), "test_images": len(samples),
            "local_model": str(model.model_path), "local_precision": model.precision,
            "rekognition_model": arn, "rekognition_mode": mode, "concurrency": recorded_concurrency,
        },
        "excluded": excluded,
        "rekognition_summary": None,  # set below: it reads the sides scored above
        "notes": notes,
    }
    if summary_doc is not None:
        comparison["rekognition_summary"] = report.summary_beside(summary_doc, str(summary), comparison,
                                                                  keys=hooks.summary_keys, extras=extras)

    with atomic.directory(out) as folder:
        if draw is not None:
            draw(folder, gallery)
        atomic.write_json(folder / "comparison.json", comparison)
        report.write_markdown(folder / "comparison.md", comparison, hooks)
        report.write_html(folder / "comparison.html", comparison, hooks, gallery=gallery)
        write_responses(folder)
    return {"comparison": comparison, "out": out, "stop_hint": stop_hint, "hooks": hooks}
