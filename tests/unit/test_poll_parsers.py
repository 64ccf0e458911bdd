"""Every parser against payloads shaped like OpenAI's (built here in code), and their malformed variants.

Payloads go through `loads_exact`, as replies do: every non-integer number is a Decimal.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import TypeSerializer

from spendwatch.core.errors import MalformedReplyError
from spendwatch.core.money import loads_exact
from spendwatch.core.snapshot import CostShare
from spendwatch.poller.collect import (
    NONE_KEY,
    OTHER_KEY,
    USAGE_BY_NAME,
    USAGE_SPECS,
    SkippedRows,
    cap_counts,
    cap_shares,
    parse_admin_key,
    parse_credit_grants,
    parse_daily_costs,
    parse_grouped_costs,
    parse_project,
    parse_spend_alert,
    parse_spend_limit,
    parse_subscription,
    parse_usage,
    usd_to_cents,
)
from spendwatch.poller.openai_api import dynamodb_number, require_int, require_number

DAY = 86400
AUG_18 = 1787011200  # 2026-08-18T00:00:00Z


def exact(payload: Any) -> Any:
    """Round-trip through JSON text and the exact parser, as a reply would arrive."""
    return loads_exact(json.dumps(payload, default=str).replace('"__num__', "").replace('__num__"', ""))


def num(text: str) -> str:
    """A JSON number written from text (json.dumps would otherwise need a float)."""
    return f"__num__{text}__num__"


def page(*buckets: dict[str, Any], has_more: bool = False, next_page: str | None = None) -> dict[str, Any]:
    return {"object": "page", "data": list(buckets), "has_more": has_more, "next_page": next_page}


def bucket(start: int, *results: dict[str, Any]) -> dict[str, Any]:
    return {"object": "bucket", "start_time": start, "end_time": start + DAY, "results": list(results)}


def cost(value: str, *, project_id: str | None = None, line_item: str | None = None) -> dict[str, Any]:
    return {
        "object": "organization.costs.result",
        "amount": {"value": num(value), "currency": "usd"},
        "line_item": line_item,
        "project_id": project_id,
        "api_key_id": None,
        "quantity": None,
        "quantity_unit": None,
    }


def completions(model: str, project: str | None, **counts: int) -> dict[str, Any]:
    row: dict[str, Any] = {
        "object": "organization.usage.completions.result",
        "input_tokens": 0,
        "output_tokens": 0,
        "num_model_requests": 0,
        "project_id": project,
        "user_id": None,
        "api_key_id": None,
        "model": model,
        "batch": None,
        "service_tier": None,
    }
    row.update(counts)
    return row


# --------------------------------------------------------------------------------------------------
# costs
# --------------------------------------------------------------------------------------------------


def test_parse_daily_costs_sums_grouped_rows_exactly_per_utc_day() -> None:
    pages = [
        exact(page(bucket(AUG_18, cost("3.4182615", project_id="p1", line_item="a"), cost("5.1204", project_id="p2")))),
        exact(page(bucket(AUG_18 + DAY), bucket(AUG_18 + 2 * DAY, cost("0.1"), cost("0.2")))),
    ]
    daily = parse_daily_costs(pages)
    assert daily == {
        date(2026, 8, 18): Decimal("8.5386615"),
        date(2026, 8, 19): Decimal(0),
        date(2026, 8, 20): Decimal("0.3"),
    }
    assert all(isinstance(v, Decimal) for v in daily.values())


def test_parse_daily_costs_accepts_integer_amounts_and_upper_case_currency() -> None:
    row = cost("0")
    row["amount"] = {"value": 2, "currency": "USD"}
    assert parse_daily_costs([exact(page(bucket(AUG_18, row)))]) == {date(2026, 8, 18): Decimal(2)}


def test_parse_grouped_costs_by_project_and_line_item_with_null_group() -> None:
    pages = [
        exact(
            page(
                bucket(AUG_18, cost("1.25", project_id="proj_a"), cost("0.5", project_id=None)),
                bucket(AUG_18 + DAY, cost("2.000001", project_id="proj_a")),
            )
        )
    ]
    assert parse_grouped_costs(pages, "project_id", "costs_by_project") == {
        "proj_a": Decimal("3.250001"),
        NONE_KEY: Decimal("0.5"),
    }
    items = [exact(page(bucket(AUG_18, cost("1", line_item="gpt-4o, input"), cost("2", line_item="Web search"))))]
    assert parse_grouped_costs(items, "line_item", "costs_by_line_item") == {
        "gpt-4o, input": Decimal(1),
        "Web search": Decimal(2),
    }


def _set_amount(value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda b: b["results"][0]["amount"].update(value=value)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_set_amount("12.3"), "results[0].amount.value is a string ('12.3'), expected a number"),
        (_set_amount(True), "results[0].amount.value is a bool, expected a number"),
        (_set_amount(1.5), "results[0].amount.value is a float, expected a number"),
        (_set_amount(Decimal("NaN")), "results[0].amount.value is NaN, expected a finite number"),
        (lambda b: b["results"][0]["amount"].update(currency="eur"), "amount.currency is 'eur', expected 'usd'"),
        (lambda b: b["results"][0].update(amount="1.5"), "results[0].amount is not an object (a string ('1.5'))"),
        (lambda b: b["results"][0]["amount"].update(currency=7), "amount.currency is a int, expected 'usd'"),
        (lambda b: b.update(start_time=10**20), "data[0].start_time is 1.000e+20, not a plausible Unix time"),
        (lambda b: b["results"].__setitem__(0, "x"), "results[0] is not an object (a string ('x'))"),
        (lambda b: b.pop("results"), "data[0].results is not a list (null)"),
        (lambda b: b.update(start_time="1787011200"), "data[0].start_time is a string"),
    ],
)
def test_parse_costs_malformed_rows_are_named(mutate: Callable[[dict[str, Any]], None], expected: str) -> None:
    broken = bucket(AUG_18, {**cost("1.5"), "amount": {"value": Decimal("1.5"), "currency": "usd"}})
    mutate(broken)
    with pytest.raises(MalformedReplyError) as caught:
        parse_daily_costs([{"data": [broken]}], "costs")
    assert caught.value.source == "costs"
    assert expected in caught.value.detail
    assert caught.value.detail.startswith("page 1 data[0]")


def test_parse_costs_result_without_an_amount_is_skipped_and_listed() -> None:
    """OpenAI's spec requires only `object` in a cost result (issue 7, item 4): the rest is kept."""
    rows = [
        cost("1.5"),
        {"object": "organization.costs.result", "line_item": None, "project_id": None},
        {"object": "organization.costs.result", "amount": {"value": None, "currency": "usd"}},
        {"object": "organization.costs.result", "amount": {"currency": "usd"}},
        cost("2.25"),
    ]
    skipped = SkippedRows("cost rows without an amount")
    pages = [exact(page(bucket(AUG_18, *rows)))]
    assert parse_daily_costs(pages, "costs", skipped) == {date(2026, 8, 18): Decimal("3.75")}
    note = skipped.note("costs")
    assert note is not None
    assert (note.source, note.kind) == ("costs", "skipped_rows")
    assert note.detail == (
        "3 cost rows without an amount skipped "
        "(page 1 data[0].results[1], page 1 data[0].results[2], page 1 data[0].results[3])"
    )
    grouped = SkippedRows("cost rows without an amount")
    rows[0] = cost("1.5", project_id="proj_a")
    assert parse_grouped_costs([exact(page(bucket(AUG_18, *rows)))], "project_id", "costs_by_project", grouped) == {
        "proj_a": Decimal("1.5"),
        NONE_KEY: Decimal("2.25"),
    }
    assert len(grouped.where) == 3


