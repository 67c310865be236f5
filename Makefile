# Setup and checks. Only python3 and make are needed on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-test

.PHONY: demo test bench lint clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e .
	touch $@

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

## make demo: run the example graph under the kit and print where to look (SERVE=1 keeps serving).
demo: $(VENV)/.installed
	$(PY) examples/demo.py $(if $(SERVE),--serve,)

## make test: the whole suite, warnings as errors; "no tests ran" fails.
test: $(STAMP)
	$(PY) -m pytest -q

## make bench: benchmarks side by side (not part of make test).
bench: $(STAMP)
	$(PY) -m pytest -q benchmarks --benchmark-only

lint: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev]'
	$(VENV)/bin/ruff check tinyllm_instrument tests
	$(VENV)/bin/mypy tinyllm_instrument

clean:
	rm -rf $(VENV) build *.egg-info
