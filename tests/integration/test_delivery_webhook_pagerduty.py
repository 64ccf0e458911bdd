"""The webhook, PagerDuty and Teams channels against local receivers that speak their wire formats.

The webhook receiver verifies the signature as a real receiver does (HMAC over timestamp and body,
constant-time compare, replay window); the PagerDuty endpoint validates every event against Events v2
and pairs triggers and resolves by `dedup_key`. The pipeline tests run the real poller, DynamoDB
stream and alerter handler.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from spendwatch.alerter.process import process_snapshot
from spendwatch.aws.secrets import EnvSecrets
from spendwatch.channels.factory import sender_factory
from spendwatch.channels.pagerduty import PagerDutySender
from spendwatch.channels.teams import TeamsSender
from spendwatch.channels.webhook import WebhookSender
from spendwatch.cli.main import main
from spendwatch.core.alerts import Alert, Observation, Reason
from spendwatch.core.config import parse_config
from spendwatch.core.errors import DeliveryError, DeliveryUnknownError
from spendwatch.devtools.fake_openai import FakeOpenAI
from spendwatch.devtools.fake_receivers import FakePagerDuty, FakeTeams, WebhookReceiver
from spendwatch.devtools.pipeline import LocalPipeline
from tests.unit.test_alerting import WHEN, MemoryStates, snap
from tests.unit.test_channels_payloads import budget, message

from .conftest import ADMIN_KEY, POLL_TIME


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as server:
        yield server


@pytest.fixture
def pagerduty() -> Iterator[FakePagerDuty]:
    with FakePagerDuty() as server:
        yield server


def webhook_sender(receiver: WebhookReceiver, secret: str | None = None, **kwargs: object) -> WebhookSender:
    return WebhookSender(
        "hook",
        url=receiver.url,
        signing_secret=lambda force: secret or receiver.secret,
        sleep=lambda s: None,
        timeout_s=0.5,
        connect_timeout_s=0.5,
        **kwargs,  # type: ignore[arg-type]
    )


def pd_sender(pagerduty: FakePagerDuty, key: str | None = None) -> PagerDutySender:
    return PagerDutySender(
        "pd",
        routing_key=lambda force: key or pagerduty.routing_key,
        events_url=pagerduty.events_url,
        sleep=lambda s: None,
        timeout_s=0.5,
        connect_timeout_s=0.5,
    )


# --- webhook ---------------------------------------------------------------------------------------


def test_webhook_delivers_a_signed_document_the_receiver_verifies(receiver: WebhookReceiver) -> None:
    sender = webhook_sender(receiver, headers={"X-Team": "finance"})
    sender.send(message(budget(Decimal(100))))
    [document] = receiver.documents
    assert receiver.rejected == []
    assert document["alerts"][0]["facts"]["spent_usd"] == "510.10"
    assert receiver.headers_seen[0]["x-team"] == "finance"


def test_webhook_a_wrong_secret_is_refused_permanently_without_naming_it(receiver: WebhookReceiver) -> None:
    sender = webhook_sender(receiver, secret="not-the-receivers-secret")
    with pytest.raises(DeliveryError) as caught:
        sender.send(message(budget(None)))
    assert not caught.value.retryable and caught.value.reason == "http_401"
    assert "not-the-receivers-secret" not in str(caught.value) and receiver.url not in str(caught.value)
    assert receiver.rejected == ["signature mismatch", "signature mismatch"]  # re-read once, then given up
    assert receiver.documents == []


def test_webhook_a_stale_timestamp_is_rejected_by_the_replay_window(receiver: WebhookReceiver) -> None:
    sender = webhook_sender(receiver, clock=lambda: time.time() - 600)
    with pytest.raises(DeliveryError):
        sender.send(message(budget(None)))
    assert receiver.rejected[0] == "timestamp outside the replay window"


def test_webhook_5xx_is_retried_and_delivered_once(receiver: WebhookReceiver) -> None:
    receiver.fail_next(1, status=503)
    sender = webhook_sender(receiver)
    sender.send(message(budget(None)))
    assert sender.attempts == 2 and len(receiver.documents) == 1


def test_webhook_a_late_answer_is_an_unknown_outcome_never_retried(receiver: WebhookReceiver) -> None:
    receiver.answer_late(1, delay_s=2)
    sender = webhook_sender(receiver)
    with pytest.raises(DeliveryUnknownError):
        sender.send(message(budget(None)))
    assert receiver.requests == 1
    assert len(receiver.documents) == 1


def test_webhook_a_replayed_request_is_dropped_by_event_id(receiver: WebhookReceiver) -> None:
    sender = webhook_sender(receiver)
    sender.send(message(budget(None)))
    sender.send(message(budget(None)))  # the re-send after an unknown outcome carries the same event id
    assert len(receiver.documents) == 1 and receiver.duplicates == 1


# --- PagerDuty -------------------------------------------------------------------------------------


def test_pagerduty_trigger_then_resolve_close_the_incident(pagerduty: FakePagerDuty) -> None:
    sender = pd_sender(pagerduty)
    sender.send(message(budget(Decimal(100))))
    [incident] = pagerduty.incidents.values()
    assert incident.status == "triggered" and incident.severity == "error"
    sender.send(message(budget(None, Reason.RESOLVED)))
    assert pagerduty.incidents[incident.dedup_key].status == "resolved" and pagerduty.invalid == []
    assert [e["event_action"] for e in pagerduty.events] == ["trigger", "resolve"]
    assert "routing_key" not in str(incident)


def test_pagerduty_an_invalid_routing_key_is_permanent_invalid_event(pagerduty: FakePagerDuty) -> None:
    sender = pd_sender(pagerduty, key="X" * 32)
    with pytest.raises(DeliveryError) as caught:
        sender.send(message(budget(None)))
    assert caught.value.reason == "invalid_event" and not caught.value.retryable
    assert "X" * 32 not in str(caught.value)


def test_pagerduty_429_is_retried_after_its_pause(pagerduty: FakePagerDuty) -> None:
    pagerduty.fail_next(1, status=429, retry_after=0)
    sender = pd_sender(pagerduty)
    sender.send(message(budget(None)))
    assert sender.attempts == 2 and len(pagerduty.events) == 1


def test_pagerduty_an_unanswered_event_is_retried_and_the_events_after_it_still_go_out(
    pagerduty: FakePagerDuty,
) -> None:
    pagerduty.drop_connection(1, taken=True)
    hard_limit = Alert(
        Observation(
            "hard_limit",
            "hard_limit#org#2026-11",
            Decimal(100),
            "Hard limit",
            {
                "spent_usd": Decimal(1000),
                "limit_usd": Decimal(1000),
                "percent": Decimal(100),
                "period": "2026-11",
                "limit_source": "config",
                "scope": "organization",
                "scope_name": "Acme",
            },
            labels=((Decimal(100), "100%"),),
        ),
        Reason.FIRST_CROSSING,
        Decimal(100),
    )
    sender = pd_sender(pagerduty)
    with pytest.raises(DeliveryError) as caught:
        sender.send(message(budget(Decimal(100)), hard_limit))
    # Idempotent by dedup_key: retried with the record, not left to the hour-long unconfirmed re-send.
    assert caught.value.retryable and not isinstance(caught.value, DeliveryUnknownError)
    assert [e["payload"]["severity"] for e in pagerduty.events] == ["error", "critical"], "the page went out"
    sender.send(message(budget(Decimal(100)), hard_limit))  # the record's retry
    assert len(pagerduty.incidents) == 2 and all(i.status == "triggered" for i in pagerduty.incidents.values())


def test_pagerduty_through_the_alerter_opens_and_closes_with_routing_and_no_duplicates(
    pagerduty: FakePagerDuty, receiver: WebhookReceiver
) -> None:
    cfg = parse_config(
        f"""
