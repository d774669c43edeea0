# make demo  - install what is needed, start the embedded stack, show offers arriving
# make test  - run every test (unit, integration, e2e)
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
# quix-streams (a peer in `instore bench proximity --peers`) pins an older confluent-kafka and
# pydantic than the project: it gets its own venv, which runs the project's code from the tree.
QUIX_VENV := .venv-quix
QUIX_STAMP := $(QUIX_VENV)/.installed
APT_PACKAGES := chromium libusb-1.0-0

.PHONY: setup demo test test-unit lint bench up clean

setup: $(STAMP) $(QUIX_STAMP)
	@bash scripts/install-kafka.sh $(VENV)

$(STAMP): pyproject.toml
	@bash scripts/apt-install.sh $(APT_PACKAGES)
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PIP) install -q --upgrade pip
	@$(PIP) install -q -e '.[dev,peers,edge,cloud]'
	@bash scripts/install-ably-js.sh
	@bash scripts/install-swagger-ui.sh
	@bash scripts/install-chartjs.sh
	@touch $(STAMP)

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
test: setup
	$(PY) -m pytest -q tests

test-unit: setup
	$(PY) -m pytest -q tests/unit

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: setup
	$(VENV)/bin/instore bench proximity --json

clean:
	rm -rf $(VENV) $(QUIX_VENV) .pytest_cache
