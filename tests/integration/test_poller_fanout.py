"""The deployed poll path: the Scheduled Event queues one message per organization on the poll queue
(moto's SQS), and each message is polled by its own invocation of the same handler. One organization's
revoked key costs that organization only: it is retried once, then dead-lettered; the others write."""

from __future__ import annotations

import json

import boto3
import pytest

from spendwatch.devtools.fake_openai import FakeOpenAI
from spendwatch.devtools.pipeline import LocalPipeline
from spendwatch.openai_api import ADMIN_KEY_REJECTED

from .conftest import ADMIN_KEY, POLL_TIME
from .test_poller_sources import stored

REVOKED_KEY = "sk-admin-revoked-key-that-must-not-leak-0"
ORGS = ("alpha", "bravo", "charlie", "delta")


def configure_orgs(pipeline: LocalPipeline, openai: FakeOpenAI) -> None:
    orgs = "\n".join(f"  - {{id: {org_id}, name: Org {org_id}}}" for org_id in ORGS)
    secrets = {f"/spendwatch/{org_id}/openai-admin-key": ADMIN_KEY for org_id in ORGS}
    secrets["/spendwatch/charlie/openai-admin-key"] = REVOKED_KEY
    pipeline.configure(f"organizations:\n{orgs}\n", secrets, {"OPENAI_BASE_URL": openai.base_url})


def inserts(pipeline: LocalPipeline) -> list[str]:
    assert pipeline.pump is not None
    return sorted(r["dynamodb"]["Keys"]["pk"]["S"] for r in pipeline.pump.read_all() if r["eventName"] == "INSERT")


def test_poller_fanout_isolates_a_revoked_org_and_the_others_still_write(
    pipeline: LocalPipeline, openai: FakeOpenAI
) -> None:
    configure_orgs(pipeline, openai)
    stats = pipeline.poll_all(POLL_TIME)

    assert stats.succeeded == 3
    assert stats.retried == 1, "the failed poll is retried once (maxReceiveCount 2)"
    assert [json.loads(d["body"]) for d in stats.dead_lettered] == [
        {"org_id": "charlie", "poll_time": "2026-11-21T23:00:00Z"}
    ]
    assert stats.invocations == len(ORGS) + 1, "one organization per invocation, plus the retry"
    assert pipeline.poll_queue is not None
    assert pipeline.poll_queue.dead_letters() == [
        json.dumps({"org_id": "charlie", "poll_time": "2026-11-21T23:00:00Z"})
    ]

    for org_id in ("alpha", "bravo", "delta"):
        snapshot = stored(pipeline, org_id=org_id)
        assert snapshot.failures == ()
        assert snapshot.month_to_date_usd == openai.org.month_to_date_usd()
    revoked = stored(pipeline, org_id="charlie")
    assert revoked.sources_ok == ()
    assert revoked.conditions == (ADMIN_KEY_REJECTED,)
    assert {f.kind for f in revoked.failures} == {"auth"}
    # The revoked org's snapshot (listing why) was written once; its retry wrote nothing new.
    assert inserts(pipeline) == [f"ORG#{o}" for o in sorted(ORGS)]


def test_poller_fanout_same_schedule_twice_writes_no_second_snapshot(
    pipeline: LocalPipeline, openai: FakeOpenAI
) -> None:
    configure_orgs(pipeline, openai)
    pipeline.poll_all(POLL_TIME)
    first = inserts(pipeline)
    stats = pipeline.poll_all(POLL_TIME)  # the scheduled invocation retried: every message sent again
    assert stats.succeeded == 3
    assert inserts(pipeline) == first


def test_poller_fanout_never_logs_the_revoked_key(
    pipeline: LocalPipeline, openai: FakeOpenAI, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    configure_orgs(pipeline, openai)
    pipeline.poll_all(POLL_TIME)
    assert pipeline.poll_queue is not None
    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=pipeline.poll_queue.queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )
    assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "0", "the queue is drained"
    out, err = capfd.readouterr()
    logged = "\n".join(str(record.__dict__) for record in caplog.records)
    assert "admin key rejected (401 invalid_api_key)" in logged
    for text in (out, err, logged, json.dumps([stored(pipeline, org_id="charlie").to_json_dict()])):
        assert REVOKED_KEY not in text
        assert ADMIN_KEY not in text
        assert "Bearer" not in text
