"""conftest's slow mark comes from what a fixture does (helpers/marks.py), not from a list of fixture names."""

from __future__ import annotations

from pathlib import Path

from helpers.marks import function_makes_a_model
from helpers.runs import make_run, write_images


def main(argv):  # stands for edgelabels.cli.main: only the code that calls it is read, never run
    raise AssertionError("not called")


def _train_here(run_dir):
    from edgelabels.train.fit import train

    return train(None, run_dir)


def a_fixture_calling_a_marked_helper(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("runs") / "tiny")


def a_fixture_calling_a_module_function_that_trains(tmp_path_factory):
    return _train_here(tmp_path_factory.mktemp("runs") / "run")


def a_fixture_exporting_in_a_nested_function(tmp_path_factory):
    def export(run):
        from edgelabels.export.driver import export_run

        return export_run(run)

    return export(tmp_path_factory.mktemp("run"))


def a_fixture_running_the_train_verb(tmp_path):
    assert main(["train", str(tmp_path / "config.yaml"), "--out", str(tmp_path / "run")]) == 0


def a_fixture_running_the_benchmark_verb_on_an_export(folders: dict):
    assert main(["benchmark", "--local", str(folders["export"]), "--out", str(folders["root"])]) == 0


def a_fixture_writing_images(tmp_path: Path):
    return write_images(tmp_path / "images", per_label=2)


def test_a_fixture_that_trains_or_exports_is_slow_however_it_does_it():
    for fixture in (a_fixture_calling_a_marked_helper, a_fixture_calling_a_module_function_that_trains,
                    a_fixture_exporting_in_a_nested_function, a_fixture_running_the_train_verb):
        assert function_makes_a_model(fixture), fixture.__name__


def test_a_fixture_that_only_writes_data_or_runs_another_verb_is_not_slow():
    assert not function_makes_a_model(a_fixture_writing_images)
    assert not function_makes_a_model(a_fixture_running_the_benchmark_verb_on_an_export)  # "export" only as a key
