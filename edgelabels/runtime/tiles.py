"""Tiled detection: small objects in large frames answered by overlapping tiles merged into one answer.

A spec with `tile_scale` s (data/preprocess.py) scales the image by s, then cuts it into spec-sized tiles
(SAHI's slicing, obss/sahi sahi/slicing.py get_slice_bboxes: a fixed step, the last tile of a row or column
shifted back inside the image rather than padded; an image smaller than a tile is one tile, padded with black).
Scaling is `to_pixels` with the spec resized to the scaled image, and every tile goes through `normalise`, so
tiles are preprocessed by the one implementation the untiled path and the training loader use.

Each tile's detections (ratios of the tile) become ratios of the whole image, then:
- a box that reaches a tile border shared with a neighbour, and lies within the overlap band on that side, is
  a partial: the neighbour sees the object whole, so the cut one is dropped (a box wider than the overlap is
  kept: no tile holds it whole);
- the rest merge class-wise, greedily by score (SAHI's postprocess, sahi/postprocess/combine.py): a box
  absorbs the weaker boxes of its class that overlap it (`merge_rows`: "nms" keeps the stronger box where
  IoU >= 0.5; "union" grows it to cover the weaker box where the intersection over the smaller box >= 0.5,
  SAHI's GREEDYNMM with IOS);
- at most `max_rows` remain, most confident first.
numpy + Pillow only (never TensorFlow or Keras).
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import numpy as np

from edgelabels.data.preprocess import PreprocessSpec, normalise, to_pixels

ROW = 6  # left, top, width, height, score, class_id (runtime/detector.py's rows)
# merge_rows' default: measured on small-objects val (a 3-minute tiled smallcnn, tiles 128 at scale 0.5), car
# AP@0.5 0.279 with "union" against 0.244 with "nms"; union also makes one box of an object larger than the overlap.
MERGE = "union"
MERGE_THRESHOLD = 0.5
MAX_ROWS = 1000  # rows a tiled answer keeps at most (the model's top-K times the tiles, capped here)
MIN_SCORE = 0.001  # rows below it are the decoder's padding past the real peaks: not worth merging
EDGE_PX = 2.0  # a box within this many (scaled) pixels of a tile border reaches it


class Tiles(NamedTuple):
    """One image cut into tiles: what `Detector.prepare` returns for a tiled export."""

    pixels: np.ndarray  # uint8 (T, H, W, C), each tile through to_pixels
    boxes: np.ndarray  # (T, 4) int [left, top, width, height] in scaled pixels
    size: tuple[int, int]  # (width, height) of the scaled image


def scaled_size(image_w: int, image_h: int, spec: PreprocessSpec) -> tuple[int, int]:
    """(width, height) of an image_w x image_h image scaled by spec.tile_scale (at least 1 px a side)."""
    s = spec.tile_scale
    return max(1, round(image_w * s)), max(1, round(image_h * s))


def _starts(length: int, tile: int, overlap: float) -> list[int]:
    """Tile starts along one axis: every `step`, the last one shifted back so it ends at the image's edge."""
    if length <= tile:
        return [0]
    step = max(1, tile - round(overlap * tile))
    count = math.ceil((length - tile) / step) + 1
    return [min(i * step, length - tile) for i in range(count)]


def tile_boxes(image_w: int, image_h: int, spec: PreprocessSpec) -> list[tuple[int, int, int, int]]:
    """Tiles (left, top, width, height) in scaled pixels covering an image_w x image_h image (its size before
    scaling) scaled by spec.tile_scale, row by row; each tile spec.width x spec.height (past the image's edge
    only when the image is smaller than a tile: padded)."""
    width, height = scaled_size(image_w, image_h, spec)
    return [(left, top, spec.width, spec.height)
            for top in _starts(height, spec.height, spec.tile_overlap)
            for left in _starts(width, spec.width, spec.tile_overlap)]


def scaled_pixels(image, spec: PreprocessSpec) -> np.ndarray:
    """A PIL image -> uint8 (h, w, C) pixels of the whole image scaled by spec.tile_scale (to_pixels's resize
    and colour)."""
    width, height = scaled_size(*image.size, spec)
    return to_pixels(image, dataclasses.replace(spec, width=width, height=height))


