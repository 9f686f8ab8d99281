"""The synthetic cassette generator: reproducible, the right mix, real JPEGs, and pixels that encode the label."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgelabels.data import synthetic
from edgelabels.data.images import read_image
from edgelabels.data.synthetic import (
    DEFAULT_MIX, FAINT_T, LABELS, PHONE_SIZES, generate_cassettes, label_counts, render_cassette,
    render_cassette_with_geometry,
)
from edgelabels.errors import UserError

SMALL = (160, 120)  # fast; the pixel tests below use realistic sizes


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.jpg"))}


def test_same_seed_gives_byte_identical_files(tmp_path):
    generate_cassettes(tmp_path / "a", 9, seed=3, size=SMALL, progress=False)
    generate_cassettes(tmp_path / "b", 9, seed=3, size=SMALL, progress=False)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert len(a) == 9 and a == b


def test_different_seed_gives_different_images(tmp_path):
    mix = {"negative": 1.0}  # same labels and names, so only the seed differs
    generate_cassettes(tmp_path / "a", 5, seed=1, mix=mix, size=SMALL, progress=False)
    generate_cassettes(tmp_path / "b", 5, seed=2, mix=mix, size=SMALL, progress=False)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a.keys() == b.keys()
    assert all(a[name] != b[name] for name in a)


def test_parallel_workers_write_the_same_bytes(tmp_path):
    generate_cassettes(tmp_path / "one", 4, seed=5, size=SMALL, progress=False)
    generate_cassettes(tmp_path / "two", 4, seed=5, size=SMALL, progress=False, workers=2)
    assert _files(tmp_path / "one") == _files(tmp_path / "two")


def test_default_mix_on_200_images_is_90_7_3_percent(tmp_path):
    counts = generate_cassettes(tmp_path / "c", 200, seed=0, size=(64, 64), progress=False)
    assert counts == {"positive": 14, "negative": 180, "invalid": 6}
    on_disk = {label: len(list((tmp_path / "c" / label).glob("cassette-*.jpg"))) for label in LABELS}
    assert on_disk == counts
    assert sum(DEFAULT_MIX.values()) == pytest.approx(1.0)


def test_label_counts_are_exact_and_keep_rare_labels():
    assert label_counts(10, DEFAULT_MIX) == {"negative": 9, "positive": 1, "invalid": 0}
    assert label_counts(34, DEFAULT_MIX) == {"negative": 31, "positive": 2, "invalid": 1}
    for n in (1, 7, 33, 1001):
        assert sum(label_counts(n, DEFAULT_MIX).values()) == n


def test_images_are_valid_jpegs_of_phone_photo_sizes(tmp_path):
    generate_cassettes(tmp_path / "d", 6, seed=11, progress=False)
    allowed = {s for w, h in PHONE_SIZES for s in ((w, h), (h, w))}
    paths = sorted((tmp_path / "d").rglob("*.jpg"))
    assert len(paths) == 6
    for path in paths:
        with Image.open(path) as im:
            assert im.format == "JPEG" and im.mode == "RGB"
            assert im.size in allowed
        image, notes = read_image(path)  # the project's own decoder accepts it without fixes
        assert notes == []
    assert (tmp_path / "d" / synthetic.MARKER_FILE).exists()


def _green_along_window(image: Image.Image, g) -> tuple[np.ndarray, float, float]:
    """Green channel along the window's centreline (red-purple lines absorb green), averaged across the
    middle half of the strip; and where C and T fall on that profile (sample indices)."""
    pixels = np.asarray(image, np.float32)[..., 1]
    window = np.array(g.window)
    top, bottom = (window[0] + window[1]) / 2, (window[3] + window[2]) / 2
    across = (window[1] - window[0]) / 2
    steps = int(np.linalg.norm(bottom - top))
    t = np.linspace(0.04, 0.96, steps)
    profile = np.zeros(steps)
    for k in np.linspace(-0.5, 0.5, 5):
        points = top + t[:, None] * (bottom - top) + k * across
        profile += pixels[points[:, 1].round().astype(int), points[:, 0].round().astype(int)] / 5

    def position(line):
        centre = np.mean(np.array(line), axis=0)
        return float(np.interp(np.dot(centre - top, bottom - top) / np.dot(bottom - top, bottom - top), t, np.arange(steps)))

    return profile, position(g.c_line), position(g.t_line)


def _line_peaks(profile: np.ndarray, min_depth: float) -> list[int]:
    """Indices where the profile dips at least `min_depth` below the strip's median (one per dip)."""
    dip = np.median(profile) - profile
    peaks, start = [], None
    for i, low in enumerate(np.append(dip >= min_depth, False)):
        if low and start is None:
            start = i
        elif not low and start is not None:
            peaks.append(start + int(np.argmax(dip[start:i])))
            start = None
    return peaks


