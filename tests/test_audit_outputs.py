"""What an audit writes: suspects from hand-worked probabilities and boxes, image checks on real tiny files, one
ranked list, suspects.csv / audit.json / audit.html, and the next manifest (prune, relabel) read back."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgelabels import atomic
from edgelabels.audit import page
from edgelabels.audit.checks import image_checks
from edgelabels.audit.driver import Predictions
from edgelabels.audit.page import COLUMNS, write_audit
from edgelabels.audit.suspects import (
    BLANK,
    DEFAULT_METHOD,
    DUPLICATE,
    LIKELY_WRONG,
    MISSED,
    NEAR_DUPLICATE,
    NO_ANSWER,
    SPURIOUS,
    UNREADABLE,
    WRONG_LABEL,
    Suspect,
    label_suspects,
    next_manifest,
    rank_suspects,
)
from edgelabels.data.dataset import Box, Dataset, Problem, Sample
from edgelabels.data.sources import load_dataset, read_manifest
from edgelabels.evaluate.label_issues import find_label_issues

LABELS = ["negative", "positive"]
# Eight answered images and one with no answer (a row of zeros). Given 0 = negative, 1 = positive.
GIVEN = [0, 0, 0, 0, 1, 1, 1, 1, 1]
PROBS = [
    (0.90, 0.10),  # 0
    (0.80, 0.20),  # 1
    (0.20, 0.80),  # 2: a positive labelled negative
    (0.70, 0.30),  # 3
    (0.10, 0.90),  # 4
    (0.25, 0.75),  # 5
    (0.70, 0.30),  # 6: a negative labelled positive
    (0.20, 0.80),  # 7
    (0.00, 0.00),  # 8: no answer
]


def smooth(seed: int, size: int = 64) -> Image.Image:
    """A random picture with photo-like detail (as tests/test_validate.py: pHash bits stay stable)."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).resize((size, size),
                                                                                        Image.Resampling.BICUBIC)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """negative/ and positive/ with: a.png and its byte copy under the other label, b.png and a copy with 4 pixels
    changed under the other label, c.png and its byte copy under the SAME label, a blank picture, a corrupt JPEG,
    and d.png, an ordinary one."""
    root = tmp_path_factory.mktemp("audit") / "photos"
    neg, pos = root / "negative", root / "positive"
    neg.mkdir(parents=True)
    pos.mkdir()
    smooth(1).save(neg / "a.png")
    (pos / "a-copy.png").write_bytes((neg / "a.png").read_bytes())
    b = smooth(2)
    b.save(neg / "b.png")
    pixels = np.asarray(b).copy()
    pixels[10:12, 10:12] = 255 - pixels[10:12, 10:12]
    Image.fromarray(pixels).save(pos / "b-near.png")
    smooth(3).save(neg / "c.png")
    (neg / "c-copy.png").write_bytes((neg / "c.png").read_bytes())
    flat = np.full((64, 64, 3), 128, np.int16) + np.random.default_rng(4).integers(-2, 3, (64, 64, 3))
    Image.fromarray(flat.astype(np.uint8)).save(pos / "blank.png")
    (pos / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"not a picture" * 10)
    smooth(5).save(pos / "d.png")
    return root


@pytest.fixture(scope="module")
def checked(folder):
    dataset = load_dataset(folder)
    return dataset, image_checks(dataset)


def names(suspects, folder: Path) -> set[tuple[str, str]]:
    return {(Path(s.image).relative_to(folder).as_posix(), s.reason) for s in suspects}


# ------------------------------------------------------------------ the model's suspects


def classification(paths) -> Predictions:
    return Predictions("classification", LABELS, [Path(p) for p in paths], GIVEN, np.array(PROBS),
                       how={"method": "k-fold", "folds": 4, "seconds": 12.5, "in_sample": False})


