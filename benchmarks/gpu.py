"""The GPU run, checked (issue 17): loader alone vs training images/s, the step-bound ratio, device memory.

    KERAS_BACKEND=jax .venv/bin/python benchmarks/gpu.py [--steps 50] [--pneumonia DIR] [--bees DIR]

Two cases, each for a fixed number of steps after 3 warm-up steps: configs/pneumonia.yaml at 224 px with
efficientnetb0 (weights none, stage b: the whole backbone trained) on the pediatric set, and configs/bees.yaml
(the detector). For each: images/s of the loader alone (cached pixels -> augmentation -> batch, what feeds the
model), of training (model.train_on_batch on those batches), their ratio (training / loader: near 1 means the
loader bounds the step, not the device), and the device's peak memory (JAX's memory_stats; CPUs report none).
Runs anywhere JAX does; it is meant for a machine with a GPU (the device tool's, with wheels carried there),
and says which device it ran on.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


def case(config_path: Path, overrides: list[str], steps: int) -> dict:
    import keras

    from edgelabels.artifacts import RunDir
    from edgelabels.config import load_config
    from edgelabels.data.prepare import prepare_split
    from edgelabels.models.backbones import get_backbone
    from edgelabels.models.factory import create_model
    from edgelabels.train.fit import _batches, _compile  # the fit loop's own pieces: what training runs

    config = load_config(config_path, overrides)
    run = RunDir(Path(tempfile.mkdtemp()) / "run")
    run.start(config.to_yaml())
    split = prepare_split(config, run)
    labels = sorted({label for s in split.train + split.val + split.test for label in s.labels})
    spec = get_backbone(config.model.backbone).preprocess_spec(*config.image_hw, grayscale=config.data.grayscale,
                                                               resize=config.data.resize)
    batches, _ = _batches(config, split, labels, spec, None)
    model = create_model(config, len(labels))
    _compile(model, config, config.train.learning_rate)
    n = len(batches)
    items = [batches[i % n] for i in range(3)]  # warm-up: caches filled, graphs compiled
    for x, y, *rest in items:
        model.train_on_batch(x, y)
    began = time.perf_counter()
    loaded = [batches[(3 + i) % n] for i in range(steps)]
    loader_s = time.perf_counter() - began
    images = sum(len(x) for x, *_ in loaded)
    began = time.perf_counter()
    for x, y, *rest in loaded:
        model.train_on_batch(x, y)
    train_s = time.perf_counter() - began
    memory = None
    if keras.backend.backend() == "jax":
        import jax

        stats = jax.devices()[0].memory_stats() or {}
        memory = stats.get("peak_bytes_in_use")
    return {"images": images, "loader_ips": images / loader_s, "train_ips": images / train_s, "memory": memory}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--pneumonia", type=Path, default=SHARED / "chest-xray-pneumonia" / "train")
    parser.add_argument("--bees", type=Path, default=SHARED / "bees-yolo")
    parser.add_argument("--limit", type=int, default=400, help="pediatric images per label to cache (default 400)")
    args = parser.parse_args()
    import keras

    device = "cpu"
    if keras.backend.backend() == "jax":
        import jax

        device = f"{jax.devices()[0].platform} ({jax.devices()[0].device_kind}, {len(jax.devices())} devices)"
    print(f"keras {keras.__version__}, backend {keras.backend.backend()}, device {device}")
    cases = {
        "pneumonia efficientnetb0 224 px (stage b)": (REPO / "configs" / "pneumonia.yaml", [
            f"data.source={args.pneumonia}", "data.image_size=224", "model.backbone=efficientnetb0",
            "model.weights=none", f"data.limit_per_label={args.limit}"]),
        "bees detector (configs/bees.yaml)": (REPO / "configs" / "bees.yaml", [f"data.source={args.bees}"]),
    }
    for name, (config, overrides) in cases.items():
        r = case(config, overrides, args.steps)
        memory = "n/a" if r["memory"] is None else f"{r['memory'] / 2**30:.2f} GiB"
        print(f"{name}: {args.steps} steps, {r['images']} images; loader alone {r['loader_ips']:.0f} images/s, "
              f"training {r['train_ips']:.0f} images/s, training/loader {r['train_ips'] / r['loader_ips']:.2f}, "
              f"peak device memory {memory}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.exit(main())
