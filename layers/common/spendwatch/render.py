"""Messages people read: Slack Block Kit payloads built from alerts, with every untrusted string escaped.

Pure: no network. Slack limits are enforced here (3,000 characters per section, 40,000 in all) so a
send never fails with `msg_too_long`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from spendwatch.decide import Reason
from spendwatch.money import format_percent, format_usd
from spendwatch.rules import Observation
from spendwatch.snapshot import Snapshot, isoformat_utc

USAGE_URL = "https://platform.openai.com/usage"
SECTION_LIMIT = 3000
TEXT_LIMIT = 40000
TRUNCATION_MARK = "…(truncated)"


@dataclass(frozen=True)
class Alert:
    """One notification-worthy change, ready to render."""

    observation: Observation
    reason: Reason
    level: Decimal | None


@dataclass(frozen=True)
class Message:
    title: str
    lines: tuple[str, ...]
    """Plain-text lines (already escaped for Slack mrkdwn)."""
    text: str
    blocks: tuple[dict[str, Any], ...]


def escape(text: str) -> str:
    """Escape Slack's control characters so names cannot mention, link or format."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - len(TRUNCATION_MARK)] + TRUNCATION_MARK


def describe(alert: Alert) -> str:
    obs = alert.observation
    facts = obs.facts
    if obs.rule_id == "budget.actual":
        spent = Decimal(facts["spent_usd"])
        budget = Decimal(facts["budget_usd"])
        percent = Decimal(facts["percent"])
        if alert.reason is Reason.RESOLVED:
            return (
                f"Back under budget thresholds: {format_usd(spent)} of {format_usd(budget)} ({format_percent(percent)})"
            )
        return (
            f"{format_percent(alert.level or Decimal(0))} of the monthly budget reached: "
            f"{format_usd(spent)} of {format_usd(budget)} spent ({format_percent(percent)}) in {facts['period']}"
        )
    return escape(obs.summary)


def freshness(snapshot: Snapshot) -> str:
    through = snapshot.data_through
    polled = isoformat_utc(snapshot.poll_time)
    if through is None:
        return f"Polled {polled}; no cost data yet this month."
    return f"Polled {polled}; cost data through {through.isoformat()} (UTC; the last two days are provisional)."


def build_message(
    snapshot: Snapshot, alerts: list[Alert], *, mention: str | None = None, now: datetime | None = None
) -> Message:
    org = escape(snapshot.org_name)
    title = f"OpenAI spend alert: {org}"
    lines = tuple(escape(describe(alert)) for alert in alerts)
    body = "\n".join(f"• {line}" for line in lines)
    context = escape(freshness(snapshot))
    prefix = f"{mention} " if mention else ""
    text = _truncate(f"{prefix}{title}\n{body}\n{context}", TEXT_LIMIT)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _truncate(title, 150)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _truncate(f"{prefix}{body}", SECTION_LIMIT)}},
        {
            "type": "context",
            "elements": [
                {"type": "mrkdwn", "text": _truncate(f"{context} <{USAGE_URL}|Open OpenAI usage>", SECTION_LIMIT)}
            ],
        },
    ]
    return Message(title=title, lines=lines, text=text, blocks=tuple(blocks))


def as_plain_text(message: Message) -> str:
    """How the message reads in a terminal (the demo prints this)."""
    return message.text
