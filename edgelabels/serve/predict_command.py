"""`edgelabels predict MODEL_DIR PATH...`: DetectCustomLabels JSON per image, with onnxruntime only.

One JSON line per image on stdout ({"Image": path, "CustomLabels": [...]}); with --out, also
<image name>.json per image (atomically), as the reference serverless pipeline wrote results beside
each upload; with --json-beside, <image name>.json next to the image itself. A bad image is one line
on stderr and the others still run; exit code 2 if any failed. `--watch DIR` processes each image
arriving in DIR exactly once (see watch.py).

The export's task picks the edge runtime (the task table's `edge`): a classifier answers labels, a
detector (runtime/detector.py) answers one entry per box with Geometry.BoundingBox; `--draw DIR`
writes each image with its boxes drawn. Images are listed and answered by runtime/answers.py, the one
answer stream that `--watch`, `--engine ray` and `serve` share. An --out or --draw folder that cannot be
written is one line before any image is read.

`--video SOURCE` answers a video file, a stream or a camera frame by frame instead (serve/video_predict.py: JSON
lines with timestamps, objects tracked and counted, --draw OUT.mp4).

`--engine ray` runs the same models on Ray Data instead (serve/ray_predict.py): `--input FOLDER|GLOB|FILE_LIST`,
Parquet and JSONL shards in --out, a rerun resumes where a killed job stopped. Ray is an optional extra.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from edgelabels import atomic
from edgelabels.serve import video_predict


def add_arguments(parser) -> None:
    parser.add_argument("model_dir", type=Path, help="exported model folder (RUN/export/ from `edgelabels export`)")
    parser.add_argument("paths", type=Path, nargs="*", metavar="PATH", help="images or folders of images")
    parser.add_argument("--out", type=Path, help="write <image name>.json per image into this folder "
                        "(with --watch: default DIR/results; with --video: a JSONL file, appended)")
    parser.add_argument("--json-beside", action="store_true",
                        help="write <image name>.json next to each image (the bee pipeline's layout)")
    parser.add_argument("--draw", type=Path, metavar="DIR",
                        help="detectors: write a copy of each image into DIR with its boxes drawn (label + confidence); "
                        "with --video: a video file (OUT.mp4) of the sampled frames")
    parser.add_argument("--min-confidence", type=float, metavar="X",
                        help="0-100; omitted: each label's assumed threshold applies; 0: every label is returned")
    parser.add_argument("--max-results", type=int, metavar="N",
                        help="at most N labels (a detector: boxes) per image, most confident first")
    parser.add_argument("--threads", type=int, metavar="N", help="onnxruntime threads (default: one per core; --engine ray: each actor's share of the CPUs)")
    parser.add_argument("--batch-size", type=int, default=32, metavar="N", help="images per model call (default 32)")
    parser.add_argument("--precision", choices=("auto", "fp32", "int8"), default="auto",
                        help="auto (default): INT8 when the export has model.int8.onnx")
    parser.add_argument("--watch", type=Path, metavar="DIR",
                        help="process each image that arrives in DIR exactly once, until interrupted")
    parser.add_argument("--settle", type=float, default=1.0, metavar="SECONDS",
                        help="with --watch: a file is read once unchanged this long (default 1)")
    parser.add_argument("--input", metavar="FOLDER|GLOB|FILE_LIST",
                        help="the images: a folder (recursively), a quoted glob ('photos/**/*.jpg') or a text file "
                        "with one path a line (relative to the current folder); with the local engine, like PATH")
    parser.add_argument("--engine", choices=("local", "ray"), default="local",
                        help="local (default): in this process; ray: on Ray Data (`pip install 'edgelabels[ray]'`), "
                        "--input and --out needed, one row per image in Parquet and JSONL shards in --out, "
                        "a rerun with the same --out skips the shards already written")
    parser.add_argument("--address", metavar="ADDRESS",
                        help="--engine ray: the Ray cluster to join (auto: the one RAY_ADDRESS or `ray start` names; "
                        "host:port; ray://host:10001); omitted: start a local Ray on this machine")
    parser.add_argument("--actors", type=int, metavar="N",
                        help="--engine ray: model actors, each with its own onnxruntime session (default: one per "
                        "CPU of the cluster); they share the CPUs, and onnxruntime's threads are each one's share")
    parser.add_argument("--shard-size", type=int, metavar="N",
                        help="--engine ray: images per output shard, the unit a rerun skips (default 1000)")
    video_predict.add_arguments(parser)


def run(args) -> int:
    from edgelabels.errors import UserError
    from edgelabels.runtime.answers import open_edge_model

    if args.min_confidence is not None and not 0 <= args.min_confidence <= 100:
        raise UserError(f"--min-confidence must be between 0 and 100, not {args.min_confidence}")
    if args.max_results is not None and args.max_results < 0:
        raise UserError(f"--max-results must be 0 or more, not {args.max_results}")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, not {args.batch_size}")
    if args.video is not None:
        return video_predict.run_video(args)
    for option in ("every", "line", "summary"):
        if getattr(args, option) is not None:
            raise UserError(f"--{option} is for --video")
    if args.engine == "ray":
        return ray_engine(args)
    if args.address or args.actors or args.shard_size:
        raise UserError("--address, --actors and --shard-size are for --engine ray")
    if args.input:
        args.paths = [*args.paths, args.input]
    if not args.paths and not args.watch:
        raise UserError("predict: give images or folders, or --watch DIR")
    if args.paths and args.watch:
        raise UserError("predict: give images or folders, or --watch DIR, not both")
    if args.watch and (args.json_beside or args.draw):
        raise UserError("predict --watch writes its results into --out (default DIR/results); "
                        "--json-beside and --draw are for images given by path")
    model = open_edge_model(args.model_dir, precision=args.precision, threads=args.threads)
    if args.draw and not getattr(model, "answers_boxes", False):
        raise UserError(f"--draw draws boxes, and {args.model_dir} is not a detector export")
    if args.watch:
        return watch(model, args)
    for option, folder in (("--out", args.out), ("--draw", args.draw)):
        if folder is not None:
            atomic.writable_folder(folder, option)
    return predict_files(model, args)


def ray_engine(args) -> int:
    """--engine ray: its options checked here, before anything imports Ray."""
    import importlib.util

    from edgelabels.errors import UserError

    if args.paths or args.watch or args.json_beside or args.draw:
        raise UserError("--engine ray takes its images from --input and writes only into --out "
                        "(no PATH, --watch, --json-beside or --draw)")
    if not args.input or not args.out:
        raise UserError("--engine ray needs --input FOLDER|GLOB|FILE_LIST and --out DIR")
    for option, value in (("--actors", args.actors), ("--shard-size", args.shard_size)):
        if value is not None and value < 1:
            raise UserError(f"{option} must be at least 1, not {value}")
    if importlib.util.find_spec("ray") is None or importlib.util.find_spec("pyarrow") is None:
        raise UserError("--engine ray needs Ray Data and pyarrow: pip install 'edgelabels[ray]'")
    from edgelabels.serve import ray_predict

    return ray_predict.predict_on_ray(args)


def predict_files(model, args) -> int:
    from edgelabels import atomic
    from edgelabels.errors import UserError
    from edgelabels.runtime.answers import answer_images, find_images

    found, problems = find_images(args.paths)
    for problem in problems:
        print(f"edgelabels: {problem}", file=sys.stderr)
    if not found and not problems:
        print("edgelabels: no PNG or JPEG images found", file=sys.stderr)
        return 2
    failed = len(problems)
    relative = {listed.path: listed.relative for listed in found}
    folders = any(Path(given).is_dir() for given in args.paths)
    for answer in answer_images(model, [listed.path for listed in found], batch_size=args.batch_size,
                                min_confidence=args.min_confidence, max_results=args.max_results, progress=folders):
        path = answer.path
        if answer.error:
            failed += 1
            print(f"edgelabels: {path}: {answer.error}", file=sys.stderr, flush=True)
            continue
        result = {"Image": str(path), **answer.response}
        if answer.review is not None:  # the export carries a review threshold (review.json): a documented extra key
            result["HumanReview"] = answer.review
        written = [args.out / relative[path].with_name(relative[path].name + ".json")] if args.out else []
        written += [path.with_name(path.name + ".json")] if args.json_beside else []
        try:  # atomic: a file that cannot be written leaves nothing half-written behind
            for where in written:
                atomic.write_json(where, result)
            if args.draw:
                draw(path, args.draw / relative[path], result["CustomLabels"])
        except OSError as exc:
            raise UserError(f"{exc.filename or written[0]}: cannot write the result ({exc.strerror or exc})") \
                from None
        print(json.dumps(result), flush=True)
    if failed:
        print(f"edgelabels: {failed} of {len(found) + len(problems)} images failed", file=sys.stderr)
        return 2
    return 0


def draw(path: Path, out: Path, custom_labels: list[dict]) -> None:
    """The image as displayed (EXIF-rotated, as the boxes are) with its boxes drawn, written atomically to `out`
    in the image's own format."""
    from edgelabels import atomic
    from edgelabels.data.images import read_image
    from edgelabels.runtime.overlay import draw_custom_labels

    image, _notes = read_image(path)
    picture = draw_custom_labels(image, custom_labels)
    with atomic.temp_path(out) as tmp:
        picture.save(tmp, format="PNG" if out.suffix.lower() == ".png" else "JPEG", quality=90)


def watch(model, args) -> int:
    import signal

    from edgelabels.errors import UserError
    from edgelabels.serve.watch import FolderWatcher

    if not args.watch.is_dir():
        raise UserError(f"{args.watch}: no such folder to watch")
    atomic.writable_folder(args.out or args.watch / "results", "--out")
    watcher = FolderWatcher(model, args.watch, args.out, min_confidence=args.min_confidence,
                            max_results=args.max_results, settle=args.settle, batch_size=args.batch_size)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    print(f"edgelabels: watching {args.watch} (results in {watcher.out}; Ctrl-C to stop)", file=sys.stderr,
          flush=True)
    try:
        watcher.run(stop=lambda: bool(stopping))
    except KeyboardInterrupt:
        pass
    return 0