def test_parse_costs_amount_without_currency_is_usd_but_another_currency_is_an_error() -> None:
    rows = [{"object": "organization.costs.result", "amount": {"value": num("0.06")}}, cost("1")]
    assert parse_daily_costs([exact(page(bucket(AUG_18, *rows)))], "costs") == {date(2026, 8, 18): Decimal("1.06")}
    rows[0]["amount"]["currency"] = None
    assert parse_daily_costs([exact(page(bucket(AUG_18, *rows)))], "costs") == {date(2026, 8, 18): Decimal("1.06")}
    rows[0]["amount"]["currency"] = "EUR"
    with pytest.raises(MalformedReplyError, match=r"amount\.currency is 'EUR', expected 'usd'"):
        parse_daily_costs([exact(page(bucket(AUG_18, *rows)))], "costs")


def test_parse_costs_absurd_start_time_is_named_not_unexpected() -> None:
    """Out of datetime's range: used to escape as an OverflowError (issue 7, item 5)."""
    for start in (10**20, -(10**20), 253402300800):
        with pytest.raises(MalformedReplyError, match=r"page 1 data\[0\]\.start_time is .*not a plausible Unix time"):
            parse_daily_costs([{"data": [bucket(start, cost("1"))]}], "costs")


# --------------------------------------------------------------------------------------------------
# usage
# --------------------------------------------------------------------------------------------------


