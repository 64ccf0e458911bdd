"""The `rules:` and `silences:` config: defaults, validation with file/field/problem errors, round trips."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from spendwatch.core.config import SpendwatchConfig, load_config_file, parse_config
from spendwatch.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]

BASE = """
organizations:
  - id: acme
    name: Acme
    budget: {monthly_usd: 500}
    rules:
RULES
channels: {}
"""


def with_rules(rules: str, extra: str = "") -> str:
    body = "\n".join(f"      {line}" for line in rules.strip().splitlines()) if rules.strip() else "      {}"
    return BASE.replace("RULES", body) + extra


def test_rules_config_defaults() -> None:
    rules = parse_config(with_rules(""), "t.yaml").organizations[0].rules
    assert (rules.budget.send_resolved, rules.budget.repeat_interval, rules.budget.resolve_margin_percent) == (
        False,
        timedelta(0),
        Decimal(5),
    )
    assert rules.forecast.thresholds_percent == (Decimal(100),)
    assert rules.forecast.min_days == 5
    assert (rules.hard_limit.percent, rules.hard_limit.repeat_interval, rules.hard_limit.send_resolved) == (
        Decimal(90),
        timedelta(hours=6),
        True,
    )
    assert rules.grant_expiry.lead_days == (30, 7, 1)
    assert (rules.low_balance.min_usd, rules.low_balance.min_runway_days) == (None, None)
    assert (rules.spike.factor, rules.spike.baseline_days, rules.spike.min_usd) == (Decimal(3), 7, Decimal(10))
    assert (rules.health.failing_polls, rules.health.admin_key_expiry_days) == (3, 14)
    assert rules.health.repeat_interval == timedelta(days=1)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", timedelta(minutes=30)),
        ("6h", timedelta(hours=6)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("2d", timedelta(days=2)),
        ("off", timedelta(0)),
        ("0", timedelta(0)),
        ("null", timedelta(0)),
    ],
)
def test_rules_config_repeat_interval_durations(text: str, expected: timedelta) -> None:
    config = parse_config(with_rules(f"hard_limit: {{repeat_interval: {text}}}"), "t.yaml")
    assert config.organizations[0].rules.hard_limit.repeat_interval == expected


def test_rules_config_usd_thresholds_alone_replace_the_default_percentages() -> None:
    text = BASE.replace("budget: {monthly_usd: 500}", "budget: {monthly_usd: 500, thresholds_usd: [400, 100]}")
    budget = parse_config(text.replace("RULES", "      {}"), "t.yaml").organizations[0].budget
    assert budget is not None
    assert budget.thresholds_percent == ()
    assert budget.thresholds_usd == (Decimal(100), Decimal(400))


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ("budgt: {}", "organizations[0].rules.budgt: unknown field 'budgt' (did you mean 'budget'?)"),
        ("budget: {resolve_margin_percent: 100}", "rules.budget.resolve_margin_percent: must be less than 100"),
        (
            "budget: {projects: [{id: p, monthly_usd: 5}, {id: p, monthly_usd: 6}]}",
            "organizations[0].rules.budget: project budget ids must be unique",
        ),
        (
            "budget: {line_items: [{name: a, monthly_usd: 5}, {name: a, monthly_usd: 6}]}",
            "line item budget names must be unique",
        ),
        (
            "budget: {projects: [{id: p, monthly_usd: 5, thresholds_percent: [80, 80]}]}",
            "rules.budget.projects[0].thresholds_percent: thresholds must be unique",
        ),
        ("budget: {projects: [{monthly_usd: 5}]}", "rules.budget.projects[0].id: is required but missing"),
        ("forecast: {thresholds_percent: [100, 100]}", "rules.forecast.thresholds_percent: thresholds"),
        ("forecast: {thresholds_percent: []}", "at least one threshold is needed"),
        ("forecast: {min_days: 0}", "rules.forecast.min_days: must be at least 1"),
        ("hard_limit: {percent: 120}", "rules.hard_limit.percent: must be at most 100"),
        ("hard_limit: {repeat_interval: 6 hours}", "rules.hard_limit.repeat_interval: '6 hours' is not"),
        ("hard_limit: {repeat_interval: 6}", "a duration needs a unit, such as 30m, 6h or 1d"),
        ("hard_limit: {repeat_interval: 5m}", "5m is outside 10m..90d"),
        ("hard_limit: {repeat_interval: 91d}", "91d is outside 10m..90d"),
        ("grant_expiry: {lead_days: [7, 7]}", "rules.grant_expiry.lead_days: lead days must be unique"),
        (
            "grant_expiry: {lead_days: [0]}",
            "rules.grant_expiry.lead_days[0]: must be at least 1",
        ),
        ("low_balance: {min_usd: 0}", "rules.low_balance.min_usd: must be more than 0"),
        (
            "low_balance: {min_runway_days: 400}",
            "rules.low_balance.min_runway_days: must be at most 365",
        ),
        ("spike: {factor: 1}", "rules.spike.factor: must be more than 1"),
        ("spike: {baseline_days: 2}", "rules.spike.baseline_days: must be at least 3"),
        ("health: {failing_polls: 0}", "rules.health.failing_polls: must be at least 1"),
        ("health: {enabled: maybe}", "rules.health.enabled: expected true or false, got the text 'maybe'"),
    ],
)
def test_rules_config_invalid_names_file_field_and_problem(rules: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(with_rules(rules), "config/bad.yaml")
    message = str(caught.value)
    assert message.startswith("invalid config config/bad.yaml:")
    assert expected in message


@pytest.mark.parametrize(
    ("budget", "expected"),
    [
        (
            "{monthly_usd: 500, thresholds_usd: [100, 100]}",
            "budget.thresholds_usd: thresholds must be unique",
        ),
        ("{monthly_usd: 500, thresholds_usd: [0]}", "budget.thresholds_usd[0]: must be more than 0"),
        ("{monthly_usd: 500, thresholds_usd: [5001]}", "exceed 10 x monthly_usd"),
        ("{monthly_usd: 500, thresholds_percent: []}", "organizations[0].budget: at least one threshold"),
    ],
)
def test_rules_config_invalid_budget_ladders(budget: str, expected: str) -> None:
    text = BASE.replace("budget: {monthly_usd: 500}", f"budget: {budget}").replace("RULES", "      {}")
    with pytest.raises(ConfigError, match=r"invalid config t\.yaml") as caught:
        parse_config(text, "t.yaml")
    assert expected in str(caught.value)


@pytest.mark.parametrize(
    ("silence", "until"),
    [
        ("{rule: spike, until: 2026-12-01}", datetime(2026, 12, 1, tzinfo=UTC)),
        ("{org: acme, until: 2026-12-01T09:30:00Z}", datetime(2026, 12, 1, 9, 30, tzinfo=UTC)),
        ("{org: acme, until: 2026-12-01 09:30:00}", datetime(2026, 12, 1, 9, 30, tzinfo=UTC)),  # no zone: UTC
        ("{org: acme, rule: budget, until: '2026-12-01T10:30:00+01:00'}", datetime(2026, 12, 1, 9, 30, tzinfo=UTC)),
    ],
)
def test_rules_config_silences_are_utc(silence: str, until: datetime) -> None:
    config = parse_config(with_rules("", f"silences:\n  - {silence}\n"), "t.yaml")
    assert config.silences[0].until == until
    assert config.silences[0].until.tzinfo == UTC


@pytest.mark.parametrize(
    ("silence", "expected"),
    [
        ("{until: 2026-12-01}", "silences[0]: a silence needs an org, a rule, or both"),
        ("{org: other, until: 2026-12-01}", "silences[0].org: unknown organization 'other' (known: acme)"),
        ("{rule: budjet, until: 2026-12-01}", "silences[0].rule: must be 'budget', 'forecast'"),
        ("{rule: spike}", "silences[0].until: is required but missing"),
        ("{rule: spike, until: next week}", "silences[0].until: 'next week' is not a time"),
        ("{rule: spike, until: 2026-12-01, reason: [x]}", "silences[0].reason: expected text, got a list"),
    ],
)
def test_rules_config_invalid_silences(silence: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(with_rules("", f"silences:\n  - {silence}\n"), "t.yaml")
    assert expected in str(caught.value)


def test_rules_config_round_trips_through_the_json_dump_the_demo_pushes() -> None:
    text = with_rules(
        """
