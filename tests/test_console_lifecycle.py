"""The console's whole lifecycle in a real Chromium, as a person walks it (issue 29's "done when"), against a real
`edgelabels serve --projects DIR` whose trainings are tiny (--set: tinycnn, 32 px, 3 epochs, weights none):

create a project, add a folder dataset, correct 3 wrong labels and draw 2 boxes (checked through boto3's
ListDatasetEntries), split, train and watch the progress arrive, open the evaluation and move the threshold (the
numbers must be those `edgelabels evaluate --min-confidence X` computes), start the version (boto3 sees RUNNING),
try a photo, stop it. No JavaScript error and no console error on any page. Then, on the same service, a dataset
of 5,000 images: its page is usable within 1 second.

EDGELABELS_SCREENSHOTS=DIR keeps a screenshot of each page there (the README's pictures are made so).
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest

from helpers.runs import make_image
from helpers.service import ServiceProcess
from helpers.service_ops import TINY

PROJECT = "lifecycle"
LABELS = ("red", "green")  # drawn by make_image(0) and make_image(1): reddish and greenish stripes
WRONG = ("green-00.png", "green-01.png", "green-02.png")  # green images put in red/: the 3 labels to correct
EPOCHS = 3
SCREENSHOTS = os.environ.get("EDGELABELS_SCREENSHOTS")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("console-lifecycle")
    rng = np.random.default_rng(3)
    images = root / "photos"
    for label in LABELS:
        (images / label).mkdir(parents=True)
    for i, label in enumerate(LABELS):
        for j in range(10):
            name = f"{label}-{j:02d}.png"
            where = "red" if name in WRONG else label
            make_image(i, rng, 64).save(images / where / name)
    make_image(LABELS.index("red"), rng, 64).save(root / "try.png")
    (root / "s3").mkdir()
    return root


@pytest.fixture(scope="module")
def service(folders):
    overrides = [o for o in TINY if not o.startswith("train.epochs")] + [f"train.epochs={EPOCHS}"]
    process = ServiceProcess(folders / "dir", "--s3-root", str(folders / "s3"), "--no-access-log",
                             *[arg for o in overrides for arg in ("--set", o)])
    yield process
    process.stop()



@pytest.fixture(scope="module")
def page(service, chromium):
    """One signed-in tab for the whole walk; every console message of type error and every page error is kept."""
    tab = chromium.new_page(viewport={"width": 1280, "height": 900})
    tab.errors = []
    tab.on("console", lambda message: tab.errors.append(f"{message.text} at {tab.url}")
           if message.type == "error" else None)
    tab.on("pageerror", lambda error: tab.errors.append(f"{error} at {tab.url}"))
    tab.on("dialog", lambda dialog: dialog.accept())
    found = re.search(r"^  console +(http://\S+)", service.output(), re.MULTILINE)
    assert found, service.output()
    tab.goto(found.group(1))
    yield tab
    tab.close()


def shot(page, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.jpg"), full_page=True, type="jpeg", quality=70)


def entries(api, project_arn: str, kind: str = "TRAIN") -> dict:
    """source-ref -> the Ground Truth line, of every entry of the project's dataset of `kind`, through boto3."""
    dataset = next(d for d in api.describe_projects(ProjectNames=[PROJECT])["ProjectDescriptions"][0]["Datasets"]
                   if d["DatasetType"] == kind)
    lines = [json.loads(line) for page in api.get_paginator("list_dataset_entries").paginate(
        DatasetArn=dataset["DatasetArn"]) for line in page["DatasetEntries"]]
    return {line["source-ref"]: line for line in lines}


def class_of(line: dict) -> str:
    return next(v["class-name"] for k, v in line.items()
                if k.endswith("-metadata") and v.get("type") == "groundtruth/image-classification")


def boxes_of(line: dict) -> list:
    attribute = next(k[:-len("-metadata")] for k, v in line.items()
                     if k.endswith("-metadata") and v.get("type") == "groundtruth/object-detection")
    return line[attribute]["annotations"]


