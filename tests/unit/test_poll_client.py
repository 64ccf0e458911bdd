"""OpenAIClient as the poll's worker threads use it: one key read, thread-safe counting, named key
conditions, 404 as its own error, and every request bounded by the invocation's remaining time."""

from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from spendwatch.aws.secrets import EnvSecrets, SecretUnavailableError
from spendwatch.core.config import parse_config
from spendwatch.core.errors import AuthError, DeadlineError, MalformedReplyError, UnavailableError
from spendwatch.poller.openai_api import (
    ADMIN_KEY_MISSING,
    ADMIN_KEY_MISSING_SCOPE,
    ADMIN_KEY_REJECTED,
    LEGACY,
    SESSION_KEY_REJECTED,
    Deadline,
    KeyProblemError,
    NotFoundError,
    OpenAIClient,
    http_session,
)

from .test_openai_client import ADMIN_KEY, OK_PAGE, FakeSession, Reply, client, response


class CountingKeys:
    def __init__(self, *values: str) -> None:
        self.values = list(values)
        self.reads: list[bool] = []
        self._lock = threading.Lock()

    def __call__(self, force: bool) -> str:
        with self._lock:
            self.reads.append(force)
            return self.values[min(len(self.reads), len(self.values)) - 1]


class ThreadSafeSession(FakeSession):
    def __init__(self, reply: Any) -> None:
        super().__init__([])
        self.reply = reply
        self._lock = threading.Lock()

    def get(
        self, url: str, *, params: Any, headers: dict[str, str], timeout: Any, stream: bool = False
    ) -> requests.Response:
        with self._lock:
            self.calls.append({"url": url, "auth": headers["Authorization"], "timeout": timeout})
        reply: Reply = self.reply() if callable(self.reply) else self.reply
        return reply.fresh()


def threaded_client(reply: Any, keys: CountingKeys, remaining_s: float = 60) -> tuple[OpenAIClient, ThreadSafeSession]:
    session = ThreadSafeSession(reply)
    c = OpenAIClient(
        admin_key=keys,
        base_url="http://openai.invalid/v1",
        http=session,  # type: ignore[arg-type]
        deadline=Deadline(lambda: int((remaining_s + 5) * 1000)),
        sleep=lambda _: None,
    )
    return c, session


def test_poll_client_reads_the_key_once_for_all_threads_and_counts_every_request() -> None:
    keys = CountingKeys(ADMIN_KEY)
    c, session = threaded_client(lambda: response(200, OK_PAGE), keys)
    with ThreadPoolExecutor(max_workers=20) as pool:
        list(pool.map(lambda _: c.get_json("/organization/costs", {}, source="costs"), range(200)))
    assert keys.reads == [False]
    assert c.request_count == 200 == len(session.calls)


def test_poll_client_revoked_key_is_asked_once_more_then_not_again_in_this_poll() -> None:
    keys = CountingKeys(ADMIN_KEY)
    body = {"error": {"message": "Incorrect API key provided: sk-admin-****0000", "code": "invalid_api_key"}}
    c, session = threaded_client(lambda: response(401, body), keys)
    with pytest.raises(KeyProblemError) as first:
        c.get_json("/organization/costs", {}, source="costs")
    assert first.value.condition == ADMIN_KEY_REJECTED
    with pytest.raises(KeyProblemError, match="admin key rejected") as second:
        c.get_json("/organization/projects", {}, source="projects")
    assert second.value.source == "projects"
    assert len(session.calls) == 2, "costs, the key-wide check; the second source is not sent the key again"
    assert keys.reads == [False, True]


def test_poll_client_picks_up_a_key_rotated_by_another_thread() -> None:
    keys = CountingKeys(ADMIN_KEY, "sk-admin-rotated-0000000000")

    def reply() -> Reply:
        return response(200, OK_PAGE)

    c, _ = threaded_client(reply, keys)
    c.get_json("/organization/costs", {}, source="costs")
    # A 401 seen by one thread makes it re-read; a thread failing with the old key later uses the new one.
    assert c._rotated_key("admin", keys, ADMIN_KEY, "costs") == "sk-admin-rotated-0000000000"
    assert c._rotated_key("admin", keys, ADMIN_KEY, "projects") == "sk-admin-rotated-0000000000"
    assert keys.reads == [False, True]


@pytest.mark.parametrize(
    ("status", "message", "endpoint", "condition"),
    [
        (401, "Incorrect API key provided", None, ADMIN_KEY_REJECTED),
        (403, "Missing scopes: api.usage.read.", None, f"{ADMIN_KEY_MISSING_SCOPE}:api.usage.read"),
        (401, "Incorrect API key provided: sess-****", LEGACY, SESSION_KEY_REJECTED),
        (403, "must be made with a session key (that is, it can only be made from the browser)", LEGACY, None),
    ],
)
def test_poll_client_auth_failures_name_a_condition(
    status: int, message: str, endpoint: Any, condition: str | None
) -> None:
    c, _, _ = client([response(status, {"error": {"message": message}})] * 2)
    kwargs = {"endpoint": endpoint} if endpoint else {}
    with pytest.raises(KeyProblemError) as caught:
        c.get_json("/x", None, source="s", **kwargs)
    assert caught.value.kind == "auth"
    assert caught.value.condition == (condition or SESSION_KEY_REJECTED)


