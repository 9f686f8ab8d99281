"""`export RUN`: the run's Keras model -> RUN/export/, checked against Keras before it is kept.

RUN/export/ is built in a temporary sibling folder and renamed into place whole, so an interrupted
or failed export never leaves a half-written model (an older export stays as it was). The layout
(artifacts.ExportDir) holds, for a classifier:
  model.onnx           fp32, input "input" (N, H, W, C) normalised pixels, output "probabilities" (N, K)
  model.int8.onnx      only with --int8, and only when it is faster than fp32 and as accurate (quantize.py)
  labels.json, preprocess.json   from the run: what the edge must reproduce
  thresholds.json      label -> assumed threshold (0-1): from RUN/evaluation/summary.json when the
                       run was evaluated, else the F1-maximising confidence on the validation split
  export_report.json   parity Keras vs ONNX on real images, INT8 verdict, sizes, latencies
  stages.json, stages/N/   a run trained behind stages: each stage's model exported by its own task
                       (a U-Net export), and the whole ONNX chain checked against the Keras chain
A U-Net (task segmentation) exports model.onnx (lung probability (N, H, W, 1)) the same way; a
detector (task detection) model.onnx with its decoding inside, output "detections" (N, K, 6), and
thresholds.json per label from its validation boxes. Which function exports which task comes from
the task table (tasks.py).
"""

from __future__ import annotations

import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from edgelabels import atomic
from edgelabels.artifacts import ExportDir, RunDir
from edgelabels.errors import UserError
from edgelabels.export import quantize as q
from edgelabels.export.onnx_export import PARITY_TOLERANCE, keras_to_onnx, parity
from edgelabels.runtime.runner import OnnxModel, input_reader, predict_array, predict_files
from edgelabels.tasks import get_task

VACUOUS_STD = 1e-4  # below this the model answers (almost) the same for every image
BATCH = 32


def export_run(run_dir: str | Path, *, int8: bool = False, calibration: int = 100, parity_images: int = 32,
               threads: int | None = None) -> dict:
    """Write RUN/export/ with the exporter of the run's task; returns its export_report.json contents."""
    run = RunDir.load(run_dir)
    atomic.sweep(run.dir)  # what a killed export (or save) left; a live writer's files stay
    with atomic.directory(run.export_dir) as folder:
        return get_task(run.task).piece("export")(run, ExportDir(folder), int8=int8, calibration=calibration,
                                                  parity_images=parity_images, threads=threads)


def load_inputs(samples, spec, chain=None) -> np.ndarray:
    """Model inputs (N, H, W, C) for split samples, through the chain (if any) and the one preprocessing."""
    if not samples:
        return np.zeros((0, spec.height, spec.width, spec.channels), np.float32)
    read = input_reader(spec, chain)
    return np.stack([read(s.path) for s in samples])


def accuracy(probabilities: np.ndarray, truth: np.ndarray) -> float | None:
    return float(np.mean(probabilities.argmax(1) == truth)) if len(truth) else None


def spread(samples, n: int, seed: int = 0) -> list:
    """n samples drawn evenly at random (a split file is usually sorted by label)."""
    order = np.random.default_rng(seed).permutation(len(samples))[:n]
    return [samples[i] for i in sorted(order)]


def assumed_thresholds(run: RunDir, val_probabilities: np.ndarray, val_truth: np.ndarray,
                       notes: list[str], f1_maximising=None) -> tuple[dict, str]:
    """label -> threshold: the evaluation's when there is one, else computed on the validation split by
    f1_maximising(truth, probabilities) -> a threshold per label (default: one label per image, one-vs-rest)."""
    from edgelabels.evaluate.evaluation import SUMMARY_FILE
    from edgelabels.evaluate.summary import read_summary

    if f1_maximising is None:
        from edgelabels.evaluate.thresholds import assumed_thresholds as f1_maximising

    summary_path = run.evaluation_dir / SUMMARY_FILE
    found: dict[str, float | None] = {}
    source = "validation split (F1-maximising confidence per label, one-vs-rest)"
    if summary_path.is_file():
        found = read_summary(summary_path).thresholds
        source = f"{summary_path} (LabelEvaluationResults[].Metrics.Threshold)"
    missing = [name for name in run.labels if found.get(name) is None]
    if missing and len(val_truth):
        computed = dict(zip(run.labels, f1_maximising(val_truth, val_probabilities)))
        if found:
            notes.append(f"thresholds for {missing} computed on the validation split (none in the evaluation)")
        found.update({name: computed[name] for name in missing})
    thresholds = {}
    for name in run.labels:
        if found.get(name) is None:
            notes.append(f"label {name!r}: no image to set its assumed threshold; 0.5 assumed")
            thresholds[name] = 0.5
        else:
            thresholds[name] = float(found[name])
    return thresholds, source


