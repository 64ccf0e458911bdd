"""Issue 7, item 1: auth failures are classified per source. A "Missing scopes" 401/403 names the scope for
that source; any other 401 is "revoked" only if a key-wide check (asked once per poll) fails too; sources
that succeeded are always kept; the rotation re-read (P2) still comes first."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import requests

from spendwatch.alerter.render import describe
from spendwatch.core.alerts import Alert, Observation, Reason
from spendwatch.core.config import parse_config
from spendwatch.core.errors import AuthError
from spendwatch.poller.collect import SOURCE_ORDER, USAGE_SPECS, collect_snapshot
from spendwatch.poller.openai_api import (
    ADMIN_KEY_MISSING_SCOPE,
    ADMIN_KEY_REJECTED,
    KEY_CHECK_PATH,
    Deadline,
    KeyProblemError,
    OpenAIClient,
    missing_scope_condition,
    missing_scopes,
)

from .test_openai_client import ADMIN_KEY, OK_PAGE, Reply, response

BASE = "http://openai.invalid/v1"
SCOPE_MESSAGE = "You have insufficient permissions for this operation. Missing scopes: api.usage.read."
REJECTED = {"error": {"message": "Incorrect API key provided: sk-admin-****0000", "code": "invalid_api_key"}}
PROJECT_LIST = {"object": "list", "data": [], "has_more": False, "first_id": None, "last_id": None}


def scope_error(message: str = SCOPE_MESSAGE) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}


class RouterSession:
    """A thread-safe `requests.Session` stand-in answering by path (query ignored), recording every call."""

    def __init__(self, routes: dict[str, Reply | Callable[[str], Reply]], default: Reply | None = None) -> None:
        self.routes = routes
        self.default = default
        self.calls: list[tuple[str, dict[str, Any], str]] = []
        self._lock = threading.Lock()

    def get(
        self, url: str, *, params: Any, headers: dict[str, str], timeout: Any, stream: bool = False
    ) -> requests.Response:
        path = url.removeprefix(BASE).removeprefix("http://openai.invalid")
        with self._lock:
            self.calls.append((path, dict(params or {}), headers["Authorization"]))
        reply = self.routes.get(path, self.default)
        if reply is None:
            raise AssertionError(f"unexpected request {path}")
        if callable(reply):
            reply = reply(headers["Authorization"].removeprefix("Bearer "))
        return reply.fresh()

    def paths(self) -> list[str]:
        with self._lock:
            return [path for path, _, _ in self.calls]


def make_client(session: RouterSession, keys: Callable[[bool], str] | None = None) -> OpenAIClient:
    return OpenAIClient(
        admin_key=keys or (lambda _: ADMIN_KEY),
        session_key=None,
        base_url=BASE,
        http=session,  # type: ignore[arg-type]
        deadline=Deadline(budget_s=65),
        sleep=lambda _: None,
    )


def test_missing_scopes_reads_every_scope_openai_names() -> None:
    assert missing_scopes(SCOPE_MESSAGE) == ("api.usage.read",)
    assert missing_scopes("Missing scopes: api.usage.read, api.organization.read") == (
        "api.usage.read",
        "api.organization.read",
    )
    assert missing_scopes("You have insufficient permissions. Missing scope: API.Usage.Read.") == ("api.usage.read",)
    assert missing_scopes("Missing scopes:") == ()
    assert missing_scopes("Incorrect API key provided") is None


@pytest.mark.parametrize("status", [401, 403])
def test_missing_scope_fails_that_source_only_and_names_the_scope(status: int) -> None:
    """OpenAI answers 401 (not only 403) for a key lacking one scope: that is not a revoked key."""
    session = RouterSession(
        {"/organization/usage/completions": response(status, scope_error())}, default=response(200, OK_PAGE)
    )
    client = make_client(session)
    with pytest.raises(KeyProblemError) as caught:
        client.get_json("/organization/usage/completions", {}, source="usage_completions")
    assert caught.value.conditions == ("admin_key_missing_scope:api.usage.read",)
    assert caught.value.detail == (
        f"admin key lacks the api.usage.read scope ({status}): grant it to the key or use an unrestricted sk-admin- key"
    )
    assert client.get_json("/organization/costs", {}, source="costs") == OK_PAGE, "the key is not marked revoked"
    assert KEY_CHECK_PATH not in session.paths(), "a missing scope needs no key-wide check"


def test_missing_scope_without_a_named_scope_keeps_the_bare_condition() -> None:
    session = RouterSession({"/organization/costs": response(403, scope_error("Missing scopes"))})
    with pytest.raises(KeyProblemError) as caught:
        make_client(session).get_json("/organization/costs", {}, source="costs")
    assert caught.value.conditions == (ADMIN_KEY_MISSING_SCOPE,)


def test_a_401_on_one_source_is_that_sources_failure_when_the_key_works() -> None:
    session = RouterSession(
        {
            "/organization/projects/proj_a/spend_limit": response(401, REJECTED),
            KEY_CHECK_PATH: response(200, PROJECT_LIST),
        },
        default=response(200, OK_PAGE),
    )
    client = make_client(session)
    with pytest.raises(AuthError) as caught:
        client.get_json("/organization/projects/proj_a/spend_limit", None, source="project_spend_limits")
    assert not isinstance(caught.value, KeyProblemError), "no key condition: the key itself is fine"
    assert caught.value.kind == "auth"
    assert caught.value.detail == (
        "unauthorized (401 invalid_api_key) for this source only: the same key can list projects "
        "(/organization/projects)"
    )
    assert client.get_json("/organization/costs", {}, source="costs") == OK_PAGE, "later sources are still asked"
    assert session.calls[1] == (KEY_CHECK_PATH, {"limit": 1}, f"Bearer {ADMIN_KEY}")


def test_a_401_is_revoked_only_when_the_key_wide_check_rejects_the_key_too() -> None:
    session = RouterSession({}, default=response(401, REJECTED))
    client = make_client(session)
    with pytest.raises(KeyProblemError) as caught:
        client.get_json("/organization/usage/images", {}, source="usage_images")
    assert caught.value.conditions == (ADMIN_KEY_REJECTED,)
    with pytest.raises(KeyProblemError) as second:
        client.get_json("/organization/costs", {}, source="costs")
    assert second.value.source == "costs"
    assert session.paths() == ["/organization/usage/images", KEY_CHECK_PATH], "then short-circuited"


@pytest.mark.parametrize(
    ("check", "reason"),
    [
        (response(500, {}), "the key-wide check got HTTP 500"),
        (response(403, {"error": {"message": "Forbidden"}}), "the same key is accepted on /organization/projects"),
        (response(401, scope_error()), "the same key is accepted on /organization/projects"),
    ],
)
def test_a_401_with_an_inconclusive_or_passing_check_is_not_revoked(check: Reply, reason: str) -> None:
    session = RouterSession({"/organization/costs": response(401, REJECTED), KEY_CHECK_PATH: check})
    with pytest.raises(AuthError) as caught:
        make_client(session).get_json("/organization/costs", {}, source="costs")
    assert not isinstance(caught.value, KeyProblemError)
    assert reason in caught.value.detail


def test_the_key_wide_check_is_asked_once_per_poll_by_all_threads() -> None:
    session = RouterSession({KEY_CHECK_PATH: response(200, PROJECT_LIST)}, default=response(401, REJECTED))
    client = make_client(session)

    def source(index: int) -> str:
        try:
            client.get_json(f"/organization/projects/p{index}/spend_alerts", {}, source="project_spend_alerts")
        except AuthError as exc:
            return exc.detail
        return "ok"

    with ThreadPoolExecutor(max_workers=20) as pool:
        details = list(pool.map(source, range(40)))
    assert all("for this source only" in d for d in details)
    assert session.paths().count(KEY_CHECK_PATH) == 1
    assert client.request_count == 41


def test_a_rotated_key_is_tried_before_any_classification() -> None:
    """P2 still comes first: the cached key got a 401, the re-read secret is new and works."""
    reads: list[bool] = []

    def keys(force: bool) -> str:
        reads.append(force)
        return "sk-admin-rotated-000000" if force else ADMIN_KEY

    def costs(key: str) -> Reply:
        return response(200, OK_PAGE) if key == "sk-admin-rotated-000000" else response(401, REJECTED)

    session = RouterSession({"/organization/costs": costs})
    assert make_client(session, keys).get_json("/organization/costs", {}, source="costs") == OK_PAGE
    assert reads == [False, True]
    assert KEY_CHECK_PATH not in session.paths()


def test_collect_snapshot_keeps_every_source_that_answered_when_a_scope_is_missing() -> None:
    """The issue's report: 12 of 22 sources lost to "wrong, revoked or expired key" for one missing scope."""
    org = parse_config("organizations: [{id: acme, name: Acme}]", "t").organizations[0]
    when = datetime(2026, 11, 21, 23, tzinfo=UTC)
    usage = {spec.path: response(401, scope_error()) for spec in USAGE_SPECS}
    costs_page = {
        "object": "page",
        "data": [
            {
                "object": "bucket",
                "start_time": int(datetime(2026, 11, 1, tzinfo=UTC).timestamp()),
                "end_time": int(datetime(2026, 11, 2, tzinfo=UTC).timestamp()),
                "results": [{"object": "organization.costs.result", "amount": {"value": 12.5, "currency": "usd"}}],
            }
        ],
        "has_more": False,
        "next_page": None,
    }
    session = RouterSession(
        {
            **usage,
            "/organization/costs": response(200, costs_page),
            "/organization/projects": response(200, PROJECT_LIST),
            "/organization/spend_limit": response(404, {"error": {"message": "No spend limit is set"}}),
            "/organization/spend_alerts": response(200, PROJECT_LIST),
            "/organization/users": response(200, PROJECT_LIST),
        }
    )
    snapshot = collect_snapshot(org, make_client(session), poll_time=when, now=lambda: when)
    assert snapshot.conditions == ("admin_key_missing_scope:api.usage.read",)
    usage_sources = {spec.source for spec in USAGE_SPECS} | {"usage_completions_by_key"}
    assert {f.source for f in snapshot.failures} == usage_sources
    assert {f.kind for f in snapshot.failures} == {"key"}
    assert set(snapshot.sources_ok) == set(SOURCE_ORDER) - usage_sources - {
        "admin_key",
        "credit_grants",
        "subscription",
    }
    assert snapshot.month_to_date_usd == Decimal("12.5")
    assert ADMIN_KEY_REJECTED not in snapshot.conditions


def test_render_names_the_missing_scope() -> None:
    condition = missing_scope_condition("api.usage.read")
    observation = Observation(
        "health.condition", f"health.condition#{condition}", Decimal(1), "Monitor condition", {"condition": condition}
    )
    assert describe(Alert(observation, Reason.FIRST_CROSSING, Decimal(1))) == (
        "The admin key lacks the api.usage.read scope: the figures that need it are not being read. "
        "Grant the key that scope or store an unrestricted sk-admin-… key."
    )
