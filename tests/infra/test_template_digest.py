"""Template assertions for the digest function (schedule, role, logs, alarm) and the CloudWatch dashboard.

The dashboard is checked against the code: every custom metric it draws is one the functions emit, and
every log message and field its Logs Insights queries read is one the functions log."""

from __future__ import annotations

import ast
import json
import re
from typing import Any

import pytest

from .test_template import (
    BASIC_EXECUTION,
    XRAY_WRITE,
    actions,
    as_list,
    inline_policies,
    props,
    resources_of_type,
    role_of,
    statements,
)
from .test_template_iam import PACKAGE, REPO_ROOT, function_modules

FUNCTIONS = ("PollerFunction", "AlerterFunction", "WatchdogFunction", "DigestFunction")
SES_IDENTITY = "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:identity/${SesSenderIdentity}"


# --------------------------------------------------------------------------------------------------
# the digest function
# --------------------------------------------------------------------------------------------------
def test_digest_function_is_built_like_the_others_with_pillow_of_its_own(
    raw_template: dict[str, Any], translated: dict[str, Any]
) -> None:
    raw = raw_template["Resources"]["DigestFunction"]
    assert raw["Metadata"]["BuildMethod"] == "makefile"
    assert raw["Properties"]["CodeUri"] == "functions/digest"
    p = props(translated, "DigestFunction")
    assert p["Layers"] == props(translated, "AlerterFunction")["Layers"], "the same CommonLayer version"
    assert (p["Runtime"], p["Architectures"], p["Handler"]) == ("python3.13", ["arm64"], "handler.lambda_handler")
    env = p["Environment"]["Variables"]
    assert env["ALERT_STATE_TABLE"] == {"Ref": "AlertStateTable"}
    assert env["SNAPSHOTS_TABLE"] == {"Ref": "SnapshotsTable"}
    assert env["SPENDWATCH_CONFIG_PARAMETER"] == {"Ref": "ConfigParameterName"}
    pins = (REPO_ROOT / "functions/digest/requirements.txt").read_text(encoding="utf-8")
    assert re.search(r"^pillow==\d+\.\d+\.\d+$", pins, re.MULTILINE), "Pillow, exactly pinned, in the function"
    layer_text = (REPO_ROOT / "layers/common/requirements.txt").read_text(encoding="utf-8").lower()
    layer = [line for line in layer_text.splitlines() if not line.startswith("#")]
    assert not any(line.startswith(("pillow", "matplotlib")) for line in layer), (
        "never in the layer the poller and alerter load"
    )
    makefile = (REPO_ROOT / "functions/digest/Makefile").read_text(encoding="utf-8")
    assert "manylinux_2_28_aarch64" in makefile and "--abi cp313" in makefile and "--no-deps" in makefile


@pytest.mark.parametrize("function", ["poller", "alerter", "watchdog"])
def test_digest_code_stays_out_of_the_other_functions(function: str) -> None:
    """Cold start: the chart and digest modules (and Pillow) are never on the poller's or alerter's path."""
    reached = {
        path.relative_to(PACKAGE).parts[0] for path in function_modules(function) if path.is_relative_to(PACKAGE)
    }
    assert not reached & {"digest", "views"}, reached
    for path in function_modules(function):
        assert "import PIL" not in path.read_text(encoding="utf-8") and "from PIL" not in path.read_text(
            encoding="utf-8"
        )


def test_digest_runs_hourly_and_retries_at_most_once(translated: dict[str, Any]) -> None:
    rules = [
        r
        for r in resources_of_type(translated, "AWS::Events::Rule").values()
        if r["Properties"]["Targets"][0]["Arn"] == {"Fn::GetAtt": ["DigestFunction", "Arn"]}
    ]
    assert len(rules) == 1
    expression = rules[0]["Properties"]["ScheduleExpression"]
    minute, hour, day, month, weekday, year = re.fullmatch(r"cron\((.*)\)", expression)[1].split()  # type: ignore[index]
    assert minute.isdigit() and (hour, day, month, weekday, year) == ("*", "*", "*", "?", "*"), "once every hour"
    config = resources_of_type(translated, "AWS::Lambda::EventInvokeConfig")["DigestFunctionEventInvokeConfig"]
    assert config["Properties"]["MaximumRetryAttempts"] <= 1


