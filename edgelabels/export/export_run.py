"""`export RUN`: the run's Keras model -> RUN/export/, checked against Keras before it is kept.

RUN/export/ is built in a temporary sibling folder and renamed into place whole, so an interrupted
or failed export never leaves a half-written model (an older export stays as it was).
  model.onnx           fp32, input "input" (N, H, W, C) normalised pixels, output "probabilities" (N, K)
  model.int8.onnx      only with --int8, and only when it is faster than fp32 and as accurate (quantize.py)
  labels.json          copied from the run
  preprocess.json      copied from the run: the PreprocessSpec the edge must reproduce
  thresholds.json      label -> assumed threshold (0-1): from RUN/evaluation/summary.json when the
                       run was evaluated, else the F1-maximising confidence on the validation split
  export_report.json   parity Keras vs ONNX on real images, INT8 verdict, sizes, latencies
"""

from __future__ import annotations

import json
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from edgelabels import atomic
from edgelabels.data.images import read_image
from edgelabels.data.preprocess import preprocess
from edgelabels.errors import UserError
from edgelabels.export import quantize as q
from edgelabels.export.onnx_export import (
    PARITY_TOLERANCE, keras_probabilities, keras_to_onnx, onnx_probabilities, onnx_session, parity)

VACUOUS_STD = 1e-4  # below this the model answers (almost) the same for every image
BATCH = 32


def load_inputs(samples, spec, read=None) -> np.ndarray:
    """Model inputs (N, H, W, C) for split samples, through the one decoding and preprocessing.

    read: path -> PIL image (a lung-chained run's LungReader), else read_image.
    """
    if not samples:
        return np.zeros((0, spec.height, spec.width, spec.channels), np.float32)
    read = read or (lambda path: read_image(path)[0])
    return np.stack([preprocess(read(s.path), spec) for s in samples])


def predict_samples(session, samples, spec, read=None) -> np.ndarray:
    """ONNX probabilities for samples, reading images a batch at a time (a split can be large)."""
    rows = [onnx_probabilities(session, load_inputs(samples[i:i + BATCH], spec, read))
            for i in range(0, len(samples), BATCH)]
    return np.concatenate(rows) if rows else np.zeros((0, 0), np.float32)


def accuracy(probabilities: np.ndarray, truth: np.ndarray) -> float | None:
    return float(np.mean(probabilities.argmax(1) == truth)) if len(truth) else None


def spread(samples, n: int, seed: int = 0) -> list:
    """n samples drawn evenly at random (a split file is usually sorted by label)."""
    order = np.random.default_rng(seed).permutation(len(samples))[:n]
    return [samples[i] for i in sorted(order)]


def assumed_thresholds(run, val_probabilities: np.ndarray, val_truth: np.ndarray, notes: list[str]) -> tuple[dict, str]:
    """label -> threshold: the evaluation's when there is one, else computed on the validation split."""
    from edgelabels.evaluate.summary import read_summary
    from edgelabels.evaluate.thresholds import assumed_thresholds as f1_maximising

    summary_path = run.dir / "evaluation" / "summary.json"
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


