"""Assertions on template.yaml after the SAM transform (what CloudFormation would really create).

The template is translated in-process (tests/infra/sam_translate.py), linted with cfn-lint on the
generated JSON, and checked with `sam validate` and the transforming cfn-lint 1.53.x from the SAM venv.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint_file

SNAPSHOT_FILTER = {"eventName": ["INSERT"], "dynamodb": {"NewImage": {"kind": {"S": ["snapshot"]}}}}
ALERT_STATE_ACTIONS = {
    "dynamodb:BatchGetItem",  # AlertStateStore.get_many
    "dynamodb:UpdateItem",  # AlertStateStore.claim / mark_sent / release
}
STREAM_READ_ACTIONS = {"dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"}
SNAPSHOTS_STREAM_ARN = {"Fn::GetAtt": ["SnapshotsTable", "StreamArn"]}
SNAPSHOTS_STREAMS = {"Fn::Sub": "${SnapshotsTable.Arn}/stream/*"}
BASIC_EXECUTION = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
XRAY_WRITE = "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess"
DYNAMODB_STREAM_EXECUTION = "arn:aws:iam::aws:policy/service-role/AWSLambdaDynamoDBExecutionRole"

# cfn-lint findings on the translated template that are accepted, each with the reason. Empty on
# purpose: any warning is a regression until someone adds it here with a justification.
ALLOWED_CFN_LINT_WARNINGS: dict[str, str] = {}


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
def resources_of_type(template: dict[str, Any], type_name: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in template["Resources"].items() if res["Type"] == type_name}


def only_resource_of_type(template: dict[str, Any], type_name: str) -> tuple[str, dict[str, Any]]:
    found = resources_of_type(template, type_name)
    assert len(found) == 1, f"expected exactly one {type_name}, found {sorted(found)}"
    return next(iter(found.items()))


def props(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    properties: dict[str, Any] = template["Resources"][logical_id]["Properties"]
    return properties


def role_of(template: dict[str, Any], function_id: str) -> dict[str, Any]:
    role_ref = props(template, function_id)["Role"]
    assert "Fn::GetAtt" in role_ref, f"{function_id} should use the role SAM generates"
    return props(template, role_ref["Fn::GetAtt"][0])


def inline_policies(role: dict[str, Any]) -> Iterator[tuple[str | None, dict[str, Any]]]:
    """(condition name or None, policy) for each inline policy; `Fn::If` entries are unwrapped."""
    for entry in role.get("Policies", []):
        if "Fn::If" in entry:
            condition, then, otherwise = entry["Fn::If"]
            assert otherwise == {"Ref": "AWS::NoValue"}, "conditional policies must fall back to AWS::NoValue"
            yield condition, then
        else:
            yield None, entry


def statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for _, policy in inline_policies(role):
        body = policy["PolicyDocument"]["Statement"]
        found.extend(body if isinstance(body, list) else [body])
    return found


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def actions(statement: dict[str, Any]) -> set[str]:
    return set(as_list(statement["Action"]))


def mentions(value: Any, logical_id: str) -> bool:
    """Whether an (intrinsic-laden) IAM resource expression refers to the given logical resource."""
    return re.search(rf'"{re.escape(logical_id)}"', json.dumps(value)) is not None


def event_pattern_matches(pattern: Any, event: Any) -> bool:
    """The subset of EventBridge pattern matching the filters use: nested objects and exact-value lists."""
    if isinstance(pattern, dict):
        return isinstance(event, dict) and all(
            key in event and event_pattern_matches(sub, event[key]) for key, sub in pattern.items()
        )
    assert isinstance(pattern, list), f"unsupported pattern element {pattern!r}"
    assert all(isinstance(v, str | int | float) for v in pattern), "only exact-value matching is emulated"
    return event in pattern


def stream_record(event_name: str, kind: str | None) -> dict[str, Any]:
    image = {"pk": {"S": "org#org-1"}, "sk": {"S": "snapshot#2026-11-21T10:00:00Z"}}
    if kind is not None:
        image["kind"] = {"S": kind}
    dynamodb: dict[str, Any] = {"Keys": {"pk": image["pk"], "sk": image["sk"]}, "SequenceNumber": "1"}
    if event_name != "REMOVE":
        dynamodb["NewImage"] = image
    if event_name != "INSERT":
        dynamodb["OldImage"] = image
    return {"eventName": event_name, "eventSource": "aws:dynamodb", "dynamodb": dynamodb}


@pytest.fixture(scope="module")
def stream_mapping(translated: dict[str, Any]) -> dict[str, Any]:
    mappings = resources_of_type(translated, "AWS::Lambda::EventSourceMapping")
    (mapping,) = [m for m in mappings.values() if m["Properties"]["FunctionName"] == {"Ref": "AlerterFunction"}]
    properties: dict[str, Any] = mapping["Properties"]
    return properties


def dynamodb_statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in statements(role) if any(a.startswith("dynamodb:") for a in actions(s))]


# --------------------------------------------------------------------------------------------------
# parameters and globals
# --------------------------------------------------------------------------------------------------
def test_parameters_have_contract_defaults(raw_template: dict[str, Any]) -> None:
    params = raw_template["Parameters"]
    assert params["PollSchedule"]["Default"] == "rate(1 hour)"
    assert params["SsmParameterPrefix"]["Default"] == "spendwatch"
    assert params["ConfigParameterName"]["Default"] == "/spendwatch/config"
    assert int(params["SnapshotRetentionDays"]["Default"]) == 90
    assert params["AlarmEmail"]["Default"] == ""
    assert int(params["LogRetentionDays"]["Default"]) == 30
    assert params["SesSenderIdentity"]["Default"] == ""


def test_parameters_default_config_lives_under_ssm_prefix(raw_template: dict[str, Any]) -> None:
    params = raw_template["Parameters"]
    prefix = params["SsmParameterPrefix"]["Default"]
    assert not prefix.startswith("/"), "the prefix is spliced into ARNs after 'parameter/'"
    assert params["ConfigParameterName"]["Default"].startswith(f"/{prefix}/")


# From each function's measured peak RSS (bench/cold_start.py, docs/performance.md "Memory"); the cost table
# in docs/deploy.md is computed from these (tests/infra/cost_model.py).
MEMORY_MB = {"PollerFunction": 256, "AlerterFunction": 128, "WatchdogFunction": 128, "DigestFunction": 256}


def test_functions_share_runtime_arch_tracing_and_powertools_env(translated: dict[str, Any]) -> None:
    functions = resources_of_type(translated, "AWS::Lambda::Function")
    assert set(functions) == {"PollerFunction", "AlerterFunction", "WatchdogFunction", "DigestFunction"}
    for name, function in functions.items():
        p = function["Properties"]
        assert p["Runtime"] == "python3.13", name
        assert p["Architectures"] == ["arm64"], name
        assert p["TracingConfig"] == {"Mode": "Active"}, name
        assert p["MemorySize"] == MEMORY_MB[name], name
        assert 0 < p["Timeout"] <= 900, name
        assert p["Handler"] == "handler.lambda_handler", name
        env = p["Environment"]["Variables"]
        assert env["POWERTOOLS_SERVICE_NAME"] == "spendwatch", name
        assert env["POWERTOOLS_METRICS_NAMESPACE"] == "Spendwatch", name
        assert env["POWERTOOLS_LOG_LEVEL"] == "INFO", name
        assert env.get("POWERTOOLS_LOGGER_LOG_EVENT", "false") == "false", f"{name} must never log whole events"
        assert len(p["Layers"]) == 1, name
        (layer_ref,) = p["Layers"]
        assert translated["Resources"][layer_ref["Ref"]]["Type"] == "AWS::Lambda::LayerVersion", name


def test_functions_env_names_tables_and_config(translated: dict[str, Any]) -> None:
    poller = props(translated, "PollerFunction")["Environment"]["Variables"]
    assert poller["SNAPSHOTS_TABLE"] == {"Ref": "SnapshotsTable"}
    assert poller["SPENDWATCH_CONFIG_PARAMETER"] == {"Ref": "ConfigParameterName"}
    assert poller["SNAPSHOT_RETENTION_DAYS"] == {"Ref": "SnapshotRetentionDays"}
    alerter = props(translated, "AlerterFunction")["Environment"]["Variables"]
    assert alerter["ALERT_STATE_TABLE"] == {"Ref": "AlertStateTable"}
    assert alerter["SNAPSHOTS_TABLE"] == {"Ref": "SnapshotsTable"}
    assert alerter["SPENDWATCH_CONFIG_PARAMETER"] == {"Ref": "ConfigParameterName"}
    # `spendwatch verify`'s message names the next scheduled poll (runtime.AlerterEnv reads both).
    assert alerter["POLL_SCHEDULE"] == {"Ref": "PollSchedule"}
    assert alerter["POLL_PERIOD_SECONDS"] == {"Ref": "PollPeriodSeconds"}


def test_code_resources_use_makefile_builds(raw_template: dict[str, Any]) -> None:
    resources = raw_template["Resources"]
    for name, code_dir in {
        "PollerFunction": "functions/poller",
        "AlerterFunction": "functions/alerter",
        "CommonLayer": "layers/common",
    }.items():
        assert resources[name]["Metadata"]["BuildMethod"] == "makefile", name
        key = "ContentUri" if name == "CommonLayer" else "CodeUri"
        assert resources[name]["Properties"][key] == code_dir, name


def test_layer_targets_python313_arm64(translated: dict[str, Any]) -> None:
    _, layer = only_resource_of_type(translated, "AWS::Lambda::LayerVersion")
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]
    assert layer["DeletionPolicy"] == "Delete", "old layer versions are not kept (RetentionPolicy: Delete)"


# --------------------------------------------------------------------------------------------------
# poller trigger
# --------------------------------------------------------------------------------------------------
def test_schedule_rule_uses_poll_schedule_parameter(translated: dict[str, Any]) -> None:
    rule = resources_of_type(translated, "AWS::Events::Rule")["PollerFunctionPoll"]  # the watchdog has its own
    p = rule["Properties"]
    assert p["ScheduleExpression"] == {"Ref": "PollSchedule"}
    assert p.get("State", "ENABLED") == "ENABLED"
    (target,) = p["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": ["PollerFunction", "Arn"]}
    assert "Input" not in target, "the poller needs the classic Scheduled Event (its `time` is the idempotency key)"
    assert not resources_of_type(translated, "AWS::Scheduler::Schedule"), "ScheduleV2 sends a different event shape"


def test_poller_event_invoke_config_retries_at_most_once(translated: dict[str, Any]) -> None:
    config = resources_of_type(translated, "AWS::Lambda::EventInvokeConfig")["PollerFunctionEventInvokeConfig"]
    p = config["Properties"]
    assert p["FunctionName"] == {"Ref": "PollerFunction"}
    assert p["MaximumRetryAttempts"] <= 1
    assert 60 <= p["MaximumEventAgeInSeconds"] <= 3600, "a stale poll must not be delivered hours later"


# --------------------------------------------------------------------------------------------------
# alerter stream mapping
# --------------------------------------------------------------------------------------------------
def test_stream_mapping_reads_snapshots_stream_from_trim_horizon(stream_mapping: dict[str, Any]) -> None:
    assert stream_mapping["EventSourceArn"] == {"Fn::GetAtt": ["SnapshotsTable", "StreamArn"]}
    assert stream_mapping["FunctionName"] == {"Ref": "AlerterFunction"}
    assert stream_mapping["StartingPosition"] == "TRIM_HORIZON"
    assert 1 <= stream_mapping["BatchSize"] <= 100
    assert 0 <= stream_mapping.get("MaximumBatchingWindowInSeconds", 0) <= 30


def test_stream_mapping_reports_partial_failures_and_bisects(stream_mapping: dict[str, Any]) -> None:
    assert stream_mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert stream_mapping["BisectBatchOnFunctionError"] is True


def test_stream_mapping_retries_are_finite(stream_mapping: dict[str, Any]) -> None:
    # The defaults (-1) would retry a poison batch until the record expires, blocking the shard for 24 h.
    assert 1 <= stream_mapping["MaximumRetryAttempts"] <= 10
    assert 60 <= stream_mapping["MaximumRecordAgeInSeconds"] < 86400


def test_stream_mapping_sends_failed_batches_to_dlq(translated: dict[str, Any], stream_mapping: dict[str, Any]) -> None:
    destination = stream_mapping["DestinationConfig"]["OnFailure"]["Destination"]
    assert destination == {"Fn::GetAtt": ["AlerterDeadLetterQueue", "Arn"]}
    dlq = props(translated, "AlerterDeadLetterQueue")
    assert dlq["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert dlq["SqsManagedSseEnabled"] is True
    sqs = [
        s for s in statements(role_of(translated, "AlerterFunction")) if any(a.startswith("sqs:") for a in actions(s))
    ]
    assert [(actions(s), s["Resource"]) for s in sqs] == [({"sqs:SendMessage"}, destination)], (
        "the alerter may only send failed-batch descriptions, to exactly its DLQ"
    )


def test_stream_mapping_is_an_explicit_resource_not_a_sam_event(
    raw_template: dict[str, Any], translated: dict[str, Any]
) -> None:
    """A SAM `Type: DynamoDB` event would attach AWSLambdaDynamoDBExecutionRole (stream reads on `*`)."""
    for name, resource in raw_template["Resources"].items():
        for event in (resource.get("Properties") or {}).get("Events", {}).values():
            assert event["Type"] not in {"DynamoDB", "Kinesis", "SQS", "MSK"}, f"{name}: use an explicit mapping"
    mappings = {
        name: m
        for name, m in resources_of_type(translated, "AWS::Lambda::EventSourceMapping").items()
        if m["Properties"]["FunctionName"] == {"Ref": "AlerterFunction"}
    }
    # The id SAM generated for the former `Snapshots` event: a deployed stack updates that mapping in place
    # instead of creating a second mapping of the same stream and function, which Lambda refuses.
    assert set(mappings) == {"AlerterFunctionSnapshots"}
    assert raw_template["Resources"]["AlerterFunctionSnapshots"]["Type"] == "AWS::Lambda::EventSourceMapping"


def test_stream_mapping_is_created_after_the_role_and_its_policies(translated: dict[str, Any]) -> None:
    """Lambda checks the execution role's stream permissions when the mapping is created."""
    mapping = translated["Resources"]["AlerterFunctionSnapshots"]
    role_id = props(translated, "AlerterFunction")["Role"]["Fn::GetAtt"][0]
    assert role_id in as_list(mapping.get("DependsOn", [])), "wait for the role explicitly"
    # The stream statements are inline policies of that role, so the role's completion includes them.
    assert not resources_of_type(translated, "AWS::IAM::Policy"), "a separate policy resource needs its own DependsOn"
    assert any(actions(s) >= STREAM_READ_ACTIONS for s in statements(translated["Resources"][role_id]["Properties"]))


