"""E-mail sender (SES v2): request shape, bounded recipients, and error classification (A14).

The SES client is a real botocore client with a `Stubber`: requests are validated against the SES v2
model and nothing leaves the process.
"""

from __future__ import annotations

import ssl
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders
from botocore.exceptions import (
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
    SSLError,
)
from botocore.stub import Stubber

from spendwatch.alerter.notices import notice_message
from spendwatch.channels.email import (
    EmailBody,
    EmailSender,
    classify_ses,
    default_ses_client,
    email_from_message,
    slack_to_plain,
)
from spendwatch.core.alerts import Message
from spendwatch.core.errors import DeliveryError, DeliveryUnknownError

SENDER = "alerts@example.com"


def ses_client() -> Any:
    return boto3.client("sesv2", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")


def email_sender(stubbed: Any, **kwargs: Any) -> tuple[EmailSender, list[float]]:
    sleeps: list[float] = []
    options: dict[str, Any] = {"recipients": ("ops@example.com",), "subject_prefix": "[spendwatch]"}
    options.update(kwargs)
    return (
        EmailSender("mail", sender=SENDER, client=lambda: stubbed, sleep=sleeps.append, **options),
        sleeps,
    )


def hostile_message() -> Message:
    return notice_message(
        "OpenAI spend alert: <b>Acme</b> & Co",
        ["80% of the monthly budget reached: $400 of $500", "project <!channel> <https://evil|Pay>"],
        context="Polled 2026-11-21T23:00:00Z",
        mention="<!here>",
    )


@pytest.mark.parametrize(
    ("code", "retryable"),
    [
        ("TooManyRequestsException", True),
        ("Throttling", True),
        ("ThrottlingException", True),
        ("LimitExceededException", True),
        ("InternalFailure", True),
        ("ServiceUnavailable", True),
        ("MessageRejected", False),
        ("MailFromDomainNotVerifiedException", False),
        ("SendingPausedException", False),
        ("AccountSuspendedException", False),
        ("NotFoundException", False),
        ("BadRequestException", False),
        ("AccessDeniedException", False),
        ("SomethingNew", False),
        ("InternalSomethingNew", True),
    ],
)
def test_classify_ses(code: str, retryable: bool) -> None:
    assert classify_ses(code).retryable is retryable


def test_email_request_has_text_and_html_with_the_same_lines() -> None:
    client = ses_client()
    email, _ = email_sender(client, configuration_set="alerts")
    message = hostile_message()
    body = email_from_message(message)
    with Stubber(client) as stub:
        stub.add_response(
            "send_email",
            {"MessageId": "m-1"},
            {
                "FromEmailAddress": SENDER,
                "Destination": {"ToAddresses": ["ops@example.com"]},
                "ConfigurationSetName": "alerts",
                "Content": {
                    "Simple": {
                        "Subject": {"Data": f"[spendwatch] {body.subject}", "Charset": "UTF-8"},
                        "Body": {
                            "Text": {"Data": body.text, "Charset": "UTF-8"},
                            "Html": {"Data": body.html, "Charset": "UTF-8"},
                        },
                    }
                },
            },
        )
        email.send(message)
        stub.assert_no_pending_responses()
    assert body.subject == "OpenAI spend alert: <b>Acme</b> & Co"
    assert "<!here>" not in body.text, "the configured Slack mention is dropped from e-mail"
    assert "project <!channel> <https://evil|Pay>" in body.text, "untrusted text is shown literally, not as markup"
    assert "&lt;b&gt;Acme&lt;/b&gt; &amp; Co" in body.html, "untrusted text is HTML-escaped"
    assert "<b>Acme" not in body.html
    for line in ("80% of the monthly budget reached: $400 of $500", "Polled 2026-11-21T23:00:00Z"):
        assert line in body.text and line in body.html


def test_email_accepts_render_email_content_as_is() -> None:
    client = ses_client()
    email, _ = email_sender(client)
    content = EmailBody(subject="Budget 80%", text="plain", html="<p>html</p>")
    with Stubber(client) as stub:
        stub.add_response(
            "send_email",
            {"MessageId": "m-1"},
            {
                "FromEmailAddress": SENDER,
                "Destination": {"ToAddresses": ["ops@example.com"]},
                "Content": {
                    "Simple": {
                        "Subject": {"Data": "[spendwatch] Budget 80%", "Charset": "UTF-8"},
                        "Body": {
                            "Text": {"Data": "plain", "Charset": "UTF-8"},
                            "Html": {"Data": "<p>html</p>", "Charset": "UTF-8"},
                        },
                    }
                },
            },
        )
        email.send(content)
        stub.assert_no_pending_responses()


def test_email_recipients_are_bounded_per_call() -> None:
    client = ses_client()
    recipients = tuple(f"r{i}@example.com" for i in range(5))
    email, _ = email_sender(client, recipients=recipients, max_recipients_per_call=2)
    with Stubber(client) as stub:
        for start in (0, 2, 4):
            stub.add_response("send_email", {"MessageId": f"m-{start}"})
        email.send(hostile_message())
        stub.assert_no_pending_responses()
    assert email.calls == 3


@pytest.mark.parametrize(
    ("errors", "remaining", "outcome", "calls", "sleeps"),
    [
        (["TooManyRequestsException"], 30.0, "ok", 2, [1.0]),
        (["Throttling", "TooManyRequestsException"], 30.0, "ok", 3, [1.0, 2.0]),
        (["TooManyRequestsException"] * 3, 30.0, "retryable:TooManyRequestsException", 3, [1.0, 2.0]),
        (["TooManyRequestsException"], 15.5, "retryable:TooManyRequestsException", 1, []),
        (["TooManyRequestsException"], 0.5, "retryable:out_of_time", 0, []),
        (["MessageRejected"], 30.0, "permanent:MessageRejected", 1, []),
        (["MailFromDomainNotVerifiedException"], 30.0, "permanent:MailFromDomainNotVerifiedException", 1, []),
        (["SendingPausedException"], 30.0, "permanent:SendingPausedException", 1, []),
        (["AccountSuspendedException"], 30.0, "permanent:AccountSuspendedException", 1, []),
    ],
)
def test_email_error_handling(
    errors: list[str], remaining: float, outcome: str, calls: int, sleeps: list[float]
) -> None:
    client = ses_client()
    email, slept = email_sender(client, remaining_s=lambda: remaining)
    status = {"TooManyRequestsException": 429, "Throttling": 400}
    with Stubber(client) as stub:
        for code in errors:
            stub.add_client_error("send_email", service_error_code=code, http_status_code=status.get(code, 400))
        stub.add_response("send_email", {"MessageId": "m-ok"})
        if outcome == "ok":
            email.send(hostile_message())
        else:
            kind, reason = outcome.split(":")
            with pytest.raises(DeliveryError) as caught:
                email.send(hostile_message())
            assert caught.value.retryable is (kind == "retryable")
            assert caught.value.reason == reason
            assert reason in str(caught.value), "the rejection is named"
    assert email.calls == calls
    assert slept == sleeps


def test_email_without_recipients_is_refused_at_build_time() -> None:
    with pytest.raises(DeliveryError) as caught:
        EmailSender("mail", sender=SENDER, recipients=())
    assert caught.value.reason == "not_configured"


def test_slack_to_plain_turns_links_into_text_and_drops_mentions() -> None:
    text = "<!here> Alert &amp; more: <https://platform.openai.com/usage|Open OpenAI usage> &lt;x&gt;"
    assert slack_to_plain(text) == "Alert & more: Open OpenAI usage (https://platform.openai.com/usage) <x>"


# --------------------------------------------------------------------------------------------------
# transport faults: a real botocore client whose HTTP send raises what botocore raises on the wire
# --------------------------------------------------------------------------------------------------
ENDPOINT = "https://email.us-east-1.amazonaws.com/v2/email/outbound-emails"


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "t",
        "AWS_SECRET_ACCESS_KEY": "t",
    }.items():
        monkeypatch.setenv(name, value)