def export_run(run_dir: str | Path, *, int8: bool = False, calibration: int = 100, parity_images: int = 32,
               threads: int | None = None) -> dict:
    """Write RUN/export/ and return its export_report.json contents."""
    from edgelabels.train.run import Run

    run = Run.load(run_dir)
    if run.task == "segmentation":
        return export_segmentation(run, threads=threads, parity_images=parity_images)
    split = run.split
    spec = run.spec
    model = run.load_model()
    read = run.image_reader(threads)  # the lung chain of a run trained with segment:, else None
    if read is not None:
        read.precompute([s.path for s in split.val], progress=False)
    backbone = (run.config.get("model") or {}).get("backbone")
    width = model.outputs[0].shape[-1]
    if width != len(run.labels):
        raise UserError(f"{run.model_path}: {width} outputs but {run.dir / 'labels.json'} names {len(run.labels)} labels")
    expected = (spec.height, spec.width, spec.channels)
    if tuple(model.inputs[0].shape[1:]) != expected:
        raise UserError(f"{run.model_path}: input {tuple(model.inputs[0].shape[1:])} does not match "
                        f"{run.dir / 'preprocess.json'} {expected}")
    images = split.test + split.val + split.train
    if not images:
        raise UserError(f"{run.dir / 'splits'}: no images to check the export against")
    notes: list[str] = []
    report: dict = {"run": str(run.dir), "backbone": backbone, "labels": run.labels,
                    "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}

    with atomic.directory(run.dir / "export") as out:
        keras_to_onnx(model, out / "model.onnx", source=str(run.model_path))
        fp32 = onnx_session(out / "model.onnx", threads)

        checked = spread(images, parity_images)
        x = load_inputs(checked, spec, read)
        check = parity(keras_probabilities(model, x), onnx_probabilities(fp32, x))
        if check["max_abs_diff"] > PARITY_TOLERANCE:
            raise UserError(f"{run.model_path}: ONNX differs from Keras by {check['max_abs_diff']:.2e} on "
                            f"{check['images']} images (tolerance {PARITY_TOLERANCE}); nothing exported")
        if check["output_std"] < VACUOUS_STD:
            notes.append(f"the model gives the same output for every image (std {check['output_std']:.1e}): "
                         "parity proves little; is the model trained?")
        report["parity"] = {**check, "tolerance": PARITY_TOLERANCE}

        val_truth = np.array(run.label_indices(split.val), dtype=np.int64)
        val_fp32 = predict_samples(fp32, split.val, spec, read)
        thresholds, source = assumed_thresholds(run, val_fp32, val_truth, notes)
        report["thresholds"] = {"source": source, "values": thresholds}
        report["validation"] = {"images": len(split.val), "accuracy_fp32": accuracy(val_fp32, val_truth)}

        latency = q.batch1_latencies({"onnx_fp32": fp32}, x, seconds=1.0)
        latency["keras_call"] = keras_batch1_ms(model, x)
        report["latency_batch1_ms"] = {**latency, "threads": threads or "onnxruntime default"}
        report["sizes_bytes"] = {"model.keras": run.model_path.stat().st_size,
                                 "model.onnx": (out / "model.onnx").stat().st_size}

        if int8:
            report["int8"] = _int8(out, fp32, run, split, spec, backbone, calibration, threads, x,
                                   val_truth, report, read)
        report["notes"] = notes
        shutil.copyfile(run.dir / "labels.json", out / "labels.json")
        shutil.copyfile(run.dir / "preprocess.json", out / "preprocess.json")
        atomic.write_json(out / "thresholds.json", thresholds)
        if read is not None:  # the folder is now a whole classifier export: chain the U-Net in front, check it
            report["chain"] = export_chain_files(out, run, read, model, checked, threads)
        atomic.write_json(out / "export_report.json", report)
    return report


def _int8(out: Path, fp32, run, split, spec, backbone, calibration, threads, x, val_truth, report, read=None) -> dict:
    scheme = q.scheme_for(backbone)
    if not scheme.pays:
        return {"shipped": False, "attempted": False, "scheme": scheme.to_json(),
                "reason": f"INT8 not attempted for {backbone}: {scheme.note}"}
    calibration_samples = spread(split.train or split.val, calibration)
    if not calibration_samples:
        raise UserError(f"{run.dir / 'splits'}: no training images to calibrate INT8 on")
    path = out / "model.int8.onnx"
    q.quantize(out / "model.onnx", path, load_inputs(calibration_samples, spec, read), scheme)
    int8 = onnx_session(path, threads)
    val_int8, val_fp32 = predict_samples(int8, split.val, spec, read), predict_samples(fp32, split.val, spec, read)
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
        "size_bytes": path.stat().st_size,
    }
    if not shipped:
        path.unlink()  # fp32 only: the Predictor's "auto" must not pick a worse model
    return result


# ---------------------------------------------------------------- U-Nets and chains


