"""A main channel's permanent failure reaches the user through the fallback channel, once per failure
state; the config source falls back to the last valid config, then to a bundled file."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from spendwatch.alerter.notices import FallbackEvent, FallbackSender, notice_message, notify_on_change
from spendwatch.aws.runtime import SsmConfigSource
from spendwatch.aws.store import ClaimLostError
from spendwatch.channels.pagerduty import pagerduty_events
from spendwatch.core.alerts import AlertState, Message
from spendwatch.core.errors import ConfigError, DeliveryError, DeliveryUnknownError

NOW = datetime(2026, 11, 21, 23, 0, tzinfo=UTC)
MESSAGE = notice_message("title", ["line"])


@dataclass
class MemoryLog:
    """An in-memory notification log with AlertStateStore's claim semantics."""

    items: dict[str, AlertState] = field(default_factory=dict)
    refuse_claims: bool = False

    def get_many(self, org_id: str, keys: list[str]) -> dict[str, AlertState]:
        return {k: self.items[f"{org_id}/{k}"] for k in keys if f"{org_id}/{k}" in self.items}

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
        current = self.items.get(f"{org_id}/{key}")
        if self.refuse_claims or (current and (current.version != expected_version or current.pending_until)):
            raise ClaimLostError(key)
        base = current or AlertState(key, 0, None, None, False, None)
        self.items[f"{org_id}/{key}"] = replace(base, pending_until=int(now.timestamp()) + 180)

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
        current = self.items[f"{org_id}/{key}"]
        self.items[f"{org_id}/{key}"] = AlertState(
            key, current.version + 1, level, now, firing, None, resend_after=resend_after, last_reason=reason
        )

    def hold(self, org_id: str, key: str, *, now: datetime, lease_s: int) -> None:
        current = self.items[f"{org_id}/{key}"]
        self.items[f"{org_id}/{key}"] = replace(current, pending_until=int(now.timestamp()) + lease_s, held=True)

    def release(self, org_id: str, key: str) -> None:
        self.items[f"{org_id}/{key}"] = replace(self.items[f"{org_id}/{key}"], pending_until=None)


@dataclass
class ScriptedSender:
    name: str
    errors: list[DeliveryError | None] = field(default_factory=list)
    sent: list[Message] = field(default_factory=list)
    kind: str = "slack"

    def send(self, message: Message) -> None:
        error = self.errors.pop(0) if self.errors else None
        if error is not None:
            raise error
        self.sent.append(message)


def revoked() -> DeliveryError:
    return DeliveryError("slack", "Slack refused", retryable=False, reason="token_revoked")


def outage() -> DeliveryError:
    return DeliveryError("slack", "Slack unavailable", retryable=True, reason="http_503")


def wrap(main: ScriptedSender, fallback: ScriptedSender, log: MemoryLog, events: list[FallbackEvent]) -> FallbackSender:
    return FallbackSender(
        main,
        fallback_name=fallback.name,
        fallback=lambda: fallback,
        org_id="acme",
        org_name="Acme <Corp>",
        states=log,
        now=lambda: NOW,
        on_event=events.append,
    )


def test_permanent_failure_notifies_fallback_once_then_recovery_once() -> None:
    main = ScriptedSender("slack", [revoked(), revoked(), None, None])
    fallback = ScriptedSender("mail", kind="email")
    log, events = MemoryLog(), list[FallbackEvent]()
    sender = wrap(main, fallback, log, events)
    for _ in range(2):  # the record is retried: the main channel fails again, no second notice
        with pytest.raises(DeliveryError) as caught:
            sender.send(MESSAGE)
        assert caught.value.reason == "token_revoked", "the main error still fails the record"
    assert len(fallback.sent) == 1
    notice = fallback.sent[0].text
    assert "Channel slack failed permanently: token_revoked." in notice
    assert "Alerts for Acme &lt;Corp&gt; are not reaching it" in notice
    sender.send(MESSAGE)  # fixed: the alert goes out and the fallback hears about the recovery
    sender.send(MESSAGE)
    assert len(main.sent) == 2
    assert len(fallback.sent) == 2
    assert "works again" in fallback.sent[1].text
    assert [e.event for e in events] == ["failure_notified", "recovery_notified"]
    state = log.items["acme/health.delivery#slack#mail"]
    assert (state.firing, state.pending_until) == (False, None)
    # a PagerDuty fallback: the failure notice opens an incident, the recovery notice closes the same one
    failed, works = (pagerduty_events(m, now=NOW) for m in fallback.sent)
    assert [e["event_action"] for e in failed + works] == ["trigger", "resolve"]
    assert failed[0]["dedup_key"] == works[0]["dedup_key"] == "spendwatch:notice:acme:health.delivery#slack#mail"


