"""Training a version from the console and using it (console/version_pages.py, training_progress.py, version.js).

One tiny training (helpers/service_ops.py's TINY recipe, 3 epochs) on the in-process service with its lifespan on,
so its trainer runs as `edgelabels serve --projects` runs it. The version is created by the train page's form;
its server-sent events are read as they come, by a plain HTTP client and by a real Chromium (the version page's
live progress); then the page starts it (boto3 sees RUNNING), tries photos and stops it.
"""

from __future__ import annotations

import csv
import dataclasses
import http.client
import io
import json
import os
import re
import shlex
import threading
import time
import urllib.parse

import numpy as np
import pytest

from edgelabels.console.auth import COOKIE
from helpers.runs import make_image
from helpers.service_ops import make_context, write_bucket
import test_console
from test_console import KEY, SECRET, Page, signed_in
from helpers.browser import collect_errors

console_service = test_console.service  # the in-process service (uvicorn on loopback, boto3 on the same port)

PROJECT, BUCKET, VERSION, EPOCHS = "colours", "pictures", "v1", 3
VERSION_PATH = f"/console/projects/{PROJECT}/versions/{VERSION}"


def png_bytes(label_index: int) -> bytes:
    buffer = io.BytesIO()
    make_image(label_index, np.random.default_rng(5), 64).save(buffer, "PNG")
    return buffer.getvalue()


def read_events(port: int, path: str, cookie: str, into: list, timeout_s: float = 600) -> None:
    """The server-sent events of GET path as (event, data) pairs appended to `into` as they arrive, until "end"."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    connection.request("GET", path, headers={"Cookie": f"{COOKIE}={cookie}", "Accept": "text/event-stream"})
    answer = connection.getresponse()
    assert answer.status == 200 and answer.getheader("Content-Type").startswith("text/event-stream")
    event, data = "message", []
    try:
        while True:
            line = answer.readline().decode()
            if not line:
                return
            line = line.rstrip("\r\n")
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
            elif not line and data:
                into.append((event, json.loads("\n".join(data))))
                if event == "end":
                    return
                event, data = "message", []
    finally:
        connection.close()


@pytest.fixture(scope="module")
def service(console_service):
    """test_console's in-process service with its trainer started as the service's lifespan starts it, trainings of
    EPOCHS epochs, and a project whose TRAIN and TEST datasets come from a bucket of generated images."""
    from edgelabels.service import trainer

    ctx = console_service.state.ctx
    ctx.settings = dataclasses.replace(ctx.settings, overrides=(*ctx.settings.overrides, f"train.epochs={EPOCHS}"))
    write_bucket(ctx.s3.root, BUCKET, per_label=8, test_per_label=4)
    running = trainer.start(ctx)
    api = console_service.rekognition
    project_arn = api.create_project(ProjectName=PROJECT)["ProjectArn"]
    for kind in ("train", "test"):
        arn = api.create_dataset(ProjectArn=project_arn, DatasetType=kind.upper(), DatasetSource={
            "GroundTruthManifest": {"S3Object": {"Bucket": BUCKET, "Name": f"{kind}.manifest"}}})["DatasetArn"]
        while api.describe_dataset(DatasetArn=arn)["DatasetDescription"]["Status"].endswith("PROGRESS"):
            time.sleep(0.1)
    console_service.project_arn, console_service.ctx = project_arn, ctx
    yield console_service
    running.stop()


def csrf_of(page: Page, path: str) -> str:
    status, _, text = page.get(path)
    assert status == 200, text
    return re.search(r'name="csrf" value="([^"]+)"', text).group(1)


@pytest.fixture(scope="module")
def training(service):
    """v1 created by the train page's form; its events read from the moment it exists, in a thread."""
    page = signed_in(service)
    status, answer, text = page.post(f"/console/projects/{PROJECT}/train", {
        "version_name": VERSION, "bucket": "console-results", "prefix": "colours/",
        "csrf": csrf_of(page, f"/console/projects/{PROJECT}/train")})
    assert (status, answer.getheader("Location")) == (303, VERSION_PATH), text
    events: list = []
    reader = threading.Thread(target=read_events, args=(service.port, f"{VERSION_PATH}/events", page.cookie, events),
                              daemon=True)
    reader.start()
    arn = service.rekognition.describe_project_versions(
        ProjectArn=service.project_arn, VersionNames=[VERSION])["ProjectVersionDescriptions"][0]["ProjectVersionArn"]
    return {"page": page, "events": events, "reader": reader, "arn": arn}


def api_status(service) -> str:
    return service.rekognition.describe_project_versions(
        ProjectArn=service.project_arn, VersionNames=[VERSION])["ProjectVersionDescriptions"][0]["Status"]


