"""Channels that deliver messages: Slack (incoming webhook, or bot token + chat.postMessage) and e-mail (SES v2).

Every send ends in one of three outcomes, in the manner of Alertmanager's notifiers:
- **delivered**: `send` returns;
- **not delivered**, provably (no connection, DNS, connect timeout, TLS handshake, the request not fully
  sent, or an answer refusing it): `DeliveryError`, `retryable` or permanent, `reason` naming the cause
  (a Slack error code, an SES error code, `http_503`, `connection`, `dns`, `connect_timeout`, `tls`);
- **unknown** (the request went out but no answer confirms it: a read timeout or a connection closed
  after sending, Slack's `fatal_error`, a gateway's 504, botocore's `ReadTimeoutError`):
  `DeliveryUnknownError`. It is never retried here: a slow Slack that records the post and answers
  after the timeout would get one copy per retry. The caller records it as sent but unconfirmed.

Retries inside an invocation are short and bounded by the time left; the stream's retries and the
dead-letter queue do the rest. Slack is reached over `http.client` (`HttpSlackTransport`) rather than
slack-sdk, whose urllib stack does not let a hard deadline be kept and costs an import on the first
send. Webhook URLs and tokens never appear in errors or logs: transport exceptions are reduced to a
reason name.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from http.client import HTTPConnection, HTTPSConnection
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

from spendwatch.alerter.render import Message, neutralize
from spendwatch.core.config import webhook_url_problem
from spendwatch.core.errors import DeliveryError, DeliveryUnknownError
from spendwatch.core.redact import scrub, scrub_data

if TYPE_CHECKING:
    from mypy_boto3_sesv2.client import SESV2Client

SLACK_TIMEOUT_S = 10.0
"""The whole Slack request (connect, send, answer) must finish within this, and within the time left."""
SLACK_CONNECT_TIMEOUT_S = 3.0
MIN_HTTP_TIMEOUT_S = 1.0
SLACK_API_BASE_URL = "https://slack.com/api/"
MAX_REPLY_BYTES = 64 * 1024
PACE_INTERVAL_S = 1.0
"""Slack: about one message per second per channel (chat.postMessage "special" tier)."""
SES_MAX_RECIPIENTS_PER_CALL = 50
"""SES accepts at most 50 recipients per message."""

AUTH_SLACK_ERRORS = frozenset({"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive"})
"""The credential is bad: re-read the secret once (it may have been rotated), then give up."""
REVOKED_WEBHOOK_ERRORS = frozenset({"no_service", "invalid_token", "invalid_url"})
"""A webhook URL is its own credential: a revoked one answers 404 `no_service` (and one that is not a URL
cannot be used at all); re-read it once too."""
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
TRANSIENT_SLACK_ERRORS = frozenset({"ratelimited", "rate_limited", "service_unavailable", "request_timeout"})
"""Slack answered that it did not take the message this time: retry."""
UNKNOWN_SLACK_ERRORS = frozenset({"fatal_error", "internal_error"})
"""Slack documents both: "it's possible some aspect of the operation succeeded before the error was raised"."""
PERMANENT_SLACK_ERRORS = AUTH_SLACK_ERRORS | REVOKED_WEBHOOK_ERRORS | DESTINATION_SLACK_ERRORS | PAYLOAD_SLACK_ERRORS

NOT_SENT_REASONS = frozenset({"connection", "dns", "connect_timeout", "tls"})
"""The request provably did not reach the receiver (connect, DNS, TLS handshake, or sending failed)."""
UNKNOWN_OUTCOME_REASONS = frozenset(
    {"read_timeout", "connection_reset", "unreadable_reply", "http_504", "tls_after_send"}
)
"""The request was sent; no answer says whether it was acted on."""

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
    | UNKNOWN_SLACK_ERRORS
    | NOT_SENT_REASONS
    | UNKNOWN_OUTCOME_REASONS
    | {"not_configured", "secret_unavailable", "out_of_time", "unsupported_channel", "error", "invalid_url"}
    | {"claim_busy", "record_failed"}
    | {f"http_{code}" for code in (400, 401, 403, 404, 408, 410, 413, 429, 500, 502, 503, 504)}
)


def metric_reason(reason: str) -> str:
    """The reason as a bounded metric dimension value."""
    return reason if reason in KNOWN_REASONS else "other"


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
    """HTTP status (599 when no answer was read)."""
    error: str | None
    """Slack's error code (or `connection`, `read_timeout`, `http_<status>`, …); None on success."""
    retry_after: float | None = None
    unknown: bool = False
    """The request was sent but no answer says whether Slack acted on it."""


