from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from spendwatch.alerter.render import (
    BLOCK_TEXT_BUDGET,
    FIELD_LIMIT,
    MAX_BLOCKS,
    SECTION_LIMIT,
    TEXT_LIMIT,
    build_message,
    describe,
    escape,
    render_email,
    sparkline,
    visible_alerts,
)
from spendwatch.core.alerts import Alert, Observation, Reason
from spendwatch.core.config import parse_config
from spendwatch.core.snapshot import CostShare, CreditSummary, DailyCost, Snapshot, SpendLimit

WHEN = datetime(2026, 11, 21, 23, tzinfo=UTC)


BUDGET_FACTS: dict[str, Decimal | str] = {
    "spent_usd": Decimal("430.125"),
    "budget_usd": Decimal(500),
    "percent": Decimal("86.025"),
    "period": "2026-11",
}


def budget_alert(level: str = "80") -> Alert:
    facts = dict(BUDGET_FACTS)
    return Alert(
        Observation("budget.actual", "k", Decimal(level), "Monthly budget", facts),
        Reason.FIRST_CROSSING,
        Decimal(level),
    )


def snapshot(name: str = "Acme") -> Snapshot:
    return Snapshot(
        org_id="acme",
        org_name=name,
        poll_time=WHEN,
        collected_at=WHEN,
        month_to_date_usd=Decimal("430.125"),
        daily_costs_usd=(DailyCost(day=date(2026, 11, 21), amount_usd=Decimal("20")),),
    )


def test_render_budget_message_states_figures_and_freshness() -> None:
    message = build_message(snapshot(), [budget_alert()])
    assert "80.0% of the monthly budget reached: $430.13 of $500.00 spent (86.0%) in 2026-11" in message.text
    assert "cost data through 2026-11-21" in message.text
    assert message.blocks[0]["type"] == "header"


def test_render_escapes_untrusted_names_so_nothing_pings_or_links() -> None:
    hostile = "<!channel> & <https://evil.example|Pay now>"
    message = build_message(snapshot(hostile), [budget_alert()])
    payload = json.dumps({"text": message.text, "blocks": list(message.blocks)})
    assert "&lt;!channel&gt; &amp; &lt;https://evil.example|Pay now&gt;" in payload
    assert "<!channel>" not in payload
    assert "<https://evil" not in payload


def test_render_configured_mention_appears_exactly_once_in_text() -> None:
    message = build_message(snapshot(), [budget_alert()], mention="<!here>")
    assert message.text.count("<!here>") == 1


def test_render_sections_stay_within_slack_limits() -> None:
    many = [budget_alert(str(level)) for level in range(1, 400)]
    message = build_message(snapshot("x" * 5000), many)
    for block in message.blocks:
        text = block.get("text", {}).get("text", "")
        assert len(text) <= SECTION_LIMIT
    assert "(truncated)" in message.blocks[1]["text"]["text"]


def test_escape_only_touches_control_characters() -> None:
    assert escape("a&b<c>d \"'") == "a&amp;b&lt;c&gt;d \"'"


# --- the full message: figures, trend, top spenders, every rule's wording, limits, e-mail ----------------

HOSTILE = "<!channel> & <https://evil.example|Pay now>"
ORG = parse_config("organizations:\n  - {id: acme, name: Acme, budget: {monthly_usd: 500}}\n", "t.yaml").organizations[
    0
]
D = Decimal


def rich_snapshot(name: str = "Acme", *, projects: int = 7) -> Snapshot:
    days = tuple(DailyCost(day=date(2026, 11, d), amount_usd=D(d % 7 + 10)) for d in range(1, 22))
    return Snapshot(
        org_id="acme",
        org_name=name,
        poll_time=WHEN,
        collected_at=WHEN,
        month_to_date_usd=sum((d.amount_usd for d in days), D(0)),
        daily_costs_usd=days,
        previous_month_usd=D("401.5"),
        costs_by_project_usd=tuple(
            CostShare(key=f"proj_{i}", name=f"{HOSTILE} {i}", amount_usd=D(100 - i)) for i in range(projects)
        ),
        costs_by_line_item_usd=(CostShare(key=f"{HOSTILE} line", amount_usd=D(42)),),
        spend_limits=(SpendLimit(scope="organization", threshold_cents=100000),),
        credit_summary=CreditSummary(total_granted_usd=D(100), total_used_usd=D(40), total_available_usd=D(60)),
    )


def alert(
    rule_id: str,
    level: str | None,
    *,
    reason: Reason = Reason.FIRST_CROSSING,
    facts: dict[str, Decimal | str] | None = None,
    **more: Decimal | str,
) -> Alert:
    value = None if level is None else D(level)
    return Alert(Observation(rule_id, f"{rule_id}#k", value, rule_id, {**(facts or {}), **more}), reason, value)


