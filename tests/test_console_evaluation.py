"""A version's evaluation page and the comparison of two versions (console/evaluation_pages.py, evaluation.js).

Most versions here are made as the trainer leaves them, without training: a version in the store moved to
TRAINING_COMPLETED, its frozen test manifest, and an evaluation folder written by evaluate/evaluation.py's
write_evaluation (or evaluate/detection.py's) from arrays chosen in the test, its images named by the local files
the loader reads (the S3 root's BUCKET/KEY). Every expected number comes from evaluate/metrics.py's
evaluate_arrays on those arrays. One tiny version is really trained (the trainer's pipeline, in-process), to
check that the images it read map back to their source-refs.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgelabels.data.dataset import Box, Sample
from edgelabels.evaluate.detection import write_detection_evaluation
from edgelabels.evaluate.evaluation import write_evaluation
from edgelabels.evaluate.metrics import coverage_table, evaluate_arrays, top_labels
from edgelabels.service import outputs
from edgelabels.service.versions import manifest_path

import test_console
from helpers.service_ops import write_bucket
from test_console import Page, signed_in
from helpers.browser import signed_in_page

service = test_console.service  # the in-process service (uvicorn, boto3 on the same port), one per module

LABELS = ["bird", "cat", "red fox"]
PROJECT, BUCKET = "pets", "pictures"
BIG = 5000


def small_arrays() -> tuple[np.ndarray, np.ndarray]:
    """40 images. At 0.35, bird is predicted for exactly 16 images, one of them a bird (one exactly at 0.35):
    precision 1/16 = 0.0625, which Python's "%.3f" rounds to even (0.062), not up. One image got no answer."""
    rng = np.random.default_rng(7)
    truth, probs = [], []
    for i in range(40):
        t = i % 3
        if i == 0:
            t, row = 0, [0.4, 0.3, 0.3]
        elif i < 16:
            t = 1 + i % 2
            bird = 0.35 if i == 15 else 0.4
            rest = 1 - bird
            row = [bird, rest * 0.8, rest * 0.2] if (t == 1) == (i % 4 != 1) else [bird, rest * 0.2, rest * 0.8]
        elif i == 16:
            t, row = 1, [0.0, 0.0, 0.0]
        else:
            bird = rng.uniform(0, 0.34)
            split = rng.uniform(0.05, 0.95)
            row = [bird, (1 - bird) * split, (1 - bird) * (1 - split)]
        truth.append(t)
        probs.append(row)
    return np.array(truth), np.round(np.array(probs), 6)


def big_arrays() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    truth = rng.integers(0, len(LABELS), BIG)
    logits = rng.normal(size=(BIG, len(LABELS))) + 2.0 * np.eye(len(LABELS))[truth]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return truth, np.round(probs, 6)


def image_refs(s3_root, count: int) -> list[str]:
    """count refs s3://pictures/test/NNNN.png; the first 40 are real images (the thumbnails the pages show), the
    rest repeat them (the big evaluation needs its rows, not 5,000 files)."""
    folder = s3_root / BUCKET / "test"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(40):
        if not (folder / f"{i:04d}.png").is_file():
            Image.new("RGB", (48, 48), (i * 6, 255 - i * 6, 90)).save(folder / f"{i:04d}.png")
    return [ref(i) for i in range(count)]


def local_file(ctx, ref: str) -> str:
    return f"{ctx.s3.root}/{ref.removeprefix('s3://')}"  # as the trainer's loader reads s3://BUCKET/KEY