def test_a_person_walks_the_whole_lifecycle_in_the_browser(service, folders, page):
    from playwright.sync_api import expect

    api = service.client()
    page.get_by_label("New project").fill(PROJECT)
    page.get_by_role("button", name="Create project").click()
    shot(page, "projects")
    page.get_by_role("link", name=PROJECT).click()
    page.get_by_role("link", name="Create the train dataset").click()
    shot(page, "add")
    page.locator("#add-folder input[name=folder]").fill(str(folders / "photos"))
    page.locator("#add-folder button[type=submit]").click()
    expect(page.locator("li.tile")).to_have_count(20)
    shot(page, "dataset")
    project_arn = api.describe_projects(ProjectNames=[PROJECT])["ProjectDescriptions"][0]["ProjectArn"]
    refs = {ref.rsplit("/", 1)[1]: ref for ref in entries(api, project_arn)}
    assert all(class_of(entries(api, project_arn)[refs[name]]) == "red" for name in WRONG)

    # Two wrong labels corrected by a bulk relabel of a selection, the third in the image's editor.
    for name in WRONG[:2]:
        page.locator(f'input.pick[value="{refs[name]}"]').check()
    page.locator("#relabel input[name=label]").fill("green")
    page.get_by_role("button", name="Relabel selected").click()
    expect(page.locator(f'li.tile[data-ref="{refs[WRONG[0]]}"] .labels')).to_contain_text("green")
    page.locator(f'li.tile[data-ref="{refs[WRONG[2]]}"] a.open').click()
    page.locator("#label").fill("green")
    # Two boxes drawn with the mouse on this image (64 x 64 px): top-left and bottom-right quarters.
    page.locator("#box-label").fill("blob")
    surface = page.locator(EDITOR_SURFACE)
    area = surface.bounding_box()
    for x0, y0, x1, y1 in ((0.1, 0.1, 0.4, 0.4), (0.55, 0.55, 0.9, 0.9)):
        page.mouse.move(area["x"] + x0 * area["width"], area["y"] + y0 * area["height"])
        page.mouse.down()
        page.mouse.move(area["x"] + x1 * area["width"], area["y"] + y1 * area["height"], steps=5)
        page.mouse.up()
    page.locator("#save").click()
    expect(page.locator("#status")).to_contain_text("Saved")
    shot(page, "editor")

    lines = entries(api, project_arn)
    assert [class_of(lines[refs[name]]) for name in WRONG] == ["green"] * 3
    drawn = boxes_of(lines[refs[WRONG[2]]])
    assert len(drawn) == 2
    # 0.1..0.4 and 0.55..0.9 of 64 px: boxes near (6, 6, 19 x 19) and (35, 35, 22 x 22), give or take a pixel.
    corners = sorted((round(b["left"]), round(b["top"])) for b in drawn)
    assert all(abs(a - b) <= 2 for got, want in zip(corners, [(6, 6), (35, 35)]) for a, b in zip(got, want))

    # The split, then training with its progress pushed to the page.
    page.goto(f"{service.url}/console/projects/{PROJECT}/datasets/train")
    page.get_by_role("button", name="Split into train and test").click()
    page.goto(f"{service.url}/console/projects/{PROJECT}")
    expect(page.locator("#datasets")).to_contain_text("TEST")
    shot(page, "project")
    page.locator("#train-link").click()
    shot(page, "train")
    page.locator("#train").click()
    updates = page.locator("#progress-updates")
    expect(updates).to_have_text(re.compile(r"^([2-9]|\d\d+)"), timeout=240_000)
    expect(page.locator("#epoch")).to_have_text(re.compile(rf"Epoch [1-{EPOCHS}] of {EPOCHS}"), timeout=240_000)
    shot(page, "version-training")
    expect(page.locator("a#evaluation")).to_be_visible(timeout=240_000)
    # Every epoch arrived by the event stream (the page was loaded before the first one ended).
    expect(page.locator("#epoch")).to_have_text(re.compile(rf"Epoch {EPOCHS} of {EPOCHS}"))
    assert int(updates.inner_text().split()[0]) >= EPOCHS
    shot(page, "version-trained")
    version_url = page.url
    version = api.describe_project_versions(ProjectArn=project_arn)["ProjectVersionDescriptions"][0]
    assert version["Status"] == "TRAINING_COMPLETED"

    # The evaluation: a threshold moved in the page gives what `edgelabels evaluate --min-confidence` computes.
    page.locator("a#evaluation").click()
    expect(page.locator('#evaluation[data-ready="true"]')).to_be_attached()
    threshold = 0.7
    page.locator("#threshold-all").evaluate(
        "(slider, value) => { slider.value = value; slider.dispatchEvent(new Event('input', {bubbles: true})); }",
        str(threshold))
    expected = evaluated_at(service, version, threshold, folders)
    for row in expected["per_label"]:
        for metric in ("precision", "recall", "f1"):
            value = row["at_min_confidence"][metric]
            shown = "–" if value is None else f"{value:.3f}"
            cell = page.locator(f'td[data-label="{row["label"]}"][data-metric="{metric}"]')
            expect(cell).to_have_text(shown)
    shot(page, "evaluation")
    page.locator("#coverage").evaluate(  # every test image under the coverage threshold: all to review
        "(slider) => { slider.value = slider.max; slider.dispatchEvent(new Event('input', {bubbles: true})); }")
    edit = page.locator("#review figure a.edit").first.get_attribute("href")
    page.locator("#send-review").click()
    page.locator("a#review-folder").click()
    expect(page.locator("form#import-corrections")).to_be_visible()
    shot(page, "label-loop")
    page.goto(service.url + edit)  # a test image's Edit link: the editor of the dataset that holds it, TEST
    expect(page.locator("#save")).to_be_visible()
    assert f"/console/projects/{PROJECT}/datasets/test/entry?ref=" in page.url

    # Use it: start (boto3 sees RUNNING), try a photo, stop (boto3 sees STOPPED).
    page.goto(version_url)
    page.locator("#start").click()
    expect(page.locator("#status")).to_have_text("RUNNING", timeout=60_000)
    arn = version["ProjectVersionArn"]
    assert api.describe_project_versions(ProjectArn=project_arn, VersionNames=[arn.split("/")[3]])[
        "ProjectVersionDescriptions"][0]["Status"] == "RUNNING"
    page.locator("#min-confidence").fill("0")  # every label, as DetectCustomLabels(MinConfidence=0) answers
    page.locator("#photo").set_input_files(str(folders / "try.png"))
    expect(page.locator("table#detections tbody tr")).to_have_count(len(LABELS), timeout=30_000)
    assert arn in page.locator("pre#boto3").inner_text() and service.url in page.locator("pre#cli").inner_text()
    shot(page, "version-running")
    page.locator("#stop").click()
    expect(page.locator("#status")).to_have_text("STOPPED", timeout=60_000)
    assert api.describe_project_versions(ProjectArn=project_arn)["ProjectVersionDescriptions"][0][
        "Status"] == "STOPPED"
    assert page.errors == []