@pytest.mark.parametrize("result, t_strength, lines_at", [
    ("positive", 0.8, ("C", "T")),
    ("positive", FAINT_T, ("C", "T")),
    ("negative", None, ("C",)),
    ("invalid", 0.0, ()),
    ("invalid", 0.7, ("T",)),
])
def test_clean_photo_shows_lines_exactly_where_the_label_says(result, t_strength, lines_at):
    image, g = render_cassette_with_geometry(result, np.random.default_rng(21), (800, 600), nuisance=0.0,
                                             t_strength=t_strength)
    assert g.rotation == 0 and g.result == result
    profile, c_at, t_at = _green_along_window(image, g)
    peaks = _line_peaks(profile, min_depth=8.0)
    tolerance = max(3.0, g.line_width)
    found = tuple(name for name, at in (("C", c_at), ("T", t_at)) if any(abs(p - at) <= tolerance for p in peaks))
    assert found == lines_at
    assert len(peaks) == len(lines_at)  # nothing else on the strip looks like a line


@pytest.mark.parametrize("seed", range(4))
def test_control_line_is_the_one_farther_from_the_sample_well(seed):
    """Flow runs from the well through T to C, as on real kits; upside-down photos keep that order."""
    _, g = render_cassette_with_geometry("positive", np.random.default_rng(40 + seed), nuisance=1.0)
    well = np.array(g.well)
    c_mid, t_mid = np.mean(np.array(g.c_line), axis=0), np.mean(np.array(g.t_line), axis=0)
    assert np.linalg.norm(c_mid - well) > np.linalg.norm(t_mid - well) + 2 * g.line_width


@pytest.mark.parametrize("seed", range(6))
def test_geometry_follows_the_cassette_under_full_nuisance(seed):
    """Rotation, perspective, blur, noise and lighting on: the C line is still where the geometry says."""
    image, g = render_cassette_with_geometry("negative", np.random.default_rng(100 + seed), nuisance=1.0)
    green = np.asarray(image, np.float32)[..., 1]

    def at(point):
        return float(green[int(round(point[1])), int(round(point[0]))])

    c_mid = np.mean(np.array(g.c_line), axis=0)
    between = (c_mid + np.mean(np.array(g.t_line), axis=0)) / 2
    assert at(between) - at(c_mid) > 15  # the C line is darker in green than the blank strip beside it
    assert 0 <= np.array(g.corners).min() and np.array(g.corners)[:, 0].max() <= g.size[0]
    assert np.array(g.corners)[:, 1].max() <= g.size[1]


def test_faintest_t_line_survives_a_resize_of_the_whole_photo_to_128_px():
    """The faint T of a positive must stay visible at the model's input: after JPEG and a 128x128
    bilinear resize, the same scene with and without the T line differs at T by more than the strip's noise."""
    for seed in range(6):
        resized = []
        for t in (FAINT_T, 0.0):
            image, g = render_cassette_with_geometry("positive", np.random.default_rng(300 + seed), t_strength=t)
            buffer = io.BytesIO()
            image.save(buffer, "JPEG", quality=g.jpeg_quality)
            small = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB").resize((128, 128), Image.Resampling.BILINEAR)
            resized.append(np.asarray(small, np.float32)[..., 1])
        scale = np.array([128 / g.size[0], 128 / g.size[1]])

        def pixels(a, line, fractions):
            p0, p1 = np.array(line[0]), np.array(line[1])
            points = [np.floor((p0 + f * (p1 - p0)) * scale).astype(int) for f in fractions]
            return np.array([a[y, x] for x, y in points])

        with_t, without_t = resized
        contrast = float(np.mean(pixels(without_t, g.t_line, (0.35, 0.5, 0.65)) - pixels(with_t, g.t_line, (0.35, 0.5, 0.65))))
        blank = ((np.array(g.c_line[0]) + g.t_line[0]) / 2, (np.array(g.c_line[1]) + g.t_line[1]) / 2)
        strip_noise = float(np.std(pixels(without_t, blank, np.linspace(0.2, 0.8, 7))))
        assert contrast >= 3.0 and contrast > 2 * strip_noise, (seed, contrast, strip_noise)


def test_render_cassette_returns_an_rgb_photo_of_the_requested_size():
    image = render_cassette("positive", np.random.default_rng(0), (640, 480))
    assert image.mode == "RGB" and image.size == (640, 480)


