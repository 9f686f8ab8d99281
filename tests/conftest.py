"""Shared fixtures: tiny generated datasets, paths to ../shared/data, a quiet TensorFlow."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from helpers.datasets import REPO, SHARED_DATA, make_stripes_dataset  # noqa: F401  (REPO, SHARED_DATA: shared paths)
from helpers.marks import function_makes_a_model


@pytest.fixture(scope="module")
def chromium():
    """A Chromium under Playwright for a module's browser tests (helpers/browser.py finds it; no browser is a
    failure that says how to get one). Per module, not per session: Playwright's sync API holds an asyncio loop in
    the main thread while it is open, and later tests that run their own loop (anyio.run) would find it running."""
    from playwright.sync_api import sync_playwright

    from helpers.browser import launch_chromium

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        yield browser
        browser.close()


@pytest.fixture
def stripes(tmp_path) -> Path:
    return make_stripes_dataset(tmp_path / "stripes")


def pytest_collection_modifyitems(items):
    """A test is slow when any fixture it uses, however deep, trains or exports a real (tiny) Keras model, read
    from the fixture's code (helpers/marks.py), so that `pytest -m "not slow"` is the quick loop even after a new
    training fixture is written. Tests that train or export by themselves carry @pytest.mark.slow."""
    verdicts: dict = {}
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        definitions = info.name2fixturedefs.values() if info is not None else ()
        if any(_makes_a_model(definition[-1].func, verdicts) for definition in definitions if definition):
            item.add_marker(pytest.mark.slow)


def _makes_a_model(function, verdicts: dict) -> bool:
    if function not in verdicts:
        verdicts[function] = function_makes_a_model(function)
    return verdicts[function]