def wait_api_status(service, wanted: str, timeout_s: float = 300) -> str:
    deadline = time.monotonic() + timeout_s
    while (status := api_status(service)) != wanted and time.monotonic() < deadline:
        time.sleep(0.2)
    return status


@pytest.mark.slow
def test_the_version_page_shows_the_training_live_then_starts_tries_photos_and_stops_without_errors(
        service, training, chromium):
    from playwright.sync_api import expect

    context = chromium.new_context()
    page = context.new_page()
    errors = collect_errors(page)
    page.goto(f"http://127.0.0.1:{service.port}/console/sign-in")
    page.locator("input[name=key_id]").fill(KEY)
    page.locator("input[name=secret]").fill(SECRET)
    page.locator("input[name=secret]").press("Enter")
    page.wait_for_url(re.compile(r"/console/$"))

    answer = page.goto(f"http://127.0.0.1:{service.port}{VERSION_PATH}")
    assert ">TRAINING_IN_PROGRESS<" in answer.text()  # what follows arrived by the event stream
    expect(page.locator("#progress-updates")).to_have_text(re.compile(r"^([2-9]|\d\d+)$"), timeout=300_000)
    shot(page, "version-training")
    expect(page.locator("#status")).to_have_text("TRAINING_COMPLETED", timeout=300_000)
    expect(page.locator("#epoch")).to_have_text(f"Epoch {EPOCHS} of {EPOCHS}")
    points = page.locator("#loss-line").get_attribute("points").split()
    assert len(points) == EPOCHS
    expect(page.locator("#recipe-choices tbody tr").first).to_be_visible()
    expect(page.locator("a#evaluation")).to_be_visible()

    page.locator("#start").click()
    expect(page.locator("#status")).to_have_text("RUNNING", timeout=60_000)
    expect(page.locator("#stop")).to_be_visible()
    page.locator("#photo").set_input_files(files=[{"name": "red.png", "mimeType": "image/png",
                                                   "buffer": png_bytes(0)}])
    rows = page.locator("table#detections tbody tr")
    expect(rows.first).to_be_visible(timeout=30_000)
    assert rows.first.locator("td").nth(0).inner_text() in ("red", "green")
    assert re.fullmatch(r"\d+\.\d%", rows.first.locator("td").nth(1).inner_text())
    page.locator("#photo").set_input_files(files=[{"name": "photo.txt", "mimeType": "text/plain",
                                                   "buffer": b"not a picture"}])
    expect(page.locator("#try-message")).to_have_text("photo.txt is not an image (PNG or JPEG)")
    drop_photo(page, "dropped.png", png_bytes(1))
    expect(page.locator("#try-message")).to_contain_text("dropped.png: ")
    shot(page, "version-running")

    page.locator("#stop").click()
    expect(page.locator("#status")).to_have_text("STOPPED", timeout=60_000)
    assert api_status(service) == "STOPPED"
    drop_photo(page, "late.png", png_bytes(1))
    expect(page.locator("#try-message")).to_have_text(f"{VERSION} is STOPPED: start it and wait until it is RUNNING "
                                                      "to try a photo")
    page.goto(f"http://127.0.0.1:{service.port}/console/projects/{PROJECT}/train")
    expect(page.locator("#version-name")).to_have_value("v2")
    shot(page, "train")
    assert errors == []
    context.close()


def shot(page, name: str) -> None:
    """EDGELABELS_SCREENSHOTS=DIR keeps a screenshot of the page there."""
    if os.environ.get("EDGELABELS_SCREENSHOTS"):
        page.screenshot(path=f"{os.environ['EDGELABELS_SCREENSHOTS']}/{name}.png", full_page=True)


def drop_photo(page, name: str, data: bytes) -> None:
    """A file dropped on #drop, as a drag from the desktop delivers it."""
    page.evaluate("""([name, bytes]) => {
        const transfer = new DataTransfer();
        transfer.items.add(new File([new Uint8Array(bytes)], name, {type: "image/png"}));
        document.getElementById("drop").dispatchEvent(
            new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
    }""", [name, list(data)])


