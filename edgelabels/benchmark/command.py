"""`edgelabels benchmark`: the same test images through the local model and a Rekognition model, scored alike.

The Rekognition side is live (boto3 against AWS with --rekognition-arn, or against any endpoint of
its protocol with --rekognition-endpoint, `edgelabels serve` included) or replayed from the JSONL a
live run recorded (--rekognition-responses), so a comparison can be re-run without paying for a
running model again. The local side is the exported ONNX model in the edge Predictor. Both become
confidence arrays over the local model's labels and go through the evaluation's metric code
(compare.py); report.py writes comparison.json / .md / .html into --out, replaced whole.
A detection export takes the same path to its answers and is scored by detection.py (boxes, per box).
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from datetime import datetime, timezone
from pathlib import Path

from edgelabels.errors import UserError

EXAMPLES = """\
examples:
  # live, against a RUNNING Rekognition model (the benchmark starts nothing and says how to)
  edgelabels benchmark --test data/test --local runs/cassettes/export \\
      --rekognition-arn arn:aws:rekognition:us-east-1:123456789012:project/cassettes/version/v1/1690000000000 \\
      --rekognition-summary EvaluationResultSummary-cassettes-v1.json --training-hours 1.2 --out bench/
  # offline again from what that run recorded (no calls, no cost)
  edgelabels benchmark --test data/test --local runs/cassettes/export \\
      --rekognition-responses bench/rekognition-responses.jsonl --out bench-again/
  # live against any server of the protocol, e.g. another `edgelabels serve`
  edgelabels benchmark --test data/test --local runs/a/export --rekognition-endpoint http://127.0.0.1:8080 \\
      --rekognition-arn ARN_PRINTED_BY_SERVE --out bench-serve/