def test_parse_usage_completions_totals_by_model_and_by_project() -> None:
    pages = [
        exact(
            page(
                bucket(
                    AUG_18,
                    completions(
                        "gpt-4.1-mini",
                        "proj_a",
                        input_tokens=1000,
                        input_cached_tokens=400,
                        output_tokens=200,
                        input_audio_tokens=7,
                        output_audio_tokens=3,
                        num_model_requests=5,
                    ),
                    completions("gpt-4o", "proj_b", input_tokens=50, output_tokens=10, num_model_requests=1),
                ),
                bucket(
                    AUG_18 + DAY,
                    completions("gpt-4.1-mini", "proj_b", input_tokens=10, output_tokens=1, num_model_requests=1),
                ),
            )
        )
    ]
    summary = parse_usage(USAGE_BY_NAME["completions"], pages)
    assert summary.totals["input_tokens"] == 1060
    assert summary.totals["input_cached_tokens"] == 400
    assert summary.totals["input_audio_tokens"] == 7
    assert summary.totals["output_audio_tokens"] == 3
    assert summary.totals["num_model_requests"] == 7
    assert summary.totals["output_image_tokens"] == 0, "every known counter is in the totals"
    assert summary.by_model["gpt-4.1-mini"] == {
        "input_tokens": 1010,
        "input_cached_tokens": 400,
        "output_tokens": 201,
        "input_audio_tokens": 7,
        "output_audio_tokens": 3,
        "num_model_requests": 6,
    }
    assert summary.by_project["proj_b"] == {"input_tokens": 60, "output_tokens": 11, "num_model_requests": 2}
    assert list(summary.by_model) == ["gpt-4.1-mini", "gpt-4o"], "largest input first"


def test_parse_usage_older_completions_rows_without_optional_counters() -> None:
    row = {"object": "organization.usage.completions.result", "input_tokens": 5, "output_tokens": 2}
    row |= {"num_model_requests": 1, "model": "gpt-4o-mini", "project_id": None}
    summary = parse_usage(USAGE_BY_NAME["completions"], [exact(page(bucket(AUG_18, row)))])
    assert summary.totals["input_cached_tokens"] == 0
    assert summary.by_project == {NONE_KEY: {"input_tokens": 5, "output_tokens": 2, "num_model_requests": 1}}


def test_parse_usage_keeps_counters_the_api_adds_later() -> None:
    row = completions("gpt-5", "p", input_tokens=1, output_tokens=1, num_model_requests=1, reasoning_tokens=9)
    summary = parse_usage(USAGE_BY_NAME["completions"], [exact(page(bucket(AUG_18, row)))])
    assert summary.totals["reasoning_tokens"] == 9


def _usage_row(name: str) -> dict[str, Any]:
    spec = USAGE_BY_NAME[name]
    row: dict[str, Any] = {"object": f"organization.usage.{name}.result", "project_id": "proj_x"}
    if "model" in spec.group_by:
        row["model"] = "some-model"
    for index, metric in enumerate(spec.required):
        row[metric] = 10 * (index + 1)
    return row


@pytest.mark.parametrize("name", [spec.name for spec in USAGE_SPECS])
def test_parse_usage_every_type_sums_its_required_counters(name: str) -> None:
    spec = USAGE_BY_NAME[name]
    pages = [exact(page(bucket(AUG_18, _usage_row(name)), bucket(AUG_18 + DAY, _usage_row(name))))]
    summary = parse_usage(spec, pages)
    factor = 1 if spec.gauges else 2
    assert {m: summary.totals[m] for m in spec.required} == {
        m: factor * 10 * (i + 1) for i, m in enumerate(spec.required)
    }
    assert set(summary.by_project) == {"proj_x"}
    assert bool(summary.by_model) is ("model" in spec.group_by)


