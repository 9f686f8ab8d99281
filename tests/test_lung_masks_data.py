"""Integration on the real lung masks (../shared/data/lung-masks; skipped when absent): pairs, groups, split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgelabels.config import load_config
from edgelabels.data.masks import load_mask_pairs, mask_path_of, read_mask
from edgelabels.data.splits import make_split

REPO = Path(__file__).resolve().parents[1]
LUNGS = REPO.parent / "shared" / "data" / "lung-masks"

pytestmark = [pytest.mark.shared_data,
              pytest.mark.skipif(not LUNGS.is_dir(), reason="../shared/data/lung-masks absent")]


@pytest.fixture(scope="module")
def config():
    return load_config(REPO / "configs" / "unet-lungs.yaml", [f"data.source={LUNGS}"])


@pytest.fixture(scope="module")
def pairs(config):
    return load_mask_pairs(config.data.source, group_by=config.data.group_by)


def test_every_lung_image_has_its_mask(pairs):
    assert len(pairs) == 428 and pairs.problems == []


def test_films_of_one_case_share_a_group(pairs):
    groups = {s.path.name: s.group for s in pairs.samples}
    assert groups["covid-19-pneumonia-23-day1.png"] == groups["covid-19-pneumonia-23-day9.png"]
    assert groups["16660_1_1.png"] == groups["16660_5_1.png"]
    assert groups["covid-19-pneumonia-23-day1.png"] != groups["covid-19-pneumonia-24-day7.png"]
    assert 250 < len(pairs.groups) < 428


def test_the_configured_split_keeps_each_case_in_one_part(pairs, config):
    split = make_split(pairs, test_fraction=config.data.test_fraction, val_fraction=config.data.val_fraction,
                       seed=config.seed)
    parts = [{s.group for s in part} for part in (split.train, split.val, split.test)]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert len(split.test) >= 50


def test_real_masks_hold_lung_and_background(pairs):
    mask = read_mask(mask_path_of(pairs.samples[0].path), 256, 256)
    assert set(np.unique(mask)) <= {0, 127, 255}
    assert 0.1 < (mask == 255).mean() < 0.7
