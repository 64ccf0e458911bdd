"""Rules: pure functions from a snapshot (plus recent history) and the org's config to observations.

An `Observation` says, for one alert key, whether the condition currently holds and at which level (for
a ladder of thresholds, the highest one crossed) and up to which level it is still *held* by the rule's
hysteresis margin. Whether to *notify* is decided separately (`spendwatch.alerter.decide`) against the alert's
previous state. Methods and defaults are documented in docs/rules.md; keep the two in step.

Alert keys are stable and scoped: `<rule>#<scope>#<period>` for monthly rules (`budget.actual#org#2026-11`,
`hard_limit#project:proj_1#2026-11`), `grant.expiry#<grant id>#<lead>d` for grants, and unscoped keys for
conditions that are not monthly (`low_balance#org`, `health.source#costs`).
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from spendwatch.core.alerts import Observation
from spendwatch.core.config import ApiKeyBudgetConfig, BudgetConfig, OrganizationConfig, SpikeRuleConfig
from spendwatch.core.money import format_percent, format_usd, percent_of
from spendwatch.core.snapshot import ApiKeyCost, CostShare, CreditGrant, DailyShare, Snapshot

HISTORY_DAYS = 10
"""How far back the alerter should read snapshots for `history` (spike baseline, burn rate, health)."""
PROVISIONAL_DAYS = 2
"""OpenAI's latest two UTC days (today's partial bucket and yesterday's) are still revised."""
MIN_BASELINE_DAYS = 3
"""Fewest settled days a spike baseline or a burn rate is computed from."""


INFORMATIONAL_CONDITIONS = frozenset({"snapshot_trimmed"})
"""Conditions a snapshot reports that are not a monitor problem, so they never alert."""

ONE = Decimal(1)
KEY_COSTS = "costs_by_api_key"
"""The source of the per-key figures: when it did not answer, no per-key rule says anything."""
OTHER_KEY = "(other)"
NONE_KEY = "(none)"


# --- helpers ---------------------------------------------------------------------------------------


def days_in_month(day: date) -> int:
    return calendar.monthrange(day.year, day.month)[1]


def month_end(moment: datetime) -> datetime:
    """Midnight UTC at the start of the next month."""
    moment = moment.astimezone(UTC)
    last = days_in_month(moment.date())
    return datetime(moment.year, moment.month, last, tzinfo=UTC) + timedelta(days=1)


def days_left_in_month(moment: datetime) -> Decimal:
    """Days (with a fraction) from `moment` to the end of its UTC month."""
    seconds = (month_end(moment) - moment.astimezone(UTC)).total_seconds()
    return Decimal(int(seconds)) / 86400


def history_since(snapshot: Snapshot) -> datetime:
    """The `since` to pass to `SnapshotStore.recent_snapshots` for this snapshot's history."""
    return snapshot.poll_time - timedelta(days=HISTORY_DAYS)


def prior_snapshots(snapshot: Snapshot, history: Iterable[Snapshot]) -> list[Snapshot]:
    """Earlier snapshots of the same org, newest first, one per poll time (the current one excluded)."""
    seen: dict[datetime, Snapshot] = {}
    for item in history:
        if item.org_id == snapshot.org_id and item.poll_time < snapshot.poll_time:
            seen.setdefault(item.poll_time, item)
    return [seen[t] for t in sorted(seen, reverse=True)]


def daily_series(snapshot: Snapshot, prior: Sequence[Snapshot] = ()) -> dict[date, Decimal]:
    """Daily spend by UTC day: this snapshot's month, earlier days from history (newest snapshot wins)."""
    series: dict[date, Decimal] = {}
    for item in (snapshot, *prior):
        for cost in item.daily_costs_usd:
            series.setdefault(cost.day, cost.amount_usd)
    return dict(sorted(series.items()))


def settled_days(snapshot: Snapshot, series: dict[date, Decimal], before: date, count: int) -> list[Decimal]:
    """Amounts of up to `count` days before `before` that are no longer provisional."""
    first_provisional = snapshot.poll_time.date() - timedelta(days=PROVISIONAL_DAYS - 1)
    cutoff = min(before, first_provisional)
    days = [d for d in series if d < cutoff]
    return [series[d] for d in days[-count:]]


