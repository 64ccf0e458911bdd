"""Who is spending: costs by API key (and by project, by day) with each key's name, redacted value, owner
and project; the name sources failing alone; the exact sum to the organization's total; line-item
quantities; the snapshot's schema 3 and its readers of schema 2."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from decimal import Decimal, Inexact, localcontext
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from spendwatch.core.errors import UnavailableError
from spendwatch.core.snapshot import ApiKeyCost, Snapshot
from spendwatch.poller.collect import (
    BREAKDOWN_CAP,
    NONE_KEY,
    OTHER_KEY,
    TRIM_CAPS,
    TRIMMED_CONDITION,
    cap_daily,
    collect_key_costs,
    fit_item_size,
    item_size_bytes,
    parse_daily_costs,
    parse_key_costs,
    parse_usage_attribution,
)
from spendwatch.poller.openai_api import NotFoundError

from . import openai_schemas as schema
from .test_poll_collect import (
    DAY,
    NOV_1,
    POLL,
    RoutedClient,
    api_key,
    collect,
    cost_bucket,
    full_routes,
    key_bucket,
    user_owner,
)

MONTH_START = datetime(2026, 11, 1, tzinfo=UTC)
NEXT_MIDNIGHT = datetime(2026, 11, 22, tzinfo=UTC)


def keys_of(snapshot: Snapshot) -> dict[str, ApiKeyCost]:
    return {k.key: k for k in snapshot.costs_by_api_key_usd}


def test_collect_snapshot_costs_by_api_key_name_each_key_and_sum_to_the_month_to_date() -> None:
    snapshot = collect(RoutedClient(full_routes()))
    keys = keys_of(snapshot)
    assert [k.key for k in snapshot.costs_by_api_key_usd] == ["key_gone", "key_chat", NONE_KEY]
    chat = keys["key_chat"]
    assert (chat.name, chat.redacted_value, chat.project_id) == ("Chat backend", "sk-proj-****chat", "proj_a")
    assert (chat.owner_type, chat.owner_id, chat.owner_label()) == ("user", "user_ada", "Ada")
    assert chat.label() == "Chat backend (sk-proj-****chat)"
    assert chat.daily_usd[0] == Decimal("3.4182615") and len(chat.daily_usd) == 21
    gone = keys["key_gone"]  # deleted since it spent: no project lists it any more
    assert (gone.name, gone.redacted_value, gone.project_id, gone.label()) == (None, None, "proj_b", "key_gone")
    assert gone.daily_usd[20] == Decimal("5.1204") and sum(gone.daily_usd) == Decimal("5.1204")
    assert keys[NONE_KEY].amount_usd == Decimal("0.0000001")
    assert sum(k.amount_usd for k in snapshot.costs_by_api_key_usd) == snapshot.month_to_date_usd
    assert sum(p.amount_usd for p in snapshot.daily_costs_by_project_usd) == snapshot.month_to_date_usd
    assert {p.key: p.amount_usd for p in snapshot.daily_costs_by_project_usd} == {
        "proj_a": Decimal("3.4182615"),
        "proj_b": Decimal("5.1204001"),
    }


def test_collect_snapshot_failing_name_endpoints_cost_only_the_names() -> None:
    routes = full_routes()
    routes["/organization/projects/proj_a/api_keys"] = UnavailableError("api_keys", "server error 502 after 4 attempts")
    routes["/organization/users"] = UnavailableError("users", "server error 500 after 4 attempts")
    snapshot = collect(RoutedClient(routes))
    failed = {f.source: f.detail for f in snapshot.failures}
    assert set(failed) == {"api_keys", "users"}
    assert failed["api_keys"].startswith("1 of 3 projects failed: proj_a: server error 502")
    chat = keys_of(snapshot)["key_chat"]
    assert (chat.name, chat.owner_id, chat.project_id, chat.label()) == (None, None, "proj_a", "key_chat")
    assert chat.amount_usd == Decimal("3.4182615"), "the totals never depend on the names"
    assert sum(k.amount_usd for k in snapshot.costs_by_api_key_usd) == snapshot.month_to_date_usd
    assert "costs_by_api_key" in snapshot.sources_ok


def test_collect_snapshot_unnamed_service_account_and_user_who_left_are_shown_honestly() -> None:
    routes = full_routes()
    account_owner = {
        "type": "service_account",
        "service_account": {"id": "svc_acct_1", "name": "", "created_at": 1, "role": "member"},
    }
    routes["/organization/projects/proj_b/api_keys"] = [
        api_key("key_gone", "Batch", account_owner),
        api_key("key_left", "Old laptop", user_owner("user_gone", "Bob")),
    ]
    by_key: list[dict[str, Any]] = routes[f"/organization/costs?{NOV_1}&api_key_id,project_id"]  # type: ignore[assignment]
    by_key[0]["data"].append(key_bucket(NOV_1 + 2 * DAY, ("1.5", "proj_b", "key_left")))
    org_costs: list[dict[str, Any]] = routes[f"/organization/costs?{NOV_1}"]  # type: ignore[assignment]
    org_costs[0]["data"].append(cost_bucket(NOV_1 + 2 * DAY, ("1.5", None, None)))
    snapshot = collect(RoutedClient(routes))
    keys = keys_of(snapshot)
    assert keys["key_gone"].owner_label() == "service account svc_acct_1", "an empty name is no name"
    assert keys["key_left"].owner_left and keys["key_left"].owner_label() == "Bob (left the organization)"
    routes["/organization/projects/proj_b/service_accounts"] = [
        {"object": "organization.project.service_account", "id": "svc_acct_1", "name": "Nightly batch"}
    ]
    assert keys_of(collect(RoutedClient(routes)))["key_gone"].owner_label() == "Nightly batch"


def test_collect_snapshot_project_list_failing_loses_the_key_names_not_the_key_costs() -> None:
    routes = full_routes()
    routes["/organization/projects"] = UnavailableError("projects", "server error 503 after 4 attempts")
    snapshot = collect(RoutedClient(routes))
    failed = {f.source: f.detail for f in snapshot.failures}
    assert failed["api_keys"] == failed["service_accounts"] == "not read: the project list could not be read"
    assert sum(k.amount_usd for k in snapshot.costs_by_api_key_usd) == snapshot.month_to_date_usd


def test_collect_snapshot_archived_project_without_keys_endpoint_is_not_a_failure() -> None:
    routes = full_routes()
    routes["/organization/projects/proj_old/service_accounts"] = NotFoundError("service_accounts", "not found (404)")
    snapshot = collect(RoutedClient(routes))
    assert snapshot.failures == ()


def test_collect_snapshot_line_items_carry_their_quantity_and_unit() -> None:
    routes = full_routes()
    rows: list[dict[str, Any]] = [
        {"amount": {"value": Decimal(4)}, "line_item": "gpt-4o, input", "quantity": 1600000, "quantity_unit": "tokens"},
        {
            "amount": {"value": Decimal(4)},
            "line_item": "gpt-4o, input",
            "quantity": Decimal("0.5"),
            "quantity_unit": "tokens",
        },
        {"amount": {"value": Decimal("0.25")}, "line_item": "Web search", "quantity": 10, "quantity_unit": None},
        {"amount": {"value": Decimal("0.2886616")}, "line_item": "Web search", "quantity": 3, "quantity_unit": "calls"},
    ]
    routes[f"/organization/costs?{NOV_1}&line_item"] = [{"data": [{"start_time": NOV_1, "results": rows}]}]
    snapshot = collect(RoutedClient(routes))
    items = {s.key: s for s in snapshot.costs_by_line_item_usd}
    assert (items["gpt-4o, input"].quantity, items["gpt-4o, input"].quantity_unit) == (Decimal("1600000.5"), "tokens")
    assert (items["Web search"].quantity, items["Web search"].quantity_unit) == (None, None), "no single unit"


def test_collect_snapshot_line_item_with_a_row_lacking_its_quantity_has_no_quantity() -> None:
    routes = full_routes()
    rows: list[dict[str, Any]] = [
        {"amount": {"value": Decimal(4)}, "line_item": "gpt-4o, input", "quantity": 1000, "quantity_unit": "tokens"},
        {"amount": {"value": Decimal("4.5386616")}, "line_item": "gpt-4o, input", "quantity_unit": "tokens"},
    ]
    routes[f"/organization/costs?{NOV_1}&line_item"] = [{"data": [{"start_time": NOV_1, "results": rows}]}]
    [item] = collect(RoutedClient(routes)).costs_by_line_item_usd
    assert (item.quantity, item.quantity_unit) == (None, None), "1000 tokens would understate the month"


# --- the exact sum ------------------------------------------------------------------------------------

KEY_IDS = st.sampled_from([None, *(f"key_{i:03d}" for i in range(70))])


@st.composite
def key_cost_pages(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Pages of `/organization/costs?group_by=api_key_id&group_by=project_id` (CostsResult rows, every
    optional field drawn present or absent), one bucket per day of November through the 21st."""
    row = schema.obj(
        {"object": st.just("organization.costs.result")},
        {
            "amount": schema.obj({"value": schema.amounts()}, {"currency": st.sampled_from(["usd", "USD"])}),
            "api_key_id": KEY_IDS,
            "project_id": schema.nullable(st.sampled_from(["proj_a", "proj_b", "proj_c"])),
            "line_item": st.none(),
            "quantity": st.none(),
            "quantity_unit": st.none(),
        },
    )
    days = draw(st.lists(st.integers(0, 20), min_size=1, max_size=21, unique=True))
    buckets = [
        {
            "object": "bucket",
            "start_time": NOV_1 + d * DAY,
            "end_time": NOV_1 + (d + 1) * DAY,
            "results": draw(st.lists(row, max_size=12)),
        }
        for d in sorted(days)
    ]
    return [{"object": "page", "data": buckets[:11]}, {"object": "page", "data": buckets[11:]}]