def trained_version(ctx, project_arn: str, name: str, refs: list[str], labels: list[str], evaluate) -> str:
    """A TRAINING_COMPLETED version: its frozen test manifest names `refs` (each with its first label), its run
    holds what `evaluate(folder, version_arn)` writes and returns (write_evaluation's result); its ARN."""
    version = ctx.store.create_version(project_arn, name, {"S3Bucket": "results", "S3KeyPrefix": "out/"})
    job = ctx.store.claim_next()
    assert job["version_arn"] == version["arn"]
    folder = ctx.version_dir(version["arn"])
    folder.mkdir(parents=True, exist_ok=True)
    manifest_path(folder, "test").write_text("".join(
        json.dumps({"source-ref": ref, "animal": labels.index(label), "animal-metadata": {
            "class-name": label, "confidence": 1, "type": "groundtruth/image-classification",
            "human-annotated": "yes", "creation-date": "2026-12-05T00:00:00", "job-name": "labeling-job/pets"}}) + "\n"
        for ref, label in dict(zip(refs, labels)).items()))
    summary = evaluate(folder / "run" / "evaluation", version["arn"])["summary"]
    where = outputs.write_outputs(ctx.s3, version["output_config"], version["arn"],
                                  {outputs.SUMMARY: outputs.summary_for(summary, version["arn"])})
    ctx.store.finish_job(job["id"], "done", version_status="TRAINING_COMPLETED", details={
        "f1": summary["AggregatedEvaluationResults"]["Metrics"]["F1Score"], "task": "classification",
        "outputs": where})
    return version["arn"]


@pytest.fixture(scope="module")
def versions(service):
    ctx = service.state.console.state.console.ctx
    project_arn = service.rekognition.create_project(ProjectName=PROJECT)["ProjectArn"]
    arrays = {"v1": small_arrays(), "big": big_arrays()}
    older = small_arrays()
    arrays["v0"] = (older[0], np.round(older[1][:, [1, 0, 2]], 6))  # a worse version to compare with
    arrays["raw"] = (older[0], np.where(older[1] > 0, older[1] - 6e-7, 0.0))  # more than 6 decimals
    for name, (truth, probs) in arrays.items():
        refs = image_refs(ctx.s3.root, len(truth))
        trained_version(ctx, project_arn, name, refs, [LABELS[t] for t in truth], lambda out, arn: write_evaluation(
            out, y_true=truth, probs=probs, labels=LABELS, paths=[local_file(ctx, r) for r in refs], run_id=arn,
            number_of_training_images=120))
    trained_version(ctx, project_arn, "boxes", [ref(0), ref(1)], ["bird", "cat"], lambda out, arn: (
        write_detection_evaluation(out, samples=[
            Sample(Path(local_file(ctx, ref(0))), ("bird",), "g0", (Box("bird", 8, 8, 16, 16),)),
            Sample(Path(local_file(ctx, ref(1))), ("cat",), "g1", (Box("cat", 20, 10, 20, 20),))], predictions=[
            np.array([[8 / 48, 8 / 48, 1 / 3, 1 / 3, 0.9, 0]]),  # the bird, found
            np.array([[0.0, 0.0, 0.25, 0.25, 0.95, 0]])],  # a bird where there is none; the cat missed
            labels=["bird", "cat"], run_id=arn)))
    ctx.store.create_version(project_arn, "pending", enqueue=False)
    return arrays


def ref(i: int) -> str:
    return f"s3://{BUCKET}/test/{i % 40:04d}.png"


def assets(bucket: str, key: str) -> dict:
    return {"Assets": [{"GroundTruthManifest": {"S3Object": {"Bucket": bucket, "Name": key}}}]}


@pytest.fixture(scope="module")
def trained(service):
    """(project, version, test refs) of a version CreateProjectVersion made and the trainer trained (tiny)."""
    from edgelabels.service.trainer import train_version

    ctx = service.state.console.state.console.ctx
    write_bucket(ctx.s3.root, "colours")
    project_arn = service.rekognition.create_project(ProjectName="colours")["ProjectArn"]
    arn = service.rekognition.create_project_version(
        ProjectArn=project_arn, VersionName="tiny", TrainingData=assets("colours", "train.manifest"),
        TestingData=assets("colours", "test.manifest"), OutputConfig={"S3Bucket": "results", "S3KeyPrefix": "colours"},
    )["ProjectVersionArn"]
    job = ctx.store.claim_next()
    assert job["version_arn"] == arn
    train_version(ctx, job)
    assert ctx.store.version(arn)["status"] == "TRAINING_COMPLETED"
    lines = (ctx.s3.root / "colours" / "test.manifest").read_text().splitlines()
    return "colours", "tiny", [json.loads(line)["source-ref"] for line in lines]


