"""`spendwatch poll` as a subprocess against the local OpenAI server, with no AWS at all: stdout carries
exactly one JSON document (exact decimal amounts), logs stay on stderr, and the exit status says whether
anything could be collected."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from spendwatch.core.money import format_usd
from spendwatch.devtools.fake_openai import FakeOpenAI
from spendwatch.devtools.simulated_org import ADMIN_KEY_ID, SimulatedOrg
from spendwatch.poller.collect import SOURCE_ORDER
from spendwatch.poller.openai_api import ADMIN_KEY_REJECTED, SESSION_KEY_REJECTED

ADMIN_KEY = "sk-admin-cli-test-key-000000000000"
SESSION_KEY = "sess-cli-test-000000000"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAI]:
    # The CLI polls "now", so the simulated organization lives in the real present.
    with FakeOpenAI(SimulatedOrg.default(datetime.now(UTC)), admin_key=ADMIN_KEY, session_key=SESSION_KEY) as fake:
        yield fake


def run_poll(
    tmp_path: Path, server: FakeOpenAI, *args: str, **env: str
) -> tuple[subprocess.CompletedProcess[str], Any]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "SPENDWATCH_", "AWS_"))}
    environ |= {"OPENAI_BASE_URL": server.base_url, "OPENAI_ADMIN_KEY": ADMIN_KEY, **env}
    environ = {k: v for k, v in environ.items() if v}
    done = subprocess.run(
        [sys.executable, "-m", "spendwatch", "poll", *args],
        cwd=tmp_path,  # no config/spendwatch.yaml here: the environment describes the organization
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    document = json.loads(done.stdout) if "--json" in args and done.stdout else None
    return done, document


def test_poll_cli_json_is_one_document_with_exact_amounts(tmp_path: Path, server: FakeOpenAI) -> None:
    done, snapshot = run_poll(tmp_path, server, "--json", OPENAI_SESSION_KEY=SESSION_KEY)
    assert done.returncode == 0, done.stderr
    assert isinstance(snapshot, dict)
    assert snapshot["org_id"] == "default"
    assert snapshot["month_to_date_usd"] == str(server.org.month_to_date_usd())
    assert Decimal(snapshot["month_to_date_usd"]) == sum(
        Decimal(d["amount_usd"]) for d in snapshot["daily_costs_usd"] if d["day"][:7] == snapshot["period"]
    )
    assert all(isinstance(d["amount_usd"], str) for d in snapshot["daily_costs_usd"]), "amounts are exact strings"
    skipped = {"admin_key"}  # no admin key id in an environment-only setup
    assert set(snapshot["sources_ok"]) == set(SOURCE_ORDER) - skipped
    assert snapshot["failures"] == []
    assert Decimal(snapshot["credit_summary"]["total_available_usd"]) == server.org.credit_totals().total_available
    assert ADMIN_KEY not in done.stdout + done.stderr


def test_poll_cli_failed_sources_are_listed_and_exit_zero(tmp_path: Path, server: FakeOpenAI) -> None:
    done, snapshot = run_poll(tmp_path, server, "--json", OPENAI_SESSION_KEY="sess-expired-0000")
    assert done.returncode == 0
    assert snapshot["conditions"] == [SESSION_KEY_REJECTED]
    assert [f["source"] for f in snapshot["failures"]] == ["credit_grants", "subscription"]
    assert "failed [key] session key expired or rejected (401)" in done.stderr
    assert "credit_grants, subscription" in done.stderr


def test_poll_cli_nothing_collected_exits_non_zero_with_the_reasons(tmp_path: Path, server: FakeOpenAI) -> None:
    done, snapshot = run_poll(tmp_path, server, "--json", OPENAI_ADMIN_KEY="sk-admin-revoked-000000000")
    assert done.returncode == 1
    assert snapshot["sources_ok"] == []
    assert snapshot["conditions"] == [ADMIN_KEY_REJECTED]
    assert "admin key rejected" in done.stderr
    assert "sk-admin-revoked" not in done.stdout + done.stderr


def test_poll_cli_several_orgs_print_a_list_and_one_can_be_chosen(tmp_path: Path, server: FakeOpenAI) -> None:
    config = tmp_path / "spendwatch.yaml"
    config.write_text(
        "organizations:\n"
        f"  - {{id: main, name: Main, admin_key_id: {ADMIN_KEY_ID}}}\n"
        "  - {id: side, name: Side, admin_key: {parameter: /spendwatch/side/key, env: SIDE_ADMIN_KEY}}\n",
        encoding="utf-8",
    )
    done, docs = run_poll(tmp_path, server, "--json", SPENDWATCH_CONFIG=str(config), SIDE_ADMIN_KEY=ADMIN_KEY)
    assert done.returncode == 0, done.stderr
    assert [d["org_id"] for d in docs] == ["main", "side"]
    assert "admin_key" in docs[0]["sources_ok"]
    assert docs[0]["admin_key_expires_at"] is not None
    done, one = run_poll(tmp_path, server, "--json", "--org", "side", SPENDWATCH_CONFIG=str(config))
    assert done.returncode == 1, "side's key variable is not set: nothing collected"
    assert one["org_id"] == "side"
    assert "SIDE_ADMIN_KEY" in done.stderr


def test_poll_cli_bad_config_or_unknown_org_exits_2_with_empty_stdout(tmp_path: Path, server: FakeOpenAI) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("organizations: [{id: Bad Id, name: x}]\n", encoding="utf-8")
    done, _ = run_poll(tmp_path, server, "--json", SPENDWATCH_CONFIG=str(config))
    assert (done.returncode, done.stdout) == (2, "")
    assert "organizations[0].id" in done.stderr
    done, _ = run_poll(tmp_path, server, "--json", "--org", "nope")
    assert (done.returncode, done.stdout) == (2, "")


def test_poll_cli_text_summary(tmp_path: Path, server: FakeOpenAI) -> None:
    done, _ = run_poll(tmp_path, server)
    assert done.returncode == 0
    assert f"month-to-date {format_usd(server.org.month_to_date_usd())}" in done.stdout
    assert "hard limit, organization (admin_api): $600.00" in done.stdout
