"""HTTP adapter for OpenAI's admin API and legacy dashboard endpoints.

Owns timeouts, deadlines, size caps, retries (429, 5xx, timeouts, resets and truncated bodies, with
exponential back-off honouring `Retry-After`, never past the poll's deadline), cursor pagination, exact
JSON parsing and the mapping of every failure to a typed `SourceError` whose message names the source and
never contains a key.

Every request has a wall-clock deadline: the earlier of `REQUEST_DEADLINE_S` from its start and the poll's
`Deadline` (the invocation's remaining time minus `WRITE_RESERVE_S` for storing the snapshot). `requests`'
timeouts bound each socket operation only, so a peer trickling a few bytes a second would never trip them:
the body is read as a stream with the deadline checked between chunks, and a timer shuts the request's
socket at the deadline, which also ends a connect or a header wait that trickles. A body is read up to
`RESPONSE_CAP_BYTES` (a Content-Length above it is refused before reading).

One client serves one poll of one organization and is shared by the poll's worker threads: the
`requests.Session` connection pool is sized for them, and the request counter, key cache and key-wide check
are locked. Keys are read once per client (then from the cache) and re-read once after a 401/403 (rotation,
P2). A key that is not set fails every source of the poll as `admin_key_missing`; a key that could not be
read (SSM throttled, access denied, timed out) fails them as `unavailable`, which is retryable.

Auth failures are classified per source. A 401/403 saying "Missing scopes: X" names the scope (condition
`admin_key_missing_scope:X`) for that source only. Any other 401 on an admin endpoint is checked once per
poll against a request every admin key may make (`KEY_CHECK_PATH`); only if that fails with a plain 401 too
is the key `admin_key_rejected`, and the poll's remaining requests are not sent. Otherwise the 401 is that
source's own failure.
"""

from __future__ import annotations

import contextlib
import heapq
import http.client
import random
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import TracebackType
from typing import Any, Literal, TypeVar

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from spendwatch.aws.secrets import SecretSource, SecretUnavailableError, require
from spendwatch.core.config import OrganizationConfig
from spendwatch.core.errors import (
    AuthError,
    DeadlineError,
    MalformedReplyError,
    RateLimitedError,
    RequestRejectedError,
    SecretNotFoundError,
    SourceError,
    TooLargeError,
    TruncatedReplyError,
    UnavailableError,
)
from spendwatch.core.money import loads_exact
from spendwatch.core.numbers import DYNAMODB_DIGITS as DYNAMODB_DIGITS  # noqa: PLC0414 - re-exported
from spendwatch.core.numbers import DYNAMODB_INT_LIMIT as DYNAMODB_INT_LIMIT  # noqa: PLC0414
from spendwatch.core.numbers import dynamodb_misfit as dynamodb_misfit  # noqa: PLC0414
from spendwatch.core.numbers import dynamodb_number as dynamodb_number  # noqa: PLC0414
from spendwatch.core.redact import scrub as scrub  # noqa: PLC0414 - re-exported for the poller's parsers

DEFAULT_BASE_URL = "https://api.openai.com/v1"  # the official SDK's default
CONNECT_TIMEOUT_S = 3.05
READ_TIMEOUT_S = 20.0
"""Longest wait for any one socket read (requests' read timeout); the request's deadline bounds the total."""
REQUEST_DEADLINE_S = 30.0
"""Wall-clock cap of one request: connect, headers and the whole body. A legitimate page is a few MB and
arrives in well under a second; a request still running after this is retried while the poll has time."""
WRITE_RESERVE_S = 5.0
"""Kept back from the invocation's remaining time (or the CLI's budget) for storing the snapshot: a
DynamoDB put, the logs and the metrics take well under a second, so this leaves room for the put's retries."""
DEFAULT_BUDGET_S = 60.0
RESPONSE_CAP_BYTES = 8 * 1024 * 1024
"""Largest reply body read. Measured with the simulated organization (bench/poll.py, docs/performance.md):
a month of daily costs grouped by project for 500 projects x 30 line items is 3.4 MB, twice under the cap.
Decoded into Python objects a body takes about 7x its size, so 8 MB keeps even two such replies at once
inside the poller's 256 MB. Bucketed sources that exceed it are asked again in smaller pages (poll.py)."""
ERROR_BODY_CAP_BYTES = 64 * 1024
"""An error reply is read only this far: its message is all that is used."""
CHUNK_BYTES = 64 * 1024
MAX_JSON_DEPTH = 64
"""Deepest nesting accepted in a reply; OpenAI's replies nest 6 levels at most."""
MAX_ATTEMPTS = 4
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 8.0
PAGE_CAP = 60
DEFAULT_POOL_SIZE = 24
KEY_CHECK_PATH = "/organization/projects"
"""The key-wide check after a 401: listing projects is allowed to every admin key, whatever its scopes."""
_MISSING_SCOPES = re.compile(r"missing scopes?\b:?(.*)", re.IGNORECASE | re.DOTALL)
_SCOPE = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)+")
_MAX_SCOPES = 5

