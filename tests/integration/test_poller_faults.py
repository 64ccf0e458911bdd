"""The poll against a local OpenAI server that misbehaves on the wire (issue 7): trickled, cut-short,
reset and huge replies, 401/403 on single endpoints, slow successes. Each test asserts the deadline (the
poll, the handler and `spendwatch poll` return within their budget plus a small tolerance), that nothing
good is lost, the bound on retries (request counts) and, for huge bodies, on memory.

Budgets are seconds, never the deployed 120 s; the write reserve (`WRITE_RESERVE_S`) is added on top, as
the poller does with the invocation's remaining time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from spendwatch.core.config import parse_config
from spendwatch.core.snapshot import Snapshot
from spendwatch.devtools.fake_openai import FakeOpenAI
from spendwatch.devtools.pipeline import FakeLambdaContext, LocalPipeline
from spendwatch.devtools.simulated_org import ADMIN_KEY_ID, SimulatedOrg
from spendwatch.poller.collect import PAGE_BUCKETS, POLL_GRACE_S, SOURCE_ORDER, collect_snapshot
from spendwatch.poller.openai_api import (
    ADMIN_KEY_REJECTED,
    CHUNK_BYTES,
    KEY_CHECK_PATH,
    MAX_ATTEMPTS,
    RESPONSE_CAP_BYTES,
    WRITE_RESERVE_S,
    Deadline,
    OpenAIClient,
)

from .conftest import ADMIN_KEY, POLL_TIME
from .test_poller_sources import SESSION_KEY, configure, failure, stored

TOLERANCE_S = 1.5
"""Scheduling slack on a shared 2-core machine; a poll that waits on a trickle overruns by far more."""
ORG = parse_config(
    f"organizations: [{{id: sim, name: Simulated Org, admin_key_id: {ADMIN_KEY_ID}}}]", "t"
).organizations[0]
COMPLETIONS = "/v1/organization/usage/embeddings"
"""A usage path asked by one query only (completions is asked twice: by model and by key and user)."""
IMAGES = "/v1/organization/usage/images"


def sim_client(fake: FakeOpenAI, poll_s: float = 10.0, **kwargs: Any) -> OpenAIClient:
    """The poller's client for `fake`, with `poll_s` to poll (plus the write reserve) and back-off waits
    capped at 50 ms so the retry tests stay fast; counts are what they assert."""
    return OpenAIClient(
        admin_key=lambda _: ADMIN_KEY,
        session_key=lambda _: SESSION_KEY,
        base_url=fake.base_url,
        deadline=Deadline(budget_s=poll_s + WRITE_RESERVE_S),
        sleep=lambda s: time.sleep(min(s, 0.05)),
        **kwargs,
    )


def poll(client: OpenAIClient) -> tuple[Snapshot, float]:
    started = time.monotonic()
    snapshot = collect_snapshot(ORG, client, poll_time=POLL_TIME, now=lambda: POLL_TIME)
    return snapshot, time.monotonic() - started


def hits(fake: FakeOpenAI, path: str) -> int:
    return sum(1 for r in fake.requests_log if r.path == path)


def kept_all_but(snapshot: Snapshot, *failed: str) -> None:
    assert {f.source for f in snapshot.failures} == set(failed)
    assert snapshot.sources_ok == tuple(s for s in SOURCE_ORDER if s not in failed)


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(SimulatedOrg.default(POLL_TIME), admin_key=ADMIN_KEY, session_key=SESSION_KEY) as server:
        yield server


@pytest.fixture
def clean_requests(fake: FakeOpenAI) -> int:
    """Requests of a poll with no fault (24 for the demo organization)."""
    client = sim_client(fake)
    snapshot, _ = poll(client)
    assert snapshot.failures == ()
    fake.reset()
    return client.request_count


# --------------------------------------------------------------------------------------------------
# item 2: deadlines
# --------------------------------------------------------------------------------------------------


def test_poll_trickled_reply_is_cut_at_the_poll_deadline_and_the_rest_kept(fake: FakeOpenAI) -> None:
    fake.trickle(COMPLETIONS, bytes_per_s=20, times=None)  # ~100 s for its reply; no socket read ever times out
    snapshot, elapsed = poll(sim_client(fake, poll_s=2))
    assert elapsed < 2 + POLL_GRACE_S + TOLERANCE_S, f"{elapsed:.1f} s for a 2 s poll"
    kept_all_but(snapshot, "usage_embeddings")
    cut = failure(snapshot, "usage_embeddings")
    assert cut.kind == "deadline"
    assert cut.detail.startswith("the poll's time ran out reading the reply")
    assert snapshot.month_to_date_usd == fake.org.month_to_date_usd()
    assert hits(fake, COMPLETIONS) == 1, "no retry past the deadline"


def test_poll_trickle_is_cut_by_the_per_request_deadline_and_retried(fake: FakeOpenAI) -> None:
    fake.trickle(COMPLETIONS, bytes_per_s=20, times=1)
    snapshot, elapsed = poll(sim_client(fake, poll_s=6, request_deadline_s=1.0))
    assert snapshot.failures == ()
    assert hits(fake, COMPLETIONS) == 2
    assert elapsed < 1 + TOLERANCE_S + 1


def test_poll_slow_successes_within_the_deadline_are_kept(fake: FakeOpenAI) -> None:
    fake.set_latency(0.2)
    fake.hang("/v1/organization/costs", seconds=1.0, times=None)
    snapshot, elapsed = poll(sim_client(fake, poll_s=4))
    assert snapshot.failures == ()
    assert snapshot.month_to_date_usd == fake.org.month_to_date_usd()
    assert elapsed < 4


def test_poll_request_hanging_before_its_headers_is_cut_at_the_deadline(fake: FakeOpenAI) -> None:
    fake.hang("/v1/organization/spend_alerts", seconds=30, times=None)
    snapshot, elapsed = poll(sim_client(fake, poll_s=2, timeout=(3.05, 20.0)))
    assert elapsed < 2 + POLL_GRACE_S + TOLERANCE_S
    kept_all_but(snapshot, "spend_alerts")
    assert failure(snapshot, "spend_alerts").kind == "deadline"


# --------------------------------------------------------------------------------------------------
# item 5: cut-short bodies and resets are retried within the deadline, then named
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_poll_body_cut_short_once_is_retried(fake: FakeOpenAI, clean_requests: int, chunked: bool) -> None:
    fault = fake.cut_body(IMAGES, chunked=chunked, times=1)
    client = sim_client(fake)
    snapshot, _ = poll(client)
    assert fault.hits == 1
    assert snapshot.failures == ()
    assert client.request_count == clean_requests + 1


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_poll_body_always_cut_short_is_named_truncated_after_bounded_retries(fake: FakeOpenAI, chunked: bool) -> None:
    fake.cut_body(IMAGES, chunked=chunked, times=None)
    snapshot, _ = poll(sim_client(fake))
    kept_all_but(snapshot, "usage_images")
    cut = failure(snapshot, "usage_images")
    assert cut.kind == "truncated"
    expected = "chunked reply cut short after" if chunked else "reply cut short: "
    assert cut.detail.startswith(expected), cut.detail
    assert cut.detail.endswith(f"({MAX_ATTEMPTS} attempts)")
    assert hits(fake, IMAGES) == MAX_ATTEMPTS


@pytest.mark.parametrize("when", ["before_headers", "mid_body"])
def test_poll_connection_reset_once_is_retried(fake: FakeOpenAI, clean_requests: int, when: Any) -> None:
    fake.reset_connection("/v1/organization/projects", when=when, times=1)
    client = sim_client(fake)
    snapshot, _ = poll(client)
    assert snapshot.failures == ()
    assert client.request_count == clean_requests + 1


@pytest.mark.parametrize(
    ("when", "detail"),
    [
        ("before_headers", f"connection reset before a reply ({MAX_ATTEMPTS} attempts)"),
        ("mid_body", f"connection reset in the middle of the reply ({MAX_ATTEMPTS} attempts)"),
    ],
)
def test_poll_connection_always_reset_is_named_after_bounded_retries(fake: FakeOpenAI, when: Any, detail: str) -> None:
    fake.reset_connection("/v1/organization/spend_limit", when=when, times=None)
    snapshot, _ = poll(sim_client(fake))
    kept_all_but(snapshot, "spend_limit")
    reset = failure(snapshot, "spend_limit")
    assert (reset.kind, reset.detail) == ("unavailable", detail)
    assert hits(fake, "/v1/organization/spend_limit") == MAX_ATTEMPTS


# --------------------------------------------------------------------------------------------------
# item 3: size cap, read as a stream, bounded memory
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_poll_huge_reply_is_stopped_at_the_cap_with_bounded_memory(fake: FakeOpenAI, chunked: bool) -> None:
    fake.huge(IMAGES, 40 * 1024 * 1024, chunked=chunked, times=None)
    client = sim_client(fake)
    tracemalloc.start()
    try:
        snapshot, _ = poll(client)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    kept_all_but(snapshot, "usage_images")
    too_large = failure(snapshot, "usage_images")
    assert too_large.kind == "too_large"
    if chunked:
        assert too_large.detail == "reply is over the 8.0 MiB cap: reading stopped there"
    else:
        assert too_large.detail == "reply of 40.0 MiB (Content-Length) is over the 8.0 MiB cap"
    # Never retried as such; asked again only in smaller pages (a week, then a day), each refused alike.
    assert hits(fake, IMAGES) == len(PAGE_BUCKETS)
    slack = 4 * 1024 * 1024 + 2 * CHUNK_BYTES  # the rest of the poll, the server's pieces, the interpreter
    assert peak < (RESPONSE_CAP_BYTES if chunked else 0) + slack, f"peak {peak / 1e6:.1f} MB"


def test_poll_page_over_the_cap_is_asked_again_in_smaller_pages(fake: FakeOpenAI) -> None:
    fake.huge(COMPLETIONS, RESPONSE_CAP_BYTES + 1, chunked=False, times=1)
    snapshot, _ = poll(sim_client(fake))
    assert snapshot.failures == ()
    limits = [r.query["limit"] for r in fake.requests_log if r.path == COMPLETIONS]
    assert limits[:2] == [["31"], ["7"]]
    assert snapshot.usage["embeddings"].totals["input_tokens"] > 0


# --------------------------------------------------------------------------------------------------
# item 1: 401/403 per endpoint
# --------------------------------------------------------------------------------------------------


def key_checks(fake: FakeOpenAI) -> int:
    return sum(1 for r in fake.requests_log if r.path == "/v1" + KEY_CHECK_PATH and r.query.get("limit") == ["1"])


def test_poll_401_missing_scope_on_one_endpoint_names_the_scope_and_keeps_the_rest(fake: FakeOpenAI) -> None:
    fake.missing_scope(COMPLETIONS, status=401)  # OpenAI's real body: "... Missing scopes: api.usage.read."
    snapshot, _ = poll(sim_client(fake))
    kept_all_but(snapshot, "usage_embeddings")
    assert snapshot.conditions == ("admin_key_missing_scope:api.usage.read",)
    assert "lacks the api.usage.read scope (401)" in failure(snapshot, "usage_embeddings").detail
    assert key_checks(fake) == 0


def test_poll_401_on_one_endpoint_is_that_sources_failure_not_a_revoked_key(fake: FakeOpenAI) -> None:
    fake.inject("/v1/organization/spend_limit", status=401, times=None)
    snapshot, _ = poll(sim_client(fake))
    kept_all_but(snapshot, "spend_limit")
    rejected = failure(snapshot, "spend_limit")
    assert rejected.kind == "auth"
    assert "for this source only" in rejected.detail
    assert ADMIN_KEY_REJECTED not in snapshot.conditions
    assert key_checks(fake) == 1


def test_poll_403_on_one_project_endpoint_fails_that_project_only(fake: FakeOpenAI) -> None:
    project = next(p.id for p in fake.org.projects if p.archived_at is None)
    body = json.dumps({"error": {"message": "Project is archived", "type": "invalid_request_error"}})
    fake.inject(f"/v1/organization/projects/{project}/spend_alerts", status=403, body=body, times=None)
    snapshot, _ = poll(sim_client(fake))
    kept_all_but(snapshot, "project_spend_alerts")
    assert f"{project}: forbidden (403): Project is archived" in failure(snapshot, "project_spend_alerts").detail
    assert {a.scope for a in snapshot.spend_alerts} == {"organization"} | (
        set(fake.org.project_spend_alerts) - {project}
    )


def test_poll_revoked_key_is_concluded_by_the_key_wide_check_and_stops_asking(fake: FakeOpenAI) -> None:
    fake.admin_key = "sk-admin-a-different-key-0000000"
    client = sim_client(fake)
    snapshot, _ = poll(client)
    assert snapshot.conditions == (ADMIN_KEY_REJECTED,)
    admin_sources = [s for s in SOURCE_ORDER if s not in ("credit_grants", "subscription")]
    assert {f.source for f in snapshot.failures} == set(admin_sources)
    assert snapshot.sources_ok == ("credit_grants", "subscription"), "the session key's sources are kept"
    assert key_checks(fake) == 1
    assert client.request_count <= 19 + 2 + 1, "no per-project request, nothing after the verdict"


# --------------------------------------------------------------------------------------------------
# item 4: what the spec makes optional, served by the real server
# --------------------------------------------------------------------------------------------------


def test_poll_accepts_the_optional_fields_the_spec_allows(fake: FakeOpenAI) -> None:
    dropped: list[Decimal] = []

    nov_1 = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp())

    def costs_without_amounts(page: Any) -> None:
        ungrouped = all(r["project_id"] is None and r["line_item"] is None for b in page["data"] for r in b["results"])
        if page["data"][0]["start_time"] != nov_1 or not ungrouped:
            return  # only the month-to-date query (source `costs`), not the previous month nor the breakdowns
        first = page["data"][0]["results"]
        dropped.extend(row["amount"]["value"] for row in first)
        for row in first:
            del row["amount"]
        for bucket in page["data"][1:]:
            for row in bucket["results"]:
                del row["amount"]["currency"]

    fake.rewrite("/v1/organization/costs", costs_without_amounts, times=None)
    fake.rewrite("/v1/organization/admin_api_keys", lambda key: key.pop("expires_at"), times=1)
    snapshot, _ = poll(sim_client(fake))
    assert snapshot.month_to_date_usd == fake.org.month_to_date_usd() - sum(dropped)
    assert snapshot.admin_key_expires_at is None
    [note] = snapshot.failures
    assert (note.source, note.kind) == ("costs", "skipped_rows")
    rows = [f"page 1 data[0].results[{i}]" for i in range(len(dropped))]
    shown = ", ".join(rows[:3]) + (", …" if len(rows) > 3 else "")
    assert note.detail == f"{len(dropped)} cost rows without an amount skipped ({shown})"
    assert snapshot.sources_ok == SOURCE_ORDER


def test_poll_project_pages_without_last_id_are_followed_by_the_last_items_id() -> None:
    org = SimulatedOrg.generate(POLL_TIME, project_count=205, line_items_per_project=1)
    with FakeOpenAI(org, admin_key=ADMIN_KEY, session_key=SESSION_KEY) as server:
        server.rewrite("/v1/organization/projects", lambda page: page.pop("last_id", None), times=None)
        # ~5 requests per project since the API-key attribution: time enough on a loaded machine, as the
        # test is about the paging, not the deadline.
        snapshot, _ = poll(sim_client(server, poll_s=60.0))
        afters = [r.query.get("after") for r in server.requests_log if r.path == "/v1/organization/projects"]
    assert snapshot.failures == ()
    assert len(snapshot.projects) == 205
    assert afters == [None, [org.projects[99].id], [org.projects[199].id]]


# --------------------------------------------------------------------------------------------------
# the handler and the CLI keep their budgets and store what succeeded
# --------------------------------------------------------------------------------------------------


@dataclass
class CountdownContext(FakeLambdaContext):
    """A Lambda context whose remaining time runs down with the wall clock, as Lambda's does."""

    def __post_init__(self) -> None:
        self._ends = time.monotonic() + self.remaining_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return int((self._ends - time.monotonic()) * 1000)


