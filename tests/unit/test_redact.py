"""Redaction by value: a secret the process has read never leaves it, in any encoding."""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spendwatch.aws.secrets import EnvSecrets
from spendwatch.core.config import SecretRef
from spendwatch.core.errors import ConfigError, DeliveryError, SourceError, SpendwatchError
from spendwatch.core.redact import (
    REDACTED,
    REGISTRY,
    ScrubbingStream,
    SecretRegistry,
    contains_secret,
    encodings,
    register_secret,
    scrub,
    scrub_data,
)
from spendwatch.core.snapshot import Snapshot, SourceFailure

CANARY = "sk-admin-canary-Zq8/wT+v=x&y<z>é-000000000001"
"""A key-shaped canary that needs every kind of escaping: `/`, `+`, `=`, `&`, `<`, `>` and a non-ASCII letter."""
WEBHOOK = "https://hooks.example.test/services/T0CANARY/B0CANARY/canarywebhooksecret01"


@pytest.fixture(autouse=True)
def _canaries() -> Iterator[None]:
    register_secret(CANARY)
    register_secret(WEBHOOK)
    yield


def _b64_inside(prefix: str, secret: str) -> str:
    return base64.b64encode(f"{prefix}{secret}!".encode()).decode()


ENCODERS: dict[str, Callable[[str], str]] = {
    "raw": lambda s: s,
    "json": lambda s: json.dumps(s)[1:-1],
    "json_unicode": lambda s: json.dumps(s, ensure_ascii=False)[1:-1],
    "json_twice": lambda s: json.dumps(json.dumps(s))[1:-1],
    "json_twice_unicode": lambda s: json.dumps(json.dumps(s, ensure_ascii=False), ensure_ascii=False)[1:-1],
    "url": lambda s: quote(s, safe=""),
    "url_lower": lambda s: re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), quote(s, safe="")),
    "url_plus": quote_plus,
    "html": html.escape,
    "repr": lambda s: repr(s)[1:-1],
    "b64_0": lambda s: _b64_inside("", s),
    "b64_1": lambda s: _b64_inside("u", s),
    "b64_2": lambda s: _b64_inside("us", s),
    "b64_basic_auth": lambda s: base64.b64encode(f"user:{s}".encode()).decode(),
    "b64_urlsafe": lambda s: base64.urlsafe_b64encode(f"x{s}".encode()).decode(),
}


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_scrub_removes_a_registered_secret_in_every_encoding(name: str) -> None:
    encoded = ENCODERS[name](CANARY)
    scrubbed = scrub(f"before {encoded} after")
    assert not contains_secret(scrubbed, [CANARY])
    assert REDACTED in scrubbed


def test_scrub_removes_a_webhook_url_and_its_path_alone() -> None:
    path = "/services/T0CANARY/B0CANARY/canarywebhooksecret01"
    text = scrub(f"posting to {WEBHOOK} failed; path {path}; quoted {quote(WEBHOOK, safe='')}")
    assert "canarywebhooksecret01" not in text
    assert "T0CANARY" not in text


def test_scrub_keeps_ordinary_text_and_short_values() -> None:
    register_secret("abc")  # too short to be a real secret: scrubbing it would mangle ordinary words
    assert scrub("abc is the total for project Alpha: $12.50") == "abc is the total for project Alpha: $12.50"


def test_scrub_still_removes_key_shapes_it_never_read() -> None:
    assert scrub("Authorization: Bearer abc.def") == "Authorization: [redacted]"
    assert "unknown1key" not in scrub("echoed sk-proj-unknown1key back")
    assert scrub("store an sk-admin- key, not sk-admin-…") == "store an sk-admin- key, not sk-admin-…"
    assert "xoxb-1-2" not in scrub("token xoxb-1-2-abc")


def test_scrub_data_scrubs_keys_and_values_but_not_name_shapes() -> None:
    data = {"project": "task-sk-abc", CANARY: [f"x{CANARY}", ("t", 1)]}
    assert scrub_data(data) == {"project": "task-sk-abc", REDACTED: [f"x{REDACTED}", ("t", 1)]}


