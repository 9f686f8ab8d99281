"""Every verb on a tiny run of every task: each answers through its one driver, or refuses in one line.

One module-scoped tiny run per task (tinycnn, one epoch, 64 px images: Rekognition's smallest; trained in this
process), then each verb as a user calls it, through `edgelabels.cli.main` (in process, no TensorFlow start-up
per verb): dataset inspect and split, evaluate, export, predict (segment for a U-Net), serve (a real server
process), benchmark against recorded answers, and tune's search space. Quality is not the point here (other
tests measure it): the point is that no verb forgets a task.
"""

from __future__ import annotations

import json

import pytest

from helpers.datasets import make_stripes_dataset
from helpers.detection import make_box_photos
from helpers.lungs import make_lung_pairs

pytestmark = pytest.mark.slow

TASK_NAMES = ("classification", "multilabel", "segmentation", "detection")
COMMON = ["model.backbone=tinycnn", "model.weights=none", "train.fine_tune_epochs=0", "train.verbose=0",
          "train.workers=1", "train.batch_size=8", "seed=1"]


def _source(task: str, root):
    from edgelabels.data.multilabel import generate_shapes

    if task == "classification":
        return make_stripes_dataset(root / "stripes", per_label=10, size=64), ["data.image_size=32", "train.epochs=1"]
    if task == "multilabel":
        return generate_shapes(root / "shapes", 48, seed=3, size=64), ["data.image_size=32", r"data.group_by=^(g\d+)_",
                                                                "train.epochs=1"]
    if task == "segmentation":
        return make_lung_pairs(root / "lungs", n=16, size=64), ["data.image_size=32", "train.epochs=1",
                                                                "train.monitor=val_dice"]
    manifest, _ = make_box_photos(root / "boxes", 24, seed=0)
    return manifest, ["data.image_size=64", "model.max_detections=10", "train.epochs=1", "augment.preset=none",
                      "train.class_weight=none"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """task -> (its data source, its trained run folder)."""
    from edgelabels.config import load_config
    from edgelabels.train.fit import train

    root = tmp_path_factory.mktemp("every-verb")
    found = {}
    for task in TASK_NAMES:
        source, extra = _source(task, root / task)
        config = load_config(None, [f"task={task}", f"data.source={source}", *COMMON, *extra])
        found[task] = (source, train(config, root / task / "run"))
    return found


def _cli(*argv) -> int:
    from edgelabels.cli import main

    return main([str(a) for a in argv])


@pytest.mark.parametrize("task", TASK_NAMES)
def test_dataset_inspect_and_split_read_every_tasks_source(task, runs, tmp_path, capsys):
    source, _ = runs[task]
    assert _cli("dataset", "inspect", source, "--json", tmp_path / "inspect.json") == 0
    assert json.loads((tmp_path / "inspect.json").read_text())["task"] == task
    assert _cli("dataset", "split", source, "--out", tmp_path / "split") == 0
    assert (tmp_path / "split" / "test.txt").read_text().strip()


@pytest.mark.parametrize("task", TASK_NAMES)
def test_evaluate_a_run_and_its_export_and_export_it(task, runs, capsys):
    _, run = runs[task]
    assert _cli("evaluate", run, "--out", run / "evaluation", "--gradcam", "0") == 0
    assert (run / "evaluation" / "metrics.json").is_file() and (run / "evaluation" / "report.html").is_file()
    assert _cli("export", run, "--parity-images", 4) == 0
    assert (run / "export" / "model.onnx").is_file()
    out = capsys.readouterr().out
    assert f"wrote {run / 'export'}" in out
    assert _cli("evaluate", run / "export", "--out", run / "export-evaluation") == 0
    assert (run / "export-evaluation" / "metrics.json").is_file()


@pytest.fixture(scope="module")
def exports(runs):
    from edgelabels.export.driver import export_run

    for task in TASK_NAMES:
        run = runs[task][1]
        if not (run / "export" / "model.onnx").is_file():
            export_run(run, parity_images=4)
    return {task: runs[task][1] / "export" for task in TASK_NAMES}


def _test_images(run, n: int = 4):
    from edgelabels.artifacts import RunDir

    return [s.path for s in RunDir(run).split.test[:n]]


@pytest.mark.parametrize("task", TASK_NAMES)
def test_the_edge_verb_answers_every_tasks_export(task, runs, exports, tmp_path, capsys):
    from edgelabels.tasks import get_task

    images = _test_images(runs[task][1])
    verb = get_task(task).edge_verb
    assert _cli(verb, exports[task], *images, "--out", tmp_path / "answers") == 0
    assert any((tmp_path / "answers").rglob("*")), f"{verb} wrote nothing"
    if verb != "predict":  # a U-Net export: predict refuses it in one line, naming its verb
        assert _cli("predict", exports[task], images[0]) == 2
        assert f"edgelabels {verb}" in capsys.readouterr().err


@pytest.mark.parametrize("task", TASK_NAMES)
def test_serve_answers_detect_custom_labels_or_refuses_the_export(task, runs, exports, tmp_path):
    from helpers.server import ServerProcess, rekognition_client

    from edgelabels.tasks import get_task

    if get_task(task).edge_verb != "predict":
        assert _cli("serve", exports[task], "--port", 1) == 2  # refused before any port is opened
        return
    server = ServerProcess(exports[task], "--no-auth", log_path=tmp_path / "serve.log")
    try:
        client = rekognition_client(server.url)
        image = _test_images(runs[task][1], 1)[0].read_bytes()
        answer = client.detect_custom_labels(ProjectVersionArn=server.arn, Image={"Bytes": image}, MinConfidence=0)
        assert isinstance(answer["CustomLabels"], list)
    finally:
        server.stop()


def _record_answers(export, images, path):
    """A recording in benchmark/responses.py's format: the export's own answers stand in for Rekognition's."""
    from edgelabels.benchmark.responses import image_key
    from edgelabels.runtime.answers import answer_images, open_edge_model

    model = open_edge_model(export)
    with open(path, "w") as f:
        for n, answer in enumerate(answer_images(model, images, min_confidence=0.0)):
            data = answer.path.read_bytes()
            f.write(json.dumps({"version": 1, "image": str(answer.path), "sha256": image_key(data),
                                "bytes": len(data), "project_version_arn": "arn:aws:rekognition:us-east-1:"
                                "111122223333:project/p/version/v/1", "timestamp": 1000.0 + n, "latency_s": 0.1,
                                "elapsed_s": 0.1, "attempts": 1, "min_confidence": 0,
                                "response": answer.response}) + "\n")
    return path


@pytest.mark.parametrize("task", TASK_NAMES)
def test_benchmark_scores_every_task_with_a_rekognition_counterpart(task, runs, exports, tmp_path, capsys):
    from edgelabels.tasks import get_task

    source, run = runs[task]
    if get_task(task).benchmarking is None:
        assert _cli("benchmark", "--test", source, "--local", exports[task], "--rekognition-responses",
                    tmp_path / "none.jsonl", "--out", tmp_path / "cmp") == 2
        assert "Rekognition" in capsys.readouterr().err and not (tmp_path / "cmp").exists()
        return
    from edgelabels.artifacts import RunDir

    every_image = [s.path for part in RunDir(run).split.parts().values() for s in part]
    recorded = _record_answers(exports[task], every_image, tmp_path / "r.jsonl")
    assert _cli("benchmark", "--test", source, "--local", exports[task], "--rekognition-responses", recorded,
                "--out", tmp_path / "cmp") == 0
    comparison = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert comparison["task"] == task


@pytest.mark.parametrize("task", TASK_NAMES)
def test_tune_builds_every_tasks_search_space_from_the_task_table(task, runs):
    from edgelabels.artifacts import RunDir
    from edgelabels.config import config_from_dict
    from edgelabels.tasks import get_task
    from edgelabels.tune.space import build_space

    config = config_from_dict(RunDir(runs[task][1]).config)
    space = build_space(config)
    searched = {d.name for d in space.searched}
    assert searched and searched <= set(get_task(task).tune_keys)
    backbone = next(d for d in space.dimensions if d.name == "backbone")
    assert set(backbone.choices) <= {"tinycnn", *get_task(task).tune_backbones}
