"""The task table is complete: every piece of every task resolves to something of the kind its verb calls."""

from __future__ import annotations

import dataclasses

import pytest

from edgelabels.tasks import STAGES, TASKS, Task, get_stage_kind, get_task
from edgelabels.errors import UserError

PIECES = ("dataset", "model", "objectives", "batches", "deal", "edge")
HOOKS = {  # task field -> the record type its verb's driver calls, "module:attribute"
    "evaluation": "edgelabels.evaluate.driver:EvaluationHooks",
    "exporting": "edgelabels.export.driver:ExportHooks",
    "benchmarking": "edgelabels.benchmark.driver:BenchmarkHooks",
    "inspection": "edgelabels.data.inspection:InspectionHooks",
    "recipe": "edgelabels.train.recipe:RecipeHooks",
    "calibrating": "edgelabels.evaluate.calibration:CalibrationHooks",
}


def _resolve(where: str):
    import importlib

    module, _, attribute = where.partition(":")
    return getattr(importlib.import_module(module), attribute)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_piece_of_every_task_resolves_to_a_callable(name):
    task = get_task(name)
    for piece in PIECES:
        assert callable(task.piece(piece)), f"{name}.{piece}"


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_verb_hook_of_every_task_is_a_record_of_its_verbs_type(name):
    task = get_task(name)
    for field, record in HOOKS.items():
        if getattr(task, field) is None:
            continue  # the verb refuses this task in one line (tested with the verb)
        hooks = task.piece(field)
        assert isinstance(hooks, _resolve(record)), f"{name}.{field} is a {type(hooks).__name__}"
        for hook in dataclasses.fields(hooks):
            value = getattr(hooks, hook.name)
            assert value is not None or hook.default is None, f"{name}.{field}.{hook.name} left unset"


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_names_its_tune_defaults_from_the_backbone_registry(name):
    from edgelabels.models.backbones import BACKBONES
    from edgelabels.tune.space import CONFIG_KEYS

    task = get_task(name)
    assert task.tune_backbones and set(task.tune_backbones) <= set(BACKBONES)
    assert "backbone" in task.tune_keys
    assert set(task.tune_keys) <= set(CONFIG_KEYS) | {"transforms", "imbalance"}


def test_only_segmentation_has_no_rekognition_counterpart_and_its_benchmark_is_refused(tmp_path):
    from helpers.server import write_unet_dir

    from edgelabels.benchmark.driver import run_benchmark

    assert [name for name, task in TASKS.items() if task.benchmarking is None] == ["segmentation"]
    unet = write_unet_dir(tmp_path / "unet")
    with pytest.raises(UserError, match="Rekognition"):
        run_benchmark(test=tmp_path, local=unet, out=tmp_path / "out", responses=tmp_path / "r.jsonl")
    assert not (tmp_path / "out").exists()


def test_every_stage_kind_resolves_and_names_a_task():
    for name, kind in STAGES.items():
        assert get_stage_kind(name) is kind
        assert kind.model_task in TASKS
        assert callable(kind.piece())


def test_an_unknown_task_is_refused_in_one_line_naming_the_choices():
    with pytest.raises(UserError, match="classification, multilabel, segmentation, detection"):
        get_task("segmentaton")


def test_a_missing_hook_is_refused_in_one_line():
    task = dataclasses.replace(get_task("segmentation"), evaluation="")
    assert isinstance(task, Task)
    with pytest.raises(UserError, match="lung U-Net has no evaluation"):
        task.piece("evaluation")
