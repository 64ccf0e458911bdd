"""Who is spending, in what people read: the top API keys (named, with owner) in alert messages (Slack,
e-mail), the digest's ranked table of keys by the period's spend, and the report page's table."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

from spendwatch.alerter.render import build_message, render_email
from spendwatch.core.config import OrganizationConfig
from spendwatch.core.snapshot import (
    ApiKeyCost,
    ProjectInfo,
    RateLimitInfo,
    Snapshot,
    SourceFailure,
    UsageAttribution,
)
from spendwatch.devtools.snapshot_series import PROJECTS, SeriesOrg
from spendwatch.digest.compose import build_digest
from spendwatch.digest.render import digest_content
from spendwatch.digest.schedule import due_period
from spendwatch.views.history import MemoryHistory
from spendwatch.views.report import OrgReport, render_report

from .test_digest import CENT, NOW, cents, day, hourly, org, series  # noqa: F401 - fixtures
from .test_render import budget_alert, snapshot

MASK = "\u2217" * 4
"""`****` as messages show it (the renderer keeps Slack from reading a name as bold)."""


def keys_snapshot() -> Snapshot:
    keys = (
        ApiKeyCost(
            key="key_chat",
            name="Chat backend",
            redacted_value="sk-proj-****abcd",
            owner_type="user",
            owner_id="user_1",
            owner_name="Ada",
            owner_left=True,
            project_id="proj_a",
            amount_usd=Decimal("300.125"),
        ),
        ApiKeyCost(key="key_gone", project_id="proj_a", amount_usd=Decimal("100")),
        ApiKeyCost(
            key="key_svc",
            owner_type="service_account",
            owner_id="svc_acct_9",
            project_id="proj_b",
            amount_usd=Decimal("30"),
            name="Batch",
            redacted_value="sk-svcacct-****wxyz",
        ),
    )
    return snapshot().model_copy(
        update={
            "costs_by_api_key_usd": keys,
            "sources_ok": ("costs", "costs_by_api_key", "api_keys"),
            "projects": (ProjectInfo(id="proj_a", name="Chatbot"), ProjectInfo(id="proj_b", name="Images")),
        }
    )


def test_alert_message_lists_the_top_api_keys_named_with_their_owner() -> None:
    message = build_message(keys_snapshot(), [budget_alert()])
    blocks = json.dumps(message.blocks, ensure_ascii=False)
    assert "*Top API keys this month*" in blocks
    assert f"Chat backend (sk-proj-{MASK}abcd), Ada (left the organization): $300.13 (69.8%)" in blocks
    assert "key_gone: $100.00" in blocks, "a deleted key is shown by its id"
    assert f"Batch (sk-svcacct-{MASK}wxyz), service account svc_acct_9: $30.00" in blocks
    email = render_email(keys_snapshot(), [budget_alert()])
    assert "Top API keys: Chat backend" in email.text
    assert "<h3>Top API keys</h3>" in email.html


def test_alert_message_without_key_costs_has_no_key_section() -> None:
    message = build_message(snapshot(), [budget_alert()])
    assert "Top API keys" not in json.dumps(message.blocks)


def with_keys(snap: Snapshot) -> Snapshot:
    """The series' snapshot with one API key per project carrying the project's month to date."""
    keys = tuple(
        ApiKeyCost(key=f"key_{s.key[-4:]}", name=f"Key of {s.key}", project_id=s.key, amount_usd=s.amount_usd)
        for s in snap.costs_by_project_usd
    )
    return snap.model_copy(
        update={"costs_by_api_key_usd": keys, "sources_ok": (*snap.sources_ok, "costs_by_api_key", "api_keys")}
    )


def test_digest_ranks_api_keys_by_the_days_spend(
    org: OrganizationConfig,  # noqa: F811 - fixture
    series: SeriesOrg,  # noqa: F811 - fixture
    hourly: list[Snapshot],  # noqa: F811 - fixture
) -> None:
    due = due_period(org.digests[0], NOW)
    digest = build_digest(org, due, MemoryHistory([with_keys(s) for s in hourly]), now=NOW, alerts_sent=0)
    yesterday = day("2026-11-20")
    rows = {row.key: row for row in digest.api_keys.rows}
    assert len(rows) == len(PROJECTS)
    for project, _, _ in PROJECTS:
        row = rows[f"key_{project[-4:]}"]
        assert row.name == f"Key of {project}"
        assert cents(row.current) == series.daily(project, yesterday).quantize(CENT), "growth between polls"
    content = digest_content(digest)
    [section] = [s for s in content.sections if s.heading.startswith("Top API keys")]
    assert section.lines[0].startswith("Key of ")


def test_digest_before_key_costs_existed_says_so_and_ranks_nothing_wrong(
    org: OrganizationConfig,  # noqa: F811 - fixture
    hourly: list[Snapshot],  # noqa: F811 - fixture
) -> None:
    due = due_period(org.digests[0], NOW)
    digest = build_digest(org, due, MemoryHistory(hourly), now=NOW, alerts_sent=0)
    assert digest.api_keys.rows == ()


def test_report_page_has_the_key_table_with_owner_project_and_unread_names() -> None:
    snap = keys_snapshot().model_copy(
        update={"failures": (SourceFailure(source="users", kind="unavailable", detail="server error 500"),)}
    )
    config = OrganizationConfig.model_validate({"id": "acme", "name": "Acme"})
    page = render_report(
        [OrgReport(config, MemoryHistory([snap]))], "2026-11", now=datetime(2026, 11, 22, tzinfo=UTC), source="t"
    )
    assert "Cost by API key, month to date" in page
    assert "Chat backend (sk-proj-****abcd)" in page and "Ada (left the organization)" in page
    assert "<td>key_gone</td>" in page and "Chatbot" in page
    assert "Names not read in the latest poll (users)" in page


def test_report_page_ranks_users_by_tokens_named_where_openai_lists_them() -> None:
    who = UsageAttribution(
        totals={"input_tokens": 30, "output_tokens": 3, "num_model_requests": 2},
        by_user={"user_1": {"input_tokens": 20}, "user_left": {"input_tokens": 10}},
        by_api_key={"key_chat": {"input_tokens": 30}},
        by_batch={"standard": {"input_tokens": 30}},
        by_service_tier={"flex": {"input_tokens": 30}},
        user_names={"user_1": "Ada"},
    )
    snap = keys_snapshot().model_copy(update={"completions_attribution": who})
    config = OrganizationConfig.model_validate({"id": "acme", "name": "Acme"})
    page = render_report(
        [OrgReport(config, MemoryHistory([snap]))], "2026-11", now=datetime(2026, 11, 22, tzinfo=UTC), source="t"
    )
    section = page.split("Completions by user and API key, month to date")[1]
    assert section.index("<td>Ada</td>") < section.index("<td>user_left</td>"), "by tokens, a user who left by id"
    assert "<td>Chat backend (sk-proj-****abcd)</td>" in section and "tier flex" in section


def test_report_page_lists_each_projects_rate_limits_of_the_models_in_use() -> None:
    limit = RateLimitInfo(
        scope="proj_a",
        model="gpt-4.1-mini",
        limits={"max_requests_per_1_minute": 5000, "max_tokens_per_1_minute": 2000000, "max_requests_per_1_day": 9},
    )
    snap = keys_snapshot().model_copy(update={"rate_limits": (limit,)})
    config = OrganizationConfig.model_validate({"id": "acme", "name": "Acme"})
    page = render_report(
        [OrgReport(config, MemoryHistory([snap]))], "2026-11", now=datetime(2026, 11, 22, tzinfo=UTC), source="t"
    )
    section = page.split("Rate limits of the models in use")[1]
    assert "<td>Chatbot</td><td>gpt-4.1-mini</td>" in section
    assert "5,000" in section and "2,000,000" in section and "max_requests_per_1_day 9" in section
