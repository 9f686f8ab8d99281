"""The audit's suspects: images (or boxes) whose label is likely wrong, each with a reason, in one ranked list.

`label_suspects` turns a task's out-of-sample predictions into suspects with confident learning
(evaluate/label_issues.py); audit/checks.py adds what the images themselves show (unreadable, blank, duplicates
with another label); `rank_suspects` merges both into one list, worst first; `next_manifest` writes the dataset's
next version without them (prune) or with the model's suggestion where it is confident (relabel).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from edgelabels import atomic
from edgelabels.audit.driver import Predictions
from edgelabels.data.sources import CLASSIFICATION, DETECTION
from edgelabels.evaluate import label_issues as cl

UNREADABLE, BLANK = "unreadable", "blank"
DUPLICATE, NEAR_DUPLICATE = "duplicate with another label", "near-duplicate with another label"
LIKELY_WRONG, NO_ANSWER = "label likely wrong", "no answer"
MISSED, SPURIOUS, WRONG_LABEL = cl.MISSED, cl.SPURIOUS, cl.WRONG_LABEL
# Worst first, the order a person should look in (rank_suspects). An image no model can read, or a blank one, is
# certainly unusable and takes no judgement; two identical images with two labels prove one label wrong (or the
# labels ambiguous) without any model; near-identical ones almost as surely. Then the model's verdicts, most
# confidently contradicted first (label quality ascending, comparable across the kinds). Last, the images the model
# did not answer at all: they say something about the image or the chain (no result window), nothing about the label.
REASONS = (UNREADABLE, BLANK, DUPLICATE, NEAR_DUPLICATE, LIKELY_WRONG, WRONG_LABEL, MISSED, SPURIOUS, NO_ANSWER)
BANDS = {UNREADABLE: 0, BLANK: 1, DUPLICATE: 2, NEAR_DUPLICATE: 3, LIKELY_WRONG: 4, WRONG_LABEL: 4, MISSED: 4,
         SPURIOUS: 4, NO_ANSWER: 5}
# Reasons after which an image is fit to keep under a confident suggestion (relabel); unreadable and blank never.
RELABELLABLE = (LIKELY_WRONG, DUPLICATE, NEAR_DUPLICATE)

# prune_by_class: measured on tests/test_label_issues.noisy_readings (3,000 readings, 40% wrong as users err), mean
# of 3 seeds. Out-of-fold probabilities 98.4% right: PBNR precision .994 recall .927, PBC .977 / .957; 93.7% right:
# PBNR .969 / .881, PBC .932 / .939 (88.5%: PBNR .922 / .836, PBC .874 / .905). PBNR's recall is the first to fall
# below the issue's 0.90 as the models get worse, and k-fold models trained on 40% wrong labels are the worse kind;
# a wrong label missed stays in the training set, a right one listed costs a look (or one image under prune).
DEFAULT_METHOD = "prune_by_class"
JOB_NAME = "edgelabels-audit"
CLASSIFICATION_ATTRIBUTE, DETECTION_ATTRIBUTE = "label", "bounding-box"


@dataclass(frozen=True)
class Suspect:
    image: Path
    given: str | None
    suggested: str | None
    confidence: float | None  # the suggestion's probability (or the confident box's score)
    reason: str
    detail: str = ""  # e.g. "near-identical to photos/x.jpg (labelled negative), 3 bits of 256 apart"
    quality: float | None = None  # label quality 0-1, lower = worse, where a model judged the label
    box: tuple | None = None  # detection: (left, top, width, height) in pixels of the suspect box
    rank: int = 0  # 1 = look first; set by rank_suspects


def label_suspects(predictions: Predictions, method: str = DEFAULT_METHOD) -> tuple[list[Suspect], dict]:
    """The model's suspects (not ranked against the image checks yet) and the summary of what it estimated."""
    if predictions.probs is None:  # a detector's boxes, not one probability row per image
        return _box_suspects(predictions)
    labels, paths = predictions.labels, predictions.paths
    given = np.asarray(predictions.given, dtype=np.int64).reshape(-1)
    probs = np.asarray(predictions.probs, dtype=np.float64)
    answered = np.flatnonzero(probs.any(axis=1))
    suspects = [Suspect(Path(paths[i]), labels[given[i]], None, None, NO_ANSWER,
                        "the model gave no answer (e.g. no result window found): the label was not judged")
                for i in np.flatnonzero(~probs.any(axis=1))]
    summary = {"task": predictions.task, "method": method, "images": len(paths), "judged": len(answered),
               "not_answered": len(paths) - len(answered), "estimated_count": 0, "estimated_share": None,
               "thresholds": {}, "noise_matrix": None,
               "estimate": "confident learning's count (n times the off-diagonal mass of the calibrated joint) over "
                           "the images the model answered"}
    if len(answered):
        issues = cl.find_label_issues(given[answered], probs[answered], method)
        for row in issues.rows():
            i = answered[row["index"]]
            g, s = row["given"], row["suggested"]
            suspects.append(Suspect(Path(paths[i]), labels[g], labels[s], row["confidence"], LIKELY_WRONG,
                                    f"model: {labels[s]} {probs[i, s]:.1%}, {labels[g]} {probs[i, g]:.1%}",
                                    row["quality"]))
        summary.update(
            estimated_count=issues.estimated_count, estimated_share=issues.estimated_count / len(answered),
            thresholds={name: None if np.isinf(t) else float(t) for name, t in zip(labels, issues.thresholds)},
            noise_matrix={"labels": list(labels), "rows": "given", "columns": "true",
                          "p_given_if_true": np.round(issues.noise_matrix, 6).tolist()})
    summary["counts"] = reason_counts(suspects)
    return suspects, summary