def test_alerter_role_reads_only_the_snapshots_stream(translated: dict[str, Any]) -> None:
    stream = [
        s
        for s in dynamodb_statements(role_of(translated, "AlerterFunction"))
        if actions(s) & (STREAM_READ_ACTIONS | {"dynamodb:ListStreams"})
    ]
    found = {json.dumps(s["Resource"], sort_keys=True): actions(s) for s in stream}
    assert len(found) == len(stream), "one statement per resource"
    assert found == {
        json.dumps(SNAPSHOTS_STREAM_ARN, sort_keys=True): STREAM_READ_ACTIONS,
        # ListStreams: AWS's documented scope for a Lambda stream consumer (table/<name>/stream/*), never `*`.
        json.dumps(SNAPSHOTS_STREAMS, sort_keys=True): {"dynamodb:ListStreams"},
    }
    for function in ("PollerFunction", "WatchdogFunction"):
        for statement in dynamodb_statements(role_of(translated, function)):
            assert not actions(statement) & (STREAM_READ_ACTIONS | {"dynamodb:ListStreams"}), (function, statement)


def test_stream_filter_pattern_is_insert_snapshot_only(stream_mapping: dict[str, Any]) -> None:
    filters = stream_mapping["FilterCriteria"]["Filters"]
    assert len(filters) == 1
    for entry in filters:
        assert isinstance(entry["Pattern"], str), "Lambda wants the pattern as a JSON string"
        assert json.loads(entry["Pattern"]) == SNAPSHOT_FILTER


