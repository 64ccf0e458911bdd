"""The webhook's signed `spendwatch.alert/v1` document and PagerDuty's Events v2 events, built from one message."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spendwatch.alerter.notices import notice_message
from spendwatch.alerter.render import build_message
from spendwatch.channels.pagerduty import SUMMARY_LIMIT, dedup_key, pagerduty_events
from spendwatch.channels.sns import sns_publish_request
from spendwatch.channels.teams import MAX_CARD_BYTES, escape_card, teams_payload
from spendwatch.channels.webhook import event_id, sign, verify_signature, webhook_payload
from spendwatch.core.alerts import Alert, Message, Observation, Reason
from spendwatch.devtools.fake_receivers import card_errors, document_problem, event_errors
from tests.unit.test_alerting import snap

NOW = datetime(2026, 11, 21, 23, 5, tzinfo=UTC)
KEY = "R0UT1NGKEY0123456789abcdefABCDEF"


def budget(level: Decimal | None, reason: Reason = Reason.FIRST_CROSSING, scope_name: str = "Acme") -> Alert:
    obs = Observation(
        rule_id="budget.actual",
        key="budget.actual#org#2026-11",
        level=level,
        summary="Monthly budget",
        facts={
            "spent_usd": Decimal("510.10"),
            "budget_usd": Decimal(500),
            "percent": Decimal("102.02"),
            "period": "2026-11",
            "scope": "organization",
            "scope_name": scope_name,
        },
        labels=((Decimal(50), "50.0%"), (Decimal(100), "100.0%")),
    )
    return Alert(obs, reason, level)


def message(*alerts: Alert, org_name: str = "Acme") -> Message:
    return build_message(snap("510.10").model_copy(update={"org_name": org_name}), list(alerts), now=NOW)


def test_webhook_payload_is_the_v1_document_with_exact_money() -> None:
    document = webhook_payload(message(budget(Decimal(100))), now=NOW)
    assert document_problem(document, document["id"]) is None
    [alert] = document["alerts"]
    assert alert["severity"] == "error" and alert["status"] == "firing" and alert["section"] == "budget"
    assert alert["facts"]["spent_usd"] == "510.10" and alert["level"] == "100"
    assert document["snapshot"]["month_to_date_usd"] == "510.10"
    assert "100.0% of the monthly budget reached" in alert["description"]
    assert document["sent_at"] == "2026-11-21T23:05:00Z" and document["org"] == {"id": "acme", "name": "Acme"}


def test_webhook_payload_resolve_and_notice_statuses() -> None:
    resolved = webhook_payload(message(budget(None, Reason.RESOLVED)), now=NOW)
    assert resolved["status"] == "resolved" and resolved["alerts"][0]["status"] == "resolved"
    notice = webhook_payload(notice_message("spendwatch is connected", ["line"]), now=NOW)
    assert notice["kind"] == "notice" and notice["alerts"] == [] and notice["title"] == "spendwatch is connected"
    assert document_problem(notice, notice["id"]) is None


def test_webhook_event_id_is_the_same_for_a_resend_and_differs_for_a_new_state() -> None:
    first = message(budget(Decimal(100)))
    assert event_id(first) == event_id(message(budget(Decimal(100))))
    assert event_id(first) != event_id(message(budget(Decimal(100), Reason.REPEAT_DUE)))
    assert event_id(first) != event_id(message(budget(None, Reason.RESOLVED)))


def test_webhook_signature_verifies_and_rejects_tampering_and_stale_timestamps() -> None:
    body = b'{"a":1}'
    signature = sign("s3cret", 1_800_000_000, body)
    assert verify_signature("s3cret", "1800000000", body, signature, now=1_800_000_100) is None
    assert verify_signature("s3cret", "1800000000", body + b" ", signature, now=1_800_000_000) == "signature mismatch"
    assert verify_signature("other", "1800000000", body, signature, now=1_800_000_000) == "signature mismatch"
    assert verify_signature("s3cret", "1800000000", body, signature, now=1_800_000_301) == (
        "timestamp outside the replay window"
    )


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=300))
def test_webhook_and_pagerduty_hostile_names_stay_one_line_valid_json(name: str) -> None:
    msg = message(budget(Decimal(100), scope_name=name), org_name=name)
    body = json.dumps(webhook_payload(msg, now=NOW), ensure_ascii=True)
    assert body.isascii() and "\n" not in body
    document = json.loads(body)
    assert "\n" not in document["title"] and "\u202e" not in document["title"]
    for event in pagerduty_events(msg, now=NOW):
        assert event_errors({"routing_key": KEY, **event}) == []
        assert len(event["payload"]["summary"]) <= SUMMARY_LIMIT and "\n" not in event["payload"]["summary"]


def test_pagerduty_trigger_and_resolve_pair_by_dedup_key_with_the_rules_severity() -> None:
    [trigger] = pagerduty_events(message(budget(Decimal(100))), now=NOW)
    [resolve] = pagerduty_events(message(budget(None, Reason.RESOLVED)), now=NOW)
    assert trigger["event_action"] == "trigger" and resolve["event_action"] == "resolve"
    assert trigger["dedup_key"] == resolve["dedup_key"] == "spendwatch:acme:budget.actual#org#2026-11"
    assert trigger["payload"]["severity"] == "error"
    assert trigger["payload"]["custom_details"]["spent_usd"] == "510.10"
    assert "routing_key" not in trigger  # added by the sender after the payload is scrubbed
    assert event_errors({"routing_key": KEY, **trigger}) == event_errors({"routing_key": KEY, **resolve}) == []


def test_pagerduty_a_resolve_down_to_a_level_still_routed_is_a_trigger_else_a_resolve() -> None:
    down = message(budget(Decimal(50), Reason.RESOLVED))
    assert pagerduty_events(down, now=NOW)[0]["event_action"] == "trigger"
    assert pagerduty_events(down, min_severity="error", now=NOW)[0]["event_action"] == "resolve"


def test_pagerduty_summary_is_cut_at_1024_and_a_long_key_is_hashed_within_255() -> None:
    [event] = pagerduty_events(message(budget(Decimal(100), scope_name="x" * 5000), org_name="y" * 3000), now=NOW)
    assert len(event["payload"]["summary"]) == SUMMARY_LIMIT and event["payload"]["summary"].endswith("…")
    long_key = dedup_key("acme", "budget.actual#line_item:" + "z" * 400 + "#2026-11")
    assert len(long_key) <= 255 and long_key.startswith("spendwatch:acme:sha256:")
    assert dedup_key("acme", "budget.actual#line_item:" + "z" * 400 + "#2026-11") == long_key


# --- Teams ----------------------------------------------------------------------------------------


def test_teams_card_has_the_same_figures_as_the_slack_message_and_passes_the_card_checks() -> None:
    msg = message(budget(Decimal(100)))
    payload = teams_payload(msg)
    assert card_errors(payload) == []
    card = payload["attachments"][0]["content"]
    [facts] = [e for e in card["body"] if e["type"] == "FactSet"]
    assert msg.content is not None
    assert [(f["title"], f["value"]) for f in facts["facts"]] == [
        (escape_card(label), escape_card(value)) for label, value in msg.content.figures
    ]
    assert "Spent this month" in [f["title"] for f in facts["facts"]]
    assert card["actions"][0]["url"] == "https://platform.openai.com/usage"


@pytest.mark.parametrize(
    ("name", "forbidden"),
    [
        ("**bold** [click](https://evil.example)", ["**", "[click]", "](https"]),
        ("_x_ `code`", ["_x_", "`"]),
        ("- listed", []),
        ("Acme\u202eevil\nnext", ["\u202e", "\n"]),
    ],
)
def test_teams_untrusted_names_cannot_format_link_or_break_lines(name: str, forbidden: list[str]) -> None:
    escaped = escape_card(name)
    assert all(f not in escaped for f in forbidden)
    assert not escaped.startswith("- ")
    assert escape_card("1. item").startswith("1\u2024")


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=400))
def test_teams_any_name_makes_a_valid_card_within_the_size_limit(name: str) -> None:
    payload = teams_payload(message(budget(Decimal(100), scope_name=name), org_name=name))
    assert card_errors(payload) == []
    assert len(json.dumps(payload).encode()) <= MAX_CARD_BYTES


# --- SNS ------------------------------------------------------------------------------------------


def test_sns_request_has_filterable_attributes_and_a_message_per_protocol() -> None:
    request = sns_publish_request(message(budget(Decimal(100))), now=NOW)
    attributes = request["MessageAttributes"]
    assert attributes["org"] == {"DataType": "String", "StringValue": "acme"}
    assert attributes["severity"]["StringValue"] == "error" and attributes["status"]["StringValue"] == "firing"
    assert json.loads(attributes["rules"]["StringValue"]) == ["budget"]
    structure = json.loads(request["Message"])
    assert request["MessageStructure"] == "json" and {"default", "email", "sms", "https", "sqs"} <= set(structure)
    assert json.loads(structure["sqs"])["schema"] == "spendwatch.alert/v1"
    chatbot = json.loads(structure["https"])
    assert chatbot["version"] == "1.0" and chatbot["source"] == "custom" and chatbot["content"]["title"]


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=300))
def test_sns_subject_is_ascii_one_line_under_100_whatever_the_name(name: str) -> None:
    subject = sns_publish_request(message(budget(Decimal(100)), org_name=name), now=NOW)["Subject"]
    assert subject.isascii() and len(subject) < 100 and "\n" not in subject and subject == subject.strip()
    assert subject and all(ch.isprintable() for ch in subject)


def test_pagerduty_a_rule_whose_keys_never_clear_pages_and_closes_at_once() -> None:
    spike = Alert(
        Observation(
            "spike",
            "spike#org#2026-11-21",
            Decimal(3),
            "Spend spike",
            {
                "day": "2026-11-21",
                "amount_usd": Decimal(90),
                "baseline_usd": Decimal(10),
                "factor": Decimal(3),
                "ratio": Decimal(9),
                "baseline_days": Decimal(20),
                "partial": "no",
                "scope": "organization",
                "scope_name": "Acme",
            },
        ),
        Reason.FIRST_CROSSING,
        Decimal(3),
    )
    trigger, resolve = pagerduty_events(message(spike), now=NOW)
    assert (trigger["event_action"], resolve["event_action"]) == ("trigger", "resolve")
    assert trigger["dedup_key"] == resolve["dedup_key"]
    [budget_trigger] = pagerduty_events(message(budget(Decimal(100))), now=NOW)
    assert budget_trigger["event_action"] == "trigger", "a budget stays open until it resolves"
