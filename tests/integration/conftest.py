"""Integration fixtures: a real DynamoDB API on loopback (AWS's DynamoDB Local when installed by
`make test`, else moto's server), moto's server for SSM and SQS, and local OpenAI and Slack wire servers.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from spendwatch.devtools.aws_local import dynamodb_local_jar
from spendwatch.devtools.fake_openai import FakeOpenAI
from spendwatch.devtools.fake_slack import FakeSlack
from spendwatch.devtools.pipeline import LocalPipeline
from spendwatch.devtools.simulated_org import DEFAULT_MONTHLY_BUDGET_USD, SimulatedOrg

ADMIN_KEY = "sk-admin-integration-test-key-000"
POLL_TIME = datetime(2026, 11, 21, 23, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def pipeline_servers() -> Iterator[LocalPipeline]:
    # `make test` installs DynamoDB Local and names it here; then it must be used, never silently skipped.
    install_dir = os.environ.get("SPENDWATCH_DYNAMODB_LOCAL_DIR")
    jar = dynamodb_local_jar(install_dir)
    if install_dir and (jar is None or shutil.which("java") is None):
        pytest.fail(f"SPENDWATCH_DYNAMODB_LOCAL_DIR={install_dir} but no DynamoDB Local jar or no java on PATH")
    pipeline = LocalPipeline(dynamodb_local_jar=jar).start()
    yield pipeline
    pipeline.stop()


@pytest.fixture
def pipeline(pipeline_servers: LocalPipeline) -> LocalPipeline:
    pipeline_servers.reset()
    return pipeline_servers


@pytest.fixture
def openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(SimulatedOrg.default(POLL_TIME), admin_key=ADMIN_KEY, session_key="sess-integration") as server:
        yield server


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as server:
        yield server


def budget_config(*, channel_block: str = "", budget: str = str(DEFAULT_MONTHLY_BUDGET_USD)) -> str:
    return f"""
version: 1
organizations:
  - id: sim
    name: Simulated Org
    budget: {{monthly_usd: {budget}, thresholds_percent: [50, 80, 100]}}
    channels: [slack]
channels:
  slack:
    type: slack
{channel_block}"""


def configure_webhook(pipeline: LocalPipeline, openai: FakeOpenAI, slack: FakeSlack, **kwargs: str) -> None:
    pipeline.configure(
        budget_config(**kwargs),
        {"/spendwatch/sim/openai-admin-key": ADMIN_KEY, "/spendwatch/slack/webhook-url": slack.webhook_url},
        {"OPENAI_BASE_URL": openai.base_url},
    )