def _org_total(pages: Iterable[dict[str, Any]]) -> Decimal:
    """What the ungrouped query answers for the same buckets: each day's rows, summed."""
    ungrouped = [
        {**page, "data": [{**b, "results": [r for r in b["results"] if "amount" in r]} for b in page["data"]]}
        for page in pages
    ]
    return sum(parse_daily_costs(ungrouped).values(), Decimal(0))


class PagesClient(RoutedClient):
    def __init__(self, pages: list[dict[str, Any]]) -> None:
        super().__init__({f"/organization/costs?{NOV_1}&api_key_id,project_id": pages})


@settings(max_examples=80, deadline=None)
@given(key_cost_pages())
def test_costs_by_api_key_sum_exactly_to_the_organizations_total_at_every_cap(pages: list[dict[str, Any]]) -> None:
    shares = collect_key_costs(PagesClient(pages), MONTH_START, NEXT_MIDNIGHT)
    with localcontext() as exact:  # the test's own sums are exact too, or raise
        exact.prec, exact.traps[Inexact] = 1000, True
        _check_sums(pages, shares.keys, shares.projects)


def _check_sums(pages: list[dict[str, Any]], keys: list[ApiKeyCost], projects: list[Any]) -> None:
    total = _org_total(pages)
    for cap in (BREAKDOWN_CAP, *TRIM_CAPS):
        for capped in (cap_daily(keys, cap, "API keys"), cap_daily(projects, cap, "projects")):
            assert len(capped) <= cap + 1
            assert sum((s.amount_usd for s in capped), Decimal(0)) == total
            for share in capped:
                assert sum(share.daily_usd, Decimal(0)) == share.amount_usd
                assert len(share.daily_usd) == 21
            by_day = [sum((s.daily_usd[i] for s in capped), Decimal(0)) for i in range(21)]
            days = parse_daily_costs(pages)
            assert by_day == [days.get(date(2026, 11, i + 1), Decimal(0)) for i in range(21)]


