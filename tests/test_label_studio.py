"""Label Studio round trip against a real server on loopback (never a stub), and the conversions worked by hand.

The server comes from Label Studio's own environment; where it is missing the tests fail, saying to run
scripts/label-studio-env.sh."""

from __future__ import annotations

import urllib.request

import pytest
from PIL import Image

from edgelabels.data.dataset import Box
from edgelabels.errors import UserError
from edgelabels.labeling.studio import (CLASSIFICATION, DETECTION, LabelStudioClient, box_to_percent, changes,
                                        label_config, line_boxes, line_label, line_of, local_files_url, percent_to_box,
                                        result_of, task_of)
from tests.helpers.label_studio import SETUP, LabelStudio, environment

LABELS = ["negative", "positive", "invalid"]
BOX_LABELS = ["window", "control"]


def classification_line(ref: str, label: str) -> dict:
    return {"source-ref": ref, "label": LABELS.index(label),
            "label-metadata": {"class-name": label, "confidence": 1, "type": CLASSIFICATION}}


def box_line(ref: str, boxes, width: int = 300, height: int = 200) -> dict:
    return {"source-ref": ref,
            "bounding-box": {"image_size": [{"width": width, "height": height, "depth": 3}],
                             "annotations": [{"class_id": BOX_LABELS.index(b.label), "left": b.left, "top": b.top,
                                              "width": b.width, "height": b.height} for b in boxes]},
            "bounding-box-metadata": {"class-map": {"0": "window", "1": "control"}, "type": DETECTION}}


# --- conversions, worked by hand ---------------------------------------------------------------------------------

def test_box_in_pixels_becomes_percent_of_the_image():
    # 64/640 = 10 %, 48/480 = 10 %, 32/640 = 5 %, 24/480 = 5 %
    value = box_to_percent(Box("window", 64, 48, 32, 24), 640, 480)
    assert (value["x"], value["y"], value["width"], value["height"]) == (10.0, 10.0, 5.0, 5.0)
    assert value["rectanglelabels"] == ["window"] and value["rotation"] == 0


def test_box_comes_back_to_the_same_pixels_through_percent():
    # 100/300 = 33.333...%, 50/200 = 25 %, 33/300 = 11 %, 17/200 = 8.5 %; back: 33.333...% of 300 = 99.9999... -> 100.0
    value = box_to_percent(Box("control", 100, 50, 33, 17), 300, 200)
    assert value["x"] == pytest.approx(33.3333333) and value["height"] == 8.5
    assert percent_to_box(value, 300, 200) == Box("control", 100.0, 50.0, 33.0, 17.0)


def test_percent_box_drawn_by_a_person_rounds_to_a_hundredth_of_a_pixel():
    # 12.3456 % of 300 = 37.0368 -> 37.04; 7.5 % of 200 = 15.0; 20 % of 300 = 60.0; 10.001 % of 200 = 20.002 -> 20.0
    value = {"x": 12.3456, "y": 7.5, "width": 20.0, "height": 10.001, "rotation": 0, "rectanglelabels": ["window"]}
    assert percent_to_box(value, 300, 200) == Box("window", 37.04, 15.0, 60.0, 20.0)


def test_rotated_rectangle_is_refused():
    value = {"x": 1, "y": 1, "width": 1, "height": 1, "rotation": 30, "rectanglelabels": ["window"]}
    with pytest.raises(ValueError, match="rotated"):
        percent_to_box(value, 300, 200)


def test_label_config_lists_every_label_escaped():
    config = label_config(["a&b", 'say "x"'])
    assert '<Choice value="a&amp;b"/>' in config and "<Choice value='say \"x\"'/>" in config
    assert '<RectangleLabels name="box" toName="image"><Label value="window"/>' in label_config(BOX_LABELS, boxes=True)


def test_task_carries_the_source_ref_the_reason_and_our_answer_as_prediction():
    task = task_of(classification_line("images/a.png", "positive"), "/data/local-files/?d=a.png",
                   reason="suspect: given positive, model says negative", model_version="run-3", score=0.25)
    assert task["data"] == {"image": "/data/local-files/?d=a.png", "source_ref": "images/a.png",
                            "reason": "suspect: given positive, model says negative"}
    assert task["predictions"] == [{"model_version": "run-3", "score": 0.25, "result": [
        {"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": ["positive"]}}]}]