@pytest.mark.parametrize(
    ("event_name", "kind", "delivered"),
    [
        ("INSERT", "snapshot", True),
        ("INSERT", "marker", False),
        ("INSERT", None, False),
        ("MODIFY", "snapshot", False),
        ("REMOVE", "snapshot", False),  # TTL expiry of old snapshots
    ],
)
def test_stream_filter_pattern_delivers_only_new_snapshots(
    stream_mapping: dict[str, Any], event_name: str, kind: str | None, delivered: bool
) -> None:
    patterns = [json.loads(f["Pattern"]) for f in stream_mapping["FilterCriteria"]["Filters"]]
    record = stream_record(event_name, kind)
    assert any(event_pattern_matches(p, record) for p in patterns) is delivered


# --------------------------------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("table", ["SnapshotsTable", "AlertStateTable"])
def test_tables_have_keys_ttl_pitr_and_sse(translated: dict[str, Any], table: str) -> None:
    resource = translated["Resources"][table]
    assert resource["Type"] == "AWS::DynamoDB::Table"
    p = resource["Properties"]
    assert p["BillingMode"] == "PAY_PER_REQUEST"
    assert p["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert sorted(p["AttributeDefinitions"], key=lambda a: a["AttributeName"]) == [
        {"AttributeName": "pk", "AttributeType": "S"},
        {"AttributeName": "sk", "AttributeType": "S"},
    ]
    assert p["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert p["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert p["SSESpecification"]["SSEEnabled"] is True
    assert resource["DeletionPolicy"] == "Retain", "snapshots and alert state survive a stack delete/replace"


def test_snapshots_table_streams_new_and_old_images(translated: dict[str, Any]) -> None:
    assert props(translated, "SnapshotsTable")["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}


def test_alert_state_table_has_no_stream(translated: dict[str, Any]) -> None:
    assert "StreamSpecification" not in props(translated, "AlertStateTable")


# --------------------------------------------------------------------------------------------------
# IAM
# --------------------------------------------------------------------------------------------------
def _is_wildcard_resource(resource: Any) -> bool:
    """`*`, or an ARN (plain or in a `Fn::Sub`) whose resource part is only a wildcard: `...:*`,
    `...:table/*`, `...:parameter/*`."""
    if resource == "*":
        return True
    text = resource.get("Fn::Sub") if isinstance(resource, dict) else resource
    text = text[0] if isinstance(text, list) else text  # the [template, variables] form of Fn::Sub
    return isinstance(text, str) and re.search(r":([a-z-]+/)?\*$", text) is not None


@pytest.mark.parametrize("function", ["PollerFunction", "AlerterFunction", "WatchdogFunction", "DigestFunction"])
def test_function_roles_have_no_wildcard_resource(translated: dict[str, Any], function: str) -> None:
    """X-Ray segment upload cannot be scoped: SAM adds it as a managed policy, the only `*` these roles get."""
    for statement in statements(role_of(translated, function)):
        for resource in as_list(statement["Resource"]):
            assert not _is_wildcard_resource(resource), statement


@pytest.mark.parametrize("function", ["PollerFunction", "AlerterFunction", "WatchdogFunction", "DigestFunction"])
def test_function_roles_managed_policies_are_only_sams(translated: dict[str, Any], function: str) -> None:
    """Logs through AWSLambdaBasicExecutionRole, traces through X-Ray; no AWSLambdaDynamoDBExecutionRole
    (stream reads on `*`) and no AWSLambdaSQSQueueExecutionRole (queue reads on `*`)."""
    assert set(role_of(translated, function)["ManagedPolicyArns"]) == {BASIC_EXECUTION, XRAY_WRITE}
    assert DYNAMODB_STREAM_EXECUTION not in role_of(translated, function)["ManagedPolicyArns"]


def test_poller_role_writes_only_the_snapshots_table(translated: dict[str, Any]) -> None:
    role = role_of(translated, "PollerFunction")
    assert not mentions(role, "AlertStateTable"), "the poller has no business with alert state"
    dynamodb = dynamodb_statements(role)
    assert [(actions(s), s["Resource"]) for s in dynamodb] == [
        ({"dynamodb:PutItem"}, {"Fn::GetAtt": ["SnapshotsTable", "Arn"]})
    ], "SnapshotStore.put_snapshot only (tests/infra/test_template_iam.py derives it from store.py)"


def test_poller_role_reads_only_openai_keys_and_the_config(translated: dict[str, Any]) -> None:
    role = role_of(translated, "PollerFunction")
    non_data = [s for s in statements(role) if not any(a.startswith(("dynamodb:", "sqs:")) for a in actions(s))]
    assert len(non_data) == 1  # the poll queue's statements: tests/infra/test_template_poller.py
    (ssm,) = non_data
    assert ssm["Effect"] == "Allow"
    assert actions(ssm) == {"ssm:GetParameter"}
    assert ssm["Resource"] == [
        {
            "Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:"
            "parameter/${SsmParameterPrefix}/*/openai-*"
        },
        {"Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter${ConfigParameterName}"},
    ]


def test_alerter_role_alert_state_actions_are_exactly_these(translated: dict[str, Any]) -> None:
    on_state = [
        s for s in statements(role_of(translated, "AlerterFunction")) if mentions(s["Resource"], "AlertStateTable")
    ]
    assert len(on_state) == 1
    (statement,) = on_state
    assert actions(statement) == ALERT_STATE_ACTIONS
    assert statement["Resource"] == {"Fn::GetAtt": ["AlertStateTable", "Arn"]}


def test_alerter_role_queries_the_snapshots_table_and_nothing_more(translated: dict[str, Any]) -> None:
    on_table = [
        s
        for s in dynamodb_statements(role_of(translated, "AlerterFunction"))
        if s["Resource"] == {"Fn::GetAtt": ["SnapshotsTable", "Arn"]}
    ]
    assert [actions(s) for s in on_table] == [{"dynamodb:Query"}], "SnapshotStore.recent_snapshots"
    assert "index/" not in json.dumps(role_of(translated, "AlerterFunction")), "the tables have no indexes"


def test_alerter_role_only_reads_snapshots(translated: dict[str, Any]) -> None:
    on_snapshots = [
        s for s in statements(role_of(translated, "AlerterFunction")) if mentions(s["Resource"], "SnapshotsTable")
    ]
    assert on_snapshots
    for statement in on_snapshots:
        assert not actions(statement) & {
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:DeleteItem",
            "dynamodb:BatchWriteItem",
        }, statement


def test_alerter_role_ses_statement_is_conditional_and_scoped(translated: dict[str, Any]) -> None:
    role = role_of(translated, "AlerterFunction")
    ses = [
        (condition, statement)
        for condition, policy in inline_policies(role)
        for statement in as_list(policy["PolicyDocument"]["Statement"])
        if any(a.startswith("ses:") for a in actions(statement))
    ]
    assert len(ses) == 1
    ((condition, statement),) = ses
    assert condition == "HasSesSender"
    assert translated["Conditions"]["HasSesSender"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "SesSenderIdentity"}, ""]}]}
    assert actions(statement) == {"ses:SendEmail"}
    assert as_list(statement["Resource"])[0] == {
        "Fn::Sub": "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:identity/${SesSenderIdentity}"
    }


