# Peel: `make run` starts Peel on its embedded defaults, `make test` runs lint, types and tests.
# Both bootstrap everything they need (uv in .tools/, the locked virtualenv in .venv/) from PyPI.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
UV := .tools/bin/uv
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(shell $(PYTHON) -c 'import sys; print(sys.executable)')
BIN := .venv/bin

.PHONY: setup run test lint types unit bench clean

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

test: lint types unit

bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf .venv .tools .mypy_cache .ruff_cache .pytest_cache
