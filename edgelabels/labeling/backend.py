"""`edgelabels label backend EXPORT_DIR`: an exported model's suggestions inside Label Studio, as an ML backend.

The protocol is Label Studio's (label_studio/ml/api_connector.py, and HumanSignal/label-studio-ml-backend's
server): GET /health (and GET /) -> {"status": "UP"}; POST /setup {"project", "schema", "hostname",
"access_token", ...} -> {"model_version"}; POST /predict {"tasks": [...], "label_config", "project", "params"} ->
{"results": [{"result": [...], "score", "model_version"}, ...], "model_version"}, one entry per task in the
tasks' order (Label Studio pairs them by position). A classifier answers a choice (its top label, scored by its
probability); a detector answers rectangles (percent of the image, each scored). The project's own tag names are
read from its labelling config, so a project made by hand works as well as one made by `label export`.

Images: a task's image is a Label Studio URL. A local-files URL (/data/local-files/?d=PATH) is read from disk
under the document root (--document-root or LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT, as the server has it; the
path may not leave it); an http(s) URL is downloaded; a path on the Label Studio server (an upload) is downloaded
from the hostname /setup gave, with the token it gave. Inference is the edge runtime (onnxruntime, no
TensorFlow), the same answers `edgelabels predict` gives.

Label Studio 1.23 refuses a backend on a loopback or private address (its SSRF guards) unless it runs with
ML_BLOCK_LOCAL_IP=false and SSRF_PROTECTION_ENABLED=false; on connecting it also adds a webhook to the backend's
/webhook, which this backend acknowledges and ignores (it trains nothing).
"""

from __future__ import annotations

import urllib.parse
import urllib.request
from pathlib import Path
from xml.etree import ElementTree

import numpy as np

from edgelabels.data.images import read_image
from edgelabels.data.paths import Outside, inside
from edgelabels.errors import UserError

LOCAL_FILES = "/data/local-files/"
MAX_IMAGE_BYTES = 64 * 1024 * 1024  # larger than any photo a person labels; a bound on a bad URL's answer
FETCH_TIMEOUT_S = 30


class Tags:
    """Where our answer goes in a project's labelling config: the image's data key, and the names of its
    Choices and RectangleLabels tags (either may be missing)."""

    def __init__(self, config: str):
        try:
            root = ElementTree.fromstring(config)
        except ElementTree.ParseError as error:
            raise UserError(f"label_config is not XML ({error})") from None
        image = next((e for e in root.iter() if e.tag == "Image"), None)
        if image is None or not image.get("value", "").startswith("$"):
            raise UserError("label_config has no <Image value=\"$KEY\"> to predict on")
        self.image, self.key = image.get("name"), image.get("value")[1:]
        self.choices = next((e.get("name") for e in root.iter() if e.tag == "Choices"), None)
        self.rectangles = next((e.get("name") for e in root.iter() if e.tag == "RectangleLabels"), None)


