"""Connection-level faults for the local receivers, and a fault-injecting HTTP proxy for real AWS clients.

A client can only tell "not delivered" from "delivered, answer lost" by what happens on the wire, so
these faults happen on the wire: an answer that comes after the client's timeout, a connection closed
after the request was read, a port where nothing listens. `FakeSlack` uses them directly; `FaultProxy`
puts them in front of any HTTP service (moto's SES) so botocore meets them for real
(`ReadTimeoutError`, `ConnectionClosedError`, `EndpointConnectionError`)::

    with MotoServer() as moto, FaultProxy(moto.endpoint_url) as proxy:
        proxy.answer_late(1, delay_s=2)    # forwarded (SES records the mail), answered after 2 s
        boto3.client("sesv2", endpoint_url=proxy.root_url, ...).send_email(...)  # ReadTimeoutError
"""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler
from typing import Any, Literal, Self
from urllib.parse import urlencode, urlsplit

from spendwatch.devtools.fake_openai import HttpRequest, HttpResponse, LoopbackService

__all__ = ["FaultProxy", "ProxiedRequest", "drop_current_connection", "refused_url", "serve_connection_aware"]

_current = threading.local()
"""The request handler serving this thread, so a service's `handle` can close its connection."""


def refused_url(path: str = "/") -> str:
    """A loopback URL nothing listens on (a port just released): connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    return f"http://127.0.0.1:{port}{path}"


def serve_connection_aware(service: LoopbackService) -> None:
    """Make a started `LoopbackService` serve with a handler that `drop_current_connection` can reach.

    Call it right after `start()`: nobody knows the port yet, so no request was served by the old class.
    """
    server: Any = getattr(service, "_server", None)
    if server is None or getattr(server.RequestHandlerClass, "connection_aware", False):
        return
    server.RequestHandlerClass = _connection_aware(server.RequestHandlerClass)


def drop_current_connection() -> None:
    """From within `handle`: close the connection without an answer (the answer's write then fails and
    the shared handler discards it)."""
    handler = getattr(_current, "handler", None)
    if handler is None:
        return
    handler.close_connection = True
    with contextlib.suppress(OSError):
        handler.connection.shutdown(socket.SHUT_RDWR)


def _connection_aware(base: Any) -> type[BaseHTTPRequestHandler]:
    class Handler(base):  # type: ignore[misc]
        connection_aware = True

        def _serve(self) -> None:
            _current.handler = self
            try:
                super()._serve()
            finally:
                _current.handler = None

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

    return Handler


@dataclass(slots=True)
class _Fault:
    remaining: int
    kind: Literal["late", "drop"]
    delay_s: float = 0.0
    forward: bool = True


@dataclass(frozen=True, slots=True)
class ProxiedRequest:
    method: str
    path: str
    forwarded: bool
    fault: str | None
    """`late`, `drop` or None"""


_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "host", "content-length", "date", "server"}


class FaultProxy(LoopbackService):
    """Forwards every request to `upstream` (e.g. moto's server) and answers with its reply, unless a
    fault is queued: `answer_late` (forwarded, answered after `delay_s`), `drop` (read, optionally
    forwarded, connection closed without an answer)."""

    def __init__(self, upstream: str) -> None:
        super().__init__()
        parts = urlsplit(upstream)
        if parts.hostname is None:
            msg = f"not an URL: {upstream!r}"
            raise ValueError(msg)
        self._upstream = (parts.hostname, parts.port)
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        self._log: list[ProxiedRequest] = []

    def start(self) -> Self:
        super().start()
        serve_connection_aware(self)
        return self

    def answer_late(self, n: int = 1, *, delay_s: float) -> None:
        with self._lock:
            self._faults.append(_Fault(n, "late", delay_s=delay_s))

    def drop(self, n: int = 1, *, forward: bool) -> None:
        with self._lock:
            self._faults.append(_Fault(n, "drop", forward=forward))

    @property
    def requests_log(self) -> list[ProxiedRequest]:
        with self._lock:
            return list(self._log)

    def handle(self, request: HttpRequest) -> HttpResponse:
        with self._lock:
            fault = next((f for f in self._faults if f.remaining > 0), None)
            if fault is not None:
                fault.remaining -= 1
        forward = fault is None or fault.forward
        response = self._forward(request) if forward else HttpResponse(200)
        with self._lock:
            self._log.append(ProxiedRequest(request.method, request.path, forward, fault.kind if fault else None))
        if fault is not None and fault.kind == "drop":
            drop_current_connection()
        elif fault is not None:
            self._sleep(fault.delay_s)  # the client gave up meanwhile; its connection is gone
        return response

    def _forward(self, request: HttpRequest) -> HttpResponse:
        host, port = self._upstream
        connection = HTTPConnection(host, port, timeout=30)
        query = urlencode([(k, v) for k, values in request.query.items() for v in values])
        try:
            connection.request(
                request.method,
                request.path + (f"?{query}" if query else ""),
                body=request.body,
                headers={k: v for k, v in request.headers.items() if k not in _HOP_BY_HOP},
            )
            reply = connection.getresponse()
            body = reply.read()
            headers = {k: v for k, v in reply.getheaders() if k.lower() not in _HOP_BY_HOP | {"content-type"}}
            return HttpResponse(reply.status, body, reply.getheader("Content-Type") or "text/plain", headers)
        finally:
            connection.close()
