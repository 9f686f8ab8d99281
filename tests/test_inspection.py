"""`dataset inspect` and `dataset split`: one driver; the task a source holds supplies the hooks (data/inspection.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgelabels import cli
from edgelabels.data.inspection import InspectionHooks, source_task
from edgelabels.data.splits import read_split
from edgelabels.tasks import TASKS
from helpers.lungs import make_lung_pairs


def picture(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(path)
    return path


def folder_per_label(root: Path) -> Path:
    for i in range(6):
        picture(root / "cats" / f"c{i}.png", i)
        picture(root / "dogs" / f"d{i}.png", 50 + i)
    return root


def multilabel_manifest(root: Path, n: int = 30, rare: int = 10) -> Path:
    """n images labelled "common", the first `rare` of them also "rare" (listed second, so not their first label)."""
    lines = []
    for i in range(n):
        picture(root / f"{i:02d}.png", 100 + i)
        entry = {"source-ref": f"{i:02d}.png", "a": 0, "a-metadata": {"class-name": "common"}}
        if i < rare:
            entry.update({"b": 1, "b-metadata": {"class-name": "rare"}})
        lines.append(json.dumps(entry))
    (root / "labels.manifest").write_text("\n".join(lines) + "\n")
    return root / "labels.manifest"


def yolo(root: Path) -> Path:
    for i in range(6):
        picture(root / "images" / f"{i}.png", 200 + i)
        (root / "labels").mkdir(parents=True, exist_ok=True)
        (root / "labels" / f"{i}.txt").write_text(f"{i % 2} 0.5 0.5 0.5 0.5\n")
    (root / "data.yaml").write_text("names: [cat, dog]\n")
    return root


SOURCES = {"classification": folder_per_label, "multilabel": multilabel_manifest,
           "segmentation": lambda root: make_lung_pairs(root, n=8, size=48), "detection": yolo}


def test_every_task_names_an_inspection_hook_record_that_resolves():
    for task in TASKS.values():
        hooks = task.piece("inspection")
        assert isinstance(hooks, InspectionHooks), task.name
        assert callable(hooks.read) and callable(hooks.read_test) and callable(hooks.kind), task.name


@pytest.mark.parametrize("task", list(SOURCES))
def test_the_task_a_source_holds_is_told_from_its_shape(task, tmp_path):
    assert source_task(SOURCES[task](tmp_path / "source")) == task


def test_a_manifest_with_one_label_per_image_is_classification(tmp_path):
    assert source_task(multilabel_manifest(tmp_path, rare=0)) == "classification"


@pytest.mark.parametrize("task", list(SOURCES))
def test_inspect_and_split_run_on_a_tiny_source_of_each_task(task, tmp_path, capsys):
    source = SOURCES[task](tmp_path / "source")
    report = tmp_path / "inspect.json"
    assert cli.main(["dataset", "inspect", str(source), "--json", str(report)]) == 0
    document = json.loads(report.read_text())
    assert document["task"] == task and document["usable_images"] == document["images"] > 0
    assert cli.main(["dataset", "split", str(source), "--out", str(tmp_path / "splits"), "--test-fraction", "0.3",
                     "--val-fraction", "0.3"]) == 0
    split = read_split(tmp_path / "splits")
    assert sum(len(part) for part in split.parts().values()) == document["images"]
    assert all(split.parts().values())


def test_inspect_reads_an_images_and_masks_folder_as_lung_pairs_not_two_labels(tmp_path, capsys):
    source = make_lung_pairs(tmp_path / "lungs", n=6, size=48)
    (source / "images" / "extra.png").write_bytes((source / "images" / "p0-0.png").read_bytes())  # no mask
    assert cli.main(["dataset", "inspect", str(source), "--json", str(tmp_path / "r.json")]) == 0
    printed = capsys.readouterr().out
    assert f"dataset: {source} (images/ + masks/ folder)" in printed
    document = json.loads((tmp_path / "r.json").read_text())
    assert document["labels"] == {"lung": 6}
    assert [Path(p["path"]).name for p in document["problems"]] == ["extra.png"]


def test_split_of_a_mask_folder_keeps_each_patients_films_together(tmp_path, capsys):
    source = make_lung_pairs(tmp_path / "lungs", n=12, size=48)  # films pK-0 and pK-1 of patient K
    assert cli.main(["dataset", "split", str(source), "--out", str(tmp_path / "s"), "--group-by", r"^(p\d+)-"]) == 0
    split = read_split(tmp_path / "s")
    where = {s.path.name: name for name, part in split.parts().items() for s in part}
    assert len(where) == 12 and all(where[f"p{k}-0.png"] == where[f"p{k}-1.png"] for k in range(6))
    assert {s.labels for part in split.parts().values() for s in part} == {("lung",)}


def test_split_of_a_multilabel_manifest_shares_a_rare_second_label_out_by_iterative_stratification(tmp_path, capsys):
    manifest = multilabel_manifest(tmp_path)
    for seed in range(4):  # 10 "rare" images, test fraction 0.2: exactly 2 in test, whatever the seed
        out = tmp_path / f"s{seed}"
        assert cli.main(["dataset", "split", str(manifest), "--out", str(out), "--seed", str(seed),
                         "--val-fraction", "0"]) == 0
        assert sum("rare" in s.labels for s in read_split(out).test) == 2
