"""train.label_noise: prune (issue 28): the run audits its source first (k-fold, RUN/audit/), trains on what is left
without the suspects, says so in its config.yaml, and a resumed run does not audit again."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from edgelabels.config import load_config
from helpers.datasets import tiny_config_overrides


@pytest.fixture(scope="module")
def pruned(tmp_path_factory):
    from edgelabels.train.fit import train

    root = tmp_path_factory.mktemp("label-noise")
    source, rng = root / "greys", np.random.default_rng(1)
    for name, level in [(f"dark/dark-{i}", 60) for i in range(8)] + [(f"light/light-{i}", 190) for i in range(8)] \
            + [("light/wrong", 60)]:  # a dark image filed as light: the audit finds it, pruning drops it
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(level + rng.normal(0, 20, (32, 32, 3)), 0, 255).astype(np.uint8)).save(
            source / f"{name}.png")
    config = load_config(None, tiny_config_overrides(source, **{
        "train.epochs": 3, "train.learning_rate": 0.01, "train.fine_tune_epochs": 0, "data.val_fraction": 0.25,
        "train.label_noise": "prune", "train.label_noise_folds": 2,
        "train.label_noise_rounds": 2}))
    run = Path(train(config, root / "run"))
    return {"run": run, "source": source}


def test_a_pruned_run_trains_on_the_audited_manifest_and_says_so(pruned):
    from edgelabels.artifacts import RunDir

    run = RunDir(pruned["run"])
    manifest = run.dir / "audit" / "next.manifest"
    saved = yaml.safe_load(run.config_path.read_text())
    assert saved["train"]["label_noise"] == "prune"
    assert saved["data"]["manifest"] == str(manifest) and saved["data"]["source"] == str(pruned["source"])
    kept = {str(pruned["source"] / json.loads(line)["source-ref"]) for line in manifest.read_text().splitlines()}
    split = run.split
    trained_on = {str(s.path) for s in split.train + split.val + split.test}
    assert trained_on == kept
    assert str(pruned["source"] / "light" / "wrong.png") not in trained_on
    assert len(kept) >= 12  # of 17 (a tiny model's audit may list a right label or two beside the wrong one)
    how = json.loads((run.dir / "audit" / "audit.json").read_text())["how"]
    assert how["folds"] == 2 and how["rounds"] == 2  # train.label_noise_rounds: round 2 without round 1's suspects


def test_a_resumed_pruned_run_does_not_audit_again(pruned):
    from edgelabels.train.fit import train

    audit = pruned["run"] / "audit"
    before = {p: p.stat().st_mtime_ns for p in audit.rglob("*") if p.is_file()}
    config_before = (pruned["run"] / "config.yaml").read_text()
    train(None, pruned["run"], resume=True)
    assert {p: p.stat().st_mtime_ns for p in audit.rglob("*") if p.is_file()} == before
    assert (pruned["run"] / "config.yaml").read_text() == config_before