def test_untouched_task_comes_back_as_its_prediction_not_human_annotated():
    line = line_of(task_of(classification_line("a.png", "invalid"), "u"), LABELS)
    assert line["label"] == 2 and line["label-metadata"]["class-name"] == "invalid"  # LABELS.index("invalid") = 2
    assert line["label-metadata"]["human-annotated"] == "no"


def test_latest_annotation_wins_and_a_skipped_one_is_ignored():
    task = task_of(classification_line("a.png", "invalid"), "u")
    choice = lambda name: [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [name]}}]
    task["annotations"] = [
        {"id": 1, "updated_at": "2026-01-01T10:00:00Z", "was_cancelled": False, "result": choice("negative")},
        {"id": 2, "updated_at": "2026-01-01T11:00:00Z", "was_cancelled": False, "result": choice("positive")},
        {"id": 3, "updated_at": "2026-01-01T12:00:00Z", "was_cancelled": True, "result": []}]
    line = line_of(task, LABELS)
    assert (line["label"], line["label-metadata"]["human-annotated"]) == (1, "yes")


def test_every_box_deleted_by_a_person_gives_an_empty_box_list_on_the_same_image_size():
    task = task_of(box_line("a.png", [Box("window", 30, 20, 60, 40)]), "u")
    task["annotations"] = [{"id": 1, "was_cancelled": False, "result": []}]
    assert line_boxes(line_of(task, BOX_LABELS)) == ((), 300, 200)


def test_changes_name_the_image_the_field_and_both_values():
    old = [classification_line("a.png", "negative"), classification_line("b.png", "positive")]
    new = [classification_line("a.png", "negative"), classification_line("b.png", "invalid"),
           classification_line("c.png", "negative")]  # c.png is new: nothing to compare it with
    assert changes(old, new) == [{"source-ref": "b.png", "what": "label", "before": "positive", "after": "invalid"}]


def test_a_label_missing_from_the_list_is_a_user_error_naming_the_task():
    task = {"id": 7, **task_of(classification_line("a.png", "negative"), "u")}
    task["annotations"] = [{"id": 1, "was_cancelled": False, "result": [
        {"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": ["smudged"]}}]}]
    with pytest.raises(UserError, match=r"task 7 \(a.png\): label 'smudged' is not one of negative, positive, invalid"):
        line_of(task, LABELS)


def test_unreachable_server_is_one_line_naming_the_url():
    with pytest.raises(UserError, match=r"^http://127.0.0.1:9: cannot reach Label Studio") as error:
        LabelStudioClient("http://127.0.0.1:9", "key", timeout=5).projects()
    assert "\n" not in str(error.value)


def test_missing_label_studio_environment_says_how_to_make_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="scripts/label-studio-env.sh"):
        LabelStudio(tmp_path / "data", env_dir=tmp_path / "no-env")


# --- against the real server --------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def studio(tmp_path_factory):
    if not (environment() / "bin" / "label-studio").exists():
        pytest.fail(f"Label Studio is not installed at {environment()}: {SETUP}")
    root = tmp_path_factory.mktemp("label-studio")
    files = root / "images"  # a storage's folder must lie below the document root, not be it
    files.mkdir()
    for i in range(5):  # 300x200, the size the box lines below say
        Image.new("RGB", (300, 200), (40 * i, 80, 120)).save(files / f"cassette-{i}.png")
    server = LabelStudio(root / "data", files_root=root)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def client(studio):
    return LabelStudioClient(studio.url, studio.token)


def test_the_token_is_a_personal_access_token_sent_as_bearer(studio, client):
    assert client.personal_access_token and client.version().startswith("1.23")
    client.projects()
    assert client._authorization().startswith("Bearer ")


def test_a_wrong_token_is_one_line_naming_the_url(studio):
    with pytest.raises(UserError, match=rf"^{studio.url}.*HTTP 401") as error:
        LabelStudioClient(studio.url, "aaa.bbb.ccc").projects()
    assert "\n" not in str(error.value)


