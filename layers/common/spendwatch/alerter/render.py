"""Messages people read: a Slack Block Kit payload and an e-mail (plain text + HTML) built from alerts.

Pure: no network. Both renderings share one content model (`Content`, spendwatch.core.alerts) built from
raw text; the Slack message carries it so the other channels render it in their own format; each output
escapes for its medium. Untrusted strings (organization, project, line item, grant and source names,
error details) go through `untrusted()` where they are placed in a sentence, and every text then through
the medium's escaping, in this module for every renderer (alerts, notices, the watchdog, test messages):

- `untrusted()` (spendwatch.core.text): one line, no format characters, clipped, bidi-isolated;
- Slack mrkdwn (`escape`): `&`, `<`, `>` as entities (no mention, link or channel reference), and `*`,
  `_`, `~`, `` ` `` replaced by lookalikes (U+2217, U+02CD, U+223C, U+02CB), since Slack has no
  backslash escape for them: a name stays readable and cannot bold, italicize, strike or code-format
  anything. `*_~` between two letters or digits (`token_revoked`, `gpt_4o`) cannot open or close
  formatting in Slack and stay as written; `plain_text` objects (`escape_plain`) need only the entities;
- e-mail: HTML entities in the HTML part, and no line breaks in the subject.

Slack limits are enforced here (3,000 characters per section, 2,000 per field, 50 blocks, 40,000
characters of `text`; total block text is kept under 12,000, below the ~13k at which Slack starts
refusing messages), so a send never fails with `msg_too_long`; truncation is marked.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from spendwatch.alerter.rules import days_left_in_month, forecast_month_end, organization_hard_limit, prepaid_balance
from spendwatch.core.alerts import Alert, Content, EmailContent, Message, Reason
from spendwatch.core.config import OrganizationConfig
from spendwatch.core.money import format_percent, format_usd, percent_of
from spendwatch.core.snapshot import CostShare, Snapshot, isoformat_utc
from spendwatch.core.text import NAME_LIMIT, TRUNCATION_MARK, balanced, neutralize, truncate, untrusted

USAGE_URL = "https://platform.openai.com/usage"
SECTION_LIMIT = 3000
FIELD_LIMIT = 2000
HEADER_LIMIT = 150
TEXT_LIMIT = 40000
BLOCK_TEXT_BUDGET = 12000
MAX_BLOCKS = 50
TOP_N = 5
DETAIL_LIMIT = 300
SPARK_CHARS = "▁▂▃▄▅▆▇█"
_MRKDWN_LOOKALIKES = {"*": "\u2217", "_": "\u02cd", "~": "\u223c", "`": "\u02cb"}
"""Slack formats *bold*, _italic_, ~strike~ and `code` and has no escape for them: lookalikes read the same"""
_MRKDWN_FORMATTING = re.compile(r"`|(?<![^\W_])[*_~]|[*_~](?![^\W_])")
"""Backticks, and `*_~` not between two letters or digits: inside a word (`token_revoked`) Slack formats
nothing, so those stay as written"""


def escape_plain(text: str) -> str:
    """Text for a Slack `plain_text` object: entities for Slack's control characters, format characters out."""
    return neutralize(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape(text: str) -> str:
    r"""Text for Slack mrkdwn: nothing in it can mention, link or format (`*_~\``), or reorder what follows."""
    return _MRKDWN_FORMATTING.sub(lambda m: _MRKDWN_LOOKALIKES[m.group()], escape_plain(text))


def _one_line(text: str, limit: int) -> str:
    """A whole line (our words and `untrusted` names) neutralized and clipped, isolates kept balanced."""
    text = neutralize(text).strip()
    if len(text) <= limit:
        return text
    return balanced(text[: limit - 1]) + "…"


def _days(value: Decimal) -> str:
    if value < 1:
        return "less than a day"
    whole = int(value.to_integral_value(rounding=ROUND_HALF_UP))
    return f"{whole} day" if whole == 1 else f"{whole} days"


def _polls(count: Decimal) -> str:
    return "1 poll" if count == 1 else f"{count} polls"


def _ratio(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.1'), rounding=ROUND_HALF_UP)}x"


_CONDITIONS = {
    "session_key_rejected": "The session key was rejected (expired or revoked): credit grants, the balance and "
    "the subscription's limits are not being read. Store a new sess-… key.",
    "session_key_expired": "The session key has expired: credit grants, the balance and the subscription's "
    "limits are not being read. Store a new sess-… key.",
    "admin_key_missing_scope": "The admin key lacks a permission spendwatch needs: some figures are not being read.",
    "admin_key_missing": "No admin key is stored for this organization: nothing is read. Store an sk-admin-… key.",
    "admin_key_rejected": "The admin key was rejected: costs are not being read. Store a valid sk-admin-… key.",
}


@dataclass(frozen=True)
class _Say:
    """What each rule's wording needs about one alert; every accessor returns raw (unescaped) text."""

    facts: dict[str, Decimal | str]
    resolved: bool
    again: str
    """`Still: ` for a repeat"""
    label: str
    """how the alert's level reads, e.g. `80.0%` or `$400.00`"""
    level: Decimal | None
    lowest: str = ""
    """the lowest threshold's label: what a full resolve fell back under"""

    def usd(self, name: str) -> str:
        return format_usd(Decimal(self.facts[name]))

    def pct(self, name: str) -> str:
        return format_percent(Decimal(self.facts[name]))

    def num(self, name: str) -> Decimal:
        return Decimal(self.facts[name])

    def text(self, name: str, limit: int = NAME_LIMIT) -> str:
        return untrusted(self.facts[name], limit)

    @property
    def scope(self) -> str:
        kind = str(self.facts.get("scope", "organization"))
        # Only the first letter: "API key" stays "API key" (`capitalize` would make it "Api key").
        return "" if kind == "organization" else f'{kind[:1].upper()}{kind[1:]} "{self.text("scope_name")}": '


def _say_budget_actual(s: _Say) -> str:
    figures = f"{s.usd('spent_usd')} of {s.usd('budget_usd')} spent ({s.pct('percent')}) in {s.facts['period']}"
    budget = "its monthly budget" if s.scope else "the monthly budget"
    if s.resolved and s.level is None:
        return f"{s.scope}Back under {budget}'s thresholds: {figures}"
    if s.resolved:
        return f"{s.scope}Back down to the {s.label} threshold of {budget}: {figures}"
    threshold = f"{s.label} threshold of {budget}" if s.label.startswith("$") else f"{s.label} of {budget}"
    return f"{s.again}{s.scope}{threshold} reached: {figures}"


def _say_budget_forecast(s: _Say) -> str:
    figures = (
        f"{s.usd('forecast_usd')} projected for {s.facts['period']} = {s.pct('percent')} of the "
        f"{s.usd('budget_usd')} budget (run rate {s.usd('run_rate_usd')}/day over {s.num('complete_days')} "
        "complete days)"
    )
    if s.resolved:
        return f"{s.scope}Forecast back under {s.label or s.lowest or 'the thresholds'}: {figures}"
    return f"{s.again}{s.scope}Forecast over {s.label} of the budget: {figures}"


def _say_hard_limit(s: _Say) -> str:
    figures = (
        f"{s.usd('spent_usd')} of the {s.usd('limit_usd')} hard limit spent ({s.pct('percent')}) in "
        f"{s.facts['period']}; limit from {s.text('limit_source')}"
    )
    if s.resolved:
        return f"{s.scope}Back under {s.label or s.lowest or 'the alert level'} of the hard limit: {figures}"
    return f"{s.again}{s.scope}{s.label} of the hard limit reached: {figures}"


def _say_grant_expiry(s: _Say) -> str:
    return (
        f'{s.again}Credit grant "{s.text("grant_id")}" expires in {_days(s.num("days_left"))} '
        f"({str(s.facts['expires_at'])[:10]}): {s.usd('remaining_usd')} of {s.usd('grant_usd')} unused will be lost"
    )


def _say_low_balance(s: _Say) -> str:
    if s.resolved:
        return f"Prepaid balance back to {s.usd('balance_usd')} (alerts under {s.usd('min_usd')})"
    return f"{s.again}Prepaid balance {s.usd('balance_usd')} is under {s.usd('min_usd')}"


def _say_runway(s: _Say) -> str:
    figures = (
        f"{s.usd('balance_usd')} lasts about {_days(s.num('runway_days'))} at {s.usd('burn_rate_usd')}/day "
        f"(alerts under {s.num('min_runway_days')} days)"
    )
    return f"Prepaid runway recovered: {figures}" if s.resolved else f"{s.again}Prepaid balance running out: {figures}"


def _say_spike(s: _Say) -> str:
    when = f"{s.facts['day']} (so far)" if s.facts.get("partial") == "yes" else str(s.facts["day"])
    figures = (
        f"{s.usd('amount_usd')} on {when}, {_ratio(s.num('ratio'))} the median {s.usd('baseline_usd')}/day of the "
        f"{s.num('baseline_days')} settled days before"
    )
    return (
        f"{s.scope}Spend spike revised away: {figures}" if s.resolved else f"{s.again}{s.scope}Spend spike: {figures}"
    )


def _say_first_spend(s: _Say) -> str:
    return (
        f'{s.again}New API key spending: "{s.text("scope_name")}" (created {s.facts["created_at"]}, owner '
        f"{s.text('owner')}, project {s.text('project')}) has spent {s.usd('amount_usd')} in {s.facts['period']}"
    )


def _say_source(s: _Say) -> str:
    if s.resolved:
        return f'Data source "{s.text("source")}" works again'
    return (
        f'{s.again}Data source "{s.text("source")}" failed {_polls(s.num("failing_polls"))} in a row '
        f"({s.text('kind')}): {s.text('detail', DETAIL_LIMIT)}"
    )


def _say_condition(s: _Say) -> str:
    name = str(s.facts["condition"])
    if s.resolved:
        return f"Cleared: {s.text('condition')}"
    base, _, scope = name.partition(":")
    if base == "admin_key_missing_scope" and scope:  # one condition per scope OpenAI named (poller)
        return (
            f"{s.again}The admin key lacks the {untrusted(scope)} scope: the figures that need it are not being "
            "read. Grant the key that scope or store an unrestricted sk-admin-… key."
        )
    return s.again + _CONDITIONS.get(name, f"Monitor condition: {s.text('condition')}")


def _say_admin_key(s: _Say) -> str:
    expires = str(s.facts["expires_at"])[:10]
    if s.resolved:
        if expires == "never":
            return "The OpenAI admin key no longer expires soon (it has no expiry date)"
        return f"The OpenAI admin key no longer expires soon (now {expires})"
    if s.num("days_left") <= 0:
        return f"{s.again}The OpenAI admin key expired on {expires}: polling stops until a new key is stored"
    return f"{s.again}The OpenAI admin key expires in {_days(s.num('days_left'))} ({expires}): store a new one"


_WORDING: dict[str, Callable[[_Say], str]] = {
    "budget.actual": _say_budget_actual,
    "budget.forecast": _say_budget_forecast,
    "hard_limit": _say_hard_limit,
    "grant.expiry": _say_grant_expiry,
    "low_balance": _say_low_balance,
    "low_balance.runway": _say_runway,
    "spike": _say_spike,
    "first_spend": _say_first_spend,
    "health.source": _say_source,
    "health.condition": _say_condition,
    "health.admin_key": _say_admin_key,
}


def describe(alert: Alert) -> str:
    """One line of raw text (not escaped) saying what changed."""
    obs = alert.observation
    wording = _WORDING.get(obs.rule_id)
    if wording is None:
        return untrusted(obs.summary, DETAIL_LIMIT)
    label = obs.label(alert.level) or (format_percent(alert.level) if alert.level is not None else "")
    again = "Still: " if alert.reason is Reason.REPEAT_DUE else ""
    lowest = obs.labels[0][1] if obs.labels else ""
    return wording(_Say(obs.facts, alert.reason is Reason.RESOLVED, again, label, alert.level, lowest))


def visible_alerts(alerts: Sequence[Alert]) -> list[Alert]:
    """The alerts to show: of those sharing a collapse key (one grant's lead times), the most urgent."""
    best: dict[str, Alert] = {}
    for alert in alerts:
        key = alert.observation.collapse_key
        if key is None:
            continue
        if key not in best or alert.observation.urgency > best[key].observation.urgency:
            best[key] = alert
    return [a for a in alerts if a.observation.collapse_key is None or best[a.observation.collapse_key] is a]


def freshness(snapshot: Snapshot, now: datetime | None = None) -> str:
    through = snapshot.data_through
    polled = isoformat_utc(snapshot.poll_time)
    if now is not None:
        minutes = max(0, int((now - snapshot.poll_time).total_seconds() // 60))
        polled += f" ({minutes} min before this message)"
    if through is None:
        return f"Polled {polled}; no cost data yet this month."
    return f"Polled {polled}; cost data through {through.isoformat()} (UTC; the last two days are provisional)."


def sparkline(values: Sequence[Decimal]) -> str:
    """One block character per value, scaled from zero to the largest value."""
    top = max(values, default=Decimal(0))
    if top <= 0:
        return SPARK_CHARS[0] * len(values)
    steps = len(SPARK_CHARS) - 1
    return "".join(
        SPARK_CHARS[int((max(v, Decimal(0)) * steps / top).to_integral_value(rounding=ROUND_HALF_UP))] for v in values
    )


def _top(shares: Sequence[CostShare], snapshot: Snapshot, *, projects: bool) -> tuple[str, ...]:
    ranked = sorted(shares, key=lambda s: s.amount_usd, reverse=True)
    total = snapshot.month_to_date_usd or sum((s.amount_usd for s in shares), Decimal(0))
    lines = []
    for share in ranked[:TOP_N]:
        name = share.name or (snapshot.project_name(share.key) if projects else share.key)
        part = f" ({format_percent(percent_of(share.amount_usd, total))})" if total > 0 else ""
        lines.append(f"{untrusted(name)}: {format_usd(share.amount_usd)}{part}")
    if len(ranked) > TOP_N:
        rest = sum((s.amount_usd for s in ranked[TOP_N:]), Decimal(0))
        lines.append(f"{len(ranked) - TOP_N} more: {format_usd(rest)}")
    return tuple(lines)


def _top_keys(snapshot: Snapshot) -> tuple[str, ...]:
    """The largest keys by name, redacted value and owner (else id), with their share of the month."""
    ranked = sorted(snapshot.costs_by_api_key_usd, key=lambda k: k.amount_usd, reverse=True)
    total = snapshot.month_to_date_usd or sum((k.amount_usd for k in ranked), Decimal(0))
    lines = []
    for key in ranked[:TOP_N]:
        part = f" ({format_percent(percent_of(key.amount_usd, total))})" if total > 0 else ""
        lines.append(f"{untrusted(key.display(), 2 * NAME_LIMIT)}: {format_usd(key.amount_usd)}{part}")
    if len(ranked) > TOP_N:
        rest = sum((k.amount_usd for k in ranked[TOP_N:]), Decimal(0))
        lines.append(f"{len(ranked) - TOP_N} more: {format_usd(rest)}")
    return tuple(lines)


def build_content(
    snapshot: Snapshot,
    alerts: Sequence[Alert],
    *,
    now: datetime | None = None,
    org: OrganizationConfig | None = None,
) -> Content:
    shown = visible_alerts(alerts)
    resolved_only = bool(shown) and all(a.reason is Reason.RESOLVED for a in shown)
    title = f"OpenAI spend alert{' resolved' if resolved_only else ''}: {untrusted(snapshot.org_name, 100)}"
    figures: list[tuple[str, str]] = []
    mtd = snapshot.month_to_date_usd
    budget = org.budget.monthly_usd if org is not None and org.budget is not None else None
    if mtd is not None:
        figures.append(("Spent this month", f"{format_usd(mtd)} ({snapshot.period})"))
        if budget is not None:
            figures.append(("Monthly budget", f"{format_usd(budget)}, {format_percent(percent_of(mtd, budget))} used"))
        forecast = forecast_month_end(snapshot)
        if forecast is not None:
            share = f", {format_percent(percent_of(forecast.projected_usd, budget))} of budget" if budget else ""
            figures.append(
                (
                    "Forecast month-end",
                    f"{format_usd(forecast.projected_usd)}{share} ({format_usd(forecast.run_rate_usd)}/day)",
                )
            )
    figures.append(("Days left in month", f"{days_left_in_month(snapshot.poll_time).quantize(Decimal('0.1'))}"))
    limit = organization_hard_limit(snapshot, org)
    if limit is not None and mtd is not None:
        figures.append(("Hard limit", f"{format_usd(limit[0])}, {format_percent(percent_of(mtd, limit[0]))} used"))
    balance = prepaid_balance(snapshot, now=now or snapshot.poll_time)
    if balance is not None:
        figures.append(("Prepaid balance", format_usd(balance)))
    if snapshot.previous_month_usd is not None:
        figures.append(("Previous month", format_usd(snapshot.previous_month_usd)))
    month_days = [c for c in snapshot.daily_costs_usd if c.day.strftime("%Y-%m") == snapshot.period]
    spark = caption = None
    if month_days:
        spark = sparkline([c.amount_usd for c in month_days])
        peak = max(month_days, key=lambda c: c.amount_usd)
        caption = (
            f"{month_days[0].day.isoformat()} to {month_days[-1].day.isoformat()}, "
            f"highest {format_usd(peak.amount_usd)} on {peak.day.isoformat()}"
        )
    return Content(
        title=title,
        lines=tuple(describe(a) for a in shown),
        figures=tuple(figures[:10]),
        spark=spark,
        trend_caption=caption,
        top_projects=_top(snapshot.costs_by_project_usd, snapshot, projects=True),
        top_api_keys=_top_keys(snapshot),
        top_line_items=_top(snapshot.costs_by_line_item_usd, snapshot, projects=False),
        freshness=freshness(snapshot, now),
        resolved_only=resolved_only,
        alert_lines=tuple((a.observation.key, describe(a)) for a in alerts),
    )


def _bullets(lines: Sequence[str], limit: int) -> str:
    """Escaped `• line` rows that fit in `limit` characters, ending with a marked count of what was cut."""
    rows = [f"• {escape(line)}" for line in lines]
    out: list[str] = []
    used = 0
    for index, row in enumerate(rows):
        room_for_mark = len(TRUNCATION_MARK) + 24 if index < len(rows) - 1 else 0
        if used + len(row) + room_for_mark > limit:
            out.append(f"{TRUNCATION_MARK} {len(rows) - index} more")
            break
        out.append(row)
        used += len(row) + 1
    return "\n".join(out)


def _mrkdwn(text: str) -> dict[str, Any]:
    # verbatim: no automatic linking of URLs or names, so only the markup we write is live.
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def _slack_blocks(content: Content, prefix: str) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": truncate(escape_plain(content.title), HEADER_LIMIT)}},
        {"type": "section", "text": _mrkdwn(prefix + _bullets(content.lines, SECTION_LIMIT - len(prefix)))},
    ]
    if content.figures:
        fields = [
            _mrkdwn(truncate(f"*{label}*\n{escape(value)}", FIELD_LIMIT)) for label, value in content.figures[:10]
        ]
        blocks.append({"type": "section", "fields": fields})
    if content.spark:
        trend = f"*Daily spend this month (UTC)*\n`{content.spark}`\n{escape(content.trend_caption or '')}"
        blocks.append({"type": "section", "text": _mrkdwn(truncate(trend, SECTION_LIMIT))})
    sections = (
        ("Top projects", content.top_projects),
        ("Top API keys", content.top_api_keys),
        ("Top line items", content.top_line_items),
    )
    for heading, rows in sections:
        if rows:
            text = f"*{heading} this month*\n" + _bullets(rows, SECTION_LIMIT - len(heading) - 20)
            blocks.append({"type": "section", "text": _mrkdwn(text)})
    context = f"{escape(content.freshness)} <{USAGE_URL}|Open OpenAI usage>"
    blocks.append({"type": "context", "elements": [_mrkdwn(truncate(context, SECTION_LIMIT))]})
    return _within_budget(blocks[:MAX_BLOCKS])


def _block_text_length(block: dict[str, Any]) -> int:
    texts = [block.get("text", {}).get("text", "")]
    texts += [f.get("text", "") for f in block.get("fields", [])]
    texts += [e.get("text", "") for e in block.get("elements", [])]
    return sum(len(t) for t in texts)


def _within_budget(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drop optional blocks (line items, projects, trend) until the total block text fits the budget."""
    while sum(_block_text_length(b) for b in blocks) > BLOCK_TEXT_BUDGET and len(blocks) > 3:
        del blocks[-2]  # the last optional section before the context block
    return blocks


def _plain_lines(content: Content, *, bullet: str = "• ") -> list[str]:
    lines = [f"{bullet}{line}" for line in content.lines]
    if content.figures:
        lines.append(" | ".join(f"{label}: {value}" for label, value in content.figures))
    if content.spark:
        lines.append(f"Daily spend this month (UTC): {content.spark} ({content.trend_caption})")
    if content.top_projects:
        lines.append("Top projects: " + "; ".join(content.top_projects))
    if content.top_api_keys:
        lines.append("Top API keys: " + "; ".join(content.top_api_keys))
    if content.top_line_items:
        lines.append("Top line items: " + "; ".join(content.top_line_items))
    lines.append(content.freshness)
    return lines


def build_message(
    snapshot: Snapshot,
    alerts: list[Alert],
    *,
    mention: str | None = None,
    now: datetime | None = None,
    org: OrganizationConfig | None = None,
) -> Message:
    """The Slack message for one organization's alerts on one channel.

    `mention` is a configured, validated Slack mention (e.g. `<!here>`), the only markup not escaped.
    """
    content = build_content(snapshot, alerts, now=now, org=org)
    prefix = f"{mention} " if mention else ""
    body = [escape(line) for line in _plain_lines(content)]
    text = truncate(
        "\n".join([f"{prefix}{escape(content.title)}", *body, f"Open OpenAI usage: {USAGE_URL}"]), TEXT_LIMIT
    )
    return Message(
        title=escape(content.title),
        lines=tuple(escape(line) for line in content.lines),
        text=text,
        blocks=tuple(_slack_blocks(content, f"{mention}\n" if mention else "")),
        snapshot=snapshot,
        alerts=tuple(alerts),
        org=org,
        content=content,
    )


def render_email(
    snapshot: Snapshot,
    alerts: Sequence[Alert],
    *,
    now: datetime | None = None,
    org: OrganizationConfig | None = None,
    subject_prefix: str = "[spendwatch]",
) -> EmailContent:
    """The same content as the Slack message, as an e-mail: subject, plain text and HTML (escaped)."""
    content = build_content(snapshot, alerts, now=now, org=org)
    first = content.lines[0] if content.lines else "no alerts"
    more = f" (+{len(content.lines) - 1} more)" if len(content.lines) > 1 else ""
    subject = _one_line(f"{subject_prefix} {untrusted(snapshot.org_name, 60)}: {first}", 200 - len(more)) + more
    body = [content.title, "", *_plain_lines(content, bullet="- "), "", f"OpenAI usage: {USAGE_URL}"]
    text = "\n".join(neutralize(line) for line in body)

    def e(value: str) -> str:
        return html.escape(neutralize(value))

    parts = [
        "<!DOCTYPE html>",
        '<html><body style="font-family: sans-serif; font-size: 14px; color: #1d1c1d;">',
        f"<h2>{e(content.title)}</h2>",
        "<ul>" + "".join(f"<li>{e(line)}</li>" for line in content.lines) + "</ul>",
    ]
    if content.figures:
        rows = "".join(
            f'<tr><th align="left" style="padding-right: 12px;">{e(label)}</th><td>{e(value)}</td></tr>'
            for label, value in content.figures
        )
        parts.append(f"<table>{rows}</table>")
    if content.spark:
        parts.append(
            f'<p>Daily spend this month (UTC): <code style="font-size: 16px;">{e(content.spark)}</code><br>'
            f"{e(content.trend_caption or '')}</p>"
        )
    for heading, rows_ in (
        ("Top projects this month", content.top_projects),
        ("Top API keys", content.top_api_keys),
        ("Top line items", content.top_line_items),
    ):
        if rows_:
            parts.append(f"<h3>{e(heading)}</h3><ul>" + "".join(f"<li>{e(r)}</li>" for r in rows_) + "</ul>")
    parts.append(f'<p style="color: #616061;">{e(content.freshness)}</p>')
    parts.append(f'<p><a href="{e(USAGE_URL)}">Open OpenAI usage</a></p>')
    parts.append("</body></html>")
    return EmailContent(subject=subject, text=text, html="\n".join(parts))
