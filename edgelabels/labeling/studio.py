"""Label Studio over its REST API, and Ground Truth manifest lines <-> Label Studio tasks.

A task carries the image (`data.image`, a URL Label Studio can show), the manifest's own `source-ref`
(`data.source_ref`, so the way back never has to parse a URL), why we picked it (`data.reason`) and our answer
as a pre-annotation (`predictions`). Label Studio draws boxes in percent of the image as shown
(`original_width` x `original_height`); Ground Truth in pixels of the same image.

Tokens: Label Studio 1.23 gives each user a Personal Access Token, a JWT refresh token; the client trades it
for a short-lived access token (POST /api/token/refresh) and sends `Authorization: Bearer ACCESS`, trading again
when it expires. Any other token is sent the legacy way (`Authorization: Token KEY`), which works only where
the server runs with --enable-legacy-api-token (off by default for new organisations).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from xml.sax.saxutils import quoteattr

from edgelabels.data.dataset import Box
from edgelabels.data.sources import CLASSIFICATION, DETECTION
from edgelabels.errors import UserError

CHOICES_NAME, BOXES_NAME, IMAGE_NAME = "label", "box", "image"


def label_config(labels, *, boxes: bool = False, box_labels=()) -> str:
    """The labeling interface: one choice among `labels` per image, or rectangles each with one of `labels`
    (boxes); with `box_labels`, both: a choice among `labels` and rectangles labelled from `box_labels` (a cassette
    photo's result and its cassette, window and well)."""
    choices, rectangles = ((), labels) if boxes else (labels, box_labels)
    tools = ""
    if choices:
        names = "".join(f"<Choice value={quoteattr(str(n))}/>" for n in choices)
        tools += (f'<Choices name="{CHOICES_NAME}" toName="{IMAGE_NAME}" choice="single" showInline="true">'
                  f'{names}</Choices>')
    if rectangles:
        names = "".join(f"<Label value={quoteattr(str(n))}/>" for n in rectangles)
        tools += f'<RectangleLabels name="{BOXES_NAME}" toName="{IMAGE_NAME}">{names}</RectangleLabels>'
    return f'<View><Image name="{IMAGE_NAME}" value="$image"/>{tools}</View>'


def local_files_url(relative_path: str) -> str:
    """Where Label Studio serves a file under its LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT (serving switched on with
    LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true; the project needs a local-files storage over the folder)."""
    return "/data/local-files/?d=" + urllib.parse.quote(str(relative_path).lstrip("/"))


# --- boxes: pixels <-> percent ---------------------------------------------------------------------------------

def box_to_percent(box: Box, width: int, height: int) -> dict:
    """A Ground Truth box (pixels) as a Label Studio rectangle value (percent of the image)."""
    return {"x": 100.0 * box.left / width, "y": 100.0 * box.top / height,
            "width": 100.0 * box.width / width, "height": 100.0 * box.height / height,
            "rotation": 0, "rectanglelabels": [box.label]}


def percent_to_box(value: dict, width: int, height: int) -> Box:
    """A Label Studio rectangle value back to pixels, rounded to a hundredth of a pixel (percent arithmetic
    would otherwise turn 40 px into 39.99999999 and every untouched box into a change)."""
    if value.get("rotation"):
        raise ValueError(f"rotated rectangle ({value['rotation']} degrees): Ground Truth boxes cannot rotate")
    return Box(value["rectanglelabels"][0], round(value["x"] * width / 100.0, 2), round(value["y"] * height / 100.0, 2),
               round(value["width"] * width / 100.0, 2), round(value["height"] * height / 100.0, 2))


# --- Ground Truth line <-> task ----------------------------------------------------------------------------------

def attribute_of(line: dict, kind: str) -> str | None:
    return next((k[:-len("-metadata")] for k, v in line.items()
                 if k.endswith("-metadata") and isinstance(v, dict) and v.get("type") == kind), None)


def line_label(line: dict) -> str | None:
    """The image-level label of a Ground Truth classification line (None without one)."""
    name = attribute_of(line, CLASSIFICATION)
    return None if name is None else line[f"{name}-metadata"]["class-name"]


def line_boxes(line: dict) -> tuple[tuple[Box, ...], int, int] | None:
    """The boxes of a Ground Truth object-detection line and the image size they are drawn on (None without)."""
    name = attribute_of(line, DETECTION)
    if name is None:
        return None
    classes = line[f"{name}-metadata"].get("class-map", {})
    size = line[name]["image_size"][0]
    boxes = tuple(Box(classes.get(str(a["class_id"]), str(a["class_id"])), a["left"], a["top"], a["width"],
                      a["height"]) for a in line[name]["annotations"])
    return boxes, int(size["width"]), int(size["height"])


def with_label(line: dict, name: str, class_id: int) -> dict:
    """A copy of a Ground Truth line whose image-level label is `name` (class id `class_id`), marked as a person's."""
    attribute = attribute_of(line, CLASSIFICATION)
    metadata = {**line[f"{attribute}-metadata"], "class-name": name, "human-annotated": "yes"}
    return {**line, attribute: class_id, f"{attribute}-metadata": metadata}


def with_boxes(line: dict, boxes) -> dict:
    """A copy of a Ground Truth line whose box attribute holds `boxes` (pixels), marked as a person's; a label its
    class-map lacks gets the next free class id."""
    attribute = attribute_of(line, DETECTION)
    metadata = dict(line[f"{attribute}-metadata"])
    classes = dict(metadata.get("class-map", {}))
    ids = {name: int(i) for i, name in classes.items()}
    for box in boxes:
        if box.label not in ids:
            ids[box.label] = max(ids.values(), default=-1) + 1
            classes[str(ids[box.label])] = box.label
    value = {**line[attribute], "annotations": [{"class_id": ids[b.label], "left": b.left, "top": b.top,
                                                 "width": b.width, "height": b.height} for b in boxes]}
    metadata.update({"class-map": classes, "objects": [{"confidence": 1} for _ in boxes], "human-annotated": "yes"})
    return {**line, attribute: value, f"{attribute}-metadata": metadata}


UNMOVED_PX = 0.25  # a box whose every edge lies this close to a given box's is that box, untouched: percent
# arithmetic (and percent_to_box's rounding to 0.01 px) moves an untouched box by at most 0.005 px, while a person
# dragging one moves it by at least a screen pixel, under a quarter of an image pixel only when zoomed in over 4x


def unmoved(boxes, given) -> tuple[Box, ...]:
    """`boxes` (read back from percent) with each one that a person left where it was replaced by the given box
    itself, so an untouched box comes back to exactly its given pixels."""
    left = list(given)
    kept = []
    for box in boxes:
        same = next((g for g in left if g.label == box.label and all(
            abs(a - b) <= UNMOVED_PX for a, b in zip((g.left, g.top, g.width, g.height),
                                                     (box.left, box.top, box.width, box.height)))), None)
        if same is not None:
            left.remove(same)
        kept.append(same or box)
    return tuple(kept)


def result_of(line: dict) -> list[dict]:
    """A Ground Truth line's labels as a Label Studio result (a choice, rectangles, or both)."""
    result = []
    label = line_label(line)
    if label is not None:
        result.append({"from_name": CHOICES_NAME, "to_name": IMAGE_NAME, "type": "choices",
                       "value": {"choices": [label]}})
    drawn = line_boxes(line)
    if drawn is not None:
        boxes, width, height = drawn
        result += [{"id": f"b{i}", "from_name": BOXES_NAME, "to_name": IMAGE_NAME, "type": "rectanglelabels",
                    "original_width": width, "original_height": height, "image_rotation": 0,
                    "value": box_to_percent(box, width, height)} for i, box in enumerate(boxes)]
    return result


def task_of(line: dict, image_url: str, *, reason: str = "", model_version: str = "edgelabels",
            score: float | None = None) -> dict:
    """A Label Studio task for one Ground Truth line: the line's labels become the pre-annotation."""
    prediction = {"model_version": model_version, "result": result_of(line)}
    if score is not None:
        prediction["score"] = float(score)
    return {"data": {IMAGE_NAME: image_url, "source_ref": line["source-ref"], "reason": reason},
            "predictions": [prediction]}


def final_result(task: dict) -> tuple[list[dict], bool]:
    """What people settled on: the latest annotation not skipped, else our pre-annotation (untouched).
    Returns (result, whether a person answered)."""
    done = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    if done:
        latest = max(done, key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), a.get("id", 0)))
        return latest.get("result") or [], True
    predictions = [p for p in task.get("predictions") or [] if isinstance(p, dict)]  # JSON export: ids only
    return (predictions[-1].get("result") or [] if predictions else []), False


