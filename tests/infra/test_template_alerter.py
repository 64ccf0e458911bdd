"""Template assertions for the delivery side: the watchdog function, its schedule, role, logs and alarm,
and the SES permission of every function that sends alerts (translated template, as deployed)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from .test_template import (
    BASIC_EXECUTION,
    XRAY_WRITE,
    actions,
    as_list,
    inline_policies,
    mentions,
    props,
    resources_of_type,
    role_of,
    statements,
)

SENDERS = ("AlerterFunction", "WatchdogFunction")
SES_IDENTITY_ARN = {
    "Fn::Sub": "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:identity/${SesSenderIdentity}"
}
SES_CONFIGURATION_SET_ARN = {
    "Fn::If": [
        "HasSesConfigurationSet",
        {
            "Fn::Sub": "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:"
            "configuration-set/${SesConfigurationSet}"
        },
        {"Ref": "AWS::NoValue"},
    ]
}


def test_watchdog_function_is_built_like_the_others(raw_template: dict[str, Any], translated: dict[str, Any]) -> None:
    raw = raw_template["Resources"]["WatchdogFunction"]
    assert raw["Metadata"]["BuildMethod"] == "makefile"
    assert raw["Properties"]["CodeUri"] == "functions/watchdog"
    p = props(translated, "WatchdogFunction")
    assert p["Handler"] == "handler.lambda_handler"
    assert (p["Runtime"], p["Architectures"]) == ("python3.13", ["arm64"])
    assert p["Layers"] == props(translated, "AlerterFunction")["Layers"], "the same CommonLayer version"
    assert 0 < p["Timeout"] <= 120


def test_watchdog_env_names_tables_config_and_poll_period(translated: dict[str, Any]) -> None:
    env = props(translated, "WatchdogFunction")["Environment"]["Variables"]
    assert env["ALERT_STATE_TABLE"] == {"Ref": "AlertStateTable"}
    assert env["SNAPSHOTS_TABLE"] == {"Ref": "SnapshotsTable"}
    assert env["SPENDWATCH_CONFIG_PARAMETER"] == {"Ref": "ConfigParameterName"}
    assert env["POLL_PERIOD_SECONDS"] == {"Ref": "PollPeriodSeconds"}
    assert env.get("POWERTOOLS_LOGGER_LOG_EVENT", "false") == "false"


def test_watchdog_runs_on_its_own_schedule(raw_template: dict[str, Any], translated: dict[str, Any]) -> None:
    assert raw_template["Parameters"]["WatchdogSchedule"]["Default"] == "rate(1 hour)"
    rules = [
        r
        for r in resources_of_type(translated, "AWS::Events::Rule").values()
        if r["Properties"]["Targets"][0]["Arn"] == {"Fn::GetAtt": ["WatchdogFunction", "Arn"]}
    ]
    assert len(rules) == 1
    assert rules[0]["Properties"]["ScheduleExpression"] == {"Ref": "WatchdogSchedule"}
    assert rules[0]["Properties"].get("State", "ENABLED") == "ENABLED"
    config = resources_of_type(translated, "AWS::Lambda::EventInvokeConfig")["WatchdogFunctionEventInvokeConfig"]
    assert config["Properties"]["MaximumRetryAttempts"] <= 1


def test_watchdog_role_is_least_privilege(translated: dict[str, Any]) -> None:
    role = role_of(translated, "WatchdogFunction")
    assert set(role["ManagedPolicyArns"]) == {BASIC_EXECUTION, XRAY_WRITE}, "no stream or SQS access"
    found: dict[str, set[str]] = {}
    for statement in statements(role):
        assert statement["Effect"] == "Allow"
        for resource in as_list(statement["Resource"]):
            assert resource != "*", statement
            assert not (isinstance(resource, str) and resource.endswith(":*")), statement
        target = json.dumps(statement["Resource"])
        found.setdefault(target, set()).update(actions(statement))
    snapshots = json.dumps({"Fn::GetAtt": ["SnapshotsTable", "Arn"]})
    state = json.dumps({"Fn::GetAtt": ["AlertStateTable", "Arn"]})
    assert found[snapshots] == {"dynamodb:Query"}, "the newest snapshot's key, nothing else"
    assert found[state] == {"dynamodb:BatchGetItem", "dynamodb:UpdateItem"}
    ssm = [s for s in statements(role) if any(a.startswith("ssm:") for a in actions(s))]
    assert len(ssm) == 1 and actions(ssm[0]) == {"ssm:GetParameter"}
    assert [r["Fn::Sub"].split(":parameter", 1)[1] for r in ssm[0]["Resource"]] == [
        "/${SsmParameterPrefix}/slack/*",
        "/${SsmParameterPrefix}/channels/*",
        "${ConfigParameterName}",
    ], "Slack credentials and the config, never an OpenAI key"
    assert not any(mentions(s["Resource"], "AlerterDeadLetterQueue") for s in statements(role))


@pytest.mark.parametrize("function", SENDERS)
def test_ses_send_is_conditional_and_scoped_to_the_identity(translated: dict[str, Any], function: str) -> None:
    """SES v2 `SendEmail` is authorized by the IAM action `ses:SendEmail` on the identity's ARN and, when the
    message names one, on the configuration set's ARN (added only when `SesConfigurationSet` is set)."""
    ses = [
        (condition, statement)
        for condition, policy in inline_policies(role_of(translated, function))
        for statement in as_list(policy["PolicyDocument"]["Statement"])
        if any(a.startswith("ses:") for a in actions(statement))
    ]
    assert len(ses) == 1, function
    ((condition, statement),) = ses
    assert condition == "HasSesSender"
    assert actions(statement) == {"ses:SendEmail"}, "no SendRawEmail, no identity management"
    assert statement["Resource"] == [SES_IDENTITY_ARN, SES_CONFIGURATION_SET_ARN]


