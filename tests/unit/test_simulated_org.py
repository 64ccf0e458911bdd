"""The simulated organization: budget shape on any day, exact money, consistent credits and usage."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from spendwatch.devtools.simulated_org import (
    ADMIN_KEY_ID,
    DAY,
    DEFAULT_MONTHLY_BUDGET_USD,
    LINE_ITEM_CATALOG,
    USAGE_TYPES,
    SimulatedOrg,
)

MID_MONTH = datetime(2026, 8, 18, 15, 0, tzinfo=UTC)

NOWS = [
    pytest.param(datetime(2026, 8, 1, 0, 30, tzinfo=UTC), id="first-of-month-00:30"),
    pytest.param(datetime(2026, 8, 1, 0, 0, tzinfo=UTC), id="first-of-month-midnight"),
    pytest.param(MID_MONTH, id="mid-month"),
    pytest.param(datetime(2026, 8, 31, 23, 59, 59, tzinfo=UTC), id="last-day"),
    pytest.param(datetime(2026, 1, 1, 6, 0, tzinfo=UTC), id="new-year"),
    pytest.param(datetime(2028, 2, 29, 12, 0, tzinfo=UTC), id="leap-day"),
]


def _month_start(now: datetime) -> int:
    return int(now.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp())


@pytest.mark.parametrize("now", NOWS)
def test_simulated_org_mtd_between_80_and_100_percent_of_budget(now: datetime) -> None:
    org = SimulatedOrg.default(now)

    mtd = org.month_to_date_usd(now)

    assert isinstance(mtd, Decimal)
    assert Decimal("0.80") * DEFAULT_MONTHLY_BUDGET_USD < mtd < DEFAULT_MONTHLY_BUDGET_USD
    assert org.month_to_date_usd() == mtd


@pytest.mark.parametrize("now", NOWS)
def test_simulated_org_mtd_is_exact_sum_of_current_month_rows(now: datetime) -> None:
    org = SimulatedOrg.default(now)
    start = _month_start(now)

    rows = [r for r in org.cost_rows if r.start_time >= start]

    assert rows
    assert sum((r.amount for r in rows), Decimal(0)) == org.month_to_date_usd()


@pytest.mark.parametrize("now", NOWS)
def test_simulated_org_rows_span_previous_month_start_through_today(now: datetime) -> None:
    org = SimulatedOrg.default(now)
    previous_month = (now.replace(day=1) - timedelta(days=1)).replace(day=1, hour=0, minute=0, second=0)
    today = int(now.timestamp()) // DAY * DAY

    days = sorted({r.start_time for r in org.cost_rows})

    assert days[0] == org.first_day == int(previous_month.timestamp())
    assert days[-1] == today
    assert all(b - a == DAY for a, b in itertools.pairwise(days))


def test_simulated_org_amounts_are_decimals_with_at_most_8_places() -> None:
    org = SimulatedOrg.default(MID_MONTH)

    for row in org.cost_rows:
        assert isinstance(row.amount, Decimal)
        assert row.amount >= 0
        assert row.amount.as_tuple().exponent >= -8  # type: ignore[operator]
        assert row.quantity is not None
        assert row.quantity_unit is None or isinstance(row.quantity_unit, str)


def test_simulated_org_has_named_line_items_with_units() -> None:
    org = SimulatedOrg.default(MID_MONTH)

    units = {r.line_item: r.quantity_unit for r in org.cost_rows}

    assert units["gpt-4.1-mini-2025-04-14, input"] == "tokens"
    assert units["gpt-4.1-mini-2025-04-14, output"] == "tokens"
    assert units["Image models"] == "images"
    assert units["Vector store storage"] == "gibibyte_hours"
    assert "Web search" in units


def test_simulated_org_has_three_projects_one_archived_without_later_costs() -> None:
    org = SimulatedOrg.default(MID_MONTH)

    archived = [p for p in org.projects if p.archived_at is not None]

    assert len(org.projects) == 3
    assert len(archived) == 1
    assert archived[0].status == "archived"
    archived_rows = [r for r in org.cost_rows if r.project_id == archived[0].id]
    assert archived_rows
    assert all(r.start_time < (archived[0].archived_at or 0) for r in archived_rows)


def test_simulated_org_is_deterministic() -> None:
    assert SimulatedOrg.default(MID_MONTH) == SimulatedOrg.default(MID_MONTH)
    assert SimulatedOrg.generate(MID_MONTH, seed=1).cost_rows != SimulatedOrg.default(MID_MONTH).cost_rows


def test_simulated_org_rejects_naive_now() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        SimulatedOrg.default(datetime(2026, 8, 18, 15, 0))


def test_simulated_org_credit_totals_match_grants() -> None:
    org = SimulatedOrg.default(MID_MONTH)
    totals = org.credit_totals()
    grants = org.credit_grants

    assert len(grants) == 2
    assert totals.total_granted == sum((g.grant_amount for g in grants), Decimal(0))
    assert totals.total_used == sum((g.used_amount for g in grants), Decimal(0))
    assert totals.total_available == totals.total_granted - totals.total_used
    assert totals.total_paid_available == sum((g.remaining for g in grants if g.paid), Decimal(0))
    assert 0 < totals.total_paid_available <= totals.total_available


def test_simulated_org_grants_expire_in_12_and_about_200_days_with_balance_left() -> None:
    org = SimulatedOrg.default(MID_MONTH)
    now_ts = int(MID_MONTH.timestamp())

    soon, later = sorted(org.credit_grants, key=lambda g: g.expires_at)

    assert soon.expires_at - now_ts == 12 * DAY
    assert 190 * DAY <= later.expires_at - now_ts <= 210 * DAY
    assert soon.remaining > 0
    assert later.remaining > 0


def test_simulated_org_limits_alerts_and_admin_key() -> None:
    org = SimulatedOrg.default(MID_MONTH)

    assert org.org_spend_limit is not None
    assert org.org_spend_limit.threshold_amount == 60_000
    assert list(org.project_spend_limits) == [org.projects[0].id]
    assert [a.threshold_amount for a in org.org_spend_alerts] == [25_000, 40_000]
    assert org.project_spend_alerts[org.projects[0].id]
    assert org.subscription.hard_limit_usd == Decimal(org.org_spend_limit.threshold_amount) / 100
    key = org.admin_keys[ADMIN_KEY_ID]
    assert key.expires_at == int(MID_MONTH.timestamp()) + 20 * DAY


@pytest.mark.parametrize("usage_type", sorted(USAGE_TYPES))
def test_simulated_org_usage_rows_exist_for_every_type_this_month(usage_type: str) -> None:
    org = SimulatedOrg.default(MID_MONTH)
    spec = USAGE_TYPES[usage_type]

    rows = [r for r in org.usage_rows(usage_type) if r.start_time >= _month_start(MID_MONTH)]

    assert rows
    for row in rows:
        assert set(row.dims) == set(spec.dims)
        assert set(row.metrics) == set(spec.metrics)
        assert all(isinstance(v, int) and v >= 0 for v in row.metrics.values())


def test_simulated_org_completions_token_breakdown_adds_up() -> None:
    org = SimulatedOrg.default(MID_MONTH)

    for row in org.usage_rows("completions"):
        m = row.metrics
        assert (
            m["input_tokens"] == m["input_cached_tokens"] + m["input_uncached_tokens"] + m["input_cache_write_tokens"]
        )
        assert m["input_uncached_tokens"] == m["input_text_tokens"] + m["input_audio_tokens"] + m["input_image_tokens"]
        assert m["output_tokens"] == m["output_text_tokens"] + m["output_audio_tokens"] + m["output_image_tokens"]
        assert m["num_model_requests"] >= 1


def test_simulated_org_unknown_usage_type_raises() -> None:
    with pytest.raises(KeyError):
        SimulatedOrg.default(MID_MONTH).usage_rows("fine_tuning")


@pytest.mark.parametrize(
    ("budget", "days"),
    [(Decimal("500"), 30), (Decimal("12345.67"), 5), (Decimal("20"), 1)],
)
def test_simulated_org_generate_scales_to_large_org(budget: Decimal, days: int) -> None:
    org = SimulatedOrg.generate(
        MID_MONTH,
        monthly_budget_usd=budget,
        project_count=200,
        archived_project_count=0,
        line_items_per_project=30,
        days=days,
    )

    assert len(org.projects) == 200
    assert len(org.cost_rows) == 200 * 30 * days
    assert org.month_to_date_usd() == (budget * Decimal("0.86")).quantize(Decimal("0.00000001"))
    assert len({r.line_item for r in org.cost_rows if r.project_id == org.projects[0].id}) == 30


@pytest.mark.parametrize(
    "kwargs",
    [
        {"days": 0},
        {"project_count": 0},
        {"project_count": 2, "archived_project_count": 2},
        {"line_items_per_project": len(LINE_ITEM_CATALOG) + 1},
    ],
)
def test_simulated_org_generate_rejects_impossible_shapes(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        SimulatedOrg.generate(MID_MONTH, **kwargs)  # type: ignore[arg-type]