def keras_batch1_ms(model, x: np.ndarray, runs: int = 10) -> float:
    model(x[:1], training=False)
    times = []
    for i in range(runs):
        t = time.perf_counter()
        model(x[i % len(x)][None], training=False)
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1000)


def _keras_model(run: RunDir):
    """The run's Keras model, with its inputs and outputs checked against the run's files."""
    from edgelabels.models.factory import load_model

    model = load_model(run.model_path)
    expected = (run.spec.height, run.spec.width, run.spec.channels)
    if tuple(model.inputs[0].shape[1:]) != expected:
        raise UserError(f"{run.model_path}: input {tuple(model.inputs[0].shape[1:])} does not match "
                        f"{run.preprocess_path} {expected}")
    return model


def _check_parity(model, onnx: OnnxModel, x: np.ndarray, run: RunDir, what: str = "ONNX") -> tuple[dict, np.ndarray]:
    from edgelabels.models.factory import keras_runner

    reference, candidate = predict_array(keras_runner(model), x), predict_array(onnx, x)
    check = parity(reference.reshape(len(x), -1), candidate.reshape(len(x), -1))
    if check["max_abs_diff"] > PARITY_TOLERANCE:
        raise UserError(f"{run.model_path}: {what} differs from Keras by {check['max_abs_diff']:.2e} on "
                        f"{check['images']} images (tolerance {PARITY_TOLERANCE}); nothing exported")
    return {**check, "tolerance": PARITY_TOLERANCE}, (reference, candidate)


# ---------------------------------------------------------------- classifiers


