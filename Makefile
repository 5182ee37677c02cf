# Every target creates .venv and installs the project when needed; only Python 3.11+, pip and make
# are required on the machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
BENCH_STAMP := $(VENV)/.bench-stamp
# import-linter has a venv of its own: installed beside the project, its CLI's click and rich are
# imported by httpx (which loads its own CLI when they are there) in every script run, 75 ms each.
TOOLS := $(VENV)/tools
TOOLS_STAMP := $(TOOLS)/.installed-stamp
IMPORT_LINTER := import-linter>=2.0,<3
VULTURE := vulture>=2.11,<3
# uv compiles the lock and builds check-min's throwaway venv (it lives in the tools venv too).
UV_SPEC := uv>=0.13,<0.14
UV := $(TOOLS)/bin/uv
# Every dependency of every extra, pinned for every platform: this install (so CI), and the deploy
# files (deploy/install.sh, the Dockerfile) take exactly these versions. After a change to
# pyproject.toml's dependencies: `make lock` (LOCK_ARGS=--upgrade moves every pin to the newest).
LOCK := requirements.lock

.PHONY: test test-fast check check-min lint format types imports deadcode demo bench bench-smoke chaos clean lock

$(STAMP): pyproject.toml $(LOCK)
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed; set PYTHON=python3.11")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --constraint $(LOCK) -e '.[dev,sandbox]'
	touch $(STAMP)

# The suite runs on pytest-xdist workers: most tests wait on subprocesses, so a 2-core machine keeps
# more than two busy. --dist loadgroup keeps the tests of one xdist_group (the shared demo run) on
# one worker. TEST_WORKERS=0 runs everything in this process.
TEST_WORKERS ?= 4
XDIST := -n $(TEST_WORKERS) --dist loadgroup

# The whole suite: CI runs this.
test: $(STAMP)
	$(PY) -m pytest $(XDIST) $(PYTEST_ARGS)

# Everyday work: the unit tests and the quick integration tests (not marked slow).
test-fast: $(STAMP)
	$(PY) -m pytest $(XDIST) -m "not slow" tests/unit tests/integration $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

types: $(STAMP)
	$(VENV)/bin/mypy

$(TOOLS_STAMP): Makefile
	test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet '$(IMPORT_LINTER)' '$(VULTURE)' '$(UV_SPEC)'
	touch $(TOOLS_STAMP)

# The contracts are read from pyproject.toml; the packages are found on PYTHONPATH, not installed.
imports: $(TOOLS_STAMP)
	PYTHONPATH=$(CURDIR) $(TOOLS)/bin/lint-imports

# Code nothing calls (configured in pyproject.toml: what frameworks call by name is listed there).
deadcode: $(TOOLS_STAMP)
	$(TOOLS)/bin/vulture

check: lint types imports deadcode check-min test

lock: $(TOOLS_STAMP)
	$(UV) pip compile pyproject.toml --all-extras --universal --python-version 3.11 --quiet \
		--custom-compile-command 'make lock' --output-file $(LOCK) $(LOCK_ARGS)

# The lowest versions pyproject.toml allows (uv's lowest-direct resolution: each direct dependency at
# its lower bound) in a throwaway venv, then tests that use every dependency: a lower bound that is
# too low fails here, not at an operator's install. About a minute with uv's cache warm.
MIN_TESTS := tests/unit tests/integration/test_cli.py tests/integration/test_schema.py \
	tests/integration/test_seed.py tests/integration/test_notion_uploads.py tests/integration/test_http_listener.py
check-min: $(TOOLS_STAMP)
	@set -e; min=$$(mktemp -d); trap 'rm -rf "$$min"' EXIT; \
	cp $(LOCK) "$$min/lock.txt"; \
	$(UV) pip compile pyproject.toml --all-extras --universal --python-version 3.11 --quiet \
		--custom-compile-command 'make lock' --output-file "$$min/lock.txt"; \
	cmp -s $(LOCK) "$$min/lock.txt" || { echo "check-min: $(LOCK) does not match pyproject.toml; run make lock" >&2; exit 1; }; \
	$(UV) venv --quiet --python $(PYTHON) "$$min/venv"; \
	$(UV) pip compile pyproject.toml --extra dev --extra sandbox --resolution lowest-direct --quiet \
		--python "$$min/venv/bin/python" --output-file "$$min/lowest.txt"; \
	$(UV) pip install --quiet --python "$$min/venv/bin/python" --requirement "$$min/lowest.txt"; \
	$(UV) pip install --quiet --python "$$min/venv/bin/python" --no-deps --editable .; \
	echo "check-min: the lowest versions allowed:"; grep -E '^[a-z]' "$$min/lowest.txt" | tr '\n' ' '; echo; \
	"$$min/venv/bin/python" -m pytest -p no:cacheprovider $(XDIST) -q $(MIN_TESTS)

demo: $(STAMP)
	$(VENV)/bin/nvd demo

# PgQueuer (the claim benchmark's reference) is installed for the benchmarks only.
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet --constraint $(LOCK) -e '.[dev,sandbox,bench]'
	touch $(BENCH_STAMP)

# The harness's own check (--quick sizes, about a minute) runs first: a broken harness fails early.
bench-smoke: $(BENCH_STAMP)
	$(PY) -m pytest benchmarks/test_smoke.py

bench: bench-smoke
	$(PY) -m benchmarks $(BENCH_ARGS)

# 30 kills on each database, then Notion faults and database outages of 10-200 s with the operator
# racing the daemon (PostgreSQL); `make test` runs a short kill run on PostgreSQL.
chaos: $(STAMP)
	$(PY) -m tests.support.chaos_run --kills 30 --database sqlite --write-docs
	$(PY) -m tests.support.chaos_run --kills 30 --database postgres --write-docs
	$(PY) -m tests.support.chaos_outages --write-docs

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