def test_confident_learning_on_a_hand_worked_matrix_lists_the_two_wrong_labels_worst_first():
    suspects, summary = label_suspects(classification([f"/x/{i}.png" for i in range(9)]))
    # Answered rows 0-7. Thresholds: t_neg = mean p_neg over given negative = (.9 + .8 + .2 + .7) / 4 = .65;
    # t_pos = (.9 + .75 + .3 + .8) / 4 = 2.75 / 4 = .6875.
    # Confident class: 0, 1, 3 -> negative (p_neg >= .65); 2 -> positive (.8 >= .6875): C[neg] = [3, 1];
    # 4, 5 (.75 >= .6875), 7 -> positive; 6 -> negative (.7 >= .65): C[pos] = [1, 3]. Rows sum to their counts (4, 4):
    # Q = C / 8, off-diagonal mass 2/8: estimated 8 * .25 = 2 wrong labels.
    # prune_by_class: round(8 * 1/8) = 1 per label, the lowest self-confidence: negative {.9 .8 .2 .7} -> 2;
    # positive {.9 .75 .3 .8} -> 6. Normalized margin: 2: (.2 - .8 + 1) / 2 = .2; 6: (.3 - .7 + 1) / 2 = .3.
    wrong = [s for s in suspects if s.reason == LIKELY_WRONG]
    assert [(s.image.name, s.given, s.suggested) for s in wrong] == [("2.png", "negative", "positive"),
                                                                   ("6.png", "positive", "negative")]
    assert [s.confidence for s in wrong] == pytest.approx([0.8, 0.7])
    assert [s.quality for s in wrong] == pytest.approx([0.2, 0.3])
    assert summary["estimated_count"] == 2 and summary["estimated_share"] == pytest.approx(2 / 8)
    assert summary["method"] == "prune_by_class" and (summary["judged"], summary["not_answered"]) == (8, 1)
    assert summary["thresholds"] == pytest.approx({"negative": 0.65, "positive": 0.6875})
    # P(given | true): column true-negative = Q[:, 0] / Q[:, 0].sum() = (3/8, 1/8) / (4/8) = (.75, .25); likewise.
    assert summary["noise_matrix"]["labels"] == LABELS
    assert np.array(summary["noise_matrix"]["p_given_if_true"]) == pytest.approx(np.array([[0.75, 0.25], [0.25, 0.75]]))


def test_an_image_with_no_answer_is_listed_not_judged():
    suspects, summary = label_suspects(classification([f"/x/{i}.png" for i in range(9)]))
    unanswered = [s for s in suspects if s.reason == NO_ANSWER]
    assert [(s.image.name, s.given, s.suggested, s.confidence) for s in unanswered] == [("8.png", "positive", None,
                                                                                        None)]
    assert summary["counts"] == {LIKELY_WRONG: 2, NO_ANSWER: 1}
    # Ranked: the two wrong labels by quality (.2, .3), then the image with no answer.
    assert [(s.rank, s.image.name) for s in rank_suspects(suspects)] == [(1, "2.png"), (2, "6.png"), (3, "8.png")]


def test_the_prune_by_noise_rate_method_can_be_chosen_and_is_named_in_the_summary():
    # PBNR: round(8 Q[neg, pos]) = 1 negative-given with the largest p_pos - p_neg: 2 (+.6); 1 positive-given with
    # the largest p_neg - p_pos: 6 (+.4). The same two here.
    suspects, summary = label_suspects(classification([f"/x/{i}.png" for i in range(9)]), "prune_by_noise_rate")
    assert [s.image.name for s in suspects if s.reason == LIKELY_WRONG] == ["2.png", "6.png"]
    assert summary["method"] == "prune_by_noise_rate"


def test_the_default_method_keeps_recall_above_ninety_percent_where_prune_by_noise_rate_drops_below_it():
    from test_label_issues import noisy_readings  # 3,000 readings, 1,200 wrong as users err

    # Out-of-fold probabilities whose top class is right 94.2% of the time (Dirichlet concentration 4, seed 0).
    true, given, probs = noisy_readings(seed=0, concentration=4.0)
    wrong = given != true
    scores = {}
    for method in (DEFAULT_METHOD, "prune_by_noise_rate"):
        found = np.zeros(len(given), dtype=bool)
        found[find_label_issues(given, probs, method).indices] = True
        scores[method] = ((found & wrong).sum() / found.sum(), (found & wrong).sum() / wrong.sum())
    assert min(scores[DEFAULT_METHOD]) >= 0.9, scores  # measured: precision .927, recall .938
    assert scores["prune_by_noise_rate"][1] < 0.9, scores  # measured: recall .882


