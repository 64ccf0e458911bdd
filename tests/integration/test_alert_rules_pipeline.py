"""The alert rules end to end through the real local DynamoDB stream: snapshot INSERT -> stream ->
alerter handler -> notification log (AlertStateTable) -> the local Slack stand-in.

Snapshots are written with `SnapshotStore.put_snapshot` (as the poller does), so each rule is driven by
exactly the figures it needs; the alerter's clock is fixed so lead times and repeat intervals are exact.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest
from slack_sdk.webhook import WebhookClient

from spendwatch.alerter.process import process_snapshot
from spendwatch.alerter.rules import history_since
from spendwatch.aws.store import AlertStateStore, SnapshotStore
from spendwatch.core.alerts import Message
from spendwatch.core.config import parse_config
from spendwatch.core.snapshot import (
    CostShare,
    CreditGrant,
    DailyCost,
    ProjectInfo,
    Snapshot,
    SourceFailure,
    SpendLimit,
)
from spendwatch.devtools.fake_slack import FakeSlack
from spendwatch.devtools.pipeline import FakeLambdaContext, LocalPipeline

T0 = datetime(2026, 11, 21, 12, tzinfo=UTC)
HOUR = timedelta(hours=1)

RULES_CONFIG = """
version: 1
organizations:
  - id: sim
    name: Simulated Org
    budget: {{monthly_usd: 500, thresholds_percent: [50, 80, 100]}}
    hard_limit_usd: 1000
    channels: [slack]
    rules:
      forecast: {{enabled: false}}
      spike: {{enabled: false}}
      hard_limit: {{percent: 90, repeat_interval: 2h}}
      health: {{failing_polls: 1}}
      budget:
        projects: [{{id: proj_research, monthly_usd: 100, thresholds_percent: [80, 100]}}]
channels:
  slack: {{type: slack}}
{extra}"""


@pytest.fixture
def clock() -> dict[str, datetime]:
    return {"now": T0}


@pytest.fixture
def configure(pipeline: LocalPipeline, slack: FakeSlack, clock: dict[str, datetime]) -> Callable[[str], None]:
    def apply(extra: str = "") -> None:
        pipeline.configure(RULES_CONFIG.format(extra=extra), {"/spendwatch/slack/webhook-url": slack.webhook_url})
        assert pipeline.alerter is not None
        pipeline.alerter.app().now = lambda: clock["now"]

    apply()
    return apply


def snapshot(poll_time: datetime, mtd: str = "100", **fields: Any) -> Snapshot:
    return Snapshot(
        org_id="sim",
        org_name="Simulated <!channel> Org",
        poll_time=poll_time,
        collected_at=poll_time + timedelta(seconds=4),
        month_to_date_usd=Decimal(mtd),
        daily_costs_usd=(DailyCost(day=poll_time.date(), amount_usd=Decimal(mtd)),),
        **fields,
    )


def write(pipeline: LocalPipeline, *snapshots: Snapshot) -> None:
    store = SnapshotStore(pipeline.tables["SnapshotsTable"])
    for item in snapshots:
        assert store.put_snapshot(item, expires_at=int((item.poll_time + timedelta(days=90)).timestamp()))


class WebhookPoster:
    """Posts a message to the Slack stand-in's webhook over loopback (as the Slack sender does)."""

    kind = "slack"

    def __init__(self, url: str) -> None:
        self.name = "slack"
        self._client = WebhookClient(url, timeout=10)

    def send(self, message: Message) -> None:
        response = self._client.send(text=message.text, blocks=[dict(b) for b in message.blocks])
        assert response.status_code == 200, response.body


def texts(slack: FakeSlack) -> list[str]:
    return [m.text or "" for m in slack.messages]


def everything_at_once(poll_time: datetime) -> Snapshot:
    """A first run mid-month: budget, project budget, hard limit, an expiring grant, a rejected session key."""
    return snapshot(
        poll_time,
        "950",
        costs_by_project_usd=(CostShare(key="proj_research", amount_usd=Decimal(85)),),
        projects=(ProjectInfo(id="proj_research", name="Research <https://evil.example|Pay>"),),
        spend_limits=(SpendLimit(scope="organization", threshold_cents=100000),),
        credit_grants=(
            CreditGrant(
                id="grant_a",
                grant_amount_usd=Decimal(100),
                used_amount_usd=Decimal(30),
                expires_at=poll_time + timedelta(days=5),
            ),
        ),
        conditions=("session_key_rejected",),
        failures=(
            SourceFailure(source="credit_grants", kind="key", detail="401 session key rejected"),
            SourceFailure(source="usage_images", kind="unavailable", detail="HTTP 502 after 4 attempts"),
        ),
        sources_ok=("costs",),
    )


