"""Amazon SNS: publish to a topic, which fans out to AWS Chatbot, SMS, e-mail, HTTPS, SQS or Lambda.

One `Publish` per message with `MessageStructure: json`, so each kind of subscriber gets what it reads:
`default`/`email` the plain text, `sms` the title, `https` an AWS Chatbot custom notification
(`version 1.0`, `source custom`, title and description), `sqs`/`lambda` the webhook's
`spendwatch.alert/v1` document. Message attributes `org`, `rules` (String.Array), `severity`, `status`
and `kind` let a subscription filter policy pick, say, only critical alerts of one organization.
The subject is ASCII, one line, under 100 characters, as SNS requires.

Outcomes as for SES: throttling and SNS-side 5xx retried within the time left; a missing topic,
authorization error or invalid parameter permanent; a read timeout, a connection closed after sending
or a 504 unknown (SNS may have published it), never retried. boto3 is imported on the first send.
IAM: `sns:Publish` on the topics named in the template's `AlertTopicArns` parameter only.
"""

from __future__ import annotations

import json
import time
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from spendwatch.channels.email import (
    SES_CONNECT_TIMEOUT_S,
    SES_READ_TIMEOUT_S,
    SesError,
    call_with_retries,
)
from spendwatch.channels.webhook import webhook_payload
from spendwatch.core.alerts import RULE_SECTION, SEVERITIES, Message, severity_of
from spendwatch.core.errors import DeliveryError
from spendwatch.core.redact import scrub, scrub_data
from spendwatch.core.text import neutralize

if TYPE_CHECKING:
    from mypy_boto3_sns.client import SNSClient
    from mypy_boto3_sns.type_defs import MessageAttributeValueTypeDef

SNS_CONNECT_TIMEOUT_S = SES_CONNECT_TIMEOUT_S
SNS_READ_TIMEOUT_S = SES_READ_TIMEOUT_S
SUBJECT_LIMIT = 99
SMS_LIMIT = 140
MAX_MESSAGE_BYTES = 256 * 1024
RETRYABLE_SNS_ERRORS = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
    }
)
PERMANENT_SNS_ERRORS = frozenset(
    {
        "NotFound",
        "NotFoundException",
        "AuthorizationError",
        "AuthorizationErrorException",
        "AccessDenied",
        "AccessDeniedException",
        "InvalidParameter",
        "InvalidParameterException",
        "InvalidParameterValue",
        "InvalidParameterValueException",
        "KMSDisabled",
        "KMSAccessDenied",
        "KMSNotFound",
        "InvalidSecurity",
        "ValidationError",
    }
)
SNS_REASONS = RETRYABLE_SNS_ERRORS | PERMANENT_SNS_ERRORS


def default_sns_client(
    *, connect_timeout_s: float = SNS_CONNECT_TIMEOUT_S, read_timeout_s: float = SNS_READ_TIMEOUT_S
) -> SNSClient:
    import boto3  # noqa: PLC0415
    from botocore.config import Config  # noqa: PLC0415

    # One attempt per call: our loop retries, and never after a read timeout (see default_ses_client).
    config = Config(
        retries={"mode": "standard", "total_max_attempts": 1},
        connect_timeout=connect_timeout_s,
        read_timeout=read_timeout_s,
    )
    return boto3.client("sns", config=config)


def subject_line(text: str) -> str:
    """SNS's subject: ASCII, one line, starting with a letter, digit or punctuation, under 100 characters."""
    ascii_text = unicodedata.normalize("NFKD", neutralize(text)).encode("ascii", "ignore").decode()
    line = " ".join(ascii_text.split()).lstrip() or "spendwatch alert"
    return line if len(line) <= SUBJECT_LIMIT else line[: SUBJECT_LIMIT - 3] + "..."


def _plain_text(message: Message) -> tuple[str, str]:
    content = message.content
    title = neutralize(content.title if content is not None else (message.raw_title or message.title))
    lines = content.lines if content is not None else message.raw_lines
    body = [title, "", *(f"- {neutralize(line)}" for line in lines)]
    if content is not None:
        body += [f"{label}: {neutralize(value)}" for label, value in content.figures]
        body += ["", neutralize(content.freshness), "OpenAI usage: https://platform.openai.com/usage"]
    return title, "\n".join(body).strip() + "\n"


