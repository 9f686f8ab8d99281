"""`edgelabels dataset audit` (issue 28): k folds, stratified and grouped, each a child pipeline job; every image
scored once by the fold that held it out; a resumed audit keeps its finished folds; a crop-box chain audits crops.

The trained fixtures are real audits through the CLI, tiny: 32 px grey images, tinycnn from scratch, 3 epochs of one
or two steps, 2 folds (about 15 s a fold, mostly the child's imports); the grey audit in 2 rounds (4 trainings).
"""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgelabels.artifacts import RunDir
from edgelabels.audit.folds import assign_folds
from edgelabels.cli import main
from edgelabels.data.dataset import Sample
from helpers.datasets import make_stripes_dataset

TINY = """task: classification
data:
  image_size: 32
  val_fraction: 0.25
model:
  backbone: tinycnn
  weights: none
train:
  epochs: 3
  learning_rate: 0.01
  fine_tune_epochs: 0
  batch_size: 8
  verbose: 0
  workers: 1
"""


def _samples(spec: list[tuple[str, str]]) -> list[Sample]:
    """(label, group) per image; the paths do not exist, so no two images share bytes."""
    return [Sample(Path(f"/nowhere/{i:02d}.png"), (label,), group) for i, (label, group) in enumerate(spec)]


def test_folds_hold_every_label_in_even_shares():
    # 6 "a" and 6 "b" singletons into 3 folds: each fold's share of a label grows by 1/6 per image, and an image goes
    # where its label's share is smallest (ties: fewer images, then the lower fold), so 2 "a" + 2 "b" per fold.
    samples = _samples([("a", f"a{i}") for i in range(6)] + [("b", f"b{i}") for i in range(6)])
    folds = assign_folds(samples, 3, seed=0)
    for fold in range(3):
        assert Counter(s.labels[0] for s, f in zip(samples, folds) if f == fold) == {"a": 2, "b": 2}


def test_a_group_never_spans_two_folds():
    # Group g holds 3 "a" images; 3 more "a" and 6 "b" are singletons; 2 folds. g is placed first (largest) into
    # fold 0, so the 3 single "a" go to fold 1 (share 0 < 3/6), and the "b" alternate: 3 + 3.
    samples = _samples([("a", "g")] * 3 + [("a", f"a{i}") for i in range(3)] + [("b", f"b{i}") for i in range(6)])
    folds = assign_folds(samples, 2, seed=5)
    assert folds[:3] == [folds[0]] * 3
    assert all(f != folds[0] for f in folds[3:6])
    assert Counter(f for s, f in zip(samples, folds) if s.labels[0] == "b") == {0: 3, 1: 3}


def test_rounds_stop_where_a_fold_would_train_without_every_image_of_a_label():
    # 2 "a" and 2 "b" singletons, 2 folds: each fold holds one of each and trains on the other "a" and "b".
    from edgelabels.audit.folds import untrainable
    from edgelabels.data.dataset import Dataset

    samples = _samples([("a", "a0"), ("a", "a1"), ("b", "b0"), ("b", "b1")])
    dataset = Dataset(samples, "/nowhere")
    why = untrainable(dataset, 2, 0, frozenset({str(samples[0].path)}))  # the fold holding a1 trains on a0 alone
    assert "would train without label 'a'" in why
    assert untrainable(dataset, 2, 0, frozenset()) is None


def test_a_later_rounds_folds_trained_without_other_images_are_refused_not_mixed_in(tmp_path):
    from edgelabels.audit.folds import _check_plan
    from edgelabels.errors import UserError

    plan = {"folds": 2, "seed": 0, "config": "", "images": ["a.png", "b.png"], "round": 2, "exclude": ["a.png"]}
    _check_plan(tmp_path / "folds-round-2", plan)  # written
    _check_plan(tmp_path / "folds-round-2", dict(plan))  # the same plan: resumed
    with pytest.raises(UserError, match="round 2's folds trained without other images"):
        _check_plan(tmp_path / "folds-round-2", {**plan, "exclude": ["b.png"]})


def _cli(*args) -> int:
    return main(["dataset", "audit", *map(str, args)])


