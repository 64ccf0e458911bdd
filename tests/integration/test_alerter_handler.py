"""The alerter handler called with Lambda-shaped stream events from `events/`."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from spendwatch.aws.batch import BatchProcessingError
from spendwatch.devtools.fake_slack import FakeSlack
from spendwatch.devtools.pipeline import FakeLambdaContext, LocalPipeline

EVENTS = Path(__file__).resolve().parents[2] / "events"
CONFIG = """
organizations:
  - {id: acme, name: Acme Corp, budget: {monthly_usd: 500}, channels: [slack]}
  - {id: beta, name: Beta, budget: {monthly_usd: 100}, channels: [slack]}
channels:
  slack: {type: slack}
"""


def event(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return loaded


@pytest.fixture
def alerter(pipeline: LocalPipeline, slack: FakeSlack) -> Any:
    pipeline.configure(CONFIG, {"/spendwatch/slack/webhook-url": slack.webhook_url})
    return pipeline.alerter


def test_alerter_handler_sample_insert_sends_one_message(alerter: Any, slack: FakeSlack) -> None:
    response = alerter.lambda_handler(event("snapshot_insert.json"), FakeLambdaContext())
    assert response == {"batchItemFailures": []}
    assert len(slack.messages) == 1
    assert "Acme Corp" in (slack.messages[0].text or "")


def test_alerter_handler_ignores_modify_and_ttl_remove(alerter: Any, slack: FakeSlack) -> None:
    response = alerter.lambda_handler(event("stream_modify_remove.json"), FakeLambdaContext())
    assert response == {"batchItemFailures": []}
    assert slack.messages == []


def test_alerter_handler_reports_only_the_poison_record(alerter: Any, slack: FakeSlack) -> None:
    good = event("snapshot_insert.json")["Records"][0]
    poison = copy.deepcopy(good)
    poison["dynamodb"]["SequenceNumber"] = "111100000000000000002"
    poison["dynamodb"]["NewImage"]["schema_version"] = {"N": "99"}
    other = copy.deepcopy(good)
    other["dynamodb"]["SequenceNumber"] = "111100000000000000003"
    for image in (other["dynamodb"]["NewImage"], other["dynamodb"]["Keys"]):
        image["pk"] = {"S": "ORG#beta"}
    other["dynamodb"]["NewImage"]["org_id"] = {"S": "beta"}
    other["dynamodb"]["NewImage"]["org_name"] = {"S": "Beta"}
    response = alerter.lambda_handler({"Records": [good, poison, other]}, FakeLambdaContext())
    assert response == {"batchItemFailures": [{"itemIdentifier": "111100000000000000002"}]}
    assert sorted((m.text or "").splitlines()[0] for m in slack.messages) == [
        "OpenAI spend alert: Acme Corp",
        "OpenAI spend alert: Beta",
    ]


class DwindlingContext(FakeLambdaContext):
    """Plenty of time for the first record, then less than the safety margin."""

    def __init__(self, remaining: list[int]) -> None:
        super().__init__()
        self.remaining = remaining

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining.pop(0) if len(self.remaining) > 1 else self.remaining[0]


def test_alerter_handler_fails_remaining_records_fast_when_out_of_time(alerter: Any, slack: FakeSlack) -> None:
    records = event("snapshot_insert.json")["Records"]
    second = copy.deepcopy(records[0])
    second["dynamodb"]["SequenceNumber"] = "111100000000000000002"
    for image in (second["dynamodb"]["NewImage"], second["dynamodb"]["Keys"]):
        image["pk"] = {"S": "ORG#beta"}
    second["dynamodb"]["NewImage"]["org_id"] = {"S": "beta"}
    response = alerter.lambda_handler({"Records": [*records, second]}, DwindlingContext([60_000, 500]))
    assert response == {"batchItemFailures": [{"itemIdentifier": "111100000000000000002"}]}
    assert len(slack.messages) == 1


def test_alerter_handler_whole_batch_failure_raises_so_the_mapping_retries(alerter: Any, slack: FakeSlack) -> None:
    with pytest.raises(BatchProcessingError, match="All records failed"):
        alerter.lambda_handler(event("snapshot_insert.json"), FakeLambdaContext(remaining_ms=500))
    assert slack.messages == []