def test_digest_role_is_least_privilege(translated: dict[str, Any]) -> None:
    role = role_of(translated, "DigestFunction")
    assert set(role["ManagedPolicyArns"]) == {BASIC_EXECUTION, XRAY_WRITE}
    for statement in statements(role):
        for resource in as_list(statement["Resource"]):
            assert resource != "*", statement
    ssm = [s for s in statements(role) if any(a.startswith("ssm:") for a in actions(s))]
    assert len(ssm) == 1 and actions(ssm[0]) == {"ssm:GetParameter"}
    assert [r["Fn::Sub"].split(":parameter", 1)[1] for r in ssm[0]["Resource"]] == [
        "/${SsmParameterPrefix}/slack/*",
        "/${SsmParameterPrefix}/channels/*",
        "${ConfigParameterName}",
    ]
    assert not [s for s in statements(role) if any(a.startswith(("sqs:", "dynamodb:PutItem")) for a in actions(s))]


def test_digest_sends_mail_raw_so_its_only_ses_action_is_send_raw_email(translated: dict[str, Any]) -> None:
    """Derived from the code: the digest's SES client sends `Content.Raw` (SES v2 SendEmail with raw content
    is authorized as ses:SendRawEmail), and the function builds every EmailSender with that client."""
    delivery = (PACKAGE / "digest/delivery.py").read_text(encoding="utf-8")
    tree = ast.parse(delivery)
    raw_dicts = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Dict) and any(isinstance(k, ast.Constant) and k.value == "Raw" for k in node.keys)
    ]
    assert raw_dicts, "InlineImageSes builds Content={'Raw': ...}"
    app = (PACKAGE / "digest/app.py").read_text(encoding="utf-8")
    assert "ses_client=lambda: InlineImageSes(" in app
    ses = [
        (condition, statement)
        for condition, policy in inline_policies(role_of(translated, "DigestFunction"))
        for statement in as_list(policy["PolicyDocument"]["Statement"])
        if any(a.startswith("ses:") for a in actions(statement))
    ]
    assert len(ses) == 1
    ((condition, statement),) = ses
    assert condition == "HasSesSender"
    assert actions(statement) == {"ses:SendRawEmail"}
    assert statement["Resource"][0] == {"Fn::Sub": SES_IDENTITY}


def test_digest_log_group_and_errors_alarm(translated: dict[str, Any]) -> None:
    log = props(translated, "DigestLogGroup")
    assert log["LogGroupName"] == {"Fn::Sub": "/aws/lambda/${DigestFunction}"}
    assert log["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    alarm = props(translated, "DigestErrorsAlarm")
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == ("AWS/Lambda", "Errors", "Sum")
    assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "DigestFunction"}}]
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)
    assert alarm["AlarmActions"] == alarm["OKActions"] == [{"Ref": "AlarmTopic"}]
    assert translated["Outputs"]["DigestFunctionName"]["Value"] == {"Ref": "DigestFunction"}


# --------------------------------------------------------------------------------------------------
# the dashboard
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dashboard(translated: dict[str, Any]) -> dict[str, Any]:
    """The dashboard body with every `${…}` of its `Fn::Sub` checked and filled with a placeholder."""
    ((name, resource),) = resources_of_type(translated, "AWS::CloudWatch::Dashboard").items()
    assert name == "Dashboard"
    text, variables = resource["Properties"]["DashboardBody"]["Fn::Sub"]
    known = set(translated["Resources"]) | set(translated["Parameters"]) | set(variables) | {"AWS::Region"}
    used = set(re.findall(r"\$\{([^}!]+)\}", text))
    assert used <= known, used - known
    for variable in variables.values():
        assert variable["Fn::GetAtt"][0] in translated["Resources"]
    body: dict[str, Any] = json.loads(re.sub(r"\$\{([^}!]+)\}", lambda m: f"<{m[1]}>", text))
    return body


def _metrics(dashboard: dict[str, Any]) -> list[list[Any]]:
    found = []
    for widget in dashboard["widgets"]:
        if widget["type"] == "metric":
            found += [m for m in widget["properties"]["metrics"] if isinstance(m[0], str)]
    return found


def _expressions(dashboard: dict[str, Any]) -> list[str]:
    return [
        m[0]["expression"]
        for w in dashboard["widgets"]
        if w["type"] == "metric"
        for m in w["properties"]["metrics"]
        if isinstance(m[0], dict)
    ]


def _emitted_metrics() -> set[str]:
    """Custom metric names the package emits (`add_metric(name=…)`, `single_metric(name=…)`)."""
    names: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) in {
                "add_metric",
                "single_metric",
            }:
                names |= {
                    str(k.value.value) for k in node.keywords if k.arg == "name" and isinstance(k.value, ast.Constant)
                }
    return names


