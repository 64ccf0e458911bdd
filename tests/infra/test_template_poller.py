"""The poller's fan-out in template.yaml after the SAM transform: poll queue, its dead-letter queue and
redrive, the SQS event mapping, and least-privilege queue permissions (no `*` resources)."""

from __future__ import annotations

from typing import Any

import pytest

from .test_template import (
    actions,
    as_list,
    mentions,
    props,
    resources_of_type,
    role_of,
    statements,
)

SQS_CONSUME = {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ChangeMessageVisibility"}
QUEUE_ARN = {"Fn::GetAtt": ["PollRequestsQueue", "Arn"]}


@pytest.fixture(scope="module")
def poll_mapping(translated: dict[str, Any]) -> dict[str, Any]:
    mappings = [
        m["Properties"]
        for m in resources_of_type(translated, "AWS::Lambda::EventSourceMapping").values()
        if m["Properties"]["FunctionName"] == {"Ref": "PollerFunction"}
    ]
    assert len(mappings) == 1, "the poller consumes exactly one queue"
    mapping: dict[str, Any] = mappings[0]
    return mapping


def test_template_poller_queue_visibility_covers_six_function_timeouts(translated: dict[str, Any]) -> None:
    queue = props(translated, "PollRequestsQueue")
    timeout = props(translated, "PollerFunction")["Timeout"]
    assert queue["VisibilityTimeout"] >= 6 * timeout
    assert queue["SqsManagedSseEnabled"] is True


def test_template_poller_queue_redrives_to_its_dead_letter_queue(translated: dict[str, Any]) -> None:
    queue = props(translated, "PollRequestsQueue")
    redrive = queue["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["PollRequestsDeadLetterQueue", "Arn"]}
    # AWS advises at least 5 for an SQS event source (a throttled receive counts), and a poll is retried
    # within the hour, not for hours.
    assert 5 <= redrive["maxReceiveCount"] <= 6
    assert redrive["maxReceiveCount"] * queue["VisibilityTimeout"] <= 3600
    # A message must be able to use every receive before it expires, or it vanishes without a dead letter.
    assert queue["MessageRetentionPeriod"] > redrive["maxReceiveCount"] * queue["VisibilityTimeout"]
    dlq = props(translated, "PollRequestsDeadLetterQueue")
    assert dlq["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert dlq["SqsManagedSseEnabled"] is True
    assert "RedrivePolicy" not in dlq


def test_template_poller_sqs_mapping_is_one_org_per_invocation_with_partial_failures(
    poll_mapping: dict[str, Any],
) -> None:
    assert poll_mapping["EventSourceArn"] == QUEUE_ARN
    assert poll_mapping["BatchSize"] == 1, "one organization per invocation isolates each poll"
    assert poll_mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert 2 <= poll_mapping["ScalingConfig"]["MaximumConcurrency"] <= 1000
    assert poll_mapping.get("Enabled", True) is True


def test_template_poller_env_names_the_poll_queue(translated: dict[str, Any]) -> None:
    env = props(translated, "PollerFunction")["Environment"]["Variables"]
    assert env["POLL_QUEUE_URL"] == {"Ref": "PollRequestsQueue"}


def test_template_poller_knows_the_queue_max_receive_count(translated: dict[str, Any]) -> None:
    """A poll that collected nothing writes its failure snapshot only on the last receive."""
    env = props(translated, "PollerFunction")["Environment"]["Variables"]
    redrive = props(translated, "PollRequestsQueue")["RedrivePolicy"]
    assert isinstance(env["POLL_MAX_RECEIVE_COUNT"], str), "Lambda environment values are strings"
    assert int(env["POLL_MAX_RECEIVE_COUNT"]) == int(redrive["maxReceiveCount"])


def test_template_poller_may_send_only_to_the_poll_queue(translated: dict[str, Any]) -> None:
    sqs = [
        s for s in statements(role_of(translated, "PollerFunction")) if any(a.startswith("sqs:") for a in actions(s))
    ]
    sends = [s for s in sqs if "sqs:SendMessage" in actions(s)]
    assert len(sends) == 1
    assert actions(sends[0]) == {"sqs:SendMessage"}
    assert sends[0]["Resource"] == QUEUE_ARN
    consumes = [s for s in sqs if s not in sends]
    assert len(consumes) == 1
    assert actions(consumes[0]) == SQS_CONSUME
    assert consumes[0]["Resource"] == QUEUE_ARN
    assert not mentions(sqs, "PollRequestsDeadLetterQueue"), "nothing reads or writes the poll DLQ but SQS"
    assert not mentions(sqs, "AlerterDeadLetterQueue")


def test_template_poller_role_has_no_star_resource_and_no_wide_sqs_managed_policy(translated: dict[str, Any]) -> None:
    role = role_of(translated, "PollerFunction")
    for statement in statements(role):
        for resource in as_list(statement["Resource"]):
            assert resource != "*", statement
    assert not any("SQSQueueExecutionRole" in arn for arn in role["ManagedPolicyArns"])


def test_template_poller_dead_letter_alarm_notifies_the_alarm_topic(translated: dict[str, Any]) -> None:
    alarm = props(translated, "PollDeadLetterQueueAlarm")
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        "Maximum",
    )
    assert alarm["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["PollRequestsDeadLetterQueue", "QueueName"]}}
    ]
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    assert alarm["OKActions"] == [{"Ref": "AlarmTopic"}]


def test_template_poller_outputs_name_the_queues(translated: dict[str, Any]) -> None:
    outputs = translated["Outputs"]
    assert outputs["PollRequestsQueueUrl"]["Value"] == {"Ref": "PollRequestsQueue"}
    assert outputs["PollDeadLetterQueueUrl"]["Value"] == {"Ref": "PollRequestsDeadLetterQueue"}


def test_template_poller_schedule_still_invokes_the_poller_with_the_classic_event(translated: dict[str, Any]) -> None:
    rules = resources_of_type(translated, "AWS::Events::Rule")
    targets = [
        t
        for rule in rules.values()
        for t in rule["Properties"]["Targets"]
        if t["Arn"] == {"Fn::GetAtt": ["PollerFunction", "Arn"]}
    ]
    assert len(targets) == 1, "one schedule drives the poller"
    assert "Input" not in targets[0], "the Scheduled Event's `time` is the snapshot key"