@pytest.mark.slow
def test_the_event_stream_pushes_every_epoch_of_history_csv_and_ends_when_the_training_does(service, training):
    training["reader"].join(600)
    events = training["events"]
    assert events and events[-1][0] == "end"
    progress = [data for event, data in events if event == "progress"]
    epochs = [p["epoch"] for p in progress if p["epoch"]]
    assert len(epochs) >= 2 and epochs == sorted(epochs) and set(epochs) == set(range(1, EPOCHS + 1))
    assert {p["status"] for p in progress[:-1]} <= {"TRAINING_IN_PROGRESS", "TRAINING_COMPLETED"}
    assert progress[-1]["status"] == "TRAINING_COMPLETED" and progress[-1]["epochs"] == EPOCHS
    run = next((service.ctx.directory / "versions" / PROJECT).glob(f"{VERSION}-*/run"))
    history = list(csv.DictReader(io.StringIO((run / "history.csv").read_text())))
    assert [round(row["loss"], 4) for row in progress[-1]["rows"]] == [round(float(h["loss"]), 4) for h in history]
    monitored = progress[-1]["rows"][-1]["monitor_name"]
    assert monitored == "val_auc" and progress[-1]["rows"][-1]["monitor"] == pytest.approx(
        float(history[-1][monitored]), abs=1e-5)
    # each epoch was shown with the rows up to it
    assert all(len(p["rows"]) == p["epoch"] for p in progress)
    assert progress[-1]["choices"] and {"key", "value", "reason"} <= set(progress[-1]["choices"][0])


@pytest.mark.slow
def test_start_in_the_page_is_running_to_boto3_detect_answers_and_stop_is_stopped(service, training):
    training["reader"].join(600)
    assert api_status(service) in ("TRAINING_COMPLETED", "STOPPED")  # STOPPED: the browser test ran first
    page = training["page"]
    csrf = csrf_of(page, VERSION_PATH)
    status, answer, _ = page.post(f"{VERSION_PATH}/start", {"csrf": csrf})
    assert (status, answer.getheader("Location")) == (303, VERSION_PATH)
    assert wait_api_status(service, "RUNNING", 60) == "RUNNING"

    status, labels = detect(page, service.port, csrf, png_bytes(1), "green.png")
    assert status == 200 and labels["CustomLabels"]
    assert {label["Name"] for label in labels["CustomLabels"]} <= {"red", "green"}
    status, refused = detect(page, service.port, csrf, b"hello, I am text", "notes.txt")
    assert (status, refused) == (400, {"message": "notes.txt is not an image (PNG or JPEG)"})
    assert detect(page, service.port, "stale-token", png_bytes(1), "green.png")[0] == 403

    status, answer, _ = page.post(f"{VERSION_PATH}/stop", {"csrf": csrf})
    assert status == 303
    assert wait_api_status(service, "STOPPED", 60) == "STOPPED"
    status, refused = detect(page, service.port, csrf, png_bytes(1), "green.png")
    assert status == 409 and "ResourceNotReadyException" in refused["message"] and "STOPPED" in refused["message"]
    status, _, text = page.post(f"{VERSION_PATH}/stop", {"csrf": csrf})  # stopped already: refused, said why
    assert status == 409 and "ResourceInUseException" in text and "cannot be stopping now" in text


def detect(page: Page, port: int, csrf: str, body: bytes, name: str) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", f"{VERSION_PATH}/detect?{urllib.parse.urlencode({'name': name})}", body=body,
                           headers={"Cookie": f"{COOKIE}={page.cookie}", "X-CSRF-Token": csrf,
                                    "Content-Type": "application/octet-stream"})
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read())
    finally:
        connection.close()


@pytest.mark.slow
def test_the_commands_name_this_endpoint_and_the_versions_arn_and_parse(service, training):
    import html

    _, _, text = training["page"].get(VERSION_PATH)
    endpoint, arn = f"http://127.0.0.1:{service.port}", training["arn"]
    boto3_text = html.unescape(re.search(r'<pre id="boto3">(.*?)</pre>', text, re.S).group(1))
    cli_text = html.unescape(re.search(r'<pre id="cli">(.*?)</pre>', text, re.S).group(1))
    compile(boto3_text, "boto3 commands", "exec")
    assert f"endpoint_url={endpoint!r}" in boto3_text and f"version_arn = {arn!r}" in boto3_text
    for call in ("start_project_version", "describe_project_versions", "detect_custom_labels", "stop_project_version"):
        assert f"rekognition.{call}(" in boto3_text
    commands = [shlex.split(line) for line in cli_text.splitlines()]
    assert [c[2] for c in commands] == ["start-project-version", "wait", "describe-project-versions",
                                        "detect-custom-labels", "stop-project-version"]
    assert commands[1][3] == "project-version-running" and "fileb://photo.jpg" in commands[3]
    for command in commands:
        assert command[:2] in (["aws", "rekognition"],)
        assert command[command.index("--endpoint-url") + 1] == endpoint
        if "--project-version-arn" in command:
            assert command[command.index("--project-version-arn") + 1] == arn
        if "--project-arn" in command:
            assert command[command.index("--project-arn") + 1] == service.project_arn


