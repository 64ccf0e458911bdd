"""Routing alerts to channels by rule and severity, severities, and a channel's own `send_resolved`."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from spendwatch.core.alerts import Reason, severity_of
from spendwatch.core.config import SpendwatchConfig, parse_config
from spendwatch.core.errors import ConfigError
from spendwatch.core.snapshot import SpendLimit
from tests.unit.test_alerting import WHEN, MemoryStates, Senders, run, snap

PD = "R0UT1NGKEY0123456789abcdefABCDEF"


def routed_config(pd: str = "{type: pagerduty, rules: [hard_limit, budget], min_severity: error}") -> SpendwatchConfig:
    return parse_config(
        f"""
organizations:
  - id: acme
    name: Acme
    budget: {{monthly_usd: 500, thresholds_percent: [50, 80, 100]}}
    channels: [slack, pd]
    rules:
      forecast: {{enabled: false}}
      spike: {{enabled: false}}
channels:
  slack: {{type: slack}}
  pd: {pd}
""",
        "t.yaml",
    )


@pytest.mark.parametrize(
    ("rule", "level", "severity"),
    [
        ("budget.actual", Decimal(50), "warning"),
        ("budget.actual", Decimal(80), "warning"),
        ("budget.actual", Decimal(100), "error"),
        ("budget.actual", Decimal(150), "error"),
        ("budget.actual", None, "warning"),
        ("hard_limit", Decimal(100), "critical"),
        ("budget.forecast", Decimal(100), "warning"),
        ("low_balance", Decimal(1), "error"),
        ("health.source", Decimal(1), "error"),
        ("spike", Decimal(1), "warning"),
        ("something.new", None, "warning"),
    ],
)
def test_severity_of_the_ladder_and_each_rule(rule: str, level: Decimal | None, severity: str) -> None:
    assert severity_of(rule, level) == severity


def test_routing_below_the_channels_severity_nothing_is_sent_or_recorded_there() -> None:
    states, senders = MemoryStates(), Senders()
    run(snap("430"), states, senders, routed_config())  # 86 %: a warning
    assert len(senders.messages("slack")) == 1
    assert senders.messages("pd") == []
    assert ("acme", "budget.actual#org#2026-11#pd") not in states.items


def test_routing_pagerduty_gets_the_budget_at_100_and_its_resolve_although_budgets_do_not_send_resolved() -> None:
    states, senders = MemoryStates(), Senders()
    cfg = routed_config()
    run(snap("430"), states, senders, cfg)
    run(snap("510", when=WHEN + timedelta(hours=1)), states, senders, cfg)  # 102 %: an error
    [trigger] = senders.messages("pd")
    assert [(a.observation.rule_id, a.reason, a.level) for a in trigger.alerts] == [
        ("budget.actual", Reason.FIRST_CROSSING, Decimal(100))  # the first this channel hears of it
    ]
    # Slack follows the budget rule (no resolves); PagerDuty's own send_resolved closes its incident.
    outcome = run(snap("100", when=WHEN + timedelta(hours=2)), states, senders, cfg)
    assert len(senders.messages("slack")) == 2
    resolve = senders.messages("pd")[1]
    assert [(a.reason, a.level) for a in resolve.alerts] == [(Reason.RESOLVED, None)]
    assert ("slack", Reason.RESOLVED) in [(c, a.reason) for c, a in outcome.recorded]


def test_routing_by_rule_keeps_other_rules_off_the_channel() -> None:
    states, senders = MemoryStates(), Senders()
    cfg = routed_config("{type: pagerduty, rules: [hard_limit]}")
    limit = (SpendLimit(scope="organization", threshold_cents=50000),)
    run(snap("510", spend_limits=limit), states, senders, cfg)
    [message] = senders.messages("pd")
    assert [a.observation.rule_id for a in message.alerts] == ["hard_limit"]
    assert {a.observation.rule_id for a in senders.messages("slack")[0].alerts} == {"budget.actual", "hard_limit"}


def test_routing_a_channels_send_resolved_false_overrides_a_rule_that_sends_them() -> None:
    states, senders = MemoryStates(), Senders()
    cfg = routed_config("{type: pagerduty, send_resolved: false}")
    limit = (SpendLimit(scope="organization", threshold_cents=50000),)
    run(snap("510", spend_limits=limit), states, senders, cfg)
    # the hard limit rule sends resolves by default; this channel says no
    run(snap("100", when=WHEN + timedelta(hours=1)), states, senders, cfg)
    assert len(senders.messages("pd")) == 1


@pytest.mark.parametrize(
    ("channel", "problem"),
    [
        ("{type: pagerduty, rules: [hardlimit]}", "(did you mean 'hard_limit'?)"),
        ("{type: pagerduty, min_severity: critcal}", "(did you mean 'critical'?)"),
        ("{type: pagerduty, rules: [budget, budget]}", "unique"),
        ("{type: webhook, url: 'http://example.com/hook'}", "does not start with https://"),
        ("{type: webhook, url: 'https://example.com/hook', headers: {X-Spendwatch-Signature: x}}", "set by spendwatch"),
        ("{type: webhook, url: 'https://example.com/hook', headers: {'Content-Type': x}}", "set by spendwatch"),
        ('{type: webhook, url: "https://example.com/hook", headers: {A: "x\\ny"}}', "pd.headers.A"),
        ("{type: pagerdoody}", "type must be one of"),
    ],
)
def test_routing_config_mistakes_are_named_with_their_fix(channel: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        routed_config(channel)
    assert problem in str(caught.value)


def test_routing_config_accepts_every_new_channel_with_defaults() -> None:
    cfg = routed_config("{type: webhook, url: 'https://hooks.example.com/spend', headers: {X-Team: finance}}")
    pd = routed_config().channels["pd"]
    assert pd.type == "pagerduty"
    assert pd.send_resolved is True
    assert pd.routes("budget", "error") and not pd.routes("budget", "warning") and not pd.routes("spike", "critical")
    assert cfg.channels["pd"].routes("spike", "info")


def test_routing_an_org_called_channels_is_reserved() -> None:
    # /spendwatch/channels/* holds channel secrets the alerter reads; an org's OpenAI keys must not live there
    with pytest.raises(ConfigError, match="reserved"):
        parse_config("organizations: [{id: channels, name: X}]\n", "t.yaml")


def test_routing_a_digest_never_goes_to_pagerduty() -> None:
    text = """