def line_of(task: dict, labels, *, job: str = "labeling-job/edgelabels-label-studio",
            date: str = "1970-01-01T00:00:00") -> dict:
    """A Ground Truth line from a Label Studio task (as the API or its JSON export gives it). `labels` fixes the
    class ids; a choice gives a `label` attribute, rectangles a `bounding-box` attribute."""
    result, human = final_result(task)
    ids = _Ids(labels, task)
    line: dict = {"source-ref": task["data"].get("source_ref") or task["data"][IMAGE_NAME]}
    metadata = {"job-name": job, "human-annotated": "yes" if human else "no", "creation-date": date}
    choices = [r for r in result if r.get("type") == "choices"]
    if choices:
        name = choices[-1]["value"]["choices"][0]
        line["label"] = ids[name]
        line["label-metadata"] = {"class-name": name, "confidence": 1, "type": CLASSIFICATION, **metadata}
    rectangles = [r for r in result if r.get("type") == "rectanglelabels"]
    if rectangles or any(r.get("type") == "rectanglelabels" for r in _regions(task)):
        width, height = (rectangles[0]["original_width"], rectangles[0]["original_height"]) if rectangles \
            else _size(task)
        boxes = [percent_to_box(r["value"], width, height) for r in rectangles]
        line["bounding-box"] = {"image_size": [{"width": width, "height": height, "depth": 3}],
                                "annotations": [{"class_id": ids[b.label], "left": b.left, "top": b.top,
                                                 "width": b.width, "height": b.height} for b in boxes]}
        line["bounding-box-metadata"] = {"objects": [{"confidence": 1} for _ in boxes],
                                         "class-map": {str(i): n for n, i in ids.items()},
                                         "type": DETECTION, **metadata}
    return line


