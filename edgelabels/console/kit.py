"""What every console page module shares: `Console`, built once per app by console/app.py and handed to each page
module's `routes(console) -> [Route]`.

    console.ctx                     the service's ServiceContext (one state with the JSON API)
    console.page(t, status, **v)    a template rendered (prefix, csrf, sign_in and the session are always there)
    await console.session(request)  the session, or None (then answer `console.locked_out()`)
    await console.post(request)     (session, form) of a checked POST form (a multipart one too: a file is a
                                    starlette UploadFile), or (None, the refusal to answer with): session and CSRF
    await console.fetch(request)    (session, JSON body) of a script's POST (fetch() with the X-CSRF-Token header
                                    and a JSON body), or (None, the refusal)
    console.script_session(request) (session, None) of a script's request with another body, or (None, refusal)
    await console.run(f, *args)     f(*args) in the thread pool (the store's SQLite calls block)
    console.call(operation, params) the operation exactly as the JSON API runs it: checked against botocore's model,
                                    then the operation function; Refused(message) when it is refused
    console.all_pages(op, params, key)  every item of a paged List/Describe operation
    console.project(name)           DescribeProjects' description of the project named NAME; Refused if none
    console.dataset(name, kind)     (that project, its dataset of KIND: train|test); console.version(name, v)
                                    (that project, DescribeProjectVersions' description of version V); Refused
    console.json(value, status)     a JSON answer with the console's headers
    project_url(name), dataset_url(name, kind), version_url(name, version)   the pages' addresses, names quoted

A page module never builds responses past these: its templates extend base.html, its scripts are static files
(the Content-Security-Policy allows no inline script and no inline style attribute: data for a script goes in a
`<script type="application/json" id=...>` block via Jinja's `tojson`, or in data-* attributes; shapes are drawn
with SVG attributes or set from a script through element.style).
"""

from __future__ import annotations

import json
import urllib.parse
from datetime import datetime, timezone
from pathlib import Path

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from edgelabels.console.auth import COOKIE, ConsoleAuth
from edgelabels.service import datasets, projects, versions
from edgelabels.service.arns import ArnError
from edgelabels.service.context import ServiceContext
from edgelabels.service.model import check_request

