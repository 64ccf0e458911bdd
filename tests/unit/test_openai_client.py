from __future__ import annotations

import io
import itertools
import json
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any, NamedTuple

import pytest
import requests

from spendwatch.core.errors import (
    AuthError,
    MalformedReplyError,
    RateLimitedError,
    RequestRejectedError,
    TooLargeError,
    UnavailableError,
)
from spendwatch.poller.openai_api import (
    CHUNK_BYTES,
    LEGACY,
    MAX_JSON_DEPTH,
    RESPONSE_CAP_BYTES,
    Deadline,
    OpenAIClient,
    nested_deeper_than,
    scrub,
)

ADMIN_KEY = "sk-admin-unit-test-key-0123456789"


class Reply(NamedTuple):
    """A scripted HTTP reply; each request gets a fresh `requests.Response` whose body is a stream."""

    status: int
    body: bytes
    headers: dict[str, str]

    def fresh(self) -> requests.Response:
        resp = requests.Response()
        resp.status_code = self.status
        resp.raw = io.BytesIO(self.body)
        resp.headers.update(self.headers)
        return resp


def response(
    status: int, body: Any = None, *, headers: dict[str, str] | None = None, raw: bytes | None = None
) -> Reply:
    return Reply(
        status,
        raw if raw is not None else json.dumps(body).encode(),
        {"Content-Type": "application/json", **(headers or {})},
    )


class FakeSession:
    """Stands in for requests.Session: replies from a script and records each call (bodies are streamed,
    as the client asks with `stream=True`)."""

    def __init__(self, replies: Sequence[Reply | Exception]) -> None:
        self.replies = list(replies)
        self.calls: list[dict[str, Any]] = []

    def get(
        self, url: str, *, params: Any, headers: dict[str, str], timeout: Any, stream: bool = False
    ) -> requests.Response:
        assert stream, "the client reads every body as a stream"
        self.calls.append(
            {"url": url, "params": dict(params or {}), "auth": headers["Authorization"], "timeout": timeout}
        )
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply.fresh()


def client(
    replies: Sequence[Reply | Exception],
    *,
    keys: Callable[[bool], str] | None = None,
    remaining_s: float = 60.0,
    response_cap_bytes: int = RESPONSE_CAP_BYTES,
) -> tuple[OpenAIClient, FakeSession, list[float]]:
    session = FakeSession(replies)
    sleeps: list[float] = []
    c = OpenAIClient(
        admin_key=keys or (lambda force: ADMIN_KEY),
        session_key=lambda force: "sess-unit",
        base_url="http://openai.invalid/v1",
        http=session,  # type: ignore[arg-type]
        deadline=Deadline(lambda: int((remaining_s + 5) * 1000)),
        sleep=sleeps.append,
        response_cap_bytes=response_cap_bytes,
    )
    return c, session, sleeps


OK_PAGE = {"object": "page", "data": [], "has_more": False, "next_page": None}


def test_openai_client_parses_amounts_as_decimal() -> None:
    c, _, _ = client([response(200, raw=b'{"value": 0.1, "n": 3}')])
    body = c.get_json("/organization/costs", {}, source="costs")
    assert body["value"] == Decimal("0.1")
    assert isinstance(body["n"], int)


def test_openai_client_sets_timeouts_and_bearer_auth() -> None:
    c, session, _ = client([response(200, OK_PAGE)])
    c.get_json("/organization/costs", {"start_time": 1}, source="costs")
    assert session.calls[0]["timeout"] == (3.05, 20.0)
    assert session.calls[0]["auth"] == f"Bearer {ADMIN_KEY}"


def test_openai_client_honours_retry_after_on_429() -> None:
    c, session, sleeps = client([response(429, {}, headers={"Retry-After": "2"}), response(200, OK_PAGE)])
    c.get_json("/organization/costs", {}, source="costs")
    assert sleeps == [2.0]
    assert len(session.calls) == 2


def test_openai_client_gives_up_on_persistent_5xx_with_backoff() -> None:
    c, session, sleeps = client([response(500, {}) for _ in range(4)])
    with pytest.raises(UnavailableError, match="server error 500 after 4 attempts"):
        c.get_json("/organization/costs", {}, source="costs")
    assert len(session.calls) == 4
    assert len(sleeps) == 3
    assert all(later >= earlier * 0.9 for earlier, later in itertools.pairwise(sleeps))


def test_openai_client_stops_when_the_wait_exceeds_remaining_time() -> None:
    c, session, sleeps = client([response(429, {}, headers={"Retry-After": "30"})], remaining_s=2)
    with pytest.raises(RateLimitedError):
        c.get_json("/organization/costs", {}, source="costs")
    assert sleeps == []
    assert len(session.calls) == 1


def test_openai_client_retries_timeouts_then_names_them() -> None:
    c, _, _ = client([requests.Timeout("t") for _ in range(4)])
    with pytest.raises(UnavailableError, match=r"timed out waiting for a reply \(4 attempts\)"):
        c.get_json("/organization/costs", {}, source="costs")


