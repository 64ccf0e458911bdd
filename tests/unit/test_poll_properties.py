"""Property-based tests (Hypothesis) of every parser of a poll, and of a whole poll, with payloads drawn
from OpenAI's spec (`openai_schemas`) and hostile mutations of them.

- A payload the spec allows, optional and nullable fields included, always parses, to the figures the
  payload states.
- Any payload gives a value or a named `SourceError` of that source: never another exception.
- A whole poll with one hostile source keeps every other source's figures exactly as an all-good poll
  has them, and names the hostile source's failure (never the catch-all `error`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, date, datetime
from decimal import Context, Decimal, Inexact, localcontext
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spendwatch.core.config import parse_config
from spendwatch.core.errors import SourceError
from spendwatch.core.money import loads_exact
from spendwatch.core.snapshot import Snapshot
from spendwatch.devtools.fake_openai import dumps_exact
from spendwatch.poller.collect import (
    NONE_KEY,
    SKIPPED_ROWS,
    SOURCE_ORDER,
    TRIMMED_CONDITION,
    USAGE_BY_NAME,
    SkippedRows,
    collect_snapshot,
    parse_admin_key,
    parse_credit_grants,
    parse_daily_costs,
    parse_grouped_costs,
    parse_project,
    parse_spend_alert,
    parse_spend_limit,
    parse_subscription,
    parse_usage,
)
from spendwatch.poller.openai_api import Deadline, OpenAIClient

from . import openai_schemas as schema
from .test_openai_client import Reply

PARSER_EXAMPLES = settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
HOSTILE_EXAMPLES = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
POLL_EXAMPLES = settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
KINDS = {"auth", "malformed", "rate_limited", "unavailable", "rejected", "deadline", "too_large", "truncated"}


def wire(payload: Any) -> Any:
    """As a reply arrives: JSON text, then the exact parser (every fraction a Decimal)."""
    return loads_exact(dumps_exact(payload))


def named(call: Callable[[], Any], source: str) -> Any:
    """The call's value, or None after a `SourceError` naming `source`; any other exception fails."""
    try:
        return call()
    except SourceError as exc:
        assert exc.source == source
        assert exc.kind in KINDS
        assert exc.detail
        return None


def usd(value: Any) -> Decimal:
    return Decimal(value)


def exact_context() -> AbstractContextManager[Context]:
    """Sums as the poll computes them: exact (the default context would round at 28 digits)."""
    return localcontext(Context(prec=100, traps=[Inexact]))


# --------------------------------------------------------------------------------------------------
# valid payloads parse, to the figures they state
# --------------------------------------------------------------------------------------------------


def cost_rows(pages: list[Any]) -> list[tuple[int, dict[str, Any]]]:
    return [(b["start_time"], row) for p in pages for b in p["data"] for row in b["results"]]


def amount_of(row: dict[str, Any]) -> Decimal | None:
    value = row.get("amount", {}).get("value")
    return None if value is None else usd(value)


@PARSER_EXAMPLES
@given(schema.COST_PAGES)
def test_parse_daily_costs_sums_every_amount_and_lists_the_rows_without_one(pages: list[Any]) -> None:
    pages = wire(pages)
    skipped = SkippedRows("cost rows without an amount")
    days = parse_daily_costs(pages, "costs", skipped)
    expected = {datetime.fromtimestamp(b["start_time"], UTC).date(): Decimal(0) for p in pages for b in p["data"]}
    missing = 0
    with exact_context():
        for start, row in cost_rows(pages):
            amount = amount_of(row)
            if amount is None:
                missing += 1
            else:
                expected[datetime.fromtimestamp(start, UTC).date()] += amount
    assert days == expected
    assert len(skipped.where) == missing


