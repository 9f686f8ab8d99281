"""inspect_dataset and usable_samples on a generated folder holding every bad input, plus hash behaviour."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from edgelabels.data.dataset import Dataset
from edgelabels.data.sources import load_dataset
from edgelabels.data.validate import (ImageCheck, inspect_dataset, near_duplicate_pairs, perceptual_hash,
                                      usable_samples)


def smooth(seed: int, size: int = 96) -> Image.Image:
    """A random picture with photo-like detail (16x16 blobs; much smoother pictures make pHash bits unstable)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def make_messy_dataset(root: Path) -> Path:
    """Two labels, with one file of each kind the inspector must catch or handle."""
    cats, dogs = root / "cats", root / "dogs"
    cats.mkdir(parents=True)
    dogs.mkdir(parents=True)
    for i in range(4):
        smooth(i).save(cats / f"cat{i}.png")
        smooth(100 + i).save(dogs / f"dog{i}.jpg", quality=95)
    (cats / "zero.png").write_bytes(b"")
    jpeg = encode(smooth(7), "JPEG")
    (cats / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    png = encode(smooth(8), "PNG")
    (dogs / "cut.png").write_bytes(png[: len(png) // 2])
    (dogs / "moving.png").write_bytes(encode(smooth(9), "GIF"))
    (cats / "really-png.jpg").write_bytes(encode(smooth(10), "PNG"))
    Image.fromarray((np.arange(96 * 96).reshape(96, 96) * 7).astype(np.uint16)).save(cats / "deep.png")
    (dogs / "print.jpg").write_bytes(encode(smooth(11).convert("CMYK"), "JPEG"))
    smooth(12).convert("P", palette=Image.Palette.ADAPTIVE).save(dogs / "palette.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    (dogs / "phone.jpg").write_bytes(encode(smooth(13), "JPEG", exif=exif.tobytes()))
    (cats / "cat0-copy.png").write_bytes((cats / "cat0.png").read_bytes())  # duplicate within a label
    (dogs / "cat1-as-dog.png").write_bytes((cats / "cat1.png").read_bytes())  # duplicate across labels
    # Same picture, re-encoded and slightly brighter: a near-duplicate, not byte-identical.
    (cats / "cat2-reencoded.jpg").write_bytes(
        encode(ImageEnhance.Brightness(smooth(2)).enhance(1.08).resize((80, 80)), "JPEG", quality=60))
    smooth(14).save(root / "loose.png")
    return root


@pytest.fixture
def messy(tmp_path) -> Dataset:
    return load_dataset(make_messy_dataset(tmp_path / "messy"))


def names(paths) -> list[str]:
    return [f"{Path(p).parent.name}/{Path(p).name}" for p in paths]


def test_report_lists_each_bad_image_with_its_problem(messy):
    report = inspect_dataset(messy, progress=False)
    problems = {f"{Path(p.path).parent.name}/{Path(p.path).name}": p.problem for p in report.problems}
    assert problems == {
        "cats/zero.png": "empty file (0 bytes)",
        "cats/cut.jpg": "truncated image data",
        "dogs/cut.png": "truncated image data",
        "dogs/moving.png": "not a PNG or JPEG image (found GIF)",
    }


def test_report_notes_handled_images_by_path(messy):
    notes = {}
    for note in inspect_dataset(messy, progress=False).notes:
        notes.setdefault(names([note["path"]])[0], []).append(note["note"])
    assert notes["cats/really-png.jpg"] == ["suffix .jpg but content is PNG"]
    assert notes["cats/deep.png"] == ["16-bit image scaled to 8-bit"]
    assert notes["dogs/print.jpg"] == ["CMYK converted to RGB"]
    assert notes["dogs/palette.png"] == ["palette image converted to RGB"]
    assert notes["dogs/phone.jpg"] == ["EXIF orientation 6 applied"]
    assert set(notes) == {"cats/really-png.jpg", "cats/deep.png", "dogs/print.jpg", "dogs/palette.png",
                          "dogs/phone.jpg"}


def test_byte_identical_duplicates_are_paired_and_cross_label_ones_flagged(messy):
    report = inspect_dataset(messy, progress=False)
    assert [names(pair) for pair in report.duplicates] == [["cats/cat0-copy.png", "cats/cat0.png"],
                                                           ["cats/cat1.png", "dogs/cat1-as-dog.png"]]
    assert [names(pair) for pair in report.label_conflicts] == [["cats/cat1.png", "dogs/cat1-as-dog.png"]]


def test_near_duplicates_are_found_and_exact_ones_not_repeated(messy):
    report = inspect_dataset(messy, progress=False)
    pairs = [(*names(p[:2]), p[2]) for p in report.near_duplicates]
    assert [p[:2] for p in pairs] == [("cats/cat2-reencoded.jpg", "cats/cat2.png")]
    assert 0 <= pairs[0][2] <= 20
    assert report.near_duplicates_total == 1


def test_json_report_has_the_documented_keys_and_counts(messy):
    data = json.loads(json.dumps(inspect_dataset(messy, progress=False).to_json()))
    assert {"images", "labels", "groups", "duplicates", "near_duplicates", "problems", "notes",
            "unlabelled"} <= set(data)
    assert data["images"] == 20
    assert data["labels"] == {"cats": 10, "dogs": 10}
    assert data["groups"] == 20  # no --group-by: every image is its own group
    assert data["usable_images"] == 16
    assert data["usable_labels"] == {"cats": 8, "dogs": 8}
    assert all(len(pair) == 2 for pair in data["duplicates"])
    assert all(len(triple) == 3 and isinstance(triple[2], int) for triple in data["near_duplicates"])
    assert all(set(p) == {"path", "problem"} for p in data["problems"])
    assert names(data["unlabelled"]) == ["messy/loose.png"]


def test_rekognition_size_limits_are_noted(tmp_path):
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        smooth(1, 48).save(tmp_path / label / "small.png")
    Image.new("RGB", (1000, 40)).save(tmp_path / "a" / "strip.png")
    notes = [n["note"] for n in inspect_dataset(load_dataset(tmp_path), progress=False).notes]
    assert notes.count("48x48 is below Rekognition's 64x64 minimum") == 2
    assert "aspect ratio 1000:40 is beyond Rekognition's 20:1 maximum" in notes


def test_usable_samples_keeps_only_images_that_decode(messy):
    samples, problems = usable_samples(messy, progress=False)
    assert len(samples) == 16
    assert sorted(names(p.path for p in problems)) == ["cats/cut.jpg", "cats/zero.png", "dogs/cut.png",
                                                      "dogs/moving.png"]
    assert [s.path for s in samples] == [s.path for s in messy.samples if s.path in {x.path for x in samples}]


def test_perceptual_hash_separates_different_pictures_and_tolerates_reencoding():
    a, b = perceptual_hash(smooth(1)), perceptual_hash(smooth(2))
    again = perceptual_hash(Image.open(io.BytesIO(encode(smooth(1).resize((200, 200)), "JPEG", quality=40))))
    assert a.shape == (256,) and a.dtype == np.uint8
    assert int((a != again).sum()) <= 20 < int((a != b).sum())


def test_near_duplicate_search_matches_brute_force_and_is_fast_for_thousands():
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2, (3000, 256), dtype=np.uint8)
    hashes[2999] = hashes[5]
    hashes[2999, :7] ^= 1  # 7 bits from image 5
    checks = [ImageCheck(Path(f"{i:05d}.png"), phash=h) for i, h in enumerate(hashes)]
    start = time.perf_counter()
    pairs = near_duplicate_pairs(checks, 20)
    elapsed = time.perf_counter() - start
    assert pairs == [("00005.png", "02999.png", 7)]
    small = checks[:300] + [checks[2999]]
    brute = sorted((str(x.path), str(y.path), int((x.phash != y.phash).sum()))
                   for i, x in enumerate(small) for y in small[i + 1:] if (x.phash != y.phash).sum() <= 110)
    assert sorted(near_duplicate_pairs(small, 110)) == brute and brute
    assert elapsed < 5


def test_dataset_without_decodable_images_in_one_label_reports_zero_usable(tmp_path):
    (tmp_path / "good").mkdir()
    (tmp_path / "bad").mkdir()
    smooth(0).save(tmp_path / "good" / "a.png")
    (tmp_path / "bad" / "b.png").write_bytes(b"")
    report = inspect_dataset(load_dataset(tmp_path), progress=False)
    assert report.usable_labels == {"bad": 0, "good": 1}  # the report is data: the CLI turns this into an error
