"""Local receivers that speak the wire format of spendwatch's webhook and PagerDuty channels, over loopback.

- `WebhookReceiver`: verifies `X-Spendwatch-Signature` the way a receiver should (HMAC-SHA256 over
  `<timestamp>.<body>`, constant-time compare, a timestamp outside the replay window rejected with 401),
  checks the `spendwatch.alert/v1` document's shape, and drops a repeated `X-Spendwatch-Event-Id`
  (answering 200, as a receiver that already has it should);
- `FakePagerDuty`: the Events API v2 `/v2/enqueue` endpoint: validates each event as PagerDuty
  documents it (routing key of 32 characters, `event_action`, `dedup_key` ≤ 255, for a trigger a
  `payload` with `summary` ≤ 1,024, `source`, a known `severity`), answers 202
  `{"status": "success", "message": "Event processed", "dedup_key": …}`, 400 `{"status": "invalid event",
  "errors": […]}` or 429, and keeps incidents open/resolved by `dedup_key`.

- `FakeTeams`: a Workflows incoming webhook (`…/paths/invoke?…&sig=…`) that checks the Adaptive Card
  against the constraints spendwatch relies on (`card_errors`) and answers 202, 400, 401 or 413.

All take faults like `FakeSlack`: `fail_next` (an error answer), `answer_late` (take the event, answer
after a delay), `drop_connection` (close without an answer, after taking the event when `taken`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Self

from spendwatch.devtools.fake_openai import HttpRequest, HttpResponse, LoopbackService
from spendwatch.devtools.faults import drop_current_connection, serve_connection_aware

REPLAY_WINDOW_S = 300
SEVERITIES = frozenset({"critical", "error", "warning", "info"})
ACTIONS = frozenset({"trigger", "acknowledge", "resolve"})
_SCHEMA_KEYS = frozenset(
    {"schema", "version", "id", "kind", "status", "sent_at", "org", "title", "lines", "alerts", "figures", "snapshot"}
)
_ALERT_KEYS = frozenset(
    {"key", "rule", "section", "severity", "status", "reason", "level", "level_label", "description", "facts"}
)


@dataclass
class _Fault:
    remaining: int
    kind: Literal["answer", "late", "drop"]
    status: int = 500
    body: bytes = b""
    retry_after: int | None = None
    delay_s: float = 0.0
    taken: bool = False
    """for `drop`: take the event first (the receiver acted on it, the client never hears so)"""


@dataclass
class _Faulty(LoopbackService):
    """A loopback service with the shared fault queue."""

    faults: list[_Fault] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.requests = 0

    def start(self) -> Self:
        super().start()
        serve_connection_aware(self)
        return self

    def fail_next(self, n: int = 1, *, status: int = 500, body: bytes = b"", retry_after: int | None = None) -> None:
        with self._lock:
            self.faults.append(_Fault(n, "answer", status, body, retry_after))

    def answer_late(self, n: int = 1, *, delay_s: float) -> None:
        with self._lock:
            self.faults.append(_Fault(n, "late", delay_s=delay_s))

    def drop_connection(self, n: int = 1, *, taken: bool = False) -> None:
        with self._lock:
            self.faults.append(_Fault(n, "drop", taken=taken))

    def _take_fault(self) -> _Fault | None:
        with self._lock:
            self.requests += 1
            if not self.faults:
                return None
            fault = self.faults[0]
            fault.remaining -= 1
            if fault.remaining <= 0:
                self.faults.pop(0)
            return fault

    def handle(self, request: HttpRequest) -> HttpResponse:
        fault = self._take_fault()
        if fault is not None and fault.kind == "answer":
            headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
            return HttpResponse(fault.status, fault.body, "application/json", headers)
        if fault is not None and fault.kind == "drop" and not fault.taken:
            drop_current_connection()
            return HttpResponse(0)
        response = self.receive(request)
        if fault is not None and fault.kind == "drop":
            drop_current_connection()
            return HttpResponse(0)
        if fault is not None and fault.kind == "late":
            self._stopping.wait(fault.delay_s)
        return response

    def receive(self, request: HttpRequest) -> HttpResponse:
        raise NotImplementedError


def _json(status: int, data: Any) -> HttpResponse:
    return HttpResponse(status, json.dumps(data).encode(), "application/json")


@dataclass
class WebhookReceiver(_Faulty):
    """A receiver of spendwatch's signed webhook at `url` (path `/hooks/spendwatch`)."""

    secret: str = "whsec-local-test-secret"  # noqa: S105 - a local stand-in's own key
    window_s: int = REPLAY_WINDOW_S
    clock: Any = time.time
    documents: list[dict[str, Any]] = field(default_factory=list)
    """every accepted document, duplicates excluded, in arrival order"""
    rejected: list[str] = field(default_factory=list)
    """why each rejected request was rejected"""
    duplicates: int = 0
    headers_seen: list[dict[str, str]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"{self.root_url}/hooks/spendwatch"

    def _reject(self, status: int, why: str) -> HttpResponse:
        with self._lock:
            self.rejected.append(why)
        return _json(status, {"error": why})

    def receive(self, request: HttpRequest) -> HttpResponse:  # noqa: PLR0911 - one answer per check
        if request.method != "POST" or request.path != "/hooks/spendwatch":
            return self._reject(404, "not found")
        timestamp = request.headers.get("x-spendwatch-timestamp", "")
        signature = request.headers.get("x-spendwatch-signature", "")
        try:
            sent = int(timestamp)
        except ValueError:
            return self._reject(401, "missing or malformed timestamp")
        if abs(self.clock() - sent) > self.window_s:
            return self._reject(401, "timestamp outside the replay window")
        # Recomputed here rather than imported from spendwatch: a receiver has only the documented scheme.
        mac = hmac.new(self.secret.encode(), timestamp.encode() + b"." + request.body, hashlib.sha256)
        expected = "v1=" + mac.hexdigest()
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            return self._reject(401, "signature mismatch")
        if not request.headers.get("content-type", "").startswith("application/json"):
            return self._reject(415, "not JSON")
        try:
            document = json.loads(request.body)
        except ValueError:
            return self._reject(400, "body is not JSON")
        problem = document_problem(document, request.headers.get("x-spendwatch-event-id", ""))
        if problem:
            return self._reject(400, problem)
        with self._lock:
            self.headers_seen.append(dict(request.headers))
            if any(d["id"] == document["id"] for d in self.documents):
                self.duplicates += 1
            else:
                self.documents.append(document)
        return _json(200, {"ok": True})


def document_problem(document: Any, event_id: str) -> str | None:  # noqa: PLR0911 - one answer per check
    """Why `document` is not a `spendwatch.alert/v1` document, or None (docs/channels.md lists the fields)."""
    if not isinstance(document, dict) or set(document) != _SCHEMA_KEYS:
        return f"fields are not the v1 set: {sorted(document) if isinstance(document, dict) else type(document)}"
    if document["schema"] != "spendwatch.alert/v1" or document["version"] != 1:
        return "unknown schema"
    if document["id"] != event_id:
        return "X-Spendwatch-Event-Id does not match the id"
    if document["kind"] not in {"alert", "notice"} or document["status"] not in {"firing", "resolved"}:
        return "bad kind or status"
    for alert in document["alerts"]:
        if set(alert) != _ALERT_KEYS or alert["severity"] not in SEVERITIES:
            return "an alert does not have the v1 fields"
        if alert["level"] is not None and not isinstance(alert["level"], str):
            return "a level is not a decimal string"
    snapshot = document["snapshot"]
    if snapshot is not None and not isinstance(snapshot.get("month_to_date_usd"), str | None):
        return "money is not a decimal string"
    return None


@dataclass
class Incident:
    dedup_key: str
    status: Literal["triggered", "resolved"]
    severity: str
    summary: str
    events: int = 1


@dataclass
class FakePagerDuty(_Faulty):
    """PagerDuty's Events API v2 at `events_url` for one integration (`routing_key`)."""

    routing_key: str = "R0UT1NGKEY0123456789abcdefABCDEF"
    events: list[dict[str, Any]] = field(default_factory=list)
    """every accepted event, in arrival order"""
    incidents: dict[str, Incident] = field(default_factory=dict)
    invalid: list[list[str]] = field(default_factory=list)

    @property
    def events_url(self) -> str:
        return f"{self.root_url}/v2/enqueue"

    def receive(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST" or request.path != "/v2/enqueue":
            return _json(404, {"status": "not found"})
        try:
            event = json.loads(request.body)
        except ValueError:
            return self._invalid(["Event object is invalid: body is not JSON"])
        errors = event_errors(event)
        if not errors and event["routing_key"] != self.routing_key:
            errors = ["Invalid routing key"]
        if errors:
            return self._invalid(errors)
        key = event.get("dedup_key") or hashlib.sha256(request.body).hexdigest()
        with self._lock:
            self.events.append(event)
            incident = self.incidents.get(key)
            if event["event_action"] == "trigger":
                payload = event["payload"]
                if incident is None or incident.status == "resolved":
                    self.incidents[key] = Incident(key, "triggered", payload["severity"], payload["summary"])
                else:
                    incident.events += 1
            elif event["event_action"] == "resolve" and incident is not None:
                incident.status = "resolved"
                incident.events += 1
        return HttpResponse(
            202,
            json.dumps({"status": "success", "message": "Event processed", "dedup_key": key}).encode(),
            "application/json",
        )

    def _invalid(self, errors: list[str]) -> HttpResponse:
        with self._lock:
            self.invalid.append(errors)
        return _json(400, {"status": "invalid event", "message": "Event object is invalid", "errors": errors})


def event_errors(event: Any) -> list[str]:
    """The Events v2 schema as PagerDuty documents it, checked field by field."""
    if not isinstance(event, dict):
        return ["Event object is invalid"]
    errors = []
    key = event.get("routing_key")
    if not isinstance(key, str) or len(key) != 32:
        errors.append("'routing_key' must be a 32-character string")
    action = event.get("event_action")
    if action not in ACTIONS:
        errors.append("'event_action' is invalid (must be one of: trigger, acknowledge, resolve)")
    dedup = event.get("dedup_key")
    if dedup is not None and (not isinstance(dedup, str) or not 0 < len(dedup) <= 255):
        errors.append("'dedup_key' must be a string of at most 255 characters")
    if action in {"acknowledge", "resolve"} and not dedup:
        errors.append("'dedup_key' is required for acknowledge and resolve")
    if action == "trigger":
        payload = event.get("payload")
        if not isinstance(payload, dict):
            return [*errors, "'payload' is required for trigger"]
        summary = payload.get("summary")
        if not isinstance(summary, str) or not summary or len(summary) > 1024:
            errors.append("'payload.summary' must be a non-empty string of at most 1024 characters")
        if not isinstance(payload.get("source"), str) or not payload["source"]:
            errors.append("'payload.source' is required")
        if payload.get("severity") not in SEVERITIES:
            errors.append("'payload.severity' must be one of: critical, error, warning, info")
        details = payload.get("custom_details")
        if details is not None and not isinstance(details, dict | list | str):
            errors.append("'payload.custom_details' must be an object")
    links = event.get("links", [])
    if not isinstance(links, list) or any(not isinstance(x, dict) or "href" not in x for x in links):
        errors.append("'links' must be a list of objects with 'href'")
    return errors


# --- Microsoft Teams: a Workflows incoming webhook ------------------------------------------------------

CARD_ELEMENTS = frozenset({"TextBlock", "FactSet", "Container", "ColumnSet", "Image", "RichTextBlock"})
CARD_ACTIONS = frozenset({"Action.OpenUrl", "Action.Submit", "Action.ShowCard", "Action.ToggleVisibility"})
CARD_VERSIONS = frozenset({"1.0", "1.1", "1.2", "1.3", "1.4", "1.5"})
TEXT_STYLES = {
    "size": {"Small", "Default", "Medium", "Large", "ExtraLarge"},
    "weight": {"Lighter", "Default", "Bolder"},
    "color": {"Default", "Dark", "Light", "Accent", "Good", "Warning", "Attention"},
}
MAX_TEAMS_BYTES = 28 * 1024


def card_errors(payload: Any) -> list[str]:
    """The Adaptive Card constraints spendwatch relies on, from the published schema (adaptivecards.io,
    version 1.5) and Teams' Workflows webhook: written as checks rather than shipping the schema."""
    if not isinstance(payload, dict) or payload.get("type") != "message":
        return ["the body is not a message ({'type': 'message', 'attachments': [...]})"]
    attachments = payload.get("attachments")
    if not isinstance(attachments, list) or len(attachments) != 1:
        return ["a message needs exactly one attachment"]
    attachment = attachments[0]
    if not isinstance(attachment, dict) or attachment.get("contentType") != "application/vnd.microsoft.card.adaptive":
        return ["the attachment is not an Adaptive Card"]
    card = attachment.get("content")
    if not isinstance(card, dict) or card.get("type") != "AdaptiveCard":
        return ["content.type must be AdaptiveCard"]
    errors = []
    if card.get("version") not in CARD_VERSIONS:
        errors.append(f"version {card.get('version')!r} is not a released Adaptive Card version")
    body = card.get("body")
    if not isinstance(body, list) or not body:
        return [*errors, "body must be a non-empty list of elements"]
    for index, element in enumerate(body):
        errors += [f"body[{index}]: {e}" for e in _element_errors(element)]
    for index, action in enumerate(card.get("actions", [])):
        if not isinstance(action, dict) or action.get("type") not in CARD_ACTIONS:
            errors.append(f"actions[{index}]: unknown action")
        elif action["type"] == "Action.OpenUrl" and not str(action.get("url", "")).startswith("https://"):
            errors.append(f"actions[{index}]: Action.OpenUrl needs an https url")
    return errors


def _element_errors(element: Any) -> list[str]:
    if not isinstance(element, dict) or element.get("type") not in CARD_ELEMENTS:
        return ["unknown element type"]
    errors = []
    if element["type"] == "TextBlock":
        if not isinstance(element.get("text"), str) or not element["text"]:
            errors.append("TextBlock.text must be a non-empty string")
        errors += [
            f"{k} {element[k]!r} is not allowed"
            for k, allowed in TEXT_STYLES.items()
            if k in element and element[k] not in allowed
        ]
        if "wrap" in element and not isinstance(element["wrap"], bool):
            errors.append("TextBlock.wrap must be a boolean")
    if element["type"] == "FactSet":
        facts = element.get("facts")
        if not isinstance(facts, list) or any(
            not isinstance(f, dict) or set(f) != {"title", "value"} or not all(isinstance(v, str) for v in f.values())
            for f in facts
        ):
            errors.append("FactSet.facts must be a list of {title, value} strings")
    return errors


@dataclass
class FakeTeams(_Faulty):
    """A Teams Workflows webhook (`url`, its `sig=` a credential) that posts valid cards to a channel."""

    sig: str = "s1g-0123456789abcdefABCDEF0123456789"
    cards: list[dict[str, Any]] = field(default_factory=list)
    invalid: list[list[str]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"{self.root_url}/workflows/abc123/triggers/manual/paths/invoke?api-version=1&sig={self.sig}"

    def receive(self, request: HttpRequest) -> HttpResponse:
        if request.method != "POST" or not request.path.endswith("/paths/invoke"):
            return _json(404, {"error": {"code": "WorkflowNotFound"}})
        if request.query.get("sig") != [self.sig]:
            return _json(401, {"error": {"code": "DirectApiAuthorizationRequired"}})
        if len(request.body) > MAX_TEAMS_BYTES:
            return _json(413, {"error": {"code": "MessageTooLarge"}})
        try:
            payload = json.loads(request.body)
        except ValueError:
            return _json(400, {"error": {"code": "InvalidRequestContent"}})
        errors = card_errors(payload)
        if errors:
            with self._lock:
                self.invalid.append(errors)
            return _json(400, {"error": {"code": "InvalidRequestContent", "message": "; ".join(errors)}})
        with self._lock:
            self.cards.append(payload["attachments"][0]["content"])
        return HttpResponse(202, b"", "text/plain")
