"""`export` hooks of a lung U-Net: model.onnx gives the lung probability (N, H, W, 1); parity counts the mask pixels
that agree at 0.5. No thresholds.json and no INT8 (--int8 leaves a note): fp32 only."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgelabels.artifacts import RunDir
from edgelabels.export.driver import ExportHooks, closing_lines, latency_line, wrote_line
from edgelabels.export.onnx_export import PARITY_TOLERANCE


def graph(run: RunDir, model) -> tuple[object, dict]:
    return model, {"implementation": (run.config.get("model") or {}).get("implementation", "edgelabels")}


def mask_parity(reference: np.ndarray, candidate: np.ndarray, notes: list[str]) -> dict:
    return {"images": int(len(reference)), "max_abs_diff": float(np.max(np.abs(reference - candidate))),
            "mask_pixel_agreement": float(np.mean((reference >= 0.5) == (candidate >= 0.5))),
            "tolerance": PARITY_TOLERANCE}


def lines(report: dict, out: Path) -> list[str]:
    p = report["parity"]
    return [wrote_line(report, out, f", a lung U-Net (run it with `edgelabels segment {out} IMAGE...`)"),
            f"parity Keras vs ONNX on {p['images']} images: max abs diff {p['max_abs_diff']:.1e}, "
            f"mask pixels agreeing {p['mask_pixel_agreement']:.4%}",
            latency_line(report),
            *closing_lines(report, out)]


HOOKS = ExportHooks(graph=graph, parity=mask_parity, lines=lines)
