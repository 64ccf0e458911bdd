"""Each rule, table-driven: what it observes for a snapshot (and history) at a given time."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from spendwatch.alerter.rules import (
    budget_actual,
    budget_forecast,
    daily_series,
    evaluate,
    forecast_month_end,
    grant_expiry,
    hard_limit,
    history_since,
    low_balance,
    monitor_health,
    prior_snapshots,
    spend_spike,
)
from spendwatch.core.alerts import Observation
from spendwatch.core.config import OrganizationConfig, parse_config
from spendwatch.core.snapshot import (
    CostShare,
    CreditGrant,
    CreditSummary,
    DailyCost,
    ProjectInfo,
    Snapshot,
    SnapshotSummary,
    SourceFailure,
    SpendLimit,
    Subscription,
)

WHEN = datetime(2026, 11, 21, 23, tzinfo=UTC)

CONFIG = parse_config(
    """
organizations:
  - id: acme
    name: Acme
    budget: {monthly_usd: 500, thresholds_percent: [50, 80, 100]}
  - id: nobudget
    name: No budget
""",
    "t.yaml",
)


def org(rules: str = "", budget: str = "{monthly_usd: 500, thresholds_percent: [50, 80, 100]}", **extra: str) -> Any:
    lines = [f"    {name}: {value}" for name, value in extra.items()]
    text = "organizations:\n  - id: acme\n    name: Acme\n"
    if budget:
        text += f"    budget: {budget}\n"
    text += "\n".join(lines) + ("\n" if lines else "")
    if rules:
        text += "    rules:\n" + "\n".join(f"      {line}" for line in rules.strip().splitlines()) + "\n"
    return parse_config(text, "t.yaml").organizations[0]


def snap(
    mtd: str | None = None,
    org: str = "acme",
    when: datetime = WHEN,
    *,
    days: dict[int, str] | None = None,
    **fields: Any,
) -> Snapshot:
    daily = tuple(
        DailyCost(day=date(when.year, when.month, day), amount_usd=Decimal(amount))
        for day, amount in sorted((days or {}).items())
    )
    total = Decimal(mtd) if mtd is not None else (sum((c.amount_usd for c in daily), Decimal(0)) if days else None)
    return Snapshot(
        org_id=org,
        org_name=org,
        poll_time=when,
        collected_at=when,
        month_to_date_usd=total,
        daily_costs_usd=daily,
        **fields,
    )


def levels(observations: list[Observation]) -> dict[str, Decimal | None]:
    return {o.key: o.level for o in observations}


# --- budget, actual ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mtd", "level"),
    [
        ("0", None),
        ("249.99999999", None),
        ("250", "50"),  # exactly at the threshold counts as crossed
        ("399.99", "50"),
        ("430.12", "80"),
        ("500.00", "100"),
        ("5000", "100"),
    ],
)
def test_budget_actual_highest_crossed_threshold(mtd: str, level: str | None) -> None:
    [observation] = budget_actual(snap(mtd), CONFIG.organization("acme"))
    assert observation.level == (None if level is None else Decimal(level))
    assert observation.facts["percent"] == Decimal(mtd) * 100 / 500


def test_budget_actual_key_is_scoped_to_the_utc_month() -> None:
    november = budget_actual(snap("300"), CONFIG.organization("acme"))[0]
    december = budget_actual(snap("300", when=datetime(2026, 12, 1, 0, 5, tzinfo=UTC)), CONFIG.organization("acme"))[0]
    assert november.key == "budget.actual#org#2026-11"
    assert december.key == "budget.actual#org#2026-12"


def test_evaluate_without_budget_or_costs_observes_nothing() -> None:
    assert evaluate(snap("300", org="nobudget"), CONFIG.organization("nobudget")) == []
    assert evaluate(snap(None), CONFIG.organization("acme")) == []


@pytest.mark.parametrize(
    ("mtd", "level", "hold"),
    [
        ("379.99", "50", "50"),
        ("380", "50", "80"),  # within 5% under 80%: a notified 80 is held
        ("399.99", "50", "80"),
        ("400", "80", "80"),
        ("475", "80", "100"),
        ("200", None, None),
        ("237.50", None, "50"),
    ],
)
def test_budget_actual_hold_level_is_the_threshold_within_the_margin(mtd: str, level: str | None, hold: str | None):
    [observation] = budget_actual(snap(mtd), CONFIG.organization("acme"))
    assert observation.level == (None if level is None else Decimal(level))
    assert observation.hold_level == (None if hold is None else Decimal(hold))


def test_budget_actual_margin_is_configurable() -> None:
    strict = org("budget: {resolve_margin_percent: 0}")
    [observation] = budget_actual(snap("399.99"), strict)
    assert observation.hold_level == Decimal(50)


@pytest.mark.parametrize(
    ("budget", "mtd", "level", "label"),
    [
        ("{monthly_usd: 500, thresholds_usd: [100, 400]}", "99.99", None, None),
        ("{monthly_usd: 500, thresholds_usd: [100, 400]}", "100", "20", "$100.00"),
        ("{monthly_usd: 500, thresholds_usd: [100, 400]}", "450", "80", "$400.00"),
        # both ladders: ordered by amount, levels are percents of the budget
        ("{monthly_usd: 500, thresholds_percent: [50], thresholds_usd: [400]}", "300", "50", "50.0%"),
        ("{monthly_usd: 500, thresholds_percent: [50], thresholds_usd: [400]}", "401", "80", "$400.00"),
        ("{monthly_usd: 300, thresholds_usd: [100]}", "100", str(Decimal(100) * 100 / 300), "$100.00"),
    ],
)
def test_budget_actual_absolute_usd_thresholds(budget: str, mtd: str, level: str | None, label: str | None) -> None:
    [observation] = budget_actual(snap(mtd), org(budget=budget))
    assert observation.level == (None if level is None else Decimal(level))
    assert observation.label(observation.level) == label


def test_budget_actual_projects_and_line_items_have_their_own_scoped_keys() -> None:
    config = org(
        """
