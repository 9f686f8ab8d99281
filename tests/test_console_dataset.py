"""The console's dataset pages (console/dataset_pages.py, console/thumbnails.py): the paged grid and its filters,
thumbnails, bulk relabel, adding images from a folder, an upload or an S3 prefix, the split; every change checked
through boto3 on the same port. The last test selects tiles and relabels them in a real Chromium."""

from __future__ import annotations

import http.client
import io
import json
import re
import sys
import time
import types
import uuid

import numpy as np
import pytest
from PIL import Image

import test_console as console_tests
from edgelabels.console.auth import COOKIE
from edgelabels.service.s3 import S3Error, S3Objects

from helpers.runs import make_image
from helpers.service_ops import manifest_line
from helpers.browser import signed_in_page

service = console_tests.service  # the same in-process service (uvicorn + boto3), one per module
signed_in = console_tests.signed_in


def s3_root(app):
    return app.state.ctx.s3.root


def wait_dataset(app, arn: str) -> dict:
    deadline = time.monotonic() + 60
    while True:
        found = app.rekognition.describe_dataset(DatasetArn=arn)["DatasetDescription"]
        if not found["Status"].endswith("_IN_PROGRESS") or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def entries(app, arn: str, **filters) -> dict[str, dict]:
    """{source-ref: line} of every entry, read through boto3's paginator."""
    pages = app.rekognition.get_paginator("list_dataset_entries").paginate(DatasetArn=arn, **filters)
    lines = [json.loads(line) for page in pages for line in page["DatasetEntries"]]
    return {line["source-ref"]: line for line in lines}


def label_of(line: dict) -> str | None:
    return next((v["class-name"] for k, v in line.items() if k.endswith("-metadata") and "class-name" in v), None)


