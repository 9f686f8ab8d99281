"""`edgelabels label backend`: an export's suggestions in Label Studio through its ML backend protocol. A real
Label Studio (loopback, one for the module) connects to the backend, asks it for predictions and stores them.

The models are real exported folders built without training (helpers/server.py, helpers/detection.py): the
classifier calls an image by its mean colour, the detector places fixed boxes scored by a channel's mean, so
every expected answer is worked by hand."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request

import pytest
from helpers.detection import solid_image, write_detector_dir
from helpers.server import write_model_dir

from edgelabels.errors import UserError
from edgelabels.labeling.backend import Backend, Tags
from edgelabels.labeling.studio import LabelStudioClient, label_config, local_files_url
from tests.helpers.label_studio import SETUP, LabelStudio, environment, free_port

COLOURS = {"red": (220, 40, 40), "green": (40, 220, 40), "blue": (40, 40, 220)}


# --- the protocol, without Label Studio -------------------------------------------------------------------------------

def test_detector_answers_rectangles_in_percent_of_the_image_each_scored(tmp_path):
    backend = Backend(write_detector_dir(tmp_path / "detector"))
    result, score = backend.answer(solid_image(COLOURS["red"], (100, 60)), Tags(label_config(COLOURS, boxes=True)))
    # red photo: mean R = 220/255 = 0.8627 passes red's 0.7; mean G = 40/255 = 0.1569 passes green's 0.1; blue's
    # 0.1569 misses 0.5; the small red box's 0.75 * 0.8627 = 0.647 misses 0.7. The red box (0.1, 0.2, 0.3, 0.4) is
    # 10 %, 20 %, 30 % x 40 %; the green one, clipped to (0.5, 0.5, 0.5, 0.5), is 50 % each way
    assert [(r["value"]["rectanglelabels"], round(r["value"]["x"], 4), round(r["value"]["y"], 4),
             round(r["value"]["width"], 4), round(r["value"]["height"], 4)) for r in result] == [
        (["red"], 10.0, 20.0, 30.0, 40.0), (["green"], 50.0, 50.0, 50.0, 50.0)]
    assert {(r["from_name"], r["to_name"], r["original_width"], r["original_height"]) for r in result} == {
        ("box", "image", 100, 60)}
    assert score == pytest.approx(40 / 255, abs=1e-5)  # the least sure box's score


def test_a_local_files_url_may_not_leave_the_document_root(tmp_path):
    (tmp_path / "root").mkdir()
    (tmp_path / "secret.png").write_bytes(b"x")
    backend = Backend(write_model_dir(tmp_path / "model"), document_root=tmp_path / "root")
    with pytest.raises(UserError, match="leads outside the document root"):
        backend.image_bytes("/data/local-files/?d=../secret.png")


# --- with a real Label Studio --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    if not (environment() / "bin" / "label-studio").exists():
        pytest.fail(f"Label Studio is not installed at {environment()}: {SETUP}")
    root = tmp_path_factory.mktemp("label-backend")
    (root / "files" / "images").mkdir(parents=True)
    for name, colour in COLOURS.items():
        solid_image(colour, (96, 72)).save(root / "files" / "images" / f"{name}.png")
    (root / "files" / "images" / "broken.png").write_bytes(b"not a png")
    server = LabelStudio(root / "data", files_root=root / "files")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def backend(studio, tmp_path_factory):
    """`edgelabels label backend EXPORT_DIR` in its own process, as a user starts it."""
    model = write_model_dir(tmp_path_factory.mktemp("runs") / "colours" / "export")
    port = free_port()
    command = ("import argparse, sys\nfrom edgelabels.labeling import command\n"
               "parser = argparse.ArgumentParser()\ncommand.add_arguments(parser)\n"
               "command.run(parser.parse_args(sys.argv[1:]))")
    log = open(studio.data_dir / "backend.log", "wb")
    process = subprocess.Popen([sys.executable, "-c", command, "backend", str(model), "--port", str(port),
                                "--document-root", str(studio.files_root)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=5) as response:
                assert json.loads(response.read())["status"] == "UP"
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"label backend did not start: {(studio.data_dir / 'backend.log').read_text()}")
            time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(timeout=15)
    log.close()


def test_label_studio_asks_the_backend_and_stores_its_suggestions(studio, backend):
    client = LabelStudioClient(studio.url, studio.token)
    project = client.create_project("suggestions", label_config(COLOURS))
    client.add_local_files(project, str(studio.files_root / "images"))
    client.import_tasks(project, [{"data": {"image": local_files_url(f"images/{name}.png")}} for name in COLOURS])
    assert all(not t["predictions"] for t in client.tasks(project))
    client.connect_ml_backend(project, backend)  # Label Studio calls /health and /setup here
    client.retrieve_predictions(project)
    suggested = {t["data"]["image"].rsplit("/", 1)[1]: t["predictions"] for t in client.tasks(project)}
    assert {name: [p["result"][0]["value"]["choices"] for p in predictions]
            for name, predictions in suggested.items()} == {f"{c}.png": [[c]] for c in COLOURS}
    assert {p["model_version"] for predictions in suggested.values() for p in predictions} == {"edgelabels colours"}
    # each colour's own channel: softmax 1 / (1 + 2 e^(-4.235)) = 0.9719, as in the test without Label Studio
    assert [round(p["score"], 3) for predictions in suggested.values() for p in predictions] == [0.972] * 3


def post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_predict_answers_one_result_per_task_in_order_and_an_unreadable_image_gets_none(backend):
    assert post(backend + "/setup", {"project": "1.0", "schema": ""}) == {"model_version": "edgelabels colours"}
    tasks = [{"id": i, "data": {"photo": local_files_url(f"images/{name}")}}
             for i, name in enumerate(("broken.png", "blue.png"))]
    config = '<View><Image name="img" value="$photo"/><Choices name="result" toName="img"/></View>'
    broken, blue = post(backend + "/predict", {"tasks": tasks, "label_config": config, "project": "1.0"})["results"]
    assert broken["result"] == [] and "broken.png" in broken["error"]
    assert blue["result"] == [{"from_name": "result", "to_name": "img", "type": "choices",
                               "value": {"choices": ["blue"]}}]
    # logits 6 * mean - 3: blue 6 * 220/255 - 3 = 2.176, the others 6 * 40/255 - 3 = -2.059; softmax:
    # 1 / (1 + 2 e^(-4.235)) = 0.9719
    assert blue["score"] == pytest.approx(0.9719, abs=1e-3)