budget:
  projects:
    - {id: proj_a, monthly_usd: 100, thresholds_percent: [80, 100]}
    - {id: proj_missing, monthly_usd: 10}
  line_items:
    - {name: "gpt-4o, input", monthly_usd: 50, thresholds_usd: [45]}
""",
        budget="",
    )
    snapshot = snap(
        "300",
        costs_by_project_usd=(CostShare(key="proj_a", amount_usd=Decimal("85")),),
        costs_by_line_item_usd=(CostShare(key="gpt-4o, input", amount_usd=Decimal("45")),),
        projects=(ProjectInfo(id="proj_a", name="Research <team>"),),
    )
    observations = budget_actual(snapshot, config)
    assert levels(observations) == {
        "budget.actual#project:proj_a#2026-11": Decimal(80),
        "budget.actual#project:proj_missing#2026-11": None,  # no spend yet
        "budget.actual#line_item:gpt-4o, input#2026-11": Decimal(90),
    }
    assert observations[0].facts["scope_name"] == "Research <team>"
    assert observations[0].facts["scope"] == "project"


# --- budget, forecast -------------------------------------------------------------------------------

TWENTY_DAYS_OF_20 = dict.fromkeys(range(1, 21), "20")


@pytest.mark.parametrize(
    ("days", "when", "projected", "complete"),
    [
        # 20 complete days at $20, today (provisional, partial) $5: 20 x 30 = 600
        ({**TWENTY_DAYS_OF_20, 21: "5"}, WHEN, "600", 20),
        # today's partial bucket is left out of the rate, but the forecast never falls below month-to-date
        ({**TWENTY_DAYS_OF_20, 21: "1000"}, WHEN, "1400", 20),
        # February 2027 has 28 days
        ({1: "10", 2: "30"}, datetime(2027, 2, 3, 6, tzinfo=UTC), "560", 2),
        # the 1st of the month has no complete day: no forecast
        ({1: "10"}, datetime(2026, 12, 1, 6, tzinfo=UTC), None, 0),
    ],
)
def test_forecast_month_end_method(days: dict[int, str], when: datetime, projected: str | None, complete: int):
    forecast = forecast_month_end(snap(when=when, days=days))
    if projected is None:
        assert forecast is None
        return
    assert forecast is not None
    assert forecast.projected_usd == Decimal(projected)
    assert forecast.complete_days == complete


@pytest.mark.parametrize(
    ("days", "when", "level"),
    [
        ({**TWENTY_DAYS_OF_20, 21: "5"}, WHEN, "100"),  # 600 projected of 500
        (dict.fromkeys(range(1, 22), "15"), WHEN, None),  # 450 projected
        (dict.fromkeys(range(1, 22), "16"), WHEN, None),  # 480: under, but held at 475+
        (dict.fromkeys(range(1, 5), "100"), datetime(2026, 11, 4, 6, tzinfo=UTC), "missing"),  # 3 days < 5
        (dict.fromkeys(range(1, 7), "100"), datetime(2026, 11, 6, 6, tzinfo=UTC), "100"),  # 5 complete days
    ],
)
def test_budget_forecast_fires_separately_from_actual(days: dict[int, str], when: datetime, level: str) -> None:
    observations = budget_forecast(snap(when=when, days=days), CONFIG.organization("acme"))
    if level == "missing":
        assert observations == []
        return
    [observation] = observations
    assert observation.key == f"budget.forecast#org#{when:%Y-%m}"
    assert observation.level == (None if level is None else Decimal(level))


def test_budget_forecast_projects_scale_with_the_org_ratio_and_hold_within_the_margin() -> None:
    config = org(
        """
