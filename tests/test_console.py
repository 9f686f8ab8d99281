"""The console's pages over the service's app (issue 29): access, the projects pages, one state with the JSON API.

The app runs in this process under uvicorn on a free loopback port (starlette's TestClient needs httpx, which is
no dependency); the JSON API is called through boto3, signed with the --credentials key, on the same port."""

from __future__ import annotations

import http.client
import re
import threading
import time
import urllib.parse

import pytest

from edgelabels.console.auth import COOKIE
from edgelabels.service.app import create_service_app

from helpers.server import free_port
from helpers.service_ops import make_context

KEY, SECRET = "AKIDCONSOLE", "console-secret"


class Page:
    """A client of the console with its own cookie: `get(path)` / `post(path, form)` -> (status, headers, text);
    redirects are not followed."""

    def __init__(self, port: int):
        self.port, self.cookie = port, None

    def request(self, method: str, path: str, form: dict | None = None, cookie: str | None = None):
        headers = {}
        if self.cookie or cookie:
            headers["Cookie"] = f"{COOKIE}={cookie or self.cookie}"
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers)
            answer = connection.getresponse()
            text = answer.read().decode()
            set_cookie = answer.getheader("Set-Cookie") or ""
            if set_cookie.startswith(f"{COOKIE}="):
                self.cookie = set_cookie.split(";")[0].split("=", 1)[1]
            return answer.status, answer, text
        finally:
            connection.close()

    def get(self, path: str, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path: str, form: dict):
        return self.request("POST", path, form)


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    import boto3
    import uvicorn

    root = tmp_path_factory.mktemp("console")
    credentials = root / "credentials"
    credentials.write_text(f"[default]\naws_access_key_id = {KEY}\naws_secret_access_key = {SECRET}\n")
    ctx = make_context(root)
    app = create_service_app(ctx, credentials=str(credentials))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    app.port = port
    app.rekognition = boto3.session.Session().client(
        "rekognition", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1", aws_access_key_id=KEY,
        aws_secret_access_key=SECRET)
    yield app
    server.should_exit = True
    thread.join(10)
    ctx.close()


def signed_in(app) -> Page:
    page = Page(app.port)
    status, _, _ = page.post("/console/sign-in", {"key_id": KEY, "secret": SECRET})
    assert status == 303 and page.cookie
    return page


def csrf_of(page: Page) -> str:
    status, _, text = page.get("/console/")
    assert status == 200
    return re.search(r'name="csrf" value="([^"]+)"', text).group(1)


def api_names(app) -> list[str]:
    return [p["ProjectArn"].split("/")[1] for p in app.rekognition.describe_projects()["ProjectDescriptions"]]


def test_without_a_session_every_page_is_401_and_shows_no_data(service):
    service.rekognition.create_project(ProjectName="secret-project")
    page = Page(service.port)
    for path in ("/console/", "/console/projects/secret-project"):
        status, _, text = page.get(path)
        assert status == 401
        assert "secret-project" not in text and "start URL" in text
    status, _, _ = page.post("/console/projects", {"name": "sneaked-in", "csrf": "x"})
    assert status == 401 and "sneaked-in" not in api_names(service)
    assert page.get("/console/", cookie="forged.123.abcdef")[0] == 401


def test_the_start_token_works_once_and_sets_an_httponly_strict_cookie(service):
    start_path = service.state.console.state.auth.start_path
    first = Page(service.port)
    status, answer, _ = first.get(start_path)
    assert (status, answer.getheader("Location")) == (303, "/console/")
    cookie = answer.getheader("Set-Cookie")
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Path=/console" in cookie
    assert first.get("/console/")[0] == 200
    second = Page(service.port)
    assert second.get(start_path)[0] == 401 and second.cookie is None
    assert second.get("/console/")[0] == 401


