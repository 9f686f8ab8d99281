"""A tiny multi-label run trains, evaluates, exports and answers with several labels (tinycnn, 32 px, ~12 s)."""

import json

import numpy as np
import pytest

from edgelabels.config import load_config
from edgelabels.data.multilabel import generate_shapes

@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from edgelabels.train.fit import train

    root = tmp_path_factory.mktemp("ml")
    manifest = generate_shapes(root / "set", 200, seed=7)
    config = load_config(None, [
        "task=multilabel", f"data.source={manifest}", "data.image_size=32", r"data.group_by=^(g\d+)_",
        "data.val_fraction=0.2", "model.backbone=tinycnn", "model.weights=none", "train.epochs=12",
        "train.fine_tune_epochs=0", "train.batch_size=16", "train.learning_rate=0.003", "train.verbose=0",
        "train.workers=1", "seed=1"])
    return train(config, root / "run")


def test_run_trains_a_sigmoid_model_whose_checkpoint_reads_back_compiled(run):
    from edgelabels.artifacts import RunDir
    from edgelabels.models.factory import load_model

    model = load_model(RunDir(run).last_path, compile=True)  # what --resume loads
    assert model.layers[-1].activation.__name__ == "sigmoid"
    assert type(model.loss).__name__ == "MultilabelLoss"
    groups = {name: {s.group for s in part} for name, part in RunDir(run).split.parts().items()}
    assert not groups["train"] & groups["test"]


def test_evaluate_export_and_predict_give_several_labels(run, tmp_path):
    from edgelabels.artifacts import RunDir
    from edgelabels.evaluate.driver import evaluate_model
    from edgelabels.export.driver import export_run
    from edgelabels.runtime.predictor import Predictor

    report = export_run(run)
    assert report["task"] == "multilabel" and set(report["thresholds"]["values"]) == {"disc", "square", "stripes"}
    result = evaluate_model(run / "export", out=tmp_path / "evaluation", progress=False, review_threshold=0.2)
    summary = json.loads((tmp_path / "evaluation" / "summary.json").read_text())
    assert sorted(r["Label"] for r in summary["LabelEvaluationResults"]) == ["disc", "square", "stripes"]
    assert result["metrics"]["at_given_thresholds"]["macro_f1"] >= 0.8
    assert (tmp_path / "evaluation" / "review" / "queue.csv").is_file()

    predictor = Predictor(run / "export")
    test = RunDir(run).split.test
    answers = predictor.detect_many([s.path for s in test])
    sizes = [len(a["CustomLabels"]) for a in answers]
    assert max(sizes) >= 2  # some test image is answered with two labels or more
    single = [n for s, n in zip(test, sizes) if len(s.labels) == 1]
    assert np.mean([n == 1 for n in single]) >= 0.8
