"""Grouped, stratified, seeded splits and their file lists."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgelabels.data.dataset import Dataset, Sample
from edgelabels.data.sources import load_dataset
from edgelabels.data.splits import Split, check_no_leak, make_split, read_split, write_split
from edgelabels.errors import UserError


def make_patients(root: Path, patients: int = 40, seed: int = 0) -> Path:
    """Two labels; patient pK has 1-4 images, all of one label; a few byte-identical copies across patients."""
    rng = np.random.default_rng(seed)
    n = 0
    for patient in range(patients):
        label = "sick" if patient % 3 else "well"
        for k in range(int(rng.integers(1, 5))):
            folder = root / label
            folder.mkdir(parents=True, exist_ok=True)
            pixels = np.random.default_rng(n).integers(0, 256, (8, 8), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"p{patient}_img{k}.png")
            n += 1
    # The same file filed under two patients: must not end up in two splits either.
    for a, b in ((1, 2), (4, 5), (7, 8)):
        label = "sick" if a % 3 else "well"
        (root / label / f"p{b}_copy.png").write_bytes((root / label / f"p{a}_img0.png").read_bytes())
    return root


@pytest.fixture
def patients(tmp_path) -> Dataset:
    return load_dataset(make_patients(tmp_path / "patients"), group_by=r"^(p\d+)_")


def where(split: Split) -> dict[str, str]:
    return {str(s.path): name for name, part in split.parts().items() for s in part}


def test_no_group_is_in_two_splits(patients):
    for seed in range(5):
        split = make_split(patients, seed=seed)
        homes = {}
        for name, part in split.parts().items():
            for s in part:
                assert homes.setdefault(s.group, name) == name, f"{s.group} in {homes[s.group]} and {name}"


def test_byte_identical_copies_stay_in_one_split_even_across_groups(patients):
    for seed in range(5):
        place = where(make_split(patients, seed=seed))
        for a, b in ((1, 2), (4, 5), (7, 8)):
            label = "sick" if a % 3 else "well"
            root = Path(patients.source) / label
            assert place[str(root / f"p{a}_img0.png")] == place[str(root / f"p{b}_copy.png")]
            # ... which pulls the two patients together as well
            assert place[str(root / f"p{a}_img0.png")] == place[str(next(root.glob(f"p{b}_img0.png")))]


def test_every_image_lands_in_exactly_one_split(patients):
    split = make_split(patients, seed=3)
    paths = [str(s.path) for part in split.parts().values() for s in part]
    assert sorted(paths) == sorted(str(s.path) for s in patients.samples)


def test_each_label_is_held_out_near_the_fraction(tmp_path):
    # Ungrouped, 200 + 50 images: 20% test, then 10% of the rest for validation, per label.
    samples = [Sample(tmp_path / f"{label}{i}.png", (label,), f"{label}{i}")
               for label, n in (("a", 200), ("b", 50)) for i in range(n)]
    split = make_split(Dataset(samples, "mem"), seed=0)
    counts = {name: Counter(s.label for s in part) for name, part in split.parts().items()}
    assert counts["test"] == {"a": 40, "b": 10}
    assert counts["val"] == {"a": 16, "b": 4}
    assert counts["train"] == {"a": 144, "b": 36}


def test_a_label_with_a_single_image_stays_in_training(tmp_path):
    samples = [Sample(tmp_path / f"a{i}.png", ("a",), f"a{i}") for i in range(20)]
    samples.append(Sample(tmp_path / "rare.png", ("rare",), "rare"))
    for seed in range(10):
        split = make_split(Dataset(samples, "mem"), seed=seed)
        assert [s.label for s in split.train].count("rare") == 1


def test_same_seed_gives_identical_files_and_another_seed_differs(patients, tmp_path):
    write_split(make_split(patients, seed=7), tmp_path / "one")
    reordered = Dataset(list(reversed(patients.samples)), patients.source)
    write_split(make_split(reordered, seed=7), tmp_path / "two")
    write_split(make_split(patients, seed=8), tmp_path / "three")
    for name in ("train", "val", "test"):
        assert (tmp_path / "one" / f"{name}.txt").read_bytes() == (tmp_path / "two" / f"{name}.txt").read_bytes()
    assert (tmp_path / "one" / "test.txt").read_bytes() != (tmp_path / "three" / "test.txt").read_bytes()


def test_split_files_round_trip_with_path_label_group_lines(patients, tmp_path):
    split = make_split(patients, seed=1)
    write_split(split, tmp_path / "splits")
    first = (tmp_path / "splits" / "train.txt").read_text().splitlines()[0].split("\t")
    assert len(first) == 3 and Path(first[0]).is_absolute() and first[1] in ("sick", "well")
    again = read_split(tmp_path / "splits")
    for name in ("train", "val", "test"):
        assert [(s.path, s.labels, s.group) for s in getattr(again, name)] == \
            [(s.path, s.labels, s.group) for s in getattr(split, name)]
    assert sorted(p.name for p in (tmp_path / "splits").iterdir()) == ["test.txt", "train.txt", "val.txt"]


def test_multi_label_samples_are_written_with_comma_joined_labels(tmp_path):
    split = Split([Sample(tmp_path / "x.png", ("camellia", "with_leaves"), "g1")], [], [])
    write_split(split, tmp_path)
    assert (tmp_path / "train.txt").read_text() == f"{tmp_path / 'x.png'}\tcamellia,with_leaves\tg1\n"
    assert read_split(tmp_path).train[0].labels == ("camellia", "with_leaves")


def test_missing_or_corrupt_split_file_is_a_user_error(patients, tmp_path):
    with pytest.raises(UserError, match=r"train\.txt: split file not found"):
        read_split(tmp_path / "nothing")
    write_split(make_split(patients, seed=1), tmp_path / "s")
    with open(tmp_path / "s" / "val.txt", "a") as f:
        f.write("just-a-path.png\n")
    with pytest.raises(UserError, match=r"val\.txt:\d+: expected path<TAB>label<TAB>group"):
        read_split(tmp_path / "s")


def test_separate_test_dataset_only_carves_validation(patients, tmp_path):
    test_root = tmp_path / "test"
    for label, seed in (("sick", 1000), ("well", 1001)):
        (test_root / label).mkdir(parents=True)
        Image.fromarray(np.random.default_rng(seed).integers(0, 256, (8, 8), dtype=np.uint8)).save(
            test_root / label / f"t{seed}.png")
    test = load_dataset(test_root)
    split = make_split(patients, test_dataset=test, val_fraction=0.1, seed=0)
    assert sorted(s.path for s in split.test) == sorted(s.path for s in test.samples)
    assert len(split.train) + len(split.val) == len(patients)
    assert 0 < len(split.val) < len(patients) * 0.2


def test_test_dataset_sharing_an_image_with_training_is_a_user_error(patients, tmp_path):
    leaked = next(s for s in patients.samples if s.label == "well")
    (tmp_path / "test" / "well").mkdir(parents=True)
    (tmp_path / "test" / "sick").mkdir(parents=True)
    (tmp_path / "test" / "well" / "renamed.png").write_bytes(leaked.path.read_bytes())
    other = next(s for s in patients.samples if s.label == "sick")
    Image.open(other.path).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(tmp_path / "test" / "sick" / "f.png")
    test = load_dataset(tmp_path / "test")
    with pytest.raises(UserError, match=r"byte-identical to test image .*renamed\.png"):
        make_split(patients, test_dataset=test)
    same_path = Dataset([leaked, other], "t")
    with pytest.raises(UserError, match=r"in both the training and the test split"):
        make_split(patients, test_dataset=same_path)


def test_test_label_unknown_to_training_is_a_user_error(patients, tmp_path):
    (tmp_path / "t" / "sick").mkdir(parents=True)
    (tmp_path / "t" / "alien").mkdir(parents=True)
    for i, label in enumerate(("sick", "alien")):
        Image.fromarray(np.full((8, 8), 7 + i, np.uint8)).save(tmp_path / "t" / label / f"z{i}.png")
    with pytest.raises(UserError, match=r"test label 'alien' has no training image"):
        make_split(patients, test_dataset=load_dataset(tmp_path / "t"))


def test_group_shared_between_train_and_test_is_a_user_error(tmp_path):
    a, b = (Sample(tmp_path / f"{n}.png", ("x",), "patient7") for n in "ab")
    with pytest.raises(UserError, match=r"group 'patient7' has images in training and in test"):
        check_no_leak(Split([a], [], [b]))


@pytest.mark.parametrize("kwargs", [{"test_fraction": 1.0}, {"val_fraction": -0.1}, {"test_fraction": 1.5}])
def test_fractions_outside_0_to_1_are_user_errors(patients, kwargs):
    with pytest.raises(UserError, match=r"must be at least 0 and below 1"):
        make_split(patients, **kwargs)


def test_zero_test_fraction_keeps_everything_for_training_and_validation(patients):
    split = make_split(patients, test_fraction=0.0, seed=0)
    assert split.test == [] and len(split.train) + len(split.val) == len(patients)