def test_openai_client_does_not_retry_other_4xx() -> None:
    body = {
        "error": {
            "message": "Invalid limit provided: 366.",
            "type": "invalid_request_error",
            "param": "limit",
            "code": None,
        }
    }
    c, session, _ = client([response(400, body)])
    with pytest.raises(RequestRejectedError, match="Invalid limit provided"):
        c.get_json("/organization/costs", {}, source="costs")
    assert len(session.calls) == 1


def test_openai_client_refetches_a_rotated_key_once_after_401() -> None:
    reads: list[bool] = []

    def keys(force: bool) -> str:
        reads.append(force)
        return "sk-admin-rotated-key-000" if force else ADMIN_KEY

    c, session, _ = client([response(401, {}), response(200, OK_PAGE)], keys=keys)
    c.get_json("/organization/costs", {}, source="costs")
    assert reads == [False, True]
    assert session.calls[1]["auth"] == "Bearer sk-admin-rotated-key-000"


def test_openai_client_401_twice_is_an_auth_error_after_two_calls() -> None:
    c, session, _ = client(
        [
            response(
                401, {"error": {"message": "Incorrect API key provided: sk-admin-****WXYZ", "code": "invalid_api_key"}}
            )
        ]
        * 2,
        keys=lambda force: ADMIN_KEY,
    )
    with pytest.raises(AuthError, match="admin key rejected \\(401 invalid_api_key\\)") as caught:
        c.get_json("/organization/costs", {}, source="costs")
    # The re-read returned the same key, so there is nothing new to try; the key-wide check confirms.
    assert [call["url"] for call in session.calls] == [
        "http://openai.invalid/v1/organization/costs",
        "http://openai.invalid/v1/organization/projects",
    ]
    assert session.calls[1]["params"] == {"limit": 1}
    assert ADMIN_KEY not in str(caught.value)


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        (403, "Missing scopes: api.usage.read", "lacks the api.usage.read scope"),
        (
            403,
            "Your request to GET /dashboard/billing/credit_grants must be made with a session key",
            "needs a dashboard session key",
        ),
    ],
)
def test_openai_client_names_403_causes(status: int, message: str, expected: str) -> None:
    c, _, _ = client([response(status, {"error": {"message": message}})] * 2)
    with pytest.raises(AuthError, match=expected):
        c.get_json("/organization/costs", {}, source="costs")


def test_openai_client_legacy_endpoints_use_host_root_and_session_key() -> None:
    c, session, _ = client([response(200, {"object": "credit_summary"})])
    c.get_json("/dashboard/billing/credit_grants", None, source="credit_grants", endpoint=LEGACY)
    assert session.calls[0]["url"] == "http://openai.invalid/dashboard/billing/credit_grants"
    assert session.calls[0]["auth"] == "Bearer sess-unit"


def test_openai_client_session_key_401_says_refresh() -> None:
    c, _, _ = client([response(401, {})] * 2)
    with pytest.raises(AuthError, match="session key expired or rejected"):
        c.get_json("/dashboard/billing/credit_grants", None, source="credit_grants", endpoint=LEGACY)


@pytest.mark.parametrize(
    "raw",
    [b"<html><body>502 Bad Gateway</body></html>", b'{"object": "page", "data": [', b""],
)
def test_openai_client_malformed_reply_is_named(raw: bytes) -> None:
    c, _, _ = client([response(200, raw=raw, headers={"Content-Type": "text/html"})])
    with pytest.raises(MalformedReplyError, match="reply is not JSON"):
        c.get_json("/organization/costs", {}, source="costs")


def test_openai_client_pagination_follows_next_page_with_identical_params() -> None:
    pages = [
        response(200, {"object": "page", "data": [1], "has_more": True, "next_page": "p2"}),
        response(200, {"object": "page", "data": [2], "has_more": True, "next_page": "p3"}),
        response(200, {"object": "page", "data": [3], "has_more": False, "next_page": None}),
    ]
    c, session, _ = client(pages)
    got = [
        item
        for page in c.iter_pages("/organization/costs", {"start_time": 5, "limit": 31}, source="costs")
        for item in page["data"]
    ]
    assert got == [1, 2, 3]
    assert [call["params"] for call in session.calls] == [
        {"start_time": 5, "limit": 31},
        {"start_time": 5, "limit": 31, "page": "p2"},
        {"start_time": 5, "limit": 31, "page": "p3"},
    ]


def test_openai_client_pagination_cap_stops_a_looping_cursor() -> None:
    looping = [response(200, {"object": "page", "data": [], "has_more": True, "next_page": "same"}) for _ in range(5)]
    c, _, _ = client(looping)
    with pytest.raises(MalformedReplyError, match="more than 5 pages"):
        list(c.iter_pages("/organization/costs", {}, source="costs", page_cap=5))


