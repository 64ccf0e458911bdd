"""`spendwatch check` (what would fire, nothing sent) and `spendwatch test-alert` (a test message to every
channel) against the local OpenAI and Slack wire servers and SES on moto's server."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
import requests

from spendwatch.cli.main import main
from spendwatch.core.money import dumps_exact
from spendwatch.core.snapshot import Snapshot
from spendwatch.devtools.fake_openai import FakeOpenAI
from spendwatch.devtools.fake_slack import FakeSlack
from spendwatch.devtools.pipeline import LocalPipeline

from .conftest import ADMIN_KEY

CONFIG = """
organizations:
  - id: sim
    name: Simulated Org
    budget: {monthly_usd: 500, thresholds_percent: [50, 80, 100]}
    channels: [slack]
    fallback_channel: mail
channels:
  slack:
    type: slack
  mail:
    type: email
    sender: alerts@example.com
    recipients: [ops@example.com]
"""


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "spendwatch.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    monkeypatch.setenv("SPENDWATCH_CONFIG", str(path))
    return path


def snapshot_file(tmp_path: Path, spent: str) -> Path:
    poll_time = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    snapshot = Snapshot.model_validate(
        {
            "org_id": "sim",
            "org_name": "Simulated Org",
            "poll_time": poll_time,
            "collected_at": poll_time,
            "month_to_date_usd": spent,
            "sources_ok": ["costs"],
        }
    )
    path = tmp_path / "snapshot.json"
    path.write_text(dumps_exact(snapshot.to_json_dict(), indent=2), encoding="utf-8")
    return path


def test_check_snapshot_json_prints_one_document_and_sends_nothing(
    config_file: Path, tmp_path: Path, slack: FakeSlack, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["check", "--snapshot", str(snapshot_file(tmp_path, "430")), "--json"])
    out, _ = capsys.readouterr()
    assert code == 0
    document = json.loads(out)  # exactly one JSON document on stdout
    [org] = document["organizations"]
    assert (org["org_id"], org["channels"]) == ("sim", ["slack"])
    budget = [a for a in org["alerts"] if a["rule_id"] == "budget.actual"]
    assert len(budget) == 1
    assert budget[0]["level"] == "80"
    assert budget[0]["reason"] == "first_crossing"
    assert "80" in budget[0]["text"]
    assert slack.requests_log == []


def test_check_text_output_and_quiet_spend(
    config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "--snapshot", str(snapshot_file(tmp_path, "430"))]) == 0
    out, _ = capsys.readouterr()
    assert "Simulated Org (sim)" in out and "would fire -> slack" in out and "[budget.actual]" in out
    assert main(["check", "--snapshot", str(snapshot_file(tmp_path, "10"))]) == 0
    out, _ = capsys.readouterr()
    assert "[budget.actual]" not in out


def test_check_on_a_fresh_poll(
    config_file: Path, openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENAI_ADMIN_KEY", ADMIN_KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", openai.base_url)
    assert main(["check", "--org", "sim", "--json"]) == 0
    out, _ = capsys.readouterr()
    [org] = json.loads(out)["organizations"]
    assert org["month_to_date_usd"] is not None


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["check", "--org", "nope"], 2),
        (["check", "--snapshot", "/nonexistent/snapshot.json"], 2),
        (["test-alert", "--channel", "nope"], 2),
    ],
)
def test_cli_errors_exit_non_zero(
    config_file: Path, argv: list[str], code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == code
    _, err = capsys.readouterr()
    assert err.strip()


def test_test_alert_reaches_every_channel_and_names_the_failing_one(
    config_file: Path,
    pipeline: LocalPipeline,  # moto's server (SES) with AWS_ENDPOINT_URL set
    slack: FakeSlack,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SLACK_WEBHOOK_URL", slack.webhook_url)
    boto3.client("ses").verify_email_identity(EmailAddress="alerts@example.com")
    assert main(["test-alert"]) == 0
    out, _ = capsys.readouterr()
    assert "slack: sent" in out and "mail: sent" in out
    [message] = slack.messages
    assert "spendwatch: test message (slack)" in (message.text or "")
    assert "<!" not in (message.text or ""), "a test message pings nobody"
    mails = requests.get(f"{pipeline.moto.endpoint_url}/moto-api/data.json", timeout=10).json()["ses"]["Message"]
    assert [m["subject"] for m in mails] == ["[spendwatch] test message (mail)"]

    slack.revoke_webhook()
    assert main(["test-alert", "--channel", "slack"]) == 1
    out, err = capsys.readouterr()
    assert "slack: FAILED (no_service, permanent)" in out
    assert "not delivered to: slack" in err
    assert slack.webhook_path not in out + err

    slack.reset()
    slack.drop_connection(1, post=True)  # posted, but the answer was lost
    assert main(["test-alert", "--channel", "slack"]) == 1
    out, _ = capsys.readouterr()
    assert "slack: NOT CONFIRMED (connection_reset)" in out and "check the channel" in out
    assert len(slack.messages) == 1, "tried once: it may well be there"
