"""Synthetic phone photos of lateral-flow (COVID antigen) test cassettes: the demo's data and the tests'.

Labels, as the kits' leaflets define them:
  positive = a control line at C and a test line at T (T from barely visible to strong);
  negative = C only;  invalid = no C line, with or without a T line.
`DEFAULT_MIX` (90% negative, 7% positive, 3% invalid) follows the real problem: most home tests are
negative, and invalid results are rare but must be caught.

Design (numpy + Pillow only, so the core install can import it). Speed, render + JPEG, CPU time on a
shared 2-core machine: ~16 ms at 640x480, ~34 ms at 1024x768, ~70 ms at 1600x1200, ~32 ms for the
default mix of phone sizes; `generate_cassettes(..., size=(640, 480))` is the fast choice for a demo.
- The cassette is drawn flat, in its own frame, the way the common kits look: an off-white moulded
  body about 0.3 as wide as long with rounded corners, a bevelled rim, a recessed result window
  showing the white nitrocellulose strip, "C" and "T" printed beside the window, and a round
  sample well ("S") near one end. Flow runs from the well, so T is the line nearer the well and C
  the farther one: which one-line cassette is negative and which invalid is decided by the line's
  place relative to the well and the printed marks, as a reader does. Printing (brand pseudo-text,
  a coloured band, a barcode sticker, a handwritten note) varies from image to image.
- Lines are colloidal-gold red-purple, drawn as absorption (the strip is multiplied by a
  transmittance), with soft flat-topped edges and uneven density along their length. They are
  about 1.5-2x thicker, relative to the cassette, than on real kits (~1 mm on ~70 mm), so they
  survive a resize of the whole photo to about 96-128 px. The faintest T (`FAINT_T` = 0.13 of a full
  line's density) was chosen by looking at such resized photos and measuring them: after JPEG and a
  bilinear resize to 128x128 it darkens the strip's green channel by a median 13 levels (10th
  percentile 9, worst of 80 photos 4.6) against a strip noise of about 1.5 levels; at 96 px by 11
  (p10 7, worst 3.4); at 64 px the line is under a pixel wide and hard to see. A third of positives
  have T between FAINT_T and 0.3: the realistic hard cases.
- The photo: the cassette stands roughly upright (its long axis spans 40-80% of the image height,
  i.e. 40-80% of the short side in landscape photos), turned up to 25 degrees and upside down one
  time in ten, seen in true perspective (the plane tilted up to ~18 degrees about both axes at a
  random camera distance), on a table texture (wood, laminate, tablecloth, stone, a sheet of paper)
  with clutter (papers with text or red ruled lines, the kit's box, foil pouch, pens, swab, tube,
  coins, cables, random shapes). It casts a soft shadow; the scene gets lighting gradients, a
  vignette, a lamp spot, a hand/phone shadow, a white-balance cast and exposure, then defocus or
  motion blur, sensor noise (luminance and chroma), a soft-shouldered tone curve (phones compress
  highlights instead of clipping, which keeps a faint line on a white strip alive), and JPEG
  compression at quality 60-95. Photo sizes are the phones' 4:3 and 16:9 sizes from 640x480 to
  1600x1200, portrait or landscape.
- `nuisance` (0..1) scales every nuisance; 0 gives a clean, upright, evenly lit, sharp photo, which
  the tests use to check that the pixels really encode the label (`render_cassette_with_geometry`
  returns where the window and lines landed).
- Boxes for detection (`generate_cassettes(..., boxes=True)` writes `boxes.manifest`, a SageMaker Ground
  Truth object-detection manifest): `cassette` (the body), `window` (the result window's opening) and
  `well` (the sample well's hole, without its rim). Each is the axis-aligned box of the part's outline
  (the body's rounded corners, the well's ellipse, sampled) carried through the photo's homography,
  clipped to the photo, edges rounded to whole pixels; measured against the drawn pixels, edges are
  within 3 px under full nuisance (tests/test_synthetic_boxes.py). Photos carry no EXIF orientation, so
  the stored frame is the displayed frame. Computing boxes draws nothing from the rng: the photos are
  the same with or without them.
- User readings (`generate_cassettes(..., user_readings=RATE)`): what each photo's user reported, wrong the ways
  people are: a faint T line read negative (weight FAINT_MISS x faintness squared), an invalid cassette read by its
  T line alone (INVALID_BY_T: positive with a T line, negative without), a plain slip to any other label (SLIP);
  one factor solved per dataset scales the weights so that the mean P(wrong) over its photos is RATE. At RATE 0.4,
  P(reported | true) in LABELS order (positive, negative, invalid), over 300,000 strength draws:
      a third of each:  positive 0.685 0.270 0.044 (T < 0.3 read negative 0.48, stronger 0.16);
                        negative 0.044 0.911 0.044;  invalid 0.398 0.399 0.203
      the default mix:  positive 0.195 0.670 0.135 (T < 0.3 read negative 0.91, stronger 0.54);
                        negative 0.174 0.651 0.174;  invalid 0.504 0.496 0 (always misread: capped at 1)
  (90% negatives leave the mechanisms little to work on: 40% wrong there is mostly slips, and most positives and
  every invalid are read wrong.) The readings are a Ground Truth manifest (READINGS_FILE) beside the folders,
  which stay the truth; TRUTH_FILE and READINGS_README (the realised and the model's noise matrix) are for scoring.
  They are drawn from `np.random.SeedSequence([seed, 2])`, so the photos are the same with or without them.
- Reproducible: image i of a dataset is drawn from `np.random.SeedSequence([seed, 1, i])`, so
  generation can run in parallel and the same seed gives byte-identical JPEGs (on the same numpy,
  Pillow and libjpeg; other versions may differ in the last bits).
"""

from __future__ import annotations

import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from edgelabels import atomic
from edgelabels.data.dataset import Box
from edgelabels.errors import UserError

LABELS = ("positive", "negative", "invalid")
# The real problem's mix: most home tests are negative; invalid ones are rare. Sums to 1.
DEFAULT_MIX = {"negative": 0.90, "positive": 0.07, "invalid": 0.03}
# (width, height) of landscape phone photos; each is also drawn in portrait. Weighted to the smaller
# ones, which are what apps upload and what keeps the demo fast.
PHONE_SIZES = ((640, 480), (800, 600), (1024, 768), (1280, 960), (1600, 1200), (1280, 720), (960, 540))
MIN_SIDE = 64  # px: the smallest photo side drawn (the cassette's parts need a few pixels each)
PHONE_SIZE_WEIGHTS = (0.22, 0.22, 0.18, 0.1, 0.08, 0.1, 0.1)
FAINT_T = 0.13  # faintest test-line density: still visible to a careful eye at 96-128 px
MARKER_FILE = "cassettes.json"  # written beside the label folders: what was generated, with which seed
BOX_LABELS = ("cassette", "window", "well")  # the detection labels; class_id = index
BOXES_FILE = "boxes.manifest"  # the Ground Truth object-detection manifest written with boxes=True
PHOTOS_FILE = "photos.csv"  # one row per photo: result, C and T line densities, rotation (degrees)
# creation-date of every manifest line: fixed (the day this format was written), not the clock, so that the
# same seed gives the same manifest bytes, as it gives the same JPEG bytes
BOXES_CREATION_DATE = "2026-12-02T00:00:00"

_LINE_RGB = np.array([0.70, 0.16, 0.42])  # transmittance of a full-strength gold line (red-purple)