def _box_suspects(predictions: Predictions) -> tuple[list[Suspect], dict]:
    """Detection: box_issues over every image; a suspect's box in pixels (left, top, width, height) as drawn or as
    predicted; quality = 1 - the issue's score, so that one order serves both tasks."""
    labels, paths = predictions.labels, predictions.paths
    thresholds = predictions.thresholds or {}
    suspects = []
    for issue in cl.box_issues(predictions.given, predictions.boxes, labels, thresholds):
        drawn = predictions.given[issue.image][1]
        box = np.asarray(drawn if issue.kind != MISSED else predictions.boxes[issue.image], np.float64)[issue.box, :4]
        given = None if issue.given is None else labels[issue.given]
        suggested = None if issue.suggested is None else labels[issue.suggested]
        detail = {MISSED: f"a confident {suggested} box ({issue.score:.1%}) where nothing is drawn",
                  SPURIOUS: f"no {given} box found over it (best IoU {1 - issue.score:.2f})",
                  WRONG_LABEL: f"a confident {suggested} box ({issue.score:.1%}) over this {given} box"}[issue.kind]
        suspects.append(Suspect(Path(paths[issue.image]), given, suggested,
                                None if issue.kind == SPURIOUS else issue.score, issue.kind, detail,
                                1.0 - issue.score, tuple(round(float(v), 2) for v in box)))
    summary = {"task": predictions.task, "method": f"box matching at IoU {cl.IOU}", "images": len(paths),
               "judged": len(paths), "not_answered": 0, "estimated_count": len(suspects),
               "estimated_share": None, "noise_matrix": None,
               "estimate": "the suspect boxes: confident boxes where nothing is drawn, drawn boxes nothing was "
                           "found over, drawn boxes a confident box of another label covers",
               "thresholds": {name: None if t is None else float(t) for name, t in thresholds.items()},
               "counts": reason_counts(suspects)}
    return suspects, summary


def reason_counts(suspects: list[Suspect]) -> dict[str, int]:
    """Suspects per reason, in REASONS' order (reasons with none left out)."""
    return {reason: n for reason in REASONS if (n := sum(s.reason == reason for s in suspects))}


def rank_suspects(suspects: list[Suspect]) -> list[Suspect]:
    """One row per image (and box), worst first (REASONS' order, then label quality ascending), ranks 1..n.
    An image found for several reasons keeps its worst and names the others in its detail; a model's suggestion
    found for it under another reason is kept."""
    def worst_first(s: Suspect):
        return BANDS[s.reason], s.quality if s.quality is not None else -1.0

    merged: dict[tuple, Suspect] = {}
    for s in sorted(suspects, key=worst_first):  # stable: each check's own order within a band stays
        key = (os.path.abspath(s.image), s.box)
        first = merged.get(key)
        if first is None:
            merged[key] = s
            continue
        also = f"also {s.reason}" + (f": {s.detail}" if s.detail else "")
        merged[key] = replace(first, detail=f"{first.detail}; {also}" if first.detail else also,
                              given=first.given or s.given,
                              **({"suggested": s.suggested, "confidence": s.confidence, "quality": s.quality}
                                 if first.suggested is None and s.suggested is not None else {}))
    return [replace(s, rank=rank) for rank, s in enumerate(merged.values(), start=1)]