budget: {send_resolved: true, projects: [{id: p, monthly_usd: 5, thresholds_usd: [4]}]}
hard_limit: {repeat_interval: 1d12h}
low_balance: {min_usd: 20, repeat_interval: off}
grant_expiry: {lead_days: [1, 60]}
""",
        "silences:\n  - {rule: spike, until: 2026-12-01, reason: load test}\n",
    )
    config = parse_config(text, "t.yaml")
    dumped = yaml.safe_dump(config.model_dump(mode="json", exclude_none=True), sort_keys=False)
    assert parse_config(dumped, "dump") == config
    assert config.organizations[0].rules.grant_expiry.lead_days == (60, 1)


def test_rules_config_shipped_example_is_valid_and_small() -> None:
    path = REPO / "config" / "spendwatch.yaml"
    assert isinstance(load_config_file(path), SpendwatchConfig)
    assert len(path.read_bytes()) < 4096  # a standard SSM parameter


def test_rules_config_shipped_commented_examples_are_valid_when_uncommented() -> None:
    lines = []
    for raw in (REPO / "config" / "spendwatch.yaml").read_text().splitlines():
        stripped = raw.lstrip()
        indent = raw[: len(raw) - len(stripped)]
        if stripped.startswith(("# rules:", "# silences:", "# thresholds_usd:")):
            lines.append(indent + stripped[2:])
        elif stripped.startswith("#   "):
            lines.append(indent + "  " + stripped[4:])
        else:
            lines.append(raw)
    config = parse_config("\n".join(lines), "uncommented")
    org = config.organizations[0]
    assert org.rules.low_balance.min_usd == Decimal(20)
    assert org.rules.budget.projects[0].id == "proj_abc123"
    assert config.silences[0].rule == "spike"


@pytest.mark.parametrize(
    ("mention", "valid"),
    [("<!here>", True), ("<@U0123ABC>", True), ("<!subteam^S0123>", True), ("<!channel> <!everyone>", False)],
)
def test_rules_config_slack_mention_is_one_whole_token(mention: str, valid: bool) -> None:
    text = f'organizations: [{{id: a, name: A}}]\nchannels:\n  s: {{type: slack, mention: "{mention}"}}\n'
    if valid:
        assert parse_config(text, "t.yaml").channels["s"].mention == mention  # type: ignore[union-attr]
    else:
        with pytest.raises(ConfigError, match=r"line 3: channels\.s\.mention: must be one whole Slack mention"):
            parse_config(text, "t.yaml")
