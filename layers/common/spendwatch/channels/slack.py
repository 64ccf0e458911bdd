"""Slack: an incoming webhook, or a bot token + chat.postMessage, with Slack's error semantics.

Slack is reached over `http.client` (`HttpSlackTransport` over `post_once`) rather than slack-sdk, whose
urllib stack does not let a hard deadline be kept and costs an import on the first send. The message is
the Block Kit payload `spendwatch.alerter.render.build_message` builds; its `text` and blocks are scrubbed
of every registered secret before they leave.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from spendwatch.channels.base import (
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_TIMEOUT_S,
    MIN_HTTP_TIMEOUT_S,
    NOT_SENT_REASONS,
    HttpAnswer,
    NotSentError,
    OutcomeUnknownError,
    Pacer,
    destination_key,
    post_once,
    retry_after,
)
from spendwatch.core.alerts import Message
from spendwatch.core.config import webhook_url_problem
from spendwatch.core.errors import DeliveryError, DeliveryUnknownError
from spendwatch.core.redact import scrub, scrub_data

SLACK_TIMEOUT_S = DEFAULT_TIMEOUT_S
"""The whole Slack request (connect, send, answer) must finish within this, and within the time left."""
SLACK_CONNECT_TIMEOUT_S = DEFAULT_CONNECT_TIMEOUT_S
SLACK_API_BASE_URL = "https://slack.com/api/"

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

SLACK_REASONS = PERMANENT_SLACK_ERRORS | TRANSIENT_SLACK_ERRORS | UNKNOWN_SLACK_ERRORS


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