def _grey(path: Path, level: int, rng) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(level + rng.normal(0, 20, (32, 32, 3)), 0, 255).astype(np.uint8)).save(path)


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    """A 2-fold, 2-round audit of 8 dark and 8 light grey images, plus a dark one filed as light (a wrong label) and
    a byte-identical copy of a light one filed as dark: 18 images, 9 per label."""
    root = tmp_path_factory.mktemp("audit")
    source, rng = root / "greys", np.random.default_rng(0)
    for i in range(8):
        _grey(source / "dark" / f"dark-{i}.png", 60, rng)
        _grey(source / "light" / f"light-{i}.png", 190, rng)
    _grey(source / "light" / "wrong.png", 60, rng)
    shutil.copy(source / "light" / "light-0.png", source / "dark" / "copy.png")
    (root / "tiny.yaml").write_text(TINY)
    code = _cli(source, "--config", root / "tiny.yaml", "--folds", 2, "--rounds", 2, "--out", root / "out",
                "--apply", "relabel", "--min-confidence", 0.8)
    assert code == 0
    return {"root": root, "source": source, "out": root / "out"}


def _fold_runs(out: Path, folder: str = "folds") -> list[RunDir]:
    return [RunDir(out / folder / f"fold-{i}") for i in (1, 2)]


def _paths(samples) -> set[str]:
    return {str(s.path) for s in samples}


@pytest.mark.slow
def test_every_image_is_held_out_by_exactly_one_fold_and_trained_on_by_the_other(audited):
    images = sorted(str(p) for p in audited["source"].rglob("*.png"))
    held = [sorted(str(s.path) for s in run.split.test) for run in _fold_runs(audited["out"])]
    assert sorted(held[0] + held[1]) == images
    for run, other in zip(_fold_runs(audited["out"]), reversed(held)):
        seen = {str(s.path) for s in run.split.train + run.split.val}
        assert seen == set(other)  # trained (or validated) on the other fold only
    copy = str(audited["source"] / "dark" / "copy.png")
    original = str(audited["source"] / "light" / "light-0.png")
    assert any(copy in h and original in h for h in held)  # identical bytes: one fold, never train against test
    for h in held:  # 9 images of each label: each fold holds 4 or 5 of each
        counts = Counter(Path(p).parent.name for p in h)
        assert counts["dark"] in (4, 5) and counts["light"] in (4, 5)


@pytest.mark.slow
def test_round_two_holds_out_the_same_folds_and_trains_without_round_ones_likely_wrong_images(audited):
    out = audited["out"]
    excluded = set(json.loads((out / "folds-round-2" / "plan.json").read_text())["exclude"])
    assert str(audited["source"] / "light" / "wrong.png") in excluded  # a dark image filed as light
    for first, second in zip(_fold_runs(out), _fold_runs(out, "folds-round-2")):
        assert _paths(second.split.test) == _paths(first.split.test)  # the same held-out fold
        assert not excluded & _paths(second.split.train + second.split.val)
        held = excluded & _paths(first.split.test)
        assert held <= _paths(second.split.test)  # still scored, by the fold that never trained on it
        # round 2 trains on round 1's training and validation images less the excluded ones
        assert _paths(second.split.train + second.split.val) == _paths(first.split.train + first.split.val) - excluded
    how = json.loads((out / "audit.json").read_text())["how"]
    assert how["rounds"] == 2 and how["left_out"] == [0, len(excluded)] and len(how["round_seconds"]) == 2
    assert how["runs"] == [str(run.dir) for run in _fold_runs(out, "folds-round-2")]  # the last round's answers


def _suspects(out: Path) -> dict[str, dict]:
    with open(out / "suspects.csv", newline="") as handle:
        return {Path(r["image"]).name: r for r in csv.DictReader(handle)}


@pytest.mark.slow
def test_the_audit_finds_the_wrong_label_and_writes_the_relabelled_next_manifest(audited):
    out = audited["out"]
    record = json.loads((out / "audit.json").read_text())
    assert record["how"]["method"] == "k-fold" and record["how"]["folds"] == 2 and not record["how"]["in_sample"]
    assert len(record["how"]["fold_seconds"]) == 2 and min(record["how"]["fold_seconds"]) > 0  # the time stated
    suspects = _suspects(out)
    assert suspects["wrong.png"]["reason"] == "label likely wrong" and suspects["wrong.png"]["suggested"] == "dark"
    assert float(suspects["wrong.png"]["confidence"]) >= 0.8
    assert "duplicate with another label" in suspects["light-0.png"]["reason"] + suspects["light-0.png"]["detail"]
    lines = [json.loads(line) for line in (out / "next.manifest").read_text().splitlines()]
    labels = {line["source-ref"]: line["label-metadata"]["class-name"] for line in lines}
    assert labels["light/wrong.png"] == "dark"  # relabelled: the model's suggestion at 0.8 or more
    assert "light/light-0.png" not in labels  # a suspect without a suggestion is dropped
    unsuspected = {f"{p.parent.name}/{p.name}" for p in audited["source"].rglob("*.png") if p.name not in suspects}
    assert unsuspected <= set(labels) and all(labels[ref] == ref.split("/")[0] for ref in unsuspected)
    assert (out / "audit.html").is_file()


