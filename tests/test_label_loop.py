"""`edgelabels label export|import`: people correct labels in a real Label Studio (on loopback, never a stub) and
the next version of the dataset differs from the old in exactly what they changed.

One Label Studio for the module; the person is played through its API: an annotation per task, as the labelling
screen submits it."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import urllib.request

import pytest
from PIL import Image

from edgelabels import cli
from edgelabels.data.dataset import Box
from edgelabels.data.detection import load_detection_dataset
from edgelabels.data.sources import load_dataset
from edgelabels.data.synthetic import generate_cassettes
from edgelabels.errors import UserError
from edgelabels.labeling.export import picks, read_source
from edgelabels.labeling.importing import next_version
from edgelabels.labeling.studio import LabelStudioClient, line_boxes, unmoved
from tests.helpers.label_studio import SETUP, LabelStudio, environment

RESULTS = ("positive", "negative", "invalid")
WIDTH, HEIGHT = 160, 120


def label(argv: list[str]) -> int:
    """`edgelabels label ...` through the CLI's own main, in this process."""
    return cli.main(["label", *argv])


# --- without Label Studio ------------------------------------------------------------------------------------------

def test_a_box_read_back_within_a_quarter_pixel_is_the_given_box_itself():
    given = (Box("window", 60, 41, 13, 23), Box("well", 51, 71, 17, 18))
    # 60.2 is 0.2 px off (under 0.25): the given box; 53.0 is 2 px off: a moved box, kept as read
    back = unmoved([Box("well", 51.0, 71.0, 17.0, 18.0), Box("window", 60.2, 41.0, 13.0, 23.0),
                    Box("well", 53.0, 71.0, 17.0, 18.0)], given)
    assert back == (given[1], given[0], Box("well", 53.0, 71.0, 17.0, 18.0))


def test_suspects_come_first_by_rank_then_the_review_queue_each_image_once(tmp_path):
    folder = tmp_path / "data"
    for name, result in (("a", "negative"), ("b", "positive"), ("c", "negative")):
        (folder / result).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (48, 48), (200, 20 * len(name), 40)).save(folder / result / f"{name}.png")
    (tmp_path / "audit").mkdir()
    (tmp_path / "audit" / "suspects.csv").write_text(
        "rank,image,given,suggested,confidence,reason,detail,quality,box\n"
        f"2,{folder / 'negative/a.png'},negative,positive,0.97,label likely wrong,,0.03,\n"
        f"1,{folder / 'positive/b.png'},positive,,,blank,one flat grey,,\n")
    (tmp_path / "eval" / "review").mkdir(parents=True)
    (tmp_path / "eval" / "review" / "queue.csv").write_text(
        "rank,file,path,reason,predicted_label,confidence,second_label,second_confidence,true_label\n"
        f"1,images/x.jpg,{folder / 'negative/a.png'},confidence below 0.9,negative,0.5,positive,0.5,negative\n"
        f"2,images/y.jpg,{folder / 'negative/c.png'},confidence below 0.9,positive,0.6,negative,0.4,negative\n")
    source = read_source(folder)
    chosen = picks(source, tmp_path / "audit", tmp_path / "eval")
    refs = [source.lines[p.index]["source-ref"].rsplit("/", 1)[1] for p in chosen]
    assert refs == ["b.png", "a.png", "c.png"]  # rank 1, rank 2, then the queue without a.png again
    answers = [p.answer["label-metadata"]["class-name"] for p in chosen]
    assert answers == ["positive", "positive", "positive"]  # b as given (no suggestion), a and c as suggested
    assert chosen[1].reason == "suspect 2: label likely wrong (suggested positive, confidence 0.97)"
    assert chosen[0].reason == "suspect 1: blank; one flat grey" and chosen[2].reason == "review: confidence below 0.9"
    assert (chosen[1].score, chosen[2].score) == (0.97, 0.6)


