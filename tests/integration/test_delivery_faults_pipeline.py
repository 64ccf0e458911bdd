"""The permanent delivery fault suite through the real handler and the local pipeline (issue 7, items 6-7).

Poller -> DynamoDB (Local) -> stream -> alerter handler -> a faulty Slack (`FakeSlack`) or SES (moto's
server behind a `FaultProxy`). Assertions count messages at the receiver under redelivery and replay:
an ambiguous delivery costs at most one duplicate and fails no record; a message that provably did not
leave is retried or dead-lettered, never lost; a send that cannot be recorded is never sent again by
the record's retries.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from spendwatch.aws.store import AlertStateStore
from spendwatch.devtools.fake_openai import FakeOpenAI
from spendwatch.devtools.fake_slack import FakeSlack, refused_url
from spendwatch.devtools.faults import FaultProxy
from spendwatch.devtools.pipeline import FakeLambdaContext, LocalPipeline, clear_parameter_caches

from .conftest import POLL_TIME, configure_webhook
from .test_delivery_email import configure as configure_email
from .test_delivery_email import sent_mail, verify_sender

ALERT_KEY = "budget.actual#org#2026-11"
CLIENT_TIMEOUT_S = "0.5"
LATE_S = 1.5
SHORT = FakeLambdaContext(remaining_ms=3_900)
"""0.9 s left after the safety margin: one attempt per invocation, no back-off sleeps."""


@pytest.fixture
def fast_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    """Client timeouts of half a second, so a late answer costs the suite seconds, not minutes."""
    for name in ("SPENDWATCH_SLACK_TIMEOUT_S", "SPENDWATCH_SES_CONNECT_TIMEOUT_S", "SPENDWATCH_SES_READ_TIMEOUT_S"):
        monkeypatch.setenv(name, CLIENT_TIMEOUT_S)


def replay_everything(pipeline: LocalPipeline) -> None:
    """A redrive from TRIM_HORIZON: every record again, twice."""
    assert pipeline.pump is not None and pipeline.alerter is not None
    everything = pipeline.pump.read_all()
    for _ in range(2):
        pipeline.pump.deliver(pipeline.alerter.lambda_handler, FakeLambdaContext(), records=everything)


def alert_item(pipeline: LocalPipeline, channel: str = "slack") -> dict[str, Any]:
    item: dict[str, Any] = boto3.client("dynamodb").get_item(
        TableName=pipeline.tables["AlertStateTable"],
        Key={"pk": {"S": "ORG#sim"}, "sk": {"S": f"ALERT#{ALERT_KEY}#{channel}"}},
        ConsistentRead=True,
    )["Item"]
    return item


def emitted(text: str, metric: str) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for line in text.splitlines()
        if line.startswith("{") and f'"{metric}"' in line and "CloudWatchMetrics" in line
    ]


# --------------------------------------------------------------------------------------------------
# Slack
# --------------------------------------------------------------------------------------------------
@pytest.mark.usefixtures("fast_clients")
@pytest.mark.parametrize("fault", ["answer_late", "drop_after_posting"])
def test_ambiguous_slack_delivery_is_one_message_no_retry_no_dead_letter(
    pipeline: LocalPipeline,
    openai: FakeOpenAI,
    slack: FakeSlack,
    fault: str,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Issue 7, item 6: the post reached Slack but its answer did not reach us. It used to be retried in
    the invocation and by the stream (12 copies) and then dead-lettered although delivered."""
    configure_webhook(pipeline, openai, slack)
    if fault == "answer_late":
        slack.answer_late(20, delay_s=LATE_S)
    else:
        slack.drop_connection(20, post=True)
    pipeline.poll(POLL_TIME)
    stats = pipeline.deliver()
    assert len(slack.messages) == 1
    assert (stats.retried_batches, stats.dead_lettered) == (0, []), "probably delivered: not retried, not lost"
    replay_everything(pipeline)
    pipeline.poll(POLL_TIME + timedelta(hours=1))  # the next poll, within the lease
    pipeline.deliver()
    assert len(slack.messages) == 1
    assert len(slack.requests_log) == 1, "one request in all"
    item = alert_item(pipeline)
    assert item["notified_level"] == {"N": "80"} and "resend_after" in item and "pending_until" not in item
    out, err = capfd.readouterr()
    [metric] = emitted(out, "DeliveriesUnconfirmed")
    assert metric["reason"] == ("read_timeout" if fault == "answer_late" else "connection_reset")
    assert '"message":"delivery unconfirmed"' in err
    assert slack.webhook_path not in out + err


