"""End-to-end latency on the local pipeline: snapshot write -> stream -> alerter -> Slack message received.

Runs the real handlers against moto's server, the local OpenAI stand-in and the local Slack stand-in.
"""

from __future__ import annotations

import contextlib
import io
import statistics
import time
from datetime import UTC, datetime, timedelta

from spendwatch.devtools.fake_openai import FakeOpenAI
from spendwatch.devtools.fake_slack import FakeSlack
from spendwatch.devtools.pipeline import LocalPipeline
from spendwatch.devtools.simulated_org import SimulatedOrg

RUNS = 10
ADMIN_KEY = "sk-admin-bench-key"
CONFIG = """
organizations:
  - {id: sim, name: Bench Org, budget: {monthly_usd: 500}, channels: [slack]}
channels:
  slack: {type: slack}
"""


def main() -> None:
    now = datetime(2026, 11, 21, 23, tzinfo=UTC)
    polls: list[float] = []
    deliveries: list[float] = []
    with (
        FakeOpenAI(SimulatedOrg.default(now), admin_key=ADMIN_KEY) as openai,
        FakeSlack() as slack,
        LocalPipeline() as pipe,
    ):
        for run in range(RUNS):
            pipe.reset()
            slack.reset()
            pipe.configure(
                CONFIG,
                {"/spendwatch/sim/openai-admin-key": ADMIN_KEY, "/spendwatch/slack/webhook-url": slack.webhook_url},
                {"OPENAI_BASE_URL": openai.base_url},
            )
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                started = time.perf_counter()
                pipe.poll(now + timedelta(hours=run))
                polled = time.perf_counter()
                pipe.deliver()
                slack.wait_for(1)
                done = time.perf_counter()
            polls.append(polled - started)
            deliveries.append(done - polled)
    poll_ms = statistics.median(polls) * 1000
    deliver_ms = statistics.median(deliveries) * 1000
    print(f"local pipeline, median of {RUNS} runs (first run includes handler cold start):")
    print(f"  poller handler (every source of a poll + snapshot write) {poll_ms:5.1f} ms")
    print(f"  stream read + alerter handler + Slack message received {deliver_ms:5.1f} ms")
    print(f"  delivery / poll ratio                                 {deliver_ms / poll_ms:5.2f}")


if __name__ == "__main__":
    main()
