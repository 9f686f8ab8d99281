"""`edgelabels demo` (issue 15): its steps run in order, and a second run skips every step already done.

Training, evaluating, exporting (the pipeline's steps) and photo generation are replaced by recorders that leave
what the real ones leave (a run marked finished, an export folder, a generator marker): what is under test is the
demo's own logic and the pipeline's, which decide from those files what to skip. The pieces it calls are tested
in their own modules.
"""

from __future__ import annotations

import argparse
import json

import pytest

from edgelabels import demo


@pytest.fixture()
def recorded(monkeypatch):
    from edgelabels.artifacts import RunDir

    calls = []

    def generate(folder, n, seed, workers, boxes, mix=None):
        from edgelabels.data.synthetic import DEFAULT_MIX

        calls.append(("generate", folder.name, n, seed))
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "boxes.manifest").write_text("")
        (folder / "cassettes.json").write_text(json.dumps({"n": n, "seed": seed, "mix": mix or DEFAULT_MIX}))
        return {}

    def train(config, run_dir, resume=False):
        calls.append(("train", run_dir.name, config.task, config.detect and str(config.detect)))
        run = RunDir(run_dir)
        run.start(config.to_yaml())
        run.model_path.write_bytes(b"model")
        state = run.train_state(config.train.monitor)
        state.data["done"] = True
        state.save()
        return run_dir

    def verb(*argv):
        calls.append((argv[0], str(argv[1])))

    def evaluate(run_dir, options):
        calls.append(("evaluate", str(run_dir)))

    def export(run_dir, options):
        calls.append(("export", str(run_dir)))
        (run_dir / "export").mkdir(exist_ok=True)

    monkeypatch.setattr("edgelabels.data.synthetic.generate_cassettes", generate)
    monkeypatch.setattr("edgelabels.train.fit.train", train)
    monkeypatch.setattr("edgelabels.pipeline._evaluate", evaluate)
    monkeypatch.setattr("edgelabels.pipeline._export", export)
    monkeypatch.setattr(demo, "_verb", verb)
    return calls


def _args(out):
    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    return parser.parse_args(["--out", str(out), "--train-images", "30", "--detector-images", "20",
                              "--test-images", "10"])


def test_the_demo_trains_the_detector_then_the_reader_behind_it_and_skips_all_that_is_done(tmp_path, recorded):
    assert demo.run(_args(tmp_path)) == 0
    detector, reader = tmp_path / "runs" / "cassette-window", tmp_path / "runs" / "cassettes"
    assert recorded == [
        ("generate", "windows", 20, 2000), ("generate", "cassettes", 30, 0), ("generate", "fresh", 10, 1000),
        ("train", "cassette-window", "detection", None), ("export", str(detector)),
        ("train", "cassettes", "classification", str(detector)),
        ("evaluate", str(reader)), ("export", str(reader)), ("predict", str(reader / "export")),
    ]
    recorded.clear()
    assert demo.run(_args(tmp_path)) == 0
    # nothing generated, trained or exported again; the evaluation and the three predictions are shown again
    assert recorded == [("evaluate", str(reader)), ("predict", str(reader / "export"))]


def test_a_model_changed_after_its_export_is_exported_again(tmp_path, recorded):
    import os

    assert demo.run(_args(tmp_path)) == 0
    reader = tmp_path / "runs" / "cassettes"
    model = reader / "model.keras"
    later = (reader / "export").stat().st_mtime + 10
    os.utime(model, (later, later))  # the model changed after the export was written (a resumed training)
    recorded.clear()
    assert demo.run(_args(tmp_path)) == 0
    assert ("export", str(reader)) in recorded