def test_parse_usage_vector_store_bytes_are_the_latest_day_not_a_sum() -> None:
    def store(project: str, size: int) -> dict[str, Any]:
        return {"object": "organization.usage.vector_stores.result", "usage_bytes": size, "project_id": project}

    pages = [
        exact(
            page(
                bucket(AUG_18, store("p1", 700), store("p2", 100)),
                bucket(AUG_18 + DAY, store("p1", 734003200)),
                bucket(AUG_18 + 2 * DAY),  # today: no rows yet
            )
        )
    ]
    summary = parse_usage(USAGE_BY_NAME["vector_stores"], pages)
    assert summary.totals == {"usage_bytes": 734003200}
    assert summary.by_project == {"p1": {"usage_bytes": 734003200}}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "input_tokens is null, expected an integer"),
        ("1200", "input_tokens is a string ('1200'), expected an integer"),
        (Decimal("12.5"), "input_tokens is a Decimal, expected an integer"),
        (True, "input_tokens is a bool, expected an integer"),
    ],
)
def test_parse_usage_malformed_counters_are_named(value: Any, expected: str) -> None:
    row = completions("m", "p", input_tokens=1, output_tokens=1, num_model_requests=1)
    row["input_tokens"] = value
    with pytest.raises(MalformedReplyError) as caught:
        parse_usage(USAGE_BY_NAME["completions"], [{"data": [bucket(AUG_18, row)]}])
    assert caught.value.source == "usage_completions"
    assert caught.value.detail == f"page 1 data[0].results[0].{expected}"


def test_parse_usage_missing_required_counter_and_bad_dimension_are_named() -> None:
    row = {"object": "organization.usage.images.result", "num_model_requests": 1, "model": "gpt-image-1"}
    with pytest.raises(MalformedReplyError, match=r"results\[0\]\.images is missing"):
        parse_usage(USAGE_BY_NAME["images"], [{"data": [bucket(AUG_18, row)]}])
    row = {**_usage_row("images"), "model": 7}
    with pytest.raises(MalformedReplyError, match=r"results\[0\]\.model is a int, expected a string or null"):
        parse_usage(USAGE_BY_NAME["images"], [{"data": [bucket(AUG_18, row)]}])


def test_parse_usage_breakdowns_are_capped_with_an_exact_other() -> None:
    rows = [
        {"object": "organization.usage.embeddings.result", "input_tokens": i + 1, "num_model_requests": 1}
        | {"model": "text-embedding-3-small", "project_id": f"p{i:03d}"}
        for i in range(60)
    ]
    summary = parse_usage(USAGE_BY_NAME["embeddings"], [exact(page(bucket(AUG_18, *rows)))], cap=50)
    assert len(summary.by_project) == 51
    assert summary.by_project[OTHER_KEY] == {"input_tokens": sum(range(1, 11)), "num_model_requests": 10}
    assert sum(v["input_tokens"] for v in summary.by_project.values()) == summary.totals["input_tokens"]
    assert "p059" in summary.by_project and "p000" not in summary.by_project


# --------------------------------------------------------------------------------------------------
# projects, limits, alerts, admin key
# --------------------------------------------------------------------------------------------------


def test_parse_project_reads_id_name_and_status() -> None:
    item = exact(
        {
            "id": "proj_7Hq2",
            "object": "organization.project",
            "name": "Customer chatbot",
            "created_at": 1741910400,
            "archived_at": None,
            "status": "active",
            "external_key_id": None,
            "residency": "GLOBAL",
        }
    )
    project = parse_project(item, "data[0]")
    assert (project.id, project.name, project.status) == ("proj_7Hq2", "Customer chatbot", "active")
    archived = parse_project({"id": "proj_old", "name": None, "archived_at": 1760000000}, "data[1]")
    assert archived.status == "archived"
    with pytest.raises(MalformedReplyError, match=r"data\[2\]\.id is null"):
        parse_project({"name": "x"}, "data[2]")