organizations:
  - id: acme
    name: Acme
    budget: {{monthly_usd: 500, thresholds_percent: [50, 80, 100]}}
    channels: [hook, pd]
    rules: {{forecast: {{enabled: false}}, spike: {{enabled: false}}}}
channels:
  hook: {{type: webhook, url: "{receiver.url}"}}
  pd: {{type: pagerduty, events_url: "{pagerduty.events_url}", rules: [budget], min_severity: error}}
""",
        "t.yaml",
    )
    environ = {
        "SPENDWATCH_WEBHOOK_SIGNING_SECRET": receiver.secret,
        "SPENDWATCH_PAGERDUTY_ROUTING_KEY": pagerduty.routing_key,
        "SPENDWATCH_HTTP_TIMEOUT_S": "1",
    }
    states = MemoryStates()
    build = sender_factory(EnvSecrets(environ), environ=environ)

    def run(mtd: str, hours: int) -> None:
        when = WHEN + timedelta(hours=hours)
        process_snapshot(snap(mtd, when=when), config=cfg, states=states, sender_for=build, now=lambda: when)

    run("430", 0)  # 86 %: a warning, the webhook only
    run("430", 0)  # the same record again (a stream retry): nothing new anywhere
    assert pagerduty.events == [] and len(receiver.documents) == 1
    run("510", 1)  # 102 %: an error, PagerDuty too
    run("100", 2)  # 20 %: resolved; budgets send no resolve to the webhook, PagerDuty closes its incident
    [incident] = pagerduty.incidents.values()
    assert incident.dedup_key == "spendwatch:acme:budget.actual#org#2026-11" and incident.status == "resolved"
    assert [e["event_action"] for e in pagerduty.events] == ["trigger", "resolve"]
    assert len(receiver.documents) == 2 and receiver.rejected == [] and pagerduty.invalid == []


# --- the deployed pipeline: poller, DynamoDB stream, alerter handler, SSM ---------------------------


def test_pipeline_delivers_to_webhook_and_pagerduty_once_each_and_a_replay_adds_nothing(
    pipeline: LocalPipeline, openai: FakeOpenAI, receiver: WebhookReceiver, pagerduty: FakePagerDuty
) -> None:
    pipeline.configure(
        f"""
