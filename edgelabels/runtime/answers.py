"""The one edge answer stream: open an export, list its images, answer each one as DetectCustomLabels would.

`predict` (by path, `--watch`, `--engine ray`), `serve` and the benchmark's timed pass all answer through
here, so batching, MinConfidence, MaxResults and what a bad image becomes are decided in one place:
- open_edge_model(model_dir): the export's edge object, the task table's `edge` piece (a Predictor answers a
  classifier's labels, a Detector one entry per box); an export whose task answers with another verb (a lung
  U-Net: `edgelabels segment`) is refused in one line;
- list_images(inputs): folders (recursively), globs, list files (one path a line) and images -> the images and
  one line per problem (a missing input, a broken symbolic link, an unreadable file or folder), never a silent
  skip;
- answer_images(model, images): one Answer per image, in order: its DetectCustomLabels response, or the one-line
  reason it could not be decoded (an answer, not an exception: the other images still run).
numpy, Pillow and onnxruntime only (never TensorFlow or Keras).
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import NamedTuple

from edgelabels.data.images import is_image_path, sniff_format
from edgelabels.errors import ImageProblem, UserError


def open_edge_model(model_dir, *, precision: str = "auto", threads: int | None = None):
    """The edge object that answers DetectCustomLabels for an export folder (the task table's `edge` piece)."""
    from edgelabels.artifacts import ExportDir
    from edgelabels.tasks import get_task

    export = ExportDir.load(model_dir)
    task = get_task(export.task)
    if task.edge_verb != "predict":  # the one refusal: its exports answer with another verb
        raise UserError(f"{export.dir}: a {task.noun} export answers no DetectCustomLabels; run it with "
                        f"`edgelabels {task.edge_verb} {export.dir} IMAGE...`")
    return task.piece("edge")(model_dir, precision=precision, threads=threads)


# -- which images ------------------------------------------------------------------------------------

class Listed(NamedTuple):
    path: Path
    relative: Path  # where it lies under the folder it was found in (a file given alone: its name)


def find_images(inputs, *, recursive: bool = True) -> tuple[list[Listed], list[str]]:
    """list_images, each image with its path relative to the folder it was found in (predict --out keeps that
    layout)."""
    found, problems = [], []
    for given in inputs:
        spec = str(given)
        path = Path(given)
        if path.is_dir():
            images, trouble = _folder_images(path, recursive)
            found += [Listed(image, image.relative_to(path)) for image in images]
            problems += trouble
        elif path.is_file() and (is_image_path(path) or not _is_list_file(path)):
            found.append(Listed(path, Path(path.name)))  # an image given by name is read whatever its suffix
        elif path.is_file():
            # Files in a list need not exist: each becomes its own answer ("file not found"), never a lost line.
            found += [Listed(Path(line), Path(Path(line).name)) for line in _list_lines(path)]
        elif path.is_symlink():
            problems.append(f"{spec}: broken symbolic link (to {os.readlink(path)})")
        elif any(c in spec for c in "*?["):
            matched = sorted(glob.glob(spec, recursive=True))
            for name in matched:
                image, problem = _entry(Path(name))
                found += [Listed(image, Path(image.name))] if image else []
                problems += [problem] if problem else []
            if not matched:
                problems.append(f"{spec}: no file matches this pattern")
        else:
            problems.append(f"{spec}: no such file or folder")
    return found, problems


def list_images(inputs, *, recursive: bool = True) -> tuple[list[Path], list[str]]:
    """FOLDERs (their PNG and JPEG images, recursively unless recursive=False; files and folders whose names start
    with "." left out: temporary files, checkpoints), GLOBs (`photos/**/*.jpg`), FILE_LISTs (a UTF-8 text file, one
    path a line, relative to the current folder; blank lines and lines starting with # skipped) or images ->
    (image paths in the order given, each folder's and glob's sorted, an image given twice listed twice; one line
    per problem). An entry named like an image that cannot be read (a broken symbolic link, no read permission)
    and a folder that cannot be listed are problems, never silently skipped."""
    found, problems = find_images(inputs, recursive=recursive)
    return [listed.path for listed in found], problems


def _folder_images(folder: Path, recursive: bool) -> tuple[list[Path], list[str]]:
    images, problems = [], []

    def unlistable(exc: OSError) -> None:
        problems.append(f"{exc.filename}: cannot list folder ({exc.strerror or exc})")

    for root, dirs, files in os.walk(folder, onerror=unlistable):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
        for name in files:
            if name.startswith(".") or not is_image_path(Path(name)):
                continue
            image, problem = _entry(Path(root) / name)
            images += [image] if image else []
            problems += [problem] if problem else []
    return sorted(images), problems


def _entry(path: Path) -> tuple[Path | None, str | None]:
    """(the image, None), (None, why it cannot be read), or (None, None) for what is no image (a folder)."""
    if path.is_dir() or not is_image_path(path):
        return None, None
    if not path.exists():
        return None, f"{path}: broken symbolic link (to {os.readlink(path)})" if path.is_symlink() else \
            f"{path}: no such file"
    if not os.access(path, os.R_OK):
        return None, f"{path}: cannot read file (permission denied)"
    return path, None


def _is_list_file(path: Path) -> bool:
    """A file not named like an image is a file list when it reads as text; anything else is an image to try
    (its answer then says what is wrong with it)."""
    try:
        with open(path, "rb") as file:
            head = file.read(65536)
    except OSError:
        return False
    if not head or sniff_format(head[:16]) is not None or b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3  # only a character cut at the end of the head read
    return True


def _list_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path}: neither an image nor a UTF-8 file list (one path a line)") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read the file list ({exc.strerror or exc})") from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


