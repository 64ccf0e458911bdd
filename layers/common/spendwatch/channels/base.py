"""What every channel shares: the `Sender` interface, the three outcomes of a send, one deadline-bound
HTTP POST (`post_once`), pacing, and the bounded set of failure reasons.

Every send ends in one of three outcomes, in the manner of Alertmanager's notifiers:
- **delivered**: `send` returns;
- **not delivered**, provably (no connection, DNS, connect timeout, TLS handshake, the request not fully
  sent, or an answer refusing it): `DeliveryError`, `retryable` or permanent, `reason` naming the cause
  (a receiver's error code, `http_503`, `connection`, `dns`, `connect_timeout`, `tls`);
- **unknown** (the request went out but no answer confirms it: a read timeout or a connection closed
  after sending, a gateway's 504, a receiver error documented as possibly applied):
  `DeliveryUnknownError`. It is never retried here: a slow receiver that records the post and answers
  after the timeout would get one copy per retry. The caller records it as sent but unconfirmed.

Retries inside an invocation are short and bounded by the time left; the stream's retries and the
dead-letter queue do the rest. Receivers are reached over `http.client` (`post_once`), which keeps a
hard deadline. URLs and keys never appear in errors or logs: transport exceptions are reduced to a
reason name.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.client import HTTPConnection, HTTPSConnection
from typing import Protocol
from urllib.parse import urlsplit

from spendwatch.core.alerts import Message
from spendwatch.core.errors import DeliveryError, DeliveryUnknownError

DEFAULT_TIMEOUT_S = 10.0
"""A whole HTTP request (connect, send, answer) must finish within this, and within the time left."""
DEFAULT_CONNECT_TIMEOUT_S = 3.0
MIN_HTTP_TIMEOUT_S = 1.0
MAX_REPLY_BYTES = 64 * 1024
PACE_INTERVAL_S = 1.0
"""At most one message per destination per second (Slack's chat.postMessage "special" tier; within every
other receiver's documented rate)."""

NOT_SENT_REASONS = frozenset({"connection", "dns", "connect_timeout", "tls"})
"""The request provably did not reach the receiver (connect, DNS, TLS handshake, or sending failed)."""
UNKNOWN_OUTCOME_REASONS = frozenset(
    {"read_timeout", "connection_reset", "unreadable_reply", "http_504", "tls_after_send"}
)
"""The request was sent; no answer says whether it was acted on."""
GENERIC_REASONS = frozenset(
    {"not_configured", "secret_unavailable", "out_of_time", "unsupported_channel", "error", "invalid_url"}
    | {"claim_busy", "record_failed"}
    | {f"http_{code}" for code in (400, 401, 403, 404, 408, 410, 413, 429, 500, 502, 503, 504)}
)


class Sender(Protocol):
    """One configured channel. `send` returns when the receiver confirmed the message, raises
    `DeliveryError` (retryable or not) when it provably did not take it, and `DeliveryUnknownError` when
    the request went out and no answer confirms it."""

    name: str
    kind: str
    """the channel type (`slack`, `email`, `webhook`, `teams`, `pagerduty`, `sns`): which payload it reads
    (`email` takes `render_email` output, every other channel the `Message` with its `Content`)"""

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
    """A pacing key that does not keep the URL (or key) itself around."""
    return hashlib.sha256(secret_or_channel.encode()).hexdigest()[:16]


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
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
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
# one JSON-over-HTTP delivery with the three outcomes (webhook, Teams, PagerDuty)
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HttpRequest:
    url: str
    body: bytes
    headers: dict[str, str]

    def __repr__(self) -> str:  # the URL (a Teams or webhook path) and headers may carry credentials
        return f"HttpRequest(<{len(self.body)} bytes>)"


@dataclass(frozen=True)
class Verdict:
    """How a receiver's answer reads: `ok`, `unknown` (may have been acted on: never retried),
    `rate_limited`, `transient`, `auth` (re-read the secret once) or `permanent`; `reason` names it."""

    kind: str
    reason: str
    retry_after: float | None = None


def http_verdict(answer: HttpAnswer, *, ok: frozenset[int] = frozenset({200, 201, 202, 204})) -> Verdict:
    """The usual reading of an HTTP status: 2xx delivered, 504 unknown, 429 and other 5xx retried,
    401/403 a credential to re-read, any other 4xx a refusal that will not change on retry."""
    status = answer.status
    if status in ok:
        return Verdict("ok", "ok")
    reason = f"http_{status}"
    if status == 504:
        return Verdict("unknown", reason)
    if status == 429:
        return Verdict("rate_limited", reason, retry_after(answer.headers))
    if status >= 500 or status == 408:
        return Verdict("transient", reason, retry_after(answer.headers))
    if status in {401, 403}:
        return Verdict("auth", reason)
    return Verdict("permanent", reason)


def deliver_http(
    channel: str,
    receiver: str,
    build: Callable[[bool], HttpRequest],
    *,
    classify: Callable[[HttpAnswer], Verdict] = http_verdict,
    remaining_s: Callable[[], float],
    sleep: Callable[[float], None] = time.sleep,
    pacer: Pacer | None = None,
    pace_key: str = "",
    max_attempts: int = 3,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
) -> int:
    """POST what `build(refetch)` returns until the receiver confirms it; returns the attempts made.

    `build` is called before every attempt (a signature carries the time of the attempt) with `True`
    once after the receiver refused the credential (read past the secret cache: it may have been
    rotated). Provable non-delivery is retried with back-off (1 s, 2 s, …) and a 429 after its
    `Retry-After`, both only within the time left; an unknown outcome raises `DeliveryUnknownError` at
    once; a refusal raises a permanent `DeliveryError`. `receiver` names the service in errors; the URL
    never appears in them.
    """
    refetched = False
    transient = 0
    attempts = 0
    request = build(False)
    while True:
        if pacer is not None:
            pacer.wait(pace_key, remaining_s, channel)
        attempts += 1
        timeout = max(min(MIN_HTTP_TIMEOUT_S, timeout_s), min(timeout_s, remaining_s()))
        try:
            answer = post_once(
                request.url, request.body, request.headers, timeout_s=timeout, connect_timeout_s=connect_timeout_s
            )
            verdict = classify(answer)
        except NotSentError as exc:
            verdict = Verdict("permanent" if exc.reason == "invalid_url" else "transient", exc.reason)
        except OutcomeUnknownError as exc:
            verdict = Verdict("unknown", exc.reason)
        if verdict.kind in {"ok", "unknown"} and pacer is not None:
            pacer.mark(pace_key)
        if verdict.kind == "ok":
            return attempts
        if verdict.kind == "unknown":
            raise DeliveryUnknownError(
                channel,
                f"{receiver} did not confirm the message ({verdict.reason}); it may have been delivered, so it is "
                "not retried now",
                reason=verdict.reason,
            )
        if verdict.kind == "auth" and not refetched:
            refetched = True
            request = build(True)
            continue
        if verdict.kind in {"auth", "permanent"}:
            raise DeliveryError(
                channel, f"{receiver} refused the message ({verdict.reason})", retryable=False, reason=verdict.reason
            )
        if verdict.kind == "rate_limited":
            wait = verdict.retry_after if verdict.retry_after is not None else 1.0
        else:
            transient += 1
            wait = float(2 ** (transient - 1))
        if attempts >= max_attempts or wait >= remaining_s():
            raise DeliveryError(
                channel,
                f"{receiver} unavailable ({verdict.reason}) after {attempts} attempt(s)",
                retryable=True,
                reason=verdict.reason,
            )
        sleep(wait)
        request = build(False)


def read_channel_secret(channel: str, what: str, reader: Callable[[bool], str | None], force: bool) -> str:
    """A channel's secret (`what`, e.g. "PagerDuty routing key") from `reader`: a failure to read it is a
    retryable `secret_unavailable`, a secret that is not stored a permanent `not_configured`."""
    try:
        value = reader(force)
    except DeliveryError:
        raise
    except Exception as exc:
        raise DeliveryError(
            channel, f"cannot read the {what} ({type(exc).__name__})", retryable=True, reason="secret_unavailable"
        ) from None
    if not value:
        raise DeliveryError(channel, f"no {what} is stored", retryable=False, reason="not_configured")
    return value