@dataclass(frozen=True)
class Forecast:
    """Projected month-end spend: the run rate of the month's complete days times the days in the month."""

    projected_usd: Decimal
    run_rate_usd: Decimal
    complete_days: int
    days_in_month: int


def forecast_month_end(snapshot: Snapshot) -> Forecast | None:
    """Month-to-date of complete days / complete days x days in month, never below month-to-date.

    Complete days are the month's UTC days before the poll's day; today's partial bucket is left out of
    the rate (it still counts in month-to-date). None before the month has one complete day.
    """
    if snapshot.month_to_date_usd is None:
        return None
    today = snapshot.poll_time.date()
    complete_days = today.day - 1
    if complete_days < 1:
        return None
    complete = sum(
        (c.amount_usd for c in snapshot.daily_costs_usd if c.day < today and c.day.month == today.month),
        Decimal(0),
    )
    rate = complete / complete_days
    total_days = days_in_month(today)
    projected = max(snapshot.month_to_date_usd, rate * total_days)
    return Forecast(projected, rate, complete_days, total_days)


def _margin(percent: Decimal) -> Decimal:
    return ONE - percent / 100


@dataclass(frozen=True)
class _Rung:
    level: Decimal
    """percent of the budget: the threshold's identity in the notification log"""
    usd: Decimal
    label: str


def ladder(budget: BudgetConfig) -> list[_Rung]:
    """Percent and USD thresholds as one ladder ordered by amount; levels are percents of the budget."""
    rungs: dict[Decimal, _Rung] = {}
    for percent in budget.thresholds_percent:
        rungs[percent] = _Rung(percent, budget.monthly_usd * percent / 100, format_percent(percent))
    for usd in budget.thresholds_usd:
        level = percent_of(usd, budget.monthly_usd)
        rungs.setdefault(level, _Rung(level, usd, format_usd(usd)))
    return [rungs[level] for level in sorted(rungs)]


def _crossing(rungs: Sequence[_Rung], value: Decimal, margin: Decimal) -> tuple[Decimal | None, Decimal | None]:
    crossed = [r.level for r in rungs if value >= r.usd]
    held = [r.level for r in rungs if value >= r.usd * margin]
    return (max(crossed) if crossed else None, max(held) if held else None)


def _labels(rungs: Sequence[_Rung]) -> tuple[tuple[Decimal, str], ...]:
    return tuple((r.level, r.label) for r in rungs)


@dataclass(frozen=True)
class _Scope:
    key: str
    """`org`, `project:<id>` or `line_item:<name>`"""
    kind: str
    """organization | project | line item"""
    name: str
    budget: BudgetConfig
    spent: Decimal


def _share(shares: Sequence[CostShare], key: str) -> Decimal:
    return sum((s.amount_usd for s in shares if s.key == key), Decimal(0))


def project_name(snapshot: Snapshot, project_id: str) -> str:
    """A project's display name: from the projects list, else from its cost share, else its id."""
    name = snapshot.project_name(project_id)
    if name != project_id:
        return name
    for share in snapshot.costs_by_project_usd:
        if share.key == project_id and share.name:
            return share.name
    return project_id


def named_keys(snapshot: Snapshot) -> list[ApiKeyCost]:
    """The keys of the by-key breakdown that are one key each (not `(other)`, not `(none)`)."""
    return [k for k in snapshot.costs_by_api_key_usd if k.key not in (OTHER_KEY, NONE_KEY)]


def key_spend(snapshot: Snapshot, budget: ApiKeyBudgetConfig) -> tuple[Decimal, str] | None:
    """(month-to-date spend, display name) of the key(s) a budget names, or None when this poll cannot
    say: the by-key costs failed, the budget names a key by name and the names could not be read, or the
    key is not listed while some keys were summed into `(other)`. None neither raises nor clears."""
    if KEY_COSTS not in snapshot.sources_ok:
        return None
    capped = any(k.key == OTHER_KEY for k in snapshot.costs_by_api_key_usd)
    if budget.id is not None:
        matched = [k for k in named_keys(snapshot) if k.key == budget.id]
        shown = matched[0].label() if matched else budget.id
    else:
        if "api_keys" not in snapshot.sources_ok:
            return None
        matched = [k for k in named_keys(snapshot) if k.name == budget.name]
        shown = str(budget.name)
    if capped and not matched:
        return None
    return sum((k.amount_usd for k in matched), Decimal(0)), shown


