# make demo  - install what is needed, start the embedded stack, show offers arriving
# make test  - run every test (unit, integration, e2e)
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
CORE_STAMP := $(VENV)/.installed-core
DEV_STAMP := $(VENV)/.installed-dev
# quix-streams (a peer in `instore bench proximity --peers`) pins an older confluent-kafka and
# pydantic than the project: it gets its own venv, which runs the project's code from the tree.
QUIX_VENV := .venv-quix
QUIX_STAMP := $(QUIX_VENV)/.installed
# Only the tests need these: Chromium for the e2e tests, librealsense's USB library for the
# depth-camera tests (the [edge] extra).
TEST_APT_PACKAGES := chromium libusb-1.0-0

.PHONY: screenshots setup setup-dev demo test test-unit lint bench up clean

# What the demo and `instore up` need: the core package, the pages' JavaScript, Java, Maven
# and the Kafka jars.
setup: $(CORE_STAMP)
	@bash scripts/install-kafka.sh $(VENV)

# Everything: the extras (edge, cloud, dev, peers), the browser, the quix-streams peer's venv.
setup-dev: setup $(DEV_STAMP) $(QUIX_STAMP)

$(CORE_STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PIP) install -q --upgrade pip
	@$(PIP) install -q -e .
	@bash scripts/install-ably-js.sh
	@bash scripts/install-swagger-ui.sh
	@bash scripts/install-chartjs.sh
	@touch $@

$(DEV_STAMP): pyproject.toml $(CORE_STAMP)
	@bash scripts/apt-install.sh $(TEST_APT_PACKAGES)
	@$(PIP) install -q -e '.[dev,peers,edge,cloud]'
	@bash scripts/install-mermaid.sh
	@touch $@

$(QUIX_STAMP): bench/peers/requirements-quix.txt
	@test -x $(QUIX_VENV)/bin/python || python3 -m venv $(QUIX_VENV)
	@$(QUIX_VENV)/bin/pip install -q --upgrade pip
	@$(QUIX_VENV)/bin/pip install -q -r bench/peers/requirements-quix.txt
	@touch $(QUIX_STAMP)

demo: setup
	$(VENV)/bin/instore demo --seconds $${SECONDS_TO_RUN:-60}

up: setup
	$(VENV)/bin/instore up

# Unit, integration (the embedded Kafka, Redis, Faust workers) and e2e (headless Chromium).
# Two workers, each running whole test files (module fixtures stay shared): most of a test's
# time is waiting for brokers, workers and pages, so two at a time take about half as long.
test: setup-dev lint
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=25 tests

# The e2e tests again, saving what the pages look like to docs/screenshots/ (`make test` keeps
# them in a temporary folder and leaves the tree as it found it).
screenshots: setup-dev
	INSTORE_UPDATE_SCREENSHOTS=1 $(PY) -m pytest -q tests/e2e

test-unit: setup-dev
	$(PY) -m pytest -q tests/unit

lint: setup-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(VENV)/bin/python scripts/long_code.py

bench: setup-dev
	$(VENV)/bin/instore bench proximity --json

clean:
	rm -rf $(VENV) $(QUIX_VENV) .pytest_cache
