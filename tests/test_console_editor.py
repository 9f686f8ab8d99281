"""The console's entry editor (issue 29): console/lines.py's Ground Truth lines, the editor's save through
UpdateDatasetEntries (seen by boto3's ListDatasetEntries), its refusals, and a person editing boxes in Chromium."""

from __future__ import annotations

import re

import pytest

from edgelabels.console.lines import classification_line, labels_and_boxes, relabelled, with_labels_and_boxes

import test_console
from test_console import signed_in
from helpers.browser import collect_errors

service = test_console.service  # the in-process service and boto3 on its port (this module's own, module scope)

REF = "s3://photos/cats/1.png"
DATE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$")


def dated(line: dict) -> dict:
    """The line with each metadata's creation-date written now (Ground Truth's format, to the microsecond) replaced
    by "DATE"; older dates stay as they were."""
    out = {}
    for key, value in line.items():
        if key.endswith("-metadata") and DATE.match(value.get("creation-date", "")):
            value = {**value, "creation-date": "DATE"}
        out[key] = value
    return out


CAT = {"source-ref": REF, "label": 0, "label-metadata": {
    "class-name": "cat", "confidence": 1, "type": "groundtruth/image-classification", "human-annotated": "yes",
    "creation-date": "DATE", "job-name": "labeling-job/edgelabels-console"}}
# A line as another tool wrote it: its own attribute names, class ids and job.
THEIRS = {"source-ref": REF, "animal": 3, "animal-metadata": {
    "class-name": "cat", "confidence": 0.7, "type": "groundtruth/image-classification", "human-annotated": "no",
    "creation-date": "2026-01-01T00:00:00", "job-name": "labeling-job/theirs"},
    "objects": {"image_size": [{"width": 640, "height": 480, "depth": 1}], "annotations": [
        {"class_id": 5, "left": 10, "top": 20, "width": 30, "height": 40},
        {"class_id": 7, "left": 100, "top": 120, "width": 50, "height": 60}]},
    "objects-metadata": {"objects": [{"confidence": 0.9}, {"confidence": 0.8}], "class-map": {"5": "ear", "7": "paw"},
                         "type": "groundtruth/object-detection", "human-annotated": "no",
                         "creation-date": "2026-01-01T00:00:00", "job-name": "labeling-job/theirs"}}


def test_classification_line_is_a_ground_truth_image_classification_line_by_the_console():
    assert dated(classification_line(REF, "cat")) == CAT


def test_labels_and_boxes_reads_image_labels_boxes_in_pixels_and_the_size_they_are_drawn_on():
    assert labels_and_boxes(THEIRS) == (["cat"], [
        {"label": "ear", "left": 10, "top": 20, "width": 30, "height": 40},
        {"label": "paw", "left": 100, "top": 120, "width": 50, "height": 60}], (640, 480))
    assert labels_and_boxes({"source-ref": REF}) == ([], [], None)
    multi = {"source-ref": REF, "tags": [1, 0], "tags-metadata": {
        "class-map": {"0": "cat", "1": "indoor"}, "type": "groundtruth/image-classification-multilabel"}}
    assert labels_and_boxes(multi) == (["indoor", "cat"], [], None)


def test_labels_and_boxes_of_a_broken_line_shows_what_can_be_read_and_never_raises():
    broken = {"source-ref": REF, "label": 0, "label-metadata": {"type": "groundtruth/image-classification"},
              "objects": {"annotations": [{"class_id": 1, "left": 1, "top": 2, "width": 3, "height": 4},
                                          {"class_id": 1, "left": "1", "top": 2, "width": 3, "height": 4}, 7]},
              "objects-metadata": {"type": "groundtruth/object-detection", "class-map": "not a map"}}
    assert labels_and_boxes(broken) == ([], [{"label": "1", "left": 1, "top": 2, "width": 3, "height": 4}], None)
    worse = {"source-ref": REF, "objects": [1, 2], "objects-metadata": {"type": "groundtruth/object-detection"}}
    assert labels_and_boxes(worse) == ([], [], None)
    rebuilt = with_labels_and_boxes(worse, [], [{"label": "ear", "left": 1, "top": 2, "width": 3, "height": 4}],
                                    (64, 48))
    assert rebuilt["objects"] == {"image_size": [{"width": 64, "height": 48, "depth": 3}], "annotations": [
        {"class_id": 0, "left": 1, "top": 2, "width": 3, "height": 4}]}

