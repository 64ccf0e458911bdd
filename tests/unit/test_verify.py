"""`spendwatch verify`'s pure parts: the next scheduled poll, the connected message, the alarm topic's
subscriptions (SNS's answer through botocore's Stubber: moto confirms every e-mail subscription at once)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from spendwatch.alerter.verify import connected_message, next_poll_text
from spendwatch.channels.pagerduty import pagerduty_events
from spendwatch.cli.verify import Report, Stack, Verifier
from spendwatch.core.config import parse_config
from spendwatch.core.snapshot import Snapshot

NOW = datetime(2026, 11, 21, 14, 20, 5, tzinfo=UTC)
TOPIC = "arn:aws:sns:us-east-1:123456789012:spendwatch-AlarmTopic-X"


def snapshot(poll_time: datetime, verify: str | None = None, **extra: Any) -> Snapshot:
    return Snapshot.model_validate(
        {
            "org_id": "acme",
            "org_name": "Acme",
            "poll_time": poll_time,
            "collected_at": poll_time,
            "verify": verify,
            **extra,
        }
    )


def test_next_poll_text_follows_the_newest_scheduled_poll_not_a_verify_poll() -> None:
    history = [snapshot(NOW.replace(minute=0, second=0)), snapshot(NOW - timedelta(seconds=30), verify="abc123def456")]
    assert next_poll_text(history, now=NOW, period_s=3600, schedule="rate(1 hour)") == (
        "about 2026-11-21T15:00:00Z (rate(1 hour), every hour)"
    )


def test_next_poll_text_before_the_first_poll_and_when_overdue() -> None:
    assert next_poll_text([], now=NOW, period_s=900, schedule=None) == (
        "no scheduled poll yet: the first runs within 15 minutes of the deploy (every 15 minutes)"
    )
    late = [snapshot(NOW - timedelta(hours=3))]
    assert next_poll_text(late, now=NOW, period_s=3600, schedule="rate(1 hour)").startswith(
        "overdue: the last scheduled poll was 2026-11-21T11:20:05Z"
    )


def test_connected_message_names_spend_budget_sources_and_the_next_poll() -> None:
    config = parse_config(
        "organizations: [{id: acme, name: 'Acme *bold*', budget: {monthly_usd: 500}, channels: [s]}]\n"
        "channels: {s: {type: slack}}\n",
        "test",
    )
    snap = snapshot(
        NOW,
        verify="abc123def456",
        month_to_date_usd=Decimal("430"),
        sources_ok=["costs", "projects"],
        failures=[{"source": "credit_grants", "kind": "auth", "detail": "session key rejected"}],
    )
    message = connected_message(snap, config.organizations[0], "s", next_poll="about 15:00", now=NOW)
    assert message.raw_title is not None and message.raw_title.startswith("spendwatch is connected: Acme")
    assert "*bold*" not in message.text, "an untrusted name cannot restyle the message"
    text = "\n".join(message.raw_lines)
    assert "Month to date: $430.00" in text
    assert "Budget: $500.00 a month, 86.0% used." in text
    assert "Sources: 2 OK, 1 failing (credit_grants)." in text
    assert "Next scheduled poll: about 15:00." in text
    assert "check abc123def456" in text
    # a check, not a condition: PagerDuty pages once and resolves at once, leaving no incident open
    events = pagerduty_events(message, now=NOW)
    assert message.transient and [e["event_action"] for e in events] == ["trigger", "resolve"]
    assert events[0]["dedup_key"] == events[1]["dedup_key"]


class _Aws:
    region = "us-east-1"

    def __init__(self, client: Any) -> None:
        self._client = client

    def client(self, service: str, **_: Any) -> Any:
        return self._client


@pytest.mark.parametrize(
    ("subscriptions", "lines"),
    [
        (
            [{"SubscriptionArn": "PendingConfirmation", "Protocol": "email", "Endpoint": "oncall@example.com"}],
            ["✗ alarm subscription email:oncall@example.com is not confirmed: alarms do not reach it yet"],
        ),
        ([], ["✗ nobody is subscribed to the alarm topic: alarms about the monitor reach no one"]),
        (
            [{"SubscriptionArn": f"{TOPIC}:1a2b", "Protocol": "email", "Endpoint": "oncall@example.com"}],
            ["✓ alarms go to email:oncall@example.com"],
        ),
    ],
)
def test_verify_alarm_topic_subscriptions(subscriptions: list[dict[str, str]], lines: list[str]) -> None:
    sns = boto3.client("sns", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    out: list[str] = []
    with Stubber(sns) as stub:
        stub.add_response(
            "list_subscriptions_by_topic",
            {"Subscriptions": [{**s, "Owner": "123456789012", "TopicArn": TOPIC} for s in subscriptions]},
            {"TopicArn": TOPIC},
        )
        report = Report(out=out.append)
        verifier = Verifier(_Aws(sns), "spendwatch", report)  # type: ignore[arg-type]
        verifier.check_alarm_topic(Stack("spendwatch", {"AlarmTopicArn": TOPIC}, {}))
    assert [line for line in out if not line.startswith("    fix:")] == lines
    assert report.failed == (0 if lines[0].startswith("✓") else 1)
    if report.failed:
        assert "fix:" in out[1] and "aws sns subscribe --topic-arn" in out[1]


def test_verify_a_source_that_only_skipped_rows_passes() -> None:
    from spendwatch.cli.verify import Report, Verifier

    lines: list[str] = []
    report = Report(out=lines.append, marks=("ok", "FAIL"))
    verifier = Verifier(aws=None, stack_name="spendwatch", report=report)  # type: ignore[arg-type]
    note = {"source": "costs", "kind": "skipped_rows", "detail": "1 cost result skipped"}
    verifier.explain_sources({"org_id": "sim", "sources_ok": ["costs"], "failures": [note]})
    assert report.failed == 0 and lines[0].startswith("ok sim: OpenAI read with the deployed key: 1 sources OK")
    refused = {"source": "spend_limit", "kind": "auth", "detail": "forbidden (403)"}
    verifier.explain_sources({"org_id": "sim", "sources_ok": ["costs"], "failures": [note, refused]})
    assert report.failed == 1 and any("spend_limit failed [auth]" in line for line in lines)