GRANT_FACTS: dict[str, Decimal | str] = {
    "grant_id": "grant_1",
    "remaining_usd": D(60),
    "grant_usd": D(100),
    "expires_at": "2026-11-26T23:00:00Z",
    "days_left": D("4.6"),
    "source": "session_key",
}
WORDING = [
    (
        alert("budget.actual", "80", facts=BUDGET_FACTS, scope="project", scope_name="R&D"),
        'Project "R&D": 80.0% of its monthly budget reached: $430.13 of $500.00 spent (86.0%) in 2026-11',
    ),
    (
        alert("budget.actual", None, reason=Reason.RESOLVED, facts=BUDGET_FACTS),
        "Back under the monthly budget's thresholds: $430.13 of $500.00 spent (86.0%) in 2026-11",
    ),
    (
        alert("budget.actual", "80", reason=Reason.REPEAT_DUE, facts=BUDGET_FACTS),
        "Still: 80.0% of the monthly budget reached",
    ),
    (
        alert(
            "budget.forecast",
            "100",
            forecast_usd=D(600),
            spent_usd=D(405),
            budget_usd=D(500),
            percent=D(120),
            run_rate_usd=D(20),
            complete_days=D(20),
            period="2026-11",
            scope="organization",
        ),
        "Forecast over 100.0% of the budget: $600.00 projected for 2026-11 = 120.0% of the $500.00 budget "
        "(run rate $20.00/day over 20 complete days)",
    ),
    (
        alert(
            "hard_limit",
            "90",
            reason=Reason.REPEAT_DUE,
            spent_usd=D(950),
            limit_usd=D(1000),
            percent=D(95),
            limit_source="admin_api",
            period="2026-11",
        ),
        "Still: 90.0% of the hard limit reached: $950.00 of the $1,000.00 hard limit spent (95.0%) in 2026-11; "
        "limit from admin_api",
    ),
    (
        alert("grant.expiry", "7", facts=GRANT_FACTS),
        'Credit grant "grant_1" expires in 5 days (2026-11-26): $60.00 of $100.00 unused will be lost',
    ),
    (alert("low_balance", "1", balance_usd=D(60), min_usd=D(100)), "Prepaid balance $60.00 is under $100.00"),
    (
        alert(
            "low_balance.runway", "1", balance_usd=D(60), burn_rate_usd=D(20), runway_days=D(3), min_runway_days=D(7)
        ),
        "Prepaid balance running out: $60.00 lasts about 3 days at $20.00/day (alerts under 7 days)",
    ),
    (
        alert(
            "spike",
            "3",
            day="2026-11-21",
            amount_usd=D(90),
            baseline_usd=D(20),
            ratio=D("4.5"),
            baseline_days=D(7),
            partial="yes",
        ),
        "Spend spike: $90.00 on 2026-11-21 (so far), 4.5x the median $20.00/day of the 7 settled days before",
    ),
    (
        alert("health.source", "1", source="costs", kind="auth", detail="401 invalid_api_key", failing_polls=D(3)),
        'Data source "costs" failed 3 polls in a row (auth): 401 invalid_api_key',
    ),
    (alert("health.source", None, reason=Reason.RESOLVED, source="costs"), 'Data source "costs" works again'),
    (alert("health.condition", "1", condition="session_key_rejected"), "The session key was rejected"),
    (alert("health.condition", "1", condition="mystery"), "Monitor condition: mystery"),
    (
        alert("health.admin_key", "1", expires_at="2026-11-24T00:00:00Z", days_left=D("2.04")),
        "The OpenAI admin key expires in 2 days (2026-11-24)",
    ),
    (
        alert("health.admin_key", "1", expires_at="2026-11-20T00:00:00Z", days_left=D("-1.9")),
        "The OpenAI admin key expired on 2026-11-20",
    ),
]


@pytest.mark.parametrize(("item", "expected"), WORDING, ids=[a.observation.rule_id for a, _ in WORDING])
def test_render_describe_states_each_rule_with_its_figures(item: Alert, expected: str) -> None:
    assert expected in describe(item)


def test_render_message_has_figures_trend_top_spenders_and_the_usage_link() -> None:
    message = build_message(rich_snapshot(), [budget_alert()], org=ORG, now=WHEN + timedelta(minutes=7))
    kinds = [b["type"] for b in message.blocks]
    assert kinds == ["header", "section", "section", "section", "section", "section", "context"]
    fields = {f["text"].split("\n")[0]: f["text"].split("\n")[1] for f in message.blocks[2]["fields"]}
    assert fields["*Spent this month*"] == "$273.00 (2026-11)"
    assert fields["*Monthly budget*"] == "$500.00, 54.6% used"
    assert fields["*Forecast month-end*"].startswith("$")
    assert fields["*Days left in month*"] == "9.0"
    assert fields["*Hard limit*"] == "$1,000.00, 27.3% used"
    assert fields["*Prepaid balance*"] == "$60.00"
    trend = message.blocks[3]["text"]["text"]
    assert trend.count("`") == 2 and len(trend.split("`")[1]) == 21  # one bar per day
    top = message.blocks[4]["text"]["text"]
    assert top.count("\n• ") == 6 and "2 more: $189.00" in top  # top 5, then the rest
    assert "<https://platform.openai.com/usage|Open OpenAI usage>" in message.blocks[-1]["elements"][0]["text"]
    assert "(7 min before this message)" in message.text
    assert message.snapshot is not None and message.alerts == (budget_alert(),)


