"""Spend digests: what a digest says (pure; `digest.schedule` says which is due, `digest.app` reads and sends).

A digest covers whole UTC days: a daily one the day before its send day, a weekly one the seven days
before. Its send moment is `hour_utc` on the send day (for a weekly one, the configured weekday). The
digest function runs hourly; at any moment the due digest of a config entry is the one whose send moment
is the latest at or before now, and it is sent unless the notification log already records it for that
channel. So a run that failed, or a function that was down at the hour, sends it at the next run, and a
period is never sent twice (`log_key` is per organization, channel and send day).

With no snapshot at all the digest says so; each figure whose history is missing says what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import partial

from spendwatch.alerter.rules import project_name
from spendwatch.core.config import OrganizationConfig
from spendwatch.core.snapshot import CreditGrant, Snapshot, month_of
from spendwatch.digest.schedule import DuePeriod
from spendwatch.views.chart import DailySpendChart
from spendwatch.views.figures import (
    Health,
    LimitRow,
    MonthState,
    RankedTable,
    UsageTable,
    api_key_costs,
    api_key_name,
    balance,
    costs_snapshot,
    daily_spend_chart,
    health,
    line_item_costs,
    model_costs,
    month_state,
    period_total,
    project_costs,
    ranked_table,
    spend_alerts,
    spend_limits,
    upcoming_grants,
    usage_table,
)
from spendwatch.views.history import SnapshotHistory, boundary
from spendwatch.views.period import DAY, Period


@dataclass(frozen=True)
class Digest:
    org_id: str
    org_name: str
    every: str
    period: Period
    now: datetime
    newest: Snapshot | None
    spend_usd: Decimal | None
    previous_spend_usd: Decimal | None
    month: MonthState
    projects: RankedTable
    line_items: RankedTable
    api_keys: RankedTable
    models: RankedTable
    usage: tuple[UsageTable, ...]
    balance_usd: Decimal | None
    grants: tuple[CreditGrant, ...]
    limits: tuple[LimitRow, ...]
    spend_alerts: tuple[tuple[str, Decimal], ...]
    health: Health
    chart: DailySpendChart
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def has_data(self) -> bool:
        return self.newest is not None

    @property
    def provisional(self) -> bool:
        """Whether the period reaches into OpenAI's last two (still revised) days."""
        return self.period.end > self.now - 2 * DAY


def build_digest(
    org: OrganizationConfig,
    due: DuePeriod,
    history: SnapshotHistory,
    *,
    now: datetime,
    alerts_sent: int | None,
) -> Digest:
    """Every figure of one digest, from the org's snapshot history as of `now`."""
    period = due.period
    newest = history.at_or_before(now)
    at_end = boundary(history, period.end)
    costs = costs_snapshot(newest, at_end)
    notes: list[str] = []
    spend = period_total(costs, period)
    previous = period_total(costs, period.previous)
    if newest is not None and spend is None:
        notes.append(f"The cost of {period.label} is unknown: the daily cost buckets of those days were not read.")
    polls = history.polls_between(period.start, period.end)
    chart_month = month_of(period.end - DAY)

    def project(key: str) -> str:
        return project_name(costs, key) if costs is not None else key

    return Digest(
        org_id=org.id,
        org_name=org.name,
        every=due.every,
        period=period,
        now=now,
        newest=newest,
        spend_usd=spend,
        previous_spend_usd=previous,
        month=month_state(costs, org),
        projects=ranked_table(history, period, costs, extract=project_costs, what="costs by project", name=project),
        line_items=ranked_table(history, period, costs, extract=line_item_costs, what="costs by line item", name=str),
        api_keys=ranked_table(
            history, period, costs, extract=api_key_costs, what="costs by API key", name=partial(api_key_name, costs)
        ),
        models=ranked_table(history, period, costs, extract=model_costs, what="costs by model", name=str),
        usage=tuple(
            usage_table(history, period, newest, kind)
            for kind in ("completions", "images", "audio_speeches", "audio_transcriptions")
        ),
        balance_usd=balance(newest, now),
        grants=tuple(upcoming_grants(newest, now)),
        limits=tuple(spend_limits(costs, org)),
        spend_alerts=tuple(spend_alerts(newest)),
        health=health(newest, polls, alerts_sent),
        chart=daily_spend_chart(history, costs, org, chart_month, now=now),
        notes=tuple(notes),
    )
