"""A version's evaluation, and two versions side by side.

    GET /console/projects/NAME/versions/VERSION/evaluation            the page (static/evaluation.js moves it)
    GET /console/projects/NAME/versions/VERSION/evaluation/data.json  {labels, refs, truth, probs}: every test image
    GET /console/projects/NAME/compare?a=V1&b=V2                      two versions' summaries and per-label tables

The evaluation is the one the trainer's pipeline wrote into the version's run (ctx.version_dir / run / evaluation:
summary.json, metrics.json, predictions.csv). predictions.csv names each image by the local file it was read from
(under the S3 root, or the service's copy of S3): the version's frozen test manifest maps it back to its
source-ref, so the page shows and sends the refs the datasets hold. The page recomputes thresholds in the browser
from the per-image confidences (6 decimals, as predictions.csv keeps them), so a slider costs no request.
"""

from __future__ import annotations

import csv
import json
import os
import threading
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from edgelabels.artifacts import EVALUATION_DIR
from edgelabels.console.kit import PREFIX, Refused, project_url, version_url
from edgelabels.console.thumbnails import thumbnail_url
from edgelabels.data import paths
from edgelabels.errors import UserError
from edgelabels.evaluate.evaluation import METRICS_FILE, SUMMARY_FILE
from edgelabels.evaluate.summary import parse_summary
from edgelabels.service.arns import parse_version_arn
from edgelabels.service.s3 import parse_s3_uri
from edgelabels.service.trainer import RUN
from edgelabels.service.versions import manifest_path

PREDICTIONS_FILE = "predictions.csv"
COVERAGE = 0.9  # the coverage slider's first place: accept answers at least 90% sure
MISTAKES_SHOWN = 60  # a detector's mistakes drawn on the page (the rest are counted)
CACHED = 8  # versions' per-image data kept in memory (a slider session re-reads nothing)
_cache: dict[Path, tuple[int, dict]] = {}
_cache_lock = threading.Lock()


class NoEvaluation(Exception):
    """The version has no evaluation to show (not trained, failed, or its files are gone): the one-line reason."""


def evaluation_dir(ctx, arn: str) -> Path:
    return ctx.version_dir(arn) / RUN / EVALUATION_DIR


