"""The digest's e-mail as raw MIME (the chart inline) and the choice between uploading and plain posting."""

from __future__ import annotations

import email
import email.policy
from typing import Any

import pytest

from spendwatch.channels.email import EmailSender
from spendwatch.channels.slack import SlackCredentials, SlackReply
from spendwatch.core.alerts import Message
from spendwatch.digest.delivery import CHANNEL_ID, DigestSlackTransport, InlineImageSes, mime_message
from spendwatch.digest.render import DigestMessage

PNG = b"\x89PNG\r\n\x1a\nchart"


class RecordingSes:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def send_email(self, **kwargs: Any) -> dict[str, str]:
        self.calls.append(kwargs)
        return {"MessageId": "m-1"}


def test_digest_email_goes_out_raw_with_the_chart_inline_and_the_configuration_set() -> None:
    ses = RecordingSes()
    sender = EmailSender(
        "mail",
        sender="spend@example.com",
        recipients=["a@example.com"],
        subject_prefix="[spendwatch]",
        configuration_set="alerts",
        client=lambda: InlineImageSes(lambda: ses, {"spend-chart": PNG, "unused": b"x"}),  # type: ignore[arg-type,return-value]
    )

    class Content:
        subject = "Daily OpenAI spend: Acme, 2026-11-20"
        text = "Spend\n- Yesterday: $1.00"
        html = '<p><img src="cid:spend-chart" alt="chart"></p><p>Yesterday: $1.00</p>'

    sender.send(Content())
    [call] = ses.calls
    assert set(call["Content"]) == {"Raw"}, "only raw content: the role has ses:SendRawEmail, not ses:SendEmail"
    assert call["ConfigurationSetName"] == "alerts"
    assert call["Destination"] == {"ToAddresses": ["a@example.com"]}
    mail = email.message_from_bytes(call["Content"]["Raw"]["Data"], policy=email.policy.default)
    assert mail["Subject"] == "[spendwatch] Daily OpenAI spend: Acme, 2026-11-20"
    parts = [part.get_content_type() for part in mail.walk()]
    assert parts == ["multipart/alternative", "text/plain", "multipart/related", "text/html", "image/png"]
    [image] = [part for part in mail.walk() if part.get_content_type() == "image/png"]
    assert image["Content-ID"] == "<spend-chart>" and image.get_payload(decode=True) == PNG


def test_mime_without_images_has_no_related_part() -> None:
    raw = mime_message(
        sender="s@example.com", to=["t@example.com"], subject="x", text="t", html_body="<p>h</p>", images={}
    )
    mail = email.message_from_bytes(raw)
    assert [p.get_content_type() for p in mail.walk()] == ["multipart/alternative", "text/plain", "text/html"]


def test_mime_subject_cannot_inject_headers() -> None:
    raw = mime_message(
        sender="s@example.com",
        to=["t@example.com"],
        subject="x\r\nBcc: evil@example.com",
        text="t",
        html_body="h",
        images={},
    )
    mail = email.message_from_bytes(raw)
    assert mail["Bcc"] is None


@pytest.mark.parametrize(
    ("channel", "is_id"), [("C0SIMALERT", True), ("G01ABCDEF", True), ("#spend", False), ("spend", False)]
)
def test_slack_channel_ids_are_told_from_names(channel: str, is_id: bool) -> None:
    assert bool(CHANNEL_ID.fullmatch(channel)) is is_id


def test_slack_transport_posts_without_picture_through_a_webhook(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Message] = []

    def plain_post(
        self: Any, creds: SlackCredentials, channel: str | None, message: Message, timeout: float
    ) -> SlackReply:
        seen.append(message)
        return SlackReply(200, None)

    monkeypatch.setattr("spendwatch.channels.slack.HttpSlackTransport.__call__", plain_post)
    message = DigestMessage(
        title="t",
        lines=(),
        text="digest",
        blocks=({"type": "image"},),
        chart_png=PNG,
        plain_blocks=({"type": "section"},),
        plain_text="digest",
    )
    transport = DigestSlackTransport()
    assert transport(SlackCredentials(webhook_url="https://hooks.example/x"), None, message, 5).status == 200
    assert transport(SlackCredentials(bot_token="xoxb-t"), "#spend", message, 5).status == 200
    assert [m.blocks for m in seen] == [({"type": "section"},), ({"type": "section"},)]
    assert transport.uploads == 0
