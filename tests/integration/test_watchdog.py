"""The watchdog handler against the local tables: a stopped poller is reported once per stale episode,
and once more when snapshots are fresh again (its own schedule; no stream record is involved)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from spendwatch.alerter.process import DeliveryFailedError
from spendwatch.devtools.fake_openai import FakeOpenAI
from spendwatch.devtools.fake_slack import FakeSlack
from spendwatch.devtools.pipeline import FakeLambdaContext, LocalPipeline

from .conftest import ADMIN_KEY, POLL_TIME, budget_config, configure_webhook

HOUR = timedelta(hours=1)


def texts(slack: FakeSlack) -> list[str]:
    return [m.text or "" for m in slack.messages]


def test_stale_snapshots_alert_once_per_episode_then_resolve(
    pipeline: LocalPipeline, openai: FakeOpenAI, slack: FakeSlack
) -> None:
    configure_webhook(pipeline, openai, slack)
    pipeline.poll(POLL_TIME)
    pipeline.deliver()
    slack.reset()  # forget the budget alert

    result = pipeline.run_watchdog(POLL_TIME + HOUR)
    assert result["organizations"]["sim"]["stale"] is False
    assert result["organizations"]["sim"]["stale_after_hours"] == 3.0  # default: three poll periods
    assert slack.messages == []

    result = pipeline.run_watchdog(POLL_TIME + 3 * HOUR + timedelta(minutes=1))
    assert result["organizations"]["sim"]["stale"] is True
    assert result["organizations"]["sim"]["notified"] == ["slack"]
    [alert] = texts(slack)
    assert "no fresh snapshot for Simulated Org" in alert
    assert "No fresh snapshot since 2026-11-21T23:00:00Z (3 h 1 min ago" in alert
    assert "NOT being watched" in alert

    for hours in (4, 5):  # still stale: nothing new
        result = pipeline.run_watchdog(POLL_TIME + hours * HOUR)
        assert result["organizations"]["sim"]["stale"] is True
        assert result["organizations"]["sim"]["notified"] == []
    assert len(slack.messages) == 1

    pipeline.poll(POLL_TIME + 6 * HOUR)  # the poller is back
    pipeline.deliver()
    result = pipeline.run_watchdog(POLL_TIME + 6 * HOUR + timedelta(minutes=10))
    assert result["organizations"]["sim"]["stale"] is False
    assert len(slack.messages) == 2
    assert "snapshots are fresh again for Simulated Org" in texts(slack)[1]
    pipeline.run_watchdog(POLL_TIME + 7 * HOUR)
    assert len(slack.messages) == 2


def test_organization_never_polled_counts_from_when_the_watchdog_first_saw_it(
    pipeline: LocalPipeline, slack: FakeSlack
) -> None:
    pipeline.configure(budget_config(), {"/spendwatch/slack/webhook-url": slack.webhook_url})
    start = POLL_TIME
    assert pipeline.run_watchdog(start)["organizations"]["sim"]["newest_snapshot"] is None
    pipeline.run_watchdog(start + 2 * HOUR)
    assert slack.messages == [], "a fresh deployment is not stale before its first polls"
    pipeline.run_watchdog(start + 3 * HOUR + timedelta(minutes=5))
    [alert] = texts(slack)
    assert "No snapshot has been written since the watchdog started watching at 2026-11-21T23:00:00Z" in alert


def test_stale_after_hours_from_the_config(pipeline: LocalPipeline, openai: FakeOpenAI, slack: FakeSlack) -> None:
    config = budget_config().replace(
        "    channels: [slack]", "    channels: [slack]\n    rules: {health: {stale_after_hours: 1}}"
    )
    pipeline.configure(
        config,
        {"/spendwatch/sim/openai-admin-key": ADMIN_KEY, "/spendwatch/slack/webhook-url": slack.webhook_url},
        {"OPENAI_BASE_URL": openai.base_url},
    )
    pipeline.poll(POLL_TIME)
    result = pipeline.run_watchdog(POLL_TIME + HOUR + timedelta(minutes=1))
    assert result["organizations"]["sim"]["stale_after_hours"] == 1.0
    assert result["organizations"]["sim"]["notified"] == ["slack"]


def test_health_rule_disabled_skips_the_check(pipeline: LocalPipeline, slack: FakeSlack) -> None:
    config = budget_config().replace(
        "    channels: [slack]", "    channels: [slack]\n    rules: {health: {enabled: false}}"
    )
    pipeline.configure(config, {"/spendwatch/slack/webhook-url": slack.webhook_url})
    pipeline.run_watchdog(POLL_TIME)
    result = pipeline.run_watchdog(POLL_TIME + 10 * HOUR)
    assert result["organizations"]["sim"]["skipped"] == "rules.health.enabled is false"
    assert slack.messages == []


def test_failed_notice_fails_the_run_and_the_next_run_sends_it_once(
    pipeline: LocalPipeline, openai: FakeOpenAI, slack: FakeSlack
) -> None:
    configure_webhook(pipeline, openai, slack)
    pipeline.poll(POLL_TIME)
    pipeline.deliver()
    slack.reset()
    slack.fail_next(10, status=503)
    with pytest.raises(DeliveryFailedError, match="503"):
        pipeline.run_watchdog(POLL_TIME + 4 * HOUR, FakeLambdaContext(remaining_ms=5_000))
    assert slack.messages == []
    slack.reset()
    result = pipeline.run_watchdog(POLL_TIME + 5 * HOUR)
    assert result["organizations"]["sim"]["notified"] == ["slack"]
    pipeline.run_watchdog(POLL_TIME + 6 * HOUR)
    assert len(slack.messages) == 1


def test_watchdog_handler_with_the_sample_event(pipeline: LocalPipeline, openai: FakeOpenAI, slack: FakeSlack) -> None:
    """events/watchdog_schedule.json: 4 h 5 min after POLL_TIME, so the one snapshot is stale."""
    configure_webhook(pipeline, openai, slack)
    pipeline.poll(POLL_TIME)
    event = json.loads((Path(__file__).resolve().parents[2] / "events" / "watchdog_schedule.json").read_text())
    assert pipeline.watchdog is not None
    result = pipeline.watchdog.lambda_handler(event, FakeLambdaContext())
    assert result["organizations"]["sim"]["stale"] is True
    assert result["organizations"]["sim"]["newest_snapshot"] == "2026-11-21T23:00:00Z"
    assert any("no fresh snapshot" in text for text in texts(slack))