class _Ids(dict):
    """Class ids by label; a label the list lacks (added to the project by hand) is a UserError naming the task."""

    def __init__(self, labels, task: dict):
        super().__init__((name, i) for i, name in enumerate(labels))
        self.task = task

    def __missing__(self, name):
        raise UserError(f"Label Studio task {self.task.get('id')} ({self.task['data'].get('source_ref')}): label "
                        f"{name!r} is not one of {', '.join(map(str, self))}")


def changes(old: list[dict], new: list[dict]) -> list[dict]:
    """What people changed, image by image: the label or the boxes of each source-ref whose line differs
    ({source-ref, what, before, after}); images only in one list are left out (nothing to compare)."""
    after = {line["source-ref"]: line for line in new}
    found = []
    for line in old:
        ref = line["source-ref"]
        if ref not in after:
            continue
        for what, read in (("label", line_label), ("boxes", line_boxes)):
            before, now = read(line), read(after[ref])
            if before != now:
                found.append({"source-ref": ref, "what": what, "before": before, "after": now})
    return found


def _regions(task: dict):
    """Every region of every prediction and annotation of a task (the JSON export lists predictions by id only)."""
    for source in (task.get("predictions") or []) + (task.get("annotations") or []):
        if isinstance(source, dict):
            yield from source.get("result") or []


def _size(task: dict) -> tuple[int, int]:
    """The image size from any rectangle of the task (a person deleted them all from the final answer)."""
    for r in _regions(task):
        if "original_width" in r:
            return int(r["original_width"]), int(r["original_height"])
    raise ValueError(f"task {task.get('id')}: no image size to place boxes on")


# --- the REST client ---------------------------------------------------------------------------------------------

