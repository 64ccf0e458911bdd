"""Untrusted text made safe for any medium: one line, no format characters, bidi-isolated, clipped.

Owned here, in core, because every renderer (the alerter's, each channel's, the watchdog's, the digest's)
puts names from outside (organization, project, line item, grant and source names, error details)
through the same rules before its own medium's escaping:

- `untrusted()`: line breaks and control characters become spaces, format characters (bidi overrides
  and embeddings U+202A-U+202E, isolates U+2066-U+2069, marks U+200E/U+200F, zero-width characters) are
  removed, the name is clipped, and a name with right-to-left letters or Arabic digits is wrapped in a
  first-strong isolate (U+2068 ... U+2069), so that by the Unicode bidi algorithm it cannot reorder the
  text around it;
- `neutralize()`: a whole line with every format character removed except balanced isolates;
- `truncate()`: a cut that is marked and never leaves an isolate open.
"""

from __future__ import annotations

import re
import unicodedata

NAME_LIMIT = 80
TRUNCATION_MARK = "…(truncated)"
_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
"""control characters, line and paragraph separators: a name is one line"""
BLANK_NAME = "(blank)"
FSI = "\u2068"
"""FIRST STRONG ISOLATE: a name's direction cannot leak out of it (closed by PDI)"""
PDI = "\u2069"
_RIGHT_TO_LEFT = frozenset({"R", "AL", "AN"})


def untrusted(value: object, limit: int = NAME_LIMIT) -> str:
    """A name from outside (an org, project, line item, grant or source name, an error detail) ready to be
    placed in a sentence: one line, no format characters, clipped, and bidi-isolated when it holds
    right-to-left text. Every renderer puts names through this before any medium's escaping."""
    text = "".join(ch for ch in _BREAKS.sub(" ", str(value)) if unicodedata.category(ch) != "Cf").strip()
    # A combining mark at the start would draw over the character before the name (ours).
    text = text.lstrip("".join({ch for ch in text[:8] if unicodedata.category(ch).startswith("M")}))
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    if not text:
        return BLANK_NAME  # all invisible: say so rather than leave a gap the reader cannot see
    if any(unicodedata.bidirectional(ch) in _RIGHT_TO_LEFT for ch in text):
        return f"{FSI}{text}{PDI}"
    return text


def neutralize(text: str) -> str:
    """One line of text with every format character removed except balanced isolates (`untrusted`'s).

    Applied to whole lines by every medium, so that a name interpolated without `untrusted()` still
    cannot break the line, override the direction of what follows, or hide characters.
    """
    out: list[str] = []
    open_at: list[int] = []
    for ch in _BREAKS.sub(" ", text):
        if ch == FSI:
            open_at.append(len(out))
            out.append(ch)
        elif ch == PDI:
            if open_at:
                open_at.pop()
                out.append(ch)
        elif unicodedata.category(ch) != "Cf":
            out.append(ch)
    for index in reversed(open_at):  # an isolate never closed would swallow the rest of the line
        del out[index]
    return "".join(out)


def balanced(text: str) -> str:
    """`text` cut somewhere: close an isolate the cut left open, so the rest is not inside it."""
    return text + PDI * max(0, text.count(FSI) - text.count(PDI))


def truncate(text: str, limit: int) -> str:
    """`text` within `limit` characters, the cut marked (and no isolate left open by it)."""
    if len(text) <= limit:
        return text
    return balanced(text[: limit - len(TRUNCATION_MARK) - 1]) + TRUNCATION_MARK
