"""`spendwatch verify`: prove that a deployed stack works, through its own IAM roles, SSM, stream and alerter.

Steps, each printed as ✓ or ✗ (with the exact fix on ✗):
1. the stack's outputs and parameters (CloudFormation `DescribeStacks`);
2. the deployed config (the `ConfigParameterName` SSM parameter, as `config push` stored it);
3. per organization: invoke the deployed poller (`{"org_id", "verify": <nonce>}`, RequestResponse): it
   polls OpenAI now with the key it reads from SSM and stores a snapshot carrying the nonce;
4. the snapshot in the table, then the alerter's outcome per channel: the stream brings the snapshot to
   the alerter, which posts "spendwatch is connected" to every channel of the organization and records
   each outcome under the nonce in the alert-state table (`spendwatch.alerter.verify`), read here until a timeout;
5. the alarm topic's subscriptions (a pending e-mail confirmation means alarms reach nobody).

Exit 0 when every step is ✓, 1 when any is ✗, 2 on a usage error. AWS clients come from `aws_cli`, so the
SDK's endpoint settings (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_LAMBDA`, …) point it at local stand-ins.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from spendwatch.cli.aws import Aws, AwsCallError, describe, error_code
from spendwatch.core.errors import ConfigError
from spendwatch.core.money import format_usd
from spendwatch.core.snapshot import NOTE_KINDS

DEFAULT_TIMEOUT_S = 120.0
POLL_INTERVAL_S = 1.0
PROGRESS_EVERY_S = 10.0
_READY = {"CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE", "IMPORT_COMPLETE"}
OPENAI_ADMIN_KEYS_PAGE = "https://platform.openai.com/settings/organization/admin-keys"


def _put_secret(parameter: str) -> str:
    return (
        f"read -rs KEY; aws ssm put-parameter --type SecureString --overwrite --name {parameter} "
        '--value "$KEY"; unset KEY'
    )


@dataclass
class Report:
    """Prints each step as it is decided; remembers whether any failed."""

    out: Callable[[str], None] = print
    failed: int = 0
    marks: tuple[str, str] = ("✓", "✗")

    def ok(self, text: str) -> None:
        self.out(f"{self.marks[0]} {text}")

    def fail(self, text: str, fix: str | None = None) -> None:
        self.failed += 1
        self.out(f"{self.marks[1]} {text}")
        if fix:
            self.out(f"    fix: {fix}")

    def note(self, text: str) -> None:
        self.out(f"  {text}")


def default_marks() -> tuple[str, str]:
    """✓/✗ where the terminal can show them, else plain words."""
    encoding = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        "✓✗".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return ("[ok]", "[FAIL]")
    return ("✓", "✗")


@dataclass
class Stack:
    name: str
    outputs: dict[str, str]
    parameters: dict[str, str]

    def output(self, key: str) -> str:
        return self.outputs[key]


@dataclass
class Verifier:
    aws: Aws
    stack_name: str
    report: Report
    timeout_s: float = DEFAULT_TIMEOUT_S
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    nonce: str = field(default_factory=lambda: secrets.token_hex(6))

    # ---- the steps ----------------------------------------------------------------------------------

    def run(self, org_id: str | None) -> int:
        stack = self.read_stack()
        if stack is None:
            return 1
        config = self.read_config(stack)
        if config is None:
            self.check_alarm_topic(stack)
            return 1
        orgs = [o for o in config.organizations if org_id in (None, o.id)]
        if not orgs:
            known = ", ".join(o.id for o in config.organizations)
            self.report.fail(f"no organization {org_id!r} in the deployed config (known: {known})")
            return 2
        for org in orgs:
            self.verify_org(stack, org.id, org.name)
        self.check_alarm_topic(stack)
        if self.report.failed:
            self.report.out(f"\n{self.report.failed} problem(s) found: fix them and run `spendwatch verify` again")
            return 1
        self.report.out("\nspendwatch works: every step above was done by the deployed stack")
        return 0

    def read_stack(self) -> Stack | None:
        cfn = self.aws.client("cloudformation")
        try:
            found = cfn.describe_stacks(StackName=self.stack_name)["Stacks"]
        except Exception as exc:
            if error_code(exc) == "ValidationError":  # CloudFormation's answer for a stack that does not exist
                self.report.fail(
                    f"no stack {self.stack_name!r} in {self.aws.region}",
                    "deploy it with `make deploy`, or pass the right --stack, --region or --profile",
                )
                return None
            raise AwsCallError(
                describe(exc, action="read the stack", permission="cloudformation:DescribeStacks")
            ) from None
        raw = found[0]
        status = str(raw.get("StackStatus", "?"))
        stack = Stack(
            self.stack_name,
            {o["OutputKey"]: o["OutputValue"] for o in raw.get("Outputs", [])},
            {p["ParameterKey"]: p.get("ParameterValue", "") for p in raw.get("Parameters", [])},
        )
        missing = {"PollerFunctionName", "AlertStateTableName", "SnapshotsTableName"} - set(stack.outputs)
        if status not in _READY or missing:
            self.report.fail(
                f"stack {self.stack_name} is {status}"
                + (f", without outputs {', '.join(sorted(missing))}" if missing else ""),
                "look at the stack's events in the CloudFormation console, then run `make deploy` again",
            )
            return None
        self.report.ok(f"stack {self.stack_name} in {self.aws.region}: {status}")
        return stack

    def read_config(self, stack: Stack) -> Any:
        from spendwatch.core.config import parse_config  # noqa: PLC0415

        name = stack.parameters.get("ConfigParameterName") or "/spendwatch/config"
        try:
            text = str(self.aws.client("ssm").get_parameter(Name=name)["Parameter"]["Value"])
        except Exception as exc:
            if error_code(exc) == "ParameterNotFound":
                self.report.fail(
                    f"missing SSM parameter {name} (the config)",
                    f"spendwatch config push config/spendwatch.yaml --parameter {name} --region {self.aws.region}",
                )
                return None
            raise AwsCallError(
                describe(exc, action=f"read the config {name}", permission="ssm:GetParameter", resource=name)
            ) from None
        try:
            config = parse_config(text, f"SSM parameter {name}")
        except ConfigError as exc:
            self.report.fail(
                f"the config in {name} is invalid: {'; '.join(exc.problems)}",
                f"fix your file and run `spendwatch config push FILE --parameter {name}`",
            )
            return None
        orgs = ", ".join(o.id for o in config.organizations)
        self.report.ok(f"config {name}: {len(config.organizations)} organization(s) ({orgs})")
        return config

    def verify_org(self, stack: Stack, org_id: str, org_name: str) -> None:
        self.report.note(f"{org_name} ({org_id}): polling OpenAI now with the deployed poller …")
        answer = self.invoke_poller(stack, org_id)
        if answer is None:
            return
        self.explain_sources(answer)
        channels = [str(c) for c in answer.get("channels", [])]
        if not channels:
            self.report.fail(
                f"{org_id} has no channel: its alerts reach nobody", "add `channels:` to it and run `config push`"
            )
            return
        self.follow(stack, org_id, str(answer["poll_time"]), channels)

    def invoke_poller(self, stack: Stack, org_id: str) -> Mapping[str, Any] | None:
        function = stack.output("PollerFunctionName")
        try:
            response = self.aws.client("lambda", read_timeout_s=150, attempts=1).invoke(
                FunctionName=function,
                InvocationType="RequestResponse",
                Payload=json.dumps({"org_id": org_id, "verify": self.nonce}).encode(),
            )
        except Exception as exc:
            raise AwsCallError(
                describe(exc, action=f"invoke {function}", permission="lambda:InvokeFunction", resource=function)
            ) from None
        body = response["Payload"].read()
        try:
            answer = json.loads(body or b"null")
        except ValueError:
            answer = None
        if response.get("FunctionError") or not isinstance(answer, dict):
            message = answer.get("errorMessage") if isinstance(answer, dict) else body[:300].decode("utf-8", "replace")
            self.report.fail(
                f"the poller failed: {message}",
                f"read its log: sam logs --stack-name {stack.name} -n PollerFunction --region {self.aws.region}",
            )
            return None
        return answer

    def explain_sources(self, answer: Mapping[str, Any]) -> None:
        """✓ or ✗ for what the poller could read, with the fix for each kind of key problem."""
        org_id = answer["org_id"]
        ok = answer.get("sources_ok") or []
        # A note on a source that answered (`skipped_rows`) is not a failure: verify passes.
        failures = [
            f for f in answer.get("failures") or [] if f.get("kind") not in NOTE_KINDS and f.get("source") not in ok
        ]
        conditions = set(answer.get("conditions") or [])
        spent = answer.get("month_to_date_usd")
        spent_text = f", month to date {format_usd(Decimal(str(spent)))}" if spent is not None else ""
        if not failures:
            self.report.ok(f"{org_id}: OpenAI read with the deployed key: {len(ok)} sources OK{spent_text}")
            return
        admin = answer.get("admin_key_parameter", "the admin key's parameter")
        session = answer.get("session_key_parameter", "the session key's parameter")
        by_cause: dict[tuple[str, str], list[str]] = {}
        for failure in failures:
            by_cause.setdefault((str(failure.get("kind")), str(failure.get("detail"))), []).append(
                str(failure["source"])
            )
        if ok:
            self.report.ok(f"{org_id}: {len(ok)} sources OK{spent_text}")
        for (kind, detail), sources in by_cause.items():
            fix = _source_fix(kind, detail, conditions, admin=admin, session=session)
            self.report.fail(f"{org_id}: {', '.join(sources)} failed [{kind}]: {detail}", fix)

    def follow(self, stack: Stack, org_id: str, poll_time: str, channels: list[str]) -> None:
        """Wait for the snapshot in the table, then for the alerter's outcome on each channel."""
        from spendwatch.alerter.verify import check_key  # noqa: PLC0415
        from spendwatch.aws.store import AlertStateStore  # noqa: PLC0415

        dynamodb = self.aws.client("dynamodb")
        table = stack.output("SnapshotsTableName")
        key = {"pk": {"S": f"ORG#{org_id}"}, "sk": {"S": f"SNAP#{poll_time}"}}
        try:
            stored = dynamodb.get_item(TableName=table, Key=key, ProjectionExpression="pk").get("Item")
        except Exception as exc:
            raise AwsCallError(
                describe(exc, action=f"read {table}", permission="dynamodb:GetItem", resource=table)
            ) from None
        if not stored:
            self.report.fail(f"{org_id}: no snapshot in {table} for {poll_time}", "read the poller's log (sam logs)")
            return
        self.report.ok(f"{org_id}: snapshot {poll_time} stored in {table}")
        self.report.note("waiting for the alerter (table stream -> AlerterFunction -> your channels) …")
        states = AlertStateStore(stack.output("AlertStateTableName"), client=dynamodb)
        pending = {name: check_key(self.nonce, name) for name in channels}
        started = next_note = self.clock()
        while pending:
            for name, item_key in list(pending.items()):
                try:
                    result = states.check_result(org_id, item_key)
                except Exception as exc:
                    table_name = stack.output("AlertStateTableName")
                    raise AwsCallError(
                        describe(exc, action=f"read {table_name}", permission="dynamodb:GetItem", resource=table_name)
                    ) from None
                if result is not None:
                    del pending[name]
                    self._channel_result(org_id, name, result)
            elapsed = self.clock() - started
            if not pending:
                break
            if elapsed >= self.timeout_s:
                for name in pending:
                    self.report.fail(
                        f"{org_id} -> {name}: the alerter reported nothing within {self.timeout_s:.0f} s",
                        f"read its log (sam logs --stack-name {stack.name} -n AlerterFunction --region "
                        f"{self.aws.region}); check AlerterIteratorAgeAlarm and the dead-letter queue",
                    )
                return
            if self.clock() >= next_note + PROGRESS_EVERY_S:
                next_note = self.clock()
                self.report.note(f"… {elapsed:.0f} s, still waiting for: {', '.join(pending)}")
            self.sleep(POLL_INTERVAL_S)

    def _channel_result(self, org_id: str, name: str, result: Mapping[str, Any]) -> None:
        detail = str(result.get("check_detail", ""))
        if result.get("check_ok"):
            self.report.ok(f"{org_id} -> {name}: the deployed alerter {detail}")
            return
        text, _, fix = detail.partition("; fix: ")
        self.report.fail(f"{org_id} -> {name}: {result.get('last_reason')}: {text}", fix or None)

    def check_alarm_topic(self, stack: Stack) -> None:
        topic = stack.outputs.get("AlarmTopicArn")
        if topic is None:
            return
        try:
            subscriptions = self.aws.client("sns").list_subscriptions_by_topic(TopicArn=topic).get("Subscriptions", [])
        except Exception as exc:
            raise AwsCallError(
                describe(exc, action="read the alarm topic", permission="sns:ListSubscriptionsByTopic", resource=topic)
            ) from None
        subscribe = (
            f"aws sns subscribe --topic-arn {topic} --protocol email --notification-endpoint you@example.com "
            f"--region {self.aws.region} (or deploy with AlarmEmail set), then confirm the mail AWS sends"
        )
        if not subscriptions:
            self.report.fail(
                "nobody is subscribed to the alarm topic: alarms about the monitor reach no one", subscribe
            )
            return
        for sub in subscriptions:
            who = f"{sub.get('Protocol')}:{sub.get('Endpoint')}"
            if sub.get("SubscriptionArn") == "PendingConfirmation":
                self.report.fail(
                    f"alarm subscription {who} is not confirmed: alarms do not reach it yet",
                    "click the link in AWS's mail 'AWS Notification - Subscription Confirmation' (not arrived? "
                    f"run: {subscribe})",
                )
            else:
                self.report.ok(f"alarms go to {who}")


