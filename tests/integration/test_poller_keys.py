"""Who is spending, end to end: the poller handler against the local OpenAI server (costs grouped by API key
and project, the projects' api_keys and service_accounts, the organization's users, in their wire format),
the snapshot read back from the real DynamoDB API. The simulated organization has a deleted key that
spent, a user who left, an unnamed service account; the name endpoints also fail on purpose."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import requests

from spendwatch.devtools.fake_openai import API_KEY_GROUPING_FLOOR, FakeOpenAI
from spendwatch.devtools.pipeline import LocalPipeline
from spendwatch.devtools.simulated_org import SimulatedOrg
from spendwatch.poller.collect import OTHER_KEY, SOURCE_ORDER

from .conftest import ADMIN_KEY, POLL_TIME
from .test_poller_sources import SESSION_KEY, configure, stored


def key_spend(org: SimulatedOrg) -> dict[str, Decimal]:
    """Each key's month to date, from the simulated organization's own cost rows."""
    start = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp())
    spend: dict[str, Decimal] = {}
    for row in org.cost_rows:
        if row.start_time >= start:
            spend[row.api_key_id] = spend.get(row.api_key_id, Decimal(0)) + row.amount
    return spend


def test_poller_costs_by_api_key_name_every_key_honestly_and_sum_exactly(
    pipeline: LocalPipeline, openai: FakeOpenAI
) -> None:
    configure(pipeline, openai)
    pipeline.poll(POLL_TIME)
    snapshot = stored(pipeline)
    org = openai.org
    assert snapshot.failures == () and snapshot.sources_ok == SOURCE_ORDER
    keys = {k.key: k for k in snapshot.costs_by_api_key_usd}
    assert {k: v.amount_usd for k, v in keys.items()} == key_spend(org)
    assert sum(k.amount_usd for k in snapshot.costs_by_api_key_usd) == snapshot.month_to_date_usd
    assert sum(p.amount_usd for p in snapshot.daily_costs_by_project_usd) == snapshot.month_to_date_usd
    sim = {k.id: k for k in org.api_keys}
    users = {u.id: u for u in org.users}
    for key_id, share in keys.items():
        assert share.project_id == sim[key_id].project_id, "every key is booked to its project, even a deleted one"
        if sim[key_id].deleted:
            assert (share.name, share.redacted_value, share.label()) == (None, None, key_id)
            continue
        assert (share.name, share.redacted_value) == (sim[key_id].name, sim[key_id].redacted_value)
        assert share.owner_id == sim[key_id].owner_id
        if share.owner_type == "user":
            assert share.owner_left == users[share.owner_id].left
    labels = {share.owner_label() for share in keys.values()}
    left = next(u for u in org.users if u.left)
    assert f"{left.name} (left the organization)" in labels
    unnamed = next(a for a in org.service_accounts if not a.name)
    assert f"service account {unnamed.id}" in labels
    assert any(sim[k].deleted for k in keys), "the deleted key's spend is still there"


def test_poller_failing_name_endpoints_cost_the_names_only(pipeline: LocalPipeline, openai: FakeOpenAI) -> None:
    configure(pipeline, openai)
    openai.server_error("/v1/organization/users", status=500, times=None)
    project = openai.org.projects[0].id
    openai.server_error(f"/v1/organization/projects/{project}/api_keys", status=503, times=None)
    pipeline.poll(POLL_TIME)
    snapshot = stored(pipeline)
    assert [(f.source, f.kind) for f in snapshot.failures] == [("api_keys", "unavailable"), ("users", "unavailable")]
    assert snapshot.failures[0].detail.startswith(f"1 of 3 projects failed: {project}: server error 503")
    keys = {k.key: k for k in snapshot.costs_by_api_key_usd}
    assert {k: v.amount_usd for k, v in keys.items()} == key_spend(openai.org)
    unnamed = [k for k in keys.values() if k.project_id == project]
    assert unnamed and all(k.label() == k.key and k.owner_id is None for k in unnamed)
    assert sum(k.amount_usd for k in snapshot.costs_by_api_key_usd) == snapshot.month_to_date_usd


def test_poller_caps_the_keys_of_a_large_org_with_an_exact_other(pipeline: LocalPipeline) -> None:
    org = SimulatedOrg.generate(POLL_TIME, project_count=60, line_items_per_project=4, seed=3)
    with FakeOpenAI(org, admin_key=ADMIN_KEY, session_key=SESSION_KEY) as server:
        configure(pipeline, server)
        pipeline.poll(POLL_TIME)
    snapshot = stored(pipeline)
    assert snapshot.failures == ()
    assert len(snapshot.costs_by_api_key_usd) == 51
    other = snapshot.costs_by_api_key_usd[-1]
    assert other.key == OTHER_KEY and other.name == f"{len(key_spend(org)) - 50} more API keys"
    assert sum(k.amount_usd for k in snapshot.costs_by_api_key_usd) == snapshot.month_to_date_usd


def test_fake_openai_refuses_api_key_grouping_before_its_floor(openai: FakeOpenAI) -> None:
    reply = requests.get(
        f"{openai.base_url}/organization/costs",
        params={"start_time": str(API_KEY_GROUPING_FLOOR - 86400), "group_by": "api_key_id"},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        timeout=5,
    )
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "start_time"


def test_poller_attributes_completions_to_keys_and_users_even_users_who_left(
    pipeline: LocalPipeline, openai: FakeOpenAI
) -> None:
    configure(pipeline, openai)
    pipeline.poll(POLL_TIME)
    snapshot = stored(pipeline)
    who = snapshot.completions_attribution
    assert who is not None
    assert who.totals == snapshot.usage["completions"].totals, "the same month of completions, attributed"
    left = next(u for u in openai.org.users if u.left)
    assert left.id in who.by_user and left.id not in who.user_names
    present = [u for u in openai.org.users if not u.left and u.id in who.by_user]
    assert present and all(who.user_names[u.id] == u.name for u in present)
    assert set(who.by_batch) == {"standard"} and set(who.by_service_tier) == {"default"}


def test_poller_keeps_the_rate_limits_of_the_models_in_use_per_active_project(
    pipeline: LocalPipeline, openai: FakeOpenAI
) -> None:
    configure(pipeline, openai)
    pipeline.poll(POLL_TIME)
    snapshot = stored(pipeline)
    used = {model for summary in snapshot.usage.values() for model in summary.by_model}
    active = {p.id for p in openai.org.projects if p.archived_at is None}
    assert snapshot.rate_limits, "the simulated org's projects have limits for models they use"
    for limit in snapshot.rate_limits:
        assert limit.scope in active
        assert any(m == limit.model or m.startswith(f"{limit.model}-") for m in used)
        assert {"max_requests_per_1_minute", "max_tokens_per_1_minute"} <= set(limit.limits)
    requests = [r.path for r in openai.requests_log if r.path.endswith("/rate_limits")]
    assert sorted(requests) == sorted(f"/v1/organization/projects/{p}/rate_limits" for p in active)
