"""Slack sender: error classification (delivered, not delivered, unknown), bounded retries within the time
left, no retry of an unknown outcome, secret re-reads, pacing, and no secret in any error or log line
(reliability.md §5, A11, A13, A15). Transports are fakes; the real transport's phases are exercised
against loopback servers in tests/integration/test_delivery_faults.py."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Any

import pytest

from spendwatch.channels.base import HttpAnswer, NotSentError, Pacer, post_once
from spendwatch.channels.email import EmailSender
from spendwatch.channels.factory import sender_factory
from spendwatch.channels.reasons import KNOWN_REASONS, metric_reason
from spendwatch.channels.slack import (
    SlackCredentials,
    SlackReply,
    SlackSender,
    classify_slack,
    web_api_reply,
    webhook_reply,
)
from spendwatch.core.alerts import Message
from spendwatch.core.config import EmailChannelConfig, SecretRef, SlackChannelConfig
from spendwatch.core.errors import DeliveryError, DeliveryUnknownError

WEBHOOK = "https://hooks.slack.com/services/T000/B000/SECRETPATHxyz123"
TOKEN = "xoxb-1111-2222-SECRETtoken"
MESSAGE = Message(
    title="t", lines=("l",), text="t\nl", blocks=({"type": "section", "text": {"type": "mrkdwn", "text": "l"}},)
)


@dataclass
class FakeTransport:
    replies: list[SlackReply]
    calls: list[tuple[SlackCredentials, str | None, float]] = field(default_factory=list)

    def __call__(self, creds: SlackCredentials, channel: str | None, message: Message, timeout: float) -> SlackReply:
        self.calls.append((creds, channel, timeout))
        return self.replies.pop(0) if self.replies else SlackReply(200, None)


@dataclass
class Credentials:
    """Hands out the webhook (or token); `rotated` is what a forced re-read returns."""

    current: SlackCredentials = field(default_factory=lambda: SlackCredentials(webhook_url=WEBHOOK))
    rotated: SlackCredentials | None = None
    reads: list[bool] = field(default_factory=list)

    def __call__(self, force: bool) -> SlackCredentials:
        self.reads.append(force)
        if force and self.rotated is not None:
            self.current = self.rotated
        return self.current


def sender(
    replies: list[SlackReply], *, remaining: float = 30.0, creds: Credentials | None = None, **kwargs: Any
) -> tuple[SlackSender, FakeTransport, list[float], Credentials]:
    transport = FakeTransport(list(replies))
    sleeps: list[float] = []
    credentials = creds or Credentials()
    return (
        SlackSender(
            "alerts",
            credentials,
            channel="C0ALERTS",
            transport=transport,
            remaining_s=lambda: remaining,
            sleep=sleeps.append,
            **kwargs,
        ),
        transport,
        sleeps,
        credentials,
    )


OK = SlackReply(200, None)


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        (OK, "ok"),
        (SlackReply(429, "ratelimited", 1.0), "rate_limited"),
        (SlackReply(429, "http_429"), "rate_limited"),
        (SlackReply(200, "rate_limited"), "rate_limited"),
        (SlackReply(500, "rollup_error"), "transient"),
        (SlackReply(503, "http_503"), "transient"),
        (SlackReply(599, "connection"), "transient"),
        (SlackReply(599, "dns"), "transient"),
        (SlackReply(599, "connect_timeout"), "transient"),
        (SlackReply(599, "tls"), "transient"),
        (SlackReply(200, "internal_error"), "unknown"),
        (SlackReply(200, "fatal_error"), "unknown"),
        (SlackReply(504, "http_504"), "unknown"),
        (SlackReply(504, "rollup_error"), "unknown"),
        (SlackReply(599, "read_timeout", unknown=True), "unknown"),
        (SlackReply(599, "connection_reset", unknown=True), "unknown"),
        (SlackReply(200, "unreadable_reply", unknown=True), "unknown"),
        (SlackReply(599, "invalid_url"), "auth"),
        (SlackReply(200, "invalid_auth"), "auth"),
        (SlackReply(200, "not_authed"), "auth"),
        (SlackReply(200, "token_revoked"), "auth"),
        (SlackReply(200, "account_inactive"), "auth"),
        (SlackReply(404, "no_service"), "auth"),
        (SlackReply(200, "channel_not_found"), "permanent"),
        (SlackReply(404, "channel_not_found"), "permanent"),
        (SlackReply(200, "not_in_channel"), "permanent"),
        (SlackReply(200, "is_archived"), "permanent"),
        (SlackReply(410, "channel_is_archived"), "permanent"),
        (SlackReply(403, "action_prohibited"), "permanent"),
        (SlackReply(200, "missing_scope"), "permanent"),
        (SlackReply(200, "msg_too_long"), "permanent"),
        (SlackReply(400, "invalid_payload"), "permanent"),
        (SlackReply(400, "http_400"), "permanent"),
        (SlackReply(200, "some_new_error"), "permanent"),
    ],
)
def test_classify_slack(reply: SlackReply, verdict: str) -> None:
    assert classify_slack(reply) == verdict


@pytest.mark.parametrize(
    ("replies", "remaining", "outcome", "attempts", "sleeps"),
    [
        ([OK], 30.0, "ok", 1, []),
        ([SlackReply(429, "ratelimited", 1.0), OK], 30.0, "ok", 2, [1.0]),
        ([SlackReply(429, "ratelimited", 0.0), OK], 30.0, "ok", 2, [0.0]),
        ([SlackReply(429, "rate_limited", None), OK], 30.0, "ok", 2, [1.0]),  # no header: 1 s
        ([SlackReply(429, "ratelimited", 30.0)], 10.0, "retryable:ratelimited", 1, []),  # does not fit
        ([SlackReply(503, "http_503"), SlackReply(502, "http_502"), OK], 30.0, "ok", 3, [1.0, 2.0]),
        ([SlackReply(503, "http_503")] * 5, 30.0, "retryable:http_503", 3, [1.0, 2.0]),
        ([SlackReply(503, "http_503")] * 5, 1.5, "retryable:http_503", 2, [1.0]),
        ([SlackReply(599, "connection"), OK], 30.0, "ok", 2, [1.0]),
        ([SlackReply(599, "connect_timeout"), SlackReply(599, "dns"), OK], 30.0, "ok", 3, [1.0, 2.0]),
        # unknown outcome: the post may be in the channel already, so never a second attempt
        ([SlackReply(200, "fatal_error"), OK], 30.0, "unknown:fatal_error", 1, []),
        ([SlackReply(599, "read_timeout", unknown=True), OK], 30.0, "unknown:read_timeout", 1, []),
        ([SlackReply(599, "connection_reset", unknown=True), OK], 30.0, "unknown:connection_reset", 1, []),
        ([SlackReply(504, "http_504"), OK], 30.0, "unknown:http_504", 1, []),
        (
            [SlackReply(503, "http_503"), SlackReply(599, "read_timeout", unknown=True), OK],
            30.0,
            "unknown:read_timeout",
            2,
            [1.0],
        ),
        ([SlackReply(200, "channel_not_found")], 30.0, "permanent:channel_not_found", 1, []),
        ([SlackReply(200, "not_in_channel")], 30.0, "permanent:not_in_channel", 1, []),
        ([SlackReply(200, "is_archived")], 30.0, "permanent:is_archived", 1, []),
        ([SlackReply(410, "channel_is_archived")], 30.0, "permanent:channel_is_archived", 1, []),
        ([SlackReply(400, "invalid_payload")], 30.0, "permanent:invalid_payload", 1, []),
        ([SlackReply(200, "msg_too_long")], 30.0, "permanent:msg_too_long", 1, []),
        # credential refused: one re-read of the secret, then permanent (no hot loop)
        ([SlackReply(200, "invalid_auth"), SlackReply(200, "invalid_auth")], 30.0, "permanent:invalid_auth", 2, []),
        ([SlackReply(200, "token_revoked")] * 3, 30.0, "permanent:token_revoked", 2, []),
        ([SlackReply(404, "no_service")] * 3, 30.0, "permanent:no_service", 2, []),
        ([SlackReply(200, "not_authed"), OK], 30.0, "ok", 2, []),
    ],
)
def test_slack_sender_outcomes(
    replies: list[SlackReply], remaining: float, outcome: str, attempts: int, sleeps: list[float]
) -> None:
    slack, transport, slept, _ = sender(replies, remaining=remaining)
    if outcome == "ok":
        slack.send(MESSAGE)
    else:
        kind, reason = outcome.split(":")
        with pytest.raises(DeliveryError) as caught:
            slack.send(MESSAGE)
        assert isinstance(caught.value, DeliveryUnknownError) is (kind == "unknown")
        assert caught.value.retryable is (kind == "retryable")
        assert caught.value.reason == reason
        assert caught.value.channel == "alerts"
        assert metric_reason(reason) == reason, "every reason is a known metric dimension value"
    assert len(transport.calls) == attempts
    assert slept == sleeps


def test_slack_sender_unknown_outcome_is_named_as_such() -> None:
    slack, _, _, _ = sender([SlackReply(599, "read_timeout", unknown=True)])
    with pytest.raises(DeliveryUnknownError) as caught:
        slack.send(MESSAGE)
    assert "(outcome unknown)" in str(caught.value)
    assert "may have been delivered" in caught.value.detail
    assert caught.value.outcome == "unknown"


def test_slack_sender_rereads_a_revoked_token_once_and_uses_the_rotated_one() -> None:
    creds = Credentials(
        current=SlackCredentials(bot_token="xoxb-old"), rotated=SlackCredentials(bot_token="xoxb-rotated")
    )
    slack, transport, _, _ = sender([SlackReply(200, "token_revoked"), OK], creds=creds)
    slack.send(MESSAGE)
    assert creds.reads == [False, True]
    assert [c.bot_token for c, _, _ in transport.calls] == ["xoxb-old", "xoxb-rotated"]


def test_slack_sender_http_timeout_never_exceeds_the_time_left() -> None:
    slack, transport, _, _ = sender([OK], remaining=4.0)
    slack.send(MESSAGE)
    assert transport.calls[0][2] == 4.0
    slack, transport, _, _ = sender([OK], remaining=0.2)
    slack.send(MESSAGE)
    assert transport.calls[0][2] == 1.0


def test_slack_sender_timeout_is_settable_for_fault_tests() -> None:
    slack, transport, _, _ = sender([OK], remaining=30.0, timeout_s=0.5)
    slack.send(MESSAGE)
    assert transport.calls[0][2] == 0.5


@pytest.mark.parametrize(
    ("creds", "channel"),
    [(SlackCredentials(), "C1"), (SlackCredentials(bot_token="xoxb-1"), None)],
)
def test_slack_sender_without_usable_credentials_is_permanent(creds: SlackCredentials, channel: str | None) -> None:
    slack = SlackSender("alerts", lambda force: creds, channel=channel, transport=FakeTransport([]))
    with pytest.raises(DeliveryError) as caught:
        slack.send(MESSAGE)
    assert (caught.value.retryable, caught.value.reason) == (False, "not_configured")


def test_slack_sender_secret_store_outage_is_retryable_and_names_no_secret() -> None:
    def broken(force: bool) -> SlackCredentials:
        raise RuntimeError(f"ssm says no for {WEBHOOK}")

    slack = SlackSender("alerts", broken, transport=FakeTransport([]))
    with pytest.raises(DeliveryError) as caught:
        slack.send(MESSAGE)
    assert (caught.value.retryable, caught.value.reason) == (True, "secret_unavailable")
    assert WEBHOOK not in str(caught.value)


# --------------------------------------------------------------------------------------------------
# the real transport: replies parsed, phases classified, secrets never in errors or logs
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "body", "reply"),
    [
        (200, b"ok", OK),
        (200, b"ok\n", OK),
        (404, b"no_service", SlackReply(404, "no_service")),
        (410, b"channel_is_archived", SlackReply(410, "channel_is_archived")),
        (500, b"<html>oops</html>", SlackReply(500, "http_500")),
        (504, b"", SlackReply(504, "http_504")),
        (200, b"<html>proxy says hi</html>", SlackReply(200, "unreadable_reply", unknown=True)),
    ],
)
def test_webhook_reply(status: int, body: bytes, reply: SlackReply) -> None:
    assert webhook_reply(HttpAnswer(status, {}, body)) == reply


@pytest.mark.parametrize(
    ("status", "body", "headers", "reply"),
    [
        (200, b'{"ok": true, "ts": "1.2"}', {}, OK),
        (200, b'{"ok": false, "error": "channel_not_found"}', {}, SlackReply(200, "channel_not_found")),
        (200, b'{"ok": false, "error": "fatal_error"}', {}, SlackReply(200, "fatal_error")),
        (429, b'{"ok": false, "error": "ratelimited"}', {"retry-after": "3"}, SlackReply(429, "ratelimited", 3.0)),
        (200, b'{"ok": false, "error": "Bearer xoxb-SECRET"}', {}, SlackReply(200, "http_200")),
        (502, b"Bad Gateway", {}, SlackReply(502, "http_502")),
        (200, b"not json", {}, SlackReply(200, "unreadable_reply", unknown=True)),
    ],
)
def test_web_api_reply(status: int, body: bytes, headers: dict[str, str], reply: SlackReply) -> None:
    assert web_api_reply(HttpAnswer(status, headers, body)) == reply


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://hooks.example/services/x", "invalid_url"),
        ("https:///services/x", "invalid_url"),
        ("https://hooks.example:notaport/x", "invalid_url"),
    ],
)
def test_post_once_refuses_a_url_it_cannot_use_before_sending(url: str, reason: str) -> None:
    with pytest.raises(NotSentError) as caught:
        post_once(url, b"{}", {}, timeout_s=1.0)
    assert caught.value.reason == reason


def test_post_once_dns_failure_is_not_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_such_host(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    with pytest.raises(NotSentError) as caught:
        post_once("https://hooks.slack.example/services/T/B/x", b"{}", {}, timeout_s=1.0)
    assert caught.value.reason == "dns"


def test_slack_credentials_repr_hides_values() -> None:
    text = repr(SlackCredentials(webhook_url=WEBHOOK, bot_token=TOKEN))
    assert "SECRET" not in text
    assert "<set>" in text


# --------------------------------------------------------------------------------------------------
# pacing: at most one post per destination per second
# --------------------------------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 3))
        self.now += seconds


def test_pacer_spaces_posts_to_one_channel_and_not_across_channels() -> None:
    clock = Clock()
    pacer = Pacer(clock=clock, sleep=clock.sleep)
    transport = FakeTransport([])
    first = SlackSender("a", lambda f: SlackCredentials(webhook_url=WEBHOOK), transport=transport, pacer=pacer)
    other = SlackSender(
        "b", lambda f: SlackCredentials(webhook_url=WEBHOOK + "other"), transport=transport, pacer=pacer
    )
    first.send(MESSAGE)
    other.send(MESSAGE)  # another destination: no wait
    clock.now += 0.25
    first.send(MESSAGE)  # same destination 0.25 s later: waits the rest of the second
    assert clock.sleeps == [0.75]
    clock.now += 5
    first.send(MESSAGE)
    assert clock.sleeps == [0.75]
    assert len(transport.calls) == 4


def test_pacer_fails_retryably_instead_of_waiting_past_the_deadline() -> None:
    clock = Clock()
    pacer = Pacer(clock=clock, sleep=clock.sleep)
    slack = SlackSender(
        "a",
        lambda f: SlackCredentials(webhook_url=WEBHOOK),
        transport=FakeTransport([]),
        pacer=pacer,
        remaining_s=lambda: 0.5,
    )
    slack.send(MESSAGE)
    with pytest.raises(DeliveryError) as caught:
        slack.send(MESSAGE)
    assert (caught.value.retryable, caught.value.reason) == (True, "out_of_time")
    assert clock.sleeps == []


# --------------------------------------------------------------------------------------------------
# the factory wires config to senders
# --------------------------------------------------------------------------------------------------
@dataclass
class FakeSecrets:
    values: dict[str, str]
    reads: list[tuple[str, bool]] = field(default_factory=list)

    def get(self, ref: SecretRef, *, force_fetch: bool = False) -> str | None:
        self.reads.append((ref.parameter, force_fetch))
        return self.values.get(ref.parameter)


def test_sender_factory_builds_slack_and_email_senders_and_reads_secrets_at_send_time() -> None:
    secrets = FakeSecrets({"/spendwatch/slack/bot-token": TOKEN})
    build = sender_factory(secrets, environ={})
    slack = build("alerts", SlackChannelConfig(type="slack", channel="C0ALERTS"))
    assert isinstance(slack, SlackSender) and slack.kind == "slack"
    assert secrets.reads == [], "nothing is read until a message is sent"
    email = build("mail", EmailChannelConfig(type="email", sender="a@example.com", recipients=("b@example.com",)))
    assert isinstance(email, EmailSender) and email.kind == "email"


def test_sender_factory_credentials_force_fetch_reaches_the_secret_source(monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = FakeSecrets({"/spendwatch/slack/bot-token": TOKEN})
    build = sender_factory(secrets, environ={})
    slack = build("alerts", SlackChannelConfig(type="slack", channel="C0ALERTS"))
    assert isinstance(slack, SlackSender)
    transport = FakeTransport([SlackReply(200, "invalid_auth"), OK])
    monkeypatch.setattr(slack, "_transport", transport)
    slack.send(MESSAGE)
    assert ("/spendwatch/slack/bot-token", True) in secrets.reads
    assert ("/spendwatch/slack/webhook-url", True) in secrets.reads  # the webhook wins when it is set


def test_metric_reason_is_bounded() -> None:
    assert {
        "read_timeout",
        "connection_reset",
        "fatal_error",
        "http_504",
        "record_failed",
        "claim_busy",
    } <= KNOWN_REASONS
    assert metric_reason("channel_not_found") == "channel_not_found"
    assert metric_reason("MessageRejected") == "MessageRejected"
    assert metric_reason("http_503") == "http_503"
    assert metric_reason("anything the org typed") == "other"
