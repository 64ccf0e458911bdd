"""E-mail delivery through SES v2 on moto's server, driven by the real local stream (A14).

moto records sent mail at `GET /moto-api/data.json` -> `ses.Message` (source, destinations, subject and
the HTML body); the plain-text part is checked in tests/unit/test_senders_email.py.
"""

from __future__ import annotations

from typing import Any

import boto3
import requests

from spendwatch.devtools.fake_openai import FakeOpenAI
from spendwatch.devtools.fake_slack import FakeSlack
from spendwatch.devtools.pipeline import FakeLambdaContext, LocalPipeline

from .conftest import ADMIN_KEY, POLL_TIME

SENDER = "alerts@example.com"


def email_config(*, fallback: bool = False) -> str:
    return f"""
organizations:
  - id: sim
    name: Simulated <Org> & Co
    budget: {{monthly_usd: 500, thresholds_percent: [50, 80, 100]}}
    channels: [mail]
    {"fallback_channel: slack" if fallback else ""}
channels:
  mail:
    type: email
    sender: {SENDER}
    recipients: [ops@example.com, finance@example.com]
    subject_prefix: "[spendwatch]"
  slack:
    type: slack
"""


def configure(pipeline: LocalPipeline, openai: FakeOpenAI, slack: FakeSlack, **kwargs: Any) -> None:
    pipeline.configure(
        email_config(**kwargs),
        {"/spendwatch/sim/openai-admin-key": ADMIN_KEY, "/spendwatch/slack/webhook-url": slack.webhook_url},
        {"OPENAI_BASE_URL": openai.base_url},
    )


def verify_sender() -> None:
    # moto's SES v2 send checks the v1 backend's verified identities.
    boto3.client("ses").verify_email_identity(EmailAddress=SENDER)


def sent_mail(pipeline: LocalPipeline) -> list[dict[str, Any]]:
    data = requests.get(f"{pipeline.moto.endpoint_url}/moto-api/data.json", timeout=10).json()
    messages: list[dict[str, Any]] = data.get("ses", {}).get("Message", [])
    return messages


def test_budget_alert_is_sent_once_by_ses(pipeline: LocalPipeline, openai: FakeOpenAI, slack: FakeSlack) -> None:
    configure(pipeline, openai, slack)
    verify_sender()
    pipeline.poll(POLL_TIME)
    stats = pipeline.deliver()
    assert stats.delivered == 1
    [mail] = sent_mail(pipeline)
    assert mail["source"] == SENDER
    assert mail["destinations"]["ToAddresses"] == ["ops@example.com", "finance@example.com"]
    assert mail["subject"].startswith("[spendwatch] ")
    assert mail["subject"].count("[spendwatch]") == 1
    assert "Simulated <Org> & Co" in mail["subject"]
    assert "Simulated &lt;Org&gt; &amp; Co" in mail["body"], "untrusted names are HTML-escaped"
    assert "<Org>" not in mail["body"]
    assert "80" in mail["body"]
    assert slack.messages == []
    # The same records again (at-least-once delivery) send no second mail.
    assert pipeline.pump is not None and pipeline.alerter is not None
    pipeline.pump.deliver(pipeline.alerter.lambda_handler, FakeLambdaContext(), records=pipeline.pump.read_all())
    assert len(sent_mail(pipeline)) == 1


def test_unverified_sender_is_a_named_permanent_failure_reported_through_the_fallback(
    pipeline: LocalPipeline, openai: FakeOpenAI, slack: FakeSlack
) -> None:
    configure(pipeline, openai, slack, fallback=True)  # no verify_sender(): SES answers MessageRejected
    pipeline.poll(POLL_TIME)
    stats = pipeline.deliver()
    assert sent_mail(pipeline) == []
    assert len(stats.dead_lettered) == 1, "the undelivered alert's record is dead-lettered, not dropped"
    [notice] = slack.messages
    text = notice.text or ""
    assert "Channel mail failed permanently: MessageRejected." in text
    assert "Alerts for Simulated &lt;Org&gt; &amp; Co are not reaching it" in text


def test_email_fallback_for_a_broken_slack_channel(
    pipeline: LocalPipeline, openai: FakeOpenAI, slack: FakeSlack
) -> None:
    config = email_config().replace("channels: [mail]", "channels: [slack]\n    fallback_channel: mail")
    pipeline.configure(
        config,
        {"/spendwatch/sim/openai-admin-key": ADMIN_KEY, "/spendwatch/slack/webhook-url": slack.webhook_url},
        {"OPENAI_BASE_URL": openai.base_url},
    )
    verify_sender()
    slack.archive_channel()
    pipeline.poll(POLL_TIME)
    pipeline.deliver()
    [mail] = sent_mail(pipeline)
    assert mail["subject"] == "[spendwatch] channel slack failed for Simulated <Org> & Co"
    assert "Channel slack failed permanently: channel_is_archived." in mail["body"]