@pytest.mark.usefixtures("fast_clients")
@pytest.mark.parametrize("case", [("answer_late", 2), ("lost_in_transit", 1)])
def test_unconfirmed_slack_message_is_resent_exactly_once_after_the_lease(
    pipeline: LocalPipeline,
    openai: FakeOpenAI,
    slack: FakeSlack,
    monkeypatch: pytest.MonkeyPatch,
    case: tuple[str, int],
) -> None:
    """The bound: at most one duplicate per ambiguous delivery (`answer_late`: it had arrived), and a
    message lost with its answer still arrives, through the one re-send (`lost_in_transit`)."""
    fault, arrived = case
    monkeypatch.setenv("UNCONFIRMED_RESEND_AFTER_S", "1")
    configure_webhook(pipeline, openai, slack)
    if fault == "answer_late":
        slack.answer_late(2, delay_s=LATE_S)  # the re-send is ambiguous too: still final
    else:
        slack.drop_connection(1, post=False)
    pipeline.poll(POLL_TIME)
    pipeline.deliver()
    assert len(slack.messages) == arrived - 1
    time.sleep(1.1)  # the lease
    for hours in (1, 2):
        pipeline.poll(POLL_TIME + timedelta(hours=hours))
        stats = pipeline.deliver()
    replay_everything(pipeline)
    assert stats.dead_lettered == []
    assert len(slack.messages) == arrived
    assert len(slack.requests_log) == 2, "the first send and its one re-send"
    assert "resend_after" not in alert_item(pipeline), "the re-send was recorded as final"


def test_refused_slack_is_retried_then_dead_lettered_and_delivered_once_fixed(
    pipeline: LocalPipeline, openai: FakeOpenAI, slack: FakeSlack, fast_clients: None
) -> None:
    configure_webhook(pipeline, openai, slack)
    boto3.client("ssm").put_parameter(
        Name="/spendwatch/slack/webhook-url", Value=refused_url(slack.webhook_path), Type="SecureString", Overwrite=True
    )
    clear_parameter_caches()
    pipeline.poll(POLL_TIME)
    stats = pipeline.deliver(SHORT)
    assert slack.messages == []
    assert len(stats.dead_lettered) == 1, "provably not delivered: retried, then dead-lettered, never dropped"
    assert stats.invocations == 4, "the stream retried it three times"
    items = boto3.client("dynamodb").scan(TableName=pipeline.tables["AlertStateTable"])["Items"]
    assert all("version" not in item and "pending_until" not in item for item in items), "released, unrecorded"
    boto3.client("ssm").put_parameter(
        Name="/spendwatch/slack/webhook-url", Value=slack.webhook_url, Type="SecureString", Overwrite=True
    )
    alerter: Any = pipeline.alerter
    alerter._app = None  # a fresh container: the cached URL expired (the secret cache is 5 minutes)
    pipeline.poll(POLL_TIME + timedelta(hours=1))
    pipeline.deliver()
    replay_everything(pipeline)
    assert len(slack.messages) == 1


class ThrottledMarks(AlertStateStore):
    """The real store on DynamoDB (Local), whose `mark_sent` is throttled the first `failures` times."""

    def __init__(self, table: str, failures: int) -> None:
        super().__init__(table)
        self.failures = failures
        self.sends_recorded = 0

    def mark_sent(self, org_id: str, key: str, **kwargs: Any) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}, "UpdateItem"
            )
        super().mark_sent(org_id, key, **kwargs)
        self.sends_recorded += 1


