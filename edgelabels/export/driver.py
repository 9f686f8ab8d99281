"""`export RUN`: the one driver that turns a run's Keras model into RUN/export/, checked before it is kept.

Every task goes through the same steps (export_into); what differs is the task's ExportHooks, named by the task
table (tasks.py `exporting`): the graph to convert, how Keras and ONNX outputs are compared, the validation answers,
thresholds and score, how INT8 is judged, and the lines `edgelabels export` prints.

RUN/export/ is built in a temporary sibling folder and renamed into place whole, so an interrupted or failed
export never leaves a half-written model (an older export stays as it was). The layout (artifacts.ExportDir):
  model.onnx           fp32, input "input" (N, H, W, C) normalised pixels; output "probabilities" (N, K) for a
                       classifier, the lung probability (N, H, W, 1) for a U-Net, "detections" (N, K, 6) for a
                       detector (its decoding inside the graph)
  model.int8.onnx      only with --int8, and only when it is faster than fp32 and as good (quantize.py)
  labels.json, preprocess.json   from the run: what the edge must reproduce
  thresholds.json      label -> assumed threshold (0-1), for the tasks that have thresholds
  export_report.json   parity Keras vs ONNX on real images, validation scores, INT8 verdict, sizes, latencies
  stages.json, stages/N/   a run trained behind stages: each stage's model exported by this same driver, and the
                       whole ONNX chain checked against the Keras chain
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from edgelabels import atomic
from edgelabels.artifacts import ExportDir, RunDir
from edgelabels.errors import UserError
from edgelabels.export import quantize as q
from edgelabels.export.onnx_export import OUTPUT_NAME, PARITY_TOLERANCE, keras_to_onnx, parity
from edgelabels.runtime.runner import OnnxModel, input_reader, predict_array, predict_files
from edgelabels.tasks import get_task

VACUOUS_STD = 1e-4  # below this the model answers (almost) the same for every image
BATCH = 32


@dataclass(frozen=True)
class Int8Check:
    """How a task judges its INT8 model against fp32 on the validation split: kept only if faster at batch 1 and
    its measure (0-1, higher is better) at most max_drop_points lower (quantize.speed_and_quality_verdict)."""

    measure: str  # what the verdict names: "validation accuracy"
    missing: str  # what a split without the measure lacks: "images to check its accuracy"
    show: str  # the format of one value of the measure: "{:.1%}"
    compare: Callable  # (run, fp32 answers, int8 answers, thresholds) -> (fp32 value, int8 value, report extras)
    key: str  # the report names the INT8 value validation_KEY and its change in points KEY_change_points
    max_drop_points: float = 0.5  # INT8 ships only within this many points of fp32's measure
    symbolic_shapes: bool = True  # False: symbolic shape inference gives up on the graph (a detector's top-K)

    @property
    def value_key(self) -> str:
        return f"validation_{self.key}"

    @property
    def change_key(self) -> str:
        return f"{self.key}_change_points"

    def verdict(self, fp32_ms: float, int8_ms: float, fp32_value: float | None,
                int8_value: float | None) -> tuple[bool, str]:
        return q.speed_and_quality_verdict(fp32_ms, int8_ms, fp32_value, int8_value, measure=self.measure,
                                           missing=self.missing, show=self.show, max_drop_points=self.max_drop_points)


@dataclass(frozen=True)
class ExportHooks:
    """What one task supplies to `export`; every hook is called by export_into, for every task alike."""

    graph: Callable  # (run, Keras model) -> (the Keras model to convert, facts for the report)
    parity: Callable  # (Keras outputs, ONNX outputs, notes) -> report["parity"] ("images", "max_abs_diff", ...)
    lines: Callable  # (report, folder) -> the lines `edgelabels export` prints
    output_name: str = OUTPUT_NAME
    answer: Callable | None = None  # (run, OnnxModel, chain) -> its answers on the validation split; None: no
    #                                 validation step, no thresholds.json (a U-Net)
    thresholds: Callable | None = None  # (run, answers, notes) -> ({label: threshold}, where they came from)
    score: Callable | None = None  # (run, answers, thresholds) -> report["validation"]
    int8: Int8Check | None = None  # None: --int8 is not attempted for the task (a note says so)
    review: Callable | None = None  # (run, notes) -> review.json's contents, or None (the run's review threshold)


def export_run(run_dir: str | Path, *, int8: bool = False, calibration: int = 100, parity_images: int = 32,
               threads: int | None = None) -> dict:
    """Write RUN/export/ for the run's task; returns its export_report.json contents."""
    run = RunDir.load(run_dir)
    atomic.sweep(run.dir)  # what a killed export (or save) left; a live writer's files stay
    with atomic.directory(run.export_dir) as folder:
        return export_into(run, ExportDir(folder), int8=int8, calibration=calibration, parity_images=parity_images,
                           threads=threads)


