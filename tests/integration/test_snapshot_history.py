"""The alerter's history over a real DynamoDB API: each snapshot is written with its summary in one
transaction, history is read from the summaries (a few hundred bytes per poll), snapshots stored before
summaries existed are read whole, and the daily costs an earlier poll holds are read when the record lacks
them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
from botocore.exceptions import ClientError

from spendwatch.alerter.app import AlerterApp
from spendwatch.aws.store import AlertStateStore, SnapshotStore, from_attribute_map, to_attribute_map
from spendwatch.core.alerts import Message
from spendwatch.core.config import parse_config
from spendwatch.core.snapshot import (
    HISTORY_KIND,
    HISTORY_SOURCES,
    DailyCost,
    Snapshot,
    SnapshotSummary,
    SourceFailure,
    history_sk,
    snapshot_sk,
)
from spendwatch.devtools.pipeline import LocalPipeline
from spendwatch.poller.collect import attribute_size

NOW = datetime(2026, 12, 2, 5, tzinfo=UTC)
BOTH_MONTHS = ("costs", "costs_previous_month", "projects")


def snapshot(
    moment: datetime, *, ok: tuple[str, ...] = BOTH_MONTHS, failed: tuple[str, ...] = (), **extra: Any
) -> Snapshot:
    this_month = moment.date().replace(day=1)
    first = (this_month - timedelta(days=1)).replace(day=1) if "costs_previous_month" in ok else this_month
    days = [first + timedelta(days=n) for n in range((moment.date() - first).days + 1)]
    if "costs" not in ok:
        days = [d for d in days if d < this_month]
    return Snapshot(
        org_id="sim",
        org_name="Simulated Org",
        poll_time=moment,
        collected_at=moment + timedelta(seconds=30),
        month_to_date_usd=Decimal("12.5") if "costs" in ok else None,
        daily_costs_usd=tuple(DailyCost(day=d, amount_usd=Decimal("10")) for d in days),
        failures=tuple(SourceFailure(source=s, kind="unavailable", detail="HTTP 502") for s in failed),
        sources_ok=tuple(s for s in ok if s not in failed),  # a source that failed did not answer
        **extra,
    )


def write_polls(pipeline: LocalPipeline, polls: list[Snapshot]) -> None:
    """The items `put_snapshot` writes, with plain puts: moto's server deep-copies the whole table for each
    TransactWriteItems, which makes dozens of them slow there (test_put_snapshot_... covers the real write)."""
    ddb = boto3.client("dynamodb")
    for poll in polls:
        for item in (
            poll.to_item(expires_at=2_000_000_000),
            SnapshotSummary.of(poll).to_item(expires_at=2_000_000_000),
        ):
            ddb.put_item(TableName=pipeline.tables["SnapshotsTable"], Item=to_attribute_map(item))


def stored(pipeline: LocalPipeline) -> dict[str, dict[str, Any]]:
    items = boto3.client("dynamodb").scan(TableName=pipeline.tables["SnapshotsTable"])["Items"]
    return {item["sk"]["S"]: from_attribute_map(item) for item in items}


def test_put_snapshot_writes_the_snapshot_and_its_summary_once(pipeline: LocalPipeline) -> None:
    store = SnapshotStore(pipeline.tables["SnapshotsTable"])
    first = snapshot(NOW, failed=("admin_key",), conditions=("session_key_rejected",))
    assert store.put_snapshot(first, expires_at=2_000_000_000) is True
    items = stored(pipeline)
    assert set(items) == {snapshot_sk(NOW), history_sk(NOW)}
    summary = items[history_sk(NOW)]
    assert (summary["pk"], summary["kind"], summary["expires_at"]) == ("ORG#sim#HISTORY", HISTORY_KIND, 2_000_000_000)
    assert len(str(to_attribute_map(summary))) < 600, "a few hundred bytes, against ~12 KB for a snapshot"
    # The retry of the same poll writes neither item (and so causes no second stream INSERT).
    retry = snapshot(NOW, ok=("projects",), failed=("costs", "costs_previous_month"))
    assert store.put_snapshot(retry, expires_at=2_000_000_000) is False
    assert stored(pipeline) == items


def test_recent_history_reads_summaries_newest_first(pipeline: LocalPipeline) -> None:
    store = SnapshotStore(pipeline.tables["SnapshotsTable"])
    write_polls(
        pipeline, [snapshot(NOW - timedelta(hours=h), failed=("usage_images",) if h % 2 else ()) for h in range(70)]
    )
    queries: list[dict[str, Any]] = []
    store._client.meta.events.register(
        "provide-client-params.dynamodb.Query", lambda params, **_: queries.append(params)
    )
    history = store.recent_history("sim", since=NOW - timedelta(days=10), limit=64)
    assert [h.poll_time for h in history] == [NOW - timedelta(hours=h) for h in range(64)]
    assert [f.source for f in history[1].failures] == ["usage_images"] and history[0].failures == ()
    assert history[5].month_to_date_usd == Decimal("12.5")
    assert history[5].sources_ok == BOTH_MONTHS
    assert all(h.daily_costs_usd == () for h in history), "the heavy series is not read"
    assert len(queries) == 1, "64 summaries fill the limit: no look for older snapshots"


def test_recent_history_across_the_upgrade_reads_older_snapshots_whole(pipeline: LocalPipeline) -> None:
    """Snapshots stored before summaries existed (no summary item) still make up the history."""
    store = SnapshotStore(pipeline.tables["SnapshotsTable"])
    ddb = boto3.client("dynamodb")
    for hour in range(3, 8):  # the previous release: the snapshot alone
        old = snapshot(NOW - timedelta(hours=hour), failed=("costs_by_project",))
        ddb.put_item(
            TableName=pipeline.tables["SnapshotsTable"], Item=to_attribute_map(old.to_item(expires_at=2_000_000_000))
        )
    for hour in range(3):
        store.put_snapshot(snapshot(NOW - timedelta(hours=hour)), expires_at=2_000_000_000)
    history = store.recent_history("sim", since=NOW - timedelta(days=10), limit=64)
    assert [h.poll_time for h in history] == [NOW - timedelta(hours=h) for h in range(8)]
    assert all(h.daily_costs_usd == () for h in history[:3])
    assert all(h.daily_costs_usd and h.failures[0].source == "costs_by_project" for h in history[3:])
    limited = store.recent_history("sim", since=NOW - timedelta(days=10), limit=5)
    assert [h.poll_time for h in limited] == [NOW - timedelta(hours=h) for h in range(5)]


def test_recent_history_stops_looking_for_older_snapshots_once_there_are_none(pipeline: LocalPipeline) -> None:
    """An org polled less often than 64 times in the window: the look for snapshots without a summary
    finds none once, and this container does not repeat it for later records."""
    store = SnapshotStore(pipeline.tables["SnapshotsTable"])
    for day in range(3):
        store.put_snapshot(snapshot(NOW - timedelta(days=day)), expires_at=2_000_000_000)
    queries: list[str] = []
    store._client.meta.events.register(
        "provide-client-params.dynamodb.Query",
        lambda params, **_: queries.append(params["ExpressionAttributeValues"][":low"]["S"]),
    )
    assert len(store.recent_history("sim", since=NOW - timedelta(days=10))) == 3
    assert [q[:5] for q in queries] == ["HIST#", "SNAP#"]
    queries.clear()
    assert len(store.recent_history("sim", since=NOW - timedelta(days=9))) == 3
    assert [q[:5] for q in queries] == ["HIST#"]


def test_daily_costs_reads_one_polls_series(pipeline: LocalPipeline) -> None:
    store = SnapshotStore(pipeline.tables["SnapshotsTable"])
    poll = snapshot(NOW - timedelta(hours=2))
    store.put_snapshot(poll, expires_at=2_000_000_000)
    found = store.daily_costs("sim", [poll.poll_time, NOW - timedelta(hours=9)])
    assert found == {poll.poll_time: poll.daily_costs_usd}


SPIKE_CONFIG = """
organizations:
  - id: sim
    name: Simulated Org
    channels: [slack]
    rules:
      spike: {factor: 3, baseline_days: 7, min_usd: 10}
      budget: {enabled: false}
      forecast: {enabled: false}
      health: {enabled: false}
