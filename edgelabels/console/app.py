"""The console's pages: `create_console_app(ctx, credentials)` -> a Starlette app that service/app.py mounts at
/console (PREFIX).

    GET  /console/?token=T              the start URL: spends the one-time token, sets the session, redirects
    GET  /console/sign-in, POST         with --credentials: an access key id and its secret give a session
    GET  /console/                      the projects, with a create form and a delete button each
    POST /console/projects              CreateProject
    POST /console/projects/NAME/delete  DeleteProject
    GET  /console/projects/NAME         a project's datasets (status, entries) and versions (status, F1)
    GET  /console/static/...            the CSS and JavaScript (no data: served without a session)

Every other request without a valid session is answered 401 with a page that says how to get in, never the data.
The pages call the operations as the JSON API does (checked against botocore's model, then the operation
function), and show an operation's refusal as a message on the page. Handlers are plain functions: Starlette runs
them in its thread pool, as the store's SQLite calls need.
"""

from __future__ import annotations

import urllib.parse
from datetime import datetime, timezone
from pathlib import Path

import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from edgelabels.console.auth import COOKIE, SESSION_S, ConsoleAuth
from edgelabels.service import datasets, projects, versions
from edgelabels.service.arns import ArnError, parse_version_arn
from edgelabels.service.context import ServiceContext
from edgelabels.service.model import check_request