# -- the answers -------------------------------------------------------------------------------------

class Answer(NamedTuple):
    path: object  # the image as given: a path (or bytes, or a decoded PIL image)
    response: dict | None  # DetectCustomLabels' response: {"CustomLabels": [...]}; None when `error` says why
    error: str | None  # what is wrong with the image (missing, unreadable, not a PNG or JPEG), one line
    review: dict | None = None  # the export's "send to a person" verdict (Predictor.human_review); not Rekognition's


def answer_images(model, paths, *, batch_size: int = 32, min_confidence: float | None = None,
                  max_results: int | None = None, timer: dict | None = None, progress: bool = False):
    """One Answer per image, in order, `batch_size` images per model call. Images are decoded (and run through
    the export's stages) on worker threads while the model runs the batch before; timer["seconds"] accumulates
    the model's own time; progress: a bar on stderr when it is a terminal. An image a crop stage finds nothing in
    answers an empty CustomLabels (never a guess)."""
    import functools
    import time

    from edgelabels.runtime.runner import prepared_batches

    if batch_size < 1:
        raise UserError(f"batch size must be at least 1, not {batch_size}")
    if getattr(model, "tiled", False):  # each image is many tiles: two 32-frame batches of 4000x3000 tiles are GBs
        batch_size = min(batch_size, 2)
    review_of = getattr(model, "human_review", None)  # a Predictor's; looked up once, not per image
    for batch, prepared in prepared_batches(list(paths), functools.partial(_prepare, model), batch_size,
                                            progress=None if progress else False):
        good = [i for i, (x, error) in enumerate(prepared) if error is None]
        rows = {}
        if good:
            began = time.perf_counter()
            rows = dict(zip(good, model.run_many([prepared[i][0] for i in good])))
            if timer is not None:
                timer["seconds"] = timer.get("seconds", 0.0) + time.perf_counter() - began
        for i, image in enumerate(batch):
            if i in rows:
                labels = model.custom_labels(rows[i], min_confidence, max_results)
                yield Answer(image, {"CustomLabels": labels}, None, review_of(rows[i]) if review_of else None)
            else:
                yield Answer(image, None, prepared[i][1])


def _prepare(model, image) -> tuple[object, str | None]:
    """(the model's input, None) or (None, the image's problem): a bad image is an answer, not an exception."""
    try:
        name = str(image) if isinstance(image, (str, Path)) else None
        return model.prepare(image, name=name), None
    except ImageProblem as exc:
        return None, exc.problem