def detection() -> Predictions:
    """Labels window (0), well (1); boxes left, top, width, height in pixels. Image 0: a drawn window that a confident
    well covers exactly (wrong label); image 1: nothing drawn, a confident window (missed); image 2: a drawn well
    nothing was found near (spurious); image 3: a drawn window found as drawn (fine)."""
    given = [(np.array([0]), np.array([[10.0, 10, 20, 20]])), (np.zeros(0, np.int64), np.zeros((0, 4))),
             (np.array([1]), np.array([[30.0, 30, 10, 10]])), (np.array([0]), np.array([[5.0, 5, 20, 20]]))]
    boxes = [np.array([[10.0, 10, 20, 20, 0.90, 1]]), np.array([[5.0, 5, 10, 10, 0.80, 0]]), np.zeros((0, 6)),
             np.array([[5.0, 5, 20, 20, 0.95, 0]])]
    return Predictions("detection", ["window", "well"], [Path(f"/x/{i}.png") for i in range(4)], given,
                       boxes=boxes, thresholds={"window": 0.5, "well": 0.5})


def test_detection_suspects_carry_their_box_in_pixels_and_rank_by_score():
    suspects, summary = label_suspects(detection())
    # Quality = 1 - score: spurious 1 - (1 - best IoU 0) = 0; wrong label 1 - .9 = .1; missed 1 - .8 = .2.
    ranked = rank_suspects(suspects)
    assert [(s.rank, s.image.name, s.reason, s.given, s.suggested, s.box) for s in ranked] == [
        (1, "2.png", SPURIOUS, "well", None, (30, 30, 10, 10)),
        (2, "0.png", WRONG_LABEL, "window", "well", (10, 10, 20, 20)),
        (3, "1.png", MISSED, None, "window", (5, 5, 10, 10))]
    assert [s.quality for s in ranked] == pytest.approx([0.0, 0.1, 0.2])
    assert summary["estimated_count"] == 3 and summary["counts"] == {WRONG_LABEL: 1, MISSED: 1, SPURIOUS: 1}


# ------------------------------------------------------------------ image checks and the ranking


def test_image_checks_find_the_corrupt_the_blank_and_copies_with_another_label(checked, folder):
    dataset, suspects = checked
    assert names(suspects, folder) == {
        ("positive/corrupt.jpg", UNREADABLE), ("positive/blank.png", BLANK),
        ("negative/a.png", DUPLICATE), ("positive/a-copy.png", DUPLICATE),
        ("negative/b.png", NEAR_DUPLICATE), ("positive/b-near.png", NEAR_DUPLICATE)}  # not c / c-copy: one label
    a = next(s for s in suspects if s.image.name == "a.png")
    assert a.given == "negative" and a.detail == "identical to positive/a-copy.png (labelled positive)"
    near = next(s for s in suspects if s.image.name == "b-near.png")
    assert near.detail.startswith("near-identical to negative/b.png (labelled negative), ")
    assert int(near.detail.split(", ")[1].split()[0]) <= 20  # 4 pixels of 4096 move few of the 256 hash bits