PREFIX = "/console"
HERE = Path(__file__).parent
OPERATIONS = {**projects.OPERATIONS, **datasets.OPERATIONS, **versions.OPERATIONS}
MAX_FORM_BYTES = 64 * 1024
# Nothing from elsewhere, no inline script, no framing by another site.
TEMPLATES = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True)
HEADERS = {"Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; form-action 'self'",
           "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


class Refused(Exception):
    """An operation's refusal (a Rekognition error), shown on the page as its message."""


def call(ctx: ServiceContext, operation: str, params: dict) -> dict:
    """The operation as the JSON API runs it; Refused with its message when it is refused."""
    try:
        check_request(operation, params)
        return OPERATIONS[operation](ctx, params)
    except ArnError as exc:
        raise Refused(str(exc)) from None
    except Exception as exc:
        if isinstance(getattr(exc, "code", None), str):
            raise Refused(f"{exc.code}: {exc}") from None
        raise


def utc(epoch_s: float | None) -> str:
    return "" if epoch_s is None else datetime.fromtimestamp(epoch_s, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def all_pages(ctx: ServiceContext, operation: str, params: dict, key: str) -> list:
    items, token = [], None
    while True:
        answer = call(ctx, operation, {**params, **({"NextToken": token} if token else {})})
        items += answer[key]
        token = answer.get("NextToken")
        if not token:
            return items


def create_console_app(ctx: ServiceContext, credentials: str | None = None) -> Starlette:
    auth = ConsoleAuth(credentials)

    def page(template: str, status: int = 200, **values) -> HTMLResponse:
        html = TEMPLATES.get_template(template).render(prefix=PREFIX, sign_in=auth.keys is not None, **values)
        return HTMLResponse(html, status_code=status, headers=HEADERS)

    def locked_out(reason: str) -> HTMLResponse:
        return page("locked.html", 401, reason=reason)

    def with_session(response: Response, request: Request) -> Response:
        response.set_cookie(COOKIE, auth.new_session(), max_age=SESSION_S, path=PREFIX, httponly=True,
                            samesite="strict", secure=request.url.scheme == "https")
        return response

    def session_of(request: Request) -> str | None:
        return auth.session(request.cookies.get(COOKIE))

    async def form_of(request: Request) -> dict:
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            return {}
        return {k: v[0] for k, v in urllib.parse.parse_qs(body.decode("utf-8", "replace")).items()}

    def projects_page(session: str, message: str = "", status: int = 200) -> HTMLResponse:
        rows = [{"name": p["ProjectArn"].split("/")[1], "arn": p["ProjectArn"], "status": p["Status"],
                 "created": utc(p["CreationTimestamp"])}
                for p in all_pages(ctx, "DescribeProjects", {}, "ProjectDescriptions")]
        return page("projects.html", status, projects=rows, message=message, csrf=auth.csrf_token(session))

    async def home(request: Request) -> Response:
        token = request.query_params.get("token")
        if token is not None:
            if not auth.take_start_token(token):
                return locked_out("That start URL has been used already (it works once) or is not this "
                                  "service's.")
            return with_session(RedirectResponse(f"{PREFIX}/", 303), request)
        session = session_of(request)
        if session is None:
            return locked_out("")
        return await _threaded(projects_page, session)

    async def sign_in(request: Request) -> Response:
        if auth.keys is None:
            return locked_out("Sign-in with an access key needs the service started with --credentials FILE.")
        if request.method == "GET":
            return page("sign_in.html", message="")
        form = await form_of(request)
        if auth.check_key(form.get("key_id", ""), form.get("secret", "")):
            return with_session(RedirectResponse(f"{PREFIX}/", 303), request)
        return page("sign_in.html", 401, message="That access key id and secret are not in the credentials file.")

    async def create(request: Request) -> Response:
        session, form = await _checked_post(request)
        if session is None:
            return form
        name = form.get("name", "").strip()
        try:
            await _threaded(call, ctx, "CreateProject", {"ProjectName": name})
        except Refused as exc:
            return await _threaded(projects_page, session, f"Project {name!r} was not created: {exc}", 400)
        return RedirectResponse(f"{PREFIX}/", 303)

    async def delete(request: Request) -> Response:
        session, form = await _checked_post(request)
        if session is None:
            return form
        name = request.path_params["name"]
        try:
            project = await _threaded(_project, name)
            await _threaded(call, ctx, "DeleteProject", {"ProjectArn": project["ProjectArn"]})
        except Refused as exc:
            return await _threaded(projects_page, session, f"Project {name!r} was not deleted: {exc}", 409)
        return RedirectResponse(f"{PREFIX}/", 303)

    async def project_page(request: Request) -> Response:
        session = session_of(request)
        if session is None:
            return locked_out("")
        name = request.path_params["name"]
        try:
            project = await _threaded(_project, name)
        except Refused as exc:
            return page("message.html", 404, title=name, message=str(exc))
        found_sets = await _threaded(_datasets, project)
        found_versions = await _threaded(_versions, project)
        return page("project.html", name=name, arn=project["ProjectArn"], project_status=project["Status"],
                    created=utc(project["CreationTimestamp"]), datasets=found_sets, versions=found_versions)

    async def _checked_post(request: Request):
        """(session, form), or (None, the refusal) when the session or the form's CSRF token is wrong."""
        session = session_of(request)
        if session is None:
            return None, locked_out("")
        form = await form_of(request)
        if not auth.check_csrf(session, form.get("csrf")):
            return None, page("message.html", 403, title="Refused",
                              message="This form's security token is missing or stale: reload the page and retry.")
        return session, form

    def _project(name: str) -> dict:
        found = call(ctx, "DescribeProjects", {"ProjectNames": [name]})["ProjectDescriptions"] if name else []
        if not found:
            raise Refused(f"no project named {name!r}")
        return found[0]

    def _datasets(project: dict) -> list[dict]:
        rows = []
        for meta in project["Datasets"]:
            stats = call(ctx, "DescribeDataset", {"DatasetArn": meta["DatasetArn"]})["DatasetDescription"]
            rows.append({"type": meta["DatasetType"], "status": meta["Status"], "message": meta["StatusMessage"],
                         "stats": stats.get("DatasetStats", {}), "created": utc(meta["CreationTimestamp"])})
        return rows

    def _versions(project: dict) -> list[dict]:
        found = all_pages(ctx, "DescribeProjectVersions", {"ProjectArn": project["ProjectArn"]},
                          "ProjectVersionDescriptions")
        return [{"name": parse_version_arn(v["ProjectVersionArn"]).version, "status": v["Status"],
                 "message": v["StatusMessage"], "created": utc(v["CreationTimestamp"]),
                 "f1": v.get("EvaluationResult", {}).get("F1Score")} for v in found]

    routes = [Route("/", home, methods=["GET"]),
              Route("/sign-in", sign_in, methods=["GET", "POST"]),
              Route("/projects", create, methods=["POST"]),
              Route("/projects/{name}", project_page, methods=["GET"]),
              Route("/projects/{name}/delete", delete, methods=["POST"]),
              Mount("/static", StaticFiles(directory=HERE / "static"), name="static")]
    app = Starlette(routes=routes)
    app.state.auth = auth
    return app


async def _threaded(function, *args):
    """The store's calls are blocking SQLite: off the event loop."""
    import anyio.to_thread

    return await anyio.to_thread.run_sync(lambda: function(*args))
