"""E-mail sender (SES v2): request shape, bounded recipients, and error classification (A14).

The SES client is a real botocore client with a `Stubber`: requests are validated against the SES v2
model and nothing leaves the process.
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from spendwatch.errors import DeliveryError
from spendwatch.notices import notice_message
from spendwatch.render import Message
from spendwatch.senders import EmailBody, EmailSender, classify_ses, email_from_message, slack_to_plain

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