def test_parse_spend_limit_keeps_cents_and_enforcement() -> None:
    body = exact(
        {
            "object": "organization.spend_limit",
            "threshold_amount": 250000,
            "currency": "USD",
            "interval": "month",
            "enforcement": {"status": "enforcing"},
        }
    )
    limit = parse_spend_limit(body, "organization", "spend_limit")
    assert (limit.scope, limit.threshold_cents, limit.source) == ("organization", 250000, "admin_api")
    assert limit.threshold_usd == Decimal(2500)
    assert limit.enforcement_status == "enforcing"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"threshold_amount": "250000"}, "threshold_amount is a string"),
        ({"threshold_amount": None}, "threshold_amount is null"),
        ({"threshold_amount": Decimal("2500.5")}, "threshold_amount is a Decimal"),
        ({"currency": "EUR"}, "currency is 'EUR', expected 'USD'"),
        ({"enforcement": "on"}, "enforcement is not an object"),
    ],
)
def test_parse_spend_limit_malformed(change: dict[str, Any], expected: str) -> None:
    body = {"threshold_amount": 100, "currency": "USD", "interval": "month", "enforcement": {"status": "inactive"}}
    with pytest.raises(MalformedReplyError, match=expected):
        parse_spend_limit({**body, **change}, "proj_1", "project_spend_limits")


def test_parse_spend_alert_reads_threshold_in_cents() -> None:
    item = exact(
        {
            "id": "alert_8fK2mQ1",
            "object": "organization.spend_alert",
            "threshold_amount": 100000,
            "currency": "USD",
            "interval": "month",
            "notification_channel": {"type": "email", "recipients": ["finops@example.com"], "subject_prefix": None},
        }
    )
    alert = parse_spend_alert(item, "organization", "data[0]", "spend_alerts")
    assert (alert.scope, alert.id, alert.threshold_cents) == ("organization", "alert_8fK2mQ1", 100000)
    with pytest.raises(MalformedReplyError, match=r"data\[0\]\.threshold_amount is null"):
        parse_spend_alert({**item, "threshold_amount": None}, "organization", "data[0]", "spend_alerts")


def test_parse_admin_key_expiry() -> None:
    body = exact({"object": "organization.admin_api_key", "id": "key_abc", "expires_at": 1788220800})
    assert parse_admin_key(body) == datetime(2026, 9, 1, tzinfo=UTC)
    assert parse_admin_key({**body, "expires_at": None}) is None
    with pytest.raises(MalformedReplyError, match="expires_at is a string"):
        parse_admin_key({"expires_at": "soon"})
    with pytest.raises(MalformedReplyError, match=r"expires_at is 1\.000e\+30, not a plausible Unix time"):
        parse_admin_key({"expires_at": 10**30})


def test_parse_admin_key_without_expires_at_does_not_expire() -> None:
    """The spec's own example of this reply omits `expires_at` (issue 7, item 4)."""
    example = {
        "object": "organization.admin_api_key",
        "id": "key_abc",
        "name": "Main Admin Key",
        "redacted_value": "sk-admin...xyz",
        "created_at": 1711471533,
        "last_used_at": 1711471534,
        "owner": {"type": "user", "object": "organization.user", "id": "user_123", "name": "John Doe"},
    }
    assert parse_admin_key(example) is None


# --------------------------------------------------------------------------------------------------
# legacy billing
# --------------------------------------------------------------------------------------------------


def credit_summary() -> dict[str, Any]:
    return {
        "object": "credit_summary",
        "total_granted": num("600.0"),
        "total_used": num("412.731"),
        "total_available": num("187.269"),
        "total_paid_available": num("162.269"),
        "grants": {
            "object": "list",
            "data": [
                {
                    "object": "credit_grant",
                    "id": "2b6f0c1e",
                    "grant_amount": num("500.0"),
                    "used_amount": num("337.731"),
                    "effective_at": num("1772323200.5"),
                    "expires_at": 1803859200,
                },
                {
                    "object": "credit_grant",
                    "id": "9a0e4d7c",
                    "grant_amount": num("100.0"),
                    "used_amount": num("75.0"),
                    "effective_at": 1780272000,
                    "expires_at": 1788220800,
                },
            ],
        },
    }


