# One command sets up and runs the demo; one sets up and runs the tests (.ci/run calls `make test`).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.edgelabels-installed

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[train,aws,serve,dev,sm,ray]"
	touch $(STAMP)

demo: setup
	$(VENV)/bin/edgelabels demo --out demo-output

test: setup
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) demo-output .pytest_cache
