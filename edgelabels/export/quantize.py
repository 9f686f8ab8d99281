"""Static INT8 (QDQ) quantization with onnxruntime, and the measurement that decides whether it ships.

`quant_pre_process` (symbolic shape inference: needs sympy) then `quantize_static` calibrated on
training images through the one preprocessing. The scheme per backbone comes from measurement and
travels with its registry entry (BackboneSpec.int8, models/backbones.py); the verdict is measured again
at every export, on the exporting machine, because an INT8 model that is slower than fp32 or less
accurate is worse than none.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from edgelabels.models.backbones import BACKBONES, INT8_UNMEASURED, Int8Scheme


def scheme_for(backbone: str | None) -> Int8Scheme:
    """The backbone's measured INT8 scheme (its registry entry); the default for a name the registry lacks."""
    spec = BACKBONES.get(backbone or "")
    return spec.int8 if spec is not None else INT8_UNMEASURED


class _Batches:
    """onnxruntime's CalibrationDataReader protocol over an in-memory array, one image per call."""

    def __init__(self, input_name: str, x: np.ndarray):
        self._items = iter([{input_name: x[i:i + 1]} for i in range(len(x))])

    def get_next(self):
        return next(self._items, None)

    def rewind(self):  # not needed for MinMax, part of the protocol
        pass


def quantize(fp32_path: str | Path, out_path: str | Path, calibration: np.ndarray, scheme: Int8Scheme,
             input_name: str = "input", symbolic_shapes: bool = True) -> Path:
    """Write a QDQ INT8 model calibrated (MinMax) on `calibration` (N, H, W, C) float32 model inputs."""
    from onnxruntime.quantization import QuantFormat, QuantType, quant_pre_process, quantize_static

    with tempfile.TemporaryDirectory(prefix="edgelabels-int8-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # Symbolic shape inference gives up on a detector's in-graph top-K, and when it does it leaves its temp
        # files in the working directory: a detector's export skips it.
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=not symbolic_shapes)
        quantize_static(
            str(prepared), str(out_path), _Batches(input_name, calibration.astype(np.float32)),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(scheme.op_types) if scheme.op_types else None,
            per_channel=scheme.per_channel,
            activation_type=QuantType.QUInt8 if scheme.activations_unsigned else QuantType.QInt8,
            weight_type=QuantType.QInt8,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
    return Path(out_path)


def batch1_latencies(sessions: dict, x: np.ndarray, seconds: float = 3.0, min_runs: int = 10) -> dict:
    """Median batch-1 latency (ms) per model (runtime.runner.OnnxModel: x -> output), timed interleaved so a busy
    CPU hurts both alike."""
    times = {name: [] for name in sessions}
    for s in sessions.values():  # warm-up: first runs allocate
        s(x[:1])
    start = time.perf_counter()
    i = 0
    while i < min_runs or time.perf_counter() - start < seconds:
        image = x[i % len(x)][None]
        for name, s in sessions.items():
            t = time.perf_counter()
            s(image)
            times[name].append(time.perf_counter() - t)
        i += 1
    return {name: float(np.median(t) * 1000) for name, t in times.items()}


def speed_and_quality_verdict(fp32_ms: float, int8_ms: float, fp32_value: float | None, int8_value: float | None,
                              *, measure: str, missing: str, show: str, max_drop_points: float) -> tuple[bool, str]:
    """(ship INT8?, why): only if it is faster than fp32 at batch 1 and its `measure` (0-1, higher is better;
    points are hundredths) is at most max_drop_points below fp32's. `show` formats a value of the measure."""
    if int8_ms >= fp32_ms:
        return False, f"INT8 not shipped: slower than fp32 ({int8_ms:.3g} ms vs {fp32_ms:.3g} ms at batch 1)"
    if fp32_value is None or int8_value is None:
        return False, f"INT8 not shipped: no validation {missing}"
    drop = (fp32_value - int8_value) * 100
    if drop > max_drop_points:
        return False, (f"INT8 not shipped: {measure} {show.format(int8_value)} vs {show.format(fp32_value)} "
                       f"for fp32 (-{drop:.1f} points, more than {max_drop_points:g})")
    return True, (f"INT8 shipped: {fp32_ms / int8_ms:.1f}x faster than fp32 ({int8_ms:.3g} vs {fp32_ms:.3g} ms at "
                  f"batch 1), {measure} {show.format(int8_value)} vs {show.format(fp32_value)}")
