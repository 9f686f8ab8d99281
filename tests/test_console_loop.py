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

from helpers.service_ops import manifest_line, write_bucket

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
    status, _, listing = looped["page"].get(LOOP)
    assert status == 200
    row = re.search(rf'<tr data-folder="{folder.name}">(.*?)</tr>', listing, re.S).group(1)
    assert f'href="{LOOP}/{folder.name}"' in row and 'class="images">3<' in row and 'data-imported="no"' in row
    status, text = looped["page"].get(f"{LOOP}/{folder.name}")[::2]
    assert status == 200 and re.search(r'id="tasks-count">3<', text)
    assert f"{LOOP}/{folder.name}" in (folder / "next-steps.txt").read_text()  # the review's message names the page
    assert 'form id="import-corrections"' in text and 'type="file" name="export"' in text
    # the next steps as commands naming this review's own files, ready to copy
    assert (f"<pre>edgelabels label import {folder}/review.manifest --from-json EXPORT.json --out "
            f"{folder}/next.manifest</pre>") in text
    assert f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={folder.parent.parent} label-studio start" in text

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


def test_a_box_moved_in_label_studio_is_moved_in_the_dataset_and_the_page_links_the_entry(service, looped):
    key = "train/green-08.png"
    line = json.loads(manifest_line(BUCKET, key, "green"))
    line["bounding-box"] = {"image_size": [{"width": 64, "height": 64, "depth": 3}], "annotations": [
        {"class_id": 0, "left": 4, "top": 4, "width": 20, "height": 20},
        {"class_id": 1, "left": 30, "top": 30, "width": 16, "height": 16}]}
    line["bounding-box-metadata"] = {**line["colour-metadata"], "type": "groundtruth/object-detection",
                                     "objects": [{"confidence": 1}] * 2, "class-map": {"0": "spot", "1": "dot"}}
    del line["bounding-box-metadata"]["class-name"], line["bounding-box-metadata"]["confidence"]
    service.rekognition.update_dataset_entries(DatasetArn=looped["train"], Changes={
        "GroundTruth": json.dumps(line).encode() + b"\n"})
    test_console_audit.wait_dataset(service, looped["train"])
    folder = export_review(service, looped, [key])
    before = both(service, looped)
    task, = json.loads((folder / "tasks.json").read_text())
    result = json.loads(json.dumps(task["predictions"][0]["result"]))
    spot, = [r for r in result if r["type"] == "rectanglelabels" and r["value"]["rectanglelabels"] == ["spot"]]
    spot["value"]["x"] += 10  # 10% of 64 px to the right
    task.update(id=1, annotations=[{"id": 1, "was_cancelled": False, "result": result}])
    status, text = upload(service.port, f"{LOOP}/{folder.name}", looped["page"].cookie, looped["csrf"],
                          "boxes.json", json.dumps([task]).encode())
    assert status == 200
    assert message_of(text) == ("boxes.json: 1 of 1 task answered; 0 labels and 1 box corrected in TRAIN, 0 labels "
                                "and 0 boxes in TEST.")
    after = both(service, looped)
    assert {k for k in before[0] if before[0][k] != after[0][k]} == {ref(key)} and after[1] == before[1]
    changed = after[0][ref(key)]
    assert [(a["class_id"], a["left"], a["top"], a["width"], a["height"]) for a in
            changed["bounding-box"]["annotations"]] == [(0, 10.4, 4, 20, 20), (1, 30, 30, 16, 16)]
    assert label_of(changed) == "green"
    assert (f'<a class="open" href="/console/projects/looped/datasets/train/entry?ref=s3%3A//{BUCKET}/{key}">'
            in text)


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
    folder = export_review(service, looped, ["train/red-05.png"])
    # meanwhile someone labels it blue through the API; then the person's "green" comes back from Label Studio
    edited = json.loads(manifest_line(BUCKET, "train/red-05.png", "red"))
    edited["colour-metadata"]["class-name"] = "blue"
    service.rekognition.update_dataset_entries(DatasetArn=looped["train"], Changes={
        "GroundTruth": json.dumps(edited).encode() + b"\n"})  # boto3 encodes the blob
    test_console_audit.wait_dataset(service, looped["train"])
    before = both(service, looped)
    export = answered(json.loads((folder / "tasks.json").read_text()), ["green"])
    status, text = upload(service.port, f"{LOOP}/{folder.name}", looped["page"].cookie, looped["csrf"],
                          "late.json", json.dumps(export).encode())
    assert status == 200
    assert message_of(text).endswith(f"0 labels and 0 boxes corrected in TRAIN, 0 labels and 0 boxes in TEST. "
                                     f"1 entry was edited since the export, not overwritten: "
                                     f"{ref('train/red-05.png')}.")
    assert both(service, looped) == before
    assert label_of(before[0][ref("train/red-05.png")]) == "blue"


