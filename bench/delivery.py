"""What the Slack transport costs: the first send's import, and one post to a local Slack.

`senders.HttpSlackTransport` (http.client, phases kept apart so "not sent" and "unknown" can be told
apart) replaced slack-sdk's `WebhookClient`/`WebClient` (urllib). Compared here on the same machine:

1. First-send import cost in a fresh interpreter that has already imported what the alerter imports at
   init (boto3 and the handler's modules): slack-sdk's modules versus nothing (http.client is already
   loaded by urllib3 through botocore).
2. Median wall time of one webhook post to `FakeSlack` over loopback, warm, N posts each.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = 7
POSTS = 200

_ALERTER_INIT = f"import sys; sys.path.insert(0, {str(ROOT / 'functions' / 'alerter')!r}); import handler"
SNIPPETS = {
    "slack-sdk (WebhookClient, WebClient)": "import slack_sdk, slack_sdk.webhook, slack_sdk.errors",
    "http.client transport (spendwatch.channels.slack)": "import http.client, spendwatch.channels.slack",
}


def first_send_import(code: str) -> float:
    timed = f"{_ALERTER_INIT}; import time; t=time.perf_counter(); {code}; print(time.perf_counter()-t)"
    env = {"POWERTOOLS_TRACE_DISABLED": "true", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", timed], capture_output=True, text=True, check=True, env=env)
    return float(out.stdout.strip().splitlines()[-1])


def post_latency() -> dict[str, float]:
    from slack_sdk.webhook import WebhookClient

    from spendwatch.alerter.notices import notice_message
    from spendwatch.channels.slack import HttpSlackTransport, SlackCredentials
    from spendwatch.devtools.fake_slack import FakeSlack

    message = notice_message("spendwatch: bench", ["one line of a message"])
    blocks = [dict(b) for b in message.blocks]
    with FakeSlack() as slack:
        transport = HttpSlackTransport()
        creds = SlackCredentials(webhook_url=slack.webhook_url)
        sdk = WebhookClient(slack.webhook_url, timeout=10, retry_handlers=[])

        def ours() -> None:
            reply = transport(creds, None, message, 10.0)
            assert reply.error is None

        def theirs() -> None:
            response = sdk.send(text=message.text, blocks=blocks, unfurl_links=False, unfurl_media=False)
            assert response.status_code == 200

        results = {}
        for name, post in (("http.client transport", ours), ("slack-sdk WebhookClient", theirs)):
            post()  # warm
            samples = []
            for _ in range(POSTS):
                started = time.perf_counter()
                post()
                samples.append(time.perf_counter() - started)
            results[name] = statistics.median(samples)
        return results


def main() -> None:
    print(f"first-send import after the alerter's init, median of {RUNS} fresh interpreters:")
    for name, code in SNIPPETS.items():
        seconds = statistics.median(first_send_import(code) for _ in range(RUNS))
        print(f"  {name:<44} {seconds * 1000:7.1f} ms")
    print(f"one webhook post to the local Slack, median of {POSTS} (a fresh connection each):")
    for name, seconds in post_latency().items():
        print(f"  {name:<44} {seconds * 1000:7.2f} ms")


if __name__ == "__main__":
    main()
