"""The poller handler end to end against the local OpenAI server: every source, session key present,
absent and expired, 429 with Retry-After, 5xx, hangs, malformed replies per source, and exact
reconciliation with the simulated organization. Snapshots are read back from the real DynamoDB API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest

from spendwatch.aws.store import from_attribute_map
from spendwatch.core.snapshot import Snapshot
from spendwatch.devtools.fake_openai import FakeOpenAI, MalformedKind
from spendwatch.devtools.pipeline import FakeLambdaContext, LocalPipeline
from spendwatch.devtools.simulated_org import ADMIN_KEY_ID, SimulatedOrg
from spendwatch.devtools.stream import snapshot_inserts
from spendwatch.poller.collect import SOURCE_ORDER, USAGE_SPECS
from spendwatch.poller.openai_api import SESSION_KEY_REJECTED

from .conftest import ADMIN_KEY, POLL_TIME

SESSION_KEY = "sess-integration"
LEGACY_SOURCES = ("credit_grants", "subscription")


def configure(
    pipeline: LocalPipeline,
    openai: FakeOpenAI,
    *,
    session_key: str | None = SESSION_KEY,
    extra: str = "",
    environ: dict[str, str] | None = None,
) -> None:
    config = f"""
organizations:
  - id: sim
    name: Simulated Org
    admin_key_id: {ADMIN_KEY_ID}
{extra}"""
    secrets = {"/spendwatch/sim/openai-admin-key": ADMIN_KEY}
    if session_key is not None:
        secrets["/spendwatch/sim/openai-session-key"] = session_key
    pipeline.configure(config, secrets, {"OPENAI_BASE_URL": openai.base_url, **(environ or {})})


def stored(pipeline: LocalPipeline, poll_time: datetime = POLL_TIME, org_id: str = "sim") -> Snapshot:
    item = boto3.client("dynamodb").get_item(
        TableName=pipeline.tables["SnapshotsTable"],
        Key={"pk": {"S": f"ORG#{org_id}"}, "sk": {"S": f"SNAP#{poll_time:%Y-%m-%dT%H:%M:%SZ}"}},
    )["Item"]
    return Snapshot.from_item(from_attribute_map(item))


def failure(snapshot: Snapshot, source: str) -> Any:
    return next(f for f in snapshot.failures if f.source == source)


def month_usage(org: SimulatedOrg, usage_type: str, metric: str) -> int:
    start = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp())
    return sum(row.metrics.get(metric, 0) for row in org.usage_rows(usage_type) if row.start_time >= start)


def test_poller_collects_every_source_and_reconciles_exactly(pipeline: LocalPipeline, openai: FakeOpenAI) -> None:
    configure(pipeline, openai)
    result = pipeline.poll(POLL_TIME)
    snapshot = stored(pipeline)
    org = openai.org
    assert snapshot.failures == ()
    assert snapshot.sources_ok == SOURCE_ORDER
    assert snapshot.conditions == ()
    # Money: exact, from the wire to DynamoDB and back.
    assert (
        snapshot.month_to_date_usd
        == org.month_to_date_usd()
        == Decimal(result["organizations"]["sim"]["month_to_date_usd"])
    )
    oct_1, nov_1 = (int(datetime(2026, m, 1, tzinfo=UTC).timestamp()) for m in (10, 11))
    assert snapshot.previous_month_usd == org.spend_usd(oct_1, nov_1)
    days = [d.day for d in snapshot.daily_costs_usd]
    assert days[0].isoformat() == "2026-10-01" and days[-1].isoformat() == "2026-11-21"
    assert len(days) == 31 + 21
    assert sum(d.amount_usd for d in snapshot.daily_costs_usd if d.day.month == 11) == snapshot.month_to_date_usd
    assert sum(s.amount_usd for s in snapshot.costs_by_project_usd) == snapshot.month_to_date_usd
    assert sum(s.amount_usd for s in snapshot.costs_by_line_item_usd) == snapshot.month_to_date_usd
    names = {p.id: p.name for p in org.projects}
    assert all(s.name == names[s.key] for s in snapshot.costs_by_project_usd)
    # Usage of every type, month to date.
    assert set(snapshot.usage) == {spec.name for spec in USAGE_SPECS}
    completions = snapshot.usage["completions"]
    for metric in ("input_tokens", "input_cached_tokens", "output_tokens", "num_model_requests"):
        assert completions.totals[metric] == month_usage(org, "completions", metric), metric
    assert sum(v["input_tokens"] for v in completions.by_model.values()) == completions.totals["input_tokens"]
    assert snapshot.usage["images"].totals["images"] == month_usage(org, "images", "images")
    # Projects, limits, alerts, key, legacy billing.
    assert [(p.id, p.status) for p in snapshot.projects] == [(p.id, p.status) for p in org.projects]
    assert org.org_spend_limit is not None
    limits = {(s.scope, s.source): s.threshold_cents for s in snapshot.spend_limits}
    assert limits[("organization", "admin_api")] == org.org_spend_limit.threshold_amount
    for project_id, limit in org.project_spend_limits.items():
        assert limits[(project_id, "admin_api")] == limit.threshold_amount
    assert limits[("organization", "subscription")] == int(org.subscription.hard_limit_usd * 100)
    expected_alerts = {a.id for a in org.org_spend_alerts} | {
        a.id for v in org.project_spend_alerts.values() for a in v
    }
    assert {a.id for a in snapshot.spend_alerts} == expected_alerts
    expires = org.admin_keys[ADMIN_KEY_ID].expires_at
    assert snapshot.admin_key_expires_at == (datetime.fromtimestamp(expires, UTC) if expires else None)
    assert snapshot.credit_summary is not None
    assert snapshot.credit_summary.total_available_usd == org.credit_totals().total_available
    assert [(g.id, g.grant_amount_usd, g.used_amount_usd) for g in snapshot.credit_grants] == [
        (g.id, g.grant_amount, g.used_amount) for g in org.credit_grants
    ]
    assert snapshot.subscription is not None
    assert snapshot.subscription.soft_limit_usd == org.subscription.soft_limit_usd


def test_poller_reconciles_a_larger_org_with_capped_breakdowns(pipeline: LocalPipeline) -> None:
    org = SimulatedOrg.generate(POLL_TIME, project_count=60, line_items_per_project=4, seed=7)
    with FakeOpenAI(org, admin_key=ADMIN_KEY, session_key=SESSION_KEY) as server:
        configure(pipeline, server)
        pipeline.poll(POLL_TIME)
    snapshot = stored(pipeline)
    assert snapshot.failures == ()
    assert snapshot.month_to_date_usd == org.month_to_date_usd()
    assert len(snapshot.costs_by_project_usd) == 51
    assert snapshot.costs_by_project_usd[-1].key == "(other)"
    assert sum(s.amount_usd for s in snapshot.costs_by_project_usd) == snapshot.month_to_date_usd
    assert len(snapshot.projects) == 60


def test_poller_without_session_key_skips_legacy_sources_quietly(pipeline: LocalPipeline, openai: FakeOpenAI) -> None:
    configure(
        pipeline,
        openai,
        session_key=None,
        extra="    credit_grants: [{id: prepaid, amount_usd: 500, used_usd: 120, expires_at: 2027-05-01}]\n",
    )
    pipeline.poll(POLL_TIME)
    snapshot = stored(pipeline)
    assert snapshot.failures == ()
    assert snapshot.conditions == ()
    assert not set(LEGACY_SOURCES) & set(snapshot.sources_ok)
    assert not [r for r in openai.requests_log if r.path.startswith("/dashboard")]
    assert [(g.id, g.source) for g in snapshot.credit_grants] == [("prepaid", "config")]
    assert snapshot.subscription is None


def test_poller_expired_session_key_is_a_named_condition(pipeline: LocalPipeline, openai: FakeOpenAI) -> None:
    configure(pipeline, openai, session_key="sess-expired-long-ago")
    pipeline.poll(POLL_TIME)
    snapshot = stored(pipeline)
    assert snapshot.conditions == (SESSION_KEY_REJECTED,)
    assert [(f.source, f.kind) for f in snapshot.failures] == [("credit_grants", "key"), ("subscription", "key")]
    assert "copy a fresh sess- key" in snapshot.failures[0].detail
    assert "sess-expired" not in snapshot.failures[0].detail
    assert snapshot.month_to_date_usd == openai.org.month_to_date_usd()


def test_poller_429_with_retry_after_then_success(pipeline: LocalPipeline, openai: FakeOpenAI) -> None:
    configure(pipeline, openai)
    fault = openai.rate_limit("/v1/organization/usage/embeddings", retry_after=1, times=1)
    started = time.monotonic()
    pipeline.poll(POLL_TIME)
    assert time.monotonic() - started >= 1.0, "Retry-After was honoured"
    assert fault.hits == 1
    snapshot = stored(pipeline)
    assert snapshot.failures == ()
    assert len([r for r in openai.requests_log if r.path == "/v1/organization/usage/embeddings"]) == 2


def test_poller_5xx_is_retried_then_succeeds(pipeline: LocalPipeline, openai: FakeOpenAI) -> None:
    configure(pipeline, openai)
    fault = openai.server_error("/v1/organization/costs", status=503, times=2)
    pipeline.poll(POLL_TIME)
    assert fault.hits == 2
    snapshot = stored(pipeline)
    assert snapshot.failures == ()
    assert snapshot.month_to_date_usd == openai.org.month_to_date_usd()


def test_poller_persistent_5xx_fails_that_source_only(pipeline: LocalPipeline, openai: FakeOpenAI) -> None:
    configure(pipeline, openai)
    openai.server_error("/v1/organization/spend_alerts", status=500, times=None)
    result = pipeline.poll(POLL_TIME)
    assert result["organizations"]["sim"]["failed_sources"] == ["spend_alerts"]
    snapshot = stored(pipeline)
    assert [(f.source, f.kind, f.detail) for f in snapshot.failures] == [
        ("spend_alerts", "unavailable", "server error 500 after 4 attempts")
    ]
    assert {a.scope for a in snapshot.spend_alerts} == set(openai.org.project_spend_alerts), "project alerts kept"


def test_poller_hung_request_times_out_and_is_retried(pipeline: LocalPipeline, openai: FakeOpenAI) -> None:
    configure(pipeline, openai, environ={"OPENAI_READ_TIMEOUT_S": "0.5"})
    fault = openai.hang("/v1/organization/projects", seconds=3, times=1)
    pipeline.poll(POLL_TIME)
    assert fault.hits == 1
    assert stored(pipeline).failures == ()


def test_poller_request_that_keeps_hanging_is_named_and_bounded_by_the_deadline(
    pipeline: LocalPipeline, openai: FakeOpenAI
) -> None:
    configure(pipeline, openai, environ={"OPENAI_READ_TIMEOUT_S": "0.5"})
    openai.hang("/v1/organization/projects", seconds=5, times=None)
    started = time.monotonic()
    pipeline.poll(POLL_TIME, FakeLambdaContext(remaining_ms=7_000))  # 2 s left after the safety margin
    # The bound that matters: the invocation's own 7 s (Lambda would kill it there), whatever the load.
    assert time.monotonic() - started < 7
    snapshot = stored(pipeline)
    projects = failure(snapshot, "projects")
    # Given up when no back-off fits before the deadline, or cut by it mid-attempt: named either way.
    assert projects.kind in ("unavailable", "deadline")
    assert "timed out waiting for a reply" in projects.detail
    assert failure(snapshot, "project_spend_limits").detail == "not read: the project list could not be read"
    assert snapshot.month_to_date_usd == openai.org.month_to_date_usd()


MALFORMED: list[tuple[str, MalformedKind, str, str]] = [
    ("/v1/organization/costs", "html", "costs", "reply is not JSON"),
    ("/v1/organization/costs", "string_numbers", "costs", "amount.value is a string"),
    ("/v1/organization/usage/completions", "truncated", "usage_completions", "reply is not JSON"),
    ("/v1/organization/usage/images", "null_fields", "usage_images", "images is null"),
    ("/v1/organization/usage/web_search_calls", "string_numbers", "usage_web_search_calls", "is a string"),
    ("/v1/organization/usage/vector_stores", "missing_fields", "usage_vector_stores", "page has no 'data' list"),
    ("/v1/organization/projects", "missing_fields", "projects", "list has no 'data' list"),
    ("/v1/organization/spend_limit", "null_fields", "spend_limit", "threshold_amount is null"),
    ("/v1/organization/spend_alerts", "string_numbers", "spend_alerts", "threshold_amount is a string"),
    ("/dashboard/billing/credit_grants", "null_fields", "credit_grants", "total_granted is null"),
    ("/dashboard/billing/credit_grants", "missing_fields", "credit_grants", "grants is not an object"),
    ("/dashboard/billing/subscription", "string_numbers", "subscription", "hard_limit_usd is a string"),
]


@pytest.mark.parametrize("case", MALFORMED, ids=[f"{m[2]}-{m[1]}" for m in MALFORMED])
def test_poller_malformed_reply_is_a_named_failure_of_that_source(
    pipeline: LocalPipeline, openai: FakeOpenAI, case: tuple[str, MalformedKind, str, str]
) -> None:
    path, kind, source, detail = case
    configure(pipeline, openai)
    openai.malformed(path, kind, status=200 if kind == "html" else None, times=None)
    pipeline.poll(POLL_TIME)
    snapshot = stored(pipeline)
    named = failure(snapshot, source)
    assert named.kind == "malformed"
    assert detail in named.detail
    affected = {source}
    if path.endswith("/costs"):
        affected |= {"costs_previous_month", "costs_by_project", "costs_by_line_item", "costs_by_api_key"}
    if path.endswith("/usage/completions"):  # asked twice: by model and project, and by key and user
        affected |= {"usage_completions_by_key"}
    if source == "projects":
        affected |= {
            "project_spend_limits",
            "project_spend_alerts",
            "project_rate_limits",
            "api_keys",
            "service_accounts",
        }
    assert {f.source for f in snapshot.failures} == affected
    assert len(snapshot.sources_ok) == len(SOURCE_ORDER) - len(affected)


@pytest.fixture
def later() -> Iterator[datetime]:
    yield POLL_TIME + timedelta(hours=1)


def test_poller_each_scheduled_time_is_one_snapshot(
    pipeline: LocalPipeline, openai: FakeOpenAI, later: datetime
) -> None:
    configure(pipeline, openai)
    pipeline.poll(POLL_TIME)
    pipeline.poll(POLL_TIME)  # retried invocation: same key, conditional put
    pipeline.poll(later)
    assert pipeline.pump is not None
    inserts = snapshot_inserts(pipeline.pump.read_all())
    assert len(inserts) == 2
    assert stored(pipeline, later).poll_time == later