def wire_faults(client: Any, faults: list[Exception]) -> list[int]:
    """Make `client`'s next HTTP sends raise `faults` in turn (then answer 200): the request is built,
    validated and signed by botocore as usual, only the socket is replaced."""
    sends: list[int] = []

    def before_send(request: Any, **kwargs: Any) -> Any:
        sends.append(1)
        if faults:
            raise faults.pop(0)
        return AWSResponse(request.url, 200, HTTPHeaders(), _Raw(b'{"MessageId": "m-1"}'))

    client.meta.events.register("before-send.sesv2.SendEmail", before_send)
    return sends


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **kwargs: Any) -> Any:
        yield self._body


@pytest.mark.parametrize(
    ("faults", "outcome", "sends", "sleeps"),
    [
        # the request went out and no answer came: SES may have the message; never retried here
        ([ReadTimeoutError(endpoint_url=ENDPOINT)], "unknown:read_timeout", 1, []),
        ([ConnectionClosedError(endpoint_url=ENDPOINT)], "unknown:connection_reset", 1, []),
        # provably not sent: retried within the time left
        ([EndpointConnectionError(endpoint_url=ENDPOINT)], "ok", 2, [1.0]),
        ([ConnectTimeoutError(endpoint_url=ENDPOINT)] * 3, "retryable:connect_timeout", 3, [1.0, 2.0]),
        # botocore raises SSLError for a TLS failure while reading the answer too: the request may have left
        ([SSLError(endpoint_url=ENDPOINT, error=ssl.SSLError("bad record"))], "unknown:tls_after_send", 1, []),
        (
            [EndpointConnectionError(endpoint_url=ENDPOINT), ReadTimeoutError(endpoint_url=ENDPOINT)],
            "unknown:read_timeout",
            2,
            [1.0],
        ),
    ],
)
def test_email_transport_faults_are_classified_by_whether_the_request_left(
    faults: list[Exception], outcome: str, sends: int, sleeps: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "t",
        "AWS_SECRET_ACCESS_KEY": "t",
    }.items():
        monkeypatch.setenv(name, value)
    client = default_ses_client()  # as deployed: botocore's own retries off
    sent = wire_faults(client, list(faults))
    email, slept = email_sender(client)
    if outcome == "ok":
        email.send(hostile_message())
    else:
        kind, reason = outcome.split(":")
        with pytest.raises(DeliveryError) as caught:
            email.send(hostile_message())
        assert isinstance(caught.value, DeliveryUnknownError) is (kind == "unknown")
        assert caught.value.retryable is (kind == "retryable")
        assert caught.value.reason == reason
        assert ENDPOINT not in str(caught.value)
    assert len(sent) == sends
    assert slept == sleeps