@pytest.mark.slow
def test_an_interrupted_audit_resumes_without_retraining_a_finished_fold(audited, capsys):
    out = audited["out"]
    first, second = _fold_runs(out)
    runs = [first, second, *_fold_runs(out, "folds-round-2")]
    trained = {run.dir: run.model_path.stat().st_mtime_ns for run in runs}
    shutil.rmtree(second.evaluation_dir)  # killed while round 1's fold 2 was being scored
    capsys.readouterr()
    code = _cli(audited["source"], "--config", audited["root"] / "tiny.yaml", "--folds", 2, "--out", out)
    shown = capsys.readouterr().out
    assert code == 0  # 2 rounds by default, as the fixture's
    assert "fold 1/2: done before" in shown and "fold 2/2: trained on" in shown
    assert "round 2, fold 1/2: done before" in shown and "round 2, fold 2/2: done before" in shown
    assert {run.dir: run.model_path.stat().st_mtime_ns for run in runs} == trained
    assert (second.evaluation_dir / "predictions.csv").is_file()
    assert "already trained" in (out / "folds" / "fold-2.log").read_text()


@pytest.mark.slow
def test_a_run_is_audited_in_sample_by_its_own_model(audited, tmp_path):
    run = _fold_runs(audited["out"])[0]
    assert _cli(run.dir, "--out", tmp_path / "quick") == 0
    record = json.loads((tmp_path / "quick" / "audit.json").read_text())
    assert record["how"]["in_sample"] is True and record["how"]["runs"] == [str(run.dir)]
    assert record["images"] == 18  # the run's whole split (train, validation and test): all 18 images


def test_bad_inputs_exit_2_with_one_line(tmp_path, capsys):
    from helpers.detection import make_box_photos, write_detector_dir

    source = make_stripes_dataset(tmp_path / "stripes", per_label=2, size=16)
    boxes, _ = make_box_photos(tmp_path / "boxes", 4, seed=0, size=32)
    several = tmp_path / "several.manifest"
    line = {"source-ref": "stripes/horizontal/p0_horizontal_0.png", "tags": [0, 1],
            "tags-metadata": {"class-map": {"0": "a", "1": "b"}, "type": "groundtruth/image-classification-multilabel"}}
    several.write_text(json.dumps(line) + "\n")
    cases = [((source, "--folds", 1), "--folds 1: must be a whole number from 2 to 20"),
             ((source, "--folds", 21), "--folds 21"),
             ((source, "--folds", 3), "label 'horizontal' has 2 images, fewer than the 3 folds"),
             ((source, "--rounds", 0), "--rounds 0: must be a whole number from 1 to 5"),
             ((source, "--rounds", 6), "--rounds 6: must be a whole number from 1 to 5"),
             ((boxes, "--rounds", 2), "--rounds 2: a detection audit has one round"),
             ((several,), "a multi-label classifier has no auditing"),
             ((source, "--method", "guess"), "--method 'guess': must be one of"),
             ((tmp_path / "missing",), "not found"),
             ((write_detector_dir(tmp_path / "export"),), "an export folder, neither data nor a run")]
    for args, expected in cases:
        capsys.readouterr()
        assert _cli(*args, "--out", tmp_path / "out") == 2, args
        err = capsys.readouterr().err.strip().splitlines()  # (the data reader's progress bar may come first)
        errors = [line for line in err if line.startswith("edgelabels: error:")]
        assert errors == err[-1:] and expected in errors[0], (args, err)


# ---------------------------------------------------------------- a chain: the crops behind a detector


