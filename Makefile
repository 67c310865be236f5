# Setup and checks. Only python3 and make are needed on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-test

.PHONY: demo test bench bench-table bench-memory lint clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e .
	touch $@

$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

## make demo: run the example graph under the kit and print where to look; SERVE=1 keeps /metrics
## up on 127.0.0.1:9464 (where docs/cli.md reads it) until Ctrl-C, logs in demo-output/app.log.
demo: $(VENV)/.installed
	$(PY) examples/demo.py $(if $(SERVE),--serve,)

## make test: the whole suite, warnings as errors; "no tests ran" fails.
test: $(STAMP)
	$(PY) -m pytest -q

## make bench: benchmarks side by side (not part of make test), BENCH_RUNS runs, then the ratio table.
BENCH_RUNS ?= 3
BENCH_DIR  ?= .benchmarks
BENCH_OPTS ?= --bench-rounds=5 --benchmark-min-time=0.0005 --benchmark-max-time=0.25 \
              --benchmark-warmup=off --benchmark-disable-gc --benchmark-sort=name
bench: $(STAMP)
	rm -f $(BENCH_DIR)/run-*.json
	mkdir -p $(BENCH_DIR)
	for i in $$(seq 1 $(BENCH_RUNS)); do \
	  $(PY) -m pytest -q benchmarks --benchmark-only $(BENCH_OPTS) \
	    --benchmark-json=$(BENCH_DIR)/run-$$i.json > $(BENCH_DIR)/run-$$i.log || exit 1; \
	  echo "bench run $$i of $(BENCH_RUNS) done"; \
	done
	$(PY) benchmarks/ratio_table.py $(BENCH_DIR)/run-*.json

## make bench-table: print the ratio table again from the last make bench.
bench-table: $(STAMP)
	$(PY) benchmarks/ratio_table.py $(BENCH_DIR)/run-*.json

## make bench-memory: 1,000,000 observed calls, a flush, and what tracemalloc says stayed (slow).
bench-memory: $(STAMP)
	$(PY) benchmarks/memory_check.py

lint: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev]'
	$(VENV)/bin/ruff check tinyllm_instrument tests
	$(VENV)/bin/mypy tinyllm_instrument

clean:
	rm -rf $(VENV) build *.egg-info tests/.cache
