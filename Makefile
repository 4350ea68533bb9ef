# CreditML developer commands. The README's two commands are `make dev` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PY312 := $(shell scripts/python312.sh)
VENV := .venv
SAM_VENV := .venv-sam
BIN := $(VENV)/bin
SAM_VERSION := 1.170.0
HOST ?= 127.0.0.1
PORT ?= 3000
# sam build looks for python3.12 on PATH; it also must not phone home from CI.
SAM := PATH="$(dir $(PY312)):$$PATH" SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam
PIP_FLAGS := --quiet --disable-pip-version-check

.PHONY: help install install-sam dev test lint typecheck unit integration e2e browser build-tests validate build bench soak clean

help:
	@echo "make dev    install and start the local stack (embedded AWS, seeded demo data)"
	@echo "make test   install and run everything: lint, types, sam validate/build, all tests"
	@echo "make bench  run the performance benchmarks (prints a table, writes benchmarks/results.json)"
	@echo "make soak   10 minutes of mixed traffic against a local stack (SOAK_MINUTES=N to change)"

# The Python client (client/) is its own package; the tests import it from the work tree.
$(BIN)/creditml: pyproject.toml client/pyproject.toml
	@test -x $(BIN)/python || $(PY312) -m venv $(VENV)
	$(BIN)/pip install $(PIP_FLAGS) --upgrade pip
	$(BIN)/pip install $(PIP_FLAGS) -e '.[dev]' -e './client[models]'
	@touch $@

# aws-sam-cli pins exact versions of boto3/pydantic/click, so it lives in its own venv.
$(SAM_VENV)/bin/sam:
	@test -x $(SAM_VENV)/bin/python || $(PY312) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install $(PIP_FLAGS) 'aws-sam-cli==$(SAM_VERSION)'
	@touch $@

install: $(BIN)/creditml
install-sam: $(SAM_VENV)/bin/sam

dev: install
	$(BIN)/creditml dev --host $(HOST) --port $(PORT)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

validate: install-sam
	$(SAM) validate --lint --region us-east-1

build: install-sam
	$(SAM) build

unit: install
	$(BIN)/pytest -m unit

integration: install
	$(BIN)/pytest -m integration

e2e: install
	$(BIN)/pytest -m e2e

browser: install
	$(BIN)/pytest -m browser

build-tests: build
	$(BIN)/pytest -m build

# Coverage is measured where the code runs in the test process (unit + integration) and must
# not fall below the floor; then the suites that drive real processes (e2e over HTTP against
# `creditml dev`, and the checks of the `sam build` output); then the browser tests in a
# process of their own: Playwright's sync API keeps an event loop marked running in the main
# thread for as long as its browser lives, and the e2e tests that run handlers in-process
# (creditml invoke) need that thread's loop free. pytest-randomly shuffles the order of every
# run (its seed is printed: `-p randomly --randomly-seed=N` replays one). The first run spreads
# its tests over every core (pytest-xdist; each worker is a process with its own moto).
COVERAGE_FLOOR := 80

test: lint typecheck validate build
	$(BIN)/pytest -m "unit or integration" -n auto --cov --cov-report=term --cov-fail-under=$(COVERAGE_FLOOR)
	$(BIN)/pytest -m "not unit and not integration and not browser"
	$(BIN)/pytest -m browser

bench: install
	$(BIN)/python benchmarks/run.py

# Ten minutes of mixed traffic against a fresh local stack (tests/e2e/test_soak.py runs a
# short variant in `make test`): error rate, stack memory, ledger verify.
SOAK_MINUTES ?= 10
soak: install
	$(BIN)/python benchmarks/soak.py --minutes $(SOAK_MINUTES)

clean:
	rm -rf .aws-sam .pytest_cache .mypy_cache .ruff_cache .creditml .coverage