def url(version: str, tail: str = "evaluation", project: str = PROJECT) -> str:
    return f"/console/projects/{project}/versions/{version}/{tail}"


def expected_cells(truth, probs, threshold: float) -> dict:
    rows = evaluate_arrays(truth, probs, LABELS, min_confidence=threshold)["per_label"]
    return {(row["label"], metric): "–" if row["at_min_confidence"][metric] is None
            else f"{row['at_min_confidence'][metric]:.3f}"
            for row in rows for metric in ("precision", "recall", "f1")}


# ---------------------------------------------------------------- in-process


def test_data_json_carries_every_test_image_with_its_source_ref_truth_and_confidences(service, versions):
    page = signed_in(service)
    status, _, text = page.get(url("v1", "evaluation/data.json"))
    assert status == 200
    data = json.loads(text)
    truth, probs = versions["v1"]
    assert data["labels"] == LABELS
    assert data["refs"] == [ref(i) for i in range(40)]
    assert data["truth"] == truth.tolist()
    assert np.array_equal(np.array(data["probs"]), probs)


def test_a_trained_versions_data_maps_each_image_the_trainer_read_back_to_its_source_ref(service, trained):
    project, version, refs = trained
    status, _, text = signed_in(service).get(url(version, "evaluation/data.json", project))
    assert status == 200
    data = json.loads(text)
    assert data["labels"] == ["green", "red"]
    assert sorted(data["refs"]) == sorted(refs)
    assert [data["labels"][t] for t in data["truth"]] == [ref.split("/")[-1].split("-")[0] for ref in data["refs"]]


def test_the_page_shows_rekognitions_per_label_table_and_a_slider_per_label(service, versions):
    status, _, text = signed_in(service).get(url("v1"))
    assert status == 200
    metrics = evaluate_arrays(*versions["v1"], LABELS)
    for row in metrics["per_label"]:
        f1 = row["at_assumed_threshold"]["f1"]
        assert f'data-label="{row["label"]}" data-metric="f1">{f1:.3f}<' in text
        assert f'class="threshold" data-label="{row["label"]}"' in text
    assert 'id="threshold-all"' in text and 'id="confusion"' in text
    assert 'data-true="cat" data-predicted="red fox"' in text


def test_a_version_not_trained_or_unknown_is_404_with_one_line_and_data_json_too(service, versions):
    page = signed_in(service)
    status, _, text = page.get(url("pending"))
    assert status == 404 and "has not finished training" in text and "Traceback" not in text
    status, _, text = page.get(url("pending", "evaluation/data.json"))
    assert status == 404 and "has not finished training" in json.loads(text)["message"]
    assert page.get(url("no-such-version"))[0] == 404


def test_without_a_session_the_evaluation_and_its_data_are_refused(service, versions):
    page = Page(service.port)
    assert page.get(url("v1"))[0] == 401
    status, _, text = page.get(url("v1", "evaluation/data.json"))
    assert status == 401 and "bird" not in text


