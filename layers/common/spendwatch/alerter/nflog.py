"""The notification-log protocol shared by alerts and operational notices: what happens after a send.

Per alert (or notice) and channel: claim, send, then record. This module owns the last step, the one
that comes after a message left and therefore must never lead to sending it again:

- a **delivered** message is recorded as sent (the version bumps, the claim is released);
- a message whose delivery is **unknown** (`DeliveryUnknownError`) is recorded the same way plus
  `resend_after` = now + `RESEND_AFTER_S`; `decide.should_notify` re-sends it once after that if the
  alert is still due at that level, and that re-send is recorded as final whatever its outcome. So an
  ambiguous delivery costs at most one duplicate, and a message is lost only if two ambiguous deliveries
  in a row were both really lost;
- the write is retried briefly (throttling, a blip); if it still fails, the claim is **held** for
  `HOLD_S` and marked, so a retry of the record (or the next poll) that finds it skips the alert instead
  of sending it again, and the failure is logged by name. When the hold lapses without a record, the
  alert is sent once more: at most one duplicate per hold while the table refuses writes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from spendwatch.core.alerts import RESEND_AFTER_S, AlertState
from spendwatch.core.observability import logger

__all__ = ["RESEND_AFTER_S", "NotificationLog", "record_after_send", "resend_deadline"]
HOLD_S = RESEND_AFTER_S
RECORD_BACKOFF_S = (0.2, 0.5)
"""Waits between the attempts to record a sent message (botocore retries throttling underneath too)."""


class NotificationLog(Protocol):
    """The part of `store.AlertStateStore` the alerter, the notices and the watchdog use."""

    def get_many(self, org_id: str, keys: list[str]) -> dict[str, AlertState]: ...

    def claim(
        self,
        org_id: str,
        key: str,
        *,
        expected_version: int,
        now: datetime,
        expires_at: int,
        lease_s: int | None = None,
    ) -> None: ...

    def mark_sent(
        self,
        org_id: str,
        key: str,
        *,
        level: Decimal | None,
        firing: bool,
        now: datetime,
        reason: str,
        resend_after: int | None = None,
    ) -> None: ...

    def hold(self, org_id: str, key: str, *, now: datetime, lease_s: int) -> None: ...

    def release(self, org_id: str, key: str) -> None: ...


def resend_deadline(now: datetime, *, unconfirmed: bool, resend_after_s: int = RESEND_AFTER_S) -> int | None:
    """The `resend_after` to record: None for a confirmed delivery (or a re-send, which is final)."""
    return int(now.timestamp()) + resend_after_s if unconfirmed else None


def record_after_send(
    states: NotificationLog,
    org_id: str,
    key: str,
    *,
    level: Decimal | None,
    firing: bool,
    now: datetime,
    reason: str,
    resend_after: int | None = None,
    hold_s: int = HOLD_S,
    sleep: Callable[[float], None] = time.sleep,
    remaining_s: Callable[[], float] = lambda: 60.0,
) -> bool:
    """Record a message that went out (or may have). Returns False when it could not be recorded; the
    claim is then held (if even that write works) and the caller must report the failure without
    releasing the claim."""
    error: Exception | None = None
    for wait in (*RECORD_BACKOFF_S, None):
        try:
            states.mark_sent(org_id, key, level=level, firing=firing, now=now, reason=reason, resend_after=resend_after)
        except Exception as exc:  # throttled, unavailable, anything: the message is out either way
            error = exc
        else:
            return True
        if wait is None or wait >= remaining_s():
            break
        sleep(wait)
    held = False
    for _ in range(2):
        try:
            states.hold(org_id, key, now=now, lease_s=hold_s)
        except Exception:  # noqa: S112 - one more try; the error that matters is the record's, logged below
            continue
        held = True
        break
    logger.error(
        "message sent but not recorded",
        org_id=org_id,
        alert_key=key,
        error=type(error).__name__,
        claim_held_s=hold_s if held else 0,
    )
    return False