def budget_scopes(snapshot: Snapshot, org: OrganizationConfig) -> list[_Scope]:
    """Every configured budget with the month-to-date spend it is measured against."""
    keys = []
    for budget in org.rules.budget.api_keys:
        known = key_spend(snapshot, budget)
        if known is not None:
            keys.append(_Scope(f"api_key:{budget.match}", "API key", known[1], budget, known[0]))
    if snapshot.month_to_date_usd is None:
        return keys
    scopes: list[_Scope] = []
    if org.budget is not None:
        scopes.append(_Scope("org", "organization", snapshot.org_name, org.budget, snapshot.month_to_date_usd))
    for project in org.rules.budget.projects:
        spent = _share(snapshot.costs_by_project_usd, project.id)
        scopes.append(_Scope(f"project:{project.id}", "project", project_name(snapshot, project.id), project, spent))
    for item in org.rules.budget.line_items:
        spent = _share(snapshot.costs_by_line_item_usd, item.name)
        scopes.append(_Scope(f"line_item:{item.name}", "line item", item.name, item, spent))
    return scopes + keys


# --- rules -----------------------------------------------------------------------------------------


def budget_actual(snapshot: Snapshot, org: OrganizationConfig) -> list[Observation]:
    """Month-to-date spend against each budget's ladder (AWS Budgets' ACTUAL)."""
    margin = _margin(org.rules.budget.resolve_margin_percent)
    observations = []
    for scope in budget_scopes(snapshot, org):
        rungs = ladder(scope.budget)
        level, hold = _crossing(rungs, scope.spent, margin)
        observations.append(
            Observation(
                rule_id="budget.actual",
                key=f"budget.actual#{scope.key}#{snapshot.period}",
                level=level,
                summary="Monthly budget",
                facts={
                    "spent_usd": scope.spent,
                    "budget_usd": scope.budget.monthly_usd,
                    "percent": percent_of(scope.spent, scope.budget.monthly_usd),
                    "period": snapshot.period,
                    "scope": scope.kind,
                    "scope_name": scope.name,
                },
                hold_level=hold,
                labels=_labels(rungs),
            )
        )
    return observations


def budget_forecast(snapshot: Snapshot, org: OrganizationConfig) -> list[Observation]:
    """Projected month-end spend against each budget (AWS Budgets' FORECASTED), separate from actual.

    Projects and line items are projected with the organization's ratio of forecast to month-to-date
    (their share of spend is assumed to stay as it is).
    """
    settings = org.rules.forecast
    forecast = forecast_month_end(snapshot)
    if forecast is None or forecast.complete_days < settings.min_days or snapshot.month_to_date_usd is None:
        return []
    mtd = snapshot.month_to_date_usd
    margin = _margin(settings.resolve_margin_percent)
    observations = []
    for scope in budget_scopes(snapshot, org):
        if scope.key == "org":
            projected, rate = forecast.projected_usd, forecast.run_rate_usd
        else:
            projected = scope.spent * forecast.projected_usd / mtd if mtd > 0 else scope.spent
            rate = projected / forecast.days_in_month
        rungs = [_Rung(p, scope.budget.monthly_usd * p / 100, format_percent(p)) for p in settings.thresholds_percent]
        level, hold = _crossing(rungs, projected, margin)
        observations.append(
            Observation(
                rule_id="budget.forecast",
                key=f"budget.forecast#{scope.key}#{snapshot.period}",
                level=level,
                summary="Forecast month-end spend",
                facts={
                    "forecast_usd": projected,
                    "spent_usd": scope.spent,
                    "budget_usd": scope.budget.monthly_usd,
                    "percent": percent_of(projected, scope.budget.monthly_usd),
                    "run_rate_usd": rate,
                    "complete_days": Decimal(forecast.complete_days),
                    "period": snapshot.period,
                    "scope": scope.kind,
                    "scope_name": scope.name,
                },
                hold_level=hold,
                labels=_labels(rungs),
            )
        )
    return observations


_LIMIT_SOURCES = {"admin_api": 0, "subscription": 1, "config": 2}