@dataclass(frozen=True)
class CassetteGeometry:
    """Where the cassette landed in the photo (pixel coordinates) and what its lines are."""

    size: tuple[int, int]
    result: str
    corners: tuple  # body corners: far-end left, far-end right, well-end right, well-end left
    window: tuple  # result window corners, same order
    c_line: tuple  # endpoints of the C line's centre (across the strip)
    t_line: tuple  # endpoints of the T line's centre
    well: tuple  # centre of the sample well (flow runs from here: T is the line nearer to it)
    line_width: float  # line thickness in photo pixels (about)
    c_strength: float  # 0 = no line, 1 = full density
    t_strength: float
    rotation: float  # degrees, including 180 when upside down
    jpeg_quality: int
    # Box(label, left, top, width, height) of the cassette, its window and its well: whole pixels of the
    # photo (which has no EXIF orientation, so this is also the displayed frame), in BOX_LABELS order
    boxes: tuple = ()


# ---------------------------------------------------------------------------------------------
# Small geometry and noise helpers


def _homography(src, dst) -> np.ndarray:
    """3x3 matrix mapping the 4 points `src` onto `dst`."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src, dst):
        rows += [[x, y, 1, 0, 0, 0, -u * x, -u * y], [0, 0, 0, x, y, 1, -v * x, -v * y]]
        rhs += [u, v]
    h = np.linalg.solve(np.asarray(rows, float), np.asarray(rhs, float))
    return np.append(h, 1.0).reshape(3, 3)


def _apply(h: np.ndarray, points) -> np.ndarray:
    p = np.c_[np.asarray(points, float), np.ones(len(points))] @ h.T
    return p[:, :2] / p[:, 2:]


def _rotated_rect(cx, cy, w, h, angle):
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in ((-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2))]


def _rounded_rect_outline(x0, y0, x1, y1, radius, steps=16) -> list[tuple[float, float]]:
    """Points on the outline of a rectangle with rounded corners (its four quarter arcs, sampled)."""
    r = max(0.0, min(radius, (x1 - x0) / 2, (y1 - y0) / 2))
    points = []
    for cx, cy, start in ((x1 - r, y0 + r, -90), (x1 - r, y1 - r, 0), (x0 + r, y1 - r, 90), (x0 + r, y0 + r, 180)):
        for a in np.radians(np.linspace(start, start + 90, steps)):
            points.append((cx + r * math.cos(a), cy + r * math.sin(a)))
    return points


def _ellipse_outline(cx, cy, rx, ry, steps=64) -> list[tuple[float, float]]:
    a = np.linspace(0, 2 * np.pi, steps, endpoint=False)
    return list(zip(cx + rx * np.cos(a), cy + ry * np.sin(a)))


def _smooth_noise(rng, size, cells=(6, 5)) -> np.ndarray:
    """Low-frequency noise in 0..1 of shape (size[1], size[0]): a coarse random grid, resized bicubic."""
    grid = Image.fromarray((rng.random((cells[1], cells[0])) * 255).astype(np.uint8))
    return np.asarray(grid.resize(size, Image.Resampling.BICUBIC), np.float32) / 255.0


def _upscale(small: Image.Image, size) -> Image.Image:
    """Smooth low-resolution content to full size cheaply: bilinear to half size, then pixel doubling
    (a bilinear resize straight to full size costs 3-5x more, and the 2x2 steps vanish under noise and JPEG)."""
    half = small.resize((max(1, size[0] // 2), max(1, size[1] // 2)), Image.Resampling.BILINEAR)
    return half.resize(size, Image.Resampling.NEAREST)


def _shade(rgb, factor):
    return tuple(int(max(0, min(255, c * factor))) for c in rgb)


# ---------------------------------------------------------------------------------------------
# The table and the clutter on it


def _table(rng, size) -> Image.Image:
    """A table-like texture at full size, computed at 1/4 resolution (backgrounds are out of focus anyway)."""
    w, h = size
    tw, th = max(8, w // 4), max(8, h // 4)
    kind = rng.choice(["wood", "laminate", "cloth", "stone", "paper"], p=[0.35, 0.2, 0.15, 0.15, 0.15])
    y, x = np.mgrid[0:th, 0:tw].astype(np.float32)
    mottle = _smooth_noise(rng, (tw, th), (5, 4))
    if kind == "wood":
        base = np.array(rng.choice([(176, 124, 78), (140, 92, 55), (205, 165, 120), (95, 62, 40), (190, 150, 105)]), np.float32)
        along, across = (x, y) if rng.random() < 0.5 else (y, x)
        warp = _smooth_noise(rng, (tw, th), (3, 8)) * rng.uniform(6, 20)
        period = rng.uniform(3, 9)
        grain = 0.5 + 0.5 * np.sin(2 * np.pi * (across + warp) / period)
        streaks = rng.random(int(across.max()) + 1).astype(np.float32)[across.astype(int)]
        plank = np.where((across.astype(int) % max(8, int(rng.uniform(0.25, 0.6) * across.max()))) < 1, 0.7, 1.0)
        value = (0.82 + 0.12 * grain ** 3 + 0.08 * streaks + 0.08 * mottle) * plank
        image = value[..., None] * base
    elif kind == "cloth":
        c1 = np.array(rng.integers(60, 250, 3), np.float32)
        c1 = c1 * 0.7 + c1.mean() * 0.3  # dyed cloth, not pure pigment
        c2 = np.array(rng.integers(190, 255, 3), np.float32)
        period = rng.uniform(6, 20)
        checks = ((x // period + y // period) % 2) if rng.random() < 0.6 else ((x // period) % 2)
        weave = 0.94 + 0.06 * rng.random((th, tw)).astype(np.float32)
        image = np.where(checks[..., None] > 0, c1, c2) * (weave * (0.9 + 0.1 * mottle))[..., None]
    elif kind == "stone":
        base = np.array(rng.integers(90, 220, 3), np.float32)
        specks = rng.random((th, tw)).astype(np.float32)
        speck = np.where(specks > 0.96, 0.6, np.where(specks < 0.04, 1.25, 1.0))
        image = base * ((0.9 + 0.15 * mottle) * speck)[..., None]
    else:  # plain laminate, or a white sheet / paper towel under the test
        base = np.array(rng.integers(200, 250, 3) if kind == "paper" else rng.integers(60, 235, 3), np.float32)
        base = base * 0.5 + base.mean() * 0.5  # real tables are muted, not poster colours
        image = base * (0.92 + 0.1 * mottle + 0.02 * rng.random((th, tw)))[..., None]
    texture = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    return _upscale(texture, size)


def _pseudo_text(draw, rng, x0, y0, x1, y1, line_h, colour, angle=0.0, origin=(0, 0)):
    """Rows of word-like blocks filling a box; rotated about `origin` by `angle` (radians)."""
    c, s = math.cos(angle), math.sin(angle)
    ox, oy = origin

    def rot(px, py):
        return (ox + px * c - py * s, oy + px * s + py * c)

    y = y0
    while y + line_h <= y1:
        x = x0 + rng.uniform(0, 2) * line_h
        end = x1 - rng.uniform(0, 0.4) * (x1 - x0)
        while x < end:
            word = rng.uniform(1.5, 6) * line_h
            x2 = min(x + word, end)
            draw.polygon([rot(x, y), rot(x2, y), rot(x2, y + line_h * 0.7), rot(x, y + line_h * 0.7)], fill=colour)
            x = x2 + line_h * 0.8
        y += line_h * rng.uniform(1.6, 2.2)


def _clutter(draw, rng, size, count):
    """Everyday things on the table: papers, the kit's box and pouch, pens, swab, tube, coins, cables, shapes."""
    w, h = size
    s = min(w, h)
    for _ in range(count):
        kind = rng.choice(["paper", "ruled", "box", "pouch", "pen", "swab", "tube", "coin", "cable", "shape"],
                          p=[0.14, 0.08, 0.12, 0.08, 0.14, 0.08, 0.08, 0.1, 0.08, 0.1])
        cx, cy = rng.uniform(-0.1, 1.1) * w, rng.uniform(-0.1, 1.1) * h
        angle = rng.uniform(0, math.pi)
        if kind in ("paper", "ruled", "box", "pouch"):
            bw, bh = rng.uniform(0.3, 0.9) * s, rng.uniform(0.3, 0.9) * s
            colour = {"paper": tuple(rng.integers(225, 256, 3)), "ruled": tuple(rng.integers(230, 256, 3)),
                      "box": tuple(rng.integers(40, 256, 3)), "pouch": tuple([int(rng.integers(150, 215))] * 3)}[kind]
            corners = _rotated_rect(cx, cy, bw, bh, angle)
            draw.polygon([(x + 0.01 * s, y + 0.015 * s) for x, y in corners], fill=_shade(colour, 0.55))  # contact shadow
            draw.polygon(corners, fill=colour)
            if kind == "paper" or (kind == "box" and rng.random() < 0.7):
                ink = tuple(rng.integers(40, 130, 3)) if kind == "paper" else tuple(rng.integers(0, 256, 3))
                line_h = rng.uniform(0.006, 0.014) * s
                _pseudo_text(draw, rng, -bw / 2 + line_h * 2, -bh / 2 + line_h * 2, bw / 2 - line_h * 2, bh / 2 - line_h * 2,
                             line_h, ink, angle, (cx, cy))
            elif kind == "ruled":  # red/pink ruled lines: lines that are not test lines
                gap = rng.uniform(0.02, 0.05) * s
                ink = (int(rng.integers(190, 240)), int(rng.integers(60, 150)), int(rng.integers(90, 170)))
                for k in range(1, int(bh / gap)):
                    a, b = _rotated_rect(cx, cy, bw, bh, angle)[:2]
                    off = k * gap
                    p0 = (a[0] - off * math.sin(angle), a[1] + off * math.cos(angle))
                    p1 = (b[0] - off * math.sin(angle), b[1] + off * math.cos(angle))
                    draw.line([p0, p1], fill=ink, width=max(1, int(0.003 * s)))
            elif kind == "pouch":
                draw.polygon(_rotated_rect(cx, cy, bw * 0.9, bh * 0.15, angle), fill=_shade(colour, 1.2))
        elif kind in ("pen", "swab", "tube"):
            length = rng.uniform(0.3, 0.7) * s if kind != "tube" else rng.uniform(0.15, 0.25) * s
            width = {"pen": 0.025, "swab": 0.008, "tube": 0.05}[kind] * s
            colour = {"pen": tuple(rng.integers(0, 256, 3)), "swab": (235, 235, 228), "tube": (220, 225, 228)}[kind]
            dx, dy = math.cos(angle) * length / 2, math.sin(angle) * length / 2
            draw.line([(cx - dx + 0.01 * s, cy - dy + 0.012 * s), (cx + dx + 0.01 * s, cy + dy + 0.012 * s)],
                      fill=(40, 40, 40), width=max(1, int(width)))
            draw.line([(cx - dx, cy - dy), (cx + dx, cy + dy)], fill=colour, width=max(1, int(width)))
            if kind == "swab":  # the cotton tip
                tip = width * 1.6
                draw.ellipse([cx + dx - tip, cy + dy - tip, cx + dx + tip, cy + dy + tip], fill=(245, 245, 240))
            else:  # cap or lid: a darker end
                draw.line([(cx + dx * 0.7, cy + dy * 0.7), (cx + dx, cy + dy)], fill=_shade(colour, 0.6), width=max(1, int(width * 1.1)))
        elif kind == "coin":
            r = rng.uniform(0.03, 0.07) * s
            metal = tuple(int(v) for v in rng.choice([(200, 170, 90), (180, 180, 175), (170, 110, 70)]))
            draw.ellipse([cx - r + 0.01 * s, cy - r + 0.01 * s, cx + r + 0.01 * s, cy + r + 0.01 * s], fill=_shade(metal, 0.4))
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=metal, outline=_shade(metal, 0.7), width=max(1, int(r / 8)))
        elif kind == "cable":
            points, x, y, a, turn = [], cx, cy, angle, 0.0
            for _ in range(30):  # a cable bends smoothly: its turning rate drifts
                points.append((x, y))
                turn = 0.8 * turn + rng.normal(0, 0.08)
                a += turn
                x, y = x + math.cos(a) * 0.03 * s, y + math.sin(a) * 0.03 * s
            draw.line(points, fill=tuple(rng.choice([(30, 30, 30), (235, 235, 235), (40, 40, 60)])),
                      width=max(1, int(0.012 * s)), joint="curve")
        else:  # a random shape in a random colour
            r = rng.uniform(0.05, 0.25) * s
            k = int(rng.integers(3, 9))
            pts = [(cx + r * rng.uniform(0.5, 1) * math.cos(angle + 2 * math.pi * i / k),
                    cy + r * rng.uniform(0.5, 1) * math.sin(angle + 2 * math.pi * i / k)) for i in range(k)]
            draw.polygon(pts, fill=tuple(rng.integers(0, 256, 3)))


