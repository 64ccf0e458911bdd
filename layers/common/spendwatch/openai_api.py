"""HTTP adapter for OpenAI's admin API and legacy dashboard endpoints.

Owns timeouts, retries (429 and 5xx with exponential back-off honouring `Retry-After`, bounded by the
invocation's remaining time), cursor pagination, exact JSON parsing and the mapping of every failure to a
typed `SourceError` whose message names the source and never contains a key.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import requests

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

DEFAULT_BASE_URL = "https://api.openai.com/v1"  # the official SDK's default
CONNECT_TIMEOUT_S = 3.05
READ_TIMEOUT_S = 20.0
MAX_ATTEMPTS = 4
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 8.0
PAGE_CAP = 60
_SECRET_PATTERN = re.compile(r"(sk-[A-Za-z0-9_\-]{3,}[A-Za-z0-9_\-*]*|sess-[A-Za-z0-9_\-]+|Bearer\s+\S+)")

KeyProvider = Callable[[bool], str]
"""Returns the current key; called with True after a 401/403 to re-read a possibly rotated secret."""


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
        self._http = http or requests.Session()
        self._deadline = deadline or Deadline()
        self._sleep = sleep
        self._max_attempts = max_attempts
        self._timeout = timeout
        self.request_count = 0

    def has_key(self, auth: str) -> bool:
        return self._keys.get(auth) is not None

    def get_json(self, path: str, params: dict[str, Any] | None, *, source: str, endpoint: Endpoint = ADMIN) -> Any:
        """GET a JSON document with retries; raise a `SourceError` subclass naming `source` on failure."""
        provider = self._keys.get(endpoint.auth)
        if provider is None:
            raise AuthError(source, f"no {endpoint.auth} key configured")
        url = (self._root_url if endpoint.legacy else self._base_url) + path
        key = _read_key(provider, False, source)
        refetched = False
        attempt = 0
        while True:
            attempt += 1
            response = self._send(url, params, key, source)
            status = response.status_code if response is not None else None
            if response is not None and response.status_code < 400:
                return self._parse(response, source)
            if status in (401, 403) and not refetched:
                # The secret may have been rotated since it was cached: read it once more, then give up.
                refetched = True
                fresh = _read_key(provider, True, source)
                if fresh != key:
                    key = fresh
                    attempt -= 1
                    continue
            if response is not None and response.status_code < 500 and response.status_code != 429:
                raise self._client_error(response, source, endpoint)
            wait = self._retry_wait(response, attempt)
            if attempt >= self._max_attempts or wait > self._deadline.remaining_s():
                raise self._give_up(response, source, attempt)
            self._sleep(wait)

    def _send(self, url: str, params: dict[str, Any] | None, key: str, source: str) -> requests.Response | None:
        self.request_count += 1
        try:
            return self._http.get(
                url,
                params=params,
                headers={"Authorization": f"Bearer {key}", "Accept": "application/json"},
                timeout=self._timeout,
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
                return AuthError(
                    source, "session key expired or rejected (401): copy a fresh sess- key from the browser"
                )
            return AuthError(
                source, f"admin key rejected (401 {code or 'unauthorized'}): wrong, revoked or expired key"
            )
        if status == 403:
            if "Missing scopes" in message:
                return AuthError(source, "admin key lacks the api.usage.read scope (403): use an sk-admin- key")
            if "session key" in message:
                return AuthError(source, "this endpoint needs a dashboard session key (sess-...), not an API key (403)")
            return AuthError(source, f"forbidden (403): {message}")
        if status == 404:
            return RequestRejectedError(source, f"not found (404): {message}")
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
            yield page
            has_more = page.get("has_more")
            if has_more is not True:
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
            yield from page["data"]
            if page.get("has_more") is not True:
                return
            last_id = page.get("last_id")
            if not isinstance(last_id, str) or not last_id:
                raise MalformedReplyError(source, "has_more is true but last_id is missing")
            page_params = {**params, "after": last_id}
        raise MalformedReplyError(source, f"more than {page_cap} pages: stopped following after")


def _read_key(provider: KeyProvider, force: bool, source: str) -> str:
    try:
        return provider(force)
    except SecretNotFoundError as exc:
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
    """A JSON number as an exact Decimal, or a `MalformedReplyError` naming the field."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise MalformedReplyError(source, f"{where} is {_describe(value)}, expected a number")
    return Decimal(value)


def require_int(value: object, where: str, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedReplyError(source, f"{where} is {_describe(value)}, expected an integer")
    return value


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"a string ({value[:20]!r})"
    return f"a {type(value).__name__}"