def test_poller_handler_with_seconds_left_returns_in_time_and_stores_what_succeeded(
    pipeline: LocalPipeline, openai: FakeOpenAI
) -> None:
    configure(pipeline, openai)
    openai.trickle(COMPLETIONS, bytes_per_s=20, times=None)
    remaining_s = WRITE_RESERVE_S + 2
    started = time.monotonic()
    result = pipeline.poll(POLL_TIME, CountdownContext(remaining_ms=int(remaining_s * 1000)))
    elapsed = time.monotonic() - started
    assert elapsed < remaining_s, f"the handler took {elapsed:.1f} s of its {remaining_s:.0f} s"
    assert result["organizations"]["sim"]["failed_sources"] == ["usage_embeddings"]
    snapshot = stored(pipeline)
    assert failure(snapshot, "usage_embeddings").kind == "deadline"
    assert snapshot.month_to_date_usd == openai.org.month_to_date_usd()
    assert len(snapshot.sources_ok) == len(SOURCE_ORDER) - 1


@pytest.fixture
def cli_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(SimulatedOrg.default(datetime.now(UTC)), admin_key=ADMIN_KEY, session_key=SESSION_KEY) as fake:
        yield fake


def run_cli(tmp_path: Path, server: FakeOpenAI, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "SPENDWATCH_", "AWS_"))}
    environ |= {"OPENAI_BASE_URL": server.base_url, "OPENAI_ADMIN_KEY": ADMIN_KEY}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "spendwatch", "poll", *args],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done, time.monotonic() - started


