"""collect_snapshot as a whole, over an in-memory client: every field filled, partial failure, named
conditions, config fallbacks, exact reconciliation, concurrency and the item-size guard."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from spendwatch.aws.store import to_attribute_map
from spendwatch.core.config import OrganizationConfig, parse_config
from spendwatch.core.errors import MalformedReplyError, SourceError, UnavailableError
from spendwatch.core.snapshot import Snapshot, UsageSummary
from spendwatch.poller.collect import (
    OTHER_KEY,
    SOURCE_ORDER,
    TRIMMED_CONDITION,
    USAGE_SPECS,
    collect_snapshot,
    fit_item_size,
    item_size_bytes,
)
from spendwatch.poller.openai_api import (
    ADMIN,
    ADMIN_KEY_MISSING_SCOPE,
    ADMIN_KEY_REJECTED,
    SESSION_KEY_REJECTED,
    Endpoint,
    KeyProblemError,
    NotFoundError,
)

POLL = datetime(2026, 11, 21, 23, tzinfo=UTC)
DAY = 86400
NOV_1 = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp())
OCT_1 = int(datetime(2026, 10, 1, tzinfo=UTC).timestamp())


def org(extra: str = "") -> OrganizationConfig:
    text = f"organizations: [{{id: acme, name: Acme, admin_key_id: key_abc{extra}}}]"
    return parse_config(text, "test").organizations[0]


def cost_bucket(start: int, *rows: tuple[str, str | None, str | None]) -> dict[str, Any]:
    return {
        "object": "bucket",
        "start_time": start,
        "end_time": start + DAY,
        "results": [
            {"amount": {"value": Decimal(v), "currency": "usd"}, "project_id": p, "line_item": li} for v, p, li in rows
        ],
    }


def key_bucket(start: int, *rows: tuple[str, str | None, str | None]) -> dict[str, Any]:
    """A bucket of costs grouped by `api_key_id` and `project_id`: rows of (amount, project, key)."""
    return {
        "object": "bucket",
        "start_time": start,
        "end_time": start + DAY,
        "results": [
            {
                "object": "organization.costs.result",
                "amount": {"value": Decimal(v), "currency": "usd"},
                "line_item": None,
                "project_id": p,
                "api_key_id": k,
                "quantity": None,
                "quantity_unit": None,
            }
            for v, p, k in rows
        ],
    }


def api_key(key_id: str, name: str, owner: dict[str, Any]) -> dict[str, Any]:
    """A `ProjectApiKey` with every field the spec requires."""
    return {
        "object": "organization.project.api_key",
        "redacted_value": f"sk-proj-****{key_id[-4:]}",
        "name": name,
        "created_at": 1793491200,
        "last_used_at": None,
        "id": key_id,
        "owner_project_access": "active",
        "owner": owner,
    }


def user_owner(user_id: str, name: str) -> dict[str, Any]:
    return {
        "type": "user",
        "user": {"id": user_id, "email": f"{user_id}@example.com", "name": name, "created_at": 1, "role": "owner"},
    }


Reply = Any | Exception | Callable[[], Any]


class RoutedClient:
    """Answers each (path, group_by) from a table; an Exception value is raised, a callable is called."""

    def __init__(self, routes: dict[str, Reply], *, session: bool = True) -> None:
        self.routes = routes
        self.session = session
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def has_key(self, auth: str) -> bool:
        return auth == "admin" or self.session

    def _reply(self, key: str) -> Any:
        with self._lock:
            self.calls.append(key)
        reply = self.routes.get(key, self.routes.get(key.split("?", maxsplit=1)[0]))
        if reply is None:
            raise AssertionError(f"unexpected request {key}")
        if isinstance(reply, Exception):
            raise reply
        return reply() if callable(reply) else reply

    def get_json(self, path: str, params: Any, *, source: str, endpoint: Endpoint = ADMIN) -> Any:
        return self._reply(path)

    def iter_pages(self, path: str, params: dict[str, Any], *, source: str) -> Iterator[Any]:
        group = ",".join(params.get("group_by", []))
        key = f"{path}?{params['start_time']}" + (f"&{group}" if group else "")
        yield from self._reply(key)

    def iter_list(self, path: str, params: dict[str, Any], *, source: str) -> Iterator[Any]:
        yield from self._reply(path)


def full_routes() -> dict[str, Reply]:
    current = [
        {
            "data": [
                cost_bucket(NOV_1, ("3.4182615", None, None)),
                cost_bucket(NOV_1 + 20 * DAY, ("5.1204", None, None), ("0.0000001", None, None)),
            ]
        }
    ]
    by_project = [{"data": [cost_bucket(NOV_1, ("3.4182615", "proj_a", None), ("5.1204001", "proj_b", None))]}]
    by_item = [{"data": [cost_bucket(NOV_1, ("8", None, "gpt-4o, input"), ("0.5386616", None, "Web search"))]}]
    by_key = [
        {
            "data": [
                key_bucket(NOV_1, ("3.4182615", "proj_a", "key_chat")),
                key_bucket(NOV_1 + 20 * DAY, ("5.1204", "proj_b", "key_gone"), ("0.0000001", "proj_b", None)),
            ]
        }
    ]
    routes: dict[str, Reply] = {
        f"/organization/costs?{NOV_1}": current,
        f"/organization/costs?{OCT_1}": [{"data": [cost_bucket(OCT_1 + 30 * DAY, ("100.25", None, None))]}],
        f"/organization/costs?{NOV_1}&project_id": by_project,
        f"/organization/costs?{NOV_1}&line_item": by_item,
        f"/organization/costs?{NOV_1}&api_key_id,project_id": by_key,
        "/organization/projects/proj_a/api_keys": [api_key("key_chat", "Chat backend", user_owner("user_ada", "Ada"))],
        "/organization/projects/proj_b/api_keys": [],
        "/organization/projects/proj_old/api_keys": NotFoundError("api_keys", "not found (404)"),
        "/organization/projects/proj_a/service_accounts": [],
        "/organization/projects/proj_a/rate_limits": [
            {"object": "project.rate_limit", "id": "rl-m", "model": "m", "max_requests_per_1_minute": 500}
            | {"max_tokens_per_1_minute": 30000, "batch_1_day_max_input_tokens": 900000},
            {"object": "project.rate_limit", "id": "rl-unused", "model": "dall-e-2", "max_requests_per_1_minute": 5}
            | {"max_tokens_per_1_minute": 0, "max_images_per_1_minute": 5},
        ],
        "/organization/projects/proj_b/rate_limits": NotFoundError("project_rate_limits", "not found (404)"),
        "/organization/projects/proj_b/service_accounts": [],
        "/organization/projects/proj_old/service_accounts": [],
        "/organization/users": [{"object": "organization.user", "id": "user_ada", "name": "Ada", "email": "a@x.io"}],
        "/organization/projects": [
            {"id": "proj_a", "name": "Chatbot", "status": "active"},
            {"id": "proj_b", "name": "Images", "status": "active"},
            {"id": "proj_old", "name": "Old", "status": "archived"},
        ],
        "/organization/spend_limit": {"threshold_amount": 60000, "currency": "USD", "enforcement": {"status": "x"}},
        "/organization/projects/proj_a/spend_limit": {"threshold_amount": 30000, "currency": "USD"},
        "/organization/projects/proj_b/spend_limit": NotFoundError("project_spend_limits", "not found (404)"),
        "/organization/spend_alerts": [{"id": "alert_1", "threshold_amount": 25000, "currency": "USD"}],
        "/organization/projects/proj_a/spend_alerts": [{"id": "alert_2", "threshold_amount": 100, "currency": "USD"}],
        "/organization/projects/proj_b/spend_alerts": [],
        "/organization/admin_api_keys/key_abc": {"id": "key_abc", "expires_at": 1795305600},
        "/dashboard/billing/credit_grants": {
            "total_granted": Decimal("600.0"),
            "total_used": Decimal("100"),
            "total_available": Decimal("500.0"),
            "grants": {"data": [{"id": "g1", "grant_amount": 600, "used_amount": 100, "expires_at": 1800000000}]},
        },
        "/dashboard/billing/subscription": {
            "hard_limit_usd": Decimal("600.00"),
            "soft_limit_usd": Decimal("400.0"),
            "system_hard_limit_usd": Decimal("1200.0"),
        },
    }
    for spec in USAGE_SPECS:
        row = dict.fromkeys(spec.required, 1) | {"model": "m", "project_id": "proj_a"}
        routes[f"{spec.path}?{NOV_1}&{','.join(spec.group_by)}"] = [{"data": [{"start_time": NOV_1, "results": [row]}]}]
    who = [
        {
            "input_tokens": 7,
            "output_tokens": 2,
            "num_model_requests": 1,
            "api_key_id": "key_chat",
            "user_id": "user_ada",
        }
        | {"batch": False, "service_tier": "default"},
        {"input_tokens": 3, "output_tokens": 1, "num_model_requests": 1, "api_key_id": None, "user_id": "user_gone"}
        | {"batch": True, "service_tier": "flex"},
    ]
    by_who = "api_key_id,user_id,batch,service_tier"
    routes[f"/organization/usage/completions?{NOV_1}&{by_who}"] = [{"data": [{"start_time": NOV_1, "results": who}]}]
    return routes


def collect(client: RoutedClient, organization: OrganizationConfig | None = None, **kwargs: Any) -> Snapshot:
    return collect_snapshot(organization or org(), client, poll_time=POLL, now=lambda: POLL, **kwargs)


def test_collect_snapshot_fills_every_field_from_every_source() -> None:
    snapshot = collect(RoutedClient(full_routes()))
    assert snapshot.failures == ()
    assert snapshot.sources_ok == SOURCE_ORDER
    assert snapshot.conditions == ()
    assert snapshot.month_to_date_usd == Decimal("8.5386616")
    assert snapshot.previous_month_usd == Decimal("100.25")
    assert [(d.day, d.amount_usd) for d in snapshot.daily_costs_usd] == [
        (date(2026, 10, 31), Decimal("100.25")),
        (date(2026, 11, 1), Decimal("3.4182615")),
        (date(2026, 11, 21), Decimal("5.1204001")),
    ]
    assert snapshot.data_through == date(2026, 11, 21)
    assert [(s.key, s.name, s.amount_usd) for s in snapshot.costs_by_project_usd] == [
        ("proj_b", "Images", Decimal("5.1204001")),
        ("proj_a", "Chatbot", Decimal("3.4182615")),
    ]
    assert sum(s.amount_usd for s in snapshot.costs_by_project_usd) == snapshot.month_to_date_usd
    assert sum(s.amount_usd for s in snapshot.costs_by_line_item_usd) == snapshot.month_to_date_usd
    assert [(p.id, p.status) for p in snapshot.projects][-1] == ("proj_old", "archived")
    assert [(s.scope, s.threshold_cents, s.source) for s in snapshot.spend_limits] == [
        ("organization", 60000, "admin_api"),
        ("proj_a", 30000, "admin_api"),
        ("organization", 60000, "subscription"),
    ]
    assert [(a.scope, a.id) for a in snapshot.spend_alerts] == [("organization", "alert_1"), ("proj_a", "alert_2")]
    assert snapshot.credit_summary is not None and snapshot.credit_summary.total_available_usd == Decimal("500.0")
    assert [g.id for g in snapshot.credit_grants] == ["g1"]
    assert snapshot.subscription is not None and snapshot.subscription.hard_limit_usd == Decimal("600.00")
    assert set(snapshot.usage) == {spec.name for spec in USAGE_SPECS}
    assert snapshot.admin_key_expires_at == datetime(2026, 11, 22, tzinfo=UTC)


def test_collect_snapshot_asks_archived_projects_only_for_their_keys_names() -> None:
    client = RoutedClient(full_routes())
    collect(client)
    assert {c for c in client.calls if "proj_old" in c} == {
        "/organization/projects/proj_old/api_keys",
        "/organization/projects/proj_old/service_accounts",
    }
    assert {c for c in client.calls if c.startswith("/organization/projects/") and "proj_old" not in c} == {
        f"/organization/projects/{project}/{what}"
        for project in ("proj_a", "proj_b")
        for what in ("spend_limit", "spend_alerts", "rate_limits", "api_keys", "service_accounts")
    }


def test_collect_snapshot_without_session_key_skips_legacy_and_uses_declared_grants_and_limit() -> None:
    routes = full_routes()
    routes["/organization/spend_limit"] = NotFoundError("spend_limit", "not found (404)")
    declared = org(
        ", hard_limit_usd: 750.50, credit_grants: [{id: prepaid-2026, amount_usd: 500, used_usd: 120.25, "
        "expires_at: 2027-03-01}, {id: promo, amount_usd: 10, expires_at: 2026-11-01}]"
    )
    client = RoutedClient(routes, session=False)
    snapshot = collect(client, declared)
    assert "credit_grants" not in snapshot.sources_ok and "subscription" not in snapshot.sources_ok
    assert snapshot.failures == ()
    assert "session_key_missing" not in snapshot.conditions
    assert not [c for c in client.calls if c.startswith("/dashboard")]
    assert [(g.id, g.source, g.expires_at) for g in snapshot.credit_grants] == [
        ("prepaid-2026", "config", datetime(2027, 3, 1, tzinfo=UTC)),
        ("promo", "config", datetime(2026, 11, 1, tzinfo=UTC)),
    ]
    assert snapshot.credit_summary is not None
    assert snapshot.credit_summary.total_available_usd == Decimal("379.75"), "the expired promo grant is not counted"
    assert [(s.scope, s.threshold_cents, s.source) for s in snapshot.spend_limits] == [
        ("proj_a", 30000, "admin_api"),
        ("organization", 75050, "config"),
    ]
    assert "spend_limit" in snapshot.sources_ok, "404 means no limit: data, not a failure"


def test_collect_snapshot_rejected_session_key_is_a_named_condition_not_a_crash() -> None:
    routes = full_routes()
    expired = KeyProblemError("x", "session key expired or rejected (401)", SESSION_KEY_REJECTED)
    routes["/dashboard/billing/credit_grants"] = KeyProblemError("credit_grants", expired.detail, SESSION_KEY_REJECTED)
    routes["/dashboard/billing/subscription"] = KeyProblemError("subscription", expired.detail, SESSION_KEY_REJECTED)
    snapshot = collect(RoutedClient(routes), org(", credit_grants: [{id: g, amount_usd: 5, expires_at: 2027-01-01}]"))
    assert snapshot.conditions == (SESSION_KEY_REJECTED,)
    assert [(f.source, f.kind) for f in snapshot.failures] == [("credit_grants", "key"), ("subscription", "key")]
    assert snapshot.month_to_date_usd == Decimal("8.5386616")
    assert [g.source for g in snapshot.credit_grants] == ["config"], "declared grants stand in"


@pytest.mark.parametrize(
    ("error", "condition"),
    [
        (KeyProblemError("s", "admin key rejected (401 invalid_api_key)", ADMIN_KEY_REJECTED), ADMIN_KEY_REJECTED),
        (KeyProblemError("s", "admin key lacks the api.usage.read scope", ADMIN_KEY_MISSING_SCOPE), "missing_scope"),
    ],
)
def test_collect_snapshot_admin_key_problems_are_conditions(error: SourceError, condition: str) -> None:
    routes: dict[str, Reply] = {k: v if k.startswith("/dashboard") else error for k, v in full_routes().items()}
    snapshot = collect(RoutedClient(routes))
    assert any(condition in c for c in snapshot.conditions)
    assert snapshot.sources_ok == ("credit_grants", "subscription")
    assert snapshot.month_to_date_usd is None
    assert {f.source for f in snapshot.failures} >= {"costs", "projects", "project_spend_limits"}
    per_project = next(f for f in snapshot.failures if f.source == "project_spend_limits")
    assert per_project.detail == "not read: the project list could not be read"


def test_collect_snapshot_one_failed_project_is_listed_and_the_rest_kept() -> None:
    routes = full_routes()
    routes["/organization/projects/proj_b/spend_limit"] = UnavailableError("x", "server error 502 after 4 attempts")
    snapshot = collect(RoutedClient(routes))
    [failure] = snapshot.failures
    assert failure.source == "project_spend_limits"
    assert failure.kind == "unavailable"
    assert failure.detail == "1 of 2 projects failed: proj_b: server error 502 after 4 attempts"
    assert "project_spend_limits" not in snapshot.sources_ok
    assert ("proj_a", 30000) in [(s.scope, s.threshold_cents) for s in snapshot.spend_limits]


def test_collect_snapshot_a_bug_in_one_source_costs_that_source_only() -> None:
    routes = full_routes()
    empty: dict[str, Any] = {}
    routes["/organization/spend_alerts"] = lambda: empty["boom"]
    snapshot = collect(RoutedClient(routes))
    [failure] = snapshot.failures
    assert (failure.source, failure.kind) == ("spend_alerts", "error")
    assert failure.detail.startswith("unexpected KeyError")


def test_collect_snapshot_malformed_usage_is_named_for_that_source() -> None:
    routes = full_routes()
    spec = USAGE_SPECS[0]
    key = f"{spec.path}?{NOV_1}&{','.join(spec.group_by)}"
    routes[key] = MalformedReplyError(spec.source, "reply is not JSON (HTTP 502, text/html, 150 bytes)")
    snapshot = collect(RoutedClient(routes))
    assert [(f.source, f.kind) for f in snapshot.failures] == [("usage_completions", "malformed")]
    assert "completions" not in snapshot.usage
    assert snapshot.month_to_date_usd is not None


def test_collect_snapshot_runs_independent_sources_concurrently() -> None:
    routes = full_routes()
    independent = [
        k for k in routes if not k.startswith("/organization/projects/") and not k.startswith("/organization/admin")
    ]
    barrier = threading.Barrier(len(independent), timeout=10)

    def together(reply: Any) -> Callable[[], Any]:
        def wait() -> Any:
            barrier.wait()  # raises BrokenBarrierError unless every independent source is in flight at once
            return reply

        return wait

    for key in independent:
        routes[key] = together(routes[key])
    snapshot = collect(RoutedClient(routes, session=True), org().model_copy(update={"admin_key_id": None}))
    assert snapshot.failures == ()


def test_collect_snapshot_item_size_guard_trims_breakdowns_and_says_so() -> None:
    routes = full_routes()
    many = [(f"{i + 1}.{i:04d}", f"proj_{i:03d}", None) for i in range(300)]
    routes[f"/organization/costs?{NOV_1}&project_id"] = [{"data": [cost_bucket(NOV_1, *many)]}]
    snapshot = collect(RoutedClient(routes))
    assert len(snapshot.costs_by_project_usd) == 51, "capped at 50 plus (other)"
    total = sum(Decimal(v) for v, _, _ in many)
    assert sum(s.amount_usd for s in snapshot.costs_by_project_usd) == total
    assert TRIMMED_CONDITION not in snapshot.conditions

    size = item_size_bytes(snapshot)
    fitted = fit_item_size(snapshot, limit_bytes=size - 1000)
    assert item_size_bytes(fitted) <= size - 1000
    assert TRIMMED_CONDITION in fitted.conditions
    kept = len(fitted.costs_by_project_usd) - 1
    assert kept in (20, 10, 5, 0)
    assert fitted.costs_by_project_usd[-1].key == OTHER_KEY
    assert fitted.costs_by_project_usd[-1].name == f"{300 - kept} more projects"
    assert sum(s.amount_usd for s in fitted.costs_by_project_usd) == total
    assert fitted.month_to_date_usd == snapshot.month_to_date_usd


def test_fit_item_size_last_resort_halves_project_lists() -> None:
    projects = [{"id": f"proj_{i:05d}", "name": f"Project {i}", "status": "active"} for i in range(400)]
    base = Snapshot.model_validate(
        {
            "org_id": "acme",
            "org_name": "Acme",
            "poll_time": POLL,
            "collected_at": POLL,
            "month_to_date_usd": Decimal(1),
            "projects": projects,
            "spend_limits": [{"scope": "organization", "threshold_cents": 1}]
            + [{"scope": p["id"], "threshold_cents": 100} for p in projects],
            "usage": {"embeddings": UsageSummary(totals={"input_tokens": 1})},
        }
    )
    fitted = fit_item_size(base, limit_bytes=20_000)
    assert item_size_bytes(fitted) <= 20_000
    assert fitted.spend_limits[0].scope == "organization", "the organization's limit is never dropped"
    assert 0 < len(fitted.projects) < 400
    assert TRIMMED_CONDITION in fitted.conditions


def test_fit_item_size_last_resort_shortens_failures_a_hostile_reply_filled() -> None:
    echo = "Not Found " * 500  # a reply that echoes pages of text, on every per-project source
    failures = [{"source": f"project_{i:04d}_costs", "kind": "unavailable", "detail": echo} for i in range(400)]
    base = Snapshot.model_validate(
        {"org_id": "acme", "org_name": "Acme", "poll_time": POLL, "collected_at": POLL, "failures": failures}
    )
    assert all(len(f.detail) == 1000 for f in base.failures), "each detail is capped when stored"
    fitted = fit_item_size(base, limit_bytes=40_000)
    assert item_size_bytes(fitted) <= 40_000
    assert len(fitted.failures) == 50 and fitted.failures[-1].source == "(other)"
    assert fitted.failures[-1].detail.startswith("351 more sources failed (unavailable)")
    assert TRIMMED_CONDITION in fitted.conditions


def test_item_size_estimate_tracks_the_json_size() -> None:
    snapshot = collect(RoutedClient(full_routes()))
    import json

    from spendwatch.core.money import DecimalJSONEncoder

    as_json = len(json.dumps(snapshot.to_item(expires_at=1), cls=DecimalJSONEncoder))
    assert 0.5 * as_json < item_size_bytes(snapshot) < 1.2 * as_json


def test_snapshot_without_costs_round_trips_through_its_item() -> None:
    routes = full_routes()
    for key in [k for k in routes if k.startswith("/organization/costs")]:
        routes[key] = UnavailableError("costs", "server error 502 after 4 attempts")
    snapshot = collect(RoutedClient(routes))
    assert snapshot.month_to_date_usd is None
    item = snapshot.to_item(expires_at=1)
    assert "month_to_date_usd" not in item, "DynamoDB items carry no nulls"
    assert Snapshot.from_item(item) == snapshot


# --------------------------------------------------------------------------------------------------
# exact month to date, and values DynamoDB cannot store cost their source, never the snapshot's write
# --------------------------------------------------------------------------------------------------


def storable(snapshot: Snapshot) -> dict[str, Any]:
    """The item exactly as `put_item` would send it (boto3 refuses any number it would have to round)."""
    return to_attribute_map(snapshot.to_item(expires_at=1))


def with_costs(*days: str) -> dict[str, Reply]:
    routes = full_routes()
    buckets = [cost_bucket(NOV_1 + i * DAY, (value, None, None)) for i, value in enumerate(days)]
    routes[f"/organization/costs?{NOV_1}"] = [{"data": buckets}]
    return routes


def test_collect_snapshot_month_to_date_is_the_exact_sum_of_the_days() -> None:
    snap = collect_snapshot(
        org(),
        RoutedClient(with_costs("12345.678901234567", "1.2345678901234567e-10")),
        poll_time=POLL,
        now=lambda: POLL,
    )
    assert snap.month_to_date_usd == Decimal("12345.67890123469045678901234567")
    storable(snap)


def test_collect_snapshot_month_to_date_needing_over_38_digits_is_rounded_at_the_38th() -> None:
    """1234567.1 + 1e-33 needs 40 significant digits; DynamoDB stores 38, so the sum is rounded at the
    38th (an error of 1e-33 USD) instead of failing the costs source."""
    snap = collect_snapshot(org(), RoutedClient(with_costs("1234567.1", "1e-33")), poll_time=POLL, now=lambda: POLL)
    assert snap.failures == ()
    assert snap.month_to_date_usd == Decimal("1234567.1")
    storable(snap)


def test_collect_snapshot_breakdown_remainder_out_of_dynamodb_range_fails_that_breakdown_only() -> None:
    """52 projects: the 2 smallest become `(other)` at the breakdown cap of 50, and their sum is beyond
    DynamoDB's range. Checked while the source is collected, so it fails that source, not the snapshot."""
    routes = full_routes()
    rows = [(str(2_000_000 + i), f"proj_{i:02d}", None) for i in range(50)] + [
        ("9e125", "proj_x", None),
        ("9e125", "proj_y", None),
    ]
    routes[f"/organization/costs?{NOV_1}&project_id"] = [{"data": [cost_bucket(NOV_1, *rows)]}]
    snap = collect_snapshot(org(), RoutedClient(routes), poll_time=POLL, now=lambda: POLL)
    failure = next(f for f in snap.failures if f.source == "costs_by_project")
    assert "outside DynamoDB's range" in failure.detail
    assert snap.costs_by_project_usd == ()
    storable(snap)


@pytest.mark.parametrize("value", ["1e200", "0.1234567890123456789012345678901234567891"])
def test_collect_snapshot_absurd_legacy_number_fails_its_source_and_the_snapshot_still_stores(value: str) -> None:
    routes = full_routes()
    grants = routes["/dashboard/billing/credit_grants"]
    assert isinstance(grants, dict)
    routes["/dashboard/billing/credit_grants"] = {
        **grants,
        "total_available": Decimal(value),
    }  # as loads_exact parses it
    snap = collect_snapshot(org(), RoutedClient(routes), poll_time=POLL, now=lambda: POLL)
    [failure] = snap.failures
    assert (failure.source, failure.kind) == ("credit_grants", "malformed")
    assert failure.detail.startswith("total_available is ")
    storable(snap)