def write_png(path, label_index: int = 0, size: int = 64, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    make_image(label_index, np.random.default_rng(seed), size).save(path, "PNG")


def project_with(app, name: str, lines: list[str], kind: str = "TRAIN") -> str:
    """A project whose KIND dataset holds these lines (UpdateDatasetEntries on an empty dataset); its ARN."""
    project = app.rekognition.create_project(ProjectName=name)["ProjectArn"]
    arn = app.rekognition.create_dataset(ProjectArn=project, DatasetType=kind)["DatasetArn"]
    wait_dataset(app, arn)
    app.rekognition.update_dataset_entries(DatasetArn=arn, Changes={"GroundTruth": "\n".join(lines).encode()})
    assert wait_dataset(app, arn)["Status"] == "UPDATE_COMPLETE"
    return arn


def coloured(app, bucket: str, red: int, green: int) -> list[str]:
    """red + green images in s3://BUCKET/ (64 px PNGs) and their classification lines."""
    lines = []
    for index, (label, count) in enumerate((("red", red), ("green", green))):
        for j in range(count):
            write_png(s3_root(app) / bucket / f"{label}-{j:02d}.png", index, seed=j)
            lines.append(manifest_line(bucket, f"{label}-{j:02d}.png", label))
    return lines


def tiles(text: str) -> list[str]:
    return re.findall(r'<li class="tile[^"]*" data-ref="([^"]+)"', text)


def labels_shown(text: str) -> list[str]:
    return re.findall(r'<span class="labels">([^<]*)</span>', text)


def href(text: str, element_id: str) -> str | None:
    found = re.search(rf'<a id="{element_id}" href="([^"]+)"', text)
    return found.group(1).replace("&amp;", "&") if found else None


def csrf_meta(page, path: str) -> str:
    return re.search(r'<meta name="csrf-token" content="([^"]+)"', page.get(path)[2]).group(1)


def send(page, path: str, body: bytes, content_type: str, headers: dict | None = None):
    connection = http.client.HTTPConnection("127.0.0.1", page.port, timeout=120)
    try:
        connection.request("POST", path, body=body, headers={
            "Cookie": f"{COOKIE}={page.cookie}", "Content-Type": content_type, **(headers or {})})
        answer = connection.getresponse()
        return answer.status, answer, answer.read()
    finally:
        connection.close()


def get_bytes(page, path: str):
    connection = http.client.HTTPConnection("127.0.0.1", page.port, timeout=60)
    try:
        connection.request("GET", path, headers={"Cookie": f"{COOKIE}={page.cookie}"})
        answer = connection.getresponse()
        return answer.status, answer, answer.read()
    finally:
        connection.close()


def post_json(page, path: str, value: dict, token: str | None):
    status, _, body = send(page, path, json.dumps(value).encode(), "application/json",
                           {"X-CSRF-Token": token} if token else {})
    return status, json.loads(body)


def post_files(page, path: str, fields: dict, files: list[tuple[str, bytes]]):
    """A multipart/form-data POST as a browser sends it: the fields, then each file as `images`."""
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts += [f'--{boundary}\r\nContent-Disposition: form-data; name="images"; filename="{name}"\r\n'
              f'Content-Type: application/octet-stream\r\n\r\n'.encode() + data + b"\r\n" for name, data in files]
    return send(page, path, b"".join(parts) + f"--{boundary}--\r\n".encode(),
                f"multipart/form-data; boundary={boundary}")


# -- the grid -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big(service):
    """Project `big`: 52 red and 9 green images in its training dataset (two pages of 48)."""
    return project_with(service, "big", coloured(service, "big-bucket", 52, 9))


def test_the_grid_shows_48_images_a_page_and_the_next_page_link_leads_to_the_other_13(service, big):
    page = signed_in(service)
    status, _, first = page.get("/console/projects/big/datasets/train")
    assert status == 200 and len(tiles(first)) == 48
    assert href(first, "first-page") is None
    status, _, second = page.get(href(first, "next-page"))
    assert status == 200 and len(tiles(second)) == 13
    assert href(second, "next-page") is None and href(second, "first-page") == "/console/projects/big/datasets/train?"
    assert set(tiles(first)) | set(tiles(second)) == set(entries(service, big))
    assert 'loading="lazy"' in first and first.count('class="pick"') == 48 and first.count('class="open"') == 48


def test_the_label_filter_keeps_only_that_labels_images_across_pages(service, big):
    page = signed_in(service)
    _, _, text = page.get("/console/projects/big/datasets/train?label=green")
    assert len(tiles(text)) == 9 and set(labels_shown(text)) == {"green"}
    assert href(text, "next-page") is None
    assert '<option value="green" selected>' in text
    _, _, text = page.get("/console/projects/big/datasets/train?label=red")
    assert len(tiles(text)) == 48 and set(labels_shown(text)) == {"red"}
    _, _, rest = page.get(href(text, "next-page"))
    assert href(text, "next-page").count("label=red") == 1
    assert len(tiles(rest)) == 4 and set(labels_shown(rest)) == {"red"}


def test_unlabelled_errors_and_suspects_filters_and_their_marks(service, monkeypatch):
    write_png(s3_root(service) / "marks" / "loose.png")
    box_outside = {"source-ref": "s3://marks/bad.png", "boxes": {
        "image_size": [{"width": 64, "height": 64, "depth": 3}],
        "annotations": [{"class_id": 0, "left": 50, "top": 50, "width": 40, "height": 40}]},
        "boxes-metadata": {"class-map": {"0": "dot"}, "objects": [{"confidence": 1}], "human-annotated": "yes",
                           "type": "groundtruth/object-detection", "creation-date": "2026-12-05T00:00:00",
                           "job-name": "labeling-job/x"}}
    write_png(s3_root(service) / "marks" / "bad.png")
    lines = coloured(service, "marks", 2, 1) + [json.dumps({"source-ref": "s3://marks/loose.png"}),
                                                 json.dumps(box_outside)]
    project_with(service, "marks", lines)
    suspects = types.ModuleType("edgelabels.console.suspects")
    suspects.suspects_of = lambda ctx, name, kind: {"s3://marks/red-01.png": {
        "suggested": "green", "confidence": 0.875, "reason": "the audit's models say green"}}
    monkeypatch.setitem(sys.modules, "edgelabels.console.suspects", suspects)
    page = signed_in(service)
    base = "/console/projects/marks/datasets/train"

    assert tiles(page.get(f"{base}?unlabelled=1")[2]) == ["s3://marks/loose.png"]
    text = page.get(f"{base}?errors=1")[2]
    assert tiles(text) == ["s3://marks/bad.png"]
    assert re.search(r'class="errors" title="ERROR_INVALID_BOUNDING_BOX: [^"]*not inside', text)
    text = page.get(f"{base}?suspects=1")[2]
    assert tiles(text) == ["s3://marks/red-01.png"]
    assert re.search(r'<div class="suspect" title="the audit&#39;s models say green">suspect: maybe green \(0.88\)',
                     text)
    assert tiles(page.get(f"{base}?suspects=1&label=green")[2]) == []
    everything = page.get(base)[2]
    assert len(tiles(everything)) == 5 and everything.count('class="suspect"') == 1


def test_boxes_are_drawn_over_the_thumbnail_in_the_images_pixels(service):
    write_png(s3_root(service) / "drawn" / "a.png", size=200)
    line = {"source-ref": "s3://drawn/a.png", "label": 0, "label-metadata": {
        "class-name": "cat", "confidence": 1, "type": "groundtruth/image-classification", "human-annotated": "yes",
        "creation-date": "2026-12-05T00:00:00", "job-name": "labeling-job/x"},
        "boxes": {"image_size": [{"width": 200, "height": 100, "depth": 3}],
                  "annotations": [{"class_id": 0, "left": 10, "top": 20, "width": 30, "height": 40}]},
        "boxes-metadata": {"class-map": {"0": "eye"}, "objects": [{"confidence": 1}], "human-annotated": "yes",
                           "type": "groundtruth/object-detection", "creation-date": "2026-12-05T00:00:00",
                           "job-name": "labeling-job/x"}}
    project_with(service, "drawn", [json.dumps(line)])
    text = signed_in(service).get("/console/projects/drawn/datasets/train")[2]
    assert '<svg viewBox="0 0 200 100"' in text
    assert re.search(r'<rect x="10" y="20" width="30" height="40"[^>]*><title>eye</title></rect>', text)
    assert labels_shown(text) == ["cat"]


def test_a_missing_dataset_offers_to_add_images_and_a_wrong_kind_project_or_token_is_a_404(service, big):
    page = signed_in(service)
    status, _, text = page.get("/console/projects/big/datasets/test")
    assert status == 200 and "no test dataset yet" in text and "/console/projects/big/datasets/test/add" in text
    assert page.get("/console/projects/big/datasets/validation")[0] == 404
    assert page.get("/console/projects/big/datasets/validation/add")[0] == 404
    assert page.get("/console/projects/nobody/datasets/train")[0] == 404
    for query in ("next=forged", "next=forged&suspects=1"):
        status, _, text = page.get(f"/console/projects/big/datasets/train?{query}")
        assert status == 404 and "was not issued for this request" in text and "Traceback" not in text


def test_a_label_that_is_markup_is_shown_as_text_in_the_tiles_and_the_filter(service):
    write_png(s3_root(service) / "markup" / "a.png")
    project_with(service, "markup", [manifest_line("markup", "a.png", "red").replace(
        '"class-name": "red"', '"class-name": "<img src=x onerror=alert(1)>"')])
    text = signed_in(service).get("/console/projects/markup/datasets/train")[2]
    assert "<img src=x" not in text
    assert labels_shown(text) == ["&lt;img src=x onerror=alert(1)&gt;"]
    assert '<option value="&lt;img src=x onerror=alert(1)&gt;">' in text


# -- thumbnails and images -------------------------------------------------------------------------------------------


def test_a_thumbnail_is_a_jpeg_of_the_asked_longest_side_cached_on_disk(service):
    image = Image.new("RGB", (300, 200), (200, 30, 30))
    (s3_root(service) / "thumbs").mkdir(exist_ok=True)
    image.save(s3_root(service) / "thumbs" / "wide.png")
    page = signed_in(service)
    for query, size in (("&size=128", (128, 85)), ("", (256, 171)), ("&size=9999", (300, 200))):
        status, answer, data = get_bytes(page, f"/console/thumbnail?ref=s3://thumbs/wide.png{query}")
        assert status == 200 and answer.getheader("Content-Type") == "image/jpeg"
        with Image.open(io.BytesIO(data)) as small:
            assert (small.format, small.size) == ("JPEG", size), query
    cached = list((service.state.ctx.directory / "console" / "thumbnails").rglob("*.jpg"))
    assert len(cached) == 3 and all(p.stat().st_size > 0 for p in cached)
    (s3_root(service) / "thumbs" / "wide.png").unlink()
    Image.new("RGB", (100, 400), (0, 0, 200)).save(s3_root(service) / "thumbs" / "wide.png")
    with Image.open(io.BytesIO(get_bytes(page, "/console/thumbnail?ref=s3://thumbs/wide.png&size=128")[2])) as small:
        assert small.size == (32, 128)  # a changed image is a new thumbnail


def test_the_image_endpoint_answers_the_bytes_with_their_type_and_404s_say_why(service):
    (s3_root(service) / "thumbs").mkdir(exist_ok=True)
    write_png(s3_root(service) / "thumbs" / "x.png")
    (s3_root(service) / "thumbs" / "notes.txt").write_text("not an image")
    page = signed_in(service)
    status, answer, data = get_bytes(page, "/console/image?ref=s3://thumbs/x.png")
    assert (status, answer.getheader("Content-Type")) == (200, "image/png")
    assert data == (s3_root(service) / "thumbs" / "x.png").read_bytes()
    for path, why in (("/console/thumbnail?ref=/etc/passwd", "not an s3:// URI"),
                      ("/console/thumbnail?ref=s3://thumbs/missing.png", "NoSuchKey"),
                      ("/console/thumbnail?ref=s3://thumbs/../../../etc/passwd", "s3://thumbs/"),
                      ("/console/thumbnail?ref=s3://thumbs/notes.txt", "cannot be read as an image"),
                      ("/console/image?ref=s3://thumbs/notes.txt", "not a PNG or JPEG image")):
        status, _, text = page.get(path)
        assert status == 404 and why in text and "\n" not in text.strip(), path
    assert console_tests.Page(service.port).get("/console/thumbnail?ref=s3://thumbs/x.png")[0] == 401


# -- relabel ---------------------------------------------------------------------------------------------------------


def test_bulk_relabel_changes_exactly_the_selected_entries_as_boto3_lists_them(service):
    arn = project_with(service, "relabel", coloured(service, "relabel-bucket", 3, 3))
    page = signed_in(service)
    base = "/console/projects/relabel/datasets/train"
    token = csrf_meta(page, base)
    chosen = ["s3://relabel-bucket/red-00.png", "s3://relabel-bucket/green-02.png"]
    status, answer = post_json(page, f"{base}/relabel", {"refs": chosen, "label": "blue"}, token)
    assert status == 200 and answer["changed"] == 2
    listed = entries(service, arn)
    assert {ref: label_of(line) for ref, line in listed.items() if label_of(line) == "blue"} == \
        {ref: "blue" for ref in chosen}
    assert sorted(label_of(line) for line in listed.values()) == ["blue", "blue", "green", "green", "red", "red"]
    assert "2 images relabelled &#39;blue&#39;." in page.get(base)[2]


def test_relabel_without_the_token_or_a_label_or_a_selection_changes_nothing(service):
    arn = project_with(service, "no-relabel", coloured(service, "no-relabel-bucket", 1, 1))
    page = signed_in(service)
    base = "/console/projects/no-relabel/datasets/train"
    before = entries(service, arn)
    token = csrf_meta(page, base)
    assert post_json(page, f"{base}/relabel", {"refs": list(before), "label": "x"}, None)[0] == 403
    assert post_json(page, f"{base}/relabel", {"refs": list(before), "label": "  "}, token)[0] == 400
    status, answer = post_json(page, f"{base}/relabel", {"refs": [], "label": "x"}, token)
    assert status == 400 and answer["message"] == "Select one or more images first."
    status, answer = post_json(page, f"{base}/relabel", {"refs": ["s3://elsewhere/a.png"], "label": "x"}, token)
    assert status == 400 and "none of the selected images" in answer["message"]
    assert entries(service, arn) == before


# -- adding images -------------------------------------------------------------------------------------------------


def test_adding_a_folder_creates_the_dataset_copies_the_images_and_labels_them_by_sub_folder(service, tmp_path):
    service.rekognition.create_project(ProjectName="from-folder")
    for label, index in (("cat", 0), ("dog", 1)):
        for j in range(2):
            write_png(tmp_path / "pets" / label / f"{label} {j}.png", index, seed=j)
    write_png(tmp_path / "pets" / "loose.png")
    (tmp_path / "pets" / "cat" / "notes.txt").write_text("ignored")
    page = signed_in(service)
    base = "/console/projects/from-folder/datasets/train"
    assert 'id="add-folder"' in page.get(f"{base}/add")[2]
    status, answer, _ = page.post(f"{base}/add", {"csrf": csrf_meta(page, f"{base}/add"), "from": "folder",
                                                  "folder": str(tmp_path / "pets"),
                                                  "destination": "s3://edgelabels-console/from-folder/"})
    assert (status, answer.getheader("Location")) == (303, base)
    assert "5 images added to the train dataset." in page.get(base)[2]
    datasets = service.rekognition.describe_projects(ProjectNames=["from-folder"])["ProjectDescriptions"][0]
    assert [(d["DatasetType"], d["Status"]) for d in datasets["Datasets"]] == [("TRAIN", "UPDATE_COMPLETE")]
    listed = entries(service, datasets["Datasets"][0]["DatasetArn"])
    prefix = "s3://edgelabels-console/from-folder/"
    assert {ref: label_of(line) for ref, line in listed.items()} == {
        f"{prefix}cat/cat_0.png": "cat", f"{prefix}cat/cat_1.png": "cat", f"{prefix}dog/dog_0.png": "dog",
        f"{prefix}dog/dog_1.png": "dog", f"{prefix}loose.png": None}
    copied = s3_root(service) / "edgelabels-console" / "from-folder" / "dog" / "dog_1.png"
    assert copied.read_bytes() == (tmp_path / "pets" / "dog" / "dog 1.png").read_bytes()


def test_a_folder_that_is_not_there_is_one_line_on_the_add_page_and_creates_nothing(service):
    service.rekognition.create_project(ProjectName="no-folder")
    page = signed_in(service)
    base = "/console/projects/no-folder/datasets/train"
    status, _, text = page.post(f"{base}/add", {"csrf": csrf_meta(page, f"{base}/add"), "from": "folder",
                                                "folder": "/no/such/folder"})
    assert status == 400 and "Nothing added: &#39;/no/such/folder&#39; is not a folder" in text
    assert service.rekognition.describe_projects(ProjectNames=["no-folder"])["ProjectDescriptions"][0][
        "Datasets"] == []


def test_an_upload_adds_the_images_and_says_the_file_that_is_not_one_was_not_added(service):
    service.rekognition.create_project(ProjectName="uploads")
    png = io.BytesIO()
    make_image(0, np.random.default_rng(1), 64).save(png, "PNG")
    jpeg = io.BytesIO()
    make_image(1, np.random.default_rng(2), 64).save(jpeg, "JPEG")
    page = signed_in(service)
    base = "/console/projects/uploads/datasets/test"
    token = csrf_meta(page, f"{base}/add")
    status, answer, _ = post_files(page, f"{base}/add", {"csrf": token, "from": "upload", "label": "sky",
                                                         "destination": "s3://uploaded/here"},
                                   [("a.png", png.getvalue()), ("notes.txt", b"hello"), ("b.jpeg", jpeg.getvalue()),
                                    ("fake.png", b"\x89PNG\r\n\x1a\nnot really")])
    assert (status, answer.getheader("Location")) == (303, base)
    text = page.get(base)[2]
    assert "2 images added to the test dataset." in text
    assert "notes.txt is not an image (PNG or JPEG): not added" in text
    assert "fake.png is not an image (PNG or JPEG): not added" in text
    arn = service.rekognition.describe_projects(ProjectNames=["uploads"])["ProjectDescriptions"][0]["Datasets"][0]
    assert {ref: label_of(line) for ref, line in entries(service, arn["DatasetArn"]).items()} == {
        "s3://uploaded/here/sky/a.png": "sky", "s3://uploaded/here/sky/b.jpg": "sky"}
    assert (s3_root(service) / "uploaded" / "here" / "sky" / "a.png").read_bytes() == png.getvalue()

    status, _, body = post_files(page, f"{base}/add", {"csrf": token, "from": "upload"}, [("notes.txt", b"hello")])
    assert status == 400 and b"notes.txt is not an image (PNG or JPEG): not added" in body


def test_adding_an_s3_prefix_reads_the_images_in_place_labelled_by_folder(service):
    service.rekognition.create_project(ProjectName="from-s3")
    for label in ("cat", "dog"):
        write_png(s3_root(service) / "shelf" / "pets" / label / "one.png")
    write_png(s3_root(service) / "shelf" / "other" / "cat" / "no.png")
    (s3_root(service) / "shelf" / "pets" / "readme.txt").write_text("skipped")
    before = sorted(p.name for p in s3_root(service).iterdir())
    page = signed_in(service)
    base = "/console/projects/from-s3/datasets/train"
    status, _, _ = page.post(f"{base}/add", {"csrf": csrf_meta(page, f"{base}/add"), "from": "s3",
                                             "source": "s3://shelf/pets"})
    assert status == 303
    assert "2 images added to the train dataset. 1 objects that are not PNG or JPEG images were skipped" in \
        page.get(base)[2]
    arn = service.rekognition.describe_projects(ProjectNames=["from-s3"])["ProjectDescriptions"][0]["Datasets"][0]
    assert {ref: label_of(line) for ref, line in entries(service, arn["DatasetArn"]).items()} == {
        "s3://shelf/pets/cat/one.png": "cat", "s3://shelf/pets/dog/one.png": "dog"}
    assert sorted(p.name for p in s3_root(service).iterdir()) == before  # nothing copied
    status, _, text = page.post(f"{base}/add", {"csrf": csrf_meta(page, f"{base}/add"), "from": "s3",
                                                "source": "s3://shelf/nothing-here/"})
    assert status == 400 and "no PNG or JPEG image under s3://shelf/nothing-here/" in text


def test_list_keys_lists_a_prefix_sorted_and_nothing_that_leads_outside_the_bucket(tmp_path):
    root = tmp_path / "s3"
    for key in ("bkt/pets/z.png", "bkt/pets/a/1.png", "bkt/petshop/x.png", "bkt/other/y.png", "outside/secret.png"):
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(b"x")
    (root / "bkt" / "pets" / "link.png").symlink_to(root / "outside" / "secret.png")
    objects = S3Objects(root=root)
    assert objects.list_keys("s3://bkt/pets/") == ["s3://bkt/pets/a/1.png", "s3://bkt/pets/z.png"]
    assert objects.list_keys("s3://bkt/pet") == ["s3://bkt/pets/a/1.png", "s3://bkt/pets/z.png",
                                                 "s3://bkt/petshop/x.png"]
    assert len(objects.list_keys("s3://bkt/")) == 4
    for refused in ("s3://bkt/../outside/", "s3://no-bucket/", "http://b/pets/"):
        with pytest.raises(S3Error):
            objects.list_keys(refused)


def test_list_keys_through_boto3_pages_through_a_real_s3_server_and_skips_folder_markers(tmp_path):
    from helpers.service import S3Server

    server = S3Server(tmp_path / "aws")
    try:
        client = server.client()
        client.create_bucket(Bucket="shelf")
        for key in ("pets/cat/1.png", "pets/dog/2.png", "pets/dog/", "petshop/3.png", "other/4.png"):
            client.put_object(Bucket="shelf", Key=key, Body=b"x")
        objects = S3Objects(client=client)
        assert objects.list_keys("s3://shelf/pets/") == ["s3://shelf/pets/cat/1.png", "s3://shelf/pets/dog/2.png"]
        assert len(objects.list_keys("s3://shelf/")) == 4
        with pytest.raises(S3Error, match="NoSuchBucket"):
            objects.list_keys("s3://no-such-bucket/pets/")
    finally:
        server.stop()


# -- the split -----------------------------------------------------------------------------------------------------


def test_split_creates_the_test_dataset_and_moves_a_fifth_of_the_images_to_it(service):
    train = project_with(service, "split", coloured(service, "split-bucket", 10, 10))
    page = signed_in(service)
    base = "/console/projects/split/datasets/train"
    status, answer, _ = page.post(f"{base}/split", {"csrf": csrf_meta(page, base)})
    assert (status, answer.getheader("Location")) == (303, base)
    assert "4 entries moved from training to test" in page.get(base)[2]
    found = service.rekognition.describe_projects(ProjectNames=["split"])["ProjectDescriptions"][0]["Datasets"]
    test = next(d["DatasetArn"] for d in found if d["DatasetType"] == "TEST")
    moved, kept = entries(service, test), entries(service, train)
    assert len(moved) == 4 and len(kept) == 16 and not set(moved) & set(kept)
    assert sorted(label_of(line) for line in moved.values()) == ["green", "green", "red", "red"]
    status, _, _ = page.post(f"{base}/split", {"csrf": csrf_meta(page, base)})
    assert "Not split: " in page.get(base)[2] and len(entries(service, test)) == 4  # the test set is not empty


# -- in a browser ----------------------------------------------------------------------------------------------------


def test_a_person_selects_two_tiles_and_relabels_them_without_a_script_error(service, chromium):
    from playwright.sync_api import expect

    arn = project_with(service, "browser", coloured(service, "browser-bucket", 3, 2))
    page, errors = signed_in_page(chromium, service.port, signed_in(service).cookie)
    page.goto(f"http://127.0.0.1:{service.port}/console/projects/browser/datasets/train")
    expect(page.locator("li.tile")).to_have_count(5)
    page.locator('li.tile[data-ref="s3://browser-bucket/red-01.png"] .frame').click()
    page.locator('li.tile[data-ref="s3://browser-bucket/green-00.png"] input.pick').check()
    expect(page.locator("#selected-count")).to_have_text("2 selected")
    expect(page.locator("li.tile.picked")).to_have_count(2)
    page.locator("#relabel input[name=label]").fill("blue")
    page.get_by_role("button", name="Relabel selected").click()
    expect(page.get_by_role("alert")).to_have_text("2 images relabelled 'blue'.")
    expect(page.locator('li.tile[data-ref="s3://browser-bucket/red-01.png"] .labels')).to_have_text("blue")
    page.locator("li.tile .frame").nth(0).click()
    page.locator("li.tile .frame").nth(3).click(modifiers=["Shift"])
    expect(page.locator("#selected-count")).to_have_text("4 selected")
    expect(page.locator("li.tile").nth(4)).not_to_have_class(re.compile("picked"))
    page.get_by_role("button", name="Select all on this page").click()
    expect(page.locator("#selected-count")).to_have_text("5 selected")
    page.wait_for_load_state("networkidle")  # every thumbnail loaded (a broken one is a console error)
    assert {ref: label_of(line) for ref, line in entries(service, arn).items() if label_of(line) == "blue"} == {
        "s3://browser-bucket/red-01.png": "blue", "s3://browser-bucket/green-00.png": "blue"}
    assert errors == []
    page.context.close()