def _logged(function: str) -> tuple[set[str], set[str]]:
    """(string constants, keyword argument names of calls) in a function's modules: what it can log."""
    constants, keywords = set(), set()
    for path in function_modules(function):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                constants.add(node.value)
            elif isinstance(node, ast.Call):
                keywords |= {k.arg for k in node.keywords if k.arg}
    return constants, keywords


def test_dashboard_draws_the_stacks_health(dashboard: dict[str, Any]) -> None:
    metrics = {(m[0], m[1], *(m[2:4])) for m in _metrics(dashboard)}
    assert ("Spendwatch", "SnapshotsWritten", "service", "spendwatch") in metrics
    logs = [w["properties"]["query"] for w in dashboard["widgets"] if w["type"] == "log"]
    assert any("'source failed'" in q for q in logs) and any("'alert sent'" in q for q in logs), "from the logs"
    assert any("DeliveryFailures" in e for e in _expressions(dashboard)), "every reason of DeliveryFailures"
    for queue in ("AlerterDlqName", "PollDlqName"):
        assert ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", f"<{queue}>") in metrics
    assert ("AWS/Lambda", "IteratorAge", "FunctionName", "<AlerterFunction>") in metrics
    for metric in ("Errors", "Duration"):
        for function in FUNCTIONS:
            assert ("AWS/Lambda", metric, "FunctionName", f"<{function}>") in metrics, (metric, function)


def test_dashboard_adds_no_custom_metric(dashboard: dict[str, Any]) -> None:
    drawn = {m[1] for m in _metrics(dashboard) if m[0] == "Spendwatch"}
    drawn |= {n for e in _expressions(dashboard) for n in re.findall(r'MetricName=\\?"(\w+)', e)}
    assert drawn and drawn <= _emitted_metrics(), drawn - _emitted_metrics()


def test_dashboard_spend_per_organization_comes_from_the_pollers_logs(dashboard: dict[str, Any]) -> None:
    logs = [w["properties"] for w in dashboard["widgets"] if w["type"] == "log"]
    spend = [q for q in logs if "month_to_date_usd" in q["query"]]
    assert spend, "a Logs Insights widget shows month-to-date spend per organization"
    for widget in spend:
        assert widget["query"].startswith("SOURCE '/aws/lambda/<PollerFunction>'")
        assert "by org_id" in widget["query"]


_SOURCES = {
    "PollerFunction": "poller",
    "AlerterFunction": "alerter",
    "WatchdogFunction": "watchdog",
    "DigestFunction": "digest",
}


def test_dashboard_log_queries_read_what_the_code_logs(dashboard: dict[str, Any]) -> None:
    for widget in (w["properties"] for w in dashboard["widgets"] if w["type"] == "log"):
        query = widget["query"]
        groups = re.findall(r"SOURCE '/aws/lambda/<(\w+)>'", query)
        assert groups and query.startswith("SOURCE "), query
        constants: set[str] = set()
        keywords: set[str] = set()
        for group in groups:
            c, k = _logged(_SOURCES[group])
            constants |= c
            keywords |= k
        messages = re.findall(r"'([a-z][a-z ]+)'", query.split("| filter", 1)[1])
        assert messages, query
        for message in messages:
            assert message in constants, f"{message!r} is not logged by {groups}"
        fields = set(re.findall(r"\b(?:latest|count)\((\w+)\)", query))
        fields |= {f.strip() for f in re.findall(r"\bby ([\w, ]+?)(?:\||$)", query)[0].split(",")}
        fields -= {"*", "message"}
        assert fields <= keywords, f"{query}: {fields - keywords} never logged"


def test_dashboard_url_is_an_output(translated: dict[str, Any]) -> None:
    url = translated["Outputs"]["DashboardUrl"]["Value"]["Fn::Sub"]
    assert url.startswith("https://${AWS::Region}.console.aws.amazon.com/cloudwatch/home?region=${AWS::Region}")
    assert url.endswith("#dashboards:name=${Dashboard}")
    assert props(translated, "Dashboard")["DashboardName"] == {"Fn::Sub": "${AWS::StackName}-spendwatch"}


def test_dashboard_widgets_fit_the_grid(dashboard: dict[str, Any]) -> None:
    for widget in dashboard["widgets"]:
        assert widget["x"] >= 0, widget
        assert widget["x"] + widget["width"] <= 24, widget
        assert widget["type"] in {"text", "metric", "log"}
        if widget["type"] in {"metric", "log"}:
            assert widget["properties"]["region"] == "<AWS::Region>"
