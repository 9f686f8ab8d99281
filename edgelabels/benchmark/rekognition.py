"""The Rekognition side of a benchmark: recorded answers replayed, or live calls recorded as they arrive.

Either way the driver gets sha256 -> recorded line (responses.py's format) for every test image; a live run
appends each answer to DIR/rekognition-responses.jsonl as it arrives, so a run that stops half-way is resumed by
running the same command again, without asking twice. Also Rekognition's EvaluationSummary, checked against the
local model's labels.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path

from edgelabels.errors import UserError


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
