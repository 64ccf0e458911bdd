"""Delivery errors carry their fix, and a malformed webhook URL is a configuration error, never a retry."""

from __future__ import annotations

import pytest

from spendwatch.channels.reasons import KNOWN_REASONS
from spendwatch.channels.slack import HttpSlackTransport, SlackCredentials, SlackSender
from spendwatch.core.alerts import Message
from spendwatch.core.errors import DeliveryError, DeliveryUnknownError
from spendwatch.core.remedies import DELIVERY_FIXES

MESSAGE = Message(title="t", lines=("l",), text="t\nl", blocks=())


@pytest.mark.parametrize(
    ("reason", "words"),
    [
        ("not_in_channel", "invite the Slack app to the channel"),
        ("no_service", "create a new incoming webhook"),
        ("invalid_url", "store the URL exactly as Slack shows it"),
        ("token_revoked", "reinstall the Slack app"),
        ("missing_scope", "chat:write"),
        ("MessageRejected", "aws sesv2 create-email-identity"),
    ],
)
def test_delivery_error_permanent_failure_names_its_fix(reason: str, words: str) -> None:
    error = DeliveryError("alerts", "Slack refused the message", retryable=False, reason=reason)
    assert error.fix is not None and words in error.fix
    assert str(error).endswith(f"(permanent); fix: {error.fix}")


def test_delivery_error_retryable_or_unknown_failure_has_no_fix() -> None:
    assert DeliveryError("alerts", "Slack unavailable", retryable=True, reason="http_503").fix is None
    assert DeliveryUnknownError("alerts", "no answer", reason="read_timeout").fix is None
    assert "fix:" not in str(DeliveryError("alerts", "odd", retryable=False, reason="some_new_error"))


def test_remedies_cover_only_reasons_a_sender_can_report() -> None:
    assert set(DELIVERY_FIXES) <= KNOWN_REASONS


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.slack.com/services/T000/B000/SECRETpath\n",  # `file://` of a file with a line break
        " https://hooks.slack.com/services/T000/B000/SECRETpath",
        "https://hooks.slack.com/T000/B000/SECRETpath",
        "https://example.com/services/T000/B000/SECRETpath",
    ],
)
def test_slack_sender_malformed_webhook_url_is_a_permanent_config_error(url: str) -> None:
    reads: list[bool] = []
    posts: list[str] = []

    def credentials(force: bool) -> SlackCredentials:
        reads.append(force)
        return SlackCredentials(webhook_url=url)

    def transport(creds: SlackCredentials, channel: str | None, message: Message, timeout: float) -> object:
        posts.append("post")
        return HttpSlackTransport()(creds, channel, message, timeout)

    sender = SlackSender("alerts", credentials, transport=transport, sleep=lambda _: None)  # type: ignore[arg-type]
    with pytest.raises(DeliveryError) as caught:
        sender.send(MESSAGE)
    assert (caught.value.reason, caught.value.retryable) == ("invalid_url", False)
    assert caught.value.fix is not None and "hooks.slack.com/services" in caught.value.fix
    assert reads == [False, True], "re-read past the cache once: it may just have been fixed"
    assert posts == [], "nothing is sent to a URL Slack never issued"
    assert "SECRETpath" not in str(caught.value)


def test_slack_sender_webhook_url_fixed_in_ssm_is_used_after_one_reread() -> None:
    good = "https://hooks.slack.com/services/T000/B000/SECRETpath"
    stored = iter([good + "\n", good])
    sent: list[str | None] = []

    def transport(creds: SlackCredentials, channel: str | None, message: Message, timeout: float) -> object:
        from spendwatch.channels.slack import SlackReply

        sent.append(creds.webhook_url)
        return SlackReply(200, None)

    sender = SlackSender("alerts", lambda force: SlackCredentials(webhook_url=next(stored)), transport=transport)  # type: ignore[arg-type]
    sender.send(MESSAGE)
    assert sent == [good]
