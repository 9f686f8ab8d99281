"""The on-disk layouts, a run directory and an export folder: every file name, their readers and writers.

No other module spells these names. Readers raise one clear UserError for "not a run", "not an
export", "unfinished run" and "written by a newer layout"; writers go through edgelabels.atomic,
so a file is whole or absent.

runs/NAME/ (RunDir)
  layout.json        {"layout": "run", "version": 2}
  config.yaml        the resolved config
  splits/            train.txt, val.txt, test.txt; a detector's also boxes.jsonl (data/splits.py)
  labels.json        label names in model output order
  preprocess.json    the PreprocessSpec the model was trained with
  model.keras        the best epoch by the monitored validation metric
  history.csv        one row per epoch of both stages
  train.log          what happened, in words
  checkpoint/        last.keras + state.json, for --resume
  stages.json        the steps before the model (a lung U-Net that keeps only the lungs, ...), if any
  stage-cache/N/     stage N's model outputs per image, computed once
  evaluation/        written by `evaluate`
  export/            an export folder

RUN/export/ (ExportDir)
  layout.json        {"layout": "export", "version": 2,
                      "task": "classification" | "multilabel" | "segmentation" | "detection"}
  model.onnx         fp32, input "input" (N, H, W, C), output "probabilities" (a detector's: "detections")
  model.int8.onnx    with --int8, when it pays
  labels.json, preprocess.json
  thresholds.json    label -> assumed threshold (0-1), for the tasks that have thresholds
  review.json        {"threshold": 0-1, "source": ...}: a classifier's review threshold, when the run was evaluated
                     with one (--review-accuracy chooses it on validation): `predict` then adds "HumanReview"
  export_report.json parity, latencies, sizes
  stages.json        [{"kind", "model": "stages/N", ...}]; stages/N/ is that stage's own export folder

runs/NAME-tune/ (TuneDir, written by `edgelabels tune`)
  layout.json        {"layout": "tune", "version": 2}
  config.yaml        the resolved config the study searches around (its tune: section is the space)
  study.db           the Optuna study (SQLite): each trial's parameters, validation value per epoch, state
  budget.json        the budget and the time spent so far, updated every second (what --resume continues)
  trials/NNNN/       trial NNNN's run directory, an ordinary run (evaluate, export and serve take it)
  logs/NNNN.log      what trial NNNN's process printed
  logs/final.log     what the final step (the chosen run's evaluation and export) printed
  best.json          {"trial", "run", "value", "monitor"}: the chosen run (validation only)
  best               a link to that run's directory; its evaluation/ and export/ are the study's final step
  trials.csv         one row per trial: state, value, seconds, parameters, the validation value of every epoch
  report.html        trials table, optimisation history, parameter importances, the best trial's evaluation
  history.png        the optimisation history plot that report.html embeds

Layout 1 (edgelabels 0.1, no layout.json) used the same names except for the chain: a run held
segment.json ({"run", "masking"}) and segment-cache/, an export segment.json ({"model": "segment",
"masking"}) and segment/, and a U-Net export was marked by segmentation.json. It is read as it is.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import math
from pathlib import Path

import yaml

from edgelabels import atomic
from edgelabels.data.preprocess import PreprocessSpec
from edgelabels.errors import UserError
from edgelabels.tasks import TASKS

LAYOUT_VERSION = 2
LAYOUT_FILE = "layout.json"
LABELS_FILE = "labels.json"
PREPROCESS_FILE = "preprocess.json"
STAGES_FILE = "stages.json"
EVALUATION_DIR = "evaluation"  # inside a run or an export: written by `evaluate`
V1_CHAIN_FILE = "segment.json"  # layout 1: the chain, in a run and in an export
V1_UNET_MARKER = "segmentation.json"  # layout 1: a U-Net export


def _read_json(path: Path, what: str):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: missing ({what})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None


def _read_spec(path: Path) -> PreprocessSpec:
    try:
        return PreprocessSpec.from_json(_read_json(path, "the preprocessing the model expects"))
    except (TypeError, AttributeError) as exc:
        raise UserError(f"{path}: not a valid preprocessing description ({exc})") from None


def _check_layout(folder: Path, expected: str) -> dict:
    """layout.json's contents ({} for layout 1); refuses the other kind of folder and newer layouts."""
    path = folder / LAYOUT_FILE
    if not path.is_file():
        return {}
    layout = _read_json(path, "layout")
    if not isinstance(layout, dict):
        raise UserError(f"{path}: not a layout description")
    kind, version = layout.get("layout"), layout.get("version")
    if kind != expected:
        names = {"run": "a run directory", "export": "an export folder", "tune": "a tune directory"}
        other = names.get(kind, f"a {kind!r} folder")
        wanted = names[expected]
        if kind == "tune":
            other += f" (its chosen run is {folder / TuneDir.BEST})"
        raise UserError(f"{folder}: {other}, not {wanted}")
    if not isinstance(version, int) or version > LAYOUT_VERSION:
        raise UserError(f"{folder}: written in layout {version} by a newer edgelabels; this one reads layouts "
                        f"1-{LAYOUT_VERSION} (upgrade edgelabels)")
    return layout


