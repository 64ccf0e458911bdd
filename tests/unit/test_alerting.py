"""`process_snapshot` with an in-memory notification log and recording senders (no AWS, no network)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spendwatch.alerter.process import Outcome, policy_for, process_snapshot, superseding
from spendwatch.aws.store import ClaimLostError
from spendwatch.core.alerts import AlertState, EmailContent, Message, Reason
from spendwatch.core.config import ChannelConfig, SpendwatchConfig, parse_config
from spendwatch.core.errors import DeliveryError, DeliveryUnknownError
from spendwatch.core.snapshot import CreditGrant, DailyCost, Snapshot, SourceFailure, SpendLimit

WHEN = datetime(2026, 11, 21, 23, tzinfo=UTC)


class MemoryStates:
    """The `AlertStateStore` protocol in memory, with the same conditions as the DynamoDB version."""

    def __init__(self, lease_s: int = 180) -> None:
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        self.lease_s = lease_s
        self.calls: list[str] = []

    def get_many(self, org_id: str, keys: list[str]) -> dict[str, AlertState]:
        found = {}
        for key in keys:
            item = self.items.get((org_id, key))
            if item and ("version" in item or "held" in item):
                found[key] = AlertState(
                    key,
                    item.get("version", 0),
                    item.get("level"),
                    item.get("at"),
                    item.get("firing", False),
                    item.get("pending_until"),
                    resend_after=item.get("resend_after"),
                    last_reason=item.get("reason"),
                    held="held" in item,
                )
        return found

    def claim(
        self,
        org_id: str,
        key: str,
        *,
        expected_version: int,
        now: datetime,
        expires_at: int,
        lease_s: int | None = None,
    ) -> None:
        self.calls.append(f"claim {key}")
        item = self.items.setdefault((org_id, key), {})
        if item.get("version", 0) != expected_version or item.get("pending_until", 0) >= int(now.timestamp()):
            raise ClaimLostError(key)
        item["pending_until"] = int(now.timestamp()) + (lease_s if lease_s is not None else self.lease_s)
        item.pop("held", None)

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
    ) -> None:
        self.calls.append(f"mark {key} {reason}" + (" unconfirmed" if resend_after is not None else ""))
        item = self.items[(org_id, key)]
        item.update(level=level, firing=firing, at=now, reason=reason, version=item.get("version", 0) + 1)
        item["resend_after"] = resend_after
        item.pop("pending_until", None)
        item.pop("held", None)

    def hold(self, org_id: str, key: str, *, now: datetime, lease_s: int) -> None:
        self.calls.append(f"hold {key}")
        item = self.items[(org_id, key)]
        item.update(pending_until=int(now.timestamp()) + lease_s, held=True)

    def release(self, org_id: str, key: str) -> None:
        self.calls.append(f"release {key}")
        self.items[(org_id, key)].pop("pending_until", None)
        self.items[(org_id, key)].pop("held", None)

    def state(self, key: str, org_id: str = "acme") -> dict[str, Any]:
        return self.items[(org_id, key)]


class Recorder:
    """A sender that records what it was given, or fails as told."""

    def __init__(self, name: str, kind: str = "slack", fail: DeliveryError | None = None) -> None:
        self.name = name
        self.kind = kind
        self.fail = fail
        self.received: list[Message | EmailContent] = []

    def send(self, message: Message | EmailContent) -> None:
        if self.fail is not None:
            raise self.fail
        self.received.append(message)


class Senders:
    def __init__(self) -> None:
        self.by_name: dict[str, Recorder] = {}
        self.failing: dict[str, DeliveryError] = {}

    def __call__(self, name: str, channel: ChannelConfig) -> Recorder:
        if name not in self.by_name:
            self.by_name[name] = Recorder(name, channel.type)
        self.by_name[name].fail = self.failing.get(name)
        return self.by_name[name]

    def messages(self, name: str = "slack") -> list[Any]:
        return self.by_name[name].received if name in self.by_name else []


def config(rules: str = "", extra: str = "", channels: str = "[slack]") -> SpendwatchConfig:
    text = f"""
