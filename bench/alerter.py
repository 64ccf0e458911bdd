"""Alerter throughput and end-to-end latency on the local pipeline.

1. Pure rules: snapshot stream records decoded and evaluated (rules + notify decision), no I/O.
2. With the state store: `AlerterApp.handle_record` on the same records against the local DynamoDB
   (notification-log BatchGetItem, claims), with a sender that does nothing; then with the history read
   as well, in steady state (10 days of hourly polls stored with their summaries): once as the alerter
   reads it (summaries, as far back as the decision needs) and once reading the newest 64 whole
   snapshots, as it did before summaries existed, for the ratio. Read units per record are DynamoDB
   Local's own `ConsumedCapacity` (moto's server reports a constant, so they are left out there).
3. End to end: snapshot written to the table -> stream read -> alerter handler -> Slack message received
   by the local Slack stand-in (median and p95).

Uses AWS's DynamoDB Local when `make test` has installed it (.tools/dynamodb-local), else moto's server;
`SPENDWATCH_BENCH_DYNAMODB=moto` forces moto's server.
"""

from __future__ import annotations

import contextlib
import io
import os
import statistics
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from spendwatch.alerter.app import AlerterApp
from spendwatch.alerter.decide import should_notify
from spendwatch.alerter.process import policy_for
from spendwatch.alerter.rules import HISTORY_DAYS, evaluate
from spendwatch.aws.store import AlertStateStore, SnapshotStore, from_attribute_map, to_attribute_map
from spendwatch.core.alerts import Message
from spendwatch.core.config import SpendwatchConfig, parse_config
from spendwatch.core.snapshot import Snapshot, SnapshotSummary, org_pk, snapshot_sk
from spendwatch.devtools.aws_local import dynamodb_local_jar
from spendwatch.devtools.fake_openai import FakeOpenAI
from spendwatch.devtools.fake_slack import FakeSlack
from spendwatch.devtools.pipeline import FakeLambdaContext, LocalPipeline
from spendwatch.devtools.simulated_org import SimulatedOrg
from spendwatch.devtools.stream import snapshot_inserts
from spendwatch.poller.collect import attribute_size

ROOT = Path(__file__).resolve().parents[1]
ADMIN_KEY = "sk-admin-bench-key"
NOW = datetime(2026, 11, 21, 23, tzinfo=UTC)
PURE_RECORDS = 2000
STORE_RECORDS = 100
WHOLE_RECORDS = 20
LATENCY_RUNS = 20
CONFIG = """
organizations:
  - {id: sim, name: Bench Org, budget: {monthly_usd: 500}, channels: [slack]}
channels:
  slack: {type: slack}
"""


class NullSender:
    kind = "slack"

    def __init__(self, name: str) -> None:
        self.name = name
        self.sent = 0

    def send(self, message: Message) -> None:
        self.sent += 1


def quietly(fn: Callable[[], Any]) -> Any:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return fn()


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:9.0f} records/s  ({seconds / count * 1000:6.2f} ms each, {count} records)"


def sample_record(pipe: LocalPipeline, openai: FakeOpenAI, slack: FakeSlack) -> dict[str, Any]:
    """One real snapshot INSERT record, as the poller writes it and Lambda delivers it."""
    pipe.configure(
        CONFIG,
        {"/spendwatch/sim/openai-admin-key": ADMIN_KEY, "/spendwatch/slack/webhook-url": slack.webhook_url},
        {"OPENAI_BASE_URL": openai.base_url},
    )
    quietly(lambda: pipe.poll(NOW))
    assert pipe.pump is not None
    [record] = snapshot_inserts(pipe.pump.read_new())
    return record


def records_at(record: dict[str, Any], count: int, start: datetime) -> list[dict[str, Any]]:
    """`count` copies of the record, one poll period apart (distinct snapshots of the same org)."""
    base = Snapshot.from_item(from_attribute_map(record["dynamodb"]["NewImage"]))
    out = []
    for i in range(count):
        snapshot = base.model_copy(update={"poll_time": start + timedelta(hours=i)})
        image = to_attribute_map(snapshot.to_item(expires_at=2_000_000_000))
        out.append({**record, "dynamodb": {**record["dynamodb"], "NewImage": image, "SequenceNumber": str(10**20 + i)}})
    return out


def bench_pure(records: list[dict[str, Any]], config: SpendwatchConfig) -> tuple[float, float]:
    org = config.organizations[0]
    decoded = [Snapshot.from_item(from_attribute_map(r["dynamodb"]["NewImage"])) for r in records]

    def decide(snapshot: Snapshot) -> int:
        notified = 0
        for obs in evaluate(snapshot, org, now=NOW):
            decision = should_notify(None, obs, policy_for(obs.rule_id, org, config, NOW), NOW)
            notified += decision.notify
        return notified

    started = time.perf_counter()
    for snapshot in decoded:
        decide(snapshot)
    rules_only = time.perf_counter() - started
    started = time.perf_counter()
    for record in records:
        decide(Snapshot.from_item(from_attribute_map(record["dynamodb"]["NewImage"])))
    with_decode = time.perf_counter() - started
    return rules_only, with_decode