forecast: {thresholds_percent: [80, 100], min_days: 3}
budget:
  projects: [{id: p, monthly_usd: 100}]
"""
    )
    snapshot = snap(
        days={**TWENTY_DAYS_OF_20, 21: "5"},  # org: 405 spent, 600 projected (ratio 600/405)
        costs_by_project_usd=(CostShare(key="p", amount_usd=Decimal("67.5")),),  # projected 100
    )
    observations = {o.key: o for o in budget_forecast(snapshot, config)}
    project = observations["budget.forecast#project:p#2026-11"]
    assert project.facts["forecast_usd"] == Decimal(100)
    assert project.level == Decimal(100)
    org_level = observations["budget.forecast#org#2026-11"]
    assert org_level.level == Decimal(100)
    held = budget_forecast(snap(days=dict.fromkeys(range(1, 22), "16")), CONFIG.organization("acme"))[0]
    assert held.level is None
    assert held.hold_level == Decimal(100)


# --- hard limit -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "config_limit", "limit", "source"),
    [
        (
            {
                "spend_limits": (
                    SpendLimit(scope="organization", threshold_cents=80000, source="config"),
                    SpendLimit(scope="organization", threshold_cents=100000),
                ),
                "subscription": Subscription(hard_limit_usd=Decimal(700)),
            },
            "600",
            "1000",
            "admin_api",
        ),
        ({"subscription": Subscription(hard_limit_usd=Decimal(700))}, "600", "700", "subscription"),
        ({}, "600", "600", "config"),
        ({}, None, None, None),
        ({"spend_limits": (SpendLimit(scope="organization", threshold_cents=0),)}, None, None, None),
    ],
)
def test_hard_limit_source_precedence(
    fields: dict[str, Any], config_limit: str | None, limit: str | None, source: str | None
) -> None:
    config = org(**({"hard_limit_usd": config_limit} if config_limit else {}))
    observations = hard_limit(snap("100", **fields), config)
    if limit is None:
        assert observations == []
        return
    [observation] = observations
    assert observation.key == "hard_limit#org#2026-11"
    assert observation.facts["limit_usd"] == Decimal(limit)
    assert observation.facts["limit_source"] == source


@pytest.mark.parametrize(
    ("mtd", "level", "hold"),
    [("854.99", None, None), ("855", None, "90"), ("899.99", None, "90"), ("900", "90", "90"), ("1200", "90", "90")],
)
def test_hard_limit_at_percent_with_hysteresis(mtd: str, level: str | None, hold: str | None) -> None:
    limits = (SpendLimit(scope="organization", threshold_cents=100000),)
    [observation] = hard_limit(snap(mtd, spend_limits=limits), CONFIG.organization("acme"))
    assert observation.level == (None if level is None else Decimal(level))
    assert observation.hold_level == (None if hold is None else Decimal(hold))


def test_hard_limit_per_project() -> None:
    snapshot = snap(
        "10",
        spend_limits=(SpendLimit(scope="proj_x", threshold_cents=5000),),
        costs_by_project_usd=(CostShare(key="proj_x", amount_usd=Decimal(46)),),
    )
    config = org("hard_limit: {percent: 75}")
    assert levels(hard_limit(snapshot, config)) == {"hard_limit#project:proj_x#2026-11": Decimal(75)}


# --- credit grant expiry ----------------------------------------------------------------------------


def grant(left: timedelta | None, *, used: str = "40", grant_id: str = "grant_1") -> CreditGrant:
    return CreditGrant(
        id=grant_id,
        grant_amount_usd=Decimal(100),
        used_amount_usd=Decimal(used),
        expires_at=None if left is None else WHEN + left,
    )


@pytest.mark.parametrize(
    ("left", "used", "keys"),
    [
        (timedelta(days=31), "40", []),
        (timedelta(days=30), "40", ["30d"]),  # exactly at the lead time
        (timedelta(days=6, hours=12), "40", ["30d", "7d"]),
        (timedelta(hours=12), "40", ["30d", "7d", "1d"]),
        (timedelta(seconds=0), "40", []),  # expired grants stop alerting
        (-timedelta(days=3), "40", []),
        (timedelta(days=3), "100", []),  # nothing left to lose
        (None, "40", []),  # no expiry
    ],
)
def test_grant_expiry_lead_times(left: timedelta | None, used: str, keys: list[str]) -> None:
    observations = grant_expiry(
        snap("1", credit_grants=(grant(left, used=used),)), CONFIG.organization("acme"), now=WHEN
    )
    assert [o.key for o in observations] == [f"grant.expiry#grant_1#{k}" for k in keys]
    assert {o.collapse_key for o in observations} <= {"grant.expiry#grant_1"}
    if observations:
        assert max(observations, key=lambda o: o.urgency).level == Decimal(keys[-1].removesuffix("d"))


def test_grant_expiry_uses_the_injected_clock_not_the_poll_time() -> None:
    snapshot = snap("1", credit_grants=(grant(timedelta(days=8)),))
    assert len(grant_expiry(snapshot, CONFIG.organization("acme"), now=WHEN)) == 1
    assert len(grant_expiry(snapshot, CONFIG.organization("acme"), now=WHEN + timedelta(days=1))) == 2


def test_grant_expiry_includes_grants_declared_in_the_config() -> None:
    config = org(
        "grant_expiry: {lead_days: [14]}",
        credit_grants="[{id: declared, amount_usd: 50, used_usd: 10, expires_at: 2026-12-01}, "
        "{id: grant_1, amount_usd: 1, expires_at: 2026-11-22}]",
    )
    snapshot = snap("1", credit_grants=(grant(timedelta(days=20)),))  # the snapshot's grant_1 wins over the config's
    [declared] = grant_expiry(snapshot, config, now=WHEN)
    assert declared.key == "grant.expiry#declared#14d"
    assert declared.facts["remaining_usd"] == Decimal(40)
    assert declared.facts["source"] == "config"


# --- low balance / runway ---------------------------------------------------------------------------


def summary(available: str) -> CreditSummary:
    return CreditSummary(
        total_granted_usd=Decimal(500),
        total_used_usd=Decimal(500) - Decimal(available),
        total_available_usd=Decimal(available),
    )


@pytest.mark.parametrize(
    ("available", "level", "hold"),
    [("99.99", "1", "1"), ("100", None, "1"), ("104.99", None, "1"), ("105", None, None)],
)
def test_low_balance_amount(available: str, level: str | None, hold: str | None) -> None:
    config = org("low_balance: {min_usd: 100}")
    snapshot = snap("1", credit_summary=summary(available))
    [observation] = low_balance(snapshot, config, daily_series(snapshot), now=WHEN)
    assert observation.key == "low_balance#org"
    assert observation.level == (None if level is None else Decimal(level))
    assert observation.hold_level == (None if hold is None else Decimal(hold))


def test_low_balance_is_off_by_default_and_needs_a_known_balance() -> None:
    snapshot = snap("1", credit_summary=summary("1"))
    assert low_balance(snapshot, CONFIG.organization("acme"), {}, now=WHEN) == []
    assert low_balance(snap("1"), org("low_balance: {min_usd: 100}"), {}, now=WHEN) == []


def test_low_balance_falls_back_to_unexpired_session_key_grants() -> None:
    grants = (grant(timedelta(days=3)), grant(-timedelta(days=1), grant_id="old"))
    snapshot = snap("1", credit_grants=grants)
    [observation] = low_balance(snapshot, org("low_balance: {min_usd: 100}"), {}, now=WHEN)
    assert observation.facts["balance_usd"] == Decimal(60)


@pytest.mark.parametrize(
    ("available", "days", "previous_month", "level", "burn"),
    [
        # settled days are the 1st..19th (the 20th and 21st are provisional): last 7 at $10 -> $10/day
        ("69.99", {**dict.fromkeys(range(1, 20), "10"), 20: "500", 21: "500"}, None, "1", "10"),
        ("70", {**dict.fromkeys(range(1, 20), "10"), 20: "500", 21: "500"}, None, None, "10"),
        # too few settled days: last month's daily average (300 / 31 days in October)
        ("60", {1: "5", 2: "5", 3: "5"}, "310", "1", "10"),
        # no burn rate at all: no runway observation
        ("60", {1: "5"}, None, "missing", None),
    ],
)
def test_low_balance_runway(
    available: str, days: dict[int, str], previous_month: str | None, level: str | None, burn: str | None
) -> None:
    when = WHEN if len(days) > 3 else datetime(2026, 11, 4, 6, tzinfo=UTC)
    config = org("low_balance: {min_runway_days: 7}")
    prev = None if previous_month is None else Decimal(previous_month)
    snapshot = snap(when=when, days=days, credit_summary=summary(available), previous_month_usd=prev)
    observations = low_balance(snapshot, config, daily_series(snapshot), now=when)
    if level == "missing":
        assert observations == []
        return
    [observation] = observations
    assert observation.key == "low_balance.runway#org"
    assert observation.level == (None if level is None else Decimal(level))
    assert observation.facts["burn_rate_usd"] == Decimal(burn or 0)


# --- spend spike ------------------------------------------------------------------------------------

SETTLED = dict.fromkeys(range(1, 20), "10")


@pytest.mark.parametrize(
    ("days", "spiked"),
    [
        ({**SETTLED, 20: "29.99", 21: "5"}, []),
        ({**SETTLED, 20: "30", 21: "5"}, ["2026-11-20"]),  # yesterday at 3x the median
        ({**SETTLED, 20: "10", 21: "31"}, ["2026-11-21"]),  # today, so far
        ({**dict.fromkeys(range(1, 20), "1"), 20: "9", 21: "1"}, []),  # 9x, but under min_usd $10
    ],
)
def test_spend_spike_against_the_median_of_settled_days(days: dict[int, str], spiked: list[str]) -> None:
    snapshot = snap(days=days)
    observations = spend_spike(snapshot, CONFIG.organization("acme"), daily_series(snapshot))
    assert [o.key.split("#")[-1] for o in observations if o.level is not None] == spiked
    assert {o.key for o in observations} == {"spike#org#2026-11-20", "spike#org#2026-11-21"}


def test_spend_spike_baseline_excludes_provisional_days_and_uses_the_median() -> None:
    # Settled 13th..19th: six at $10 and one outlier $1000: the median stays $10.
    days = {**dict.fromkeys(range(13, 20), "10"), 19: "1000", 20: "35", 21: "1"}
    snapshot = snap(days=days)
    observations = spend_spike(snapshot, CONFIG.organization("acme"), daily_series(snapshot))
    assert observations[0].facts["baseline_usd"] == Decimal(10)
    assert observations[0].level == Decimal(3)


def test_spend_spike_baseline_reaches_into_last_month_through_history() -> None:
    december = datetime(2026, 12, 2, 12, tzinfo=UTC)
    november = snap(when=datetime(2026, 11, 30, 23, tzinfo=UTC), days=dict.fromkeys(range(20, 31), "10"))
    current = snap(when=december, days={1: "40", 2: "3"})
    assert spend_spike(current, CONFIG.organization("acme"), daily_series(current)) == []
    observations = spend_spike(current, CONFIG.organization("acme"), daily_series(current, [november]))
    assert levels(observations) == {"spike#org#2026-12-01": Decimal(3), "spike#org#2026-12-02": None}


def test_spend_spike_needs_three_settled_days() -> None:
    snapshot = snap(when=datetime(2026, 11, 4, 6, tzinfo=UTC), days={1: "1", 2: "1", 3: "50", 4: "1"})
    assert spend_spike(snapshot, CONFIG.organization("acme"), daily_series(snapshot)) == []


# --- monitor health ---------------------------------------------------------------------------------


def polled(hours_ago: int, *, failing: tuple[str, ...] = (), ok: tuple[str, ...] = (), **fields: Any) -> Snapshot:
    return snap(
        "1",
        when=WHEN - timedelta(hours=hours_ago),
        failures=tuple(SourceFailure(source=s, kind="unavailable", detail="HTTP 502") for s in failing),
        sources_ok=ok,
        **fields,
    )


@pytest.mark.parametrize(
    ("history", "level"),
    [
        ([], "missing"),  # one failing poll of three needed: not conclusive, not cleared
        ([polled(1, failing=("costs",))], "missing"),
        ([polled(2, failing=("costs",)), polled(1, failing=("costs",))], "1"),
        ([polled(1, failing=("costs",)), polled(2, failing=("costs",)), polled(3, ok=("costs",))], "1"),  # any order
        ([polled(2, failing=("costs",)), polled(1, ok=("costs",))], "missing"),  # streak broken by a success
        (
            [polled(2, failing=("costs",)), polled(1, failing=("costs",)), polled(-1, ok=("costs",))],
            "1",
        ),  # newer: ignored
    ],
)
def test_monitor_health_source_failing_polls_in_a_row(history: list[Snapshot], level: str) -> None:
    current = polled(0, failing=("costs",))
    observations = monitor_health(current, CONFIG.organization("acme"), prior_snapshots(current, history), now=WHEN)
    sources = [o for o in observations if o.rule_id == "health.source"]
    if level == "missing":
        assert sources == []
    else:
        [observation] = sources
        assert observation.level == Decimal(level)
        assert Decimal(observation.facts["failing_polls"]) >= 3


def test_monitor_health_source_clears_on_success_and_n_of_one_fires_at_once() -> None:
    ok = monitor_health(polled(0, ok=("costs",)), CONFIG.organization("acme"), [], now=WHEN)
    assert levels(ok) == {"health.source#costs": None}
    eager = org("health: {failing_polls: 1}")
    assert levels(monitor_health(polled(0, failing=("costs",)), eager, [], now=WHEN)) == {
        "health.source#costs": Decimal(1)
    }


def test_monitor_health_conditions_fire_at_once_and_clear_against_the_previous_poll() -> None:
    config = CONFIG.organization("acme")
    rejected = polled(1, conditions=("session_key_rejected",))
    assert levels(monitor_health(polled(0, conditions=("session_key_rejected",)), config, [], now=WHEN)) == {
        "health.condition#session_key_rejected": Decimal(1)
    }
    assert levels(monitor_health(polled(0), config, [rejected], now=WHEN)) == {
        "health.condition#session_key_rejected": None
    }


@pytest.mark.parametrize(
    ("left", "level"),
    [(timedelta(days=15), None), (timedelta(days=14), "1"), (timedelta(hours=1), "1"), (-timedelta(days=1), "1")],
)
def test_monitor_health_admin_key_expiry(left: timedelta, level: str | None) -> None:
    current = polled(0, admin_key_expires_at=WHEN + left)
    [observation] = monitor_health(current, CONFIG.organization("acme"), [], now=WHEN)
    assert observation.key == "health.admin_key#org"
    assert observation.level == (None if level is None else Decimal(level))


def test_monitor_health_admin_key_rotation_clears_the_alert_under_one_stable_key() -> None:
    """Issue 7, item 8: the alert was keyed by the expiry day, so a rotated key left it firing forever."""
    acme = CONFIG.organization("acme")
    expiring = polled(1, ok=("admin_key",), admin_key_expires_at=WHEN + timedelta(days=3))
    rotated = polled(0, ok=("admin_key",), admin_key_expires_at=WHEN + timedelta(days=365))
    never = polled(0, ok=("admin_key",))  # the new key has no expiry at all
    unread = polled(0, failing=("admin_key",))  # the key could not be read: say nothing either way

    def admin(snapshot: Snapshot) -> dict[str, Decimal | None]:
        return {k: v for k, v in levels(monitor_health(snapshot, acme, [], now=WHEN)).items() if "admin_key#" in k}

    assert admin(expiring) == {"health.admin_key#org": Decimal(1)}
    assert admin(rotated) == {"health.admin_key#org": None}
    assert admin(never) == {"health.admin_key#org": None}
    assert admin(unread) == {}


# --- evaluate ---------------------------------------------------------------------------------------


def test_evaluate_runs_only_enabled_rules() -> None:
    snapshot = snap(
        days={**TWENTY_DAYS_OF_20, 21: "5"},
        credit_grants=(grant(timedelta(days=2)),),
        failures=(SourceFailure(source="costs", kind="auth", detail="401"),),
    )
    everything = {o.rule_id for o in evaluate(snapshot, org("health: {failing_polls: 1}"), now=WHEN)}
    assert everything == {"budget.actual", "budget.forecast", "grant.expiry", "spike", "health.source"}
    quiet = org(
        """