@PARSER_EXAMPLES
@given(schema.COST_PAGES, st.sampled_from(["project_id", "line_item"]))
def test_parse_grouped_costs_sums_by_group(pages: list[Any], group: str) -> None:
    pages = wire(pages)
    expected: dict[str, Decimal] = {}
    with exact_context():
        for _, row in cost_rows(pages):
            amount = amount_of(row)
            if amount is not None:
                key = row.get(group) or NONE_KEY
                expected[key] = expected.get(key, Decimal(0)) + amount
    assert parse_grouped_costs(pages, group, "costs_by_project") == expected


@PARSER_EXAMPLES
@given(st.sampled_from(sorted(schema.USAGE_SCHEMAS)).flatmap(lambda n: st.tuples(st.just(n), schema.usage_pages(n))))
def test_parse_usage_totals_every_counter_of_every_type(case: tuple[str, list[Any]]) -> None:
    name, pages = case
    pages = wire(pages)
    summary = parse_usage(USAGE_BY_NAME[name], pages)
    required, optional, _ = schema.USAGE_SCHEMAS[name]
    buckets = [b for p in pages for b in p["data"]]
    if name == "vector_stores":  # a level: the latest day with data, never a sum over days
        latest = max((b["start_time"] for b in buckets if b["results"]), default=None)
        buckets = [b for b in buckets if b["start_time"] == latest]
    for counter in (*required, *optional):
        assert summary.totals.get(counter, 0) == sum(r.get(counter, 0) for b in buckets for r in b["results"])


@PARSER_EXAMPLES
@given(schema.PROJECT)
def test_parse_project_keeps_id_name_and_status(project: dict[str, Any]) -> None:
    info = parse_project(wire(project), "data[0]")
    assert (info.id, info.name) == (project["id"], project.get("name"))
    if project.get("status") is not None:
        assert info.status == project["status"]


@PARSER_EXAMPLES
@given(schema.SPEND_LIMIT)
def test_parse_spend_limit_keeps_the_threshold_in_cents(limit: dict[str, Any]) -> None:
    parsed = parse_spend_limit(wire(limit), "organization", "spend_limit")
    assert parsed.threshold_cents == limit["threshold_amount"]
    assert parsed.enforcement_status == limit["enforcement"]["status"]


@PARSER_EXAMPLES
@given(schema.SPEND_ALERT)
def test_parse_spend_alert_keeps_id_and_threshold(alert: dict[str, Any]) -> None:
    parsed = parse_spend_alert(wire(alert), "organization", "data[0]", "spend_alerts")
    assert (parsed.id, parsed.threshold_cents) == (alert["id"], alert["threshold_amount"])


@PARSER_EXAMPLES
@given(schema.ADMIN_KEY)
def test_parse_admin_key_expiry_is_none_when_absent_or_null(key: dict[str, Any]) -> None:
    expires = parse_admin_key(wire(key))
    stated = key.get("expires_at")
    assert expires == (None if stated is None else datetime.fromtimestamp(stated, UTC))


@PARSER_EXAMPLES
@given(schema.CREDIT_GRANTS)
def test_parse_credit_grants_keeps_the_balance_and_each_grant(body: dict[str, Any]) -> None:
    summary, grants = parse_credit_grants(wire(body))
    assert summary.total_available_usd == usd(body["total_available"])
    assert [(g.id, g.grant_amount_usd) for g in grants] == [
        (g["id"], usd(g["grant_amount"])) for g in body["grants"]["data"]
    ]


@PARSER_EXAMPLES
@given(schema.SUBSCRIPTION)
def test_parse_subscription_keeps_the_usd_limits(body: dict[str, Any]) -> None:
    parsed = parse_subscription(wire(body))
    assert (parsed.hard_limit_usd, parsed.soft_limit_usd) == (body["hard_limit_usd"], body["soft_limit_usd"])


# --------------------------------------------------------------------------------------------------
# hostile payloads: a value or a named SourceError, never anything else
# --------------------------------------------------------------------------------------------------