@settings(max_examples=60, deadline=None)
@given(key_cost_pages())
def test_parse_key_costs_books_each_key_to_the_project_of_most_of_its_costs(pages: list[dict[str, Any]]) -> None:
    costs = parse_key_costs(pages)
    for key, project in costs.key_project.items():
        assert NONE_KEY not in (key, project)
        rows = [r for p in pages for b in p["data"] for r in b["results"] if (r.get("api_key_id") or NONE_KEY) == key]
        assert project in {r.get("project_id") for r in rows}


# --- the size guard and the schema --------------------------------------------------------------------


def _many_keys(count: int) -> Snapshot:
    snapshot = collect(RoutedClient(full_routes()))
    keys = tuple(
        ApiKeyCost(
            key=f"key_{i:04d}",
            name=f"A key with a long descriptive name number {i}",
            redacted_value="sk-proj-****abcd",
            project_id="proj_a",
            owner_type="user",
            owner_id=f"user-{i:024d}",
            owner_name=f"Owner {i}",
            amount_usd=Decimal(i + 1) / 8,
            daily_usd=(Decimal(i + 1) / 8,),
        )
        for i in range(count)
    )
    return snapshot.model_copy(update={"costs_by_api_key_usd": cap_daily(keys, BREAKDOWN_CAP, "API keys")})


def test_costs_by_api_key_keep_the_largest_keys_and_an_other_naming_how_many() -> None:
    snapshot = _many_keys(80)
    assert len(snapshot.costs_by_api_key_usd) == BREAKDOWN_CAP + 1
    other = snapshot.costs_by_api_key_usd[-1]
    assert (other.key, other.name, other.label()) == (OTHER_KEY, "30 more API keys", "30 more API keys")
    assert other.owner_id is None and other.project_id is None
    assert sum(k.amount_usd for k in snapshot.costs_by_api_key_usd) == sum(Decimal(i + 1) / 8 for i in range(80))


