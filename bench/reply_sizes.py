"""How large OpenAI's replies get for the poll's queries, measured on simulated organizations.

The poller reads each reply up to `spendwatch.poller.openai_api.RESPONSE_CAP_BYTES` and asks a bucketed query
again in smaller pages when a month-long page is over it (`spendwatch.poller.collect.PAGE_BUCKETS`). This prints,
for each query a poll sends, the size of one page of a whole 31-day month as the local OpenAI server
(the simulation of the real wire format) serves it, so the cap can be chosen from the largest legitimate
page. Requests go straight to the server's handler (no sockets): sizes, not timings.

Figures, not assertions: docs/performance.md.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from spendwatch.devtools.fake_openai import SIM_ADMIN_KEY, FakeOpenAI, HttpRequest
from spendwatch.devtools.simulated_org import SimulatedOrg
from spendwatch.poller.collect import PAGE_BUCKETS, USAGE_SPECS
from spendwatch.poller.openai_api import RESPONSE_CAP_BYTES

NOW = datetime(2026, 12, 31, 23, tzinfo=UTC)
MONTH = {"start_time": [str(int(datetime(2026, 12, 1, tzinfo=UTC).timestamp()))], "limit": ["31"]}
ORGS = ((3, None), (200, 30), (500, 30))


def page_size(fake: FakeOpenAI, path: str, group_by: tuple[str, ...]) -> int:
    query = {**MONTH, "bucket_width": ["1d"], "group_by": list(group_by)}
    request = HttpRequest("GET", "/v1" + path, query, {"authorization": f"Bearer {SIM_ADMIN_KEY}"}, b"")
    response = fake.handle(request)
    assert response.status == 200, response.body[:200]
    return len(response.body)


def main() -> None:
    print(
        f"one page of a 31-day month per query (cap {RESPONSE_CAP_BYTES / 2**20:.0f} MiB = {RESPONSE_CAP_BYTES} bytes):"
    )
    for projects, line_items in ORGS:
        started = time.perf_counter()
        org = SimulatedOrg.generate(NOW, project_count=projects, line_items_per_project=line_items, days=31)
        fake = FakeOpenAI(org)  # its handler only; never started
        queries = [
            ("/organization/costs", ()),
            ("/organization/costs", ("project_id",)),
            ("/organization/costs", ("line_item",)),
            *((spec.path, spec.group_by) for spec in USAGE_SPECS),
        ]
        sizes = sorted(((page_size(fake, p, g), p, g) for p, g in queries), reverse=True)
        label = f"{projects} projects" + (f" x {line_items} line items" if line_items else " (demo layout)")
        print(f"  {label} (built and measured in {time.perf_counter() - started:.0f} s):")
        for size, path, group in sizes[:4]:
            over = ""
            if size > RESPONSE_CAP_BYTES:  # pages of fewer days are about proportionally smaller
                days = next((d for d in PAGE_BUCKETS if size * d / 31 <= RESPONSE_CAP_BYTES), None)
                over = f"  over the cap: asked in {days}-day pages" if days else "  over the cap even per day"
            name = path.removeprefix("/organization/") + (f" by {', '.join(group)}" if group else "")
            print(f"    {name:45s} {size / 1e6:8.2f} MB{over}")


if __name__ == "__main__":
    main()
