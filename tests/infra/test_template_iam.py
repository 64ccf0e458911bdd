"""Least privilege, checked against what the code does: each function's DynamoDB actions are derived from
the code (handler -> spendwatch modules it imports -> store methods they call -> DynamoDB client calls in
store.py), and the SSM and SES grants are evaluated, with IAM's wildcard matching, on the ARNs of the
default parameter names that spendwatch.core.config uses."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .test_template import actions, as_list, inline_policies, role_of, statements

REPO_ROOT = Path(__file__).resolve().parents[2]
PACKAGE = REPO_ROOT / "layers" / "common" / "spendwatch"
STORE = PACKAGE / "aws/store.py"
FUNCTIONS = {
    "PollerFunction": "poller",
    "AlerterFunction": "alerter",
    "WatchdogFunction": "watchdog",
    "DigestFunction": "digest",
}
# The table each store class is constructed with (runtime.py / *_app.py pass SNAPSHOTS_TABLE and
# ALERT_STATE_TABLE; the tests below check that these are the tables the statements name).
STORE_TABLES = {"SnapshotStore": "SnapshotsTable", "AlertStateStore": "AlertStateTable"}
# The DynamoDB actions Lambda's stream poller needs (granted to the alerter for AlerterFunctionSnapshots),
# which no code of ours calls.
STREAM_ACTIONS = {"dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:ListStreams"}

PSEUDO = {"AWS::Partition": "aws", "AWS::Region": "us-east-1", "AWS::AccountId": "123456789012"}


# --------------------------------------------------------------------------------------------------
# what the code calls
# --------------------------------------------------------------------------------------------------
def _action(client_method: str) -> str:
    """boto3's snake_case operation -> the IAM action (`batch_get_item` -> `dynamodb:BatchGetItem`)."""
    return "dynamodb:" + "".join(part.capitalize() for part in client_method.split("_"))


TRANSACTION_ACTIONS = {"transact_write_items": {"dynamodb:PutItem"}}
"""IAM has no TransactWriteItems action: each action inside a transaction is authorized as itself, and
store.py's transactions only Put (test_store_transactions_only_put)."""


def _actions(client_method: str) -> set[str]:
    return TRANSACTION_ACTIONS.get(client_method) or {_action(client_method)}


def store_client_calls() -> dict[str, dict[str, set[str]]]:
    """class -> method -> DynamoDB client operations it calls, directly or through other methods of `self`."""
    tree = ast.parse(STORE.read_text(encoding="utf-8"))
    found: dict[str, dict[str, set[str]]] = {}
    for cls in (node for node in tree.body if isinstance(node, ast.ClassDef)):
        direct: dict[str, set[str]] = {}
        via_self: dict[str, set[str]] = {}
        for method in (n for n in cls.body if isinstance(n, ast.FunctionDef)):
            direct[method.name], via_self[method.name] = set(), set()
            for node in ast.walk(method):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                    continue
                owner = node.func.value
                if isinstance(owner, ast.Attribute) and owner.attr == "_client" and _is_self(owner.value):
                    direct[method.name].add(node.func.attr)
                elif _is_self(owner):
                    via_self[method.name].add(node.func.attr)
        found[cls.name] = {name: _closure(name, direct, via_self) for name in direct}
    return found