def test_sign_in_with_the_credentials_file_key_and_not_with_a_wrong_secret_or_key(service):
    page = Page(service.port)
    assert page.post("/console/sign-in", {"key_id": KEY, "secret": "not-it"})[0] == 401
    assert page.post("/console/sign-in", {"key_id": "AKIDNOBODY", "secret": SECRET})[0] == 401
    assert page.cookie is None and page.get("/console/")[0] == 401
    assert signed_in(service).get("/console/")[0] == 200


def test_a_project_created_in_the_page_is_in_describe_projects_and_deleted_there_too(service):
    page = signed_in(service)
    csrf = csrf_of(page)
    status, answer, _ = page.post("/console/projects", {"name": "from-page", "csrf": csrf})
    assert (status, answer.getheader("Location")) == (303, "/console/")
    assert ">from-page</a>" in page.get("/console/")[2]
    assert "from-page" in api_names(service)
    assert page.post("/console/projects/from-page/delete", {"csrf": csrf})[0] == 303
    assert "from-page" not in api_names(service)
    assert ">from-page</a>" not in page.get("/console/")[2]


def test_a_project_created_through_boto3_shows_in_the_page_and_deleting_it_there_empties_boto3s(service):
    arn = service.rekognition.create_project(ProjectName="from-api")["ProjectArn"]
    page = signed_in(service)
    assert ">from-api</a>" in page.get("/console/")[2]
    status, _, text = page.get("/console/projects/from-api")
    assert status == 200 and arn in text and "No datasets." in text and "No versions." in text
    page.post("/console/projects/from-api/delete", {"csrf": csrf_of(page)})
    assert service.rekognition.describe_projects(ProjectNames=["from-api"])["ProjectDescriptions"] == []


def test_a_refused_operation_is_a_message_on_the_page_not_a_traceback(service):
    service.rekognition.create_project(ProjectName="taken")
    page = signed_in(service)
    status, _, text = page.post("/console/projects", {"name": "taken", "csrf": csrf_of(page)})
    assert status == 400
    assert "ResourceInUseException" in text and "already exists" in text and "Traceback" not in text


def test_a_project_with_a_dataset_cannot_be_deleted_and_the_page_says_why(service):
    arn = service.rekognition.create_project(ProjectName="with-data")["ProjectArn"]
    service.rekognition.create_dataset(ProjectArn=arn, DatasetType="TRAIN")
    page = signed_in(service)
    status, _, text = page.post("/console/projects/with-data/delete", {"csrf": csrf_of(page)})
    assert status == 409 and "was not deleted" in text and "with-data" in api_names(service)


def test_a_project_page_lists_its_datasets_with_their_entry_counts(service):
    arn = service.rekognition.create_project(ProjectName="counted")["ProjectArn"]
    service.rekognition.create_dataset(ProjectArn=arn, DatasetType="TEST")
    _, _, text = signed_in(service).get("/console/projects/counted")
    row, = re.findall(r"<tr><td><a [^>]*>(TEST)</a></td><td><span[^>]*>([A-Z_]+)</span></td>\s*<td>(\d+)</td>", text)
    assert row[0] == "TEST" and row[2] == "0"  # an empty dataset: no entries yet


def test_a_script_as_a_project_name_is_shown_as_text(service):
    page = signed_in(service)
    name = "<script>alert(1)</script>"
    status, _, text = page.post("/console/projects", {"name": name, "csrf": csrf_of(page)})
    assert status == 400  # not a valid name: refused, and the message repeats it
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "<script>alert" not in text
    # A name in the URL is echoed by the not-found page (a slash would end the path: this one has none).
    status, _, text = page.get("/console/projects/%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E")
    assert status == 404 and "&lt;img src=x onerror=alert(1)&gt;" in text and "<img" not in text


def test_a_form_without_its_csrf_token_or_with_another_sessions_is_refused(service):
    page = signed_in(service)
    other_csrf = csrf_of(signed_in(service))
    assert page.post("/console/projects", {"name": "no-csrf"})[0] == 403
    assert page.post("/console/projects", {"name": "other-csrf", "csrf": other_csrf})[0] == 403
    assert not {"no-csrf", "other-csrf"} & set(api_names(service))


