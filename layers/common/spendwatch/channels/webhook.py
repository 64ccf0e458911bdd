"""The generic webhook: a signed JSON POST whose payload follows a documented, versioned schema.

Payload (`spendwatch.alert/v1`, docs/channels.md "Webhook"): the event id, kind (`alert` or `notice`),
status (`firing`/`resolved`), the organization, each alert (key, rule, section, severity, status, reason,
level, what changed, its facts), the figures, and the snapshot's poll time and month-to-date spend.
Money is a decimal string (`"430.00"`), never a float. Names are JSON-escaped (`ensure_ascii`: every
non-ASCII character as `\\uXXXX`, so no receiver's parser is confused by line separators or bidi marks).

Signature (the scheme Stripe and Slack use): `X-Spendwatch-Timestamp: <unix seconds>` and
`X-Spendwatch-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`; a receiver recomputes it
with a constant-time compare and rejects a timestamp more than `REPLAY_WINDOW_S` from its clock. Each
attempt is signed afresh. `X-Spendwatch-Event-Id` is the same for every attempt and every re-send of one
message (it is derived from the organization and its alerts' keys, reasons and levels): a receiver that
remembers ids for the replay window drops duplicates.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from spendwatch.channels.base import (
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_TIMEOUT_S,
    HttpRequest,
    Pacer,
    deliver_http,
    destination_key,
    read_channel_secret,
)
from spendwatch.core.alerts import RULE_SECTION, Message, Reason, severity_of
from spendwatch.core.redact import scrub_data
from spendwatch.core.text import neutralize

SCHEMA = "spendwatch.alert/v1"
SCHEMA_VERSION = 1
REPLAY_WINDOW_S = 300
"""A receiver rejects a signature whose timestamp is further than this from its own clock."""
SIGNATURE_HEADER = "X-Spendwatch-Signature"
TIMESTAMP_HEADER = "X-Spendwatch-Timestamp"
EVENT_ID_HEADER = "X-Spendwatch-Event-Id"
USER_AGENT = "spendwatch-webhook/1"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value: `v1=` and the hex HMAC-SHA256 of `<timestamp>.<body>`."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"v1={mac.hexdigest()}"


def verify_signature(
    secret: str, timestamp: str, body: bytes, signature: str, *, now: float, window_s: int = REPLAY_WINDOW_S
) -> str | None:
    """What a receiver does, as a reference: None when valid, else why not (docs/channels.md)."""
    try:
        sent = int(timestamp)
    except ValueError:
        return "timestamp is not a number"
    if abs(now - sent) > window_s:
        return "timestamp outside the replay window"
    expected = sign(secret, sent, body)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        return "signature mismatch"
    return None


def json_value(value: Any) -> Any:
    """Facts as JSON: Decimals as exact strings, None as null, everything else as one line of text."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return format(value, "f")
    return neutralize(str(value))


def event_id(message: Message) -> str:
    """Stable across attempts and re-sends of one message: what a receiver deduplicates by."""
    org = message.snapshot.org_id if message.snapshot is not None else ""
    parts = [org, *(f"{a.observation.key}|{a.reason.value}|{a.level}" for a in message.alerts)]
    if not message.alerts:
        parts.append(message.raw_title or message.title)
        parts += list(message.raw_lines)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def webhook_payload(message: Message, *, now: datetime) -> dict[str, Any]:
    """The `spendwatch.alert/v1` document of one message (an alert message or a notice)."""
    content = message.content
    snapshot = message.snapshot
    descriptions = dict(content.alert_lines) if content is not None else {}
    alerts = []
    for alert in message.alerts:
        obs = alert.observation
        resolved = alert.reason is Reason.RESOLVED and alert.level is None
        alerts.append(
            {
                "key": obs.key,
                "rule": obs.rule_id,
                "section": RULE_SECTION.get(obs.rule_id, obs.rule_id),
                "severity": severity_of(obs.rule_id, alert.level),
                "status": "resolved" if resolved else "firing",
                "reason": alert.reason.value,
                "level": json_value(alert.level),
                "level_label": obs.label(alert.level),
                "description": neutralize(descriptions.get(obs.key, obs.summary)),
                "facts": {name: json_value(value) for name, value in sorted(obs.facts.items())},
            }
        )
    firing = any(a["status"] == "firing" for a in alerts)
    title = content.title if content is not None else (message.raw_title or message.title)
    lines = content.lines if content is not None else message.raw_lines
    document: dict[str, Any] = {
        "schema": SCHEMA,
        "version": SCHEMA_VERSION,
        "id": event_id(message),
        "kind": "alert" if message.alerts else "notice",
        "status": "firing" if firing or (not message.alerts and message.notice_firing) else "resolved",
        "sent_at": now.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "org": (
            {"id": snapshot.org_id, "name": neutralize(snapshot.org_name)}
            if snapshot is not None
            else ({"id": message.org.id, "name": neutralize(message.org.name)} if message.org is not None else None)
        ),
        "title": neutralize(title),
        "lines": [neutralize(line) for line in lines],
        "alerts": alerts,
        "figures": [
            {"label": label, "value": neutralize(value)} for label, value in (content.figures if content else ())
        ],
        "snapshot": None,
    }
    if snapshot is not None:
        document["snapshot"] = {
            "poll_time": snapshot.poll_time.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "period": snapshot.period,
            "month_to_date_usd": json_value(snapshot.month_to_date_usd)
            if snapshot.month_to_date_usd is not None
            else None,
        }
    return document


class WebhookSender:
    """POSTs the signed `spendwatch.alert/v1` document; 2xx is delivered, 504 or no answer unknown, 429/5xx
    retried within the time left, 401/403 re-read the signing secret once, any other 4xx permanent."""

    kind = "webhook"

    def __init__(
        self,
        name: str,
        *,
        url: str,
        signing_secret: Callable[[bool], str | None],
        headers: Mapping[str, str] | None = None,
        remaining_s: Callable[[], float] = lambda: 30.0,
        sleep: Callable[[float], None] = time.sleep,
        pacer: Pacer | None = None,
        clock: Callable[[], float] = time.time,
        max_attempts: int = 3,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    ) -> None:
        self.name = name
        self._url = url
        self._secret = signing_secret
        self._headers = dict(headers or {})
        self._remaining_s = remaining_s
        self._sleep = sleep
        self._pacer = pacer
        self._clock = clock
        self._max_attempts = max_attempts
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s
        self.attempts = 0

    def _read_secret(self, force: bool) -> str:
        return read_channel_secret(self.name, "webhook signing secret", self._secret, force)

    def send(self, message: Message) -> None:
        now = self._clock()
        document = scrub_data(webhook_payload(message, now=datetime.fromtimestamp(now, UTC)))
        body = json.dumps(document, ensure_ascii=True, separators=(",", ":"), sort_keys=True).encode()

        def build(force: bool) -> HttpRequest:
            secret = self._read_secret(force)
            timestamp = int(self._clock())
            headers = {
                **self._headers,
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                TIMESTAMP_HEADER: str(timestamp),
                SIGNATURE_HEADER: sign(secret, timestamp, body),
                EVENT_ID_HEADER: document["id"],
            }
            return HttpRequest(self._url, body, headers)

        self.attempts = deliver_http(
            self.name,
            "the webhook receiver",
            build,
            remaining_s=self._remaining_s,
            sleep=self._sleep,
            pacer=self._pacer,
            pace_key=destination_key(self._url),
            max_attempts=self._max_attempts,
            timeout_s=self._timeout_s,
            connect_timeout_s=self._connect_timeout_s,
        )