def test_ses_configuration_set_parameter_is_optional(raw_template: dict[str, Any], translated: dict[str, Any]) -> None:
    parameter = raw_template["Parameters"]["SesConfigurationSet"]
    assert parameter["Type"] == "String"
    assert parameter["Default"] == ""
    assert translated["Conditions"]["HasSesConfigurationSet"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "SesConfigurationSet"}, ""]}]
    }


def test_alerter_role_can_batch_read_alert_state(translated: dict[str, Any]) -> None:
    """`AlertStateStore.get_many` is a BatchGetItem: without it every deployed delivery fails AccessDenied."""
    on_state = [
        s for s in statements(role_of(translated, "AlerterFunction")) if mentions(s["Resource"], "AlertStateTable")
    ]
    assert {"dynamodb:BatchGetItem", "dynamodb:UpdateItem"} <= set().union(*(actions(s) for s in on_state))


def test_watchdog_log_group_and_errors_alarm(translated: dict[str, Any]) -> None:
    log = props(translated, "WatchdogLogGroup")
    assert log["LogGroupName"] == {"Fn::Sub": "/aws/lambda/${WatchdogFunction}"}
    assert log["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    alarm = props(translated, "WatchdogErrorsAlarm")
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == ("AWS/Lambda", "Errors", "Sum")
    assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "WatchdogFunction"}}]
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    assert alarm["OKActions"] == [{"Ref": "AlarmTopic"}]
    assert translated["Outputs"]["WatchdogFunctionName"]["Value"] == {"Ref": "WatchdogFunction"}


def test_monitor_of_the_monitor_alarms_stay(translated: dict[str, Any]) -> None:
    """The watchdog adds to, and does not replace, the metric alarm that fires when nothing is written."""
    alarms = resources_of_type(translated, "AWS::CloudWatch::Alarm")
    assert {
        "PollerStoppedAlarm",
        "AlerterErrorsAlarm",
        "AlerterIteratorAgeAlarm",
        "DeadLetterQueueAlarm",
        "WatchdogErrorsAlarm",
    } <= set(alarms)
    assert alarms["PollerStoppedAlarm"]["Properties"]["TreatMissingData"] == "breaching"


def test_custom_metric_dimensions_stay_low_cardinality() -> None:
    """`DeliveryFailures` carries `service` and a `reason` from a bounded set, never an org or project."""
    from spendwatch.channels.reasons import KNOWN_REASONS, metric_reason

    assert metric_reason("invalid_auth") == "invalid_auth"
    assert metric_reason("org-acme-project-123") == "other"
    assert len(KNOWN_REASONS) < 120
