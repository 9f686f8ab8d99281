"""A run directory is the unit of reproducibility: config, splits, labels, preprocessing, model, history.

runs/NAME/
  config.yaml        the resolved config
  splits/            train.txt, val.txt, test.txt (path, label, group per line)
  labels.json        label names in model output order
  preprocess.json    the PreprocessSpec the model was trained with
  model.keras        the best epoch by the monitored validation metric
  history.csv        one row per epoch of both stages
  train.log          what happened, in words
  checkpoint/        last.keras + state.json, for --resume
  segment.json       classification with `segment:` only: the U-Net run and the masking (segment/chain.py)
  segment-cache/     the U-Net's lung probabilities per image, computed once
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from edgelabels.data.preprocess import PreprocessSpec
from edgelabels.errors import UserError

MODEL_FILE = "model.keras"


@dataclass
class Run:
    dir: Path
    config: dict
    labels: list[str]
    spec: PreprocessSpec

    @classmethod
    def load(cls, run_dir: str | Path) -> "Run":
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise UserError(f"{run_dir}: run directory not found")
        for name in ("config.yaml", "labels.json", "preprocess.json", MODEL_FILE):
            if not (run_dir / name).is_file():
                raise UserError(f"{run_dir}: not a finished run ({name} missing; train it, or --resume it)")
        try:
            config = yaml.safe_load((run_dir / "config.yaml").read_text())
            labels = json.loads((run_dir / "labels.json").read_text())
            spec = PreprocessSpec.from_json(json.loads((run_dir / "preprocess.json").read_text()))
        except (yaml.YAMLError, json.JSONDecodeError, TypeError) as exc:
            raise UserError(f"{run_dir}: corrupt run file ({exc})") from None
        return cls(run_dir, config, labels, spec)

    @property
    def split(self):
        from edgelabels.data.splits import read_split

        return read_split(self.dir / "splits")

    @property
    def model_path(self) -> Path:
        return self.dir / MODEL_FILE

    @property
    def task(self) -> str:
        return (self.config or {}).get("task", "classification")

    def load_model(self):
        return load_keras_model(self.model_path)

    def image_reader(self, threads: int | None = None):
        """path -> PIL image as the model saw it in training: None (plain read_image) or the lung chain."""
        from edgelabels.runtime.stages import run_chain

        return run_chain(self.dir, threads)

    def label_indices(self, samples) -> list[int]:
        index = {name: i for i, name in enumerate(self.labels)}
        try:
            return [index[s.label] for s in samples]
        except KeyError as exc:
            raise UserError(f"{self.dir}: label {exc.args[0]!r} is not one of the model's labels {self.labels}") \
                from None


def task_of(model_dir: str | Path) -> str | None:
    """What a run directory or an export folder holds: "segmentation", "classification", or None (unknown).

    A U-Net export says so in segmentation.json; a run in its config.yaml (task unset: classification); an
    export without the marker sits in its run (RUN/export/), whose config.yaml then says.
    """
    model_dir = Path(model_dir)
    if (model_dir / "segmentation.json").is_file():
        return "segmentation"
    for path in (model_dir / "config.yaml", model_dir.parent / "config.yaml"):
        if path.is_file():
            try:
                config = yaml.safe_load(path.read_text()) or {}
            except yaml.YAMLError as exc:
                raise UserError(f"{path}: not valid YAML ({exc})") from None
            return config.get("task", "classification") if isinstance(config, dict) else None
    return None


def load_keras_model(path: str | Path, compile: bool = False):
    """A model.keras (or checkpoint) of any run: classifier, our U-Net or a segmentation-models U-Net."""
    import keras

    from edgelabels.models.sm_unet import custom_objects  # keras-only stand-ins; sm itself is not imported
    from edgelabels.models.losses import keras_objects

    return keras.saving.load_model(path, compile=compile, custom_objects={**keras_objects(), **custom_objects()})


def predict_paths(model, paths, spec: PreprocessSpec, batch_size: int = 32, progress: bool = True, read=None):
    """Model outputs for image files with a Keras model (see train.loader); read: see Run.image_reader."""
    from edgelabels.train.loader import predict_paths as _predict

    return _predict(model, paths, spec, batch_size=batch_size, progress=progress, read=read)
