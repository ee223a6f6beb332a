# Everything a fresh machine with only Python needs: `make run`, `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev
# Only the folders that exist: examples/ and benchmarks/ may not be there yet.
LINT_PATHS := $(wildcard sprockets_http tests examples benchmarks docs)

.PHONY: run test lint typecheck pytest docs bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The example extension package too: a test discovers its entry point.
EXAMPLE_PACKAGE := examples/extension_package

# Reinstall whenever the dependency list changes.
$(STAMP): pyproject.toml $(EXAMPLE_PACKAGE)/pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]' -e $(EXAMPLE_PACKAGE)
	touch $@

run: $(STAMP)
	$(BIN)/python -m examples.hello

test: lint typecheck pytest docs

# Only the folders that exist yet: ruff fails on a missing path.
LINT_PATHS := $(wildcard sprockets_http tests examples benchmarks docs)

lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

typecheck: $(STAMP)
	$(BIN)/mypy sprockets_http

pytest: $(STAMP)
	rm -f .coverage .coverage.*
	$(BIN)/coverage run -m pytest
	$(BIN)/coverage combine --quiet
	$(BIN)/coverage report

docs: $(STAMP)
	$(BIN)/sphinx-build -W --keep-going -q -b html docs build/docs

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) build .coverage .mypy_cache .pytest_cache .ruff_cache

# --- compat: code written for sprockets.http, run against this project -------
# Its own virtualenv (.venv-compat/) and reports; see compat/run.py.  Suites
# from repository checkouts: make compat COMPAT_ARGS="--postgres-tests DIR"
.PHONY: compat
compat:
	$(PYTHON) compat/run.py $(COMPAT_ARGS)
