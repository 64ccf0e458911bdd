"""Delivering a digest with its chart: a Slack file upload, and an e-mail with the picture inline.

Both plug into the existing senders, so retries, time limits, credential re-reads, pacing and the
retryable/permanent verdicts are exactly those of alerts (`spendwatch.senders`):

- **Slack.** `DigestSlackTransport` is the `SlackSender`'s transport. With a bot token and a channel ID
  it uploads the picture the way slack-sdk's `files_upload_v2` does (`files.getUploadURLExternal`, a POST
  of the bytes to the returned URL, `files.completeUploadExternal` sharing the file into the channel with
  the digest's blocks: one message). A webhook cannot upload files, and `files.completeUploadExternal`
  takes channel IDs only, so otherwise it posts the digest without the picture (a sparkline and a line
  saying how to get the picture) the ordinary way. Upload URLs are never logged or put in an error.
- **E-mail.** `InlineImageSes` wraps the SES v2 client an `EmailSender` calls: it turns the sender's
  Simple content (subject, text, HTML) into one raw MIME message, `multipart/alternative` of the text and
  a `multipart/related` HTML part carrying the picture as `cid:spend-chart`, and sends that as
  `Content.Raw`. IAM authorizes SES v2 `SendEmail` with raw content as `ses:SendRawEmail`, which is the
  only SES action the digest function gets; every mail it sends (notices too) therefore goes out raw.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from email.message import EmailMessage
from email.policy import SMTP
from typing import Any

from spendwatch.digest_render import CHART_CID, DigestMessage
from spendwatch.render import Message
from spendwatch.senders import (
    _SLACK_SDK_LOGGER,
    SlackCredentials,
    SlackReply,
    SlackSdkTransport,
    _is_connection_error,
    retry_after,
)

CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{6,}$")
"""A Slack conversation ID (public, private, direct); names (`#spend`) cannot receive a file share."""


class DigestSlackTransport(SlackSdkTransport):
    """Uploads a digest's picture with its blocks when it can; else posts it without the picture."""

    def __init__(self, api_base_url: str | None = None) -> None:
        super().__init__(api_base_url)
        self.uploads = 0
        """pictures uploaded (for tests and logs)"""

    def __call__(self, creds: SlackCredentials, channel: str | None, message: Message, timeout: float) -> SlackReply:
        if not isinstance(message, DigestMessage):
            return super().__call__(creds, channel, message, timeout)
        can_upload = bool(message.chart_png) and not creds.webhook_url and bool(creds.bot_token)
        if not (can_upload and channel and CHANNEL_ID.fullmatch(channel)):
            return super().__call__(creds, channel, message.without_picture(), timeout)
        try:
            return self._upload(str(creds.bot_token), channel, message, timeout)
        except Exception as exc:  # urllib/socket/slack-sdk errors; their text can hold the upload URL
            return SlackReply(599, "connection", None) if _is_connection_error(exc) else SlackReply(599, "error")

    def _upload(self, token: str, channel: str, message: DigestMessage, timeout: float) -> SlackReply:
        import urllib.request  # noqa: PLC0415

        from slack_sdk import WebClient  # noqa: PLC0415
        from slack_sdk.errors import SlackApiError  # noqa: PLC0415

        assert message.chart_png is not None
        kwargs: dict[str, Any] = {"token": token, "timeout": int(max(1, timeout)), "logger": _SLACK_SDK_LOGGER}
        if self._api_base_url:
            kwargs["base_url"] = self._api_base_url
        client = WebClient(**kwargs)
        client.retry_handlers = []
        try:
            ticket = client.files_getUploadURLExternal(
                filename=message.chart_filename, length=len(message.chart_png), alt_txt=message.chart_alt
            )
            request = urllib.request.Request(  # noqa: S310 - the URL Slack just issued (https, or the local fake)
                str(ticket["upload_url"]), data=message.chart_png, method="POST"
            )
            with urllib.request.urlopen(request, timeout=max(1, timeout)) as response:  # noqa: S310
                status = response.status
            if status != 200:
                return SlackReply(status, f"http_{status}")
            client.files_completeUploadExternal(
                files=[{"id": str(ticket["file_id"]), "title": message.chart_alt[:250] or message.chart_filename}],
                channel_id=channel,
                blocks=json.dumps(list(message.blocks)),
            )
        except SlackApiError as exc:
            response_ = exc.response
            data = response_.data if isinstance(response_.data, dict) else {}
            error = data.get("error")
            code = str(error) if isinstance(error, str) and error else f"http_{response_.status_code}"
            return SlackReply(response_.status_code, code, retry_after(response_.headers))
        except OSError as exc:
            status = getattr(exc, "code", None)  # urllib's HTTPError carries the upload's status
            if isinstance(status, int):
                return SlackReply(status, f"http_{status}")
            raise
        self.uploads += 1
        return SlackReply(200, None)


def mime_message(
    *, sender: str, to: list[str], subject: str, text: str, html_body: str, images: Mapping[str, bytes]
) -> bytes:
    """text + HTML alternatives; the HTML part is `multipart/related` with each image as `cid:<name>`."""
    message = EmailMessage(policy=SMTP)
    message["Subject"] = " ".join(subject.split())
    message["From"] = sender
    message["To"] = ", ".join(to)
    message.set_content(text)
    message.add_alternative(html_body, subtype="html")
    if images:
        html_part = next(part for part in message.iter_parts() if part.get_content_type() == "text/html")
        for cid, data in images.items():
            html_part.add_related(data, maintype="image", subtype="png", cid=f"<{cid}>", filename=f"{cid}.png")
    return message.as_bytes()


class InlineImageSes:
    """An SES v2 client whose `send_email` sends raw MIME with the images inline (see the module docstring).

    Errors are the wrapped client's own (`ClientError`, `BotoCoreError`), so `EmailSender` classifies them.
    """

    def __init__(self, client: Callable[[], Any], images: Mapping[str, bytes] | None = None) -> None:
        self._client_factory = client
        self._client: Any = None
        self._images = dict(images or {})

    def send_email(self, **kwargs: Any) -> Any:
        simple = kwargs["Content"]["Simple"]
        to = list(kwargs["Destination"]["ToAddresses"])
        data = mime_message(
            sender=kwargs["FromEmailAddress"],
            to=to,
            subject=simple["Subject"]["Data"],
            text=simple["Body"]["Text"]["Data"],
            html_body=simple["Body"]["Html"]["Data"],
            images={cid: png for cid, png in self._images.items() if f"cid:{cid}" in simple["Body"]["Html"]["Data"]},
        )
        raw: dict[str, Any] = {
            "FromEmailAddress": kwargs["FromEmailAddress"],
            "Destination": {"ToAddresses": to},
            "Content": {"Raw": {"Data": data}},
        }
        if "ConfigurationSetName" in kwargs:
            raw["ConfigurationSetName"] = kwargs["ConfigurationSetName"]
        if self._client is None:
            self._client = self._client_factory()
        return self._client.send_email(**raw)


def chart_images(png: bytes | None) -> dict[str, bytes]:
    return {CHART_CID: png} if png else {}