PAGES_PARSERS: dict[str, tuple[st.SearchStrategy[Any], Callable[[Any], Any]]] = {
    "costs": (schema.COST_PAGES, lambda p: parse_daily_costs(p, "costs", SkippedRows("rows"))),
    "costs_by_project": (schema.COST_PAGES, lambda p: parse_grouped_costs(p, "project_id", "costs_by_project")),
    "costs_by_line_item": (schema.COST_PAGES, lambda p: parse_grouped_costs(p, "line_item", "costs_by_line_item")),
    **{
        f"usage_{name}": (schema.usage_pages(name), partial(parse_usage, USAGE_BY_NAME[name]))
        for name in schema.USAGE_SCHEMAS
    },
}
BODY_PARSERS: dict[str, tuple[st.SearchStrategy[Any], Callable[[Any], Any]]] = {
    "projects": (schema.PROJECT, lambda b: parse_project(b, "data[0]")),
    "spend_limit": (schema.SPEND_LIMIT, lambda b: parse_spend_limit(b, "organization", "spend_limit")),
    "spend_alerts": (schema.SPEND_ALERT, lambda b: parse_spend_alert(b, "organization", "data[0]", "spend_alerts")),
    "admin_key": (schema.ADMIN_KEY, parse_admin_key),
    "credit_grants": (schema.CREDIT_GRANTS, parse_credit_grants),
    "subscription": (schema.SUBSCRIPTION, parse_subscription),
}


def _pages_only(pages: Any) -> bool:
    """What reaches a bucket parser: the client has checked each page is an object with a `data` list."""
    return isinstance(pages, list) and all(isinstance(p, dict) and isinstance(p.get("data"), list) for p in pages)


@HOSTILE_EXAMPLES
@given(st.data())
def test_every_bucket_parser_names_what_is_wrong_with_a_hostile_page(data: st.DataObject) -> None:
    source = data.draw(st.sampled_from(sorted(PAGES_PARSERS)))
    valid, parse = PAGES_PARSERS[source]
    pages = data.draw(schema.hostile(valid).filter(_pages_only))
    named(lambda: parse(pages), source)


@HOSTILE_EXAMPLES
@given(st.data())
def test_every_object_parser_names_what_is_wrong_with_a_hostile_body(data: st.DataObject) -> None:
    source = data.draw(st.sampled_from(sorted(BODY_PARSERS)))
    valid, parse = BODY_PARSERS[source]
    named(lambda: parse(data.draw(schema.hostile(valid))), source)


@PARSER_EXAMPLES
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_reply_body_is_a_value_or_a_named_malformed_reply(body: bytes) -> None:
    from .test_openai_client import client, response

    c, _, _ = client([response(200, raw=body)])
    named(lambda: c.get_json("/organization/costs", {}, source="costs"), "costs")


# --------------------------------------------------------------------------------------------------
# a whole poll: one hostile source, the others' figures identical to an all-good poll
# --------------------------------------------------------------------------------------------------

ORG = parse_config("organizations: [{id: acme, name: Acme, admin_key_id: key_abc}]", "t").organizations[0]
WHEN = datetime(2026, 11, 21, 23, tzinfo=UTC)
NOV_1 = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp())
OCT_1 = int(datetime(2026, 10, 1, tzinfo=UTC).timestamp())


def in_window(pages: list[Any], start: int) -> list[Any]:
    """Pin the buckets to the queried month, as the API does (its buckets start at `start_time`)."""
    for page in pages:
        for index, item in enumerate(page["data"]):
            item["start_time"] = start + index * 86400
            item["end_time"] = item["start_time"] + 86400
    return pages


