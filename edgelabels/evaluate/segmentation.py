"""A U-Net's evaluation hooks (driver.py runs them): Dice and IoU per image at each mask's own resolution,
overlays, a histogram, a report.

MODEL is a segmentation run (model.keras; its test split) or an export of one (model.onnx; the split of
the run one level up, as for classification); --data names a folder with images/ + masks/ instead.
The U-Net's probability map is resized (bilinear) to each mask's size before scoring, so the numbers
describe the masks as they are on disk, not a 256-pixel copy of them; mask value 127 is ignored.

Layout of MODEL/evaluation/ (or `out`), written next to its final place and renamed in whole:
  metrics.json                 {"task": "segmentation", "images", "threshold", "dice", "iou", ..., "per_image"}
  overlays/                    worst-01-dice0.412-NAME.png ... and best-01-dice0.987-NAME.png ... (see overlay.py)
  plots/dice_histogram.png
  report.md, report.html       (report.html is self-contained: figures embedded)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np

from edgelabels import atomic
from edgelabels.artifacts import ExportDir, RunDir
from edgelabels.errors import UserError
from edgelabels.evaluate.driver import EvaluationHooks, OpenModel
from edgelabels.evaluate.bootstrap import segmentation_intervals
from edgelabels.evaluate.evaluation import METRICS_FILE, run_recipe
from edgelabels.evaluate.segmentation_report import write_report

GALLERY_SIDE = 512  # overlays in the evaluation are downscaled to this longer side: a report, not a viewer
OVERLAYS = 6  # images per kind (worst, best) drawn, unless evaluate_model's `overlays` says otherwise


# ---------------------------------------------------------------- the evaluate verb's hooks (driver.py runs them)


def open_run(run: RunDir, precision: str, batch_size: int, progress: bool) -> OpenModel:
    return _open(run, "Keras U-Net", batch_size, progress)


def open_export(export: ExportDir, precision: str, batch_size: int, progress: bool) -> OpenModel:
    """An exported U-Net: its one ONNX model (`precision` does not apply)."""
    return _open(export, "exported ONNX U-Net", batch_size, progress)


def _open(found: RunDir | ExportDir, kind: str, batch_size: int, progress: bool) -> OpenModel:
    """Its predictions: the lung probability of each image resized to its mask's size, yielded as they are
    consumed (and timed then)."""
    from edgelabels.runtime.segmenter import Segmenter

    segmenter = Segmenter.load(found)

    def predict(paths, stopwatch):
        return _probabilities_at_mask_size(segmenter, paths, batch_size, stopwatch, progress)

    return OpenModel(f"{kind} {segmenter.source}", [], predict, drawn_with=segmenter)


def read_pairs(source, labels):
    """--data: a folder with images/ and masks/."""
    from edgelabels.data.masks import load_mask_pairs

    return load_mask_pairs(source)


def check_masks(samples, labels, described) -> None:
    """Every image to score has its mask, before anything is predicted."""
    missing = next((s.path for s in samples if not _mask_of(s.path).is_file()), None)
    if missing is not None:
        raise UserError(f"{_mask_of(missing)}: no mask for test image {missing}")


def write(out: Path, evaluation) -> dict:
    """metrics.json, overlays/, plots/dice_histogram.png, report.md and report.html; --min-confidence is the lung
    probability above which a pixel counts as lung."""
    threshold = evaluation.min_confidence
    metrics = segmentation_metrics(evaluation.predictions, _truths(evaluation.paths), evaluation.paths,
                                   threshold=threshold)
    speed = evaluation.speed()  # the predictions are consumed (and timed) only now
    metrics["model"] = evaluation.model.description
    metrics["data"] = f"{evaluation.described} ({len(evaluation.samples)} images)"
    metrics["intervals"] = segmentation_intervals([row["dice"] for row in metrics["per_image"]],
                                                  [row["iou"] for row in metrics["per_image"]])
    recipe = run_recipe(evaluation.found)
    with atomic.directory(out) as folder:
        atomic.write_json(folder / METRICS_FILE, metrics)
        gallery = write_overlays(folder / "overlays", evaluation.model.drawn_with, metrics,
                                 count=evaluation.overlays, threshold=threshold)
        histogram = dice_histogram(folder / "plots" / "dice_histogram.png", metrics)
        write_report(folder, metrics, speed, gallery, histogram, recipe=recipe)
    return {"metrics": metrics, "overlays": gallery}


def lines(result: dict) -> list[str]:
    """What `edgelabels evaluate` prints for a U-Net."""
    from edgelabels.evaluate.report import estimate

    metrics = result["metrics"]
    return [f"evaluated {metrics['images']} image/mask pairs: Dice {estimate(metrics, 'dice')}, IoU "
            f"{estimate(metrics, 'iou')} (median Dice {metrics['dice_median']:.4f}, worst {metrics['dice_min']:.4f})",
            f"wrote {result['out']}/ (metrics.json, overlays/, report)"]


HOOKS = EvaluationHooks(open_run=open_run, open_export=open_export, samples=read_pairs, check=check_masks, write=write,
                        lines=lines, data_hint="FOLDER (images/ + masks/)", overlays=OVERLAYS)


def segmentation_metrics(probabilities, truths, paths, threshold: float = 0.5) -> dict:
    """Per-image and summary Dice/IoU. probabilities and truths: iterables of (H, W) arrays, pair by pair the same
    size (each mask's own); they may be generators, so a large test set is never held in memory at once."""
    from edgelabels.evaluate.metrics import dice_iou

    per_image = []
    for probability, truth, path in zip(probabilities, truths, paths, strict=True):
        dice, iou = dice_iou(probability, truth, threshold)
        per_image.append({"path": str(path), "dice": dice, "iou": iou})
    if not per_image:
        raise UserError("no images to evaluate")
    dices = np.array([row["dice"] for row in per_image])
    ious = np.array([row["iou"] for row in per_image])
    return {"task": "segmentation", "images": len(per_image), "threshold": float(threshold),
            "dice": float(dices.mean()), "iou": float(ious.mean()), "dice_median": float(np.median(dices)),
            "dice_min": float(dices.min()), "iou_median": float(np.median(ious)), "iou_min": float(ious.min()),
            "per_image": per_image}


def write_overlays(folder: Path, segmenter, metrics: dict, *, count: int, threshold: float) -> list[dict]:
    """The `count` lowest-Dice images, then the `count` highest (no image twice), as overlays with the truth."""
    from edgelabels.data.images import read_image
    from edgelabels.data.masks import read_mask
    from edgelabels.runtime.overlay import overlay
    from edgelabels.runtime.segmenter import at_image_size

    rows = metrics["per_image"]
    order = sorted(range(len(rows)), key=lambda i: (rows[i]["dice"], rows[i]["path"]))
    worst = order[:count]
    best = [i for i in reversed(order) if i not in worst][:count]
    chosen = [("worst", rank, i) for rank, i in enumerate(worst, 1)] + \
             [("best", rank, i) for rank, i in enumerate(best, 1)]
    if not chosen:
        return []
    # Recomputed for these few images rather than kept for all: the test set may be thousands of films.
    probabilities = segmenter.probabilities([rows[i]["path"] for _, _, i in chosen])
    gallery = []
    for (kind, rank, i), probability in zip(chosen, probabilities):
        row = rows[i]
        image = _thumbnail(read_image(row["path"])[0])
        truth = read_mask(_mask_of(row["path"]), image.height, image.width)
        picture = overlay(image, at_image_size(probability, image.size), truth, threshold)
        name = f"{kind}-{rank:02d}-dice{row['dice']:.3f}-{_safe_name(Path(row['path']).stem)}.png"
        with atomic.temp_path(folder / name) as tmp:
            picture.save(tmp, format="PNG")
        gallery.append({"kind": kind, "rank": rank, "path": row["path"], "dice": row["dice"], "iou": row["iou"],
                        "file": f"overlays/{name}"})
    return gallery


def dice_histogram(path: Path, metrics: dict) -> Path:
    """Histogram of per-image Dice, with the mean and median marked (matplotlib, object API: no global state)."""
    from matplotlib.figure import Figure

    dices = np.array([row["dice"] for row in metrics["per_image"]])
    # Good U-Nets score 0.9-0.98: a 0-1 axis would squeeze every bar into one corner.
    low = min(0.8, np.floor(dices.min() * 20) / 20)
    fig = Figure(figsize=(6.4, 3.6), dpi=110, layout="constrained")
    ax = fig.subplots()
    ax.hist(dices, bins=np.linspace(low, 1.0, 41), color="tab:orange", alpha=0.8)
    ax.axvline(metrics["dice"], color="tab:blue", label=f"mean {metrics['dice']:.3f}")
    ax.axvline(metrics["dice_median"], color="tab:blue", linestyle="--", label=f"median {metrics['dice_median']:.3f}")
    ax.set_xlim(low, 1.0)
    ax.set_xlabel(f"Dice per image (threshold {metrics['threshold']:g})")
    ax.set_ylabel("Images")
    ax.set_title(f"Dice of {metrics['images']} images", fontsize=10)
    ax.legend(loc="upper left")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def _probabilities_at_mask_size(segmenter, paths, batch_size: int, stopwatch, progress: bool):
    """The U-Net's lung probability for each image, resized to its mask's size; model time added to stopwatch."""
    from tqdm import tqdm

    from edgelabels.data.images import read_image
    from edgelabels.runtime.segmenter import at_image_size

    with tqdm(total=len(paths), unit="img", desc="segment", file=sys.stderr, disable=not progress) as bar:
        for start in range(0, len(paths), batch_size):
            chunk = paths[start:start + batch_size]
            images = [read_image(path)[0] for path in chunk]
            with stopwatch.timing():
                maps = segmenter.probabilities(images, batch_size)
            for path, probability in zip(chunk, maps):
                yield at_image_size(probability, _mask_size(_mask_of(path)))
            bar.update(len(chunk))


def _truths(paths):
    from edgelabels.data.masks import read_mask

    for path in paths:
        mask_path = _mask_of(path)
        width, height = _mask_size(mask_path)
        yield read_mask(mask_path, height, width)


def _mask_size(path: Path) -> tuple[int, int]:
    """(width, height) from the PNG/JPEG header alone: the mask is decoded once, by read_mask."""
    from PIL import Image, UnidentifiedImageError

    from edgelabels.errors import ImageProblem

    try:
        with Image.open(path) as mask:
            return mask.size
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise ImageProblem(path, f"cannot read mask ({exc})") from None


def _mask_of(path) -> Path:
    from edgelabels.data.masks import mask_path_of

    return mask_path_of(path)


def _thumbnail(image):
    from PIL import Image

    scale = GALLERY_SIDE / max(image.size)
    if scale >= 1:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BILINEAR)


def _safe_name(stem: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem)[:80] or "image"