writes DIR/comparison.json, comparison.md, comparison.html (self-contained) and
rekognition-responses.jsonl (one line per answered image, appended as answers arrive: a live run
that stops half-way is resumed by running the same command again, without asking twice); with a
detection export (--local) both sides' boxes are scored per box (IoU >= 0.5) and the images where
their TP/FP/FN counts differ are drawn into DIR/disagreements/"""


def add_arguments(parser) -> None:
    parser.epilog = EXAMPLES
    parser.add_argument("--test", required=True, metavar="SOURCE",
                        help="test images: a folder per label or a Ground Truth manifest; for a detection export, "
                             "a YOLO folder, a COCO .json or an object-detection manifest")
    parser.add_argument("--local", required=True, type=Path, metavar="MODEL_DIR",
                        help="exported model folder (RUN/export, written by `edgelabels export`)")
    parser.add_argument("--rekognition-arn", metavar="ARN", help="live: the model version ARN (ProjectVersionArn)")
    parser.add_argument("--region", metavar="R", help="AWS region of the model (default: the ARN's region)")
    parser.add_argument("--rekognition-endpoint", metavar="URL",
                        help="live, against this endpoint_url instead of AWS (any server of Rekognition's protocol)")
    parser.add_argument("--rekognition-responses", type=Path, metavar="FILE.jsonl",
                        help="offline: answers recorded by an earlier live run (no calls, no cost)")
    parser.add_argument("--rekognition-summary", type=Path, metavar="FILE",
                        help="Rekognition's EvaluationSummary JSON (either documented layout), shown beside ours; "
                             "its thresholds score Rekognition at its own operating point")
    parser.add_argument("--training-hours", type=float, metavar="H",
                        help="Rekognition training hours (default: the model's BillableTrainingTimeInSeconds when live)")
    parser.add_argument("--price-training", type=float, default=1.0, metavar="USD",
                        help="Rekognition price per training hour (default 1.0)")
    parser.add_argument("--price-inference-unit-hour", type=float, default=4.0, metavar="USD",
                        help="Rekognition price per inference-unit hour (default 4.0)")
    parser.add_argument("--concurrency", type=int, default=1, metavar="N",
                        help="live: DetectCustomLabels requests in flight (default 1: latency of one request alone)")
    parser.add_argument("--precision", choices=("auto", "fp32", "int8"), default="auto",
                        help="local ONNX file: auto = model.int8.onnx when exported (default auto)")
    parser.add_argument("--gallery", type=int, default=60, metavar="N",
                        help="at most N disagreeing images in the HTML gallery (default 60)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (replaced whole)")


def run(args) -> int:
    result = run_benchmark(
        test=args.test, local=args.local, out=args.out, rekognition_arn=args.rekognition_arn, region=args.region,
        endpoint=args.rekognition_endpoint, responses=args.rekognition_responses, summary=args.rekognition_summary,
        training_hours=args.training_hours, price_training=args.price_training,
        price_inference_unit_hour=args.price_inference_unit_hour, concurrency=args.concurrency,
        precision=args.precision, gallery=args.gallery)
    comparison = result["comparison"]
    if comparison.get("task") == "detection":
        return _print_detection(result)
    local, remote = comparison["sides"]["local"], comparison["sides"]["rekognition"]
    print(f"scored {comparison['scored_images']} images"
          + (f" ({len(comparison['excluded'])} left out: see comparison.md)" if comparison["excluded"] else ""))
    print(f"{'':34}{'local':>12}{'rekognition':>14}")
    rows = [("accuracy (top label)", local["top_label"]["accuracy"], remote["top_label"]["accuracy"], "%"),
            ("macro F1 (top label)", local["top_label"]["f1_macro"], remote["top_label"]["f1_macro"], "f"),
            ("F1 at assumed thresholds", local["at_assumed_thresholds"]["f1"], remote["at_assumed_thresholds"]["f1"], "f"),
            ("F1 at the model's thresholds", local["at_model_thresholds"]["f1"], remote["at_model_thresholds"]["f1"], "f"),
            ("latency p50 (ms)", local["latency"]["p50_ms"], remote["latency"]["p50_ms"], "1"),
            ("latency p95 (ms)", local["latency"]["p95_ms"], remote["latency"]["p95_ms"], "1")]
    for name, a, b, kind in rows:
        print(f"{name:34}{_show(a, kind):>12}{_show(b, kind):>14}")
    agree = comparison["agreement"]
    print(f"same top label on {agree['same_top_label_fraction']:.1%} of images; only local right {agree['only_local_right']},"
          f" only Rekognition right {agree['only_rekognition_right']} (McNemar p = {agree['mcnemar_p_value']:.3g})")
    cost = comparison["cost"]["rekognition"]
    if cost["total_cost"] is not None:
        print(f"Rekognition cost: ${cost['total_cost']:.2f} ({cost['running_hours_for_test_set']} running hour(s) x "
              f"{cost['inference_units']} unit(s)" + (f" + {cost['training_hours']:.2f} training hours" if
                                                     cost["training_hours"] is not None else "") +
              f"); local: {comparison['cost']['local']['compute_seconds']:.2f} compute seconds")
    if result["stop_hint"]:
        print(f"reminder: the Rekognition model is still RUNNING and billed ${cost['running_cost_per_day']:.2f} a day; "
              f"stop it when done: {result['stop_hint']}")
    print(f"wrote {result['out']}/ (open comparison.html)")
    return 0


def _print_detection(result: dict) -> int:
    comparison = result["comparison"]
    local, remote = comparison["sides"]["local"], comparison["sides"]["rekognition"]
    print(f"scored {comparison['scored_images']} images"
          + (f" ({len(comparison['excluded'])} left out: see comparison.md)" if comparison["excluded"] else ""))
    print(f"{'':34}{'local':>12}{'rekognition':>14}")
    rows = [("avg precision (assumed thr.)", "average_precision"), ("avg recall (assumed thr.)", "average_recall"),
            ("F1 (assumed thr.)", "f1")]
    for name, key in rows:
        print(f"{name:34}{_show(local['at_assumed_thresholds'][key], 'f'):>12}"
              f"{_show(remote['at_assumed_thresholds'][key], 'f'):>14}")
    print(f"{'COCO mAP@0.5':34}{_show(local['map_50'], 'f'):>12}{_show(remote['map_50'], 'f'):>14}")
    print(f"{'latency p50 (ms)':34}{_show(local['latency']['p50_ms'], '1'):>12}"
          f"{_show(remote['latency']['p50_ms'], '1'):>14}")
    beside = comparison.get("rekognition_summary")
    if beside:
        aws = beside["summary"]
        print(f"Rekognition's EvaluationSummary (its own test set, {beside['number_of_testing_images']} images): "
              f"AveragePrecision {_show(aws['average_precision'], 'f')}, AverageRecall "
              f"{_show(aws['average_recall'], 'f')}, F1 {_show(aws['f1'], 'f')}; at its thresholds here: "
              f"{_show(beside['rekognition_measured']['average_precision'], 'f')}, "
              f"{_show(beside['rekognition_measured']['average_recall'], 'f')}, "
              f"{_show(beside['rekognition_measured']['f1'], 'f')}")
    print(f"{len(comparison['disagreements'])} images where the TP/FP/FN counts differ"
          + (f" (drawn in {result['out']}/disagreements/)" if comparison["disagreements"] else ""))
    if result["stop_hint"]:
        cost = comparison["cost"]["rekognition"]
        print(f"reminder: the Rekognition model is still RUNNING and billed ${cost['running_cost_per_day']:.2f} a day; "
              f"stop it when done: {result['stop_hint']}")
    print(f"wrote {result['out']}/ (open comparison.html)")
    return 0


def _show(value, kind: str) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2%}" if kind == "%" else f"{value:.1f}" if kind == "1" else f"{value:.4f}"


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


def test_samples(source, labels: list[str]):
    from edgelabels.data.sources import load_dataset

    dataset = load_dataset(source)
    if not dataset.samples:
        raise UserError(f"{source}: no labelled test images")
    unknown = sorted({s.label for s in dataset.samples} - set(labels))
    if unknown:
        raise UserError(f"{source}: labels {unknown} are not among the local model's labels {labels}")
    return dataset


def read_keys(samples) -> list[str]:
    from edgelabels.benchmark.responses import image_key

    keys = []
    for sample in samples:
        try:
            keys.append(image_key(Path(sample.path).read_bytes()))
        except OSError as exc:
            raise UserError(f"{sample.path}: cannot read ({exc.strerror or exc})") from None
    return keys


def run_benchmark(*, test, local, out, rekognition_arn=None, region=None, endpoint=None, responses=None, summary=None,
                  training_hours=None, price_training=1.0, price_inference_unit_hour=4.0, concurrency=1,
                  precision="auto", gallery=60, client=None, live_options: dict | None = None,
                  progress: bool = True) -> dict:
    """The whole benchmark; `client` (a boto3 Rekognition client, e.g. under botocore's Stubber) replaces the
    one built from region/endpoint. Returns {"comparison", "out", "stop_hint"}.
    A detection export is benchmarked by benchmark/detection.py, with the same options."""
    import numpy as np

    from edgelabels.benchmark.detection import is_detection_export

    if is_detection_export(local):
        return detection_benchmark(
            test=test, local=local, out=out, rekognition_arn=rekognition_arn, region=region, endpoint=endpoint,
            responses=responses, summary=summary, training_hours=training_hours, price_training=price_training,
            price_inference_unit_hour=price_inference_unit_hour, concurrency=concurrency, precision=precision,
            gallery=gallery, client=client, live_options=live_options, progress=progress)

    from edgelabels import atomic
    from edgelabels.benchmark import compare, report
    from edgelabels.benchmark.responses import FILE_NAME, to_probabilities
    from edgelabels.runtime.predictor import Predictor

    check_options(rekognition_arn=rekognition_arn, endpoint=endpoint, responses=responses,
                  training_hours=training_hours, price_training=price_training,
                  price_inference_unit_hour=price_inference_unit_hour, concurrency=concurrency, gallery=gallery)
    out = check_output_folder(out)
    predictor = Predictor(local, precision=precision)
    labels = predictor.labels
    summary_doc = rekognition_summary(summary, labels) if summary is not None else None
    dataset = test_samples(test, labels)
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

    used = [recorded[key] for key in keys]
    unique = list({r["sha256"]: r for r in used}.values())  # a duplicated test image was asked once
    name = str(responses) if responses is not None else str(out / FILE_NAME)
    # Before the local pass: answers with labels the local model lacks cannot be compared at all.
    answered = [i for i, r in enumerate(used) if r.get("response") is not None]
    answered_probs, remote_notes = to_probabilities([used[i]["response"] for i in answered], labels, name)
    remote_row = dict(zip(answered, answered_probs))  # test image index -> Rekognition's confidences
    notes += remote_notes

    # -- the local side: one image per call, as a request would be ------------------------------
    local_probs, local_latencies, local_problems = predict_locally(predictor, [s.path for s in samples], progress)

    scored, excluded = compare.answered_by_both(samples, used, local_problems, test, notes)
    remote_probs = np.array([remote_row[i] for i in scored])

    index = {label: k for k, label in enumerate(labels)}
    y_true = np.array([index[samples[i].label] for i in scored])
    training_source = "--training-hours" if training_hours is not None else None
    billable = next((r.get("billable_training_seconds") for r in used if r.get("billable_training_seconds")), None)
    if training_hours is None and billable:
        training_hours, training_source = billable / 3600.0, "BillableTrainingTimeInSeconds (DescribeProjectVersions)"
    units = next((r.get("inference_units") for r in used if r.get("inference_units")), None) or 1
    recorded_concurrency = next((r.get("concurrency") for r in used if r.get("concurrency")), None)
    comparison = compare.build_comparison(
        y_true=y_true, labels=labels, paths=[samples[i].path for i in scored],
        local_probs=local_probs[scored], remote_probs=remote_probs,
        local_latencies=[local_latencies[i] for i in scored],
        remote_latencies=[r["latency_s"] for r in unique if r.get("response") is not None],
        remote_intervals=[(r["timestamp"], r.get("elapsed_s", r["latency_s"])) for r in unique],
        local_thresholds=predictor.thresholds,
        remote_thresholds=summary_doc.thresholds if summary_doc is not None else None,
        remote_threshold_source=f"EvaluationSummary {summary}" if summary_doc is not None else None,
        local_model_size=predictor.model_path.stat().st_size,
        cost_options={"training_hours": training_hours, "training_source": training_source, "inference_units": units,
                      "price_training": price_training, "price_inference_unit_hour": price_inference_unit_hour},
        concurrency=recorded_concurrency)
    if training_hours is None:
        notes.append("Rekognition training cost unknown: pass --training-hours H (the console shows the training "
                     "duration; DescribeProjectVersions' BillableTrainingTimeInSeconds when live)")
    comparison.update({
        "context": {
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "test": str(test), "test_images": len(samples),
            "local_model": str(predictor.model_path), "local_precision": predictor.precision,
            "rekognition_model": arn, "rekognition_mode": mode,
            "concurrency": recorded_concurrency,
        },
        "excluded": excluded,
        "rekognition_summary": report.summary_beside(summary_doc, str(summary), comparison) if summary_doc else None,
        "notes": notes,
    })

    with atomic.directory(out) as folder:
        atomic.write_json(folder / "comparison.json", comparison)
        report.write_markdown(folder / "comparison.md", comparison)
        report.write_html(folder / "comparison.html", comparison, gallery=gallery)
        write_responses(folder)
    return {"comparison": comparison, "out": out, "stop_hint": stop_hint}


def detection_benchmark(*, test, local, out, rekognition_arn, region, endpoint, responses, summary, training_hours,
                        price_training, price_inference_unit_hour, concurrency, precision, gallery, client,
                        live_options, progress) -> dict:
    """run_benchmark for a detection export: the same options and recorded answers, scored by benchmark/detection.py."""
    from edgelabels import atomic
    from edgelabels.benchmark import detection
    from edgelabels.benchmark.responses import FILE_NAME

    check_options(rekognition_arn=rekognition_arn, endpoint=endpoint, responses=responses,
                  training_hours=training_hours, price_training=price_training,
                  price_inference_unit_hour=price_inference_unit_hour, concurrency=concurrency, gallery=gallery)
    out = check_output_folder(out)
    detector, dataset, notes = detection.load_local(local, test, precision)
    summary_doc = rekognition_summary(summary, detector.labels) if summary is not None else None
    averages = detection.summary_averages(summary) if summary is not None else None
    samples = dataset.samples
    keys = read_keys(samples)
    recorded, arn, mode, stop_hint, write_responses = rekognition_answers(
        samples, keys, notes, responses=responses, out=out, arn=rekognition_arn, region=region, endpoint=endpoint,
        summary=summary, concurrency=concurrency, price_inference_unit_hour=price_inference_unit_hour,
        client=client, live_options=live_options, progress=progress)

    comparison = detection.score_and_write(
        detector=detector, samples=samples, used=[recorded[key] for key in keys],
        name=str(responses) if responses is not None else str(out / FILE_NAME), notes=notes, out=out, test=test,
        local=local, arn=arn, mode=mode, training_hours=training_hours, price_training=price_training,
        price_inference_unit_hour=price_inference_unit_hour, gallery=gallery, write_responses=write_responses,
        progress=progress, summary=summary_doc, summary_name=str(summary), summary_averages=averages)
    return {"comparison": comparison, "out": out, "stop_hint": stop_hint}


def rekognition_summary(path: Path, labels: list[str]):
    """Rekognition's EvaluationSummary (evaluate/summary.py reads either layout), refused when its labels are not
    the local model's: its thresholds would then score the wrong labels."""
    from edgelabels.evaluate.summary import read_summary

    summary = read_summary(path)
    if set(summary.labels) != set(labels):
        raise UserError(f"{path}: its labels {summary.labels} are not the local model's {labels}; "
                        "is it the summary of a model trained on other labels?")
    return summary


def rekognition_answers(samples, keys, notes: list, *, responses, out: Path, arn, region, endpoint, summary,
                        concurrency: int, price_inference_unit_hour, client, live_options, progress: bool):
    """The Rekognition side, for either task: recorded answers replayed, or live calls (recorded as they arrive
    into out/FILE_NAME). Returns (sha256 -> record, the model's ARN, how they were had, the live model's stop hint
    or None, write_responses(folder): the answers copied into the finished benchmark folder)."""
    from edgelabels import atomic
    from edgelabels.benchmark.responses import FILE_NAME

    stop_hint, records = None, None
    if responses is not None:
        records, recorded, arn = replayed_answers(responses, samples, keys, notes)
        mode = f"recorded answers replayed from {responses}"
    else:
        recorded, arn, stop_hint = live_answers(
            samples, keys, notes, out=out / FILE_NAME, arn=arn, region=region, endpoint=endpoint, summary=summary,
            concurrency=concurrency, price_inference_unit_hour=price_inference_unit_hour, client=client,
            live_options=live_options, progress=progress)
        mode = f"live, {endpoint}" if endpoint else f"live, Amazon Rekognition in {parse_region(arn)}"

    def write_responses(folder: Path) -> None:
        if responses is None:
            shutil.copyfile(out / FILE_NAME, folder / FILE_NAME)
        else:  # a self-contained folder: its comparison can be replayed from it
            atomic.write_bytes(folder / FILE_NAME, b"".join(json_line(r) for r in records))

    return recorded, arn, mode, stop_hint, write_responses


def replayed_answers(responses: Path, samples, keys, notes: list) -> tuple[list[dict], dict, str]:
    """(all records, sha256 -> record, the model's ARN) from a recording that answers every test image."""
    from edgelabels.benchmark.responses import by_image, read_records, single_arn

    records, partial = read_records(responses)
    arn = single_arn(records, str(responses))
    if partial:
        notes.append(f"{responses}: its last line was incomplete (a run interrupted while writing) and was ignored")
    recorded = by_image(records)
    missing = [s.path for s, key in zip(samples, keys) if key not in recorded]
    if missing:
        raise UserError(f"{responses}: no recorded answer for {len(missing)} of the {len(samples)} test images "
                        f"(e.g. {missing[0]}); run live to record them")
    return records, recorded, arn


def parse_region(arn: str) -> str:
    return arn.split(":")[3]


def live_answers(samples, keys, notes: list, *, out: Path, arn: str, region, endpoint, summary, concurrency: int,
                 price_inference_unit_hour: float, client, live_options, progress: bool) -> tuple[dict, str, str]:
    """(sha256 -> record, the model's ARN, the command that stops the model): asks only what `out` lacks."""
    from edgelabels.benchmark.clients import LiveRekognition, parse_version_arn, rekognition_client
    from edgelabels.benchmark.responses import ResponseLog, by_image, single_arn

    model = parse_version_arn(arn)
    if region and region != model.region:
        if not endpoint:
            raise UserError(f"--region {region}: the model {model.arn} lives in {model.region}")
        model = dataclasses.replace(model, region=region)  # another endpoint: the ARN's region is only a name
    client = client or rekognition_client(model.region, endpoint, concurrency)
    live = LiveRekognition(client, model, endpoint_url=endpoint, price_inference_unit_hour=price_inference_unit_hour,
                           **(live_options or {}))
    description = live.check_running()  # before any DetectCustomLabels call: nothing paid for a stopped model
    with ResponseLog(out) as log:
        if log.records and single_arn(log.records, str(log.path)) != model.arn:
            raise UserError(f"{log.path}: holds answers of another model ({log.records[0]['project_version_arn']}); "
                            "choose another --out")
        if log.dropped_partial:
            notes.append(f"{log.path}: an incomplete last line from an interrupted run was cut off")
        known = by_image(log.records)
        todo = {key: sample for sample, key in zip(samples, keys) if key not in known}  # duplicates asked once
        if known:
            print(f"edgelabels: {len(samples) - len(todo)} of {len(samples)} test images already answered in "
                  f"{log.path}; asking for the other {len(todo)}", file=sys.stderr)
        ask_live(live, log, [(sample, key) for key, sample in todo.items()], description, concurrency, endpoint,
                 progress)
        recorded = by_image(log.records)
    location = description.get("EvaluationResult", {}).get("Summary", {}).get("S3Object")
    if summary is None and location:
        notes.append(f"Rekognition's EvaluationSummary for this model is s3://{location.get('Bucket')}/"
                     f"{location.get('Name')}: download it and pass --rekognition-summary to score Rekognition "
                     "at its own thresholds")
    if live.throttled:
        notes.append(f"Rekognition throttled {live.throttled} requests; each was retried with exponential backoff")
    return recorded, model.arn, live.aws_command("stop-project-version", f"--project-version-arn {model.arn}")


def json_line(record: dict) -> bytes:
    import json

    return (json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n").encode("utf-8")


def ask_live(live, log, todo, description: dict, concurrency: int, endpoint, progress: bool) -> None:
    """DetectCustomLabels for each (sample, key) in `todo`, `concurrency` in flight; each answer logged at once."""
    from tqdm import tqdm

    from edgelabels.benchmark.responses import RECORD_VERSION

    units = description.get("MinInferenceUnits")
    billable = description.get("BillableTrainingTimeInSeconds")

    def ask(sample, key):
        data = Path(sample.path).read_bytes()
        answer = live.detect(data)
        log.append({
            "version": RECORD_VERSION, "image": str(sample.path), "sha256": key, "bytes": len(data),
            "project_version_arn": live.model.arn, "endpoint": endpoint, "min_confidence": 0,
            "timestamp": answer.timestamp, "latency_s": answer.latency_s, "elapsed_s": answer.elapsed_s,
            "attempts": answer.attempts, "request_id": answer.request_id,
            **({"response": answer.response} if answer.error is None else {"error": answer.error}),
            "concurrency": concurrency, "inference_units": units, "billable_training_seconds": billable,
        })

    if not todo:
        return
    pool = ThreadPoolExecutor(max_workers=concurrency)
    with tqdm(total=len(todo), unit="img", desc="rekognition", file=sys.stderr, disable=not progress) as bar:
        try:
            futures = [pool.submit(ask, sample, key) for sample, key in todo]
            for future in futures:
                future.add_done_callback(lambda _: bar.update(1))
            wait(futures, return_when=FIRST_EXCEPTION)
        finally:
            # On the first failure (or Ctrl-C) nothing more is sent; requests in flight finish and are recorded.
            pool.shutdown(wait=True, cancel_futures=True)
    for future in futures:
        if not future.cancelled() and future.exception() is not None:
            raise future.exception()


def predict_locally(predictor, paths, progress: bool):
    """(probabilities (N, K), per-image seconds, {index: problem}) with one image per call, after one warm-up."""
    import numpy as np
    from tqdm import tqdm

    from edgelabels.errors import ImageProblem

    probs = np.zeros((len(paths), len(predictor.labels)), dtype=np.float64)
    seconds = [0.0] * len(paths)
    problems = {}
    warmed = False
    for i, path in enumerate(tqdm(paths, unit="img", desc=f"local {predictor.precision}", file=sys.stderr,
                                  disable=not progress)):
        if not warmed:  # the first onnxruntime call allocates; a served model is warm, so is this one
            try:
                predictor.run(predictor.prepare(path)[None])
                warmed = True
            except ImageProblem:
                pass
        start = time.perf_counter()
        try:
            probs[i] = predictor.run(predictor.prepare(path)[None])[0]
        except ImageProblem as exc:
            problems[i] = exc.problem
            continue
        seconds[i] = time.perf_counter() - start
    return probs, seconds, problems