def export_classifier(run: RunDir, out: ExportDir, *, int8: bool = False, calibration: int = 100,
                      parity_images: int = 32, threads: int | None = None) -> dict:
    """A classification run -> `out` (see the module docstring); returns export_report.json's contents."""
    from edgelabels.runtime.stages import run_chain

    split, spec = run.split, run.spec
    model = _keras_model(run)
    chain = run_chain(run, threads)  # the stages of a run trained behind them (a lung U-Net, a detector), else empty
    width = model.outputs[0].shape[-1]
    if width != len(run.labels):
        raise UserError(f"{run.model_path}: {width} outputs but {run.labels_path} names {len(run.labels)} labels")
    images = split.test + split.val + split.train
    if chain:  # parity is checked on images the chain answers (a crop stage finds nothing in some)
        chain.precompute([s.path for s in images], progress=False)
        missing = set(chain.missing([s.path for s in images]))
        images = [s for s in images if str(s.path) not in missing]
    if not images:
        raise UserError(f"{run.splits_dir}: no images to check the export against")
    notes: list[str] = []
    report: dict = {"run": str(run.dir), "task": run.task, "backbone": run.backbone, "labels": run.labels,
                    "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}

    keras_to_onnx(model, out.model_path, source=str(run.model_path))
    fp32 = OnnxModel(out.model_path, threads)
    checked = spread(images, parity_images)
    x = load_inputs(checked, spec, chain)
    report["parity"], _ = _check_parity(model, fp32, x, run)
    if report["parity"]["output_std"] < VACUOUS_STD:
        notes.append(f"the model gives the same output for every image (std {report['parity']['output_std']:.1e}): "
                     "parity proves little; is the model trained?")

    val_truth = np.array(run.label_indices(split.val), dtype=np.int64)
    val_fp32 = _predict_samples(fp32, split.val, spec, chain)
    thresholds, source = assumed_thresholds(run, val_fp32, val_truth, notes)
    report["thresholds"] = {"source": source, "values": thresholds}
    report["validation"] = {"images": len(split.val), "accuracy_fp32": accuracy(val_fp32, val_truth)}

    latency = q.batch1_latencies({"onnx_fp32": fp32}, x, seconds=1.0)
    latency["keras_call"] = keras_batch1_ms(model, x)
    report["latency_batch1_ms"] = {**latency, "threads": threads or "onnxruntime default"}
    report["sizes_bytes"] = {run.model_path.name: run.model_path.stat().st_size,
                             out.model_path.name: out.model_path.stat().st_size}
    if int8:
        report["int8"] = _int8(out, fp32, run, split, spec, calibration, threads, x, val_fp32, val_truth, report,
                               chain)
    report["notes"] = notes
    out.write_layout(run.task)
    out.write_labels(run.labels)
    out.write_preprocess(spec)
    out.write_thresholds(thresholds)
    if chain:  # the folder is now a whole classifier export: put its stages in front, check the whole chain
        report["chain"] = _export_stages(out, run, chain, model, checked, threads)
    out.write_report(report)
    return report


def _predict_samples(onnx: OnnxModel, samples, spec, chain=None) -> np.ndarray:
    if not samples:
        return np.zeros((0, 0), np.float32)
    return predict_files(onnx, [s.path for s in samples], spec, chain, batch_size=BATCH)


def _int8_plan(run: RunDir, split, calibration: int):
    """(the backbone's quantization scheme, the images to calibrate on), with None for the images when INT8 does
    not pay for this backbone; shared by the classifier's and the detector's INT8 step."""
    scheme = q.scheme_for(run.backbone)
    if not scheme.pays:
        return scheme, None
    samples = spread(split.train or split.val, calibration)
    if not samples:
        raise UserError(f"{run.splits_dir}: no training images to calibrate INT8 on")
    return scheme, samples


def _int8(out: ExportDir, fp32, run, split, spec, calibration, threads, x, val_fp32, val_truth, report,
          chain=None) -> dict:
    scheme, calibration_samples = _int8_plan(run, split, calibration)
    if calibration_samples is None:
        return {"shipped": False, "attempted": False, "scheme": scheme.to_json(),
                "reason": f"INT8 not attempted for {run.backbone}: {scheme.note}"}
    q.quantize(out.model_path, out.int8_path, load_inputs(calibration_samples, spec, chain), scheme)
    int8 = OnnxModel(out.int8_path, threads)
    val_int8 = _predict_samples(int8, split.val, spec, chain)
    latency = q.batch1_latencies({"fp32": fp32, "int8": int8}, x)
    acc_fp32, acc_int8 = report["validation"]["accuracy_fp32"], accuracy(val_int8, val_truth)
    shipped, reason = q.int8_verdict(latency["fp32"], latency["int8"], acc_fp32, acc_int8)
    result = {
        "shipped": shipped, "attempted": True, "reason": reason, "scheme": scheme.to_json(),
        "calibration_images": len(calibration_samples),
        "batch1_ms": latency, "speedup": latency["fp32"] / latency["int8"],
        "validation_accuracy": acc_int8,
        "validation_top1_agreement_with_fp32": float(np.mean(val_int8.argmax(1) == val_fp32.argmax(1)))
        if len(val_truth) else None,
        "accuracy_change_points": None if acc_int8 is None or acc_fp32 is None else (acc_int8 - acc_fp32) * 100,
        "size_bytes": out.int8_path.stat().st_size,
    }
    if not shipped:
        out.int8_path.unlink()  # fp32 only: the Predictor's "auto" must not pick a worse model
    return result


def _export_stages(out: ExportDir, run: RunDir, chain, model, samples, threads) -> dict:
    """Each stage's model exported by its own task into out/stages/N/, stages.json written, and the whole ONNX
    chain (what the Predictor runs) checked against the Keras chain."""
    from edgelabels.runtime.predictor import Predictor

    described, stage_reports = run.read_stages(), []
    for i, (stage, stage_described) in enumerate(zip(chain.stages, described)):
        folder = out.stage_dir(i)
        shipped = getattr(stage, "export_dir", None)
        if shipped is not None:  # the stage ran an export in training (a detector): that very folder ships
            shutil.copytree(shipped, folder)
            copied = ExportDir(folder)
            stage_reports.append(copied.read_report() if copied.report_path.is_file() else {"parity": None})
            continue
        stage_run = RunDir.load(stage_described["run"])
        folder.mkdir(parents=True, exist_ok=True)
        stage_reports.append(get_task(stage_run.task).piece("export")(stage_run, ExportDir(folder), threads=threads))
    out.write_stages([s.describe() for s in chain.stages])

    # Keras chain: each stage's Keras model computed fresh (Chain.image skips the training caches) -> the Keras
    # classifier; ONNX chain: the Predictor on the finished folder.
    from edgelabels.models.factory import keras_runner

    keras_chain = predict_array(keras_runner(model), np.stack([_chained_input(chain, s.path, run.spec)
                                                               for s in samples]))
    onnx_chain = Predictor(out.dir, precision="fp32", threads=threads).probabilities([s.path for s in samples])
    check = parity(keras_chain, onnx_chain)
    if check["max_abs_diff"] > PARITY_TOLERANCE:
        raise UserError(f"{run.dir}: the ONNX chain ({chain.describe()} + classifier) differs from the Keras chain by "
                        f"{check['max_abs_diff']:.2e} on {check['images']} images (tolerance {PARITY_TOLERANCE}); "
                        "nothing exported")
    report = {"stages": [{"kind": s["kind"], "run": str(s["run"]), "parity": r["parity"]}
                         for s, r in zip(described, stage_reports)],
              "chain_parity": {**check, "tolerance": PARITY_TOLERANCE}}
    first = chain.stages[0]
    if first.kind == "keep-lungs":  # the lung chain's report keys, as `export` prints them
        report.update(unet_run=str(described[0]["run"]), masking=first.masking.to_json(),
                      unet_parity=stage_reports[0]["parity"])
    return report


def _chained_input(chain, path, spec) -> np.ndarray:
    from edgelabels.data.images import read_image
    from edgelabels.data.preprocess import preprocess

    return preprocess(chain.image(read_image(path)[0]), spec)


# ---------------------------------------------------------------- U-Nets


def export_segmentation(run: RunDir, out: ExportDir, *, threads: int | None = None, parity_images: int = 16,
                        int8: bool = False, calibration: int = 0) -> dict:
    """A U-Net run -> `out`: model.onnx (lung probability (N, H, W, 1)), preprocess.json, labels.json,
    layout.json (task segmentation), export_report.json. INT8 is not attempted for a U-Net (a note says so)."""
    model = _keras_model(run)
    images = run.split.test + run.split.val + run.split.train
    if not images:
        raise UserError(f"{run.splits_dir}: no images to check the export against")
    report: dict = {"run": str(run.dir), "task": "segmentation", "backbone": run.backbone,
                    "implementation": (run.config.get("model") or {}).get("implementation", "edgelabels"),
                    "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "notes": ["--int8 is not attempted for a U-Net: fp32 only"] if int8 else []}
    keras_to_onnx(model, out.model_path, source=str(run.model_path))
    onnx = OnnxModel(out.model_path, threads)
    x = load_inputs(spread(images, parity_images), run.spec)
    check, (reference, candidate) = _check_parity(model, onnx, x, run, what="ONNX U-Net")
    report["parity"] = {"images": len(x), "max_abs_diff": check["max_abs_diff"],
                        "mask_pixel_agreement": float(np.mean((reference >= 0.5) == (candidate >= 0.5))),
                        "tolerance": PARITY_TOLERANCE}
    report["latency_batch1_ms"] = {**q.batch1_latencies({"onnx_fp32": onnx}, x, seconds=1.0),
                                   "threads": threads or "onnxruntime default"}
    report["sizes_bytes"] = {run.model_path.name: run.model_path.stat().st_size,
                             out.model_path.name: out.model_path.stat().st_size}
    out.write_layout("segmentation")
    out.write_labels(run.labels)
    out.write_preprocess(run.spec)
    out.write_report(report)
    return report


# ---------------------------------------------------------------- detectors

DETECTIONS = "detections"  # the detector's one ONNX output: (N, K, 6) [left, top, width, height, score, class_id]
PARITY_MIN_SCORE = 0.05  # rows below this are top-K filler: consumers drop them, so parity does not count them
MAX_MAP_DROP_POINTS = 1.0  # INT8 ships only within this much validation mAP@0.5 of fp32


def export_detection(run: RunDir, out: ExportDir, *, int8: bool = False, calibration: int = 100,
                     parity_images: int = 32, threads: int | None = None) -> dict:
    """A detection run -> `out`: model.onnx whose decoding (peak test + top-K) is inside the graph, output
    "detections" (N, K, 6); labels.json, preprocess.json, thresholds.json (each label's F1-maximising score on
    the validation split, per box), layout.json (task detection), export_report.json (parity Keras vs ONNX on
    boxes and scores, latencies, validation mAP, the INT8 verdict)."""
    from edgelabels.models.detector import inference_model  # Keras: imported only when exporting
    from edgelabels.models.factory import keras_runner

    split, spec = run.split, run.spec
    images = split.test + split.val + split.train
    if not images:
        raise UserError(f"{run.splits_dir}: no images to check the export against")
    max_detections = int((run.config.get("model") or {}).get("max_detections", 100))
    model = inference_model(_keras_model(run), max_detections)
    notes: list[str] = []
    report: dict = {"run": str(run.dir), "task": "detection", "backbone": run.backbone, "labels": run.labels,
                    "max_detections": max_detections,
                    "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}

    keras_to_onnx(model, out.model_path, source=str(run.model_path), output_name=DETECTIONS)
    fp32 = OnnxModel(out.model_path, threads)
    x = load_inputs(spread(images, parity_images), spec)
    report["parity"] = detection_parity(predict_array(keras_runner(model), x), predict_array(fp32, x))
    if report["parity"]["max_abs_diff"] > PARITY_TOLERANCE:
        raise UserError(f"{run.model_path}: ONNX detections differ from Keras by "
                        f"{report['parity']['max_abs_diff']:.2e} on {len(x)} images (tolerance {PARITY_TOLERANCE}); "
                        "nothing exported")
    if report["parity"]["score_std"] < VACUOUS_STD:
        notes.append(f"the model gives the same scores for every image (std {report['parity']['score_std']:.1e}): "
                     "parity proves little; is the model trained?")

    truth, sizes = _ground_truth(run, split.val)
    val_fp32 = _detect_samples(fp32, split.val, spec)
    thresholds = _detection_thresholds(run, truth, val_fp32, notes)
    report["thresholds"] = {"source": "validation split (F1-maximising score per label, counted per box at "
                                      "IoU >= 0.5)", "values": thresholds}
    report["validation"] = {"images": len(split.val), "boxes": int(sum(len(labels) for labels, _ in truth)),
                            "map_fp32": _map_50(truth, val_fp32, run.labels, sizes, max_detections)}

    latency = q.batch1_latencies({"onnx_fp32": fp32}, x, seconds=1.0)
    latency["keras_call"] = keras_batch1_ms(model, x)
    report["latency_batch1_ms"] = {**latency, "threads": threads or "onnxruntime default"}
    report["sizes_bytes"] = {run.model_path.name: run.model_path.stat().st_size,
                             out.model_path.name: out.model_path.stat().st_size}
    if int8:
        report["int8"] = _detection_int8(out, fp32, run, split, calibration, threads, x, truth, sizes, report)
    report["notes"] = notes
    out.write_layout("detection")
    out.write_labels(run.labels)
    out.write_preprocess(spec)
    out.write_thresholds(thresholds)
    out.write_report(report)
    return report


def detection_parity(reference: np.ndarray, candidate: np.ndarray, min_score: float = PARITY_MIN_SCORE) -> dict:
    """How closely two (N, K, 6) detection outputs agree over the rows that matter (reference score >= min_score).

    Each such reference row is compared with the candidate row of the same class closest to it (max abs diff
    of box and score): rows whose scores tie within float noise (an untrained heatmap is nearly flat) may leave
    top-K in either order, which is no conversion error, and rows at the tail of top-K (not above the candidate's
    last score) may be cut from one and not the other. `rows_in_order` says how many matched row for row.
    """
    diffs, in_order = [], 0
    for ref, cand in zip(reference, candidate):
        # A row scoring no more than the candidate's last kept row may fall just outside its top-K: not compared.
        kept = ref[(ref[:, 4] >= min_score) & (ref[:, 4] > cand[-1, 4] + PARITY_TOLERANCE)]
        if not len(kept):
            continue
        gap = np.abs(kept[:, None, :5] - cand[None, :, :5]).max(axis=2)  # (kept, K)
        gap[np.rint(kept[:, None, 5]) != np.rint(cand[None, :, 5])] = np.inf
        diffs.append(gap.min(axis=1))
        same = ref[: len(kept)]
        in_order += int(np.sum(np.all(np.abs(same - cand[: len(kept)]) <= PARITY_TOLERANCE, axis=1)))
    rows = np.concatenate(diffs) if diffs else np.zeros(0)
    top = reference[:, 0, 4] if len(reference) else np.zeros(0)
    return {"images": int(len(reference)), "rows_compared": int(len(rows)), "min_score": min_score,
            "max_abs_diff": float(rows.max()) if len(rows) else 0.0, "rows_in_order": in_order,
            # spread of each image's best score across images: near 0 means every image gets the same answer
            "score_std": float(top.std()) if len(top) > 1 else 0.0, "tolerance": PARITY_TOLERANCE}


def _ground_truth(run: RunDir, samples) -> tuple[list, list]:
    """Per sample: (class indices (M,), boxes (M, 4) in ratios of the image as displayed), and (width, height)."""
    from edgelabels.data.boxes import displayed_size, to_ratios

    index = {name: i for i, name in enumerate(run.labels)}
    truth, sizes = [], []
    for sample in samples:
        width, height = displayed_size(sample.path)
        try:
            labels = np.array([index[box.label] for box in sample.boxes], np.int64)
        except KeyError as exc:
            raise UserError(f"{run.dir}: box label {exc.args[0]!r} of {sample.path} is not one of the model's "
                            f"labels {run.labels}") from None
        boxes = np.array([to_ratios(box, width, height) for box in sample.boxes], np.float64).reshape(-1, 4)
        truth.append((labels, boxes))
        sizes.append((width, height))
    return truth, sizes


def _detect_samples(onnx: OnnxModel, samples, spec) -> list[np.ndarray]:
    if not samples:
        return []
    return list(predict_files(onnx, [s.path for s in samples], spec, batch_size=BATCH))


def _detection_thresholds(run: RunDir, truth, predictions, notes: list[str]) -> dict[str, float]:
    from edgelabels.evaluate.detection_metrics import assumed_thresholds

    found = assumed_thresholds(truth, predictions, run.labels) if truth else {}
    thresholds = {}
    for name in run.labels:
        if found.get(name) is None:
            notes.append(f"label {name!r}: no validation box (or no prediction) to set its assumed threshold; "
                         "0.5 assumed")
            thresholds[name] = 0.5
        else:
            thresholds[name] = float(found[name])
    return thresholds


def _map_50(truth, predictions, labels, sizes, max_detections: int) -> float | None:
    from edgelabels.evaluate.detection_metrics import coco_map

    if not truth:
        return None
    return coco_map(truth, predictions, labels, sizes, max_detections)["map_50"]


def detection_int8_verdict(fp32_ms: float, int8_ms: float, map_fp32: float | None,
                           map_int8: float | None) -> tuple[bool, str]:
    """Ship INT8 only if it is faster than fp32 at batch 1 and loses at most MAX_MAP_DROP_POINTS of validation
    mAP@0.5 (0-1, so points are hundredths)."""
    return q.speed_and_quality_verdict(fp32_ms, int8_ms, map_fp32, map_int8, measure="validation mAP@0.5",
                                       missing="boxes to check its mAP@0.5", show="{:.3f}",
                                       max_drop_points=MAX_MAP_DROP_POINTS)


def _detection_int8(out: ExportDir, fp32, run, split, calibration, threads, x, truth, sizes, report) -> dict:
    """model.int8.onnx, kept only if measured faster than fp32 at batch 1 with validation mAP@0.5 within
    MAX_MAP_DROP_POINTS of fp32's. The decoding (max-pool, top-K) stays float: only Conv/MatMul are quantized."""
    scheme, calibration_samples = _int8_plan(run, split, calibration)
    if calibration_samples is None:
        return {"shipped": False, "attempted": False, "scheme": scheme.to_json(),
                "reason": f"INT8 not attempted for {run.backbone}: {scheme.note}"}
    q.quantize(out.model_path, out.int8_path, load_inputs(calibration_samples, run.spec), scheme,
               symbolic_shapes=False)
    int8 = OnnxModel(out.int8_path, threads)
    latency = q.batch1_latencies({"fp32": fp32, "int8": int8}, x)
    map_fp32 = report["validation"]["map_fp32"]
    map_int8 = _map_50(truth, _detect_samples(int8, split.val, run.spec), run.labels, sizes,
                       report["max_detections"])
    shipped, reason = detection_int8_verdict(latency["fp32"], latency["int8"], map_fp32, map_int8)
    result = {"shipped": shipped, "attempted": True, "reason": reason, "scheme": scheme.to_json(),
              "calibration_images": len(calibration_samples), "batch1_ms": latency,
              "speedup": latency["fp32"] / latency["int8"], "validation_map_50": map_int8,
              "map_change_points": None if map_int8 is None or map_fp32 is None else (map_int8 - map_fp32) * 100,
              "size_bytes": out.int8_path.stat().st_size}
    if not shipped:
        out.int8_path.unlink()  # fp32 only: the Detector's "auto" must not pick a worse model
    return result
