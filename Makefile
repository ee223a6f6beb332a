# Everything a fresh machine with only Python needs: `make run`, `make test`.
# PYTHON picks the interpreter of .venv, e.g. `make test PYTHON=python3.12`;
# .venv is made anew when it was made with another Python version.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PYTHON_VERSION := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])')
ifeq ($(PYTHON_VERSION),)
$(error $(PYTHON) does not run; set PYTHON to a Python 3.10 or newer)
endif
VENV_PYTHON := $(VENV)/.python-$(PYTHON_VERSION)
STAMP  := $(VENV)/.installed-dev
# Only the folders that exist: ruff fails on a missing path.
LINT_PATHS := $(wildcard sprockets_http sprockets_http_pytest tests examples benchmarks docs compat noxfile.py)

.PHONY: run test lint typecheck pytest docs dot matrix dist bench clean

$(VENV_PYTHON):
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	touch $@

# The example extension package too: a test discovers its entry point.
EXAMPLE_PACKAGE := examples/extension_package

# Reinstall whenever the dependency list or the interpreter changes.
$(STAMP): pyproject.toml $(EXAMPLE_PACKAGE)/pyproject.toml $(VENV_PYTHON)
	$(BIN)/python -m pip install --quiet --group dev \
		-e '.[mediatype,sentry,metrics,uvloop]' -e $(EXAMPLE_PACKAGE)
	touch $@

run: $(STAMP)
	$(BIN)/python -m examples.hello

test: lint typecheck pytest docs

lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

typecheck: $(STAMP)
	$(BIN)/mypy sprockets_http sprockets_http_pytest examples

pytest: $(STAMP)
	rm -f .coverage .coverage.*
	$(BIN)/coverage run -m pytest
	$(BIN)/coverage combine --quiet
	$(BIN)/coverage report

# $(call apt_install,PACKAGE,WHAT NEEDS IT): a shell block that installs
# Debian's PACKAGE when run as root where apt-get exists, else says what is
# missing and fails.
apt_install = { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
				apt-get install -y -qq $(1) >/dev/null; \
		else \
			echo "$(2): install the $(1) package." >&2; \
			exit 1; \
		fi; }

# The lifecycle diagram is drawn by Graphviz's `dot` (Debian's graphviz).
dot:
	@command -v dot >/dev/null || $(call apt_install,graphviz,The docs need Graphviz's dot)

docs: $(STAMP) dot
	$(BIN)/sphinx-build -W --keep-going -q -b html docs build/docs

# The test suite on every supported Python and on the lowest declared
# versions, the built sdist's own tests, and the documented pytest example
# in bare environments (see noxfile.py; `$(BIN)/nox -l` lists the sessions).
matrix: $(STAMP)
	$(BIN)/nox

# sdist and wheel in dist/, checked as PyPI would show them.
dist: $(STAMP)
	$(BIN)/nox --session dist

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) build dist .nox .coverage .mypy_cache .pytest_cache .ruff_cache

# --- compat: code written for sprockets.http, run against this project -------
# Its own virtualenv (.venv-compat/) and reports; see compat/run.py.  Suites
# from repository checkouts: make compat COMPAT_ARGS="--postgres-tests DIR"
.PHONY: compat postgres
compat: postgres
	$(PYTHON) compat/run.py $(COMPAT_ARGS)

# PostgreSQL's server programs, for the sprockets-postgres suites (Debian's
# postgresql; the suites start a throwaway server of their own).
postgres:
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		$(call apt_install,postgresql,make compat needs PostgreSQL's server programs)
