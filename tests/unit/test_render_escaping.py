"""Property tests of the escaping (issue 7, item 11): for any name, the Slack text, the Block Kit JSON and the
e-mail (subject, text, HTML) cannot mention, link, format or reorder the rest of the message.

Method: render once with a placeholder name and once with the hostile name. The rest of the message must
be identical, character for character; what stands where the placeholder stood (the name's *slot*) must
hold no markup of the medium, no control or format character except one enclosing bidi isolate, and must
be isolated whenever it holds right-to-left text (so by the Unicode bidi algorithm it cannot reorder the
text around it).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spendwatch.alerter.notices import notice_message
from spendwatch.alerter.render import build_message, escape, render_email
from spendwatch.channels.email import email_from_message
from spendwatch.core.alerts import Alert, Observation, Reason
from spendwatch.core.snapshot import CostShare, DailyCost, Snapshot
from spendwatch.core.text import FSI, PDI, untrusted

SLOT = "Qzslotzq"
WHEN = datetime(2026, 11, 21, 23, tzinfo=UTC)
D = Decimal
FRAGMENTS = [
    "*",
    "_",
    "~",
    "`",
    "```",
    "*bold*",
    "_it_",
    "~s~",
    "<!channel>",
    "<!here>",
    "<@U024BE7LH>",
    "<#C123>",
    "<https://evil.example|Pay now>",
    "&",
    "&lt;",
    "&amp;",
    ">",
    "> quote",
    "\u202e",
    "\u202d",
    "\u202a",
    "\u2066",
    "\u2067",
    "\u2068",
    "\u2069",
    "\u200e",
    "\u200f",
    "\u061c",
    "\u200b",
    "\ufeff",
    "\u00ad",
    "\u0301",
    "\u20dd",
    "\n",
    "\r\n",
    "\t",
    "\x00",
    "\x85",
    "\u2028",
    "\u2029",
    "שלום",
    "مرحبا",
    "١٢٣",
    "123",
    ":fire:",
    '"',
    "'",
    " ",
    "Bcc: x@y.z",
    "a_b",
]
NAMES = (
    st.lists(
        st.one_of(st.sampled_from(FRAGMENTS), st.text(st.characters(blacklist_categories=["Cs"]), max_size=6)),
        min_size=1,
        max_size=6,
    )
    .map("".join)
    .filter(bool)
)  # an empty name is no name: the renderers show the project id instead
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_ALNUM = re.compile(r"[^\W_]")
_ENTITY = re.compile(r"&(?:amp|lt|gt|quot|#x27);")


def slots(template: str, output: str) -> Iterator[tuple[int, int]]:
    """Where the placeholder's stand-ins are in `output`, given that the rest must equal `template`'s."""
    pieces = template.split(SLOT)
    assert len(pieces) > 1, "the placeholder must appear in what is checked"
    pattern = "(.*?)".join(re.escape(piece) for piece in pieces)
    match = re.fullmatch(pattern, output, re.DOTALL)
    assert match is not None, f"the name changed the rest of the message:\n{template!r}\n{output!r}"
    for group in range(1, len(pieces)):
        yield match.span(group)


def check_slot(output: str, start: int, end: int, medium: str) -> None:
    slot = output[start:end]
    inner = slot[1:-1] if slot.startswith(FSI) and slot.endswith(PDI) and len(slot) >= 2 else slot
    for ch in inner:
        category = unicodedata.category(ch)
        assert category not in {"Cc", "Cf", "Zl", "Zp"}, f"{medium}: {ch!r} ({category}) in {slot!r}"
    if any(unicodedata.bidirectional(ch) in {"R", "AL", "AN"} for ch in inner):
        assert inner is not slot, f"{medium}: right-to-left text not isolated: {slot!r}"
    assert not inner or not unicodedata.category(inner[0]).startswith("M"), f"{medium}: leading mark in {slot!r}"
    if medium in {"mrkdwn", "plain_text", "html"}:
        assert "<" not in slot and ">" not in slot, f"{medium}: markup in {slot!r}"
        for index, ch in enumerate(slot):
            if ch == "&":
                assert _ENTITY.match(slot, index), f"{medium}: bare & in {slot!r}"
    if medium == "mrkdwn":
        assert "`" not in slot, slot
        for index in range(start, end):
            if output[index] in "*_~":
                before = output[index - 1] if index else " "
                after = output[index + 1] if index + 1 < len(output) else " "
                assert _ALNUM.match(before) and _ALNUM.match(after), f"formatting character in {slot!r}"


def check(template: str, output: str, medium: str) -> None:
    for start, end in slots(template, output):
        check_slot(output, start, end, medium)


def check_blocks(template: tuple[dict[str, Any], ...], output: tuple[dict[str, Any], ...]) -> None:
    """Same blocks, same structure; each text object's text as its type requires; the JSON round-trips."""
    assert json.loads(json.dumps(list(output))) == list(output)
    assert len(template) == len(output)

    def texts(block: dict[str, Any]) -> list[dict[str, Any]]:
        found = [block["text"]] if "text" in block else []
        return found + list(block.get("fields", [])) + list(block.get("elements", []))

    for want, got in zip(template, output, strict=True):
        assert {k: v for k, v in want.items() if k not in {"text", "fields", "elements"}} == {
            k: v for k, v in got.items() if k not in {"text", "fields", "elements"}
        }
        for want_text, got_text in zip(texts(want), texts(got), strict=True):
            assert want_text.keys() == got_text.keys() and want_text["type"] == got_text["type"]
            if SLOT in want_text["text"]:
                check(want_text["text"], got_text["text"], str(want_text["type"]))
            else:
                assert want_text["text"] == got_text["text"]


