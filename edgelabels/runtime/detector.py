"""The edge Detector: an exported detector folder in, DetectCustomLabels answers with boxes out.

The interface of runtime.predictor.Predictor where it applies (`prepare`, `run`, `custom_labels`,
`detect`), so `predict`, `predict --watch` and `serve` drive either one unchanged. The model decodes
its own boxes (peak test + top-K inside the graph): its one output "detections" is (N, K, 6), each
row `[left, top, width, height, score, class_id]` with the box in ratios of the model input, which
are ratios of the image, since preprocessing stretches the image to the input. Rows past the real
peaks carry low scores; the thresholds here decide which rows become answers.
A tiled export (preprocess.json's tile_scale set) answers the whole frame: `prepare` cuts the image into
overlapping tiles (runtime/tiles.py), `run_many` runs each image's tiles and merges their rows into one (K, 6)
answer in ratios of the whole image; `detect`, `detections` and runtime/answers.py go through the two.
numpy, Pillow and onnxruntime only (never TensorFlow or Keras).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from edgelabels.data.boxes import clip_ratios
from edgelabels.data.images import read_image
from edgelabels.data.preprocess import normalise, to_pixels
from edgelabels.errors import UserError
from edgelabels.runtime.runner import open_export, predict_images, run_prepared
from edgelabels.runtime.tiles import cut_tiles, padded, predict_tiled_files, run_tiles

ROW = 6  # left, top, width, height, score, class_id


class Detector:
    """An exported detector (RUN/export/, layout task "detection") loaded into onnxruntime.

    precision: "auto" (INT8 when model.int8.onnx exists, else fp32), "fp32" or "int8".
    threads: onnxruntime intra-op threads (None: onnxruntime's default, one per physical core).
    """

    answers_boxes = True  # its CustomLabels carry Geometry.BoundingBox (what `predict --draw` draws)
    tile_batch = 8  # tiles per model call in a tiled export

    def __init__(self, model_dir: str | Path, precision: str = "auto", threads: int | None = None):
        opened = open_export(model_dir, Detector, "detector", precision, threads)
        export, self.labels, self.thresholds = opened.export, opened.labels, opened.thresholds
        self.dir, self.spec = export.dir, export.spec
        self.precision, self.model_path, self.model = opened.precision, opened.model_path, opened.model
        # A tiled export runs its tiles raw and calibrates the merged rows once, as the run's evaluation does (the
        # merge drops rows by raw score).
        self.calibration = getattr(self.model, "calibration", None)
        self._tile_model = getattr(self.model, "uncalibrated", self.model)
        shape = self.model.output_shape
        if len(shape) != 3 or (isinstance(shape[-1], int) and shape[-1] != ROW):
            raise UserError(f"{self.model_path}: output shape {shape} is not detections (N, K, {ROW}): "
                            "[left, top, width, height, score, class_id] rows")

    @property
    def tiled(self) -> bool:
        return self.spec.tile_scale is not None

    def prepare(self, image, name: str | None = None):
        """A path, bytes or PIL image -> float32 (H, W, C) model input, or for a tiled export its Tiles (uint8,
        normalised per model call: a large frame's tiles in float32 would hold four times the memory while
        they wait). Raises ImageProblem for bad images.

        Paths and bytes go through read_image (format checks, EXIF rotation: boxes are in the frame of
        the image as displayed); a PIL image is taken as already decoded.
        """
        if not isinstance(image, Image.Image):
            image, _notes = read_image(image, name=name)
        if self.tiled:
            return cut_tiles(image, self.spec)
        return normalise(to_pixels(image, self.spec), self.spec)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Already-prepared float32 (N, H, W, C) -> detections (N, K, 6)."""
        return self.model(batch)

    def run_many(self, prepared: list):
        """prepare() results -> detections (N, K, 6); the Predictor's interface (a detector always answers). A
        tiled export: one merged (K_i, 6) array per image, in ratios of the whole image."""
        if self.tiled:
            return self._calibrated([run_tiles(tiles, self.spec, self._tile_model, self.tile_batch)
                                     for tiles in prepared])
        return run_prepared(self.run, prepared)

    def detections(self, images, batch_size: int = 32, progress: bool = False, timer: dict | None = None) \
            -> np.ndarray:
        """Detections (N, K, 6) for a list of paths, bytes or PIL images (decoded on threads while the model
        runs the batch before). A tiled export: one image at a time (tile_batch tiles a model call), each image's
        merged rows padded with all-zero rows (score 0, no box) to the longest."""
        images = list(images)
        if not images:
            return np.zeros((0, 0, ROW), dtype=np.float32)
        if self.tiled:
            found = predict_tiled_files(images, self.spec, self._tile_model, self.tile_batch, progress=progress,
                                        desc=f"onnx {self.precision} tiles", timer=timer, cut=self.prepare)
            return padded(self._calibrated(found))
        return predict_images(images, self.prepare, self.run, batch_size=batch_size, progress=progress,
                              desc=f"onnx {self.precision}", timer=timer)

    def _calibrated(self, rows: list) -> list:
        return rows if self.calibration is None else self.calibration.apply(rows)

    def custom_labels(self, rows: np.ndarray, min_confidence: float | None = None,
                      max_results: int | None = None) -> list[dict]:
        """One image's detections (K, 6) -> DetectCustomLabels' CustomLabels list: one entry per box, most
        confident first.

        Rekognition semantics: MinConfidence omitted -> each label's assumed threshold (thresholds.json)
        applies; a value (0-100) -> boxes with a confidence below it are left out. A box is clipped to the
        image; one wholly outside it (an untrained model can place one there) is left out.
        """
        if min_confidence is not None and not 0 <= min_confidence <= 100:
            raise UserError(f"MinConfidence must be between 0 and 100, not {min_confidence}")
        if max_results is not None and max_results < 0:
            raise UserError(f"MaxResults must be 0 or more, not {max_results}")
        found = []
        for left, top, width, height, score, class_id in np.asarray(rows, dtype=np.float64).reshape(-1, ROW):
            index = round(class_id)
            if not 0 <= index < len(self.labels):
                raise UserError(f"{self.model_path}: class id {class_id:g} but labels.json names "
                                f"{len(self.labels)} labels")
            name, confidence = self.labels[index], float(score) * 100.0
            keep = score >= self.thresholds[name] if min_confidence is None else confidence >= min_confidence
            box = clip_ratios((left, top, width, height))
            if keep and box[2] > 0 and box[3] > 0:
                found.append({"Name": name, "Confidence": confidence, "Geometry": {"BoundingBox": {
                    "Width": box[2], "Height": box[3], "Left": box[0], "Top": box[1]}}})
        found.sort(key=lambda label: label["Confidence"], reverse=True)  # stable: ties keep the model's order
        return found if max_results is None else found[:max_results]

    def detect(self, image, min_confidence: float | None = None, max_results: int | None = None) -> dict:
        """DetectCustomLabels for one image (path, bytes or PIL image)."""
        rows = self.run_many([self.prepare(image)])[0]
        return {"CustomLabels": self.custom_labels(rows, min_confidence, max_results)}

    def detect_many(self, images, min_confidence: float | None = None, max_results: int | None = None,
                    batch_size: int = 32) -> list[dict]:
        """detect() for many images, batched for throughput."""
        return [{"CustomLabels": self.custom_labels(rows, min_confidence, max_results)}
                for rows in self.detections(images, batch_size)]
