"""Slack delivery through the real local stream: rate limits, outages, revoked credentials, dead channels,
poison records and replays, each ending in exactly one message (or a dead letter and a fallback notice)."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import boto3
import pytest

from spendwatch.aws.store import to_attribute_map
from spendwatch.core.snapshot import Snapshot
from spendwatch.devtools.fake_openai import FakeOpenAI
from spendwatch.devtools.fake_slack import FakeSlack
from spendwatch.devtools.pipeline import FakeLambdaContext, LocalPipeline

from .conftest import ADMIN_KEY, POLL_TIME, configure_webhook

MAX_RETRIES = 3  # the template's MaximumRetryAttempts


def bot_token_config(channel: str, *, fallback: bool) -> str:
    """Main channel `slack` posts with the bot token; `hook` (the incoming webhook) is the fallback."""
    return f"""
organizations:
  - id: sim
    name: Simulated Org
    budget: {{monthly_usd: 500, thresholds_percent: [50, 80, 100]}}
    channels: [slack]
    {"fallback_channel: hook" if fallback else ""}
channels:
  slack:
    type: slack
    channel: {channel}
    webhook_url: {{parameter: /spendwatch/slack/unused-webhook, env: UNUSED_WEBHOOK}}
  hook:
    type: slack
"""


def configure_bot(pipeline: LocalPipeline, openai: FakeOpenAI, slack: FakeSlack, *, fallback: bool = False) -> str:
    channel = next(iter(slack.channels))
    pipeline.configure(
        bot_token_config(channel, fallback=fallback),
        {
            "/spendwatch/sim/openai-admin-key": ADMIN_KEY,
            "/spendwatch/slack/bot-token": slack.valid_token,
            "/spendwatch/slack/webhook-url": slack.webhook_url,
        },
        {"OPENAI_BASE_URL": openai.base_url, "SLACK_API_BASE_URL": slack.api_base_url},
    )
    return channel


def requests_to(slack: FakeSlack, via: str) -> int:
    prefix = "/api/" if via == "api" else "/services/"
    return sum(1 for r in slack.requests_log if r.path.startswith(prefix))


def emitted_metrics(text: str, name: str) -> list[dict[str, Any]]:
    found = []
    for line in text.splitlines():
        if line.startswith("{") and f'"{name}"' in line and "CloudWatchMetrics" in line:
            found.append(json.loads(line))
    return found


@pytest.mark.parametrize("retry_after", [0, 1])
def test_rate_limit_with_retry_after_then_success_delivers_exactly_once(
    pipeline: LocalPipeline, openai: FakeOpenAI, slack: FakeSlack, retry_after: int
) -> None:
    configure_webhook(pipeline, openai, slack)
    slack.fail_next(1, retry_after=retry_after)
    pipeline.poll(POLL_TIME)
    started = time.monotonic()
    stats = pipeline.deliver()
    assert time.monotonic() - started >= retry_after, "Retry-After was honoured within the invocation"
    assert stats.retried_batches == 0, "it fitted in the time left: no stream retry needed"
    assert len(slack.messages) == 1
    assert [r.status for r in slack.requests_log] == [429, 200]


def test_rate_limit_longer_than_the_time_left_fails_the_record_and_the_retry_delivers(
    pipeline: LocalPipeline, openai: FakeOpenAI, slack: FakeSlack
) -> None:
    configure_webhook(pipeline, openai, slack)
    slack.fail_next(1, retry_after=600)
    pipeline.poll(POLL_TIME)
    started = time.monotonic()
    stats = pipeline.deliver()
    assert time.monotonic() - started < 30, "never slept for the 600 s"
    assert stats.retried_batches == 1
    assert len(slack.messages) == 1
    assert pipeline.dead_letters() == []


def test_bot_token_outage_then_recovery_delivers_exactly_once(
    pipeline: LocalPipeline, openai: FakeOpenAI, slack: FakeSlack
) -> None:
    channel = configure_bot(pipeline, openai, slack)
    slack.fail_next(4, status=503, target="api")  # one invocation's three attempts, then one more
    pipeline.poll(POLL_TIME)
    stats = pipeline.deliver()
    assert stats.retried_batches == 1
    assert [m.channel for m in slack.messages] == [channel]
    assert requests_to(slack, "api") == 5
    assert pipeline.dead_letters() == []
    pipeline.poll(POLL_TIME + timedelta(hours=1))
    pipeline.deliver()
    assert len(slack.messages) == 1


def test_revoked_token_reaches_the_user_through_the_fallback_channel_once(
    pipeline: LocalPipeline,
    openai: FakeOpenAI,
    slack: FakeSlack,
    capfd: pytest.CaptureFixture[str],
) -> None:
    configure_bot(pipeline, openai, slack, fallback=True)
    slack.revoke_token()
    pipeline.poll(POLL_TIME)
    stats = pipeline.deliver()
    # The main channel re-read its token once per attempt and gave up: no hot loop.
    assert requests_to(slack, "api") == 2 * (1 + MAX_RETRIES)
    notices = [m for m in slack.messages if m.via == "webhook"]
    assert len(notices) == 1, "one notice per failure state, however often the record is retried"
    text = notices[0].text or ""
    assert "Channel slack failed permanently: token_revoked." in text
    assert "Alerts for Simulated Org are not reaching it" in text
    assert not [m for m in slack.messages if m.via == "api"]
    assert len(stats.dead_lettered) == 1, "the undelivered alert is not lost: its record is dead-lettered"
    out, _ = capfd.readouterr()
    failures = emitted_metrics(out, "DeliveryFailures")
    assert failures, "DeliveryFailures is emitted"
    assert {tuple(f["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]) for f in failures} == {("service", "reason")}
    assert {f["reason"] for f in failures} == {"token_revoked"}

    # The token is fixed: the next snapshot delivers the alert, and the fallback hears of the recovery once.
    slack.reset()
    pipeline.poll(POLL_TIME + timedelta(hours=1))
    pipeline.deliver()
    pipeline.poll(POLL_TIME + timedelta(hours=2))
    pipeline.deliver()
    assert len([m for m in slack.messages if m.via == "api"]) == 1
    recovery = [m for m in slack.messages if m.via == "webhook"]
    assert len(recovery) == 1
    assert "Channel slack delivered an alert for Simulated Org again." in (recovery[0].text or "")


def test_revoked_webhook_is_permanent_without_hot_loop_and_dead_letters(
    pipeline: LocalPipeline, openai: FakeOpenAI, slack: FakeSlack, capfd: pytest.CaptureFixture[str]
) -> None:
    configure_webhook(pipeline, openai, slack)
    slack.revoke_webhook()
    pipeline.poll(POLL_TIME)
    stats = pipeline.deliver()
    assert slack.messages == []
    assert requests_to(slack, "webhook") == 2 * (1 + MAX_RETRIES), "one re-read of the URL per attempt, no more"
    assert {r.status for r in slack.requests_log} == {404}
    assert len(stats.dead_lettered) == 1
    [dead] = pipeline.dead_letters()
    assert dead["requestContext"]["condition"] == "RetryAttemptsExhausted"
    out, err = capfd.readouterr()
    assert {f["reason"] for f in emitted_metrics(out, "DeliveryFailures")} == {"no_service"}
    assert '"reason":"no_service"' in err and '"retryable":false' in err, "the error is named in the logs"
    assert slack.webhook_path not in out + err, "the webhook URL is a secret"


def test_archived_channel_is_permanent_and_named(pipeline: LocalPipeline, openai: FakeOpenAI, slack: FakeSlack) -> None:
    channel = configure_bot(pipeline, openai, slack)
    slack.archive_channel(channel)
    pipeline.poll(POLL_TIME)
    stats = pipeline.deliver()
    assert requests_to(slack, "api") == 1 + MAX_RETRIES, "destination errors are not retried in the invocation"
    assert {r.error for r in slack.requests_log} == {"is_archived"}
    assert len(stats.dead_lettered) == 1


def put_snapshot(pipeline: LocalPipeline, org_id: str, name: str, spent: str, **overrides: Any) -> None:
    """A snapshot written straight to the table, as the poller would (the stream then carries it)."""
    snapshot = Snapshot.model_validate(
        {
            "org_id": org_id,
            "org_name": name,
            "poll_time": POLL_TIME,
            "collected_at": POLL_TIME,
            "month_to_date_usd": spent,
        }
    )
    item = snapshot.to_item(expires_at=2_000_000_000) | overrides
    boto3.client("dynamodb").put_item(TableName=pipeline.tables["SnapshotsTable"], Item=to_attribute_map(item))


TWO_ORGS = """
organizations:
  - {id: sim, name: Simulated Org, budget: {monthly_usd: 500}, channels: [slack]}
  - {id: beta, name: Beta Org, budget: {monthly_usd: 500}, channels: [slack]}