@settings(max_examples=200, deadline=None)
@given(
    # A secret that contains the redaction mark itself could re-form around it; no real key does.
    secret=st.text(min_size=8, max_size=60).filter(lambda s: REDACTED not in s),
    before=st.text(max_size=20),
    after=st.text(max_size=20),
    encoder=st.sampled_from(["raw", "json", "json_unicode", "url", "url_plus", "html", "repr", "b64_0", "b64_1"]),
)
def test_scrub_property_no_registered_secret_survives(secret: str, before: str, after: str, encoder: str) -> None:
    # Given any secret the process has read (a registry of its own: random "secrets" such as "00000000"
    # must not be scrubbed from the other tests' text), in any of the encodings it could emit it in
    registry = SecretRegistry()
    registry.register(secret)
    text = before + ENCODERS[encoder](secret) + after
    # Then the scrubbed text holds none of its forms
    scrubbed = registry.scrub(text)
    assert not any(form in scrubbed for form in encodings(secret) if len(form) >= 8)


def test_env_secrets_register_what_they_read() -> None:
    value = "sk-admin-env-canary-0000000000002"
    secrets = EnvSecrets({"OPENAI_ADMIN_KEY": value})
    assert secrets.get(SecretRef(parameter="/spendwatch/a/openai-admin-key", env="OPENAI_ADMIN_KEY")) == value
    assert value in REGISTRY.registered()
    assert scrub(f"echo {value}") == f"echo {REDACTED}"


def test_errors_never_carry_a_registered_secret() -> None:
    source = SourceError("costs", f"rejected (401 {CANARY}): bad key")
    delivery = DeliveryError("slack", f"POST {WEBHOOK} refused", retryable=False)
    config = ConfigError("ssm", [f"webhook {WEBHOOK} is not allowed"])
    other = SpendwatchError(f"anything {json.dumps(CANARY)}")
    for error in (source, delivery, config, other):
        assert not contains_secret(str(error), [CANARY, WEBHOOK])
    assert not contains_secret(source.detail + delivery.detail + "".join(config.problems), [CANARY, WEBHOOK])


def test_snapshot_failure_details_and_names_are_scrubbed_when_stored_and_printed() -> None:
    moment = datetime(2026, 11, 21, tzinfo=UTC)
    snapshot = Snapshot(
        org_id="acme",
        org_name=f"Acme {CANARY}",
        poll_time=moment,
        collected_at=moment,
        failures=(SourceFailure(source="costs", kind="auth", detail=f"code {quote(CANARY, safe='')}"),),
    )
    assert not contains_secret(snapshot.failures[0].detail, [CANARY])
    item = json.dumps(snapshot.to_item(expires_at=1), default=str)
    printed = json.dumps(snapshot.to_json_dict())
    assert not contains_secret(item, [CANARY])
    assert not contains_secret(printed, [CANARY])


def test_logger_lines_never_carry_a_registered_secret(capsys: pytest.CaptureFixture[str]) -> None:
    from spendwatch.core.observability import logger

    logger.warning("source failed", detail=f"echoed {CANARY}", url=WEBHOOK)
    try:
        raise ValueError(f"boom {CANARY}")
    except ValueError:
        logger.exception("unexpected")
    err = capsys.readouterr().err
    assert "source failed" in err and "unexpected" in err
    assert not contains_secret(err, [CANARY, WEBHOOK])


def test_root_handlers_scrub_other_libraries_records() -> None:
    from spendwatch.core.observability import redact_root_handlers

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        redact_root_handlers()
        logging.getLogger("urllib3.connectionpool").warning("Retrying %s after %s", WEBHOOK, CANARY)
    finally:
        root.removeHandler(handler)
    assert "Retrying" in stream.getvalue()
    assert not contains_secret(stream.getvalue(), [CANARY, WEBHOOK])


