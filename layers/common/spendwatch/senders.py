"""Channels that deliver messages: Slack (incoming webhook or bot token + chat.postMessage).

Each sender either returns normally or raises `DeliveryError` saying whether a retry may help, in the
manner of Alertmanager's notifiers. Webhook URLs and tokens never appear in errors or logs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from spendwatch.errors import DeliveryError
from spendwatch.render import Message

SLACK_TIMEOUT_S = 10
PERMANENT_SLACK_ERRORS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "token_revoked",
        "token_expired",
        "account_inactive",
        "missing_scope",
        "no_permission",
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "msg_too_long",
        "no_text",
        "invalid_arguments",
        "invalid_blocks",
        "restricted_action",
        "invalid_payload",
        "no_service",
        "action_prohibited",
        "channel_is_archived",
        "user_not_found",
    }
)
AUTH_SLACK_ERRORS = frozenset({"invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive"})


class Sender(Protocol):
    name: str

    def send(self, message: Message) -> None: ...


class SlackSender:
    """Posts through slack-sdk; retries 429 (within the time left) and 5xx once."""

    def __init__(
        self,
        name: str,
        *,
        webhook_url: str | None = None,
        bot_token: str | None = None,
        channel: str | None = None,
        api_base_url: str | None = None,
        remaining_s: Callable[[], float] = lambda: 30.0,
        sleep: Callable[[float], None] = time.sleep,
        max_attempts: int = 3,
    ) -> None:
        if not webhook_url and not (bot_token and channel):
            raise DeliveryError(
                name,
                "no Slack webhook URL, and no bot token with a channel, is configured",
                retryable=False,
                reason="not_configured",
            )
        self.name = name
        self._webhook_url = webhook_url
        self._bot_token = bot_token
        self._channel = channel
        self._api_base_url = api_base_url
        self._remaining_s = remaining_s
        self._sleep = sleep
        self._max_attempts = max_attempts

    def send(self, message: Message) -> None:
        attempt = 0
        while True:
            attempt += 1
            status, error, retry_after = self._post(message)
            if status == 200 and error is None:
                return
            retryable = status == 429 or status >= 500 or error in {"ratelimited", "rate_limited", "connection"}
            if error in PERMANENT_SLACK_ERRORS:
                retryable = False
            if not retryable:
                raise DeliveryError(
                    self.name,
                    f"Slack refused the message ({status} {error})",
                    retryable=False,
                    reason=error or f"http_{status}",
                )
            wait = retry_after if retry_after is not None else float(2 ** (attempt - 1))
            if attempt >= self._max_attempts or wait > self._remaining_s():
                raise DeliveryError(
                    self.name,
                    f"Slack unavailable ({status} {error}) after {attempt} attempts",
                    retryable=True,
                    reason=error or f"http_{status}",
                )
            self._sleep(wait)

    def _post(self, message: Message) -> tuple[int, str | None, float | None]:
        """Returns (HTTP status, Slack error code or None, Retry-After seconds or None)."""
        blocks = [dict(b) for b in message.blocks]
        try:
            if self._webhook_url:
                from slack_sdk.webhook import WebhookClient  # noqa: PLC0415 - only senders pay this import

                webhook = WebhookClient(self._webhook_url, timeout=SLACK_TIMEOUT_S)
                response = webhook.send(text=message.text, blocks=blocks, unfurl_links=False, unfurl_media=False)
                body = (response.body or "").strip()
                error = (
                    None if response.status_code == 200 and body == "ok" else (body or f"http_{response.status_code}")
                )
                return response.status_code, error, _retry_after(response.headers)
            return self._post_web_api(message, blocks)
        except OSError as exc:
            # urllib raises URLError/socket errors; their text can include the webhook URL, so drop it.
            return 599, f"connection ({type(exc).__name__})", None

    def _post_web_api(self, message: Message, blocks: list[dict[str, object]]) -> tuple[int, str | None, float | None]:
        from slack_sdk import WebClient  # noqa: PLC0415
        from slack_sdk.errors import SlackApiError  # noqa: PLC0415

        kwargs = {"token": self._bot_token, "timeout": SLACK_TIMEOUT_S}
        if self._api_base_url:
            kwargs["base_url"] = self._api_base_url
        client = WebClient(**kwargs)  # type: ignore[arg-type]
        try:
            client.chat_postMessage(
                channel=str(self._channel), text=message.text, blocks=blocks, unfurl_links=False, unfurl_media=False
            )
        except SlackApiError as exc:
            response = exc.response
            error = response.get("error") if isinstance(response.data, dict) else None
            return response.status_code, str(error or f"http_{response.status_code}"), _retry_after(response.headers)
        return 200, None, None


def _retry_after(headers: object) -> float | None:
    if not isinstance(headers, dict):
        return None
    for key, value in headers.items():
        if str(key).lower() == "retry-after":
            raw = value[0] if isinstance(value, list) else value
            try:
                return max(0.0, float(raw))
            except (TypeError, ValueError):
                return None
    return None
