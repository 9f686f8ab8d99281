"""benchmarks/repeat.py: one run per seed, each evaluated on its test split; figures per seed and over the seeds;
a repeat run again reuses what is done."""

import importlib.util
import json

import numpy as np
import pytest

from edgelabels.config import AUTO_KEYS, auto_keys, load_config
from helpers.datasets import REPO, make_stripes_dataset, tiny_config_overrides


def _repeat_module():
    spec = importlib.util.spec_from_file_location("repeat", REPO / "benchmarks" / "repeat.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_source_repeats_with_every_recipe_key_auto_and_a_config_as_written(tmp_path):
    repeat = _repeat_module()
    source = make_stripes_dataset(tmp_path / "data", per_label=2)
    (tmp_path / "out").mkdir()
    written = repeat._config_path(source, tmp_path / "out")
    config = load_config(written)
    assert config.data.source == str(source.resolve())
    assert auto_keys(config) == list(AUTO_KEYS)
    mine = tmp_path / "mine.yaml"
    mine.write_text("task: classification\n")
    assert repeat._config_path(mine, tmp_path / "out") == mine


def test_figures_read_a_number_or_an_intervals_value_and_none_where_undefined():
    repeat = _repeat_module()
    assert repeat.figure({"at_assumed_thresholds": {"average_recall": 0.5}},
                         ("at_assumed_thresholds", "average_recall")) == 0.5
    assert repeat.figure({"dice": {"value": 0.9, "low": 0.8, "high": 0.95}}, ("dice",)) == 0.9
    assert repeat.figure({"roc_auc_macro": None}, ("roc_auc_macro",)) is None
    assert repeat.figure({}, ("map_50",)) is None


@pytest.mark.slow
def test_two_seeds_are_trained_evaluated_and_summarised_and_a_repeat_again_reuses_them(tmp_path):
    repeat = _repeat_module()
    source = make_stripes_dataset(tmp_path / "data", per_label=12)
    config = tmp_path / "tiny.yaml"
    config.write_text(load_config(None, tiny_config_overrides(source)).to_yaml())
    out = tmp_path / "out"
    table = repeat.repeat(config, [0, 1], out)

    assert table["task"] == "classification" and table["figures"] == ["accuracy", "AUC", "F1"]
    assert [r["seed"] for r in table["seeds"]] == [0, 1]
    for record in table["seeds"]:
        assert load_config(out / f"seed-{record['seed']}" / "config.yaml").seed == record["seed"]
        metrics = json.loads((out / f"seed-{record['seed']}" / "evaluation" / "metrics.json").read_text())
        assert record["figures"]["accuracy"] == pytest.approx(metrics["accuracy"]["value"]
                                                              if isinstance(metrics["accuracy"], dict)
                                                              else metrics["accuracy"])
        assert record["wall_s"] > 0 and record["train_s"] > 0
    accuracies = [r["figures"]["accuracy"] for r in table["seeds"]]
    assert table["summary"]["accuracy"] == pytest.approx({"mean": np.mean(accuracies), "median": np.median(accuracies),
                                                         "min": min(accuracies), "max": max(accuracies), "n": 2})
    assert json.loads((out / "repeat.json").read_text()) == json.loads(json.dumps(table))
    shown = (out / "repeat.md").read_text()
    assert "| seed | accuracy | AUC | F1 | wall s | train s |" in shown and "| median |" in shown

    # Seed 1 as if interrupted after its training: evaluated again, not trained again; seed 0 reused as it was.
    trained = {seed: (out / f"seed-{seed}" / "model.keras").stat().st_mtime_ns for seed in (0, 1)}
    (out / "seed-1.json").unlink()
    again = repeat.repeat(config, [0, 1], out)
    assert again["seeds"][0] == table["seeds"][0]
    assert again["seeds"][1]["figures"] == table["seeds"][1]["figures"]
    assert {seed: (out / f"seed-{seed}" / "model.keras").stat().st_mtime_ns for seed in (0, 1)} == trained
