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
