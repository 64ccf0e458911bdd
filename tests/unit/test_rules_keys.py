"""Rules about who is spending: a budget per API key (by id or by name) on the organization's ladder, a
spike per key and per project, the opt-in first-spend alert; and their once-per-state-change delivery."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from spendwatch.alerter.rules import budget_actual, evaluate, first_spend, key_spend, scoped_spikes
from spendwatch.core.errors import ConfigError
from spendwatch.core.snapshot import ApiKeyCost, DailyShare, ProjectInfo, Snapshot

from .test_alerting import MemoryStates, Senders, config, run
from .test_rules import WHEN, levels, org, snap

MASK = "\u2217" * 4
"""`****` as messages show it: the renderer turns `*` into U+2217 so Slack never reads a name as bold."""
OK = ("costs", "costs_by_api_key", "api_keys", "service_accounts", "users")


def key(key_id: str, amount: str, *, name: str | None = None, daily: tuple[str, ...] = (), **fields: Any) -> ApiKeyCost:
    return ApiKeyCost(
        key=key_id,
        name=name,
        amount_usd=Decimal(amount),
        daily_usd=tuple(Decimal(d) for d in daily),
        **fields,
    )


def keyed(*keys: ApiKeyCost, ok: tuple[str, ...] = OK, mtd: str = "100", **fields: Any) -> Snapshot:
    return snap(mtd, costs_by_api_key_usd=keys, sources_ok=ok, **fields)


KEY_BUDGETS = """
budget:
  api_keys:
    - {id: key_chat, monthly_usd: 100, thresholds_percent: [50, 80, 100]}
    - {name: Batch jobs, monthly_usd: 40, thresholds_usd: [20, 40]}
