"""Microsoft Teams through a Workflows incoming webhook ("When a Teams webhook request is received"), carrying
an Adaptive Card (the Office 365 connectors' MessageCard is retired).

The card shows what the Slack message shows (title, one line per alert, the figures as a FactSet, the
daily trend, the top projects and line items, the freshness line) and opens OpenAI's usage page through
an `Action.OpenUrl`, so no text needs a link. TextBlocks render a markdown subset (`**bold**`, `_italic_`,
`[link](url)`, lists at the start of a line): every text is neutralized (one line, no bidi override) and
its markdown characters are replaced by lookalikes (`*` U+2217, `_` U+02CD, `[` U+2045, `]` U+2046, and
a list marker at the start of a line), so a name cannot format, link or list anything.

The webhook URL carries its own signature (`sig=`): it is a secret, read from SSM (or the environment),
re-read once after a 401/403/404 (a regenerated URL), and never shown in errors. The Workflows endpoint
answers 202 Accepted (200 from some tenants); 429 and 5xx are retried within the time left; 504 and no
answer are unknown outcomes.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

from spendwatch.channels.base import (
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_TIMEOUT_S,
    HttpAnswer,
    HttpRequest,
    Pacer,
    Verdict,
    deliver_http,
    destination_key,
    http_verdict,
    read_channel_secret,
)
from spendwatch.core.alerts import Message
from spendwatch.core.redact import scrub_data
from spendwatch.core.text import neutralize, truncate

CARD_VERSION = "1.4"
"""Teams renders Adaptive Cards up to 1.5; 1.4 is what every Teams client (desktop, web, mobile) shows."""
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
USAGE_URL = "https://platform.openai.com/usage"
TEXT_LIMIT = 2000
MAX_CARD_BYTES = 27 * 1024
"""Teams refuses messages over about 28 KB; optional sections are dropped until the card fits."""
_LOOKALIKES = str.maketrans({"*": "\u2217", "_": "\u02cd", "[": "\u2045", "]": "\u2046", "`": "\u02cb"})
_LIST_START = re.compile(r"^(\s*)(?:([-+#>])|(\d+)\.)(?=\s|$)")


def escape_card(text: str, limit: int = TEXT_LIMIT) -> str:
    """Text for an Adaptive Card TextBlock: one line, nothing in it formats, links or starts a list."""
    line = neutralize(text).translate(_LOOKALIKES)
    line = _LIST_START.sub(lambda m: m[1] + ("\u2010" if m[2] else f"{m[3]}\u2024"), line)
    return truncate(line, limit)


def _text(text: str, **style: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": escape_card(text), "wrap": True, **style}


def adaptive_card(message: Message) -> dict[str, Any]:
    """The Adaptive Card of one message (an alert message, from its `Content`; a notice, from its raw text)."""
    content = message.content
    title = content.title if content is not None else (message.raw_title or message.title)
    lines = content.lines if content is not None else message.raw_lines
    body: list[dict[str, Any]] = [_text(title, weight="Bolder", size="Medium")]
    body += [_text(f"• {line}") for line in lines]
    optional: list[dict[str, Any]] = []
    tail: list[dict[str, Any]] = []
    if content is not None and content.figures:
        facts = [{"title": escape_card(label, 200), "value": escape_card(value)} for label, value in content.figures]
        body.append({"type": "FactSet", "facts": facts})
    if content is not None and content.spark:
        optional.append(_text(f"Daily spend this month (UTC): {content.spark} ({content.trend_caption or ''})"))
    for heading, rows in (
        ("Top projects", content.top_projects if content else ()),
        ("Top API keys", content.top_api_keys if content else ()),
        ("Top line items", content.top_line_items if content else ()),
    ):
        if rows:
            optional.append(_text(f"{heading} this month: " + "; ".join(rows)))
    if content is not None and content.freshness:
        tail.append(_text(content.freshness, isSubtle=True, size="Small"))
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "body": body + optional + tail,
        "actions": [{"type": "Action.OpenUrl", "title": "Open OpenAI usage", "url": USAGE_URL}],
        "msteams": {"width": "Full"},
    }
    while len(json.dumps(card).encode()) > MAX_CARD_BYTES and optional:
        optional.pop()
        card["body"] = body + optional + tail
    return card


def teams_payload(message: Message) -> dict[str, Any]:
    """What a Workflows webhook posts to a channel: a message with the card as its one attachment."""
    return {
        "type": "message",
        "attachments": [{"contentType": CARD_CONTENT_TYPE, "contentUrl": None, "content": adaptive_card(message)}],
    }


def teams_verdict(answer: HttpAnswer) -> Verdict:
    verdict = http_verdict(answer)
    if verdict.kind == "permanent" and answer.status in {404, 410}:
        return Verdict("auth", verdict.reason)  # a deleted or regenerated workflow URL: re-read it once
    return verdict


class TeamsSender:
    """Posts the Adaptive Card to the Workflows webhook URL (a secret)."""

    kind = "teams"

    def __init__(
        self,
        name: str,
        *,
        webhook_url: Callable[[bool], str | None],
        remaining_s: Callable[[], float] = lambda: 30.0,
        sleep: Callable[[float], None] = time.sleep,
        pacer: Pacer | None = None,
        max_attempts: int = 3,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    ) -> None:
        self.name = name
        self._url = webhook_url
        self._remaining_s = remaining_s
        self._sleep = sleep
        self._pacer = pacer
        self._max_attempts = max_attempts
        self._timeout_s = timeout_s
        self._connect_timeout_s = connect_timeout_s
        self.attempts = 0

    def _read_url(self, force: bool) -> str:
        return read_channel_secret(self.name, "Teams webhook URL", self._url, force)

    def send(self, message: Message) -> None:
        body = json.dumps(scrub_data(teams_payload(message)), ensure_ascii=True).encode()

        def build(force: bool) -> HttpRequest:
            return HttpRequest(self._read_url(force), body, {"Content-Type": "application/json"})

        self.attempts = deliver_http(
            self.name,
            "Teams",
            build,
            classify=teams_verdict,
            remaining_s=self._remaining_s,
            sleep=self._sleep,
            pacer=self._pacer,
            pace_key=destination_key(self._read_url(False)),
            max_attempts=self._max_attempts,
            timeout_s=self._timeout_s,
            connect_timeout_s=self._connect_timeout_s,
        )
