"""Test folders for the benchmark tests: one colour per label, so a local model and a "Rekognition" can be scored."""

from __future__ import annotations

from pathlib import Path

from helpers.server import image_bytes

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (40, 50, 210)}


def make_test_folder(root: Path, per_label: int = 4, colours=COLOURS) -> Path:
    for label, colour in colours.items():
        (root / label).mkdir(parents=True)
        for i in range(per_label):
            (root / label / f"{label}{i}.png").write_bytes(image_bytes(colour, size=(80, 72), seed=i))
    return root


def image_paths(folder: Path) -> list[Path]:
    return sorted(folder.glob("*/*.png"))
