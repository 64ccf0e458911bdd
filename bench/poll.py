"""One poll against the local OpenAI server with a fixed latency added to every request.

The server runs in a process of its own (its CPU never competes with the poller's interpreter lock),
with the demo organization. Prints:

- requests per poll, and the wall time of one poll as a ratio to its slowest chain of dependent requests
  (every page of the project list, then one project's spend limit), measured by running that chain alone;
- N organizations polled at once as a ratio to one: N concurrent invocations in threads of this process,
  each with its own 20-thread pool, for N = 1, 10, 20, 50, with the poller's CPU time per poll (the
  figure that bounds this single-process measurement);
- peak memory of one poll, and peak RSS of this process;
- the same ratio for an organization with 40 projects (the per-project requests outnumber the threads);
- the DynamoDB item size of a large organization's snapshot (200 projects x 30 line items).

Figures, not assertions: docs/performance.md.
"""

from __future__ import annotations

import multiprocessing
import resource
import statistics
import threading
import time
import tracemalloc
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from multiprocessing.connection import Connection

from spendwatch.core.config import OrganizationConfig, parse_config
from spendwatch.core.snapshot import Snapshot
from spendwatch.devtools import fake_openai
from spendwatch.devtools.fake_openai import SIM_ADMIN_KEY, SIM_SESSION_KEY, FakeOpenAI
from spendwatch.devtools.simulated_org import ADMIN_KEY_ID, USAGE_TYPES, SimulatedOrg
from spendwatch.poller.collect import (
    MAX_WORKERS,
    collect_projects,
    collect_snapshot,
    collect_spend_limit,
    item_size_bytes,
)
from spendwatch.poller.openai_api import OpenAIClient

NOW = datetime(2026, 11, 21, 23, tzinfo=UTC)
LATENCY_S = 0.1
RUNS = 5
CONCURRENCY = (1, 10, 20, 50)
MID_SIZE_PROJECTS = 40
LISTEN_BACKLOG = 1024
"""socketserver listens with a backlog of 5; 20 simultaneous connects would overflow it and the kernel
drops SYNs (a 1 s retransmit), which measures the harness, not the poller."""


def org_config(org_id: str = "bench") -> OrganizationConfig:
    text = f"organizations: [{{id: {org_id}, name: Bench {org_id}, admin_key_id: {ADMIN_KEY_ID}}}]"
    return parse_config(text, "bench").organizations[0]


def client(base_url: str) -> OpenAIClient:
    return OpenAIClient(admin_key=lambda _: SIM_ADMIN_KEY, session_key=lambda _: SIM_SESSION_KEY, base_url=base_url)


def poll(base_url: str, org_id: str = "bench") -> tuple[Snapshot, int, float]:
    c = client(base_url)
    started = time.perf_counter()
    snapshot = collect_snapshot(org_config(org_id), c, poll_time=NOW, now=lambda: NOW)
    return snapshot, c.request_count, time.perf_counter() - started


def chain(base_url: str) -> tuple[int, float]:
    """The longest dependent sequence, alone: every page of the project list, then one project's limit."""
    c = client(base_url)
    started = time.perf_counter()
    projects = collect_projects(c)
    active = next(p.id for p in projects if p.status != "archived")
    collect_spend_limit(c, f"/organization/projects/{active}/spend_limit", active, "project_spend_limits")
    return c.request_count, time.perf_counter() - started


def median(runs: int, work: Callable[[], float]) -> float:
    return statistics.median(work() for _ in range(runs))


def warm(org: SimulatedOrg) -> SimulatedOrg:
    for usage_type in USAGE_TYPES:  # derive the simulated usage once, outside the timed polls
        org.usage_rows(usage_type)
    return org


def serve(conn: Connection, latency_s: float, project_count: int) -> None:
    """Child process: a simulated organization's server until the parent says stop."""
    fake_openai._Server.request_queue_size = LISTEN_BACKLOG
    org = SimulatedOrg.default(NOW) if project_count == 3 else SimulatedOrg.generate(NOW, project_count=project_count)
    with FakeOpenAI(warm(org)) as fake:
        fake.set_latency(latency_s)
        conn.send(fake.base_url)
        conn.recv()