def test_relabelled_replaces_the_class_name_in_the_lines_own_attribute_and_marks_it_a_persons():
    changed = dated(relabelled(THEIRS, "dog"))
    assert changed["animal-metadata"] == {
        "class-name": "dog", "confidence": 1, "type": "groundtruth/image-classification", "human-annotated": "yes",
        "creation-date": "DATE", "job-name": "labeling-job/edgelabels-console"}
    assert changed["objects"] == THEIRS["objects"] and changed["objects-metadata"] == THEIRS["objects-metadata"]
    assert "label" not in changed


def test_relabelled_adds_a_label_attribute_to_a_line_without_an_image_label():
    boxes_only = {k: v for k, v in THEIRS.items() if not k.startswith("animal")}
    assert dated(relabelled(boxes_only, "cat")) == {**boxes_only, "label": 0, "label-metadata": CAT["label-metadata"]}
    assert dated(relabelled({"source-ref": REF}, "cat")) == CAT


def test_relabelled_reduces_a_multi_label_line_to_the_one_label():
    multi = {"source-ref": REF, "tags": [1, 0], "tags-metadata": {
        "class-map": {"0": "cat", "1": "indoor"}, "type": "groundtruth/image-classification-multilabel",
        "human-annotated": "no", "creation-date": "2026-01-01T00:00:00", "job-name": "labeling-job/tags"}}
    assert dated(relabelled(multi, "indoor")) == {"source-ref": REF, "tags": [1], "tags-metadata": {
        "class-map": {"1": "indoor"}, "confidence-map": {"1": 1}, "type": "groundtruth/image-classification-multilabel",
        "human-annotated": "yes", "creation-date": "DATE", "job-name": "labeling-job/edgelabels-console"}}


def test_with_labels_and_boxes_keeps_the_lines_attributes_and_gives_a_new_label_the_next_class_id():
    saved = dated(with_labels_and_boxes(THEIRS, ["dog"], [
        {"label": "paw", "left": 101, "top": 121, "width": 50, "height": 60},
        {"label": "tail", "left": 200, "top": 300, "width": 90.5, "height": 20}], (640, 480)))
    assert set(saved) == {"source-ref", "animal", "animal-metadata", "objects", "objects-metadata"}
    assert saved["animal-metadata"]["class-name"] == "dog"
    assert saved["objects"] == {"image_size": [{"width": 640, "height": 480, "depth": 1}], "annotations": [
        {"class_id": 7, "left": 101, "top": 121, "width": 50, "height": 60},
        {"class_id": 8, "left": 200, "top": 300, "width": 90.5, "height": 20}]}
    assert saved["objects-metadata"] == {
        "objects": [{"confidence": 1}, {"confidence": 1}], "class-map": {"5": "ear", "7": "paw", "8": "tail"},
        "type": "groundtruth/object-detection", "human-annotated": "yes", "creation-date": "DATE",
        "job-name": "labeling-job/edgelabels-console"}


def test_boxes_drawn_on_a_classification_line_add_a_bounding_box_attribute_with_the_image_size():
    saved = dated(with_labels_and_boxes(classification_line(REF, "cat"), ["cat"],
                                        [{"label": "eye", "left": 4, "top": 5, "width": 6, "height": 7}], (64, 48)))
    assert saved == {**CAT, "bounding-box": {"image_size": [{"width": 64, "height": 48, "depth": 3}],
                                             "annotations": [{"class_id": 0, "left": 4, "top": 5, "width": 6,
                                                              "height": 7}]},
                     "bounding-box-metadata": {"objects": [{"confidence": 1}], "class-map": {"0": "eye"},
                                               "type": "groundtruth/object-detection", "human-annotated": "yes",
                                               "creation-date": "DATE",
                                               "job-name": "labeling-job/edgelabels-console"}}


