"""The console's label loop brought back (issue 29): a version's review queue sent to Label Studio, Label Studio's
JSON export of it uploaded on the review folder's page, and the corrections in the project's datasets.

Project `looped`: TRAIN and TEST from write_bucket's manifests, version v1 created but not trained (the review
endpoint needs only the version and the datasets). Label Studio is simulated as test_console_audit.py does it: its
JSON export is the exported tasks with a person's annotations added. The app runs in this process under uvicorn
(test_console's fixture); the datasets are read back through boto3's ListDatasetEntries."""

from __future__ import annotations

import http.client
import json
import re
import shutil
from pathlib import Path

import pytest

import test_console
import test_console_audit
from edgelabels.console.auth import COOKIE

from helpers.service_ops import write_bucket

service = test_console.service  # uvicorn + boto3 on one port, module scope
BUCKET = "colours"
LOOP = "/console/projects/looped/label-loop"
REVIEW = "/console/projects/looped/versions/v1/review"
QUEUE = ["test/red-00.png", "test/green-01.png", "train/red-03.png"]  # two TEST images, one TRAIN image
EXTRA = "elsewhere/red-extra.png"  # in the version's frozen test data only: in neither dataset


def ref(key: str) -> str:
    return f"s3://{BUCKET}/{key}"


def upload(port: int, path: str, cookie: str | None, csrf: str | None, filename: str, data: bytes):
    """The import form as a browser posts it: multipart, the csrf field and the file."""
    boundary = "edgelabels-test-boundary"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="csrf"\r\n\r\n{csrf}\r\n'.encode()] if csrf else []
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="export"; filename="{filename}"\r\n'
                 f'Content-Type: application/json\r\n\r\n'.encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    if cookie:
        headers["Cookie"] = f"{COOKIE}={cookie}"
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.request("POST", path, body=body, headers=headers)
        answer = connection.getresponse()
        return answer.status, answer.read().decode()
    finally:
        connection.close()


def entries(service, arn: str) -> dict[str, dict]:
    """source-ref -> line, as boto3's ListDatasetEntries lists them."""
    found = {}
    for page in service.rekognition.get_paginator("list_dataset_entries").paginate(DatasetArn=arn):
        for text in page["DatasetEntries"]:
            line = json.loads(text)
            found[line["source-ref"]] = line
    return found


def label_of(line: dict) -> str:
    return line["colour-metadata"]["class-name"]


def answered(tasks: list[dict], labels: list[str]) -> list[dict]:
    """Label Studio's JSON export of these tasks after a person chose `labels` (one per task, in order)."""
    done = json.loads(json.dumps(tasks))
    for number, (task, label) in enumerate(zip(done, labels), start=1):
        task["id"] = number
        task["annotations"] = [{"id": number, "was_cancelled": False, "result": [
            {**task["predictions"][0]["result"][0], "value": {"choices": [label]}}]}]
    return done


def message_of(text: str) -> str:
    found = re.search(r'<p class="message" role="alert">([^<]*)</p>', text)
    return found.group(1) if found else ""


@pytest.fixture(scope="module")
def looped(service):
    from edgelabels.service.versions import manifest_path

    from helpers.service_ops import manifest_line

    ctx = test_console_audit.ctx_of(service)
    write_bucket(ctx.s3.root, BUCKET)
    (ctx.s3.root / BUCKET / "elsewhere").mkdir()
    shutil.copyfile(ctx.s3.root / BUCKET / "test" / "red-01.png", ctx.s3.root / BUCKET / EXTRA)
    arn = service.rekognition.create_project(ProjectName="looped")["ProjectArn"]
    train = test_console_audit.make_dataset(service, arn, "TRAIN", "train.manifest")
    test = test_console_audit.make_dataset(service, arn, "TEST", "test.manifest")
    version = service.rekognition.create_project_version(
        ProjectArn=arn, VersionName="v1", OutputConfig={"S3Bucket": "results", "S3KeyPrefix": "v1/"})
    frozen = manifest_path(ctx.version_dir(version["ProjectVersionArn"]), "test")
    frozen.parent.mkdir(parents=True, exist_ok=True)
    frozen.write_text(manifest_line(BUCKET, EXTRA, "red") + "\n")
    page = test_console.signed_in(service)
    return {"page": page, "csrf": test_console.csrf_of(page), "train": train, "test": test, "ctx": ctx}


