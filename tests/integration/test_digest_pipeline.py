"""The digest handler through the local pipeline: snapshots in DynamoDB, the notification log, Slack's file
upload on FakeSlack, SES v2 raw mail on moto. A digest arrives once per period, never twice under
redelivery, retries or repeated hourly runs."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta
from email.message import Message as MimeMessage
from typing import Any

import boto3
import pytest
import requests

from spendwatch.alerter.process import DeliveryFailedError
from spendwatch.aws.store import SnapshotStore
from spendwatch.devtools.fake_openai import FakeOpenAI
from spendwatch.devtools.fake_slack import SIM_SLACK_TOKEN, FakeSlack
from spendwatch.devtools.pipeline import LocalPipeline
from spendwatch.devtools.snapshot_series import SeriesOrg
from spendwatch.digest.render import CHART_CID, NO_PICTURE

from .conftest import ADMIN_KEY, POLL_TIME

NOW = datetime(2026, 11, 21, 8, 30, tzinfo=UTC)
SENDER = "spend@example.com"
PNG = b"\x89PNG\r\n\x1a\n"
NOV_1 = datetime(2026, 11, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def config(channel_block: str = "channel: C0SIMALERT", *, digests: str = "[{every: day, hour_utc: 8}]") -> str:
    return f"""
organizations:
  - id: sim
    name: Simulated Org
    budget: {{monthly_usd: 500}}
    channels: [slack]
    digests: {digests}
channels:
  slack:
    type: slack
    {channel_block}
  mail:
    type: email
    sender: {SENDER}
    recipients: [finance@example.com]