@st.composite
def organization(draw: st.DrawFn) -> dict[str, Any]:
    """Every reply of one poll, keyed by source (per-project replies keyed by project id)."""
    projects = draw(st.lists(schema.PROJECT, max_size=3, unique_by=lambda p: p["id"]))
    active = [p["id"] for p in projects]  # whichever of them the poll takes for active, it finds a reply
    replies: dict[str, Any] = {
        "costs": in_window(draw(schema.cost_pages(2)), NOV_1),
        "costs_previous_month": in_window(draw(schema.cost_pages(2)), OCT_1),
        "costs_by_project": in_window(draw(schema.cost_pages(2)), NOV_1),
        "costs_by_line_item": in_window(draw(schema.cost_pages(2)), NOV_1),
        "costs_by_api_key": in_window(draw(schema.cost_pages(2)), NOV_1),
        "api_keys": {pid: schema.list_page(draw(schema.API_KEYS)) for pid in active},
        "service_accounts": {pid: schema.list_page(draw(schema.SERVICE_ACCOUNTS)) for pid in active},
        "users": schema.list_page(draw(schema.USERS)),
        "project_rate_limits": {pid: schema.list_page(draw(schema.RATE_LIMITS)) for pid in active},
        "projects": schema.list_page(projects, last_id=draw(st.booleans())),
        "spend_limit": draw(schema.SPEND_LIMIT),
        "project_spend_limits": {pid: draw(schema.SPEND_LIMIT) for pid in active},
        "spend_alerts": schema.list_page(draw(schema.SPEND_ALERTS)),
        "project_spend_alerts": {pid: schema.list_page(draw(schema.SPEND_ALERTS)) for pid in active},
        "admin_key": draw(schema.ADMIN_KEY),
        "credit_grants": draw(schema.CREDIT_GRANTS),
        "subscription": draw(schema.SUBSCRIPTION),
    }
    for name in schema.USAGE_SCHEMAS:
        replies[f"usage_{name}"] = in_window(draw(schema.usage_pages(name, 2)), NOV_1)
    replies["usage_completions_by_key"] = in_window(draw(schema.usage_pages("completions", 2)), NOV_1)
    return replies