budget: {enabled: false}
forecast: {enabled: false}
grant_expiry: {enabled: false}
spike: {enabled: false}
health: {enabled: false}
"""
    )
    assert evaluate(snapshot, quiet, now=WHEN) == []


def test_prior_snapshots_are_earlier_unique_and_newest_first() -> None:
    current = polled(0)
    other_org = snap("1", org="other", when=WHEN - timedelta(hours=1))
    history = [polled(2), polled(1), polled(1), current, polled(-1), other_org]
    assert [s.poll_time for s in prior_snapshots(current, history)] == [
        WHEN - timedelta(hours=1),
        WHEN - timedelta(hours=2),
    ]
    assert history_since(current) == WHEN - timedelta(days=10)


def test_daily_series_prefers_the_current_snapshot_then_the_newest_history() -> None:
    current = snap(days={20: "5", 21: "1"})
    older = snap(when=WHEN - timedelta(days=1), days={19: "4", 20: "3"})
    oldest = snap(when=WHEN - timedelta(days=2), days={18: "9", 19: "2"})
    assert daily_series(current, [older, oldest]) == {
        date(2026, 11, 18): Decimal(9),
        date(2026, 11, 19): Decimal(4),
        date(2026, 11, 20): Decimal(5),
        date(2026, 11, 21): Decimal(1),
    }


def test_org_helper_builds_valid_configs() -> None:
    assert isinstance(org(), OrganizationConfig)


def test_monitor_health_a_key_condition_speaks_for_its_auth_failure_and_trimming_is_not_a_problem() -> None:
    eager = org("health: {failing_polls: 1}")
    current = snap(
        "1",
        failures=(SourceFailure(source="credit_grants", kind="key", detail="403 session key refused"),),
        conditions=("session_key_rejected", "snapshot_trimmed"),
    )
    assert levels(monitor_health(current, eager, [], now=WHEN)) == {"health.condition#session_key_rejected": Decimal(1)}


def test_monitor_health_a_source_refused_alone_is_reported_whatever_the_key_conditions() -> None:
    eager = org("health: {failing_polls: 1}")
    current = snap(
        "1",
        failures=(
            SourceFailure(source="credit_grants", kind="key", detail="403 session key refused"),
            SourceFailure(source="project_rate_limits", kind="auth", detail="forbidden (403): not a project member"),
        ),
        conditions=("session_key_rejected",),
    )
    assert levels(monitor_health(current, eager, [], now=WHEN)) == {
        "health.condition#session_key_rejected": Decimal(1),
        "health.source#project_rate_limits": Decimal(1),
    }


def test_monitor_health_skipped_rows_are_a_note_not_a_failing_source() -> None:
    eager = org("health: {failing_polls: 1}")
    current = snap(
        "1",
        sources_ok=("costs",),
        failures=(SourceFailure(source="costs", kind="skipped_rows", detail="1 cost result skipped"),),
    )
    assert levels(monitor_health(current, eager, [], now=WHEN)) == {"health.source#costs": None}


def test_low_balance_ignores_a_summary_built_from_declared_grants_alone() -> None:
    declared = CreditGrant(
        id="d",
        grant_amount_usd=Decimal(100),
        used_amount_usd=Decimal(0),
        expires_at=WHEN + timedelta(days=90),
        source="config",
    )
    snapshot = snap("1", credit_grants=(declared,), credit_summary=summary("100"))
    assert low_balance(snapshot, org("low_balance: {min_usd: 500}"), {}, now=WHEN) == []


def test_monitor_health_a_streak_counts_real_failures_not_earlier_skipped_row_notes() -> None:
    three = org("health: {failing_polls: 3}")
    note = SourceFailure(source="costs", kind="skipped_rows", detail="1 cost result skipped")
    earlier = [snap("1", when=WHEN - timedelta(hours=h), sources_ok=("costs",), failures=(note,)) for h in (1, 2)]
    failed = SourceFailure(source="costs", kind="unavailable", detail="HTTP 503 after 4 attempts")
    current = snap("1", failures=(failed,))
    assert "health.source#costs" not in levels(monitor_health(current, three, earlier, now=WHEN))
    # The same from the stored summaries the alerter reads.
    summaries = [SnapshotSummary.of(s).as_history() for s in earlier]
    assert all(s.failing == () for s in summaries)
    assert "health.source#costs" not in levels(monitor_health(current, three, summaries, now=WHEN))


@pytest.mark.parametrize(
    "days",
    [
        {**dict.fromkeys(range(1, 20), "0"), 20: "40", 21: "0"},  # a new key: nothing, then its first day
        {**{d: ("25" if d % 7 == 0 else "0") for d in range(1, 20)}, 20: "0", 21: "40"},  # used weekly
    ],
)
def test_spend_spike_needs_a_baseline_of_days_that_spent(days: dict[int, str]) -> None:
    snapshot = snap(days=days)
    assert spend_spike(snapshot, CONFIG.organization("acme"), daily_series(snapshot)) == []