def test_blank_means_one_flat_colour_and_an_image_a_reader_left_out_is_still_listed_unreadable(tmp_path):
    noise = np.random.default_rng(6).integers(-3, 4, (48, 48, 3))
    Image.fromarray((np.full((48, 48, 3), 200) + noise).astype(np.uint8)).save(tmp_path / "flat.png")
    # A faint ramp 100 -> 124 across the picture: a spread of about 24 grey levels, above BLANK_SPREAD (8).
    ramp = np.repeat(np.linspace(100, 124, 48)[None, :, None], 48, axis=0).repeat(3, axis=2)
    Image.fromarray(ramp.astype(np.uint8)).save(tmp_path / "ramp.png")
    (tmp_path / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    dataset = Dataset([Sample(tmp_path / "flat.png", ("a",), "1"), Sample(tmp_path / "ramp.png", ("b",), "2")],
                      str(tmp_path), [Problem(str(tmp_path / "cut.png"), "left out: does not decode"),
                                      Problem(str(tmp_path / "ramp.png"), "a note about a kept image")])
    assert names(image_checks(dataset), tmp_path) == {("flat.png", BLANK), ("cut.png", UNREADABLE)}


def test_an_image_copied_many_times_is_listed_once_naming_three_copies_and_blank_copies_only_as_blank(tmp_path):
    smooth(7).save(tmp_path / "x.png")
    flat = Image.new("RGB", (48, 48), (90, 90, 90))
    flat.save(tmp_path / "flat-a.png")
    (tmp_path / "flat-b.png").write_bytes((tmp_path / "flat-a.png").read_bytes())
    samples = [Sample(tmp_path / "x.png", ("negative",), "x"), Sample(tmp_path / "flat-a.png", ("negative",), "a"),
               Sample(tmp_path / "flat-b.png", ("positive",), "b")]
    for i in range(4):
        (tmp_path / f"copy{i}.png").write_bytes((tmp_path / "x.png").read_bytes())
        samples.append(Sample(tmp_path / f"copy{i}.png", ("positive",), str(i)))
    suspects = image_checks(Dataset(samples, str(tmp_path)))
    x = [s for s in suspects if s.image.name == "x.png"]
    # x against copy0-3 (positive): 4 partners, 3 named; the copies are one label among themselves: x only.
    assert [(s.reason, s.detail) for s in x] == [(DUPLICATE, "; ".join(
        f"identical to copy{i}.png (labelled positive)" for i in range(3)) + "; and 1 more")]
    assert {s.detail for s in suspects if s.image.name.startswith("copy")} == {
        "identical to x.png (labelled negative)"}
    assert names(suspects, tmp_path) >= {("flat-a.png", BLANK), ("flat-b.png", BLANK)}
    assert len(suspects) == 1 + 4 + 2


def test_a_ranked_list_puts_unreadable_then_copies_then_model_suspects_then_no_answer_and_merges_an_image(tmp_path):
    x = Path("/x")
    suspects = [
        Suspect(x / "n.png", "positive", None, None, NO_ANSWER),
        Suspect(x / "w2.png", "negative", "positive", 0.7, LIKELY_WRONG, "m", quality=0.3),
        Suspect(x / "w1.png", "negative", "positive", 0.9, LIKELY_WRONG, "m", quality=0.1),
        Suspect(x / "d.png", "negative", None, None, DUPLICATE, "identical to e.png"),
        Suspect(x / "d.png", "negative", "positive", 0.8, LIKELY_WRONG, "model says", quality=0.2),
        Suspect(x / "near.png", "negative", None, None, NEAR_DUPLICATE, "near"),
        Suspect(x / "u.png", None, None, None, UNREADABLE, "truncated"),
    ]
    ranked = rank_suspects(suspects)
    assert [(s.rank, s.image.name, s.reason) for s in ranked] == [
        (1, "u.png", UNREADABLE), (2, "d.png", DUPLICATE), (3, "near.png", NEAR_DUPLICATE),
        (4, "w1.png", LIKELY_WRONG), (5, "w2.png", LIKELY_WRONG), (6, "n.png", NO_ANSWER)]
    merged = ranked[1]
    assert merged.detail == "identical to e.png; also label likely wrong: model says"
    assert (merged.suggested, merged.confidence, merged.quality) == ("positive", 0.8, 0.2)


# ------------------------------------------------------------------ the files


@pytest.fixture(scope="module")
def audited(folder, checked, tmp_path_factory):
    """Every image of the folder audited: the model's verdicts on the two photos the checks did not catch (d.png
    judged wrong) and the image checks, ranked."""
    dataset, checks = checked
    order = sorted(str(s.path) for s in dataset.samples)
    model = [Suspect(folder / "positive/d.png", "positive", "negative", 0.95, LIKELY_WRONG, "model", quality=0.05),
             Suspect(folder / "negative/c.png", "negative", "positive", 0.6, LIKELY_WRONG, "model", quality=0.4)]
    ranked = rank_suspects(checks + model)
    summary = {"task": "classification", "method": "prune_by_class", "images": len(order), "judged": 8,
               "not_answered": 0, "estimated_count": 2, "estimated_share": 0.25, "counts": {},
               "thresholds": {"negative": 0.65, "positive": 0.6875},
               "noise_matrix": {"labels": LABELS, "rows": "given", "columns": "true",
                                "p_given_if_true": [[0.75, 0.25], [0.25, 0.75]]}}
    predictions = Predictions("classification", LABELS, [Path(p) for p in order], [0] * len(order),
                              np.full((len(order), 2), 0.5), how={"method": "k-fold", "folds": 4, "seconds": 12.5})
    out = tmp_path_factory.mktemp("out")
    return dataset, predictions, ranked, summary, out, write_audit(out, dataset, predictions, ranked, summary)


def test_suspects_csv_has_the_agreed_columns_ranked_with_paths_relative_to_the_dataset(audited):
    *_, ranked, _, _, files = audited
    with open(files["suspects"], newline="") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == COLUMNS
    # unreadable, blank; the a and b pairs (copies, then near copies, each in the checks' order); d (.05), c (.4)
    assert [(r[0], r[1], r[5]) for r in rows[1:]] == [
        ("1", "positive/corrupt.jpg", UNREADABLE), ("2", "positive/blank.png", BLANK),
        ("3", "negative/a.png", DUPLICATE), ("4", "positive/a-copy.png", DUPLICATE),
        ("5", "negative/b.png", NEAR_DUPLICATE), ("6", "positive/b-near.png", NEAR_DUPLICATE),
        ("7", "positive/d.png", LIKELY_WRONG), ("8", "negative/c.png", LIKELY_WRONG)]
    d = rows[7]
    assert d[2:5] == ["positive", "negative", "0.950000"] and d[7] == "0.050000" and d[8] == ""


def test_audit_json_holds_the_estimates_how_they_were_made_and_counts_per_reason(audited, folder):
    *_, files = audited
    record = json.loads(files["summary"].read_text())
    assert record["estimated_count"] == 2 and record["how"]["folds"] == 4 and record["suspects"] == 8
    assert record["counts"] == {UNREADABLE: 1, BLANK: 1, DUPLICATE: 2, NEAR_DUPLICATE: 2, LIKELY_WRONG: 2}
    assert record["root"] == str(folder)


def test_audit_html_shows_the_estimate_the_noise_matrix_and_one_thumbnail_per_decodable_suspect(audited):
    *_, files = audited
    html = files["report"].read_text()
    assert "estimated wrong labels" in html and "<div class='v'>2</div>" in html
    assert "4-fold" in html and "12.50 s" in html and "P(given label | true label)" in html
    # 8 suspects, one of which (corrupt.jpg) does not decode: 7 pictures, 8 captions
    assert html.count("data:image/jpeg;base64,") == 7 and html.count("<figcaption>") == 8
    assert "#7 positive → negative (95.0%)" in html


def test_audit_html_shows_at_most_the_first_suspects_and_says_where_the_rest_are(audited, monkeypatch):
    dataset, predictions, ranked, summary, out, _ = audited
    monkeypatch.setattr(page, "SHOWN", 3)
    html = page.audit_html(out, dataset, {**summary, "suspects": len(ranked), "counts": {}, "how": {}}, ranked)
    assert html.count("<figcaption>") == 3 and "The first 3 of 8 are shown; all 8 are in suspects.csv." in html


def test_a_failed_write_leaves_the_previous_audit_whole(audited, monkeypatch):
    dataset, predictions, ranked, summary, out, files = audited
    before = files["suspects"].read_bytes()

    def broken_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", broken_disk)
    with pytest.raises(OSError, match="No space"):
        write_audit(out, dataset, predictions, ranked[:2], summary)
    assert files["suspects"].read_bytes() == before
    assert sorted(p.name for p in out.iterdir()) == ["audit.html", "audit.json", "suspects.csv"]  # no temp files


def test_the_box_of_a_detection_suspect_is_drawn_on_its_thumbnail(tmp_path):
    Image.new("RGB", (100, 50), (255, 255, 255)).save(tmp_path / "white.png")
    suspect = Suspect(tmp_path / "white.png", "window", "well", 0.9, WRONG_LABEL, box=(10, 10, 40, 20), rank=1)
    import base64
    import io
    uri = page._thumbnail(suspect)
    thumb = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))
    # 100 px wide is below SIDE (240): drawn at scale 1, the left edge at x = 10, rows 10-30; red, not white
    assert thumb.shape[:2] == (50, 100)
    assert thumb[20, 10, 0] > 180 and thumb[20, 10, 1] < 120 and thumb[5, 5].min() > 230