organizations:
  - id: sim
    name: Simulated Org
    budget: {{monthly_usd: 500, thresholds_percent: [50, 80, 100]}}
    channels: [hook, pd]
channels:
  hook: {{type: webhook, url: "{receiver.url}"}}
  pd: {{type: pagerduty, events_url: "{pagerduty.events_url}"}}
""",
        {
            "/spendwatch/sim/openai-admin-key": ADMIN_KEY,
            "/spendwatch/channels/webhook-signing-secret": receiver.secret,
            "/spendwatch/channels/pagerduty-routing-key": pagerduty.routing_key,
        },
        {"OPENAI_BASE_URL": openai.base_url, "SPENDWATCH_HTTP_TIMEOUT_S": "2"},
    )
    pipeline.poll(POLL_TIME)
    stats = pipeline.deliver()
    assert stats.retried_batches == 0 and pipeline.dead_letters() == []
    [document] = receiver.documents
    assert {a["rule"] for a in document["alerts"]} >= {"budget.actual"}
    assert pagerduty.incidents and all(i.status == "triggered" for i in pagerduty.incidents.values())
    events = len(pagerduty.events)
    pipeline.poll(POLL_TIME)  # the same poll again: an idempotent snapshot, no new alert
    pipeline.deliver()
    assert len(receiver.documents) == 1 and len(pagerduty.events) == events


# --- Teams -----------------------------------------------------------------------------------------


@pytest.fixture
def teams() -> Iterator[FakeTeams]:
    with FakeTeams() as server:
        yield server


def teams_sender(urls: list[str]) -> TeamsSender:
    """A sender whose stored URL is `urls[0]`, and `urls[1]` once re-read (a regenerated workflow URL)."""
    reads: list[bool] = []

    def url(force: bool) -> str:
        reads.append(force)
        return urls[1] if force and len(urls) > 1 else urls[0]

    return TeamsSender("teams", webhook_url=url, sleep=lambda s: None, timeout_s=0.5, connect_timeout_s=0.5)


def test_teams_posts_a_valid_adaptive_card(teams: FakeTeams) -> None:
    teams_sender([teams.url]).send(message(budget(Decimal(100))))
    [card] = teams.cards
    assert teams.invalid == [] and card["type"] == "AdaptiveCard"


def test_teams_a_regenerated_url_is_read_again_once(teams: FakeTeams) -> None:
    stale = teams.url.replace(teams.sig, "old-signature")
    sender = teams_sender([stale, teams.url])
    sender.send(message(budget(None)))
    assert sender.attempts == 2 and len(teams.cards) == 1


def test_teams_a_revoked_url_fails_permanently_without_naming_it(teams: FakeTeams) -> None:
    stale = teams.url.replace(teams.sig, "old-signature")
    with pytest.raises(DeliveryError) as caught:
        teams_sender([stale]).send(message(budget(None)))
    assert caught.value.reason == "http_401" and not caught.value.retryable
    assert "old-signature" not in str(caught.value) and teams.root_url not in str(caught.value)


def test_teams_throttled_then_delivered_once_and_a_late_answer_is_unknown(teams: FakeTeams) -> None:
    teams.fail_next(1, status=429, retry_after=0)
    teams_sender([teams.url]).send(message(budget(None)))
    assert len(teams.cards) == 1
    teams.answer_late(1, delay_s=2)
    with pytest.raises(DeliveryUnknownError):
        teams_sender([teams.url]).send(message(budget(Decimal(100))))
    assert len(teams.cards) == 2


# --- spendwatch test-alert -------------------------------------------------------------------------


def test_test_alert_reaches_webhook_pagerduty_and_teams_and_leaves_no_incident_open(  # noqa: PLR0917 - fixtures
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    receiver: WebhookReceiver,
    pagerduty: FakePagerDuty,
    teams: FakeTeams,
) -> None:
    config = tmp_path / "spendwatch.yaml"
    config.write_text(
        f"""
