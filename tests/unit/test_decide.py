from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from spendwatch.alerts import AlertState
from spendwatch.decide import NotifyPolicy, Reason, should_notify
from spendwatch.rules import Observation

NOW = datetime(2026, 11, 21, 12, tzinfo=UTC)
HOUR = timedelta(hours=1)


def obs(level: str | None) -> Observation:
    return Observation(
        "budget.actual", "budget.actual#org#2026-11", None if level is None else Decimal(level), "Budget"
    )


def state(level: str | None, *, firing: bool = True, at: datetime = NOW - HOUR, version: int = 1) -> AlertState:
    return AlertState(
        key="k",
        version=version,
        notified_level=None if level is None else Decimal(level),
        notified_at=at,
        firing=firing,
        pending_until=None,
    )


@pytest.mark.parametrize(
    ("previous", "level", "policy", "now", "reason"),
    [
        (None, None, NotifyPolicy(), NOW, None),
        (None, "50", NotifyPolicy(), NOW, Reason.FIRST_CROSSING),
        (None, "100", NotifyPolicy(), NOW, Reason.FIRST_CROSSING),  # first run mid-month: one message, highest level
        (state("50"), "50", NotifyPolicy(), NOW, None),  # steady above: quiet
        (state("50"), "80", NotifyPolicy(), NOW, Reason.HIGHER_THRESHOLD),
        (state("80"), "50", NotifyPolicy(), NOW, None),  # a revised bucket lowers spend: no flap
        (state("80"), None, NotifyPolicy(), NOW, None),  # resolved, but budgets do not send resolves
        (state("80"), None, NotifyPolicy(send_resolved=True), NOW, Reason.RESOLVED),
        (state("80", firing=False), None, NotifyPolicy(send_resolved=True), NOW, None),
        (state("80", firing=False), "80", NotifyPolicy(), NOW, Reason.FIRST_CROSSING),
        (state("90", at=NOW - 4 * HOUR), "90", NotifyPolicy(repeat_interval=4 * HOUR), NOW, Reason.REPEAT_DUE),
        (
            state("90", at=NOW - 4 * HOUR + timedelta(seconds=1)),
            "90",
            NotifyPolicy(repeat_interval=4 * HOUR),
            NOW,
            None,
        ),
    ],
)
def test_should_notify_table(
    previous: AlertState | None, level: str | None, policy: NotifyPolicy, now: datetime, reason: Reason | None
) -> None:
    decision = should_notify(previous, obs(level), policy, now)
    assert decision.reason is reason
    assert decision.notify is (reason is not None)


def test_should_notify_names_the_level_to_record() -> None:
    decision = should_notify(state("50"), obs("100"), NotifyPolicy(), NOW)
    assert decision.level == Decimal(100)
