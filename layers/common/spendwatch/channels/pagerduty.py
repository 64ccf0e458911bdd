"""PagerDuty Events API v2: one event per alert, paired by `dedup_key`, so incidents open and close themselves.

- An alert that fires (first crossing, a higher threshold, a repeat, or a resolve down to a lower level
  that is still at the channel's `min_severity`) sends `trigger` with `dedup_key` = the organization and
  the alert's own key, and `severity` from the rule (docs/rules.md, "Severity");
- an alert that resolves sends `resolve` with the same `dedup_key` (on by default for this channel type,
  whatever each rule's `send_resolved` says);
- a notice (a failing channel, a stopped poller) is a trigger keyed by what it is about (`notice_key`),
  and its clearing notice ("works again", "fresh again") the resolve of that key; a check (`verify`,
  `test-alert`) is a trigger followed at once by its resolve, so it pages once and leaves nothing open.

Events are idempotent by `dedup_key` (a second trigger of an open incident adds to it, a resolve of a
closed one is a no-op), so re-sending a message after a partial failure cannot open a second incident.
The routing key is a secret (SSM or the environment), added to each event after the payload is scrubbed.
Answers: 202 `{"status": "success"}` delivered; 400 an invalid event (a bug, permanent, `invalid_event`);
429 rate limited (retried after a pause within the time left); 5xx retried; 504 or no answer is an
unknown outcome, which for PagerDuty alone is retried with the record (a repeated event is deduplicated).
Rules whose keys are never observed clearing (`MOMENTARY_RULES`) send their trigger and its resolve
together, so no incident stays open for good.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from spendwatch.channels.base import (
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_TIMEOUT_S,
    HttpAnswer,
    HttpRequest,
    Pacer,
    Verdict,
    deliver_http,
    destination_key,
    http_verdict,
    read_channel_secret,
)
from spendwatch.channels.webhook import json_value
from spendwatch.core.alerts import RULE_SECTION, SEVERITIES, Alert, Message, Reason, Severity, severity_of
from spendwatch.core.errors import DeliveryError, DeliveryUnknownError
from spendwatch.core.redact import scrub_data
from spendwatch.core.text import neutralize

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
SUMMARY_LIMIT = 1024
"""Events v2 rejects a `payload.summary` longer than 1,024 characters."""
DEDUP_KEY_LIMIT = 255
PACE_INTERVAL_S = 0.5
"""Events v2 allows 120 events a minute per routing key: two a second stays well inside it."""
PAGERDUTY_REASONS = frozenset({"invalid_event"})
USAGE_URL = "https://platform.openai.com/usage"


def dedup_key(org_id: str, alert_key: str) -> str:
    """`spendwatch:<org>:<alert key>`, hashed when longer than PagerDuty's 255 characters."""
    key = f"spendwatch:{org_id}:{alert_key}"
    if len(key) <= DEDUP_KEY_LIMIT:
        return key
    return f"spendwatch:{org_id[:60]}:sha256:{hashlib.sha256(alert_key.encode()).hexdigest()}"


def summary(text: str) -> str:
    """One line of at most 1,024 characters, its cut marked."""
    line = neutralize(text).strip() or "spendwatch alert"
    return line if len(line) <= SUMMARY_LIMIT else line[: SUMMARY_LIMIT - 1] + "…"


MOMENTARY_RULES = frozenset({"spike", "first_spend", "grant.expiry"})
"""Rules whose alert keys are never observed clearing: PagerDuty gets a trigger and its resolve together."""


def _trigger(
    alert: Alert,
    key: str,
    *,
    severity: Severity,
    org_id: str,
    org_name: str,
    descriptions: dict[str, str],
    timestamp: str,
) -> dict[str, Any]:
    obs = alert.observation
    return {
        "event_action": "trigger",
        "dedup_key": key,
        "payload": {
            "summary": summary(f"{neutralize(org_name)}: {descriptions.get(obs.key, obs.summary)}"),
            "source": f"spendwatch/{org_id}",
            "severity": severity,
            "timestamp": timestamp,
            "component": "openai-spend",
            "group": RULE_SECTION.get(obs.rule_id, obs.rule_id),
            "class": obs.rule_id,
            "custom_details": {
                "alert_key": obs.key,
                "reason": alert.reason.value,
                "level": json_value(alert.level),
                **{name: json_value(value) for name, value in sorted(obs.facts.items())},
            },
        },
        "links": [{"href": USAGE_URL, "text": "OpenAI usage"}],
        "client": "spendwatch",
    }


