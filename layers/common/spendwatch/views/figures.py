"""The figures a digest and the report show, computed from snapshot history (pure, no I/O of its own).

- **Totals of a period** come from the newest snapshot's daily cost buckets: exact, and revised by every
  poll (the last two UTC days stay provisional).
- **Per project, line item and model** (cost) and **usage by model** per period come from the growth of
  their month-to-date figures between boundary snapshots (`spendwatch.views.history.period_growth`); when the
  history needed is missing, the figure is unknown and the reason is stated, never guessed.
- **Model cost** is the line items grouped by model (`gpt-4.1-2025-04-14, input` -> `gpt-4.1-2025-04-14`);
  OpenAI's cost endpoint has no model dimension. Line items that are not a model (`Web search`) stay as is.
- **The daily chart** splits each day's exact cost by the projects' (or line items') growth between the
  polls at the start and end of that day; what cannot be attributed is drawn as such.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from spendwatch.alerter.rules import (
    Forecast,
    forecast_month_end,
    month_end,
    organization_hard_limit,
    prepaid_balance,
    project_name,
)
from spendwatch.core.config import OrganizationConfig
from spendwatch.core.money import format_percent, format_usd, percent_of
from spendwatch.core.snapshot import CreditGrant, Snapshot, isoformat_utc
from spendwatch.views.chart import (
    OTHER_COLOR,
    PALETTE,
    UNATTRIBUTED_COLOR,
    DailySpendChart,
    MonthlyChart,
    MonthTotal,
    Series,
)
from spendwatch.views.history import Growth, SnapshotHistory, period_growth
from spendwatch.views.period import DAY, Period

TOP_N = 5
CHART_SERIES = 4
ALERT_KEY_EXCLUDED = ("digest.", "health.watch")
"""Notification-log entries that are not alerts: digests themselves and the watchdog's bookkeeping."""


# --- extracting month-to-date figures ---------------------------------------------------------------


def source_failed(snapshot: Snapshot, source: str) -> bool:
    return any(f.source == source for f in snapshot.failing)


def failure_detail(snapshot: Snapshot, source: str) -> str | None:
    for failure in snapshot.failing:
        if failure.source == source:
            return f"{failure.kind}: {failure.detail}"
    return None


def api_key_costs(snapshot: Snapshot) -> dict[str, Decimal] | None:
    """Month to date by API key; unknown (None) when the poll did not read it, snapshots before schema 3
    included, so a period's growth is never measured against a missing breakdown."""
    if "costs_by_api_key" not in snapshot.sources_ok:
        return None
    return {s.key: s.amount_usd for s in snapshot.costs_by_api_key_usd}


def api_key_name(snapshot: Snapshot | None, key: str) -> str:
    """A key as ranked lists show it: name, redacted value and owner, else its id."""
    for share in snapshot.costs_by_api_key_usd if snapshot is not None else ():
        if share.key == key:
            return share.display()
    return key


def project_costs(snapshot: Snapshot) -> dict[str, Decimal] | None:
    if source_failed(snapshot, "costs_by_project"):
        return None
    return {s.key: s.amount_usd for s in snapshot.costs_by_project_usd}


def line_item_costs(snapshot: Snapshot) -> dict[str, Decimal] | None:
    if source_failed(snapshot, "costs_by_line_item"):
        return None
    return {s.key: s.amount_usd for s in snapshot.costs_by_line_item_usd}


def model_of(line_item: str) -> str:
    return line_item.split(", ", 1)[0].strip() or line_item


def model_costs(snapshot: Snapshot) -> dict[str, Decimal] | None:
    items = line_item_costs(snapshot)
    if items is None:
        return None
    models: dict[str, Decimal] = {}
    for item, amount in items.items():
        models[model_of(item)] = models.get(model_of(item), Decimal(0)) + amount
    return models


