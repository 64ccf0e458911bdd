"""The walking skeleton end to end: poller handler -> real DynamoDB stream -> alerter handler -> Slack."""

from __future__ import annotations

import os
from datetime import timedelta

import boto3
import pytest

from spendwatch.core.errors import NothingCollectedError
from spendwatch.devtools.fake_openai import FakeOpenAI
from spendwatch.devtools.fake_slack import FakeSlack
from spendwatch.devtools.pipeline import FakeLambdaContext, LocalPipeline
from spendwatch.devtools.stream import snapshot_inserts

from .conftest import ADMIN_KEY, POLL_TIME, budget_config, configure_webhook


def stream_inserts(pipeline: LocalPipeline) -> int:
    assert pipeline.pump is not None
    return len(snapshot_inserts(pipeline.pump.read_all()))


def test_pipeline_uses_dynamodb_local_when_installed(pipeline: LocalPipeline) -> None:
    expected = "DynamoDB Local" if os.environ.get("SPENDWATCH_DYNAMODB_LOCAL_DIR") else "moto server"
    assert pipeline.dynamodb_kind == expected
    assert pipeline.dynamodb_endpoint.startswith("http://127.0.0.1:")


def test_pipeline_budget_crossing_posts_one_slack_message(
    pipeline: LocalPipeline, openai: FakeOpenAI, slack: FakeSlack
) -> None:
    configure_webhook(pipeline, openai, slack)
    result = pipeline.poll(POLL_TIME)
    stats = pipeline.deliver()
    assert stats.delivered == 1
    assert len(slack.messages) == 1
    text = slack.messages[0].text or ""
    assert "80.0% of the monthly budget reached" in text
    assert f"${result['organizations']['sim']['month_to_date_usd'][:3]}" in text.replace(",", "")
    assert "cost data through 2026-11-21" in text


def test_pipeline_same_poll_twice_writes_one_insert_and_one_alert(
    pipeline: LocalPipeline, openai: FakeOpenAI, slack: FakeSlack
) -> None:
    configure_webhook(pipeline, openai, slack)
    pipeline.poll(POLL_TIME)
    pipeline.poll(POLL_TIME)  # a retried invocation for the same scheduled time
    assert stream_inserts(pipeline) == 1
    pipeline.deliver()
    assert len(slack.messages) == 1


def test_pipeline_later_poll_at_same_level_sends_nothing_new(
    pipeline: LocalPipeline, openai: FakeOpenAI, slack: FakeSlack
) -> None:
    configure_webhook(pipeline, openai, slack)
    pipeline.poll(POLL_TIME)
    pipeline.deliver()
    pipeline.poll(POLL_TIME + timedelta(hours=1))
    stats = pipeline.deliver()
    assert stats.delivered == 2
    assert len(slack.messages) == 1


def test_pipeline_redelivered_records_send_once(pipeline: LocalPipeline, openai: FakeOpenAI, slack: FakeSlack) -> None:
    configure_webhook(pipeline, openai, slack)
    pipeline.poll(POLL_TIME)
    assert pipeline.pump is not None and pipeline.alerter is not None
    records = pipeline.pump.read_new()
    for _ in range(3):  # at-least-once delivery: the same batch arrives again
        pipeline.pump.deliver(pipeline.alerter.lambda_handler, FakeLambdaContext(), records=records)
    assert len(slack.messages) == 1


def test_pipeline_slack_outage_then_recovery_delivers_exactly_once(
    pipeline: LocalPipeline, openai: FakeOpenAI, slack: FakeSlack
) -> None:
    configure_webhook(pipeline, openai, slack)
    slack.fail_next(4, status=503)  # more than one invocation's retries: the record must fail and come back
    pipeline.poll(POLL_TIME)
    stats = pipeline.deliver()
    assert stats.retried_batches >= 1
    assert len(slack.messages) == 1
    assert pipeline.dead_letters() == []


def test_pipeline_permanent_slack_error_dead_letters_without_sending(
    pipeline: LocalPipeline, openai: FakeOpenAI, slack: FakeSlack
) -> None:
    pipeline.configure(
        budget_config(),
        {
            "/spendwatch/sim/openai-admin-key": ADMIN_KEY,
            "/spendwatch/slack/webhook-url": slack.webhook_url + "-revoked",
        },
        {"OPENAI_BASE_URL": openai.base_url},
    )
    pipeline.poll(POLL_TIME)
    stats = pipeline.deliver()
    assert slack.messages == []
    assert len(stats.dead_lettered) == 1
    [dead] = pipeline.dead_letters()
    assert dead["DDBStreamBatchInfo"]["batchSize"] == 1