def export_lines(report: dict, folder: str | Path) -> list[str]:
    """What `edgelabels export` prints for the report of an export written to `folder`."""
    return get_task(report["task"]).piece("exporting").lines(report, Path(folder))


def export_into(run: RunDir, out: ExportDir, *, int8: bool = False, calibration: int = 100,
                parity_images: int = 32, threads: int | None = None) -> dict:
    """Export `run` into the (new, empty) folder `out`; returns the report written there. calibration: how many
    training images INT8 is calibrated on (the scores' calibration is the run's calibration.json)."""
    from edgelabels.models.factory import keras_runner
    from edgelabels.runtime.stages import run_chain

    task = get_task(run.task)
    hooks = task.piece("exporting")
    spec = run.spec
    model, facts = hooks.graph(run, _keras_model(run))
    chain = run_chain(run, threads)  # the stages of a run trained behind them (a lung U-Net, a detector), else empty
    images = _checkable(run, chain)
    notes: list[str] = []
    report: dict = {"run": str(run.dir), "task": run.task, "backbone": run.backbone, "labels": run.labels,
                    **facts, "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}

    keras_to_onnx(model, out.model_path, source=str(run.model_path), output_name=hooks.output_name)
    fp32 = OnnxModel(out.model_path, threads)
    checked = spread(images, parity_images)
    x = load_inputs(checked, spec, chain)
    report["parity"] = hooks.parity(predict_array(keras_runner(model), x), predict_array(fp32, x), notes)
    if report["parity"]["max_abs_diff"] > PARITY_TOLERANCE:
        raise UserError(f"{run.model_path}: ONNX differs from Keras by {report['parity']['max_abs_diff']:.2e} on "
                        f"{len(x)} images (tolerance {PARITY_TOLERANCE}); nothing exported")

    answers = thresholds = score_map = answer = None
    if hooks.answer is not None:
        raw_answers = hooks.answer(run, fp32, chain)
        score_map = export_calibration(run, raw_answers, report)

        def answer(onnx):  # the task's validation answers, confidences on the scale the export answers them
            return _calibrated_answers(score_map, hooks.answer(run, onnx, chain))

        answers = _calibrated_answers(score_map, raw_answers)
        thresholds, source = hooks.thresholds(run, answers, notes)
        report["thresholds"] = {"source": source, "values": thresholds}
        report["validation"] = hooks.score(run, answers, thresholds)
    review = hooks.review(run, notes) if hooks.review is not None else None
    if review is not None:
        report["review"] = review

    latency = q.batch1_latencies({"onnx_fp32": fp32}, x, seconds=1.0)
    latency["keras_call"] = keras_batch1_ms(model, x)
    report["latency_batch1_ms"] = {**latency, "threads": threads or "onnxruntime default"}
    report["sizes_bytes"] = {run.model_path.name: run.model_path.stat().st_size,
                             out.model_path.name: out.model_path.stat().st_size}
    if int8 and hooks.int8 is None:
        notes.append(f"--int8 is not attempted for a {task.noun}: fp32 only")
    elif int8:
        report["int8"] = _int8(hooks, out, fp32, run, chain, x, answer, answers, thresholds, calibration, threads)
    report["notes"] = notes
    out.write_layout(run.task)
    out.write_labels(run.labels)
    out.write_preprocess(spec)
    if thresholds is not None:
        out.write_thresholds(thresholds)
    if review is not None:
        out.write_review(review)
    if chain:  # the folder is now a whole model export: put its stages in front, check the whole chain
        report["chain"] = _export_stages(out, run, chain, model, checked, parity_images, threads)
    if score_map is not None:  # after the chain's parity check, which compares the model's own outputs
        atomic.write_json(out.calibration_path, score_map.described)
    out.write_report(report)
    return report


def export_calibration(run: RunDir, raw_answers, report: dict):
    """The run's calibration (runtime.calibration.Calibration), fitted on these validation answers (the ONNX
    model's, the validation split in order; answers[0] the confidences) when the run has none yet; None for a task
    not calibrated. report["calibration"] records it."""
    from edgelabels.evaluate.calibration import calibration_of
    from edgelabels.runtime.calibration import from_json

    described = calibration_of(run, lambda paths: raw_answers[0])
    if described is None:
        return None
    report["calibration"] = {key: described.get(key) for key in ("method", "ece_before", "ece_after", "fitted_on",
                                                                 "reason")}
    return from_json(described, run.calibration_path)


def _calibrated_answers(calibration, answers):
    """A task's validation answers (confidences first) with the confidences calibrated."""
    if calibration is None:
        return answers
    return (calibration.apply(answers[0]), *answers[1:])


def _keras_model(run: RunDir):
    """The run's Keras model, with its input checked against the run's preprocess.json."""
    from edgelabels.models.factory import load_model

    model = load_model(run.model_path)
    expected = (run.spec.height, run.spec.width, run.spec.channels)
    if tuple(model.inputs[0].shape[1:]) != expected:
        raise UserError(f"{run.model_path}: input {tuple(model.inputs[0].shape[1:])} does not match "
                        f"{run.preprocess_path} {expected}")
    return model


def _checkable(run: RunDir, chain) -> list:
    """The split's samples to check parity on: those the chain answers (a crop stage finds nothing in some)."""
    images = run.split.test + run.split.val + run.split.train
    if chain:
        chain.precompute([s.path for s in images], progress=False)
        missing = set(chain.missing([s.path for s in images]))
        images = [s for s in images if str(s.path) not in missing]
    if not images:
        raise UserError(f"{run.splits_dir}: no images to check the export against")
    return images


def load_inputs(samples, spec, chain=None) -> np.ndarray:
    """Model inputs (N, H, W, C) for split samples, through the chain (if any) and the one preprocessing."""
    if not samples:
        return np.zeros((0, spec.height, spec.width, spec.channels), np.float32)
    read = input_reader(spec, chain)
    return np.stack([read(s.path) for s in samples])


def predict_samples(onnx: OnnxModel, samples, spec, chain=None) -> np.ndarray:
    """The model's outputs for split samples, batch by batch; (0, 0) for none."""
    if not samples:
        return np.zeros((0, 0), np.float32)
    return predict_files(onnx, [s.path for s in samples], spec, chain, batch_size=BATCH)


def spread(samples, n: int, seed: int = 0) -> list:
    """n samples drawn evenly at random (a split file is usually sorted by label)."""
    order = np.random.default_rng(seed).permutation(len(samples))[:n]
    return [samples[i] for i in sorted(order)]


def vacuous(spread_across_images: float, what: str, notes: list[str]) -> None:
    """A note when the model answers (almost) the same for every image: parity then proves little."""
    if spread_across_images < VACUOUS_STD:
        notes.append(f"the model gives the same {what} for every image (std {spread_across_images:.1e}): "
                     "parity proves little; is the model trained?")


def keras_batch1_ms(model, x: np.ndarray, runs: int = 10) -> float:
    model(x[:1], training=False)
    times = []
    for i in range(runs):
        t = time.perf_counter()
        model(x[i % len(x)][None], training=False)
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1000)