def usage_by_model(usage_type: str) -> Callable[[Snapshot], dict[tuple[str, str], Decimal] | None]:
    """(model, counter) -> month-to-date count of one usage type; None when that source failed."""

    def extract(snapshot: Snapshot) -> dict[tuple[str, str], Decimal] | None:
        if source_failed(snapshot, f"usage_{usage_type}"):
            return None
        summary = snapshot.usage.get(usage_type)
        if summary is None:
            return {}
        return {
            (model, counter): Decimal(value)
            for model, counters in summary.by_model.items()
            for counter, value in counters.items()
        }

    return extract


# --- periods and changes -----------------------------------------------------------------------------


def day_start(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def month_period(month: str) -> Period:
    year, number = (int(part) for part in month.split("-"))
    start = datetime(year, number, 1, tzinfo=UTC)
    return Period(start, month_end(start))


def change_percent(current: Decimal | None, previous: Decimal | None) -> str:
    """`+12.3%`, `-5.0%`, `new` (nothing before) or `n/a` (unknown)."""
    if current is None or previous is None:
        return "n/a"
    if previous == 0:
        return "new" if current > 0 else "0.0%"
    value = ((current - previous) * 100 / abs(previous)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    return f"{'+' if value > 0 else ''}{value}%"


def period_total(snapshot: Snapshot | None, period: Period) -> Decimal | None:
    """The period's cost from the daily buckets, or None unless every day of it has a bucket."""
    if snapshot is None or source_failed(snapshot, "costs"):
        return None
    buckets = {c.day: c.amount_usd for c in snapshot.daily_costs_usd}
    days = period.days
    if not all(day in buckets for day in days):
        return None
    return sum((buckets[day] for day in days), Decimal(0))


@dataclass(frozen=True)
class Ranked:
    """One row of a top-N table: this period, the previous one, and month to date."""

    key: str
    name: str
    current: Decimal | None
    previous: Decimal | None
    month_to_date: Decimal | None

    @property
    def change(self) -> str:
        return change_percent(self.current, self.previous)


@dataclass(frozen=True)
class RankedTable:
    rows: tuple[Ranked, ...]
    note: str | None = None
    """why the period figures are unknown (then rows are ranked by month to date)"""
    more: int = 0
    """rows left out"""
    reason: str | None = None
    """why this period's figures are unknown (the history that is missing)"""


def ranked_table(
    history: SnapshotHistory,
    period: Period,
    newest: Snapshot | None,
    *,
    extract: Callable[[Snapshot], Mapping[str, Decimal] | None],
    what: str,
    name: Callable[[str], str],
    limit: int = TOP_N,
) -> RankedTable:
    """The top keys by their amount in `period` (else by month to date), with the previous period's."""
    current: Growth[str] = period_growth(history, period.start, period.end, extract, what)
    previous: Growth[str] = period_growth(history, period.previous.start, period.previous.end, extract, what)
    month_to_date = extract(newest) if newest is not None else None
    keys = set(current.values or {}) | set(month_to_date or {})
    if current.values is not None:
        order = sorted(keys, key=lambda k: (-(current.values or {}).get(k, Decimal(0)), k))
    else:
        order = sorted(keys, key=lambda k: (-(month_to_date or {}).get(k, Decimal(0)), k))
    rows = []
    for key in order:
        now_value = current.values.get(key, Decimal(0)) if current.values is not None else None
        before = previous.values.get(key, Decimal(0)) if previous.values is not None else None
        mtd = (month_to_date or {}).get(key) if month_to_date is not None else None
        if not any(v for v in (now_value, before, mtd)):
            continue
        rows.append(Ranked(key, name(key), now_value, before, mtd))
    note = None
    if current.values is None:
        note = f"{what} for {period.label} unknown ({current.reason}); ranked by month to date"
    elif previous.values is None:
        note = f"no comparison with {period.previous.label}: {previous.reason}"
    return RankedTable(tuple(rows[:limit]), note, max(0, len(rows) - limit), current.reason)


# --- usage by model ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UsageTable:
    usage_type: str
    counters: tuple[str, ...]
    rows: tuple[tuple[str, dict[str, int]], ...]
    scope: str
    """what the counts cover: the period's label, or `month to date`"""
    note: str | None = None
    reason: str | None = None
    """why the period's counts are unknown"""


USAGE_COUNTERS = {
    "completions": ("input_tokens", "input_cached_tokens", "output_tokens", "num_model_requests"),
    "images": ("images", "num_model_requests"),
    "audio_speeches": ("characters", "num_model_requests"),
    "audio_transcriptions": ("seconds", "num_model_requests"),
    "embeddings": ("input_tokens", "num_model_requests"),
    "moderations": ("input_tokens", "num_model_requests"),
    "web_search_calls": ("num_model_requests", "num_requests"),
}


def usage_table(
    history: SnapshotHistory, period: Period | None, newest: Snapshot | None, usage_type: str, limit: int = TOP_N
) -> UsageTable:
    """Counts by model for the period (growth between boundary polls), else month to date."""
    counters = USAGE_COUNTERS.get(usage_type, ())
    extract = usage_by_model(usage_type)
    scope, note, reason = "month to date", None, None
    values: Mapping[tuple[str, str], Decimal] | None = None
    if period is not None:
        growth = period_growth(history, period.start, period.end, extract, f"usage of {usage_type}")
        if growth.values is not None:
            values, scope = growth.values, period.label
        else:
            reason = growth.reason
            note = f"counts for {period.label} unknown ({reason}); month to date shown"
    if values is None and newest is not None:
        values = extract(newest)
        if values is None:
            failure = failure_detail(newest, f"usage_{usage_type}")
            return UsageTable(usage_type, counters, (), scope, f"usage_{usage_type} could not be read: {failure}")
    by_model: dict[str, dict[str, int]] = {}
    for (model, counter), value in (values or {}).items():
        by_model.setdefault(model, {})[counter] = int(value)
    first = counters[0] if counters else ""
    ordered = sorted(by_model.items(), key=lambda item: (-item[1].get(first, 0), item[0]))
    rows = tuple((model, counts) for model, counts in ordered if any(counts.get(c, 0) for c in counters))
    return UsageTable(usage_type, counters, rows[:limit], scope, note, reason)


def cached_share(counts: Mapping[str, int]) -> str:
    total = counts.get("input_tokens", 0)
    return format_percent(percent_of(Decimal(counts.get("input_cached_tokens", 0)), Decimal(total))) if total else "-"


def format_count(value: int) -> str:
    for threshold, unit, suffix in ((10**9, 10**9, "B"), (10**6, 10**6, "M"), (10**4, 10**3, "k")):
        if abs(value) >= threshold:
            return f"{Decimal(value) / unit:.1f}{suffix}".replace(".0" + suffix, suffix)
    return f"{value:,}"


# --- money state: budget, forecast, credits, limits -------------------------------------------------


@dataclass(frozen=True)
class MonthState:
    month: str
    month_to_date_usd: Decimal | None
    budget_usd: Decimal | None
    forecast: Forecast | None
    previous_month_usd: Decimal | None
    as_of: datetime | None
    note: str | None = None

    @property
    def budget_percent(self) -> Decimal | None:
        if self.month_to_date_usd is None or not self.budget_usd:
            return None
        return percent_of(self.month_to_date_usd, self.budget_usd)


def month_state(snapshot: Snapshot | None, org: OrganizationConfig) -> MonthState:
    budget = org.budget.monthly_usd if org.budget is not None else None
    if snapshot is None:
        return MonthState("", None, budget, None, None, None, "no snapshot yet")
    note = None
    if snapshot.month_to_date_usd is None:
        note = f"costs could not be read in the poll of {isoformat_utc(snapshot.poll_time)}: " + (
            failure_detail(snapshot, "costs") or "no cost data"
        )
    return MonthState(
        snapshot.period,
        snapshot.month_to_date_usd,
        budget,
        forecast_month_end(snapshot),
        snapshot.previous_month_usd,
        snapshot.poll_time,
        note,
    )


def costs_snapshot(newest: Snapshot | None, fallback: Snapshot | None) -> Snapshot | None:
    """The newest snapshot whose costs were read (the latest poll may have lost that source)."""
    for snapshot in (newest, fallback):
        if snapshot is not None and snapshot.month_to_date_usd is not None:
            return snapshot
    return newest


def upcoming_grants(snapshot: Snapshot | None, now: datetime, limit: int = 3) -> list[CreditGrant]:
    """Grants with credit left that have not expired yet, soonest expiry first."""
    if snapshot is None:
        return []
    live = [g for g in snapshot.credit_grants if g.remaining_usd > 0 and (g.expires_at is None or g.expires_at > now)]
    live.sort(key=lambda g: (g.expires_at is None, g.expires_at or now))
    return live[:limit]


def balance(snapshot: Snapshot | None, now: datetime) -> Decimal | None:
    return prepaid_balance(snapshot, now=now) if snapshot is not None else None


@dataclass(frozen=True)
class LimitRow:
    scope: str
    limit_usd: Decimal
    source: str
    spent_usd: Decimal | None

    @property
    def used(self) -> str:
        if self.spent_usd is None or self.limit_usd <= 0:
            return "-"
        return format_percent(percent_of(self.spent_usd, self.limit_usd))


def spend_limits(snapshot: Snapshot | None, org: OrganizationConfig) -> list[LimitRow]:
    """OpenAI's (or the subscription's, or the config's) monthly limits, organization first."""
    if snapshot is None:
        return []
    rows = []
    org_limit = organization_hard_limit(snapshot, org)
    if org_limit is not None:
        rows.append(LimitRow("organization", org_limit[0], org_limit[1], snapshot.month_to_date_usd))
    projects = {s.key: s.amount_usd for s in snapshot.costs_by_project_usd}
    for limit in sorted(snapshot.spend_limits, key=lambda s: s.scope):
        if limit.scope == "organization" or limit.threshold_cents <= 0:
            continue
        name = f"project {project_name(snapshot, limit.scope)}"
        rows.append(LimitRow(name, limit.threshold_usd, limit.source, projects.get(limit.scope)))
    return rows


def spend_alerts(snapshot: Snapshot | None) -> list[tuple[str, Decimal]]:
    """OpenAI's own e-mail spend alerts: (scope, threshold in USD)."""
    if snapshot is None:
        return []
    return [
        (
            s.scope if s.scope == "organization" else f"project {project_name(snapshot, s.scope)}",
            Decimal(s.threshold_cents) / 100,
        )
        for s in sorted(snapshot.spend_alerts, key=lambda s: (s.scope != "organization", s.scope, s.threshold_cents))
    ]


# --- the monitor's health ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Health:
    last_poll: datetime | None
    sources_ok: int
    sources_failed: tuple[tuple[str, str], ...]
    """(source, kind: detail) of the latest poll"""
    conditions: tuple[str, ...]
    polls: int
    polls_with_failures: int
    failing_sources: tuple[tuple[str, int], ...]
    """sources that failed in some poll of the window, with how many polls"""
    alerts_sent: int | None
    """notification-log entries recorded in the window (None: not read)"""

    def summary(self, now: datetime) -> str:
        if self.last_poll is None:
            return "no snapshot has been stored yet: the poller has not run or cannot write"
        age = now - self.last_poll
        hours = int(age.total_seconds() // 3600)
        ago = f"{hours} h ago" if hours else f"{max(0, int(age.total_seconds() // 60))} min ago"
        failed = f", {len(self.sources_failed)} failed" if self.sources_failed else ""
        return f"last poll {isoformat_utc(self.last_poll)} ({ago}); {self.sources_ok} sources OK{failed}"


def health(newest: Snapshot | None, polls: Sequence[Snapshot], alerts_sent: int | None) -> Health:
    counts: dict[str, int] = {}
    for poll in polls:
        for failure in poll.failing:
            counts[failure.source] = counts.get(failure.source, 0) + 1
    return Health(
        newest.poll_time if newest is not None else None,
        len(newest.sources_ok) if newest is not None else 0,
        tuple((f.source, f"{f.kind}: {f.detail}") for f in newest.failing) if newest is not None else (),
        tuple(newest.conditions) if newest is not None else (),
        len(polls),
        sum(1 for poll in polls if poll.failing),
        tuple(sorted(counts.items(), key=lambda item: (-item[1], item[0]))),
        alerts_sent,
    )


def counts_as_alert(key: str) -> bool:
    return not key.startswith(ALERT_KEY_EXCLUDED)


# --- charts --------------------------------------------------------------------------------------------


def _month_days(month: str) -> tuple[date, ...]:
    year, number = (int(part) for part in month.split("-"))
    return tuple(date(year, number, day) for day in range(1, calendar.monthrange(year, number)[1] + 1))


def _month_title(month: str) -> str:
    year, number = (int(part) for part in month.split("-"))
    return f"{calendar.month_name[number]} {year}"


def daily_spend_chart(
    history: SnapshotHistory,
    snapshot: Snapshot | None,
    org: OrganizationConfig,
    month: str,
    *,
    now: datetime,
) -> DailySpendChart:
    """`month`'s daily spend, split by the top projects (or line items when there is one project)."""
    days = _month_days(month)
    title = f"Daily spend, {_month_title(month)}: {org.name}"
    budget = org.budget.monthly_usd if org.budget is not None else None
    pace = budget / len(days) if budget is not None else None
    if snapshot is not None and snapshot.period != month:
        # A past month: its last poll holds its final daily buckets and month-to-date breakdowns.
        closing = history.at_or_before(month_end(day_start(days[0])) - timedelta(seconds=1))
        snapshot = closing if closing is not None and closing.period == month else None
    buckets = {c.day: c.amount_usd for c in snapshot.daily_costs_usd} if snapshot is not None else {}
    spent = {day: buckets[day] for day in days if day in buckets}
    if snapshot is None:
        notice = f"No snapshot of {_month_title(month)} yet: nothing has been polled for this month."
        return DailySpendChart(title, "no data", days, budget_pace_usd=pace, notice=notice)
    if not spent:
        reason = failure_detail(snapshot, "costs")
        why = f"the costs source failed ({reason})" if reason else "OpenAI reported no cost buckets"
        notice = (
            f"No daily cost data for {_month_title(month)} in the poll of {isoformat_utc(snapshot.poll_time)}: {why}."
        )
        return DailySpendChart(title, "no data", days, budget_pace_usd=pace, notice=notice)
    projects = project_costs(snapshot) or {}
    by_project = len([k for k, v in projects.items() if v > 0]) > 1
    extract = project_costs if by_project else line_item_costs
    shares = extract(snapshot) or {}
    top = [k for k, v in sorted(shares.items(), key=lambda kv: (-kv[1], kv[0])) if v > 0][:CHART_SERIES]
    label = (lambda k: project_name(snapshot, k)) if by_project else (lambda k: k)
    series = [Series(label(k), PALETTE[i % len(PALETTE)]) for i, k in enumerate(top)]
    values, unattributed_days = _split_days(history, spent, top, extract)
    series += [
        Series("Other" if top else "All spend", OTHER_COLOR),
        Series(f"Not split by {'project' if by_project else 'line item'}", UNATTRIBUTED_COLOR),
    ]
    keep = [i for i in range(len(series)) if any(parts[i] > 0 for parts in values.values())] or [len(series) - 2]
    series = [series[i] for i in keep]
    values = {day: tuple(parts[i] for i in keep) for day, parts in values.items()}
    forecast: dict[date, Decimal] = {}
    running = snapshot.period == month and now < month_end(day_start(days[0]))
    projection = forecast_month_end(snapshot) if running else None  # a finished month has no forecast
    if projection is not None:
        last = max(spent)
        forecast = {day: projection.run_rate_usd for day in days if day > last}
    total = sum(spent.values(), Decimal(0))
    subtitle = f"{format_usd(total)} spent"
    if budget is not None:
        subtitle += f" of {format_usd(budget)} budget ({format_percent(percent_of(total, budget))})"
    if projection is not None:
        share = f" ({format_percent(percent_of(projection.projected_usd, budget))})" if budget else ""
        subtitle += f" · forecast {format_usd(projection.projected_usd)}{share}"
    notes = [
        f"Bars: each day's exact cost, split by each {'project' if by_project else 'line item'}'s growth between polls."
    ]
    if unattributed_days:
        notes.append(f"{len(unattributed_days)} day(s) without a poll at their start or end are not split.")
    return DailySpendChart(title, subtitle, days, tuple(series), values, forecast, pace, notes=tuple(notes))


def _split_days(
    history: SnapshotHistory,
    spent: Mapping[date, Decimal],
    top: Sequence[str],
    extract: Callable[[Snapshot], Mapping[str, Decimal] | None],
) -> tuple[dict[date, tuple[Decimal, ...]], list[date]]:
    """Each day's exact cost as (top keys..., other, not split); the days that could not be split."""
    values: dict[date, tuple[Decimal, ...]] = {}
    unattributed: list[date] = []
    for day in sorted(spent):
        total = spent[day]
        growth = period_growth(history, day_start(day), day_start(day) + DAY, extract, "costs")
        if growth.values is None:
            values[day] = (*(Decimal(0) for _ in top), Decimal(0), total)
            unattributed.append(day)
            continue
        parts, used = [], Decimal(0)
        for key in top:
            part = min(max(growth.values.get(key, Decimal(0)), Decimal(0)), total - used)
            parts.append(part)
            used += part
        values[day] = (*parts, total - used, Decimal(0))
    return values, unattributed


def monthly_totals(history: SnapshotHistory, newest: Snapshot | None, month: str, count: int = 12) -> list[MonthTotal]:
    """`count` months ending with `month`: the last poll's month to date of each (the running month partial).

    The month before the newest snapshot's takes that snapshot's `previous_month_usd` (settled)."""
    year, number = (int(part) for part in month.split("-"))
    months = []
    for back in range(count - 1, -1, -1):
        y, m = divmod(number - 1 - back, 12)
        months.append(f"{year + y:04d}-{m + 1:02d}")
    totals = []
    for label in months:
        start = month_period(label)
        closing = history.at_or_before(start.end - timedelta(seconds=1))
        amount = closing.month_to_date_usd if closing is not None and closing.period == label else None
        if newest is not None and newest.previous_month_usd is not None and _next_month(label) == newest.period:
            amount = newest.previous_month_usd
        running = newest is not None and newest.period == label
        totals.append(MonthTotal(label, amount, running))
    return totals


def _next_month(month: str) -> str:
    year, number = (int(part) for part in month.split("-"))
    return f"{year + number // 12:04d}-{number % 12 + 1:02d}"


def monthly_chart(
    history: SnapshotHistory, newest: Snapshot | None, org: OrganizationConfig, month: str
) -> MonthlyChart:
    totals = monthly_totals(history, newest, month)
    known = [t for t in totals if t.amount_usd is not None]
    budget = org.budget.monthly_usd if org.budget is not None else None
    notice = None
    if not known:
        notice = "No monthly totals: no snapshot of these months is stored."
    subtitle = f"{len(known)} of {len(totals)} months with data"
    if len(known) < len(totals):
        subtitle += " (snapshots are kept SnapshotRetentionDays; older months have none)"
    return MonthlyChart(f"Month over month: {org.name}", subtitle, tuple(totals), budget, notice)