def test_poll_client_forbidden_for_another_reason_is_auth_without_a_condition() -> None:
    c, _, _ = client([response(403, {"error": {"message": "Project is archived"}})] * 2)
    with pytest.raises(AuthError, match="forbidden") as caught:
        c.get_json("/organization/projects/p/spend_limit", None, source="project_spend_limits")
    assert not isinstance(caught.value, KeyProblemError)


def test_poll_client_404_is_not_found() -> None:
    c, session, _ = client([response(404, {"error": {"message": "No spend limit is set", "code": "not_found"}})])
    with pytest.raises(NotFoundError, match="not found"):
        c.get_json("/organization/spend_limit", None, source="spend_limit")
    assert len(session.calls) == 1


def test_poll_client_missing_admin_secret_is_a_named_condition() -> None:
    org = parse_config("organizations: [{id: acme, name: Acme}]", "t").organizations[0]
    c = OpenAIClient.for_org(org, EnvSecrets({}), base_url="http://openai.invalid/v1")
    assert not c.has_key("session")
    with pytest.raises(KeyProblemError, match="OpenAI admin key of acme is not set") as caught:
        c.get_json("/organization/costs", {}, source="costs")
    assert caught.value.condition == ADMIN_KEY_MISSING


def test_poll_client_for_org_uses_session_key_only_when_configured() -> None:
    org = parse_config("organizations: [{id: acme, name: Acme}]", "t").organizations[0]
    env = {"OPENAI_ADMIN_KEY": ADMIN_KEY, "OPENAI_SESSION_KEY": "sess-unit"}
    assert OpenAIClient.for_org(org, EnvSecrets(env)).has_key("session")
    assert not OpenAIClient.for_org(org, EnvSecrets({"OPENAI_ADMIN_KEY": ADMIN_KEY})).has_key("session")


def test_poll_client_read_timeout_never_outlasts_the_invocation() -> None:
    c, session, _ = client([response(200, OK_PAGE)], remaining_s=4)
    c.get_json("/organization/costs", {}, source="costs")
    connect, read = session.calls[0]["timeout"]
    assert connect == 3.05
    assert 3.5 < read <= 4


def test_poll_client_sends_nothing_once_the_time_is_up() -> None:
    c, session, _ = client([response(200, OK_PAGE)], remaining_s=-1)
    with pytest.raises(DeadlineError, match="not sent: the poll's time is used up") as caught:
        c.get_json("/organization/costs", {}, source="costs")
    assert (caught.value.kind, caught.value.retryable) == ("deadline", True)
    assert session.calls == []


def test_poll_client_connection_pool_fits_the_poll_threads() -> None:
    session = http_session(20)
    adapter = session.get_adapter("https://api.openai.com/v1")
    assert adapter._pool_maxsize == 20  # type: ignore[attr-defined]


def test_poll_client_missing_secret_is_read_once_per_poll() -> None:
    reads: list[bool] = []

    class CountingSecrets(EnvSecrets):
        def get(self, ref: Any, *, force_fetch: bool = False) -> str | None:
            reads.append(force_fetch)
            return None

    org = parse_config("organizations: [{id: acme, name: Acme}]", "t").organizations[0]
    c = OpenAIClient.for_org(org, CountingSecrets({}), base_url="http://openai.invalid/v1")
    reads.clear()  # for_org looked for a session key
    for source in ("costs", "projects", "spend_limit"):
        with pytest.raises(KeyProblemError, match="is not set") as caught:
            c.get_json("/x", None, source=source)
        assert caught.value.source == source
        assert caught.value.condition == ADMIN_KEY_MISSING
    assert reads == [False]
    assert c.request_count == 0


# --------------------------------------------------------------------------------------------------
# pagination: `has_more` must be a boolean
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"has_more": None}, "page has_more is null, expected true or false"),
        ({"has_more": "false"}, "page has_more is a string ('false'), expected true or false"),
        ({"has_more": 0}, "page has_more is a int, expected true or false"),
    ],
)
def test_poll_client_page_without_a_boolean_has_more_is_malformed(change: dict[str, Any], expected: str) -> None:
    c, _, _ = client([response(200, {**OK_PAGE, **change})])
    with pytest.raises(MalformedReplyError, match=re.escape(expected)) as caught:
        list(c.iter_pages("/organization/costs", {}, source="costs"))
    assert caught.value.source == "costs"
    c, _, _ = client([response(200, {"object": "list", "data": [], **change})])
    with pytest.raises(MalformedReplyError, match=re.escape(expected)):
        list(c.iter_list("/organization/projects", {}, source="projects"))