def evaluated_or_validation_thresholds(run: RunDir, probabilities: np.ndarray, truth: np.ndarray, notes: list[str],
                                       f1_maximising, how: str) -> tuple[dict, str]:
    """label -> threshold: the evaluation's when the run was evaluated, else f1_maximising(truth, probabilities)
    (a threshold or None per label) on the validation split; `how` says what f1_maximising does."""
    from edgelabels.evaluate.evaluation import SUMMARY_FILE
    from edgelabels.evaluate.summary import read_summary

    summary_path = run.evaluation_dir / SUMMARY_FILE
    found: dict[str, float | None] = {}
    source = f"validation split ({how})"
    if summary_path.is_file() and not evaluated_on_export_scale(run):
        notes.append(f"{summary_path}: its thresholds are on another confidence scale than the export's calibration "
                     "(evaluated before it was fitted); chosen on the validation split instead")
    elif summary_path.is_file():
        found = read_summary(summary_path).thresholds
        source = f"{summary_path} (LabelEvaluationResults[].Metrics.Threshold)"
    missing = [name for name in run.labels if found.get(name) is None]
    if missing and len(truth):
        computed = dict(zip(run.labels, f1_maximising(truth, probabilities)))
        if found:
            notes.append(f"thresholds for {missing} computed on the validation split (none in the evaluation)")
        found.update({name: computed[name] for name in missing})
    return or_half(run.labels, found, notes, "no image"), source