def _known_task(task, source: Path) -> str:
    if task not in TASKS:
        raise UserError(f"{source}: task {task!r} is not one this edgelabels knows ({', '.join(TASKS)}); "
                        "was it written by a newer version?")
    return task


def _write_layout(folder: Path, kind: str, **extra) -> None:
    atomic.write_json(folder / LAYOUT_FILE, {"layout": kind, "version": LAYOUT_VERSION, **extra})


class TrainState:
    """checkpoint/state.json: which stage, how many epochs done in it, which stage checkpoint/last.keras was saved
    in, the best monitored value."""

    def __init__(self, path: Path, monitor: str):
        self.path = path
        self.monitor = monitor
        self.data = {"stage": "a", "epoch": 0, "checkpoint": None, "best": None, "best_epoch": None, "done": False}
        if path.exists():
            saved = _read_json(path, "training state")
            self.data.update(saved)
            if "checkpoint" not in saved:
                # Written before the field: stage b's first checkpoint comes with epoch 1, so {b, 0} still holds a's.
                self.data["checkpoint"] = "a" if (self.data["stage"], self.data["epoch"]) == ("b", 0) \
                    else self.data["stage"]

    @property
    def checkpoint_stage(self) -> str:
        """The stage checkpoint/last.keras belongs to ("a" before the first one is recorded)."""
        return self.data["checkpoint"] or "a"

    def improved(self, value: float) -> bool:
        best = self.data["best"]
        if best is None or not math.isfinite(best):
            return math.isfinite(value)
        return value < best if self.monitor == "val_loss" else value > best

    def save(self) -> None:
        atomic.write_json(self.path, self.data)


class _ModelFolder:
    """What a run directory and an export folder share: a model's labels, its preprocessing, its stage list."""

    def __init__(self, path: str | Path):
        self.dir = Path(path)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.dir)!r})"

    labels_path = property(lambda self: self.dir / LABELS_FILE)
    preprocess_path = property(lambda self: self.dir / PREPROCESS_FILE)
    stages_path = property(lambda self: self.dir / STAGES_FILE)
    evaluation_dir = property(lambda self: self.dir / EVALUATION_DIR)

    @functools.cached_property
    def labels(self) -> list[str]:
        labels = _read_json(self.labels_path, "the model's label names")
        if not isinstance(labels, list) or not all(isinstance(name, str) for name in labels):
            raise UserError(f"{self.labels_path}: expected a list of label names")
        return labels

    @functools.cached_property
    def spec(self) -> PreprocessSpec:
        return _read_spec(self.preprocess_path)

    def write_labels(self, labels: list[str]) -> None:
        atomic.write_json(self.labels_path, list(labels))

    def write_preprocess(self, spec: PreprocessSpec) -> None:
        atomic.write_json(self.preprocess_path, spec.to_json())

    def _stage_list(self, model_key: str) -> list[dict]:
        """stages.json's list; each entry must name its kind and its model (`model_key`)."""
        described = _read_json(self.stages_path, "the stages before the model")
        stages = described.get("stages") if isinstance(described, dict) else None
        if not isinstance(stages, list) or not all(isinstance(s, dict) and "kind" in s and model_key in s
                                                   for s in stages):
            raise UserError(f"{self.stages_path}: not a valid stage list")
        return stages

    def _v1_chain(self, *required: str) -> dict | None:
        """Layout 1's segment.json, or None."""
        path = self.dir / V1_CHAIN_FILE
        if not path.is_file():
            return None
        described = _read_json(path, "the lung chain")
        if not isinstance(described, dict) or any(key not in described for key in required):
            raise UserError(f"{path}: not a valid chain description")
        return described


