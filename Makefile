# Everything a developer or CI needs; see README.md.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TEST_DATABASE_URL ?= postgresql+psycopg2://notify:notify@127.0.0.1:5432/notify_test
PYTEST_ARGS ?=

.PHONY: help install services services-stop services-status db test test-unit lint typecheck format run clean security security-quick

help:
	@echo "make run              start the service stack and the pipeline (Ctrl-C stops the processes)"
	@echo "make test             install, start the service stack, migrate a test database, run pytest"
	@echo "make test-unit        the pure tests only (no services)"
	@echo "make install          the virtualenv in .venv with the app, test and dev extras"
	@echo "make services         install (if missing) and start PostgreSQL, RabbitMQ, Kafka and a Schema Registry on 127.0.0.1"
	@echo "make services-stop    stop them"
	@echo "make services-status  what runs and where it listens"
	@echo "make db               migrate the database, load templates, create topics, register schemas, seed the schedule"
	@echo "make lint             ruff check and ruff format --check"
	@echo "make typecheck        mypy over app/ (strict) and tests/, harness/, bench/ (strict but for annotations)"
	@echo "make format           ruff format and the fixable ruff checks"
	@echo "make clean            remove .venv and the caches"
	@echo "make security         bandit, schemathesis and wapiti against the code and a scratch portal (docs/security.md)"
	@echo "make security-quick   bandit and a short schemathesis run (CI runs it)"

# The local stack runs on placeholder secrets, which the service refuses outside DEV_MODE.
run db test test-unit: export DEV_MODE ?= true

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install --quiet -e '.[test,dev]'
	touch $@

# The portal's browser libraries (Chart.js), from npm, served by the portal itself.
ASSETS := app/portal/assets
# The files the portal serves are copied to vendor/, which the package (and so a wheel) carries.
$(ASSETS)/node_modules/.installed: $(ASSETS)/package.json $(ASSETS)/package-lock.json
	npm ci --prefix $(ASSETS) --no-audit --no-fund --loglevel=error
	mkdir -p $(ASSETS)/vendor
	cp $(ASSETS)/node_modules/chart.js/dist/chart.umd.min.js $(ASSETS)/vendor/
	cp $(ASSETS)/node_modules/chart.js/LICENSE.md $(ASSETS)/vendor/chart.js.LICENSE.md
	touch $@

install: $(VENV)/.installed $(ASSETS)/node_modules/.installed

services:
	bash scripts/services.sh start

services-stop:
	bash scripts/services.sh stop

services-status:
	bash scripts/services.sh status

db: install services
	$(BIN)/notify db upgrade
	$(BIN)/notify templates load
	$(BIN)/notify topics create
	$(BIN)/notify schemas register
	$(BIN)/notify schedule seed

test: install services
	bash scripts/install-browser.sh
	DATABASE_URL=$(TEST_DATABASE_URL) $(BIN)/notify db upgrade
	DATABASE_URL=$(TEST_DATABASE_URL) $(BIN)/pytest --cov --cov-report= -m "not untraced" $(PYTEST_ARGS)
	DATABASE_URL=$(TEST_DATABASE_URL) $(BIN)/pytest -m untraced $(PYTEST_ARGS) || [ $$? -eq 5 ]
	@printf 'branch coverage of app/ (code run in the pytest process): %s%%\n' \
		"$$($(BIN)/coverage report --format=total)"

test-unit: install
	# tests/unit alone: collecting the other tiers would import the Faust app with its RocksDB
	# store before the agents' unit test asks for the memory store.
	$(BIN)/pytest -m "not integration" tests/unit $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

run: db
	@mkdir -p var/run
	@echo "Starting the pipeline (Ctrl-C stops it):"
	@echo "  admin portal   http://127.0.0.1:8000/admin   (notify admin create-user NAME)"
	@echo "  Faust web view http://127.0.0.1:6066/likes/  (metrics: /metrics)"
	@echo "  Flower         http://127.0.0.1:5555"
	@echo "  metrics        http://127.0.0.1:9101/metrics (jobs), :9102 and :9104 (emails), :9103 (beat), :8000/metrics (portal)"
	@echo "  dev Auth API   http://127.0.0.1:8081/health"
	@echo "  outbox         var/outbox/*.eml, listed in the portal under Outbox"
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho -f Procfile start

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache

security: install services
	bash scripts/security.sh

security-quick: install services
	SECURITY_SCANNERS="bandit schemathesis" SCHEMATHESIS_MAX_EXAMPLES=$${SCHEMATHESIS_MAX_EXAMPLES:-20} \
		SCHEMATHESIS_PHASES=$${SCHEMATHESIS_PHASES:-examples,fuzzing,stateful} bash scripts/security.sh