KeyProvider = Callable[[bool], str]
"""Returns the current key; called with True after a 401/403 to re-read a possibly rotated secret."""

# Named conditions a snapshot carries so the alerter can tell the user what to fix (docs/snapshot.md).
ADMIN_KEY_MISSING = "admin_key_missing"
ADMIN_KEY_REJECTED = "admin_key_rejected"
ADMIN_KEY_MISSING_SCOPE = "admin_key_missing_scope"
"""Prefix of `admin_key_missing_scope:<scope>`; alone only when the reply named no scope."""
SESSION_KEY_REJECTED = "session_key_rejected"


class KeyProblemError(AuthError):
    """An auth failure that names a condition of the key itself (rejected, missing scope, not configured)."""

    def __init__(self, source: str, detail: str, condition: str, *more: str) -> None:
        super().__init__(source, detail)
        self.condition = condition
        self.conditions = (condition, *more)


class NotFoundError(RequestRejectedError):
    """HTTP 404: for spend limits this means "no limit is set", which is data, not a failure."""


def missing_scope_condition(scope: str) -> str:
    """The condition naming one scope the admin key lacks, e.g. `admin_key_missing_scope:api.usage.read`."""
    return f"{ADMIN_KEY_MISSING_SCOPE}:{scope}"


def missing_scopes(message: str) -> tuple[str, ...] | None:
    """The scopes an OpenAI "Missing scopes: a.b.c, d.e" message names (empty if it names none it can
    parse), or None when the message is not about missing scopes."""
    found = _MISSING_SCOPES.search(message)
    if found is None:
        return None
    scopes = dict.fromkeys(s[:64] for s in _SCOPE.findall(found.group(1).lower()))
    return tuple(scopes)[:_MAX_SCOPES]