def _is_self(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id == "self"


def _closure(method: str, direct: dict[str, set[str]], via_self: dict[str, set[str]]) -> set[str]:
    calls: set[str] = set()
    seen: set[str] = set()
    todo = [method]
    while todo:
        name = todo.pop()
        if name in seen or name not in direct:
            continue
        seen.add(name)
        calls |= direct[name]
        todo.extend(via_self[name])
    return calls


def _imported_modules(path: Path) -> set[Path]:
    """The spendwatch modules a file imports (anywhere in it, including function-level imports)."""
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "spendwatch":
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            modules.update(a.name for a in node.names if a.name.split(".")[0] == "spendwatch")
    files = {PACKAGE.joinpath(*m.split(".")[1:]).with_suffix(".py") for m in modules}
    return {f for f in files if f.is_file()}


def function_modules(function_dir: str) -> set[Path]:
    """The handler and every spendwatch module it reaches through imports."""
    seen: set[Path] = set()
    todo = [REPO_ROOT / "functions" / function_dir / "handler.py"]
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            todo.extend(_imported_modules(path) - seen)
    return seen


def _attribute_calls(paths: set[Path]) -> Iterator[str]:
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                yield node.func.attr


def dynamodb_actions_used(function_dir: str) -> dict[str, set[str]]:
    """table logical id -> the DynamoDB actions the function's code needs on it."""
    stores = store_client_calls()
    called = set(_attribute_calls(function_modules(function_dir) - {STORE}))
    needed: dict[str, set[str]] = {}
    for cls, methods in stores.items():
        for method, client_calls in methods.items():
            if method.startswith("_") or method not in called or not client_calls:
                continue
            needed.setdefault(STORE_TABLES[cls], set()).update(*(_actions(c) for c in client_calls))
    return needed


def dynamodb_actions_granted(template: dict[str, Any], function: str) -> dict[str, set[str]]:
    """table logical id -> DynamoDB actions granted on exactly `!GetAtt <table>.Arn` (stream grants apart)."""
    granted: dict[str, set[str]] = {}
    for statement in statements(role_of(template, function)):
        table_actions = {a for a in actions(statement) if a.startswith("dynamodb:")} - STREAM_ACTIONS
        if not table_actions:
            continue
        assert actions(statement) == table_actions, f"{function}: keep table grants apart from others: {statement}"
        resource = statement["Resource"]
        assert isinstance(resource, dict) and "Fn::GetAtt" in resource, f"{function}: one table per statement"
        table, attribute = resource["Fn::GetAtt"]
        assert attribute == "Arn", f"{function}: the table itself, no index/* or other ARN: {statement}"
        granted.setdefault(table, set()).update(table_actions)
    return granted


def test_store_client_calls_are_found_the_same_way_by_ast_and_by_text() -> None:
    """Guards the derivation: every `self._client.<op>(` in store.py is one the AST walk saw."""
    text = STORE.read_text(encoding="utf-8")
    by_text = set(re.findall(r"self\._client\.(\w+)\(", text))
    by_ast = {c for methods in store_client_calls().values() for calls in methods.values() for c in calls}
    assert by_text == by_ast
    assert by_ast, "store.py makes DynamoDB calls through self._client"
    assert set(store_client_calls()) >= set(STORE_TABLES)


def test_store_transactions_only_put() -> None:
    """What TRANSACTION_ACTIONS assumes: every TransactItems entry store.py builds is a Put."""
    text = STORE.read_text(encoding="utf-8")
    assert "transact_write_items(" in text
    for action in ("Update", "Delete", "ConditionCheck"):
        assert f'"{action}":' not in text, action
    assert '"Put":' in text


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_dynamodb_actions_are_exactly_what_the_code_calls(translated: dict[str, Any], function: str) -> None:
    assert dynamodb_actions_granted(translated, function) == dynamodb_actions_used(FUNCTIONS[function])


def test_dynamodb_actions_derived_from_the_code_are_the_expected_ones() -> None:
    """The derivation itself, spelled out (update together with store.py)."""
    assert dynamodb_actions_used("poller") == {"SnapshotsTable": {"dynamodb:PutItem"}}
    expected = {
        "SnapshotsTable": {"dynamodb:Query"},
        "AlertStateTable": {"dynamodb:BatchGetItem", "dynamodb:UpdateItem"},
    }
    assert dynamodb_actions_used("alerter") == expected
    assert dynamodb_actions_used("watchdog") == expected
    # The digest also reads its snapshot history and counts the alerts recorded in its period (Query).
    assert dynamodb_actions_used("digest") == {
        "SnapshotsTable": {"dynamodb:Query"},
        "AlertStateTable": {"dynamodb:BatchGetItem", "dynamodb:UpdateItem", "dynamodb:Query"},
    }


def test_only_the_alerter_gets_stream_actions(translated: dict[str, Any]) -> None:
    for function in FUNCTIONS:
        granted = {a for s in statements(role_of(translated, function)) for a in actions(s)} & STREAM_ACTIONS
        assert granted == (STREAM_ACTIONS if function == "AlerterFunction" else set()), function


# --------------------------------------------------------------------------------------------------
# evaluating the grants on concrete names
# --------------------------------------------------------------------------------------------------
def _evaluate_condition(template: dict[str, Any], expression: Any, params: dict[str, str]) -> bool:
    if isinstance(expression, dict):
        ((key, value),) = expression.items()
        if key == "Fn::Not":
            return not _evaluate_condition(template, value[0], params)
        if key == "Fn::Equals":
            left, right = (resolve(template, v, params) for v in value)
            return bool(left == right)
        if key == "Fn::And":
            return all(_evaluate_condition(template, v, params) for v in value)
        if key == "Fn::Or":
            return any(_evaluate_condition(template, v, params) for v in value)
        if key == "Condition":
            return _evaluate_condition(template, template["Conditions"][value], params)
    raise AssertionError(f"unsupported condition {expression!r}")


_NO_VALUE = object()


def resolve(template: dict[str, Any], value: Any, params: dict[str, str]) -> Any:
    """The subset of CloudFormation intrinsics the role policies use, with `params` as parameter values."""
    if isinstance(value, list):
        items = [resolve(template, v, params) for v in value]
        return [v for v in items if v is not _NO_VALUE]
    if not isinstance(value, dict):
        return value
    if len(value) == 1 and next(iter(value)) in _INTRINSICS:
        ((name, argument),) = value.items()
        return _INTRINSICS[name](template, argument, params)
    return {k: resolve(template, v, params) for k, v in value.items()}


def _ref(template: dict[str, Any], name: str, params: dict[str, str]) -> Any:
    if name == "AWS::NoValue":
        return _NO_VALUE
    if template["Parameters"].get(name, {}).get("Type") == "CommaDelimitedList":
        return [item for item in params.get(name, "").split(",") if item] or [""]  # CloudFormation: [""] when empty
    return PSEUDO.get(name, params.get(name))


def _join(template: dict[str, Any], argument: list[Any], params: dict[str, str]) -> str:
    separator, values = argument
    return str(separator).join(str(v) for v in as_list(resolve(template, values, params)))


def _if(template: dict[str, Any], argument: list[Any], params: dict[str, str]) -> Any:
    condition, then, otherwise = argument
    chosen = then if _evaluate_condition(template, template["Conditions"][condition], params) else otherwise
    return resolve(template, chosen, params)


def _get_att(template: dict[str, Any], argument: list[str], params: dict[str, str]) -> str:
    logical_id, attribute = argument
    return f"<{logical_id}.{attribute}>"


def _sub(template: dict[str, Any], body: Any, params: dict[str, str]) -> str:
    text, variables = (body, {}) if isinstance(body, str) else body
    local = {k: resolve(template, v, params) for k, v in variables.items()}

    def substitute(match: re.Match[str]) -> str:
        name = match[1]
        if name in local:
            return str(local[name])
        if name in PSEUDO:
            return PSEUDO[name]
        if "." in name:  # ${Resource.Attribute}
            return f"<{name}>"
        assert name in params, f"unknown ${{{name}}} in {text}"
        return params[name]

    return re.sub(r"\$\{([^}!]+)\}", substitute, text)


_INTRINSICS: dict[str, Callable[[dict[str, Any], Any, dict[str, str]], Any]] = {
    "Ref": _ref,
    "Fn::If": _if,
    "Fn::GetAtt": _get_att,
    "Fn::Sub": _sub,
    "Fn::Join": _join,
}


def default_parameters(template: dict[str, Any]) -> dict[str, str]:
    return {name: str(p.get("Default", "")) for name, p in template["Parameters"].items()}


def iam_matches(pattern: str, arn: str) -> bool:
    """IAM resource matching: `*` is any run of characters (slashes included), `?` any one character."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, arn) is not None


def granted_resources(template: dict[str, Any], function: str, action: str, params: dict[str, str]) -> list[str]:
    """Every concrete resource ARN an Allow statement of the function's role grants `action` on."""
    found: list[str] = []
    for condition, policy in inline_policies(role_of(template, function)):
        if condition and not _evaluate_condition(template, template["Conditions"][condition], params):
            continue
        for statement in as_list(policy["PolicyDocument"]["Statement"]):
            assert statement["Effect"] == "Allow"
            if action in actions(statement):
                found.extend(as_list(resolve(template, statement["Resource"], params)))
    return found


def may(template: dict[str, Any], function: str, action: str, arn: str, params: dict[str, str]) -> bool:
    return any(iam_matches(p, arn) for p in granted_resources(template, function, action, params))


def parameter_arn(name: str) -> str:
    assert name.startswith("/")
    return f"arn:aws:ssm:us-east-1:123456789012:parameter{name}"


@pytest.fixture(scope="module")
def default_names() -> dict[str, str]:
    """The parameter names spendwatch.core.config uses when the config names none."""
    from spendwatch.core.config import (
        OrganizationConfig,
        PagerDutyChannelConfig,
        SlackChannelConfig,
        WebhookChannelConfig,
    )

    org = OrganizationConfig(id="org-1", name="Org 1")
    slack = SlackChannelConfig(type="slack")
    hook = WebhookChannelConfig(type="webhook", url="https://example.com/hook")
    pagerduty = PagerDutyChannelConfig(type="pagerduty")
    return {
        "admin_key": org.admin_key_ref().parameter,
        "session_key": org.session_key_ref().parameter,
        "webhook_url": slack.webhook_url.parameter,
        "bot_token": slack.bot_token.parameter,
        "signing_secret": hook.signing_secret.parameter,
        "routing_key": pagerduty.routing_key.parameter,
    }


def test_default_parameter_names_are_the_documented_ones(
    translated: dict[str, Any], default_names: dict[str, str]
) -> None:
    prefix = default_parameters(translated)["SsmParameterPrefix"]
    assert default_names == {
        "admin_key": f"/{prefix}/org-1/openai-admin-key",
        "session_key": f"/{prefix}/org-1/openai-session-key",
        "webhook_url": f"/{prefix}/slack/webhook-url",
        "bot_token": f"/{prefix}/slack/bot-token",
        "signing_secret": f"/{prefix}/channels/webhook-signing-secret",
        "routing_key": f"/{prefix}/channels/pagerduty-routing-key",
    }


@pytest.mark.parametrize(
    ("function", "readable"),
    [
        ("PollerFunction", {"admin_key", "session_key"}),
        ("AlerterFunction", {"webhook_url", "bot_token", "signing_secret", "routing_key"}),
        ("WatchdogFunction", {"webhook_url", "bot_token", "signing_secret", "routing_key"}),
        ("DigestFunction", {"webhook_url", "bot_token", "signing_secret", "routing_key"}),
    ],
)
def test_ssm_reads_are_limited_to_each_functions_own_secrets(
    translated: dict[str, Any], default_names: dict[str, str], function: str, readable: set[str]
) -> None:
    params = default_parameters(translated)
    for secret, name in default_names.items():
        allowed = may(translated, function, "ssm:GetParameter", parameter_arn(name), params)
        assert allowed is (secret in readable), f"{function} reading {name}"
    assert may(translated, function, "ssm:GetParameter", parameter_arn(params["ConfigParameterName"]), params)
    for other in ("/spendwatch/other", "/spendwatch/org-1/other-key", "/other/config", "/spendwatch-prod/config"):
        assert not may(translated, function, "ssm:GetParameter", parameter_arn(other), params), (function, other)
    assert not may(translated, function, "ssm:GetParametersByPath", parameter_arn("/spendwatch"), params)


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_ssm_arns_follow_custom_prefix_and_config_name(translated: dict[str, Any], function: str) -> None:
    params = default_parameters(translated) | {
        "SsmParameterPrefix": "acme/spendwatch",
        "ConfigParameterName": "/acme/spendwatch/prod/config",
    }
    arns = granted_resources(translated, function, "ssm:GetParameter", params)
    assert all("//" not in arn.split("arn:", 1)[1] for arn in arns), arns
    assert parameter_arn("/acme/spendwatch/prod/config") in arns, "exactly the config parameter, no wildcard"
    assert not may(translated, function, "ssm:GetParameter", parameter_arn("/spendwatch/config"), params)


@pytest.mark.parametrize("function", ["AlerterFunction", "WatchdogFunction"])
@pytest.mark.parametrize(
    ("identity", "configuration_set", "expected"),
    [
        ("", "", []),
        ("", "alerts", []),
        ("example.com", "", ["identity/example.com"]),
        ("example.com", "alerts", ["identity/example.com", "configuration-set/alerts"]),
    ],
)
def test_ses_send_covers_the_configuration_set_only_when_set(
    translated: dict[str, Any], function: str, identity: str, configuration_set: str, expected: list[str]
) -> None:
    params = default_parameters(translated) | {"SesSenderIdentity": identity, "SesConfigurationSet": configuration_set}
    arns = granted_resources(translated, function, "ses:SendEmail", params)
    assert arns == [f"arn:aws:ses:us-east-1:123456789012:{r}" for r in expected]


TOPIC_A = "arn:aws:sns:us-east-1:123456789012:spend-alerts"
TOPIC_B = "arn:aws:sns:us-east-1:123456789012:oncall"


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
@pytest.mark.parametrize("topics", ["", TOPIC_A, f"{TOPIC_A},{TOPIC_B}"])
def test_sns_publish_only_on_the_configured_topics(translated: dict[str, Any], function: str, topics: str) -> None:
    params = default_parameters(translated) | {"AlertTopicArns": topics}
    expected = [t for t in topics.split(",") if t] if function != "PollerFunction" else []
    assert granted_resources(translated, function, "sns:Publish", params) == expected
    other = "arn:aws:sns:us-east-1:123456789012:someone-elses-topic"
    assert not may(translated, function, "sns:Publish", other, params)


def test_sns_topics_of_the_config_are_what_the_parameter_must_list() -> None:
    # The template cannot read the config: docs/channels.md tells the user to list every sns channel's
    # topic in AlertTopicArns; the config keeps the ARN shape exact so the two can be compared by eye.
    from spendwatch.core.config import SnsChannelConfig

    assert SnsChannelConfig(type="sns", topic_arn=TOPIC_A).topic_arn == TOPIC_A


def test_poller_cannot_send_email(translated: dict[str, Any]) -> None:
    params = default_parameters(translated) | {"SesSenderIdentity": "example.com", "SesConfigurationSet": "alerts"}
    assert granted_resources(translated, "PollerFunction", "ses:SendEmail", params) == []


def test_resolver_sees_every_statement(translated: dict[str, Any]) -> None:
    """Every resource of every role resolves to a concrete string (no intrinsic the evaluator ignores)."""
    params = default_parameters(translated) | {"SesSenderIdentity": "example.com", "SesConfigurationSet": "alerts"}
    for function in FUNCTIONS:
        for statement in statements(role_of(translated, function)):
            for resource in as_list(resolve(translated, statement["Resource"], params)):
                assert isinstance(resource, str) and "${" not in resource, (function, json.dumps(statement))