"""


@pytest.mark.parametrize(
    ("chat", "batch", "expected"),
    [
        ("49.99", "19.99", {"id:key_chat": None, "name:Batch jobs": None}),
        ("50", "20", {"id:key_chat": Decimal(50), "name:Batch jobs": Decimal(50)}),
        ("100.01", "40", {"id:key_chat": Decimal(100), "name:Batch jobs": Decimal(100)}),
    ],
)
def test_budget_actual_per_api_key_by_id_and_by_name_climbs_the_ladder(
    chat: str, batch: str, expected: dict[str, Decimal | None]
) -> None:
    half = str(Decimal(batch) / 2)
    snapshot = keyed(
        key("key_chat", chat, name="Chat backend", redacted_value="sk-proj-****abcd"),
        key("key_b1", half, name="Batch jobs"),
        key("key_b2", half, name="Batch jobs"),  # names are not unique: a name budget sums every such key
    )
    observed = levels(budget_actual(snapshot, org(KEY_BUDGETS)))
    assert {k: observed[f"budget.actual#api_key:{k}#2026-11"] for k in expected} == expected
    [chat_obs] = [o for o in budget_actual(snapshot, org(KEY_BUDGETS)) if "key_chat" in o.key]
    assert chat_obs.facts["scope"] == "API key"
    assert chat_obs.facts["scope_name"] == "Chat backend (sk-proj-****abcd)"


def test_key_spend_is_unknown_rather_than_zero_when_this_poll_cannot_say() -> None:
    budgets = org(KEY_BUDGETS).rules.budget.api_keys
    by_id, by_name = budgets
    failed = keyed(key("key_chat", "90"), ok=("costs",))
    assert key_spend(failed, by_id) is None, "by-key costs failed: neither raise nor clear"
    no_names = keyed(key("key_chat", "90"), key("key_b1", "30"), ok=("costs", "costs_by_api_key"))
    assert key_spend(no_names, by_id) == (Decimal(90), "key_chat")
    assert key_spend(no_names, by_name) is None, "a name budget needs the names"
    capped = keyed(key("key_x", "90"), key("(other)", "10", name="3 more API keys"))
    assert key_spend(capped, by_id) is None, "the key may be among the three summed into (other)"
    quiet = keyed(key("key_x", "90"))
    assert key_spend(quiet, by_id) == (Decimal(0), "key_chat"), "every key listed: it spent nothing"
    assert not [o for o in budget_actual(failed, org(KEY_BUDGETS)) if "api_key" in o.key]


def test_budget_per_api_key_is_measured_even_when_the_org_costs_failed() -> None:
    snapshot = keyed(key("key_chat", "85"), ok=("costs_by_api_key",)).model_copy(update={"month_to_date_usd": None})
    assert levels(budget_actual(snapshot, org(KEY_BUDGETS)))["budget.actual#api_key:id:key_chat#2026-11"] == 80


def test_config_api_key_budget_needs_exactly_one_of_id_and_name() -> None:
    for entry in ("{monthly_usd: 10}", "{id: key_a, name: A, monthly_usd: 10}"):
        with pytest.raises(ConfigError, match="id or its name"):
            org(f"budget:\n  api_keys: [{entry}]")
    with pytest.raises(ConfigError, match="API key budgets"):
        org("budget:\n  api_keys: [{id: key_a, monthly_usd: 10}, {id: key_a, monthly_usd: 20}]")


# --- spikes -------------------------------------------------------------------------------------------

SETTLED = ("10",) * 18  # the 1st..18th; the 19th is the last settled day at WHEN (the 21st)


def test_scoped_spikes_per_key_and_per_project_against_their_own_baseline() -> None:
    days = (*SETTLED, "10", "35", "5")  # the 20th (yesterday) at 3.5x the median of 10
    snapshot = keyed(
        key("key_chat", "220", name="Chat", daily=days),
        key("key_calm", "210", daily=("10",) * 21),
        key("(other)", "1", name="2 more API keys", daily=("1",) + ("0",) * 20),
        daily_costs_by_project_usd=(DailyShare(key="proj_a", amount_usd=Decimal(220), daily_usd=days),),
        projects=(ProjectInfo(id="proj_a", name="Chatbot"),),
    )
    rules = org("spike: {api_keys: true, projects: true}")
    observed = levels(scoped_spikes(snapshot, rules))
    assert observed["spike#api_key:key_chat#2026-11-20"] == Decimal(3)
    assert observed["spike#api_key:key_chat#2026-11-21"] is None
    assert observed["spike#project:proj_a#2026-11-20"] == Decimal(3)
    assert observed["spike#api_key:key_calm#2026-11-20"] is None
    assert not [k for k in observed if "(other)" in k]
    [project] = [o for o in scoped_spikes(snapshot, rules) if o.key == "spike#project:proj_a#2026-11-20"]
    assert (project.facts["scope"], project.facts["scope_name"]) == ("project", "Chatbot")
    assert scoped_spikes(snapshot, org()) == [], "opt-in"
    assert scoped_spikes(snapshot.model_copy(update={"sources_ok": ("costs",)}), rules) == []


def test_scoped_spikes_need_three_settled_days_of_this_month() -> None:
    early = datetime(2026, 11, 4, 12, tzinfo=UTC)
    snapshot = snap("40", when=early, costs_by_api_key_usd=(key("key_a", "40", daily=("1", "1", "30", "8")),))
    snapshot = snapshot.model_copy(update={"sources_ok": OK})
    assert scoped_spikes(snapshot, org("spike: {api_keys: true}")) == []


# --- first spend ----------------------------------------------------------------------------------------


def test_first_spend_announces_young_keys_that_spend_only() -> None:
    young, old = WHEN - timedelta(days=3), WHEN - timedelta(days=90)
    snapshot = keyed(
        key("key_new", "2.5", name="New", created_at=young, owner_name="Ada", owner_id="u1", project_id="proj_a"),
        key("key_idle", "0", created_at=young),
        key("key_old", "50", created_at=old),
        key("key_gone", "5"),  # deleted: no creation time, never announced
        projects=(ProjectInfo(id="proj_a", name="Chatbot"),),
    )
    rules = org("first_spend: {enabled: true, new_key_days: 30}")
    [observation] = first_spend(snapshot, rules)
    assert (observation.key, observation.level) == ("first_spend#api_key:key_new", Decimal(1))
    assert (observation.facts["owner"], observation.facts["project"]) == ("Ada", "Chatbot")
    assert not [o for o in evaluate(snapshot, org()) if o.rule_id == "first_spend"], "off unless enabled"


def test_alerting_first_spend_is_one_message_per_key_ever() -> None:
    states, senders = MemoryStates(), Senders()
    cfg = config(rules="      first_spend: {enabled: true}\n      budget: {enabled: false}")
    created = WHEN - timedelta(days=1)
    first = key("key_new", "1.25", name="New key", redacted_value="sk-proj-****wxyz", created_at=created)

    def poll(hours: int, amount: str) -> Snapshot:
        later = WHEN + timedelta(hours=hours)
        snapshot = snap_at(later, first.model_copy(update={"amount_usd": Decimal(amount)}))
        run(snapshot, states, senders, cfg)
        return snapshot

    poll(0, "1.25")
    poll(1, "9.75")
    poll(2, "30")
    [message] = senders.messages()
    assert f'New API key spending: "New key (sk-proj-{MASK}wxyz)"' in message.text
    assert "$1.25" in message.text


def test_alerting_key_budget_message_names_the_key_once_per_threshold() -> None:
    states, senders = MemoryStates(), Senders()
    rules = "      budget:\n        api_keys: [{id: key_chat, monthly_usd: 100}]"
    cfg = config(rules=rules)
    chat = key("key_chat", "55", name="Chat backend", redacted_value="sk-proj-****abcd")
    run(snap_at(WHEN, chat, mtd="60"), states, senders, cfg)
    run(
        snap_at(WHEN + timedelta(hours=1), chat.model_copy(update={"amount_usd": Decimal(56)}), mtd="61"),
        states,
        senders,
        cfg,
    )
    run(
        snap_at(WHEN + timedelta(hours=2), chat.model_copy(update={"amount_usd": Decimal(81)}), mtd="90"),
        states,
        senders,
        cfg,
    )
    texts = [m.text for m in senders.messages()]
    assert len(texts) == 2
    assert f'API key "Chat backend (sk-proj-{MASK}abcd)": 50.0% of its monthly budget reached' in texts[0]
    assert f'API key "Chat backend (sk-proj-{MASK}abcd)": 80.0% of its monthly budget reached' in texts[1]


def snap_at(when: datetime, *keys: ApiKeyCost, mtd: str = "100") -> Snapshot:
    return Snapshot(
        org_id="acme",
        org_name="Acme",
        poll_time=when,
        collected_at=when,
        month_to_date_usd=Decimal(mtd),
        costs_by_api_key_usd=keys,
        sources_ok=OK,
    )
