"""`make demo` as a user runs it: the `spendwatch demo` command in a fresh process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from spendwatch.devtools.fake_openai import FakeOpenAI
from spendwatch.devtools.fake_slack import FakeSlack

REPO = Path(__file__).resolve().parents[2]


def run_demo(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "SLACK_", "SPENDWATCH_", "AWS_"))}
    return subprocess.run(
        [sys.executable, "-m", "spendwatch", "demo"],
        cwd=REPO,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_demo_runs_the_simulated_pipeline_and_sends_one_message(tmp_path: Path) -> None:
    result = run_demo(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "simulated organization" in out
    assert "month-to-date $430.00 = 86.0% of the $500.00 monthly budget" in out
    assert "Alerter posted 1 Slack message(s)" in out
    assert "80.0% of the monthly budget reached" in out
    assert "0 new snapshot(s), 0 new message(s)" in out
    assert '"level"' not in out  # handler logs go to .demo/handlers.log, not the terminal
    # The digest function's run and the report page.
    assert "5. Digest: the digest function sent 1 daily digest(s)" in out
    assert "Daily OpenAI spend: Simulated Org (demo)" in out
    picture = re.search(r"gets as an upload; a webhook gets the sparkline\): (\S+\.png)", out)
    assert picture and (REPO / picture[1]).read_bytes().startswith(b"\x89PNG")
    report = re.search(r"6\. Report: .*: (\S+\.html)", out)
    assert report and "<svg" in Path(report[1]).read_text(encoding="utf-8")


@pytest.mark.parametrize(("budget_usd", "messages"), [("1000000", 0), ("100", 1)])
def test_demo_uses_real_keys_and_slack_when_given(
    tmp_path: Path, openai: FakeOpenAI, slack: FakeSlack, budget_usd: str, messages: int
) -> None:
    config = tmp_path / "spendwatch.yaml"
    config.write_text(
        "organizations:\n"
        f"  - {{id: mine, name: My Org, budget: {{monthly_usd: {budget_usd}}}, channels: [slack]}}\n"
        "channels:\n"
        "  slack: {type: slack}\n"
    )
    result = run_demo(
        tmp_path,
        OPENAI_ADMIN_KEY="sk-admin-integration-test-key-000",
        OPENAI_BASE_URL=openai.base_url,
        SPENDWATCH_CONFIG=str(config),
        SLACK_WEBHOOK_URL=slack.webhook_url,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"the real API at {openai.base_url}" in result.stdout
    assert "posting for real" in result.stdout
    assert "My Org: month-to-date $" in result.stdout
    assert any(r.path == "/v1/organization/costs" for r in openai.requests_log)
    assert len(slack.messages) == messages
    if messages == 0:
        assert "no threshold is crossed, so no message was sent" in result.stdout
    else:
        assert "alert(s) to your Slack channel" in result.stdout
    assert "sk-admin-integration-test-key-000" not in result.stdout + result.stderr