# ---------------------------------------------------------------------------------------------
# The cassette, drawn flat in its own frame


def _letter(draw, ch, cx, cy, hgt, colour):
    """A printed C, T or S drawn with strokes (no font files: identical on every install)."""
    stroke = max(1, int(round(hgt * 0.17)))
    half = hgt / 2
    if ch == "C":
        draw.arc([cx - half * 0.85, cy - half, cx + half * 0.85, cy + half], 45, 315, fill=colour, width=stroke)
    elif ch == "T":
        draw.rectangle([cx - half * 0.75, cy - half, cx + half * 0.75, cy - half + stroke], fill=colour)
        draw.rectangle([cx - stroke / 2, cy - half, cx + stroke / 2, cy + half], fill=colour)
    else:  # S: two bowls
        q = hgt / 4
        draw.arc([cx - q * 1.1, cy - 2 * q, cx + q * 1.1, cy], 90, 330, fill=colour, width=stroke)
        draw.arc([cx - q * 1.1, cy, cx + q * 1.1, cy + 2 * q], 270, 150 + 360, fill=colour, width=stroke)


def _draw_strip(canvas: Image.Image, rng, box, c_pos, t_pos, line_w, c_strength, t_strength):
    """The nitrocellulose strip inside the window, with its lines as absorption."""
    x0, y0, x1, y1 = box
    hs, ws = y1 - y0, x1 - x0
    y = np.arange(hs, dtype=np.float32)[:, None]
    x = np.linspace(-1, 1, ws, dtype=np.float32)[None, :]
    white = np.array(rng.uniform([240, 236, 232], [252, 250, 248]), np.float32)
    # Residual gold gives the strip a faint pink haze, stronger toward the well end (bottom here).
    haze = rng.uniform(0, 0.05) * (y / hs) ** 2
    absorb = haze[..., None] * (1 - _LINE_RGB)[None, None, :]
    for pos, strength in ((c_pos, c_strength), (t_pos, t_strength)):
        # Drawn even at strength 0 so that the rng stream, hence the rest of the photo, is the same.
        centre = pos * hs
        profile = np.exp(-0.5 * (np.abs(y - centre) / (line_w * 0.5)) ** 4)  # flat top, soft edges
        along = 1 - rng.uniform(0, 0.25) * _smooth_noise(rng, (ws, 1), (4, 1)) - 0.3 * np.abs(x) ** 6
        absorb = absorb + (strength * profile * along)[..., None] * (1 - _LINE_RGB)[None, None, :]
    pixels = white[None, None, :] * np.clip(1 - absorb, 0, 1)
    pixels = pixels * (1 + 0.015 * rng.standard_normal((hs, ws, 1)).astype(np.float32))  # paper fibre texture
    canvas.paste(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)), (x0, y0))


