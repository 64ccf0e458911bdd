"""Alert state: the notification log entry of one alert on one channel (Alertmanager's nflog analogue).

Pure data shared by the decision logic and the store; no I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

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