def test_deleting_every_box_keeps_an_existing_box_attribute_empty_and_adds_none_to_a_line_without():
    emptied = with_labels_and_boxes(THEIRS, ["cat"], [], (640, 480))
    assert emptied["objects"]["annotations"] == [] and emptied["objects-metadata"]["objects"] == []
    assert dated(with_labels_and_boxes(classification_line(REF, "cat"), ["cat"], [], (64, 48))) == CAT


def test_no_image_label_removes_the_image_level_attribute_and_keeps_the_boxes():
    assert set(with_labels_and_boxes(THEIRS, [], labels_and_boxes(THEIRS)[1], (640, 480))) == {
        "source-ref", "objects", "objects-metadata"}


def test_boxes_on_a_line_without_a_box_attribute_and_no_image_size_are_refused():
    with pytest.raises(ValueError, match="image's size"):
        with_labels_and_boxes(CAT, ["cat"], [{"label": "eye", "left": 4, "top": 5, "width": 6, "height": 7}], None)


# ---------------------------------------------------------------- the editor over the service (in-process)

PROJECT, BUCKET = "editor", "editor-photos"
SIZE = (64, 48)  # not square: a width/height mix-up shows


def photo_line(name: str, label: str, boxes=()) -> dict:
    """A line as a person's manifest holds it: an image-level label, and boxes when given (label, l, t, w, h)."""
    line = {"source-ref": f"s3://{BUCKET}/{name}", "class": 0, "class-metadata": {
        "class-name": label, "confidence": 1, "type": "groundtruth/image-classification", "human-annotated": "yes",
        "creation-date": "2026-12-01T00:00:00", "job-name": "labeling-job/photos"}}
    if boxes:
        names = sorted({b[0] for b in boxes})
        line["boxes"] = {"image_size": [{"width": SIZE[0], "height": SIZE[1], "depth": 3}], "annotations": [
            {"class_id": names.index(b[0]), "left": b[1], "top": b[2], "width": b[3], "height": b[4]} for b in boxes]}
        line["boxes-metadata"] = {"objects": [{"confidence": 1} for _ in boxes],
                                  "class-map": {str(i): n for i, n in enumerate(names)},
                                  "type": "groundtruth/object-detection", "human-annotated": "yes",
                                  "creation-date": "2026-12-01T00:00:00", "job-name": "labeling-job/photos"}
    return line


LINES = [photo_line("a.png", "red"), photo_line("b.png", "green"),
         photo_line("c.png", "red", [("eye", 4, 4, 10, 8), ("ear", 40, 20, 12, 16)]), photo_line("d.png", "green")]


@pytest.fixture(scope="module")
def dataset(service):
    """Project "editor" with a train dataset of LINES, CREATE_COMPLETE; its ARN."""
    import json
    import time

    from PIL import Image

    ctx = service.state.console.state.console.ctx
    folder = ctx.s3.root / BUCKET
    folder.mkdir(parents=True, exist_ok=True)
    for i, line in enumerate(LINES):
        Image.new("RGB", SIZE, (40 * i, 200 - 40 * i, 90)).save(folder / line["source-ref"].rsplit("/", 1)[1])
    (folder / "train.manifest").write_text("".join(json.dumps(line) + "\n" for line in LINES))
    client = service.rekognition
    project = client.create_project(ProjectName=PROJECT)["ProjectArn"]
    arn = client.create_dataset(ProjectArn=project, DatasetType="TRAIN", DatasetSource={
        "GroundTruthManifest": {"S3Object": {"Bucket": BUCKET, "Name": "train.manifest"}}})["DatasetArn"]
    deadline = time.monotonic() + 30
    while client.describe_dataset(DatasetArn=arn)["DatasetDescription"]["Status"] != "CREATE_COMPLETE":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return arn


def listed(service, arn: str, name: str) -> dict:
    """The entry of image NAME as boto3's ListDatasetEntries gives it, as a dict."""
    import json

    found = service.rekognition.list_dataset_entries(DatasetArn=arn, SourceRefContains=f"/{name}")["DatasetEntries"]
    assert len(found) == 1
    return json.loads(found[0])