def _photo(label: str, reddish: bool, rng) -> Image.Image:
    """test_crop_chain's photos: the hand-made detector finds its red box on reddish photos only."""
    pixels = np.zeros((40, 60, 3), np.uint8)
    pixels[...] = (235, 60, 60) if reddish else (40, 60, 230)
    inside = pixels[8:24, 6:24]
    inside[...] = (255, 255, 255) if label == "one" else (90, 0, 0)
    inside += rng.integers(0, 20, inside.shape, dtype=np.uint8)
    return Image.fromarray(pixels)


@pytest.mark.slow
def test_a_chain_config_audits_the_crops_and_a_photo_without_a_window_gets_no_answer(tmp_path):
    from helpers.detection import write_detector_dir

    detector = write_detector_dir(tmp_path / "detector", size=32)
    rng = np.random.default_rng(0)
    for label in ("one", "two"):
        (tmp_path / "photos" / label).mkdir(parents=True)
        for i in range(5):  # 4 reddish (a window is found), 1 bluish (none)
            _photo(label, i < 4, rng).save(tmp_path / "photos" / label / f"{label}-{i}.png")
    (tmp_path / "chain.yaml").write_text(TINY.replace("image_size: 32", "image_size: 16") + f"""detect: {detector}
crop:
  label: red
  margin: 0
  size: 16
  aspect: null
""")
    code = _cli(tmp_path / "photos", "--config", tmp_path / "chain.yaml", "--folds", 2, "--rounds", 1,
                "--out", tmp_path / "out")
    assert code == 0
    for run in _fold_runs(tmp_path / "out"):
        assert run.read_stages()[0]["kind"] == "crop-box"  # each fold trained on the crops
    with open(tmp_path / "out" / "suspects.csv", newline="") as handle:
        unanswered = {Path(r["image"]).name for r in csv.DictReader(handle) if r["reason"] == "no answer"}
    assert unanswered == {"one-4.png", "two-4.png"}


# ---------------------------------------------------------------- detection


def test_a_detection_evaluation_manifest_reads_back_as_predicted_boxes_without_its_missed_ones(tmp_path):
    from edgelabels.audit.detection import read_boxes

    def entry(class_id, left, confidence, missed=False):
        details = {"is-false-negative": missed, "is-true-positive": not missed}
        return ({"class_id": class_id, "left": left, "top": 2, "width": 10, "height": 12},
                {"confidence": confidence, "rekognition-custom-labels-evaluation-details": details})

    found = [entry(1, 5, 0.9), entry(0, 30, 0.4), entry(1, 50, 0.0, missed=True)]
    line = {"source-ref": "/data/a.png",
            "rekognition-custom-labels-evaluation": {"annotations": [a for a, _ in found]},
            "rekognition-custom-labels-evaluation-metadata": {"objects": [o for _, o in found]}}
    (tmp_path / "evaluation-manifest.jsonl").write_text(json.dumps(line) + "\n")
    # the run's labels are (blue, red); the audit's (red, blue): class 1 (red) -> 0, class 0 (blue) -> 1
    boxes = read_boxes(tmp_path / "evaluation-manifest.jsonl", ["blue", "red"], ["red", "blue"])
    assert boxes["/data/a.png"].tolist() == [[5, 2, 10, 12, 0.9, 0], [30, 2, 10, 12, 0.4, 1]]


@pytest.mark.slow
def test_a_detection_source_is_audited_box_by_box(tmp_path):
    from helpers.detection import make_box_photos

    manifest, _ = make_box_photos(tmp_path / "photos", 16, seed=0)
    sets = ["data.image_size=64", "model.backbone=tinycnn", "model.weights=none", "model.max_detections=20",
            "train.epochs=3", "train.fine_tune_epochs=0", "train.batch_size=8", "train.learning_rate=0.005",
            "train.class_weight=none", "train.verbose=0", "augment.preset=none", "data.val_fraction=0.15"]
    code = _cli(manifest, "--config", Path(__file__).parents[1] / "configs" / "bees.yaml", "--folds", 2,
                "--out", tmp_path / "out", *[arg for s in sets for arg in ("--set", s)])
    assert code == 0
    record = json.loads((tmp_path / "out" / "audit.json").read_text())
    assert record["how"]["folds"] == 2 and record["images"] == 16
    assert set(record["thresholds"]) == {"red", "blue"}  # each label's confident score, from the folds' evaluations
    reasons = {r["reason"] for r in _suspects(tmp_path / "out").values()}
    assert reasons <= {"missed label", "spurious or misplaced", "wrong label"}
