"""A Chromium for the console's browser tests, driven by Playwright's sync API.

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)

Playwright's own Chromium when it is installed (`playwright install chromium`, where its download can be reached:
a laptop), else the system's (`apt-get install chromium`, here). No browser at all is a failure that says how to
get one, never a skip: `make browser` gets one.
"""

from __future__ import annotations

import shutil
from pathlib import Path

SYSTEM_CHROMIUMS = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
HOW_TO_GET_ONE = ("no Chromium for the browser tests: run `make browser` (scripts/browser.sh), or "
                  "`.venv/bin/python -m playwright install chromium` where Playwright's download can be reached, or "
                  "`apt-get install chromium` (as root)")


def chromium_path(playwright) -> str | None:
    """None for Playwright's own Chromium, else the system's executable; AssertionError when there is neither."""
    if Path(playwright.chromium.executable_path).exists():
        return None
    for path in SYSTEM_CHROMIUMS:
        if Path(path).exists():
            return path
    for name in ("chromium", "chromium-browser"):  # as scripts/browser.sh looks for one
        if shutil.which(name):
            return shutil.which(name)
    raise AssertionError(HOW_TO_GET_ONE)


def launch_chromium(playwright):
    path = chromium_path(playwright)
    return playwright.chromium.launch(**({"executable_path": path} if path else {}))


def collect_errors(page) -> list[str]:
    """The page's console errors and uncaught exceptions as they happen (a test asserts the list is empty)."""
    errors = []
    page.on("console", lambda m: errors.append(f"{m.text} {m.location}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


def signed_in_page(chromium, port: int, cookie: str):
    """(a page of a new browser context holding the console session `cookie`, the list its errors go to)."""
    from edgelabels.console.auth import COOKIE

    context = chromium.new_context()
    context.add_cookies([{"name": COOKIE, "value": cookie, "url": f"http://127.0.0.1:{port}"}])
    page = context.new_page()
    return page, collect_errors(page)