def test_pipeline_bot_token_posts_with_chat_post_message(
    pipeline: LocalPipeline, openai: FakeOpenAI, slack: FakeSlack
) -> None:
    channel = next(iter(slack.channels))
    pipeline.configure(
        budget_config(channel_block=f"    channel: {channel}\n"),
        {"/spendwatch/sim/openai-admin-key": ADMIN_KEY, "/spendwatch/slack/bot-token": slack.valid_token},
        {"OPENAI_BASE_URL": openai.base_url, "SLACK_API_BASE_URL": slack.api_base_url},
    )
    pipeline.poll(POLL_TIME)
    pipeline.deliver()
    assert len(slack.messages) == 1
    assert slack.messages[0].channel == channel


def test_pipeline_under_every_threshold_sends_nothing(
    pipeline: LocalPipeline, openai: FakeOpenAI, slack: FakeSlack
) -> None:
    configure_webhook(pipeline, openai, slack, budget="100000")
    pipeline.poll(POLL_TIME)
    assert pipeline.deliver().delivered == 1
    assert slack.messages == []


def test_poller_failed_costs_source_is_stored_and_the_invocation_fails(
    pipeline: LocalPipeline, openai: FakeOpenAI, slack: FakeSlack
) -> None:
    configure_webhook(pipeline, openai, slack)
    # Every admin endpoint down (the config has no session key): nothing is collected, so the invocation fails.
    openai.server_error("/v1/organization", status=502, times=None)
    with pytest.raises(NothingCollectedError, match="sim"):
        pipeline.poll(POLL_TIME)
    item = boto3.client("dynamodb").get_item(
        TableName=pipeline.tables["SnapshotsTable"],
        Key={"pk": {"S": "ORG#sim"}, "sk": {"S": "SNAP#2026-11-21T23:00:00Z"}},
    )["Item"]
    failure = item["failures"]["L"][0]["M"]
    assert failure["source"]["S"] == "costs"
    assert "server error 502" in failure["detail"]["S"]


def test_poller_never_logs_the_admin_key(
    pipeline: LocalPipeline,
    openai: FakeOpenAI,
    slack: FakeSlack,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "sk-admin-wrong-key-that-must-not-leak-1"
    pipeline.configure(
        budget_config(), {"/spendwatch/sim/openai-admin-key": secret}, {"OPENAI_BASE_URL": openai.base_url}
    )
    with pytest.raises(NothingCollectedError) as caught:
        pipeline.poll(POLL_TIME)
    out, err = capfd.readouterr()
    logged = "\n".join(str(record.__dict__) for record in caplog.records)
    assert "admin key rejected (401 invalid_api_key)" in logged
    for text in (out, err, logged, str(caught.value)):
        assert secret not in text
        assert "Bearer" not in text


def test_poller_reads_the_admin_key_from_ssm_once_across_invocations(
    pipeline: LocalPipeline, openai: FakeOpenAI, slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aws_lambda_powertools.utilities.parameters.ssm import SSMProvider

    reads: list[str] = []
    original = SSMProvider._get

    def counting_get(self: SSMProvider, name: str, *args: object, **kwargs: object) -> object:
        reads.append(name)
        return original(self, name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(SSMProvider, "_get", counting_get)
    configure_webhook(pipeline, openai, slack)
    pipeline.poll(POLL_TIME)
    pipeline.poll(POLL_TIME + timedelta(hours=1))
    assert reads.count("/spendwatch/sim/openai-admin-key") == 1
    assert all(ADMIN_KEY not in value for value in os.environ.values())


def test_snapshot_store_history_reads_the_summaries_of_the_newest_polls(pipeline: LocalPipeline) -> None:
    from decimal import Decimal

    from spendwatch.aws.store import SnapshotStore
    from spendwatch.core.snapshot import DailyCost, Snapshot, SourceFailure

    store = SnapshotStore(pipeline.tables["SnapshotsTable"])
    for hour in range(70):
        moment = POLL_TIME - timedelta(hours=hour)
        store.put_snapshot(
            Snapshot(
                org_id="sim",
                org_name="Sim",
                poll_time=moment,
                collected_at=moment,
                month_to_date_usd=Decimal("1.5"),
                daily_costs_usd=tuple(
                    DailyCost(day=(moment - timedelta(days=d)).date(), amount_usd=Decimal(d)) for d in range(40)
                ),
                failures=(SourceFailure(source="usage.images", kind="unavailable", detail="502"),),
            ),
            expires_at=2_000_000_000,
        )
    history = store.recent_history("sim", since=POLL_TIME - timedelta(days=10), limit=64)
    assert len(history) == 64
    assert history[0].poll_time == POLL_TIME
    assert history[-1].poll_time == POLL_TIME - timedelta(hours=63)
    assert all(s.daily_costs_usd == () for s in history)  # the heavy series is not read
    assert history[5].failures[0].source == "usage.images"
    assert history[5].month_to_date_usd == Decimal("1.5")