class WholeSnapshotHistory(SnapshotStore):
    """The history read before summaries existed, for comparison: the newest 64 snapshots since `since`
    (a projection of the history fields, which DynamoDB bills as whole items)."""

    def history(
        self, org_id: str, *, since: datetime, limit: int = 64, first_pages: tuple[int, ...] = ()
    ) -> Iterator[Snapshot]:
        items = self._query(org_pk(org_id), snapshot_sk(since), "SNAP#~", limit, self.HISTORY_FIELDS)
        yield from (Snapshot.from_item(item) for item in items)


class ReadUnits:
    """Sums the `ConsumedCapacity` DynamoDB reports for the Query calls made through a client."""

    def __init__(self, client: Any) -> None:
        self.units = 0.0
        client.meta.events.register("provide-client-params.dynamodb.Query", self._ask)
        client.meta.events.register("after-call.dynamodb.Query", self._count)

    @staticmethod
    def _ask(params: dict[str, Any], **_: Any) -> None:
        params["ReturnConsumedCapacity"] = "TOTAL"

    def _count(self, parsed: dict[str, Any], **_: Any) -> None:
        self.units += float(parsed.get("ConsumedCapacity", {}).get("CapacityUnits", 0))


def bench_store(
    pipe: LocalPipeline,
    records: list[dict[str, Any]],
    config: SpendwatchConfig,
    *,
    history: type[SnapshotStore] | None,
) -> tuple[float, float]:
    """Seconds for the records after the first, and the snapshots table's read units per record."""

    def factory(remaining: Callable[[], float]) -> Callable[[str, Any], NullSender]:
        return lambda name, channel: NullSender(name)

    # The old whole-snapshot read takes longer than the store's few-second read timeout on a loaded
    # machine's moto server (its 64 items are ~770 KB): give the comparison a patient client.
    patient = boto3.client("dynamodb", config=Config(read_timeout=120, retries={"max_attempts": 1}))
    snapshots = history(pipe.tables["SnapshotsTable"], patient) if history else None
    units = ReadUnits(snapshots._client) if snapshots else None
    app = AlerterApp(
        config=lambda: config,
        states=AlertStateStore(pipe.tables["AlertStateTable"]),
        sender_for=factory,
        snapshots=snapshots,
    )
    quietly(lambda: app.handle_record(records[0]))  # warm the clients
    before = units.units if units else 0.0
    started = time.perf_counter()
    quietly(lambda: [app.handle_record(record) for record in records[1:]])
    elapsed = time.perf_counter() - started
    return elapsed, ((units.units - before) / (len(records) - 1) if units else 0.0)


def write_history(pipe: LocalPipeline, record: dict[str, Any], end: datetime) -> None:
    """HISTORY_DAYS of hourly snapshots before `end`, each with its summary (the items the poller writes):
    what the history Query meets in steady state.

    Written with two plain puts each, not the poller's transaction: moto's server deep-copies the whole
    table for every TransactWriteItems, which makes 240 of them take minutes and gigabytes."""
    ddb = SnapshotStore(pipe.tables["SnapshotsTable"])._client
    start = end - timedelta(days=HISTORY_DAYS)
    for earlier in records_at(record, HISTORY_DAYS * 24, start):
        snapshot = Snapshot.from_item(from_attribute_map(earlier["dynamodb"]["NewImage"]))
        summary = SnapshotSummary.of(snapshot)
        for item in (snapshot.to_item(expires_at=2_000_000_000), summary.to_item(expires_at=2_000_000_000)):
            ddb.put_item(TableName=pipe.tables["SnapshotsTable"], Item=to_attribute_map(item))


def bench_latency(pipe: LocalPipeline, slack: FakeSlack, record: dict[str, Any]) -> list[float]:
    """One new organization per run, so each snapshot crosses a threshold and is posted (no resets between)."""
    snapshot = Snapshot.from_item(from_attribute_map(record["dynamodb"]["NewImage"]))
    orgs = "".join(
        f"  - {{id: org{run}, name: Org {run}, budget: {{monthly_usd: 500}}, channels: [slack]}}\n"
        for run in range(LATENCY_RUNS + 1)
    )
    pipe.reset()
    slack.reset()
    pipe.configure(
        f"organizations:\n{orgs}channels:\n  slack: {{type: slack}}\n",
        {"/spendwatch/slack/webhook-url": slack.webhook_url},
    )
    ddb = SnapshotStore(pipe.tables["SnapshotsTable"])._client
    latencies = []
    for run in range(LATENCY_RUNS + 1):
        copy = snapshot.model_copy(update={"org_id": f"org{run}", "org_name": f"Org {run}"})
        item = to_attribute_map(copy.to_item(expires_at=2_000_000_000))
        time.sleep(1.0)  # stay under the pacing interval: measure delivery, not Slack's rate limit
        started = time.perf_counter()
        ddb.put_item(TableName=pipe.tables["SnapshotsTable"], Item=item)
        quietly(lambda: pipe.deliver(FakeLambdaContext()))
        slack.wait_for(run + 1)
        if run:  # the first run pays the handler's cold start
            latencies.append(time.perf_counter() - started)
    return latencies