@pytest.mark.parametrize("failures", [2, 10])
def test_a_send_that_cannot_be_recorded_is_never_sent_again_by_retries_or_replays(
    pipeline: LocalPipeline,
    openai: FakeOpenAI,
    slack: FakeSlack,
    failures: int,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """Issue 7, item 7: DynamoDB refused to record the state after the message was sent, and the alert
    was sent again on every poll. Now: brief retries, then the claim is held and the record failed."""
    configure_webhook(pipeline, openai, slack)
    assert pipeline.alerter is not None
    app = pipeline.alerter.app()
    app.states = ThrottledMarks(pipeline.tables["AlertStateTable"], failures)
    pipeline.poll(POLL_TIME)
    stats = pipeline.deliver()
    replay_everything(pipeline)
    pipeline.poll(POLL_TIME + timedelta(hours=1))
    pipeline.deliver()
    assert len(slack.messages) == 1
    assert stats.dead_lettered == []
    out, err = capfd.readouterr()
    if failures <= 2:  # a blip: the brief retries recorded it
        assert stats.retried_batches == 0
        assert alert_item(pipeline)["version"] == {"N": "1"}
    else:
        assert stats.retried_batches == 1, "the record was failed once; its retry found the held claim"
        item = alert_item(pipeline)
        assert "held_at" in item and int(item["pending_until"]["N"]) > time.time() + 3000
        assert '"message":"message sent but not recorded"' in err
        assert {m["reason"] for m in emitted(out, "DeliveryFailures")} == {"record_failed"}


def test_a_level_dynamodb_cannot_store_is_recorded_exactly(pipeline: LocalPipeline) -> None:
    """Issue 7, item 7's cause: a 39-digit threshold made every record of the sent alert fail."""
    store = AlertStateStore(pipeline.tables["AlertStateTable"])
    now = POLL_TIME
    levels = {
        "k39": Decimal("123456789012345678901234567890123456789"),
        "k38": Decimal("12345678901234567890123456789012345678"),
        "tiny": Decimal("1E-131"),
        "huge": Decimal("1E+126"),
        "plain": Decimal("80.50"),
    }
    for key, level in levels.items():
        store.claim("sim", key, expected_version=0, now=now, expires_at=2_000_000_000)
        store.mark_sent("sim", key, level=level, firing=True, now=now, reason="first_crossing")
    read = store.get_many("sim", list(levels))
    assert {key: state.notified_level for key, state in read.items()} == levels
    assert all(state.version == 1 and state.pending_until is None for state in read.values())
    # a level that fits again moves back to the number attribute
    store.mark_sent("sim", "k39", level=Decimal(100), firing=True, now=now, reason="higher_threshold")
    assert store.get_many("sim", ["k39"])["k39"].notified_level == Decimal(100)


# --------------------------------------------------------------------------------------------------
# SES (moto's server behind a fault-injecting proxy: botocore meets the faults on the wire)
# --------------------------------------------------------------------------------------------------
@pytest.fixture
def ses_proxy(pipeline: LocalPipeline, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    with FaultProxy(pipeline.moto.endpoint_url) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SESV2", proxy.root_url)
        yield proxy


def sends(proxy: FaultProxy) -> int:
    return sum(1 for r in proxy.requests_log if r.path.endswith("/outbound-emails"))


@pytest.mark.usefixtures("fast_clients")
@pytest.mark.parametrize("fault", ["answer_late", "drop_after_forwarding"])
def test_ambiguous_ses_delivery_is_one_mail_no_retry_no_dead_letter(
    pipeline: LocalPipeline,
    openai: FakeOpenAI,
    slack: FakeSlack,
    ses_proxy: FaultProxy,
    fault: str,
) -> None:
    configure_email(pipeline, openai, slack)
    verify_sender()
    if fault == "answer_late":
        ses_proxy.answer_late(20, delay_s=LATE_S)
    else:
        ses_proxy.drop(20, forward=True)
    pipeline.poll(POLL_TIME)
    stats = pipeline.deliver()
    replay_everything(pipeline)
    assert len(sent_mail(pipeline)) == 1
    assert sends(ses_proxy) == 1, "neither our loop nor botocore's sent it again"
    assert (stats.retried_batches, stats.dead_lettered) == (0, [])
    assert "resend_after" in alert_item(pipeline, "mail")


def test_unreachable_ses_is_retried_then_dead_lettered_never_lost(
    pipeline: LocalPipeline, openai: FakeOpenAI, slack: FakeSlack, fast_clients: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure_email(pipeline, openai, slack)
    verify_sender()
    monkeypatch.setenv("AWS_ENDPOINT_URL_SESV2", refused_url())
    pipeline.poll(POLL_TIME)
    started = time.monotonic()
    stats = pipeline.deliver(FakeLambdaContext(remaining_ms=4_500))  # one SES call fits, a back-off does not
    assert len(stats.dead_lettered) == 1 and sent_mail(pipeline) == []
    assert stats.invocations == 4, "the stream retried it three times"
    assert time.monotonic() - started < 10, "no invocation outlived its deadline"
    monkeypatch.delenv("AWS_ENDPOINT_URL_SESV2")
    pipeline.poll(POLL_TIME + timedelta(hours=1))
    pipeline.deliver()
    assert len(sent_mail(pipeline)) == 1
