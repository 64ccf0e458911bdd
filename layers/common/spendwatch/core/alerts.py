"""The alert model: observations, alerts, the medium-neutral content of a message, and alert state.

Pure data shared by the rules and decision logic (alerter), the channels that render and deliver it,
and the store; no I/O here. It lives in core so that the alerter and the channels both import it
without an import running back up the layers (tests/unit/test_layers.py).

- `Observation`: what a rule found for one alert key (level, facts, labels);
- `Reason`: why a notification is sent; `Alert`: an observation with its reason and level;
- `Content`: what a message says, as raw (unescaped) text, from which every channel renders its medium;
- `Message`: a message as built for Slack, carrying its `Content`, alerts, snapshot and org, so that
  any other channel renders the same content in its own format;
- `AlertState`: the notification log entry of one alert on one channel (Alertmanager's nflog analogue).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from spendwatch.core.config import OrganizationConfig
    from spendwatch.core.snapshot import Snapshot

RESEND_AFTER_S = 3600
"""How long an unconfirmed message waits before its one re-send (and how long a held claim lasts): long
enough that no retry of the same record re-sends it, short enough that a really lost message is late by
about one poll. (Here, with the data, so the poller's environment model can name it without importing the
notification-log protocol, which its role may not run: tests/infra derives the IAM grants from imports.)"""


@dataclass(frozen=True)
class AlertState:
    """The notification log entry of one alert on one channel (Alertmanager's nflog analogue)."""

    key: str
    version: int
    notified_level: Decimal | None
    notified_at: datetime | None
    firing: bool
    pending_until: int | None
    """epoch seconds until which a claim holds the alert (an invocation is sending it)"""
    resend_after: int | None = None
    """set when the last message's delivery was not confirmed (a read timeout after sending, …): from this
    epoch second on, the next evaluation that still finds the alert due at the recorded level re-sends it,
    once"""
    last_reason: str | None = None
    """why the last message was sent (`decide.Reason` value); a re-send repeats it"""
    held: bool = False
    """the claim is held after a send that could not be recorded: whoever finds it live must not send"""

    def resend_due(self, now: datetime) -> bool:
        return self.resend_after is not None and now.timestamp() >= self.resend_after

    def claim_live(self, now: datetime) -> bool:
        return self.pending_until is not None and self.pending_until >= now.timestamp()


@dataclass(frozen=True)
class Observation:
    rule_id: str
    key: str
    """Stable identity of the alert in the notification log, scoped to its period."""
    level: Decimal | None
    """The highest threshold currently crossed, or None when the condition does not hold."""
    summary: str
    facts: dict[str, Decimal | str] = field(default_factory=dict)
    hold_level: Decimal | None = None
    """The highest threshold still held by the hysteresis margin (>= level); None: no hysteresis."""
    labels: tuple[tuple[Decimal, str], ...] = ()
    """How each level of a ladder reads in a message, e.g. (80, "80.0%") or (64.5, "$322.50")."""
    collapse_key: str | None = None
    """Alerts sharing this key in one message are shown as one line: the one with the highest `urgency`."""
    urgency: int = 0

    def label(self, level: Decimal | None) -> str | None:
        for value, text in self.labels:
            if value == level:
                return text
        return None


class Reason(StrEnum):
    FIRST_CROSSING = "first_crossing"
    HIGHER_THRESHOLD = "higher_threshold"
    REPEAT_DUE = "repeat_due"
    RESOLVED = "resolved"
    SILENCED = "silenced"


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
    """Alert lines, already escaped for Slack mrkdwn."""
    text: str
    blocks: tuple[dict[str, Any], ...]
    snapshot: Snapshot | None = None
    """What the message was built from, so another channel (e-mail) can render the same content."""
    alerts: tuple[Alert, ...] = ()
    org: OrganizationConfig | None = None
    raw_title: str | None = None
    """A notice's title as raw text (not escaped for Slack), so e-mail renders it without Slack's escaping."""
    raw_lines: tuple[str, ...] = ()
    """A notice's lines (and context) as raw text."""
    content: Content | None = None
    """What an alert message says, medium-neutral: the channels other than Slack render from it."""
    notice_key: str | None = None
    """What a notice is about, the same in its firing and its clearing message (`<org>:<log key>`), so a
    receiver that keeps incidents (PagerDuty) closes the one it opened."""
    notice_firing: bool = True
    """False: the notice says the trouble is over (snapshots fresh again, a channel works again)."""
    transient: bool = False
    """A check (`test-alert`, `verify`), not a condition: nothing may stay open on the receiver (PagerDuty
    resolves the incident it just triggered)."""


@dataclass(frozen=True)
class EmailContent:
    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class Content:
    """What a message says, as raw (unescaped) text; each rendering escapes for its medium."""

    title: str
    lines: tuple[str, ...]
    figures: tuple[tuple[str, str], ...] = ()
    spark: str | None = None
    trend_caption: str | None = None
    top_projects: tuple[str, ...] = ()
    top_api_keys: tuple[str, ...] = ()
    top_line_items: tuple[str, ...] = ()
    freshness: str = ""
    resolved_only: bool = False
    alert_lines: tuple[tuple[str, str], ...] = ()
    """(alert key, what changed as one line of raw text) for every alert, collapsed ones included: what a
    channel that reports alerts one by one (PagerDuty, a webhook) says about each"""


RULE_SECTION = {
    "budget.actual": "budget",
    "budget.forecast": "forecast",
    "hard_limit": "hard_limit",
    "grant.expiry": "grant_expiry",
    "low_balance": "low_balance",
    "low_balance.runway": "low_balance",
    "spike": "spike",
    "first_spend": "first_spend",
    "health.source": "health",
    "health.condition": "health",
    "health.admin_key": "health",
}
"""Rule id -> the `rules:` config section (and silence `rule:` name) that governs it."""


Severity = Literal["info", "warning", "error", "critical"]
SEVERITIES: tuple[Severity, ...] = ("info", "warning", "error", "critical")
"""Lowest first; the names are PagerDuty's Events v2 severities."""

_RULE_SEVERITY: dict[str, Severity] = {
    "budget.forecast": "warning",
    "hard_limit": "critical",
    "grant.expiry": "warning",
    "low_balance": "error",
    "low_balance.runway": "error",
    "spike": "warning",
    "first_spend": "info",
    "health.source": "error",
    "health.condition": "error",
    "health.admin_key": "error",
}
BUDGET_ERROR_PERCENT = Decimal(100)
"""A budget's thresholds below 100 % are warnings; 100 % and above (the budget spent) are errors."""


def severity_of(rule_id: str, level: Decimal | None) -> Severity:
    """How serious an alert of `rule_id` at `level` is: the one place severities are set (docs/rules.md).

    Budgets are a ladder: below 100 % of the budget a warning, from 100 % (the budget is spent) an error.
    Every other rule has one severity; the hard limit is the only critical one (requests start failing).
    """
    if rule_id == "budget.actual":
        return "error" if level is not None and level >= BUDGET_ERROR_PERCENT else "warning"
    return _RULE_SEVERITY.get(rule_id, "warning")


def highest(*severities: Severity) -> Severity:
    return max(severities, key=SEVERITIES.index)
