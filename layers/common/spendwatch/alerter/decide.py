"""The decision to notify: a pure function of (previous state, current observation, policy, now).

Modelled on Alertmanager's dedup stage and AWS Budgets' OK/ALARM states:
- notify on the first crossing and on each higher threshold; stay quiet while unchanged;
- repeat only when the policy has a repeat interval and it has elapsed since the last notification;
- when the condition clears (all of it, or down to a lower threshold), record it, and send a resolved
  message only when the policy asks for it (Alertmanager records an unsent resolve the same way);
- hysteresis: a level already notified is kept while the observation still *holds* it (the rule's
  margin), so a revised provisional bucket does not flap an alert;
- a silenced notification is neither sent nor recorded, so it is sent when the silence ends if the
  condition still holds (Alertmanager drops silenced alerts before its notification log);
- a message whose delivery was not confirmed (the receiver may or may not have it) is recorded like a
  sent one plus a `resend_after` time; the first evaluation from then on that would otherwise do nothing
  (the alert is still at the recorded level) sends it again, once, with the same reason. The resend is
  recorded as final whatever its outcome, so an ambiguous delivery costs at most one duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum

from spendwatch.core.alerts import AlertState, Observation, Reason


class Action(StrEnum):
    NONE = "none"
    """nothing to send or record"""
    NOTIFY = "notify"
    """send a message, then record the new state"""
    RECORD = "record"
    """record the new state without a message (a resolve with `send_resolved` off)"""


@dataclass(frozen=True)
class NotifyPolicy:
    repeat_interval: timedelta | None = None
    send_resolved: bool = False
    silenced_until: datetime | None = None
    """an active silence's end, when one matches the alert"""


@dataclass(frozen=True)
class Decision:
    reason: Reason | None
    """why the state changes (or SILENCED: why a due notification is held back); None: no change"""
    level: Decimal | None
    """the level to record (None: the condition does not hold)"""
    action: Action = Action.NONE
    resend: bool = False
    """a re-send of a message whose delivery was not confirmed: recorded as final whatever happens"""

    @property
    def notify(self) -> bool:
        return self.action is Action.NOTIFY

    @property
    def record(self) -> bool:
        return self.action is not Action.NONE


def effective_level(previous_level: Decimal | None, observation: Observation) -> Decimal | None:
    """The observed level with hysteresis: a level already notified stays while the margin still holds it."""
    raw = observation.level
    if previous_level is None or observation.hold_level is None:
        return raw
    held = min(previous_level, observation.hold_level)
    return held if raw is None or held > raw else raw


def should_notify(
    previous: AlertState | None, observation: Observation, policy: NotifyPolicy, now: datetime
) -> Decision:
    """Whether to notify about `observation` given the last notification-log entry, and why."""
    was = previous.notified_level if previous is not None and previous.firing else None
    decision = _transition(previous, was, effective_level(was, observation), policy, now)
    if decision.action is Action.NONE and previous is not None and previous.resend_due(now):
        # Still due at the recorded level, and nobody knows whether the last message arrived.
        decision = Decision(_recorded_reason(previous), decision.level, Action.NOTIFY, resend=True)
    if decision.notify and policy.silenced_until is not None and now < policy.silenced_until:
        return Decision(Reason.SILENCED, decision.level, Action.NONE)
    return decision


def _recorded_reason(previous: AlertState) -> Reason:
    try:
        return Reason(previous.last_reason) if previous.last_reason else Reason.FIRST_CROSSING
    except ValueError:
        return Reason.FIRST_CROSSING


def _transition(
    previous: AlertState | None, was: Decimal | None, level: Decimal | None, policy: NotifyPolicy, now: datetime
) -> Decision:
    if was is None:
        return Decision(Reason.FIRST_CROSSING, level, Action.NOTIFY) if level is not None else Decision(None, None)
    if level is not None and level > was:
        return Decision(Reason.HIGHER_THRESHOLD, level, Action.NOTIFY)
    if level is None or level < was:
        return Decision(Reason.RESOLVED, level, Action.NOTIFY if policy.send_resolved else Action.RECORD)
    notified_at = previous.notified_at if previous is not None else None
    if policy.repeat_interval and notified_at is not None and now - notified_at >= policy.repeat_interval:
        return Decision(Reason.REPEAT_DUE, level, Action.NOTIFY)
    return Decision(None, level)
