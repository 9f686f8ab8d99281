"""The console: the local Rekognition service in a browser, mounted at /console by `edgelabels serve --projects DIR`.

Decision: server-rendered HTML from Jinja2 templates shipped in this package (console/templates/), with a little
vanilla JavaScript and CSS shipped as package files (console/static/); no front-end build step and nothing fetched
from the internet. Why: the service must run on a machine with no network and no Node toolchain, a page that is
HTML from the server needs neither, and the pages are tested with the same Starlette TestClient as the JSON API
(plus a real Chromium for what only a browser shows).

Every page reads and changes state through the operation functions the JSON API dispatches to (service.projects,
service.datasets, service.versions, each request checked against botocore's model first), so the browser, boto3
and the CLI see one state.

Access (console/auth.py): a one-time token in the start URL printed at start-up, or, with --credentials, an access
key id and its secret from that file; either gives a signed session cookie. POST forms carry a CSRF token tied to
the session.
"""
