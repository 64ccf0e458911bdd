"""A digest as Slack and e-mail show it: every section, escaping, Slack's limits, the picture or its stand-in."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from spendwatch.alerter.render import SECTION_LIMIT
from spendwatch.core.config import OrganizationConfig, parse_config
from spendwatch.devtools.snapshot_series import SeriesOrg
from spendwatch.digest.compose import Digest, build_digest
from spendwatch.digest.render import (
    CHART_CID,
    NO_PICTURE,
    DigestMessage,
    digest_content,
    email_content,
    slack_blocks,
    slack_message,
)
from spendwatch.digest.schedule import due_period
from spendwatch.views.history import MemoryHistory

NOW = datetime(2026, 11, 21, 9, 5, tzinfo=UTC)
HOSTILE = "Acme <!channel> & <https://evil.example|click>"


def org_config(name: str = "Simulated Org") -> OrganizationConfig:
    text = f"""
organizations:
  - id: sim
    name: {json.dumps(name)}
    budget: {{monthly_usd: 500}}
    channels: [slack]
    digests: [{{every: day}}]
channels:
  slack: {{type: slack}}
"""
    return parse_config(text, "test").organizations[0]


@pytest.fixture(scope="module")
def digest() -> Digest:
    series = SeriesOrg(org_name=HOSTILE)
    snapshots = list(series.series(datetime(2026, 11, 18, tzinfo=UTC), NOW))
    org = org_config(HOSTILE)
    return build_digest(org, due_period(org.digests[0], NOW), MemoryHistory(snapshots), now=NOW, alerts_sent=4)


def all_text(blocks: list[dict[str, object]]) -> str:
    return json.dumps(blocks, ensure_ascii=False)


def test_digest_content_has_every_section(digest: Digest) -> None:
    content = digest_content(digest)
    headings = [s.heading.split(" (")[0] for s in content.sections]
    assert headings == [
        "Spend",
        "Top projects",
        "Top line items",
        "Top models by cost",
        "Tokens and requests by model",
        "Images by model",
        "Speech",
        "Transcription by model",
        "Credits",
        "Limits and OpenAI's spend alerts",
        "Monitor health",
    ]
    spend = content.sections[0].lines
    assert spend[0].startswith("Yesterday (2026-11-20): $")
    assert "vs 2026-11-19" in spend[0]
    assert any("Forecast for the month" in line for line in spend)
    health = "\n".join(content.sections[-1].lines)
    assert "Last poll 2026-11-21T09:00:00Z" in health
    assert "Alert notifications recorded in 2026-11-20: 4" in health
    assert "cached" in content.sections[4].lines[0]


def test_digest_slack_blocks_escape_names_and_keep_limits(digest: Digest) -> None:
    content = digest_content(digest)
    for picture in (True, False):
        blocks = slack_blocks(content, picture=picture)
        assert len(blocks) <= 50
        text = all_text(blocks)
        assert "<!channel>" not in text and "&lt;!channel&gt;" in text
        assert "<https://evil.example" not in text
        for block in blocks:
            body = block.get("text")
            if isinstance(body, dict):
                assert len(body["text"]) <= SECTION_LIMIT


def test_digest_slack_without_picture_has_a_sparkline_and_says_why(digest: Digest) -> None:
    content = digest_content(digest)
    with_picture = all_text(slack_blocks(content, picture=True))
    without = all_text(slack_blocks(content, picture=False))
    assert "Daily spend this month" not in with_picture
    assert "Daily spend this month" in without
    assert "█" in without, "the sparkline's highest day"
    assert "files:write" in without and "files:write" not in with_picture
    message = slack_message(content, b"\x89PNG fake", filename="spend.png")
    assert isinstance(message, DigestMessage)
    assert message.plain_blocks != message.blocks
    assert message.without_picture().blocks == message.plain_blocks
    no_png = slack_message(content, None, filename="spend.png")
    assert no_png.blocks == no_png.plain_blocks, "no picture drawn: the blocks say so too"
    assert NO_PICTURE.split(":")[0] in all_text(list(no_png.blocks))


def test_digest_mention_stays_live_and_names_stay_escaped(digest: Digest) -> None:
    message = slack_message(digest_content(digest), None, filename="x.png", mention="<!here>")
    assert message.text.startswith("<!here> ")
    assert "<!channel>" not in message.text


def test_digest_email_has_inline_picture_escaped_html_and_one_line_subject(digest: Digest) -> None:
    content = digest_content(digest)
    mail = email_content(content, picture=True)
    assert f'src="cid:{CHART_CID}"' in mail.html
    assert "Acme &lt;!channel&gt; &amp;" in mail.html
    assert "<!channel>" not in mail.html
    assert "\n" not in mail.subject and mail.subject.startswith("Daily OpenAI spend: ")
    assert "Top projects" in mail.text and "https://platform.openai.com/usage" in mail.text
    plain = email_content(content, picture=False)
    assert "cid:" not in plain.html and "Daily spend this month" in plain.html


def test_digest_without_data_renders_a_clear_statement() -> None:
    org = org_config()
    empty = build_digest(org, due_period(org.digests[0], NOW), MemoryHistory([]), now=NOW, alerts_sent=None)
    content = digest_content(empty)
    assert content.subject.endswith("no data yet")
    text = " ".join(line for s in content.sections for line in s.lines)
    assert "No snapshot has been stored for Simulated Org yet" in text
    assert "PollerStoppedAlarm" in text
    assert slack_blocks(content, picture=False)


def test_digest_missing_history_is_said_once(digest: Digest) -> None:
    org = org_config()
    snapshots = list(SeriesOrg().series(datetime(2026, 11, 21, 8, tzinfo=UTC), NOW))  # one poll, this morning
    first = build_digest(org, due_period(org.digests[0], NOW), MemoryHistory(snapshots), now=NOW, alerts_sent=0)
    content = digest_content(first)
    spend_note = content.sections[0].note or ""
    assert (
        "shown month to date, without a comparison: no snapshot within a day before 2026-11-20T00:00:00Z" in spend_note
    )
    assert all(section.note is None for section in content.sections[1:]), "not repeated under every table"
    assert "no snapshot within a day" not in " ".join(s.note or "" for s in digest_content(digest).sections)