def test_parse_credit_grants_totals_and_each_grant_in_usd() -> None:
    summary, grants = parse_credit_grants(exact(credit_summary()))
    assert summary.total_granted_usd == Decimal("600.0")
    assert summary.total_available_usd == Decimal("187.269")
    assert summary.total_paid_available_usd == Decimal("162.269")
    assert [g.id for g in grants] == ["2b6f0c1e", "9a0e4d7c"]
    assert grants[0].remaining_usd == Decimal("162.269")
    assert grants[0].effective_at == datetime(2026, 3, 1, tzinfo=UTC)
    assert grants[1].expires_at == datetime(2026, 9, 1, tzinfo=UTC)
    assert all(g.source == "session_key" for g in grants)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda b: b.update(total_available=None), "total_available is null"),
        (lambda b: b.update(total_used="412.731"), "total_used is a string"),
        (lambda b: b.pop("grants"), r"grants is not an object \(null\)"),
        (lambda b: b["grants"].pop("data"), r"grants.data is not a list \(null\)"),
        (lambda b: b["grants"]["data"][1].update(used_amount=None), r"grants.data\[1\].used_amount is null"),
        (lambda b: b["grants"]["data"][0].update(expires_at="2027-01-01"), r"grants.data\[0\].expires_at is a string"),
        (lambda b: b["grants"]["data"][0].update(expires_at=10**20), "not a plausible Unix time"),
    ],
)
def test_parse_credit_grants_malformed(mutate: Callable[[dict[str, Any]], None], expected: str) -> None:
    body = exact(credit_summary())
    mutate(body)
    with pytest.raises(MalformedReplyError, match=expected) as caught:
        parse_credit_grants(body)
    assert caught.value.source == "credit_grants"


def subscription() -> dict[str, Any]:
    return {
        "object": "billing_subscription",
        "has_payment_method": True,
        "canceled": False,
        "access_until": 1798761600,
        "soft_limit": 2500000,
        "hard_limit": 4166667,
        "system_hard_limit": 8333333,
        "soft_limit_usd": num("150.0"),
        "hard_limit_usd": num("250.0"),
        "system_hard_limit_usd": num("500.0"),
        "plan": {"title": "Pay-as-you-go", "id": "payg"},
        "billing_mechanism": "prepaid",
        "auto_recharge_enabled": True,
        "auto_recharge_threshold": num("20.0"),
        "auto_recharge_to_balance": num("100.0"),
    }


def test_parse_subscription_limits_plan_and_auto_recharge() -> None:
    sub = parse_subscription(exact(subscription()))
    assert (sub.hard_limit_usd, sub.soft_limit_usd, sub.system_hard_limit_usd) == (
        Decimal("250.0"),
        Decimal("150.0"),
        Decimal("500.0"),
    )
    assert (sub.plan_id, sub.plan_title, sub.billing_mechanism) == ("payg", "Pay-as-you-go", "prepaid")
    assert sub.has_payment_method is True
    assert sub.auto_recharge_enabled is True
    assert sub.auto_recharge_threshold_usd == Decimal("20.0")
    assert sub.auto_recharge_to_balance_usd == Decimal("100.0")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"hard_limit_usd": None}, "hard_limit_usd is null"),
        ({"soft_limit_usd": "150"}, "soft_limit_usd is a string"),
        ({"has_payment_method": "yes"}, "has_payment_method is a string"),
        ({"plan": "payg"}, "plan is not an object"),
        ({"auto_recharge_threshold": "20"}, "auto_recharge_threshold is a string"),
    ],
)
def test_parse_subscription_malformed(change: dict[str, Any], expected: str) -> None:
    with pytest.raises(MalformedReplyError, match=expected):
        parse_subscription({**exact(subscription()), **change})
    body = exact(subscription())
    del body["hard_limit_usd"]
    with pytest.raises(MalformedReplyError, match="hard_limit_usd is null"):
        parse_subscription(body)


# --------------------------------------------------------------------------------------------------
# caps
# --------------------------------------------------------------------------------------------------


def test_cap_shares_keeps_the_largest_and_an_exact_remainder() -> None:
    shares = [CostShare(key=f"p{i}", amount_usd=Decimal(i) / 1000) for i in range(1, 8)]
    capped = cap_shares(shares, 3, "projects")
    assert [s.key for s in capped] == ["p7", "p6", "p5", OTHER_KEY]
    assert capped[-1].amount_usd == Decimal("0.010")
    assert capped[-1].name == "4 more projects"
    assert sum(s.amount_usd for s in capped) == sum(s.amount_usd for s in shares)
    again = cap_shares(capped, 1, "projects")
    assert [s.key for s in again] == ["p7", OTHER_KEY]
    assert again[-1].name == "6 more projects"
    assert sum(s.amount_usd for s in again) == sum(s.amount_usd for s in shares)
    assert cap_shares(shares[:2], 3, "projects") == tuple(sorted(shares[:2], key=lambda s: -s.amount_usd))