def test_retryable_failure_does_not_notify_the_fallback() -> None:
    main = ScriptedSender("slack", [outage()])
    fallback = ScriptedSender("mail")
    log: MemoryLog = MemoryLog()
    with pytest.raises(DeliveryError):
        wrap(main, fallback, log, []).send(MESSAGE)
    assert fallback.sent == []
    assert log.items == {}


def test_failing_fallback_releases_its_claim_and_keeps_the_main_error() -> None:
    main = ScriptedSender("slack", [revoked(), revoked()])
    fallback = ScriptedSender("mail", [DeliveryError("mail", "SES", retryable=True, reason="Throttling")])
    log, events = MemoryLog(), list[FallbackEvent]()
    sender = wrap(main, fallback, log, events)
    with pytest.raises(DeliveryError) as caught:
        sender.send(MESSAGE)
    assert caught.value.reason == "token_revoked"
    assert [(e.event, e.reason) for e in events] == [("fallback_failed", "Throttling")]
    assert log.items["acme/health.delivery#slack#mail"].pending_until is None, "released for the retry"
    with pytest.raises(DeliveryError):
        sender.send(MESSAGE)  # the retry delivers the notice
    assert len(fallback.sent) == 1


def test_state_store_outage_never_hides_a_successful_send() -> None:
    class Broken(MemoryLog):
        def get_many(self, org_id: str, keys: list[str]) -> dict[str, AlertState]:
            raise RuntimeError("dynamodb down")

    main = ScriptedSender("slack")
    wrap(main, ScriptedSender("mail"), Broken(), []).send(MESSAGE)
    assert len(main.sent) == 1


def test_unknown_main_outcome_is_neither_a_failure_to_report_nor_a_recovery() -> None:
    main = ScriptedSender("slack", [DeliveryUnknownError("slack", "late", reason="read_timeout")])
    fallback = ScriptedSender("mail")
    log, events = MemoryLog(), list[FallbackEvent]()
    with pytest.raises(DeliveryUnknownError):
        wrap(main, fallback, log, events).send(MESSAGE)
    assert fallback.sent == [] and events == [] and log.items == {}


def test_notify_on_change_unknown_outcome_counts_as_sent_and_is_resent_once_after_the_lease() -> None:
    log, attempts = MemoryLog(), list[datetime]()

    def send_at(moment: datetime) -> bool:
        def send() -> None:
            attempts.append(moment)
            raise DeliveryUnknownError("slack", "no answer", reason="connection_reset")

        return notify_on_change(
            log, "acme", "k", firing=True, send=send, now=moment, reason="stale", sleep=lambda s: None
        )

    assert send_at(NOW) is True
    state = log.items["acme/k"]
    assert (state.firing, state.resend_after) == (True, int(NOW.timestamp()) + 3600)
    assert send_at(NOW + timedelta(minutes=30)) is False, "within the lease: nothing"
    assert send_at(NOW + timedelta(hours=2)) is True, "the one re-send"
    assert log.items["acme/k"].resend_after is None, "final, although its outcome was unknown again"
    assert send_at(NOW + timedelta(hours=5)) is False
    assert attempts == [NOW, NOW + timedelta(hours=2)]