# ------------------------------------------------------------------ the next manifest


def read_back(manifest: Path, root: Path, detection: bool = False) -> dict[str, tuple]:
    dataset = read_manifest(manifest, root=root, s3_root=None, pattern=None, detection=detection)
    return {Path(s.path).relative_to(root).as_posix(): (s.labels if not detection else s.boxes)
            for s in dataset.samples}


def test_prune_leaves_out_every_suspect_image(audited, folder, tmp_path):
    dataset, _, ranked, *_ = audited
    counts = next_manifest(dataset, ranked, "prune", 0.9, tmp_path / "next.manifest")
    # 9 images: negative/ a b c c-copy, positive/ a-copy b-near blank corrupt d; all but c-copy are suspects.
    assert read_back(tmp_path / "next.manifest", folder) == {"negative/c-copy.png": ("negative",)}
    assert counts == {"kept": 1, "dropped": 8, "relabelled": 0, "manifest": str(tmp_path / "next.manifest"),
                      "root": str(folder)}


def test_relabel_takes_confident_suggestions_and_leaves_out_the_other_suspects(audited, folder, tmp_path):
    dataset, _, ranked, *_ = audited
    counts = next_manifest(dataset, ranked, "relabel", 0.9, tmp_path / "next.manifest")
    # d.png: suggested negative at .95 >= .9 -> relabelled; c.png: .6 < .9 -> left out, as every other suspect.
    assert read_back(tmp_path / "next.manifest", folder) == {"negative/c-copy.png": ("negative",),
                                                             "positive/d.png": ("negative",)}
    assert (counts["kept"], counts["dropped"], counts["relabelled"]) == (2, 7, 1)
    line = json.loads((tmp_path / "next.manifest").read_text().splitlines()[1])
    assert line["source-ref"] == "positive/d.png" and line["label-metadata"]["human-annotated"] == "no"