organizations:
  - id: acme
    name: Acme
    channels: [pd]
    digests: [{every: day, channels: [pd]}]
channels:
  pd: {type: pagerduty}
"""
    with pytest.raises(ConfigError, match="PagerDuty channel, which carries alerts, not digests"):
        parse_config(text, "t.yaml")


def test_routing_a_digest_reaches_webhook_teams_and_sns_as_raw_text_not_slack_markup() -> None:
    from spendwatch.channels.teams import teams_payload
    from spendwatch.channels.webhook import webhook_payload
    from spendwatch.digest.app import digest_payload
    from spendwatch.digest.render import DigestContent, DigestMessage, Section

    content = DigestContent(
        title="Daily spend of A & <B>: $12.00",
        subject="s",
        sections=(Section("Top projects", ("x_y *z*: $3.00",)),),
        footer="Polled at noon.",
        spark=None,
        spark_caption=None,
        chart_alt="",
    )
    hook = routed_config("{type: webhook, url: 'https://example.com/h'}").channels["pd"]
    message = digest_payload(hook, content, None, filename="c.png")
    document = webhook_payload(message, now=WHEN)
    assert document["title"] == "Daily spend of A & <B>: $12.00" and document["kind"] == "notice"
    assert "- x_y *z*: $3.00" in document["lines"]
    card = teams_payload(message)["attachments"][0]["content"]
    assert card["body"][0]["text"].startswith("Daily spend of A & <B>")
    slack = routed_config().channels["slack"]
    assert isinstance(digest_payload(slack, content, None, filename="c.png"), DigestMessage)


def test_routing_pagerduty_resolves_last_months_incident_when_the_month_turns() -> None:
    states, senders = MemoryStates(), Senders()
    cfg = routed_config()
    run(snap("510"), states, senders, cfg)  # November, 102 %: an incident
    december = WHEN.replace(month=12, day=1, hour=1)
    run(snap("10", when=december), states, senders, cfg)
    trigger, resolve = senders.messages("pd")
    assert [(a.observation.key, a.reason) for a in resolve.alerts] == [("budget.actual#org#2026-11", Reason.RESOLVED)]
    assert trigger.alerts[0].observation.key == "budget.actual#org#2026-11"
    assert len(senders.messages("slack")) == 1, "a month's end is not news on Slack"
    run(snap("12", when=december + timedelta(hours=1)), states, senders, cfg)
    assert len(senders.messages("pd")) == 2, "resolved once"


def test_last_month_keys_cross_the_year() -> None:
    from spendwatch.alerter.process import last_month
    from spendwatch.core.alerts import Observation

    obs = [
        Observation("hard_limit", "hard_limit#org#2027-01", Decimal(100), "Hard limit"),
        Observation("spike", "spike#org", None, "s"),
    ]
    assert [o.key for o in last_month(obs, "2027-01")] == ["hard_limit#org#2026-12"]