channels:
  slack: {type: slack}
"""


def test_poison_record_is_a_batch_item_failure_while_the_rest_are_delivered_once(
    pipeline: LocalPipeline, slack: FakeSlack
) -> None:
    pipeline.configure(TWO_ORGS, {"/spendwatch/slack/webhook-url": slack.webhook_url})
    put_snapshot(pipeline, "sim", "Simulated Org", "430")
    put_snapshot(pipeline, "beta", "Beta Org", "450", sk="SNAP#2026-11-21T22:00:00Z", schema_version=99)
    put_snapshot(pipeline, "beta", "Beta Org", "450")
    assert pipeline.pump is not None and pipeline.alerter is not None
    records = pipeline.pump.read_new()
    assert [r["eventName"] for r in records] == ["INSERT"] * 3
    response = pipeline.alerter.lambda_handler({"Records": records}, FakeLambdaContext())
    assert response == {"batchItemFailures": [{"itemIdentifier": records[1]["dynamodb"]["SequenceNumber"]}]}
    assert sorted((m.text or "").splitlines()[0] for m in slack.messages) == [
        "OpenAI spend alert: Beta Org",
        "OpenAI spend alert: Simulated Org",
    ]
    # Lambda retries from the poison record: the record after it arrives again and sends nothing new.
    stats = pipeline.pump.deliver(pipeline.alerter.lambda_handler, FakeLambdaContext(), records=records[1:])
    assert len(stats.dead_lettered) == 1
    assert len(slack.messages) == 2


def test_replay_of_the_whole_stream_sends_nothing_new(
    pipeline: LocalPipeline, openai: FakeOpenAI, slack: FakeSlack
) -> None:
    configure_webhook(pipeline, openai, slack)
    pipeline.poll(POLL_TIME)
    pipeline.poll(POLL_TIME + timedelta(hours=1))
    pipeline.deliver()
    assert len(slack.messages) == 1
    assert pipeline.pump is not None and pipeline.alerter is not None
    everything = pipeline.pump.read_all()  # e.g. a redrive from TRIM_HORIZON
    for _ in range(2):
        pipeline.pump.deliver(pipeline.alerter.lambda_handler, FakeLambdaContext(), records=everything)
    assert len(slack.messages) == 1


def test_two_posts_to_one_channel_in_one_invocation_are_a_second_apart(
    pipeline: LocalPipeline, slack: FakeSlack
) -> None:
    pipeline.configure(TWO_ORGS, {"/spendwatch/slack/webhook-url": slack.webhook_url})
    put_snapshot(pipeline, "sim", "Simulated Org", "430")
    put_snapshot(pipeline, "beta", "Beta Org", "450")
    started = time.monotonic()
    stats = pipeline.deliver()
    assert stats.invocations == 1
    assert len(slack.messages) == 2
    assert time.monotonic() - started >= 1.0, "the second post to the same webhook waited for the pacing interval"
