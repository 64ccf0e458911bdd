"""`spendwatch verify` against the local stand-ins: CloudFormation, SSM, SNS and SES on moto's server,
DynamoDB (Local) with its stream, a local Lambda Invoke API running the real poller handler, the stream
pumped to the real alerter handler as Lambda's mapping would, and the local OpenAI and Slack servers."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from spendwatch.cli.main import main
from spendwatch.devtools.fake_openai import FakeOpenAI
from spendwatch.devtools.fake_slack import FakeSlack
from spendwatch.devtools.lambda_local import LocalLambda
from spendwatch.devtools.pipeline import LocalPipeline

from .conftest import ADMIN_KEY

STACK = "spendwatch"
POLLER = "spendwatch-PollerFunction-local"
NO_BUDGET = """
organizations:
  - id: sim
    name: Simulated Org
    channels: [slack]
channels:
  slack:
    type: slack
{channel}"""
WITH_BUDGET_AND_MAIL = """
organizations:
  - id: sim
    name: Simulated Org
    budget: {monthly_usd: 500}
    channels: [slack]
    fallback_channel: mail
channels:
  slack: {type: slack}
  mail: {type: email, sender: alerts@example.com, recipients: [ops@example.com]}
"""


def create_stack(pipeline: LocalPipeline, *, subscribe: bool = True) -> str:
    """The deployed stack's outputs as CloudFormation reports them (moto), with the alarm topic."""
    template = {
        "Resources": {"AlarmTopic": {"Type": "AWS::SNS::Topic"}},
        "Parameters": {"ConfigParameterName": {"Type": "String", "Default": "/spendwatch/config"}},
        "Outputs": {
            "PollerFunctionName": {"Value": POLLER},
            "SnapshotsTableName": {"Value": pipeline.tables["SnapshotsTable"]},
            "AlertStateTableName": {"Value": pipeline.tables["AlertStateTable"]},
            "AlarmTopicArn": {"Value": {"Ref": "AlarmTopic"}},
        },
    }
    cfn = boto3.client("cloudformation")
    cfn.create_stack(StackName=STACK, TemplateBody=json.dumps(template))
    outputs = cfn.describe_stacks(StackName=STACK)["Stacks"][0]["Outputs"]
    topic = next(o["OutputValue"] for o in outputs if o["OutputKey"] == "AlarmTopicArn")
    if subscribe:
        boto3.client("sns").subscribe(TopicArn=topic, Protocol="email", Endpoint="oncall@example.com")
    return str(topic)


class Deployed:
    """The local Lambda Invoke API (the real poller handler) and the stream mapping (the real alerter)."""

    def __init__(self, pipeline: LocalPipeline) -> None:
        assert pipeline.poller is not None
        self.pipeline = pipeline
        self.invoke = LocalLambda({POLLER: pipeline.poller.lambda_handler})
        self._stop = threading.Event()
        self._pump: threading.Thread | None = None

    def start(self, *, pump: bool = True) -> Deployed:
        self.invoke.start()
        if pump:
            self._pump = threading.Thread(target=self._deliver, daemon=True)
            self._pump.start()
        return self

    def _deliver(self) -> None:
        # One handler at a time, as each function runs in its own environment: the poller's invocation and
        # the alerter's batch never share the process's Powertools logger and metrics concurrently.
        while not self._stop.wait(0.1):
            with self.invoke._lock:
                self.pipeline.deliver()

    def stop(self) -> None:
        self._stop.set()
        if self._pump is not None:
            self._pump.join(timeout=10)
        self.invoke.stop()


@pytest.fixture
def deployed(pipeline: LocalPipeline, monkeypatch: pytest.MonkeyPatch) -> Iterator[Deployed]:
    world = Deployed(pipeline)
    yield world
    world.stop()


def verify(deployed: Deployed, monkeypatch: pytest.MonkeyPatch, *argv: str, pump: bool = True) -> int:
    deployed.start(pump=pump)
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", deployed.invoke.root_url)
    return main(["verify", "--stack", STACK, "--timeout", "15", *argv])


def configure(pipeline: LocalPipeline, openai: FakeOpenAI, config: str, secrets: dict[str, str], **env: str) -> None:
    pipeline.configure(config, secrets, {"OPENAI_BASE_URL": openai.base_url, **env})