"""


def bot_secrets() -> dict[str, str]:
    return {"/spendwatch/slack/bot-token": SIM_SLACK_TOKEN}


def store_history(pipeline: LocalPipeline, until: datetime) -> None:
    """The series' snapshots at every midnight from 1 November, and the poll of `until`'s hour, written as
    the poller writes them (DynamoDB Local takes ~80 ms per 10 KB item here, so not every hour)."""
    series, store = SeriesOrg(), SnapshotStore(pipeline.tables["SnapshotsTable"])
    moments = [datetime(2026, 11, 1, tzinfo=UTC) + timedelta(days=i) for i in range((until - NOV_1).days + 1)]
    last = until.replace(minute=0, second=0, microsecond=0)
    for moment in sorted({*moments, last}):
        store.put_snapshot(series.snapshot(moment), expires_at=int(until.timestamp()) + 86400)


def statuses(result: dict[str, Any]) -> list[str]:
    return [entry["status"] for entry in result["organizations"]["sim"]]


def test_daily_digest_uploads_its_chart_once_per_period(pipeline: LocalPipeline, slack: FakeSlack) -> None:
    pipeline.configure(config(), bot_secrets(), {"SLACK_API_BASE_URL": slack.api_base_url})
    store_history(pipeline, NOW)
    assert statuses(pipeline.run_digest(NOW)) == ["sent"]
    [shared] = slack.files
    assert shared.channel == "C0SIMALERT" and shared.content is not None and shared.content.startswith(PNG)
    assert shared.filename == "spend-sim-2026-11-21.png"
    assert shared.title is not None and shared.title.startswith("Daily spend, November 2026: Simulated Org")
    [message] = slack.messages
    assert message.blocks is not None
    text = str(message.blocks)
    assert "Daily OpenAI spend: Simulated Org, 2026-11-20" in text
    for heading in ("Top projects", "Top line items", "Top models by cost", "Tokens and requests", "Monitor health"):
        assert heading in text
    assert NO_PICTURE[:20] not in text

    # The same hour again, later hours of the day, and a redelivered event: nothing new.
    assert statuses(pipeline.run_digest(NOW)) == ["already_sent"]
    pipeline.run_digest(NOW + timedelta(hours=3))
    pipeline.run_digest(NOW + timedelta(hours=15))
    assert len(slack.messages) == 1 and len(slack.files) == 1
    # The next day's digest is a new period.
    store_history(pipeline, NOW + timedelta(days=1))
    assert statuses(pipeline.run_digest(NOW + timedelta(days=1))) == ["sent"]
    assert len(slack.messages) == 2
    assert "2026-11-21" in str(slack.messages[1].blocks)


def test_webhook_digest_says_plainly_that_it_has_no_picture(pipeline: LocalPipeline, slack: FakeSlack) -> None:
    pipeline.configure(config(""), {"/spendwatch/slack/webhook-url": slack.webhook_url})
    store_history(pipeline, NOW)
    pipeline.run_digest(NOW)
    [message] = slack.messages
    assert message.via == "webhook"
    assert slack.files == []
    text = str(message.blocks)
    assert "Daily spend this month" in text and "files:write" in text
    pipeline.run_digest(NOW + timedelta(minutes=30))
    assert len(slack.messages) == 1


def test_digest_to_a_channel_name_posts_without_picture(pipeline: LocalPipeline, slack: FakeSlack) -> None:
    pipeline.configure(config("channel: '#spend-alerts'"), bot_secrets(), {"SLACK_API_BASE_URL": slack.api_base_url})
    store_history(pipeline, NOW)
    pipeline.run_digest(NOW)
    [message] = slack.messages
    assert slack.files == [] and "files:write" in str(message.blocks)


def test_email_digest_has_the_chart_inline_and_is_sent_once(pipeline: LocalPipeline) -> None:
    pipeline.configure(config(digests="[{every: week, weekday: monday, hour_utc: 8, channels: [mail]}]"), {})
    boto3.client("ses").verify_email_identity(EmailAddress=SENDER)
    monday = datetime(2026, 11, 23, 8, 20, tzinfo=UTC)
    store_history(pipeline, monday)
    assert statuses(pipeline.run_digest(monday)) == ["sent"]
    assert statuses(pipeline.run_digest(monday + timedelta(hours=1))) == ["already_sent"]
    data = requests.get(f"{pipeline.moto.endpoint_url}/moto-api/data.json", timeout=10).json()
    [raw] = data["ses"]["RawMessage"]
    mail = email.message_from_string(raw["raw_data"], policy=email.policy.default)
    assert mail["Subject"].startswith("[spendwatch] Weekly OpenAI spend: Simulated Org, 2026-11-16 to 2026-11-22")
    assert mail.get_content_type() == "multipart/alternative"
    parts: list[MimeMessage] = list(mail.walk())
    types = [part.get_content_type() for part in parts]
    assert types == ["multipart/alternative", "text/plain", "multipart/related", "text/html", "image/png"]
    html = parts[3].get_payload(decode=True)
    assert isinstance(html, bytes) and f'src="cid:{CHART_CID}"'.encode() in html
    assert parts[4]["Content-ID"] == f"<{CHART_CID}>"
    image = parts[4].get_payload(decode=True)
    assert isinstance(image, bytes) and image.startswith(PNG)


def test_digest_with_no_snapshot_says_so_once(pipeline: LocalPipeline, slack: FakeSlack) -> None:
    pipeline.configure(config(), bot_secrets(), {"SLACK_API_BASE_URL": slack.api_base_url})
    pipeline.run_digest(NOW)
    pipeline.run_digest(NOW + timedelta(hours=1))
    [message] = slack.messages
    assert "No snapshot has been stored for Simulated Org yet" in str(message.blocks)
    assert slack.files == [], "no chart of nothing"


def test_failed_digest_is_sent_by_the_next_run_not_lost(pipeline: LocalPipeline, slack: FakeSlack) -> None:
    pipeline.configure(config(""), {"/spendwatch/slack/webhook-url": slack.webhook_url})
    store_history(pipeline, NOW)
    slack.fail_next(3, status=503, target="webhook")
    with pytest.raises(DeliveryFailedError, match="Slack unavailable"):
        pipeline.run_digest(NOW)
    assert slack.messages == []
    assert statuses(pipeline.run_digest(NOW + timedelta(hours=1))) == ["sent"]
    pipeline.run_digest(NOW + timedelta(hours=2))
    assert len(slack.messages) == 1


def test_digest_from_the_real_poller_and_stream(pipeline: LocalPipeline, openai: FakeOpenAI, slack: FakeSlack) -> None:
    """One poll by the poller handler (no history yet): the digest says what it cannot compare."""
    pipeline.configure(
        config(),
        {"/spendwatch/sim/openai-admin-key": ADMIN_KEY, **bot_secrets()},
        {"OPENAI_BASE_URL": openai.base_url, "SLACK_API_BASE_URL": slack.api_base_url},
    )
    pipeline.poll(POLL_TIME)
    pipeline.deliver()  # the budget alert
    alerts = len(slack.messages)
    moment = POLL_TIME + timedelta(hours=9)  # 2026-11-22 08:00, the daily digest of 2026-11-21
    pipeline.run_digest(moment)
    assert len(slack.messages) == alerts + 1
    text = str(slack.messages[-1].blocks)
    assert "Yesterday (2026-11-21): $" in text
    assert "no snapshot within a day before 2026-11-21T00:00:00Z" in text
    assert "Alert notifications recorded in 2026-11-21: " in text
    assert len(slack.files) == 1


def test_store_reads_boundaries_polls_and_recorded_notifications(pipeline: LocalPipeline) -> None:
    from spendwatch.aws.store import AlertStateStore

    store = SnapshotStore(pipeline.tables["SnapshotsTable"])
    series = SeriesOrg()
    for hour in (0, 6, 12):
        store.put_snapshot(series.snapshot(NOV_1 + timedelta(hours=hour)), expires_at=2_000_000_000)
    at = store.snapshot_at_or_before("sim", NOV_1 + timedelta(hours=11, minutes=59))
    assert at is not None and at.poll_time == NOV_1 + timedelta(hours=6) and at.costs_by_project_usd
    assert store.snapshot_at_or_before("sim", NOV_1 - timedelta(seconds=1)) is None
    polls = store.snapshots_between("sim", NOV_1, NOV_1 + timedelta(hours=12))
    assert [p.poll_time.hour for p in polls] == [0, 6], "the end is excluded"
    assert polls[0].costs_by_project_usd == (), "summary fields only"

    states = AlertStateStore(pipeline.tables["AlertStateTable"])
    for key, when in (("budget.actual#org#2026-11#slack", NOV_1 + timedelta(hours=2)), ("spike#slack", NOV_1 - DAY)):
        states.claim("sim", key, expected_version=0, now=when, expires_at=2_000_000_000)
        states.mark_sent("sim", key, level=None, firing=True, now=when, reason="first_crossing")
    recorded = states.notified_between("sim", NOV_1, NOV_1 + DAY)
    assert [s.key for s in recorded] == ["budget.actual#org#2026-11#slack"]


def test_revoked_bot_token_is_a_named_permanent_failure_and_nothing_is_recorded(
    pipeline: LocalPipeline, slack: FakeSlack
) -> None:
    pipeline.configure(config(), bot_secrets(), {"SLACK_API_BASE_URL": slack.api_base_url})
    store_history(pipeline, NOW)
    slack.revoke_token()
    with pytest.raises(DeliveryFailedError, match="token_revoked"):
        pipeline.run_digest(NOW)
    assert slack.messages == [] and slack.files == []
    slack.reset()  # the token works again (rotated)
    assert statuses(pipeline.run_digest(NOW + timedelta(hours=1))) == ["sent"]
    assert len(slack.messages) == 1 and len(slack.files) == 1