organizations:
  - id: acme
    name: Acme
    budget: {{monthly_usd: 500, thresholds_percent: [50, 80, 100]}}
    channels: {channels}
    rules:
      forecast: {{enabled: false}}
      spike: {{enabled: false}}
{rules}
channels:
  slack: {{type: slack, mention: "<!here>"}}
  ops: {{type: slack}}
  mail: {{type: email, sender: spend@example.com, recipients: [finance@example.com], subject_prefix: "[spend]"}}
{extra}"""
    return parse_config(text, "t.yaml")


def snap(mtd: str, when: datetime = WHEN, **fields: Any) -> Snapshot:
    return Snapshot(
        org_id="acme",
        org_name="Acme",
        poll_time=when,
        collected_at=when,
        month_to_date_usd=Decimal(mtd),
        daily_costs_usd=(DailyCost(day=when.date(), amount_usd=Decimal(mtd)),),
        **fields,
    )


def run(
    snapshot: Snapshot,
    states: MemoryStates,
    senders: Senders,
    cfg: SpendwatchConfig | None = None,
    *,
    now: datetime | None = None,
    history: list[Snapshot] | None = None,
    sleeps: list[float] | None = None,
) -> Outcome:
    clock: Callable[[], datetime] = lambda: now or snapshot.poll_time + timedelta(minutes=1)  # noqa: E731
    return process_snapshot(
        snapshot,
        config=cfg or config(),
        states=states,
        sender_for=senders,
        now=clock,
        history=history,
        sleep=(sleeps if sleeps is not None else []).append,
    )


def test_alerting_first_run_mid_month_sends_the_current_state_as_one_message() -> None:
    states, senders = MemoryStates(), Senders()
    grants = tuple(
        CreditGrant(
            id=f"g{i}", grant_amount_usd=Decimal(10), used_amount_usd=Decimal(1), expires_at=WHEN + timedelta(days=2)
        )
        for i in range(3)
    )
    snapshot = snap(
        "600", credit_grants=grants, spend_limits=(SpendLimit(scope="organization", threshold_cents=60000),)
    )
    outcome = run(snapshot, states, senders)
    [message] = senders.messages()
    # one line for the budget (the highest threshold), one for the hard limit, one per grant (most urgent lead)
    assert len(message.lines) == 5
    assert "100.0% of the monthly budget reached" in message.text
    assert "50.0%" not in message.lines[0] and "80.0%" not in message.text
    assert sum(len(alerts) for _, alerts in outcome.sent) == 1 + 1 + 3 * 2  # every (grant, lead) is recorded
    assert states.state("grant.expiry#g0#30d#slack")["reason"] == "first_crossing"
    assert states.state("budget.actual#org#2026-11#slack")["level"] == Decimal(100)


def test_alerting_redelivered_record_and_later_polls_send_nothing_new() -> None:
    states, senders = MemoryStates(), Senders()
    run(snap("430"), states, senders)
    run(snap("430"), states, senders)  # the same record again
    run(snap("440", when=WHEN + timedelta(hours=1)), states, senders)
    assert len(senders.messages()) == 1


def test_alerting_one_message_per_channel_each_with_its_own_state() -> None:
    states, senders = MemoryStates(), Senders()
    cfg = config(channels="[slack, ops, mail]")
    run(snap("430"), states, senders, cfg)
    assert [len(senders.messages(name)) for name in ("slack", "ops", "mail")] == [1, 1, 1]
    assert senders.messages("slack")[0].text.startswith("<!here> ")
    assert not senders.messages("ops")[0].text.startswith("<!")
    email = senders.messages("mail")[0]
    assert isinstance(email, EmailContent)
    assert email.subject.startswith("[spend] Acme: 80.0% of the monthly budget reached")
    assert {k for _, k in states.items} == {f"budget.actual#org#2026-11#{c}" for c in ("slack", "ops", "mail")}


def test_alerting_failed_send_releases_the_claim_and_never_marks_sent() -> None:
    states, senders = MemoryStates(), Senders()
    senders.failing["slack"] = DeliveryError("slack", "503", retryable=True, reason="http_503")
    outcome = run(snap("430"), states, senders)
    assert [f.reason for f in outcome.failures] == ["http_503"]
    key = "budget.actual#org#2026-11#slack"
    assert states.calls == [f"claim {key}", f"release {key}"]
    assert "version" not in states.state(key)
    senders.failing.clear()
    run(snap("430"), states, senders)  # the stream retry
    assert len(senders.messages()) == 1
    assert states.state(key)["version"] == 1


def test_alerting_unexpected_error_releases_claims_and_propagates() -> None:
    states = MemoryStates()

    def broken(name: str, channel: ChannelConfig) -> Recorder:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError):
        process_snapshot(
            snap("430"),
            config=config(),
            states=states,
            sender_for=broken,
            now=lambda: WHEN,
        )
    assert states.calls[-1] == "release budget.actual#org#2026-11#slack"


def test_alerting_a_live_claim_elsewhere_fails_this_record_for_a_retry_instead_of_skipping() -> None:
    states, senders = MemoryStates(), Senders()
    key = "budget.actual#org#2026-11#slack"
    states.claim("acme", key, expected_version=0, now=WHEN, expires_at=0)  # another invocation is sending
    outcome = run(snap("430"), states, senders)
    assert senders.messages() == []
    [failure] = outcome.failures
    assert (failure.retryable, failure.reason) == (True, "claim_busy")
    # The other invocation died: its claim lapses with its lease, and the retried record sends.
    later = run(snap("430"), states, senders, now=WHEN + timedelta(seconds=181))
    assert later.failures == []
    assert len(senders.messages()) == 1


def test_alerting_a_claim_lost_to_a_newer_version_is_decided_again_on_fresh_state() -> None:
    states, senders = MemoryStates(), Senders()
    run(snap("430"), states, senders)  # 80% sent and recorded (version 1)

    stale = states.get_many("acme", ["budget.actual#org#2026-11#slack"])
    reads = {"n": 0}
    real_get_many = states.get_many

    def get_many(org_id: str, keys: list[str]) -> dict[str, AlertState]:
        reads["n"] += 1
        if reads["n"] == 1:
            return {k: AlertState(k, 0, None, None, False, None) for k in stale}
        return real_get_many(org_id, keys)

    states.get_many = get_many  # type: ignore[method-assign]
    outcome = run(snap("430"), states, senders)
    assert outcome.failures == []
    assert len(senders.messages()) == 1  # fresh state says 80% was already sent: nothing new


def test_alerting_a_failure_between_claims_releases_what_was_claimed() -> None:
    states, senders = MemoryStates(), Senders()
    cfg = config()
    original_claim = states.claim
    calls = {"n": 0}

    def flaky_claim(*args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("throttled")
        original_claim(*args, **kwargs)

    states.claim = flaky_claim  # type: ignore[method-assign]
    # Two alerts due on one channel: the budget's 80% and the hard limit (430 of 450 = 95.6%).
    snapshot = snap("430", spend_limits=(SpendLimit(scope="organization", threshold_cents=45000),))
    with pytest.raises(RuntimeError, match="throttled"):
        process_snapshot(snapshot, config=cfg, states=states, sender_for=senders, now=lambda: WHEN)
    assert all("pending_until" not in item for item in states.items.values())


def test_alerting_resolve_without_send_resolved_is_recorded_silently_and_rearms() -> None:
    states, senders = MemoryStates(), Senders()
    run(snap("430"), states, senders)
    outcome = run(snap("300", when=WHEN + timedelta(hours=1)), states, senders)  # 60%: 80 cleared past the margin
    assert [(c, a.reason, a.level) for c, a in outcome.recorded] == [("slack", Reason.RESOLVED, Decimal(50))]
    assert len(senders.messages()) == 1
    run(snap("420", when=WHEN + timedelta(hours=2)), states, senders)  # 84%: 80 crossed again
    assert len(senders.messages()) == 2
    assert "80.0% of the monthly budget reached" in senders.messages()[1].text


def test_alerting_send_resolved_sends_a_resolved_message() -> None:
    states, senders = MemoryStates(), Senders()
    cfg = config(rules="      budget: {send_resolved: true}")
    run(snap("430"), states, senders, cfg)
    run(snap("100", when=WHEN + timedelta(hours=1)), states, senders, cfg)
    assert len(senders.messages()) == 2
    assert senders.messages()[1].text.splitlines()[0] == "<!here> OpenAI spend alert resolved: Acme"


def test_alerting_hard_limit_repeats_on_its_interval() -> None:
    states, senders = MemoryStates(), Senders()
    cfg = config(rules="      hard_limit: {repeat_interval: 2h}")
    limits = (SpendLimit(scope="organization", threshold_cents=10000),)
    for hours in (0, 1, 2, 3, 4):
        run(snap("95", when=WHEN - timedelta(hours=5 - hours), spend_limits=limits), states, senders, cfg)
    hard = [m for m in senders.messages() if "hard limit" in m.text]
    assert len(hard) == 3  # t0, t0+2h, t0+4h
    assert "Still: 90.0% of the hard limit reached" in hard[1].text


@pytest.mark.parametrize(
    ("silence", "silenced"),
    [
        ("{org: acme, until: 2026-11-22T00:00:00Z}", True),
        ("{rule: budget, until: 2026-11-22T00:00:00Z, reason: planned load test}", True),
        ("{org: acme, rule: budget, until: 2026-11-22T00:00:00Z}", True),
        ("{rule: hard_limit, until: 2026-11-22T00:00:00Z}", False),
        ("{org: acme, until: 2026-11-21T23:00:00Z}", False),  # already over
    ],
)
def test_alerting_silences_hold_back_and_do_not_record(silence: str, silenced: bool) -> None:
    states, senders = MemoryStates(), Senders()
    cfg = config(extra=f"silences:\n  - {silence}\n")
    outcome = run(snap("430"), states, senders, cfg, now=WHEN + timedelta(minutes=30))
    assert (senders.messages() == []) is silenced
    assert (outcome.silenced == ["budget.actual#org#2026-11#slack"]) is silenced
    if silenced:
        assert states.items == {}
        run(snap("430", when=WHEN + timedelta(hours=1)), states, senders, cfg, now=WHEN + timedelta(hours=1, minutes=1))
        assert len(senders.messages()) == 1  # sent once the silence is over


def test_alerting_superseded_snapshot_is_skipped_in_favour_of_the_newer_one() -> None:
    states, senders = MemoryStates(), Senders()
    older, newer = snap("260"), snap("430", when=WHEN + timedelta(hours=1))
    assert superseding(older, [newer, older]) == newer.poll_time
    assert superseding(newer, [newer, older]) is None
    outcome = run(older, states, senders, history=[newer, older])
    assert outcome.superseded_by == newer.poll_time
    run(newer, states, senders, history=[newer, older])
    [message] = senders.messages()
    assert "80.0% of the monthly budget reached" in message.text
    # a newer snapshot of another month, or one without costs, does not supersede
    december = snap("1", when=datetime(2026, 12, 1, tzinfo=UTC))
    blind = Snapshot(
        org_id="acme", org_name="Acme", poll_time=WHEN + timedelta(hours=2), collected_at=WHEN, month_to_date_usd=None
    )
    assert superseding(older, [december, blind]) is None


def test_alerting_a_newer_snapshot_missing_a_source_does_not_supersede() -> None:
    with_credits = snap("260", sources_ok=("costs", "credit_grants"))
    lost_credits = snap("300", when=WHEN + timedelta(hours=1), sources_ok=("costs",))
    complete = snap("310", when=WHEN + timedelta(hours=2), sources_ok=("costs", "credit_grants", "projects"))
    assert superseding(with_credits, [lost_credits]) is None
    assert superseding(with_credits, [lost_credits, complete]) == complete.poll_time


def test_alerting_history_reaches_the_rules() -> None:
    states, senders = MemoryStates(), Senders()
    failing = (SourceFailure(source="costs", kind="unavailable", detail="HTTP 502"),)

    def failed(hours_ago: int) -> Snapshot:
        return Snapshot(
            org_id="acme",
            org_name="Acme",
            poll_time=WHEN - timedelta(hours=hours_ago),
            collected_at=WHEN,
            month_to_date_usd=None,
            failures=failing,
        )

    run(failed(0), states, senders)
    assert senders.messages() == []  # one failing poll is not three
    run(failed(0), states, senders, history=[failed(2), failed(1), failed(0)])
    [message] = senders.messages()
    assert 'Data source "costs" failed 3 polls in a row' in message.text


def test_alerting_unknown_org_and_nothing_observed_do_nothing() -> None:
    states, senders = MemoryStates(), Senders()
    other = Snapshot(org_id="gone", org_name="Gone", poll_time=WHEN, collected_at=WHEN, month_to_date_usd=Decimal(1))
    assert run(other, states, senders) == Outcome()
    assert run(snap("1"), states, senders).sent == []
    assert senders.by_name == {}


def test_policy_for_reads_the_rule_section_and_silences() -> None:
    cfg = config(
        rules="      hard_limit: {repeat_interval: 3h, send_resolved: false}",
        extra="silences:\n  - {rule: hard_limit, until: 2026-12-01}\n  - {org: acme, until: 2026-12-05}\n",
    )
    org = cfg.organization("acme")
    policy = policy_for("hard_limit", org, cfg, WHEN)
    assert policy.repeat_interval == timedelta(hours=3)
    assert policy.send_resolved is False
    assert policy.silenced_until == datetime(2026, 12, 5, tzinfo=UTC)
    assert policy_for("budget.actual", org, cfg, datetime(2026, 12, 6, tzinfo=UTC)).silenced_until is None
    assert policy_for("health.source", org).send_resolved is True
    assert policy_for("budget.actual", org).repeat_interval is None
    assert policy_for("budget.actual").send_resolved is False
    assert date(2026, 12, 5) == policy.silenced_until.date()


# --------------------------------------------------------------------------------------------------
# unknown delivery outcomes (issue 7, item 6) and records that fail after a send (item 7)
# --------------------------------------------------------------------------------------------------
def unknown(reason: str = "read_timeout") -> DeliveryUnknownError:
    return DeliveryUnknownError("slack", "Slack did not confirm", reason=reason)


class Scripted(Recorder):
    """Slack as the user sees it: `arrived` holds every message that reached the channel; each send ends
    as scripted: `ok`, `late` (arrived, answer lost), `lost` (sent, never arrived), `down` (refused)."""

    def __init__(self, outcomes: list[str]) -> None:
        super().__init__("slack")
        self.outcomes = outcomes
        self.arrived: list[Message | EmailContent] = []
        self.attempts = 0

    def send(self, message: Message | EmailContent) -> None:
        self.attempts += 1
        outcome = self.outcomes.pop(0) if self.outcomes else "ok"
        if outcome in {"ok", "late"}:
            self.arrived.append(message)
        if outcome in {"late", "lost"}:
            raise unknown()
        if outcome == "down":
            raise DeliveryError("slack", "refused", retryable=True, reason="connection")


HOUR = timedelta(hours=1)


def test_alerting_unknown_outcome_is_recorded_unconfirmed_and_the_record_succeeds() -> None:
    states, slack = MemoryStates(), Scripted(["late"])
    outcome = run(snap("430"), states, lambda name, channel: slack)  # type: ignore[arg-type]
    assert outcome.failures == [], "probably delivered: the record must not be retried or dead-lettered"
    [(channel, alerts, error)] = outcome.unconfirmed
    assert (channel, error.reason, [a.level for a in alerts]) == ("slack", "read_timeout", [Decimal(80)])
    key = "budget.actual#org#2026-11#slack"
    item = states.state(key)
    assert (item["version"], item["level"], item["reason"]) == (1, Decimal(80), "first_crossing")
    assert item["resend_after"] == int((WHEN + timedelta(minutes=1) + HOUR).timestamp())
    assert "pending_until" not in item, "the claim is not left to lapse"


def test_alerting_unknown_outcome_is_resent_once_after_the_lease_and_then_final() -> None:
    states, slack = MemoryStates(), Scripted(["late", "late"])
    senders: Any = lambda name, channel: slack  # noqa: E731
    run(snap("430"), states, senders)  # a slow Slack: posted, answered after the timeout
    for minutes in (2, 30, 59):  # redelivery and polls within the lease: nothing
        run(snap("430"), states, senders, now=WHEN + timedelta(minutes=minutes))
    assert len(slack.arrived) == 1
    resend = run(snap("440", when=WHEN + HOUR), states, senders, now=WHEN + HOUR + timedelta(minutes=1))
    assert resend.resent == ["budget.actual#org#2026-11#slack"]
    assert len(slack.arrived) == 2, "one re-send: at most one duplicate per ambiguous delivery"
    assert [m.lines[0].split(":")[0] for m in slack.arrived if isinstance(m, Message)] == [
        "80.0% of the monthly budget reached"
    ] * 2
    assert states.state("budget.actual#org#2026-11#slack")["resend_after"] is None, "the re-send is final"
    for hours in (2, 3, 30):
        run(snap("440", when=WHEN + hours * HOUR), states, senders, now=WHEN + hours * HOUR)
    assert len(slack.arrived) == 2
    assert slack.attempts == 2


def test_alerting_unknown_outcome_superseded_by_a_higher_threshold_is_not_resent() -> None:
    states, slack = MemoryStates(), Scripted(["lost"])
    senders: Any = lambda name, channel: slack  # noqa: E731
    run(snap("430"), states, senders)
    run(snap("520", when=WHEN + 2 * HOUR), states, senders, now=WHEN + 2 * HOUR)
    [message] = slack.arrived
    assert "100.0% of the monthly budget reached" in message.text
    run(snap("520", when=WHEN + 4 * HOUR), states, senders, now=WHEN + 4 * HOUR)
    assert len(slack.arrived) == 1


def test_alerting_a_provably_failed_resend_is_released_and_retried() -> None:
    states, slack = MemoryStates(), Scripted(["lost", "down", "ok"])
    senders: Any = lambda name, channel: slack  # noqa: E731
    run(snap("430"), states, senders)
    later = WHEN + 2 * HOUR
    failed = run(snap("430", when=later), states, senders, now=later)
    assert [f.reason for f in failed.failures] == ["connection"]
    retried = run(snap("430", when=later), states, senders, now=later + timedelta(seconds=5))
    assert retried.failures == [] and retried.resent == ["budget.actual#org#2026-11#slack"]
    assert len(slack.arrived) == 1, "the lost message arrived through its one re-send"


@settings(max_examples=40, deadline=None)  # each example runs ten evaluations; the CPU is shared
@given(
    outcomes=st.lists(st.sampled_from(["ok", "late", "lost", "down"]), min_size=1, max_size=8),
    gaps=st.lists(st.integers(min_value=1, max_value=3 * 3600), min_size=8, max_size=8),
)
def test_alerting_property_an_ambiguous_delivery_costs_at_most_one_duplicate(
    outcomes: list[str], gaps: list[int]
) -> None:
    """Whatever the receiver does, for one unchanged alert: at most two sends leave (the first one, and
    one re-send only if the first was ambiguous, never before the lease), and it is missing at the end
    only if two ambiguous deliveries in a row were both lost."""
    states, slack = MemoryStates(), Scripted(list(outcomes))
    senders: Any = lambda name, channel: slack  # noqa: E731
    moment = WHEN
    left: list[tuple[str, datetime]] = []  # (outcome, when) of every send that left (not refused)
    # Then enough polls for any due re-send: two, plus one for each send that provably failed (it is
    # released and retried by the next poll, which the last of the gaps may not leave room for).
    for gap in [*gaps, *[4 * 3600] * (2 + outcomes.count("down"))]:
        before = len(outcomes) - len(slack.outcomes), slack.attempts
        run(snap("430", when=moment), states, senders, now=moment)
        if slack.attempts > before[1]:
            used = outcomes[before[0]] if before[0] < len(outcomes) else "ok"
            if used != "down":
                left.append((used, moment))
        moment += timedelta(seconds=gap)
    assert 1 <= len(left) <= 2
    if len(left) == 2:
        assert left[0][0] in {"late", "lost"}, "a confirmed delivery is never sent again"
        assert left[1][1] - left[0][1] >= HOUR, "the re-send waits for the lease"
    if not slack.arrived:
        assert [o for o, _ in left] == ["lost", "lost"]
    assert len(slack.arrived) <= 2


class FailingMarks(MemoryStates):
    """The notification log refuses `mark_sent` the first `failures` times (throttling, an outage, or,
    before the fix, a level DynamoDB cannot store)."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def mark_sent(self, org_id: str, key: str, **kwargs: Any) -> None:
        if self.failures > 0:
            self.failures -= 1
            self.calls.append(f"mark {key} refused")
            raise RuntimeError("ProvisionedThroughputExceededException")
        super().mark_sent(org_id, key, **kwargs)


