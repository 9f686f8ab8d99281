"""Shared fixtures: tiny generated datasets, paths to ../shared/data, a quiet TensorFlow."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from helpers.datasets import REPO, SHARED_DATA, make_stripes_dataset  # noqa: F401  (REPO, SHARED_DATA: shared paths)


@pytest.fixture
def stripes(tmp_path) -> Path:
    return make_stripes_dataset(tmp_path / "stripes")


# Fixtures that train or export a real (tiny) Keras model: a test using one is marked slow here, so that
# `pytest -m "not slow"` is the quick loop. Tests that train or export by themselves carry @pytest.mark.slow.
TRAINING_FIXTURES = {"unet_run", "chained_run", "export_dir", "run_dir", "trained_run", "unet", "toy"}


def pytest_collection_modifyitems(items):
    for item in items:
        if TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
