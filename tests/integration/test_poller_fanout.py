"""The deployed poll path: the Scheduled Event queues one message per organization on the poll queue
(moto's SQS), and each message is polled by its own invocation of the same handler. One organization's
revoked key costs that organization only: it is retried up to the queue's maxReceiveCount, its failure
snapshot is written on the last receive only, then it is dead-lettered; the others write. A poll that
fails on one receive and recovers on the next stores the recovered data."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from spendwatch.devtools.fake_openai import FakeOpenAI
from spendwatch.devtools.pipeline import LocalPipeline
from spendwatch.devtools.sqs_source import Handler, SqsEventSource
from spendwatch.devtools.stream import snapshot_inserts
from spendwatch.poller.openai_api import ADMIN_KEY_REJECTED

from .conftest import ADMIN_KEY, POLL_TIME
from .test_poller_sources import stored

REVOKED_KEY = "sk-admin-revoked-key-that-must-not-leak-0"
ORGS = ("alpha", "bravo", "charlie", "delta")


def max_receive_count(pipeline: LocalPipeline) -> int:
    """The poll queue's redrive maxReceiveCount, which the template also gives the poller."""
    resources = pipeline.template["Resources"]
    count = int(resources["PollRequestsQueue"]["Properties"]["RedrivePolicy"]["maxReceiveCount"])
    poller_env = resources["PollerFunction"]["Properties"]["Environment"]["Variables"]
    assert int(poller_env["POLL_MAX_RECEIVE_COUNT"]) == count, "the poller must know which receive is the last"
    return count


def configure_orgs(pipeline: LocalPipeline, openai: FakeOpenAI, orgs: tuple[str, ...] = ORGS) -> None:
    listed = "\n".join(f"  - {{id: {org_id}, name: Org {org_id}}}" for org_id in orgs)
    secrets = {f"/spendwatch/{org_id}/openai-admin-key": ADMIN_KEY for org_id in orgs}
    if "charlie" in orgs:
        secrets["/spendwatch/charlie/openai-admin-key"] = REVOKED_KEY
    # As the template does: the poller's POLL_MAX_RECEIVE_COUNT is the queue's maxReceiveCount.
    environ = {"OPENAI_BASE_URL": openai.base_url, "POLL_MAX_RECEIVE_COUNT": str(max_receive_count(pipeline))}
    pipeline.configure(f"organizations:\n{listed}\n", secrets, environ)


def inserts(pipeline: LocalPipeline) -> list[str]:
    assert pipeline.pump is not None
    return sorted(r["dynamodb"]["Keys"]["pk"]["S"] for r in snapshot_inserts(pipeline.pump.read_all()))


def test_poller_fanout_isolates_a_revoked_org_and_the_others_still_write(
    pipeline: LocalPipeline, openai: FakeOpenAI
) -> None:
    configure_orgs(pipeline, openai)
    receives = max_receive_count(pipeline)
    stats = pipeline.poll_all(POLL_TIME)

    assert stats.succeeded == 3
    assert stats.retried == receives - 1, "the failed poll is received maxReceiveCount times"
    assert [json.loads(d["body"]) for d in stats.dead_lettered] == [
        {"org_id": "charlie", "poll_time": "2026-11-21T23:00:00Z"}
    ]
    assert stats.invocations == len(ORGS) + receives - 1, "one organization per invocation, plus the retries"
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
    assert {f.kind for f in revoked.failures} == {"key"}
    # The revoked org's snapshot (listing why) was written once, by its last receive.
    assert inserts(pipeline) == [f"ORG#{o}" for o in sorted(ORGS)]


def test_poller_fanout_retry_after_nothing_collected_stores_the_recovered_data(
    pipeline: LocalPipeline, openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every admin request refused on the first receive (nothing collected); the outage is over by the
    retry, which collects everything, and that is the snapshot stored: one INSERT, no failures."""
    configure_orgs(pipeline, openai, orgs=("alpha",))
    outage = openai.inject("/v1/organization", status=401, times=None)
    drain = SqsEventSource.drain

    def drain_with_recovery(source: SqsEventSource, handler: Handler, context: Any) -> Any:
        def invoke(event: dict[str, Any], ctx: Any) -> Any:
            try:
                return handler(event, ctx)
            finally:
                outage.cancel()  # over before the visibility timeout returns the message

        return drain(source, invoke, context)

    monkeypatch.setattr(SqsEventSource, "drain", drain_with_recovery)
    stats = pipeline.poll_all(POLL_TIME)

    assert outage.hits > 0
    assert (stats.retried, stats.succeeded, stats.dead_lettered) == (1, 1, [])
    snapshot = stored(pipeline, org_id="alpha")
    assert snapshot.failures == ()
    assert snapshot.month_to_date_usd == openai.org.month_to_date_usd()
    assert inserts(pipeline) == ["ORG#alpha"]


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
