# Two entry points for a fresh machine: `make run` (the main job) and `make test` (all tests).
# Each creates .venv if it is missing and installs what it needs.

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

# Data, wheels and the JAX compilation cache live in the git-ignored .cache/ folder.
export RECEXPLAIN_CACHE ?= $(CURDIR)/.cache/recexplain
export RECEXPLAIN_TEST_CACHE ?= $(CURDIR)/.cache/test-data
export JAX_COMPILATION_CACHE_DIR ?= $(CURDIR)/.cache/jax

.PHONY: run test lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# The workbench on the default data (ML-100K) at the address/port in .streamlit/config.toml
# (127.0.0.1:8501). The first start trains the three variants (progress in the page and here);
# later starts reuse runs/. `recexplain quickstart` does the same on the command line.
run: $(STAMP)
	$(VENV)/bin/streamlit run app.py

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check app.py pages recexplain tests benchmarks
	$(VENV)/bin/ruff format --check app.py pages recexplain tests benchmarks

clean:
	rm -rf $(VENV) .cache .pytest_cache