def test_notify_on_change_send_that_cannot_be_recorded_holds_the_claim_and_never_resends() -> None:
    class Unwritable(MemoryLog):
        def mark_sent(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("ThrottlingException")

    log, sent = Unwritable(), list[int]()
    with pytest.raises(DeliveryError) as caught:
        notify_on_change(
            log, "acme", "k", firing=True, send=lambda: sent.append(1), now=NOW, reason="x", sleep=lambda s: None
        )
    assert (caught.value.reason, caught.value.retryable) == ("record_failed", True)
    assert log.items["acme/k"].held and log.items["acme/k"].pending_until == int(NOW.timestamp()) + 3600
    assert not notify_on_change(log, "acme", "k", firing=True, send=lambda: sent.append(1), now=NOW, reason="x")
    assert sent == [1]


def test_notify_on_change_sends_nothing_when_the_claim_is_lost() -> None:
    log = MemoryLog(refuse_claims=True)
    sent: list[int] = []
    assert not notify_on_change(log, "acme", "k", firing=True, send=lambda: sent.append(1), now=NOW, reason="x")
    assert sent == []


def test_notify_on_change_sends_nothing_for_a_clear_that_never_fired() -> None:
    log = MemoryLog()
    assert not notify_on_change(log, "acme", "k", firing=False, send=lambda: None, now=NOW, reason="x")
    assert log.items == {}


def test_notice_message_escapes_every_value_and_keeps_mention_once() -> None:
    message = notice_message("org <!channel>", ["a & b", "<https://x|y>"], context="c > d", mention="<!here>")
    assert message.text.count("<!") == 1 and message.text.startswith("<!here> ")
    assert "org &lt;!channel&gt;" in message.text
    assert "a &amp; b" in message.text and "&lt;https://x|y&gt;" in message.text
    assert message.blocks[0]["text"]["type"] == "plain_text"


# --------------------------------------------------------------------------------------------------
# config: SSM, then the last valid config, then the bundled file
# --------------------------------------------------------------------------------------------------
# As `spendwatch config push` / `config bundle` store them: canonical JSON (the functions read no YAML).
VALID = '{"organizations":[{"id":"acme","name":"Acme"}]}'
BUNDLED = '{"organizations":[{"id":"bundled","name":"Bundled"}]}'


class FakeParameters:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from aws_lambda_powertools.utilities import parameters

        self.value: str | Exception = VALID
        self._error = parameters.exceptions.GetParameterError
        monkeypatch.setattr("spendwatch.aws.runtime.read_parameter", self.get)

    def missing(self) -> None:
        self.value = self._error("An error occurred (ParameterNotFound) when calling the GetParameter operation")

    def get(self, name: str, **kwargs: Any) -> str:
        if isinstance(self.value, Exception):
            raise self.value
        return self.value


def test_config_source_missing_parameter_uses_the_bundled_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = FakeParameters(monkeypatch)
    bundled = tmp_path / "bundled_config.json"
    bundled.write_text(BUNDLED)
    fake.missing()
    source = SsmConfigSource("/spendwatch/config", bundled_path=bundled)
    assert source.get().organizations[0].id == "bundled"
    assert source.source == "bundled"
    assert source.last_error is not None and "ParameterNotFound" in str(source.last_error)
    fake.value = VALID  # pushed later: SSM wins
    assert source.get().organizations[0].id == "acme"
    assert source.source == "ssm"


def test_config_source_keeps_the_last_valid_config_after_a_bad_push(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeParameters(monkeypatch)
    source = SsmConfigSource("/spendwatch/config", bundled_path=None)
    assert source.get().organizations[0].id == "acme"
    fake.value = '{"organizations":[{"id":"BAD"}]}'
    assert source.get().organizations[0].id == "acme"
    assert source.source == "last_valid"
    assert source.last_error is not None and "organizations[0]" in str(source.last_error)


def test_config_source_without_any_valid_config_raises(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = FakeParameters(monkeypatch)
    fake.missing()
    source = SsmConfigSource("/spendwatch/config", bundled_path=tmp_path / "absent.json")
    with pytest.raises(ConfigError, match="config push"):
        source.get()


def test_a_main_channel_that_cannot_be_built_is_reported_through_the_fallback() -> None:
    from spendwatch.alerter.notices import with_fallback
    from spendwatch.core.config import parse_config

    config = parse_config(
        """
organizations:
  - {id: acme, name: Acme, channels: [slack], fallback_channel: mail}
channels:
  slack: {type: slack}
  mail: {type: email, sender: spend@example.com, recipients: [ops@example.com]}
""",
        "t.yaml",
    )
    fallback = ScriptedSender("mail", kind="email")

    def build(name: str, channel: Any) -> ScriptedSender:
        if name == "slack":  # its webhook URL was never put into SSM
            raise DeliveryError("slack", "no Slack webhook URL configured", retryable=False, reason="not_configured")
        return fallback

    senders = with_fallback(build, config=config, org=config.organizations[0], states=MemoryLog(), now=lambda: NOW)
    with pytest.raises(DeliveryError, match="no Slack webhook URL"):
        senders("slack", config.channels["slack"]).send(MESSAGE)
    [notice] = fallback.sent
    assert "Channel slack failed permanently: not_configured." in notice.text
