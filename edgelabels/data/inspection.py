"""What differs per task when `dataset inspect` and `dataset split` read and show a source: one hook record each.

data/command.py is the one driver of both actions. It asks `source_task` once which task a source holds (boxes,
in a manifest, a YOLO folder or data.yaml, a Pascal VOC folder or a COCO file: detection; images/ + masks/:
segmentation; a manifest with several labels on an image: multilabel; else classification), takes that task's
record from the task table (`get_task(name).piece("inspection")`), and from then on only calls the record's
hooks: how the task reads a source (and a separate test source), what it calls the source, what it adds to the
report, the split table's extra columns and which files the split writes. The split itself deals images out with
the task's own `deal`, as training does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edgelabels.data.dataset import Dataset, Sample
from edgelabels.data.splits import BOXES, SPLIT_NAMES
from edgelabels.errors import UserError

SPLIT_FILES = ", ".join(f"{name}.txt" for name in SPLIT_NAMES)
HISTOGRAM = "box-sizes.png"


@dataclass(frozen=True)
class SourceOptions:
    """What the command line says about a source besides its path (each reader takes what applies to it)."""

    manifest: str | None = None
    s3_root: str | None = None
    group_by: str | None = None
    class_names: tuple[str, ...] = ()


@dataclass(frozen=True)
class InspectionHooks:
    read: Callable[[str | None, SourceOptions], Dataset]  # the source (or --manifest), unusable entries listed
    read_test: Callable[[str, SourceOptions], Dataset]  # a separate test source (`split --test-source`)
    kind: Callable[[Dataset], str]  # what the source is, for the report's first line
    # (dataset, show, plots folder or None) -> extra JSON report entries; prints its own summary lines
    report: Callable[[Dataset, int, Path | None], dict] = lambda dataset, show, folder: {}
    columns: tuple[tuple[str, Callable[[list[Sample]], int]], ...] = ()  # split table columns after the labels
    notes: str | None = None  # title of the reader's own decisions printed before a split; None: not printed
    files: str = SPLIT_FILES  # what the split writes, as the last line says it


def source_task(source, manifest=None) -> str:
    """The task a source holds, from its shape; the one place `dataset inspect|split` decides it."""
    from edgelabels.data.detection import is_detection_source
    from edgelabels.data.masks import is_mask_folder
    from edgelabels.data.multilabel import manifest_has_several_labels

    if is_detection_source(source, manifest):
        return "detection"
    if manifest is None and source is not None and is_mask_folder(source):
        return "segmentation"
    if manifest_has_several_labels(manifest or source):
        return "multilabel"
    return "classification"


# ---------------------------------------------------------------- classification and multilabel


def _read_labelled(source, options: SourceOptions) -> Dataset:
    from edgelabels.data.sources import load_dataset

    if source is None and options.manifest is None:
        raise UserError("no dataset given: pass SOURCE (a folder per label or a manifest) or --manifest FILE")
    return load_dataset(source, manifest=options.manifest, s3_root=options.s3_root, group_by=options.group_by)


def _read_labelled_test(source, options: SourceOptions) -> Dataset:
    from edgelabels.data.sources import load_dataset

    return load_dataset(source, s3_root=options.s3_root, group_by=options.group_by)


def _folder_or_manifest(dataset: Dataset) -> str:
    return "folder per label" if Path(dataset.source).is_dir() else "Ground Truth manifest"


CLASSIFICATION = InspectionHooks(read=_read_labelled, read_test=_read_labelled_test, kind=_folder_or_manifest)
MULTILABEL = InspectionHooks(read=_read_labelled, read_test=_read_labelled_test,
                             kind=lambda dataset: _folder_or_manifest(dataset) + ", several labels per image")


# ---------------------------------------------------------------- segmentation


def _read_masks(source, options: SourceOptions) -> Dataset:
    from edgelabels.data.masks import load_mask_pairs

    return load_mask_pairs(source, group_by=options.group_by)


SEGMENTATION = InspectionHooks(read=_read_masks, read_test=_read_masks, kind=lambda dataset: "images/ + masks/ folder",
                               notes="left out (no mask, or a mask that does not fit its image)")


# ---------------------------------------------------------------- detection


def _read_boxes(source, options: SourceOptions) -> Dataset:
    from edgelabels.data.detection import load_detection_dataset

    if options.manifest:
        return load_detection_dataset(options.manifest, root=source, **_box_options(options))
    return load_detection_dataset(source, **_box_options(options))


def _read_boxes_test(source, options: SourceOptions) -> Dataset:
    from edgelabels.data.detection import is_detection_source, load_detection_dataset

    if not is_detection_source(source):  # refuses a test source without boxes, whatever its task
        raise UserError(f"{source}: not a detection source (a manifest with boxes, a YOLO folder or data.yaml, a "
                        "Pascal VOC folder or a COCO .json file); the dataset to split has boxes, so its test source "
                        "needs them too")
    return load_detection_dataset(source, **_box_options(options))


def _box_options(options: SourceOptions) -> dict:
    return {"class_names": options.class_names, "s3_root": options.s3_root, "group_by": options.group_by}


def _box_source_kind(dataset: Dataset) -> str:
    from edgelabels.data.detection import folder_kind, is_coco

    path = Path(dataset.source)
    split = dataset.given_split
    kind = folder_kind(path)
    if kind is not None or path.is_dir():
        return (kind or "YOLO folder") + (f", its own splits {' '.join(f'{k} {len(v)}' for k, v in split.items())}"
                                          if split else "")
    return "COCO file" if is_coco(path) else "Ground Truth object-detection manifest"


def _box_report(dataset: Dataset, show: int, folder: Path | None) -> dict:
    """Print box statistics, write the box-size histogram; the statistics for the JSON report."""
    from edgelabels.data.detection import box_statistics, plot_box_sizes

    stats = box_statistics(dataset)
    per_image = stats["boxes_per_image"]
    print(f"boxes: {stats['boxes']} on {stats['images']} images; per image {per_image['min']} min, "
          f"{per_image['median']:g} median, {per_image['max']} max")
    width = max(len(name) for name in stats["boxes_per_label"])
    for name, count in stats["boxes_per_label"].items():
        print(f"  {name:<{width}}  {count:>7} boxes")
    base = source_folder(dataset)
    print("\n".join(section("images without boxes (negatives)",
                            [relative(p, base) for p in stats["images_without_boxes"]], show)))
    if folder is None:
        print("box-size histogram: not written (pass --plots DIR or --json FILE)")
    else:
        stats["histogram"] = str(plot_box_sizes(stats, Path(folder) / HISTOGRAM))
        print(f"box-size histogram written to {stats['histogram']}")
    return {"detection": stats}


DETECTION = InspectionHooks(read=_read_boxes, read_test=_read_boxes_test, kind=_box_source_kind, report=_box_report,
                            columns=(("no boxes", lambda samples: sum(not s.labels for s in samples)),),
                            notes="box notes (handled; `dataset inspect` lists them all)",
                            files=f"{SPLIT_FILES} and {BOXES}")


# ---------------------------------------------------------------- printing, shared by every task's report


def section(title: str, items: list[str], show: int, total: int | None = None, detail: str = "") -> list[str]:
    """'title: N' and the first `show` items, or 'title: none'."""
    total = len(items) if total is None else total
    if not total:
        return [f"{title}: none"]
    lines = [f"{title}: {total}{detail}"] + [f"  {item}" for item in items[:show]]
    if total > show:
        lines.append(f"  ... and {total - min(show, len(items))} more")
    return lines


def source_folder(dataset: Dataset) -> Path:
    """The folder a dataset's paths are shown relative to: the source itself, or the file's folder."""
    return Path(dataset.source) if Path(dataset.source).is_dir() else Path(dataset.source).parent


def relative(path, base: Path) -> str:
    """A path (or MANIFEST:LINE) shown relative to the dataset folder when it lies inside it."""
    path = str(path)
    head, sep, line = path.rpartition(":")
    if not (sep and line.isdigit()):
        head, sep, line = path, "", ""
    shown = os.path.relpath(head, base)
    return path if shown.startswith("..") else shown + sep + line