def test_poll_client_page_missing_has_more_is_malformed_not_the_last_page() -> None:
    page = {"object": "page", "data": [1], "next_page": "p2"}
    c, session, _ = client([response(200, page)])
    with pytest.raises(MalformedReplyError, match="page has_more is missing, expected true or false"):
        list(c.iter_pages("/organization/costs", {}, source="costs"))
    assert len(session.calls) == 1
    c, _, _ = client([response(200, {"object": "list", "data": [{"id": "a"}], "last_id": "a"})])
    with pytest.raises(MalformedReplyError, match="page has_more is missing"):
        list(c.iter_list("/organization/projects", {}, source="projects"))


# --------------------------------------------------------------------------------------------------
# a key that could not be read is unavailable (retryable), not missing
# --------------------------------------------------------------------------------------------------

ACME = "organizations: [{id: acme, name: Acme}]"


class UnreadableSecrets(EnvSecrets):
    """SSM stand-in: the admin key parameter cannot be read (the value is never part of the error)."""

    def __init__(self, code: str = "ThrottlingException") -> None:
        super().__init__({})
        self.code = code
        self.reads: list[tuple[str, bool]] = []

    def get(self, ref: Any, *, force_fetch: bool = False) -> str | None:
        self.reads.append((ref.parameter, force_fetch))
        if ref.parameter.endswith("openai-session-key"):
            return None
        raise SecretUnavailableError(f"cannot read SSM parameter {ref.parameter}: {self.code}")


@pytest.mark.parametrize("code", ["ThrottlingException", "AccessDeniedException", "ReadTimeoutError"])
def test_poll_client_unreadable_admin_key_is_unavailable_not_missing(code: str) -> None:
    org = parse_config(ACME, "t").organizations[0]
    secrets = UnreadableSecrets(code)
    c = OpenAIClient.for_org(org, secrets, base_url="http://openai.invalid/v1")
    for source in ("costs", "projects"):
        with pytest.raises(UnavailableError) as caught:
            c.get_json("/x", None, source=source)
        assert not isinstance(caught.value, AuthError)
        assert caught.value.retryable
        assert caught.value.source == source
        assert caught.value.detail == (
            "OpenAI admin key of acme could not be read: "
            f"cannot read SSM parameter /spendwatch/acme/openai-admin-key: {code}"
        )
    admin_reads = [r for r in secrets.reads if r[0].endswith("openai-admin-key")]
    assert admin_reads == [("/spendwatch/acme/openai-admin-key", False)], "one read per poll, not one per source"
    assert c.request_count == 0
    # Not remembered beyond this poll: the next poll's client asks SSM again.
    with pytest.raises(UnavailableError):
        OpenAIClient.for_org(org, secrets, base_url="http://openai.invalid/v1").get_json("/x", None, source="costs")
    assert len([r for r in secrets.reads if r[0].endswith("openai-admin-key")]) == 2


def test_collect_snapshot_with_an_unreadable_admin_key_reports_unavailable_without_a_key_condition() -> None:
    from spendwatch.poller.collect import collect_snapshot

    org = parse_config(ACME, "t").organizations[0]
    c = OpenAIClient.for_org(org, UnreadableSecrets(), base_url="http://openai.invalid/v1")
    when = datetime(2026, 11, 21, 23, tzinfo=UTC)
    snapshot = collect_snapshot(org, c, poll_time=when, now=lambda: when)
    assert snapshot.sources_ok == ()
    assert snapshot.conditions == (), "not admin_key_missing: the key may well be there"
    assert {f.kind for f in snapshot.failures} == {"unavailable"}


def test_poll_client_key_reread_after_a_401_that_cannot_be_read_is_unavailable() -> None:
    calls: list[bool] = []

    def keys(force: bool) -> str:
        calls.append(force)
        if force:
            raise SecretUnavailableError("cannot read SSM parameter /spendwatch/acme/openai-admin-key: Throttling")
        return ADMIN_KEY

    body = {"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}}
    c, _, _ = client([response(401, body), response(401, body)], keys=keys)
    with pytest.raises(UnavailableError, match="Throttling"):
        c.get_json("/organization/costs", {}, source="costs")
    with pytest.raises(UnavailableError, match="Throttling"):
        c.get_json("/organization/costs", {}, source="projects")
    assert calls == [False, True], "the failed re-read is not repeated by every source"


def test_poll_client_admin_key_parameter_not_found_is_still_missing() -> None:
    org = parse_config(ACME, "t").organizations[0]
    c = OpenAIClient.for_org(org, EnvSecrets({}), base_url="http://openai.invalid/v1")
    with pytest.raises(KeyProblemError) as caught:
        c.get_json("/x", None, source="costs")
    assert caught.value.condition == ADMIN_KEY_MISSING
    assert not caught.value.retryable