def pagerduty_events(message: Message, *, min_severity: Severity = "info", now: datetime) -> list[dict[str, Any]]:
    """The Events v2 events of one message, without the routing key."""
    content = message.content
    snapshot = message.snapshot
    org_id = snapshot.org_id if snapshot is not None else (message.org.id if message.org is not None else "spendwatch")
    org_name = snapshot.org_name if snapshot is not None else (message.org.name if message.org is not None else "")
    timestamp = now.astimezone(UTC).isoformat().replace("+00:00", "Z")
    descriptions = dict(content.alert_lines) if content is not None else {}
    events: list[dict[str, Any]] = []
    for alert in message.alerts:
        obs = alert.observation
        key = dedup_key(org_id, obs.key)
        severity = severity_of(obs.rule_id, alert.level)
        still_firing = alert.level is not None and SEVERITIES.index(severity) >= SEVERITIES.index(min_severity)
        if alert.reason is Reason.RESOLVED and not still_firing:
            events.append({"event_action": "resolve", "dedup_key": key})
            continue
        if obs.rule_id in MOMENTARY_RULES:
            # Their keys stop being observed instead of clearing (a day's spike, a key's first spend, a
            # grant that expired): page once and close at once, or the incident would stay open for good.
            events += [
                _trigger(
                    alert,
                    key,
                    severity=severity,
                    org_id=org_id,
                    org_name=org_name,
                    descriptions=descriptions,
                    timestamp=timestamp,
                )
            ]
            events.append({"event_action": "resolve", "dedup_key": key})
            continue
        events.append(
            _trigger(
                alert,
                key,
                severity=severity,
                org_id=org_id,
                org_name=org_name,
                descriptions=descriptions,
                timestamp=timestamp,
            )
        )
    if not message.alerts:
        title = message.raw_title or message.title
        lines = list(message.raw_lines)
        if message.notice_key is not None:
            notice_key = dedup_key("notice", message.notice_key)
        else:
            notice_key = dedup_key(org_id, "notice:" + hashlib.sha256(title.encode()).hexdigest()[:16])
        if not message.notice_firing:  # "works again", "fresh again": close what the firing notice opened
            return [*events, {"event_action": "resolve", "dedup_key": notice_key}]
        events.append(
            {
                "event_action": "trigger",
                "dedup_key": notice_key,
                "payload": {
                    "summary": summary(title),
                    "source": f"spendwatch/{org_id}",
                    "severity": "warning",
                    "timestamp": timestamp,
                    "component": "spendwatch",
                    "group": "monitor",
                    "class": "notice",
                    "custom_details": {"lines": [neutralize(line) for line in lines]},
                },
                "client": "spendwatch",
            }
        )
        if message.transient:  # test-alert, verify: page once, leave no incident open
            events.append({"event_action": "resolve", "dedup_key": notice_key})
    return events


def pagerduty_verdict(answer: HttpAnswer) -> Verdict:
    """Events v2: 202 with `status: success` is delivered; 400 is an invalid event, never retried."""
    if answer.status == 202:
        try:
            status = json.loads(answer.body).get("status")
        except (ValueError, AttributeError):
            status = None
        # A 202 we cannot read is still PagerDuty taking the event (only 202 means accepted).
        return Verdict("ok", "ok") if status in {"success", None} else Verdict("unknown", "unreadable_reply")
    if answer.status == 400:
        return Verdict("permanent", "invalid_event")
    return http_verdict(answer, ok=frozenset({200, 201}))


class PagerDutySender:
    """Sends each event of a message to Events v2 (paced per routing key), in order, every one even after a
    failure, then fails the message if any event failed. Events are idempotent by `dedup_key`, so an
    unanswered event is retried with the record (never left to the one-hour unconfirmed re-send) and
    the events that went out are repeated safely."""

    kind = "pagerduty"

    def __init__(
        self,
        name: str,
        *,
        routing_key: Callable[[bool], str | None],
        events_url: str = EVENTS_URL,
        min_severity: Severity = "info",
        remaining_s: Callable[[], float] = lambda: 30.0,
        sleep: Callable[[float], None] = time.sleep,
        pacer: Pacer | None = None,
        clock: Callable[[], float] = time.time,
        max_attempts: int = 3,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    ) -> None:
        self.name = name
        self._routing_key = routing_key
        self._url = events_url
        self._min_severity = min_severity
        self._remaining_s = remaining_s
        self._sleep = sleep
        self._pacer = pacer or Pacer(PACE_INTERVAL_S)
        self._clock = clock
        self._max_attempts = max_attempts
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s
        self.attempts = 0

    def _read_key(self, force: bool) -> str:
        return read_channel_secret(self.name, "PagerDuty routing key", self._routing_key, force)

    def send(self, message: Message) -> None:
        now = datetime.fromtimestamp(self._clock(), UTC)
        events = scrub_data(pagerduty_events(message, min_severity=self._min_severity, now=now))
        self.attempts = 0
        pace_key = ""
        failures: list[DeliveryError] = []
        for event in events:

            def build(force: bool, event: dict[str, Any] = event) -> HttpRequest:
                body = json.dumps({"routing_key": self._read_key(force), **event}, ensure_ascii=True).encode()
                return HttpRequest(self._url, body, {"Content-Type": "application/json"})

            if not pace_key:
                pace_key = destination_key(self._read_key(False))
            try:
                self.attempts += self._deliver(build, pace_key)
            except DeliveryUnknownError as exc:
                # Idempotent by dedup_key: a retry cannot open a second incident, so an unanswered event is
                # retried with the record, and the events after it are still sent now (a critical page
                # must not wait behind an unanswered one).
                failures.append(
                    DeliveryError(
                        self.name, f"{exc.detail} (retried: events are idempotent)", retryable=True, reason=exc.reason
                    )
                )
            except DeliveryError as exc:
                failures.append(exc)
        if failures:
            retryable = [f for f in failures if f.retryable]
            raise (retryable or failures)[0]

    def _deliver(self, build: Callable[[bool], HttpRequest], pace_key: str) -> int:
        return deliver_http(
            self.name,
            "PagerDuty",
            build,
            classify=pagerduty_verdict,
            remaining_s=self._remaining_s,
            sleep=self._sleep,
            pacer=self._pacer,
            pace_key=pace_key,
            max_attempts=self._max_attempts,
            timeout_s=self._timeout_s,
            connect_timeout_s=self._connect_timeout_s,
        )
