"""A whole evaluation folder from arrays + generated images: files, self-contained report, safety of --out."""

from __future__ import annotations

import json
import re
import numpy as np
import pytest
from PIL import Image

from edgelabels.errors import UserError
from edgelabels.evaluate.evaluation import write_evaluation
from edgelabels.evaluate.summary import read_summary

LABELS = ["negative", "positive", "invalid"]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("report")
    rng = np.random.default_rng(0)
    n = 40
    y_true = rng.integers(0, 3, size=n)
    probs = rng.dirichlet([1, 1, 1], size=n) * 0.4 + np.eye(3)[y_true] * 0.6
    probs[:5] = rng.dirichlet([1, 1, 1], size=5)  # a few uncertain (some wrong) images
    paths = []
    for i in range(n):
        path = tmp_path / "images" / f"cassette_{i}.jpg"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    out = tmp_path / "evaluation"
    result = write_evaluation(out, y_true=y_true, probs=probs, labels=LABELS, paths=paths, run_id="runs/cassettes",
                              number_of_training_images=160, min_confidence=0.5, review_threshold=0.7,
                              context={"title": "Cassettes", "data": "generated"})
    return out, result, probs


def test_evaluation_folder_holds_every_output(evaluated):
    out, result, probs = evaluated
    for name in ("summary.json", "metrics.json", "predictions.csv", "evaluation-manifest.jsonl", "report.html",
                 "report.md", "review/queue.csv"):
        assert (out / name).is_file(), name
    plots = sorted(p.name for p in (out / "plots").iterdir())
    assert plots == ["confidence_histogram.png", "confusion_matrix.png", "coverage.png", "precision_recall.png",
                     "roc.png"]
    for plot in (out / "plots").iterdir():
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert read_summary(out / "summary.json").number_of_training_images == 160
    assert json.loads((out / "metrics.json").read_text())["number_of_images"] == 40
    assert len(list((out / "review" / "images").iterdir())) == int((probs.max(axis=1) < 0.7).sum())
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp folder left behind


def test_report_html_is_self_contained_with_every_plot_embedded(evaluated):
    out, result, _ = evaluated
    html = (out / "report.html").read_text()
    assert html.count("src='data:image/png;base64,") == 5
    assert not re.search(r"""(src|href)=['"]?(https?:|//|file:)""", html)
    assert "<link" not in html and "<script" not in html
    for label in LABELS:
        assert f"<td>{label}</td>" in html
    assert "Confidence threshold vs coverage" in html and "0.995" in html
    assert "below 0.7" in html  # review-queue summary


def test_report_md_links_files_that_exist(evaluated):
    out, _, _ = evaluated
    md = (out / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(links) == 5 and all((out / link).is_file() for link in links)
    assert "| Accept if top confidence >= |" in md


def test_rerun_replaces_an_earlier_evaluation(tmp_path):
    out = tmp_path / "evaluation"
    first = dict(labels=["a", "b"], paths=["a.png", "b.png", "c.png"], run_id="r", review_threshold=0.5)
    write_evaluation(out, y_true=[0, 1, 1], probs=[[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]], **first)
    write_evaluation(out, y_true=[0, 1], probs=[[0.9, 0.1], [0.2, 0.8]], labels=["a", "b"], paths=["a.png", "b.png"],
                     run_id="again")
    assert json.loads((out / "metrics.json").read_text())["number_of_images"] == 2
    assert not (out / "review").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evaluation"]


def test_out_folder_that_is_not_an_evaluation_is_never_replaced(tmp_path):
    precious = tmp_path / "photos"
    precious.mkdir()
    (precious / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(UserError, match="photos.*not an evaluation folder"):
        write_evaluation(precious, y_true=[0], probs=[[1.0, 0.0]], labels=["a", "b"], paths=["a.png"], run_id="r")
    assert (precious / "holiday.jpg").exists()