def editor_url(name: str) -> str:
    return f"/console/projects/{PROJECT}/datasets/train/entry?ref=s3%3A%2F%2F{BUCKET}%2F{name}"


def post_json(page, path: str, body, csrf: str | None):
    """(status, JSON answer) of a script's POST, as editor.js sends it."""
    import http.client
    import json

    from edgelabels.console.auth import COOKIE

    headers = {"Content-Type": "application/json", "Cookie": f"{COOKIE}={page.cookie}"}
    if csrf is not None:
        headers["X-CSRF-Token"] = csrf
    connection = http.client.HTTPConnection("127.0.0.1", page.port, timeout=60)
    try:
        connection.request("POST", path, body=json.dumps(body).encode(), headers=headers)
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read())
    finally:
        connection.close()


def editor_csrf(page, name: str) -> str:
    status, _, text = page.get(editor_url(name))
    assert status == 200
    return re.search(r'<meta name="csrf-token" content="([^"]+)"', text).group(1)


def test_the_editor_shows_the_entrys_label_boxes_and_its_neighbours(service, dataset):
    status, _, text = signed_in(service).get(editor_url("c.png"))
    assert status == 200
    assert 'id="label" name="label" list="known-labels" maxlength="255"\n           value="red"' in text
    assert ('"boxes": [{"height": 8, "label": "eye", "left": 4, "top": 4, "width": 10}, {"height": 16, "label": '
            '"ear", "left": 40, "top": 20, "width": 12}]') in text
    assert 'viewBox="0 0 64 48"' in text and "entry 3 of 4" in text
    assert f'id="prev" href="/console/projects/{PROJECT}/datasets/train/entry?ref=s3%3A%2F%2F{BUCKET}%2Fb.png"' in text
    assert f'id="next" href="/console/projects/{PROJECT}/datasets/train/entry?ref=s3%3A%2F%2F{BUCKET}%2Fd.png"' in text
    assert '<option value="ear"><option value="eye"><option value="green"><option value="red">' in text


def test_a_save_is_one_update_that_boto3_lists_with_the_new_label_and_boxes(service, dataset):
    page = signed_in(service)
    boxes = [{"label": "eye", "left": 5, "top": 6, "width": 20, "height": 10.5},
             {"label": "nose", "left": 30, "top": 30, "width": 34, "height": 18}]  # to the image's very edge
    status, answer = post_json(page, f"/console/projects/{PROJECT}/datasets/train/entry",
                               {"ref": f"s3://{BUCKET}/a.png", "labels": ["green"], "boxes": boxes},
                               editor_csrf(page, "a.png"))
    assert (status, answer) == (200, {"message": "Saved"})
    line = listed(service, dataset, "a.png")
    assert line["class-metadata"]["class-name"] == "green" and line["class-metadata"]["human-annotated"] == "yes"
    assert line["bounding-box"] == {"image_size": [{"width": 64, "height": 48, "depth": 3}], "annotations": [
        {"class_id": 0, "left": 5, "top": 6, "width": 20, "height": 10.5},
        {"class_id": 1, "left": 30, "top": 30, "width": 34, "height": 18}]}
    assert line["bounding-box-metadata"]["class-map"] == {"0": "eye", "1": "nose"}
    assert "cl-errors" not in line
    assert listed(service, dataset, "b.png")["class-metadata"]["class-name"] == "green"  # the others untouched