class LabelStudioClient:
    """Projects, tasks and annotations on one Label Studio server. Errors are one-line UserErrors naming the URL."""

    def __init__(self, url: str, token: str, *, timeout: float = 60.0):
        self.url = url.rstrip("/")
        self.token = token.strip()
        self.timeout = timeout
        self._access: str | None = None

    @property
    def personal_access_token(self) -> bool:
        return self.token.count(".") == 2  # a JWT (header.payload.signature); legacy keys are plain hex

    def _authorization(self, fresh: bool = False) -> str:
        if not self.personal_access_token:
            return f"Token {self.token}"
        if self._access is None or fresh:
            self._access = self._call("POST", "/api/token/refresh", {"refresh": self.token}, auth=None)["access"]
        return f"Bearer {self._access}"

    def request(self, method: str, path: str, body=None):
        """One API call; JSON in and out. An expired access token is traded for a new one once."""
        try:
            return self._call(method, path, body, auth=self._authorization())
        except _Unauthorized:
            if not self.personal_access_token:
                raise UserError(f"{self.url}: the API token was refused (legacy tokens need the server started "
                                "with --enable-legacy-api-token; a Personal Access Token works by default)") from None
            try:
                return self._call(method, path, body, auth=self._authorization(fresh=True))
            except _Unauthorized:
                raise UserError(f"{self.url}: the Personal Access Token was refused") from None

    def _call(self, method: str, path: str, body, *, auth: str | None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if auth:
            request.add_header("Authorization", auth)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                text = response.read()
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")[:300].replace("\n", " ")
            if e.code == 401 and auth is not None:
                raise _Unauthorized() from None
            raise UserError(f"{self.url}{path}: {method} answered HTTP {e.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as e:
            raise UserError(f"{self.url}: cannot reach Label Studio ({getattr(e, 'reason', e)})") from None
        try:
            return json.loads(text) if text else None
        except ValueError:
            raise UserError(f"{self.url}{path}: {method} answered something that is not JSON "
                            f"({text[:80]!r}): is this Label Studio?") from None

    def version(self) -> str:
        return self.request("GET", "/api/version")["release"]

    def projects(self) -> list[dict]:
        found, page = [], 1
        while True:
            answer = self.request("GET", f"/api/projects?page={page}&page_size=100")
            found += answer["results"]
            if not answer.get("next"):
                return found
            page += 1

    def project(self, project: int) -> dict:
        """One project; a missing one is a UserError naming it (not the server's 404 page)."""
        try:
            return self.request("GET", f"/api/projects/{int(project)}")
        except UserError as error:
            if "answered HTTP 404" in str(error):
                raise UserError(f"{self.url}: no project {project}") from None
            raise

    def find_project(self, title: str) -> int | None:
        return next((p["id"] for p in self.projects() if p["title"] == title), None)

    def create_project(self, title: str, config: str, description: str = "") -> int:
        return self.request("POST", "/api/projects", {"title": title, "label_config": config,
                                                       "description": description})["id"]

    def add_local_files(self, project: int, folder: str) -> int:
        """Lets the project's tasks show images from `folder` on the server's disk (under its
        LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT): Label Studio serves a local file only through such a storage."""
        return self.request("POST", "/api/storages/localfiles", {
            "project": project, "path": str(folder), "title": "edgelabels images", "use_blob_urls": False})["id"]

    def local_files(self, project: int) -> list[str]:
        """The folders of the project's local-files storages."""
        return [s["path"] for s in self.request("GET", f"/api/storages/localfiles?project={project}")]

    def import_tasks(self, project: int, tasks: list[dict]) -> int:
        """Adds tasks (with their predictions) to a project; returns how many were added."""
        return self.request("POST", f"/api/projects/{project}/import", tasks)["task_count"]

    def tasks(self, project: int) -> list[dict]:
        """Every task of a project, with its annotations and its predictions in full (the JSON export lists
        predictions by id only)."""
        found, page = [], 1
        while True:
            answer = self.request("GET", f"/api/tasks?project={project}&fields=all&page={page}&page_size=100")
            found += answer["tasks"]
            if not answer["tasks"] or len(found) >= answer["total"]:
                return found
            page += 1

    def export(self, project: int) -> list[dict]:
        """Label Studio's own JSON export of a project (annotations in full, predictions as ids)."""
        return self.request("GET", f"/api/projects/{project}/export?exportType=JSON&download_all_tasks=true")

    def annotate(self, task: int, result: list[dict]) -> int:
        """Submits an annotation as a person in the labelling screen would; returns its id."""
        return self.request("POST", f"/api/tasks/{task}/annotations",
                            {"result": result, "was_cancelled": False, "ground_truth": False})["id"]

    def connect_ml_backend(self, project: int, url: str, title: str = "edgelabels") -> int:
        """Connects a Label Studio ML backend (`edgelabels label backend`) to the project; Label Studio checks its
        /health and /setup before it answers. A backend on a private or loopback address is refused (HTTP 403)
        unless the server runs with ML_BLOCK_LOCAL_IP=false and SSRF_PROTECTION_ENABLED=false (Label Studio adds
        a webhook to the backend, which the second guard checks)."""
        return self.request("POST", "/api/ml", {"project": project, "url": url, "title": title})["id"]

    def retrieve_predictions(self, project: int) -> dict:
        """Asks the project's ML backend for a prediction on every task (the Data Manager's "Retrieve
        Predictions" action; a task that already holds the backend's current model version is skipped)."""
        return self.request("POST", f"/api/dm/actions?id=retrieve_tasks_predictions&project={project}",
                            {"selectedItems": {"all": True, "excluded": []}})


class _Unauthorized(Exception):
    pass