def test_alerting_a_record_that_fails_briefly_is_retried_and_sends_once() -> None:
    states, slack = FailingMarks(2), Scripted([])
    sleeps: list[float] = []
    outcome = run(snap("430"), states, lambda name, channel: slack, sleeps=sleeps)  # type: ignore[arg-type]
    assert outcome.failures == [] and len(slack.arrived) == 1
    assert sleeps == [0.2, 0.5]
    assert states.state("budget.actual#org#2026-11#slack")["version"] == 1


@pytest.mark.parametrize("failures", [3, 10, 1000])
def test_alerting_a_record_that_keeps_failing_after_a_send_never_resends(failures: int) -> None:
    states, slack = FailingMarks(failures), Scripted([])
    senders: Any = lambda name, channel: slack  # noqa: E731
    key = "budget.actual#org#2026-11#slack"
    first = run(snap("430"), states, senders)
    assert [f.reason for f in first.failures] == ["record_failed"], "the record fails: retried, then dead-lettered"
    assert first.unrecorded == [key]
    assert states.calls[-1] == f"hold {key}", "the claim is kept (held), never released"
    # the stream's retries, a replay and the next polls within the hold: none sends, none fails
    for minutes in (0, 1, 2, 3, 59):
        retry = run(snap("430"), states, senders, now=WHEN + timedelta(minutes=1 + minutes))
        assert retry.failures == [] and retry.skipped_claims == [key]
    later = run(snap("440", when=WHEN + HOUR), states, senders, now=WHEN + HOUR - timedelta(minutes=1))
    assert later.skipped_claims == [key]
    assert len(slack.arrived) == 1
    assert all("release" not in call for call in states.calls)


