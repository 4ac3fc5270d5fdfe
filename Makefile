# Peel: `make run` starts Peel on its embedded defaults, `make test` runs lint, types and tests.
# Both bootstrap everything they need (uv in .tools/, the locked virtualenv in .venv/) from PyPI.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
UV := .tools/bin/uv
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(shell $(PYTHON) -c 'import sys; print(sys.executable)')
BIN := .venv/bin

.PHONY: setup run test lint types unit unit-fast e2e bench clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet "uv==$(UV_VERSION)"

.venv/.synced: $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen --quiet --compile-bytecode
	@touch $@

setup: .venv/.synced

run: setup
	$(BIN)/python -m bot

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint Dockerfile worker/Dockerfile

types: setup
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest -q

# The suite in two halves: the end-to-end tests mostly wait on their servers, the rest mostly compute.
unit-fast: setup
	$(BIN)/pytest -q --ignore=tests/e2e

e2e: setup
	$(BIN)/pytest -q tests/e2e

# Lint, types and both halves of the suite side by side, each target's output printed whole when it ends.
test: setup
	@$(MAKE) --no-print-directory -j4 --output-sync=target lint types unit-fast e2e

bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf .venv .tools .mypy_cache .ruff_cache .pytest_cache
