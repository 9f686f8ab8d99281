"""The page builder every report uses: escaping, embedded images, the "better" marker, Markdown tables."""

from __future__ import annotations

import base64
import re

import pytest
from PIL import Image

from edgelabels.evaluate.page import Page, format_value, html_table, md_table

SCRIPT = "<script>alert('x')</script>"


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "plots" / "dot.png"
    path.parent.mkdir()
    Image.new("RGB", (4, 3), (200, 30, 30)).save(path)
    return path


def test_script_in_title_meta_cards_cells_notes_and_captions_is_escaped(tmp_path, image):
    page = Page(tmp_path, f"Run {SCRIPT}", [("data", SCRIPT)])
    page.cards([(SCRIPT, "1.0")])
    page.heading(SCRIPT)
    page.note(SCRIPT)
    page.table(["Label", SCRIPT], [[SCRIPT, "0.5"]], better=[1])
    page.figures([(image, SCRIPT, "")])
    page.bullets([SCRIPT])
    html = page.html_text()
    assert "<script" not in html
    # <title> and <h1>, meta, card, <h2>, note, <th>, <td>, the image's alt and caption, <li>.
    assert html.count("&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;") == 11
    assert "<title>Run &lt;script&gt;" in html and "alt='&lt;script&gt;alert(&#x27;x&#x27;)" in html


def test_images_are_embedded_as_data_uris_and_markdown_links_the_file_beside_it(tmp_path, image):
    page = Page(tmp_path, "Plots", [])
    page.figure(image, "Histogram")
    page.figures([(image, "Confusion matrix", "wide"), (image, "ROC", "")], grid="plots")
    html = page.html_text()
    sources = re.findall(r"src='([^']*)'", html)
    assert len(sources) == 3 and all(src.startswith("data:image/png;base64,") for src in sources)
    assert base64.b64decode(sources[0].split(",", 1)[1]) == image.read_bytes()
    assert not re.search(r"""(src|href)=['"]?(https?:|//|file:|/)""", html) and "<link" not in html
    assert "<figure class='wide'>" in html and "<div class='plots'>" in html
    assert "<figcaption>ROC</figcaption>" in html and html.count("<figcaption>") == 2  # the lone figure has none
    assert re.findall(r"!\[([^\]]*)\]\(([^)]+)\)", page.md_text()) == [
        ("Histogram", "plots/dot.png"), ("Confusion matrix", "plots/dot.png"), ("ROC", "plots/dot.png")]


def test_better_cell_is_highlighted_in_html_and_bold_in_markdown():
    header = ["Metric", "local", "Rekognition"]
    rows = [["Accuracy", "90%", "80%"], ["Latency", "5 ms", "80 ms"], ["Model size", "1 MB", "n/a"]]
    better = [1, 1, None]
    html = html_table(header, rows, better)
    assert html.count("<td class='better'>") == 2
    assert "<tr><td>Accuracy</td><td class='better'>90%</td><td>80%</td></tr>" in html
    assert "<tr><td>Model size</td><td>1 MB</td><td>n/a</td></tr>" in html
    md = md_table(header, rows, better).splitlines()
    assert md[2:] == ["| Accuracy | **90%** | 80% |", "| Latency | **5 ms** | 80 ms |", "| Model size | 1 MB | n/a |"]
    assert html_table(header, rows) == html.replace(" class='better'", "")  # no marker: plain cells


def test_markdown_table_is_a_header_a_rule_and_one_line_per_row_with_pipes_escaped():
    md = md_table(["Image", "Label"], [["a|b.png", "cat"], ["c.png", "dog"]])
    assert md.splitlines() == ["| Image | Label |", "|---|---|", "| a\\|b.png | cat |", "| c.png | dog |"]
    assert md_table(["Image"], []) == "| Image |\n|---|"


def test_page_is_one_html_document_and_markdown_with_the_same_headings_in_order(tmp_path):
    page = Page(tmp_path, "Cassettes", [("run", "r1"), ("data", "generated")])
    page.cards([("Accuracy", "90.00%")])
    page.heading("Per label")
    page.table(["Label", "F1"], [["cat", "0.9000"]])
    page.heading("Notes")
    page.bullets(["one note"])
    html, md = page.html_text(), page.md_text()
    assert html.startswith("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Cassettes</title>")
    assert html.endswith("</main></body></html>\n") and html.count("<h1>") == 1
    assert "<div class='meta'>run: r1 &middot; data: generated</div>" in html
    assert "<div class='card'><div class='v'>90.00%</div><div class='k'>Accuracy</div></div>" in html
    assert re.findall(r"<h2>(.*?)</h2>", html) == ["Per label", "Notes"]
    assert md.startswith("# Cassettes\n\nrun: r1  \ndata: generated\n") and md.endswith("- one note\n")
    assert re.findall(r"^## (.*)$", md, re.M) == ["Headline", "Per label", "Notes"]
    assert "| Accuracy | 90.00% |" in md and "| cat | 0.9000 |" in md


@pytest.mark.parametrize("value, kind, text", [
    (None, "%", "n/a"), (0.91666, "%", "91.67%"), (0.5, "t", "0.5000"), (12345, "i", "12,345"),
    (80.04, "ms", "80.0 ms"), (4.0, "$", "$4.00"), (0.004, "$", "$0.004"), (0, "$", "$0.00"),
    (2_500_000, "mb", "2.50 MB"), (300, "mb", "0.3 kB"), (0.0065, "s", "6.5 ms"), (2.0, "s", "2.00 s"),
    (1858.9, "/s", "1,858.9 images/s"), (0.25, "f", "0.2500"), ("x", "f", "x"),
])
def test_format_value_writes_each_kind_of_number(value, kind, text):
    assert format_value(value, kind) == text