def organization_hard_limit(snapshot: Snapshot, org: OrganizationConfig | None) -> tuple[Decimal, str] | None:
    """The org's monthly hard limit: the official spend limit, else the subscription's, else the config's."""
    limits = [s for s in snapshot.spend_limits if s.scope == "organization" and s.threshold_cents > 0]
    if limits:
        best = min(limits, key=lambda s: _LIMIT_SOURCES.get(s.source, 9))
        return best.threshold_usd, best.source
    subscription = snapshot.subscription
    if subscription is not None and subscription.hard_limit_usd and subscription.hard_limit_usd > 0:
        return subscription.hard_limit_usd, "subscription"
    if org is not None and org.hard_limit_usd is not None:
        return org.hard_limit_usd, "config"
    return None


def hard_limit(snapshot: Snapshot, org: OrganizationConfig) -> list[Observation]:
    """Month-to-date spend at `percent` of the org's or a project's hard limit (repeats while breached)."""
    if snapshot.month_to_date_usd is None:
        return []
    settings = org.rules.hard_limit
    margin = _margin(settings.resolve_margin_percent)
    targets: list[tuple[str, str, str, Decimal, Decimal, str]] = []
    org_limit = organization_hard_limit(snapshot, org)
    if org_limit is not None:
        targets.append(("org", "organization", snapshot.org_name, snapshot.month_to_date_usd, *org_limit))
    project_limits: dict[str, tuple[Decimal, str]] = {}
    for limit in sorted(snapshot.spend_limits, key=lambda s: _LIMIT_SOURCES.get(s.source, 9), reverse=True):
        if limit.scope != "organization" and limit.threshold_cents > 0:
            project_limits[limit.scope] = (limit.threshold_usd, limit.source)
    for project_id, (usd, source) in sorted(project_limits.items()):
        spent = _share(snapshot.costs_by_project_usd, project_id)
        targets.append((f"project:{project_id}", "project", project_name(snapshot, project_id), spent, usd, source))
    observations = []
    for scope_key, kind, name, spent, limit_usd, source in targets:
        at = limit_usd * settings.percent / 100
        level = settings.percent if spent >= at else None
        hold = settings.percent if spent >= at * margin else None
        observations.append(
            Observation(
                rule_id="hard_limit",
                key=f"hard_limit#{scope_key}#{snapshot.period}",
                level=level,
                summary="Hard limit",
                facts={
                    "spent_usd": spent,
                    "limit_usd": limit_usd,
                    "percent": percent_of(spent, limit_usd),
                    "limit_source": source,
                    "period": snapshot.period,
                    "scope": kind,
                    "scope_name": name,
                },
                hold_level=hold,
                labels=((settings.percent, format_percent(settings.percent)),),
            )
        )
    return observations


def credit_grants(snapshot: Snapshot, org: OrganizationConfig) -> list[CreditGrant]:
    """Grants from the snapshot plus those declared in the config that the snapshot does not already hold."""
    grants = list(snapshot.credit_grants)
    known = {g.id for g in grants}
    for declared in org.credit_grants:
        if declared.id in known:
            continue
        expires = declared.expires_at
        effective = declared.effective_at
        grants.append(
            CreditGrant(
                id=declared.id,
                grant_amount_usd=declared.amount_usd,
                used_amount_usd=declared.used_usd,
                expires_at=datetime(expires.year, expires.month, expires.day, tzinfo=UTC),
                effective_at=None
                if effective is None
                else datetime(effective.year, effective.month, effective.day, tzinfo=UTC),
                source="config",
            )
        )
    return grants


def grant_expiry(snapshot: Snapshot, org: OrganizationConfig, *, now: datetime) -> list[Observation]:
    """A grant with a remaining balance expiring within a lead time: once per grant per lead time.

    Every lead time already reached has its own key; when several are reached at once (first run) the
    message shows only the most urgent one and all are recorded. Expired or used-up grants are quiet.
    """
    observations = []
    for grant in credit_grants(snapshot, org):
        if grant.expires_at is None or grant.remaining_usd <= 0:
            continue
        left = grant.expires_at - now
        if left <= timedelta(0):
            continue
        for lead in org.rules.grant_expiry.lead_days:
            if left > timedelta(days=lead):
                continue
            observations.append(
                Observation(
                    rule_id="grant.expiry",
                    key=f"grant.expiry#{grant.id[:200]}#{lead}d",
                    level=Decimal(lead),
                    summary="Credit grant expiring",
                    facts={
                        "grant_id": grant.id,
                        "remaining_usd": grant.remaining_usd,
                        "grant_usd": grant.grant_amount_usd,
                        "expires_at": grant.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "days_left": Decimal(int(left.total_seconds())) / 86400,
                        "lead_days": Decimal(lead),
                        "source": grant.source,
                    },
                    labels=((Decimal(lead), f"{lead}-day"),),
                    collapse_key=f"grant.expiry#{grant.id}",
                    urgency=-lead,
                )
            )
    return observations


