"""The one batched model runner of the edge: an ONNX model in onnxruntime, and the loop that feeds any model.

`OnnxModel` is a CPU session (threads, one input, contiguous float32 in, first output out) for the
Predictor, the U-Net, evaluation of an export and export's parity checks. `predict_images` is the one
batched-inference loop: images are prepared (decoded, chained, preprocessed) on worker threads while the
model runs the batch before, so decoding does not add to the model's time. A Keras model runs through the
same loop (models/factory.keras_runner). numpy + onnxruntime only.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np

from edgelabels.errors import UserError


class OnnxModel:
    """x (N, H, W, C) -> the model's first output, for a model.onnx file.

    threads: onnxruntime intra-op threads (None: onnxruntime's default, one per physical core).
    """

    def __init__(self, path, threads: int | None = None):
        import onnxruntime as ort

        if threads is not None and threads < 1:
            raise UserError(f"threads must be at least 1, not {threads}")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        self.path = path
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise UserError(f"{path}: onnxruntime cannot load it ({exc})") from None
        self.input_name = self.session.get_inputs()[0].name
        self.output_shape = tuple(self.session.get_outputs()[0].shape)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})[0]


def predict_array(run_batch, x: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Outputs for already-prepared inputs x (N, ...), `batch_size` at a time."""
    if not len(x):
        raise ValueError("no inputs to predict")
    return np.concatenate([np.asarray(run_batch(x[i:i + batch_size]), np.float32)
                           for i in range(0, len(x), batch_size)])


def predict_images(images, prepare, run_batch, batch_size: int = 32, workers: int = 2, progress: bool = False,
                   desc: str = "predict", timer: dict | None = None, width: int | None = None) -> np.ndarray:
    """Outputs for a list of images (paths, bytes or PIL images): prepare(image) -> one model input, on
    `workers` threads, while run_batch runs the batch before. timer["seconds"] accumulates model time.

    prepare may return None for an image that gets no answer (a crop stage found nothing to cut): its row of
    the output is all zeros, a row no softmax gives (width: the row's length, needed only if every image is
    such). A problem with an image (ImageProblem) propagates from prepare with the image's name in it.
    """
    import time

    images = list(images)
    if not images:
        raise ValueError("no images to predict")
    rows = []
    for _batch, prepared in prepared_batches(images, prepare, batch_size, workers, progress, desc):
        began = time.perf_counter()
        rows.extend(_run_some(run_batch, prepared))
        if timer is not None:
            timer["seconds"] = timer.get("seconds", 0.0) + time.perf_counter() - began
    return _rows(rows, width)


def prepared_batches(images: list, prepare, batch_size: int, workers: int = 2, progress: bool | None = False,
                     desc: str | None = None):
    """(batch, [prepare(image) for image in batch]) for each `batch_size` images in order, the next batch prepared
    on `workers` threads while the caller uses this one; one batch and no bar: nothing to overlap, so no threads
    (the per-image edge path). progress: a bar on stderr (None: only when stderr is a terminal; False: none)."""
    from tqdm import tqdm

    batches = [images[i:i + batch_size] for i in range(0, len(images), batch_size)]
    if len(batches) <= 1 and progress is False:
        for batch in batches:
            yield batch, [prepare(image) for image in batch]
        return
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool, \
            tqdm(total=len(images), unit="img", desc=desc, file=sys.stderr,
                 disable=None if progress is None else not progress) as bar:
        pending = [pool.submit(prepare, image) for image in (batches[0] if batches else [])]
        for index, batch in enumerate(batches):
            prepared = [job.result() for job in pending]
            following = batches[index + 1] if index + 1 < len(batches) else []
            pending = [pool.submit(prepare, image) for image in following]
            yield batch, prepared
            bar.update(len(batch))


def run_prepared(run_batch, prepared: list, width: int | None = None) -> np.ndarray:
    """One batch of prepare() results -> outputs, a row of zeros where prepare gave None (no answer)."""
    return _rows(_run_some(run_batch, prepared), width)


def _run_some(run_batch, prepared: list) -> list:
    real = [x for x in prepared if x is not None]
    if not real:
        return [None] * len(prepared)
    out = iter(np.asarray(run_batch(np.stack(real)), np.float32))
    return [None if x is None else next(out) for x in prepared]


def _rows(rows: list, width: int | None) -> np.ndarray:
    """Per-image outputs, None (no answer) filled with zeros of the others' shape."""
    shape = next((row.shape for row in rows if row is not None), None)
    if shape is None:
        if width is None:
            raise ValueError("no image gave the model an input, and no output width was given")
        shape = (width,)
    return np.stack([np.zeros(shape, np.float32) if row is None else row for row in rows])


def input_reader(spec, chain=None):
    """path -> the model's float32 input: decoded (read_image), through the chain's stages if any, preprocessed."""
    from edgelabels.data.images import read_image
    from edgelabels.data.preprocess import preprocess

    if chain:
        def through_chain(path):
            image = chain(path)
            return None if image is None else preprocess(image, spec)  # None: a stage found nothing (no answer)

        return through_chain
    return lambda path: preprocess(read_image(path)[0], spec)


def predict_files(run_batch, paths, spec, chain=None, batch_size: int = 32, progress: bool = False,
                  desc: str = "predict", timer: dict | None = None, width: int | None = None) -> np.ndarray:
    """Outputs of a model (OnnxModel, or models.factory.keras_runner(model)) for image files; an image a stage
    of the chain found nothing in gets a row of zeros (see predict_images)."""
    return predict_images(paths, input_reader(spec, chain), run_batch, batch_size=batch_size, progress=progress,
                          desc=desc, timer=timer, width=width)


PRECISIONS = ("auto", "fp32", "int8")


class OpenedExport(NamedTuple):
    """What an edge class reads from its export folder."""

    export: object  # the ExportDir
    labels: list[str]
    thresholds: dict[str, float]
    precision: str  # "auto" resolved
    model_path: Path
    model: OnnxModel  # or runtime.calibration.CalibratedModel wrapping it: outputs on the calibrated scale


def open_export(model_dir, edge: type, noun: str, precision: str, threads: int | None) -> OpenedExport:
    """An export whose task's edge class (the task table's `edge`) is `edge` (`noun`: what its model is called),
    its ONNX model loaded, "auto" precision resolved to INT8 when model.int8.onnx exists, its outputs calibrated when
    the export carries calibration.json; a one-line UserError for another task's export, an unknown precision or a
    missing model. Shared by the edge classes (Predictor, Detector)."""
    from edgelabels.artifacts import ExportDir
    from edgelabels.tasks import get_task

    export = ExportDir.load(model_dir)
    other = get_task(export.task)
    if other.edge != f"{edge.__module__}:{edge.__qualname__}":  # refuses another task's export
        raise UserError(f"{export.dir}: a {other.noun} export, not a {noun}; run it with "
                        f"`edgelabels {other.edge_verb} {export.dir} IMAGE...`")
    if precision not in PRECISIONS:
        raise UserError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "auto":
        precision = "int8" if export.int8_path.is_file() else "fp32"
    path = export.onnx_path(precision)
    if not path.is_file():
        raise UserError(f"{path}: missing ({precision} model not exported"
                        + (": export with --int8, or use precision fp32)" if precision == "int8" else ")"))
    return OpenedExport(export, list(export.labels), export.read_thresholds(), precision, path,
                        calibrated(OnnxModel(path, threads), export.calibration_path))


def calibrated(model: OnnxModel, calibration_path: Path):
    """The model answering calibrated confidences when the export carries a calibration.json that changes them
    (runtime/calibration.py); else the model itself (every export written before calibration existed)."""
    from edgelabels.runtime.calibration import CalibratedModel, read_calibration

    calibration = read_calibration(calibration_path)
    if calibration is None or not calibration.changes_scores:
        return model
    return CalibratedModel(model, calibration)