def test_the_train_page_shows_the_services_settings_and_offers_a_free_version_name(service):
    page = signed_in(service)
    status, _, text = page.get(f"/console/projects/{PROJECT}/train")
    assert status == 200
    taken = {v["ProjectVersionArn"].split("/")[3] for v in service.rekognition.describe_project_versions(
        ProjectArn=service.project_arn)["ProjectVersionDescriptions"]}
    offered = re.search(r'id="version-name"[^>]*value="([^"]*)"', text).group(1)
    assert offered and offered not in taken
    assert "<code>model.backbone</code></td><td>tinycnn</td>" in text  # --set by the service
    # write_bucket's: 8 images per label, plus a red line whose image is missing in TRAIN; 4 per label in TEST
    assert re.findall(r'<td class="label-counts">([^<]*)</td>', text) == ["red 9, green 8", "green 4, red 4"]
    assert f"<code>train.epochs</code></td><td>{EPOCHS}</td>" in text
    assert "<code>train.monitor</code>" in text.split('id="recipe-plan"')[1].split("</ul>")[0]  # the recipe's


def test_training_a_project_without_datasets_is_refused_on_the_page_keeping_what_was_typed(service):
    service.rekognition.create_project(ProjectName="empty")
    page = signed_in(service)
    path = "/console/projects/empty/train"
    status, _, text = page.post(path, {"version_name": "typed-name", "bucket": "results", "prefix": "p/",
                                       "csrf": csrf_of(page, path)})
    assert status == 400 and "The version was not created" in text and "has no TRAIN and no TEST dataset" in text
    assert 'value="typed-name"' in text and "Traceback" not in text


def test_a_bucket_name_that_is_no_s3_bucket_is_refused_in_one_line_and_nothing_is_created(service):
    page = signed_in(service)
    before = service.rekognition.describe_project_versions(ProjectArn=service.project_arn)["ProjectVersionDescriptions"]
    path = f"/console/projects/{PROJECT}/train"
    status, _, text = page.post(path, {"version_name": "v-bad", "bucket": "..", "prefix": "",
                                       "csrf": csrf_of(page, path)})
    assert status == 400 and "is not a valid S3 bucket name" in text and "Traceback" not in text
    after = service.rekognition.describe_project_versions(ProjectArn=service.project_arn)["ProjectVersionDescriptions"]
    assert len(after) == len(before)


def test_pages_of_a_missing_version_say_so_and_the_stream_needs_a_session(service):
    page = signed_in(service)
    status, _, text = page.get(f"/console/projects/{PROJECT}/versions/nope")
    assert status == 404 and "no version named" in text
    assert Page(service.port).get(f"{VERSION_PATH}/events")[0] == 401


def test_epochs_finished_between_two_reads_are_each_pushed_with_the_rows_up_to_them():
    from edgelabels.console.training_progress import changes

    def row(epoch: int) -> dict:
        return {"epoch": epoch, "stage": "a", "loss": 1.0 / epoch, "val_loss": None, "monitor_name": "val_auc",
                "monitor": 0.5}

    def state(epochs: int, status: str = "TRAINING_IN_PROGRESS") -> dict:
        return {"status": status, "message": "m", "epoch": epochs, "epochs": 4, "stage": "training",
                "rows": [row(e) for e in range(1, epochs + 1)], "seconds_left": 3, "choices": []}

    assert changes(state(1), state(1)) == []
    assert changes(None, state(2)) == [state(2)]  # a page that connects late gets where it stands, once
    pushed = changes(state(1), state(4, "TRAINING_COMPLETED"))
    assert [(p["epoch"], len(p["rows"])) for p in pushed] == [(2, 2), (3, 3), (4, 4)]
    assert pushed[0]["message"] == "epoch 2: loss 0.5000, val_auc 0.5000" and pushed[0]["stage"] == "training"
    assert pushed[-1] == state(4, "TRAINING_COMPLETED")


def test_a_failed_training_shows_the_end_of_its_job_log_and_its_reason(tmp_path):
    from edgelabels.console.training_progress import progress

    ctx = make_context(tmp_path)
    project = ctx.store.create_project("broken", status="CREATED")
    arn = ctx.store.create_version(project["arn"], "v1", enqueue=False)["arn"]
    ctx.store.set_version_status(arn, "TRAINING_FAILED", "The training failed: boom")
    ctx.version_dir(arn).mkdir(parents=True)
    (ctx.version_dir(arn) / "job.log").write_text("".join(f"step {i}\n" for i in range(100)) + "ValueError: boom\n")
    now = progress(ctx, arn)
    assert (now["status"], now["message"], now["rows"], now["epoch"]) == (
        "TRAINING_FAILED", "The training failed: boom", [], 0)
    assert now["log"] == [f"step {i}" for i in range(71, 100)] + ["ValueError: boom"]
    ctx.close()