def prepaid_balance(snapshot: Snapshot, *, now: datetime) -> Decimal | None:
    """Remaining prepaid credit: the credit summary, else the unexpired session-key grants; None if unknown.

    Grants declared in the config do not track spending, so a summary built from them alone is no balance.
    """
    declared_only = bool(snapshot.credit_grants) and all(g.source == "config" for g in snapshot.credit_grants)
    if snapshot.credit_summary is not None and not declared_only:
        return snapshot.credit_summary.total_available_usd
    live = [g for g in snapshot.credit_grants if g.source != "config" and (g.expires_at is None or g.expires_at > now)]
    if not live:
        return None
    return sum((g.remaining_usd for g in live), Decimal(0))


def burn_rate(snapshot: Snapshot, series: dict[date, Decimal], days: int) -> Decimal | None:
    """Average daily spend of the last `days` settled days; else last month's daily average; else None."""
    amounts = settled_days(snapshot, series, snapshot.poll_time.date(), days)
    if len(amounts) >= MIN_BASELINE_DAYS:
        return sum(amounts, Decimal(0)) / len(amounts)
    if snapshot.previous_month_usd is not None:
        previous_month_day = snapshot.poll_time.date().replace(day=1) - timedelta(days=1)
        return snapshot.previous_month_usd / days_in_month(previous_month_day)
    return None


def low_balance(
    snapshot: Snapshot, org: OrganizationConfig, series: dict[date, Decimal], *, now: datetime
) -> list[Observation]:
    """Prepaid credit below `min_usd`, or fewer than `min_runway_days` left at the burn rate (opt-in)."""
    settings = org.rules.low_balance
    balance = prepaid_balance(snapshot, now=now)
    if balance is None:
        return []
    above = ONE + settings.resolve_margin_percent / 100
    observations = []
    if settings.min_usd is not None:
        observations.append(
            Observation(
                rule_id="low_balance",
                key="low_balance#org",
                level=ONE if balance < settings.min_usd else None,
                summary="Low prepaid balance",
                facts={"balance_usd": balance, "min_usd": settings.min_usd},
                hold_level=ONE if balance < settings.min_usd * above else None,
            )
        )
    if settings.min_runway_days is not None:
        rate = burn_rate(snapshot, series, settings.burn_days)
        if rate is not None and rate > 0:
            runway = balance / rate
            minimum = Decimal(settings.min_runway_days)
            observations.append(
                Observation(
                    rule_id="low_balance.runway",
                    key="low_balance.runway#org",
                    level=ONE if runway < minimum else None,
                    summary="Prepaid balance runway",
                    facts={
                        "balance_usd": balance,
                        "burn_rate_usd": rate,
                        "runway_days": runway,
                        "min_runway_days": minimum,
                    },
                    hold_level=ONE if runway < minimum * above else None,
                )
            )
    return observations


def spend_spike(snapshot: Snapshot, org: OrganizationConfig, series: dict[date, Decimal]) -> list[Observation]:
    """Yesterday's or today's (so far) spend at least `factor` x the median of the settled days before.

    The baseline is the median of the `baseline_days` settled days before yesterday (the provisional
    days are never part of it); at least three such days are needed. Days under `min_usd` never spike.
    One key per day, so a spike is reported once, whichever poll sees it first.
    """
    return _spikes(snapshot, org.rules.spike, series, "org", {})


def _month_series(snapshot: Snapshot, share: DailyShare) -> dict[date, Decimal]:
    first = snapshot.poll_time.date().replace(day=1)
    return {first + timedelta(days=i): amount for i, amount in enumerate(share.daily_usd)}