def test_a_trained_versions_f1_shows_with_three_decimals_and_an_untrained_ones_is_blank():
    from edgelabels.console.kit import TEMPLATES

    versions = [{"name": "v2", "status": "TRAINING_COMPLETED", "message": "", "created": "", "f1": 0.25},
                {"name": "v1", "status": "TRAINING_FAILED", "message": "", "created": "", "f1": None}]
    html = TEMPLATES.get_template("project.html").render(prefix="/console", name="p", arn="a", project_status="",
                                                          created="", datasets=[], versions=versions)
    cells = re.findall(r"<tr><td><a [^>]*>(v\d)</a></td><td><span[^>]*>[A-Z_]+</span></td>\s*<td>([^<]*)</td>", html)
    assert cells == [("v2", "0.250"), ("v1", "")]


def test_a_version_created_through_boto3_shows_in_the_project_page_with_its_status(service):
    from helpers.service_ops import write_bucket

    write_bucket(service.state.ctx.s3.root, "colours", per_label=3, test_per_label=2)
    api = service.rekognition
    arn = api.create_project(ProjectName="api-version")["ProjectArn"]
    for kind in ("train", "test"):
        api.create_dataset(ProjectArn=arn, DatasetType=kind.upper(), DatasetSource={"GroundTruthManifest": {
            "S3Object": {"Bucket": "colours", "Name": f"{kind}.manifest"}}})
    deadline = time.monotonic() + 30
    while any(d["Status"] != "CREATE_COMPLETE" for d in
              api.describe_projects(ProjectNames=["api-version"])["ProjectDescriptions"][0]["Datasets"]):
        assert time.monotonic() < deadline, "the datasets were not created within 30 s"
        time.sleep(0.1)
    api.create_project_version(ProjectArn=arn, VersionName="from-boto3",
                               OutputConfig={"S3Bucket": "results", "S3KeyPrefix": "api-version"})
    # No trainer runs in this module's app (lifespan off): the version waits in the queue, as boto3 sees it.
    status = api.describe_project_versions(ProjectArn=arn)["ProjectVersionDescriptions"][0]["Status"]
    _, _, text = signed_in(service).get("/console/projects/api-version")
    row = re.search(r">from-boto3</a></td><td><span[^>]*>([A-Z_]+)</span>", text)
    assert row and row.group(1) == status == "TRAINING_IN_PROGRESS"


def test_every_console_route_but_the_static_files_refuses_a_request_without_a_session(service):
    """Each page module's routes, found from the app itself (a route added later is covered too): GET and POST
    without a session cookie, and with a forged one, are 401 (or 405 for a method the route lacks), never data."""
    from starlette.routing import Route

    api = service.rekognition
    api.create_project(ProjectName="guarded")
    values = {"name": "guarded", "kind": "train", "version": "v1", "folder": "x", "path": "console.css"}
    routes = [r for r in service.state.console.routes if isinstance(r, Route)]
    assert len(routes) >= 20  # projects, datasets, editor, versions, evaluation, audit, label loop
    methods = {}
    for route in routes:  # one path may have a route per method
        methods.setdefault(route.path, set()).update(route.methods)
    page = Page(service.port)
    for route in routes:
        path = "/console" + re.sub(r"\{(\w+)(:\w+)?\}", lambda m: values[m.group(1)], route.path)
        for method in ("GET", "POST"):
            for cookie in (None, "forged.123.abcdef"):
                status, _, text = page.request(method, path + "?ref=s3://colours/train/red-00.png",
                                               form={} if method == "POST" else None, cookie=cookie)
                allowed = method in methods[route.path]
                if route.path == "/sign-in":  # the sign-in form itself is public; signing in with nothing is not
                    assert status == (200 if method == "GET" else 401), f"{method} {path}: {status}"
                else:
                    assert status == (401 if allowed else 405), f"{method} {path}: {status}"
                assert "guarded" not in text and "colours" not in text, f"{method} {path} shows data"