def test_compare_shows_both_versions_summaries_and_per_label_f1(service, versions):
    status, _, text = signed_in(service).get(f"/console/projects/{PROJECT}/compare?a=v0&b=v1")
    assert status == 200
    for name in ("v0", "v1"):
        metrics = evaluate_arrays(*versions[name], LABELS)
        overall = metrics["at_assumed_thresholds"]["f1"]
        for f1 in [overall, *[row["at_assumed_threshold"]["f1"] for row in metrics["per_label"]]]:
            assert re.search(f'data-version="{name}" data-metric="f1"( class="better")?>{f1:.3f}<', text)
    assert '<option value="v0" selected>' in text and '<option value="v1" selected>' in text
    f1 = {name: {row["label"]: row["at_assumed_threshold"]["f1"]
                 for row in evaluate_arrays(*versions[name], LABELS)["per_label"]} for name in ("v0", "v1")}
    for label in LABELS:
        row = text[text.index(f'<tr data-label="{label}">'):]
        row = row[:row.index("</tr>")]
        winner = max(("v0", "v1"), key=lambda name: f1[name][label])
        marked = f'data-version="{winner}" data-metric="f1" class="better">' in row
        assert marked == (f1["v0"][label] != f1["v1"][label]) and row.count("better") == marked, label
    status, _, text = signed_in(service).get(f"/console/projects/{PROJECT}/compare?a=v0&b=pending")
    assert status == 404 and "has not finished training" in text


def test_a_detectors_page_says_why_no_slider_and_draws_its_false_and_missed_boxes(service, versions):
    status, _, text = signed_in(service).get(url("boxes"))
    assert status == 200
    assert 'id="no-sliders"' in text and 'class="threshold"' not in text and 'id="confusion"' not in text
    mistakes = text[text.index('id="mistakes"'):]
    assert f'data-ref="{ref(1)}"' in mistakes and f'data-ref="{ref(0)}"' not in mistakes  # the bird was found
    assert '<rect class="false" data-label="bird" x="0" y="0" width="12" height="12"' in mistakes
    assert '<rect class="missed" data-label="cat" x="20" y="10" width="20" height="20"' in mistakes
    assert signed_in(service).get(url("boxes", "evaluation/data.json"))[0] == 404


# ---------------------------------------------------------------- in the browser


def opened(service, chromium, version: str):
    """A signed-in page on VERSION's evaluation, its data loaded; the list its console errors go to."""
    page, errors = signed_in_page(chromium, service.port, signed_in(service).cookie)
    page.goto(f"http://127.0.0.1:{service.port}{url(version)}")
    page.wait_for_selector('#evaluation[data-ready="true"]')
    return page, errors


def set_range(page, selector: str, value: float) -> None:
    page.eval_on_selector(selector, "(el, v) => { el.value = v; el.dispatchEvent(new Event('input', "
                                    "{bubbles: true})); }", str(value))


def cells(page) -> dict:
    return {(label, metric): page.inner_text(f'td[data-label="{label}"][data-metric="{metric}"]')
            for label in LABELS for metric in ("precision", "recall", "f1")}


def test_moving_the_threshold_shows_what_evaluate_computes_at_that_min_confidence(service, versions, chromium):
    page, errors = opened(service, chromium, "v1")
    truth, probs = versions["v1"]
    for threshold in (0.35, 0.8, 0.05):
        set_range(page, "#threshold-all", threshold)
        assert cells(page) == expected_cells(truth, probs, threshold), threshold
    assert cells(page)[("bird", "precision")] != "0.063"
    set_range(page, "#threshold-all", 0.35)
    assert page.inner_text('td[data-label="bird"][data-metric="precision"]') == "0.062"  # 1/16, to even

    set_range(page, 'input.threshold[data-label="cat"]', 0.6)  # one label's own slider moves only its row
    expected = {**expected_cells(truth, probs, 0.35),
                **{key: value for key, value in expected_cells(truth, probs, 0.6).items() if key[0] == "cat"}}
    assert cells(page) == expected


    set_range(page, "#coverage", 0.7)
    row = coverage_table(truth, probs, [0.7])[0]
    assert page.inner_text("#accepted-accuracy") == f"{row['accuracy']:.3f}"
    assert page.inner_text("#sent-to-human").startswith(f"{row['discarded']} of 40 images")
    assert errors == []


