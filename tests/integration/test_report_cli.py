"""`spendwatch report` as a user runs it: from the deployed table (DynamoDB over loopback) or from a fresh
local poll of the OpenAI stand-in; bad input is one clear line and a non-zero exit."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from spendwatch.aws.store import SnapshotStore
from spendwatch.devtools.fake_openai import FakeOpenAI
from spendwatch.devtools.pipeline import LocalPipeline
from spendwatch.devtools.simulated_org import SimulatedOrg
from spendwatch.devtools.snapshot_series import SeriesOrg

ADMIN_KEY = "sk-admin-report-test-key-00000000"
CONFIG = "organizations:\n  - {id: sim, name: Simulated Org, budget: {monthly_usd: 500}}\n"


def run_report(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "spendwatch.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "SPENDWATCH_", "SNAPSHOTS_"))}
    environ |= {"SPENDWATCH_CONFIG": str(config), **env}
    return subprocess.run(
        [sys.executable, "-m", "spendwatch", "report", *args],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_report_from_the_table(pipeline: LocalPipeline, tmp_path: Path) -> None:
    store = SnapshotStore(pipeline.tables["SnapshotsTable"])
    series = SeriesOrg()
    moments = [datetime(2026, 10, 31, 23, tzinfo=UTC)] + [
        datetime(2026, 11, 1, tzinfo=UTC) + timedelta(days=d) for d in range(6)
    ]
    for moment in moments:
        store.put_snapshot(series.snapshot(moment), expires_at=2_000_000_000)
    out = tmp_path / "out" / "nov.html"
    result = run_report(tmp_path, "--month", "2026-11", "--table", pipeline.tables["SnapshotsTable"], "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert f"report written to {out.resolve()}" in result.stdout
    assert "sim 2026-11: month to date $" in result.stdout
    page = out.read_text(encoding="utf-8")
    assert "<script" not in page and 'http-equiv="Content-Security-Policy"' in page
    assert "DynamoDB table" in page
    # 1-6 November: five days fully between midnight polls, then the 6th as of its midnight poll (empty).
    assert len(re.findall(r'class="mark spend"', page.split('id="monthly-sim"')[0])) == 5 * 5
    assert "2026-10" in page.split('id="monthly-sim"')[1], "month over month reaches back into October"


def test_report_from_a_fresh_local_poll(tmp_path: Path) -> None:
    with FakeOpenAI(SimulatedOrg.default(datetime.now(UTC)), admin_key=ADMIN_KEY) as server:
        result = run_report(tmp_path, OPENAI_ADMIN_KEY=ADMIN_KEY, OPENAI_BASE_URL=server.base_url)
    assert result.returncode == 0, result.stderr
    [page_path] = list(tmp_path.glob("spendwatch-report-*.html"))
    page = page_path.read_text(encoding="utf-8")
    assert "Built from one poll made now, without history" in page
    assert "a fresh local poll" in page
    assert 'class="mark spend"' in page, "the day's exact costs are drawn even without a split"
    assert ADMIN_KEY not in page + result.stdout + result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--month", "2026-13"), "--month '2026-13': expected YYYY-MM"),
        (("--org", "nope", "--table", "t"), "no organization 'nope' in the config (known: sim)"),
    ],
)
def test_report_bad_input_is_one_clear_line(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    result = run_report(tmp_path, *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_report_unreadable_table_is_named(pipeline: LocalPipeline, tmp_path: Path) -> None:
    result = run_report(tmp_path, "--table", "NoSuchTable", "--month", "2026-11")
    assert result.returncode == 2
    assert "cannot read the snapshots table NoSuchTable: ResourceNotFoundException" in result.stderr
    assert "Traceback" not in result.stderr