def sns_publish_request(message: Message, *, now: datetime) -> dict[str, Any]:
    """The `Publish` parameters of one message, without `TopicArn`."""
    title, text = _plain_text(message)
    document = webhook_payload(message, now=now)
    chatbot = {
        "version": "1.0",
        "source": "custom",
        "content": {"textType": "client-markdown", "title": title[:250], "description": text[:8000]},
        "metadata": {"threadId": document["id"], "enableCustomActions": False},
    }
    structure = {
        "default": text,
        "email": text,
        "email-json": json.dumps(document, ensure_ascii=True),
        "sms": title[:SMS_LIMIT],
        "https": json.dumps(chatbot, ensure_ascii=True),
        "sqs": json.dumps(document, ensure_ascii=True),
        "lambda": json.dumps(document, ensure_ascii=True),
    }
    severities = [severity_of(a.observation.rule_id, a.level) for a in message.alerts] or ["info"]
    rules = sorted({RULE_SECTION.get(a.observation.rule_id, a.observation.rule_id) for a in message.alerts})
    attributes: dict[str, MessageAttributeValueTypeDef] = {
        "severity": {"DataType": "String", "StringValue": max(severities, key=SEVERITIES.index)},
        "status": {"DataType": "String", "StringValue": document["status"]},
        "kind": {"DataType": "String", "StringValue": document["kind"]},
    }
    if document["org"] is not None:
        attributes["org"] = {"DataType": "String", "StringValue": document["org"]["id"]}
    if rules:
        attributes["rules"] = {"DataType": "String.Array", "StringValue": json.dumps(rules)}
    return {
        "Subject": subject_line(title),
        "Message": json.dumps(structure, ensure_ascii=True),
        "MessageStructure": "json",
        "MessageAttributes": attributes,
    }


def classify_sns(code: str, status: object) -> SesError:
    if code in RETRYABLE_SNS_ERRORS or (isinstance(status, int) and status >= 500 and code not in PERMANENT_SNS_ERRORS):
        return SesError(code if code in SNS_REASONS else f"http_{status}", True)
    return SesError(code, False)


class SnsSender:
    """Publishes each message to one topic; see the module docstring for the outcomes."""

    kind = "sns"

    def __init__(
        self,
        name: str,
        *,
        topic_arn: str,
        client: Callable[[], SNSClient] | None = None,
        remaining_s: Callable[[], float] = lambda: 30.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        max_attempts: int = 3,
        connect_timeout_s: float = SNS_CONNECT_TIMEOUT_S,
        read_timeout_s: float = SNS_READ_TIMEOUT_S,
    ) -> None:
        self.name = name
        self._topic_arn = topic_arn
        self._client_factory = client or (
            lambda: default_sns_client(connect_timeout_s=connect_timeout_s, read_timeout_s=read_timeout_s)
        )
        self._client: SNSClient | None = None
        self._remaining_s = remaining_s
        self._sleep = sleep
        self._clock = clock
        self._max_attempts = max_attempts
        self._call_budget_s = connect_timeout_s + read_timeout_s
        self.calls = 0

    def send(self, message: Message) -> None:
        request = sns_publish_request(message, now=datetime.fromtimestamp(self._clock(), UTC))
        request = {**scrub_data(request), "Subject": scrub(request["Subject"], shapes=False)}
        if len(request["Message"].encode()) > MAX_MESSAGE_BYTES:
            raise DeliveryError(self.name, "the message is over SNS's 256 KB", retryable=False, reason="error")
        call_with_retries(
            self.name,
            "SNS",
            lambda: self._api().publish(TopicArn=self._topic_arn, **request),
            classify_sns,
            did="published",
            refused="refused",
            attempts=self._max_attempts,
            call_budget_s=self._call_budget_s,
            remaining_s=self._remaining_s,
            sleep=self._sleep,
            counted=self._count_call,
        )

    def _api(self) -> SNSClient:
        if self._client is None:
            self._client = self._client_factory()
        return self._client

    def _count_call(self) -> None:
        self.calls += 1