class RunDir(_ModelFolder):
    """runs/NAME/: paths, readers and writers. RunDir(path) only names files; RunDir.load checks a finished run."""

    CONFIG = "config.yaml"
    SPLITS = "splits"
    MODEL = "model.keras"
    HISTORY = "history.csv"
    LOG = "train.log"
    CHECKPOINT = "checkpoint"
    LAST = "last.keras"
    STATE = "state.json"
    RECIPE = "recipe.json"  # what the recipe chose for the `auto` keys, and why (train/recipe.py)
    CALIBRATION = "calibration.json"  # score calibration fitted on the validation split (evaluate/calibration.py)
    STAGE_CACHE = "stage-cache"
    TENSORBOARD = "tensorboard"
    EXPORT = "export"
    V1_CACHE = "segment-cache"

    # ---- paths
    config_path = property(lambda self: self.dir / self.CONFIG)
    splits_dir = property(lambda self: self.dir / self.SPLITS)
    model_path = property(lambda self: self.dir / self.MODEL)
    history_path = property(lambda self: self.dir / self.HISTORY)
    log_path = property(lambda self: self.dir / self.LOG)
    last_path = property(lambda self: self.dir / self.CHECKPOINT / self.LAST)
    state_path = property(lambda self: self.dir / self.CHECKPOINT / self.STATE)
    tensorboard_dir = property(lambda self: self.dir / self.TENSORBOARD)
    export_dir = property(lambda self: self.dir / self.EXPORT)
    recipe_path = property(lambda self: self.dir / self.RECIPE)
    calibration_path = property(lambda self: self.dir / self.CALIBRATION)

    def stage_cache(self, index: int) -> Path:
        return self.dir / self.STAGE_CACHE / str(index)

    # ---- readers
    @classmethod
    def load(cls, path: str | Path) -> "RunDir":
        """A finished run (config, labels, preprocessing and model present), its small files read."""
        run = cls(path)
        if not run.dir.is_dir():
            raise UserError(f"{run.dir}: run directory not found")
        _check_layout(run.dir, "run")
        for name in (cls.CONFIG, LABELS_FILE, PREPROCESS_FILE, cls.MODEL):
            if not (run.dir / name).is_file():
                if name == cls.CONFIG and ExportDir(run.dir).is_export():
                    raise UserError(f"{run.dir}: an export folder, not a run directory")
                raise UserError(f"{run.dir}: not a finished run ({name} missing; train it, or --resume it)")
        _ = run.config, run.labels, run.spec  # read now: a corrupt file is an error here, not later
        return run

    def is_run(self) -> bool:
        return self.config_path.is_file()

    @functools.cached_property
    def config(self) -> dict:
        """The resolved config as saved (a dict: an older run's config need not pass today's checks)."""
        try:
            config = yaml.safe_load(self.config_path.read_text()) or {}
        except FileNotFoundError:
            raise UserError(f"{self.dir}: not a run directory ({self.CONFIG} missing)") from None
        except yaml.YAMLError as exc:
            raise UserError(f"{self.config_path}: not valid YAML ({exc})") from None
        if not isinstance(config, dict):
            raise UserError(f"{self.config_path}: not a mapping of config keys")
        return config

    @property
    def task(self) -> str:
        return _known_task(self.config.get("task", "classification"), self.config_path)

    @property
    def backbone(self) -> str | None:
        return (self.config.get("model") or {}).get("backbone")

    @property
    def split(self):
        from edgelabels.data.splits import read_split

        return read_split(self.splits_dir)

    def has_split(self) -> bool:
        from edgelabels.data.splits import SPLIT_NAMES

        return all((self.splits_dir / f"{name}.txt").is_file() for name in SPLIT_NAMES)

    def label_indices(self, samples) -> list[int]:
        index = {name: i for i, name in enumerate(self.labels)}
        try:
            return [index[s.label] for s in samples]
        except KeyError as exc:
            raise UserError(f"{self.dir}: label {exc.args[0]!r} is not one of the model's labels {self.labels}") \
                from None

    def read_stages(self) -> list[dict]:
        """The steps before the model: [{"kind", "run" (its own run directory), "masking", "cache" (Path)}]."""
        if self.stages_path.is_file():
            return [{**s, "cache": self.stage_cache(i)} for i, s in enumerate(self._stage_list("run"))]
        v1 = self._v1_chain("run", "masking")
        if v1 is not None:
            return [{"kind": "keep-lungs", "run": v1["run"], "masking": v1["masking"],
                     "cache": self.dir / self.V1_CACHE}]
        return []

    def restartable(self) -> bool:
        """A run whose attempt completed no epoch (a bad source, a kill in epoch 1): the same command starts it
        again. Only a folder `start` marked (layout.json + config.yaml) qualifies, never a user's own folder."""
        if not ((self.dir / LAYOUT_FILE).is_file() and self.is_run()):
            return False
        _check_layout(self.dir, "run")
        if any(p.exists() for p in (self.model_path, self.last_path, self.evaluation_dir, self.export_dir)):
            return False
        state = self.train_state("val_loss").data
        return state["stage"] == "a" and not state["epoch"] and not state["done"]

    # ---- writers
    # What a run writes; `clear` removes these and nothing else.
    OWN_FILES = (LAYOUT_FILE, CONFIG, LABELS_FILE, PREPROCESS_FILE, STAGES_FILE, HISTORY, LOG, MODEL, V1_CHAIN_FILE)
    OWN_FOLDERS = (SPLITS, CHECKPOINT, STAGE_CACHE, TENSORBOARD, V1_CACHE)

    def clear(self) -> None:
        """Remove the run layout's own files and folders (an earlier attempt's), so that it can start again; anything
        else in the folder stays."""
        import shutil

        for name in self.OWN_FILES:
            (self.dir / name).unlink(missing_ok=True)
        for name in self.OWN_FOLDERS:
            shutil.rmtree(self.dir / name, ignore_errors=True)

    def start(self, config_yaml: str) -> None:
        """A new run: the folder, its layout marker and the resolved config."""
        self.dir.mkdir(parents=True, exist_ok=True)
        _write_layout(self.dir, "run")
        atomic.write_text(self.config_path, config_yaml)

    def write_split(self, split) -> None:
        from edgelabels.data.splits import write_split

        write_split(split, self.splits_dir)

    def write_stages(self, stages: list[dict]) -> None:
        """stages: [{"kind", "run", ...options}] (cache folders follow from the position)."""
        atomic.write_json(self.stages_path, {"stages": [{k: v for k, v in s.items() if k != "cache"}
                                                        for s in stages]})

    def train_state(self, monitor: str) -> TrainState:
        return TrainState(self.state_path, monitor)

    def append_history(self, stage: str, epoch: int, logs: dict) -> None:
        """One row per epoch; a resumed epoch replaces the row it had."""
        path = self.history_path
        rows = list(csv.DictReader(io.StringIO(path.read_text()))) if path.exists() else []
        rows = [r for r in rows if not (r["stage"] == stage and int(r["epoch"]) >= epoch)]
        rows.append({"stage": stage, "epoch": epoch, **{k: f"{v:.6g}" for k, v in logs.items()}})
        fields = list(dict.fromkeys(k for r in rows for k in r))
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
        atomic.write_text(path, out.getvalue())

    def read_history(self) -> list[dict]:
        return list(csv.DictReader(io.StringIO(self.history_path.read_text()))) if self.history_path.exists() else []