def dataset_folder(dataset) -> Path:
    """The folder a dataset's relative names start from: the folder per label itself, or the manifest's folder."""
    source = Path(os.path.abspath(dataset.source))
    return source if source.is_dir() else source.parent


def shown_path(path, folder: Path) -> str:
    """A path relative to the dataset's folder when it lies under it (as a manifest's source-refs), else absolute."""
    path = Path(os.path.abspath(path))
    return path.relative_to(folder).as_posix() if path.is_relative_to(folder) else str(path)


def next_manifest(dataset, suspects: list[Suspect], apply: str, min_confidence: float, path: Path) -> dict:
    """Write the dataset's next version as a Ground Truth manifest (atomically) and return its counts.

    prune: every image with a suspect is left out. relabel: an image whose suspects include a model's suggestion
    with confidence >= min_confidence (label likely wrong, or a duplicate the model also judged) takes it; for
    detection, an image whose only suspects are such confident wrong-label boxes keeps its boxes, those relabelled;
    every other image with a suspect is left out. Source-refs are the source manifest's own (so the new manifest
    reads with the same root and --s3-root); a folder's images are named relative to the folder (`root` returned).
    """
    if apply not in ("prune", "relabel"):
        raise ValueError(f"apply must be prune or relabel, not {apply!r}")
    detection = any(sample.boxes for sample in dataset.samples)
    by_image: dict[str, list[Suspect]] = {}
    for s in suspects:
        by_image.setdefault(os.path.abspath(s.image), []).append(s)
    source_lines = _manifest_lines(dataset)
    refs, attribute = _source_refs(dataset, source_lines), _attribute(source_lines, detection)
    names = dataset.label_names
    names += sorted({s.suggested for s in suspects if s.suggested} - set(names))  # a label no image was given
    ids = _class_ids(source_lines, attribute, names)
    folder = dataset_folder(dataset)
    lines, dropped, relabelled = [], 0, 0
    for sample in dataset.samples:
        mine = by_image.get(os.path.abspath(sample.path), [])
        changes = _relabels(mine, min_confidence, detection) if mine and apply == "relabel" else None
        if mine and changes is None:
            dropped += 1
            continue
        ref = refs.get(os.path.abspath(sample.path)) or shown_path(sample.path, folder)
        if detection:
            line, changed = _box_line(ref, sample, changes or [], ids, attribute)
            if changed < len(changes or []):  # a suspect box not found among the drawn ones: nothing to relabel
                dropped += 1
                continue
        else:
            line, changed = _label_line(ref, sample.label, changes[0] if changes else None, ids, attribute)
        relabelled += changed
        lines.append(json.dumps(line) + "\n")
    atomic.write_text(path, "".join(lines))
    return {"kept": len(lines), "dropped": dropped, "relabelled": relabelled, "manifest": str(path),
            "root": str(folder)}


def _relabels(mine: list[Suspect], min_confidence: float, detection: bool) -> list[Suspect] | None:
    """The suspects to apply for relabel, or None when the image is to be left out."""
    def confident(s: Suspect) -> bool:
        return s.suggested is not None and s.confidence is not None and s.confidence >= min_confidence

    if detection:
        boxes = [s for s in mine if s.reason == WRONG_LABEL and confident(s)]
        return boxes if len(boxes) == len(mine) else None
    if any(s.reason in (UNREADABLE, BLANK) for s in mine):
        return None
    usable = [s for s in mine if s.reason in RELABELLABLE and confident(s)]
    return usable[:1] or None


def _label_line(ref: str, given: str, change: Suspect | None, ids: dict[str, int], attribute: str) -> tuple[dict, int]:
    label = change.suggested if change else given
    by_model = change is not None and label != given
    metadata = {"class-name": label, "confidence": round(change.confidence, 6) if by_model else 1,
                "type": CLASSIFICATION, "human-annotated": "no" if by_model else "yes", "creation-date": _now(),
                "job-name": JOB_NAME}
    return {"source-ref": ref, attribute: ids[label], f"{attribute}-metadata": metadata}, int(by_model)