channels:
  slack: {type: slack}
"""


class Capture:
    kind = "slack"

    def __init__(self, name: str) -> None:
        self.name = name
        self.sent: list[Message] = []

    def send(self, message: Message) -> None:
        self.sent.append(message)


def test_alerter_spike_across_the_month_boundary_uses_an_earlier_polls_costs(pipeline: LocalPipeline) -> None:
    """On December 2nd the record's previous-month query failed: November's baseline comes from the poll
    an hour earlier, read for its daily costs, so yesterday's (December 1st) spike is still reported."""
    store = SnapshotStore(pipeline.tables["SnapshotsTable"])
    earlier = snapshot(NOW - timedelta(hours=1))  # read both months: November at $10 a day
    store.put_snapshot(earlier, expires_at=2_000_000_000)
    spike = tuple(
        DailyCost(day=c.day, amount_usd=Decimal(100) if c.day.day == 1 else c.amount_usd)
        for c in snapshot(NOW, ok=("costs", "projects")).daily_costs_usd
    )
    current = snapshot(NOW, ok=("costs", "projects"), failed=("costs_previous_month",)).model_copy(
        update={"daily_costs_usd": spike}
    )
    store.put_snapshot(current, expires_at=2_000_000_000)
    captured: dict[str, Capture] = {}

    def factory(remaining: Callable[[], float]) -> Callable[[str, Any], Capture]:
        return lambda name, channel: captured.setdefault(name, Capture(name))

    config = parse_config(SPIKE_CONFIG, "t.yaml")
    app = AlerterApp(
        config=lambda: config,
        states=AlertStateStore(pipeline.tables["AlertStateTable"]),
        sender_for=factory,
        now=lambda: NOW,
        snapshots=store,
    )
    record = {"eventName": "INSERT", "dynamodb": {"NewImage": to_attribute_map(current.to_item(expires_at=1))}}
    app.handle_record(record)
    [message] = captured.setdefault("slack", Capture("slack")).sent
    assert "spike" in message.text.lower()
    assert "2026-12-01" in message.text


