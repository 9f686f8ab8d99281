"""`export` hooks of a detector: model.onnx with its decoding (peak test + top-K) inside the graph, output
"detections" (N, K, 6) [left, top, width, height, score, class_id]; parity on boxes and scores; thresholds.json per
label from its validation boxes (F1-maximising score, counted per box); INT8 judged on validation mAP@0.5. The
decoding (max-pool, top-K) stays float under INT8: only Conv/MatMul are quantized."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgelabels.artifacts import RunDir
from edgelabels.errors import UserError
from edgelabels.export.driver import (ExportHooks, Int8Check, closing_lines, latency_line, or_half, predict_samples,
                                      vacuous, wrote_line)
from edgelabels.export.onnx_export import PARITY_TOLERANCE

DETECTIONS = "detections"  # the detector's one ONNX output
PARITY_MIN_SCORE = 0.05  # rows below this are top-K filler: consumers drop them, so parity does not count them
MAX_MAP_DROP_POINTS = 1.0  # INT8 ships only within this much validation mAP@0.5 of fp32


def max_detections(run: RunDir) -> int:
    return int((run.config.get("model") or {}).get("max_detections", 100))


def graph(run: RunDir, model) -> tuple[object, dict]:
    """The trained heatmap model with its decoding appended: what the edge runs."""
    from edgelabels.models.detector import inference_model  # Keras: imported only when exporting

    return inference_model(model, max_detections(run)), {"max_detections": max_detections(run)}


def detection_parity(reference: np.ndarray, candidate: np.ndarray, notes: list[str] | None = None,
                     min_score: float = PARITY_MIN_SCORE) -> dict:
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
    # spread of each image's best score across images: near 0 means every image gets the same answer
    score_std = float(top.std()) if len(top) > 1 else 0.0
    if notes is not None:
        vacuous(score_std, "scores", notes)
    return {"images": int(len(reference)), "rows_compared": int(len(rows)), "min_score": min_score,
            "max_abs_diff": float(rows.max()) if len(rows) else 0.0, "rows_in_order": in_order,
            "score_std": score_std, "tolerance": PARITY_TOLERANCE}


def ground_truth(run: RunDir, samples) -> tuple[list, list]:
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


def answer(run: RunDir, onnx, chain) -> tuple[list, list, list]:
    """(detections per validation image, their ground truth, their sizes in pixels)."""
    val = run.split.val
    truth, sizes = ground_truth(run, val)
    if run.spec.tile_scale is not None and val:  # whole frames by merged tiles, as the edge Detector answers them
        from edgelabels.runtime.tiles import predict_tiled_files

        return predict_tiled_files([s.path for s in val], run.spec, onnx), truth, sizes
    return list(predict_samples(onnx, val, run.spec, chain)), truth, sizes


def thresholds(run: RunDir, answers, notes: list[str]) -> tuple[dict, str]:
    from edgelabels.evaluate import detection_metrics

    predictions, truth, _ = answers
    found = detection_metrics.assumed_thresholds(truth, predictions, run.labels) if truth else {}
    return (or_half(run.labels, found, notes, "no validation box (or no prediction)"),
            "validation split (F1-maximising score per label, counted per box at IoU >= 0.5)")


def map_50(run: RunDir, answers) -> float | None:
    from edgelabels.evaluate.detection_metrics import coco_map

    predictions, truth, sizes = answers
    if not truth:
        return None
    return coco_map(truth, predictions, run.labels, sizes, max_detections(run))["map_50"]


def score(run: RunDir, answers, thresholds: dict) -> dict:
    _, truth, _ = answers
    return {"images": len(truth), "boxes": int(sum(len(labels) for labels, _ in truth)),
            "map_fp32": map_50(run, answers)}


def compare(run: RunDir, fp32, int8, thresholds: dict) -> tuple[float | None, float | None, dict]:
    return map_50(run, fp32), map_50(run, int8), {}


def lines(report: dict, out: Path) -> list[str]:
    p, validation = report["parity"], report["validation"]
    found = validation["map_fp32"]
    thresholds = ", ".join(f"{name} {value:.2f}" for name, value in report["thresholds"]["values"].items())
    return [wrote_line(report, out, f", a detector with its decoding in the graph (up to {report['max_detections']} "
                                    f"boxes per image; run it with `edgelabels predict {out} IMAGE...`)"),
            f"parity Keras vs ONNX on {p['images']} images: max abs diff {p['max_abs_diff']:.1e} over "
            f"{p['rows_compared']} boxes scoring >= {p['min_score']} (boxes and scores)",
            latency_line(report),
            f"validation: {validation['images']} images, {validation['boxes']} boxes, mAP@0.5 "
            f"{'n/a (no boxes)' if found is None else f'{found:.3f}'}",
            f"thresholds from {report['thresholds']['source']}: {thresholds}",
            *closing_lines(report, out)]


HOOKS = ExportHooks(
    graph=graph, parity=detection_parity, output_name=DETECTIONS, answer=answer, thresholds=thresholds, score=score,
    lines=lines,
    int8=Int8Check(measure="validation mAP@0.5", missing="boxes to check its mAP@0.5", show="{:.3f}",
                   compare=compare, key="map_50", max_drop_points=MAX_MAP_DROP_POINTS, symbolic_shapes=False),
)
