"""A local HTTP server speaking OpenAI's organization usage/costs/billing wire format.

:class:`FakeOpenAI` serves a :class:`~spendwatch.devtools.simulated_org.SimulatedOrg` on
``http://127.0.0.1:<port>`` (standard library only: ``ThreadingHTTPServer`` in a daemon thread) with the
envelopes, parameters, limits, pagination and error bodies of the real API, plus fault injection for
tests and benchmarks: HTTP errors (429, 5xx, 401/403 per endpoint, OpenAI's "Missing scopes" body),
latency and slow successes, malformed JSON, and transport faults (:class:`Delivery`): a body trickled at a
few bytes a second, a body cut short (chunked or with a Content-Length), a connection reset before the
headers or mid-body, and huge bodies streamed without being built in memory.

Also home of the small loopback-server plumbing (:class:`LoopbackService`, :class:`HttpRequest`,
:class:`HttpResponse`) that :mod:`spendwatch.devtools.fake_slack` reuses, and of :func:`dumps_exact`,
a JSON writer that emits :class:`~decimal.Decimal` values as exact JSON numbers.

Example
-------
>>> from datetime import UTC, datetime
>>> import requests
>>> org = SimulatedOrg.default(datetime.now(UTC))
>>> with FakeOpenAI(org) as fake:  # doctest: +SKIP
...     requests.get(f"{fake.base_url}/organization/costs", params={"start_time": 0},
...                  headers={"Authorization": f"Bearer {SIM_ADMIN_KEY}"}, timeout=5).json()["object"]
'page'
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import re
import socket
import struct
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from json.encoder import encode_basestring_ascii
from types import TracebackType
from typing import Any, Final, Literal, NamedTuple, Self
from urllib.parse import parse_qs, urlsplit

from spendwatch.devtools.simulated_org import (
    DAY,
    USAGE_TYPES,
    AdminKey,
    CostRow,
    SimApiKey,
    SimProject,
    SimServiceAccount,
    SimulatedOrg,
    SimUser,
    SpendAlert,
    SpendLimit,
    UsageDim,
    UsageRow,
    UsageTypeSpec,
)

__all__ = [
    "SIM_ADMIN_KEY",
    "SIM_SESSION_KEY",
    "AuthKind",
    "Delivery",
    "FakeOpenAI",
    "HttpRequest",
    "HttpResponse",
    "InjectedFault",
    "LoopbackService",
    "MalformedKind",
    "RecordedRequest",
    "dumps_exact",
    "redact_key",
]

SIM_ADMIN_KEY: Final = "sk-admin-SIMULATEDspendwatch0000000000WXYZ"
"""Default admin key :class:`FakeOpenAI` accepts on ``/v1/organization/*`` (a test value, not a secret)."""
SIM_SESSION_KEY: Final = "sess-SIMULATEDspendwatch00000000000000"
"""Default dashboard session key :class:`FakeOpenAI` accepts on ``/dashboard/*``."""

AuthKind = Literal["admin", "session", "project", "secret", "invalid", "none"]
MalformedKind = Literal["html", "truncated", "null_fields", "string_numbers", "missing_fields"]

_JSON: Final = "application/json"
_KEYS_URL: Final = "https://platform.openai.com/account/api-keys"


# --------------------------------------------------------------------------------------------------
# Exact JSON
# --------------------------------------------------------------------------------------------------


def dumps_exact(value: object) -> str:
    """Serialize to JSON; ``Decimal`` becomes an exact number token, ``float`` is refused.

    ``json.loads(dumps_exact(x), parse_float=Decimal)`` round-trips every ``Decimal`` exactly.
    """
    parts: list[str] = []
    _encode(value, parts.append)
    return "".join(parts)


def _encode(value: object, out: Callable[[str], None]) -> None:  # noqa: PLR0912 - one branch per JSON type
    if value is None:
        out("null")
    elif value is True:
        out("true")
    elif value is False:
        out("false")
    elif isinstance(value, str):
        out(encode_basestring_ascii(value))
    elif isinstance(value, int):
        out(int.__repr__(value))
    elif isinstance(value, Decimal):
        if not value.is_finite():
            msg = f"cannot encode non-finite Decimal {value!r} as JSON"
            raise ValueError(msg)
        text = format(value, "f")
        if "." in text:  # 600.00 -> 600.0, 3.41826150 -> 3.4182615: exact, and still parsed as a Decimal
            text = text.rstrip("0")
            text += "0" if text.endswith(".") else ""
        out(text)
    elif isinstance(value, float):
        msg = "floats are not allowed in simulated payloads; use Decimal"
        raise TypeError(msg)
    elif isinstance(value, Mapping):
        out("{")
        for i, (key, item) in enumerate(value.items()):
            if i:
                out(", ")
            out(encode_basestring_ascii(str(key)))
            out(": ")
            _encode(item, out)
        out("}")
    elif isinstance(value, list | tuple):
        out("[")
        for i, item in enumerate(value):
            if i:
                out(", ")
            _encode(item, out)
        out("]")
    else:
        msg = f"cannot encode {type(value).__name__} as JSON"
        raise TypeError(msg)


# --------------------------------------------------------------------------------------------------
# Loopback server plumbing (shared with fake_slack)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    path: str
    """Path without the query string."""
    query: dict[str, list[str]]
    """``parse_qs`` of the query string (blank values kept)."""
    headers: Mapping[str, str]
    """Lower-cased header names."""
    body: bytes


@dataclass(frozen=True, slots=True)
class Delivery:
    """How a response goes on the wire when it is not simply written at once (transport faults).

    Without one, the body is written in one go with its Content-Length. Every sleep wakes on ``stop()``.
    """

    chunked: bool = False
    """``Transfer-Encoding: chunked`` instead of a Content-Length."""
    bytes_per_s: float | None = None
    """Trickle: write the body at about this rate, in small pieces (each socket read on the client gets a
    few bytes in time, so only a wall-clock deadline stops it)."""
    cut_after: int | None = None
    """Write only this many body bytes, then close the connection: a Content-Length body stays short of
    its announced length; a chunked body never gets its terminating chunk."""
    reset: Literal["before_headers", "mid_body"] | None = None
    """Abort the connection with a TCP RST: before any byte of the reply, or after ``cut_after`` body bytes
    (default: half the body)."""
    stream: Callable[[], Iterable[bytes]] | None = None
    """Produce the body piece by piece instead of ``HttpResponse.body`` (huge bodies, never in memory)."""
    length: int | None = None
    """The streamed body's length, announced as Content-Length (unless ``chunked``)."""


@dataclass(slots=True)
class HttpResponse:
    status: int
    body: bytes = b""
    content_type: str = _JSON
    headers: dict[str, str] = field(default_factory=dict)
    delivery: Delivery | None = None
    """``None``: the body at once with its Content-Length (what every service does unless a test faults it)."""


_PIECE_BYTES: Final = 64 * 1024
_TRICKLE_TICK_S: Final = 0.05


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30  # idle keep-alive connections are dropped after this many seconds
    disable_nagle_algorithm = True  # headers and body are separate writes: avoid the 40 ms delayed-ACK stall
    server: _Server

    def _serve(self) -> None:
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        request = HttpRequest(
            method=self.command,
            path=split.path,
            query=parse_qs(split.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self.rfile.read(length) if length > 0 else b"",
        )
        try:
            response = self.server.service.handle(request)
        except Exception as exc:  # a bug in a fake must surface as a response, not a hung client
            body = dumps_exact({"error": {"message": f"fake server bug: {exc!r}", "type": "server_error"}})
            response = HttpResponse(500, body.encode())
        try:
            if response.delivery is not None:
                self._deliver(response, response.delivery)
                return
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)
        except OSError:  # the client gave up (timeout on a hang fault) or the server is stopping
            self.close_connection = True

    def _deliver(self, response: HttpResponse, delivery: Delivery) -> None:
        """Write `response` as `delivery` says (see `Delivery`)."""
        if delivery.reset == "before_headers":
            self._reset()
            return
        length = delivery.length if delivery.stream is not None else len(response.body)
        cut = delivery.cut_after
        if delivery.reset == "mid_body" and cut is None:
            cut = (length or _PIECE_BYTES) // 2
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if delivery.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        elif length is not None:
            self.send_header("Content-Length", str(length))
        else:
            self.close_connection = True  # no length: the body ends when the connection closes
        self.end_headers()
        sent = 0
        for piece in self._pieces(response, delivery):
            if cut is not None and sent + len(piece) >= cut:
                self._write_piece(piece[: cut - sent], delivery.chunked)
                self.wfile.flush()
                if delivery.reset == "mid_body":
                    self._reset()
                self.close_connection = True  # closed short of the body's end
                return
            self._write_piece(piece, delivery.chunked)
            sent += len(piece)
            if delivery.bytes_per_s:
                self.server.service._sleep(len(piece) / delivery.bytes_per_s)
            if self.server.service._stopping.is_set():
                self.close_connection = True
                return
        if delivery.chunked:
            self.wfile.write(b"0\r\n\r\n")

    def _pieces(self, response: HttpResponse, delivery: Delivery) -> Iterator[bytes]:
        size = max(1, int(delivery.bytes_per_s * _TRICKLE_TICK_S)) if delivery.bytes_per_s else _PIECE_BYTES
        source: Iterable[bytes] = delivery.stream() if delivery.stream is not None else (response.body,)
        for block in source:
            for start in range(0, len(block), size):
                yield block[start : start + size]

    def _write_piece(self, piece: bytes, chunked: bool) -> None:
        if not piece:
            return
        if chunked:
            self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        else:
            self.wfile.write(piece)

    def _reset(self) -> None:
        """Abort the connection: SO_LINGER 0 makes close() send a TCP RST instead of a FIN."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() must not wait for handlers sleeping in a hang fault
    request_queue_size = 128  # a poll opens ~20 connections at once; the default backlog of 5 stalls them

    def __init__(self, address: tuple[str, int], service: LoopbackService) -> None:
        self.service = service
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Disconnects are expected (timeouts, stop()); keep stderr quiet."""

    def close_open_connections(self) -> None:
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class LoopbackService:
    """A ``ThreadingHTTPServer`` on 127.0.0.1 (ephemeral port) in a daemon thread; subclasses implement
    :meth:`handle`. Usable as a context manager; ``start()`` is idempotent and returns ``self``."""

    host: Final = "127.0.0.1"

    def __init__(self) -> None:
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def handle(self, request: HttpRequest) -> HttpResponse:
        raise NotImplementedError

    def start(self) -> Self:
        if self._server is None:
            self._stopping.clear()
            self._server = _Server((self.host, 0), self)
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"{type(self).__name__}-{self._server.server_address[1]}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self._stopping.set()  # wakes handlers sleeping in latency/hang faults
        server.shutdown()
        server.close_open_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._server is None:
            msg = f"{type(self).__name__} is not started"
            raise RuntimeError(msg)
        return int(self._server.server_address[1])

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)


# --------------------------------------------------------------------------------------------------
# Errors, auth, faults
# --------------------------------------------------------------------------------------------------


def _error_payload(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _json(status: int, payload: object, headers: dict[str, str] | None = None) -> HttpResponse:
    return HttpResponse(status, dumps_exact(payload).encode(), _JSON, dict(headers or {}))


class _ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = "invalid_request_error",
        type_: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.response = _json(status, _error_payload(message, type_, param, code))


def _bad_request(message: str, param: str | None = None) -> _ApiError:
    return _ApiError(400, message, param=param)


_KEY_PREFIXES: Final = ("sk-admin-", "sk-proj-", "sk-svcacct-", "sess-", "sk-")


def redact_key(key: str) -> str:
    """``sk-admin-****WXYZ`` style: the kind prefix and at most the last 4 characters, never the whole key."""
    prefix = next((p for p in _KEY_PREFIXES if key.startswith(p)), "")
    rest = key[len(prefix) :]
    return f"{prefix}****{rest[-4:] if len(rest) > 8 else ''}"


def _redacted_value(key: str) -> str:
    """The admin-key object's ``redacted_value`` style: ``sk-admin...WXY``."""
    prefix = next((p for p in _KEY_PREFIXES if key.startswith(p)), "")
    return f"{prefix.rstrip('-')}...{key[-3:]}"


class RecordedRequest(NamedTuple):
    method: str
    path: str
    query: dict[str, list[str]]
    auth: AuthKind


class InjectedFault:
    """Handle returned by :meth:`FakeOpenAI.inject`: inspect ``hits``/``remaining`` or :meth:`cancel` it."""

    def __init__(
        self,
        lock: threading.Lock,
        path_prefix: str,
        *,
        times: int | None,
        delay_s: float = 0,
        response: HttpResponse | None = None,
        transform: Callable[[HttpResponse], HttpResponse] | None = None,
    ) -> None:
        self._lock = lock
        self.path_prefix = path_prefix
        self.delay_s = delay_s
        self.response = response
        """Fixed response served instead of the real one (``None``: serve the real one)."""
        self.transform = transform
        """Applied to the real response (truncate, null out fields, …)."""
        self.remaining: int | None = times
        """Requests still to hit; ``None`` = unlimited."""
        self.hits = 0

    @property
    def active(self) -> bool:
        return self.remaining is None or self.remaining > 0

    def cancel(self) -> None:
        with self._lock:
            self.remaining = 0

    def _consume(self) -> None:
        self.hits += 1
        if self.remaining is not None:
            self.remaining -= 1


_SERVER_ERROR: Final = "The server had an error while processing your request. Sorry about that!"
_RATE_LIMITED: Final = (
    "Rate limit reached for organization usage requests. Please retry after the interval given in the Retry-After "
    "header."
)
_MISSING_SCOPE: Final = "You have insufficient permissions for this operation. Missing scopes: api.usage.read."
_HTML_502: Final = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>"
    "\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n"
)


def _default_error(status: int) -> dict[str, Any]:
    if status == 429:
        return _error_payload(_RATE_LIMITED, "requests", code="rate_limit_exceeded")
    if status == 401:
        return _error_payload(
            f"Incorrect API key provided. You can find your API key at {_KEYS_URL}.",
            "invalid_request_error",
            code="invalid_api_key",
        )
    if status == 403:
        return _error_payload(_MISSING_SCOPE, "invalid_request_error")
    if status >= 500:
        return _error_payload(_SERVER_ERROR, "server_error")
    return _error_payload(f"Injected error (HTTP {status}).", "invalid_request_error")


_MONEY_KEYS: Final = frozenset(
    {
        "value",
        "cost",
        "total_usage",
        "total_granted",
        "total_used",
        "total_available",
        "total_paid_available",
        "grant_amount",
        "used_amount",
        "threshold_amount",
        "hard_limit_usd",
        "soft_limit_usd",
        "system_hard_limit_usd",
    }
)
_DROPPABLE: Final = ("data", "grants", "daily_costs", "threshold_amount", "hard_limit_usd", "expires_at")


def _rewrite_json(response: HttpResponse, edit: Callable[[Any], None]) -> HttpResponse:
    try:
        payload = json.loads(response.body, parse_float=Decimal)
    except ValueError:
        return response
    edit(payload)
    return HttpResponse(
        response.status, dumps_exact(payload).encode(), response.content_type, response.headers, response.delivery
    )


def _map_numbers(node: Any, fn: Callable[[int | Decimal], Any], *, in_usage: bool = False) -> None:
    """Apply ``fn`` to money values and to usage-result counters, in place."""
    if isinstance(node, list):
        for item in node:
            _map_numbers(item, fn, in_usage=in_usage)
        return
    if not isinstance(node, dict):
        return
    usage = in_usage or str(node.get("object", "")).startswith("organization.usage.")
    for key, value in node.items():
        is_number = isinstance(value, int | Decimal) and not isinstance(value, bool)
        if is_number and (key in _MONEY_KEYS or (usage and key not in {"start_time", "end_time"})):
            node[key] = fn(value)
        else:
            _map_numbers(value, fn, in_usage=False)


def _drop_first_field(payload: Any) -> None:
    if isinstance(payload, dict):
        for key in _DROPPABLE:
            if key in payload:
                del payload[key]
                return


def _truncate(response: HttpResponse) -> HttpResponse:
    return HttpResponse(
        response.status, response.body[: len(response.body) // 2], response.content_type, response.headers
    )


# --------------------------------------------------------------------------------------------------
# Query parsing
# --------------------------------------------------------------------------------------------------


class _Query:
    """Query parameters with ``name[]`` folded into ``name`` (both array syntaxes are accepted)."""

    def __init__(self, raw: Mapping[str, list[str]]) -> None:
        self.values: dict[str, list[str]] = {}
        for key, values in raw.items():
            self.values.setdefault(key.removesuffix("[]"), []).extend(values)

    def one(self, name: str) -> str | None:
        values = self.values.get(name)
        return values[0] if values else None

    def many(self, name: str) -> tuple[str, ...]:
        return tuple(self.values.get(name, ()))

    def integer(self, name: str) -> int | None:
        raw = self.one(name)
        if raw is None or raw == "":
            return None
        try:
            return int(raw)
        except ValueError:
            raise _bad_request(f"Invalid value for '{name}': expected an integer, got '{raw}'.", name) from None

    def boolean(self, name: str) -> bool | None:
        raw = self.one(name)
        if raw is None or raw == "":
            return None
        lowered = raw.lower()
        if lowered in {"true", "1"}:
            return True
        if lowered in {"false", "0"}:
            return False
        raise _bad_request(f"Invalid value for '{name}': expected a boolean, got '{raw}'.", name)

    def limit(self, *, default: int, maximum: int, minimum: int = 1) -> int:
        raw = self.one("limit")
        if raw is None or raw == "":
            return default
        try:
            limit = int(raw)
        except ValueError:
            raise _bad_request(f"Invalid limit provided: {raw}. Limit must be an integer.") from None
        if limit > maximum:
            raise _bad_request(f"Invalid limit provided: {limit}. Limit must be less than or equal to {maximum}.")
        if limit < minimum:
            raise _bad_request(f"Invalid limit provided: {limit}. Limit must be greater than or equal to {minimum}.")
        return limit

    def group_by(self, allowed: Sequence[str]) -> frozenset[str]:
        values = self.many("group_by")
        for value in values:
            if value not in allowed:
                choices = ", ".join(f"'{a}'" for a in allowed)
                raise _bad_request(f"Invalid group_by value: '{value}'. Must be one of {choices}.", "group_by")
        return frozenset(values)


def _floor(ts: int, width: int) -> int:
    return ts - ts % width


def _days_touching(start: int, end: int, width: int) -> range:
    """UTC days whose (midnight-stamped) data belongs to the bucket ``[start, end)``.

    A row stamped at UTC midnight ``d`` belongs to the bucket if ``floor(start, width) <= d < end``: a partial
    first bucket carries its whole period's data; with ``1h``/``1m`` buckets a day's usage lands in the
    bucket starting at that day's midnight.
    """
    first = _floor(start, width)
    return range(first + (-first) % DAY, end, DAY)


# --------------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------------

API_KEY_GROUPING_FLOOR: Final = 1_764_979_200
"""2025-12-06T00:00Z: costs grouped by `api_key_id` are refused for earlier buckets (400, `param:
start_time`), as observed on the real endpoint."""
_Route = Callable[[HttpRequest, _Query, str], HttpResponse]
_USAGE_WIDTHS: Final = {"1m": (60, 60, 1440), "1h": (3600, 24, 168), "1d": (DAY, 7, 31)}
_PROJECT_PATH: Final = re.compile(
    r"^/v1/organization/projects/([^/]+)(?:/(rate_limits|spend_limit|spend_alerts|api_keys|service_accounts))?$"
)
_USAGE_PATH: Final = re.compile(r"^/v1/organization/usage/([a-z_]+)$")
_ADMIN_KEY_PATH: Final = re.compile(r"^/v1/organization/admin_api_keys/([^/]+)$")
_DASHBOARD_PATH: Final = re.compile(r"^(?:/v1)?/dashboard/billing/(credit_grants|subscription|usage)$")


class FakeOpenAI(LoopbackService):
    """OpenAI admin + legacy dashboard endpoints over loopback HTTP, backed by a :class:`SimulatedOrg`.

    Parameters
    ----------
    org:
        The organization to serve; its ``now`` is the server's clock (open-ended queries end with the
        bucket containing ``org.now``).
    admin_key:
        Bearer key accepted on ``/v1/organization/*``.
    session_key:
        Bearer key accepted on ``/dashboard/billing/*`` (root or ``/v1`` prefix); ``None`` rejects all.

    Example
    -------
    >>> with FakeOpenAI(SimulatedOrg.default(now), admin_key="sk-admin-x") as fake:  # doctest: +SKIP
    ...     fake.rate_limit("/v1/organization/costs", retry_after=1)
    ...     client = MyPoller(base_url=fake.base_url)
    """

    def __init__(
        self, org: SimulatedOrg, admin_key: str = SIM_ADMIN_KEY, session_key: str | None = SIM_SESSION_KEY
    ) -> None:
        super().__init__()
        self.org = org
        self.admin_key = admin_key
        self.session_key = session_key
        self._lock = threading.Lock()
        self._faults: list[InjectedFault] = []
        self._log: list[RecordedRequest] = []
        self._latency_s = 0.0
        self._request_counter = 0

    # ---- public API -----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1`` — what an OpenAI client's ``base_url`` should be."""
        return f"{self.root_url}/v1"

    @property
    def requests_log(self) -> list[RecordedRequest]:
        """Every request received, in order: ``(method, path, query, auth)``."""
        with self._lock:
            return list(self._log)

    def reset(self) -> None:
        """Drop every fault, the latency and the request log."""
        with self._lock:
            self._faults.clear()
            self._log.clear()
            self._latency_s = 0.0

    def set_latency(self, seconds: float) -> None:
        """Delay every response by ``seconds`` (benchmarks)."""
        with self._lock:
            self._latency_s = max(0.0, seconds)

    def inject(
        self,
        path_prefix: str,
        *,
        status: int | None = None,
        body: str | bytes | None = None,
        headers: Mapping[str, str] | None = None,
        delay_s: float = 0,
        times: int | None = 1,
        content_type: str = _JSON,
    ) -> InjectedFault:
        """Make the next ``times`` requests whose path starts with ``path_prefix`` misbehave.

        ``status`` and/or ``body`` replace the real response (a status >= 400 without a body gets the
        matching OpenAI error body; a status < 400 without a body keeps the real body). With neither, the
        request is only delayed by ``delay_s`` and then served normally. ``times=None`` = forever. Faults
        match in the order they were injected.
        """
        raw = body.encode() if isinstance(body, str) else body
        response: HttpResponse | None = None
        transform: Callable[[HttpResponse], HttpResponse] | None = None
        extra = dict(headers or {})
        if raw is not None or (status is not None and status >= 400):
            if raw is None:
                raw = dumps_exact(_default_error(status or 500)).encode()
            response = HttpResponse(status or 200, raw, content_type, extra)
        elif status is not None or extra:
            new_status = status

            def transform(real: HttpResponse) -> HttpResponse:
                return HttpResponse(new_status or real.status, real.body, real.content_type, {**real.headers, **extra})

        return self._add(
            InjectedFault(self._lock, path_prefix, times=times, delay_s=delay_s, response=response, transform=transform)
        )

    def rate_limit(self, path_prefix: str, retry_after: int | None = 1, times: int | None = 1) -> InjectedFault:
        """HTTP 429 with OpenAI's rate-limit body and ``Retry-After: <retry_after>`` (omitted when ``None``)."""
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        return self.inject(path_prefix, status=429, headers=headers, times=times)

    def server_error(self, path_prefix: str, status: int = 500, times: int | None = 1) -> InjectedFault:
        """HTTP 5xx with OpenAI's server-error body."""
        return self.inject(path_prefix, status=status, times=times)

    def malformed(
        self, path_prefix: str, kind: MalformedKind, *, status: int | None = None, times: int | None = 1
    ) -> InjectedFault:
        """A broken response.

        ``html``: an HTML 502 page (status 502, or ``status`` e.g. 200); ``truncated``: the real JSON cut
        in half; ``null_fields``: money values (``amount.value``, credit totals, limits …) and usage
        counters set to ``null``; ``string_numbers``: the same values as strings (``"12.3"``);
        ``missing_fields``: the top-level ``data`` dropped (or ``grants``/``daily_costs``/
        ``threshold_amount``/``hard_limit_usd``/``expires_at`` for payloads without ``data``).
        """
        if kind == "html":
            return self.inject(
                path_prefix, status=status or 502, body=_HTML_502, times=times, content_type="text/html; charset=utf-8"
            )
        transforms: dict[str, Callable[[HttpResponse], HttpResponse]] = {
            "truncated": _truncate,
            "null_fields": lambda r: _rewrite_json(r, lambda p: _map_numbers(p, lambda _v: None)),
            "string_numbers": lambda r: _rewrite_json(r, lambda p: _map_numbers(p, lambda v: format(v, "f"))),
            "missing_fields": lambda r: _rewrite_json(r, _drop_first_field),
        }
        if kind not in transforms:
            msg = f"unknown malformed kind {kind!r}"
            raise ValueError(msg)
        fix = transforms[kind]
        if status is not None:
            base = fix

            def fix(real: HttpResponse) -> HttpResponse:
                broken = base(real)
                return HttpResponse(status, broken.body, broken.content_type, broken.headers)

        return self._add(InjectedFault(self._lock, path_prefix, times=times, transform=fix))

    def hang(self, path_prefix: str, seconds: float, times: int | None = 1) -> InjectedFault:
        """Sleep ``seconds`` before answering (client-timeout tests, or a slow success); ``stop()`` wakes
        the sleeper."""
        return self.inject(path_prefix, delay_s=seconds, times=times)

    def deliver(self, path_prefix: str, delivery: Delivery, *, times: int | None = 1) -> InjectedFault:
        """Serve the real response the way ``delivery`` says (trickled, cut short, reset, chunked …)."""

        def transform(real: HttpResponse) -> HttpResponse:
            return HttpResponse(real.status, real.body, real.content_type, real.headers, delivery)

        return self._add(InjectedFault(self._lock, path_prefix, times=times, transform=transform))

    def trickle(self, path_prefix: str, bytes_per_s: float, *, times: int | None = 1) -> InjectedFault:
        """The real body at ``bytes_per_s`` (with its real Content-Length): no socket read ever times out."""
        return self.deliver(path_prefix, Delivery(bytes_per_s=bytes_per_s), times=times)

    def cut_body(
        self, path_prefix: str, *, chunked: bool = False, keep: float = 0.5, times: int | None = 1
    ) -> InjectedFault:
        """The real body cut short after ``keep`` of it, then the connection closed: short of its
        Content-Length, or (``chunked``) without the terminating chunk."""

        def transform(real: HttpResponse) -> HttpResponse:
            delivery = Delivery(chunked=chunked, cut_after=max(1, int(len(real.body) * keep)))
            return HttpResponse(real.status, real.body, real.content_type, real.headers, delivery)

        return self._add(InjectedFault(self._lock, path_prefix, times=times, transform=transform))

    def reset_connection(
        self, path_prefix: str, *, when: Literal["before_headers", "mid_body"], times: int | None = 1
    ) -> InjectedFault:
        """Abort the connection with a TCP RST before the reply, or halfway through the real body."""
        return self.deliver(path_prefix, Delivery(reset=when), times=times)

    def huge(self, path_prefix: str, size_bytes: int, *, chunked: bool = True, times: int | None = 1) -> InjectedFault:
        """A valid JSON page (``data: []``, ``has_more: false``) of ``size_bytes``, padded with one long
        string and streamed in pieces, never built in memory; with a Content-Length unless ``chunked``."""
        head = b'{"object": "page", "data": [], "has_more": false, "next_page": null, "last_id": null, "padding": "'
        tail = b'"}'
        padding = max(0, size_bytes - len(head) - len(tail))

        def stream() -> Iterator[bytes]:
            yield head
            block = b"x" * _PIECE_BYTES
            left = padding
            while left > 0:
                yield block[: min(left, _PIECE_BYTES)]
                left -= _PIECE_BYTES
            yield tail

        delivery = Delivery(chunked=chunked, stream=stream, length=len(head) + padding + len(tail))
        return self._add(
            InjectedFault(self._lock, path_prefix, times=times, response=HttpResponse(200, b"", _JSON, {}, delivery))
        )

    def missing_scope(
        self,
        path_prefix: str,
        *,
        status: int = 401,
        scopes: Sequence[str] = ("api.usage.read",),
        times: int | None = None,
    ) -> InjectedFault:
        """OpenAI's reply to a key that lacks a scope: 401 (as observed on some endpoints) or 403, with
        "You have insufficient permissions for this operation. Missing scopes: <scopes>."."""
        message = f"You have insufficient permissions for this operation. Missing scopes: {', '.join(scopes)}."
        body = dumps_exact(_error_payload(message, "invalid_request_error"))
        return self.inject(path_prefix, status=status, body=body, times=times)

    def rewrite(self, path_prefix: str, edit: Callable[[Any], None], *, times: int | None = 1) -> InjectedFault:
        """Serve the real JSON after ``edit`` changed it in place (e.g. to drop what the spec makes optional)."""
        return self._add(
            InjectedFault(self._lock, path_prefix, times=times, transform=lambda real: _rewrite_json(real, edit))
        )

    # ---- request handling -----------------------------------------------------------------------

    def _add(self, fault: InjectedFault) -> InjectedFault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def handle(self, request: HttpRequest) -> HttpResponse:
        key = _bearer(request.headers)
        with self._lock:
            self._log.append(RecordedRequest(request.method, request.path, request.query, self._auth_kind(key)))
            self._request_counter += 1
            request_id = f"req_{self._request_counter:032x}"
            fault = next((f for f in self._faults if f.active and request.path.startswith(f.path_prefix)), None)
            if fault is not None:
                fault._consume()  # under the shared lock
            latency = self._latency_s
        self._sleep(latency + (fault.delay_s if fault else 0))
        if fault is not None and fault.response is not None:
            response = HttpResponse(
                fault.response.status,
                fault.response.body,
                fault.response.content_type,
                dict(fault.response.headers),
                fault.response.delivery,
            )
        else:
            response = self._route(request, key)
            if fault is not None and fault.transform is not None:
                response = fault.transform(response)
        response.headers.setdefault("x-request-id", request_id)
        return response

    def _auth_kind(self, key: str | None) -> AuthKind:
        if key is None:
            return "none"
        if key == self.admin_key:
            return "admin"
        if self.session_key is not None and key == self.session_key:
            return "session"
        if key.startswith(("sk-proj-", "sk-svcacct-")):
            return "project"
        if key.startswith("sk-"):
            return "secret"
        return "invalid"

    def _route(self, request: HttpRequest, key: str | None) -> HttpResponse:
        found = self._match(request.path)
        if found is None or request.method != "GET":
            message = f"Invalid URL ({request.method} {request.path})"
            return _json(404, _error_payload(message, "invalid_request_error"))
        handler, scope, arg = found
        try:
            if scope == "admin":
                self._require_admin(key)
            else:
                self._require_session(key, request)
            return handler(request, _Query(request.query), arg)
        except _ApiError as err:
            return err.response

    def _match(self, path: str) -> tuple[_Route, str, str] | None:
        fixed: dict[str, _Route] = {
            "/v1/organization/costs": self._costs,
            "/v1/organization/projects": self._projects,
            "/v1/organization/spend_limit": self._org_spend_limit,
            "/v1/organization/spend_alerts": self._org_spend_alerts,
            "/v1/organization/users": self._users,
        }
        if path in fixed:
            return fixed[path], "admin", ""
        if (m := _USAGE_PATH.match(path)) and m.group(1) in USAGE_TYPES:
            return self._usage, "admin", m.group(1)
        if m := _PROJECT_PATH.match(path):
            sub = {
                None: self._project,
                "rate_limits": self._rate_limits,
                "spend_limit": self._project_spend_limit,
                "spend_alerts": self._project_spend_alerts,
                "api_keys": self._api_keys,
                "service_accounts": self._service_accounts,
            }
            return sub[m.group(2)], "admin", m.group(1)
        if m := _ADMIN_KEY_PATH.match(path):
            return self._admin_key, "admin", m.group(1)
        if m := _DASHBOARD_PATH.match(path):
            dashboard = {
                "credit_grants": self._credit_grants,
                "subscription": self._subscription,
                "usage": self._billing_usage,
            }
            return dashboard[m.group(1)], "session", m.group(1)
        return None

    # ---- auth -----------------------------------------------------------------------------------

    def _require_admin(self, key: str | None) -> None:
        if key == self.admin_key:
            return
        if key is None:
            raise _ApiError(
                401,
                "You didn't provide an API key. You need to provide your API key in an Authorization header using "
                f"Bearer auth (i.e. Authorization: Bearer YOUR_KEY). You can obtain an API key from {_KEYS_URL}.",
                code="invalid_api_key",
            )
        if key.startswith(("sk-proj-", "sk-svcacct-")):
            raise _ApiError(403, _MISSING_SCOPE, code=None)
        raise _ApiError(
            401,
            f"Incorrect API key provided: {redact_key(key)}. You can find your API key at {_KEYS_URL}.",
            code="invalid_api_key",
        )

    def _require_session(self, key: str | None, request: HttpRequest) -> None:
        if key is not None and self.session_key is not None and key == self.session_key:
            return
        if key is not None and key.startswith("sk-"):
            raise _ApiError(
                403,
                f"Your request to {request.method} {request.path} must be made with a session key (that is, it can "
                "only be made from the browser). You made it with the following key type: secret.",
                code=None,
                type_="server_error",
            )
        shown = redact_key(key) if key else "none"
        raise _ApiError(
            401,
            f"Incorrect API key provided: {shown}. You can find your API key at {_KEYS_URL}.",
            code="invalid_api_key",
        )

    # ---- costs and usage ------------------------------------------------------------------------

    def _window(self, q: _Query, width: int) -> tuple[int, int, int | None]:
        start = q.integer("start_time")
        if start is None:
            raise _ApiError(
                400, "Missing required parameter: 'start_time'.", param="start_time", code="missing_required_parameter"
            )
        end_param = q.integer("end_time")
        end = end_param if end_param is not None else _floor(self.org.now_ts, width) + width
        if end_param is not None and end_param <= start:
            raise _bad_request("end_time must be greater than start_time.", "end_time")
        return start, max(start, end), end_param

    def _page(
        self, q: _Query, fingerprint: object, *, start: int, end: int, width: int, limit: int
    ) -> tuple[list[tuple[int, int]], bool, str | None]:
        """Buckets of this page, ``has_more`` and the ``next_page`` token (bound to ``fingerprint``)."""
        digest = hashlib.sha256(repr(fingerprint).encode()).hexdigest()[:20]
        cursor = start
        token = q.one("page")
        if token:
            cursor = _decode_page(token, digest)
            if not start <= cursor < end:
                raise _bad_request("Invalid page token: it does not belong to this query.", "page")
        bounds: list[tuple[int, int]] = []
        while cursor < end and len(bounds) < limit:
            bucket_end = min(_floor(cursor, width) + width, end)
            bounds.append((cursor, bucket_end))
            cursor = bucket_end
        has_more = cursor < end
        return bounds, has_more, _encode_page(digest, cursor) if has_more else None

    def _costs(self, _request: HttpRequest, q: _Query, _arg: str) -> HttpResponse:
        width_name = q.one("bucket_width") or "1d"
        if width_name != "1d":
            raise _bad_request(
                f"Invalid bucket_width provided: '{width_name}'. Only '1d' is supported for costs.", "bucket_width"
            )
        start, end, end_param = self._window(q, DAY)
        limit = q.limit(default=7, maximum=180)
        group_by = q.group_by(("project_id", "line_item", "api_key_id"))
        if "api_key_id" in group_by and start < API_KEY_GROUPING_FLOOR:
            raise _bad_request(
                f"start_time must be at or after {API_KEY_GROUPING_FLOOR} when grouping by api_key_id.", "start_time"
            )
        project_ids, api_key_ids = q.many("project_ids"), q.many("api_key_ids")
        fingerprint = ("costs", start, end_param, limit, sorted(group_by), sorted(project_ids), sorted(api_key_ids))
        bounds, has_more, next_page = self._page(q, fingerprint, start=start, end=end, width=DAY, limit=limit)
        data = [
            {
                "object": "bucket",
                "start_time": s,
                "end_time": e,
                "results": self._cost_results(s, e, group_by, set(project_ids), set(api_key_ids)),
            }
            for s, e in bounds
        ]
        return _json(200, {"object": "page", "data": data, "has_more": has_more, "next_page": next_page})

    def _cost_results(
        self, start: int, end: int, group_by: frozenset[str], project_ids: set[str], api_key_ids: set[str]
    ) -> list[dict[str, Any]]:
        groups: dict[tuple[str | None, str | None, str | None], list[Any]] = {}
        by_item = "line_item" in group_by
        for day in _days_touching(start, end, DAY):
            for row in self.org.costs_on(day):
                if (project_ids and row.project_id not in project_ids) or (
                    api_key_ids and row.api_key_id not in api_key_ids
                ):
                    continue
                key = (
                    row.project_id if "project_id" in group_by else None,
                    row.line_item if by_item else None,
                    row.api_key_id if "api_key_id" in group_by else None,
                )
                _accumulate(groups, key, row)
        return [
            {
                "object": "organization.costs.result",
                "amount": {"value": amount, "currency": "usd"},
                "line_item": line_item,
                "project_id": project_id,
                "api_key_id": api_key_id,
                "quantity": quantity if by_item else None,
                "quantity_unit": unit if by_item else None,
            }
            for (project_id, line_item, api_key_id), (amount, quantity, unit) in groups.items()
        ]

    def _usage(self, _request: HttpRequest, q: _Query, usage_type: str) -> HttpResponse:
        spec = USAGE_TYPES[usage_type]
        width_name = q.one("bucket_width") or "1d"
        if width_name not in _USAGE_WIDTHS:
            raise _bad_request(
                f"Invalid bucket_width provided: '{width_name}'. Must be one of '1m', '1h', '1d'.", "bucket_width"
            )
        width, default_limit, max_limit = _USAGE_WIDTHS[width_name]
        start, end, end_param = self._window(q, width)
        limit = q.limit(default=default_limit, maximum=max_limit)
        group_by = q.group_by(spec.dims)
        filters: dict[str, set[UsageDim]] = {}
        for param, dim in spec.filters.items():
            if param == "batch":
                flag = q.boolean("batch")
                if flag is not None:
                    filters[dim] = {flag}
            elif values := q.many(param):
                filters[dim] = set(values)
        fingerprint = (
            usage_type,
            start,
            end_param,
            width_name,
            limit,
            sorted(group_by),
            sorted((k, sorted(map(str, v))) for k, v in filters.items()),
        )
        bounds, has_more, next_page = self._page(q, fingerprint, start=start, end=end, width=width, limit=limit)
        data = [
            {
                "object": "bucket",
                "start_time": s,
                "end_time": e,
                "results": self._usage_results(spec, start=s, end=e, width=width, group_by=group_by, filters=filters),
            }
            for s, e in bounds
        ]
        return _json(200, {"object": "page", "data": data, "has_more": has_more, "next_page": next_page})

    def _usage_results(
        self,
        spec: UsageTypeSpec,
        *,
        start: int,
        end: int,
        width: int,
        group_by: frozenset[str],
        filters: Mapping[str, set[UsageDim]],
    ) -> list[dict[str, Any]]:
        groups: dict[tuple[UsageDim, ...], dict[str, int]] = {}
        for day in _days_touching(start, end, width):
            for row in self.org.usage_on(spec.name, day):
                if any(row.dims.get(dim) not in allowed for dim, allowed in filters.items()):
                    continue
                key = tuple(row.dims.get(dim) if dim in group_by else None for dim in spec.dims)
                _add_metrics(groups, key, row)
        return [
            {"object": spec.result_object, **metrics, **dict(zip(spec.dims, key, strict=True))}
            for key, metrics in groups.items()
        ]

    # ---- projects, limits, alerts, keys ---------------------------------------------------------

    def _projects(self, _request: HttpRequest, q: _Query, _arg: str) -> HttpResponse:
        limit = q.limit(default=20, maximum=100)
        include_archived = bool(q.boolean("include_archived"))
        projects = [p for p in self.org.projects if include_archived or p.archived_at is None]
        return _json(200, _list_page([_project_json(p) for p in projects], limit, q.one("after")))

    def _known_project(self, project_id: str) -> SimProject:
        project = self.org.project(project_id)
        if project is None:
            raise _ApiError(404, f"The project {project_id} was not found", param="project_id", code="not_found")
        return project

    def _project(self, _request: HttpRequest, _q: _Query, project_id: str) -> HttpResponse:
        return _json(200, _project_json(self._known_project(project_id)))

    def _rate_limits(self, _request: HttpRequest, q: _Query, project_id: str) -> HttpResponse:
        self._known_project(project_id)
        limit = q.limit(default=100, maximum=1000)
        items = [
            {
                "object": "project.rate_limit",
                "id": rl.id,
                "model": rl.model,
                "max_requests_per_1_minute": rl.max_requests_per_1_minute,
                "max_tokens_per_1_minute": rl.max_tokens_per_1_minute,
                **rl.extra,
            }
            for rl in self.org.rate_limits
        ]
        return _json(200, _list_page(items, limit, q.one("after")))

    def _api_keys(self, _request: HttpRequest, q: _Query, project_id: str) -> HttpResponse:
        """`ProjectApiKeyListResponse`: the project's keys that still exist, each owner as OpenAI embeds it."""
        self._known_project(project_id)
        users = {u.id: u for u in self.org.users}
        accounts = {a.id: a for a in self.org.service_accounts}
        items = [
            _api_key_json(key, users, accounts)
            for key in self.org.api_keys
            if key.project_id == project_id and not key.deleted
        ]
        return _json(200, _list_page(items, q.limit(default=20, maximum=100), q.one("after")))

    def _service_accounts(self, _request: HttpRequest, q: _Query, project_id: str) -> HttpResponse:
        self._known_project(project_id)
        items = [
            {
                "object": "organization.project.service_account",
                "id": a.id,
                "name": a.name,
                "role": a.role,
                "created_at": a.created_at,
            }
            for a in self.org.service_accounts
            if a.project_id == project_id
        ]
        return _json(200, _list_page(items, q.limit(default=20, maximum=100), q.one("after")))

    def _users(self, _request: HttpRequest, q: _Query, _arg: str) -> HttpResponse:
        """`UserListResponse`: current members only (a user who left is gone, their keys' owner stays)."""
        items = [
            {
                "object": "organization.user",
                "id": u.id,
                "name": u.name,
                "email": u.email,
                "role": u.role,
                "added_at": u.added_at,
            }
            for u in self.org.users
            if not u.left
        ]
        return _json(200, _list_page(items, q.limit(default=20, maximum=100), q.one("after")))

    def _org_spend_limit(self, _request: HttpRequest, _q: _Query, _arg: str) -> HttpResponse:
        if self.org.org_spend_limit is None:
            raise _ApiError(404, "No spend limit is set for this organization.", code="not_found")
        return _json(200, _spend_limit_json("organization.spend_limit", self.org.org_spend_limit))

    def _project_spend_limit(self, _request: HttpRequest, _q: _Query, project_id: str) -> HttpResponse:
        self._known_project(project_id)
        limit = self.org.project_spend_limits.get(project_id)
        if limit is None:
            raise _ApiError(404, f"No spend limit is set for project {project_id}.", code="not_found")
        return _json(200, _spend_limit_json("project.spend_limit", limit))

    def _org_spend_alerts(self, _request: HttpRequest, q: _Query, _arg: str) -> HttpResponse:
        return _json(200, _alerts_page("organization.spend_alert", self.org.org_spend_alerts, q))

    def _project_spend_alerts(self, _request: HttpRequest, q: _Query, project_id: str) -> HttpResponse:
        self._known_project(project_id)
        alerts = self.org.project_spend_alerts.get(project_id, ())
        return _json(200, _alerts_page("project.spend_alert", alerts, q))

    def _admin_key(self, _request: HttpRequest, _q: _Query, key_id: str) -> HttpResponse:
        key = self.org.admin_keys.get(key_id)
        if key is None:
            raise _ApiError(404, f"No admin API key found with id '{key_id}'.", param="key_id", code="not_found")
        return _json(200, _admin_key_json(key, key.redacted_value or _redacted_value(self.admin_key)))

    # ---- legacy dashboard -----------------------------------------------------------------------

    def _credit_grants(self, _request: HttpRequest, _q: _Query, _arg: str) -> HttpResponse:
        totals = self.org.credit_totals()
        grants = [
            {
                "object": "credit_grant",
                "id": g.id,
                "grant_amount": g.grant_amount,
                "used_amount": g.used_amount,
                "effective_at": g.effective_at,
                "expires_at": g.expires_at,
            }
            for g in self.org.credit_grants
        ]
        return _json(
            200,
            {
                "object": "credit_summary",
                "total_granted": totals.total_granted,
                "total_used": totals.total_used,
                "total_available": totals.total_available,
                "total_paid_available": totals.total_paid_available,
                "grants": {"object": "list", "data": grants},
            },
        )

    def _subscription(self, _request: HttpRequest, _q: _Query, _arg: str) -> HttpResponse:
        sub = self.org.subscription
        return _json(
            200,
            {
                "object": "billing_subscription",
                "has_payment_method": sub.has_payment_method,
                "canceled": False,
                "canceled_at": None,
                "delinquent": None,
                "access_until": sub.access_until,
                "soft_limit": int(sub.soft_limit_usd * 10_000),
                "hard_limit": int(sub.hard_limit_usd * 10_000),
                "system_hard_limit": int(sub.system_hard_limit_usd * 10_000),
                "soft_limit_usd": sub.soft_limit_usd,
                "hard_limit_usd": sub.hard_limit_usd,
                "system_hard_limit_usd": sub.system_hard_limit_usd,
                "plan": {"title": sub.plan_title, "id": sub.plan_id},
                "primary": True,
                "account_name": sub.account_name,
                "po_number": None,
                "billing_email": None,
                "tax_ids": None,
                "billing_address": None,
                "business_address": None,
                "billing_mechanism": sub.billing_mechanism,
                "is_arrears_eligible": False,
                "max_balance": sub.max_balance,
                "auto_recharge_eligible": sub.auto_recharge_eligible,
                "auto_recharge_enabled": sub.auto_recharge_enabled,
                "auto_recharge_threshold": sub.auto_recharge_threshold,
                "auto_recharge_to_balance": sub.auto_recharge_to_balance,
                "trust_tier": sub.trust_tier,
            },
        )

    def _billing_usage(self, _request: HttpRequest, q: _Query, _arg: str) -> HttpResponse:
        """``total_usage`` and ``cost`` in US cents; ``end_date`` exclusive; days after ``org.now`` omitted."""
        start = _parse_date(q.one("start_date"), "start_date")
        end = _parse_date(q.one("end_date"), "end_date")
        if end <= start:
            raise _bad_request("end_date must be after start_date.", "end_date")
        daily = []
        total = Decimal(0)
        for day in range(start, min(end, _floor(self.org.now_ts, DAY) + DAY), DAY):
            items: dict[str, Decimal] = {}
            for row in self.org.costs_on(day):
                items[row.line_item] = items.get(row.line_item, Decimal(0)) + row.amount * 100
            total += sum(items.values(), Decimal(0))
            daily.append({"timestamp": day, "line_items": [{"name": n, "cost": c} for n, c in items.items()]})
        return _json(200, {"object": "list", "daily_costs": daily, "total_usage": total})


def _accumulate(groups: dict[tuple[str | None, str | None, str | None], list[Any]], key: Any, row: CostRow) -> None:
    acc = groups.get(key)
    if acc is None:
        groups[key] = [row.amount, row.quantity, row.quantity_unit]
        return
    acc[0] += row.amount
    acc[1] += row.quantity
    if acc[2] != row.quantity_unit:
        acc[2] = None


def _add_metrics(groups: dict[tuple[UsageDim, ...], dict[str, int]], key: tuple[UsageDim, ...], row: UsageRow) -> None:
    acc = groups.get(key)
    if acc is None:
        groups[key] = dict(row.metrics)
        return
    for name, value in row.metrics.items():
        acc[name] += value


def _bearer(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _encode_page(digest: str, cursor: int) -> str:
    return "page_" + base64.urlsafe_b64encode(f"{digest}:{cursor}".encode()).decode()


def _decode_page(token: str, digest: str) -> int:
    invalid = _bad_request("Invalid page token: it does not belong to this query.", "page")
    try:
        decoded = base64.urlsafe_b64decode(token.removeprefix("page_").encode()).decode()
        token_digest, cursor = decoded.split(":")
        value = int(cursor)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid from None
    if token_digest != digest:
        raise invalid
    return value


def _parse_date(raw: str | None, name: str) -> int:
    if not raw:
        raise _ApiError(400, f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter")
    try:
        parsed = date.fromisoformat(raw)
    except ValueError:
        raise _bad_request(f"Invalid value for '{name}': expected YYYY-MM-DD, got '{raw}'.", name) from None
    return int(datetime(parsed.year, parsed.month, parsed.day, tzinfo=UTC).timestamp())


def _list_page(items: Sequence[dict[str, Any]], limit: int, after: str | None) -> dict[str, Any]:
    start = 0
    if after:
        index = next((i for i, item in enumerate(items) if item["id"] == after), None)
        if index is None:
            raise _bad_request(f"Invalid 'after' cursor: no object with id '{after}'.", "after")
        start = index + 1
    page = list(items[start : start + limit])
    return {
        "object": "list",
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": start + limit < len(items),
    }


def _alerts_page(object_name: str, alerts: Iterable[SpendAlert], q: _Query) -> dict[str, Any]:
    limit = q.limit(default=20, maximum=100, minimum=0)
    order = q.one("order") or "asc"
    if order not in {"asc", "desc"}:
        raise _bad_request(f"Invalid order: '{order}'. Must be one of 'asc', 'desc'.", "order")
    items = [
        {
            "id": a.id,
            "object": object_name,
            "threshold_amount": a.threshold_amount,
            "currency": a.currency,
            "interval": a.interval,
            "notification_channel": {
                "type": "email",
                "recipients": list(a.recipients),
                "subject_prefix": a.subject_prefix,
            },
        }
        for a in alerts
    ]
    if order == "desc":
        items.reverse()
    return _list_page(items, limit, q.one("after"))


def _project_json(project: SimProject) -> dict[str, Any]:
    return {
        "id": project.id,
        "object": "organization.project",
        "name": project.name,
        "created_at": project.created_at,
        "archived_at": project.archived_at,
        "status": project.status,
        "external_key_id": None,
        "residency": "GLOBAL",
    }


def _spend_limit_json(object_name: str, limit: SpendLimit) -> dict[str, Any]:
    return {
        "object": object_name,
        "threshold_amount": limit.threshold_amount,
        "currency": limit.currency,
        "interval": limit.interval,
        "enforcement": {"status": limit.enforcement_status},
    }


def _api_key_json(
    key: SimApiKey, users: Mapping[str, SimUser], accounts: Mapping[str, SimServiceAccount]
) -> dict[str, Any]:
    owner: dict[str, Any] = {"type": key.owner_type}
    if key.owner_type == "user":
        user = users[key.owner_id]
        owner["user"] = {
            "id": user.id,
            "email": user.email,
            "name": user.name,
            "created_at": user.added_at,
            "role": "member",
        }
    else:
        account = accounts[key.owner_id]
        owner["service_account"] = {
            "id": account.id,
            "name": account.name,
            "created_at": account.created_at,
            "role": account.role,
        }
    return {
        "object": "organization.project.api_key",
        "redacted_value": key.redacted_value,
        "name": key.name,
        "created_at": key.created_at,
        "last_used_at": None,
        "id": key.id,
        "owner_project_access": "inactive" if key.owner_type == "user" and users[key.owner_id].left else "active",
        "owner": owner,
    }


def _admin_key_json(key: AdminKey, redacted: str) -> dict[str, Any]:
    return {
        "object": "organization.admin_api_key",
        "id": key.id,
        "name": key.name,
        "redacted_value": redacted,
        "created_at": key.created_at,
        "last_used_at": key.last_used_at,
        "expires_at": key.expires_at,
        "owner": {
            "type": "user",
            "object": "organization.user",
            "id": key.owner_id,
            "name": key.owner_name,
            "created_at": key.owner_created_at,
            "role": "owner",
        },
    }
