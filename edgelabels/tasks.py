"""The task table: one record per task naming what differs, looked up once by every verb.

Like Ultralytics' TASK2DATA / TASK2MODEL maps, but one record per task instead of parallel maps. Each
piece is "module:attribute", imported only when asked for (`task.piece("evaluation")`), so importing this
table imports no Keras or TensorFlow and `predict`/`serve` stay light. A new task is one entry here plus
its own modules, not an `if task == ...` in every layer.

Training pieces (signatures):
  dataset(config) -> Dataset                              the training data, unusable files logged and dropped
  model(config, num_classes, weights) -> keras.Model      a fresh model (models/factory.py adds `run:` transfer)
  objectives(train_config) -> {"loss", "metrics", ...}    what the fit loop compiles with
  batches(config, split, labels, caches, augment) -> (train, val)   Keras PyDatasets
  deal(blocks, fraction, rng) -> (kept, held)             how the split shares out blocks of images

Verb hooks: each names the task's hook record for one verb; the verb's one driver defines the record's type
and calls its hooks (Ultralytics' BaseValidator: one driver, the hooks a task overrides):
  evaluation     evaluate/driver.py   EvaluationHooks (samples, predict, score and write, lines)
  exporting      export/driver.py     ExportHooks (thresholds, parity measure, validation score, INT8 measure, lines)
  benchmarking   benchmark/driver.py  BenchmarkHooks (score both sides); None: no Rekognition counterpart
  inspection     data/inspection.py   InspectionHooks (how `dataset inspect`/`split` read and show a source)
  recipe         train/recipe.py      RecipeHooks (what `auto` becomes for the task: input, schedule, imbalance)
  calibrating    evaluate/calibration.py  CalibrationHooks (the scores calibrated on validation); None: none
  auditing       audit/driver.py      AuditHooks (`dataset audit`: out-of-fold predictions, the task's suspects;
                                      train.label_noise: prune reaches the audit through it); "": none
  edge                                the edge runtime class for its exports
Tune defaults (tune/space.py reads them): tune_backbones, the from-scratch backbones searched when
model.weights is none; tune_keys, the tune keys that apply to the task at all.
STAGES lists the kinds of steps that may run before a model (`stages:` in a config).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from edgelabels.errors import UserError


@dataclass(frozen=True)
class Task:
    name: str
    noun: str  # what its model is called in messages: "a lung U-Net export, not a classifier"
    summary: str
    monitors: tuple[str, ...]  # train.monitor choices
    edge_verb: str  # the verb that runs its exports: predict | segment
    takes_stages: bool  # may run behind `stages:` (a lung U-Net first, ...)
    dataset: str
    model: str
    objectives: str
    batches: str
    edge: str
    evaluation: str = ""
    exporting: str = ""
    benchmarking: str | None = None
    inspection: str = ""
    recipe: str = ""
    calibrating: str | None = None
    auditing: str = ""
    tune_backbones: tuple[str, ...] = ()
    tune_keys: tuple[str, ...] = ()
    reads_manifests: bool = True  # data.manifest and data.test_source apply
    deal: str = "edgelabels.data.splits:deal_by_first_label"

    def piece(self, name: str):
        """The named piece, imported now: e.g. task.piece("evaluation").predict(...)."""
        where = getattr(self, name)
        if not where:
            raise UserError(f"a {self.noun} has no {name}")
        module, _, attribute = where.partition(":")
        return getattr(importlib.import_module(module), attribute)


TASKS: dict[str, Task] = {
    "classification": Task(
        name="classification", noun="classifier", summary="one label per image (folder per label or a Ground Truth manifest)",
        monitors=("val_loss", "val_accuracy", "val_auc"), edge_verb="predict", takes_stages=True,
        dataset="edgelabels.data.prepare:classification_dataset",
        model="edgelabels.models.factory:classifier",
        objectives="edgelabels.models.losses:classification_objectives",
        batches="edgelabels.train.loader:classification_batches",
        edge="edgelabels.runtime.predictor:Predictor",
        evaluation="edgelabels.evaluate.classification:HOOKS",
        exporting="edgelabels.export.classification:HOOKS",
        benchmarking="edgelabels.benchmark.classification:HOOKS",
        auditing="edgelabels.audit.classification:HOOKS",
        inspection="edgelabels.data.inspection:CLASSIFICATION",
        recipe="edgelabels.train.recipe:CLASSIFICATION",
        calibrating="edgelabels.evaluate.calibration:CLASSIFICATION",
        tune_backbones=("tinycnn", "smallcnn", "deepcnn"),
        tune_keys=("backbone", "image_size", "learning_rate", "fine_tune_learning_rate", "batch_size", "dropout",
                   "fine_tune_layers", "augment", "transforms", "imbalance"),
    ),
    "multilabel": Task(
        name="multilabel", noun="multi-label classifier",
        summary="any number of labels per image, each at its own threshold (a Ground Truth manifest)",
        monitors=("val_loss", "val_accuracy", "val_auc"), edge_verb="predict", takes_stages=True,
        dataset="edgelabels.data.multilabel:multilabel_dataset",
        model="edgelabels.models.factory:multilabel_classifier",
        objectives="edgelabels.models.multilabel:multilabel_objectives",
        batches="edgelabels.train.multilabel_loader:multilabel_batches",
        edge="edgelabels.runtime.predictor:Predictor",
        deal="edgelabels.data.multilabel:iterative_stratification",
        evaluation="edgelabels.evaluate.multilabel:HOOKS",
        exporting="edgelabels.export.multilabel:HOOKS",
        benchmarking="edgelabels.benchmark.multilabel:HOOKS",
        inspection="edgelabels.data.inspection:MULTILABEL",
        recipe="edgelabels.train.recipe:MULTILABEL",
        calibrating="edgelabels.evaluate.calibration:MULTILABEL",
        tune_backbones=("tinycnn", "smallcnn", "deepcnn"),
        tune_keys=("backbone", "image_size", "learning_rate", "fine_tune_learning_rate", "batch_size", "dropout",
                   "fine_tune_layers", "augment", "transforms"),
    ),
    "segmentation": Task(
        name="segmentation", noun="lung U-Net", summary="a lung U-Net on images/ + masks/ (255 lung, 0 background, 127 ignored)",
        monitors=("val_loss", "val_dice", "val_iou"), edge_verb="segment", takes_stages=False,
        dataset="edgelabels.data.prepare:segmentation_dataset",
        model="edgelabels.models.factory:unet",
        objectives="edgelabels.models.losses:segmentation_objectives",
        batches="edgelabels.train.loader:segmentation_batches",
        edge="edgelabels.runtime.segmenter:Segmenter",
        reads_manifests=False,
        evaluation="edgelabels.evaluate.segmentation:HOOKS",
        exporting="edgelabels.export.segmentation:HOOKS",
        benchmarking=None,  # Rekognition Custom Labels has no segmentation
        inspection="edgelabels.data.inspection:SEGMENTATION",
        recipe="edgelabels.train.recipe:SEGMENTATION",
        calibrating=None,  # a probability per pixel; Dice is what is read
        tune_backbones=("smallcnn", "deepcnn"),
        tune_keys=("backbone", "image_size", "learning_rate", "fine_tune_learning_rate", "batch_size",
                   "fine_tune_layers", "augment", "transforms"),
    ),
    "detection": Task(
        name="detection", noun="detector",
        summary="boxes with labels (a Ground Truth object-detection manifest, a YOLO folder or a COCO file)",
        monitors=("val_loss",), edge_verb="predict", takes_stages=False,
        dataset="edgelabels.data.detection:detection_dataset",
        model="edgelabels.models.factory:detector",
        objectives="edgelabels.models.detection_losses:detection_objectives",
        batches="edgelabels.train.detection_loader:detection_batches",
        edge="edgelabels.runtime.detector:Detector",
        evaluation="edgelabels.evaluate.detection:HOOKS",
        exporting="edgelabels.export.detection:HOOKS",
        benchmarking="edgelabels.benchmark.detection:HOOKS",
        auditing="edgelabels.audit.detection:HOOKS",
        inspection="edgelabels.data.inspection:DETECTION",
        recipe="edgelabels.train.recipe:DETECTION",
        calibrating="edgelabels.evaluate.calibration:DETECTION",
        tune_backbones=("tinycnn", "smallcnn"),
        # Detection augments image and boxes with its own transforms, so augment.preset stays none there.
        tune_keys=("backbone", "image_size", "learning_rate", "fine_tune_learning_rate", "batch_size",
                   "fine_tune_layers"),
    ),
}


@dataclass(frozen=True)
class StageKind:
    name: str
    summary: str
    model_task: str  # the task of the run a stage of this kind uses
    runtime: str  # "module:attribute" of its edge implementation (runtime/stages.py)

    def piece(self):
        module, _, attribute = self.runtime.partition(":")
        return getattr(importlib.import_module(module), attribute)


STAGES: dict[str, StageKind] = {
    "keep-lungs": StageKind("keep-lungs", "a lung U-Net run; everything outside its (dilated) lungs is blanked",
                            model_task="segmentation", runtime="edgelabels.runtime.stages:KeepLungs"),
    "crop-box": StageKind("crop-box", "an exported detection run; each image is cut to its most confident box of "
                          "one label (none found: no answer, the image goes to a human)",
                          model_task="detection", runtime="edgelabels.runtime.stages:CropBox"),
}


def get_task(name: str | None) -> Task:
    task = TASKS.get(name or "classification")
    if task is None:
        raise UserError(f"task must be one of {', '.join(TASKS)}, not {name!r}")
    return task


def get_stage_kind(name: str) -> StageKind:
    kind = STAGES.get(name)
    if kind is None:
        raise UserError(f"stage kind must be one of {', '.join(STAGES)}, not {name!r}")
    return kind