def _source_fix(kind: str, detail: str, conditions: set[str], *, admin: str, session: str) -> str:
    """The fix for a group of failed sources, from the poller's failure kind, detail and key conditions."""
    new_key = f"create a new admin key ({OPENAI_ADMIN_KEYS_PAGE}) and store it: {_put_secret(admin)}"
    rules: list[tuple[bool, str]] = [
        (
            "admin_key_missing" in conditions and "is not set" in detail and "admin key" in detail,
            f"missing SSM parameter {admin}: store the organization's admin key: {_put_secret(admin)}",
        ),
        (
            any(c.startswith("admin_key_missing_scope") for c in conditions) and "scope" in detail,
            f"the admin key lacks the scope named above: {new_key} (with read access to every endpoint)",
        ),
        (
            "session key" in detail.lower(),
            f"renew the session key in {session}, or delete it to use the admin API alone",
        ),
        ("admin_key_rejected" in conditions, f"OpenAI rejected the admin key: {new_key}"),
        (
            kind in {"auth", "key"},
            "OpenAI refused this source while the key works elsewhere: check the key's project access and "
            "permissions (docs/snapshot.md)",
        ),
        (
            kind in {"unavailable", "rate_limited"} and "SSM parameter" in detail,
            "the poller's role cannot read that parameter: keep key names under /<SsmParameterPrefix>/<org>/openai-*",
        ),
        (
            kind in {"unavailable", "rate_limited"},
            "OpenAI did not answer in time or was busy: run `spendwatch verify` again in a few minutes",
        ),
    ]
    return next((fix for matched, fix in rules if matched), "see docs/snapshot.md for this source")
