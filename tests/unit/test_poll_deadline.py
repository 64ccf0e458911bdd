"""Issue 7, item 2: a poll has a deadline (the invocation's remaining time minus the write reserve) and
`collect_snapshot` returns by it whatever its worker threads do: a stuck source becomes a named `deadline`
failure, the finished ones are kept. No network: the clients are in-memory."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from spendwatch.core.errors import DeadlineError
from spendwatch.poller.collect import POLL_GRACE_S, SOURCE_ORDER
from spendwatch.poller.openai_api import WRITE_RESERVE_S, Deadline

from .test_poll_collect import RoutedClient, collect, full_routes

TOLERANCE_S = 1.0
"""Scheduling slack on a shared 2-core machine; far below what a stuck thread would add (it never ends)."""


class StuckClient(RoutedClient):
    """A client whose `stuck` paths block until released (a worker thread that never comes back), with the
    poll's deadline as `OpenAIClient` exposes it."""

    def __init__(self, routes: dict[str, Any], stuck: tuple[str, ...], deadline: Deadline) -> None:
        super().__init__(routes)
        self.stuck = stuck
        self.deadline = deadline
        self.release = threading.Event()

    def _block(self, key: str) -> None:
        if any(key.startswith(path) for path in self.stuck):
            self.release.wait(30)

    def get_json(self, path: str, params: Any, *, source: str, endpoint: Any = None) -> Any:
        self._block(path)
        return super().get_json(path, params, source=source)

    def iter_pages(self, path: str, params: dict[str, Any], *, source: str) -> Iterator[Any]:
        self._block(path)
        yield from super().iter_pages(path, params, source=source)

    def iter_list(self, path: str, params: dict[str, Any], *, source: str) -> Iterator[Any]:
        self._block(path)
        yield from super().iter_list(path, params, source=source)


def test_deadline_keeps_the_write_reserve_of_the_invocations_remaining_time() -> None:
    clock = [100.0]
    deadline = Deadline(lambda: 30_000, clock=lambda: clock[0])
    assert deadline.remaining_s() == pytest.approx(30 - WRITE_RESERVE_S)
    clock[0] += 10
    assert deadline.remaining_s() == pytest.approx(20 - WRITE_RESERVE_S)
    cli = Deadline(budget_s=120, clock=lambda: clock[0])
    assert cli.remaining_s() == pytest.approx(120 - WRITE_RESERVE_S), "the CLI's budget is treated the same"


def test_deadline_is_fixed_when_the_poll_starts_even_if_the_context_does_not_count_down() -> None:
    """A Lambda context's remaining time is read once: the poll ends by then, whatever the context says later."""
    clock = [0.0]
    deadline = Deadline(lambda: 8_000, clock=lambda: clock[0])
    clock[0] = 3.0
    assert deadline.remaining_s() == pytest.approx(0.0)


def test_collect_snapshot_returns_by_the_deadline_with_a_stuck_source_and_keeps_the_rest() -> None:
    client = StuckClient(full_routes(), ("/organization/usage/embeddings",), Deadline(budget_s=WRITE_RESERVE_S + 1))
    started = time.monotonic()
    try:
        snapshot = collect(client)
    finally:
        client.release.set()
    elapsed = time.monotonic() - started
    assert elapsed < 1 + POLL_GRACE_S + TOLERANCE_S, f"took {elapsed:.1f} s, the poll had 1 s"
    [failure] = snapshot.failures
    assert (failure.source, failure.kind) == ("usage_embeddings", DeadlineError.kind)
    assert failure.detail == "still running when the poll's 1.0 s ran out: not collected"
    assert snapshot.sources_ok == tuple(s for s in SOURCE_ORDER if s != "usage_embeddings")
    assert snapshot.month_to_date_usd is not None


def test_collect_snapshot_a_stuck_project_request_fails_only_that_project() -> None:
    stuck = ("/organization/projects/proj_b/spend_limit",)
    client = StuckClient(full_routes(), stuck, Deadline(budget_s=WRITE_RESERVE_S + 1))
    started = time.monotonic()
    try:
        snapshot = collect(client)
    finally:
        client.release.set()
    assert time.monotonic() - started < 1 + POLL_GRACE_S + TOLERANCE_S
    [failure] = snapshot.failures
    assert (failure.source, failure.kind) == ("project_spend_limits", "deadline")
    assert failure.detail.startswith("1 of 2 projects failed: proj_b: still running when the poll's")
    assert [(s.scope, s.threshold_cents) for s in snapshot.spend_limits if s.scope != "organization"] == [
        ("proj_a", 30000)
    ], "the project that answered is kept"


def test_collect_snapshot_a_stuck_project_list_fails_its_dependents_by_the_deadline() -> None:
    client = StuckClient(full_routes(), ("/organization/projects",), Deadline(budget_s=WRITE_RESERVE_S + 1))
    started = time.monotonic()
    try:
        snapshot = collect(client)
    finally:
        client.release.set()
    assert time.monotonic() - started < 1 + POLL_GRACE_S + TOLERANCE_S
    assert {(f.source, f.kind) for f in snapshot.failures} == {
        ("projects", "deadline"),
        ("project_spend_limits", "deadline"),
        ("project_spend_alerts", "deadline"),
        ("project_rate_limits", "deadline"),
        ("api_keys", "deadline"),
        ("service_accounts", "deadline"),
    }
    assert len(snapshot.sources_ok) == len(SOURCE_ORDER) - 6