def test_verify_every_step_passes_and_each_channel_gets_one_connected_message(
    *,
    pipeline: LocalPipeline,
    openai: FakeOpenAI,
    slack: FakeSlack,
    deployed: Deployed,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    create_stack(pipeline)
    boto3.client("ses").verify_email_identity(EmailAddress="alerts@example.com")
    configure(
        pipeline,
        openai,
        WITH_BUDGET_AND_MAIL,
        {"/spendwatch/sim/openai-admin-key": ADMIN_KEY, "/spendwatch/slack/webhook-url": slack.webhook_url},
    )
    code = verify(deployed, monkeypatch)
    out, err = capsys.readouterr()
    assert code == 0, out + err
    lines = out.splitlines()
    assert lines[0] == "✓ stack spendwatch in us-east-1: CREATE_COMPLETE"
    assert "✓ config /spendwatch/config: 1 organization(s) (sim)" in lines
    assert any(
        line.startswith("✓ sim: OpenAI read with the deployed key:") and "month to date $" in line for line in lines
    )
    assert any(line.startswith("✓ sim: snapshot ") and pipeline.tables["SnapshotsTable"] in line for line in lines)
    assert "✓ sim -> slack: the deployed alerter posted 'spendwatch is connected'" in lines
    assert "✓ sim -> mail: the deployed alerter posted 'spendwatch is connected'" in lines
    assert "✓ alarms go to email:oncall@example.com" in lines
    assert "✗" not in out
    [(function, event)] = deployed.invoke.invocations
    assert function == POLLER and event["org_id"] == "sim" and len(event["verify"]) == 12

    connected = [m for m in slack.messages if "spendwatch is connected" in (m.text or "")]
    assert len(connected) == 1
    text = connected[0].text or ""
    for words in ("Month to date: $", "Budget: $500.00 a month", "Sources: all", "Next scheduled poll: no scheduled"):
        assert words in text, text
    assert any("80.0% of the monthly budget reached" in (m.text or "") for m in slack.messages), "evaluated as usual"

    # A redelivered stream record (at-least-once) posts nothing twice.
    assert pipeline.pump is not None and pipeline.alerter is not None
    before = len(slack.messages)
    from spendwatch.devtools.pipeline import FakeLambdaContext

    pipeline.pump.deliver(pipeline.alerter.lambda_handler, FakeLambdaContext(), records=pipeline.pump.read_all())
    assert len(slack.messages) == before


@pytest.mark.parametrize(
    ("setup", "expected", "fix"),
    [
        ("not_in_channel", "✗ sim -> slack: not_in_channel:", "fix: invite the Slack app to the channel"),
        ("revoked_webhook", "✗ sim -> slack: no_service:", "fix: the webhook was deleted or disabled: create a new"),
        ("malformed_webhook", "✗ sim -> slack: invalid_url:", "fix: the stored webhook URL is not one Slack issues"),
        ("missing_admin_key", "✗ sim: ", "fix: missing SSM parameter /spendwatch/sim/openai-admin-key"),
        ("rejected_admin_key", "✗ sim: ", "fix: OpenAI rejected the admin key: create a new admin key"),
    ],
)
def test_verify_names_each_failure_and_its_fix(
    *,
    pipeline: LocalPipeline,
    openai: FakeOpenAI,
    slack: FakeSlack,
    deployed: Deployed,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    setup: str,
    expected: str,
    fix: str,
) -> None:
    create_stack(pipeline)
    secrets = {"/spendwatch/sim/openai-admin-key": ADMIN_KEY, "/spendwatch/slack/webhook-url": slack.webhook_url}
    env: dict[str, str] = {}
    channel = ""
    if setup == "not_in_channel":
        channel = f"    channel: {next(iter(slack.channels))}\n"
        secrets = {"/spendwatch/sim/openai-admin-key": ADMIN_KEY, "/spendwatch/slack/bot-token": slack.valid_token}
        env["SLACK_API_BASE_URL"] = slack.api_base_url
        slack.fail_next(1, error="not_in_channel", target="api")
    elif setup == "revoked_webhook":
        slack.revoke_webhook()
    elif setup == "malformed_webhook":
        secrets["/spendwatch/slack/webhook-url"] = slack.webhook_url + "\n"
    elif setup == "rejected_admin_key":
        secrets["/spendwatch/sim/openai-admin-key"] = "sk-admin-revoked-long-ago-0000"
    else:
        del secrets["/spendwatch/sim/openai-admin-key"]
    configure(pipeline, openai, NO_BUDGET.format(channel=channel), secrets, **env)
    code = verify(deployed, monkeypatch)
    out, err = capsys.readouterr()
    assert code == 1, out + err
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith(expected))
    assert lines[at + 1].strip().startswith(fix), lines[at : at + 2]
    assert "problem(s) found" in out and "Traceback" not in out + err
    assert slack.webhook_path not in out + err and ADMIN_KEY not in out + err