def test_cap_counts_merges_an_existing_other() -> None:
    counts = {"a": {"n": 5}, "b": {"n": 3}, OTHER_KEY: {"n": 2}, "c": {"n": 1, "m": 0}}
    assert cap_counts(counts, "n", 1) == {"a": {"n": 5}, OTHER_KEY: {"n": 6}}
    assert cap_counts({"a": {"n": 1, "z": 0}}, "n", 5) == {"a": {"n": 1}}


# --------------------------------------------------------------------------------------------------
# exact sums and DynamoDB's number range
# --------------------------------------------------------------------------------------------------

FORTY_ONE_DIGITS = "0.12345678901234567890123456789012345678901"


def test_parse_daily_costs_sums_beyond_28_digits_exactly() -> None:
    """API floats as JSON text: 17 significant digits each, 31 in their sum (the default context keeps 28)."""
    raw = exact(page(bucket(AUG_18, cost("12345.678901234567"), cost("1.2345678901234567e-10"))))
    assert parse_daily_costs([raw]) == {date(2026, 8, 18): Decimal("12345.67890123469045678901234567")}


def test_parse_grouped_costs_sums_beyond_28_digits_exactly() -> None:
    raw = exact(
        page(bucket(AUG_18, cost("12345.678901234567", project_id="p"), cost("1.2345678901234567e-10", project_id="p")))
    )
    assert parse_grouped_costs([raw], "project_id", "costs_by_project") == {
        "p": Decimal("12345.67890123469045678901234567")
    }


def test_parse_costs_sum_needing_over_38_digits_is_rounded_at_the_38th() -> None:
    """Each amount fits; their exact sum needs 40 significant digits, DynamoDB stores 38: float noise such
    as 1e-33 next to a seven-figure amount is rounded away instead of failing the source."""
    raw = exact(page(bucket(AUG_18, cost("1234567.1"), cost("1e-33"))))
    assert list(parse_daily_costs([raw], "costs").values()) == [Decimal("1234567.1")]
    exactly = exact(page(bucket(AUG_18, cost("1234567.1"), cost("1e-30"))))  # 38 digits: kept exactly
    assert list(parse_daily_costs([exactly], "costs").values()) == [Decimal("1234567.100000000000000000000000000001")]


def test_parse_costs_sum_out_of_dynamodb_range_fails_that_source() -> None:
    grouped = exact(page(bucket(AUG_18, cost("9e125", line_item="x"), cost("9e125", line_item="x"))))
    with pytest.raises(MalformedReplyError, match="the costs of line_item 'x'") as caught:
        parse_grouped_costs([grouped], "line_item", "costs_by_line_item")
    assert caught.value.source == "costs_by_line_item"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1e200", "is 1.000e+200, outside DynamoDB's range"),
        ("1e126", "is 1.000e+126, outside DynamoDB's range"),
        ("-1e126", "is -1.000e+126, outside DynamoDB's range"),
        ("1e-131", "is 1.000e-131, outside DynamoDB's range"),
        (FORTY_ONE_DIGITS, "is a number with 41 significant digits, more than DynamoDB's 38"),
        ("123456789012345678901234567890123456789", "is a number with 39 significant digits"),
    ],
)
def test_out_of_range_amounts_are_malformed_and_name_the_field(value: str, expected: str) -> None:
    body = exact(credit_summary())
    body["total_available"] = Decimal(value)
    with pytest.raises(MalformedReplyError) as caught:
        parse_credit_grants(body)
    assert caught.value.source == "credit_grants"
    assert caught.value.detail.startswith(f"total_available {expected}")
    row = exact(page(bucket(AUG_18, cost("1"))))
    row["data"][0]["results"][0]["amount"]["value"] = Decimal(value)
    with pytest.raises(MalformedReplyError, match=r"results\[0\]\.amount\.value is"):
        parse_daily_costs([row], "costs")


def test_out_of_range_integer_amount_is_malformed() -> None:
    body = exact(credit_summary())
    body["total_granted"] = 10**45 + 1
    with pytest.raises(MalformedReplyError, match="total_granted is a number with 46 significant digits"):
        parse_credit_grants(body)


