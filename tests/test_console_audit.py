"""The console's label audit of a dataset and a version's review queue sent to the label loop (issue 29).

One tiny audit (2 folds, 1 round, the TINY recipe) of a dataset made from write_bucket's images with deliberately
wrong labels: three green images labelled red, and a byte-identical copy of a red image labelled green (a
duplicate with another label, which the audit finds without any model). The app runs in this process under
uvicorn (test_console's fixture), the datasets are made through boto3."""

from __future__ import annotations

import csv
import http.client
import json
import re
import shutil
import time
import urllib.parse
from pathlib import Path

import pytest

import test_console
from edgelabels.console.auth import COOKIE
from edgelabels.console.suspects import suspects_of

from helpers.service_ops import manifest_line, write_bucket

service = test_console.service  # uvicorn + boto3 on one port, module scope
BUCKET = "colours"
AUDIT = "/console/projects/audited/datasets/train/audit"
REVIEW = "/console/projects/audited/versions/v1/review"
WRONG = [f"train/green-{j:02d}.png" for j in (9, 10, 11)]  # green images labelled red
COPY = "train/copy-of-red-00.png"  # red-00's bytes, labelled green


def ref(key: str) -> str:
    return f"s3://{BUCKET}/{key}"


def ctx_of(app):
    return app.state.console.state.console.ctx


def wait_dataset(app, arn: str) -> None:
    deadline = time.monotonic() + 60
    while app.rekognition.describe_dataset(DatasetArn=arn)["DatasetDescription"]["Status"].endswith("IN_PROGRESS"):
        assert time.monotonic() < deadline, f"{arn} still in progress"
        time.sleep(0.1)


def make_dataset(app, project_arn: str, kind: str, manifest: str) -> str:
    arn = app.rekognition.create_dataset(ProjectArn=project_arn, DatasetType=kind, DatasetSource={
        "GroundTruthManifest": {"S3Object": {"Bucket": BUCKET, "Name": manifest}}})["DatasetArn"]
    wait_dataset(app, arn)
    return arn


def audit_state(page, path: str) -> tuple[str, str]:
    status, _, text = page.get(path)
    assert status == 200, text
    return re.search(r'id="audit-status" data-state="(\w+)"', text).group(1), text


def wait_audit(page, path: str, timeout_s: float = 600) -> str:
    deadline = time.monotonic() + timeout_s
    while True:
        state, text = audit_state(page, path)
        if state in ("done", "failed"):
            return text
        assert time.monotonic() < deadline, f"the audit still runs: {text[-2000:]}"
        time.sleep(1)


def send_json(port: int, path: str, body, cookie: str | None, csrf: str | None):
    """A script's POST as the console's pages send it: JSON, the session cookie, the X-CSRF-Token header."""
    headers = {"Content-Type": "application/json"}
    if cookie:
        headers["Cookie"] = f"{COOKIE}={cookie}"
    if csrf:
        headers["X-CSRF-Token"] = csrf
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", path, body=json.dumps(body).encode(), headers=headers)
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read().decode())
    finally:
        connection.close()


@pytest.fixture(scope="module")
def audited(service):
    """Project `audited` (train: the noisy dataset, test: write_bucket's test images, version v1 created but not
    trained: no trainer runs here) with its audit done; project `tiny` (one image per label) with its audit failed."""
    ctx = ctx_of(service)
    s3 = ctx.s3.root
    write_bucket(s3, BUCKET)
    shutil.copyfile(s3 / BUCKET / "train" / "red-00.png", s3 / BUCKET / COPY)
    lines = [manifest_line(BUCKET, f"train/{label}-{j:02d}.png",
                           "red" if f"train/{label}-{j:02d}.png" in WRONG else label)
             for label in ("red", "green") for j in range(12)]
    (s3 / BUCKET / "audit.manifest").write_text("\n".join([*lines, manifest_line(BUCKET, COPY, "green")]) + "\n")
    (s3 / BUCKET / "tiny.manifest").write_text(manifest_line(BUCKET, "train/red-00.png", "red") + "\n"
                                               + manifest_line(BUCKET, "train/green-00.png", "green") + "\n")
    arn = service.rekognition.create_project(ProjectName="audited")["ProjectArn"]
    make_dataset(service, arn, "TRAIN", "audit.manifest")
    make_dataset(service, arn, "TEST", "test.manifest")
    service.rekognition.create_project_version(ProjectArn=arn, VersionName="v1",
                                               OutputConfig={"S3Bucket": "results", "S3KeyPrefix": "v1/"})
    tiny = service.rekognition.create_project(ProjectName="tiny")["ProjectArn"]
    make_dataset(service, tiny, "TRAIN", "tiny.manifest")

    page = test_console.signed_in(service)
    csrf = test_console.csrf_of(page)
    began = time.monotonic()
    started = page.post(AUDIT, {"csrf": csrf, "folds": "2", "rounds": "1"})
    again = page.post(AUDIT, {"csrf": csrf})  # while the first one runs
    page.post("/console/projects/tiny/datasets/train/audit", {"csrf": csrf})
    failed = wait_audit(page, "/console/projects/tiny/datasets/train/audit")
    done = wait_audit(page, AUDIT)
    return {"page": page, "csrf": csrf, "started": started, "again": again, "done": done, "failed": failed,
            "seconds": time.monotonic() - began, "ctx": ctx}