def evaluated_on_export_scale(run: RunDir) -> bool:
    """Whether RUN/evaluation/ read confidences as the export answers them: evaluated with the run's calibration
    as it is now (metrics.json's "calibration" entry says which; without one, the evaluation is newer than
    calibration.json, which `evaluate` reads and never rewrites), or neither calibrated (a run evaluated before
    calibration existed whose calibration leaves scores alone)."""
    import json

    from edgelabels.evaluate.evaluation import METRICS_FILE
    from edgelabels.runtime.calibration import read_calibration

    metrics_path = run.evaluation_dir / METRICS_FILE
    current = read_calibration(run.calibration_path)
    try:
        entry = json.loads(metrics_path.read_text(encoding="utf-8")).get("calibration")
    except (OSError, ValueError, AttributeError):
        entry = None
    if current is None or not current.changes_scores:
        return not entry or entry.get("method") == "none"
    if entry:
        return entry.get("method") == current.method \
            and entry.get("parameters") == (current.described or {}).get("parameters")
    return metrics_path.is_file() and metrics_path.stat().st_mtime_ns >= run.calibration_path.stat().st_mtime_ns


def or_half(labels: list[str], found: dict, notes: list[str], lacking: str) -> dict[str, float]:
    """Each label's threshold, 0.5 (and a note) where none could be set."""
    thresholds = {}
    for name in labels:
        if found.get(name) is None:
            notes.append(f"label {name!r}: {lacking} to set its assumed threshold; 0.5 assumed")
            thresholds[name] = 0.5
        else:
            thresholds[name] = float(found[name])
    return thresholds


def _int8(hooks: ExportHooks, out: ExportDir, fp32, run: RunDir, chain, x, answer, fp32_answers, thresholds,
          calibration: int, threads) -> dict:
    """model.int8.onnx, calibrated on training images, kept only if the task's check passes (else deleted)."""
    check = hooks.int8
    scheme = q.scheme_for(run.backbone)
    if not scheme.pays:
        return {"shipped": False, "attempted": False, "scheme": scheme.to_json(),
                "reason": f"INT8 not attempted for {run.backbone}: {scheme.note}"}
    samples = spread(run.split.train or run.split.val, calibration)
    if not samples:
        raise UserError(f"{run.splits_dir}: no training images to calibrate INT8 on")
    q.quantize(out.model_path, out.int8_path, load_inputs(samples, run.spec, chain), scheme,
               symbolic_shapes=check.symbolic_shapes)
    int8 = OnnxModel(out.int8_path, threads)
    latency = q.batch1_latencies({"fp32": fp32, "int8": int8}, x)
    fp32_value, int8_value, extras = check.compare(run, fp32_answers, answer(int8), thresholds)
    shipped, reason = check.verdict(latency["fp32"], latency["int8"], fp32_value, int8_value)
    result = {"shipped": shipped, "attempted": True, "reason": reason, "scheme": scheme.to_json(),
              "calibration_images": len(samples), "batch1_ms": latency, "speedup": latency["fp32"] / latency["int8"],
              check.value_key: int8_value, **extras,
              check.change_key: None if int8_value is None or fp32_value is None else (int8_value - fp32_value) * 100,
              "size_bytes": out.int8_path.stat().st_size}
    if not shipped:
        out.int8_path.unlink()  # fp32 only: the edge runtime's "auto" must not pick a worse model
    return result


