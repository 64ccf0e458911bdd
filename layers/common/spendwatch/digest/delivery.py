"""Delivering a digest with its chart: a Slack file upload, and an e-mail with the picture inline.

Both plug into the existing senders, so retries, time limits, credential re-reads, pacing and the
retryable/permanent verdicts are exactly those of alerts (`spendwatch.channels`):

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
from urllib.parse import urlencode

from spendwatch.channels.base import NotSentError, OutcomeUnknownError, post_once
from spendwatch.channels.slack import HttpSlackTransport, SlackCredentials, SlackReply, web_api_reply
from spendwatch.core.alerts import Message
from spendwatch.digest.render import CHART_CID, DigestMessage

CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{6,}$")
"""A Slack conversation ID (public, private, direct); names (`#spend`) cannot receive a file share."""
_FORM = "application/x-www-form-urlencoded; charset=utf-8"


class _StepFailedError(Exception):
    def __init__(self, reply: SlackReply) -> None:
        self.reply = reply
        super().__init__(reply.error)


class DigestSlackTransport(HttpSlackTransport):
    """Uploads a digest's picture with its blocks when it can; else posts it without the picture.

    The upload is three requests. Only the last one (`files.completeUploadExternal`) shares anything,
    so only its outcome can be unknown; a failure of the first two (announce, upload the bytes) leaves
    at most an unshared file behind and is reported as not delivered, i.e. safely retryable.
    """

    def __init__(self, api_base_url: str | None = None, **kwargs: Any) -> None:
        super().__init__(api_base_url, **kwargs)
        self.uploads = 0
        """pictures uploaded (for tests and logs)"""

    def __call__(self, creds: SlackCredentials, channel: str | None, message: Message, timeout: float) -> SlackReply:
        if not isinstance(message, DigestMessage):
            return super().__call__(creds, channel, message, timeout)
        can_upload = bool(message.chart_png) and not creds.webhook_url and bool(creds.bot_token)
        if not (can_upload and channel and CHANNEL_ID.fullmatch(channel)):
            return super().__call__(creds, channel, message.without_picture(), timeout)
        try:
            reply = self._upload(str(creds.bot_token), channel, message, timeout)
        except _StepFailedError as failed:
            return failed.reply
        except Exception:  # a bug before a request was built; its text could hold the upload URL
            return SlackReply(599, "error")
        if reply.status == 200 and reply.error is None:
            self.uploads += 1
        return reply

    def _post(self, url: str, body: bytes, headers: dict[str, str], timeout: float, *, shares: bool) -> bytes:
        try:
            answer = post_once(url, body, headers, timeout_s=timeout, connect_timeout_s=self._connect_timeout_s)
        except NotSentError as exc:
            raise _StepFailedError(SlackReply(599, exc.reason)) from None
        except OutcomeUnknownError as exc:
            # Before the share nothing can have reached the channel: a retry cannot duplicate a message.
            raise _StepFailedError(SlackReply(599, exc.reason, unknown=shares)) from None
        if shares or not (200 <= answer.status < 300):
            reply = web_api_reply(answer) if url.startswith(self._api_base_url) else None
            if reply is None:
                reply = SlackReply(answer.status, f"http_{answer.status}")
            if not (reply.status == 200 and reply.error is None):
                raise _StepFailedError(reply)
        return answer.body

    def _api(self, method: str, token: str, fields: dict[str, str], timeout: float, *, shares: bool) -> Any:
        url = self._api_base_url.rstrip("/") + "/" + method
        headers = {"Content-Type": _FORM, "Authorization": f"Bearer {token}"}
        body = self._post(url, urlencode(fields).encode(), headers, timeout, shares=shares)
        data = json.loads(body) if body else {}
        if not shares and not (isinstance(data, dict) and data.get("ok") is True):
            error = data.get("error") if isinstance(data, dict) else None
            raise _StepFailedError(SlackReply(200, error if isinstance(error, str) else "unreadable_reply"))
        return data

    def _upload(self, token: str, channel: str, message: DigestMessage, timeout: float) -> SlackReply:
        assert message.chart_png is not None
        ticket = self._api(
            "files.getUploadURLExternal",
            token,
            {"filename": message.chart_filename, "length": str(len(message.chart_png)), "alt_txt": message.chart_alt},
            timeout,
            shares=False,
        )
        upload_url, file_id = ticket.get("upload_url"), ticket.get("file_id")
        if not isinstance(upload_url, str) or not isinstance(file_id, str):
            return SlackReply(200, "unreadable_reply")
        self._post(upload_url, message.chart_png, {"Content-Type": "application/octet-stream"}, timeout, shares=False)
        files = [{"id": file_id, "title": message.chart_alt[:250] or message.chart_filename}]
        fields = {"files": json.dumps(files), "channel_id": channel, "blocks": json.dumps(list(message.blocks))}
        self._api("files.completeUploadExternal", token, fields, timeout, shares=True)
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