def read_evaluation(ctx, described: dict) -> dict:
    """The version's summary (parsed) and metrics.json; NoEvaluation saying why there is none."""
    folder = evaluation_dir(ctx, described["ProjectVersionArn"])
    if not (folder / SUMMARY_FILE).is_file():
        status = described["Status"]
        why = ("it has not finished training" if status == "TRAINING_IN_PROGRESS" else
               "its training failed" if status == "TRAINING_FAILED" else "its evaluation files are missing")
        raise NoEvaluation(f"This version has no evaluation: {why} (status {status}).")
    try:
        summary = parse_summary(json.loads((folder / SUMMARY_FILE).read_text(encoding="utf-8")),
                                str(folder / SUMMARY_FILE))
        metrics = json.loads((folder / METRICS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, UserError) as exc:
        raise NoEvaluation(f"This version's evaluation cannot be read: {exc}") from None
    return {"folder": folder, "summary": summary, "metrics": metrics,
            "classifier": (folder / PREDICTIONS_FILE).is_file()}


def source_refs(ctx, arn: str) -> dict[str, str]:
    """Local image file (as the trainer read it) -> its s3:// source-ref, from the version's frozen test
    manifest."""
    root = ctx.s3.root if ctx.s3.root is not None else ctx.s3_cache
    refs = {}
    try:
        lines = manifest_path(ctx.version_dir(arn), "test").read_text(encoding="utf-8").splitlines()
    except OSError:
        return refs
    for line in lines:
        if not line.strip():
            continue
        ref = json.loads(line).get("source-ref", "")
        try:
            local = str(paths.s3_object(root, *parse_s3_uri(ref)))
        except (ValueError, TypeError):  # not an s3:// ref: the manifest named the file itself
            local = ref
        refs[local] = refs[os.path.realpath(local)] = ref  # the loader's path, or the file it links to
    return refs


def image_data(ctx, arn: str, labels: list[str]) -> dict:
    """{labels, refs, truth, probs} from predictions.csv, cached by the file's modification time."""
    path = evaluation_dir(ctx, arn) / PREDICTIONS_FILE
    stamp = path.stat().st_mtime_ns
    with _cache_lock:
        hit = _cache.get(path)
    if hit and hit[0] == stamp:
        return hit[1]
    refs = source_refs(ctx, arn)
    index = {label: k for k, label in enumerate(labels)}
    data = {"labels": labels, "refs": [], "truth": [], "probs": []}
    with open(path, newline="", encoding="utf-8") as file:
        rows = csv.reader(file)
        header = next(rows)
        if header[4:] != [f"confidence:{label}" for label in labels]:
            raise NoEvaluation(f"{path}: its confidence columns do not match the evaluation's labels")
        try:
            for row in rows:
                data["truth"].append(index[row[1]])
                data["probs"].append([float(value) for value in row[4:]])
                data["refs"].append(refs.get(row[0]) or refs.get(os.path.realpath(row[0]), row[0]))
        except (KeyError, ValueError, IndexError) as exc:
            raise NoEvaluation(f"{path}: line {rows.line_num} is not a prediction of this evaluation ({exc})") \
                from None
    with _cache_lock:
        if len(_cache) >= CACHED:
            _cache.pop(next(iter(_cache)))
        _cache[path] = (stamp, data)
    return data


def detector_mistakes(ctx, arn: str, labels: list[str]) -> list[dict]:
    """A detector's test images with a false or a missed box, worst first (most wrong boxes, then the most
    confident false one), from its evaluation manifest: each {ref, thumbnail, width, height, wrong, caption,
    boxes: [{kind: truth|hit|false|missed, label, left, top, width, height, title}]}, boxes in image pixels."""
    from edgelabels.evaluate.detection import EVALUATION_ATTRIBUTE, MANIFEST_FILE, TRAINING_ATTRIBUTE

    refs, found = source_refs(ctx, arn), []
    try:
        lines = (evaluation_dir(ctx, arn) / MANIFEST_FILE).read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    for line in filter(str.strip, lines):
        try:
            document = json.loads(line)
            truth, predicted = document[TRAINING_ATTRIBUTE], document[EVALUATION_ATTRIBUTE]
            objects = document[f"{EVALUATION_ATTRIBUTE}-metadata"]["objects"]
            boxes = [_box("truth", a, labels, "true") for a in truth["annotations"]]
            false = missed = 0
            worst = 0.0
            for a, meta in zip(predicted["annotations"], objects):
                details = meta["rekognition-custom-labels-evaluation-details"]
                kind = "hit" if details["is-true-positive"] else "missed" if details["is-false-negative"] else "false"
                false, missed = false + (kind == "false"), missed + (kind == "missed")
                if kind == "false":
                    worst = max(worst, meta["confidence"])
                boxes.append(_box(kind, a, labels, f"{kind} {meta['confidence']:.3f}"))
            path, size = document["source-ref"], truth["image_size"][0]
        except (ValueError, KeyError, TypeError, IndexError):  # not a line `evaluate` writes: not drawn
            continue
        if false or missed:
            ref = refs.get(path) or refs.get(os.path.realpath(path), path)
            found.append({"ref": ref, "thumbnail": thumbnail_url(ref, 128), "width": size["width"],
                          "height": size["height"], "boxes": boxes, "wrong": (false + missed, worst),
                          "caption": f"{false} false, {missed} missed"})
    return sorted(found, key=lambda m: m["wrong"], reverse=True)


def _box(kind: str, annotation: dict, labels: list[str], what: str) -> dict:
    k = annotation["class_id"]
    label = labels[k] if 0 <= k < len(labels) else str(k)
    return {"kind": kind, "label": label, "title": f"{label}: {what}",
            **{key: annotation[key] for key in ("left", "top", "width", "height")}}


def label_rows(summary) -> list[dict]:
    """The per-label table as Rekognition shows it (best F1 first). A slider starts at the assumed threshold
    rounded as predictions.csv rounds the confidences (6 decimals), so the image whose score it is still counts;
    a label with none (no test image) starts at 1."""
    return [{"label": r.label, "f1": r.f1, "precision": r.precision, "recall": r.recall, "threshold": r.threshold,
             "images": r.number_of_testing_images, "slider": 1.0 if r.threshold is None else round(r.threshold, 6)}
            for r in summary.label_results]


def confusion(metrics: dict) -> dict:
    matrix = metrics.get("confusion_matrix") or {}
    return {"labels": matrix.get("labels", []), "counts": matrix.get("counts", [])}


def better(sides: list[dict], labels: list[str]) -> dict:
    """label -> the higher F1 of two sides that differ ("" for the overall F1); absent where they tie or one has
    none."""
    if len(sides) != 2:
        return {}
    pairs = {"": [s["summary"].f1 for s in sides],
             **{label: [(s["rows"].get(label) or {}).get("f1") for s in sides] for label in labels}}
    return {key: max(pair) for key, pair in pairs.items() if None not in pair and pair[0] != pair[1]}


def routes(console) -> list:
    ctx = console.ctx

    def evaluation_page(session: str, name: str, version: str) -> Response:
        try:
            described = console.version(name, version)[1]
            found = read_evaluation(ctx, described)
        except (Refused, NoEvaluation) as exc:
            return console.message(version, str(exc), 404)
        summary, classifier = found["summary"], found["classifier"]
        base = version_url(name, version)
        config = {"data": f"{base}/evaluation/data.json", "review": f"{base}/review", "classifier": classifier,
                  "thumbnail": f"{PREFIX}/thumbnail", "image": f"{PREFIX}/image", "coverage": COVERAGE,
                  "entry": f"{project_url(name)}/entry"}
        mistakes = [] if classifier else detector_mistakes(ctx, described["ProjectVersionArn"], summary.labels)
        return console.page("evaluation.html", 200, session, name=name, version=version, base=base,
                            version_status=described["Status"], summary=summary, rows=label_rows(summary),
                            confusion=confusion(found["metrics"]), classifier=classifier, config=config,
                            mistakes=mistakes[:MISTAKES_SHOWN], more_mistakes=max(0, len(mistakes) - MISTAKES_SHOWN))

    async def evaluation(request: Request) -> Response:
        session = await console.session(request)
        if session is None:
            return console.locked_out()
        p = request.path_params
        return await console.run(evaluation_page, session, p["name"], p["version"])

    def data_answer(name: str, version: str) -> Response:
        try:
            described = console.version(name, version)[1]
            found = read_evaluation(ctx, described)
            if not found["classifier"]:
                raise NoEvaluation("This version's evaluation keeps no per-image confidences (a detector's is "
                                   "per box).")
            return console.json(image_data(ctx, described["ProjectVersionArn"], found["summary"].labels))
        except (Refused, NoEvaluation) as exc:
            return console.json({"message": str(exc)}, 404)

    async def data(request: Request) -> Response:
        if await console.session(request) is None:
            return console.json({"message": "Not signed in: open the console's start URL again."}, 401)
        p = request.path_params
        return await console.run(data_answer, p["name"], p["version"])

    def compare_page(session: str, name: str, a: str, b: str) -> Response:
        try:
            project = console.project(name)
        except Refused as exc:
            return console.message(name, str(exc), 404)
        described = console.all_pages("DescribeProjectVersions", {"ProjectArn": project["ProjectArn"]},
                                      "ProjectVersionDescriptions")
        names = [parse_version_arn(v["ProjectVersionArn"]).version for v in described
                 if (evaluation_dir(ctx, v["ProjectVersionArn"]) / SUMMARY_FILE).is_file()]
        if not (a or b) and len(names) >= 2:
            a, b = names[1], names[0]  # the newest two, the older on the left
        sides, message = [], ""
        for chosen in (a, b):
            if not chosen:
                continue
            try:
                found = read_evaluation(ctx, console.version(name, chosen)[1])
            except (Refused, NoEvaluation) as exc:
                message = f"{chosen}: {exc}"
                continue
            sides.append({"version": chosen, "url": version_url(name, chosen), "summary": found["summary"],
                          "rows": {r["label"]: r for r in label_rows(found["summary"])}})
        labels = sorted({label for side in sides for label in side["rows"]})
        return console.page("compare.html", 200 if not message else 404, session, name=name, names=names,
                            a=a, b=b, sides=sides, labels=labels, message=message, best=better(sides, labels))

    async def compare(request: Request) -> Response:
        session = await console.session(request)
        if session is None:
            return console.locked_out()
        q = request.query_params
        return await console.run(compare_page, session, request.path_params["name"], q.get("a", ""),
                                 q.get("b", ""))

    return [Route("/projects/{name}/versions/{version}/evaluation", evaluation, methods=["GET"]),
            Route("/projects/{name}/versions/{version}/evaluation/data.json", data, methods=["GET"]),
            Route("/projects/{name}/compare", compare, methods=["GET"])]

