"""What every source (folder per label, Ground Truth manifest) turns into: samples with labels and groups."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Box:
    """A bounding box in pixels (left, top, width, height), as Ground Truth writes them."""

    label: str
    left: float
    top: float
    width: float
    height: float


@dataclass(frozen=True)
class Sample:
    path: Path
    labels: tuple[str, ...]  # image-level labels (one for single-label classification)
    group: str  # samples sharing a group (one patient) never fall in two splits
    boxes: tuple[Box, ...] = ()

    @property
    def label(self) -> str:
        """The single label of a single-label sample."""
        return self.labels[0]


@dataclass(frozen=True)
class Problem:
    path: str
    problem: str

    def to_json(self) -> dict:
        return {"path": self.path, "problem": self.problem}


@dataclass
class Dataset:
    samples: list[Sample]
    source: str  # the folder or manifest it was read from
    problems: list[Problem] = field(default_factory=list)  # skipped lines/files, each with a reason
    unlabelled: list[Path] = field(default_factory=list)  # images outside any label folder
    given_split: dict[str, list[Sample]] | None = None  # a source's own train/val/test (a YOLO folder's)

    @property
    def label_names(self) -> list[str]:
        return sorted({label for s in self.samples for label in s.labels})

    @property
    def label_counts(self) -> dict[str, int]:
        counts = Counter(label for s in self.samples for label in s.labels)
        return {name: counts[name] for name in sorted(counts)}

    @property
    def groups(self) -> set[str]:
        return {s.group for s in self.samples}

    def __len__(self) -> int:
        return len(self.samples)