def snapshot(name: str) -> Snapshot:
    days = tuple(DailyCost(day=date(2026, 11, d), amount_usd=D(d % 5 + 10)) for d in range(1, 22))
    return Snapshot(
        org_id="acme",
        org_name=name,
        poll_time=WHEN,
        collected_at=WHEN,
        month_to_date_usd=sum((d.amount_usd for d in days), D(0)),
        daily_costs_usd=days,
        costs_by_project_usd=(CostShare(key="proj_1", name=name, amount_usd=D(100)),),
        costs_by_line_item_usd=(CostShare(key=name, amount_usd=D(42)),),
    )


def alerts(name: str) -> list[Alert]:
    budget: dict[str, Decimal | str] = {
        "spent_usd": D(430),
        "budget_usd": D(500),
        "percent": D(86),
        "period": "2026-11",
    }
    made: list[tuple[str, Decimal, dict[str, Decimal | str]]] = [
        ("budget.actual", D(80), {**budget, "scope": "project", "scope_name": name}),
        ("health.source", D(1), {"source": name, "kind": name, "detail": name, "failing_polls": D(3)}),
        ("health.condition", D(1), {"condition": name}),
        (
            "grant.expiry",
            D(7),
            {
                "grant_id": name,
                "remaining_usd": D(60),
                "grant_usd": D(100),
                "expires_at": "2026-11-26T23:00:00Z",
                "days_left": D(5),
            },
        ),
    ]
    return [
        Alert(Observation(rule, f"{rule}#k", level, rule, facts), Reason.FIRST_CROSSING, level)
        for rule, level, facts in made
    ]


@SETTINGS
@given(NAMES)
def test_render_no_name_can_mention_link_format_or_reorder_a_slack_alert(name: str) -> None:
    template = build_message(snapshot(SLOT), alerts(SLOT), mention="<!here>")
    message = build_message(snapshot(name), alerts(name), mention="<!here>")
    check(template.text, message.text, "mrkdwn")
    check_blocks(template.blocks, message.blocks)
    assert message.text.count("<!here>") == 1 and message.text.count("<") == 1  # the configured mention only