class Deadline:
    """When a poll must stop asking: the invocation's remaining time (or a budget) minus `reserve_s` for
    writing the snapshot, fixed when the poll starts. Retries and requests never start past it."""

    def __init__(
        self,
        remaining_ms: Callable[[], int] | None = None,
        *,
        reserve_s: float = WRITE_RESERVE_S,
        budget_s: float = DEFAULT_BUDGET_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        total_s = remaining_ms() / 1000 if remaining_ms is not None else budget_s
        self.clock = clock
        self.end = clock() + total_s - reserve_s
        """the poll's deadline on `clock`"""
        self.total_s = total_s - reserve_s
        """the poll's time when it started"""

    def remaining_s(self) -> float:
        return self.end - self.clock()


@dataclass(frozen=True)
class Endpoint:
    """Which credential a path needs and under which root it lives."""

    auth: str  # "admin" or "session"
    legacy: bool = False


ADMIN = Endpoint(auth="admin")
LEGACY = Endpoint(auth="session", legacy=True)


@dataclass(frozen=True)
class _Reply:
    status: int
    headers: Mapping[str, str]
    body: bytes | bytearray


class _TransientError(Exception):
    """No usable reply this attempt, but another attempt may get one (timeout, reset, cut-short body)."""

    def __init__(self, detail: str, *, truncated: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.truncated = truncated


KeyVerdict = Literal["valid", "rejected", "unknown"]
E = TypeVar("E", bound=BaseException)


# --------------------------------------------------------------------------------------------------
# Per-request wall-clock deadline: a timer shuts the request's socket
# --------------------------------------------------------------------------------------------------

_ACTIVE = threading.local()
"""The `_RequestGuard` of the request the current thread is sending, if any."""


class _RequestGuard:
    """Ends one request at its deadline, however slowly the peer sends: at `delay_s` from now the watchdog
    shuts the socket the request uses, which wakes the sending thread from a blocked connect or read.

    The connection is attached by `_GuardedPoolMixin._get_conn` in the sending thread (thread-local), so
    the guard reaches the socket even before the headers arrive.
    """

    def __init__(self, delay_s: float) -> None:
        self._lock = threading.Lock()
        self._conn: object | None = None
        self._done = False
        self.fired = False
        self.fire_at = time.monotonic() + max(0.0, delay_s)

    def __enter__(self) -> _RequestGuard:
        _ACTIVE.guard = self
        _WATCHDOG.watch(self)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        _ACTIVE.guard = None
        with self._lock:
            self._done = True
            self._conn = None

    @property
    def done(self) -> bool:
        return self._done

    def attach(self, conn: object) -> None:
        with self._lock:
            self._conn = conn
            fired = self.fired
        if fired:
            _shut(conn)

    def fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
            conn = self._conn
        if conn is not None:
            _shut(conn)


class _Watchdog:
    """One daemon thread per process that fires each `_RequestGuard` at its time. Cheaper than a timer
    thread per request (measured: a thread start per request cost ~10 % of a poll's CPU)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: list[tuple[float, int, _RequestGuard]] = []
        self._count = 0
        self._thread: threading.Thread | None = None

    def watch(self, guard: _RequestGuard) -> None:
        with self._cond:
            self._count += 1
            heapq.heappush(self._due, (guard.fire_at, self._count, guard))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="spendwatch-request-watchdog", daemon=True)
                self._thread.start()
            elif self._due[0][2] is guard:
                self._cond.notify()  # due before what the thread waits for

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    while self._due and self._due[0][2].done:
                        heapq.heappop(self._due)  # finished in time: drop without waiting for its moment
                    wait = self._due[0][0] - time.monotonic() if self._due else None
                    if wait is not None and wait <= 0:
                        guard = heapq.heappop(self._due)[2]
                        break
                    self._cond.wait(wait)
            guard.fire()


_WATCHDOG = _Watchdog()


def _shut(conn: object) -> None:
    sock = getattr(conn, "sock", None)
    if isinstance(sock, socket.socket):
        # The plain socket's shutdown, also for TLS: SSLSocket.shutdown would drop its SSL object under
        # the reading thread. Shutting the descriptor makes that thread's recv return at once.
        with contextlib.suppress(OSError):
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _GuardedPoolMixin:
    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)  # type: ignore[misc]
        guard: _RequestGuard | None = getattr(_ACTIVE, "guard", None)
        if guard is not None:
            guard.attach(conn)
        return conn


class _GuardedHTTPConnectionPool(_GuardedPoolMixin, HTTPConnectionPool):
    pass


class _GuardedHTTPSConnectionPool(_GuardedPoolMixin, HTTPSConnectionPool):
    pass


class _GuardedAdapter(HTTPAdapter):
    """An adapter whose connection pools let a `_RequestGuard` reach the socket of its request."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _GuardedHTTPConnectionPool,
            "https": _GuardedHTTPSConnectionPool,
        }


def http_session(pool_size: int = DEFAULT_POOL_SIZE) -> requests.Session:
    """A session whose connection pool holds one connection per worker thread of a poll."""
    session = requests.Session()
    adapter = _GuardedAdapter(pool_connections=2, pool_maxsize=pool_size)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


# --------------------------------------------------------------------------------------------------
# The client
# --------------------------------------------------------------------------------------------------


class OpenAIClient:
    def __init__(
        self,
        *,
        admin_key: KeyProvider | None,
        session_key: KeyProvider | None = None,
        base_url: str = DEFAULT_BASE_URL,
        http: requests.Session | None = None,
        deadline: Deadline | None = None,
        sleep: Callable[[float], None] = time.sleep,
        max_attempts: int = MAX_ATTEMPTS,
        timeout: tuple[float, float] = (CONNECT_TIMEOUT_S, READ_TIMEOUT_S),
        request_deadline_s: float = REQUEST_DEADLINE_S,
        response_cap_bytes: int = RESPONSE_CAP_BYTES,
    ) -> None:
        self._keys: dict[str, KeyProvider | None] = {"admin": admin_key, "session": session_key}
        self._base_url = base_url.rstrip("/")
        # The legacy dashboard endpoints live at the host root, i.e. the base URL without its `/v1`.
        self._root_url = self._base_url.removesuffix("/v1")
        self._http = http or http_session()
        self.deadline = deadline or Deadline()
        self._sleep = sleep
        self._max_attempts = max_attempts
        self._timeout = timeout
        self._request_deadline_s = request_deadline_s
        self.response_cap_bytes = response_cap_bytes
        self._lock = threading.Lock()
        self._check_lock = threading.Lock()
        self._request_count = 0
        self._cached: dict[str, str] = {}
        self._refetched: dict[str, str] = {}
        self._revoked: dict[str, tuple[str, KeyProblemError]] = {}
        self._missing: dict[str, AuthError] = {}
        self._unreadable: dict[str, UnavailableError] = {}
        self._key_checks: dict[str, tuple[KeyVerdict, str]] = {}

    @classmethod
    def for_org(
        cls,
        org: OrganizationConfig,
        secrets: SecretSource,
        *,
        base_url: str = DEFAULT_BASE_URL,
        deadline: Deadline | None = None,
        read_timeout_s: float = READ_TIMEOUT_S,
        pool_size: int = DEFAULT_POOL_SIZE,
    ) -> OpenAIClient:
        """A client reading this organization's keys from `secrets` (SSM when deployed, env locally).

        Without a session key the legacy sources are skipped (not failed). A session key parameter that
        exists but cannot be read (access denied, throttled) makes the legacy sources fail with that reason.
        """

        def admin_key(force: bool) -> str:
            return require(secrets, org.admin_key_ref(), f"OpenAI admin key of {org.id}", force_fetch=force)

        def session_key(force: bool) -> str:
            return require(secrets, org.session_key_ref(), f"OpenAI session key of {org.id}", force_fetch=force)

        try:
            has_session = secrets.get(org.session_key_ref()) is not None
        except SecretNotFoundError:
            has_session = True  # the legacy sources will report why it cannot be read
        return cls(
            admin_key=admin_key,
            session_key=session_key if has_session else None,
            base_url=base_url,
            http=http_session(pool_size),
            deadline=deadline,
            timeout=(CONNECT_TIMEOUT_S, read_timeout_s),
        )

    @property
    def request_count(self) -> int:
        """HTTP requests sent so far (every attempt counts, and the key-wide check)."""
        with self._lock:
            return self._request_count

    def has_key(self, auth: str) -> bool:
        return self._keys.get(auth) is not None

    def get_json(self, path: str, params: dict[str, Any] | None, *, source: str, endpoint: Endpoint = ADMIN) -> Any:
        """GET a JSON document with retries; raise a `SourceError` subclass naming `source` on failure."""
        provider = self._keys.get(endpoint.auth)
        if provider is None:
            raise AuthError(source, f"no {endpoint.auth} key configured")
        url = (self._root_url if endpoint.legacy else self._base_url) + path
        key = self._current_key(endpoint.auth, provider, source)
        attempt = 0
        transient: _TransientError | None = None
        while True:
            attempt += 1
            reply: _Reply | None = None
            try:
                reply = self._fetch(url, params, key, source)
            except _TransientError as exc:
                transient = exc
            except DeadlineError as exc:
                if transient is None:
                    raise
                raise DeadlineError(source, f"{exc.detail}; the attempt before: {transient.detail}") from None
            else:
                transient = None
                if reply.status < 400:
                    return self._parse(reply, source)
                if reply.status in (401, 403):
                    # The secret may have been rotated since it was cached: read it once more, then classify.
                    fresh = self._rotated_key(endpoint.auth, provider, key, source)
                    if fresh is not None:
                        key = fresh
                        attempt -= 1
                        continue
                    raise self._auth_error(reply, source, endpoint, key)
                if reply.status < 500 and reply.status != 429:
                    raise self._client_error(reply, source)
            wait = self._retry_wait(reply, attempt)
            if attempt >= self._max_attempts or wait >= self.deadline.remaining_s():
                raise self._give_up(reply, transient, source, attempt)
            self._sleep(wait)

    def _current_key(self, auth: str, provider: KeyProvider, source: str) -> str:
        """The cached key (read once per client); a key that is not set, could not be read, or was found
        rejected by the key-wide check fails at once.

        A read that failed is remembered for this client only, i.e. this poll of this organization: reads
        are serialized under the lock, so twenty sources each waiting out an SSM timeout would use up the
        invocation. The next poll (or the retried message) builds a new client and reads again.
        """
        with self._lock:
            failed: SourceError | None = self._missing.get(auth) or self._unreadable.get(auth)
            if failed is not None:
                raise _same_error(failed, source)
            key = self._cached.get(auth)
            if key is None:
                try:
                    key = _read_key(provider, False, source, auth)
                except AuthError as exc:
                    self._missing[auth] = exc  # one secret read per poll, not one per source
                    raise
                except UnavailableError as exc:
                    self._unreadable[auth] = exc
                    raise
                self._cached[auth] = key
            revoked = self._revoked.get(auth)
        if revoked is not None and revoked[0] == key:
            # The key-wide check rejected this key: no need to ask again in this poll.
            raise _same_error(revoked[1], source)
        return key

    def _rotated_key(self, auth: str, provider: KeyProvider, failed: str, source: str) -> str | None:
        """After a 401/403 with `failed`: a different key to retry with, or None (re-read at most once)."""
        with self._lock:
            current = self._cached.get(auth)
            if current is not None and current != failed:
                return current  # another thread already picked up the rotated key
            if self._refetched.get(auth) == failed:
                return None
            unreadable = self._unreadable.get(auth)
            if unreadable is not None:
                raise _same_error(unreadable, source)
            try:
                fresh = _read_key(provider, True, source, auth)
            except UnavailableError as exc:
                self._unreadable[auth] = exc
                raise
            self._cached[auth] = fresh
            self._refetched[auth] = failed
        return fresh if fresh != failed else None

    # ---- one request ----------------------------------------------------------------------------

    def _fetch(self, url: str, params: dict[str, Any] | None, key: str, source: str) -> _Reply:
        """One request, its body read in full (up to the cap) by its wall-clock deadline.

        Raises `DeadlineError` when the poll's time is up (before sending, or during the request),
        `_TransientError` for what another attempt may fix, `TooLargeError` for a body over the cap.
        """
        poll_left = self.deadline.remaining_s()
        if poll_left <= 0:
            raise DeadlineError(source, "not sent: the poll's time is used up")
        left = min(self._request_deadline_s, poll_left)
        at = self.deadline.clock() + left
        cut_by_poll = left == poll_left
        connect, read = self._timeout
        with self._lock:
            self._request_count += 1
        with _RequestGuard(left) as guard:
            try:
                response = self._http.get(
                    url,
                    params=params,
                    headers={"Authorization": f"Bearer {key}", "Accept": "application/json"},
                    timeout=(min(connect, left), max(0.05, min(read, left))),
                    stream=True,
                )
            except requests.RequestException as exc:
                raise (
                    self._late(source, left, cut_by_poll, "waiting for a reply")
                    if self._past(at, guard)
                    else _no_reply(exc, source)
                ) from None
            try:
                body = self._read_body(response, source, at, guard, left=left, cut_by_poll=cut_by_poll)
            finally:
                response.close()
        return _Reply(response.status_code, response.headers, body)

    def _past(self, at: float, guard: _RequestGuard) -> bool:
        return guard.fired or self.deadline.clock() >= at

    def _late(self, source: str, left: float, cut_by_poll: bool, doing: str) -> Exception:
        if cut_by_poll:
            return DeadlineError(source, f"the poll's time ran out {doing} (sent with {left:.1f} s left)")
        return _TransientError(f"no complete reply within {left:.0f} s")

    def _read_body(
        self,
        response: requests.Response,
        source: str,
        at: float,
        guard: _RequestGuard,
        *,
        left: float,
        cut_by_poll: bool,
    ) -> bytearray:
        """The body, read as a stream: stopped at the cap (error replies: kept up to the cap, as only their
        message is used) and at the request's deadline; a body that ends early is `truncated`."""
        error_reply = response.status_code >= 400
        cap = ERROR_BODY_CAP_BYTES if error_reply else self.response_cap_bytes
        declared = _content_length(response)
        if declared is not None and declared > cap and not error_reply:
            raise TooLargeError(source, f"reply of {_size(declared)} (Content-Length) is over the {_size(cap)} cap")
        body = bytearray()
        try:
            for chunk in response.iter_content(CHUNK_BYTES):
                body += chunk
                if len(body) > cap:
                    if error_reply:
                        return body[:cap]
                    raise TooLargeError(source, f"reply is over the {_size(cap)} cap: reading stopped there")
                if self.deadline.clock() >= at:
                    raise self._late(source, left, cut_by_poll, "reading the reply")
        except requests.exceptions.ContentDecodingError:
            raise MalformedReplyError(source, "reply could not be decompressed") from None
        except (
            requests.exceptions.ChunkedEncodingError,
            requests.ConnectionError,
            http.client.HTTPException,
            urllib3.exceptions.HTTPError,
            OSError,
        ) as exc:
            if self._past(at, guard):
                raise self._late(source, left, cut_by_poll, "reading the reply") from None
            raise _broken_body(exc, len(body), declared, _chunked(response)) from None
        except requests.RequestException as exc:
            raise UnavailableError(source, f"reading the reply failed: {type(exc).__name__}") from None
        return body

    def _retry_wait(self, reply: _Reply | None, attempt: int) -> float:
        if reply is not None and reply.status == 429:
            retry_after = reply.headers.get("Retry-After")
            if retry_after is not None:
                try:
                    return max(0.0, float(retry_after))
                except ValueError:
                    pass
        backoff: float = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempt - 1))
        return backoff * (0.5 + random.random() / 2)

    @staticmethod
    def _give_up(reply: _Reply | None, transient: _TransientError | None, source: str, attempts: int) -> SourceError:
        tried = f"{attempts} attempt{'s' if attempts > 1 else ''}"
        if transient is not None:
            if transient.truncated:
                return TruncatedReplyError(source, f"{transient.detail} ({tried})")
            return UnavailableError(source, f"{transient.detail} ({tried})")
        assert reply is not None
        if reply.status == 429:
            return RateLimitedError(source, f"rate limited (429) after {tried}")
        return UnavailableError(source, f"server error {reply.status} after {tried}")

    # ---- failures -------------------------------------------------------------------------------

    def _auth_error(  # noqa: PLR0911 - one classification per documented failure, read top to bottom
        self, reply: _Reply, source: str, endpoint: Endpoint, key: str
    ) -> SourceError:
        """A 401/403 that the rotated key did not fix, classified for this source (module docstring)."""
        status = reply.status
        message, code = _error_fields(reply)
        if endpoint.auth == "session":
            if status == 401:
                return KeyProblemError(
                    source,
                    "session key expired or rejected (401): copy a fresh sess- key from the browser",
                    SESSION_KEY_REJECTED,
                )
            if "session key" in message:
                return KeyProblemError(
                    source,
                    "this endpoint needs a dashboard session key (sess-...), not an API key (403)",
                    SESSION_KEY_REJECTED,
                )
            return KeyProblemError(source, f"session key refused (403): {message}", SESSION_KEY_REJECTED)
        scopes = missing_scopes(message)
        if scopes is not None:
            named = ", ".join(scopes) if scopes else "a"
            conditions = [missing_scope_condition(s) for s in scopes] or [ADMIN_KEY_MISSING_SCOPE]
            return KeyProblemError(
                source,
                f"admin key lacks the {named} scope{'s' if len(scopes) > 1 else ''} ({status}): "
                "grant it to the key or use an unrestricted sk-admin- key",
                *conditions,
            )
        if status == 403:
            if "session key" in message:
                return KeyProblemError(
                    source,
                    "this endpoint needs a dashboard session key (sess-...), not an API key (403)",
                    ADMIN_KEY_REJECTED,
                )
            return AuthError(source, f"forbidden (403): {message}")
        verdict, why = self._check_key(key, source)
        if verdict == "rejected":
            error = KeyProblemError(
                source,
                f"admin key rejected (401 {code or 'unauthorized'}): wrong, revoked or expired key",
                ADMIN_KEY_REJECTED,
            )
            with self._lock:
                self._revoked["admin"] = (key, error)
            return error
        return AuthError(source, f"unauthorized (401 {code or 'unauthorized'}) for this source only: {why}")

    def _check_key(self, key: str, source: str) -> tuple[KeyVerdict, str]:
        """Whether `key` works at all, asked once per poll and key (the worker threads share the answer)."""
        with self._check_lock:
            known = self._key_checks.get(key)
            if known is None:
                known = self._probe_key(key, source)
                self._key_checks[key] = known
        return known

    def _probe_key(self, key: str, source: str) -> tuple[KeyVerdict, str]:
        try:
            reply = self._fetch(self._base_url + KEY_CHECK_PATH, {"limit": 1}, key, source)
        except (_TransientError, SourceError) as exc:
            return "unknown", f"the key-wide check got no answer ({_detail(exc)})"
        if reply.status < 400:
            return "valid", f"the same key can list projects ({KEY_CHECK_PATH})"
        message, _ = _error_fields(reply)
        if reply.status == 403 or (reply.status == 401 and missing_scopes(message) is not None):
            return "valid", f"the same key is accepted on {KEY_CHECK_PATH} ({reply.status}: {message[:80]})"
        if reply.status == 401:
            return "rejected", f"{KEY_CHECK_PATH} rejects the key too"
        return "unknown", f"the key-wide check got HTTP {reply.status}"

    @staticmethod
    def _client_error(reply: _Reply, source: str) -> SourceError:
        status = reply.status
        message, code = _error_fields(reply)
        if status == 404:
            return NotFoundError(source, f"not found (404): {message}")
        return RequestRejectedError(source, f"rejected ({status} {code or ''}): {message}".replace(" )", ")"))

    @staticmethod
    def _parse(reply: _Reply, source: str) -> Any:
        body = reply.body
        try:
            value = loads_exact(body)
        except RecursionError:
            raise MalformedReplyError(source, f"reply is nested more than {MAX_JSON_DEPTH} levels deep") from None
        except ValueError as exc:
            if "integer string conversion" in str(exc):
                raise MalformedReplyError(source, "reply has an integer of more than 4300 digits") from None
            content_type = reply.headers.get("Content-Type", "")
            head = bytes(body[:40]).decode("utf-8", "replace").replace("\n", " ")
            raise MalformedReplyError(
                source,
                f"reply is not JSON (HTTP {reply.status}, {content_type or 'no content type'}, "
                f"{len(body)} bytes, starts {scrub(head)!r})",
            ) from None
        if nested_deeper_than(body, MAX_JSON_DEPTH):
            raise MalformedReplyError(source, f"reply is nested more than {MAX_JSON_DEPTH} levels deep")
        return value

    # ---- pagination -----------------------------------------------------------------------------

    def iter_pages(self, path: str, params: dict[str, Any], *, source: str, page_cap: int = PAGE_CAP) -> Iterator[Any]:
        """Follow `next_page` while `has_more`; the cursor is bound to the query, so params stay identical."""
        page_params = dict(params)
        for _ in range(page_cap):
            page = self.get_json(path, page_params, source=source)
            if not isinstance(page, dict) or not isinstance(page.get("data"), list):
                raise MalformedReplyError(source, "page has no 'data' list")
            has_more = _has_more(page, source)
            yield page
            if not has_more:
                return
            cursor = page.get("next_page")
            if not isinstance(cursor, str) or not cursor:
                raise MalformedReplyError(source, "has_more is true but next_page is missing")
            page_params = {**params, "page": cursor}
        raise MalformedReplyError(source, f"more than {page_cap} pages: stopped following next_page")

    def iter_list(self, path: str, params: dict[str, Any], *, source: str, page_cap: int = PAGE_CAP) -> Iterator[Any]:
        """Follow `after=<last_id>` while `has_more` (projects, spend alerts, rate limits).

        `last_id` is optional in OpenAI's spec: without it the cursor is the last item's `id`, as the official
        SDK's `CursorPage` does; only a page with neither is malformed.
        """
        page_params = dict(params)
        for _ in range(page_cap):
            page = self.get_json(path, page_params, source=source)
            if not isinstance(page, dict) or not isinstance(page.get("data"), list):
                raise MalformedReplyError(source, "list has no 'data' list")
            has_more = _has_more(page, source)
            yield from page["data"]
            if not has_more:
                return
            last_id = page.get("last_id")
            if not isinstance(last_id, str) or not last_id:
                last_id = _last_item_id(page["data"])
            if last_id is None:
                raise MalformedReplyError(source, "has_more is true but neither last_id nor the last item's id is set")
            page_params = {**params, "after": last_id}
        raise MalformedReplyError(source, f"more than {page_cap} pages: stopped following after")


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------

