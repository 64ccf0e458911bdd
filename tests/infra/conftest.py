"""Fixtures for the infrastructure tests: the SAM template, its offline translation, and the SAM CLI."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from .sam_translate import load_template, translate

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = REPO_ROOT / "template.yaml"
REGION = "us-east-1"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def template_path() -> Path:
    return TEMPLATE


@pytest.fixture(scope="session")
def raw_template() -> dict[str, Any]:
    """template.yaml as written (SAM resources, short-form tags expanded to Fn:: dicts)."""
    return load_template(TEMPLATE)


@pytest.fixture(scope="session")
def translated() -> dict[str, Any]:
    """template.yaml after the SAM transform: the CloudFormation that would actually be deployed."""
    return translate(TEMPLATE, region=REGION)


@pytest.fixture(scope="session")
def sam_binary() -> Path:
    """The SAM CLI from the tool venv (`make test` exports SPENDWATCH_SAM=<abs path>/.tools/sam/bin/sam)."""
    value = os.environ.get("SPENDWATCH_SAM")
    if not value:
        pytest.skip("SPENDWATCH_SAM is not set: run via `make test`, or export SPENDWATCH_SAM=/path/to/sam")
    path = Path(value)
    if not path.is_file():
        pytest.fail(f"SPENDWATCH_SAM={value} does not exist (run `make setup` / `make test` to create .tools/sam)")
    return path


@pytest.fixture(scope="session")
def sam_env() -> dict[str, str]:
    """Environment for SAM CLI subprocesses: no telemetry, a region, and no need for credentials."""
    env = dict(os.environ)
    env["SAM_CLI_TELEMETRY"] = "0"
    env["AWS_DEFAULT_REGION"] = REGION
    return env