@pytest.mark.usefixtures("configure")
def test_alert_rules_first_run_sends_every_rule_once_in_one_message(
    pipeline: LocalPipeline, slack: FakeSlack, clock: dict[str, datetime]
) -> None:
    clock["now"] = T0 + timedelta(minutes=2)
    write(pipeline, everything_at_once(T0))
    pipeline.deliver()
    [text] = texts(slack)
    expected = [
        "100.0% of the monthly budget reached: $950.00 of $500.00 spent",
        'Project "Research &lt;https://evil.example|Pay&gt;": 80.0% of its monthly budget reached',
        "90.0% of the hard limit reached: $950.00 of the $1,000.00 hard limit spent (95.0%)",
        'Credit grant "grant_a" expires in 5 days',
        "The session key was rejected",
        'Data source "usage_images" failed 1 poll in a row (unavailable): HTTP 502 after 4 attempts',
        "(2 min before this message)",
    ]
    for line in expected:
        assert line in text
    assert text.count("Credit grant") == 1  # the 30- and 7-day lead times are one line
    assert 'Data source "credit_grants"' not in text  # the rejected session key already says it
    assert "<!channel>" not in text and "<https://evil" not in text
    states = boto3.client("dynamodb").scan(TableName=pipeline.tables["AlertStateTable"])["Items"]
    keys = sorted(item["alert_key"]["S"] for item in states)
    assert "grant.expiry#grant_a#30d#slack" in keys and "grant.expiry#grant_a#7d#slack" in keys
    assert all(item["version"]["N"] == "1" for item in states)


@pytest.mark.usefixtures("configure")
def test_alert_rules_redelivered_and_replayed_records_send_once(
    pipeline: LocalPipeline, slack: FakeSlack, clock: dict[str, datetime]
) -> None:
    write(pipeline, everything_at_once(T0))
    assert pipeline.pump is not None and pipeline.alerter is not None
    records = pipeline.pump.read_new()
    for _ in range(3):  # at-least-once: the same batch arrives again
        pipeline.pump.deliver(pipeline.alerter.lambda_handler, FakeLambdaContext(), records=records)
    clock["now"] = T0 + 30 * timedelta(minutes=1)
    replay = pipeline.pump.read_all()  # a replayed batch (e.g. a DLQ redrive) well after the fact
    pipeline.pump.deliver(pipeline.alerter.lambda_handler, FakeLambdaContext(), records=replay)
    assert len(slack.messages) == 1


@pytest.mark.usefixtures("configure")
def test_alert_rules_hard_limit_repeats_on_its_interval_and_resolves_once(
    pipeline: LocalPipeline, slack: FakeSlack, clock: dict[str, datetime]
) -> None:
    limits = (SpendLimit(scope="organization", threshold_cents=100000),)
    for hour, mtd in enumerate(["950", "955", "960", "965", "970"]):
        clock["now"] = T0 + hour * HOUR
        write(pipeline, snapshot(T0 + hour * HOUR, mtd, spend_limits=limits))
        pipeline.deliver()
    hard = [t for t in texts(slack) if "hard limit" in t]
    assert len(hard) == 3  # t0, t0 + 2h, t0 + 4h
    assert "Still: 90.0% of the hard limit reached" in hard[1]
    # The limit is raised: the alert resolves once (send_resolved is on for hard limits), then stays quiet.
    raised = (SpendLimit(scope="organization", threshold_cents=500000),)
    for hour in (5, 6):
        clock["now"] = T0 + hour * HOUR
        write(pipeline, snapshot(T0 + hour * HOUR, "975", spend_limits=raised))
        pipeline.deliver()
    resolved = [t for t in texts(slack) if "Back under 90.0% of the hard limit" in t]
    assert len(resolved) == 1