def test_a_confusion_cell_lists_its_images_and_mistakes_come_worst_first(service, versions, chromium):
    page, errors = opened(service, chromium, "v1")
    truth, probs = versions["v1"]
    top = top_labels(probs)
    wanted = {ref(i) for i in range(40) if truth[i] == 1 and top[i] == 2}
    assert wanted
    page.click('#confusion button[data-true="cat"][data-predicted="red fox"]')
    shown = page.eval_on_selector_all("#cell-images figure", "els => els.map(e => e.dataset.ref)")
    assert set(shown) == wanted and len(shown) == len(wanted)

    wrong = [i for i in range(40) if top[i] != truth[i]]
    worst = sorted(wrong, key=lambda i: -probs[i].max())
    shown = page.eval_on_selector_all("#mistakes figure", "els => els.map(e => e.dataset.ref)")
    assert shown == [ref(i) for i in worst]
    assert errors == []


def test_the_review_button_sends_the_images_below_coverage_and_shows_the_answer(service, versions, chromium):
    page, errors = opened(service, chromium, "v1")
    truth, probs = versions["v1"]
    set_range(page, "#coverage", 0.5)
    below = {ref(i) for i in range(40) if probs[i].max() < 0.5}
    assert page.inner_text("#review-count") == f"{len(below)} images"
    with page.expect_response(lambda r: r.url.endswith(url("v1", "review"))) as answered:
        page.click("#send-review")
    response = answered.value
    assert set(response.request.post_data_json["refs"]) == below
    assert response.request.headers.get("x-csrf-token")
    message, folder_page = response.json()["message"], response.json()["page"]
    page.wait_for_function("m => document.getElementById('review-message').textContent.startsWith(m)", arg=message)
    assert page.get_attribute("#review-message a#review-folder", "href") == folder_page
    assert errors == []


def test_with_5000_test_images_the_page_is_usable_within_a_second(service, versions, chromium):
    page, errors = opened(service, chromium, "v1")  # warm: the browser's first page costs more
    truth, probs = versions["big"]
    started = time.monotonic()
    page.goto(f"http://127.0.0.1:{service.port}{url('big')}")
    page.wait_for_selector('#evaluation[data-ready="true"]')
    set_range(page, "#threshold-all", 0.6)
    shown = cells(page)
    elapsed = time.monotonic() - started
    assert shown == expected_cells(truth, probs, 0.6)
    print(f"5,000 test images: usable in {elapsed:.2f} s")
    assert elapsed < 1.0, f"{elapsed:.2f} s"
    assert page.locator("#labels tbody tr").count() == len(LABELS)
    assert errors == []


def test_a_detectors_page_draws_its_boxes_over_the_thumbnail_without_a_script_error(service, versions, chromium):
    page, errors = opened(service, chromium, "boxes")
    figure = page.locator(f'#mistakes figure[data-ref="{ref(1)}"]')
    assert figure.locator("rect.false").is_visible() and figure.locator("rect.missed").is_visible()
    page.wait_for_function("() => Array.from(document.images).every(image => image.complete)")
    assert page.eval_on_selector("#mistakes img", "image => image.naturalWidth") > 0  # the thumbnail came
    assert errors == []


def test_sliders_start_at_the_assumed_thresholds_rounded_as_the_stored_confidences(service, versions, chromium):
    """predictions.csv keeps 6 decimals; a model's scores (and so its assumed thresholds) have more. Each score of
    "raw" is a 6-decimal one less 6e-7 (0.3999994), stored rounded down (0.399999): a slider at the unrounded
    threshold would drop the image whose score it is, and would not give back Rekognition's table."""
    page, errors = opened(service, chromium, "raw")
    set_range(page, "#threshold-all", 0.5)
    page.click("#reset-thresholds")
    rows = evaluate_arrays(*versions["raw"], LABELS)["per_label"]
    assert cells(page) == {(row["label"], metric): "–" if row["at_assumed_threshold"][metric] is None
                           else f"{row['at_assumed_threshold'][metric]:.3f}"
                           for row in rows for metric in ("precision", "recall", "f1")}
    assert errors == []