def export_segmentation(run, *, threads: int | None = None, parity_images: int = 16,
                        out_dir: Path | None = None) -> dict:
    """A U-Net run -> RUN/export/ (or out_dir): model.onnx (lung probability (N, H, W, 1)), preprocess.json,
    labels.json, segmentation.json (what the edge needs to threshold it), export_report.json."""
    model = run.load_model()
    images = run.split.test + run.split.val + run.split.train
    if not images:
        raise UserError(f"{run.dir / 'splits'}: no images to check the export against")
    report: dict = {"run": str(run.dir), "task": "segmentation",
                    "backbone": (run.config.get("model") or {}).get("backbone"),
                    "implementation": (run.config.get("model") or {}).get("implementation", "edgelabels"),
                    "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "notes": []}
    with atomic.directory(out_dir or run.dir / "export") as out:
        keras_to_onnx(model, out / "model.onnx", source=str(run.model_path))
        session = onnx_session(out / "model.onnx", threads)
        x = load_inputs(spread(images, parity_images), run.spec)
        reference, candidate = keras_probabilities(model, x), onnx_probabilities(session, x)
        diff = float(np.max(np.abs(reference - candidate)))
        if diff > PARITY_TOLERANCE:
            raise UserError(f"{run.model_path}: ONNX U-Net differs from Keras by {diff:.2e} on {len(x)} images "
                            f"(tolerance {PARITY_TOLERANCE}); nothing exported")
        agreement = float(np.mean((reference >= 0.5) == (candidate >= 0.5)))
        report["parity"] = {"images": len(x), "max_abs_diff": diff, "mask_pixel_agreement": agreement,
                            "tolerance": PARITY_TOLERANCE}
        report["latency_batch1_ms"] = {**q.batch1_latencies({"onnx_fp32": session}, x, seconds=1.0),
                                       "threads": threads or "onnxruntime default"}
        report["sizes_bytes"] = {"model.keras": run.model_path.stat().st_size,
                                 "model.onnx": (out / "model.onnx").stat().st_size}
        shutil.copyfile(run.dir / "labels.json", out / "labels.json")
        shutil.copyfile(run.dir / "preprocess.json", out / "preprocess.json")
        atomic.write_json(out / "segmentation.json", {"task": "segmentation", "threshold": 0.5,
                                                      "output": "lung probability (N, H, W, 1)"})
        atomic.write_json(out / "export_report.json", report)
    return report


def export_chain_files(out: Path, run, chain, model, samples, threads) -> dict:
    """A classifier trained behind a lung U-Net (`out` already holds its export): export the U-Net as
    out/segment/, describe the chain in out/segment.json, and check the whole ONNX chain (what the
    Predictor runs) against the Keras chain."""
    from edgelabels.runtime.stages import CHAIN_FILE
    from edgelabels.runtime.predictor import Predictor
    from edgelabels.train.run import Run

    unet = Run.load(Path(json.loads((run.dir / CHAIN_FILE).read_text())["run"]))
    unet_report = export_segmentation(unet, threads=threads, out_dir=out / "segment")
    atomic.write_json(out / CHAIN_FILE, {"model": "segment", "masking": chain.masking.to_json()})

    # Keras chain: the run's Keras U-Net, computed fresh (LungReader.image skips the training cache) ->
    # masking -> the Keras classifier.
    keras_chain = keras_probabilities(model, np.stack([preprocess(chain.image(read_image(s.path)[0]), run.spec)
                                                       for s in samples]))
    onnx_chain = Predictor(out, precision="fp32", threads=threads).probabilities([s.path for s in samples])
    check = parity(keras_chain, onnx_chain)
    if check["max_abs_diff"] > PARITY_TOLERANCE:
        raise UserError(f"{run.dir}: the ONNX chain (U-Net + classifier) differs from the Keras chain by "
                        f"{check['max_abs_diff']:.2e} on {check['images']} images (tolerance {PARITY_TOLERANCE}); "
                        "nothing exported")
    return {"unet_run": str(unet.dir), "masking": chain.masking.to_json(), "unet_parity": unet_report["parity"],
            "chain_parity": {**check, "tolerance": PARITY_TOLERANCE}}