PREFIX = "/console"
HERE = Path(__file__).parent
OPERATIONS = {**projects.OPERATIONS, **datasets.OPERATIONS, **versions.OPERATIONS}
MAX_FORM_BYTES = 64 * 1024
MAX_UPLOAD_BYTES = 64 * 1024 * 1024  # a multipart form of images (each image is checked on its own)
CSRF_HEADER = "X-CSRF-Token"
TEMPLATES = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True)
# Nothing from elsewhere, no inline script, no framing by another site.
HEADERS = {"Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; frame-ancestors 'none'; "
                                      "form-action 'self'",
           "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


KINDS = ("train", "test")  # a dataset's DatasetType, lower-cased, as the console's URLs name it


def dataset_of(project: dict, kind: str) -> dict | None:
    """The project's dataset of KIND (train / test) as DescribeProjects lists it, or None."""
    return next((d for d in project["Datasets"] if d["DatasetType"] == kind.upper()), None)


def project_url(name: str) -> str:
    return f"{PREFIX}/projects/{urllib.parse.quote(name, safe='')}"


def dataset_url(name: str, kind: str) -> str:
    return f"{project_url(name)}/datasets/{kind}"


def version_url(name: str, version: str) -> str:
    return f"{project_url(name)}/versions/{urllib.parse.quote(version, safe='')}"


class Refused(Exception):
    """An operation's refusal (a Rekognition error), shown on the page as its message."""


def utc(epoch_s: float | None) -> str:
    return "" if epoch_s is None else datetime.fromtimestamp(epoch_s, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


class Console:
    def __init__(self, ctx: ServiceContext, auth: ConsoleAuth):
        self.ctx, self.auth = ctx, auth

    # --- answers -------------------------------------------------------------------------------------------------
    def page(self, template: str, status: int = 200, session: str | None = None, **values) -> HTMLResponse:
        html = TEMPLATES.get_template(template).render(
            prefix=PREFIX, sign_in=self.auth.keys is not None, csrf=self.auth.csrf_token(session) if session else "",
            **values)
        return HTMLResponse(html, status_code=status, headers=HEADERS)

    def locked_out(self, reason: str = "") -> HTMLResponse:
        return self.page("locked.html", 401, reason=reason)

    def message(self, title: str, message: str, status: int) -> HTMLResponse:
        return self.page("message.html", status, title=title, message=message)

    def json(self, value, status: int = 200) -> Response:
        return Response(json.dumps(value), status_code=status, media_type="application/json", headers=HEADERS)

    # --- who is asking -------------------------------------------------------------------------------------------
    def session_of(self, request: Request) -> str | None:
        return self.auth.session(request.cookies.get(COOKIE))

    async def session(self, request: Request) -> str | None:
        return self.session_of(request)

    async def form(self, request: Request) -> dict:
        """A urlencoded form as {name: value}, or a multipart one as starlette's FormData (files as UploadFile)."""
        kind = request.headers.get("content-type", "")
        if kind.startswith("multipart/form-data"):
            if int(request.headers.get("content-length") or 0) > MAX_UPLOAD_BYTES:
                return {}
            return await request.form(max_files=10_000, max_fields=10_000)
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            return {}
        return {k: v[0] for k, v in urllib.parse.parse_qs(body.decode("utf-8", "replace")).items()}

    async def post(self, request: Request):
        """(session, form), or (None, the refusal) when the session or the form's CSRF token is wrong."""
        session = self.session_of(request)
        if session is None:
            return None, self.locked_out()
        if int(request.headers.get("content-length") or 0) > MAX_UPLOAD_BYTES:
            return None, self.message("Too large", "The upload is larger than 64 MiB: send fewer images at a time.",
                                      413)
        form = await self.form(request)
        if not self.auth.check_csrf(session, form.get("csrf")):
            return None, self.message("Refused", "This form's security token is missing or stale: reload the page "
                                                 "and retry.", 403)
        return session, form

    def script_session(self, request: Request):
        """(session, None) for a script's request with its session and X-CSRF-Token, else (None, the JSON
        refusal)."""
        session = self.session_of(request)
        if session is None:
            return None, self.json({"message": "Not signed in: open the console's start URL again."}, 401)
        if not self.auth.check_csrf(session, request.headers.get(CSRF_HEADER)):
            return None, self.json({"message": "Security token missing or stale: reload the page."}, 403)
        return session, None

    async def fetch(self, request: Request):
        """(session, the JSON body) of a script's request, or (None, the refusal as JSON {"message"})."""
        session, refusal = self.script_session(request)
        if session is None:
            return None, refusal
        body = await request.body()
        if len(body) > MAX_UPLOAD_BYTES:
            return None, self.json({"message": "Request too large."}, 413)
        try:
            value = json.loads(body) if body else {}
        except ValueError:
            return None, self.json({"message": "The request is not JSON."}, 400)
        return session, value

    # --- the service's operations ---------------------------------------------------------------------------------
    def call(self, operation: str, params: dict) -> dict:
        """The operation as the JSON API runs it; Refused with its message when it is refused."""
        try:
            check_request(operation, params)
            return OPERATIONS[operation](self.ctx, params)
        except ArnError as exc:
            raise Refused(str(exc)) from None
        except Exception as exc:
            if isinstance(getattr(exc, "code", None), str):
                raise Refused(f"{exc.code}: {exc}") from None
            raise

    def all_pages(self, operation: str, params: dict, key: str) -> list:
        items, token = [], None
        while True:
            answer = self.call(operation, {**params, **({"NextToken": token} if token else {})})
            items += answer[key]
            token = answer.get("NextToken")
            if not token:
                return items

    def project(self, name: str) -> dict:
        found = self.call("DescribeProjects", {"ProjectNames": [name]})["ProjectDescriptions"] if name else []
        if not found:
            raise Refused(f"no project named {name!r}")
        return found[0]

    def dataset(self, name: str, kind: str) -> tuple[dict, dict]:
        """(project NAME's description, its dataset of KIND as DescribeProjects lists it); Refused when there is
        no such kind, project or dataset."""
        if kind not in KINDS:
            raise Refused(f"no dataset type {kind!r}: train or test")
        project = self.project(name)
        found = dataset_of(project, kind)
        if found is None:
            raise Refused(f"project {name!r} has no {kind} dataset")
        return project, found

    def version(self, name: str, version: str) -> tuple[dict, dict]:
        """(project NAME's description, DescribeProjectVersions' description of its VERSION); Refused if none."""
        project = self.project(name)
        found = self.call("DescribeProjectVersions", {"ProjectArn": project["ProjectArn"],
                                                      "VersionNames": [version]})["ProjectVersionDescriptions"]
        if not found:
            raise Refused(f"project {name!r} has no version named {version!r}")
        return project, found[0]

    @staticmethod
    async def run(function, *args):
        """The store's calls are blocking SQLite: off the event loop."""
        import anyio.to_thread

        return await anyio.to_thread.run_sync(lambda: function(*args))
