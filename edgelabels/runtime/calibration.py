"""Calibrated confidences at the edge: calibration.json (fitted on a run's validation split) applied to a model's
outputs, so that a label or box answered at confidence 80 is right about 80% of the time.

The file's `method` says which map to apply (evaluate/calibration.py chooses it per task; the runtime never asks
which task the model is):
  temperature            p_T = softmax(log p / T) over one image's labels (a classifier: the top label is kept)
  temperature-per-label  each label's own sigmoid, logit(p_k) / T_k (a multi-label classifier)
  isotonic               a box's score through an increasing piecewise-linear map (knots x -> y over [0, 1]),
                         strictly increasing so the ranking of boxes, and with it mAP, is what the model gave
  none                   the outputs as they are (too few validation scores, or no map lowered the validation ECE)
Each map has an exact inverse (`raw`), so an evaluation of an export recovers the scores "before" from those it
answers. numpy only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgelabels.errors import UserError

VERSION = 1
METHODS = ("temperature", "temperature-per-label", "isotonic", "none")
# Files written before "temperature-per-label" had its name spell it "temperature" beside task "multilabel": they
# are read as what they meant. (method, task) -> method.
OLD_SPELLINGS = {("temperature", "multilabel"): "temperature-per-label"}
TINY = 1e-7  # probabilities are kept within [TINY, 1 - TINY] before a logarithm
SCORE = 4  # a detection row's score column: [left, top, width, height, score, class_id]


@dataclass(frozen=True)
class Calibration:
    """calibration.json's contents, with its map. `described` is the file's whole dict (what reports quote)."""

    method: str
    temperature: tuple[float, ...] = ()  # one ("temperature") or one per label ("temperature-per-label")
    knots_x: tuple[float, ...] = ()
    knots_y: tuple[float, ...] = ()
    described: dict | None = None

    @property
    def changes_scores(self) -> bool:
        return self.method != "none"

    def apply(self, outputs):
        """The model's outputs (an (N, K) array, (N, K, 6) detections, or a list of per-image arrays) calibrated."""
        return self._each(outputs, forward=True)

    def raw(self, outputs):
        """apply's inverse: the model's own outputs from calibrated ones."""
        return self._each(outputs, forward=False)

    def _each(self, outputs, forward: bool):
        if not self.changes_scores:
            return outputs
        if isinstance(outputs, list):
            return [self._one(np.asarray(o), forward) for o in outputs]
        return self._one(np.asarray(outputs), forward)

    def _one(self, outputs: np.ndarray, forward: bool) -> np.ndarray:
        if self.method == "isotonic":
            out = np.array(outputs, copy=True)
            if out.size:
                x, y = (self.knots_x, self.knots_y) if forward else (self.knots_y, self.knots_x)
                out[..., SCORE] = np.interp(out[..., SCORE], x, y)
            return out
        t = np.asarray(self.temperature, np.float64)
        p = np.asarray(outputs, np.float64)
        out = TEMPERED[self.method](p, 1.0 / t if forward else t)
        # a row of zeros is an image that got no answer (a stage found nothing): it stays one
        return np.where(p.any(axis=-1, keepdims=True), out, 0.0).astype(outputs.dtype)


def _softmax_tempered(p: np.ndarray, scale) -> np.ndarray:
    """softmax(log p x scale) over the last axis: one label per image."""
    logits = np.log(np.clip(p, TINY * TINY, 1.0)) * scale
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _sigmoid_tempered(p: np.ndarray, scale) -> np.ndarray:
    """sigmoid(logit(p_k) x scale_k): each label on its own."""
    q = np.clip(p, TINY, 1 - TINY)
    return 1.0 / (1.0 + np.exp(-np.log(q / (1 - q)) * scale))


TEMPERED = {"temperature": _softmax_tempered, "temperature-per-label": _sigmoid_tempered}


def from_json(described: dict, where="calibration") -> Calibration:
    """A Calibration from calibration.json's dict; UserError naming `where` when it is not one."""
    if not isinstance(described, dict) or described.get("version") != VERSION \
            or described.get("method") not in METHODS:
        raise UserError(f"{where}: not a calibration this version reads (version {VERSION}, method one of "
                        f"{', '.join(METHODS)})")
    parameters = described.get("parameters") or {}
    try:
        temperature = tuple(float(t) for t in np.atleast_1d(parameters.get("temperature", ())))
        knots_x = tuple(float(v) for v in parameters.get("x", ()))
        knots_y = tuple(float(v) for v in parameters.get("y", ()))
    except (TypeError, ValueError) as exc:
        raise UserError(f"{where}: parameters are not numbers ({exc})") from None
    method = OLD_SPELLINGS.get((described["method"], str(described.get("task"))), described["method"])
    if method in TEMPERED and (not temperature or min(temperature) <= 0):
        raise UserError(f"{where}: a temperature map needs positive temperatures")
    if method == "isotonic" and (len(knots_x) < 2 or len(knots_x) != len(knots_y)
                                 or np.any(np.diff(knots_x) <= 0) or np.any(np.diff(knots_y) <= 0)):
        raise UserError(f"{where}: an isotonic map needs as many x as y knots (2 or more), both increasing")
    return Calibration(method=method, temperature=temperature, knots_x=knots_x, knots_y=knots_y, described=described)


def read_calibration(path: str | Path) -> Calibration | None:
    """The calibration at `path`; None when the file is absent (an export written before calibration existed)."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        described = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None
    return from_json(described, path)


class CalibratedModel:
    """A model callable (runner.OnnxModel) whose outputs are calibrated; what the Predictor and the Detector read
    from the model (output_shape, path) passes through, and `uncalibrated` is the model itself."""

    def __init__(self, model, calibration: Calibration):
        self.uncalibrated, self.calibration = model, calibration

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.calibration.apply(self.uncalibrated(x))

    output_shape = property(lambda self: self.uncalibrated.output_shape)
    path = property(lambda self: self.uncalibrated.path)
