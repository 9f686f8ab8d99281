"""The task table: what differs between classification and segmentation, looked up once by every command.

Like Ultralytics' TASK2DATA / TASK2MODEL maps: one entry per task names its pieces, each as
"module:attribute", imported only when asked for (`task.piece("export")`), so importing this table
imports no Keras or TensorFlow and `predict`/`serve` stay light. A new task (detection, multi-label)
is one entry here plus its own modules, not an `if task == ...` in every layer.

Pieces (signatures):
  dataset(config) -> Dataset                              the training data, unusable files logged and dropped
  model(config, num_classes, weights) -> keras.Model      a fresh model (models/factory.py adds `run:` transfer)
  objectives(train_config) -> {"loss", "metrics", ...}    what the fit loop compiles with
  batches(config, split, labels, caches, augment) -> (train, val)   Keras PyDatasets
  evaluate(model_dir, **options) -> {"metrics", "out", "speed", ...}
  export(run, out, **options) -> report dict              writes the export folder `out`
  edge                                                    the edge runtime class for its exports
  show_evaluation(result), show_export(report, folder)    what the evaluate and export verbs print
  deal(blocks, fraction, rng) -> (kept, held)             how the split shares out blocks of images
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
    evaluate: str
    export: str
    edge: str
    show_evaluation: str  # result -> the lines `edgelabels evaluate` prints
    show_export: str  # (report, folder) -> the lines `edgelabels export` prints
    reads_manifests: bool = True  # data.manifest and data.test_source apply
    deal: str = "edgelabels.data.splits:deal_by_first_label"

    def piece(self, name: str):
        """The named piece, imported now: e.g. task.piece("export")(run, out)."""
        module, _, attribute = getattr(self, name).partition(":")
        return getattr(importlib.import_module(module), attribute)


TASKS: dict[str, Task] = {
    "classification": Task(
        name="classification", noun="classifier", summary="one label per image (folder per label or a Ground Truth manifest)",
        monitors=("val_loss", "val_accuracy", "val_auc"), edge_verb="predict", takes_stages=True,
        dataset="edgelabels.data.prepare:classification_dataset",
        model="edgelabels.models.factory:classifier",
        objectives="edgelabels.models.losses:classification_objectives",
        batches="edgelabels.train.loader:classification_batches",
        evaluate="edgelabels.evaluate.classification:evaluate_classification",
        export="edgelabels.export.export_run:export_classifier",
        edge="edgelabels.runtime.predictor:Predictor",
        show_evaluation="edgelabels.evaluate.command:show_classification",
        show_export="edgelabels.export.command:show_classification",
    ),
    "multilabel": Task(
        name="multilabel", noun="multi-label classifier",
        summary="any number of labels per image, each at its own threshold (a Ground Truth manifest)",
        monitors=("val_loss", "val_accuracy", "val_auc"), edge_verb="predict", takes_stages=True,
        dataset="edgelabels.data.multilabel:multilabel_dataset",
        model="edgelabels.models.factory:multilabel_classifier",
        objectives="edgelabels.models.multilabel:multilabel_objectives",
        batches="edgelabels.train.multilabel_loader:multilabel_batches",
        evaluate="edgelabels.evaluate.multilabel:evaluate_multilabel",
        export="edgelabels.export.multilabel:export_multilabel",
        edge="edgelabels.runtime.predictor:Predictor",
        show_evaluation="edgelabels.evaluate.multilabel:show_multilabel",
        show_export="edgelabels.export.multilabel:show_multilabel",
        deal="edgelabels.data.multilabel:iterative_stratification",
    ),
    "segmentation": Task(
        name="segmentation", noun="lung U-Net", summary="a lung U-Net on images/ + masks/ (255 lung, 0 background, 127 ignored)",
        monitors=("val_loss", "val_dice", "val_iou"), edge_verb="segment", takes_stages=False,
        dataset="edgelabels.data.prepare:segmentation_dataset",
        model="edgelabels.models.factory:unet",
        objectives="edgelabels.models.losses:segmentation_objectives",
        batches="edgelabels.train.loader:segmentation_batches",
        evaluate="edgelabels.evaluate.segmentation:evaluate_segmentation",
        export="edgelabels.export.export_run:export_segmentation",
        edge="edgelabels.runtime.segmenter:Segmenter",
        show_evaluation="edgelabels.evaluate.command:show_segmentation",
        show_export="edgelabels.export.command:show_segmentation",
        reads_manifests=False,
    ),
    "detection": Task(
        name="detection", noun="detector",
        summary="boxes with labels (a Ground Truth object-detection manifest, a YOLO folder or a COCO file)",
        monitors=("val_loss",), edge_verb="predict", takes_stages=False,
        dataset="edgelabels.data.detection:detection_dataset",
        model="edgelabels.models.factory:detector",
        objectives="edgelabels.models.detection_losses:detection_objectives",
        batches="edgelabels.train.detection_loader:detection_batches",
        evaluate="edgelabels.evaluate.detection:evaluate_detection",
        export="edgelabels.export.export_run:export_detection",
        edge="edgelabels.runtime.detector:Detector",
        show_evaluation="edgelabels.evaluate.detection:show_detection",
        show_export="edgelabels.export.command:show_detection",
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