_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"\\')
_STRING = re.compile(rb'"[^"]*"')
_AS_PARENS = bytes.maketrans(b"[]{}", b"()()")


def nested_deeper_than(body: bytes | bytearray, limit: int) -> bool:
    """Whether valid JSON `body` nests arrays/objects more than `limit` deep, in C-speed passes over ever
    smaller bytes (no Python loop over them): only brackets, quotes and backslashes kept; escapes, then
    strings dropped; then the innermost `()` pairs removed once per level."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    structure = body.translate(None, _NOT_STRUCTURE).replace(b"\\\\", b"").replace(b'\\"', b"")
    shape = _STRING.sub(b"", structure.replace(b'""', b"")).translate(_AS_PARENS)
    for _ in range(limit):
        if not shape:
            return False
        shape = shape.replace(b"()", b"")
    return bool(shape)


def _no_reply(exc: requests.RequestException, source: str) -> Exception:
    """What a request that got no reply means: retried (timeouts, resets) or not (anything else)."""
    if isinstance(exc, requests.ConnectTimeout):
        return _TransientError("timed out connecting")
    if isinstance(exc, requests.Timeout):
        return _TransientError("timed out waiting for a reply")
    if isinstance(exc, requests.ConnectionError):
        if _caused_by(exc, ConnectionResetError):
            return _TransientError("connection reset before a reply")
        if _caused_by(exc, http.client.RemoteDisconnected):
            return _TransientError("connection closed before a reply")
        return _TransientError("could not connect")
    return UnavailableError(source, f"request failed: {type(exc).__name__}")


def _broken_body(exc: BaseException, read: int, declared: int | None, chunked: bool) -> _TransientError:
    """A body that stopped before its end: timed out, reset, or cut short (`truncated`), all retried."""
    if _caused_by(exc, urllib3.exceptions.ReadTimeoutError) or _caused_by(exc, TimeoutError):
        return _TransientError("timed out reading the reply")
    if _caused_by(exc, ConnectionResetError):
        return _TransientError("connection reset in the middle of the reply")
    incomplete = _find(exc, urllib3.exceptions.IncompleteRead)
    if incomplete is not None and isinstance(incomplete.partial, int):
        read += incomplete.partial  # urllib3 drops what a short read got
    if declared is not None:
        return _TransientError(f"reply cut short: {_size(read)} of {_size(declared)} (Content-Length)", truncated=True)
    what = "chunked reply" if chunked else "reply"
    return _TransientError(f"{what} cut short after {_size(read)}", truncated=True)


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    return _find(exc, kind) is not None


def _find(exc: BaseException, kind: type[E]) -> E | None:
    """`exc` or the first exception of `kind` in its causes, contexts and arguments (urllib3 wraps)."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, kind):
            return current
        stack.extend(
            [current.__cause__, current.__context__, *(a for a in current.args if isinstance(a, BaseException))]
        )
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            stack.append(reason)
    return None


