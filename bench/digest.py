"""The digest function's cold start and size, and the report's build time for a year of hourly snapshots.

1. Cold start: importing functions/digest/handler.py in a fresh interpreter (median of 5, with boto3 as
   the baseline), and a whole first digest in a fresh interpreter: import, figures from a month of
   hourly history, the chart picture (Pillow and its font loaded for the first time).
2. Warm: building one digest's figures, and drawing its picture (medians of 10).
3. Size: the function's artifact as `sam build` makes it (functions/digest/Makefile: handler + Pillow for
   python3.13/arm64), unpacked and zipped.
4. Report: `render_report` for the last month of a year of hourly snapshots (8,760) held in memory, and
   how many DynamoDB queries the same page costs from the table (`TableHistory` reads).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from spendwatch.core.config import parse_config
from spendwatch.core.snapshot import Snapshot
from spendwatch.devtools.snapshot_series import SeriesOrg
from spendwatch.digest.compose import build_digest
from spendwatch.digest.schedule import due_period
from spendwatch.views.chart import layout_daily
from spendwatch.views.history import MemoryHistory
from spendwatch.views.report import OrgReport, render_report

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 21, 9, 5, tzinfo=UTC)
CONFIG = """
organizations:
  - id: sim
    name: Simulated Org
    budget: {monthly_usd: 500}
    channels: [slack]
    digests: [{every: day}]
channels:
  slack: {type: slack}
"""
FIRST_DIGEST = f"""
import sys, time
t = time.perf_counter()
sys.path.insert(0, {str(ROOT / "functions" / "digest")!r})
import handler
from datetime import UTC, datetime, timedelta
from spendwatch.views.chart import layout_daily
from spendwatch.views.chart_png import render_png
from spendwatch.core.config import parse_config
from spendwatch.devtools.snapshot_series import SeriesOrg
from spendwatch.digest.compose import build_digest
from spendwatch.digest.schedule import due_period
from spendwatch.digest.render import digest_content, slack_message
from spendwatch.views.history import MemoryHistory
now = datetime(2026, 11, 21, 9, 5, tzinfo=UTC)
history = MemoryHistory(SeriesOrg().series(datetime(2026, 10, 31, tzinfo=UTC), now))
imported = time.perf_counter() - t
t = time.perf_counter()
org = parse_config({CONFIG!r}, "bench").organizations[0]
digest = build_digest(org, due_period(org.digests[0], now), history, now=now, alerts_sent=0)
png = render_png(layout_daily(digest.chart))
slack_message(digest_content(digest), png, filename="x.png")
print(imported, time.perf_counter() - t)
"""


def fresh(code: str) -> list[float]:
    env = {"POWERTOOLS_TRACE_DISABLED": "true", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    return [float(x) for x in done.stdout.split()]


def timed_import(code: str) -> float:
    return fresh(f"import time; t=time.perf_counter(); {code}; print(time.perf_counter()-t)")[0]


def median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:.0f} ms"


def cold_start() -> None:
    handler = f"import sys; sys.path.insert(0, {str(ROOT / 'functions' / 'digest')!r}); import handler"
    boto = statistics.median(timed_import("import boto3") for _ in range(5))
    digest = statistics.median(timed_import(handler) for _ in range(5))
    print(
        f"cold import (median of 5): boto3 {boto * 1000:.0f} ms, digest handler {digest * 1000:.0f} ms "
        f"({digest / boto:.2f}x boto3)"
    )
    runs = [fresh(FIRST_DIGEST) for _ in range(3)]
    print(
        "first digest in a fresh interpreter (median of 3): figures + picture + message "
        f"{median_ms([r[1] for r in runs])} (after the imports; the series itself is not timed)"
    )


def warm(history: MemoryHistory) -> None:
    from spendwatch.views.chart_png import render_png

    org = parse_config(CONFIG, "bench").organizations[0]
    due = due_period(org.digests[0], NOW)
    builds, pictures = [], []
    for _ in range(10):
        started = time.perf_counter()
        digest = build_digest(org, due, history, now=NOW, alerts_sent=0)
        builds.append(time.perf_counter() - started)
        started = time.perf_counter()
        png = render_png(layout_daily(digest.chart))
        pictures.append(time.perf_counter() - started)
    print(f"warm: digest figures {median_ms(builds)}, picture {median_ms(pictures)} ({len(png) / 1000:.1f} KB PNG)")


def artifact() -> None:
    with tempfile.TemporaryDirectory() as directory:
        env = {**os.environ, "ARTIFACTS_DIR": directory, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        done = subprocess.run(
            ["make", "-s", "-C", str(ROOT / "functions" / "digest"), "build-DigestFunction"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            print(f"artifact: build failed ({done.stderr.strip().splitlines()[-1:]})")
            return
        files = [p for p in Path(directory).rglob("*") if p.is_file()]
        unpacked = sum(p.stat().st_size for p in files)
        archive = Path(directory).parent / "digest-artifact.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
            for path in files:
                zipped.write(path, path.relative_to(directory))
        zipped_size = archive.stat().st_size
        archive.unlink()
    print(
        f"artifact (functions/digest, python3.13/arm64): {unpacked / 1e6:.1f} MB unpacked, "
        f"{zipped_size / 1e6:.1f} MB zipped"
    )


def year_report() -> None:
    started = time.perf_counter()
    series = SeriesOrg()
    snapshots: list[Snapshot] = list(series.series(NOW - timedelta(days=365), NOW))
    generated = time.perf_counter() - started
    history = MemoryHistory(snapshots)
    org = parse_config(CONFIG, "bench").organizations[0]
    samples, page = [], ""
    for _ in range(3):
        started = time.perf_counter()
        page = render_report([OrgReport(org, history)], "2026-11", now=NOW, source="bench")
        samples.append(time.perf_counter() - started)
    print(
        f"report of 2026-11 from a year of hourly snapshots ({len(snapshots):,} in memory, generated in "
        f"{generated:.0f} s): built in {median_ms(samples)} (median of 3), {len(page) / 1000:.0f} KB of HTML"
    )

    class Counting:
        def __init__(self) -> None:
            self.boundaries = 0
            self.windows = 0

        def snapshot_at_or_before(self, org_id: str, moment: datetime) -> Snapshot | None:
            self.boundaries += 1
            return history.at_or_before(moment)

        def snapshots_between(self, org_id: str, start: datetime, end: datetime) -> list[Snapshot]:
            self.windows += 1
            return list(history.polls_between(start, end))

    from spendwatch.views.history import TableHistory

    reader = Counting()
    render_report([OrgReport(org, TableHistory(reader, "sim"))], "2026-11", now=NOW, source="bench")
    print(
        f"the same page from the table: {reader.boundaries} single-item Queries (day and month boundaries) "
        f"and {reader.windows} paginated Query of the month's polls (summary fields)"
    )


def main() -> None:
    cold_start()
    month = MemoryHistory(SeriesOrg().series(datetime(2026, 10, 31, tzinfo=UTC), NOW))
    warm(month)
    artifact()
    year_report()


if __name__ == "__main__":
    main()