def test_starting_an_audit_redirects_to_its_page_and_a_second_one_is_refused_while_it_runs(audited):
    status, answer, _ = audited["started"]
    assert (status, answer.getheader("Location")) == (303, AUDIT)
    status, _, text = audited["again"]
    assert status == 400 and "an audit of this dataset is running" in text


def test_a_finished_audit_lists_its_suspects_by_the_datasets_source_refs(audited, service):
    folder = audited["ctx"].directory / "console" / "audits" / "audited" / "train"
    with open(folder / "suspects.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    dataset_refs = {ref(f"train/{label}-{j:02d}.png") for label in ("red", "green") for j in range(12)} | {ref(COPY)}
    images = [row["image"] for row in rows]
    assert images and set(images) <= dataset_refs
    # the copy and its original carry two labels for one picture: suspects whatever the tiny models learnt
    duplicates = {row["image"] for row in rows if row["reason"].startswith("duplicate")}
    assert {ref(COPY), ref("train/red-00.png")} <= duplicates
    copy = next(row for row in rows if row["image"] == ref(COPY))
    assert copy["detail"] == f"identical to {ref('train/red-00.png')} (labelled red)"
    found = suspects_of(audited["ctx"], "audited", "train")
    assert set(found) == set(images)
    assert found[ref(COPY)]["reason"].startswith("duplicate")
    assert suspects_of(audited["ctx"], "audited", "test") == {}
    assert audited["seconds"] < 600


def test_the_audit_page_shows_the_count_the_suspects_and_a_link_to_the_filtered_grid(audited):
    text = audited["done"]
    count = int(re.search(r'id="suspect-count">(\d+)<', text).group(1))
    assert count == len(suspects_of(audited["ctx"], "audited", "train"))
    assert 'href="/console/projects/audited/datasets/train?suspects=1"' in text
    assert f'data-ref="{ref(COPY)}"' in text
    status, answer, report = audited["page"].get(AUDIT + "/report")
    assert status == 200 and "Label audit" in report
    assert "sandbox" in answer.getheader("Content-Security-Policy")


def test_an_audit_that_cannot_run_shows_its_reason(audited):
    text = audited["failed"]
    assert "Failed" in text
    reason = re.search(r'id="audit-reason">([^<]+)<', text).group(1)
    # one image per label cannot be dealt into 2 folds that each train on both; said of the dataset, not of the
    # console's working copy of it
    assert reason.startswith("the dataset: label &#39;green&#39; has 1 image, fewer than the 2 folds"), reason
    assert suspects_of(audited["ctx"], "tiny", "train") == {}


def test_an_audit_is_refused_without_a_session_or_csrf_token(audited, service):
    path = "/console/projects/audited/datasets/test/audit"
    assert test_console.Page(service.port).post(path, {"csrf": audited["csrf"]})[0] == 401
    assert audited["page"].post(path, {"csrf": "stale"})[0] == 403
    state, _ = audit_state(audited["page"], path)
    assert state == "none"


def test_the_review_queue_becomes_label_studio_tasks_and_the_next_commands_work(audited, service, tmp_path):
    from edgelabels.cli import main

    refs = [ref("test/red-00.png"), ref("test/green-01.png"), ref("train/red-03.png")]
    status, answer = send_json(service.port, REVIEW, {"refs": refs}, audited["page"].cookie, audited["csrf"])
    assert status == 200, answer
    message, folder = answer["message"], Path(answer["folder"])
    assert message.startswith(f"3 images exported for labelling to {folder}: import {folder / 'tasks.json'}")
    root = audited["ctx"].directory / "console" / "label-loop"
    assert folder.parent == root / "audited" and folder.name.startswith("v1-")
    tasks = json.loads((folder / "tasks.json").read_text())
    assert [t["data"]["s3_ref"] for t in tasks] == refs
    for task, key in zip(tasks, ("test/red-00.png", "test/green-01.png", "train/red-03.png")):
        local = f"audited/{folder.name}/images/{BUCKET}/{key}"
        assert task["data"]["image"] == "/data/local-files/?d=" + urllib.parse.quote(local)
        assert (root / local).read_bytes() == (audited["ctx"].s3.root / BUCKET / key).read_bytes()
    assert [t["predictions"][0]["result"][0]["value"]["choices"] for t in tasks] == [["red"], ["green"], ["red"]]
    interface = (folder / "label-config.xml").read_text()
    assert '<Choice value="green"/>' in interface and '<Choice value="red"/>' in interface

    # a person answers the first task "green" in Label Studio; its JSON export, then the message's own command
    tasks[0]["annotations"] = [{"id": 1, "was_cancelled": False, "result": [
        {**tasks[0]["predictions"][0]["result"][0], "value": {"choices": ["green"]}}]}]
    export = tmp_path / "EXPORT.json"
    export.write_text(json.dumps(tasks))
    command = re.search(r"`(edgelabels label import [^`]+)`", message).group(1).replace("EXPORT.json", str(export))
    assert main(command.split()[1:]) == 0
    next_lines = [json.loads(line) for line in (folder / "next.manifest").read_text().splitlines()]
    assert [line["colour-metadata"]["class-name"] for line in next_lines] == ["green", "green", "red"]


def test_the_review_is_refused_without_session_csrf_or_known_images(audited, service):
    body = {"refs": [ref("test/red-00.png")]}
    assert send_json(service.port, REVIEW, body, None, audited["csrf"])[0] == 401
    assert send_json(service.port, REVIEW, body, audited["page"].cookie, None)[0] == 403
    status, answer = send_json(service.port, REVIEW, {"refs": [ref("elsewhere/x.png")]}, audited["page"].cookie,
                               audited["csrf"])
    assert status == 400 and "s3://colours/elsewhere/x.png" in answer["message"]
    status, answer = send_json(service.port, REVIEW.replace("v1", "v9"), body, audited["page"].cookie,
                               audited["csrf"])
    assert status == 404 and "v9" in answer["message"]
    assert send_json(service.port, REVIEW, {"refs": "not a list"}, audited["page"].cookie, audited["csrf"])[0] == 400



def test_in_a_browser_the_audit_page_shows_thumbnails_and_its_form_starts_an_audit_without_a_script_error(
        audited, service, chromium):
    from playwright.sync_api import expect

    from helpers.browser import signed_in_page

    page, errors = signed_in_page(chromium, service.port, audited["page"].cookie)
    base = f"http://127.0.0.1:{service.port}"
    page.goto(base + AUDIT)
    first = page.locator(f'#suspects tr[data-ref="{ref(COPY)}"] img')
    expect(first).to_be_visible()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=first.element_handle())
    expect(page.locator("#suspects-link")).to_have_attribute("href", "/console/projects/audited/datasets/train"
                                                                     "?suspects=1")
    status_file = audited["ctx"].directory / "console" / "audits" / "tiny" / "train" / "status.json"
    before = json.loads(status_file.read_text())["started"]
    page.goto(base + "/console/projects/tiny/datasets/train/audit")
    page.get_by_label("Folds (trainings per round)").fill("2")
    page.get_by_role("button", name="Audit the labels").click()
    assert page.url == base + "/console/projects/tiny/datasets/train/audit"
    expect(page.locator("#audit-reason")).to_contain_text("fewer than the 2 folds", timeout=30_000)
    assert json.loads(status_file.read_text())["started"] > before  # a new audit, failed for the same reason
    page.context.close()
    assert errors == []


def test_suspects_of_follows_the_file_and_keeps_each_images_best_rank(tmp_path):
    from types import SimpleNamespace

    ctx = SimpleNamespace(directory=tmp_path)
    folder = tmp_path / "console" / "audits" / "p" / "train"
    folder.mkdir(parents=True)
    header = "rank,image,given,suggested,confidence,reason,detail,quality,box\n"
    (folder / "suspects.csv").write_text(header + "2,s3://b/a.png,red,,,blank,,,\n"
                                         "1,s3://b/a.png,red,green,0.900000,label likely wrong,,0.1,\n")
    assert suspects_of(ctx, "p", "train") == {"s3://b/a.png": {
        "suggested": "green", "confidence": 0.9, "reason": "label likely wrong", "detail": "", "rank": 1}}
    (folder / "suspects.csv").write_text(header + "1,s3://b/c.png,red,,,blank,,,\n")
    assert list(suspects_of(ctx, "p", "train")) == ["s3://b/c.png"]
    assert suspects_of(ctx, "p", "../../elsewhere") == {} and suspects_of(ctx, "q", "train") == {}