def test_a_manifest_source_keeps_its_attribute_and_source_refs(folder, tmp_path):
    source = folder / "readings.manifest"  # beside the label folders: refs relative to it, attribute user-reading
    ids = {"negative": 1, "positive": 2}  # the source's class ids (synthetic.py's LABELS order), kept
    lines = [{"source-ref": ref, "user-reading": ids[label], "user-reading-metadata": {
        "class-name": label, "confidence": 1, "type": "groundtruth/image-classification", "human-annotated": "yes",
        "creation-date": "2026-12-06T00:00:00", "job-name": "users"}}
        for ref, label in (("negative/c.png", "negative"), ("negative/c-copy.png", "positive"),
                           ("positive/d.png", "positive"))]
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    try:
        dataset = load_dataset(source)
        suspects = [Suspect(folder / "negative/c-copy.png", "positive", "negative", 0.97, LIKELY_WRONG),
                    Suspect(folder / "positive/d.png", "positive", None, None, NO_ANSWER)]
        out = tmp_path / "out" / "next.manifest"
        next_manifest(dataset, suspects, "relabel", 0.9, out)
    finally:
        source.unlink()
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["source-ref"] for line in written] == ["negative/c.png", "negative/c-copy.png"]
    assert [line["user-reading-metadata"]["class-name"] for line in written] == ["negative", "negative"]
    assert [line["user-reading"] for line in written] == [1, 1]
    assert read_back(out, folder) == {"negative/c.png": ("negative",), "negative/c-copy.png": ("negative",)}


def test_detection_relabel_renames_confident_wrong_boxes_and_leaves_out_other_suspect_images(tmp_path):
    for i in range(3):
        Image.new("RGB", (64, 48)).save(tmp_path / f"{i}.png")
    samples = [Sample(tmp_path / "0.png", ("window",), "0", (Box("window", 10, 10, 20, 20), Box("well", 40, 5, 8, 8))),
               Sample(tmp_path / "1.png", ("window",), "1", (Box("window", 5, 5, 20, 20),)),
               Sample(tmp_path / "2.png", ("well",), "2", (Box("well", 30, 30, 10, 10),))]
    dataset = Dataset(samples, str(tmp_path))
    suspects = [Suspect(tmp_path / "0.png", "window", "well", 0.9, WRONG_LABEL, box=(10, 10, 20, 20)),
                Suspect(tmp_path / "2.png", "well", None, None, SPURIOUS, box=(30, 30, 10, 10))]
    counts = next_manifest(dataset, suspects, "relabel", 0.8, tmp_path / "next.manifest")
    assert (counts["kept"], counts["dropped"], counts["relabelled"]) == (2, 1, 1)
    assert read_back(tmp_path / "next.manifest", tmp_path, detection=True) == {
        "0.png": (Box("well", 10, 10, 20, 20), Box("well", 40, 5, 8, 8)), "1.png": (Box("window", 5, 5, 20, 20),)}
    counts = next_manifest(dataset, suspects, "prune", 0.8, tmp_path / "pruned.manifest")
    assert read_back(tmp_path / "pruned.manifest", tmp_path, detection=True) == {
        "1.png": (Box("window", 5, 5, 20, 20),)}