def test_render_every_untrusted_value_is_escaped_in_blocks_and_text() -> None:
    failing = alert("health.source", "1", source=HOSTILE, kind="auth", detail=HOSTILE, failing_polls=D(3))
    grant = alert("grant.expiry", "7", facts={**GRANT_FACTS, "grant_id": HOSTILE})
    message = build_message(rich_snapshot(HOSTILE), [budget_alert(), failing, grant], org=ORG, mention="<!here>")
    payload = json.dumps({"text": message.text, "blocks": list(message.blocks)}, ensure_ascii=False)
    assert "<!channel>" not in payload
    assert "<https://evil" not in payload
    assert payload.count("&lt;!channel&gt;") >= 8  # title, header, project rows, line item, grant, source, detail
    assert message.text.count("<!here>") == 1
    for block in message.blocks:
        for text in [block.get("text", {}), *block.get("fields", []), *block.get("elements", [])]:
            if text.get("type") == "mrkdwn":
                assert text["verbatim"] is True  # no automatic linking of URLs or @names


def test_render_stays_within_slack_limits_and_marks_truncation() -> None:
    long_name = "x" * 5000
    many = [
        alert("health.source", "1", source=f"{long_name}{i}", kind="auth", detail=long_name, failing_polls=D(9))
        for i in range(300)
    ]
    snapshot = rich_snapshot(long_name, projects=400)
    message = build_message(snapshot, many, org=ORG, mention="<!channel>")
    assert len(message.blocks) <= MAX_BLOCKS
    total = 0
    for block in message.blocks:
        texts = [block.get("text", {}).get("text", "")]
        texts += [f["text"] for f in block.get("fields", [])] + [e["text"] for e in block.get("elements", [])]
        assert all(len(t) <= SECTION_LIMIT for t in texts)
        assert all(len(f["text"]) <= FIELD_LIMIT for f in block.get("fields", []))
        assert len(block.get("fields", [])) <= 10
        total += sum(len(t) for t in texts)
    assert total <= BLOCK_TEXT_BUDGET
    assert len(message.blocks[0]["text"]["text"]) <= 150
    assert "(truncated)" in message.blocks[1]["text"]["text"]
    assert "more" in message.blocks[1]["text"]["text"]
    assert len(message.text) <= TEXT_LIMIT


def test_render_a_grants_lead_times_due_together_show_as_one_line() -> None:
    thirty = Alert(
        Observation("grant.expiry", "g#30d", D(30), "x", dict(GRANT_FACTS), collapse_key="g", urgency=-30),
        Reason.FIRST_CROSSING,
        D(30),
    )
    seven = Alert(
        Observation("grant.expiry", "g#7d", D(7), "x", dict(GRANT_FACTS), collapse_key="g", urgency=-7),
        Reason.FIRST_CROSSING,
        D(7),
    )
    assert visible_alerts([thirty, budget_alert(), seven]) == [budget_alert(), seven]
    message = build_message(snapshot(), [thirty, seven])
    assert len(message.lines) == 1


def test_render_title_says_resolved_when_everything_resolved() -> None:
    resolved = alert("health.source", None, reason=Reason.RESOLVED, source="costs")
    assert build_message(snapshot(), [resolved]).text.splitlines()[0] == "OpenAI spend alert resolved: Acme"
    assert build_message(snapshot(), [resolved, budget_alert()]).text.splitlines()[0] == "OpenAI spend alert: Acme"


@pytest.mark.parametrize(
    ("values", "line"),
    [([], ""), ([D(0), D(0)], "▁▁"), ([D(0), D(5), D(10)], "▁▅█"), ([D(3), D(3)], "██"), ([D(1), D(7)], "▂█")],
)
def test_render_sparkline(values: list[Decimal], line: str) -> None:
    assert sparkline(values) == line


def test_render_email_has_the_same_content_escaped_for_html() -> None:
    email = render_email(rich_snapshot(f"Evil\r\nBcc: x@y.z {HOSTILE}"), [budget_alert(), budget_alert("100")], org=ORG)
    assert "\n" not in email.subject and "\r" not in email.subject
    assert email.subject.startswith("[spendwatch] Evil Bcc: x@y.z")
    assert email.subject.endswith("(+1 more)")
    assert "80.0% of the monthly budget reached: $430.13 of $500.00 spent (86.0%) in 2026-11" in email.text
    assert "80.0% of the monthly budget reached: $430.13 of $500.00 spent (86.0%) in 2026-11" in email.html
    assert "https://platform.openai.com/usage" in email.text
    assert '<a href="https://platform.openai.com/usage">' in email.html
    assert "<!channel>" not in email.html
    assert "&lt;!channel&gt; &amp; &lt;https://evil.example|Pay now&gt;" in email.html
    assert "<https://evil" not in email.html
    assert "cost data through 2026-11-21" in email.text


def test_render_email_subject_prefix_is_configurable() -> None:
    email = render_email(snapshot(), [budget_alert()], subject_prefix="[openai-spend]")
    assert email.subject.startswith("[openai-spend] Acme: 80.0% of the monthly budget reached")
