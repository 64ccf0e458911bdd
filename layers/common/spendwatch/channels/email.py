"""E-mail through Amazon SES v2 `SendEmail`, with SES's error semantics.

An alert arrives as `render_email` output (subject, text, HTML); a notice or test message arrives as a
`Message` and is read back from its raw text (`email_from_message`). boto3 is imported on the first send
only, so the functions that never e-mail do not pay for it.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from spendwatch.core.alerts import Message
from spendwatch.core.errors import DeliveryError, DeliveryUnknownError
from spendwatch.core.redact import scrub
from spendwatch.core.text import neutralize

if TYPE_CHECKING:
    from mypy_boto3_sesv2.client import SESV2Client

SES_MAX_RECIPIENTS_PER_CALL = 50
"""SES accepts at most 50 recipients per message."""

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

SES_REASONS = RETRYABLE_SES_ERRORS | PERMANENT_SES_ERRORS


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


def unknown_reason(exc: Exception) -> str:
    name = type(exc).__name__
    return "read_timeout" if "ReadTimeout" in name else "tls_after_send" if name == "SSLError" else "connection_reset"


def _ses_error(code: str, status: object) -> SesError:
    error = classify_ses(code)
    if isinstance(status, int) and status >= 500 and not error.retryable:
        # An HTML or empty 5xx gives botocore no error code ("503"): it is SES failing, not refusing.
        return SesError(f"http_{status}", True)
    return error


def call_with_retries(
    name: str,
    service: str,
    call: Callable[[], object],
    classify: Callable[[str, object], SesError],
    *,
    did: str,
    refused: str,
    attempts: int,
    call_budget_s: float,
    remaining_s: Callable[[], float],
    sleep: Callable[[float], None],
    counted: Callable[[], None],
) -> None:
    """One AWS API call (SES's SendEmail, SNS's Publish) with the three delivery outcomes.

    Retried with backoff while the error proves nothing was delivered and time is left; a gateway timeout
    or a request that went out without an answer is an unknown outcome, never retried here (`did`: what
    the service may have done); a refusal is permanent. `classify` names an API error from its code and
    HTTP status.
    """
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    attempt = 0
    while True:
        attempt += 1
        if remaining_s() < call_budget_s:
            # A call that outlives the invocation would fail the whole batch; fail this record instead.
            raise DeliveryError(
                name, f"too little time left for an {service} call (out_of_time)", retryable=True, reason="out_of_time"
            )
        counted()
        try:
            call()
            return
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 504:
                raise DeliveryUnknownError(
                    name, f"{service}'s gateway timed out (http_504); {service} may have {did} it", reason="http_504"
                ) from None
            error = classify(str(exc.response.get("Error", {}).get("Code", "error")), status)
        except BotoCoreError as exc:  # endpoint unreachable, read timeout, no credentials
            classified = classify_botocore(exc)
            if classified is None:
                reason = unknown_reason(exc)
                raise DeliveryUnknownError(
                    name,
                    f"{service} did not answer after the request was sent ({reason}); it may have {did} the "
                    "message, so it is not retried now",
                    reason=reason,
                ) from None
            error = classified
        if not error.retryable:
            raise DeliveryError(
                name, f"{service} {refused} the message ({error.code})", retryable=False, reason=error.code
            )
        wait = float(2 ** (attempt - 1))
        if attempt >= attempts or wait + call_budget_s >= remaining_s():
            raise DeliveryError(
                name,
                f"{service} unavailable ({error.code}) after {attempt} attempt(s)",
                retryable=True,
                reason=error.code,
            )
        sleep(wait)


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
        call_with_retries(
            self.name,
            "SES",
            lambda: self._api().send_email(**kwargs),
            _ses_error,
            did="accepted",
            refused="rejected",
            attempts=self._max_attempts,
            call_budget_s=self._call_budget_s,
            remaining_s=self._remaining_s,
            sleep=self._sleep,
            counted=self._count_call,
        )

    def _api(self) -> SESV2Client:
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    def _count_call(self) -> None:
        self.calls += 1