@pytest.mark.parametrize("change, message", [
    ({"boxes": [{"label": "eye", "left": 60, "top": 5, "width": 10, "height": 10}]},
     "Not saved: box 1 (eye) [60, 5, 10, 10] is not inside the 64x48 image"),
    ({"boxes": [{"label": "eye", "left": -1, "top": 5, "width": 10, "height": 10}]},
     "Not saved: box 1 (eye) [-1, 5, 10, 10] is not inside the 64x48 image"),
    ({"boxes": [{"label": "  ", "left": 1, "top": 5, "width": 10, "height": 10}]},
     "Not saved: box 1's label '  ' is not a label: 1 to 255 characters, not only blanks"),
    ({"labels": [""]}, "Not saved: the image label '' is not a label: 1 to 255 characters, not only blanks"),
    ({"labels": ["x" * 256]}, "Not saved: the image label 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'... (256 characters) "
                              "is not a label: 1 to 255 characters, not only blanks"),
    ({"boxes": [{"label": "eye", "left": 1, "top": 5, "width": 10, "height": 10},
                {"label": "ear", "left": 10, "top": 5, "width": 0.5, "height": 10}]},
     "Not saved: box 2 (ear) [10, 5, 0.5, 10]: width and height must be above 1 px"),
    ({"boxes": [{"label": "eye", "left": "1", "top": 5, "width": 10, "height": 10}]},
     "Not saved: box 1 (eye): left '1' is not a number"),
    ({"ref": f"s3://{BUCKET}/nowhere.png"}, f"Not saved: the dataset has no entry s3://{BUCKET}/nowhere.png"),
])
def test_a_box_outside_the_image_or_a_bad_label_is_refused_and_nothing_changes(service, dataset, change, message):
    page = signed_in(service)
    before = listed(service, dataset, "d.png")
    body = {"ref": f"s3://{BUCKET}/d.png", "labels": ["red"], "boxes": [], **change}
    status, answer = post_json(page, f"/console/projects/{PROJECT}/datasets/train/entry", body,
                               editor_csrf(page, "d.png"))
    assert (status, answer) == (400, {"message": message})
    assert listed(service, dataset, "d.png") == before


def test_a_save_without_the_csrf_token_or_a_session_is_refused(service, dataset):
    page = signed_in(service)
    body = {"ref": f"s3://{BUCKET}/d.png", "labels": ["blue"], "boxes": []}
    path = f"/console/projects/{PROJECT}/datasets/train/entry"
    assert post_json(page, path, body, None)[0] == 403
    page.cookie = "forged.1.abc"
    assert post_json(page, path, body, "forged")[0] == 401
    assert listed(service, dataset, "d.png")["class-metadata"]["class-name"] == "green"


def test_a_label_with_markup_is_saved_as_is_and_shown_as_text(service, dataset):
    page = signed_in(service)
    status, _ = post_json(page, f"/console/projects/{PROJECT}/datasets/train/entry",
                          {"ref": f"s3://{BUCKET}/b.png", "labels": ["<b>bold</b>"], "boxes": []},
                          editor_csrf(page, "b.png"))
    assert status == 200
    assert listed(service, dataset, "b.png")["class-metadata"]["class-name"] == "<b>bold</b>"
    text = page.get(editor_url("b.png"))[2]
    assert "<b>bold</b>" not in text and 'value="&lt;b&gt;bold&lt;/b&gt;"' in text


def test_an_entry_or_dataset_that_does_not_exist_is_a_404_page_that_says_so(service, dataset):
    page = signed_in(service)
    status, _, text = page.get(editor_url("nowhere.png"))
    assert status == 404 and f"has no entry s3://{BUCKET}/nowhere.png" in text
    status, _, text = page.get(f"/console/projects/{PROJECT}/datasets/test/entry?ref=s3://{BUCKET}/a.png")
    assert status == 404 and "has no test dataset" in text


def test_an_image_named_by_its_ref_alone_opens_the_editor_of_the_dataset_that_holds_it(service, dataset):
    page = signed_in(service)
    status, answer, _ = page.get(f"/console/projects/{PROJECT}/entry?ref=s3://{BUCKET}/b.png")
    assert (status, answer.getheader("Location")) == (303, editor_url("b.png"))
    # a ref that is only the start of an entry's ref names no entry
    status, _, text = page.get(f"/console/projects/{PROJECT}/entry?ref=s3://{BUCKET}/b.pn")
    assert status == 404 and f"holds s3://{BUCKET}/b.pn now" in text