def test_a_box_suspect_relabels_removes_or_adds_a_box_in_our_answer(tmp_path):
    Image.new("RGB", (100, 80), (90, 90, 90)).save(tmp_path / "a.png")
    line = {"source-ref": "a.png",
            "bounding-box": {"image_size": [{"width": 100, "height": 80, "depth": 3}], "annotations": [
                {"class_id": 0, "left": 10, "top": 10, "width": 20, "height": 20},
                {"class_id": 1, "left": 50, "top": 40, "width": 30, "height": 30}]},
            "bounding-box-metadata": {"class-map": {"0": "window", "1": "well"},
                                      "type": "groundtruth/object-detection"}}
    (tmp_path / "boxes.manifest").write_text(json.dumps(line) + "\n")
    (tmp_path / "audit").mkdir()
    # suspects.csv's box as audit/page.py writes it, a JSON list (left, top, width, height)
    # rank 1: 11 10 20 20 overlaps the window by 19 x 20 = 380 of 400 + 400 - 380 = 420 (IoU 0.90): relabelled well;
    # rank 2: 50 40 30 30 is the well itself, nothing suggested: taken away; rank 3: 0 60 10 10 overlaps nothing: added
    (tmp_path / "audit" / "suspects.csv").write_text(
        "rank,image,given,suggested,confidence,reason,detail,quality,box\n"
        "1,a.png,window,well,0.9,wrong label,,,\"[11, 10, 20, 20]\"\n"
        "2,a.png,well,,,spurious or misplaced,,,\"[50, 40, 30, 30]\"\n"
        "3,a.png,,window,0.8,missed label,,,\"[0, 60, 10, 10]\"\n")
    [pick] = picks(read_source(tmp_path / "boxes.manifest"), tmp_path / "audit")
    assert line_boxes(pick.answer)[0] == (Box("well", 10, 10, 20, 20), Box("window", 0.0, 60.0, 10.0, 10.0))
    assert pick.reason.startswith("suspect 1: wrong label (suggested well, confidence 0.90); suspect 2: spurious")


def test_the_next_manifest_elsewhere_names_its_images_from_its_own_folder_and_never_outside_it(tmp_path):
    from edgelabels.labeling.importing import write_next_version

    folder = tmp_path / "data"
    for result, name in (("negative", "a"), ("positive", "b")):
        (folder / result).mkdir(parents=True)
        Image.new("RGB", (48, 48), (200, 40, 40)).save(folder / result / f"{name}.png")
    source = read_source(folder)
    write_next_version(source, [], tmp_path / "next.manifest")
    refs = sorted(json.loads(line)["source-ref"] for line in (tmp_path / "next.manifest").read_text().splitlines())
    assert refs == ["data/negative/a.png", "data/positive/b.png"]
    assert len(load_dataset(tmp_path / "next.manifest")) == 2
    with pytest.raises(UserError, match="must lie in a folder that holds its images"):
        write_next_version(source, [], tmp_path / "elsewhere" / "next.manifest")
    assert not (tmp_path / "elsewhere" / "next.manifest").exists()


