"""Channels that deliver messages: Slack (incoming webhook, or bot token + chat.postMessage) and e-mail (SES v2).

Each sender either returns normally or raises `DeliveryError` saying whether a retry may help, in the
manner of Alertmanager's notifiers, with `reason` naming the cause (a Slack error code, an SES error
code, `http_503`, `connection`). Retries inside an invocation are short and bounded by the time left;
the stream's retries and the dead-letter queue do the rest. Webhook URLs and tokens never appear in
errors or logs: transport exceptions are reduced to their type name, and slack-sdk gets a silent logger
(its own log lines print the full request URL).
"""

from __future__ import annotations

import hashlib
import html
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from spendwatch.errors import DeliveryError
from spendwatch.render import Message, neutralize

if TYPE_CHECKING:
    from mypy_boto3_sesv2.client import SESV2Client

SLACK_TIMEOUT_S = 10.0
MIN_HTTP_TIMEOUT_S = 1.0
PACE_INTERVAL_S = 1.0
"""Slack: about one message per second per channel (chat.postMessage "special" tier)."""
SES_MAX_RECIPIENTS_PER_CALL = 50
"""SES accepts at most 50 recipients per message."""

AUTH_SLACK_ERRORS = frozenset({"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive"})
"""The credential is bad: re-read the secret once (it may have been rotated), then give up."""
REVOKED_WEBHOOK_ERRORS = frozenset({"no_service", "invalid_token"})
"""A webhook URL is its own credential: a revoked one answers 404 `no_service`; re-read it once too."""
DESTINATION_SLACK_ERRORS = frozenset(
    {
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "channel_is_archived",
        "restricted_action",
        "restricted_action_read_only_channel",
        "restricted_action_thread_only_channel",
        "restricted_action_non_threadable_channel",
        "action_prohibited",
        "user_not_found",
        "missing_scope",
        "no_permission",
        "team_access_not_granted",
        "ekm_access_denied",
    }
)
"""Slack will keep refusing until someone fixes the channel or the app's permissions."""
PAYLOAD_SLACK_ERRORS = frozenset(
    {
        "msg_too_long",
        "msg_blocks_too_long",
        "no_text",
        "invalid_arguments",
        "invalid_blocks",
        "invalid_blocks_format",
        "invalid_payload",
        "too_many_attachments",
        "invalid_json",
        "json_not_object",
    }
)
"""Our message is wrong (a bug): retrying the same payload cannot help."""
TRANSIENT_SLACK_ERRORS = frozenset(
    {"ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)
"""Retry. `fatal_error` may mean part of the post succeeded: a rare duplicate is preferred to a miss."""
PERMANENT_SLACK_ERRORS = AUTH_SLACK_ERRORS | REVOKED_WEBHOOK_ERRORS | DESTINATION_SLACK_ERRORS | PAYLOAD_SLACK_ERRORS

RETRYABLE_SES_ERRORS = frozenset(
    {
        "TooManyRequestsException",
        "Throttling",
        "ThrottlingException",
        "LimitExceededException",
        "InternalFailure",
        "InternalServerError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
PERMANENT_SES_ERRORS = frozenset(
    {
        "MessageRejected",
        "MailFromDomainNotVerifiedException",
        "MailFromDomainNotVerified",
        "SendingPausedException",
        "AccountSendingPausedException",
        "ConfigurationSetSendingPausedException",
        "AccountSuspendedException",
        "NotFoundException",
        "ConfigurationSetDoesNotExist",
        "BadRequestException",
        "AccessDeniedException",
        "AccessDenied",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "ValidationException",
    }
)

# Every reason a DeliveryError can carry is one of these, or "other": the reason is a metric dimension,
# and a CloudWatch metric costs $0.30 a month per distinct dimension value, so the set must stay bounded.
KNOWN_REASONS = (
    PERMANENT_SLACK_ERRORS
    | TRANSIENT_SLACK_ERRORS
    | RETRYABLE_SES_ERRORS
    | PERMANENT_SES_ERRORS
    | {"connection", "not_configured", "secret_unavailable", "out_of_time", "unsupported_channel", "error"}
    | {f"http_{code}" for code in (400, 401, 403, 404, 408, 410, 413, 429, 500, 502, 503, 504)}
)


def metric_reason(reason: str) -> str:
    """The reason as a bounded metric dimension value."""
    return reason if reason in KNOWN_REASONS else "other"


# slack-sdk logs the full request URL (the webhook's secret path) at INFO and the exception text at ERROR.
_SLACK_SDK_LOGGER = logging.getLogger("spendwatch.slack_sdk_silenced")
_SLACK_SDK_LOGGER.setLevel(logging.CRITICAL + 1)
_SLACK_SDK_LOGGER.propagate = False
_SLACK_SDK_LOGGER.addHandler(logging.NullHandler())


@dataclass(frozen=True)
class EmailBody:
    """An e-mail's content: the same text as plain text and as HTML."""

    subject: str
    text: str
    html: str


class EmailPayload(Protocol):
    """What `render.render_email` returns (`EmailContent`), matched structurally."""

    @property
    def subject(self) -> str: ...

    @property
    def text(self) -> str: ...

    @property
    def html(self) -> str: ...


class Sender(Protocol):
    name: str
    kind: str
    """`slack` or `email`: which payload the channel reads best (`render_email` output for `email`)."""

    def send(self, message: Message) -> None: ...


# ---------------------------------------------------------------------------------------------------
# pacing
# ---------------------------------------------------------------------------------------------------
class Pacer:
    """At most one post per destination per interval, shared by every sender of one warm container.

    Only waits when a second post to the same destination is unavoidable within an invocation (several
    records of one batch for one channel); the first post never waits.
    """

    def __init__(
        self,
        interval_s: float = PACE_INTERVAL_S,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._sleep = sleep
        self._last: dict[str, float] = {}

    def wait(self, key: str, remaining_s: Callable[[], float], channel: str) -> None:
        last = self._last.get(key)
        if last is None:
            return
        wait = last + self.interval_s - self._clock()
        if wait <= 0:
            return
        if wait >= remaining_s():
            raise DeliveryError(channel, "no time left to pace a second post", retryable=True, reason="out_of_time")
        self._sleep(wait)

    def mark(self, key: str) -> None:
        self._last[key] = self._clock()


def destination_key(secret_or_channel: str) -> str:
    """A pacing key that does not keep the webhook URL itself around."""
    return hashlib.sha256(secret_or_channel.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------------
# Slack
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SlackCredentials:
    webhook_url: str | None = None
    bot_token: str | None = None

    def __repr__(self) -> str:  # never print the secrets, even in a traceback's locals
        return (
            f"SlackCredentials(webhook_url={'<set>' if self.webhook_url else None}, "
            f"bot_token={'<set>' if self.bot_token else None})"
        )


@dataclass(frozen=True)
class SlackReply:
    status: int
    """HTTP status (599 for a connection failure that never got one)."""
    error: str | None
    """Slack's error code (or `connection`, `http_<status>`); None on success."""
    retry_after: float | None = None


SlackTransport = Callable[[SlackCredentials, str | None, Message, float], SlackReply]
"""(credentials, channel for the bot token, message, timeout seconds) -> reply. Must never raise."""


def classify_slack(reply: SlackReply) -> str:
    """`ok`, `rate_limited`, `transient`, `auth` (re-read the secret once) or `permanent`."""
    if reply.status == 200 and reply.error is None:
        return "ok"
    error = reply.error or f"http_{reply.status}"
    if reply.status == 429 or error in {"ratelimited", "rate_limited"}:
        return "rate_limited"
    if error in AUTH_SLACK_ERRORS or error in REVOKED_WEBHOOK_ERRORS:
        return "auth"
    if error in PERMANENT_SLACK_ERRORS:
        return "permanent"
    if reply.status >= 500 or error == "connection" or error in TRANSIENT_SLACK_ERRORS:
        return "transient"
    # Any other refusal (HTTP 4xx, or 200 with ok:false and an unknown code) will not change on retry.
    return "permanent"


class SlackSender:
    """Posts one message through slack-sdk with Slack's error semantics (reliability.md §5, A11, A13).

    - 429: waits `Retry-After` only when that fits in the time left, else fails retryably;
    - 5xx, `fatal_error`, connection errors: bounded retries with back-off (1 s, 2 s, …) within the time left;
    - `invalid_auth`/`token_revoked`/`not_authed` (and a webhook's 404 `no_service`): re-reads the secret once
      (`force_fetch`, a rotated credential) and retries; if it is refused again the failure is permanent;
    - destination and payload errors (`channel_not_found`, `is_archived`, webhook 404/410, …): permanent, no retry.
    """

    kind = "slack"

    def __init__(
        self,
        name: str,
        credentials: Callable[[bool], SlackCredentials],
        *,
        channel: str | None = None,
        transport: SlackTransport | None = None,
        api_base_url: str | None = None,
        remaining_s: Callable[[], float] = lambda: 30.0,
        sleep: Callable[[float], None] = time.sleep,
        pacer: Pacer | None = None,
        max_attempts: int = 3,
    ) -> None:
        self.name = name
        self._credentials = credentials
        self._channel = channel
        self._transport = transport or SlackSdkTransport(api_base_url)
        self._remaining_s = remaining_s
        self._sleep = sleep
        self._pacer = pacer
        self._max_attempts = max_attempts
        self.attempts = 0
        """HTTP requests made by the last `send` (for tests and logs)."""

    def _read_credentials(self, force: bool) -> SlackCredentials:
        try:
            creds = self._credentials(force)
        except DeliveryError:
            raise
        except Exception as exc:
            raise DeliveryError(
                self.name,
                f"cannot read the Slack secret ({type(exc).__name__})",
                retryable=True,
                reason="secret_unavailable",
            ) from None
        if not creds.webhook_url and not (creds.bot_token and self._channel):
            raise DeliveryError(
                self.name,
                "no Slack webhook URL, and no bot token with a channel, is configured",
                retryable=False,
                reason="not_configured",
            )
        return creds

    def send(self, message: Message) -> None:
        creds = self._read_credentials(False)
        refetched = False
        transient_failures = 0
        self.attempts = 0
        while True:
            key = destination_key(creds.webhook_url or f"{self._channel}")
            if self._pacer is not None:
                self._pacer.wait(key, self._remaining_s, self.name)
            timeout = max(MIN_HTTP_TIMEOUT_S, min(SLACK_TIMEOUT_S, self._remaining_s()))
            self.attempts += 1
            reply = self._transport(creds, self._channel, message, timeout)
            verdict = classify_slack(reply)
            if verdict == "ok":
                if self._pacer is not None:
                    self._pacer.mark(key)  # only posted messages count; a 429 carries its own Retry-After
                return
            reason = reply.error or f"http_{reply.status}"
            via = "webhook" if creds.webhook_url else "chat.postMessage"
            if verdict == "auth" and not refetched:
                refetched = True
                creds = self._read_credentials(True)
                continue
            if verdict in {"auth", "permanent"}:
                raise DeliveryError(
                    self.name,
                    f"Slack refused the message via {via} ({reply.status} {reason})",
                    retryable=False,
                    reason=reason,
                )
            if verdict == "rate_limited":
                wait = reply.retry_after if reply.retry_after is not None else 1.0
            else:
                transient_failures += 1
                wait = float(2 ** (transient_failures - 1))
            if self.attempts >= self._max_attempts or wait >= self._remaining_s():
                raise DeliveryError(
                    self.name,
                    f"Slack unavailable via {via} ({reply.status} {reason}) after {self.attempts} attempt(s)",
                    retryable=True,
                    reason=reason,
                )
            self._sleep(wait)


class SlackSdkTransport:
    """The real transport: slack-sdk's `WebhookClient` / `WebClient`, with its own retries switched off."""

    def __init__(self, api_base_url: str | None = None) -> None:
        self._api_base_url = api_base_url

    def __call__(self, creds: SlackCredentials, channel: str | None, message: Message, timeout: float) -> SlackReply:
        blocks = [dict(b) for b in message.blocks]
        try:
            if creds.webhook_url:
                return self._webhook(creds.webhook_url, message, blocks, timeout)
            return self._web_api(str(creds.bot_token), str(channel), message, blocks, timeout)
        except Exception as exc:  # urllib/socket/slack-sdk errors; their text can hold the URL
            return SlackReply(599, "connection", None) if _is_connection_error(exc) else SlackReply(599, "error")

    def _webhook(self, url: str, message: Message, blocks: list[dict[str, Any]], timeout: float) -> SlackReply:
        from slack_sdk.webhook import WebhookClient  # noqa: PLC0415 - only senders pay this import

        client = WebhookClient(url, timeout=int(max(1, timeout)), logger=_SLACK_SDK_LOGGER, retry_handlers=[])
        response = client.send(text=message.text, blocks=blocks, unfurl_links=False, unfurl_media=False)
        body = (response.body or "").strip()
        if response.status_code == 200 and body == "ok":
            return SlackReply(200, None)
        error = body if re.fullmatch(r"[a-z_]{1,64}", body) else f"http_{response.status_code}"
        return SlackReply(response.status_code, error, retry_after(response.headers))

    def _web_api(
        self, token: str, channel: str, message: Message, blocks: list[dict[str, Any]], timeout: float
    ) -> SlackReply:
        from slack_sdk import WebClient  # noqa: PLC0415
        from slack_sdk.errors import SlackApiError  # noqa: PLC0415

        kwargs: dict[str, Any] = {"token": token, "timeout": int(max(1, timeout)), "logger": _SLACK_SDK_LOGGER}
        if self._api_base_url:
            kwargs["base_url"] = self._api_base_url
        client = WebClient(**kwargs)
        client.retry_handlers = []
        try:
            client.chat_postMessage(
                channel=channel, text=message.text, blocks=blocks, unfurl_links=False, unfurl_media=False
            )
        except SlackApiError as exc:
            response = exc.response
            data = response.data if isinstance(response.data, dict) else {}
            error = data.get("error")
            code = str(error) if isinstance(error, str) and error else f"http_{response.status_code}"
            return SlackReply(response.status_code, code, retry_after(response.headers))
        return SlackReply(200, None)


def _is_connection_error(exc: BaseException) -> bool:
    return isinstance(exc, OSError | TimeoutError) or type(exc).__name__ in {"SlackRequestError", "URLError"}


def retry_after(headers: object) -> float | None:
    if not isinstance(headers, dict):
        return None
    for key, value in headers.items():
        if str(key).lower() == "retry-after":
            raw = value[0] if isinstance(value, list) and value else value
            try:
                return max(0.0, float(str(raw)))
            except (TypeError, ValueError):
                return None
    return None


# ---------------------------------------------------------------------------------------------------
# e-mail (SES v2)
# ---------------------------------------------------------------------------------------------------
_SLACK_LINK = re.compile(r"<(https?://[^|>]+)\|([^>]+)>")
_SLACK_TOKEN = re.compile(r"<[!@#][^>]*>\s?")
_LOOKALIKES_BACK = str.maketrans({"\u2217": "*", "\u02cd": "_", "\u223c": "~", "\u02cb": "`"})
EMAIL_SUBJECT_LIMIT = 200


def slack_to_plain(text: str) -> str:
    """Slack mrkdwn text as plain text: links as `label (url)`, mentions dropped, escapes undone.

    Untrusted values were escaped (`&lt;` …) when the message was built, so every raw `<…>` left is one
    of ours: a link or a configured mention. The lookalikes that stood for Slack's formatting characters go back to
    the characters (e-mail has no markup to protect).
    """
    text = _SLACK_LINK.sub(lambda m: f"{m[2]} ({m[1]})", text)
    text = _SLACK_TOKEN.sub("", text)
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return text.translate(_LOOKALIKES_BACK)


def email_from_message(message: Message) -> EmailBody:
    """The plain-text and HTML bodies of a message built for Slack (same lines in both).

    A notice carries its raw text (`raw_title`, `raw_lines`), which is used as is; any other message is
    read back from its Slack text. Either way every line is neutralized (no line break in the subject,
    no bidi override) and HTML-escaped in the HTML part.
    """
    if message.raw_title is not None:
        subject = message.raw_title
        body_lines = list(message.raw_lines)
    else:
        lines = [line.rstrip() for line in slack_to_plain(message.text).splitlines()]
        subject = slack_to_plain(message.title)
        body_lines = lines[1:] if lines and lines[0].strip() == subject.strip() else lines
    subject = _subject_line(subject)
    body_lines = [neutralize(line) for line in body_lines]
    text = "\n".join([subject, "", *body_lines]).strip() + "\n"
    items = "".join(f"<p>{html.escape(line)}</p>" for line in body_lines if line.strip())
    html_body = (
        '<!doctype html><html><body style="font-family: sans-serif">'
        f"<h2>{html.escape(subject)}</h2>{items}</body></html>"
    )
    return EmailBody(subject=subject, text=text, html=html_body)


def _subject_line(text: str) -> str:
    text = neutralize(text).strip()
    if len(text) <= EMAIL_SUBJECT_LIMIT:
        return text
    cut = text[: EMAIL_SUBJECT_LIMIT - 1]
    return cut + "\u2069" * max(0, cut.count("\u2068") - cut.count("\u2069")) + "…"


@dataclass(frozen=True)
class SesError:
    code: str
    retryable: bool


def classify_ses(code: str) -> SesError:
    if code in RETRYABLE_SES_ERRORS:
        return SesError(code, True)
    if code in PERMANENT_SES_ERRORS:
        return SesError(code, False)
    # Unknown codes: 5xx-style names retry, everything else is a request SES will keep refusing.
    return SesError(code, code.startswith("Internal") or code.startswith("ServiceUnavailable"))


SES_CONNECT_TIMEOUT_S = 5
SES_READ_TIMEOUT_S = 10
SES_CALL_BUDGET_S = SES_CONNECT_TIMEOUT_S + SES_READ_TIMEOUT_S
"""The longest one SendEmail call can take: no call starts with less time than this left."""


def default_ses_client() -> SESV2Client:
    import boto3  # noqa: PLC0415
    from botocore.config import Config  # noqa: PLC0415

    # Our own loop retries (bounded by the time left); botocore's would multiply it.
    config = Config(
        retries={"mode": "standard", "max_attempts": 1},
        connect_timeout=SES_CONNECT_TIMEOUT_S,
        read_timeout=SES_READ_TIMEOUT_S,
    )
    return boto3.client("sesv2", config=config)


class EmailSender:
    """Sends through Amazon SES v2 `SendEmail` (Simple content: text + HTML) from a verified identity.

    Throttling (`TooManyRequestsException`, `Throttling…`) and SES-side 5xx are retried with back-off
    within the time left, then fail retryably; rejections (`MessageRejected`, unverified MAIL FROM,
    sending paused, account suspended) are permanent and named in `reason`. At most 50 recipients go in
    one call.
    """

    kind = "email"

    def __init__(
        self,
        name: str,
        *,
        sender: str,
        recipients: Sequence[str],
        subject_prefix: str = "",
        configuration_set: str | None = None,
        client: Callable[[], SESV2Client] = default_ses_client,
        remaining_s: Callable[[], float] = lambda: 30.0,
        sleep: Callable[[float], None] = time.sleep,
        max_attempts: int = 3,
        max_recipients_per_call: int = SES_MAX_RECIPIENTS_PER_CALL,
    ) -> None:
        if not recipients:
            raise DeliveryError(name, "no recipients configured", retryable=False, reason="not_configured")
        self.name = name
        self._sender = sender
        self._recipients = tuple(recipients)
        self._prefix = subject_prefix
        self._configuration_set = configuration_set
        self._client_factory = client
        self._client: SESV2Client | None = None
        self._remaining_s = remaining_s
        self._sleep = sleep
        self._max_attempts = max_attempts
        self._chunk = max(1, min(max_recipients_per_call, SES_MAX_RECIPIENTS_PER_CALL))
        self.calls = 0

    def send(self, message: Message | EmailPayload) -> None:
        content = email_from_message(message) if isinstance(message, Message) else message
        subject = content.subject
        if self._prefix and not subject.startswith(self._prefix):
            if "spendwatch" in self._prefix.lower():
                subject = subject.removeprefix("spendwatch: ")  # "[spendwatch] spendwatch: …" says it twice
            subject = f"{self._prefix} {subject}"
        for start in range(0, len(self._recipients), self._chunk):
            self._send_one(self._recipients[start : start + self._chunk], subject, content.text, content.html)

    def _send_one(self, to: Sequence[str], subject: str, text: str, html_body: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

        kwargs: dict[str, Any] = {
            "FromEmailAddress": self._sender,
            "Destination": {"ToAddresses": list(to)},
            "Content": {
                "Simple": {
                    "Subject": {"Data": subject[:900], "Charset": "UTF-8"},
                    "Body": {
                        "Text": {"Data": text, "Charset": "UTF-8"},
                        "Html": {"Data": html_body, "Charset": "UTF-8"},
                    },
                }
            },
        }
        if self._configuration_set:
            kwargs["ConfigurationSetName"] = self._configuration_set
        attempt = 0
        while True:
            attempt += 1
            if self._remaining_s() < SES_CALL_BUDGET_S:
                # A call that outlives the invocation would fail the whole batch; fail this record instead.
                raise DeliveryError(
                    self.name,
                    "too little time left for an SES call (out_of_time)",
                    retryable=True,
                    reason="out_of_time",
                )
            self.calls += 1
            try:
                if self._client is None:
                    self._client = self._client_factory()
                self._client.send_email(**kwargs)
                return
            except ClientError as exc:
                error = classify_ses(str(exc.response.get("Error", {}).get("Code", "error")))
            except BotoCoreError as exc:  # endpoint unreachable, read timeout, no credentials
                retryable = type(exc).__name__ not in {"NoCredentialsError", "NoRegionError", "ParamValidationError"}
                error = SesError("connection" if retryable else "error", retryable)
            if not error.retryable:
                raise DeliveryError(
                    self.name, f"SES rejected the message ({error.code})", retryable=False, reason=error.code
                )
            wait = float(2 ** (attempt - 1))
            if attempt >= self._max_attempts or wait + SES_CALL_BUDGET_S >= self._remaining_s():
                raise DeliveryError(
                    self.name,
                    f"SES unavailable ({error.code}) after {attempt} attempt(s)",
                    retryable=True,
                    reason=error.code,
                )
            self._sleep(wait)