def _box_line(ref: str, sample, changes: list[Suspect], ids: dict[str, int], attribute: str) -> tuple[dict, int]:
    from edgelabels.data.boxes import displayed_size

    annotations, changed = [], 0
    for box in sample.boxes:
        label = box.label
        for s in changes:  # the suspect drawn at this box (same label, same pixels to 0.01 px as rounded)
            if s.given == box.label and np.allclose(s.box, (box.left, box.top, box.width, box.height), atol=0.01):
                label, changed = s.suggested, changed + 1
                break
        annotations.append({"class_id": ids[label], "left": box.left, "top": box.top, "width": box.width,
                            "height": box.height})
    width, height = displayed_size(sample.path)
    line = {"source-ref": ref,
            attribute: {"image_size": [{"width": width, "height": height, "depth": 3}], "annotations": annotations},
            f"{attribute}-metadata": {"objects": [{"confidence": 1} for _ in annotations],
                                      "class-map": {str(i): name for name, i in ids.items()},
                                      "type": DETECTION, "human-annotated": "yes" if not changed else "no",
                                      "creation-date": _now(), "job-name": JOB_NAME}}
    return line, changed


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")


def _manifest_lines(dataset) -> list[dict]:
    """The source manifest's lines as JSON objects (none for a folder source); lines that do not parse are skipped:
    the reader refused them already."""
    source = Path(dataset.source)
    if not source.is_file():
        return []
    lines = []
    for text in source.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            line = json.loads(text)
        except ValueError:
            continue
        if isinstance(line, dict) and isinstance(line.get("source-ref"), str):
            lines.append(line)
    return lines


def _class_ids(source_lines: list[dict], attribute: str, names: list[str]) -> dict[str, int]:
    """Each label's class id: the source manifest's own (its class-map, or a classification line's value), new ones
    after the largest for labels it did not have (a folder's labels in sorted order)."""
    ids: dict[str, int] = {}
    for line in source_lines:
        metadata = line.get(f"{attribute}-metadata")
        if not isinstance(metadata, dict):
            continue
        known = metadata.get("class-map") if isinstance(metadata.get("class-map"), dict) else \
            {line.get(attribute): metadata.get("class-name")}
        for key, name in known.items():
            if isinstance(name, str) and str(key).isdigit():
                ids.setdefault(name, int(key))
    for name in names:
        if name not in ids:
            ids[name] = max(ids.values(), default=-1) + 1
    return ids


def _source_refs(dataset, source_lines: list[dict]) -> dict[str, str]:
    """Each image's source-ref as the source manifest wrote it. A ref is matched to an image by the longest tail of
    the image's path it names ("s3://bucket/key" ends S3_ROOT/bucket/key; "photos/x.jpg" ends ROOT/photos/x.jpg),
    which holds whatever root or --s3-root the source was read with."""
    by_tail = {}
    for line in source_lines:
        ref = line["source-ref"].strip()
        tail = ref[5:] if ref.lower().startswith("s3://") else os.path.normpath(ref).replace(os.sep, "/")
        by_tail.setdefault(tail, ref)
    if not by_tail:
        return {}
    refs = {}
    for sample in dataset.samples:
        absolute = Path(os.path.abspath(sample.path))
        tails = [absolute.as_posix()] + ["/".join(absolute.parts[i:]) for i in range(1, len(absolute.parts))]
        found = next((by_tail[t] for t in tails if t in by_tail), None)
        if found is not None:
            refs[str(absolute)] = found
    return refs


def _attribute(source_lines: list[dict], detection: bool) -> str:
    """The source manifest's label attribute (kept in the next version), else this project's default."""
    wanted = DETECTION if detection else CLASSIFICATION
    for line in source_lines[:1]:
        for name, value in line.items():
            metadata = line.get(f"{name}-metadata")
            if isinstance(metadata, dict) and (metadata.get("type") == wanted or (
                    "type" not in metadata and ("class-name" in metadata) != detection)):
                return name
    return DETECTION_ATTRIBUTE if detection else CLASSIFICATION_ATTRIBUTE