def test_export_without_a_document_root_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", raising=False)
    assert label(["export", str(tmp_path), "--label-studio", "http://127.0.0.1:9", "--token", "k"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "pass --document-root or set LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT" in error


def test_an_unanswered_task_changes_nothing_whatever_its_pre_annotation_says(tmp_path):
    folder = tmp_path / "data"
    generate_cassettes(folder, 2, size=(64, 64), progress=False, mix={"negative": 0.5, "positive": 0.5})
    source = read_source(folder)
    ref = source.lines[0]["source-ref"]
    task = {"id": 1, "data": {"source_ref": ref}, "annotations": [], "predictions": [{"result": [
        {"type": "choices", "from_name": "label", "to_name": "image", "value": {"choices": ["positive"]}}]}]}
    lines, changes, answered = next_version(source, [task])
    assert lines == source.lines and changes == [] and answered == 0


class _Recorder:
    """Only what export_project asks of a client, recording the storage it adds (the folder check under test is
    Label Studio's own: the real server refuses a storage named by a path that does not start with its root)."""

    url = "http://label-studio.invalid"

    def __init__(self):
        self.storages = []

    def find_project(self, title):
        return 1

    def local_files(self, project):
        return list(self.storages)

    def add_local_files(self, project, folder):
        self.storages.append(folder)

    def tasks(self, project):
        return []

    def import_tasks(self, project, tasks):
        return len(tasks)


def test_a_storage_is_named_from_the_document_root_as_given_even_through_a_link(tmp_path):
    from edgelabels.labeling.export import export_project

    real = tmp_path / "real"
    generate_cassettes(real / "cassettes", 2, size=(64, 64), progress=False, mix={"negative": 0.5, "positive": 0.5})
    (tmp_path / "root").symlink_to(real)  # Label Studio started with LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=root
    client = _Recorder()
    source = read_source(tmp_path / "root" / "cassettes")
    export_project(client, source, document_root=tmp_path / "root")
    export_project(client, source, document_root=tmp_path / "root")  # the storage there covers it: not added again
    assert client.storages == [str(tmp_path / "root" / "cassettes")]


# --- against the real server ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    if not (environment() / "bin" / "label-studio").exists():
        pytest.fail(f"Label Studio is not installed at {environment()}: {SETUP}")
    root = tmp_path_factory.mktemp("label-loop")
    server = LabelStudio(root / "data", files_root=root / "files")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cassettes(studio):
    """50 user-read cassette photos (a third of each result) whose manifest lines hold both the user's reading and
    the cassette, window and well boxes: what a person checks in one screen."""
    folder = studio.files_root / "cassettes"
    generate_cassettes(folder, 50, seed=3, size=(WIDTH, HEIGHT), progress=False, boxes=True, user_readings=0.4,
                       mix={result: 1 / 3 for result in RESULTS})
    readings = (folder / "user-readings.manifest").read_text().splitlines()
    boxes = (folder / "boxes.manifest").read_text().splitlines()
    lines = [{**json.loads(r), **json.loads(b)} for r, b in zip(readings, boxes)]
    assert all(r["source-ref"] == b["source-ref"] for r, b in zip(map(json.loads, readings), map(json.loads, boxes)))
    manifest = folder / "both.manifest"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return manifest


@pytest.fixture(scope="module")
def client(studio):
    return LabelStudioClient(studio.url, studio.token)


def server(studio, *rest) -> list[str]:
    return ["--label-studio", studio.url, "--token", studio.token, *rest]


@pytest.fixture(scope="module")
def corrected(studio, client, cassettes):
    """Exported, then answered by a person: 35 accepted as suggested, 10 relabelled, 5 with the window moved.
    Returns (project id, {source-ref: new label}, {source-ref: (old window, moved window)}, export's stdout)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert label(["export", str(cassettes), *server(studio, "--project", "round trip", "--document-root",
                                                          str(studio.files_root))]) == 0
    project = client.find_project("round trip")
    tasks = sorted(client.tasks(project), key=lambda t: t["data"]["source_ref"])
    given = {line["source-ref"]: line for line in map(json.loads, cassettes.read_text().splitlines())}
    relabelled, moved = {}, {}
    for i, task in enumerate(tasks):
        result = task["predictions"][0]["result"]
        choice = next(r for r in result if r["type"] == "choices")
        if 35 <= i < 45:  # another result than the user's: the next one in RESULTS
            reading = choice["value"]["choices"][0]
            choice["value"]["choices"] = [RESULTS[(RESULTS.index(reading) + 1) % 3]]
            relabelled[task["data"]["source_ref"]] = choice["value"]["choices"][0]
        elif i >= 45:  # the window dragged 2 px towards the middle: 2 / 160 = 1.25 % of the width
            old = next(b for b in line_boxes(given[task["data"]["source_ref"]])[0] if b.label == "window")
            step = 2 if old.left < WIDTH / 2 else -2
            next(r for r in result if r["value"].get("rectanglelabels") == ["window"])["value"]["x"] += step * 1.25 / 2
            moved[task["data"]["source_ref"]] = (old, Box("window", old.left + step, old.top, old.width, old.height))
        client.annotate(task["id"], result)
    return project, relabelled, moved, out.getvalue()


def test_export_shows_every_image_from_local_files_with_our_answer_the_reason_and_the_given_label(
        studio, client, cassettes, corrected):
    project, _, _, printed = corrected
    assert printed.strip() == f"50 tasks added, 0 already there: {studio.url}/projects/{project}/data"
    config = client.project(project)["label_config"]
    assert '<Choice value="invalid"/>' in config and '<Label value="window"/>' in config  # both tools, one screen
    task = next(t for t in client.tasks(project) if t["data"]["source_ref"] == "photos/cassette-00000.jpg")
    # cassette 0: the user read "positive" (user-reading 0); its window is 60, 41, 13 x 23 px of 160 x 120
    assert task["data"]["image"] == "/data/local-files/?d=cassettes/photos/cassette-00000.jpg"
    request = urllib.request.Request(studio.url + task["data"]["image"],
                                     headers={"Authorization": client._authorization()})
    with urllib.request.urlopen(request, timeout=30) as response:  # served from its disk, not an uploaded copy
        assert response.read() == (cassettes.parent / "photos" / "cassette-00000.jpg").read_bytes()
    assert task["data"]["given"] == "positive; boxes: cassette, window, well"
    assert task["data"]["reason"] == "the whole dataset (no suspects or review queue given)"
    result = task["predictions"][0]["result"]
    assert next(r for r in result if r["type"] == "choices")["value"]["choices"] == ["positive"]
    window = next(r for r in result if r["value"].get("rectanglelabels") == ["window"])["value"]
    # 60/160 = 37.5 %, 41/120 = 34.1666 %, 13/160 = 8.125 %, 23/120 = 19.1666 %
    assert (window["x"], window["width"]) == (37.5, 8.125) and window["y"] == pytest.approx(34.1666667)


def test_import_differs_from_the_source_in_exactly_the_ten_labels_and_five_boxes_people_changed(
        studio, cassettes, corrected, capsys):
    project, relabelled, moved, _ = corrected
    out = cassettes.parent / "next.manifest"
    assert label(["import", str(cassettes), *server(studio, "--project", str(project), "--out", str(out))]) == 0
    assert capsys.readouterr().out.strip() == (f"50 images, 50 answered by people: 10 labels and 5 boxes changed -> "
                                               f"{out} (changes: {cassettes.parent / 'next.changes.csv'})")
    with open(cassettes.parent / "next.changes.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    given = {json.loads(line)["source-ref"]: json.loads(line) for line in cassettes.read_text().splitlines()}
    assert sorted((r["image"], r["before"], r["after"]) for r in rows if r["what"] == "label") == sorted(
        (ref, given[ref]["user-reading-metadata"]["class-name"], new) for ref, new in relabelled.items())
    g = "{:g}".format
    assert sorted((r["image"], r["before"], r["after"]) for r in rows if r["what"] == "box") == sorted(
        (ref, f"window {g(a.left)} {g(a.top)} {g(a.width)} {g(a.height)}",
         f"window {g(b.left)} {g(b.top)} {g(b.width)} {g(b.height)}") for ref, (a, b) in moved.items())
    # every other line is the given one, byte for byte once parsed; the changed ones differ only where changed
    new = {json.loads(line)["source-ref"]: json.loads(line) for line in out.read_text().splitlines()}
    assert list(new) == list(given)
    assert [ref for ref in given if new[ref] != given[ref]] == sorted({*relabelled, *moved})
    # and the next version reads back through the project's own readers
    images = {s.path.name: s for s in load_dataset(out).samples}
    for ref, result in relabelled.items():
        assert result in images[ref.rsplit("/", 1)[1]].labels
    boxes = {s.path.name: s.boxes for s in load_detection_dataset(out).samples}
    for ref, (_, after) in moved.items():
        assert after in boxes[ref.rsplit("/", 1)[1]]


def test_import_from_label_studio_json_export_file_equals_the_rest_import(
        studio, client, cassettes, corrected):
    project = corrected[0]
    exported = cassettes.parent / "export.json"
    exported.write_text(json.dumps(client.export(project)))
    rest, from_file = cassettes.parent / "rest.manifest", cassettes.parent / "file.manifest"
    assert label(["import", str(cassettes), *server(studio, "--project", str(project), "--out", str(rest))]) == 0
    assert label(["import", str(cassettes), "--from-json", str(exported), "--out", str(from_file)]) == 0
    assert from_file.read_bytes() == rest.read_bytes()
    assert (cassettes.parent / "file.changes.csv").read_bytes() == (cassettes.parent / "rest.changes.csv").read_bytes()
    assert len((cassettes.parent / "rest.changes.csv").read_text().splitlines()) == 1 + 15  # header + 10 + 5


def test_exporting_again_fills_the_project_without_duplicating_a_task(studio, client, cassettes, capsys):
    argv = ["export", str(cassettes), *server(studio, "--project", "twice", "--document-root", str(studio.files_root))]
    assert label([*argv, "--limit", "20"]) == 0
    assert label(argv) == 0
    printed = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in printed] == ["20 tasks added, 0 already there",
                                                        "30 tasks added, 20 already there"]
    tasks = client.tasks(client.find_project("twice"))
    assert len(tasks) == 50 and len({t["data"]["source_ref"] for t in tasks}) == 50


@pytest.mark.parametrize("change, expected", [
    (("--label-studio", "http://127.0.0.1:9"), r"http://127.0.0.1:9: cannot reach Label Studio"),
    (("--token", "aaa.bbb.ccc"), r"HTTP 401"),
    (("--project", "9999"), r": no project 9999$"),
])
def test_a_bad_url_token_or_project_is_one_line_and_exit_2(studio, cassettes, change, expected, capsys,
                                                           tmp_path):
    options = {"--label-studio": studio.url, "--token": studio.token, "--project": "1", **dict([change])}
    argv = ["import", str(cassettes), *[x for pair in options.items() for x in pair], "--out", str(tmp_path / "n.m")]
    assert label(argv) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and re.search(expected, error.strip())
    assert not (tmp_path / "n.m").exists()
