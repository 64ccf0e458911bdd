"""`spendwatch report`: one self-contained HTML page of a month's spend, built from snapshot history.

The page needs nothing but itself: CSS inline, charts as inline SVG drawn by `spendwatch.views.chart` (no
script, no font, no image, no request of any kind), tables that scroll sideways inside their box so the
page fits a phone's width. It holds, per organization: the daily spend chart and month over month; the
metric sets HertzBeat's OpenAI monitor shows (credit grants with their expiry dates, model cost, billing
subscription) and LogicMonitor's OpenAI DataSources (completions by model with cached tokens, images by
model, cost by organization); costs by project and line item; usage of every type; OpenAI's limits and
spend alerts; and the monitor's health. Missing history and failed sources are stated where they apply.

Pure: the caller gives each organization's `SnapshotHistory` (the table, or one fresh local poll).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from spendwatch.alerter.rules import project_name
from spendwatch.core.config import OrganizationConfig
from spendwatch.core.money import format_percent, format_usd, percent_of
from spendwatch.core.snapshot import Snapshot, isoformat_utc
from spendwatch.views.chart import layout_daily, layout_monthly, render_svg
from spendwatch.views.figures import (
    balance,
    cached_share,
    daily_spend_chart,
    failure_detail,
    health,
    model_costs,
    month_period,
    month_state,
    monthly_chart,
    spend_alerts,
    spend_limits,
)
from spendwatch.views.history import SnapshotHistory

E = html.escape
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
STYLE = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1d1c1d;
  background: #f6f6f4; }
main { max-width: 1100px; margin: 0 auto; padding: 12px; }
header h1 { font-size: 1.5rem; margin: 8px 0 2px; }
.muted { color: #616061; }
section.org { background: #fff; border: 1px solid #e2e2e2; border-radius: 8px; padding: 12px 14px; margin: 14px 0; }
h2 { font-size: 1.3rem; margin: 4px 0 8px; }
h3 { font-size: 1.05rem; margin: 18px 0 6px; border-bottom: 1px solid #eee; padding-bottom: 3px; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 8px; margin: 8px 0; }
.card { background: #fafafa; border: 1px solid #eaeaea; border-radius: 6px; padding: 8px 10px; }
.card b { display: block; font-size: 1.15rem; }
.chart { margin: 10px 0; border: 1px solid #eee; border-radius: 6px; overflow-x: auto; }
/* On a phone a chart keeps a legible size and scrolls sideways inside its box; the page does not. */
.chart svg { min-width: 620px; }
.scroll { overflow-x: auto; -webkit-overflow-scrolling: touch; max-width: 100%; }
table { border-collapse: collapse; width: 100%; font-size: 0.9rem; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #eee; white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.note { background: #fff8e6; border-left: 3px solid #e0a800; padding: 6px 10px; margin: 8px 0; }
.bad { color: #b3261e; }
p.source { font-size: 0.85rem; }
"""


@dataclass(frozen=True)
class OrgReport:
    org: OrganizationConfig
    history: SnapshotHistory
    note: str | None = None
    """how the history was obtained when it is not the table (e.g. one fresh local poll)"""


def _month_title(month: str) -> str:
    start = month_period(month).start
    return start.strftime("%B %Y")