def to_json(value: Any) -> str:
    """JSON text of a (possibly hostile) payload: NaN and Infinity as Python's JSON writes them, every
    Decimal exact."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {to_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(to_json(v) for v in value) + "]"
    if isinstance(value, Decimal):
        return str(value)
    return json.dumps(value)


class OrgSession:
    """Serves one organization's replies over the client's `requests` interface (no network)."""

    def __init__(self, replies: dict[str, Any], raw: dict[str, bytes] | None = None) -> None:
        self.replies = replies
        self.raw = raw or {}
        self._lock = threading.Lock()

    def _source(self, path: str, params: dict[str, Any]) -> tuple[str, str | None]:
        group = params.get("group_by", [])
        if path == "/organization/costs":
            if params["start_time"] == OCT_1:
                return "costs_previous_month", None
            return {
                "project_id": "costs_by_project",
                "line_item": "costs_by_line_item",
                "api_key_id": "costs_by_api_key",
            }.get(group[0] if group else "", "costs"), None
        if path.startswith("/organization/usage/"):
            if "api_key_id" in group:
                return "usage_completions_by_key", None
            return "usage_" + path.rsplit("/", 1)[1], None
        parts = path.strip("/").split("/")
        if parts[:2] == ["organization", "projects"] and len(parts) == 4:
            per_project = {
                "spend_limit": "project_spend_limits",
                "spend_alerts": "project_spend_alerts",
                "api_keys": "api_keys",
                "service_accounts": "service_accounts",
                "rate_limits": "project_rate_limits",
            }
            return per_project[parts[3]], parts[2]
        names = {
            "/organization/projects": "projects",
            "/organization/spend_limit": "spend_limit",
            "/organization/spend_alerts": "spend_alerts",
            "/organization/users": "users",
            "/organization/admin_api_keys/key_abc": "admin_key",
            "/dashboard/billing/credit_grants": "credit_grants",
            "/dashboard/billing/subscription": "subscription",
        }
        return names[path], None

    def get(
        self, url: str, *, params: Any, headers: dict[str, str], timeout: Any, stream: bool = False
    ) -> requests.Response:
        path = urlsplit(url).path.removeprefix("/v1")
        try:
            source, project = self._source(path, dict(params or {}))
            reply = self.replies[source] if project is None else self.replies[source][project]
        except (KeyError, IndexError):  # e.g. a hostile project list named a project that does not exist
            return Reply(404, b'{"error": {"message": "Not found", "code": "not_found"}}', {}).fresh()
        body = self.raw.get(source if project is None else f"{source}/{project}")
        if body is None:
            pages = reply if isinstance(reply, list) and source != "projects" else None
            if pages and all(isinstance(p, dict) for p in pages):  # bucketed: one page per request
                second = "page" in (params or {}) and len(pages) > 1
                reply = pages[1] if second else pages[0]
                if len(pages) > 1 and not second:
                    reply = {**reply, "has_more": True, "next_page": "p2"}
            body = to_json(reply).encode()
        return Reply(200, body, {"Content-Type": "application/json"}).fresh()


def poll(replies: dict[str, Any], raw: dict[str, bytes] | None = None) -> Snapshot:
    client = OpenAIClient(
        admin_key=lambda _: "sk-admin-property-0000",
        session_key=lambda _: "sess-property",
        base_url="http://openai.invalid/v1",
        http=OrgSession(replies, raw),  # type: ignore[arg-type]
        deadline=Deadline(budget_s=65),
        sleep=lambda _: None,
    )
    return collect_snapshot(ORG, client, poll_time=WHEN, now=lambda: WHEN)


def figures(snapshot: Snapshot, source: str) -> Any:
    """What a snapshot holds from `source` alone."""
    month = date(2026, 11, 1)
    by_source: dict[str, Callable[[], Any]] = {
        "costs": lambda: (snapshot.month_to_date_usd, [d for d in snapshot.daily_costs_usd if d.day >= month]),
        "costs_previous_month": lambda: (
            snapshot.previous_month_usd,
            [d for d in snapshot.daily_costs_usd if d.day < month],
        ),
        "costs_by_project": lambda: [(s.key, s.amount_usd) for s in snapshot.costs_by_project_usd],
        "costs_by_line_item": lambda: [(s.key, s.amount_usd) for s in snapshot.costs_by_line_item_usd],
        "costs_by_api_key": lambda: (
            [(s.key, s.amount_usd, s.daily_usd) for s in snapshot.costs_by_api_key_usd],
            snapshot.daily_costs_by_project_usd,
        ),
        "api_keys": lambda: [(s.key, s.name, s.redacted_value) for s in snapshot.costs_by_api_key_usd],
        "service_accounts": lambda: [
            (s.key, s.owner_name) for s in snapshot.costs_by_api_key_usd if s.owner_type == "service_account"
        ],
        "project_rate_limits": lambda: snapshot.rate_limits,
        "users": lambda: [
            (s.key, s.owner_name, s.owner_left) for s in snapshot.costs_by_api_key_usd if s.owner_type == "user"
        ],
        "projects": lambda: snapshot.projects,
        "spend_limit": lambda: [
            s for s in snapshot.spend_limits if s.source == "admin_api" and s.scope == "organization"
        ],
        "project_spend_limits": lambda: [s for s in snapshot.spend_limits if s.scope != "organization"],
        "spend_alerts": lambda: [a for a in snapshot.spend_alerts if a.scope == "organization"],
        "project_spend_alerts": lambda: [a for a in snapshot.spend_alerts if a.scope != "organization"],
        "admin_key": lambda: snapshot.admin_key_expires_at,
        "credit_grants": lambda: (snapshot.credit_summary, snapshot.credit_grants),
        "subscription": lambda: (
            snapshot.subscription,
            [s for s in snapshot.spend_limits if s.source == "subscription"],
        ),
    }
    if source == "usage_completions_by_key":
        attribution = snapshot.completions_attribution
        return attribution.model_copy(update={"user_names": {}}) if attribution else None
    if source.startswith("usage_"):
        return snapshot.usage.get(source.removeprefix("usage_"))
    return by_source[source]()


PER_PROJECT_SOURCES = (
    "project_spend_limits",
    "project_spend_alerts",
    "project_rate_limits",
    "api_keys",
    "service_accounts",
)
DEPENDENTS = {"projects": set(PER_PROJECT_SOURCES)}
NAMES_OF = {
    "costs_by_api_key": {"api_keys", "service_accounts", "users"},
    "users": {"usage_completions_by_key"},
    **{f"usage_{name}": {"project_rate_limits"} for name in schema.USAGE_SCHEMAS},
}
"""The names sources' figures are the names on the keys that spent: without those keys they show none."""
TRANSPORT_FAULTS = [
    b"<html><body>502 Bad Gateway</body></html>",
    b'{"object": "page", "data": [',
    b"[" * 5000 + b"]" * 5000,
    b'{"value": ' + b"7" * 5000 + b"}",
    b'{"data": NaN, "has_more": false}',
]


