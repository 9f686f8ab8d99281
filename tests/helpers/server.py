"""Real exported-model folders for the server tests and benchmarks, built without training.

`write_model_dir` writes what `edgelabels export` writes, through the layout module's writers
(edgelabels.artifacts.ExportDir): a real ONNX graph made with
onnx.helper, input float32 NHWC 'input' with a dynamic batch, output softmax 'probabilities'.
With `conv_channels` it puts strided convolutions in front, so inference costs what a small real
backbone costs (for the load benchmark); without, it is mean colour -> MatMul -> Softmax, so red,
green and blue images get different labels (answers are not vacuous).

Also starts `edgelabels serve` in a subprocess on a free port and waits for /health.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

from edgelabels.artifacts import ExportDir
from edgelabels.data.preprocess import PreprocessSpec

REPO = Path(__file__).resolve().parents[2]
EDGELABELS = Path(sys.executable).parent / "edgelabels"
LABELS = ("red", "green", "blue")


def write_model_dir(folder: Path, labels=LABELS, size: int = 32, conv_channels: tuple[int, ...] = (),
                    thresholds: dict | None = None, seed: int = 0) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    k = len(labels)
    nodes, inits = [], []
    if conv_channels:
        nodes.append(helper.make_node("Transpose", ["input"], ["x0"], perm=[0, 3, 1, 2]))
        previous, channels = "x0", 3
        for i, out in enumerate(conv_channels):
            w = rng.normal(0, (2.0 / (9 * channels)) ** 0.5, (out, channels, 3, 3)).astype(np.float32)
            inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(np.zeros(out, np.float32), f"b{i}")]
            nodes.append(helper.make_node("Conv", [previous, f"w{i}", f"b{i}"], [f"c{i}"], kernel_shape=[3, 3],
                                          pads=[1, 1, 1, 1], strides=[2, 2] if i % 2 == 0 else [1, 1]))
            nodes.append(helper.make_node("Relu", [f"c{i}"], [f"x{i + 1}"]))
            previous, channels = f"x{i + 1}", out
        nodes.append(helper.make_node("GlobalAveragePool", [previous], ["pooled4d"]))
        nodes.append(helper.make_node("Flatten", ["pooled4d"], ["pooled"], axis=1))
        weights = rng.normal(0, 1.0, (channels, k)).astype(np.float32)
        bias = np.zeros(k, np.float32)
    else:
        # Mean colour in 0-1 -> logits 6*mean - 3: a red image says "red", and so on.
        nodes.append(helper.make_node("ReduceMean", ["input"], ["pooled"], axes=[1, 2], keepdims=0))
        weights = np.zeros((3, k), np.float32)
        for i in range(k):
            weights[i % 3, i] = 6.0
        bias = np.full(k, -3.0, np.float32)
    inits += [numpy_helper.from_array(weights, "fc_w"), numpy_helper.from_array(bias, "fc_b")]
    nodes += [helper.make_node("MatMul", ["pooled", "fc_w"], ["mm"]),
              helper.make_node("Add", ["mm", "fc_b"], ["logits"]),
              helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1)]
    graph = helper.make_graph(
        nodes, "server_test_model",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", size, size, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", k])], inits)
    export = _write_export(folder, graph, "classification", list(labels), size)
    export.write_thresholds(thresholds or {name: 0.5 for name in labels})
    return folder


def _write_export(folder: Path, graph, task: str, labels: list[str], size: int) -> ExportDir:
    """An export folder holding `graph` (opset 13) with 0-255 -> 0-1 preprocessing, through the layout's writers."""
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    export = ExportDir(folder)
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, export.model_path)
    export.write_layout(task)
    export.write_labels(labels)
    export.write_preprocess(PreprocessSpec(height=size, width=size, mean=(0.0, 0.0, 0.0), std=(255.0, 255.0, 255.0)))
    return export


def write_unet_dir(folder: Path, size: int = 32, lung: str = "left") -> Path:
    """A U-Net export folder whose "U-Net" calls the left (or right) half of every image lung, whatever it shows."""
    from onnx import TensorProto, helper, numpy_helper

    mask = np.zeros((1, size, size, 1), np.float32)
    mask[:, :, : size // 2] = 1.0
    if lung == "right":
        mask = 1.0 - mask
    nodes = [helper.make_node("ReduceMean", ["input"], ["grey"], axes=[3], keepdims=1),
             helper.make_node("Mul", ["grey", "zero"], ["nothing"]),
             helper.make_node("Add", ["nothing", "mask"], ["probabilities"])]
    graph = helper.make_graph(
        nodes, "server_test_unet",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", size, size, 3])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", size, size, 1])],
        [numpy_helper.from_array(np.zeros(1, np.float32), "zero"), numpy_helper.from_array(mask, "mask")])
    _write_export(folder, graph, "segmentation", ["lung"], size)
    return folder


def image_bytes(colour=(220, 30, 30), size=(96, 80), fmt="PNG", noise: int = 25, seed: int = 0) -> bytes:
    """A noisy image of one colour, encoded as PNG or JPEG bytes."""
    import io

    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour, np.float32) + rng.normal(0, noise, (size[1], size[0], 3)), 0, 255)
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), "RGB").save(buffer, fmt)
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`edgelabels serve ...` in a subprocess; `.port`, `.arn` (from its start-up lines), `.stop()`."""

    def __init__(self, model_dir: Path, *options: str, timeout: float = 60.0, log_path: Path | None = None):
        self.port = free_port()
        self.log_path = log_path or Path(model_dir).parent / f"serve-{self.port}.log"
        self.log = open(self.log_path, "wb")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen([str(EDGELABELS), "serve", str(model_dir), "--port", str(self.port), *options],
                                        stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        tls = "--tls-cert" in options
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        context = ssl.create_default_context(cafile=options[options.index("--tls-cert") + 1]) if tls else None
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2, context=context) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server not healthy after {timeout} s:\n{self.output()}")
            time.sleep(0.1)
        self.arn = self._line("ProjectVersionArn")
        self.project_arn = self._line("ProjectArn")

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")

    def _line(self, key: str) -> str:
        for line in self.output().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == key:
                return parts[1]
        raise RuntimeError(f"no {key} line in the server's start-up output:\n{self.output()}")

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def rekognition_client(url: str, key_id: str = "AKIDEXAMPLE", secret: str = "secret", verify=None, **config):
    """A real boto3 Rekognition client for `url`; no retries unless `retries=` says otherwise."""
    import boto3
    from botocore.config import Config

    return boto3.client("rekognition", endpoint_url=url, region_name="us-east-1", verify=verify,
                        aws_access_key_id=key_id, aws_secret_access_key=secret,
                        config=Config(**{"retries": {"total_max_attempts": 1, "mode": "standard"}, **config}))
