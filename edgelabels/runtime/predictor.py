"""The edge Predictor: an exported model folder in, DetectCustomLabels answers out.

Needs only numpy, Pillow and onnxruntime (never TensorFlow or Keras). Decoding goes through
data.images.read_image (the same checks as `dataset inspect`) and preprocessing through
data.preprocess (the one implementation the training loader uses), so the edge sees exactly the
tensors the model was trained and exported on. An export with stages (a classifier trained on lungs
only, or on a detected box) runs them first: the U-Net, then everything outside the lungs blanked; or the
detector, then the image cut to its box (runtime/stages.py). An image in which a stage finds nothing (no
result window) gets no label: Rekognition's empty CustomLabels, never a guess.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from edgelabels.data.images import read_image
from edgelabels.data.preprocess import normalise, to_pixels
from edgelabels.errors import UserError
from edgelabels.runtime.runner import open_export, predict_images, run_prepared
from edgelabels.runtime.stages import export_chain


class Predictor:
    """An exported classifier (RUN/export/) loaded into onnxruntime: every export whose task names it as its edge
    class. A multi-label export is answered the same way: every label at or above its own threshold
    (custom_labels), so an image may get several labels, or none; a single-label (softmax) model rarely passes
    two thresholds at once.

    precision: "auto" (INT8 when model.int8.onnx exists, else fp32), "fp32" or "int8".
    threads: onnxruntime intra-op threads (None: onnxruntime's default, one per physical core).
    """

    answers_boxes = False  # labels only, no Geometry (`predict --draw` needs boxes)

    def __init__(self, model_dir: str | Path, precision: str = "auto", threads: int | None = None):
        opened = open_export(model_dir, Predictor, "classifier", precision, threads)
        export, self.labels, self.thresholds = opened.export, opened.labels, opened.thresholds
        # review.json: the top confidence below which an answer goes to a person (None: the export carries none)
        self.review_threshold = export.read_review_threshold()
        self.dir, self.spec = export.dir, export.spec
        self.precision, self.model_path, self.model = opened.precision, opened.model_path, opened.model
        # A classifier trained behind stages (a lung U-Net that keeps only the lungs): they run first, in prepare().
        self.chain = export_chain(export, threads)
        width = self.model.output_shape[-1]
        if isinstance(width, int) and width != len(self.labels):
            raise UserError(f"{self.model_path}: {width} outputs but labels.json names {len(self.labels)} labels")

    # -- one image at a time: decoding errors name the image ------------------------------------

    def prepare(self, image, name: str | None = None) -> np.ndarray | None:
        """A path, bytes or PIL image -> float32 (H, W, C) model input, or None when a stage found nothing in it
        (no answer). Raises ImageProblem for bad images.

        Paths and bytes go through read_image (format checks, EXIF rotation); a PIL image is taken as
        already decoded and only converted to the spec's colour mode.
        """
        if not isinstance(image, Image.Image):
            image, _notes = read_image(image, name=name)
        if self.chain:
            image = self.chain.image(image)
            if image is None:
                return None
        return normalise(to_pixels(image, self.spec), self.spec)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Already-prepared float32 (N, H, W, C) -> probabilities (N, K)."""
        return self.model(batch)

    def run_many(self, prepared: list) -> np.ndarray:
        """prepare() results (None: no answer) -> probabilities (N, K), a row of zeros for each None."""
        return run_prepared(self.run, prepared, len(self.labels))

    # -- the contract ---------------------------------------------------------------------------

    def probabilities(self, images, batch_size: int = 32, progress: bool = False, timer: dict | None = None) \
            -> np.ndarray:
        """Probabilities (N, K) in `labels` order for a list of paths, bytes or PIL images (decoded on threads
        while the model runs the batch before). An image with no answer (a stage found nothing) has a row of
        zeros."""
        images = list(images)
        if not images:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return predict_images(images, self.prepare, self.run, batch_size=batch_size, progress=progress,
                              desc=f"onnx {self.precision}", timer=timer, width=len(self.labels))

    def custom_labels(self, probabilities: np.ndarray, min_confidence: float | None = None,
                      max_results: int | None = None) -> list[dict]:
        """One image's probabilities -> DetectCustomLabels' CustomLabels list, most confident first.

        Rekognition semantics: MinConfidence omitted -> each label's assumed threshold applies;
        a value (0-100) -> labels with a confidence below it are left out (0 returns every label).
        A row of zeros (a stage found nothing to read) has no label whatever MinConfidence says.
        """
        if min_confidence is not None and not 0 <= min_confidence <= 100:
            raise UserError(f"MinConfidence must be between 0 and 100, not {min_confidence}")
        if max_results is not None and max_results < 0:
            raise UserError(f"MaxResults must be 0 or more, not {max_results}")
        found = []
        if not np.any(probabilities):
            return found
        for name, p in zip(self.labels, np.asarray(probabilities, dtype=np.float64)):
            confidence = float(p) * 100.0
            keep = p >= self.thresholds[name] if min_confidence is None else confidence >= min_confidence
            if keep:
                found.append({"Name": name, "Confidence": confidence})
        found.sort(key=lambda label: label["Confidence"], reverse=True)
        return found if max_results is None else found[:max_results]

    def human_review(self, probabilities: np.ndarray) -> dict | None:
        """One image's probabilities -> {"Needed": its top confidence is below the export's review threshold (or it
        got no answer), "Threshold": that threshold in percent, as Confidence is}; None when the export carries no
        review threshold. `predict` writes it beside CustomLabels as "HumanReview"; DetectCustomLabels (`serve`)
        keeps Rekognition's shape, so it never carries it."""
        if self.review_threshold is None:
            return None
        top = float(np.max(probabilities)) if len(probabilities) else 0.0
        return {"Needed": bool(top < self.review_threshold), "Threshold": self.review_threshold * 100.0}

    def detect(self, image, min_confidence: float | None = None, max_results: int | None = None) -> dict:
        """DetectCustomLabels for one image (path, bytes or PIL image)."""
        x = self.prepare(image)
        if x is None:  # validate the request's numbers all the same
            return {"CustomLabels": self.custom_labels(np.zeros(len(self.labels)), min_confidence, max_results)}
        probabilities = self.run(x[None])[0]
        return {"CustomLabels": self.custom_labels(probabilities, min_confidence, max_results)}

    def detect_many(self, images, min_confidence: float | None = None, max_results: int | None = None,
                    batch_size: int = 32) -> list[dict]:
        """detect() for many images, batched for throughput."""
        return [{"CustomLabels": self.custom_labels(row, min_confidence, max_results)}
                for row in self.probabilities(images, batch_size)]