class ExportDir(_ModelFolder):
    """RUN/export/ (or any folder `edgelabels export` wrote): paths, readers and writers."""

    MODEL = "model.onnx"
    MODEL_INT8 = "model.int8.onnx"
    THRESHOLDS = "thresholds.json"
    REVIEW = "review.json"
    REPORT = "export_report.json"
    CALIBRATION = "calibration.json"  # the score map the edge runtime applies before thresholds (absent: none)
    STAGES_DIR = "stages"
    V1_STAGE_DIR = "segment"

    model_path = property(lambda self: self.dir / self.MODEL)
    int8_path = property(lambda self: self.dir / self.MODEL_INT8)
    thresholds_path = property(lambda self: self.dir / self.THRESHOLDS)
    review_path = property(lambda self: self.dir / self.REVIEW)
    report_path = property(lambda self: self.dir / self.REPORT)
    calibration_path = property(lambda self: self.dir / self.CALIBRATION)

    def stage_dir(self, index: int) -> Path:
        return self.dir / self.STAGES_DIR / str(index)

    def onnx_path(self, precision: str) -> Path:
        return {"fp32": self.model_path, "int8": self.int8_path}[precision]

    @classmethod
    def load(cls, path: str | Path) -> "ExportDir":
        """An export folder (model.onnx present); labels and preprocessing are read when first asked for."""
        export = cls(path)
        if not export.dir.is_dir():
            raise UserError(f"{export.dir}: no such model folder (expected RUN/export/ written by `edgelabels export`)")
        _ = export.layout  # a newer layout, or a run directory's marker, is refused here
        if not export.model_path.is_file():
            if RunDir(export.dir).is_run():
                raise UserError(f"{export.dir}: a run directory, not an export folder (export it first: "
                                f"`edgelabels export {export.dir}`)")
            raise UserError(f"{export.model_path}: missing (is this a folder written by `edgelabels export`?)")
        return export

    def is_export(self) -> bool:
        return self.model_path.is_file()

    @functools.cached_property
    def layout(self) -> dict:
        return _check_layout(self.dir, "export")

    @property
    def task(self) -> str:
        """From layout.json; layout 1: segmentation.json marks a U-Net, else the run one level up says."""
        if self.layout.get("task"):
            return _known_task(self.layout["task"], self.dir / LAYOUT_FILE)
        if (self.dir / V1_UNET_MARKER).is_file():
            return "segmentation"
        run = self.run
        return run.task if run is not None else "classification"

    @property
    def run(self) -> RunDir | None:
        """The run this export sits in (RUN/export/), or None for a copied folder."""
        run = RunDir(self.dir.parent)
        return run if run.is_run() else None

    def read_thresholds(self) -> dict[str, float]:
        thresholds = _read_json(self.thresholds_path, "the assumed threshold of each label")
        missing = [name for name in self.labels if name not in thresholds]
        if missing:
            raise UserError(f"{self.thresholds_path}: no threshold for labels {missing}")
        return {name: float(thresholds[name]) for name in self.labels}

    def read_review_threshold(self) -> float | None:
        """The top confidence (0-1) below which an answer goes to a person; None when the export carries none
        (exported before review.json existed, or from a run not evaluated with a review threshold)."""
        if not self.review_path.is_file():
            return None
        review = _read_json(self.review_path, "the review threshold")
        threshold = review.get("threshold") if isinstance(review, dict) else None
        # a threshold no validation image reached is just above the top confidence: a hair above 1 at most
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1 + 1e-6:
            raise UserError(f"{self.review_path}: threshold must be a number from 0 to 1, not {threshold!r}")
        return float(threshold)

    def read_report(self) -> dict:
        return _read_json(self.report_path, "the export report")

    def read_stages(self) -> list[dict]:
        """[{"kind", "model" (Path of the stage's export folder), ...options}] in order."""
        if self.stages_path.is_file():
            return [{**s, "model": self.dir / s["model"]} for s in self._stage_list("model")]
        v1 = self._v1_chain("masking")
        if v1 is not None:
            return [{"kind": "keep-lungs", "model": self.dir / v1.get("model", self.V1_STAGE_DIR),
                     "masking": v1["masking"]}]
        return []

    # ---- writers (into the temporary folder `export` builds and renames into place)
    def write_layout(self, task: str) -> None:
        _write_layout(self.dir, "export", task=task)

    def write_thresholds(self, thresholds: dict[str, float]) -> None:
        atomic.write_json(self.thresholds_path, thresholds)

    def write_review(self, review: dict) -> None:
        """review: {"threshold": 0-1, "source": where it came from, ...}."""
        atomic.write_json(self.review_path, review)

    def write_report(self, report: dict) -> None:
        atomic.write_json(self.report_path, report)

    def write_stages(self, stages: list[dict]) -> None:
        """stages: [{"kind", ...options}] in order; stage N's model is the export folder stage_dir(N)."""
        atomic.write_json(self.stages_path, {"stages": [
            {**{k: v for k, v in s.items() if k not in ("run", "cache", "model")},
             "model": self.stage_dir(i).relative_to(self.dir).as_posix()} for i, s in enumerate(stages)]})