def export_review(service, looped, keys: list[str]) -> Path:
    status, answer = test_console_audit.send_json(service.port, REVIEW, {"refs": [ref(k) for k in keys]},
                                                  looped["page"].cookie, looped["csrf"])
    assert status == 200, answer
    return Path(answer["folder"])


def both(service, looped) -> tuple[dict, dict]:
    return entries(service, looped["train"]), entries(service, looped["test"])


def test_label_studios_corrections_go_into_the_datasets_that_hold_each_image(service, looped):
    folder = export_review(service, looped, QUEUE)
    status, listing = looped["page"].get(LOOP)
    assert status == 200
    row = re.search(rf'<tr data-folder="{folder.name}">(.*?)</tr>', listing, re.S).group(1)
    assert f'href="{LOOP}/{folder.name}"' in row and 'class="images">3<' in row and 'data-imported="no"' in row
    status, text = looped["page"].get(f"{LOOP}/{folder.name}")[::2]
    assert status == 200 and re.search(r'id="tasks-count">3<', text)
    assert f"{LOOP}/{folder.name}" in (folder / "next-steps.txt").read_text()  # the review's message names the page
    assert 'form id="import-corrections"' in text and 'type="file" name="export"' in text

    # a person relabels the first and the third image green and confirms the second one's label
    before_train, before_test = both(service, looped)
    tasks = json.loads((folder / "tasks.json").read_text())
    export = answered(tasks, ["green", "green", "green"])
    status, text = upload(service.port, f"{LOOP}/{folder.name}", looped["page"].cookie, looped["csrf"],
                          "project-7-at-2026-12-06.json", json.dumps(export).encode())
    assert status == 200, text
    assert message_of(text) == ("project-7-at-2026-12-06.json: 3 of 3 tasks answered; 1 label and 0 boxes "
                                "corrected in TRAIN, 1 label and 0 boxes in TEST.")
    after_train, after_test = both(service, looped)
    changed_train = {k for k in before_train if before_train[k] != after_train[k]}
    changed_test = {k for k in before_test if before_test[k] != after_test[k]}
    assert (changed_train, changed_test) == ({ref("train/red-03.png")}, {ref("test/red-00.png")})
    assert set(after_train) == set(before_train) and set(after_test) == set(before_test)  # nothing added
    assert label_of(after_train[ref("train/red-03.png")]) == "green"
    assert label_of(after_test[ref("test/red-00.png")]) == "green"
    assert after_test[ref("test/red-00.png")]["colour-metadata"]["human-annotated"] == "yes"

    record = json.loads((folder / "imported.json").read_text())["imports"]
    assert [(r["export"], r["datasets"]) for r in record] == [("project-7-at-2026-12-06.json", {
        "TRAIN": {"labels": 1, "boxes": 0, "entries": 1}, "TEST": {"labels": 1, "boxes": 0, "entries": 1}})]
    assert 'data-imported="yes"' in re.search(rf'<tr data-folder="{folder.name}">(.*?)</tr>',
                                              looped["page"].get(LOOP)[2], re.S).group(1)

    # the same export again changes nothing more
    status, text = upload(service.port, f"{LOOP}/{folder.name}", looped["page"].cookie, looped["csrf"],
                          "again.json", json.dumps(export).encode())
    assert status == 200 and "2 entries were corrected already" in message_of(text)
    assert both(service, looped) == (after_train, after_test)


def test_an_image_in_neither_dataset_is_reported_and_not_added(service, looped):
    folder = export_review(service, looped, [EXTRA])
    before = both(service, looped)
    export = answered(json.loads((folder / "tasks.json").read_text()), ["green"])
    status, text = upload(service.port, f"{LOOP}/{folder.name}", looped["page"].cookie, looped["csrf"],
                          "extra.json", json.dumps(export).encode())
    assert status == 200
    assert f"1 image is in neither dataset, not added: {ref(EXTRA)}." in message_of(text)
    assert both(service, looped) == before


