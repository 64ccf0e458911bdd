from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

from spendwatch.decide import Reason
from spendwatch.render import SECTION_LIMIT, Alert, build_message, escape
from spendwatch.rules import Observation
from spendwatch.snapshot import DailyCost, Snapshot

WHEN = datetime(2026, 11, 21, 23, tzinfo=UTC)


def budget_alert(level: str = "80") -> Alert:
    facts: dict[str, Decimal | str] = {
        "spent_usd": Decimal("430.125"),
        "budget_usd": Decimal(500),
        "percent": Decimal("86.025"),
        "period": "2026-11",
    }
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
