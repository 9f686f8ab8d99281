"""Multi-label data: iterative stratification with groups, the generated set, the manifest-only source."""

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from edgelabels.config import load_config
from edgelabels.data.dataset import Dataset, Sample
from edgelabels.data.multilabel import generate_shapes, iterative_stratification, multilabel_dataset
from edgelabels.data.sources import load_dataset, parse_manifest_line
from edgelabels.data.splits import deal_by_first_label, make_split
from edgelabels.errors import UserError
from edgelabels.tasks import get_task
from edgelabels.data.multilabel import multi_hot

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "rekognition"


def _samples():
    """100 images in 25 groups of 4; 'rare' on one image in each of 10 groups, 'common' on every other image."""
    samples = []
    for i in range(100):
        labels = ("common",) if i % 2 else ("other",)
        if i % 4 == 0 and i < 40:
            labels = (*labels, "rare")
        samples.append(Sample(Path(f"/nowhere/g{i // 4:02d}_{i:03d}.png"), labels, f"g{i // 4:02d}"))
    return samples


def test_iterative_stratification_puts_a_rare_label_in_every_split_and_keeps_groups_whole():
    split = make_split(Dataset(_samples(), "fake"), test_fraction=0.2, val_fraction=0.1, seed=3,
                       deal=iterative_stratification)
    rare = {name: sum("rare" in s.labels for s in part) for name, part in split.parts().items()}
    assert rare == {"train": 7, "val": 1, "test": 2}  # 10 images: 20% test, 10% of the other 8 for validation
    groups = [{s.group for s in part} for part in split.parts().values()]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    assert len(split.test) == 20 and len(split.val) == 8  # whole groups of 4: 5 and 2


def test_a_label_on_one_image_stays_in_training():
    blocks = [[Sample(Path(f"/x/{i}.png"), ("a", "solo") if i == 0 else ("a",), str(i))] for i in range(10)]
    kept, held = iterative_stratification(blocks, 0.2, np.random.default_rng(0))
    assert any("solo" in s.labels for block in kept for s in block)
    assert len(held) == 2


def test_the_task_table_gives_multilabel_its_own_deal_and_classification_the_old_one():
    assert get_task("multilabel").piece("deal") is iterative_stratification
    assert get_task("classification").piece("deal") is deal_by_first_label


def test_generated_manifest_parses_with_the_labels_its_file_names_state(tmp_path):
    manifest = generate_shapes(tmp_path, 24, seed=5)
    dataset = load_dataset(str(manifest))
    assert len(dataset.samples) == 24 and not dataset.problems
    for s in dataset.samples:
        assert sorted(s.labels) == sorted(s.path.stem.split("_", 2)[2].split("-"))
    assert any(len(s.labels) > 1 for s in dataset.samples) and any(len(s.labels) == 1 for s in dataset.samples)


def test_multilabel_task_reads_the_manifest(tmp_path):
    manifest = generate_shapes(tmp_path / "set", 12, seed=1)
    dataset, test = multilabel_dataset(load_config(None, [f"data.source={manifest}", "task=multilabel"]))
    assert len(dataset.samples) == 12 and test is None


def test_a_folder_copy_in_two_label_folders_is_one_image_with_both_labels(tmp_path):
    from helpers.runs import make_image

    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (tmp_path / label).mkdir()
    make_image(0, rng).save(tmp_path / "cat" / "p1_both.png")
    (tmp_path / "dog" / "p1_both.png").write_bytes((tmp_path / "cat" / "p1_both.png").read_bytes())
    make_image(1, rng).save(tmp_path / "dog" / "p2_dog.png")
    dataset, _ = multilabel_dataset(load_config(None, [f"data.source={tmp_path}", "task=multilabel"]))
    assert sorted((s.path.relative_to(tmp_path).as_posix(), s.labels) for s in dataset.samples) == [
        ("cat/p1_both.png", ("cat", "dog")), ("dog/p2_dog.png", ("dog",))]


def test_classification_refuses_several_labels_and_names_the_multilabel_task(tmp_path):
    from edgelabels.data.prepare import classification_dataset

    manifest = generate_shapes(tmp_path, 12, seed=1)
    with pytest.raises(UserError, match="task: multilabel"):
        classification_dataset(load_config(None, [f"data.source={manifest}"]))


@pytest.mark.parametrize("name, labels", [
    ("manifest-classification-multilabel.jsonl", ["football", "ball"]),
    ("manifest-classification-multilabel-list-dataset-entries.jsonl", ["camellia", "with_leaves"]),
    ("manifest-classification-multilabel-update-dataset-entries.jsonl", ["mediterranean_spurge", "with_leaves"]),
])
def test_rekognition_multilabel_fixtures_parse_into_two_label_targets(name, labels):
    path = FIXTURES / name
    if not path.is_file():
        pytest.skip(f"{path} absent")
    [line] = path.read_text().splitlines()
    entry = parse_manifest_line(line)
    assert sorted(entry["labels"]) == sorted(labels)
    sample = Sample(Path("x.jpg"), tuple(entry["labels"]), "x")
    assert multi_hot([sample], sorted(labels)).tolist() == [[1.0, 1.0]]


def test_generated_set_is_independent_labels_at_their_stated_rates(tmp_path):
    manifest = generate_shapes(tmp_path, 200, seed=2, size=16)
    counts = Counter(label for line in manifest.read_text().splitlines() for label in json.loads(line)
                     if not label.endswith("-metadata") and label != "source-ref")
    # disc 0.5, square 0.4, stripes 0.25, plus the images drawn with none that get one (about 0.225 / 3 each)
    assert 95 <= counts["disc"] <= 135 and 75 <= counts["square"] <= 115 and 45 <= counts["stripes"] <= 80


def test_limit_per_label_is_refused_for_multilabel(tmp_path):
    manifest = generate_shapes(tmp_path, 4, seed=1)
    with pytest.raises(UserError, match="limit_per_label"):
        multilabel_dataset(load_config(None, [f"data.source={manifest}", "task=multilabel", "data.limit_per_label=2"]))


def test_dataset_split_deals_multi_label_images_by_iterative_stratification(tmp_path, monkeypatch):
    from edgelabels.cli import main
    from edgelabels.data import multilabel

    manifest = multilabel.generate_shapes(tmp_path / "shapes", 60, seed=3)
    calls = []
    real = multilabel.iterative_stratification
    monkeypatch.setattr(multilabel, "iterative_stratification", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert main(["dataset", "split", str(manifest), "--out", str(tmp_path / "split")]) == 0
    assert calls  # the multi-label dealer, as `train` uses for task: multilabel
    parts = {name: (tmp_path / "split" / f"{name}.txt").read_text().splitlines() for name in ("train", "val", "test")}
    assert all(parts.values()) and sum(map(len, parts.values())) == 60