def test_scrub_removes_keys_and_bearer_tokens() -> None:
    text = f"failed Authorization: Bearer {ADMIN_KEY} with sess-abc123 and sk-proj-xyz987"
    cleaned = scrub(text)
    assert ADMIN_KEY not in cleaned
    assert "sess-abc123" not in cleaned
    assert "sk-proj-xyz987" not in cleaned


# --------------------------------------------------------------------------------------------------
# issue 7, items 3 and 5: size cap, nesting, absurd numbers
# --------------------------------------------------------------------------------------------------


class CountingBody(io.BytesIO):
    """A reply body that counts what the client read of it."""

    def __init__(self, size: int) -> None:
        super().__init__(b" " * size)
        self.bytes_read = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.bytes_read += len(chunk)
        return chunk


def test_openai_client_refuses_a_content_length_over_the_cap_before_reading() -> None:
    body = CountingBody(2_000)
    reply = Reply(200, b"", {"Content-Type": "application/json", "Content-Length": str(9 * 1024 * 1024)})

    class Session(FakeSession):
        def get(self, *args: Any, **kwargs: Any) -> requests.Response:
            resp = super().get(*args, **kwargs)
            resp.raw = body
            return resp

    c, _, _ = client([], response_cap_bytes=8 * 1024 * 1024)
    c._http = Session([reply])  # type: ignore[assignment]
    with pytest.raises(TooLargeError, match=r"reply of 9\.0 MiB \(Content-Length\) is over the 8\.0 MiB cap") as caught:
        c.get_json("/organization/costs", {}, source="costs")
    assert caught.value.kind == "too_large"
    assert not caught.value.retryable
    assert body.bytes_read == 0
    assert c.request_count == 1, "not retried"


def test_openai_client_stops_reading_a_body_at_the_cap() -> None:
    body = CountingBody(50 * CHUNK_BYTES)
    reply = Reply(200, b"", {"Content-Type": "application/json"})  # no Content-Length: chunked or unknown

    class Session(FakeSession):
        def get(self, *args: Any, **kwargs: Any) -> requests.Response:
            resp = super().get(*args, **kwargs)
            resp.raw = body
            return resp

    c, _, _ = client([], response_cap_bytes=3 * CHUNK_BYTES)
    c._http = Session([reply])  # type: ignore[assignment]
    with pytest.raises(TooLargeError, match=r"reply is over the 192\.0 KiB cap: reading stopped there"):
        c.get_json("/organization/costs", {}, source="costs")
    assert body.bytes_read <= 3 * CHUNK_BYTES + CHUNK_BYTES
    assert c.request_count == 1


def test_openai_client_reads_an_error_body_only_as_far_as_its_message() -> None:
    message = json.dumps({"error": {"message": "No spend limit is set", "code": "not_found"}}).encode()
    c, _, _ = client([response(404, raw=message + b" " * (200 * 1024))])
    with pytest.raises(RequestRejectedError, match="not found"):
        c.get_json("/organization/spend_limit", None, source="spend_limit")


def nested(depth: int) -> bytes:
    return b'{"data": ' + b"[" * (depth - 1) + b"1" + b"]" * (depth - 1) + b"}"


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 900, 100_000])
def test_openai_client_deeply_nested_reply_is_a_named_malformed_failure(depth: int) -> None:
    c, _, _ = client([response(200, raw=nested(depth))])
    with pytest.raises(MalformedReplyError, match=f"reply is nested more than {MAX_JSON_DEPTH} levels deep"):
        c.get_json("/organization/costs", {}, source="costs")


def test_openai_client_accepts_nesting_up_to_the_limit_and_brackets_inside_strings() -> None:
    c, _, _ = client([response(200, raw=nested(MAX_JSON_DEPTH))])
    assert c.get_json("/organization/costs", {}, source="costs")["data"]
    text = b'{"name": "' + b"[{" * 500 + b'\\"]]", "data": []}'
    c, _, _ = client([response(200, raw=text)])
    assert c.get_json("/organization/projects", {}, source="projects")["data"] == []


def test_nested_deeper_than_counts_levels_exactly() -> None:
    assert not nested_deeper_than(b"[[[1]]]", 3)
    assert nested_deeper_than(b"[[[[1]]]]", 3)
    assert not nested_deeper_than(b'[{"a": [1, {"b": []}]}, [], {}]', 5)
    assert nested_deeper_than(b'[{"a": [1, {"b": []}]}, [], {}]', 4)
    assert not nested_deeper_than(b'["[[[[[[[[", "\\"[[[["]', 1)


def test_openai_client_integer_with_thousands_of_digits_is_named() -> None:
    c, _, _ = client([response(200, raw=b'{"value": ' + b"9" * 5000 + b"}")])
    with pytest.raises(MalformedReplyError, match="reply has an integer of more than 4300 digits"):
        c.get_json("/organization/costs", {}, source="costs")
