"""The digest's schedule and figures, checked against a snapshot series whose every amount is known."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from spendwatch.core.config import DigestConfig, OrganizationConfig, parse_config
from spendwatch.core.snapshot import Snapshot
from spendwatch.devtools.snapshot_series import ITEMS, PROJECTS, SeriesOrg
from spendwatch.digest.compose import build_digest
from spendwatch.digest.schedule import due_period, log_key
from spendwatch.views.figures import change_percent, format_count
from spendwatch.views.history import MemoryHistory
from spendwatch.views.period import Period

NOW = datetime(2026, 11, 21, 9, 5, tzinfo=UTC)
CENT = Decimal("0.01")
CONFIG = """
organizations:
  - id: sim
    name: Simulated Org
    budget: {monthly_usd: 500}
    channels: [slack]
    digests: [{every: day, hour_utc: 8}, {every: week, weekday: monday, hour_utc: 7}]
channels:
  slack: {type: slack}
"""


@pytest.fixture(scope="module")
def org() -> OrganizationConfig:
    return parse_config(CONFIG, "test").organizations[0]


@pytest.fixture(scope="module")
def series() -> SeriesOrg:
    return SeriesOrg()


@pytest.fixture(scope="module")
def hourly(series: SeriesOrg) -> list[Snapshot]:
    return list(series.series(datetime(2026, 10, 25, tzinfo=UTC), NOW))


def day(text: str) -> date:
    return date.fromisoformat(text)


def spent_on(series: SeriesOrg, on: date) -> Decimal:
    return sum((series.daily(p, on) for p, _, _ in PROJECTS), Decimal(0))


def cents(value: Decimal | None) -> Decimal:
    assert value is not None
    return value.quantize(CENT)


# --- schedule ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "send_at", "covers"),
    [
        (datetime(2026, 11, 21, 8, 0, tzinfo=UTC), datetime(2026, 11, 21, 8, tzinfo=UTC), "2026-11-20"),
        (datetime(2026, 11, 21, 23, 59, tzinfo=UTC), datetime(2026, 11, 21, 8, tzinfo=UTC), "2026-11-20"),
        (datetime(2026, 11, 21, 7, 59, tzinfo=UTC), datetime(2026, 11, 20, 8, tzinfo=UTC), "2026-11-19"),
        (datetime(2026, 12, 1, 8, 30, tzinfo=UTC), datetime(2026, 12, 1, 8, tzinfo=UTC), "2026-11-30"),
    ],
)
def test_digest_daily_is_due_from_its_hour_until_the_next(now: datetime, send_at: datetime, covers: str) -> None:
    due = due_period(DigestConfig(every="day", hour_utc=8), now)
    assert due.send_at == send_at
    assert due.period.label == covers
    assert log_key(due, "slack") == f"digest.day#{send_at.date().isoformat()}#slack"


@pytest.mark.parametrize(
    ("now", "send_day", "covers"),
    [
        (datetime(2026, 11, 23, 7, 0, tzinfo=UTC), "2026-11-23", "2026-11-16 to 2026-11-22"),  # Monday at the hour
        (datetime(2026, 11, 23, 6, 59, tzinfo=UTC), "2026-11-16", "2026-11-09 to 2026-11-15"),  # Monday, too early
        (datetime(2026, 11, 21, 9, 0, tzinfo=UTC), "2026-11-16", "2026-11-09 to 2026-11-15"),  # Saturday
        (datetime(2026, 11, 29, 23, 0, tzinfo=UTC), "2026-11-23", "2026-11-16 to 2026-11-22"),  # Sunday
    ],
)
def test_digest_weekly_is_due_on_its_weekday(now: datetime, send_day: str, covers: str) -> None:
    due = due_period(DigestConfig(every="week", weekday="monday", hour_utc=7), now)
    assert due.send_at.date().isoformat() == send_day
    assert due.send_at.weekday() == 0
    assert due.period.label == covers
    assert (due.period.end - due.period.start).days == 7


def test_digest_every_hour_of_a_day_maps_to_one_period_per_day() -> None:
    """Exactly once per period: 48 hourly runs see two distinct keys, switching at the send hour."""
    digest = DigestConfig(every="day", hour_utc=8)
    keys = [due_period(digest, datetime(2026, 11, 20, tzinfo=UTC) + timedelta(hours=h)).key for h in range(48)]
    assert sorted(set(keys)) == ["digest.day#2026-11-19", "digest.day#2026-11-20", "digest.day#2026-11-21"]
    assert keys.index("digest.day#2026-11-20") == 8 and keys.index("digest.day#2026-11-21") == 32


# --- figures against the series ------------------------------------------------------------------------


def test_digest_daily_figures_match_the_series(
    org: OrganizationConfig, series: SeriesOrg, hourly: list[Snapshot]
) -> None:
    due = due_period(org.digests[0], NOW)
    digest = build_digest(org, due, MemoryHistory(hourly), now=NOW, alerts_sent=2)
    yesterday, before = day("2026-11-20"), day("2026-11-19")
    assert digest.spend_usd == spent_on(series, yesterday)
    assert digest.previous_spend_usd == spent_on(series, before)
    assert digest.provisional
    # Per project: the growth of month to date between the midnight polls is the day's spend.
    rows = {row.key: row for row in digest.projects.rows}
    assert set(rows) == {p for p, _, _ in PROJECTS}
    for project, _, _ in PROJECTS:
        assert cents(rows[project].current) == series.daily(project, yesterday).quantize(CENT)
        assert cents(rows[project].previous) == series.daily(project, before).quantize(CENT)
    ordered = [cents(row.current) for row in digest.projects.rows]
    assert ordered == sorted(ordered, reverse=True), "top projects by yesterday's spend"
    assert digest.projects.note is None
    # Models: line items grouped by model; the gpt-4.1 model is its input and output line items.
    models = {row.key: row for row in digest.models.rows}
    share = sum((i.share for i in ITEMS if i.model == "gpt-4.1-2025-04-14"), Decimal(0))
    assert cents(models["gpt-4.1-2025-04-14"].current) == (spent_on(series, yesterday) * share).quantize(CENT)
    assert "Image models" in models
    # Month to date, budget and forecast from the newest poll.
    newest = hourly[-1]
    assert digest.month.month_to_date_usd == newest.month_to_date_usd
    assert digest.month.budget_percent == newest.month_to_date_usd * 100 / 500  # type: ignore[operator]
    assert digest.month.forecast is not None and digest.month.forecast.complete_days == 20
    # Usage: yesterday's tokens with their cached share, from the same growth.
    completions = digest.usage[0]
    assert completions.usage_type == "completions" and completions.scope == "2026-11-20"
    counts = dict(completions.rows)["gpt-4.1-2025-04-14"]
    assert counts["input_cached_tokens"] * 10 == pytest.approx(counts["input_tokens"] * 3, rel=1e-3)
    assert digest.health.polls == 24 and digest.health.polls_with_failures == 0
    assert digest.health.alerts_sent == 2
    assert digest.balance_usd == Decimal("350.23")
    assert [g.id for g in digest.grants] == ["grant_paid_2025", "grant_promo"]
    assert [(row.scope, row.limit_usd) for row in digest.limits] == [
        ("organization", Decimal(600)),
        ("project Customer chatbot", Decimal(300)),
    ]


def test_digest_weekly_figures_match_the_series(
    org: OrganizationConfig, series: SeriesOrg, hourly: list[Snapshot]
) -> None:
    due = due_period(org.digests[1], NOW)
    assert due.period.label == "2026-11-09 to 2026-11-15"
    digest = build_digest(org, due, MemoryHistory(hourly), now=NOW, alerts_sent=None)
    week = [day("2026-11-09") + timedelta(days=i) for i in range(7)]
    previous = [d - timedelta(days=7) for d in week]
    assert digest.spend_usd == sum((spent_on(series, d) for d in week), Decimal(0))
    assert digest.previous_spend_usd == sum((spent_on(series, d) for d in previous), Decimal(0))
    assert not digest.provisional
    chatbot = next(row for row in digest.projects.rows if row.key == "proj_chatbot")
    expected = sum((series.daily("proj_chatbot", d) for d in week), Decimal(0))
    assert cents(chatbot.current) == expected.quantize(CENT)
    assert digest.health.polls == 7 * 24
    assert digest.health.alerts_sent is None


def test_digest_across_a_month_start_carries_the_old_months_growth(org: OrganizationConfig, series: SeriesOrg) -> None:
    """A weekly digest whose week straddles 1 November adds October's growth after the week's start to
    November's month to date. What October's last poll (23:00) had not seen yet is not in any breakdown
    (the poller reads breakdowns month to date): exactly that last hour is missing, and nothing else."""
    now = datetime(2026, 11, 3, 8, tzinfo=UTC)
    snapshots = list(series.series(datetime(2026, 10, 15, tzinfo=UTC), now))
    due = due_period(DigestConfig(every="week", weekday="monday", hour_utc=7), now)
    assert due.period.label == "2026-10-26 to 2026-11-01"
    digest = build_digest(org, due, MemoryHistory(snapshots), now=now, alerts_sent=0)
    week = [day("2026-10-26") + timedelta(days=i) for i in range(7)]
    last_poll = datetime(2026, 10, 31, 23, tzinfo=UTC)
    assert digest.projects.rows
    for row in digest.projects.rows:
        unseen = series.daily(row.key, day("2026-10-31")) - series.spent(row.key, day("2026-10-31"), last_poll)
        expected = sum((series.daily(row.key, d) for d in week), Decimal(0)) - unseen
        assert row.current == expected
    assert digest.spend_usd == sum((spent_on(series, d) for d in week), Decimal(0)), "totals are exact"


def test_digest_states_missing_history_instead_of_guessing(org: OrganizationConfig, hourly: list[Snapshot]) -> None:
    """Deployed yesterday evening: one poll. Totals come from its daily buckets; the split is unknown."""
    due = due_period(org.digests[0], NOW)
    digest = build_digest(org, due, MemoryHistory(hourly[-1:]), now=NOW, alerts_sent=0)
    assert digest.spend_usd is not None
    assert digest.projects.rows, "ranked by month to date instead"
    assert all(row.current is None for row in digest.projects.rows)
    assert digest.projects.note is not None
    assert "no snapshot within a day before 2026-11-20T00:00:00Z" in digest.projects.note
    assert digest.usage[0].scope == "month to date" and digest.usage[0].note is not None
    assert digest.chart.notice is None, "never a blank chart"
    assert any("not split" in note for note in digest.chart.notes)
    assert digest.chart.series[-1].label.startswith("Not split")


def test_digest_states_a_failed_source_in_a_boundary_poll(
    org: OrganizationConfig, series: SeriesOrg, hourly: list[Snapshot]
) -> None:
    midnight = datetime(2026, 11, 20, tzinfo=UTC)
    broken = [
        series.snapshot(s.poll_time, failing=["costs_by_project"]) if s.poll_time == midnight else s for s in hourly
    ]
    digest = build_digest(org, due_period(org.digests[0], NOW), MemoryHistory(broken), now=NOW, alerts_sent=0)
    assert digest.projects.note is not None
    assert "costs by project could not be read in the poll of 2026-11-20T00:00:00Z" in digest.projects.note
    assert digest.line_items.note is None, "the other breakdowns are unaffected"
    assert digest.health.polls_with_failures == 1
    assert digest.health.failing_sources == (("costs_by_project", 1),)


def test_digest_without_any_snapshot_says_so(org: OrganizationConfig) -> None:
    digest = build_digest(org, due_period(org.digests[0], NOW), MemoryHistory([]), now=NOW, alerts_sent=0)
    assert not digest.has_data
    assert digest.spend_usd is None
    assert digest.chart.notice is not None and "No snapshot" in digest.chart.notice
    assert digest.health.summary(NOW).startswith("no snapshot has been stored yet")


def test_digest_costs_failing_in_the_newest_poll_fall_back_to_the_period_end(
    org: OrganizationConfig, series: SeriesOrg, hourly: list[Snapshot]
) -> None:
    broken = [*hourly[:-1], series.snapshot(hourly[-1].poll_time, failing=["costs"])]
    digest = build_digest(org, due_period(org.digests[0], NOW), MemoryHistory(broken), now=NOW, alerts_sent=0)
    assert digest.spend_usd == spent_on(series, day("2026-11-20")), "from the midnight poll's buckets"
    assert digest.health.sources_failed[0][0] == "costs"


@pytest.mark.parametrize(
    ("current", "previous", "text"),
    [
        (Decimal(110), Decimal(100), "+10.0%"),
        (Decimal(90), Decimal(100), "-10.0%"),
        (Decimal(5), Decimal(0), "new"),
        (Decimal(0), Decimal(0), "0.0%"),
        (None, Decimal(1), "n/a"),
        (Decimal(1), None, "n/a"),
    ],
)
def test_change_percent(current: Decimal | None, previous: Decimal | None, text: str) -> None:
    assert change_percent(current, previous) == text


@pytest.mark.parametrize(
    ("value", "text"), [(999, "999"), (9_999, "9,999"), (12_345, "12.3k"), (1_500_000, "1.5M"), (2_000_000_000, "2B")]
)
def test_format_count(value: int, text: str) -> None:
    assert format_count(value) == text


def test_period_previous_and_days() -> None:
    period = Period(datetime(2026, 11, 9, tzinfo=UTC), datetime(2026, 11, 16, tzinfo=UTC))
    assert period.previous.label == "2026-11-02 to 2026-11-08"
    assert len(period.days) == 7


def test_period_total_counts_a_source_that_only_skipped_rows_as_read() -> None:
    from spendwatch.core.snapshot import SourceFailure
    from spendwatch.views.figures import period_total

    snapshot = SeriesOrg().snapshot(NOW)
    yesterday = Period(datetime(2026, 11, 20, tzinfo=UTC), datetime(2026, 11, 21, tzinfo=UTC))
    noted = snapshot.model_copy(
        update={"failures": (SourceFailure(source="costs", kind="skipped_rows", detail="1 cost result skipped"),)}
    )
    assert "costs" in noted.sources_ok
    assert period_total(noted, yesterday) == period_total(snapshot, yesterday) is not None


def test_digest_app_imports_the_figures_and_rendering_only_for_a_due_digest() -> None:
    """Most hourly runs have nothing due: their cold start does not pay for building a digest."""
    import subprocess
    import sys

    heavy = (
        "spendwatch.digest.compose",
        "spendwatch.digest.render",
        "spendwatch.views.figures",
        "spendwatch.views.chart",
    )
    code = f"import sys; import spendwatch.digest.app; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