@pytest.mark.usefixtures("configure")
def test_alert_rules_grant_lead_times_fire_once_each(
    pipeline: LocalPipeline, slack: FakeSlack, clock: dict[str, datetime]
) -> None:
    def with_grant(poll_time: datetime) -> Snapshot:
        grant = CreditGrant(
            id="grant_b", grant_amount_usd=Decimal(50), used_amount_usd=Decimal(0), expires_at=T0 + timedelta(days=10)
        )
        return snapshot(poll_time, credit_grants=(grant,))

    for moment in (T0, T0 + HOUR, T0 + timedelta(days=4), T0 + timedelta(days=4, hours=1)):
        clock["now"] = moment
        write(pipeline, with_grant(moment))
        pipeline.deliver()
    grants = [t for t in texts(slack) if "Credit grant" in t]
    assert len(grants) == 2
    assert 'Credit grant "grant_b" expires in 10 days' in grants[0]
    assert 'Credit grant "grant_b" expires in 6 days' in grants[1]


def test_alert_rules_silence_holds_back_until_it_ends(
    pipeline: LocalPipeline, slack: FakeSlack, clock: dict[str, datetime], configure: Callable[[str], None]
) -> None:
    configure("silences:\n  - {org: sim, rule: budget, until: 2026-11-21T14:00:00Z, reason: load test}\n")
    write(pipeline, snapshot(T0, "430"))
    pipeline.deliver()
    assert slack.messages == []
    clock["now"] = T0 + 2 * HOUR
    write(pipeline, snapshot(T0 + 2 * HOUR, "431"))
    pipeline.deliver()
    [text] = texts(slack)
    assert "80.0% of the monthly budget reached" in text


def test_alert_rules_history_from_the_snapshots_table_and_concurrent_invocations_send_once(
    pipeline: LocalPipeline, slack: FakeSlack, configure: Callable[[str], None]
) -> None:
    # What the alerter does once it passes history: three failing polls in a row, read back from DynamoDB.
    failing = (SourceFailure(source="costs", kind="unavailable", detail="HTTP 502 from the costs endpoint"),)
    polls = [snapshot(T0 + hour * HOUR, failures=failing) for hour in range(3)]
    write(pipeline, *polls)
    snapshots = SnapshotStore(pipeline.tables["SnapshotsTable"])
    history = snapshots.recent_snapshots("sim", since=history_since(polls[-1]))
    assert [s.poll_time for s in history] == [p.poll_time for p in reversed(polls)]
    config = parse_config(RULES_CONFIG.format(extra="").replace("failing_polls: 1", "failing_polls: 3"), "t")
    outcomes: list[Any] = []
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def invocation() -> None:
        states = AlertStateStore(pipeline.tables["AlertStateTable"])
        sender = WebhookPoster(slack.webhook_url)
        start.wait(timeout=30)
        try:
            outcomes.append(
                process_snapshot(
                    polls[-1],
                    config=config,
                    states=states,
                    sender_for=lambda name, channel: sender,
                    now=lambda: T0 + 2 * HOUR,
                    history=history,
                )
            )
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=invocation) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert len(slack.messages) == 1
    assert 'Data source "costs" failed 3 polls in a row' in texts(slack)[0]
    assert sum(len(o.sent) for o in outcomes) == 1
    # A loser that met the winner's live claim fails its record for a retry (never skips it); the retry,
    # after the winner recorded the alert, sends nothing.
    busy = [f for o in outcomes for f in o.failures]
    assert all((f.reason, f.retryable) == ("claim_busy", True) for f in busy)
    retry = process_snapshot(
        polls[-1],
        config=config,
        states=AlertStateStore(pipeline.tables["AlertStateTable"]),
        sender_for=lambda name, channel: WebhookPoster(slack.webhook_url),
        now=lambda: T0 + 2 * HOUR,
        history=history,
    )
    assert (retry.sent, retry.failures) == ([], [])
    # the earlier polls, delivered late, are superseded by the newest one of the same month
    late = process_snapshot(
        polls[0],
        config=config,
        states=AlertStateStore(pipeline.tables["AlertStateTable"]),
        sender_for=lambda name, channel: WebhookPoster(slack.webhook_url),
        now=lambda: T0 + 3 * HOUR,
        history=history,
    )
    assert late.superseded_by == polls[-1].poll_time
    assert len(slack.messages) == 1
