"""What an audit leaves in its folder: suspects.csv (every suspect, ranked), audit.json (the estimates, how they were
made, counts per reason) and audit.html (evaluate/page.py's look: the estimates, the noise matrix, then thumbnails
worst first with given -> suggested and the reason; the suspect box drawn for detection).

Image names in suspects.csv are relative to the dataset's folder where they lie under it (as a manifest's
source-refs), else absolute; audit.json's `root` is that folder. `box` is a JSON list [left, top, width, height] in
pixels of the image as displayed, empty for a whole image.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from PIL import Image, ImageDraw

from edgelabels import atomic
from edgelabels.audit.driver import Predictions
from edgelabels.audit.suspects import Suspect, dataset_folder, reason_counts, shown_path
from edgelabels.data.images import read_image
from edgelabels.errors import ImageProblem
from edgelabels.evaluate.page import CSS, Page, data_uri, escape, format_value

SUSPECTS, SUMMARY, REPORT = "suspects.csv", "audit.json", "audit.html"
COLUMNS = ("rank", "image", "given", "suggested", "confidence", "reason", "detail", "quality", "box")
SHOWN, SIDE = 200, 240  # thumbnails on the page (the rest are in suspects.csv) and their longer side in pixels
BOX_COLOUR = (230, 40, 30)
SUSPECT_CSS = ".suspect figcaption b{color:#b3261e}.suspect figcaption{color:#1d232b}"


def write_audit(out: Path, dataset, predictions: Predictions, suspects: list[Suspect], summary: dict) -> dict:
    """Write the three files (each atomically) for ranked suspects; returns their paths."""
    out = Path(out)
    folder = dataset_folder(dataset)
    record = {**summary, "suspects": len(suspects), "counts": reason_counts(suspects), "how": predictions.how,
              "root": str(folder), "files": {"suspects": SUSPECTS, "report": REPORT}}
    atomic.write_text(out / SUSPECTS, suspects_csv(suspects, folder))
    atomic.write_json(out / SUMMARY, record)
    atomic.write_text(out / REPORT, audit_html(out, dataset, record, suspects))
    return {"suspects": out / SUSPECTS, "report": out / REPORT, "summary": out / SUMMARY}


def suspects_csv(suspects: list[Suspect], folder: Path) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for s in suspects:
        writer.writerow([s.rank, shown_path(s.image, folder), s.given or "", s.suggested or "", _number(s.confidence),
                         s.reason, s.detail, _number(s.quality), json.dumps(list(s.box)) if s.box else ""])
    return buffer.getvalue()


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"


def audit_html(out: Path, dataset, record: dict, suspects: list[Suspect]) -> str:
    how = record.get("how") or {}
    folds = f"{how['folds']}-fold" if how.get("folds") else how.get("method", "n/a")
    if how.get("rounds", 1) > 1:
        folds += (f", {how['rounds']} rounds (the last trained without {how['left_out'][-1]} images the round "
                  "before found likely wrong)")
    meta = [("source", dataset.source), ("images", format_value(record["images"], "i")),
            ("predictions", folds + (" (in-sample: labels the model learnt are hidden)" if how.get("in_sample")
                                     else "")),
            ("time", format_value(how["seconds"], "s") if how.get("seconds") is not None else "n/a"),
            ("method", record["method"])]
    page = Page(out, "Label audit", meta, css=CSS + SUSPECT_CSS)
    share = record.get("estimated_share")
    page.cards([("estimated wrong labels", format_value(record["estimated_count"], "i")),
                *([("estimated share wrong", format_value(share, "%"))] if share is not None else []),
                ("suspects listed", format_value(record["suspects"], "i")),
                ("images judged", format_value(record["judged"], "i")),
                ("no answer", format_value(record["not_answered"], "i"))])
    page.note(f"Estimated wrong labels: {record.get('estimate', 'n/a')}. The suspects also include images no "
              "model can read, blank ones, and identical or near-identical images carrying different labels.")
    matrix = record.get("noise_matrix")
    if matrix:
        page.heading("Noise matrix: P(given label | true label)")
        labels = matrix["labels"]
        page.table(["given \\ true", *labels],
                   [[given, *(f"{p:.3f}" for p in row)] for given, row in zip(labels, matrix["p_given_if_true"])],
                   [1 + i for i in range(len(labels))])
        page.note("Columns sum to 1: of the images truly of a label (as the model sees it), the share given each "
                  "label. Highlighted: labels given right.")
    if record.get("thresholds"):
        page.heading("Per-label thresholds")
        page.note("The probability (a box's score, for detection) from which the model's answer for a label counts "
                  "as confident; confident learning's is the mean probability of the label over the images given it.")
        page.table(["label", "threshold"], [[name, format_value(t, "t")] for name, t in record["thresholds"].items()])
    page.heading("Suspects per reason")
    page.table(["reason", "suspects"], [[reason, format_value(n, "i")] for reason, n in record["counts"].items()])
    page.heading("Suspects, worst first")
    if len(suspects) > SHOWN:
        page.note(f"The first {SHOWN} of {len(suspects):,} are shown; all {len(suspects):,} are in {SUSPECTS}.")
    page.html.append("<div class='gallery'>" + "".join(_figure(s, dataset_folder(dataset))
                                                       for s in suspects[:SHOWN]) + "</div>")
    return page.html_text()


def _figure(s: Suspect, folder: Path) -> str:
    change = f"{s.given or '(none)'} → {s.suggested}" if s.suggested else f"given {s.given or '(none)'}"
    confidence = f" ({s.confidence:.1%})" if s.confidence is not None else ""
    caption = (f"<b>#{s.rank} {escape(change)}{confidence}</b><br>{escape(s.reason)}: {escape(s.detail)}"
               f"<br><span class='note'>{escape(shown_path(s.image, folder))}</span>")
    thumbnail = _thumbnail(s)
    # The picture links to the file itself: a thumbnail is too small to read a faint line on.
    image = (f"<a href='{escape(Path(s.image).resolve().as_uri())}'><img src='{thumbnail}' "
             f"alt='{escape(s.image.name)}'></a>") if thumbnail else \
        "<p class='note'>(no picture: the file does not decode)</p>"
    return f"<figure class='suspect'>{image}<figcaption>{caption}</figcaption></figure>"


def _thumbnail(s: Suspect) -> str | None:
    """A small JPEG data URI of the image, the suspect box drawn on it; None when the image does not decode."""
    try:
        image = read_image(s.image)[0].convert("RGB")
    except ImageProblem:
        return None
    scale = min(1.0, SIDE / max(image.size))
    image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                         Image.Resampling.LANCZOS, reducing_gap=3.0)
    if s.box:
        left, top, width, height = (v * scale for v in s.box)
        ImageDraw.Draw(image).rectangle((left, top, left + width, top + height), outline=BOX_COLOUR, width=2)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=80)
    return data_uri(buffer.getvalue(), "image/jpeg")