def _content_length(response: requests.Response) -> int | None:
    raw = response.headers.get("Content-Length")
    if raw is None or not raw.strip().isdigit():
        return None
    return int(raw)


def _chunked(response: requests.Response) -> bool:
    return "chunked" in response.headers.get("Transfer-Encoding", "").lower()


def _size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MiB"
    if n >= 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n} bytes"


def _detail(exc: Exception) -> str:
    return exc.detail if isinstance(exc, SourceError | _TransientError) else type(exc).__name__


def _last_item_id(items: list[Any]) -> str | None:
    last = items[-1] if items else None
    item_id = last.get("id") if isinstance(last, dict) else None
    return item_id if isinstance(item_id, str) and item_id else None


def _has_more(page: dict[str, Any], source: str) -> bool:
    """A page's `has_more`, which every paginated endpoint sends: a missing or non-boolean value is a
    malformed reply, not "last page" (that would silently drop the pages after it)."""
    has_more = page.get("has_more")
    if not isinstance(has_more, bool):
        shown = "missing" if "has_more" not in page else _describe(has_more)
        raise MalformedReplyError(source, f"page has_more is {shown}, expected true or false")
    return has_more


def _same_error(error: SourceError, source: str) -> SourceError:
    """The error another source already met, named for this source."""
    if isinstance(error, KeyProblemError):
        return KeyProblemError(source, error.detail, *error.conditions)
    if isinstance(error, UnavailableError):
        return UnavailableError(source, error.detail)
    return AuthError(source, error.detail)