SlackTransport = Callable[[SlackCredentials, str | None, Message, float], SlackReply]
"""(credentials, channel for the bot token, message, timeout seconds) -> reply. Must never raise."""


def classify_slack(reply: SlackReply) -> str:
    """`ok`, `unknown` (may have been delivered: never retried), `rate_limited`, `transient`, `auth`
    (re-read the secret once) or `permanent`."""
    if reply.status == 200 and reply.error is None:
        return "ok"
    error = reply.error or f"http_{reply.status}"
    verdicts = (
        (reply.unknown or reply.status == 504 or error in UNKNOWN_SLACK_ERRORS, "unknown"),
        (reply.status == 429 or error in {"ratelimited", "rate_limited"}, "rate_limited"),
        (error in AUTH_SLACK_ERRORS or error in REVOKED_WEBHOOK_ERRORS, "auth"),
        (error in PERMANENT_SLACK_ERRORS, "permanent"),
        (reply.status >= 500 or error in NOT_SENT_REASONS or error in TRANSIENT_SLACK_ERRORS, "transient"),
    )
    # Any other refusal (HTTP 4xx, or 200 with ok:false and an unknown code) will not change on retry.
    return next((verdict for matched, verdict in verdicts if matched), "permanent")


class SlackSender:
    """Posts one message with Slack's error semantics (reliability.md §5, A11, A13).

    - delivery unknown (read timeout or connection closed after the request was sent, `fatal_error`,
      HTTP 504): `DeliveryUnknownError` at once, never a retry (the post may be in the channel already);
    - 429: waits `Retry-After` only when that fits in the time left, else fails retryably;
    - 5xx and failures before the request was sent (refused, DNS, connect timeout, TLS): bounded retries
      with back-off (1 s, 2 s, …) within the time left;
    - `invalid_auth`/`token_revoked`/`not_authed` (and a webhook's 404 `no_service`): re-reads the secret once
      (`force_fetch`, a rotated credential) and retries; if it is refused again the failure is permanent;
    - destination and payload errors (`channel_not_found`, `is_archived`, webhook 404/410, …): permanent, no retry.

    `timeout_s` bounds each request as a whole (and `connect_timeout_s` its connection), never past the
    time left; tests set them to a second or less.
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
        timeout_s: float = SLACK_TIMEOUT_S,
        connect_timeout_s: float = SLACK_CONNECT_TIMEOUT_S,
    ) -> None:
        self.name = name
        self._credentials = credentials
        self._channel = channel
        self._transport = transport or HttpSlackTransport(api_base_url, connect_timeout_s=connect_timeout_s)
        self._remaining_s = remaining_s
        self._sleep = sleep
        self._pacer = pacer
        self._max_attempts = max_attempts
        self._timeout_s = timeout_s
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
        problem = webhook_url_problem(creds.webhook_url) if creds.webhook_url else None
        if problem and not force:
            return self._read_credentials(True)  # it may have just been fixed: read past the cache once
        if problem:
            # A stored value that is not a webhook URL (a pasted line break, the wrong URL) is a configuration
            # error, not a delivery that might work on retry: http.client would refuse it as "connection".
            raise DeliveryError(
                self.name,
                f"the stored webhook URL is not a Slack incoming-webhook URL: {problem}",
                retryable=False,
                reason="invalid_url",
            )
        return creds

    def _timeout(self) -> float:
        floor = min(MIN_HTTP_TIMEOUT_S, self._timeout_s)
        return max(floor, min(self._timeout_s, self._remaining_s()))

    def send(self, message: Message) -> None:
        creds = self._read_credentials(False)
        # Whatever a message quotes (a receiver's error, a name), no secret this process read leaves in it.
        message = replace(message, text=scrub(message.text, shapes=False), blocks=scrub_data(message.blocks))
        refetched = False
        transient_failures = 0
        self.attempts = 0
        while True:
            key = destination_key(creds.webhook_url or f"{self._channel}")
            if self._pacer is not None:
                self._pacer.wait(key, self._remaining_s, self.name)
            self.attempts += 1
            reply = self._transport(creds, self._channel, message, self._timeout())
            verdict = classify_slack(reply)
            if verdict in {"ok", "unknown"} and self._pacer is not None:
                self._pacer.mark(key)  # only (possibly) posted messages count; a 429 carries its own Retry-After
            if verdict == "ok":
                return
            reason = reply.error or f"http_{reply.status}"
            via = "webhook" if creds.webhook_url else "chat.postMessage"
            if verdict == "unknown":
                raise DeliveryUnknownError(
                    self.name,
                    f"Slack did not confirm the message via {via} ({reply.status} {reason}); it may have been "
                    "delivered, so it is not retried now",
                    reason=reason,
                )
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


# ---------------------------------------------------------------------------------------------------
# HTTP: one POST whose failure says whether the request left
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: dict[str, str]
    """lower-cased names"""
    body: bytes


class NotSentError(Exception):
    """The request provably did not reach the receiver: resending cannot duplicate it."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class OutcomeUnknownError(Exception):
    """The request was sent (or may have been) and no answer was read."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


_ssl_context: ssl.SSLContext | None = None


def _tls() -> ssl.SSLContext:
    global _ssl_context  # noqa: PLW0603 - loading the CA bundle once per container is the point
    if _ssl_context is None:
        _ssl_context = ssl.create_default_context()
    return _ssl_context


def post_once(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    timeout_s: float,
    connect_timeout_s: float = SLACK_CONNECT_TIMEOUT_S,
) -> HttpAnswer:
    """POST `body` to `url` once, on a fresh connection, and finish within `timeout_s` whatever the peer does.

    The phases are kept apart so a failure can be classified: connecting (TCP and the whole TLS
    handshake) and sending the request raise `NotSentError` (a request not fully sent cannot have been
    acted on; the body goes out in one write with the headers); anything after the last byte was handed
    to the kernel (no answer in time, the connection closed or reset, a garbled answer) raises
    `OutcomeUnknownError`. A timer shuts the socket at the deadline, so a peer that drips its answer
    byte by byte cannot hold the invocation past it. Exceptions carry a reason name only: the URL is a
    secret (a webhook's path is its credential).
    """
    deadline = time.monotonic() + timeout_s
    connection, target = _connect(url, max(0.001, min(connect_timeout_s, timeout_s)))
    try:
        sock = connection.sock
        try:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            connection.request("POST", target, body=body, headers={**headers, "Connection": "close"})
        except Exception:  # the request was not fully handed to the kernel
            raise NotSentError("connection") from None
        return _answer(connection, sock, deadline)
    finally:
        connection.close()


def _connect(url: str, timeout_s: float) -> tuple[HTTPConnection, str]:
    """An open connection (TCP, and TLS completed) and the request target; `NotSentError` otherwise."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = -1
    if parts.scheme not in {"http", "https"} or not parts.hostname or port == -1:
        raise NotSentError("invalid_url")
    connection: HTTPConnection = (
        HTTPSConnection(parts.hostname, port, timeout=timeout_s, context=_tls())
        if parts.scheme == "https"
        else HTTPConnection(parts.hostname, port, timeout=timeout_s)
    )
    try:
        connection.connect()
    except socket.gaierror:
        raise NotSentError("dns") from None
    except ssl.SSLError:
        raise NotSentError("tls") from None
    except TimeoutError:
        raise NotSentError("connect_timeout") from None
    except OSError:
        raise NotSentError("connection") from None
    return connection, (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def _answer(connection: HTTPConnection, sock: socket.socket, deadline: float) -> HttpAnswer:
    """Read the answer before `deadline`; any failure here leaves the outcome unknown."""
    timed_out = threading.Event()

    def abort() -> None:
        timed_out.set()
        with contextlib.suppress(OSError):  # socket.socket's own shutdown: an SSLSocket's drops its state
            socket.socket.shutdown(sock, socket.SHUT_RDWR)

    guard = threading.Timer(max(0.0, deadline - time.monotonic()), abort)
    guard.daemon = True
    guard.start()
    try:
        response = connection.getresponse()
        data = response.read(MAX_REPLY_BYTES)
    except TimeoutError:
        raise OutcomeUnknownError("read_timeout") from None
    except Exception:  # closed, reset, garbled, or shut by the guard
        raise OutcomeUnknownError("read_timeout" if timed_out.is_set() else "connection_reset") from None
    finally:
        guard.cancel()
    return HttpAnswer(response.status, {k.lower(): v for k, v in response.getheaders()}, data)


_ERROR_CODE = re.compile(r"[a-z_]{1,64}")


class HttpSlackTransport:
    """The real transport: one `post_once` per attempt to the webhook URL or `chat.postMessage`."""

    def __init__(self, api_base_url: str | None = None, *, connect_timeout_s: float = SLACK_CONNECT_TIMEOUT_S) -> None:
        self._api_base_url = api_base_url or SLACK_API_BASE_URL
        self._connect_timeout_s = connect_timeout_s

    def __call__(self, creds: SlackCredentials, channel: str | None, message: Message, timeout: float) -> SlackReply:
        payload: dict[str, Any] = {
            "text": message.text,
            "blocks": [dict(b) for b in message.blocks],
            "unfurl_links": False,
            "unfurl_media": False,
        }
        headers = {"Content-Type": "application/json; charset=utf-8"}
        if creds.webhook_url:
            url = creds.webhook_url
        else:
            url = self._api_base_url.rstrip("/") + "/chat.postMessage"
            payload["channel"] = channel
            headers["Authorization"] = f"Bearer {creds.bot_token}"
        try:
            answer = post_once(
                url,
                json.dumps(payload).encode(),
                headers,
                timeout_s=timeout,
                connect_timeout_s=self._connect_timeout_s,
            )
        except NotSentError as exc:
            return SlackReply(599, exc.reason)
        except OutcomeUnknownError as exc:
            return SlackReply(599, exc.reason, unknown=True)
        except Exception:  # a bug before the request was built; its text could hold the URL
            return SlackReply(599, "error")
        return webhook_reply(answer) if creds.webhook_url else web_api_reply(answer)


def webhook_reply(answer: HttpAnswer) -> SlackReply:
    """Incoming webhooks answer `ok` (text/plain), or an HTTP error status with the error code as the body."""
    body = answer.body.decode("utf-8", "replace").strip()
    if answer.status == 200 and body == "ok":
        return SlackReply(200, None)
    if _ERROR_CODE.fullmatch(body):
        return SlackReply(answer.status, body, retry_after(answer.headers))
    if answer.status == 200:
        return SlackReply(200, "unreadable_reply", unknown=True)  # a 200 we cannot read may be a success
    return SlackReply(answer.status, f"http_{answer.status}", retry_after(answer.headers))


def web_api_reply(answer: HttpAnswer) -> SlackReply:
    """The Web API answers JSON `{"ok": true}`, or `{"ok": false, "error": …}` (HTTP 200, or 429 when limited)."""
    try:
        data = json.loads(answer.body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        if answer.status == 200:
            return SlackReply(200, "unreadable_reply", unknown=True)
        return SlackReply(answer.status, f"http_{answer.status}", retry_after(answer.headers))
    if answer.status == 200 and data.get("ok") is True:
        return SlackReply(200, None)
    error = data.get("error")
    code = error if isinstance(error, str) and _ERROR_CODE.fullmatch(error) else f"http_{answer.status}"
    return SlackReply(answer.status, code, retry_after(answer.headers))


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


SES_CONNECT_TIMEOUT_S = 5.0
SES_READ_TIMEOUT_S = 10.0


def default_ses_client(
    *, connect_timeout_s: float = SES_CONNECT_TIMEOUT_S, read_timeout_s: float = SES_READ_TIMEOUT_S
) -> SESV2Client:
    import boto3  # noqa: PLC0415
    from botocore.config import Config  # noqa: PLC0415

    # Our own loop retries (bounded by the time left, and never after a read timeout); botocore's would
    # multiply it, and would resend a message whose answer merely came late. (`max_attempts` counts
    # retries: `max_attempts: 1` still let botocore send a timed-out SendEmail a second time.)
    config = Config(
        retries={"mode": "standard", "total_max_attempts": 1},
        connect_timeout=connect_timeout_s,
        read_timeout=read_timeout_s,
    )
    return boto3.client("sesv2", config=config)


def classify_botocore(exc: Exception) -> SesError | None:
    """A botocore transport error as a provable non-delivery (`SesError`), or None when the request
    went out and its outcome is unknown (read timeout, connection closed before the answer, …)."""
    from botocore import exceptions as bce  # noqa: PLC0415

    if isinstance(exc, bce.ConnectTimeoutError):
        return SesError("connect_timeout", True)
    if isinstance(exc, bce.SSLError):
        # botocore raises it for TLS failures while reading the answer too, after the request left.
        return None
    if isinstance(exc, bce.ConnectionError):  # EndpointConnectionError (refused, DNS), proxy: before sending
        return SesError("connection", True)
    if isinstance(exc, bce.HTTPClientError):  # ReadTimeoutError, ConnectionClosedError, anything mid-request
        return None
    # Raised before any request: credentials, region, parameters (a bug) are permanent.
    name = type(exc).__name__
    if name in {"NoCredentialsError", "NoRegionError", "ParamValidationError"}:
        return SesError("error", False)
    return SesError("connection", True)


def _unknown_reason(exc: Exception) -> str:
    name = type(exc).__name__
    return "read_timeout" if "ReadTimeout" in name else "tls_after_send" if name == "SSLError" else "connection_reset"


class EmailSender:
    """Sends through Amazon SES v2 `SendEmail` (Simple content: text + HTML) from a verified identity.

    Throttling (`TooManyRequestsException`, `Throttling…`), SES-side 5xx and failures to connect are
    retried with back-off within the time left, then fail retryably; rejections (`MessageRejected`,
    unverified MAIL FROM, sending paused, account suspended) are permanent and named in `reason`. A read
    timeout or a connection closed after the request was sent (and a gateway's 504) raise
    `DeliveryUnknownError` and are not retried: SES may have accepted the message. At most 50 recipients
    go in one call. `connect_timeout_s`/`read_timeout_s` bound each call (tests use a second or less).
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
        client: Callable[[], SESV2Client] | None = None,
        remaining_s: Callable[[], float] = lambda: 30.0,
        sleep: Callable[[float], None] = time.sleep,
        max_attempts: int = 3,
        max_recipients_per_call: int = SES_MAX_RECIPIENTS_PER_CALL,
        connect_timeout_s: float = SES_CONNECT_TIMEOUT_S,
        read_timeout_s: float = SES_READ_TIMEOUT_S,
    ) -> None:
        if not recipients:
            raise DeliveryError(name, "no recipients configured", retryable=False, reason="not_configured")
        self.name = name
        self._sender = sender
        self._recipients = tuple(recipients)
        self._prefix = subject_prefix
        self._configuration_set = configuration_set
        self._client_factory = client or (
            lambda: default_ses_client(connect_timeout_s=connect_timeout_s, read_timeout_s=read_timeout_s)
        )
        self._client: SESV2Client | None = None
        self._remaining_s = remaining_s
        self._sleep = sleep
        self._max_attempts = max_attempts
        self._chunk = max(1, min(max_recipients_per_call, SES_MAX_RECIPIENTS_PER_CALL))
        self._call_budget_s = connect_timeout_s + read_timeout_s
        """The longest one SendEmail call can take: no call starts with less time than this left."""
        self.calls = 0

    def send(self, message: Message | EmailPayload) -> None:
        content = email_from_message(message) if isinstance(message, Message) else message
        subject = content.subject
        if self._prefix and not subject.startswith(self._prefix):
            if "spendwatch" in self._prefix.lower():
                subject = subject.removeprefix("spendwatch: ")  # "[spendwatch] spendwatch: …" says it twice
            subject = f"{self._prefix} {subject}"
        subject, text, html_body = (scrub(part, shapes=False) for part in (subject, content.text, content.html))
        for start in range(0, len(self._recipients), self._chunk):
            self._send_one(self._recipients[start : start + self._chunk], subject, text, html_body)

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
            if self._remaining_s() < self._call_budget_s:
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
                if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 504:
                    raise DeliveryUnknownError(
                        self.name, "SES's gateway timed out (http_504); SES may have accepted it", reason="http_504"
                    ) from None
                error = classify_ses(str(exc.response.get("Error", {}).get("Code", "error")))
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
                if isinstance(status, int) and status >= 500 and not error.retryable:
                    # An HTML or empty 5xx gives botocore no error code ("503"): it is SES failing, not refusing.
                    error = SesError(f"http_{status}", True)
            except BotoCoreError as exc:  # endpoint unreachable, read timeout, no credentials
                classified = classify_botocore(exc)
                if classified is None:
                    reason = _unknown_reason(exc)
                    raise DeliveryUnknownError(
                        self.name,
                        f"SES did not answer after the request was sent ({reason}); it may have accepted the "
                        "message, so it is not retried now",
                        reason=reason,
                    ) from None
                error = classified
            if not error.retryable:
                raise DeliveryError(
                    self.name, f"SES rejected the message ({error.code})", retryable=False, reason=error.code
                )
            wait = float(2 ** (attempt - 1))
            if attempt >= self._max_attempts or wait + self._call_budget_s >= self._remaining_s():
                raise DeliveryError(
                    self.name,
                    f"SES unavailable ({error.code}) after {attempt} attempt(s)",
                    retryable=True,
                    reason=error.code,
                )
            self._sleep(wait)
