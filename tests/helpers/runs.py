"""Hand-made run directories for export/predictor tests (and the edge benchmark).

Written through the layout module's writers (edgelabels.artifacts.RunDir), without going through
training, so these tests do not wait on it.
Images are generated PNGs whose colour and stripes depend on the label, so a tiny model learns
them in a few steps and its outputs vary across images (parity checks are then not vacuous).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from edgelabels.data.preprocess import preprocess
from helpers.marks import makes_a_model

LABELS = ("circle", "square", "stripes")
_COLOURS = np.array([[200, 60, 60], [60, 180, 70], [70, 90, 210], [200, 200, 60]], dtype=np.float32)


def make_image(label_index: int, rng: np.random.Generator, size: int = 40) -> Image.Image:
    """An RGB image: a label-specific colour and stripe frequency, plus noise and a random offset."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    stripes = np.sin((xx + rng.uniform(0, size)) * (0.25 + 0.35 * label_index))[..., None]
    base = _COLOURS[label_index % len(_COLOURS)] * (0.7 + 0.3 * rng.uniform())
    pixels = base + 50 * stripes + rng.normal(0, 20, (size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def write_images(folder: Path, labels=LABELS, per_label: int = 8, size: int = 40, seed: int = 0,
                 fmt: str = "PNG") -> list[tuple[Path, str]]:
    """`per_label` generated images per label in folder/<label>/; returns (path, label) pairs."""
    rng = np.random.default_rng(seed)
    suffix = ".png" if fmt == "PNG" else ".jpg"
    out = []
    for i, label in enumerate(labels):
        (folder / label).mkdir(parents=True, exist_ok=True)
        for j in range(per_label):
            path = folder / label / f"{label}_{seed}_{j:03d}{suffix}"
            make_image(i, rng, size).save(path, fmt)
            out.append((path, label))
    return out


def reestimate_batchnorm(model, x: np.ndarray) -> None:
    """Set every BatchNorm's moving statistics to those of batch `x` (untrained backbones saturate otherwise).

    Random-weight EfficientNet/MobileNetV3 with mean 0 / variance 1 statistics give one constant output
    for every input; one training-mode pass with momentum 0 makes the statistics real.
    """
    import keras

    layers = [layer for layer in _all_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]
    saved = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 0.0
    model.get_layer("backbone")(x, training=True)
    for layer, momentum in zip(layers, saved):
        layer.momentum = momentum


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)


@makes_a_model
def trained_classifier(backbone: str, samples, spec, labels=LABELS, epochs: int = 3, seed: int = 0):
    """build_classifier + BatchNorm re-estimation + a brief fit of the head (backbone frozen) on `samples` [(path, label)]."""
    import keras

    from edgelabels.data.images import read_image
    from edgelabels.models.classifier import build_classifier, freeze_backbone

    keras.utils.set_random_seed(seed)
    model = build_classifier(backbone, len(labels), spec.height, spec.width)
    x = np.stack([preprocess(read_image(path)[0], spec) for path, _ in samples])
    y = np.array([labels.index(label) for _, label in samples])
    reestimate_batchnorm(model, x)
    if epochs:  # head only, as stage one of transfer learning: random conv weights stay sane
        freeze_backbone(model)
        model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=16, epochs=epochs, verbose=0)
    return model


@makes_a_model
def make_run(run_dir: Path, backbone: str = "tinycnn", size: int = 32, labels=LABELS, per_label: int = 12,
             epochs: int = 3, seed: int = 0, image_size: int = 40) -> Path:
    """A run directory per the contract: images in run_dir/../images-<name>, split 60/20/20 per label."""
    from edgelabels.artifacts import RunDir
    from edgelabels.data.dataset import Sample
    from edgelabels.data.splits import Split
    from edgelabels.models.backbones import get_backbone

    run_dir = Path(run_dir)
    image_dir = run_dir.parent / f"images-{run_dir.name}"
    samples = write_images(image_dir, labels, per_label, image_size, seed)
    spec = get_backbone(backbone).preprocess_spec(size, size, grayscale=False)
    splits = {"train": [], "val": [], "test": []}
    for label in labels:
        mine = [s for s in samples if s[1] == label]
        n_val = n_test = max(1, len(mine) // 5)
        splits["val"] += mine[:n_val]
        splits["test"] += mine[n_val:n_val + n_test]
        splits["train"] += mine[n_val + n_test:]
    model = trained_classifier(backbone, splits["train"], spec, tuple(labels), epochs, seed)

    run = RunDir(run_dir)
    run.start(f"model:\n  backbone: {backbone}\n  weights: none\ndata:\n  image_size: [{size}, {size}]\n")
    run.write_split(Split(**{name: [Sample(path, (label,), path.stem) for path, label in rows]
                             for name, rows in splits.items()}))
    run.write_labels(list(labels))
    run.write_preprocess(spec)
    model.save(run.model_path)
    return run_dir


@makes_a_model
def make_export(run_dir: Path, **run_options) -> Path:
    """make_run + `export` (fp32): the RUN/export/ folder a Predictor loads."""
    from edgelabels.export.driver import export_run

    run = make_run(run_dir, **run_options)
    export_run(run, parity_images=8)
    return run / "export"