def test_an_entry_edited_since_the_export_is_not_overwritten(service, looped):
    import base64

    from helpers.service_ops import manifest_line

    folder = export_review(service, looped, ["train/green-05.png"])
    # meanwhile someone relabels it (to red) through the API
    service.rekognition.update_dataset_entries(DatasetArn=looped["train"], Changes={"GroundTruth": base64.b64encode(
        (manifest_line(BUCKET, "train/green-05.png", "red") + "\n").encode())})
    test_console_audit.wait_dataset(service, looped["train"])
    before = both(service, looped)
    export = answered(json.loads((folder / "tasks.json").read_text()), ["red"])  # Label Studio's answer: also red
    export[0]["annotations"][0]["result"][0]["value"]["choices"] = ["red"]
    status, text = upload(service.port, f"{LOOP}/{folder.name}", looped["page"].cookie, looped["csrf"],
                          "late.json", json.dumps(export).encode())
    assert status == 200
    # the export said green and the person said red: a correction, but of a line that is no longer the exported one
    assert "1 entry was corrected already." in message_of(text)
    assert both(service, looped) == before


@pytest.mark.parametrize("filename, data, says", [
    ("notes.txt", b"these are not the corrections", "notes.txt: not a Label Studio JSON export"),
    ("object.json", b'{"tasks": []}', "object.json: not a Label Studio JSON export (a list of tasks"),
    ("empty.json", b"[]", "empty.json: the export holds no task"),
    ("binary.json", bytes(range(256)), "binary.json: not a Label Studio JSON export"),
])
def test_an_upload_that_is_no_label_studio_export_is_one_line_and_changes_nothing(service, looped, filename, data,
                                                                                   says):
    folder = export_review(service, looped, QUEUE[:1])
    before = both(service, looped)
    status, text = upload(service.port, f"{LOOP}/{folder.name}", looped["page"].cookie, looped["csrf"], filename,
                          data)
    assert status == 400
    message = message_of(text)
    assert message.startswith(f"Nothing imported: {says}") and "\n" not in message and "Traceback" not in text
    assert both(service, looped) == before and not (folder / "imported.json").exists()


def test_another_reviews_export_is_refused_and_changes_nothing(service, looped):
    mine = export_review(service, looped, QUEUE)
    other = export_review(service, looped, QUEUE)  # the same images sent again: same source_refs, another folder
    before = both(service, looped)
    export = answered(json.loads((other / "tasks.json").read_text()), ["green", "red", "green"])
    status, text = upload(service.port, f"{LOOP}/{mine.name}", looped["page"].cookie, looped["csrf"],
                          "other.json", json.dumps(export).encode())
    assert status == 400
    assert message_of(text) == (f"Nothing imported: other.json: task 1 (looped/{other.name}/images/{BUCKET}/"
                                f"{QUEUE[0]}) is not one of this review&#39;s tasks: export the Label Studio project "
                                f"that holds {mine.name}&#39;s tasks")
    assert both(service, looped) == before and not (mine / "imported.json").exists()


def test_only_a_listed_folder_is_reached(service, looped):
    page = looped["page"]
    root = looped["ctx"].directory / "console" / "label-loop" / "looped"
    (root / "not-a-review").mkdir(parents=True, exist_ok=True)
    for folder in ("not-a-review", "..", "%2E%2E", "..%2F..%2Fstatus", "v1-20260101T000000Z"):
        status, _, text = page.get(f"{LOOP}/{folder}")
        assert status == 404 or status == 200 and "Label loop</h1>" in text, (folder, status)  # ".." is the listing
        assert upload(service.port, f"{LOOP}/{folder}", page.cookie, looped["csrf"], "x.json", b"[]")[0] in (404, 405)
    assert "not-a-review" not in page.get(LOOP)[2]
    assert page.get("/console/projects/nobody/label-loop")[0] == 404


def test_the_pages_and_the_import_need_a_session_and_the_csrf_token(service, looped):
    folder = export_review(service, looped, QUEUE[:1])
    before = both(service, looped)
    data = json.dumps(answered(json.loads((folder / "tasks.json").read_text()), ["green"])).encode()
    anonymous = test_console.Page(service.port)
    assert anonymous.get(LOOP)[0] == 401 and anonymous.get(f"{LOOP}/{folder.name}")[0] == 401
    assert upload(service.port, f"{LOOP}/{folder.name}", None, looped["csrf"], "x.json", data)[0] == 401
    assert upload(service.port, f"{LOOP}/{folder.name}", looped["page"].cookie, None, "x.json", data)[0] == 403
    assert upload(service.port, f"{LOOP}/{folder.name}", looped["page"].cookie, "stale", "x.json", data)[0] == 403
    assert both(service, looped) == before and not (folder / "imported.json").exists()
