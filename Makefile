# tickerproject: `make run` to try it, `make test` to test it, `make lint` before a commit. `make help` lists the rest.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
# Tests and mypy (which loads the settings) run with DEBUG off; this key is for them only.
TEST_ENV := SECRET_KEY=$${SECRET_KEY:-test-only-secret-key-0123456789abcdefghijklmnopqrstuvwxyz} DEBUG=0

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $@

.PHONY: install
install: $(VENV)/.installed ## Create .venv and install the pinned requirements

.PHONY: run
run: install ## Migrate, seed demo data, serve http://127.0.0.1:8000 with the live ticker (embedded mode)
	DEBUG=1 $(PY) manage.py migrate --noinput
	DEBUG=1 $(PY) manage.py seed_demo
	DEBUG=1 $(PY) manage.py runticker --mode auto --serve $(HOST):$(PORT)

.PHONY: test
test: install ## Run the test suite (real PostgreSQL/Redis when DATABASE_URL/REDIS_URL are set)
	@bash scripts/ensure-chromium.sh || echo "chromium not available: browser tests will be skipped"
	$(TEST_ENV) $(PY) -m pytest $(PYTEST_ARGS)

.PHONY: bench
bench: install ## Run the benchmarks (JSON lines); DATABASE_URL=postgres://... for the candle upsert figure
	$(TEST_ENV) $(PY) manage.py migrate --noinput -v0
	$(TEST_ENV) $(PY) -m benchmarks $(BENCH_ARGS)

.PHONY: soak
soak: install ## Soak the full stack (SOAK_SECONDS, default 600)
	$(TEST_ENV) $(PY) -m benchmarks.soak --seconds $${SOAK_SECONDS:-600}

.PHONY: simulator
simulator: install ## Run the Kite simulator on 127.0.0.1:8765
	DEBUG=1 $(PY) manage.py runsimulator --host 127.0.0.1 --port 8765

.PHONY: lint
lint: install ## ruff check, ruff format --check, mypy (strict on core), lint-imports (layer contracts)
	@# Every check runs, so one pass shows every problem; the target fails if any check did.
	@status=0; \
	$(VENV)/bin/ruff check . || status=1; \
	$(VENV)/bin/ruff format --check . || status=1; \
	$(TEST_ENV) $(VENV)/bin/mypy || status=1; \
	$(VENV)/bin/lint-imports || status=1; \
	exit $$status

.PHONY: fmt
fmt: install ## ruff format and autofix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

.PHONY: clean
clean: ## Remove the virtualenv, the SQLite database and caches
	rm -rf $(VENV) db.sqlite3* .pytest_cache .ruff_cache .hypothesis staticfiles