def test_fit_item_size_trims_the_key_list_keeping_its_total() -> None:
    snapshot = _many_keys(80)
    total = sum(k.amount_usd for k in snapshot.costs_by_api_key_usd)
    fitted = fit_item_size(snapshot, limit_bytes=item_size_bytes(snapshot) - 1000)
    assert TRIMMED_CONDITION in fitted.conditions
    assert len(fitted.costs_by_api_key_usd) < len(snapshot.costs_by_api_key_usd)
    assert sum(k.amount_usd for k in fitted.costs_by_api_key_usd) == total
    other = fitted.costs_by_api_key_usd[-1]
    assert other.name == f"{80 - len(fitted.costs_by_api_key_usd) + 1} more API keys"


def test_snapshot_schema_3_round_trips_its_key_costs_and_reads_schema_2() -> None:
    snapshot = collect(RoutedClient(full_routes()))
    assert snapshot.schema_version == 3
    item = snapshot.to_item(expires_at=1)
    assert Snapshot.from_item(item) == snapshot
    old = {k: v for k, v in item.items() if k not in ("costs_by_api_key_usd", "daily_costs_by_project_usd")}
    for share in old["costs_by_line_item_usd"]:
        share.pop("quantity", None)
        share.pop("quantity_unit", None)
    read = Snapshot.from_item({**old, "schema_version": 2})
    assert read.costs_by_api_key_usd == () and read.month_to_date_usd == snapshot.month_to_date_usd
    assert Snapshot.from_json_dict(snapshot.to_json_dict()) == snapshot


def test_collect_snapshot_never_keeps_a_key_a_reply_put_in_a_name_or_redacted_value() -> None:
    secret = "sk-proj-" + "A1b2C3d4" * 6
    routes = full_routes()
    leaky = api_key("key_chat", f"pasted {secret}", user_owner("user_ada", secret))
    routes["/organization/projects/proj_a/api_keys"] = [{**leaky, "redacted_value": secret}]
    snapshot = collect(RoutedClient(routes))
    chat = keys_of(snapshot)["key_chat"]
    assert (chat.name, chat.redacted_value, chat.owner_name) == ("pasted [redacted]", "[redacted]", "[redacted]")
    assert secret not in repr(snapshot.to_item(expires_at=1)) and secret not in repr(snapshot.to_json_dict())


def test_poll_time_day_is_the_last_entry_of_each_daily_series() -> None:
    snapshot = collect(RoutedClient(full_routes()))
    assert {len(k.daily_usd) for k in snapshot.costs_by_api_key_usd} == {POLL.day}


# --- completions by key, user, batch and service tier ------------------------------------------------------


def test_collect_snapshot_attributes_completions_to_keys_users_batch_and_tier() -> None:
    snapshot = collect(RoutedClient(full_routes()))
    who = snapshot.completions_attribution
    assert who is not None and "usage_completions_by_key" in snapshot.sources_ok
    assert who.totals["input_tokens"] == 10
    assert {k: v["input_tokens"] for k, v in who.by_api_key.items()} == {"key_chat": 7, NONE_KEY: 3}
    assert {k: v["input_tokens"] for k, v in who.by_user.items()} == {"user_ada": 7, "user_gone": 3}
    assert who.user_names == {"user_ada": "Ada"}, "a user who left has no name: shown by id"
    assert {k: v["input_tokens"] for k, v in who.by_batch.items()} == {"standard": 7, "batch": 3}
    assert {k: v["input_tokens"] for k, v in who.by_service_tier.items()} == {"default": 7, "flex": 3}


@settings(max_examples=60, deadline=None)
@given(schema.usage_pages("completions", 4))
def test_parse_usage_attribution_every_breakdown_sums_to_the_totals_at_every_cap(pages: list[Any]) -> None:
    for cap in (BREAKDOWN_CAP, 1, 0):
        who = parse_usage_attribution(pages, cap=cap)
        for breakdown in (who.by_api_key, who.by_user, who.by_batch, who.by_service_tier):
            assert len(breakdown) <= cap + 1
            for counter, total in who.totals.items():
                assert sum(counts.get(counter, 0) for counts in breakdown.values()) == total, counter


def test_collect_snapshot_keeps_the_rate_limits_of_the_models_in_use() -> None:
    snapshot = collect(RoutedClient(full_routes()))
    assert [(r.scope, r.model, r.limits) for r in snapshot.rate_limits] == [
        (
            "proj_a",
            "m",
            {
                "max_requests_per_1_minute": 500,
                "max_tokens_per_1_minute": 30000,
                "batch_1_day_max_input_tokens": 900000,
            },
        )
    ], "dall-e-2 was not used this month; proj_b's 404 is no limits"
    assert "project_rate_limits" in snapshot.sources_ok
