"""Training throughput vs loader-only throughput (images/s) on this machine, in one run.

    .venv/bin/python benchmarks/train_throughput.py [--source DIR] [--backbones efficientnetb0 vgg16]
        [--sizes 128 224] [--steps 6] [--batch-size 16] [--workers 2]

For each backbone and size: the loader alone (decode + resize + augment + normalise, first epoch, i.e.
uncached, and cached later epochs) and a training step (stage b: whole backbone trainable, the
slowest case; stage a: frozen backbone). The loader is not the bottleneck when its images/s is well
above the training images/s. Uses ../shared/data/chest-xray-pneumonia/train by default, or generated
images when that folder is absent. Weights none (nothing is downloaded).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "chest-xray-pneumonia" / "train"


def image_paths(source: Path, n: int) -> tuple[list[Path], list[int]]:
    if source.is_dir():
        paths = sorted(p for p in source.rglob("*") if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
    else:
        from PIL import Image

        tmp = Path(tempfile.mkdtemp())
        rng = np.random.default_rng(0)
        paths = []
        for i in range(n):
            path = tmp / f"{i}.jpg"
            Image.fromarray(rng.integers(0, 255, (224, 224, 3), dtype=np.uint8)).save(path)
            paths.append(path)
    rng = np.random.default_rng(0)
    chosen = [paths[i] for i in rng.choice(len(paths), size=min(n, len(paths)), replace=False)]
    return chosen, [int("PNEUMONIA" in str(p)) for p in chosen]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--backbones", nargs="+", default=["efficientnetb0", "vgg16"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[128, 224])
    parser.add_argument("--steps", type=int, default=6, help="timed training steps per case (after 2 warm-up)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    import keras

    from edgelabels.data.augment import build_augmenter
    from edgelabels.models.backbones import get_backbone
    from edgelabels.models.classifier import build_classifier, unfreeze_top, freeze_backbone
    from edgelabels.train.loader import ImageBatches, PixelCache

    n = args.batch_size * (args.steps + 2)
    paths, labels = image_paths(args.source, n)
    print(f"keras {keras.__version__} backend {keras.backend.backend()}, {os.cpu_count()} CPUs, "
          f"{len(paths)} images from {args.source if args.source.is_dir() else 'generated noise'}, "
          f"batch {args.batch_size}, loader workers {args.workers}")
    header = f"{'backbone':16} {'px':>4} {'loader 1st ep':>14} {'loader cached':>14} {'train frozen':>13} " \
             f"{'train all':>10} {'loader/train':>13}"
    print(header)
    print("-" * len(header))
    for size in args.sizes:
        for name in args.backbones:
            spec = get_backbone(name).preprocess_spec(size, size, grayscale=True)
            augmenter = functools.partial(build_augmenter, "xray", ())  # a seed -> that batch's augmenter
            cache = PixelCache(paths, spec, max_bytes=8e9)
            batches = ImageBatches(cache, labels, 2, args.batch_size, augmenter=augmenter, shuffle=True,
                                   workers=args.workers)
            loader_rates = []
            for _ in range(2):  # first pass decodes, second is served from the cache
                start = time.perf_counter()
                with ThreadPoolExecutor(args.workers) as pool:  # as the PyDataset's worker threads do
                    list(pool.map(batches.__getitem__, range(len(batches))))
                loader_rates.append(len(paths) / (time.perf_counter() - start))
            rates = []
            model = build_classifier(name, 2, size, size)
            for mode in ("frozen", "all"):
                if mode == "frozen":
                    freeze_backbone(model)
                else:
                    unfreeze_top(model, -1)
                model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="categorical_crossentropy")
                x, y = batches[0]
                for _ in range(2):
                    model.train_on_batch(x, y)
                start = time.perf_counter()
                for i in range(args.steps):
                    x, y = batches[i % len(batches)]
                    model.train_on_batch(x, y)
                rates.append(args.steps * args.batch_size / (time.perf_counter() - start))
            print(f"{name:16} {size:>4} {loader_rates[0]:>12.0f}/s {loader_rates[1]:>12.0f}/s "
                  f"{rates[0]:>11.1f}/s {rates[1]:>8.1f}/s {loader_rates[0] / rates[1]:>12.1f}x", flush=True)
    print("loader/train: uncached loader images/s over full-training images/s (> 1: the loader keeps up)")


if __name__ == "__main__":
    sys.exit(main())