def test_the_label_audits_suspicion_of_the_entry_is_shown_with_its_suggestion(service, dataset):
    from edgelabels.console.suspects import audit_folder

    folder = audit_folder(service.state.console.state.console.ctx, PROJECT, "train")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "suspects.csv").write_text("rank,image,given,suggested,confidence,reason,detail,quality,box\n"
                                         f"1,s3://{BUCKET}/d.png,green,red,0.912,wrong-label,,,\n")
    page = signed_in(service)
    assert "it suggests <strong>red</strong> (0.91)." in page.get(editor_url("d.png"))[2]
    assert 'id="suspect"' not in page.get(editor_url("a.png"))[2]

# ---------------------------------------------------------------- a person in Chromium


def test_a_person_draws_moves_resizes_and_deletes_boxes_relabels_and_saves_without_a_script_error(
        service, dataset, chromium):
    from playwright.sync_api import expect

    page = chromium.new_page()
    errors = collect_errors(page)
    base = f"http://127.0.0.1:{service.port}"
    page.goto(base + service.state.console.state.auth.start_path)
    page.goto(base + editor_url("c.png"))
    overlay = page.locator("#overlay")
    expect(page.locator("#box-list li")).to_have_count(2)
    frame = overlay.bounding_box()
    scale = frame["width"] / SIZE[0]  # screen px per image px
    assert frame["height"] / SIZE[1] == pytest.approx(scale, rel=0.01)

    def at(x: float, y: float) -> tuple[float, float]:
        return frame["x"] + x * scale, frame["y"] + y * scale

    # Draw a "spot" from image pixel (20, 30) to (30, 40) by dragging.
    page.locator("#box-label").fill("spot")
    page.mouse.move(*at(20.2, 30.2))
    page.mouse.down()
    page.mouse.move(*at(25.2, 35.2), steps=4)
    page.mouse.move(*at(30.2, 40.2), steps=4)
    page.mouse.up()
    expect(page.locator("#box-list li.selected")).to_have_text("spot [20, 30, 10, 10]")
    # The keyboard moves it: 3 px right, then 10 px up.
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    page.keyboard.press("Shift+ArrowUp")
    expect(page.locator("#box-list li.selected")).to_have_text("spot [23, 20, 10, 10]")
    # Its bottom-right handle, at (33, 30), dragged to (37, 34): 4 px wider and taller.
    page.mouse.move(*at(33, 30))
    page.mouse.down()
    page.mouse.move(*at(37.2, 34.2), steps=5)
    page.mouse.up()
    expect(page.locator("#box-list li.selected")).to_have_text("spot [23, 20, 14, 14]")
    # Click the "ear" box (40, 20, 12, 16) and delete it with the Delete key.
    page.mouse.click(*at(46, 34))
    expect(page.locator("#box-list li.selected")).to_have_text("ear [40, 20, 12, 16]")
    page.keyboard.press("Delete")
    expect(page.locator("#box-list li")).to_have_text(["eye [4, 4, 10, 8]", "spot [23, 20, 14, 14]"])
    # Tab walks the boxes; Escape lets go.
    page.keyboard.press("Tab")
    expect(page.locator("#box-list li.selected")).to_have_text("eye [4, 4, 10, 8]")
    page.keyboard.press("Escape")
    expect(page.locator("#box-list li.selected")).to_have_count(0)

    page.locator("#label").fill("green")
    page.locator("#save").click()
    expect(page.locator("#status")).to_have_text("Saved")
    line = listed(service, dataset, "c.png")
    assert labels_and_boxes(line) == (["green"], [{"label": "eye", "left": 4, "top": 4, "width": 10, "height": 8},
                                                  {"label": "spot", "left": 23, "top": 20, "width": 14, "height": 14}],
                                      (64, 48))
    assert set(line) == {"source-ref", "class", "class-metadata", "boxes", "boxes-metadata", "cl-metadata"}
    # Ctrl+S saves too, from the label's field.
    page.locator("#label").fill("red")
    expect(page.locator("#status")).to_have_text("Unsaved changes")
    page.keyboard.press("Control+s")
    expect(page.locator("#status")).to_have_text("Saved")
    assert labels_and_boxes(listed(service, dataset, "c.png"))[0] == ["red"]
    assert errors == []
