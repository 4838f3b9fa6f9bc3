# One virtual environment (.venv), made once and reused; every target below depends on it.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
TEST_WORKERS ?= 2

.PHONY: setup quickstart test test-fast bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

quickstart: $(STAMP)
	OMP_NUM_THREADS=1 bash scripts/quickstart.sh

# Two pytest-xdist workers: all Ray test files run one after another on one of them while the other
# runs the rest (tests/conftest.py); TEST_WORKERS=0 runs everything in one process.
test: $(STAMP)
	OMP_NUM_THREADS=1 RAY_USAGE_STATS_ENABLED=0 $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# The suite without the slow and the Ray tests (a few minutes): for quick checks while editing.
test-fast: $(STAMP)
	OMP_NUM_THREADS=1 RAY_USAGE_STATS_ENABLED=0 $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not slow and not ray" $(PYTEST_ARGS)

bench: $(STAMP)
	OMP_NUM_THREADS=1 bash bench/run_all.sh

clean:
	rm -rf $(VENV) build *.egg-info
