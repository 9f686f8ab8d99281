"""`edgelabels predict MODEL_DIR PATH...`: DetectCustomLabels JSON per image, with onnxruntime only.

One JSON line per image on stdout ({"Image": path, "CustomLabels": [...]}); with --out, also
<image name>.json per image (atomically), as the reference serverless pipeline wrote results beside
each upload; with --json-beside, <image name>.json next to the image itself. A bad image is one line
on stderr and the others still run; exit code 2 if any failed. `--watch DIR` processes each image
arriving in DIR exactly once (see watch.py).

The export's task picks the edge runtime (the task table's `edge`): a classifier answers labels, a
detector (runtime/detector.py) answers one entry per box with Geometry.BoundingBox; `--draw DIR`
writes each image with its boxes drawn.

`--engine ray` runs the same models on Ray Data instead (serve/ray_predict.py): `--input FOLDER|GLOB|FILE_LIST`,
Parquet and JSONL shards in --out, a rerun resumes where a killed job stopped. Ray is an optional extra.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("model_dir", type=Path, help="exported model folder (RUN/export/ from `edgelabels export`)")
    parser.add_argument("paths", type=Path, nargs="*", metavar="PATH", help="images or folders of images")
    parser.add_argument("--out", type=Path, help="write <image name>.json per image into this folder "
                        "(with --watch: default DIR/results)")
    parser.add_argument("--json-beside", action="store_true",
                        help="write <image name>.json next to each image (the bee pipeline's layout)")
    parser.add_argument("--draw", type=Path, metavar="DIR",
                        help="detectors: write a copy of each image into DIR with its boxes drawn (label + confidence)")
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


def image_files(paths: list[Path]) -> tuple[list[tuple[Path, Path]], list[str], bool]:
    """(image, path relative to where it was found) pairs, problems for missing paths, whether a folder was given."""
    from edgelabels.data.images import is_image_path

    found, problems, folders = [], [], False
    for path in paths:
        if path.is_dir():
            folders = True
            found += [(p, p.relative_to(path)) for p in sorted(path.rglob("*"))
                      if p.is_file() and is_image_path(p) and not p.name.startswith(".")]
        elif path.exists():
            found.append((path, Path(path.name)))
        else:
            problems.append(f"{path}: no such file or folder")
    return found, problems, folders


def answering_model(model_dir, precision: str = "auto", threads: int | None = None):
    """The edge runtime that answers DetectCustomLabels for an export folder: its task's `edge` class from the
    task table (a Predictor for a classifier, a Detector for a detector)."""
    from edgelabels.artifacts import ExportDir
    from edgelabels.runtime.predictor import Predictor
    from edgelabels.tasks import get_task

    task = get_task(ExportDir.load(model_dir).task)
    # A lung U-Net answers no DetectCustomLabels: Predictor refuses it, naming the verb that runs it.
    edge = task.piece("edge") if task.edge_verb == "predict" else Predictor
    return edge(model_dir, precision=precision, threads=threads)


def run(args) -> int:
    from edgelabels.errors import UserError
    from edgelabels.runtime.detector import Detector

    if args.min_confidence is not None and not 0 <= args.min_confidence <= 100:
        raise UserError(f"--min-confidence must be between 0 and 100, not {args.min_confidence}")
    if args.max_results is not None and args.max_results < 0:
        raise UserError(f"--max-results must be 0 or more, not {args.max_results}")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, not {args.batch_size}")
    if args.engine == "ray":
        return ray_engine(args)
    if args.address or args.actors or args.shard_size:
        raise UserError("--address, --actors and --shard-size are for --engine ray")
    if args.input:
        args.paths = [*args.paths, *input_paths(args.input)]
    if not args.paths and not args.watch:
        raise UserError("predict: give images or folders, or --watch DIR")
    if args.paths and args.watch:
        raise UserError("predict: give images or folders, or --watch DIR, not both")
    if args.watch and (args.json_beside or args.draw):
        raise UserError("predict --watch writes its results into --out (default DIR/results); "
                        "--json-beside and --draw are for images given by path")
    predictor = answering_model(args.model_dir, precision=args.precision, threads=args.threads)
    if args.draw and not isinstance(predictor, Detector):
        raise UserError(f"--draw draws boxes, and {args.model_dir} is not a detector export")
    if args.watch:
        return watch(predictor, args)
    return predict_files(predictor, args)


def input_paths(spec: str) -> list[Path]:
    """--input for the local engine: a folder stays a folder (its layout is kept under --out), a glob or a file
    list becomes its files."""
    from edgelabels.serve.ray_predict import input_files

    return [Path(spec)] if Path(spec).is_dir() else [Path(p) for p in input_files(spec)]


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

    return ray_predict.predict_on_ray(args, answering_model)


def predict_files(predictor, args) -> int:
    from tqdm import tqdm

    from edgelabels import atomic
    from edgelabels.errors import ImageProblem

    files, problems, folders = image_files(args.paths)
    for problem in problems:
        print(f"edgelabels: {problem}", file=sys.stderr)
    failed = len(problems)
    if not files and not problems:
        print("edgelabels: no PNG or JPEG images found", file=sys.stderr)
        return 2
    with tqdm(total=len(files), unit="img", file=sys.stderr, disable=not folders or None) as bar:
        for start in range(0, len(files), args.batch_size):
            chunk, inputs = [], []
            for path, relative in files[start:start + args.batch_size]:
                try:
                    inputs.append(predictor.prepare(path))
                    chunk.append((path, relative))
                except ImageProblem as exc:
                    failed += 1
                    tqdm.write(f"edgelabels: {exc}", file=sys.stderr)
            if chunk:
                for (path, relative), row in zip(chunk, predictor.run_many(inputs)):
                    result = {"Image": str(path),
                              "CustomLabels": predictor.custom_labels(row, args.min_confidence, args.max_results)}
                    if args.out:
                        atomic.write_json(args.out / relative.with_name(relative.name + ".json"), result)
                    if args.json_beside:
                        atomic.write_json(path.with_name(path.name + ".json"), result)
                    if args.draw:
                        draw(path, args.draw / relative, result["CustomLabels"])
                    print(json.dumps(result), flush=True)
            bar.update(len(files[start:start + args.batch_size]))
    if failed:
        print(f"edgelabels: {failed} of {len(files) + len(problems)} images failed", file=sys.stderr)
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


def watch(predictor, args) -> int:
    import signal

    from edgelabels.errors import UserError
    from edgelabels.serve.watch import FolderWatcher

    if not args.watch.is_dir():
        raise UserError(f"{args.watch}: no such folder to watch")
    watcher = FolderWatcher(predictor, args.watch, args.out, min_confidence=args.min_confidence,
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
