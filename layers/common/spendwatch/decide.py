"""The decision to notify: a pure function of (previous state, current observation, policy, now).

Modelled on Alertmanager's dedup stage and AWS Budgets' OK/ALARM states: notify on the first crossing
and on each higher threshold, stay quiet while unchanged, repeat only when a repeat interval is set,
and report a resolve only when the policy asks for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from spendwatch.alerts import AlertState
from spendwatch.rules import Observation


class Reason(StrEnum):
    FIRST_CROSSING = "first_crossing"
    HIGHER_THRESHOLD = "higher_threshold"
    REPEAT_DUE = "repeat_due"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class NotifyPolicy:
    repeat_interval: timedelta | None = None
    send_resolved: bool = False


@dataclass(frozen=True)
class Decision:
    reason: Reason | None
    level: Decimal | None

    @property
    def notify(self) -> bool:
        return self.reason is not None


def should_notify(
    previous: AlertState | None, observation: Observation, policy: NotifyPolicy, now: datetime
) -> Decision:
    level = observation.level
    was_level = previous.notified_level if previous is not None and previous.firing else None
    if level is None:
        if was_level is not None and policy.send_resolved:
            return Decision(Reason.RESOLVED, None)
        return Decision(None, None)
    if was_level is None:
        return Decision(Reason.FIRST_CROSSING, level)
    if level > was_level:
        return Decision(Reason.HIGHER_THRESHOLD, level)
    notified_at = previous.notified_at if previous is not None else None
    if policy.repeat_interval is not None and notified_at is not None and now - notified_at >= policy.repeat_interval:
        return Decision(Reason.REPEAT_DUE, level)
    return Decision(None, level)