def _read_key(provider: KeyProvider, force: bool, source: str, auth: str = "admin") -> str:
    """The key, or: `UnavailableError` (retryable) when it could not be read now; `KeyProblemError`
    (`admin_key_missing`) or `AuthError` (session key) when it is not set."""
    try:
        return provider(force)
    except SecretUnavailableError as exc:
        raise UnavailableError(source, str(exc)) from None
    except SecretNotFoundError as exc:
        if auth == "admin":
            raise KeyProblemError(source, str(exc), ADMIN_KEY_MISSING) from None
        raise AuthError(source, str(exc)) from None


def _error_fields(reply: _Reply) -> tuple[str, str | None]:
    try:
        body = loads_exact(reply.body)
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            message = error.get("message")
            code = error.get("code")
            return scrub(str(message or "")[:500]), scrub(str(code)[:40]) if isinstance(code, str) else None
    except (ValueError, RecursionError):
        pass
    return scrub(bytes(reply.body[:200]).decode("utf-8", "replace")), None


def require_number(value: object, where: str, source: str) -> Decimal:
    """A JSON number as an exact Decimal that DynamoDB can store, or a `MalformedReplyError` naming the field.

    Rejected here rather than at `put_item`, where one absurd value (`1e200`, 41 digits) would fail the
    whole snapshot on every poll: here it costs only its source.
    """
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise MalformedReplyError(source, f"{where} is {_describe(value)}, expected a number")
    number = Decimal(value)
    stored = dynamodb_number(number)
    if stored is None:
        raise MalformedReplyError(source, f"{where} is {dynamodb_misfit(number)}")
    return stored


def require_int(value: object, where: str, source: str) -> int:
    """A JSON integer DynamoDB can store (fewer than 39 digits), or a `MalformedReplyError` naming the field."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedReplyError(source, f"{where} is {_describe(value)}, expected an integer")
    if abs(value) >= DYNAMODB_INT_LIMIT:
        raise MalformedReplyError(
            source, f"{where} is an integer of more than {DYNAMODB_DIGITS} digits, more than DynamoDB stores"
        )
    return value


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"a string ({value[:20]!r})"
    return f"a {type(value).__name__}"