@pytest.mark.parametrize(
    "value",
    [
        "9.9999999999999999999999999999999999999e125",
        "-9.9999999999999999999999999999999999999e125",
        "1e-130",
        "12345678901234567890123456789012345678",
        "0.12345678901234567890123456789012345678",
        "1.000000000000000000000000000000000000000",  # 40 digits, 39 of them trailing zeros
        "0e-200",
        "0.00",
        "1e125",
    ],
)
def test_amounts_dynamodb_can_store_are_kept_exactly_and_serialize(value: str) -> None:
    number = require_number(Decimal(value), "x", "costs")
    assert number == Decimal(value)
    TypeSerializer().serialize(number)  # what put_item does; raises on anything it would round
    assert dynamodb_number(Decimal(value)) == number


def test_dynamodb_number_keeps_the_representation_when_it_fits() -> None:
    assert str(require_number(Decimal("1.50"), "x", "costs")) == "1.50"
    assert str(require_number(10**40, "x", "costs")) == "1E+40"  # 41 digits as written, 1 significant


def test_integers_dynamodb_cannot_store_are_malformed() -> None:
    assert require_int(10**38 - 1, "n", "usage_images") == 10**38 - 1
    with pytest.raises(MalformedReplyError, match="n is an integer of more than 38 digits"):
        require_int(10**38, "n", "usage_images")
    with pytest.raises(MalformedReplyError, match="threshold_amount is an integer of more than 38 digits"):
        parse_spend_limit({"threshold_amount": -(10**40), "currency": "USD"}, "organization", "spend_limit")


def test_parse_usage_totals_that_do_not_fit_dynamodb_fail_that_source() -> None:
    spec = USAGE_BY_NAME["completions"]
    big = 6 * 10**37
    rows = [completions("m1", "p", input_tokens=big), completions("m2", "p", input_tokens=big)]
    with pytest.raises(MalformedReplyError, match="input_tokens sums to more than 38 digits") as caught:
        parse_usage(spec, [exact(page(bucket(AUG_18, *rows)))])
    assert caught.value.source == "usage_completions"


def test_cap_shares_remainder_out_of_dynamodb_range_is_malformed_for_its_source() -> None:
    shares = [
        CostShare(key="a", amount_usd=Decimal("5")),
        CostShare(key="b", amount_usd=Decimal("9e125")),
        CostShare(key="c", amount_usd=Decimal("9e125")),
    ]
    assert cap_shares(shares, 2, "projects")[-1].amount_usd == Decimal("5")
    with pytest.raises(
        MalformedReplyError,
        match=r"the sum of the line items beyond the largest 0 is 1\.800e\+126, outside DynamoDB's range",
    ) as caught:
        cap_shares(shares, 0, "line items", source="costs_by_line_item")
    assert caught.value.source == "costs_by_line_item"


def test_usd_to_cents_multiplies_exactly_before_rounding_half_up() -> None:
    assert usd_to_cents(Decimal("12345678901234567890123456789.005")) == 1234567890123456789012345678901
    assert usd_to_cents(Decimal("0.005")) == 1


def test_parse_subscription_hard_limit_too_large_in_cents_is_malformed() -> None:
    body = exact(subscription())
    body["hard_limit_usd"] = Decimal("1e37")
    with pytest.raises(MalformedReplyError, match=r"hard_limit_usd is 1\.000e\+37, too large a limit in cents"):
        parse_subscription(body)


def test_parse_spend_limit_quotes_at_most_a_little_of_a_hostile_currency() -> None:

    with pytest.raises(MalformedReplyError) as caught:
        parse_spend_limit({"threshold_amount": 100, "currency": "X" * 100_000}, "organization", "spend_limit")
    assert len(str(caught.value)) < 200


def test_unix_time_before_1970_is_a_named_malformed_reply() -> None:
    from spendwatch.poller.collect import _timestamp

    with pytest.raises(MalformedReplyError, match="not a plausible Unix time"):
        _timestamp(-62_000_000_000, "data[0].expires_at", "admin_key")


def test_isoformat_utc_reads_back_for_every_year() -> None:
    from spendwatch.core.snapshot import isoformat_utc, parse_utc

    for year in (1, 999, 2026, 9999):
        moment = datetime(year, 1, 2, 3, 4, 5, tzinfo=UTC)
        assert parse_utc(isoformat_utc(moment)) == moment