def test_email_gateway_timeout_is_an_unknown_outcome() -> None:
    client = ses_client()
    email, slept = email_sender(client)
    with Stubber(client) as stub:
        stub.add_client_error("send_email", service_error_code="GatewayTimeout", http_status_code=504)
        with pytest.raises(DeliveryUnknownError) as caught:
            email.send(hostile_message())
    assert caught.value.reason == "http_504"
    assert email.calls == 1 and slept == []


def test_email_timeouts_are_settable_and_bound_the_time_a_call_needs(aws_env: None) -> None:
    config: Any = default_ses_client(connect_timeout_s=0.25, read_timeout_s=0.5).meta.config
    assert (config.connect_timeout, config.read_timeout) == (0.25, 0.5)
    assert config.retries["total_max_attempts"] == 1, "botocore never resends on its own"
    stubbed = ses_client()
    fast, _ = email_sender(stubbed, connect_timeout_s=0.25, read_timeout_s=0.5, remaining_s=lambda: 1.0)
    with Stubber(stubbed) as stub:
        stub.add_response("send_email", {"MessageId": "m-1"})
        fast.send(hostile_message())  # 0.75 s per call fits in 1 s; the 15 s default would not
    slow, _ = email_sender(ses_client(), remaining_s=lambda: 1.0)
    with pytest.raises(DeliveryError) as caught:
        slow.send(hostile_message())
    assert caught.value.reason == "out_of_time"


def test_email_ses_5xx_without_an_error_code_is_retried_not_permanent() -> None:
    from botocore.exceptions import ClientError

    class Failing:
        def __init__(self) -> None:
            self.calls = 0

        def send_email(self, **kwargs: Any) -> dict[str, str]:
            self.calls += 1
            if self.calls == 1:
                # An HTML 503 from a load balancer: botocore can only name the status.
                reply: Any = {"Error": {"Code": "503", "Message": ""}, "ResponseMetadata": {"HTTPStatusCode": 503}}
                raise ClientError(reply, "SendEmail")
            return {"MessageId": "m"}

    client = Failing()
    email, slept = email_sender(client)
    email.send(hostile_message())
    assert client.calls == 2
    assert slept == [1.0]