class TuneDir:
    """runs/NAME-tune/: what `edgelabels tune` writes; each trial is an ordinary RunDir inside it."""

    CONFIG = "config.yaml"
    STUDY = "study.db"
    BUDGET = "budget.json"
    TRIALS = "trials"
    LOGS = "logs"
    BEST_JSON = "best.json"
    BEST = "best"
    TRIALS_CSV = "trials.csv"
    REPORT = "report.html"
    HISTORY_PLOT = "history.png"

    def __init__(self, path: str | Path):
        self.dir = Path(path)

    def __repr__(self) -> str:
        return f"TuneDir({str(self.dir)!r})"

    config_path = property(lambda self: self.dir / self.CONFIG)
    study_path = property(lambda self: self.dir / self.STUDY)
    budget_path = property(lambda self: self.dir / self.BUDGET)
    best_json_path = property(lambda self: self.dir / self.BEST_JSON)
    best_path = property(lambda self: self.dir / self.BEST)
    trials_csv_path = property(lambda self: self.dir / self.TRIALS_CSV)
    report_path = property(lambda self: self.dir / self.REPORT)
    history_plot_path = property(lambda self: self.dir / self.HISTORY_PLOT)

    @property
    def study_url(self) -> str:
        return f"sqlite:///{self.study_path.resolve()}"

    def trial_run(self, number: int) -> RunDir:
        return RunDir(self.dir / self.TRIALS / f"{number:04d}")

    def trial_log(self, number: int) -> Path:
        return self.dir / self.LOGS / f"{number:04d}.log"

    @property
    def final_log(self) -> Path:
        return self.dir / self.LOGS / "final.log"

    def is_tune(self) -> bool:
        return (self.dir / LAYOUT_FILE).is_file() and _check_layout(self.dir, "tune") != {}

    def start(self, config_yaml: str, budget_s: float) -> None:
        """A new study's folder: layout marker, resolved config, the budget with nothing spent."""
        if self.dir.exists() and any(self.dir.iterdir()):
            raise UserError(f"{self.dir}: already exists (use --resume to continue its study, or --out for a new one)")
        (self.dir / self.LOGS).mkdir(parents=True, exist_ok=True)
        (self.dir / self.TRIALS).mkdir(exist_ok=True)
        _write_layout(self.dir, "tune")
        atomic.write_text(self.config_path, config_yaml)
        self.write_budget({"budget_s": budget_s, "spent_s": 0.0})

    def check_resumable(self) -> None:
        if not self.dir.is_dir() or not self.is_tune():
            raise UserError(f"{self.dir}: no study to resume (not a folder written by `edgelabels tune`)")
        for path in (self.config_path, self.study_path, self.budget_path):
            if not path.is_file():
                raise UserError(f"{self.dir}: cannot resume, {path.name} is missing")

    def read_budget(self) -> dict:
        budget = _read_json(self.budget_path, "the budget and the time spent")
        if not isinstance(budget, dict) or not all(isinstance(budget.get(k), (int, float))
                                                   for k in ("budget_s", "spent_s")):
            raise UserError(f"{self.budget_path}: not a budget description")
        return budget

    def write_budget(self, budget: dict) -> None:
        atomic.write_json(self.budget_path, budget)

    def write_best(self, number: int, value: float, monitor: str) -> RunDir:
        """best.json and the `best` link (replaced atomically) to trial `number`'s run."""
        import os

        run = self.trial_run(number)
        atomic.write_json(self.best_json_path, {"trial": number, "run": run.dir.relative_to(self.dir).as_posix(),
                                                "value": value, "monitor": monitor})
        link = self.dir / f".{self.BEST}.{os.getpid()}.tmp"
        link.unlink(missing_ok=True)
        link.symlink_to(run.dir.relative_to(self.dir), target_is_directory=True)
        os.replace(link, self.best_path)
        return run

    def read_best(self) -> dict | None:
        return _read_json(self.best_json_path, "the chosen trial") if self.best_json_path.is_file() else None


def open_model_dir(path: str | Path | RunDir | ExportDir) -> RunDir | ExportDir:
    """A run directory (model.keras) or an export folder (model.onnx), loaded; one error for anything else.
    A folder already opened is returned as it is."""
    if isinstance(path, _ModelFolder):
        return path
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such run directory or export folder")
    if ExportDir(path).is_export():
        return ExportDir.load(path)
    if RunDir(path).is_run():
        return RunDir.load(path)
    raise UserError(f"{path}: neither a run directory ({RunDir.MODEL}) nor an exported model ({ExportDir.MODEL})")
