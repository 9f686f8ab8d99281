"""A "U-Net" with hand-countable Dice: one 1x1 convolution that calls every dark pixel lung (no training).

Images are dark rectangles on a light background; a mask that differs from its image's rectangle gives a
Dice that can be counted by hand. Runs and exports are written through edgelabels.artifacts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from edgelabels.artifacts import ExportDir, RunDir
from helpers.marks import makes_a_model

SIZE = 32  # the U-Net's input size
DARK, LIGHT = 40, 200


def rectangle(shape, rows, cols, value=255) -> np.ndarray:
    out = np.zeros(shape, np.uint8)
    out[rows[0]:rows[1], cols[0]:cols[1]] = value
    return out


def write_pair(folder: Path, name: str, dark: np.ndarray, mask: np.ndarray) -> Path:
    """folder/images/name: LIGHT with DARK where `dark`; folder/masks/name: `mask`."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.where(dark > 0, DARK, LIGHT).astype(np.uint8)).save(folder / "images" / name)
    Image.fromarray(mask).save(folder / "masks" / name)
    return folder / "images" / name


def write_hand_counted_pairs(folder: Path) -> dict[str, tuple[float, float]]:
    """Three pairs at the U-Net's size; returns name -> (Dice, IoU) counted by hand."""
    shape = (SIZE, SIZE)
    lung = rectangle(shape, (8, 24), (4, 14))  # 16 x 10 = 160 pixels
    write_pair(folder, "a-exact.png", lung, lung)
    # Truth 16 x 14 = 224 pixels contains the 160 predicted: Dice 2*160/384, IoU 160/224.
    write_pair(folder, "b-wider-truth.png", lung, rectangle(shape, (8, 24), (4, 18)))
    # A dark blob the annotator marked "ignore" (127): predicted lung there costs nothing.
    blob = rectangle(shape, (2, 6), (20, 30))
    write_pair(folder, "c-ignored-blob.png", lung | blob, np.maximum(lung, rectangle(shape, (0, 8), (18, 32), 127)))
    return {"a-exact.png": (1.0, 1.0), "b-wider-truth.png": (320 / 384, 160 / 224), "c-ignored-blob.png": (1.0, 1.0)}


@makes_a_model
def make_pixel_unet_run(run_dir: Path, test_paths: list[Path], task: str = "segmentation") -> Path:
    """A run directory whose model.keras marks pixels darker than mid-grey as lung (probability ~1)."""
    import keras

    from edgelabels.data.dataset import Sample
    from edgelabels.data.preprocess import PreprocessSpec
    from edgelabels.data.splits import Split

    spec = PreprocessSpec(height=SIZE, width=SIZE, grayscale=True, channels=3, mean=(127.5,) * 3, std=(127.5,) * 3)
    inputs = keras.Input((SIZE, SIZE, 3))
    layer = keras.layers.Conv2D(1, 1, activation="sigmoid")
    model = keras.Model(inputs, layer(inputs))
    layer.set_weights([np.full((1, 1, 3, 1), -10 / 3, np.float32), np.zeros(1, np.float32)])
    run = RunDir(run_dir)
    run.start(f"task: {task}\nmodel: {{backbone: tinycnn, weights: none}}\n")
    model.save(run.model_path)
    run.write_preprocess(spec)
    run.write_labels(["lung"])
    samples = [Sample(path, ("lung",), path.stem) for path in test_paths]
    run.write_split(Split(train=samples[:1], val=samples[:1], test=samples[1:]))
    return run_dir


@makes_a_model
def make_export(run_dir: Path) -> Path:
    """RUN/export/ as `export` writes it for a U-Net (model.onnx, labels, preprocessing, layout), without its checks."""
    from edgelabels.export.onnx_export import keras_to_onnx
    from edgelabels.models.factory import load_model

    run = RunDir.load(run_dir)
    export = ExportDir(run.export_dir)
    export.dir.mkdir()
    keras_to_onnx(load_model(run.model_path), export.model_path)
    export.write_layout("segmentation")
    export.write_labels(run.labels)
    export.write_preprocess(run.spec)
    return export.dir
