"""The SNS channel through moto's server: Publish with message attributes, read back through subscribed SQS
queues, one of them behind a subscription filter policy on severity."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import boto3
import pytest

from spendwatch.channels.sns import SnsSender
from spendwatch.core.alerts import Reason
from spendwatch.core.errors import DeliveryError
from spendwatch.devtools.aws_local import MotoServer
from tests.unit.test_channels_payloads import budget, message

REGION = "us-east-1"


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


def client(moto: MotoServer, service: str) -> Any:
    return boto3.client(
        service,  # type: ignore[call-overload]
        region_name=REGION,
        endpoint_url=moto.endpoint_url,
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )


@pytest.fixture
def topic(moto: MotoServer) -> tuple[str, str, str]:
    """(topic ARN, URL of a queue getting everything, URL of a queue getting only critical alerts)."""
    moto.reset()
    sns, sqs = client(moto, "sns"), client(moto, "sqs")
    arn = sns.create_topic(Name="spend-alerts")["TopicArn"]
    urls = []
    for name, policy in (("all", None), ("critical", {"severity": ["critical"]})):
        url = sqs.create_queue(QueueName=name)["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        attributes = {"FilterPolicy": json.dumps(policy)} if policy else {}
        sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn, Attributes=attributes)
        urls.append(url)
    return arn, urls[0], urls[1]


def received(moto: MotoServer, url: str) -> list[dict[str, Any]]:
    sqs = client(moto, "sqs")
    found = []
    for _ in range(3):
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        found += [json.loads(m["Body"]) for m in batch]
        if not batch:
            break
    return found


def sender(moto: MotoServer, arn: str) -> SnsSender:
    return SnsSender("sns", topic_arn=arn, client=lambda: client(moto, "sns"), sleep=lambda s: None)


def test_sns_publishes_with_attributes_the_subscriber_reads_back(moto: MotoServer, topic: tuple[str, str, str]) -> None:
    arn, everything, critical = topic
    sender(moto, arn).send(message(budget(Decimal(100))))
    [envelope] = received(moto, everything)
    assert envelope["TopicArn"] == arn
    assert envelope["MessageAttributes"]["severity"] == {"Type": "String", "Value": "error"}
    assert envelope["MessageAttributes"]["org"]["Value"] == "acme"
    document = json.loads(envelope["Message"])  # the sqs protocol's part of the JSON message structure
    assert document["schema"] == "spendwatch.alert/v1" and document["alerts"][0]["facts"]["spent_usd"] == "510.10"
    assert received(moto, critical) == [], "the filter policy keeps an error off the critical-only queue"


def test_sns_a_filter_policy_on_severity_lets_critical_through(moto: MotoServer, topic: tuple[str, str, str]) -> None:
    from spendwatch.core.alerts import Alert, Observation

    arn, _, critical = topic
    facts: dict[str, Decimal | str] = {
        "spent_usd": Decimal(510),
        "limit_usd": Decimal(500),
        "percent": Decimal(102),
        "limit_source": "admin_api",
        "period": "2026-11",
    }
    observation = Observation("hard_limit", "hard_limit#org#2026-11", Decimal(100), "Hard limit", facts)
    hard = Alert(observation, Reason.FIRST_CROSSING, Decimal(100))
    sender(moto, arn).send(message(hard))
    [envelope] = received(moto, critical)
    assert envelope["MessageAttributes"]["severity"]["Value"] == "critical"


def test_sns_a_missing_topic_is_a_permanent_named_failure(moto: MotoServer, topic: tuple[str, str, str]) -> None:
    missing = topic[0].replace("spend-alerts", "deleted-topic")
    with pytest.raises(DeliveryError) as caught:
        sender(moto, missing).send(message(budget(None)))
    assert not caught.value.retryable and "NotFound" in caught.value.reason


def test_sns_an_unreachable_endpoint_is_retried_then_fails_retryably() -> None:
    from spendwatch.devtools.faults import refused_url

    url = refused_url()
    sns = SnsSender(
        "sns",
        topic_arn="arn:aws:sns:us-east-1:123456789012:spend-alerts",
        client=lambda: boto3.client(
            "sns", region_name=REGION, endpoint_url=url, aws_access_key_id="x", aws_secret_access_key="x"
        ),
        sleep=lambda s: None,
    )
    with pytest.raises(DeliveryError) as caught:
        sns.send(message(budget(None)))
    assert caught.value.retryable and caught.value.reason == "connection" and sns.calls == 3