class Backend:
    """One export, answering Label Studio's tasks."""

    def __init__(self, export_dir, document_root=None, threads: int | None = None):
        from edgelabels.runtime.answers import open_edge_model

        self.model = open_edge_model(export_dir, threads=threads)
        self.document_root = Path(document_root) if document_root else None
        self.model_version = f"edgelabels {Path(export_dir).resolve().parent.name}"
        self.hostname, self.access_token = "", ""

    def setup(self, body: dict) -> dict:
        self.hostname = (body.get("hostname") or "").rstrip("/")
        self.access_token = body.get("access_token") or ""
        return {"model_version": self.model_version}

    def predict(self, body: dict) -> dict:
        tags = Tags(body.get("label_config") or "")
        results = []
        for task in body.get("tasks") or []:
            try:
                url = (task.get("data") or {}).get(tags.key)
                if not isinstance(url, str):
                    raise UserError(f"task {task.get('id')}: no image URL in data.{tags.key}")
                image, _notes = read_image(self.image_bytes(url), name=url)
            except UserError as error:  # one unreadable image leaves its task without a suggestion
                results.append({"result": [], "score": 0.0, "model_version": self.model_version,
                                "error": str(error)})
                continue
            result, score = self.answer(image, tags)
            results.append({"result": result, "score": score, "model_version": self.model_version})
        return {"results": results, "model_version": self.model_version}

    def answer(self, image, tags: Tags) -> tuple[list[dict], float]:
        """One image -> (Label Studio result, its score)."""
        if not self.model.answers_boxes:
            probabilities = self.model.run_many([self.model.prepare(image)])[0]
            if not np.any(probabilities) or tags.choices is None:  # a stage found nothing: no suggestion
                return [], 0.0
            top = int(np.argmax(probabilities))
            return [{"from_name": tags.choices, "to_name": tags.image, "type": "choices",
                     "value": {"choices": [self.model.labels[top]]}}], float(probabilities[top])
        found = self.model.detect(image)["CustomLabels"] if tags.rectangles else []
        width, height = image.size
        result = [{"from_name": tags.rectangles, "to_name": tags.image, "type": "rectanglelabels",
                   "original_width": width, "original_height": height, "image_rotation": 0,
                   "score": label["Confidence"] / 100.0,
                   "value": {"x": 100.0 * box["Left"], "y": 100.0 * box["Top"], "width": 100.0 * box["Width"],
                             "height": 100.0 * box["Height"], "rotation": 0, "rectanglelabels": [label["Name"]]}}
                  for label in found for box in [label["Geometry"]["BoundingBox"]]]
        return result, (min(r["score"] for r in result) if result else 0.0)

    def image_bytes(self, url: str) -> bytes:
        parsed = urllib.parse.urlparse(url)
        if parsed.path == LOCAL_FILES and self.document_root is not None:
            name = urllib.parse.parse_qs(parsed.query).get("d", [""])[0]
            try:
                return inside(self.document_root, name.lstrip("/")).read_bytes()
            except Outside:
                raise UserError(f"{url}: leads outside the document root {self.document_root}") from None
            except OSError as error:
                raise UserError(f"{url}: cannot read {self.document_root / name} ({error.strerror})") from None
        if parsed.path == LOCAL_FILES:
            raise UserError(f"{url}: a local-files URL needs --document-root (Label Studio's "
                            "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT)")
        headers = {}
        if not parsed.scheme:  # a file on the Label Studio server itself (an upload)
            url, headers = self.hostname + url, {"Authorization": f"Token {self.access_token}"}
        if not url.startswith(("http://", "https://")):
            raise UserError(f"{url}: not an image URL this backend can read")
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=FETCH_TIMEOUT_S) as r:
                data = r.read(MAX_IMAGE_BYTES + 1)
        except OSError as error:
            raise UserError(f"{url}: cannot download ({getattr(error, 'reason', error)})") from None
        if len(data) > MAX_IMAGE_BYTES:
            raise UserError(f"{url}: more than {MAX_IMAGE_BYTES} bytes")
        return data


def create_app(backend: Backend):
    """The Starlette app for one Backend (the project's HTTP stack, as `serve` uses)."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "UP", "model_version": backend.model_version})

    def posted(handler):
        async def endpoint(request: Request) -> JSONResponse:
            try:
                body = await request.json()
            except ValueError:
                return JSONResponse({"error": "the body is not JSON"}, status_code=400)
            if not isinstance(body, dict):
                return JSONResponse({"error": "the body is not a JSON object"}, status_code=400)
            try:  # inference holds the CPU: off the event loop, so /health answers meanwhile
                return JSONResponse(await run_in_threadpool(handler, body))
            except UserError as error:
                return JSONResponse({"error": str(error)}, status_code=400)
        return endpoint

    return Starlette(routes=[
        Route("/", health, methods=["GET"]), Route("/health", health, methods=["GET"]),
        Route("/setup", posted(backend.setup), methods=["POST"]),
        Route("/predict", posted(backend.predict), methods=["POST"]),
        # Label Studio posts project events here when webhooks are on; nothing is trained from them
        Route("/webhook", posted(lambda body: {}), methods=["POST"])])


def serve(export_dir, *, host: str = "127.0.0.1", port: int = 9090, document_root=None) -> None:
    import uvicorn

    backend = Backend(export_dir, document_root)
    print(f"Label Studio ML backend ({backend.model_version}) on http://{host}:{port}: add it in a project's "
          "Settings > Model", flush=True)
    uvicorn.run(create_app(backend), host=host, port=port, log_level="warning")