def test_alerting_a_held_claim_that_lapses_is_sent_once_more_and_recorded() -> None:
    states, slack = FailingMarks(3), Scripted([])
    senders: Any = lambda name, channel: slack  # noqa: E731
    run(snap("430"), states, senders)
    after = WHEN + 2 * HOUR
    run(snap("430", when=after), states, senders, now=after)
    run(snap("430", when=after + HOUR), states, senders, now=after + HOUR)
    assert len(slack.arrived) == 2, "the documented bound: one duplicate per hold of a failing table"
    assert states.state("budget.actual#org#2026-11#slack")["version"] == 1


def test_alerting_admin_key_rotation_sends_the_promised_cleared_message() -> None:
    """Issue 7, item 8, end to end through the decision: expiring -> rotated -> one cleared message."""
    states, senders = MemoryStates(), Senders()
    cfg = config(rules="      budget: {enabled: false}")

    def polled(hours: int, expires: datetime | None) -> Snapshot:
        return snap("1", when=WHEN + hours * HOUR, sources_ok=("admin_key",), admin_key_expires_at=expires)

    run(polled(0, WHEN + timedelta(days=5)), states, senders, cfg)
    run(polled(1, WHEN + timedelta(days=5)), states, senders, cfg)
    run(polled(2, None), states, senders, cfg)  # rotated to a key that never expires
    run(polled(3, WHEN + timedelta(days=400)), states, senders, cfg)
    texts = [m.text for m in senders.messages()]
    assert len(texts) == 2
    assert "The OpenAI admin key expires in 5" in texts[0]
    assert "The OpenAI admin key no longer expires soon (it has no expiry date)" in texts[1]


class CountingStates(MemoryStates):
    def __init__(self) -> None:
        super().__init__()
        self.reads: list[list[str]] = []

    def get_many(self, org_id: str, keys: list[str]) -> dict[str, AlertState]:
        self.reads.append(list(keys))
        return super().get_many(org_id, keys)


def test_alerting_reads_every_channels_log_in_one_batch() -> None:
    cfg = config(channels="[slack, ops]")
    states, senders = CountingStates(), Senders()
    run(snap("430"), states, senders, cfg)
    assert len(states.reads) == 1 and {k.rsplit("#", 1)[1] for k in states.reads[0]} == {"slack", "ops"}
    assert [len(senders.messages(n)) for n in ("slack", "ops")] == [1, 1]
    run(snap("460"), states, senders, cfg)
    assert len(states.reads) == 2
    assert [len(senders.messages(n)) for n in ("slack", "ops")] == [1, 1], "80% sent, 90% is no new threshold"