def _draw_cassette(rng, length: int, c_strength: float, t_strength: float):
    """The cassette, well at the bottom: (RGBA image, dict of key points in its pixel frame, line width)."""
    aspect = rng.uniform(0.28, 0.34)
    cw, ch = max(12, int(round(length * aspect))), max(40, length)
    body = tuple(int(v) for v in rng.choice([(244, 244, 240), (238, 238, 236), (246, 245, 238), (230, 232, 234)]))
    if rng.random() < 0.1:
        body = tuple(int(v) for v in rng.choice([(222, 226, 232), (220, 232, 225), (235, 225, 228)]))
    image = Image.new("RGB", (cw, ch), body)
    draw = ImageDraw.Draw(image)
    radius = cw * rng.uniform(0.12, 0.25)
    rim = max(1, int(cw * 0.04))
    draw.rounded_rectangle([rim, rim, cw - 1 - rim, ch - 1 - rim], radius=max(1, radius - rim),
                           outline=_shade(body, 0.86), width=max(1, int(cw * 0.012)))
    draw.rounded_rectangle([rim + 2, rim + 2, cw - 3 - rim, ch - 3 - rim], radius=max(1, radius - rim - 2),
                           outline=_shade(body, 1.03), width=1)

    # Result window, strip and lines
    ww = cw * rng.uniform(0.26, 0.32)
    wy0, wy1 = ch * rng.uniform(0.26, 0.30), ch * rng.uniform(0.54, 0.58)
    wx0 = cw / 2 - ww / 2 + cw * rng.uniform(-0.02, 0.02)
    bevel = max(1, int(cw * 0.03))
    draw.rounded_rectangle([wx0 - bevel, wy0 - bevel, wx0 + ww + bevel, wy1 + bevel], radius=bevel,
                           fill=_shade(body, 0.8))
    draw.rectangle([wx0, wy0, wx0 + ww, wy1], fill=_shade(body, 0.62))
    strip = (int(wx0 + 1), int(wy0 + 1), int(wx0 + ww), int(wy1))
    c_pos, t_pos = rng.uniform(0.28, 0.36), rng.uniform(0.62, 0.70)
    line_w = length * rng.uniform(0.018, 0.024)
    _draw_strip(image, rng, strip, c_pos, t_pos, line_w, c_strength, t_strength)
    # Inner shadow of the recess along the window's upper and left edges
    draw.line([(wx0, wy0), (wx0 + ww, wy0)], fill=_shade(body, 0.55), width=max(1, bevel // 2))
    draw.line([(wx0, wy0), (wx0, wy1)], fill=_shade(body, 0.6), width=max(1, bevel // 2))

    # Printed C and T beside the window (usually left), and the well's S
    ink = tuple(int(v) for v in rng.choice([(40, 40, 45), (60, 60, 65), (30, 60, 140), (25, 25, 25)]))
    letter_h = length * rng.uniform(0.03, 0.042)
    side = -1 if rng.random() < 0.75 else 1
    lx = wx0 + ww / 2 + side * (ww / 2 + bevel + letter_h * 0.9)
    hs = strip[3] - strip[1]
    c_y, t_y = strip[1] + c_pos * hs, strip[1] + t_pos * hs
    _letter(draw, "C", lx, c_y, letter_h, ink)
    _letter(draw, "T", lx, t_y, letter_h, ink)

    # Sample well: a recessed round (or oval) hole with the wet sample pad inside
    wy = ch * rng.uniform(0.74, 0.80)
    r = cw * rng.uniform(0.27, 0.33)
    ry = r * (1.0 if rng.random() < 0.6 else rng.uniform(1.1, 1.35))
    draw.ellipse([cw / 2 - r * 1.18, wy - ry * 1.18, cw / 2 + r * 1.18, wy + ry * 1.18], fill=_shade(body, 0.83))
    draw.ellipse([cw / 2 - r, wy - ry, cw / 2 + r, wy + ry], fill=_shade(body, 0.55))
    pad = tuple(int(v) for v in rng.uniform([205, 195, 185], [235, 228, 222]))
    draw.ellipse([cw / 2 - r * 0.82, wy - ry * 0.72, cw / 2 + r * 0.88, wy + ry * 0.9], fill=pad)
    _letter(draw, "S", cw / 2 + side * (r * 1.18 + letter_h * 0.7), wy - ry, letter_h, ink)

    # Printing at the far end: brand pseudo-text, a coloured band, grip ridges, a sticker, a note
    top0, top1 = ch * 0.05, wy0 - bevel - letter_h * 0.6
    if rng.random() < 0.35:
        band = tuple(int(v) for v in rng.choice([(30, 90, 170), (20, 140, 110), (120, 50, 140), (210, 60, 50)]))
        draw.rounded_rectangle([cw * 0.15, top0 + 0.02 * ch, cw * 0.85, top0 + 0.07 * ch], radius=cw * 0.04, fill=band)
        _pseudo_text(draw, rng, cw * 0.2, top0 + 0.03 * ch, cw * 0.8, top0 + 0.06 * ch, 0.012 * ch, (245, 245, 245))
        top0 += 0.09 * ch
    _pseudo_text(draw, rng, cw * 0.2, top0 + 0.01 * ch, cw * 0.8, top1, length * rng.uniform(0.007, 0.011),
                 _shade(ink, rng.uniform(1.0, 2.2)))
    if rng.random() < 0.5:  # moulded grip ridges
        for k in range(int(rng.integers(3, 6))):
            gy = ch * 0.9 + k * ch * 0.016
            if gy < ch - radius * 0.6:
                draw.line([(cw * 0.3, gy), (cw * 0.7, gy)], fill=_shade(body, 0.85), width=max(1, int(ch * 0.004)))
    if rng.random() < 0.15:  # lot/barcode sticker
        sx0, sy0 = cw * 0.2, ch * 0.07
        draw.rectangle([sx0, sy0, cw * 0.8, sy0 + ch * 0.09], fill=(250, 250, 245))
        x = sx0 + cw * 0.04
        while x < cw * 0.76:
            bar = rng.uniform(0.005, 0.02) * cw
            draw.rectangle([x, sy0 + ch * 0.01, x + bar, sy0 + ch * 0.07], fill=(20, 20, 20))
            x += bar + rng.uniform(0.01, 0.03) * cw
    if rng.random() < 0.2:  # handwritten name or time in marker
        pen = tuple(int(v) for v in rng.choice([(20, 40, 140), (20, 20, 20), (30, 30, 90)]))
        x, y = cw * 0.2, ch * rng.uniform(0.1, 0.2)
        pts = [(x + k * cw * 0.05, y + rng.normal(0, 0.012 * ch)) for k in range(12)]
        draw.line(pts, fill=pen, width=max(1, int(ch * 0.005)), joint="curve")

    # Moulded body: darker toward the long edges (they curve away from the light)
    across = np.abs(np.linspace(-1, 1, cw, dtype=np.float32))
    shade = 1 - rng.uniform(0.08, 0.2) * np.clip((across - 0.7) / 0.3, 0, 1) ** 2
    shade_img = Image.fromarray((shade * 255).astype(np.uint8)[None, :]).resize((cw, ch), Image.Resampling.NEAREST)
    image = ImageChops.multiply(image, Image.merge("RGB", (shade_img,) * 3))

    alpha = Image.new("L", (cw, ch), 0)
    ImageDraw.Draw(alpha).rounded_rectangle([0, 0, cw - 1, ch - 1], radius=radius, fill=255)
    image.putalpha(alpha)
    # Outlines of the parts that get boxes, in continuous coordinates (pixel i spans [i, i + 1]): a shape
    # Pillow draws within [x0, x1] covers pixels x0..x1, hence the +1 on the far sides. Only the outlines,
    # not the corners, give tight boxes: a turned cassette's rounded corners do not reach its corner points.
    outlines = {
        "cassette": _rounded_rect_outline(0, 0, cw, ch, radius),
        "window": [(wx0, wy0), (wx0 + ww + 1, wy0), (wx0 + ww + 1, wy1 + 1), (wx0, wy1 + 1)],
        "well": _ellipse_outline(cw / 2 + 0.5, wy + 0.5, r + 0.5, ry + 0.5),  # the hole, without its moulded rim
    }
    points = {
        "outlines": outlines,
        "corners": [(0, 0), (cw, 0), (cw, ch), (0, ch)],
        "window": [(wx0, wy0), (wx0 + ww, wy0), (wx0 + ww, wy1), (wx0, wy1)],
        "c_line": [(strip[0], c_y), (strip[2], c_y)],
        "t_line": [(strip[0], t_y), (strip[2], t_y)],
        "well": [(cw / 2, wy)],
    }
    return image, points, line_w


# ---------------------------------------------------------------------------------------------
# The photo


def _strengths(result: str, rng, t_strength):
    """(C density, T density) for a result; T of positives is often faint, as in real positives."""
    c = rng.uniform(0.45, 1.0)
    if result == "positive":
        t = rng.uniform(FAINT_T, 0.3) if rng.random() < 0.35 else rng.uniform(0.3, 1.0)
    elif result == "negative":
        t = 0.0
    else:  # invalid: the control line failed; a T line may still show
        c = 0.0
        t = rng.uniform(0.15, 1.0) if rng.random() < 0.5 else 0.0
    if t_strength is not None:
        if result == "negative" and t_strength > 0:
            raise UserError("synthetic: a negative cassette has no T line (t_strength must be 0 or None)")
        t = float(t_strength)
    return float(c), float(t)


def _lighting(rng, size, nuisance):
    """Low-resolution light map (RGB, 0..1) with the gain that restores its peak: gradients, vignette,
    a lamp, a hand/phone shadow and a white-balance cast."""
    w, h = size
    lw, lh = max(4, w // 16), max(4, h // 16)
    y, x = np.mgrid[0:lh, 0:lw].astype(np.float32)
    x, y = x / lw - 0.5, y / lh - 0.5
    phi = rng.uniform(0, 2 * np.pi)
    light = 1 + nuisance * rng.uniform(0, 0.5) * (x * math.cos(phi) + y * math.sin(phi))
    light *= 1 - nuisance * rng.uniform(0, 0.5) * (x ** 2 + y ** 2)
    sx, sy, sr = rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5), rng.uniform(0.2, 0.6)
    light += nuisance * rng.uniform(0, 0.35) * np.exp(-((x - sx) ** 2 + (y - sy) ** 2) / sr ** 2)
    if rng.random() < 0.35 * nuisance:  # something between the lamp and the table
        shadow = Image.new("L", (lw, lh), 0)
        cx, cy = rng.choice([-0.1, 1.1]) * lw, rng.uniform(0, 1) * lh
        if rng.random() < 0.5:
            cx, cy = cy / lh * lw, rng.choice([-0.1, 1.1]) * lh
        r = rng.uniform(0.3, 0.7) * max(lw, lh)
        ImageDraw.Draw(shadow).ellipse([cx - r, cy - r * 0.6, cx + r, cy + r * 0.6], fill=255)
        shadow = shadow.filter(ImageFilter.GaussianBlur(max(lw, lh) * rng.uniform(0.02, 0.08)))
        light *= 1 - rng.uniform(0.25, 0.5) * np.asarray(shadow, np.float32) / 255
    cast = np.array([1 + nuisance * rng.uniform(-0.12, 0.15), 1.0, 1 + nuisance * rng.uniform(-0.15, 0.12)], np.float32)
    # Chroma noise of a phone's denoised sensor: low-frequency colour blotches, folded in here for speed
    blotches = 1 + nuisance * rng.uniform(0, 0.03) * rng.standard_normal((lh, lw, 3)).astype(np.float32)
    rgb = light[..., None] * cast * blotches
    peak = float(rgb.max())
    small = Image.fromarray(np.clip(rgb / peak * 255, 0, 255).astype(np.uint8))
    return _upscale(small, size), peak


def _tone_lut(gain: float) -> list[int]:
    """Exposure gain then a soft shoulder (phones compress highlights rather than clip them)."""
    v = np.arange(256, dtype=np.float64) / 255 * gain
    knee = 0.75
    out = np.where(v < knee, v, knee + (1 - knee) * np.tanh((v - knee) / (1 - knee)))
    return list(np.clip(np.round(out * 255), 0, 255).astype(int)) * 3


def render_cassette_with_geometry(result: str, rng: np.random.Generator, size=None, *, nuisance: float = 1.0,
                                  t_strength: float | None = None) -> tuple[Image.Image, CassetteGeometry]:
    """A phone photo (RGB PIL image) of a cassette showing `result`, and where its parts landed.

    size: (width, height), or None for a random phone size and orientation. nuisance: 0 (clean,
    upright, evenly lit, sharp) to 1 (the full range). t_strength: force the T line's density.
    """
    if result not in LABELS:
        raise UserError(f"synthetic: unknown result {result!r} (choose from {', '.join(LABELS)})")
    if not 0 <= nuisance <= 1:
        raise UserError(f"synthetic: nuisance must be between 0 and 1, not {nuisance}")
    if size is None:
        w, h = PHONE_SIZES[rng.choice(len(PHONE_SIZES), p=PHONE_SIZE_WEIGHTS)]
        size = (w, h) if rng.random() < 0.45 else (h, w)
    w, h = size = (int(size[0]), int(size[1]))
    if w < MIN_SIDE or h < MIN_SIDE:
        raise UserError(f"synthetic: image size must be at least {MIN_SIDE}x{MIN_SIDE}, not {w}x{h}")
    c_strength, t_strength = _strengths(result, rng, t_strength)

    # The table, the clutter, the cassette drawn flat
    photo = _table(rng, size)
    _clutter(ImageDraw.Draw(photo), rng, size, int(rng.integers(0 if nuisance < 0.5 else 1, 2 + int(6 * nuisance) + 1)))
    length = int(h * rng.uniform(0.4, 0.8) if nuisance > 0 else h * 0.6)
    cassette, points, line_w = _draw_cassette(rng, length, c_strength, t_strength)
    cw, ch = cassette.size

    # Pose: in-plane turn (sometimes upside down), tilt of the plane, camera distance; true perspective
    rotation = rng.uniform(-25, 25) * nuisance + (180 if rng.random() < 0.1 * (nuisance > 0) else 0)
    tilt_x, tilt_y = np.radians(rng.uniform(-18, 18, 2) * nuisance)
    distance = rng.uniform(2.5, 5.0)
    corners = np.array(points["corners"], float)
    local = (corners - [cw / 2, ch / 2]) / ch  # cassette units: length 1
    th = math.radians(rotation)
    rz = np.array([[math.cos(th), -math.sin(th), 0], [math.sin(th), math.cos(th), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, math.cos(tilt_x), -math.sin(tilt_x)], [0, math.sin(tilt_x), math.cos(tilt_x)]])
    ry = np.array([[math.cos(tilt_y), 0, math.sin(tilt_y)], [0, 1, 0], [-math.sin(tilt_y), 0, math.cos(tilt_y)]])
    p3 = np.c_[local, np.zeros(4)] @ (ry @ rx @ rz).T
    projected = p3[:, :2] * (distance / (distance + p3[:, 2:])) * length
    margin = 0.04 * min(w, h)
    # A tall cassette turned 25 degrees in a narrow portrait photo would not fit: shrink it to fit whole
    fit = min(1.0, *((np.array([w, h]) - 2 * margin) / (projected.max(0) - projected.min(0))))
    projected *= fit
    lo, hi = projected.min(0), projected.max(0)
    free_x, free_y = max(0.0, w - 2 * margin - (hi - lo)[0]), max(0.0, h - 2 * margin - (hi - lo)[1])
    offset = np.array([margin + rng.uniform(0, 1) * free_x, margin + rng.uniform(0, 1) * free_y]) - lo
    if nuisance == 0:
        offset = np.array([w / 2, h / 2]) - (lo + hi) / 2
    dst = projected + offset
    to_photo = _homography(corners, dst)

    # Soft shadow then the cassette, both only within the cassette's bounding box
    pad = int(0.08 * length) + 2
    bx0, by0 = np.floor(dst.min(0)).astype(int) - pad
    bx1, by1 = np.ceil(dst.max(0)).astype(int) + pad
    bx0, by0, bx1, by1 = max(0, bx0), max(0, by0), min(w, bx1), min(h, by1)
    box_w, box_h = bx1 - bx0, by1 - by0
    to_canvas = _homography(dst - [bx0, by0], corners)
    warped = cassette.transform((box_w, box_h), Image.Transform.PERSPECTIVE, tuple(to_canvas.flatten()[:8] / to_canvas[2, 2]),
                                Image.Resampling.BILINEAR)
    alpha = warped.getchannel("A")
    region = photo.crop((bx0, by0, bx1, by1))
    # A soft cast shadow toward a random side plus a tight contact shadow, computed at 1/4 size
    small = alpha.resize((max(1, box_w // 4), max(1, box_h // 4)), Image.Resampling.BILINEAR)
    light_dir, reach = rng.uniform(0, 2 * np.pi), rng.uniform(0.01, 0.05) * length / 4
    cast = ImageChops.offset(small.filter(ImageFilter.GaussianBlur(0.03 * length / 4)),
                             int(math.cos(light_dir) * reach), int(math.sin(light_dir) * reach))
    contact = small.filter(ImageFilter.GaussianBlur(max(0.5, 0.008 * length / 4)))
    darkness = rng.uniform(0.25, 0.5)
    shade = ImageChops.lighter(cast.point(lambda v: int(v * darkness)), contact.point(lambda v: int(v * 0.4)))
    shade = shade.resize((box_w, box_h), Image.Resampling.BILINEAR).point(lambda v: 255 - v)
    region = ImageChops.multiply(region, Image.merge("RGB", (shade,) * 3))
    region.paste(warped.convert("RGB"), (0, 0), alpha)
    photo.paste(region, (bx0, by0))

    # Light, optics, sensor, processing
    light, peak = _lighting(rng, size, nuisance)
    photo = ImageChops.multiply(photo, light)
    s = min(w, h)
    # Blur by averaging k x k (or k x 1) blocks and scaling back up: a box is closer to a defocus disc
    # than a Gaussian is, and this costs a fraction of Pillow's blur filters at photo sizes
    blur = rng.random()
    if blur < 0.3 * nuisance:  # defocus
        k = max(2, int(round(rng.uniform(1.5, 4.5) * s / 800)))
        photo = _upscale(photo.reduce(k), size)
    elif blur < 0.45 * nuisance:  # hand shake: blur along one axis
        k = max(2, int(round(rng.uniform(2.0, 6.0) * s / 800)))
        photo = _upscale(photo.reduce((k, 1) if rng.random() < 0.5 else (1, k)), size)
    exposure = rng.uniform(0.8, 1.08) if nuisance > 0 else 1.0
    if nuisance > 0:  # luminance noise (uniform, cheap to draw), stronger in dim photos
        spread = int(round(rng.uniform(1.5, 9.0) * nuisance / min(1.0, exposure * peak)))
        luma = Image.fromarray(rng.integers(128 - spread, 128 + spread + 1, (h, w), dtype=np.uint8))
        photo = ImageChops.add(photo, Image.merge("RGB", (luma,) * 3), 1.0, -128)
    photo = photo.point(_tone_lut(exposure * peak))

    def where(key):
        return tuple(map(tuple, np.round(_apply(to_photo, points[key]), 2).tolist()))

    def box(label):
        """The axis-aligned box of a part's projected outline, clipped to the photo, edges rounded to whole pixels."""
        outline = _apply(to_photo, points["outlines"][label])
        (x0, y0), (x1, y1) = np.clip(outline.min(0), 0, size), np.clip(outline.max(0), 0, size)
        x0, y0, x1, y1 = (math.floor(v + 0.5) for v in (x0, y0, x1, y1))
        return Box(label, x0, y0, x1 - x0, y1 - y0) if x1 > x0 and y1 > y0 else None

    scale = float(np.linalg.norm(dst[3] - dst[0]) / ch)  # photo px per cassette px along its length
    geometry = CassetteGeometry(
        size=size, result=result, corners=where("corners"), window=where("window"), c_line=where("c_line"),
        t_line=where("t_line"), well=where("well")[0], line_width=round(line_w * scale, 2), c_strength=round(c_strength, 4),
        t_strength=round(t_strength, 4), rotation=round(rotation, 2),
        jpeg_quality=int(95 - rng.uniform(0, 35) * nuisance),
        boxes=tuple(b for b in map(box, BOX_LABELS) if b is not None),
    )
    return photo, geometry


def render_cassette(result: str, rng: np.random.Generator, size=None, *, nuisance: float = 1.0,
                    t_strength: float | None = None) -> Image.Image:
    """A phone photo (RGB PIL image) of a lateral-flow cassette showing `result` (see the module docstring)."""
    return render_cassette_with_geometry(result, rng, size, nuisance=nuisance, t_strength=t_strength)[0]


def cassette_jpeg_with_geometry(result: str, seed: int, index: int, size=None,
                                nuisance: float = 1.0) -> tuple[bytes, CassetteGeometry]:
    """The JPEG bytes of image `index` of a dataset made with `seed` (reproducible on its own) and its geometry."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1, index]))
    photo, geometry = render_cassette_with_geometry(result, rng, size, nuisance=nuisance)
    buffer = io.BytesIO()
    # No EXIF is written (no orientation tag): the stored frame is the displayed one, the boxes' frame
    photo.save(buffer, "JPEG", quality=geometry.jpeg_quality, subsampling=2 if rng.random() < 0.8 else 0)
    return buffer.getvalue(), geometry


def cassette_jpeg(result: str, seed: int, index: int, size=None, nuisance: float = 1.0) -> bytes:
    """The JPEG bytes of image `index` of a dataset made with `seed`: reproducible on its own."""
    return cassette_jpeg_with_geometry(result, seed, index, size, nuisance)[0]


# ---------------------------------------------------------------------------------------------
# What users report: readings wrong in the ways people are wrong (the truth only in photos.csv and truth.csv)

READINGS_FILE = "user-readings.manifest"  # Ground Truth classification manifest: the USERS' readings as labels
TRUTH_FILE = "truth.csv"  # image, true result, reported result, T strength, the model's P(misread): for scoring only
READINGS_README = "README.md"  # the noise matrix: realised counts and the model's probabilities
READING_ATTRIBUTE = "user-reading"
READINGS_PHOTOS = "photos"  # with user readings, every photo lies here: no folder name tells its true result
# Relative weights of the ways a reading goes wrong. One factor, the carelessness k (solved per dataset), scales
# them all: a photo is misread with probability min(1, k * its weights' sum), the wrong labels shared as the weights.
SLIP = 1.0  # any photo: a plain slip, half to each other label (a mis-tap, another test's result typed in)
FAINT_MISS = 6.0  # a positive read negative at the faintest T (FAINT_T), times faintness squared: 0 at a full line
INVALID_BY_T = 8.0  # an invalid cassette read by its T line alone (no C is not noticed): positive with T, else negative


def reading_weights(results, t_strengths) -> np.ndarray:
    """(n, 3) weights of each wrong reading of each photo, columns in LABELS order, 0 on the true result."""
    results, t = np.asarray(results), np.asarray(t_strengths, float)
    rows = np.arange(len(results))
    weights = np.full((len(results), len(LABELS)), SLIP / 2)
    weights[rows, [LABELS.index(str(r)) for r in results]] = 0.0
    positive, negative, invalid = (LABELS.index(label) for label in ("positive", "negative", "invalid"))
    faintness = np.clip((1.0 - t) / (1.0 - FAINT_T), 0.0, 1.0)  # 1 at the faintest T drawn, 0 at a full line
    is_positive, is_invalid = results == "positive", results == "invalid"
    weights[is_positive, negative] += FAINT_MISS * faintness[is_positive] ** 2
    weights[is_invalid & (t > 0), positive] += INVALID_BY_T
    weights[is_invalid & (t <= 0), negative] += INVALID_BY_T
    return weights


def reading_probabilities(results, t_strengths, rate: float) -> tuple[np.ndarray, float]:
    """(n, 3) P(reported | photo) in LABELS order, and the carelessness k that makes the mean P(wrong) over these
    photos exactly `rate` (so the realised wrong share is `rate` on average, whatever the mix and line strengths)."""
    weights = reading_weights(results, t_strengths)
    total = weights.sum(1)  # > 0: every photo can be slipped on
    # mean(min(1, k * total)) rises with k from 0 to 1 (at k = 1 / min(total)): bisect for `rate`
    low, high = 0.0, 1.0 / total.min()
    for _ in range(100):
        k = (low + high) / 2
        low, high = (k, high) if np.minimum(1.0, k * total).mean() < rate else (low, k)
    k = 0.0 if rate == 0 else (low + high) / 2
    wrong = np.minimum(1.0, k * total)
    probabilities = weights * (wrong / total)[:, None]
    probabilities[np.arange(len(total)), [LABELS.index(str(r)) for r in results]] = 1.0 - wrong
    return probabilities, k


def draw_readings(probabilities: np.ndarray, rng: np.random.Generator) -> list[str]:
    """One reported label per photo, drawn from its row of P(reported | photo) with one uniform number each."""
    below = (rng.random(len(probabilities))[:, None] >= probabilities.cumsum(1)).sum(1)
    return [LABELS[i] for i in np.minimum(below, len(LABELS) - 1)]


def _reading_line(name: str, reported: str, job_name: str) -> str:
    """A Ground Truth classification line whose label is what the user reported."""
    return json.dumps({
        "source-ref": name,
        READING_ATTRIBUTE: LABELS.index(reported),
        f"{READING_ATTRIBUTE}-metadata": {
            # A person read it (human-annotated), unverified; Ground Truth requires a confidence and a user gives
            # none, so every line says 1 (the same for all: it tells an audit nothing)
            "class-name": reported, "confidence": 1, "type": "groundtruth/image-classification",
            "human-annotated": "yes", "creation-date": BOXES_CREATION_DATE, "job-name": job_name,
        },
    })


def _matrix_rows(table: np.ndarray, results, whole: bool) -> str:
    """Markdown rows, true result (rows) x reported (columns) plus the wrong share, of per-photo rows of `table`
    (one-hot readings summed as counts when `whole`; else probabilities averaged)."""
    rows = []
    for i, label in enumerate(LABELS):
        mine = np.asarray(results) == label
        if mine.any():
            share = table[mine].mean(0)
            cells = [str(int(c)) for c in table[mine].sum(0)] if whole else [f"{p:.3f}" for p in share]
            rows.append(f"| {label} ({int(mine.sum())}) | " + " | ".join(cells) + f" | {1 - share[i]:.3f} |")
    return "\n".join(rows)


def _readings_readme(results, reported, probabilities, k: float, rate: float, seed: int) -> str:
    truth = np.array([LABELS.index(str(r)) for r in results])
    counts = np.zeros((len(results), len(LABELS)))
    counts[np.arange(len(results)), [LABELS.index(r) for r in reported]] = 1
    wrong = int((truth != counts.argmax(1)).sum())
    header = "| true \\ reported | " + " | ".join(LABELS) + " | wrong |\n|---|" + "---|" * (len(LABELS) + 1)
    return f"""# User readings of these photos

`{READINGS_FILE}` is a Ground Truth classification manifest (attribute `{READING_ATTRIBUTE}`) whose label for each
photo is what its user reported.
Wrong: {wrong} of {len(results)} readings ({wrong / len(results):.1%}), at a rate of {rate} asked.
The photos lie in `{READINGS_PHOTOS}/` under names that say nothing of their result; `{PHOTOS_FILE}` and `{TRUTH_FILE}` hold
the TRUE result: use them for scoring only (a fair audit reads the manifest's labels and the pixels).

How a reading goes wrong (edgelabels.data.synthetic, drawn from its own random stream of seed {seed}, so the photos
are the same with or without readings): each wrong label gets a weight; a photo is misread with probability
min(1, k x the sum of its weights), shared among the wrong labels as the weights are; the carelessness
k = {k:.6f} makes the mean over these photos exactly {rate}.
- a plain slip, any photo: {SLIP / 2:g} to each other label;
- a faint T line read negative, positives only: {FAINT_MISS:g} x faintness squared, where faintness =
  (1 - T) / (1 - {FAINT_T}) is 1 at the faintest T drawn and 0 at a full line;
- an invalid cassette (no C line) read by its T line alone: {INVALID_BY_T:g} to positive when it has a T line, to
  negative when it has none.

## Realised readings: photos by true result (rows) and reported result (columns)

{header}
{_matrix_rows(counts, results, whole=True)}

## The model: P(reported | true), averaged over these photos

{header}
{_matrix_rows(probabilities, results, whole=False)}
"""


def _write_readings(folder: Path, names: list[str], results, t_strengths, rate: float, seed: int) -> dict:
    """Write the readings manifest, truth.csv and README.md into `folder`; return what the marker records."""
    probabilities, k = reading_probabilities(results, t_strengths, rate)
    reported = draw_readings(probabilities, np.random.default_rng(np.random.SeedSequence([seed, 2])))
    job_name = f"edgelabels-synth-cassettes-user-readings-seed-{seed}"
    atomic.write_text(folder / READINGS_FILE, "".join(_reading_line(name, r, job_name) + "\n"
                                                      for name, r in zip(names, reported)))
    misread = 1.0 - probabilities[np.arange(len(names)), [LABELS.index(str(r)) for r in results]]
    atomic.write_text(folder / TRUTH_FILE, "image,result,reported,t_strength,p_misread\n" + "".join(
        f"{name},{result},{r},{t},{p:.4f}\n" for name, result, r, t, p in zip(names, results, reported, t_strengths,
                                                                                misread)))
    atomic.write_text(folder / READINGS_README, _readings_readme(results, reported, probabilities, k, rate, seed))
    wrong = sum(str(a) != b for a, b in zip(results, reported))
    return {"rate": rate, "wrong": wrong, "carelessness": round(k, 6), "manifest": READINGS_FILE, "truth": TRUTH_FILE}


# ---------------------------------------------------------------------------------------------
# A dataset on disk


def label_counts(n: int, mix: dict[str, float]) -> dict[str, int]:
    """Exact counts per label for n images (largest remainder), so small datasets keep rare labels."""
    exact = {label: n * share for label, share in mix.items()}
    counts = {label: int(math.floor(v)) for label, v in exact.items()}
    by_remainder = sorted(mix, key=lambda label: (-(exact[label] - counts[label]), LABELS.index(label)))
    for label in by_remainder[: n - sum(counts.values())]:
        counts[label] += 1
    return counts


def _check_arguments(out_dir: Path, n, seed, mix, size, nuisance, workers, boxes=False,
                     user_readings=None) -> dict[str, float]:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise UserError(f"{out_dir}: number of cassettes must be a whole number >= 1, not {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UserError(f"{out_dir}: seed must be a whole number >= 0, not {seed!r}")
    mix = dict(DEFAULT_MIX if mix is None else mix)
    unknown = sorted(set(mix) - set(LABELS))
    if unknown:
        raise UserError(f"{out_dir}: unknown label(s) {unknown} in mix (choose from {', '.join(LABELS)})")
    if any(not isinstance(v, (int, float)) or v < 0 for v in mix.values()):
        raise UserError(f"{out_dir}: mix shares must be numbers >= 0, not {mix}")
    if abs(sum(mix.values()) - 1) > 0.01:
        raise UserError(f"{out_dir}: mix shares must sum to 1, not {sum(mix.values()):.3f} ({mix})")
    if size is not None and (len(size) != 2 or min(int(v) for v in size) < MIN_SIDE):
        raise UserError(f"{out_dir}: size must be (width, height) of at least {MIN_SIDE}x{MIN_SIDE}, not {size!r}")
    if not 0 <= nuisance <= 1:
        raise UserError(f"{out_dir}: nuisance must be between 0 and 1, not {nuisance}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UserError(f"{out_dir}: workers must be a whole number >= 1, not {workers!r}")
    if not isinstance(boxes, bool):
        raise UserError(f"{out_dir}: boxes must be True or False, not {boxes!r}")
    number = isinstance(user_readings, (int, float, np.floating)) and not isinstance(user_readings, bool)
    if user_readings is not None and (not number or not 0 <= user_readings < 1):
        raise UserError(f"{out_dir}: user-readings rate must be the share of readings wrong, in [0, 1) "
                        f"(e.g. 0.4), not {user_readings!r}")
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: exists and is not a folder")
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / MARKER_FILE).exists():
        # Only a folder this generator made may be replaced: never a user's folder of real photos.
        raise UserError(f"{out_dir}: folder exists and was not made by the cassette generator; choose an empty or new folder")
    return mix


def _photo_name(label: str, index: int, neutral: bool = False) -> str:
    """Where photo `index` lies: in a folder named by its true result, or (neutral, with user readings) in
    READINGS_PHOTOS, where neither the folder nor the name tells the truth that the users' labels may contradict."""
    return f"{READINGS_PHOTOS if neutral else label}/cassette-{index:05d}.jpg"


def _write_one(job) -> tuple[int, CassetteGeometry]:
    folder, label, seed, index, size, nuisance, neutral = job
    data, geometry = cassette_jpeg_with_geometry(label, seed, index, size, nuisance)
    with open(Path(folder) / _photo_name(label, index, neutral), "wb") as f:
        f.write(data)
    return index, geometry


def _manifest_line(name: str, geometry: CassetteGeometry, job_name: str) -> str:
    """One SageMaker Ground Truth object-detection line (the layout of Rekognition's documented example)."""
    width, height = geometry.size
    class_id = {label: i for i, label in enumerate(BOX_LABELS)}
    return json.dumps({
        "source-ref": name,
        "bounding-box": {
            "image_size": [{"width": width, "height": height, "depth": 3}],
            "annotations": [{"class_id": class_id[b.label], "left": b.left, "top": b.top, "width": b.width,
                             "height": b.height} for b in geometry.boxes],
        },
        "bounding-box-metadata": {
            "objects": [{"confidence": 1} for _ in geometry.boxes],
            "class-map": {str(i): label for i, label in enumerate(BOX_LABELS)},
            "type": "groundtruth/object-detection",
            "human-annotated": "yes",
            "creation-date": BOXES_CREATION_DATE,
            "job-name": job_name,
        },
    })


def generate_cassettes(out_dir, n: int, seed: int = 0, mix: dict[str, float] | None = None, size=None,
                       progress: bool = True, *, nuisance: float = 1.0, workers: int = 1,
                       boxes: bool = False, user_readings: float | None = None) -> dict[str, int]:
    """Write `out_dir/{positive,negative,invalid}/cassette-NNNNN.jpg` (n images) and return counts per label.

    mix: label -> share (default DEFAULT_MIX); counts are exact (largest remainder) and labels are
    shuffled by `seed`. size: fixed (width, height), or None for random phone sizes. The folder is
    built beside `out_dir` and swapped in whole, so an interrupted run leaves no partial dataset;
    a previous generator output there is replaced. workers > 1 renders in that many processes
    (same bytes as one). boxes: also write `out_dir/boxes.manifest` (BOXES_FILE), a Ground Truth
    object-detection manifest with one line per photo (in index order; source-ref relative to out_dir)
    boxing the cassette, its window and its well (BOX_LABELS); the photos are the same either way.
    user_readings: a rate in [0, 1): also write what users reported, wrong at that rate on average
    (READINGS_FILE, TRUTH_FILE, READINGS_README; see reading_weights), from a random stream of its own; the
    photos then lie in READINGS_PHOTOS/ (same file names and bytes), so no folder tells their true result.
    """
    out_dir = Path(out_dir)
    mix = _check_arguments(out_dir, n, seed, mix, size, nuisance, workers, boxes, user_readings)
    n, seed = int(n), int(seed)
    size = None if size is None else (int(size[0]), int(size[1]))
    counts = label_counts(n, mix)
    labels = np.array([label for label in LABELS for _ in range(counts.get(label, 0))])
    labels = labels[np.random.default_rng(np.random.SeedSequence([seed, 0])).permutation(n)]

    from tqdm import tqdm

    neutral = user_readings is not None

    def name(i: int) -> str:
        return _photo_name(str(labels[i]), i, neutral)

    with atomic.directory(out_dir) as tmp:
        for folder in {name(i).partition("/")[0] for i in range(n)}:
            (tmp / folder).mkdir()
        jobs = [(str(tmp), str(label), seed, i, size, nuisance, neutral) for i, label in enumerate(labels)]
        bar = tqdm(total=n, desc="cassettes", unit="img", disable=not progress)
        geometries: dict[int, CassetteGeometry] = {}
        if workers > 1:
            import multiprocessing

            # spawn, not fork: the caller may already hold TensorFlow's threads
            with multiprocessing.get_context("spawn").Pool(min(workers, os.cpu_count() or 1)) as pool:
                for index, geometry in pool.imap_unordered(_write_one, jobs, chunksize=16):
                    geometries[index] = geometry
                    bar.update()
        else:
            for job in jobs:
                index, geometry = _write_one(job)
                geometries[index] = geometry
                bar.update()
        bar.close()
        written = {label: counts.get(label, 0) for label in LABELS}
        # What each photo shows, for scoring by case (faint positives, upside-down cassettes)
        atomic.write_text(tmp / PHOTOS_FILE, "photo,result,c_strength,t_strength,rotation\n" + "".join(
            f"{name(i)},{labels[i]},{geometries[i].c_strength},{geometries[i].t_strength},"
            f"{geometries[i].rotation}\n" for i in range(n)))
        if boxes:  # every photo is on disk by now
            job_name = f"edgelabels-synth-cassettes-seed-{seed}"
            atomic.write_text(tmp / BOXES_FILE, "".join(
                _manifest_line(name(i), geometries[i], job_name) + "\n" for i in range(n)))
        readings = {} if user_readings is None else {"user_readings": _write_readings(
            tmp, [name(i) for i in range(n)], labels,
            [geometries[i].t_strength for i in range(n)], float(user_readings), seed)}
        atomic.write_json(tmp / MARKER_FILE, {
            "generator": "edgelabels.data.synthetic", "version": 1, "seed": seed, "n": n, "mix": mix,
            "size": size, "nuisance": nuisance, "counts": written, **({"boxes": BOXES_FILE} if boxes else {}),
            **readings,
        })
    return written


__all__ = ["LABELS", "DEFAULT_MIX", "FAINT_T", "BOX_LABELS", "BOXES_FILE", "PHOTOS_FILE", "CassetteGeometry", "render_cassette",
           "render_cassette_with_geometry", "cassette_jpeg", "cassette_jpeg_with_geometry", "generate_cassettes",
           "label_counts", "READINGS_FILE", "TRUTH_FILE", "READINGS_README", "reading_weights", "reading_probabilities",
           "draw_readings"]