def _export_stages(out: ExportDir, run: RunDir, chain, model, samples, parity_images: int, threads) -> dict:
    """Each stage's model exported by this driver into out/stages/N/, stages.json written, and the whole ONNX
    chain (what the Predictor runs) checked against the Keras chain."""
    from edgelabels.models.factory import keras_runner
    from edgelabels.runtime.predictor import Predictor

    described, stage_reports = run.read_stages(), []
    for i, stage in enumerate(chain.stages):
        folder = out.stage_dir(i)
        shipped = getattr(stage, "export_dir", None)
        if shipped is not None:  # the stage ran an export in training (a detector): that very folder ships
            shutil.copytree(shipped, folder)
            copied = ExportDir(folder)
            stage_reports.append(copied.read_report() if copied.report_path.is_file() else {"parity": None})
            continue
        folder.mkdir(parents=True, exist_ok=True)
        stage_reports.append(export_into(RunDir.load(described[i]["run"]), ExportDir(folder),
                                         parity_images=parity_images, threads=threads))
    out.write_stages([s.describe() for s in chain.stages])

    # Keras chain: each stage's Keras model computed fresh (Chain.image skips the training caches) -> the Keras
    # model; ONNX chain: the Predictor on the finished folder.
    keras_chain = predict_array(keras_runner(model), np.stack([_chained_input(chain, s.path, run.spec)
                                                               for s in samples]))
    onnx_chain = Predictor(out.dir, precision="fp32", threads=threads).probabilities([s.path for s in samples])
    check = parity(keras_chain, onnx_chain)
    if check["max_abs_diff"] > PARITY_TOLERANCE:
        raise UserError(f"{run.dir}: the ONNX chain ({chain.describe()} + {get_task(run.task).noun}) differs from the "
                        f"Keras chain by {check['max_abs_diff']:.2e} on {check['images']} images (tolerance "
                        f"{PARITY_TOLERANCE}); nothing exported")
    return {"stages": [{"kind": s["kind"], "run": str(s["run"]), "parity": r["parity"]}
                       for s, r in zip(described, stage_reports)],
            "chain_parity": {**check, "tolerance": PARITY_TOLERANCE}}


def _chained_input(chain, path, spec) -> np.ndarray:
    from edgelabels.data.images import read_image
    from edgelabels.data.preprocess import preprocess

    return preprocess(chain.image(read_image(path)[0]), spec)


# ---------------------------------------------------------------- the lines every task's `lines` hook shares


def wrote_line(report: dict, out: Path, what: str) -> str:
    """The first line: the files written, `what` the model is and how to run it."""
    int8 = f", {ExportDir.MODEL_INT8}" if report.get("int8", {}).get("shipped") else ""
    return f"wrote {out}/: {ExportDir.MODEL} ({report['sizes_bytes'][ExportDir.MODEL] / 1e6:.1f} MB){int8}{what}"


def latency_line(report: dict) -> str:
    latency = report["latency_batch1_ms"]
    keras = f", Keras {latency['keras_call']:.3g} ms" if "keras_call" in latency else ""
    return f"batch-1 latency: ONNX fp32 {latency['onnx_fp32']:.3g} ms{keras}"


def closing_lines(report: dict, out: Path) -> list[str]:
    """The calibration (if any), the chain (if any), the INT8 verdict (if asked for) and the notes."""
    lines = []
    if "calibration" in report:
        c = report["calibration"]
        lines.append(f"calibration ({c['method']}, in {ExportDir.CALIBRATION}): {c['reason']}")
    if "chain" in report:
        chain = report["chain"]["chain_parity"]
        stages = ", ".join(f"{s['kind']} with {s['run']}" for s in report["chain"]["stages"])
        lines.append(f"chained after its stages ({stages}; exported in {out}/stages/): ONNX chain vs Keras chain "
                     f"max abs diff {chain['max_abs_diff']:.1e} on {chain['images']} images")
    if "int8" in report:
        lines.append(report["int8"]["reason"])
    return lines + [f"note: {note}" for note in report["notes"]]