def crop(pixels: np.ndarray, left: int, top: int, width: int, height: int) -> np.ndarray:
    """pixels[top:top+height, left:left+width], black where the window leaves the image."""
    out = np.zeros((height, width, pixels.shape[2]), pixels.dtype)
    x0, y0 = max(left, 0), max(top, 0)
    x1, y1 = min(left + width, pixels.shape[1]), min(top + height, pixels.shape[0])
    if x1 > x0 and y1 > y0:
        out[y0 - top:y1 - top, x0 - left:x1 - left] = pixels[y0:y1, x0:x1]
    return out


def cut_tiles(image, spec: PreprocessSpec) -> Tiles:
    """A decoded PIL image -> its tiles (uint8) and where they lie."""
    pixels = scaled_pixels(image, spec)
    boxes = tile_boxes(*image.size, spec)
    return Tiles(np.stack([crop(pixels, *box) for box in boxes]), np.asarray(boxes, np.int64).reshape(-1, 4),
                 (pixels.shape[1], pixels.shape[0]))


def run_tiles(tiles: Tiles, spec: PreprocessSpec, run_batch, batch_size: int = 16, merge: str = MERGE,
              max_rows: int = MAX_ROWS) -> np.ndarray:
    """A cut image's tiles through the model (`batch_size` tiles a call) -> merged rows (K, 6) in ratios of
    the whole image, most confident first."""
    outputs = [np.asarray(run_batch(normalise(tiles.pixels[i:i + batch_size], spec)), np.float32)
               for i in range(0, len(tiles.pixels), batch_size)]
    per_tile = np.concatenate(outputs)  # (T, K, 6) in ratios of each tile
    cap = min(max_rows, per_tile.shape[1] * len(per_tile))
    return merge_tile_rows(per_tile, tiles.boxes, tiles.size, merge=merge, max_rows=cap)


def tiled_detections(image, spec: PreprocessSpec, run_batch, batch_size: int = 16, merge: str = MERGE,
                     max_rows: int = MAX_ROWS) -> np.ndarray:
    """One decoded PIL image -> (K, 6) rows [left, top, width, height, score, class_id] in ratios of the whole
    image, like an untiled model's rows for that image."""
    return run_tiles(cut_tiles(image, spec), spec, run_batch, batch_size, merge, max_rows)


def predict_tiled_files(paths, spec: PreprocessSpec, run_batch, batch_size: int = 16, progress: bool = False,
                        desc: str = "tiles", timer: dict | None = None, cut=None) -> list[np.ndarray]:
    """(K_i, 6) rows per image file (tiled_detections), the next image decoded and cut on a worker thread while
    the model runs this one's tiles. For evaluation with any runner (OnnxModel, models.factory.keras_runner).
    cut: image -> Tiles (default: read_image, then cut_tiles); timer["seconds"] accumulates the model's time."""
    import time

    from edgelabels.data.images import read_image
    from edgelabels.runtime.runner import prepared_batches

    cut = cut or (lambda path: cut_tiles(read_image(path)[0], spec))
    found = []
    for _batch, (tiles,) in prepared_batches(list(paths), cut, 1, progress=progress, desc=desc):
        began = time.perf_counter()
        found.append(run_tiles(tiles, spec, run_batch, batch_size))
        if timer is not None:
            timer["seconds"] = timer.get("seconds", 0.0) + time.perf_counter() - began
    return found


def padded(rows: list[np.ndarray]) -> np.ndarray:
    """Per-image rows (K_i, 6) -> (N, max K_i, 6), short ones filled with all-zero rows (score 0, no box)."""
    k = max((len(r) for r in rows), default=0)
    out = np.zeros((len(rows), k, ROW), np.float32)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


# -- merging -----------------------------------------------------------------------------------------

