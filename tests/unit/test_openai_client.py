from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import pytest
import requests

from spendwatch.errors import AuthError, MalformedReplyError, RateLimitedError, RequestRejectedError, UnavailableError
from spendwatch.openai_api import LEGACY, Deadline, OpenAIClient, scrub

ADMIN_KEY = "sk-admin-unit-test-key-0123456789"


def response(
    status: int, body: Any = None, *, headers: dict[str, str] | None = None, raw: bytes | None = None
) -> requests.Response:
    resp = requests.Response()
    resp.status_code = status
    resp._content = raw if raw is not None else json.dumps(body).encode()
    resp.headers.update({"Content-Type": "application/json", **(headers or {})})
    return resp


class FakeSession:
    """Stands in for requests.Session: replies from a script and records each call."""

    def __init__(self, replies: Sequence[requests.Response | Exception]) -> None:
        self.replies = list(replies)
        self.calls: list[dict[str, Any]] = []

    def get(self, url: str, *, params: Any, headers: dict[str, str], timeout: Any) -> requests.Response:
        self.calls.append(
            {"url": url, "params": dict(params or {}), "auth": headers["Authorization"], "timeout": timeout}
        )
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply


def client(
    replies: Sequence[requests.Response | Exception],
    *,
    keys: Callable[[bool], str] | None = None,
    remaining_s: float = 60.0,
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
    with pytest.raises(UnavailableError, match="timed out or could not connect"):
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
    assert len(session.calls) == 1  # the re-read returned the same key, so there is nothing new to try
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