def evaluated_at(service, version: dict, threshold: float, folders: Path) -> dict:
    """metrics.json of `edgelabels evaluate RUN --min-confidence THRESHOLD` on the version's own run (its test
    split: the images the console's evaluation shows)."""
    from edgelabels.evaluate.driver import evaluate_model

    runs = list((folders / "dir" / "versions" / PROJECT).glob(f"{version['ProjectVersionArn'].split('/')[3]}-*/run"))
    assert len(runs) == 1, runs
    out = folders / f"evaluation-at-{threshold}"
    evaluate_model(runs[0], min_confidence=threshold, out=out, gradcam_per_kind=0, progress=False)
    return json.loads((out / "metrics.json").read_text())


def test_a_5000_image_dataset_page_is_usable_within_a_second(service, folders, page):
    from playwright.sync_api import expect
    from PIL import Image

    bucket = folders / "s3" / "big"
    (bucket / "images").mkdir(parents=True)
    rng = np.random.default_rng(5)
    lines = []
    for i in range(5000):
        label = LABELS[i % 2]
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(bucket / "images" / f"{i:04d}.png")
        lines.append(json.dumps({"source-ref": f"s3://big/images/{i:04d}.png", "label": i % 2, "label-metadata": {
            "class-name": label, "confidence": 1, "type": "groundtruth/image-classification",
            "human-annotated": "yes", "creation-date": "2026-12-06T00:00:00", "job-name": "labeling-job/big"}}))
    (bucket / "big.manifest").write_text("\n".join(lines) + "\n")
    api = service.client()
    arn = api.create_project(ProjectName="big")["ProjectArn"]
    api.create_dataset(ProjectArn=arn, DatasetType="TRAIN", DatasetSource={"GroundTruthManifest": {
        "S3Object": {"Bucket": "big", "Name": "big.manifest"}}})
    deadline = time.monotonic() + 120
    while api.describe_projects(ProjectNames=["big"])["ProjectDescriptions"][0]["Datasets"][0][
            "Status"] != "CREATE_COMPLETE":
        assert time.monotonic() < deadline
        time.sleep(0.2)

    started = time.monotonic()
    page.goto(f"{service.url}/console/projects/big/datasets/train", wait_until="domcontentloaded")
    expect(page.locator("li.tile").first).to_be_visible()
    expect(page.get_by_role("button", name="Filter")).to_be_enabled()
    usable_s = time.monotonic() - started
    print(f"5,000-image dataset page usable in {usable_s:.3f} s")
    assert usable_s < 1.0
    assert page.locator("li.tile").count() < 100  # a page of entries, not all 5,000
    page.locator("a#next-page").click()
    expect(page.locator("li.tile").first).to_be_visible()
    page.wait_for_load_state("load")
    assert page.errors == []


EDITOR_SURFACE = "svg#overlay"  # the editor's drawing surface: its viewBox is the image's pixels