def merge_tile_rows(per_tile: np.ndarray, boxes: np.ndarray, size: tuple[int, int], merge: str = MERGE,
                    max_rows: int = MAX_ROWS) -> np.ndarray:
    """(T, K, 6) rows in ratios of each tile + the tiles (T, 4) in scaled pixels of a `size` (w, h) image ->
    (K', 6) rows in ratios of the image: partials at shared borders dropped, the rest merged, capped."""
    width, height = size
    found = []
    for rows, (left, top, tw, th) in zip(per_tile, boxes):
        rows = rows[rows[:, 4] >= MIN_SCORE]
        px = rows[:, :4] * np.array([tw, th, tw, th], np.float32)  # tile pixels
        keep = ~_partial(px, (left, top, tw, th), boxes)
        px = px[keep] + np.array([left, top, 0, 0], np.float32)
        found.append(np.concatenate([px / np.array([width, height, width, height], np.float32), rows[keep, 4:]],
                                    axis=1))
    rows = np.concatenate(found) if found else np.zeros((0, ROW), np.float32)
    return merge_rows(rows, merge)[:max_rows]


def _partial(px: np.ndarray, tile, boxes: np.ndarray) -> np.ndarray:
    """Which boxes (tile pixels, (M, 4)) reach a border of `tile` that another tile overlaps, lying inside that
    overlap: the other tile holds the object whole."""
    cut = np.zeros(len(px), bool)
    # Per side: the box reaches the border, and the tile beyond holds it whole, clear of that tile's own border
    # (else each of two tiles would leave an object near both borders to the other).
    for axis in (0, 1):  # x (the tiles of this row), then y (of this column)
        start, extent = tile[axis], tile[2 + axis]
        low, high = px[:, axis], px[:, axis] + px[:, 2 + axis]
        line = boxes[boxes[:, 1 - axis] == tile[1 - axis], axis]
        after, before = line[line > start], line[line < start]
        if len(after):
            cut |= (high >= extent - EDGE_PX) & (low + start >= after.min() + EDGE_PX)
        if len(before):
            cut |= (low <= EDGE_PX) & (high + start <= before.max() + extent - EDGE_PX)
    return cut


def merge_rows(rows: np.ndarray, merge: str = MERGE, threshold: float = MERGE_THRESHOLD) -> np.ndarray:
    """Class-wise greedy merge of (M, 6) rows, most confident first: each kept row absorbs the weaker rows of
    its class that overlap it ("nms": IoU >= threshold, the stronger box stays; "union": intersection over the
    smaller box >= threshold, the kept box grows to cover both, its score the stronger one's)."""
    if merge not in ("nms", "union"):
        raise ValueError(f"merge must be nms or union, not {merge!r}")
    rows = rows[np.argsort(-rows[:, 4], kind="stable")]
    x0, y0 = rows[:, 0].copy(), rows[:, 1].copy()
    x1, y1 = x0 + rows[:, 2], y0 + rows[:, 3]
    area = rows[:, 2] * rows[:, 3]
    alive = np.ones(len(rows), bool)
    kept = []
    for i in range(len(rows)):
        if not alive[i]:
            continue
        alive[i] = False
        others = np.flatnonzero(alive & (rows[:, 5] == rows[i, 5]))
        iw = np.clip(np.minimum(x1[i], x1[others]) - np.maximum(x0[i], x0[others]), 0, None)
        ih = np.clip(np.minimum(y1[i], y1[others]) - np.maximum(y0[i], y0[others]), 0, None)
        inter = iw * ih
        if merge == "nms":
            overlap = inter / np.maximum(area[i] + area[others] - inter, 1e-12)
        else:
            overlap = inter / np.maximum(np.minimum(area[i], area[others]), 1e-12)
        absorbed = others[overlap >= threshold]
        alive[absorbed] = False
        row = rows[i].copy()
        if merge == "union" and len(absorbed):
            left, top = min(x0[i], x0[absorbed].min()), min(y0[i], y0[absorbed].min())
            right, bottom = max(x1[i], x1[absorbed].max()), max(y1[i], y1[absorbed].max())
            row[:4] = (left, top, right - left, bottom - top)
        kept.append(row)
    return np.asarray(kept, np.float32).reshape(-1, ROW)
