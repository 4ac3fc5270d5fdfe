# Peel: `make run` starts Peel on its embedded defaults, `make test` runs lint, types and tests.
# Both bootstrap everything they need (uv in .tools/, the locked virtualenv in .venv/) from PyPI.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
UV := .tools/bin/uv
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(shell $(PYTHON) -c 'import sys; print(sys.executable)')
BIN := .venv/bin

.PHONY: setup run doctor test lint types unit unit-fast e2e-discord e2e-cli e2e-cli-batch e2e-bot e2e-rest bench env-example worker-requirements clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet "uv==$(UV_VERSION)"

.venv/.synced: $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen --quiet --compile-bytecode
	@touch $@

setup: .venv/.synced

run: setup
	$(BIN)/python -m bot

# Check the configuration and every service it names (the embedded ones when unset); non-zero on any ✗.
doctor: setup
	$(BIN)/python -m bot doctor

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint Dockerfile worker/Dockerfile

types: setup
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest -q

# The suite in four parts that together run every test once: the end-to-end tests (three parts of about the same
# length) mostly wait on their servers and subprocesses, the rest mostly computes.
unit-fast: setup
	$(BIN)/pytest -q --ignore=tests/e2e

e2e-discord: setup
	$(BIN)/pytest -q tests/e2e/discord

e2e-cli: setup
	$(BIN)/pytest -q tests/e2e/cli --ignore=tests/e2e/cli/test_batch_cli.py --ignore=tests/e2e/cli/test_relax_cli.py

e2e-cli-batch: setup
	$(BIN)/pytest -q tests/e2e/cli/test_batch_cli.py tests/e2e/cli/test_relax_cli.py

e2e-bot: setup
	$(BIN)/pytest -q tests/e2e/bot

e2e-rest: setup
	$(BIN)/pytest -q tests/e2e --ignore=tests/e2e/discord --ignore=tests/e2e/cli --ignore=tests/e2e/bot

# Lint, types and the four parts of the suite side by side, each target's output printed whole when it ends.
test: setup
	@$(MAKE) --no-print-directory -j8 --output-sync=target lint types unit-fast e2e-discord e2e-cli e2e-cli-batch e2e-bot e2e-rest

bench: setup
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# .env.example is generated from the settings classes (tests/unit/test_env_example.py fails when it is stale).
env-example: setup
	$(BIN)/python scripts/env_example.py

# The worker image's pins: the `worker` dependency group of pyproject.toml as uv.lock resolved it (run after
# `uv lock`; tests/unit/test_worker_image.py fails when the two drift).
worker-requirements: $(UV)
	$(UV) export --frozen --no-hashes --only-group worker --no-emit-project --quiet -o worker/requirements.txt

clean:
	rm -rf .venv .tools .mypy_cache .ruff_cache .pytest_cache