def test_interrupted_generation_leaves_no_dataset_and_no_half_written_jpeg(tmp_path, monkeypatch):
    real, calls = synthetic.cassette_jpeg_with_geometry, []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(synthetic, "cassette_jpeg_with_geometry", failing)
    with pytest.raises(KeyboardInterrupt):
        generate_cassettes(tmp_path / "out", 5, size=SMALL, progress=False)
    assert not (tmp_path / "out").exists()
    assert list(tmp_path.iterdir()) == []


def test_regenerating_replaces_an_earlier_generator_output(tmp_path):
    generate_cassettes(tmp_path / "out", 8, seed=0, size=SMALL, progress=False)
    counts = generate_cassettes(tmp_path / "out", 3, seed=1, mix={"positive": 1.0}, size=SMALL, progress=False)
    assert counts == {"positive": 3, "negative": 0, "invalid": 0}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([synthetic.MARKER_FILE, synthetic.PHOTOS_FILE,
                                                                           "positive"])


def test_photos_csv_says_what_each_photo_shows(tmp_path):
    import csv

    generate_cassettes(tmp_path / "out", 6, seed=4, mix={"positive": 0.5, "invalid": 0.5}, size=SMALL, progress=False)
    with open(tmp_path / "out" / synthetic.PHOTOS_FILE) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and all((tmp_path / "out" / r["photo"]).is_file() for r in rows)
    for r in rows:
        _, geometry = synthetic.cassette_jpeg_with_geometry(r["result"], 4, int(r["photo"][-9:-4]), SMALL)
        assert (float(r["c_strength"]), float(r["t_strength"]), float(r["rotation"])) == \
            (geometry.c_strength, geometry.t_strength, geometry.rotation)
        assert (float(r["c_strength"]) == 0) == (r["result"] == "invalid")


@pytest.mark.parametrize("kwargs, message", [
    ({"n": 0}, "number of cassettes"),
    ({"n": 10, "mix": {"negative": 0.9, "unclear": 0.1}}, "unknown label"),
    ({"n": 10, "mix": {"negative": 0.5, "positive": 0.2}}, "sum to 1"),
    ({"n": 10, "mix": {"negative": 1.2, "positive": -0.2}}, ">= 0"),
    ({"n": 10, "seed": -1}, "seed"),
    ({"n": 10, "size": (32, 32)}, "at least 64x64"),
    ({"n": 10, "nuisance": 2.0}, "nuisance"),
    ({"n": 10, "workers": 0}, "workers"),
])
def test_bad_arguments_are_user_errors_naming_the_folder(tmp_path, kwargs, message):
    with pytest.raises(UserError, match=message) as info:
        generate_cassettes(tmp_path / "out", progress=False, **kwargs)
    assert str(tmp_path / "out") in str(info.value)
    assert not (tmp_path / "out").exists()


def test_a_folder_not_made_by_the_generator_is_never_replaced(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_bytes(b"not ours")
    with pytest.raises(UserError, match="not made by the cassette generator"):
        generate_cassettes(tmp_path / "photos", 2, size=SMALL, progress=False)
    assert (tmp_path / "photos" / "holiday.jpg").read_bytes() == b"not ours"


def test_unknown_result_is_a_user_error():
    with pytest.raises(UserError, match="unknown result"):
        render_cassette("maybe", np.random.default_rng(0))


@pytest.mark.parametrize("seed", range(3))
def test_clean_photo_cassette_box_is_the_upright_centred_body(seed):
    """Hand-computed: nuisance 0 draws the cassette upright, untilted, centred, 0.6 of the photo's height
    long (288 px of 480) and 0.28-0.34 of that wide (81-98 px); its box is exactly that rectangle."""
    _, g = render_cassette_with_geometry("negative", np.random.default_rng(seed), (640, 480), nuisance=0.0)
    labels = [b.label for b in g.boxes]
    assert labels == ["cassette", "window", "well"]
    body = g.boxes[0]
    assert (body.top, body.height) == (96, 288)
    assert 81 <= body.width <= 98 and abs(body.left + body.width / 2 - 320) <= 0.5
    window, well = g.boxes[1], g.boxes[2]
    # the window opens 0.26-0.30 of the length from the far end; the well's centre sits 0.74-0.80 along
    assert 96 + 0.26 * 288 - 1 <= window.top <= 96 + 0.30 * 288 + 1
    assert 96 + 0.74 * 288 - 1 <= well.top + well.height / 2 <= 96 + 0.80 * 288 + 1
