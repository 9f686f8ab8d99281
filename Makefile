# One command sets up and runs the demo; one sets up and runs the tests (.ci/run calls `make test`).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.edgelabels-installed

.PHONY: setup demo test bench clean label-studio browser

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[train,aws,serve,dev,sm,ray,video]"
	touch $(STAMP)

demo: setup
	$(VENV)/bin/edgelabels demo --out demo-output

test: setup label-studio browser
	$(PY) -m pytest -q

# Label Studio in its own environment (about 1 GB, a minute; the label-audit tests start it on loopback): kept out
# of the edge install and of `make demo`.
label-studio:
	scripts/label-studio-env.sh

# A Chromium for the console's browser tests (Playwright): the system's, Playwright's download, or apt-get as root.
browser: setup
	scripts/browser.sh

clean:
	rm -rf $(VENV) .venv-label-studio demo-output .pytest_cache