def _usd(amount: Decimal | None) -> str:
    return "unknown" if amount is None else format_usd(amount)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[int] = (), empty: str = "") -> str:
    if not rows:
        return f'<p class="muted">{E(empty or "Nothing to show.")}</p>'
    head = "".join(
        f'<th class="num">{E(h)}</th>' if i in numeric else f"<th>{E(h)}</th>" for i, h in enumerate(headers)
    )
    body = "".join(
        "<tr>"
        + "".join(f'<td class="num">{E(c)}</td>' if i in numeric else f"<td>{E(c)}</td>" for i, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _note(text: str) -> str:
    return f'<p class="note">{E(text)}</p>'


def _failed(snapshot: Snapshot | None, source: str) -> str:
    if snapshot is None:
        return "No snapshot of this month."
    detail = failure_detail(snapshot, source)
    if detail:
        return f"{source} could not be read in the latest poll ({isoformat_utc(snapshot.poll_time)}): {detail}."
    return ""


def _cards(snapshot: Snapshot | None, report: OrgReport, now: datetime) -> str:
    state = month_state(snapshot, report.org)
    cards = [("Month to date", _usd(state.month_to_date_usd))]
    if state.budget_usd is not None:
        used = format_percent(state.budget_percent) if state.budget_percent is not None else "-"
        cards.append(("Budget", f"{format_usd(state.budget_usd)} ({used} used)"))
    if state.forecast is not None:
        cards.append(("Forecast", format_usd(state.forecast.projected_usd)))
    cards.append(("Previous month", _usd(state.previous_month_usd)))
    prepaid = balance(snapshot, now)
    if prepaid is not None:
        cards.append(("Prepaid balance", format_usd(prepaid)))
    cards.append(("Last poll", isoformat_utc(snapshot.poll_time) if snapshot else "none"))
    return '<div class="cards">' + "".join(f'<div class="card">{E(k)}<b>{E(v)}</b></div>' for k, v in cards) + "</div>"


def _credit_grants(snapshot: Snapshot | None) -> str:
    parts = ["<h3>Credit grants (HertzBeat: Credit Grants)</h3>"]
    summary = snapshot.credit_summary if snapshot else None
    if summary is not None:
        rows = [
            ("Total granted", _usd(summary.total_granted_usd)),
            ("Total used", _usd(summary.total_used_usd)),
            ("Total available", _usd(summary.total_available_usd)),
            ("Total paid available", _usd(summary.total_paid_available_usd)),
        ]
        parts.append(_table(("Figure", "USD"), rows, (1,)))
    grants = [
        (
            g.id,
            format_usd(g.grant_amount_usd),
            format_usd(g.used_amount_usd),
            format_usd(g.remaining_usd),
            g.effective_at.date().isoformat() if g.effective_at else "-",
            g.expires_at.date().isoformat() if g.expires_at else "never",
            g.source,
        )
        for g in sorted(snapshot.credit_grants if snapshot else (), key=lambda g: (g.expires_at is None, g.expires_at))
    ]
    why = _failed(snapshot, "credit_grants") or (
        "No credit grants: they are read with a session key (legacy billing endpoint) or declared in the config."
    )
    parts.append(
        _table(("Grant", "Granted", "Used", "Remaining", "Effective", "Expires", "Source"), grants, (1, 2, 3), why)
    )
    return "".join(parts)


def _model_cost(snapshot: Snapshot | None) -> str:
    costs = model_costs(snapshot) if snapshot is not None else None
    rows = [(model, format_usd(amount)) for model, amount in sorted((costs or {}).items(), key=lambda kv: -kv[1])]
    why = _failed(snapshot, "costs_by_line_item") or "No cost this month."
    return "<h3>Model cost, month to date (HertzBeat: Model Cost)</h3>" + _table(
        ("Model or tool", "Cost"), rows, (1,), why
    )


def _subscription(snapshot: Snapshot | None) -> str:
    sub = snapshot.subscription if snapshot else None
    heading = "<h3>Billing subscription (HertzBeat: Billing Subscription)</h3>"
    if sub is None:
        why = _failed(snapshot, "subscription") or (
            "Not read: the subscription is a legacy endpoint that needs the organization's session key."
        )
        return heading + f'<p class="muted">{E(why)}</p>'
    rows = []
    for name, value in sub.model_dump().items():
        text = format_usd(value) if isinstance(value, Decimal) else ("-" if value is None else str(value))
        rows.append((name, text))
    return heading + _table(("Field", "Value"), rows)


def _usage_type(snapshot: Snapshot, kind: str) -> str:
    summary = snapshot.usage[kind]
    parts = [f"<h4>{E(kind)}</h4>"]
    parts.append(_table(("Counter", "Month to date"), [(c, f"{v:,}") for c, v in summary.totals.items()], (1,)))
    for title, breakdown, name in (
        ("by model", summary.by_model, lambda k: k),
        ("by project", summary.by_project, lambda k: project_name(snapshot, k)),
    ):
        if not breakdown:
            continue
        counters = sorted({c for counts in breakdown.values() for c in counts})
        rows = [(name(key), *(f"{counts.get(c, 0):,}" for c in counters)) for key, counts in breakdown.items()]
        parts.append(f'<p class="muted">{E(kind)} {E(title)}</p>')
        parts.append(
            _table(("Model" if title == "by model" else "Project", *counters), rows, range(1, len(counters) + 1))
        )
    return "".join(parts)


def _completions(snapshot: Snapshot | None) -> str:
    heading = "<h3>Completions by model (LogicMonitor: Completion By Model)</h3>"
    summary = snapshot.usage.get("completions") if snapshot else None
    if summary is None:
        return heading + f'<p class="muted">{E(_failed(snapshot, "usage_completions") or "No completions usage.")}</p>'
    rows = [
        (
            model,
            f"{counts.get('input_tokens', 0):,}",
            f"{counts.get('input_cached_tokens', 0):,}",
            cached_share(counts),
            f"{counts.get('output_tokens', 0):,}",
            f"{counts.get('input_audio_tokens', 0) + counts.get('output_audio_tokens', 0):,}",
            f"{counts.get('num_model_requests', 0):,}",
        )
        for model, counts in sorted(summary.by_model.items(), key=lambda kv: -kv[1].get("input_tokens", 0))
    ]
    headers = ("Model", "Input tokens", "Cached input", "Cached share", "Output tokens", "Audio tokens", "Requests")
    return heading + _table(headers, rows, (1, 2, 3, 4, 5, 6), "No completions this month.")


def _images(snapshot: Snapshot | None) -> str:
    heading = "<h3>Images by model (LogicMonitor: Images By Model)</h3>"
    summary = snapshot.usage.get("images") if snapshot else None
    if summary is None:
        return heading + f'<p class="muted">{E(_failed(snapshot, "usage_images") or "No image usage.")}</p>'
    rows = [
        (model, f"{counts.get('images', 0):,}", f"{counts.get('num_model_requests', 0):,}")
        for model, counts in sorted(summary.by_model.items())
    ]
    return heading + _table(("Model", "Images", "Requests"), rows, (1, 2), "No images this month.")


def _daily_costs(snapshot: Snapshot | None, month: str, org: OrganizationConfig) -> str:
    heading = "<h3>Cost by organization, per day (LogicMonitor: Cost By Organization)</h3>"
    days = [c for c in (snapshot.daily_costs_usd if snapshot else ()) if c.day.isoformat().startswith(month)]
    rows = [(c.day.isoformat(), org.name, format_usd(c.amount_usd)) for c in days]
    why = _failed(snapshot, "costs") or "No daily cost data for this month."
    return heading + _table(("Day (UTC)", "Organization", "Cost"), rows, (2,), why)


def _shares(snapshot: Snapshot | None, *, projects: bool) -> str:
    shares = (snapshot.costs_by_project_usd if projects else snapshot.costs_by_line_item_usd) if snapshot else ()
    total = snapshot.month_to_date_usd if snapshot else None
    rows = [
        (
            (s.name or project_name(snapshot, s.key)) if projects and snapshot else s.key,
            format_usd(s.amount_usd),
            format_percent(percent_of(s.amount_usd, total)) if total else "-",
        )
        for s in shares
    ]
    source = "costs_by_project" if projects else "costs_by_line_item"
    title = "Cost by project" if projects else "Cost by line item"
    return f"<h3>{title}, month to date</h3>" + _table(
        ("Project" if projects else "Line item", "Cost", "Share"), rows, (1, 2), _failed(snapshot, source) or "None."
    )


def _api_keys(snapshot: Snapshot | None) -> str:
    """Who is spending: each key by name and redacted value (else its id), its owner and project."""
    keys = snapshot.costs_by_api_key_usd if snapshot else ()
    total = snapshot.month_to_date_usd if snapshot else None
    rows = [
        (
            k.label(),
            k.owner_label() or "-",
            project_name(snapshot, k.project_id) if snapshot and k.project_id else "-",
            format_usd(k.amount_usd),
            format_percent(percent_of(k.amount_usd, total)) if total else "-",
        )
        for k in keys
    ]
    if snapshot is not None and not keys and "costs_by_api_key" not in snapshot.sources_ok:
        why = _failed(snapshot, "costs_by_api_key") or "Not read by this release's poller (before schema 3)."
    else:
        why = _failed(snapshot, "costs_by_api_key") or "None."
    names = [s for s in ("api_keys", "service_accounts", "users") if snapshot and _failed(snapshot, s)]
    note = (
        _note(f"Names not read in the latest poll ({', '.join(names)}): those keys are shown by id.") if names else ""
    )
    return (
        "<h3>Cost by API key, month to date</h3>"
        + note
        + _table(("API key", "Owner", "Project", "Cost", "Share"), rows, (3, 4), why)
    )


def _completions_by_who(snapshot: Snapshot | None) -> str:
    """Completions by user and by API key (tokens and requests), users by name where OpenAI lists them."""
    heading = "<h3>Completions by user and API key, month to date</h3>"
    who = snapshot.completions_attribution if snapshot else None
    if who is None:
        return heading + f'<p class="muted">{E(_failed(snapshot, "usage_completions_by_key") or "Not read.")}</p>'
    keys = {k.key: k.label() for k in snapshot.costs_by_api_key_usd} if snapshot else {}

    def rows(breakdown: dict[str, dict[str, int]], name: Callable[[str], str]) -> list[tuple[str, ...]]:
        ranked = sorted(breakdown.items(), key=lambda kv: -kv[1].get("input_tokens", 0))
        return [
            (
                name(key),
                f"{counts.get('input_tokens', 0):,}",
                f"{counts.get('output_tokens', 0):,}",
                f"{counts.get('num_model_requests', 0):,}",
            )
            for key, counts in ranked
        ]

    columns = ("Input tokens", "Output tokens", "Requests")
    users = rows(who.by_user, lambda u: who.user_names.get(u, u))
    by_key = rows(who.by_api_key, lambda k: keys.get(k, k))
    tiers = rows({**who.by_batch, **{f"tier {t}": c for t, c in who.by_service_tier.items()}}, str)
    return (
        heading
        + _table(("User", *columns), users, (1, 2, 3), "None.")
        + _table(("API key", *columns), by_key, (1, 2, 3), "None.")
        + _table(("Batch / service tier", *columns), tiers, (1, 2, 3), "None.")
    )


def _rate_limits(snapshot: Snapshot | None) -> str:
    """Each active project's rate limits for the models it used this month."""
    limits = snapshot.rate_limits if snapshot else ()
    rows = [
        (
            project_name(snapshot, r.scope) if snapshot else r.scope,
            r.model,
            f"{r.limits.get('max_requests_per_1_minute', 0):,}",
            f"{r.limits.get('max_tokens_per_1_minute', 0):,}",
            ", ".join(f"{k} {v:,}" for k, v in sorted(r.limits.items()) if not k.endswith("s_per_1_minute")) or "-",
        )
        for r in limits
    ]
    why = _failed(snapshot, "project_rate_limits") or "None for the models used this month."
    return "<h3>Rate limits of the models in use</h3>" + _table(
        ("Project", "Model", "Requests/min", "Tokens/min", "Other limits"), rows, (2, 3), why
    )


def _limits(snapshot: Snapshot | None, org: OrganizationConfig) -> str:
    rows = [(row.scope, format_usd(row.limit_usd), row.source, row.used) for row in spend_limits(snapshot, org)]
    alerts = [(scope, format_usd(amount)) for scope, amount in spend_alerts(snapshot)]
    return (
        "<h3>Spend limits and OpenAI's spend alerts</h3>"
        + _table(("Scope", "Monthly limit", "From", "Used"), rows, (1, 3), "No spend limit is set.")
        + _table(("Spend alert scope", "Threshold"), alerts, (1,), "No OpenAI spend alert is set.")
    )


def _usage(snapshot: Snapshot | None) -> str:
    heading = "<h3>Usage of every type, month to date</h3>"
    if snapshot is None or not snapshot.usage:
        return heading + '<p class="muted">No usage was read.</p>'
    failed = [f.source for f in snapshot.failing if f.source.startswith("usage_")]
    note = _note(f"Not read in the latest poll: {', '.join(failed)}.") if failed else ""
    return heading + note + "".join(_usage_type(snapshot, kind) for kind in sorted(snapshot.usage))


def _health(snapshot: Snapshot | None, polls: Sequence[Snapshot], now: datetime) -> str:
    state = health(snapshot, polls, None)
    rows = [("Latest", state.summary(now))]
    rows += [(f"Failing now: {source}", detail) for source, detail in state.sources_failed]
    rows += [("Condition", c) for c in state.conditions]
    rows.append(("Polls this month", f"{state.polls} ({state.polls_with_failures} with a failed source)"))
    rows += [(f"Failed polls: {source}", str(count)) for source, count in state.failing_sources]
    if snapshot is not None and snapshot.admin_key_expires_at is not None:
        rows.append(("Admin key expires", isoformat_utc(snapshot.admin_key_expires_at)))
    return "<h3>Monitor health</h3>" + _table(("", ""), rows)


def org_section(report: OrgReport, month: str, now: datetime) -> str:
    org, history = report.org, report.history
    period = month_period(month)
    until = min(now, period.end - timedelta(seconds=1))
    newest = history.at_or_before(until)
    snapshot = newest if newest is not None and newest.period == month else None
    polls = history.polls_between(period.start, min(now, period.end))
    daily = daily_spend_chart(history, snapshot, org, month, now=now)
    monthly = monthly_chart(history, newest, org, month)
    parts = [
        f'<section class="org" id="org-{E(org.id)}">',
        f'<h2>{E(org.name)} <span class="muted">({E(org.id)})</span></h2>',
    ]
    if report.note:
        parts.append(_note(report.note))
    if snapshot is None:
        parts.append(_note(f"No snapshot of {org.name} was stored in {_month_title(month)}."))
    parts.append(_cards(snapshot, report, now))
    parts.append(f'<div class="chart">{render_svg(layout_daily(daily), chart_id=f"daily-{org.id}")}</div>')
    parts += [_note(note) for note in daily.notes[1:]]
    parts.append(f'<div class="chart">{render_svg(layout_monthly(monthly), chart_id=f"monthly-{org.id}")}</div>')
    parts += [
        _credit_grants(snapshot),
        _model_cost(snapshot),
        _subscription(snapshot),
        _completions(snapshot),
        _images(snapshot),
        _daily_costs(snapshot, month, org),
        _shares(snapshot, projects=True),
        _api_keys(snapshot),
        _completions_by_who(snapshot),
        _shares(snapshot, projects=False),
        _usage(snapshot),
        _limits(snapshot, org),
        _rate_limits(snapshot),
        _health(snapshot, polls, now),
        "</section>",
    ]
    return "".join(parts)


def render_report(reports: Sequence[OrgReport], month: str, *, now: datetime, source: str) -> str:
    """The whole page (UTF-8 HTML) for `month` (`YYYY-MM`)."""
    sections = "".join(org_section(report, month, now) for report in reports)
    title = f"OpenAI spend, {_month_title(month)}"
    nav = " · ".join(f'<a href="#org-{E(r.org.id)}">{E(r.org.name)}</a>' for r in reports) if len(reports) > 1 else ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # No request may leave the page: no script, no image, no font, nothing fetched.
        f'<meta http-equiv="Content-Security-Policy" content="{E(CSP)}">'
        f"<title>{E(title)}</title><style>{STYLE}</style></head><body><main>"
        f"<header><h1>{E(title)}</h1>"
        f'<p class="muted source">spendwatch report, generated {E(isoformat_utc(now))} from {E(source)}. '
        "Amounts in USD, days in UTC; OpenAI still revises the last two days.</p>"
        f"{f'<p>{nav}</p>' if nav else ''}</header>"
        f"{sections}</main></body></html>\n"
    )


def org_totals(reports: Sequence[OrgReport], month: str, now: datetime) -> Mapping[str, Decimal | None]:
    """Month to date of each organization (for the command's summary line)."""
    period = month_period(month)
    totals: dict[str, Decimal | None] = {}
    for report in reports:
        newest = report.history.at_or_before(min(now, period.end - timedelta(seconds=1)))
        totals[report.org.id] = newest.month_to_date_usd if newest is not None and newest.period == month else None
    return totals
