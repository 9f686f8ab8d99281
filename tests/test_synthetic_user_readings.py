"""`synth-cassettes --user-readings RATE`: what users reported, wrong in the ways people are wrong, beside the truth.

The reading model is tested on its own (no photo rendered) on thousands of readings; the files on a few tiny photos.
Tolerances on drawn shares are 4 binomial standard deviations, sqrt(p (1 - p) / n), of the model's probability p
(draws are seeded, so a test gives the same answer every run; 4 sd leaves room for another numpy's stream).
"""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from edgelabels.data import synthetic
from edgelabels.data.command import _mix
from edgelabels.data.sources import read_manifest
from edgelabels.data.synthetic import (
    DEFAULT_MIX, FAINT_T, LABELS, draw_readings, generate_cassettes, label_counts, reading_probabilities,
)
from edgelabels.errors import UserError

POSITIVE, NEGATIVE, INVALID = (LABELS.index(label) for label in ("positive", "negative", "invalid"))


def _four_sd(p: float, n: int) -> float:
    return 4 * math.sqrt(p * (1 - p) / n)


def _share(readings, label: str) -> float:
    return sum(r == label for r in readings) / len(readings)


def _photos(n: int, mix: dict[str, float], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """True results and T strengths as the renderer draws them (its own strength draw, no photo rendered)."""
    counts = label_counts(n, mix)
    results = np.array([label for label in LABELS for _ in range(counts.get(label, 0))])
    rng = np.random.default_rng(seed)
    return results, np.array([synthetic._strengths(str(r), rng, None)[1] for r in results])


THIRD_EACH = {"positive": 1 / 3, "negative": 1 / 3, "invalid": 1 / 3}


@pytest.mark.parametrize("mix", [THIRD_EACH, DEFAULT_MIX], ids=["third-each", "default-mix"])
@pytest.mark.parametrize("rate", [0.4, 0.1])
def test_3000_readings_are_wrong_at_the_rate_asked_within_4_binomial_sd(mix, rate):
    results, t = _photos(3000, mix, seed=7)
    probabilities, _ = reading_probabilities(results, t, rate)
    reported = draw_readings(probabilities, np.random.default_rng(11))
    wrong = sum(r != str(truth) for r, truth in zip(reported, results)) / len(results)
    # rate 0.4: 4 * sqrt(0.4 * 0.6 / 3000) = 0.0358; rate 0.1: 4 * sqrt(0.1 * 0.9 / 3000) = 0.0219 (the readings are
    # independent draws whose probabilities average `rate`: their spread is at most the binomial's)
    assert abs(wrong - rate) <= _four_sd(rate, 3000)


def test_a_third_of_each_result_gives_1000_of_each_in_3000_photos():
    mix = _mix("positive=1/3,negative=1/3,invalid=1/3")
    assert label_counts(3000, mix) == {"positive": 1000, "negative": 1000, "invalid": 1000}


def test_faint_positives_are_read_negative_more_often_than_strong_ones():
    # 1500 positives at the faintest T (faintness 1), 1500 at a full line (faintness 0).
    # Weights: faint: negative 0.5 slip + 6 = 6.5, invalid 0.5 (sum 7); strong: 0.5 and 0.5 (sum 1).
    # Mean sum 4, rate 0.4 -> k = 0.1 (nothing reaches 1): faint P(negative) = 0.65, P(invalid) = 0.05;
    # strong P(negative) = 0.05, P(invalid) = 0.05.
    results = np.array(["positive"] * 3000)
    t = np.array([FAINT_T] * 1500 + [1.0] * 1500)
    probabilities, k = reading_probabilities(results, t, 0.4)
    assert k == pytest.approx(0.1)
    assert probabilities[0] == pytest.approx([0.30, 0.65, 0.05])
    assert probabilities[-1] == pytest.approx([0.90, 0.05, 0.05])
    reported = draw_readings(probabilities, np.random.default_rng(3))
    assert abs(_share(reported[:1500], "negative") - 0.65) <= _four_sd(0.65, 1500)  # 0.049
    assert abs(_share(reported[1500:], "negative") - 0.05) <= _four_sd(0.05, 1500)  # 0.023


def test_the_fainter_the_t_line_the_likelier_a_negative_reading():
    results = np.array(["positive"] * 4)
    probabilities, _ = reading_probabilities(results, [0.15, 0.3, 0.6, 0.9], 0.2)
    read_negative = probabilities[:, NEGATIVE]
    assert read_negative[0] > read_negative[1] > read_negative[2] > read_negative[3]


def test_invalid_cassettes_are_read_positive_with_a_t_line_and_negative_without():
    # 1000 invalid with a T line, 1000 without: every photo's weights sum to 0.5 + 0.5 + 8 = 9;
    # rate 0.45 -> k = 0.05; with T: P(positive) = 0.05 * 8.5 = 0.425, P(negative) = 0.05 * 0.5 = 0.025;
    # without T the other way round; P(invalid) = 0.55 either way.
    results = np.array(["invalid"] * 2000)
    t = np.array([0.5] * 1000 + [0.0] * 1000)
    probabilities, k = reading_probabilities(results, t, 0.45)
    assert k == pytest.approx(0.05)
    assert probabilities[0] == pytest.approx([0.425, 0.025, 0.55])
    assert probabilities[-1] == pytest.approx([0.025, 0.425, 0.55])
    reported = draw_readings(probabilities, np.random.default_rng(5))
    with_t, without_t = reported[:1000], reported[1000:]
    assert abs(_share(with_t, "positive") - 0.425) <= _four_sd(0.425, 1000)  # 0.063
    assert abs(_share(with_t, "negative") - 0.025) <= _four_sd(0.025, 1000)  # 0.020
    assert abs(_share(without_t, "negative") - 0.425) <= _four_sd(0.425, 1000)
    assert abs(_share(without_t, "positive") - 0.025) <= _four_sd(0.025, 1000)


def test_a_photo_cannot_be_misread_more_than_always_and_the_others_make_up_the_rate():
    # 1 invalid with T (weights sum 9) and 9 negatives (sum 1), rate 0.5. Unclamped k = 0.5 / 1.8 would give the
    # invalid 2.5; clamped: (1 + 9 k) / 10 = 0.5 -> k = 4/9: the invalid is always misread, each negative 4/9 of
    # the time
    results = np.array(["invalid"] + ["negative"] * 9)
    probabilities, k = reading_probabilities(results, [0.5] + [0.0] * 9, 0.5)
    assert k == pytest.approx(4 / 9)
    assert probabilities[0, INVALID] == pytest.approx(0.0)
    assert probabilities[0] == pytest.approx([17 / 18, 1 / 18, 0.0])  # 8.5 / 9 positive, 0.5 / 9 negative
    assert probabilities[1] == pytest.approx([2 / 9, 5 / 9, 2 / 9])


def test_rate_0_reads_every_photo_right():
    results, t = _photos(300, THIRD_EACH, seed=1)
    probabilities, k = reading_probabilities(results, t, 0.0)
    assert k == 0.0
    assert draw_readings(probabilities, np.random.default_rng(0)) == [str(r) for r in results]


def _jpegs(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.jpg"))}


def _rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """Six tiny photos, a third of each result, generated without readings, with readings at 0.9, and again."""
    root = tmp_path_factory.mktemp("readings")
    for name, rate in (("plain", None), ("read", 0.9), ("again", 0.9)):
        generate_cassettes(root / name, 6, seed=4, mix=THIRD_EACH, size=(64, 64), progress=False, user_readings=rate)
    return root


def test_photos_are_byte_identical_with_or_without_user_readings(generated):
    plain, read = _jpegs(generated / "plain"), _jpegs(generated / "read")
    # with readings a photo lies in photos/ under the same file name: cassette-00003.jpg is one photo either way
    assert len(plain) == 6 and sorted(plain.values()) == sorted(read.values())
    assert {name.split("/")[1]: data for name, data in plain.items()} == \
        {name.split("/")[1]: data for name, data in read.items()}
    assert not (generated / "plain" / synthetic.READINGS_FILE).exists()


def test_with_user_readings_no_folder_or_name_tells_the_true_result(generated):
    names = sorted(_jpegs(generated / "read"))
    assert names == [f"photos/cassette-{i:05d}.jpg" for i in range(6)]
    assert sorted(p.name for p in (generated / "read").iterdir() if p.is_dir()) == ["photos"]


def test_the_same_seed_gives_the_same_readings(generated):
    for name in (synthetic.READINGS_FILE, synthetic.TRUTH_FILE, synthetic.READINGS_README):
        assert (generated / "read" / name).read_bytes() == (generated / "again" / name).read_bytes()


def test_the_readings_manifest_is_labelled_with_what_users_reported(generated):
    folder = generated / "read"
    truth = {row["image"]: row for row in _rows(folder / synthetic.TRUTH_FILE)}
    dataset = read_manifest(folder / synthetic.READINGS_FILE, root=None, s3_root=None, pattern=None)
    assert dataset.problems == []
    labels = {str(s.path.relative_to(folder)): s.labels for s in dataset.samples}
    assert labels == {image: (row["reported"],) for image, row in truth.items()}
    # truth.csv's true result is the one the photo was drawn as (its folder when made without readings), its T
    # strength the photo's own (photos.csv)
    plain = {p.name: p.parent.name for p in (generated / "plain").rglob("*.jpg")}
    assert all(plain[image.split("/")[1]] == row["result"] for image, row in truth.items())
    assert {r["photo"]: r["t_strength"] for r in _rows(folder / synthetic.PHOTOS_FILE)} == \
        {image: row["t_strength"] for image, row in truth.items()}
    # at a rate of 0.9 some readings are wrong (seeded: these six have at least one)
    assert any(row["reported"] != row["result"] for row in truth.values())
    line = json.loads((folder / synthetic.READINGS_FILE).read_text().splitlines()[0])
    assert line["user-reading-metadata"]["type"] == "groundtruth/image-classification"


def test_the_readme_states_the_realised_noise_matrix(generated):
    folder = generated / "read"
    truth = _rows(folder / synthetic.TRUTH_FILE)
    readme = (folder / synthetic.READINGS_README).read_text()
    wrong = sum(row["reported"] != row["result"] for row in truth)
    assert f"Wrong: {wrong} of 6 readings" in readme
    for label in LABELS:
        mine = [row["reported"] for row in truth if row["result"] == label]
        cells = " | ".join(str(mine.count(reported)) for reported in LABELS)
        assert f"| {label} (2) | {cells} |" in readme
    marker = json.loads((folder / synthetic.MARKER_FILE).read_text())
    assert marker["user_readings"]["rate"] == 0.9 and marker["user_readings"]["wrong"] == wrong


@pytest.mark.parametrize("rate", ["1", "-0.1", "1.5"])
def test_a_rate_outside_0_to_1_is_refused_in_one_line_before_anything_is_written(tmp_path, capsys, rate):
    from edgelabels.cli import main

    assert main(["dataset", "synth-cassettes", str(tmp_path / "out"), "--n", "2", "--size", "64x64",
                 f"--user-readings={rate}"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgelabels: error: ") and "user-readings rate" in lines[0]
    assert not (tmp_path / "out").exists()


def test_the_library_refuses_a_rate_that_is_not_a_number(tmp_path):
    with pytest.raises(UserError, match="user-readings rate"):
        generate_cassettes(tmp_path / "out", 2, size=(64, 64), progress=False, user_readings="0.4")
