"""HTTP adapter for OpenAI's admin API and legacy dashboard endpoints.

Owns timeouts, retries (429 and 5xx with exponential back-off honouring `Retry-After`, bounded by the
invocation's remaining time), cursor pagination, exact JSON parsing and the mapping of every failure to a
typed `SourceError` whose message names the source and never contains a key.

One client serves one poll of one organization and is shared by the poll's worker threads: the
`requests.Session` connection pool is sized for them, and the request counter and key cache are locked.
Keys are read once per client (then from the cache) and re-read once after a 401/403 (rotation, P2). A
key that is not set fails every source of the poll as `admin_key_missing`; a key that could not be read
(SSM throttled, access denied, timed out) fails them as `unavailable`, which is retryable.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from spendwatch.config import OrganizationConfig
from spendwatch.dynamodb_numbers import DYNAMODB_DIGITS as DYNAMODB_DIGITS  # noqa: PLC0414 - re-exported
from spendwatch.dynamodb_numbers import DYNAMODB_INT_LIMIT as DYNAMODB_INT_LIMIT  # noqa: PLC0414
from spendwatch.dynamodb_numbers import dynamodb_misfit as dynamodb_misfit  # noqa: PLC0414
from spendwatch.dynamodb_numbers import dynamodb_number as dynamodb_number  # noqa: PLC0414
from spendwatch.errors import (
    AuthError,
    MalformedReplyError,
    RateLimitedError,
    RequestRejectedError,
    SecretNotFoundError,
    SourceError,
    UnavailableError,
)
from spendwatch.money import loads_exact
from spendwatch.secrets import SecretSource, SecretUnavailableError, require

DEFAULT_BASE_URL = "https://api.openai.com/v1"  # the official SDK's default
CONNECT_TIMEOUT_S = 3.05
READ_TIMEOUT_S = 20.0
MAX_ATTEMPTS = 4
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 8.0
PAGE_CAP = 60
DEFAULT_POOL_SIZE = 20
_SECRET_PATTERN = re.compile(r"(sk-[A-Za-z0-9_\-]{3,}[A-Za-z0-9_\-*]*|sess-[A-Za-z0-9_\-]+|Bearer\s+\S+)")

KeyProvider = Callable[[bool], str]
"""Returns the current key; called with True after a 401/403 to re-read a possibly rotated secret."""

# Named conditions a snapshot carries so the alerter can tell the user what to fix (docs/snapshot.md).
ADMIN_KEY_MISSING = "admin_key_missing"
ADMIN_KEY_REJECTED = "admin_key_rejected"
ADMIN_KEY_MISSING_SCOPE = "admin_key_missing_scope"
SESSION_KEY_REJECTED = "session_key_rejected"


class KeyProblemError(AuthError):
    """An auth failure that names a condition of the key itself (rejected, missing scope, not configured)."""

    def __init__(self, source: str, detail: str, condition: str) -> None:
        super().__init__(source, detail)
        self.condition = condition


class NotFoundError(RequestRejectedError):
    """HTTP 404: for spend limits this means "no limit is set", which is data, not a failure."""


def scrub(text: str) -> str:
    """Remove anything shaped like a key or bearer token from text bound for logs or snapshots."""
    return _SECRET_PATTERN.sub("[redacted]", text)


class Deadline:
    """How much of the invocation is left; retries never wait past it."""

    def __init__(
        self,
        remaining_ms: Callable[[], int] | None = None,
        *,
        safety_margin_s: float = 5.0,
        budget_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._remaining_ms = remaining_ms
        self._margin = safety_margin_s
        self._clock = clock
        self._end = clock() + budget_s

    def remaining_s(self) -> float:
        if self._remaining_ms is not None:
            return self._remaining_ms() / 1000 - self._margin
        return self._end - self._clock()


@dataclass(frozen=True)
class Endpoint:
    """Which credential a path needs and under which root it lives."""

    auth: str  # "admin" or "session"
    legacy: bool = False


ADMIN = Endpoint(auth="admin")
LEGACY = Endpoint(auth="session", legacy=True)


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
    ) -> None:
        self._keys: dict[str, KeyProvider | None] = {"admin": admin_key, "session": session_key}
        self._base_url = base_url.rstrip("/")
        # The legacy dashboard endpoints live at the host root, i.e. the base URL without its `/v1`.
        self._root_url = self._base_url.removesuffix("/v1")
        self._http = http or http_session()
        self._deadline = deadline or Deadline()
        self._sleep = sleep
        self._max_attempts = max_attempts
        self._timeout = timeout
        self._lock = threading.Lock()
        self._request_count = 0
        self._cached: dict[str, str] = {}
        self._refetched: dict[str, str] = {}
        self._revoked: dict[str, tuple[str, KeyProblemError]] = {}
        self._missing: dict[str, AuthError] = {}
        self._unreadable: dict[str, UnavailableError] = {}

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
        """HTTP requests sent so far (every attempt counts)."""
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
        while True:
            attempt += 1
            response = self._send(url, params, key, source)
            status = response.status_code if response is not None else None
            if response is not None and response.status_code < 400:
                return self._parse(response, source)
            if status in (401, 403):
                # The secret may have been rotated since it was cached: read it once more, then give up.
                fresh = self._rotated_key(endpoint.auth, provider, key, source)
                if fresh is not None:
                    key = fresh
                    attempt -= 1
                    continue
            if response is not None and response.status_code < 500 and response.status_code != 429:
                error = self._client_error(response, source, endpoint)
                if status == 401 and isinstance(error, KeyProblemError):
                    with self._lock:
                        self._revoked[endpoint.auth] = (key, error)
                raise error
            wait = self._retry_wait(response, attempt)
            if attempt >= self._max_attempts or wait > self._deadline.remaining_s():
                raise self._give_up(response, source, attempt)
            self._sleep(wait)

    def _current_key(self, auth: str, provider: KeyProvider, source: str) -> str:
        """The cached key (read once per client); a key that is not set, could not be read, or got a 401
        fails at once.

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
            # Every endpoint rejects an unknown key alike: no need to ask again in this poll.
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

    def _send(self, url: str, params: dict[str, Any] | None, key: str, source: str) -> requests.Response | None:
        remaining = self._deadline.remaining_s()
        if remaining <= 0:
            raise UnavailableError(source, "not sent: the invocation's time is used up")
        connect, read = self._timeout
        with self._lock:
            self._request_count += 1
        try:
            return self._http.get(
                url,
                params=params,
                headers={"Authorization": f"Bearer {key}", "Accept": "application/json"},
                timeout=(connect, max(0.1, min(read, remaining))),
            )
        except (requests.Timeout, requests.ConnectionError):
            return None
        except requests.RequestException as exc:
            raise UnavailableError(source, f"request failed: {type(exc).__name__}") from None

    def _retry_wait(self, response: requests.Response | None, attempt: int) -> float:
        if response is not None and response.status_code == 429:
            retry_after = response.headers.get("Retry-After")
            if retry_after is not None:
                try:
                    return max(0.0, float(retry_after))
                except ValueError:
                    pass
        backoff: float = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempt - 1))
        return backoff * (0.5 + random.random() / 2)

    @staticmethod
    def _give_up(response: requests.Response | None, source: str, attempts: int) -> SourceError:
        if response is None:
            return UnavailableError(source, f"timed out or could not connect ({attempts} attempts)")
        if response.status_code == 429:
            return RateLimitedError(source, f"rate limited (429) after {attempts} attempts")
        return UnavailableError(source, f"server error {response.status_code} after {attempts} attempts")

    @staticmethod
    def _client_error(  # noqa: PLR0911 - one message per documented failure, read top to bottom
        response: requests.Response, source: str, endpoint: Endpoint
    ) -> SourceError:
        status = response.status_code
        message, code = _error_fields(response)
        if status == 401:
            if endpoint.auth == "session":
                return KeyProblemError(
                    source,
                    "session key expired or rejected (401): copy a fresh sess- key from the browser",
                    SESSION_KEY_REJECTED,
                )
            return KeyProblemError(
                source,
                f"admin key rejected (401 {code or 'unauthorized'}): wrong, revoked or expired key",
                ADMIN_KEY_REJECTED,
            )
        if status == 403:
            if "Missing scopes" in message:
                return KeyProblemError(
                    source,
                    "admin key lacks the api.usage.read scope (403): use an sk-admin- key",
                    ADMIN_KEY_MISSING_SCOPE,
                )
            if "session key" in message:
                return KeyProblemError(
                    source,
                    "this endpoint needs a dashboard session key (sess-...), not an API key (403)",
                    SESSION_KEY_REJECTED if endpoint.auth == "session" else ADMIN_KEY_REJECTED,
                )
            if endpoint.auth == "session":
                return KeyProblemError(source, f"session key refused (403): {message}", SESSION_KEY_REJECTED)
            return AuthError(source, f"forbidden (403): {message}")
        if status == 404:
            return NotFoundError(source, f"not found (404): {message}")
        return RequestRejectedError(source, f"rejected ({status} {code or ''}): {message}".replace(" )", ")"))

    @staticmethod
    def _parse(response: requests.Response, source: str) -> Any:
        content_type = response.headers.get("Content-Type", "")
        try:
            return loads_exact(response.content)
        except ValueError:
            head = response.content[:40].decode("utf-8", "replace").replace("\n", " ")
            raise MalformedReplyError(
                source,
                f"reply is not JSON (HTTP {response.status_code}, {content_type or 'no content type'}, "
                f"{len(response.content)} bytes, starts {scrub(head)!r})",
            ) from None

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
        """Follow `after=<last_id>` while `has_more` (projects, spend alerts, rate limits)."""
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
                raise MalformedReplyError(source, "has_more is true but last_id is missing")
            page_params = {**params, "after": last_id}
        raise MalformedReplyError(source, f"more than {page_cap} pages: stopped following after")


def http_session(pool_size: int = DEFAULT_POOL_SIZE) -> requests.Session:
    """A session whose connection pool holds one connection per worker thread of a poll."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=2, pool_maxsize=pool_size)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


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
        return KeyProblemError(source, error.detail, error.condition)
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


def _error_fields(response: requests.Response) -> tuple[str, str | None]:
    try:
        body = loads_exact(response.content)
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict):
            message = error.get("message")
            code = error.get("code")
            return scrub(str(message or "")), str(code) if isinstance(code, str) else None
    except ValueError:
        pass
    return scrub(response.content[:200].decode("utf-8", "replace")), None


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
