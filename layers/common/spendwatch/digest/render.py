"""A digest as people read it: Slack Block Kit (with or without the chart picture) and an e-mail.

Pure. One content model (`DigestContent`: sections of raw text lines) is built once and escaped per
medium, as `spendwatch.alerter.render` does for alerts: Slack's `&`, `<`, `>` in every text object, HTML entities
in the e-mail, no line breaks in the subject. Untrusted names (organization, projects, line items,
models, grants, error details) are clipped and escaped. Slack limits are kept (3,000 characters per
section, 50 blocks).

A webhook cannot upload files, so the Slack message also exists without the picture: the daily spend as
a sparkline and a line saying how to get the picture (a bot token with `files:write` and the channel's
ID). The e-mail carries the picture inline (`cid:`) when there is one.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from spendwatch.alerter.render import SECTION_LIMIT, USAGE_URL, escape, sparkline
from spendwatch.core.alerts import EmailContent, Message
from spendwatch.core.money import format_percent, format_usd
from spendwatch.core.snapshot import Snapshot, isoformat_utc
from spendwatch.digest.compose import Digest
from spendwatch.views.figures import RankedTable, UsageTable, cached_share, change_percent, format_count

NAME_LIMIT = 60
DETAIL_LIMIT = 200
CHART_CID = "spend-chart"
NO_PICTURE = (
    "No chart picture here: Slack file uploads need a bot token with files:write and the channel's ID (C…) "
    "as `channel`; this channel posts through a webhook or by channel name."
)
COUNTER_NAMES = {
    "input_tokens": "in",
    "output_tokens": "out",
    "num_model_requests": "requests",
    "images": "images",
    "characters": "characters",
    "seconds": "s",
    "num_requests": "calls",
}
USAGE_TITLES = {
    "completions": "Tokens and requests by model",
    "images": "Images by model",
    "audio_speeches": "Speech (text to audio) by model",
    "audio_transcriptions": "Transcription by model",
}


def clip(text: str, limit: int = NAME_LIMIT) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class Section:
    heading: str
    lines: tuple[str, ...]
    note: str | None = None


@dataclass(frozen=True)
class DigestContent:
    title: str
    subject: str
    sections: tuple[Section, ...]
    footer: str
    spark: str | None
    spark_caption: str | None
    chart_alt: str


def _usd(amount: Decimal | None) -> str:
    return "unknown" if amount is None else format_usd(amount)


def _ranked(table: RankedTable, heading: str, label: str, shared: str | None = None) -> Section:
    lines = []
    for row in table.rows:
        now = _usd(row.current) if row.current is not None else None
        mtd = f"{format_usd(row.month_to_date)} month to date" if row.month_to_date is not None else ""
        if now is not None:
            lines.append(f"{clip(row.name)}: {now} ({change_percent(row.current, row.previous)}); {mtd}".rstrip("; "))
        else:
            lines.append(f"{clip(row.name)}: {mtd}")
    if table.more:
        lines.append(f"{table.more} more")
    if not lines:
        lines.append("none")
    heading = (
        f"{heading} ({label}, change vs the period before)"
        if any(r.current is not None for r in table.rows)
        else heading
    )
    note = table.note if table.note and (table.reason is None or table.reason != shared) else None
    return Section(heading, tuple(lines), clip(note, DETAIL_LIMIT) if note else None)


def _usage(table: UsageTable, shared: str | None = None) -> Section:
    lines = []
    for model, counts in table.rows:
        parts = [
            f"{format_count(counts.get(c, 0))} {COUNTER_NAMES.get(c, c)}"
            for c in table.counters
            if c != "input_cached_tokens"
        ]
        if table.usage_type == "completions":
            parts[0] += f" ({cached_share(counts)} cached)"
        lines.append(f"{clip(model)}: {', '.join(parts)}")
    heading = f"{USAGE_TITLES.get(table.usage_type, table.usage_type)} ({table.scope})"
    note = table.note if table.note and (table.reason is None or table.reason != shared) else None
    return Section(heading, tuple(lines or ["none"]), clip(note, DETAIL_LIMIT) if note else None)


def _month_lines(digest: Digest) -> list[str]:
    month = digest.month
    if month.month_to_date_usd is None:
        return [f"Month to date: unknown ({clip(month.note or 'no cost data', DETAIL_LIMIT)})"]
    line = f"{month.month} to date: {format_usd(month.month_to_date_usd)}"
    if month.budget_usd is not None and month.budget_percent is not None:
        line += f" of {format_usd(month.budget_usd)} budget ({format_percent(month.budget_percent)})"
    lines = [line]
    if month.forecast is not None:
        share = ""
        if month.budget_usd:
            share = f", {format_percent(month.forecast.projected_usd * 100 / month.budget_usd)} of budget"
        lines.append(
            f"Forecast for the month: {format_usd(month.forecast.projected_usd)}{share} "
            f"({format_usd(month.forecast.run_rate_usd)}/day over {month.forecast.complete_days} complete days)"
        )
    if month.previous_month_usd is not None:
        lines.append(f"Previous month: {format_usd(month.previous_month_usd)}")
    return lines


def _credit_lines(digest: Digest) -> list[str]:
    lines = []
    if digest.balance_usd is not None:
        lines.append(f"Prepaid credit balance: {format_usd(digest.balance_usd)}")
    for grant in digest.grants:
        when = "no expiry" if grant.expires_at is None else f"expires {grant.expires_at.date().isoformat()}"
        if grant.expires_at is not None:
            days = (grant.expires_at.date() - digest.now.date()).days
            when += f" (in {days} day{'s' if days != 1 else ''})"
        lines.append(f"Grant {clip(grant.id, 40)}: {format_usd(grant.remaining_usd)} left, {when}")
    return lines or ["No credit balance or grants known (they need a session key, or grants declared in the config)."]


def _limit_lines(digest: Digest) -> list[str]:
    lines = [
        f"Spend limit, {clip(row.scope)}: {format_usd(row.limit_usd)} ({row.source}), {row.used} used"
        for row in digest.limits
    ]
    lines += [f"OpenAI spend alert, {clip(scope)}: at {format_usd(amount)}" for scope, amount in digest.spend_alerts]
    return lines or ["No spend limit or OpenAI spend alert is set."]


def _health_lines(digest: Digest) -> list[str]:
    health = digest.health
    summary = health.summary(digest.now)
    lines = [summary[:1].upper() + summary[1:]]
    for source, detail in health.sources_failed:
        lines.append(f"Failing now: {source} ({clip(detail, DETAIL_LIMIT)})")
    for condition in health.conditions:
        lines.append(f"Condition: {condition}")
    polls = f"{health.polls} poll(s) in {digest.period.label}"
    if health.polls_with_failures:
        worst = ", ".join(f"{source} x{count}" for source, count in health.failing_sources[:4])
        polls += f", {health.polls_with_failures} with a failed source ({worst})"
    lines.append(polls)
    if health.alerts_sent is not None:
        lines.append(f"Alert notifications recorded in {digest.period.label}: {health.alerts_sent}")
    return lines


def _reads_keys(newest: Snapshot | None) -> bool:
    """Whether the poller asks for costs by API key (snapshots of schema 3): before that, no key section."""
    return newest is not None and any(
        s == "costs_by_api_key" for s in (*newest.sources_ok, *(f.source for f in newest.failures))
    )


def digest_content(digest: Digest) -> DigestContent:
    kind = "Daily" if digest.every == "day" else "Weekly"
    title = f"{kind} OpenAI spend: {clip(digest.org_name, 80)}, {digest.period.label}"
    if not digest.has_data:
        line = (
            f"No snapshot has been stored for {clip(digest.org_name)} yet: the poller has not run, cannot reach "
            "OpenAI, or cannot write. Check the PollerErrorsAlarm and PollerStoppedAlarm alarms and the poller's logs."
        )
        empty = (Section("Nothing to report yet", (line,)), Section("Monitor health", tuple(_health_lines(digest))))
        return DigestContent(title, f"{title}: no data yet", empty, _footer(digest), None, None, title)
    period_word = "Yesterday" if digest.every == "day" else "Last 7 days"
    spend = f"{period_word} ({digest.period.label}): {_usd(digest.spend_usd)}"
    if digest.spend_usd is not None:
        spend += f" ({change_percent(digest.spend_usd, digest.previous_spend_usd)} vs {digest.period.previous.label}"
        spend += f": {_usd(digest.previous_spend_usd)})"
    if digest.provisional:
        spend += "; OpenAI may still revise the last two days"
    label = digest.period.label
    # One missing piece of history (a first poll, a stopped poller) is said once, not under every table.
    reasons = {t.reason for t in (digest.projects, digest.line_items, digest.models)} | {t.reason for t in digest.usage}
    shared = next(iter(reasons)) if len(reasons) == 1 else None
    notes = list(digest.notes)
    if shared:
        notes.append(
            f"Projects, line items, models and usage of {label} are shown month to date, without a comparison: "
            f"{shared} (the first polls, or the poller was stopped)."
        )
    sections = [Section("Spend", (spend, *_month_lines(digest)), " ".join(notes) or None)]
    sections.append(_ranked(digest.projects, "Top projects", label, shared))
    if digest.api_keys.rows or _reads_keys(digest.newest):
        sections.append(_ranked(digest.api_keys, "Top API keys", label, shared))
    sections.append(_ranked(digest.line_items, "Top line items", label, shared))
    sections.append(_ranked(digest.models, "Top models by cost", label, shared))
    sections.extend(
        _usage(table, shared) for table in digest.usage if table.rows or table.usage_type == "completions" or table.note
    )
    sections.append(Section("Credits", tuple(_credit_lines(digest))))
    sections.append(Section("Limits and OpenAI's spend alerts", tuple(_limit_lines(digest))))
    sections.append(Section("Monitor health", tuple(_health_lines(digest))))
    days = [d for d in digest.chart.days if d in digest.chart.values]
    spark = caption = None
    if days:
        totals = [sum(digest.chart.values[d], Decimal(0)) for d in days]
        spark = sparkline(totals)
        caption = f"{days[0].isoformat()} to {days[-1].isoformat()}, daily spend (UTC)"
    subject = f"{title}: {_usd(digest.spend_usd)}"
    alt = f"{digest.chart.title}. {digest.chart.subtitle}."
    return DigestContent(title, subject, tuple(sections), _footer(digest), spark, caption, alt)


def _footer(digest: Digest) -> str:
    polled = isoformat_utc(digest.newest.poll_time) if digest.newest is not None else "never"
    return f"spendwatch digest, sent {isoformat_utc(digest.now)}; data polled {polled}; amounts in USD, days in UTC."


# --- Slack -----------------------------------------------------------------------------------------------


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def _section_text(section: Section) -> str:
    body = "\n".join(f"• {escape(line)}" for line in section.lines)
    note = f"\n_{escape(section.note)}_" if section.note else ""
    text = f"*{escape(section.heading)}*\n{body}{note}"
    return text if len(text) <= SECTION_LIMIT else text[: SECTION_LIMIT - 14] + "…(truncated)"


def slack_blocks(content: DigestContent, *, picture: bool, mention: str | None = None) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": escape(content.title)[:150]}}
    ]
    if mention:
        blocks.append({"type": "section", "text": _mrkdwn(mention)})
    for section in content.sections:
        blocks.append({"type": "section", "text": _mrkdwn(_section_text(section))})
    if not picture and content.spark:
        blocks.append(
            {
                "type": "section",
                "text": _mrkdwn(f"*Daily spend this month*\n`{content.spark}`\n{escape(content.spark_caption or '')}"),
            }
        )
    context = escape(content.footer)
    if not picture and content.spark:
        context += " " + escape(NO_PICTURE)
    blocks.append({"type": "context", "elements": [_mrkdwn(f"{context} <{USAGE_URL}|Open OpenAI usage>")]})
    return blocks[:50]


def plain_text(content: DigestContent, *, bullet: str = "• ") -> str:
    lines = [content.title, ""]
    for section in content.sections:
        lines.append(section.heading)
        lines += [f"{bullet}{line}" for line in section.lines]
        if section.note:
            lines.append(f"  ({section.note})")
        lines.append("")
    if content.spark:
        lines.append(f"Daily spend this month: {content.spark} ({content.spark_caption})")
    lines.append(content.footer)
    return "\n".join(lines)


@dataclass(frozen=True)
class DigestMessage(Message):
    """A Slack digest: `blocks` go with the chart picture (uploaded with a bot token to a channel ID);
    `plain_blocks`/`plain_text` are the same digest without it (webhook, or a channel given by name)."""

    chart_png: bytes | None = None
    chart_filename: str = "spend.png"
    chart_alt: str = ""
    plain_blocks: tuple[dict[str, Any], ...] = ()
    plain_text: str = ""

    def without_picture(self) -> Message:
        return Message(title=self.title, lines=self.lines, text=self.plain_text, blocks=self.plain_blocks)


def slack_message(
    content: DigestContent, chart_png: bytes | None, *, filename: str, mention: str | None = None
) -> DigestMessage:
    prefix = f"{mention} " if mention else ""
    text = (prefix + escape(plain_text(content)))[:39000]
    plain = tuple(slack_blocks(content, picture=False, mention=mention))
    return DigestMessage(
        title=escape(content.title),
        lines=tuple(escape(line) for section in content.sections for line in section.lines),
        text=text,
        blocks=tuple(slack_blocks(content, picture=True, mention=mention)) if chart_png else plain,
        chart_png=chart_png,
        chart_filename=filename,
        chart_alt=content.chart_alt[:1000],
        plain_blocks=plain,
        plain_text=text,
    )


# --- e-mail ------------------------------------------------------------------------------------------------


def email_content(content: DigestContent, *, picture: bool) -> EmailContent:
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html><body style="font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; font-size: 14px; '
        'color: #1d1c1d; max-width: 760px;">',
        f"<h2>{e(content.title)}</h2>",
    ]
    if picture:
        parts.append(
            f'<p><img src="cid:{CHART_CID}" alt="{e(content.chart_alt)}" width="760" '
            'style="width: 100%; max-width: 760px; height: auto;"></p>'
        )
    elif content.spark:
        parts.append(f'<p>Daily spend this month: <code style="font-size: 16px;">{e(content.spark)}</code></p>')
    for section in content.sections:
        items = "".join(f"<li>{e(line)}</li>" for line in section.lines)
        note = f'<p style="color: #616061;">{e(section.note)}</p>' if section.note else ""
        parts.append(f"<h3>{e(section.heading)}</h3><ul>{items}</ul>{note}")
    parts.append(f'<p style="color: #616061;">{e(content.footer)}</p>')
    parts.append(f'<p><a href="{e(USAGE_URL)}">Open OpenAI usage</a></p></body></html>')
    text = plain_text(content, bullet="- ") + f"\nOpenAI usage: {USAGE_URL}\n"
    subject = " ".join(content.subject.split())[:200]
    return EmailContent(subject=subject, text=text, html="\n".join(parts))


def chart_filename(digest: Digest) -> str:
    day: date = digest.period.end.date()
    return f"spend-{digest.org_id}-{day.isoformat()}.png"