@POLL_EXAMPLES
@given(organization(), st.data())
def test_poll_with_one_hostile_source_keeps_every_other_sources_figures(
    replies: dict[str, Any], data: st.DataObject
) -> None:
    good = poll(replies)
    assert {f.kind for f in good.failures} <= {SKIPPED_ROWS}, "only notes of cost rows without an amount"
    assert good.sources_ok == SOURCE_ORDER
    assert TRIMMED_CONDITION not in good.conditions
    hostile_source = data.draw(st.sampled_from([s for s in SOURCE_ORDER if s not in PER_PROJECT_SOURCES]))
    raw: dict[str, bytes] = {}
    broken = dict(replies)
    if data.draw(st.booleans()):
        raw[hostile_source] = data.draw(st.sampled_from(TRANSPORT_FAULTS))
    else:
        broken[hostile_source] = data.draw(schema.hostile(st.just(replies[hostile_source])))
    bad = poll(broken, raw)
    assert all(f.kind in {*KINDS, SKIPPED_ROWS} for f in bad.failures), [f for f in bad.failures if f.kind == "error"]
    failed = {f.source for f in bad.failures if f.kind != SKIPPED_ROWS}
    assert failed <= {hostile_source, *DEPENDENTS.get(hostile_source, ())}
    for source in SOURCE_ORDER:
        if source == hostile_source or source in DEPENDENTS.get(hostile_source, ()):
            continue
        assert source in bad.sources_ok, source
        if source not in NAMES_OF.get(hostile_source, ()):
            assert figures(bad, source) == figures(good, source), source
        assert [f for f in bad.failures if f.source == source] == [f for f in good.failures if f.source == source]


@pytest.mark.parametrize("with_last_id", [True, False])
@settings(max_examples=40, deadline=None)
@given(projects=st.lists(schema.PROJECT, min_size=1, max_size=12, unique_by=lambda p: p["id"]), size=st.integers(1, 5))
def test_iter_list_follows_every_page_with_or_without_last_id(
    projects: list[dict[str, Any]], size: int, with_last_id: bool
) -> None:
    """`last_id` is optional in the spec: the cursor is then the last item's id (issue 7, item 4)."""
    pages = [projects[i : i + size] for i in range(0, len(projects), size)]
    by_cursor = {None: 0} | {chunk[-1]["id"]: index + 1 for index, chunk in enumerate(pages[:-1])}

    class ListSession:
        def get(self, url: str, *, params: Any, headers: Any, timeout: Any, stream: bool = False) -> requests.Response:
            index = by_cursor[params.get("after")]
            page = schema.list_page(pages[index], has_more=index < len(pages) - 1, last_id=with_last_id)
            return Reply(200, dumps_exact(page).encode(), {}).fresh()

    client = OpenAIClient(admin_key=lambda _: "sk-admin-x", base_url="http://openai.invalid/v1", http=ListSession())  # type: ignore[arg-type]
    items = list(client.iter_list("/organization/projects", {"limit": size}, source="projects"))
    assert [p["id"] for p in items] == [p["id"] for p in projects]
