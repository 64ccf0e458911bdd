"""`process_snapshot` with an in-memory notification log and recording senders (no AWS, no network)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from spendwatch.alerting import Outcome, policy_for, process_snapshot, superseding
from spendwatch.alerts import AlertState
from spendwatch.config import ChannelConfig, SpendwatchConfig, parse_config
from spendwatch.decide import Reason
from spendwatch.errors import DeliveryError
from spendwatch.render import EmailContent, Message
from spendwatch.snapshot import CreditGrant, DailyCost, Snapshot, SourceFailure, SpendLimit
from spendwatch.store import ClaimLostError

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
            if item and "version" in item:
                found[key] = AlertState(
                    key, item["version"], item["level"], item["at"], item["firing"], item.get("pending_until")
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

    def mark_sent(
        self, org_id: str, key: str, *, level: Decimal | None, firing: bool, now: datetime, reason: str
    ) -> None:
        self.calls.append(f"mark {key} {reason}")
        item = self.items[(org_id, key)]
        item.update(level=level, firing=firing, at=now, reason=reason, version=item.get("version", 0) + 1)
        item.pop("pending_until", None)

    def release(self, org_id: str, key: str) -> None:
        self.calls.append(f"release {key}")
        self.items[(org_id, key)].pop("pending_until", None)

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
) -> Outcome:
    clock: Callable[[], datetime] = lambda: now or snapshot.poll_time + timedelta(minutes=1)  # noqa: E731
    return process_snapshot(
        snapshot,
        config=cfg or config(),
        states=states,  # type: ignore[arg-type]
        sender_for=senders,
        now=clock,
        history=history,
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
            states=states,  # type: ignore[arg-type]
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
        process_snapshot(snapshot, config=cfg, states=states, sender_for=senders, now=lambda: WHEN)  # type: ignore[arg-type]
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