def concurrent_polls(base_url: str, count: int) -> tuple[float, float]:
    """Wall time of `count` polls started together, and the poller's CPU seconds per poll."""
    start = threading.Barrier(count + 1)

    def invocation(index: int) -> Snapshot:
        start.wait()
        snapshot = poll(base_url, f"org-{index:02d}")[0]
        assert snapshot.failures == (), snapshot.failures
        return snapshot

    with ThreadPoolExecutor(max_workers=count) as pool:
        futures = [pool.submit(invocation, i) for i in range(count)]
        start.wait()
        cpu, began = time.process_time(), time.perf_counter()
        for future in futures:
            future.result()
        elapsed = time.perf_counter() - began
    return elapsed, (time.process_time() - cpu) / count


def with_server(latency_s: float, work: Callable[[str], None], project_count: int = 3) -> None:
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=serve, args=(child, latency_s, project_count), daemon=True)
    process.start()
    try:
        work(parent.recv())
    finally:
        parent.send("stop")
        process.join(timeout=10)


def large_organization() -> None:
    started = time.perf_counter()
    large = warm(SimulatedOrg.generate(NOW, project_count=200, line_items_per_project=30))
    fake_openai._Server.request_queue_size = LISTEN_BACKLOG
    with FakeOpenAI(large) as fake:
        big, big_requests, big_s = poll(fake.base_url)
    assert big.failures == (), big.failures
    print(f"large organization (200 projects x 30 line items; built in {time.perf_counter() - started:.0f} s):")
    print(f"  requests per poll                                  {big_requests:6d}")
    print(f"  poll wall, server in this process, no latency      {big_s * 1000:6.0f} ms")
    print(
        f"  snapshot item size                                 {item_size_bytes(big) / 1000:6.1f} KB   (limit 400 KB)"
    )
    print(f"  trimmed to fit                                     {'yes' if big.conditions else 'no':>6}")


def main() -> None:
    print(f"demo organization, server in its own process, {LATENCY_S * 1000:.0f} ms added to every request:")

    def latency_figures(base_url: str) -> None:
        poll(base_url)  # warm-up: imports, first connections
        snapshot, requests, _ = poll(base_url)
        assert snapshot.failures == (), snapshot.failures
        chain_requests, _ = chain(base_url)
        one = median(RUNS, lambda: poll(base_url)[2])
        chain_s = median(RUNS, lambda: chain(base_url)[1])
        print(f"  requests per poll                                  {requests:6d}")
        print(f"  slowest dependent chain (requests)                 {chain_requests:6d}")
        print(f"  one poll, wall (median of {RUNS})                       {one * 1000:6.0f} ms")
        print(f"  slowest chain alone, wall (median of {RUNS})            {chain_s * 1000:6.0f} ms")
        print(f"  poll / chain                                       {one / chain_s:6.2f}x   (goal <= 1.5x)")
        print(f"  poll / (chain requests x latency)                  {one / (chain_requests * LATENCY_S):6.2f}x")
        print(f"  organizations at once ({MAX_WORKERS} threads per poll), wall and ratio to one:")
        base = None
        for count in CONCURRENCY:
            wall, cpu = concurrent_polls(base_url, count)
            base = base or wall
            ratio = wall / base
            print(
                f"    {count:3d} at once   {wall * 1000:6.0f} ms   {ratio:5.2f}x   poller CPU {cpu * 1000:4.0f} ms/poll"
            )
        tracemalloc.start()
        poll(base_url)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"  one poll, peak Python allocations (tracemalloc)    {peak / 1e6:6.1f} MB")

    with_server(LATENCY_S, latency_figures)

    def mid_size(base_url: str) -> None:
        poll(base_url)
        snapshot, requests, _ = poll(base_url)
        assert snapshot.failures == (), snapshot.failures
        one = median(RUNS, lambda: poll(base_url)[2])
        chain_requests, _ = chain(base_url)
        chain_s = median(RUNS, lambda: chain(base_url)[1])
        active = sum(1 for p in snapshot.projects if p.status != "archived")
        print(f"organization with {active} active projects, same latency:")
        print(f"  requests per poll                                  {requests:6d}")
        print(f"  one poll / slowest chain ({chain_requests} requests)              {one / chain_s:6.2f}x")

    with_server(LATENCY_S, mid_size, project_count=MID_SIZE_PROJECTS)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  this process, peak RSS (all of the above)          {rss_mb:6.0f} MB")

    large_organization()


if __name__ == "__main__":
    main()