organizations:
  - id: sim
    name: Simulated Org
    channels: [hook, pd, teams]
channels:
  hook: {{type: webhook, url: "{receiver.url}"}}
  pd: {{type: pagerduty, events_url: "{pagerduty.events_url}"}}
  teams: {{type: teams}}
""",
        encoding="utf-8",
    )
    monkeypatch.setenv("SPENDWATCH_CONFIG", str(config))
    monkeypatch.setenv("SPENDWATCH_WEBHOOK_SIGNING_SECRET", receiver.secret)
    monkeypatch.setenv("SPENDWATCH_PAGERDUTY_ROUTING_KEY", pagerduty.routing_key)
    monkeypatch.setenv("SPENDWATCH_TEAMS_WEBHOOK_URL", teams.url)
    assert main(["test-alert"]) == 0
    out, _ = capsys.readouterr()
    assert out.splitlines() == ["hook: sent", "pd: sent", "teams: sent"]
    [document] = receiver.documents
    assert document["kind"] == "notice" and document["title"] == "spendwatch: test message (hook)"
    assert [e["event_action"] for e in pagerduty.events] == ["trigger", "resolve"]
    assert all(i.status == "resolved" for i in pagerduty.incidents.values())
    [card] = teams.cards
    assert card["body"][0]["text"] == "spendwatch: test message (teams)"

    monkeypatch.setenv("SPENDWATCH_PAGERDUTY_ROUTING_KEY", "Y" * 32)
    assert main(["test-alert", "--channel", "pd"]) == 1
    out, err = capsys.readouterr()
    assert "pd: FAILED (invalid_event, permanent)" in out and "Y" * 32 not in out + err