def test_alerter_role_reads_only_slack_credentials_and_the_config(translated: dict[str, Any]) -> None:
    ssm = [
        s for s in statements(role_of(translated, "AlerterFunction")) if any(a.startswith("ssm:") for a in actions(s))
    ]
    assert len(ssm) == 1
    assert actions(ssm[0]) == {"ssm:GetParameter"}
    subs = [r["Fn::Sub"] for r in ssm[0]["Resource"]]
    assert [s.split(":parameter", 1)[1] for s in subs] == [
        "/${SsmParameterPrefix}/slack/*",
        "/${SsmParameterPrefix}/channels/*",
        "${ConfigParameterName}",
    ]


# --------------------------------------------------------------------------------------------------
# logs, alarms, outputs
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("log_group", "function"), [("PollerLogGroup", "PollerFunction"), ("AlerterLogGroup", "AlerterFunction")]
)
def test_log_groups_have_retention(translated: dict[str, Any], log_group: str, function: str) -> None:
    p = props(translated, log_group)
    assert p["LogGroupName"] == {"Fn::Sub": f"/aws/lambda/${{{function}}}"}
    assert p["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_alarm_email_subscription_is_conditional(translated: dict[str, Any]) -> None:
    _, subscription = only_resource_of_type(translated, "AWS::SNS::Subscription")
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"]["Protocol"] == "email"
    assert subscription["Properties"]["TopicArn"] == {"Ref": "AlarmTopic"}


@pytest.mark.parametrize(
    ("alarm", "watched"),
    [
        ("DeadLetterQueueAlarm", ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", "Maximum")),
        ("AlerterErrorsAlarm", ("AWS/Lambda", "Errors", "FunctionName", "Sum")),
        ("AlerterIteratorAgeAlarm", ("AWS/Lambda", "IteratorAge", "FunctionName", "Maximum")),
        ("PollerErrorsAlarm", ("AWS/Lambda", "Errors", "FunctionName", "Sum")),
        ("PollerStoppedAlarm", ("Spendwatch", "SnapshotsWritten", "service", "Sum")),
    ],
)
def test_alarms_watch_the_right_metric_and_notify_topic(
    translated: dict[str, Any], alarm: str, watched: tuple[str, str, str, str]
) -> None:
    """`watched` is (namespace, metric, the one dimension's name, statistic)."""
    p = props(translated, alarm)
    dimensions = [d["Name"] for d in p["Dimensions"]]
    assert (p["Namespace"], p["MetricName"], *dimensions, p["Statistic"]) == watched
    assert p["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    assert p["OKActions"] == [{"Ref": "AlarmTopic"}]


def test_alarms_fire_on_first_problem(translated: dict[str, Any]) -> None:
    for alarm, threshold in {
        "DeadLetterQueueAlarm": 0,
        "AlerterErrorsAlarm": 0,
        "PollerErrorsAlarm": 0,
        "AlerterIteratorAgeAlarm": 3_600_000,  # milliseconds
    }.items():
        p = props(translated, alarm)
        assert (p["ComparisonOperator"], p["Threshold"]) == ("GreaterThanThreshold", threshold), alarm
        assert p["TreatMissingData"] == "notBreaching", alarm
    assert props(translated, "DeadLetterQueueAlarm")["Dimensions"][0]["Value"] == {
        "Fn::GetAtt": ["AlerterDeadLetterQueue", "QueueName"]
    }


def test_poller_stopped_alarm_treats_missing_data_as_breaching(translated: dict[str, Any]) -> None:
    p = props(translated, "PollerStoppedAlarm")
    assert p["TreatMissingData"] == "breaching"
    assert p["Dimensions"] == [{"Name": "service", "Value": "spendwatch"}]
    assert (p["ComparisonOperator"], p["Threshold"]) == ("LessThanThreshold", 1)
    assert p["Period"] == {"Ref": "PollPeriodSeconds"}
    assert p["EvaluationPeriods"] * int(translated["Parameters"]["PollPeriodSeconds"]["MaxValue"]) <= 86400


def test_outputs_expose_contract_names(translated: dict[str, Any]) -> None:
    assert set(translated["Outputs"]) >= {
        "SnapshotsTableName",
        "AlertStateTableName",
        "SnapshotsStreamArn",
        "DeadLetterQueueUrl",
        "PollerFunctionName",
        "AlerterFunctionName",
        "AlarmTopicArn",
    }
    assert translated["Outputs"]["SnapshotsStreamArn"]["Value"] == {"Fn::GetAtt": ["SnapshotsTable", "StreamArn"]}


# --------------------------------------------------------------------------------------------------
# linters and the SAM CLI
# --------------------------------------------------------------------------------------------------
def test_cfn_lint_translated_template_has_no_errors(translated: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "translated.json"
    out.write_text(json.dumps(translated, indent=1), encoding="utf-8")
    matches = lint_file(out, ManualArgs(regions=["us-east-1"]))
    findings = [f"{m.rule.id} line {m.linenumber}: {m.message}" for m in matches]
    errors = [f for f, m in zip(findings, matches, strict=True) if m.rule.id.startswith("E")]
    warnings = [
        f
        for f, m in zip(findings, matches, strict=True)
        if m.rule.id.startswith("W") and m.rule.id not in ALLOWED_CFN_LINT_WARNINGS
    ]
    assert errors == []
    assert warnings == []


def test_sam_validate_passes(sam_binary: Path, sam_env: dict[str, str], repo_root: Path) -> None:
    result = subprocess.run(
        [str(sam_binary), "validate", "--region", "us-east-1", "--template", str(repo_root / "template.yaml")],
        cwd=repo_root,
        env=sam_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr


def test_sam_venv_cfn_lint_transforms_and_passes(sam_binary: Path, sam_env: dict[str, str], repo_root: Path) -> None:
    cfn_lint = sam_binary.parent / "cfn-lint"
    version = subprocess.run(
        [str(cfn_lint), "--version"], env=sam_env, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    found = re.search(r"(\d+)\.(\d+)\.(\d+)", version)
    assert found, version
    # From 1.54.0 on, cfn-lint no longer runs the SAM transform and misses every error inside Events.
    assert (int(found[1]), int(found[2])) <= (1, 53), f"{version.strip()} does not transform SAM; pin 1.53.3"
    result = subprocess.run(
        [str(cfn_lint), "template.yaml"],
        cwd=repo_root,
        env=sam_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