def annotated_as(annotations):
    """The folder's tasks with these (malformed) annotations, as JSON."""
    return lambda tasks: json.dumps([{**task, "annotations": annotations} for task in tasks]).encode()


@pytest.mark.parametrize("filename, data, says", [
    ("notes.txt", b"these are not the corrections", "notes.txt: not a Label Studio JSON export"),
    ("object.json", b'{"tasks": []}', "object.json: not a Label Studio JSON export (a list of tasks"),
    ("empty.json", b"[]", "empty.json: the export holds no task"),
    ("binary.json", bytes(range(256)), "binary.json: not a Label Studio JSON export"),
    ("odd.json", b'[{"id": 4, "data": {"source_ref": ["a"], "image": 3}}]',
     "odd.json: task 4 (no local image) is not one"),
    ("odd.json", annotated_as("yes"), "odd.json: not a Label Studio JSON export of these tasks (AttributeError"),
    ("odd.json", annotated_as([{"result": [{"type": "choices"}]}]),
     "odd.json: not a Label Studio JSON export of these tasks (KeyError"),
])
def test_an_upload_that_is_no_label_studio_export_is_one_line_and_changes_nothing(service, looped, filename, data,
                                                                                   says):
    folder = export_review(service, looped, QUEUE[:1])
    before = both(service, looped)
    if callable(data):
        data = data(json.loads((folder / "tasks.json").read_text()))
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


def test_only_a_listed_folder_is_reached(service, looped, tmp_path):
    page = looped["page"]
    real = export_review(service, looped, QUEUE[:1])
    root = real.parent
    (root / "v1-20250101T000000Z").mkdir()  # a review's name, but no review in it
    outside = tmp_path / "outside"
    shutil.copytree(real, outside)
    (root / "v1-20250102T000000Z").symlink_to(outside)  # a review, but a link out of the label-loop folder
    for folder in ("v1-20250101T000000Z", "v1-20250102T000000Z", "v9-20260101T000000Z", "..", "%2E%2E",
                   "..%2F..%2Fstatus.json", "images"):
        assert page.get(f"{LOOP}/{folder}")[0] == 404, folder
        assert upload(service.port, f"{LOOP}/{folder}", page.cookie, looped["csrf"], "x.json", b"[]")[0] == 404
    listing = page.get(LOOP)[2]
    assert "v1-20250101T000000Z" not in listing and "v1-20250102T000000Z" not in listing
    assert f'data-folder="{real.name}"' in listing
    assert page.get("/console/projects/nobody/label-loop")[0] == 404


def test_the_listing_is_newest_first_with_each_reviews_date_version_and_images(service, looped):
    real = export_review(service, looped, QUEUE[:2])
    names = ["v1-20250103T000000Z", "v1-20250103T000000Z-2", "v1-20250103T000000Z-10", "v2-20250104T093000Z"]
    for name in names:
        shutil.copytree(real, real.parent / name)
    listing = looped["page"].get(LOOP)[2]
    shown = re.findall(r'<tr data-folder="([^"]+)">', listing)
    assert [name for name in shown if name in names] == [names[3], names[2], names[1], names[0]]
    assert shown.index(real.name) < shown.index(names[3])  # this year's exports before those of 2025
    row = re.search(rf'<tr data-folder="{names[3]}">(.*?)</tr>', listing, re.S).group(1)
    assert "<td>2025-01-04 09:30:00 UTC</td>" in row and ">v2</a>" in row and 'class="images">2<' in row


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


def test_in_a_browser_the_listing_leads_to_the_folder_whose_form_imports_the_export_without_a_script_error(
        service, looped, chromium, tmp_path):
    from playwright.sync_api import expect

    from helpers.browser import signed_in_page

    folder = export_review(service, looped, ["train/green-07.png"])
    export = tmp_path / "project-9.json"
    export.write_text(json.dumps(answered(json.loads((folder / "tasks.json").read_text()), ["red"])))
    page, errors = signed_in_page(chromium, service.port, looped["page"].cookie)
    base = f"http://127.0.0.1:{service.port}"
    page.goto(base + LOOP)
    page.click(f'#folders tr[data-folder="{folder.name}"] a.open')
    expect(page.locator("#tasks-count")).to_have_text("1")
    page.set_input_files("#import-corrections input[name=export]", str(export))
    page.click("#import")
    expect(page.locator("p.message")).to_have_text("project-9.json: 1 of 1 task answered; 1 label and 0 boxes "
                                                   "corrected in TRAIN, 0 labels and 0 boxes in TEST.")
    expect(page.locator("#imports td.result")).to_have_count(1)
    assert label_of(entries(service, looped["train"])[ref("train/green-07.png")]) == "red"
    page.context.close()
    assert errors == []
