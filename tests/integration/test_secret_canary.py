"""Canary secrets through the whole local pipeline: a realistic admin key, session key and Slack webhook
URL, echoed back by hostile replies in plain, JSON, URL-encoded, base64 and HTML form, must not appear, in
any of those encodings, in anything spendwatch writes: logs and metrics, both DynamoDB tables, Slack's
messages, the dead-letter queue, and the command line's output.

Redaction is by value (`spendwatch.core.redact`): a scrub that only recognises key *shapes* lets the base64
echo and the webhook URL through, and this test fails.
"""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import quote

import boto3
import pytest

from spendwatch.aws.store import from_attribute_map
from spendwatch.cli.main import main
from spendwatch.devtools.fake_openai import FakeOpenAI
from spendwatch.devtools.fake_slack import FakeSlack
from spendwatch.devtools.pipeline import LocalPipeline
from spendwatch.devtools.simulated_org import SimulatedOrg

from .conftest import POLL_TIME, budget_config

ADMIN = "sk-admin-" + "Cn7" + secrets.token_urlsafe(24).replace("-", "x").replace("_", "y")
SESSION = "sess-" + "Cn7" + secrets.token_urlsafe(24).replace("-", "x").replace("_", "y")


def encodings(secret: str) -> list[str]:
    """The forms a leaked secret can take in text: as is, JSON- and URL-escaped, and base64 at each of
    the three alignments a prefix can give it (the inner characters, which no neighbour changes)."""
    forms = {secret, json.dumps(secret)[1:-1], quote(secret, safe=""), secret[4:-4]}
    for pad in range(3):
        encoded = base64.b64encode(b"\0" * pad + secret.encode()).decode()
        forms.add(encoded[4:-4])
        forms.add(base64.urlsafe_b64encode(b"\0" * pad + secret.encode()).decode()[4:-4])
    return sorted(forms)


def leaks(haystack: str, canaries: dict[str, str]) -> list[str]:
    return [
        f"{name} as {form[:12]}..."
        for name, secret in canaries.items()
        for form in encodings(secret)
        if form in haystack
    ]


def hostile(openai: FakeOpenAI) -> None:
    """Every reply that can echo a credential does, in a different encoding each."""
    error = {"message": f"Incorrect API key provided: {ADMIN}.", "type": "invalid_request_error", "code": ADMIN}
    openai.inject("/v1/organization/costs", status=400, body=json.dumps({"error": error}), times=None)
    openai.inject(
        "/v1/organization/usage/completions",
        status=502,
        body=f"<html><body>{ADMIN}</body></html>",
        content_type="text/html",
        times=None,
    )
    as_base64 = base64.b64encode(f"Authorization: Bearer {ADMIN}".encode()).decode()
    openai.inject(
        "/v1/organization/usage/embeddings",
        status=400,
        body=json.dumps({"error": {"message": f"bad header {as_base64}", "code": None}}),
        times=None,
    )
    url = quote(f"https://api.openai.com/v1?key={ADMIN}&a=b", safe="")
    openai.inject(
        "/v1/organization/usage/images",
        status=400,
        body=json.dumps({"error": {"message": f"see {url}", "code": "bad_request"}}),
        times=None,
    )
    session_echo = json.dumps({"error": {"message": f"session {SESSION} expired", "code": SESSION}})
    openai.inject("/v1/dashboard/billing/credit_grants", status=401, body=session_echo, times=None)


@pytest.fixture
def canary_openai() -> Any:
    with FakeOpenAI(SimulatedOrg.default(POLL_TIME), admin_key=ADMIN, session_key=SESSION) as server:
        yield server


def test_secret_canaries_appear_nowhere_spendwatch_writes(
    pipeline: LocalPipeline,
    canary_openai: FakeOpenAI,
    slack: FakeSlack,
    *,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    webhook = slack.webhook_url
    canaries = {"admin key": ADMIN, "session key": SESSION, "webhook URL": webhook}
    hostile(canary_openai)
    pipeline.configure(
        budget_config(),
        {
            "/spendwatch/sim/openai-admin-key": ADMIN,
            "/spendwatch/sim/openai-session-key": SESSION,
            "/spendwatch/slack/webhook-url": webhook,
        },
        {"OPENAI_BASE_URL": canary_openai.base_url},
    )
    # Slack refuses the first post with an answer that quotes the webhook back; the retry delivers.
    slack.fail_next(1, status=500, body=f"internal error posting to {webhook}", target="webhook")
    pipeline.poll(POLL_TIME)
    pipeline.deliver()
    pipeline.deliver()

    # The local command line, with the same canaries in its environment.
    local = tmp_path / "spendwatch.yaml"
    local.write_text(budget_config(), encoding="utf-8")
    monkeypatch.setenv("SPENDWATCH_CONFIG", str(local))
    monkeypatch.setenv("SLACK_WEBHOOK_URL", webhook)
    monkeypatch.setenv("OPENAI_ADMIN_KEY", ADMIN)
    monkeypatch.setenv("OPENAI_SESSION_KEY", SESSION)
    monkeypatch.setenv("OPENAI_BASE_URL", canary_openai.base_url)
    for argv in (["poll", "--json"], ["poll"], ["check"], ["test-alert"]):
        main(argv)
    out, err = capsys.readouterr()

    dynamodb = boto3.client("dynamodb")
    tables = {
        name: [from_attribute_map(item) for item in dynamodb.scan(TableName=table)["Items"]]
        for name, table in pipeline.tables.items()
    }
    found = {
        "logs and command output": leaks(out + err, canaries),
        "DynamoDB": leaks(json.dumps(tables, default=str), canaries),
        "Slack messages": leaks(json.dumps([m.payload for m in slack.messages], default=str), canaries),
        "dead letters": leaks(json.dumps(pipeline.dead_letters(), default=str), canaries),
    }
    assert {where: hits for where, hits in found.items() if hits} == {}
    # The test saw what it scanned: the hostile replies failed their sources, and the failures are stored.
    [snapshot] = [i for i in tables["SnapshotsTable"] if i.get("kind") != "history"]
    failed = {f["source"] for f in snapshot["failures"]}
    assert {"costs", "usage_completions", "usage_embeddings", "usage_images"} <= failed, failed
    assert slack.messages, "the alert was delivered after the echoing refusal"
    assert "[redacted]" in json.dumps(tables, default=str), "the echoes were stored, scrubbed"
