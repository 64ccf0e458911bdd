"""The decision function, table-driven (after Alertmanager's `TestDedupStageNeedsUpdate`)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from spendwatch.alerter.decide import Action, Decision, NotifyPolicy, effective_level, should_notify
from spendwatch.core.alerts import AlertState, Observation, Reason

NOW = datetime(2026, 11, 21, 12, tzinfo=UTC)
HOUR = timedelta(hours=1)
NOV = "budget.actual#org#2026-11"


def obs(level: str | None, hold: str | None = None, key: str = NOV) -> Observation:
    return Observation(
        "budget.actual",
        key,
        None if level is None else Decimal(level),
        "Budget",
        hold_level=None if hold is None else Decimal(hold),
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


RESOLVING = NotifyPolicy(send_resolved=True)
REPEATING = NotifyPolicy(repeat_interval=4 * HOUR)
SILENCED = NotifyPolicy(silenced_until=NOW + HOUR)


ROWS = [
    # (previous state, observation, policy, expected reason, expected action, expected level)
    # nothing before, nothing now
    (None, obs(None), NotifyPolicy(), None, Action.NONE, None),
    # first crossing; the first run mid-month names only the highest threshold crossed
    (None, obs("50", "50"), NotifyPolicy(), Reason.FIRST_CROSSING, Action.NOTIFY, "50"),
    (None, obs("100", "100"), NotifyPolicy(), Reason.FIRST_CROSSING, Action.NOTIFY, "100"),
    # hysteresis never fires on the way up: held 80 but crossed only 50
    (None, obs("50", "80"), NotifyPolicy(), Reason.FIRST_CROSSING, Action.NOTIFY, "50"),
    (state("50"), obs("50", "80"), NotifyPolicy(), None, Action.NONE, "50"),
    # steady above: quiet
    (state("50"), obs("50", "50"), NotifyPolicy(), None, Action.NONE, "50"),
    # a jump over several thresholds: one notification naming the highest
    (state("50"), obs("100", "100"), NotifyPolicy(), Reason.HIGHER_THRESHOLD, Action.NOTIFY, "100"),
    # a revised provisional bucket: below 80 but within the margin, so 80 is held (no flap)
    (state("80"), obs("50", "80"), NotifyPolicy(), None, Action.NONE, "80"),
    (state("80"), obs("50", "80"), RESOLVING, None, Action.NONE, "80"),
    # clearly below 80 (past the margin): recorded down to 50; a message only with send_resolved
    (state("80"), obs("50", "50"), NotifyPolicy(), Reason.RESOLVED, Action.RECORD, "50"),
    (state("80"), obs("50", "50"), RESOLVING, Reason.RESOLVED, Action.NOTIFY, "50"),
    # from 100 down to 77% with a 5% margin: 100 is gone, 80 is still held
    (state("100"), obs("50", "80"), NotifyPolicy(), Reason.RESOLVED, Action.RECORD, "80"),
    # fully cleared
    (state("80"), obs(None), NotifyPolicy(), Reason.RESOLVED, Action.RECORD, None),
    (state("80"), obs(None), RESOLVING, Reason.RESOLVED, Action.NOTIFY, None),
    (state("80"), obs(None, "80"), RESOLVING, None, Action.NONE, "80"),  # held by the margin
    # already resolved: nothing, and a new crossing is a first crossing again
    (state("80", firing=False), obs(None), RESOLVING, None, Action.NONE, None),
    (state(None, firing=False), obs("80", "80"), NotifyPolicy(), Reason.FIRST_CROSSING, Action.NOTIFY, "80"),
    # repeats: due at exactly the interval, not a second before, never without an interval
    (state("90", at=NOW - 4 * HOUR), obs("90", "90"), REPEATING, Reason.REPEAT_DUE, Action.NOTIFY, "90"),
    (state("90", at=NOW - 4 * HOUR + timedelta(seconds=1)), obs("90", "90"), REPEATING, None, Action.NONE, "90"),
    (state("90", at=NOW - 40 * HOUR), obs("90", "90"), NotifyPolicy(), None, Action.NONE, "90"),
    # silences hold back notifications (not recorded, so they are sent when the silence ends)
    (None, obs("80", "80"), SILENCED, Reason.SILENCED, Action.NONE, "80"),
    (state("50"), obs("80", "80"), SILENCED, Reason.SILENCED, Action.NONE, "80"),
    (
        state("90", at=NOW - 5 * HOUR),
        obs("90", "90"),
        replace(REPEATING, silenced_until=NOW + HOUR),
        Reason.SILENCED,
        Action.NONE,
        "90",
    ),
    (state("80"), obs(None), replace(RESOLVING, silenced_until=NOW + HOUR), Reason.SILENCED, Action.NONE, None),
    # ...but silent bookkeeping (a resolve without a message) still happens
    (state("80"), obs(None), SILENCED, Reason.RESOLVED, Action.RECORD, None),
    # a silence that ended is no silence
    (None, obs("80", "80"), NotifyPolicy(silenced_until=NOW), Reason.FIRST_CROSSING, Action.NOTIFY, "80"),
]


@pytest.mark.parametrize("row", ROWS)
def test_should_notify_table(
    row: tuple[AlertState | None, Observation, NotifyPolicy, Reason | None, Action, str | None],
) -> None:
    previous, observation, policy, reason, action, level = row
    decision = should_notify(previous, observation, policy, NOW)
    assert decision == Decision(reason, None if level is None else Decimal(level), action)
    assert decision.notify is (action is Action.NOTIFY)
    assert decision.record is (action is not Action.NONE)


@pytest.mark.parametrize(
    ("was", "level", "hold", "expected"),
    [
        (None, "50", "80", "50"),
        ("80", "50", "80", "80"),
        ("80", "50", "100", "80"),  # the hold never raises above what was notified
        ("100", "50", "80", "80"),
        ("80", None, None, None),
        ("80", "100", "100", "100"),
        ("80", "50", None, "50"),  # no hysteresis for this rule
    ],
)
def test_effective_level_applies_hysteresis(was: str | None, level: str | None, hold: str | None, expected: str | None):
    result = effective_level(None if was is None else Decimal(was), obs(level, hold))
    assert result == (None if expected is None else Decimal(expected))


class Log:
    """A one-key notification log applying decisions the way `alerting` does (record on NOTIFY/RECORD)."""

    def __init__(self) -> None:
        self.states: dict[str, AlertState] = {}
        self.sent: list[tuple[str, Reason, Decimal | None]] = []

    def step(self, observation: Observation, policy: NotifyPolicy, now: datetime) -> Decision:
        prior = self.states.get(observation.key)
        decision = should_notify(prior, observation, policy, now)
        if decision.record:
            assert decision.reason is not None
            if decision.notify:
                self.sent.append((observation.key, decision.reason, decision.level))
            self.states[observation.key] = AlertState(
                observation.key,
                (prior.version if prior else 0) + 1,
                decision.level,
                now,
                decision.level is not None,
                None,
            )
        return decision


def test_decisions_over_a_month_and_its_rollover() -> None:
    log = Log()
    policy = NotifyPolicy()
    day = timedelta(days=1)
    start = datetime(2026, 11, 10, tzinfo=UTC)
    steps = [
        (obs("50", "50"), start),  # first crossing
        (obs("50", "50"), start + day),  # steady
        (obs("100", "100"), start + 2 * day),  # jump 50 -> 100
        (obs("80", "100"), start + 3 * day),  # revised down within the margin: held
        (obs("100", "100"), start + 4 * day),  # back up: still 100, nothing new
        (obs(None, None, key="budget.actual#org#2026-12"), datetime(2026, 12, 1, tzinfo=UTC)),  # new month
        (obs("50", "50", key="budget.actual#org#2026-12"), datetime(2026, 12, 15, tzinfo=UTC)),  # re-armed
    ]
    for observation, when in steps:
        log.step(observation, policy, when)
    assert log.sent == [
        (NOV, Reason.FIRST_CROSSING, Decimal(50)),
        (NOV, Reason.HIGHER_THRESHOLD, Decimal(100)),
        ("budget.actual#org#2026-12", Reason.FIRST_CROSSING, Decimal(50)),
    ]


def test_decisions_repeat_on_the_interval_then_resolve_once() -> None:
    # A8: the same breached snapshot at t0, t0 + interval - 1 s, t0 + interval -> notify, quiet, notify.
    log = Log()
    policy = NotifyPolicy(repeat_interval=6 * HOUR, send_resolved=True)
    breached = Observation("hard_limit", "hard_limit#org#2026-11", Decimal(90), "Hard limit", hold_level=Decimal(90))
    cleared = replace(breached, level=None, hold_level=None)
    t0 = NOW
    assert log.step(breached, policy, t0).reason is Reason.FIRST_CROSSING
    assert log.step(breached, policy, t0 + 6 * HOUR - timedelta(seconds=1)).reason is None
    assert log.step(breached, policy, t0 + 6 * HOUR).reason is Reason.REPEAT_DUE
    assert log.step(cleared, policy, t0 + 7 * HOUR).reason is Reason.RESOLVED
    assert log.step(cleared, policy, t0 + 20 * HOUR).reason is None
    assert [reason for _, reason, _ in log.sent] == [Reason.FIRST_CROSSING, Reason.REPEAT_DUE, Reason.RESOLVED]


def test_decisions_a_silenced_alert_is_sent_when_the_silence_ends() -> None:
    log = Log()
    until = NOW + 2 * HOUR
    observation = obs("80", "80")
    assert log.step(observation, NotifyPolicy(silenced_until=until), NOW).reason is Reason.SILENCED
    assert log.sent == []
    assert log.step(observation, NotifyPolicy(silenced_until=until), until).reason is Reason.FIRST_CROSSING
    assert log.sent == [(NOV, Reason.FIRST_CROSSING, Decimal(80))]


# --- a delivery that was not confirmed: one re-send after the lease, with the same reason ----------------
def unconfirmed(
    level: str | None, *, firing: bool = True, resend_after: datetime = NOW, reason: str = "first_crossing"
) -> AlertState:
    return replace(state(level, firing=firing), resend_after=int(resend_after.timestamp()), last_reason=reason)


@pytest.mark.parametrize(
    ("previous", "observation", "policy", "expected"),
    [
        # still at the recorded level: re-sent once the lease is over, not before
        (unconfirmed("80", resend_after=NOW + HOUR), obs("80", "80"), NotifyPolicy(), Decision(None, Decimal(80))),
        (
            unconfirmed("80"),
            obs("80", "80"),
            NotifyPolicy(),
            Decision(Reason.FIRST_CROSSING, Decimal(80), Action.NOTIFY, resend=True),
        ),
        (
            unconfirmed("80", reason="higher_threshold"),
            obs("80", "80"),
            NotifyPolicy(),
            Decision(Reason.HIGHER_THRESHOLD, Decimal(80), Action.NOTIFY, resend=True),
        ),
        # held by the hysteresis margin: still the recorded level
        (
            unconfirmed("80"),
            obs("50", "80"),
            NotifyPolicy(),
            Decision(Reason.FIRST_CROSSING, Decimal(80), Action.NOTIFY, resend=True),
        ),
        # a resolved message that was not confirmed is re-sent as a resolve
        (
            unconfirmed(None, firing=False, reason="resolved"),
            obs(None),
            RESOLVING,
            Decision(Reason.RESOLVED, None, Action.NOTIFY, resend=True),
        ),
        # the state moved on: the new change is sent normally (and the old message is superseded)
        (
            unconfirmed("80"),
            obs("100", "100"),
            NotifyPolicy(),
            Decision(Reason.HIGHER_THRESHOLD, Decimal(100), Action.NOTIFY),
        ),
        (unconfirmed("80"), obs(None), NotifyPolicy(), Decision(Reason.RESOLVED, None, Action.RECORD)),
        # a silence holds the re-send back too (it stays due)
        (unconfirmed("80"), obs("80", "80"), SILENCED, Decision(Reason.SILENCED, Decimal(80))),
        # an unknown recorded reason falls back to a first crossing
        (
            unconfirmed("80", reason="from-a-future-version"),
            obs("80", "80"),
            NotifyPolicy(),
            Decision(Reason.FIRST_CROSSING, Decimal(80), Action.NOTIFY, resend=True),
        ),
    ],
)
def test_should_notify_resends_an_unconfirmed_delivery_once_due(
    previous: AlertState, observation: Observation, policy: NotifyPolicy, expected: Decision
) -> None:
    assert should_notify(previous, observation, policy, NOW) == expected


def test_should_notify_confirmed_state_is_never_resent() -> None:
    confirmed = replace(state("80"), last_reason="first_crossing")
    assert should_notify(confirmed, obs("80", "80"), NotifyPolicy(), NOW + 100 * HOUR).action is Action.NONE