def test_scrubbing_stream_finds_a_secret_split_across_writes() -> None:
    out = io.StringIO()
    stream = ScrubbingStream(out)
    stream.write(f"key {CANARY[:10]}")
    stream.write(f"{CANARY[10:]} end\npartial {CANARY}")
    stream.flush()
    assert out.getvalue() == f"key {REDACTED} end\npartial {REDACTED}"


def test_senders_never_carry_a_registered_secret_to_the_receiver() -> None:
    from spendwatch.alerter.notices import notice_message
    from spendwatch.channels.email import EmailSender
    from spendwatch.channels.slack import SlackCredentials, SlackReply, SlackSender

    sent: list[object] = []

    def transport(creds: SlackCredentials, channel: str | None, message: object, timeout: float) -> SlackReply:
        sent.append(message)
        return SlackReply(200, None)

    message = notice_message(f"failed: {CANARY}", [f"receiver said {WEBHOOK}"], context=json.dumps(CANARY))
    hook = "https://hooks.slack.com/services/Tsender/Bsender/senderpath"  # the credential; WEBHOOK is in the text
    SlackSender("s", lambda force: SlackCredentials(webhook_url=hook), transport=transport).send(message)
    assert sent
    assert not contains_secret(json.dumps([sent[0].text, sent[0].blocks], ensure_ascii=False), [CANARY, WEBHOOK])  # type: ignore[attr-defined]

    class Ses:
        def __init__(self) -> None:
            self.calls: list[dict[str, object]] = []

        def send_email(self, **kwargs: object) -> dict[str, str]:
            self.calls.append(kwargs)
            return {"MessageId": "m"}

    ses = Ses()
    EmailSender("e", sender="a@example.com", recipients=["b@example.com"], client=lambda: ses).send(message)  # type: ignore[arg-type,return-value]
    assert ses.calls
    assert not contains_secret(json.dumps(ses.calls, ensure_ascii=False), [CANARY, WEBHOOK])


def test_new_channel_senders_never_carry_a_registered_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """Webhook, Teams, PagerDuty and SNS scrub the payload before it is encoded; PagerDuty's routing key is
    added afterwards, so it reaches the one field that must hold it and nothing else."""
    from spendwatch.alerter.notices import notice_message
    from spendwatch.channels import base
    from spendwatch.channels.pagerduty import PagerDutySender
    from spendwatch.channels.sns import SnsSender
    from spendwatch.channels.teams import TeamsSender
    from spendwatch.channels.webhook import WebhookSender

    bodies: list[bytes] = []

    def post_once(url: str, body: bytes, headers: dict[str, str], **kwargs: object) -> base.HttpAnswer:
        bodies.append(body)
        return base.HttpAnswer(202, {}, b'{"status": "success"}')

    monkeypatch.setattr(base, "post_once", post_once)
    routing_key = "R0UT1NGKEYcanary0123456789abcdef"
    register_secret(routing_key)
    message = notice_message(f"failed: {CANARY}", [f"receiver said {WEBHOOK} and {routing_key}"])
    WebhookSender("w", url="https://example.com/h", signing_secret=lambda f: "whsec-canary-signing").send(message)
    TeamsSender("t", webhook_url=lambda f: "https://example.com/teams?sig=x").send(message)
    PagerDutySender("p", routing_key=lambda f: routing_key).send(message)

    class Sns:
        def __init__(self) -> None:
            self.calls: list[dict[str, object]] = []

        def publish(self, **kwargs: object) -> dict[str, str]:
            self.calls.append(kwargs)
            return {"MessageId": "m"}

    sns = Sns()
    SnsSender("s", topic_arn="arn:aws:sns:us-east-1:123456789012:t", client=lambda: sns).send(message)  # type: ignore[arg-type,return-value]
    assert len(bodies) == 3 and sns.calls
    for body in [*bodies, json.dumps(sns.calls).encode()]:
        text = body.decode()
        assert not contains_secret(text, [CANARY, WEBHOOK]), text[:200]
    pagerduty = json.loads(bodies[2])
    assert pagerduty["routing_key"] == routing_key
    assert routing_key not in json.dumps({k: v for k, v in pagerduty.items() if k != "routing_key"})