def scoped_spikes(snapshot: Snapshot, org: OrganizationConfig) -> list[Observation]:
    """Each API key's and each project's own spike (opt-in), from this month's days of the by-key query,
    with the organization's factor, baseline and minimum. Their keys name the scope
    (`spike#api_key:key_…#2026-11-20`), so each is reported once per day like the organization's."""
    settings = org.rules.spike
    if KEY_COSTS not in snapshot.sources_ok:
        return []
    observations = []
    if settings.api_keys:
        for key in named_keys(snapshot):
            facts = {"scope": "API key", "scope_name": key.label()}
            observations += _spikes(snapshot, settings, _month_series(snapshot, key), f"api_key:{key.key}", facts)
    if settings.projects:
        for project in snapshot.daily_costs_by_project_usd:
            if project.key in (OTHER_KEY, NONE_KEY):
                continue
            facts = {"scope": "project", "scope_name": project_name(snapshot, project.key)}
            series = _month_series(snapshot, project)
            observations += _spikes(snapshot, settings, series, f"project:{project.key}", facts)
    return observations


def _spikes(
    snapshot: Snapshot, settings: SpikeRuleConfig, series: dict[date, Decimal], scope: str, facts: dict[str, str]
) -> list[Observation]:
    today = snapshot.poll_time.date()
    baseline_values = settled_days(snapshot, series, today, settings.baseline_days)
    if len(baseline_values) < MIN_BASELINE_DAYS or sum(1 for v in baseline_values if v > 0) < MIN_BASELINE_DAYS:
        return []  # too few days, or too few with any spend (a new or weekly-used key): no baseline to beat
    baseline = Decimal(_median(baseline_values))
    if baseline <= 0:
        return []  # most settled days spent nothing: any spend would be "a spike" against zero
    threshold = settings.factor * baseline
    margin = _margin(settings.resolve_margin_percent)
    observations = []
    for day in (today - timedelta(days=1), today):
        amount = series.get(day)
        if amount is None:
            continue
        spiked = amount >= settings.min_usd and amount >= threshold
        held = amount >= settings.min_usd and amount >= threshold * margin
        observations.append(
            Observation(
                rule_id="spike",
                key=f"spike#{scope}#{day.isoformat()}",
                level=settings.factor if spiked else None,
                summary="Spend spike",
                facts={
                    "day": day.isoformat(),
                    "amount_usd": amount,
                    "baseline_usd": baseline,
                    "factor": settings.factor,
                    "ratio": amount / baseline if baseline > 0 else Decimal(0),
                    "baseline_days": Decimal(len(baseline_values)),
                    "partial": "yes" if day == today else "no",
                    **facts,
                },
                hold_level=settings.factor if held else None,
            )
        )
    return observations


KEY_FAILURE_KIND = "key"
"""As `poller.collect.KEY_FAILURE`: a failure its key condition reports (the alerter does not import the poller)."""


def first_spend(snapshot: Snapshot, org: OrganizationConfig) -> list[Observation]:
    """Each API key created within `new_key_days` that spends this month, once (opt-in).

    The alert key names the key and no period, and the rule never observes it cleared, so the
    notification log (kept 400 days, longer than `new_key_days` can be) holds one message per key: the
    poll that first sees the key spend sends it, every later one finds it already notified. Keys without
    a known creation time (deleted, or their names unread) are not announced.
    """
    if KEY_COSTS not in snapshot.sources_ok:
        return []
    young = timedelta(days=org.rules.first_spend.new_key_days)
    observations = []
    for key in named_keys(snapshot):
        if key.amount_usd <= 0 or key.created_at is None or snapshot.poll_time - key.created_at > young:
            continue
        facts: dict[str, Decimal | str] = {
            "scope_name": key.label(),
            "amount_usd": key.amount_usd,
            "period": snapshot.period,
            "created_at": key.created_at.strftime("%Y-%m-%d"),
            "owner": key.owner_label() or "unknown",
            "project": project_name(snapshot, key.project_id) if key.project_id else "unknown",
        }
        observations.append(Observation("first_spend", f"first_spend#api_key:{key.key}", ONE, "New API key", facts))
    return observations