def test_verify_reports_an_unverified_ses_sender_with_its_fix(
    *,
    pipeline: LocalPipeline,
    openai: FakeOpenAI,
    slack: FakeSlack,
    deployed: Deployed,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    create_stack(pipeline)
    configure(
        pipeline,
        openai,
        WITH_BUDGET_AND_MAIL,
        {"/spendwatch/sim/openai-admin-key": ADMIN_KEY, "/spendwatch/slack/webhook-url": slack.webhook_url},
    )
    assert verify(deployed, monkeypatch) == 1
    out, _ = capsys.readouterr()
    assert "✓ sim -> slack: the deployed alerter posted 'spendwatch is connected'" in out
    assert "✗ sim -> mail: MessageRejected:" in out
    assert "fix: SES refused the mail: verify the sender in SES" in out and "create-email-identity" in out


def test_verify_without_a_stack_a_config_or_an_alerter_says_what_to_do(
    *,
    pipeline: LocalPipeline,
    openai: FakeOpenAI,
    slack: FakeSlack,
    deployed: Deployed,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert verify(deployed, monkeypatch, pump=False) == 1  # no stream mapping: the alerter never runs
    out, _ = capsys.readouterr()
    assert out.splitlines() == [
        "✗ no stack 'spendwatch' in us-east-1",
        "    fix: deploy it with `make deploy`, or pass the right --stack, --region or --profile",
    ]

    create_stack(pipeline, subscribe=False)
    assert main(["verify", "--stack", STACK, "--timeout", "15"]) == 1
    out, _ = capsys.readouterr()
    assert "✗ missing SSM parameter /spendwatch/config (the config)" in out
    assert "fix: spendwatch config push config/spendwatch.yaml --parameter /spendwatch/config" in out
    assert "✗ nobody is subscribed to the alarm topic" in out

    configure(
        pipeline,
        openai,
        NO_BUDGET.format(channel=""),
        {"/spendwatch/sim/openai-admin-key": ADMIN_KEY, "/spendwatch/slack/webhook-url": slack.webhook_url},
    )
    assert main(["verify", "--stack", STACK, "--timeout", "2"]) == 1  # nobody delivers the stream
    out, _ = capsys.readouterr()
    assert "✗ sim -> slack: the alerter reported nothing within 2 s" in out
    assert "AlerterIteratorAgeAlarm" in out


def test_verify_an_unknown_org_is_a_usage_error(
    *,
    pipeline: LocalPipeline,
    openai: FakeOpenAI,
    slack: FakeSlack,
    deployed: Deployed,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    create_stack(pipeline)
    configure(pipeline, openai, NO_BUDGET.format(channel=""), {"/spendwatch/slack/webhook-url": slack.webhook_url})
    assert verify(deployed, monkeypatch, "--org", "nope") == 2
    out, _ = capsys.readouterr()
    assert "✗ no organization 'nope' in the deployed config (known: sim)" in out


def test_local_lambda_speaks_lambdas_invoke_wire_format(pipeline: LocalPipeline) -> None:
    def boom(event: dict[str, Any], context: Any) -> Any:
        raise ValueError("no organization 'x'")

    with LocalLambda({"ok": lambda event, context: {"echo": event}, "boom": boom}) as server:
        client = boto3.client("lambda", endpoint_url=server.root_url)
        answer = client.invoke(FunctionName="ok", Payload=b'{"a": 1}')
        assert json.loads(answer["Payload"].read()) == {"echo": {"a": 1}} and "FunctionError" not in answer
        failed = client.invoke(FunctionName="boom", Payload=b"{}")
        assert failed["FunctionError"] == "Unhandled"
        assert json.loads(failed["Payload"].read())["errorMessage"] == "no organization 'x'"
        with pytest.raises(client.exceptions.ResourceNotFoundException):
            client.invoke(FunctionName="missing", Payload=b"{}")
