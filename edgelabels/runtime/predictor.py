"""The edge Predictor: an exported model folder in, DetectCustomLabels answers out.

Needs only numpy, Pillow and onnxruntime (never TensorFlow or Keras). Decoding goes through
data.images.read_image (the same checks as `dataset inspect`) and preprocessing through
data.preprocess (the one implementation the training loader uses), so the edge sees exactly the
tensors the model was trained and exported on. An export with segment.json (a classifier trained on
lungs only) runs its U-Net first and blanks everything outside the lungs (segment/chain.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from edgelabels.data.images import read_image
from edgelabels.data.preprocess import PreprocessSpec, normalise, to_pixels
from edgelabels.errors import UserError

PRECISIONS = ("auto", "fp32", "int8")
MODEL_FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: missing (is this a folder written by `edgelabels export`?)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None


class Predictor:
    """An exported model (RUN/export/) loaded into onnxruntime.

    precision: "auto" (INT8 when model.int8.onnx exists, else fp32), "fp32" or "int8".
    threads: onnxruntime intra-op threads (None: onnxruntime's default, one per physical core).
    """

    def __init__(self, model_dir: str | Path, precision: str = "auto", threads: int | None = None):
        from edgelabels.export.onnx_export import onnx_session

        self.dir = Path(model_dir)
        if not self.dir.is_dir():
            raise UserError(f"{self.dir}: no such model folder (expected RUN/export/ written by `edgelabels export`)")
        if (self.dir / "segmentation.json").is_file():
            raise UserError(f"{self.dir}: a lung U-Net export, not a classifier; run it with "
                            f"`edgelabels segment {self.dir} IMAGE...`")
        if precision not in PRECISIONS:
            raise UserError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
        if precision == "auto":
            precision = "int8" if (self.dir / MODEL_FILES["int8"]).is_file() else "fp32"
        self.precision = precision
        self.model_path = self.dir / MODEL_FILES[precision]
        if not self.model_path.is_file():
            raise UserError(f"{self.model_path}: missing ({precision} model not exported"
                            + (": export with --int8, or use precision fp32)" if precision == "int8" else ")"))

        self.labels: list[str] = list(_read_json(self.dir / "labels.json"))
        self.spec = PreprocessSpec.from_json(_read_json(self.dir / "preprocess.json"))
        thresholds = _read_json(self.dir / "thresholds.json")
        missing = [name for name in self.labels if name not in thresholds]
        if missing:
            raise UserError(f"{self.dir / 'thresholds.json'}: no threshold for labels {missing}")
        self.thresholds: dict[str, float] = {name: float(thresholds[name]) for name in self.labels}

        if threads is not None and threads < 1:
            raise UserError(f"threads must be at least 1, not {threads}")
        self.session = onnx_session(self.model_path, threads)
        self.input_name = self.session.get_inputs()[0].name
        # A classifier trained on lungs only: its U-Net (segment/model.onnx) runs first, in prepare().
        from edgelabels.runtime.stages import export_chain

        self.lungs = export_chain(self.dir, threads)
        width = self.session.get_outputs()[0].shape[-1]
        if isinstance(width, int) and width != len(self.labels):
            raise UserError(f"{self.model_path}: {width} outputs but labels.json names {len(self.labels)} labels")

    # -- one image at a time: decoding errors name the image ------------------------------------

    def prepare(self, image, name: str | None = None) -> np.ndarray:
        """A path, bytes or PIL image -> float32 (H, W, C) model input. Raises ImageProblem for bad images.

        Paths and bytes go through read_image (format checks, EXIF rotation); a PIL image is taken as
        already decoded and only converted to the spec's colour mode.
        """
        if not isinstance(image, Image.Image):
            image, _notes = read_image(image, name=name)
        if self.lungs is not None:
            image = self.lungs.image(image)
        return normalise(to_pixels(image, self.spec), self.spec)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Already-prepared float32 (N, H, W, C) -> probabilities (N, K)."""
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})[0]

    # -- the contract ---------------------------------------------------------------------------

    def probabilities(self, images, batch_size: int = 32) -> np.ndarray:
        """Probabilities (N, K) in `labels` order for a list of paths, bytes or PIL images."""
        images = list(images)
        out = np.zeros((len(images), len(self.labels)), dtype=np.float32)
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size]
            out[start:start + len(chunk)] = self.run(np.stack([self.prepare(image) for image in chunk]))
        return out

    def custom_labels(self, probabilities: np.ndarray, min_confidence: float | None = None,
                      max_results: int | None = None) -> list[dict]:
        """One image's probabilities -> DetectCustomLabels' CustomLabels list, most confident first.

        Rekognition semantics: MinConfidence omitted -> each label's assumed threshold applies;
        a value (0-100) -> labels with a confidence below it are left out (0 returns every label).
        """
        if min_confidence is not None and not 0 <= min_confidence <= 100:
            raise UserError(f"MinConfidence must be between 0 and 100, not {min_confidence}")
        if max_results is not None and max_results < 0:
            raise UserError(f"MaxResults must be 0 or more, not {max_results}")
        found = []
        for name, p in zip(self.labels, np.asarray(probabilities, dtype=np.float64)):
            confidence = float(p) * 100.0
            keep = p >= self.thresholds[name] if min_confidence is None else confidence >= min_confidence
            if keep:
                found.append({"Name": name, "Confidence": confidence})
        found.sort(key=lambda label: label["Confidence"], reverse=True)
        return found if max_results is None else found[:max_results]

    def detect(self, image, min_confidence: float | None = None, max_results: int | None = None) -> dict:
        """DetectCustomLabels for one image (path, bytes or PIL image)."""
        probabilities = self.run(self.prepare(image)[None])[0]
        return {"CustomLabels": self.custom_labels(probabilities, min_confidence, max_results)}

    def detect_many(self, images, min_confidence: float | None = None, max_results: int | None = None,
                    batch_size: int = 32) -> list[dict]:
        """detect() for many images, batched for throughput."""
        return [{"CustomLabels": self.custom_labels(row, min_confidence, max_results)}
                for row in self.probabilities(images, batch_size)]
