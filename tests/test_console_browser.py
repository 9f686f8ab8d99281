"""The console in a real Chromium (Playwright) against a real `edgelabels serve --projects DIR` on loopback.

A person's walk through the projects pages: open the start URL printed at start-up, create a project, see it
listed (and boto3 sees it), open it, go back, delete it. No JavaScript error and no console error on any page.
No browser is a failure that says how to get one (helpers/browser.py), never a skip.
"""

from __future__ import annotations

import re

import pytest

from helpers.service import ServiceProcess
from helpers.browser import collect_errors


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    folder = tmp_path_factory.mktemp("console-browser")
    (folder / "s3").mkdir()
    process = ServiceProcess(folder / "dir", "--s3-root", str(folder / "s3"), "--no-access-log")
    yield process
    process.stop()



def start_url(service) -> str:
    found = re.search(r"^  console +(http://\S+)", service.output(), re.MULTILINE)
    assert found, f"no console line in the start-up output:\n{service.output()}"
    return found.group(1)


def test_a_person_creates_opens_and_deletes_a_project_without_a_script_error(service, chromium):
    from playwright.sync_api import expect

    page = chromium.new_page()
    errors = collect_errors(page)
    page.on("dialog", lambda dialog: dialog.accept())  # the delete button asks first

    page.goto(start_url(service))
    assert page.url == f"{service.url}/console/"  # the token is spent and gone from the address bar
    expect(page.get_by_role("heading", name="Projects")).to_be_visible()

    page.get_by_label("New project").fill("walk-through")
    page.get_by_role("button", name="Create project").click()
    link = page.get_by_role("link", name="walk-through")
    expect(link).to_be_visible()
    described = service.client().describe_projects(ProjectNames=["walk-through"])["ProjectDescriptions"]
    assert [d["Status"] for d in described] == ["CREATED"]

    link.click()
    expect(page.get_by_role("heading", name="walk-through")).to_be_visible()
    expect(page.get_by_text("No datasets.")).to_be_visible()
    page.get_by_role("link", name="All projects").click()

    page.get_by_role("row", name=re.compile("walk-through")).get_by_role("button", name="Delete").click()
    expect(page.get_by_text("No projects yet.")).to_be_visible()
    assert service.client().describe_projects()["ProjectDescriptions"] == []
    assert errors == []


def test_the_spent_start_url_in_a_new_browser_gets_the_page_that_says_how_to_get_in(service, chromium):
    context = chromium.new_context()
    page = context.new_page()
    answer = page.goto(start_url(service))
    assert answer.status == 401
    assert "works once" in page.inner_text("main") and "walk-through" not in page.content()
    context.close()


def test_without_any_chromium_the_browser_tests_fail_saying_how_to_get_one(monkeypatch, tmp_path):
    from types import SimpleNamespace

    from helpers import browser

    monkeypatch.setattr(browser, "SYSTEM_CHROMIUMS", (str(tmp_path / "no-chromium"),))
    monkeypatch.setattr(browser.shutil, "which", lambda name: None)
    nothing = SimpleNamespace(chromium=SimpleNamespace(executable_path=str(tmp_path / "no-playwright-chromium")))
    with pytest.raises(AssertionError, match="make browser"):
        browser.chromium_path(nothing)