@SETTINGS
@given(NAMES, st.sampled_from(["[spendwatch]", "[openai-spend]"]))
def test_render_no_name_can_change_an_alert_email(name: str, prefix: str) -> None:
    template = render_email(snapshot(SLOT), alerts(SLOT)[:1], subject_prefix=prefix)
    email = render_email(snapshot(name), alerts(name)[:1], subject_prefix=prefix)
    check(template.text, email.text, "text")
    check(template.html, email.html, "html")
    assert email.subject.startswith(prefix + " ")
    assert not any(unicodedata.category(ch) in {"Cc", "Zl", "Zp"} for ch in email.subject), email.subject
    outside = re.sub(f"{FSI}[^{FSI}{PDI}]*{PDI}", "", email.subject)
    assert not any(unicodedata.category(ch) == "Cf" for ch in outside), email.subject


NOTICES: list[Callable[[str], tuple[str, list[str], str | None]]] = [
    lambda n: (
        f"spendwatch: channel slack failed for {untrusted(n)}",
        ["Channel slack failed permanently: token_revoked.", f"Alerts for {untrusted(n)} are not reaching it."],
        "Check the channel's credential (SSM parameter).",
    ),
    lambda n: (f"spendwatch: no fresh snapshot for {untrusted(n)}", [f"Spend of {untrusted(n)} is NOT watched."], None),
    lambda n: (
        "spendwatch: test message (slack)",
        [f"Alerts for {untrusted(n)} are sent here."],
        "Sent by test-alert.",
    ),
]


@SETTINGS
@given(NAMES, st.sampled_from(range(len(NOTICES))))
def test_render_no_name_can_change_a_notice_in_slack_or_email(name: str, which: int) -> None:
    title, lines, context = NOTICES[which](SLOT)
    template = notice_message(title, lines, context=context, mention="<!here>")
    title, lines, context = NOTICES[which](name)
    message = notice_message(title, lines, context=context, mention="<!here>")
    check(template.text, message.text, "mrkdwn")
    check_blocks(template.blocks, message.blocks)
    want, got = email_from_message(template), email_from_message(message)
    check(want.text, got.text, "text")
    check(want.html, got.html, "html")
    assert not any(unicodedata.category(ch) in {"Cc", "Zl", "Zp"} for ch in got.subject), got.subject


@SETTINGS
@given(NAMES)
def test_render_a_raw_name_in_a_notice_line_still_cannot_mention_format_or_break_the_line(name: str) -> None:
    # A caller that forgot `untrusted()`: the medium's escaping alone still keeps Slack markup and line
    # breaks out (the bidi isolation is what untrusted() adds).
    message = notice_message(f"for {name}", [f"Alerts for {name} stop."])
    assert message.text.count("\n") == 1
    body = message.blocks[1]["text"]["text"]
    assert "<" not in body and ">" not in body and "`" not in body
    assert not any(unicodedata.category(ch) in {"Cc", "Zl", "Zp"} for ch in body)
    assert all(ch not in body for ch in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u200e\u200f")


def test_render_escape_keeps_names_readable() -> None:
    assert escape("*Acme* _R&D_ ~x~ `y`") == "\u2217Acme\u2217 \u02cdR&amp;D\u02cd \u223cx\u223c \u02cby\u02cb"
    assert escape("token_revoked gpt_4o 3*4") == "token_revoked gpt_4o 3*4"
    assert untrusted("Acme\u202e moc.live") == "Acme moc.live"
    assert untrusted("שלום") == f"{FSI}שלום{PDI}"
    assert untrusted("a\nb\r\nc") == "a b c"


def test_notice_message_mrkdwn_is_verbatim_like_every_alert() -> None:
    from spendwatch.alerter.notices import notice_message

    message = notice_message("Title", ["see https://example.com and #general"], context="ctx")
    texts = [b["text"] for b in message.blocks if b["type"] == "section"]
    texts += [e for b in message.blocks if b["type"] == "context" for e in b["elements"]]
    assert texts and all(t["type"] == "mrkdwn" and t["verbatim"] is True for t in texts)
