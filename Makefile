# OMA: `make run` brings the whole app up on embedded defaults; `make test` sets up and runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The venv is rebuilt whenever either lock changes (its stamp is named by both files' checksums).
LOCKS := requirements.txt requirements-dev.txt
STAMP := $(VENV)/.installed-$(shell cat $(LOCKS) | cksum | cut -d' ' -f1)
# `make lock` compiles the .in files for every platform (markers for the rest) against Python 3.11, from PyPI only
# (never a local mirror's files: the hashes must be PyPI's), ignoring any uv.toml on this machine. Pins already in
# the locks stay unless the .in ranges exclude them: LOCK_ARGS=--upgrade moves everything to the newest allowed,
# LOCK_ARGS="--upgrade-package django" one package (README, "Upgrading dependencies").
LOCK_ARGS ?=
UV_COMPILE = $(BIN)/uv --no-config pip compile --quiet --generate-hashes --universal --python-version 3.11 \
	--index-url https://pypi.org/simple --custom-compile-command "make lock" $(LOCK_ARGS)

.PHONY: run test lint typecheck bench venv lock clean

venv: $(STAMP)

$(STAMP): $(LOCKS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-dev.txt
	@rm -f $(VENV)/.installed-*
	@touch $@

# The runtime lock first: the dev lock takes its pins from it (-c requirements.txt in requirements-dev.in).
lock: venv
	$(UV_COMPILE) requirements.in --output-file requirements.txt
	$(UV_COMPILE) requirements-dev.in --output-file requirements-dev.txt

run: venv
	$(BIN)/python -m oma.devrun

# The suite in PYTEST_WORKERS pytest-xdist workers (each its own test database and Redis database: tests/conftest.py);
# PYTEST_ARGS replaces the whole option list, e.g. PYTEST_ARGS="tests/orders" for one package in one process.
# Bytecode is cached even where PYTHONDONTWRITEBYTECODE is set: the suite starts a hundred Python processes (workers,
# web servers, commands), and each would compile every module again (__pycache__ is ignored by git and Docker).
# Six, on 2 CPUs too: many tests wait (for a worker, a server, a lease, a carrier's outage to end), and with four
# the CPUs idled through those waits (the suite 315 s); with six both CPUs stay busy (260 s, vmstat 0-1% idle).
PYTEST_WORKERS ?= 6
PYTEST_ARGS ?= -n $(PYTEST_WORKERS) --dist loadgroup --no-loadscope-reorder

test: venv
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python manage.py makemigrations --check --dry-run

# mypy (with django-stubs) and import-linter alone; `make test` runs both before pytest.
typecheck: venv
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: venv
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var .mypy_cache .import_linter_cache
