"""source_statistics (data/statistics.py): image sizes, box sizes in pixels and relative, label counts."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from PIL import Image

from edgelabels.data.dataset import Box, Dataset, Sample
from edgelabels.data.detection import load_detection_dataset
from edgelabels.data.statistics import source_statistics
from helpers.datasets import SHARED_DATA

BCCD = SHARED_DATA / "bccd-voc"


def image(path: Path, width: int, height: int, orientation: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    Image.new("RGB", (width, height), (10, 20, 30)).save(path, exif=exif)
    return path


def test_detection_statistics_give_sizes_percentiles_and_counts(tmp_path):
    a = image(tmp_path / "a.jpg", 100, 50)
    b = image(tmp_path / "b.jpg", 200, 100)
    c = image(tmp_path / "c.jpg", 300, 150)
    samples = [
        Sample(a, ("car",), str(a), (Box("car", 0, 0, 10, 20), Box("car", 5, 5, 30, 10))),
        Sample(b, ("bus", "car"), str(b), (Box("bus", 0, 0, 50, 40), Box("car", 0, 0, 20, 20), Box("car", 1, 1, 4, 8))),
        Sample(c, (), str(c)),
    ]
    stats = source_statistics(Dataset(samples, str(tmp_path)))
    assert stats["images"] == {"count": 3, "unreadable": 0, "width": {"p10": 120.0, "p50": 200.0, "p90": 280.0},
                               "height": {"p10": 60.0, "p50": 100.0, "p90": 140.0}}
    boxes = stats["boxes"]
    assert boxes["count"] == 5
    # widths 10 30 50 20 4, heights 20 10 40 20 8, shorter sides 10 10 40 20 4 (numpy's linear percentiles)
    assert boxes["width"] == {"p5": 5.2, "p10": 6.4, "p50": 20.0, "p90": 42.0}
    assert boxes["shorter_side"] == {"p5": 5.2, "p10": 6.4, "p50": 10.0, "p90": 32.0}
    # shorter side / image shorter side: 10/50 10/50 40/100 20/100 4/100, sorted 0.04 0.2 0.2 0.2 0.4
    assert boxes["relative_shorter_side"] == {"p5": 0.072, "p10": 0.104, "p50": 0.2, "p90": 0.32}
    assert boxes["per_image"] == {"mean": 1.667, "max": 3} and boxes["images_without_boxes"] == 1
    assert stats["labels"] == {"images_per_label": {"bus": 1, "car": 2}, "imbalance_ratio": 2.0,
                               "boxes_per_label": {"bus": 1, "car": 4}, "box_imbalance_ratio": 4.0}


def test_classification_statistics_give_the_imbalance_ratio_and_no_boxes(tmp_path):
    samples = [Sample(image(tmp_path / f"{i}.jpg", 32, 24), ("cat" if i < 6 else "dog",), str(i)) for i in range(8)]
    stats = source_statistics(Dataset(samples, str(tmp_path)))
    assert stats["labels"] == {"images_per_label": {"cat": 6, "dog": 2}, "imbalance_ratio": 3.0}
    assert "boxes" not in stats
    assert stats["images"]["width"] == {"p10": 32.0, "p50": 32.0, "p90": 32.0}


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_sizes_are_of_the_image_as_displayed_and_an_unreadable_image_is_counted(tmp_path, suffix):
    rotated = image(tmp_path / f"r{suffix}", 64, 48, orientation=6)  # stored 64x48, displayed 48x64
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    samples = [Sample(rotated, ("cat",), "r"), Sample(broken, ("dog",), "b")]
    stats = source_statistics(Dataset(samples, str(tmp_path)))
    assert stats["images"] == {"count": 2, "unreadable": 1, "width": {"p10": 48.0, "p50": 48.0, "p90": 48.0},
                               "height": {"p10": 64.0, "p50": 64.0, "p90": 64.0}}


def test_a_large_png_is_measured_from_its_header_without_decoding(tmp_path):
    big = tmp_path / "big.png"
    Image.effect_noise((2000, 1500), 64).convert("RGB").save(big, compress_level=1)  # noise: slow to decode
    samples = [Sample(big, ("cat",), "b")] * 20
    started = time.perf_counter()
    stats = source_statistics(Dataset(samples, str(tmp_path)))
    assert time.perf_counter() - started < 1.0  # 20 decodes of this 3-megapixel PNG take about 2 s
    assert stats["images"]["width"]["p50"] == 2000 and stats["images"]["height"]["p50"] == 1500


@pytest.mark.skipif(not BCCD.is_dir(), reason="../shared/data/bccd-voc absent")
def test_bccd_statistics_read_headers_only_and_are_quick():
    dataset = load_detection_dataset(BCCD)
    started = time.perf_counter()
    stats = source_statistics(dataset)
    assert time.perf_counter() - started < 2.0  # 364 headers; a full decode would take several seconds on 2 cores
    # ../shared/data/bccd-voc/README.md: 640x480 images, median box about 105x101 px.
    assert stats["images"]["width"]["p50"] == 640 and stats["images"]["height"]["p50"] == 480
    assert stats["boxes"]["width"]["p50"] == pytest.approx(105, abs=2)
    assert stats["boxes"]["height"]["p50"] == pytest.approx(101, abs=2)