def test_alerter_reads_only_the_history_it_needs(pipeline: LocalPipeline) -> None:
    """Mid-month, nothing failing and both cost months read: the record's own poll and the one before
    decide everything, so the history read is one Query of four summaries; a failing source makes the
    alerter read back to where that source last succeeded. (Early in a month it also reads back to a poll
    of the month before, for the days two months back.)"""
    mid = NOW + timedelta(days=18)
    store = SnapshotStore(pipeline.tables["SnapshotsTable"])
    earlier = [snapshot(mid - timedelta(hours=h), failed=("projects",) if h < 6 else ()) for h in range(1, 70)]
    write_polls(pipeline, earlier)
    queries: list[dict[str, Any]] = []
    store._client.meta.events.register(
        "provide-client-params.dynamodb.Query", lambda params, **_: queries.append(dict(params))
    )
    config = parse_config(SPIKE_CONFIG, "t.yaml")
    app = AlerterApp(
        config=lambda: config,
        states=AlertStateStore(pipeline.tables["AlertStateTable"]),
        sender_for=lambda remaining: lambda name, channel: Capture(name),
        now=lambda: mid,
        snapshots=store,
    )
    healthy = snapshot(mid)
    store.put_snapshot(healthy, expires_at=2_000_000_000)
    history = app._history(healthy)
    assert history is not None and [h.poll_time for h in history][:2] == [mid, mid - timedelta(hours=1)]
    assert [(q["ExpressionAttributeValues"][":pk"]["S"], q["Limit"]) for q in queries] == [("ORG#sim#HISTORY", 4)]
    queries.clear()
    failing = snapshot(mid - timedelta(minutes=30), failed=("projects",))
    store.put_snapshot(failing, expires_at=2_000_000_000)
    history = app._history(failing)
    assert history is not None
    assert history[-1].poll_time == mid - timedelta(hours=6), "back to the poll where projects last succeeded"
    assert [q["Limit"] for q in queries] == [4, 60]


def test_summary_inserts_never_reach_the_alerter(pipeline: LocalPipeline) -> None:
    """The stream carries both INSERTs of a poll; the mapping's filter passes the snapshot's only."""
    store = SnapshotStore(pipeline.tables["SnapshotsTable"])
    store.put_snapshot(snapshot(NOW), expires_at=2_000_000_000)
    assert pipeline.pump is not None
    records = pipeline.pump.read_all()
    assert sorted(r["dynamodb"]["NewImage"]["kind"]["S"] for r in records) == ["history", "snapshot"]
    seen: list[str] = []

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        seen.extend(r["dynamodb"]["NewImage"]["kind"]["S"] for r in event["Records"])
        return {"batchItemFailures": []}

    stats = pipeline.pump.deliver(handler, None)
    assert seen == ["snapshot"]
    assert stats.filtered_out == 1