def item_bytes(item: dict[str, Any]) -> int:
    """An item's size as DynamoDB bills it: attribute names plus values."""
    return sum(len(name.encode("utf-8")) + attribute_size(value) for name, value in item.items())


def read_costs(record: dict[str, Any]) -> str:
    """Bytes and read units of the usual history read (one Query of four summaries) and of the old one (the
    64 newest whole snapshots): a Query bills its items' summed size, rounded up to 4 KB per strongly
    consistent read unit; an eventually consistent read (the alerter's) costs half."""
    snapshot = Snapshot.from_item(from_attribute_map(record["dynamodb"]["NewImage"]))
    summary = item_bytes(SnapshotSummary.of(snapshot).to_item(expires_at=2_000_000_000))
    whole = item_bytes(snapshot.to_item(expires_at=2_000_000_000))
    lines = []
    for what, count, size in (("4 summaries", 4, summary), ("64 whole snapshots", 64, whole)):
        units = -(-count * size // 4096)
        lines.append(f"{what}: {count} x {size:,} B = {count * size:,} B, {units} read units ({units / 2:g} eventual)")
    return "; ".join(lines)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def main() -> None:
    install = os.environ.get("SPENDWATCH_DYNAMODB_LOCAL_DIR") or str(ROOT / ".tools" / "dynamodb-local")
    jar = None if os.environ.get("SPENDWATCH_BENCH_DYNAMODB") == "moto" else dynamodb_local_jar(install)
    config = parse_config(CONFIG, "bench config")
    with (
        FakeOpenAI(SimulatedOrg.default(NOW), admin_key=ADMIN_KEY) as openai,
        FakeSlack() as slack,
        LocalPipeline(dynamodb_local_jar=jar) as pipe,
    ):
        record = sample_record(pipe, openai, slack)
        rules_only, with_decode = bench_pure(records_at(record, PURE_RECORDS, NOW), config)
        later = NOW + timedelta(days=30)  # past the sample's own month state
        store_s, _ = bench_store(pipe, records_at(record, STORE_RECORDS + 1, later), config, history=None)
        mid_month = later + timedelta(days=30)  # January 20th, 23:00
        write_history(pipe, record, mid_month)
        records = records_at(record, STORE_RECORDS + 1, mid_month)
        history_s, history_units = bench_store(pipe, records, config, history=SnapshotStore)
        # Early in a month the alerter also reads back to a poll of the month before (days two months back).
        early_month = datetime(2027, 2, 3, 5, tzinfo=UTC)
        write_history(pipe, record, early_month)
        early = records_at(record, WHOLE_RECORDS + 1, early_month)
        early_s, early_units = bench_store(pipe, early, config, history=SnapshotStore)
        # 20 records: on moto's server each takes seconds this way.
        whole_s, whole_units = bench_store(pipe, records[: WHOLE_RECORDS + 1], config, history=WholeSnapshotHistory)
        latencies = bench_latency(pipe, slack, record)
        kind = pipe.dynamodb_kind
    size = len(str(record["dynamodb"]["NewImage"]))
    print(f"alerter throughput (snapshot record of ~{size / 1024:.0f} KB as DynamoDB JSON; {kind}):")
    print(f"  pure rules (evaluate + decide)              {rate(PURE_RECORDS, rules_only)}")
    print(f"  decode record + rules                       {rate(PURE_RECORDS, with_decode)}")
    print(f"  handle_record with the state store          {rate(STORE_RECORDS, store_s)}")
    print(f"  ... and the history read ({HISTORY_DAYS} d hourly, 64 polls):")
    print(f"      summaries, as far back as needed        {rate(STORE_RECORDS, history_s)}")
    print(f"      ... early in a month (back to January)  {rate(WHOLE_RECORDS, early_s)}")
    print(f"      64 whole snapshots (before summaries)   {rate(WHOLE_RECORDS, whole_s)}")
    speedup = (STORE_RECORDS / history_s) / (WHOLE_RECORDS / whole_s)
    print(f"      summaries / whole snapshots             {speedup:9.1f}x the records per second")
    print(f"      with history / without                  {store_s / history_s:9.2f}x the records per second")
    if kind == "DynamoDB Local":
        units = f"{history_units:4.1f} (early in a month {early_units:4.1f}) vs {whole_units:4.1f}"
        print(f"      snapshots-table read units per record   {units}  (eventually consistent)")
    print(f"      one record's history read, billed      {read_costs(record)}")
    median = statistics.median(latencies) * 1000
    print(f"end to end, snapshot write -> Slack message received ({LATENCY_RUNS} runs, warm):")
    p95 = percentile(latencies, 95) * 1000
    print(f"  median {median:6.1f} ms   p95 {p95:6.1f} ms   max {max(latencies) * 1000:6.1f} ms")


if __name__ == "__main__":
    main()