def monitor_health(
    snapshot: Snapshot, org: OrganizationConfig, prior: Sequence[Snapshot], *, now: datetime
) -> list[Observation]:
    """The monitor's own health: a source failing `failing_polls` polls in a row, a named condition
    (e.g. the session key rejected), the admin key expiring within `admin_key_expiry_days`.
    """
    settings = org.rules.health
    observations = []
    failing = {f.source: f for f in snapshot.failing}
    for source in sorted(set(failing) | set(snapshot.sources_ok)):
        failure = failing.get(source)
        if failure is None:
            observations.append(
                Observation("health.source", f"health.source#{source}", None, "Data source", {"source": source})
            )
            continue
        if failure.kind == KEY_FAILURE_KIND and snapshot.conditions:
            continue  # the key's condition (below) already says what is wrong, at once
        streak = 1
        for earlier in prior:
            if not any(f.source == source for f in earlier.failing):
                break
            streak += 1
        if streak < settings.failing_polls:
            continue  # not yet conclusive: neither firing nor cleared
        observations.append(
            Observation(
                "health.source",
                f"health.source#{source}",
                ONE,
                "Data source failing",
                {
                    "source": source,
                    "kind": failure.kind,
                    "detail": failure.detail,
                    "failing_polls": Decimal(streak),
                },
            )
        )
    previous_conditions = set(prior[0].conditions) if prior else set()
    for condition in sorted((set(snapshot.conditions) | previous_conditions) - INFORMATIONAL_CONDITIONS):
        present = condition in snapshot.conditions
        observations.append(
            Observation(
                "health.condition",
                f"health.condition#{condition}",
                ONE if present else None,
                "Monitor condition",
                {"condition": condition},
            )
        )
    expires = snapshot.admin_key_expires_at
    # One alert per organization, whichever admin key it is configured with: rotating to a key that does
    # not expire soon (or never expires) clears it, with a message. It was keyed by the expiry day, so the
    # old key's alert stayed firing after a rotation and its promised "cleared" message never came; the
    # key id would do the same, as a rotation means a new key with a new `admin_key_id`.
    key = "health.admin_key#org"
    if expires is not None:
        left = expires - now
        observations.append(
            Observation(
                "health.admin_key",
                key,
                ONE if left <= timedelta(days=settings.admin_key_expiry_days) else None,
                "Admin key expiring",
                {
                    "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "days_left": Decimal(int(left.total_seconds())) / 86400,
                },
            )
        )
    elif "admin_key" in snapshot.sources_ok:
        # The key was read and has no expiry: not expiring. (A poll that could not read the key says
        # nothing: the alert is neither raised nor cleared.)
        observations.append(Observation("health.admin_key", key, None, "Admin key expiring", {"expires_at": "never"}))
    return observations


def evaluate(
    snapshot: Snapshot,
    org: OrganizationConfig,
    *,
    history: Iterable[Snapshot] = (),
    now: datetime | None = None,
) -> list[Observation]:
    """Every enabled rule's observations for one snapshot.

    `history`: earlier snapshots of the org (any order, may include this one or newer ones; only
    earlier ones are used), for the spike baseline, the burn rate and failing-source streaks.
    `now`: the clock (grant and key expiry); defaults to the snapshot's poll time.
    """
    moment = now or snapshot.poll_time
    rules = org.rules
    prior = prior_snapshots(snapshot, history)
    series = daily_series(snapshot, prior)
    observations: list[Observation] = []
    if rules.budget.enabled:
        observations += budget_actual(snapshot, org)
    if rules.forecast.enabled:
        observations += budget_forecast(snapshot, org)
    if rules.hard_limit.enabled:
        observations += hard_limit(snapshot, org)
    if rules.grant_expiry.enabled:
        observations += grant_expiry(snapshot, org, now=moment)
    if rules.low_balance.enabled:
        observations += low_balance(snapshot, org, series, now=moment)
    if rules.spike.enabled:
        observations += spend_spike(snapshot, org, series)
        observations += scoped_spikes(snapshot, org)
    if rules.first_spend.enabled:
        observations += first_spend(snapshot, org)
    if rules.health.enabled:
        observations += monitor_health(snapshot, org, prior, now=moment)
    return observations


def _median(values: Sequence[Decimal]) -> Decimal:
    """statistics.median's result (the mean of the middle two for an even count), without importing
    `statistics` (and the `fractions` and `random` it loads) into every function's cold start."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2