def test_poll_cli_keeps_its_budget_and_prints_what_succeeded(tmp_path: Path, cli_server: FakeOpenAI) -> None:
    cli_server.trickle(COMPLETIONS, bytes_per_s=20, times=None)
    # Interpreter start-up is the rest of the tolerance: ~1 s here, more on a loaded machine.
    startup, _ = run_cli(tmp_path, cli_server, "--help")
    done, elapsed = run_cli(tmp_path, cli_server, "--json", "--budget", str(WRITE_RESERVE_S + 2))
    assert done.returncode == 0, done.stderr
    assert elapsed < WRITE_RESERVE_S + 2, f"{elapsed:.1f} s"
    snapshot = json.loads(done.stdout)
    [cut] = [f for f in snapshot["failures"] if f["source"] == "usage_embeddings"]
    assert cut["kind"] == "deadline"
    assert snapshot["month_to_date_usd"] == str(cli_server.org.month_to_date_usd())
    assert startup.returncode == 0


def test_poll_cli_rejects_a_budget_without_time_to_poll(tmp_path: Path, cli_server: FakeOpenAI) -> None:
    done, _ = run_cli(tmp_path, cli_server, "--budget", "3")
    assert done.returncode == 2
    assert "the budget must be 6 to 3600 s" in done.stderr