def test_history_read_is_a_few_kilobytes(pipeline: LocalPipeline) -> None:
    """64 polls of history: DynamoDB reads (and bills, 4 KB per half read unit when eventually
    consistent) the items' sizes, whatever the projection; the summaries' are a few KB in all."""
    full = snapshot(NOW, ok=tuple(HISTORY_SOURCES))
    write_polls(pipeline, [full.model_copy(update={"poll_time": NOW - timedelta(hours=h)}) for h in range(64)])
    sizes = {k: sum(len(n) + attribute_size(v) for n, v in item.items()) for k, item in stored(pipeline).items()}
    summaries = sum(size for k, size in sizes.items() if k.startswith("HIST#"))
    snapshots = sum(size for k, size in sizes.items() if k.startswith("SNAP#"))
    assert summaries / 64 < 250
    assert summaries < 16_000 < snapshots


HEALTH_CONFIG = """
organizations:
  - id: sim
    name: Simulated Org
    channels: [slack, ops]
    rules:
      spike: {enabled: false}
      budget: {enabled: false}
      forecast: {enabled: false}
      health: {failing_polls: 3}
channels:
  slack: {type: slack}
  ops: {type: slack}
"""


def test_alerter_reads_every_channels_log_in_one_batch(pipeline: LocalPipeline) -> None:
    """The notification-log entries a record decides on, the keys its history brings included (a
    failing-source streak), are read in one batch for all its channels; each alert is still sent once per
    channel, however often the record is delivered."""
    mid = NOW + timedelta(days=18)
    store = SnapshotStore(pipeline.tables["SnapshotsTable"])
    states = AlertStateStore(pipeline.tables["AlertStateTable"])
    write_polls(pipeline, [snapshot(mid - timedelta(hours=h), failed=("projects",)) for h in (2, 1)])
    reads: list[list[str]] = []

    def seen(params: dict[str, Any], **_: Any) -> None:
        reads.append([k["sk"]["S"] for table in params["RequestItems"].values() for k in table["Keys"]])

    states._client.meta.events.register("provide-client-params.dynamodb.BatchGetItem", seen)
    captured: dict[str, Capture] = {}
    config = parse_config(HEALTH_CONFIG, "t.yaml")
    app = AlerterApp(
        config=lambda: config,
        states=states,
        sender_for=lambda remaining: lambda name, channel: captured.setdefault(name, Capture(name)),
        now=lambda: mid,
        snapshots=store,
    )
    current = snapshot(mid, failed=("projects",))
    store.put_snapshot(current, expires_at=2_000_000_000)
    record = {"eventName": "INSERT", "dynamodb": {"NewImage": to_attribute_map(current.to_item(expires_at=1))}}
    app.handle_record(record)

    [keys] = reads
    assert {k.rsplit("#", 1)[1] for k in keys} == {"slack", "ops"}, "one read for both channels"
    assert {"ALERT#health.source#projects#ops", "ALERT#health.source#projects#slack"} <= set(keys)
    for name in ("slack", "ops"):
        [message] = captured[name].sent
        assert 'Data source "projects" failed 3 polls in a row' in message.text

    app.handle_record(record)  # redelivered: decided on the states recorded above, nothing sent again
    assert [len(captured[name].sent) for name in ("slack", "ops")] == [1, 1]


def test_store_client_leaves_validation_to_dynamodb_and_a_malformed_request_still_fails(
    pipeline: LocalPipeline,
) -> None:
    """The store's client skips botocore's client-side parameter check (its cost per request): a request
    DynamoDB cannot take still fails, as DynamoDB's own ValidationException."""
    store = SnapshotStore(pipeline.tables["SnapshotsTable"])
    try:
        store._client.query(KeyConditionExpression="pk = :pk", Limit=0)  # type: ignore[call-arg]
    except ClientError as exc:  # botocore would raise ParamValidationError (no TableName, Limit < 1)
        assert exc.response["Error"]["Code"] == "ValidationException", exc.response["Error"]
    else:
        raise AssertionError("a Query without a table must fail")
