"""The console's app: `create_console_app(ctx, credentials)` -> a Starlette app that service/app.py mounts at
/console (PREFIX). This module holds access and the projects pages; each other page module adds its routes
through `routes(console)` (console/kit.py's Console is what they share):

    GET  /console/?token=T              the start URL: spends the one-time token, sets the session, redirects
    GET  /console/sign-in, POST         with --credentials: an access key id and its secret give a session
    GET  /console/                      the projects, with a create form and a delete button each
    POST /console/projects              CreateProject
    POST /console/projects/NAME/delete  DeleteProject
    GET  /console/projects/NAME         a project's datasets (status, entries) and versions (status, F1)
    GET  /console/static/...            the CSS and JavaScript (no data: served without a session)
    console/dataset_pages.py            a dataset's grid, filters, bulk relabel, adding images, the split
    console/image_pages.py              one entry's editor (labels and boxes), the audit's suspects
    console/version_pages.py            training a version and its live progress, start/stop, try a photo
    console/evaluation_pages.py         a version's evaluation: thresholds, confusion, mistakes, review, compare
    console/audit_pages.py              the label audit of a dataset (its suspects) and the review queue -> label loop
    console/loop_pages.py               the review folders sent to Label Studio, and their corrections brought back
    console/thumbnails.py               GET /console/thumbnail?ref=S3URI&size=N, /console/image?ref=S3URI

Every other request without a valid session is answered 401 with a page that says how to get in, never the data.
The pages call the operations as the JSON API does (checked against botocore's model, then the operation
function), and show an operation's refusal as a message on the page.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from edgelabels.console import (audit_pages, dataset_pages, evaluation_pages, image_pages, loop_pages, thumbnails,
                                version_pages)
from edgelabels.console.auth import COOKIE, SESSION_S, ConsoleAuth
from edgelabels.console.kit import HERE, PREFIX, Console, Refused, utc
from edgelabels.service.arns import parse_version_arn
from edgelabels.service.context import ServiceContext

__all__ = ["PREFIX", "create_console_app"]
PAGE_MODULES = (thumbnails, dataset_pages, image_pages, version_pages, evaluation_pages, audit_pages, loop_pages)


def create_console_app(ctx: ServiceContext, credentials: str | None = None) -> Starlette:
    auth = ConsoleAuth(credentials)
    console = Console(ctx, auth)

    def with_session(response: Response, request: Request) -> Response:
        response.set_cookie(COOKIE, auth.new_session(), max_age=SESSION_S, path=PREFIX, httponly=True,
                            samesite="strict", secure=request.url.scheme == "https")
        return response

    def projects_page(session: str, message: str = "", status: int = 200) -> Response:
        rows = [{"name": p["ProjectArn"].split("/")[1], "arn": p["ProjectArn"], "status": p["Status"],
                 "created": utc(p["CreationTimestamp"])}
                for p in console.all_pages("DescribeProjects", {}, "ProjectDescriptions")]
        return console.page("projects.html", status, session, projects=rows, message=message)

    async def home(request: Request) -> Response:
        token = request.query_params.get("token")
        if token is not None:
            if not auth.take_start_token(token):
                return console.locked_out("That start URL has been used already (it works once) or is not this "
                                          "service's.")
            return with_session(RedirectResponse(f"{PREFIX}/", 303), request)
        session = console.session_of(request)
        if session is None:
            return console.locked_out()
        return await console.run(projects_page, session)

    async def sign_in(request: Request) -> Response:
        if auth.keys is None:
            return console.locked_out("Sign-in with an access key needs the service started with --credentials "
                                      "FILE.")
        if request.method == "GET":
            return console.page("sign_in.html", message="")
        form = await console.form(request)
        if auth.check_key(form.get("key_id", ""), form.get("secret", "")):
            return with_session(RedirectResponse(f"{PREFIX}/", 303), request)
        return console.page("sign_in.html", 401,
                            message="That access key id and secret are not in the credentials file.")

    async def create(request: Request) -> Response:
        session, form = await console.post(request)
        if session is None:
            return form
        name = form.get("name", "").strip()
        try:
            await console.run(console.call, "CreateProject", {"ProjectName": name})
        except Refused as exc:
            return await console.run(projects_page, session, f"Project {name!r} was not created: {exc}", 400)
        return RedirectResponse(f"{PREFIX}/", 303)

    async def delete(request: Request) -> Response:
        session, form = await console.post(request)
        if session is None:
            return form
        name = request.path_params["name"]
        try:
            project = await console.run(console.project, name)
            await console.run(console.call, "DeleteProject", {"ProjectArn": project["ProjectArn"]})
        except Refused as exc:
            return await console.run(projects_page, session, f"Project {name!r} was not deleted: {exc}", 409)
        return RedirectResponse(f"{PREFIX}/", 303)

    async def project_page(request: Request) -> Response:
        session = console.session_of(request)
        if session is None:
            return console.locked_out()
        name = request.path_params["name"]
        try:
            project = await console.run(console.project, name)
        except Refused as exc:
            return console.message(name, str(exc), 404)
        found_sets = await console.run(_datasets, project)
        found_versions = await console.run(_versions, project)
        return console.page("project.html", 200, session, name=name, arn=project["ProjectArn"],
                            project_status=project["Status"], created=utc(project["CreationTimestamp"]),
                            datasets=found_sets, versions=found_versions,
                            missing=[t for t in ("TRAIN", "TEST") if t not in {d["type"] for d in found_sets}])

    def _datasets(project: dict) -> list[dict]:
        rows = []
        for meta in project["Datasets"]:
            stats = console.call("DescribeDataset", {"DatasetArn": meta["DatasetArn"]})["DatasetDescription"]
            rows.append({"type": meta["DatasetType"], "kind": meta["DatasetType"].lower(), "status": meta["Status"],
                         "message": meta["StatusMessage"], "stats": stats.get("DatasetStats", {}),
                         "created": utc(meta["CreationTimestamp"])})
        return rows

    def _versions(project: dict) -> list[dict]:
        found = console.all_pages("DescribeProjectVersions", {"ProjectArn": project["ProjectArn"]},
                                  "ProjectVersionDescriptions")
        return [{"name": parse_version_arn(v["ProjectVersionArn"]).version, "status": v["Status"],
                 "message": v["StatusMessage"], "created": utc(v["CreationTimestamp"]),
                 "f1": v.get("EvaluationResult", {}).get("F1Score")} for v in found]

    routes = [Route("/", home, methods=["GET"]),
              Route("/sign-in", sign_in, methods=["GET", "POST"]),
              Route("/projects", create, methods=["POST"]),
              Route("/projects/{name}", project_page, methods=["GET"]),
              Route("/projects/{name}/delete", delete, methods=["POST"])]
    for module in PAGE_MODULES:
        routes += module.routes(console)
    routes.append(Mount("/static", StaticFiles(directory=HERE / "static"), name="static"))
    app = Starlette(routes=routes)
    app.state.auth, app.state.console = auth, console
    return app