def test_imported_images_are_served_from_local_files(studio, client):
    project = client.create_project("local files", label_config(LABELS))
    client.add_local_files(project, studio.files_root / "images")
    client.import_tasks(project, [task_of(classification_line("images/cassette-3.png", "invalid"),
                                          local_files_url("images/cassette-3.png"))])
    request = urllib.request.Request(studio.url + local_files_url("images/cassette-3.png"),
                                     headers={"Authorization": client._authorization()})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.read() == (studio.files_root / "images" / "cassette-3.png").read_bytes()


def test_two_labels_changed_by_a_person_come_back_as_exactly_those_two(client):
    old = [classification_line(f"images/cassette-{i}.png", LABELS[i % 3]) for i in range(5)]
    project = client.create_project("labels round trip", label_config(LABELS))
    tasks = [task_of(line, local_files_url(f"cassette-{i}.png"), reason="suspect", score=0.5)
             for i, line in enumerate(old)]
    assert client.import_tasks(project, tasks) == 5
    by_ref = {t["data"]["source_ref"]: t for t in client.tasks(project)}
    # a person opens cassette-1 (positive) and cassette-4 (positive: 4 % 3 = 1) and picks another answer
    for ref, answer in (("images/cassette-1.png", "negative"), ("images/cassette-4.png", "invalid")):
        result = result_of(classification_line(ref, answer))
        client.annotate(by_ref[ref]["id"], result)
    # and accepts cassette-0 as it was: an annotation equal to the prediction is no change
    client.annotate(by_ref["images/cassette-0.png"]["id"], result_of(old[0]))
    new = {line["source-ref"]: line for line in (line_of(t, LABELS) for t in client.tasks(project))}
    assert changes(old, list(new.values())) == [
        {"source-ref": "images/cassette-1.png", "what": "label", "before": "positive", "after": "negative"},
        {"source-ref": "images/cassette-4.png", "what": "label", "before": "positive", "after": "invalid"}]
    assert len(new) == 5 and new["images/cassette-0.png"]["label-metadata"]["human-annotated"] == "yes"
    assert new["images/cassette-2.png"]["label-metadata"]["human-annotated"] == "no"


def test_one_box_moved_by_a_person_comes_back_as_exactly_that_box(client):
    old = [box_line(f"cassette-{i}.png", [Box("window", 30 + i, 20, 60, 40), Box("control", 150, 90, 33, 17)])
           for i in range(5)]
    project = client.create_project("boxes round trip", label_config(BOX_LABELS, boxes=True))
    assert client.import_tasks(project, [task_of(line, local_files_url(line["source-ref"])) for line in old]) == 5
    task = next(t for t in client.tasks(project) if t["data"]["source_ref"] == "cassette-2.png")
    result = task["predictions"][0]["result"]
    # the person drags cassette-2's control box 10 % of 300 = 30 px right: left 150 -> 180
    result[1]["value"]["x"] += 10.0
    client.annotate(task["id"], result)
    found = changes(old, [line_of(t, BOX_LABELS) for t in client.tasks(project)])
    assert [(c["source-ref"], c["what"]) for c in found] == [("cassette-2.png", "boxes")]
    assert found[0]["after"] == ((Box("window", 32.0, 20.0, 60.0, 40.0), Box("control", 180.0, 90.0, 33.0, 17.0)),
                                 300, 200)


def test_json_export_reads_back_the_annotations(client):
    project = client.create_project("export round trip", label_config(LABELS))
    client.import_tasks(project, [task_of(classification_line("x.png", "negative"), local_files_url("x.png"))])
    task = client.tasks(project)[0]
    client.annotate(task["id"], result_of(classification_line("x.png", "positive")))
    assert client.find_project("export round trip") == project and client.find_project("no such project") is None
    assert [line_label(line_of(t, LABELS)) for t in client.export(project)] == ["positive"]


def test_a_refused_access_token_is_traded_again_for_a_fresh_one(client):
    client._authorization()
    client._access = "expired.access.token"  # as after its five minutes: the server answers 401
    assert isinstance(client.projects(), list)
    assert client._access != "expired.access.token"
