"""The deployed half of `spendwatch verify`: what the alerter does with a snapshot a verify run asked for.

`spendwatch verify` invokes the poller with `{"org_id": ..., "verify": <nonce>}`; the poller polls now and
stores a snapshot carrying the nonce; the stream brings it to the alerter, which evaluates it as usual
and then, here, posts "spendwatch is connected" to every channel of the organization (its main channels
and its fallback channel) and records each channel's outcome in the alert-state table under
`verify#<nonce>#<channel>`, where the command reads it.

The notification-log protocol applies: the item is claimed before the send and recorded after it, so a
redelivered or retried record posts nothing twice. Every outcome is recorded, a failure too (with its
reason and fix): a verify message is a one-time check, so a failed one is reported, never retried.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from spendwatch.alerter.nflog import NotificationLog
from spendwatch.alerter.notices import notice_message
from spendwatch.aws.store import ClaimLostError
from spendwatch.channels.base import Sender
from spendwatch.core.alerts import Message
from spendwatch.core.config import ChannelConfig, OrganizationConfig, SpendwatchConfig
from spendwatch.core.errors import DeliveryError, DeliveryUnknownError
from spendwatch.core.money import format_percent, format_usd, percent_of
from spendwatch.core.observability import logger
from spendwatch.core.snapshot import Snapshot, isoformat_utc
from spendwatch.core.text import untrusted

CONNECTED = "spendwatch is connected"
CLAIM_LEASE_S = 180


class CheckLog(NotificationLog, Protocol):
    """The notification log (`store.AlertStateStore`) with the verify outcome's own record."""

    def record_check(self, org_id: str, key: str, *, ok: bool, reason: str, detail: str, now: datetime) -> None: ...


def check_key(nonce: str, channel: str) -> str:
    """The alert-state key under which a verify run's outcome on one channel is recorded."""
    return f"verify#{nonce}#{channel}"


def next_poll_text(history: Sequence[Snapshot], *, now: datetime, period_s: int, schedule: str | None) -> str:
    """When the next scheduled poll should come, from the newest scheduled (non-verify) poll and the period."""
    every = f"{schedule}, every {_duration(period_s)}" if schedule else f"every {_duration(period_s)}"
    scheduled = [s.poll_time for s in history if s.verify is None]
    if not scheduled:
        return f"no scheduled poll yet: the first runs within {_duration(period_s)} of the deploy ({every})"
    last = max(scheduled)
    following = last + timedelta(seconds=period_s)
    if following + timedelta(minutes=5) < now:
        return (
            f"overdue: the last scheduled poll was {isoformat_utc(last)} ({every}): check the poller's schedule and "
            "its logs"
        )
    return f"about {isoformat_utc(max(following, now))} ({every})"


def _duration(seconds: int) -> str:
    if seconds % 3600 == 0:
        hours = seconds // 3600
        return "hour" if hours == 1 else f"{hours} hours"
    minutes = max(1, seconds // 60)
    return "minute" if minutes == 1 else f"{minutes} minutes"


def connected_message(
    snapshot: Snapshot, org: OrganizationConfig, channel_name: str, *, next_poll: str, now: datetime
) -> Message:
    """The "spendwatch is connected" message: month to date, budget, sources, the next scheduled poll."""
    spent = snapshot.month_to_date_usd
    lines = [f"This channel ({channel_name}) receives the alerts of {untrusted(org.name)}."]
    through = f" (cost data through {snapshot.data_through})" if snapshot.data_through else ""
    lines.append(f"Month to date: {format_usd(spent) if spent is not None else 'unknown'}{through}.")
    if org.budget is None:
        lines.append("Budget: none set (no budget alerts).")
    elif spent is not None:
        share = format_percent(percent_of(spent, org.budget.monthly_usd))
        lines.append(f"Budget: {format_usd(org.budget.monthly_usd)} a month, {share} used.")
    else:
        lines.append(f"Budget: {format_usd(org.budget.monthly_usd)} a month.")
    if snapshot.failing:
        failing = ", ".join(sorted({f.source for f in snapshot.failing}))
        lines.append(f"Sources: {len(snapshot.sources_ok)} OK, {len(snapshot.failing)} failing ({failing}).")
    else:
        lines.append(f"Sources: all {len(snapshot.sources_ok)} OK.")
    lines.append(f"Next scheduled poll: {next_poll}.")
    return notice_message(
        f"{CONNECTED}: {untrusted(org.name)}",
        lines,
        context=f"Sent by `spendwatch verify` (check {snapshot.verify}) at {isoformat_utc(now)}.",
        transient=True,
    )


@dataclass(frozen=True)
class CheckOutcome:
    channel: str
    ok: bool
    reason: str
    detail: str


def post_connected(
    snapshot: Snapshot,
    *,
    config: SpendwatchConfig,
    checks: CheckLog,
    sender_for: Callable[[str, ChannelConfig], Sender],
    now: datetime,
    next_poll: str,
) -> list[CheckOutcome]:
    """Post the connected message to each of the organization's channels once, recording each outcome."""
    nonce = snapshot.verify
    if nonce is None:
        return []
    try:
        org = config.organization(snapshot.org_id)
    except KeyError:
        return []
    outcomes = []
    for name in org.all_channels():
        key = check_key(nonce, name)
        try:
            checks.claim(
                org.id, key, expected_version=0, now=now, expires_at=int(now.timestamp()) + 86400, lease_s=CLAIM_LEASE_S
            )
        except ClaimLostError:
            continue  # a redelivered record: this channel was (or is being) posted to already
        outcome = _send(
            name,
            config.channels[name],
            sender_for,
            connected_message(snapshot, org, name, next_poll=next_poll, now=now),
        )
        try:
            checks.record_check(org.id, key, ok=outcome.ok, reason=outcome.reason, detail=outcome.detail, now=now)
        except Exception as exc:  # the command times out on this channel and says so; nothing else depends on it
            logger.error("verify result not recorded", org_id=org.id, channel=name, error=type(exc).__name__)
        logger.info("verify message", org_id=org.id, channel=name, ok=outcome.ok, reason=outcome.reason, check=nonce)
        outcomes.append(outcome)
    return outcomes


def _send(
    name: str, channel: ChannelConfig, sender_for: Callable[[str, ChannelConfig], Sender], message: Message
) -> CheckOutcome:
    try:
        sender = sender_for(name, channel)
        deliver: Callable[[Any], None] = sender.send
        deliver(message)
    except DeliveryUnknownError as exc:
        return CheckOutcome(name, False, exc.reason, f"{exc.detail}: look in the channel for the message")
    except DeliveryError as exc:
        return CheckOutcome(name, False, exc.reason, exc.detail + (f"; fix: {exc.fix}" if exc.fix else ""))
    return CheckOutcome(name, True, "delivered", f"posted '{CONNECTED}'")
