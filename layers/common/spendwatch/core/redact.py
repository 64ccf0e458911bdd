"""Redaction by value: every secret this process has read is scrubbed from every text it emits.

A secret is registered when it is read (`secrets.EnvSecrets`, `secrets.SsmSecrets`); from then on
`scrub` removes it from log lines, exception messages, snapshot fields, messages and command output, in
every encoding the process could emit it in: as is, JSON-escaped (with or without `ensure_ascii`),
URL-encoded (`quote`, `quote_plus`, either case of hex), HTML/Slack-escaped, Python-repr-escaped, and
base64 (standard and URL-safe, at each of the three byte alignments, so a secret inside a longer encoded
value such as `Basic base64(user:key)` is found too). A webhook URL's path, the part that is the
credential, is registered on its own as well.

Shape-based patterns (`sk-…`, `sess-…`, `xox?-…`, Slack webhook paths, `Bearer …`) remain as a second
layer for secrets this process never read (e.g. a key echoed by a reply for another organization).

The registry is process-wide and thread-safe: a poll's worker threads and the logger share it.
"""

from __future__ import annotations

import base64
import html
import json
import re
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit

REDACTED = "[redacted]"
MIN_SECRET_LENGTH = 8
"""Shorter values are not registered: scrubbing a 3-letter "secret" would mangle ordinary text, and no
real key, token or webhook URL is that short."""

_PATTERN_SOURCES = (
    # A key's tail is random, so it has a digit; hints such as "store an sk-admin- key" or "sk-admin-…" stay.
    r"sk-(?=[A-Za-z0-9_\-]{6,})[A-Za-z0-9_\-]*\d[A-Za-z0-9_\-]*",
    r"sess-(?=[A-Za-z0-9_\-]{6,})[A-Za-z0-9_\-]*\d[A-Za-z0-9_\-]*",
    r"xox[abposr]-[A-Za-z0-9\-]+",
    # A real webhook's path (T…/B…/secret), not a hint such as `/services/T…/B…/…` in a message.
    r"(?:https?://)?hooks\.slack\.com/services/T[A-Z0-9]{4,}/B[A-Z0-9]{4,}/[A-Za-z0-9]{8,}",
    r"(?:https?://)?hooks\.slack\.com/(?:workflows|triggers)/[A-Za-z0-9_/\-]{16,}",
    r"Bearer\s+\S+",
)
_PATTERNS = re.compile("|".join(f"(?:{p})" for p in _PATTERN_SOURCES))


def _base64_cores(secret: bytes) -> set[str]:
    """The parts of base64(x + secret + y) that do not depend on x or y, for each alignment of the secret."""
    cores = set()
    for offset in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(b"\0" * offset + secret + b"\0\0").decode("ascii")
            # Characters covering the prefix padding or the bytes after the secret depend on the neighbours.
            start = -(-offset * 4 // 3)  # ceil(offset * 4 / 3)
            end = (offset + len(secret)) * 4 // 3
            core = encoded[start:end]
            if len(core) >= MIN_SECRET_LENGTH:
                cores.add(core)
    return cores


def encodings(secret: str) -> set[str]:
    """Every form in which `secret` could leave the process."""
    forms = {secret}
    for ascii_only in (True, False):
        once = json.dumps(secret, ensure_ascii=ascii_only)
        forms.add(once[1:-1])
        forms.add(json.dumps(once, ensure_ascii=ascii_only)[3:-3])  # a JSON text inside a JSON string
    for encoded in (quote(secret, safe=""), quote_plus(secret, safe=""), quote(secret, safe="/:")):
        forms.add(encoded)
        forms.add(re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), encoded))
    forms.add(html.escape(secret, quote=True))
    forms.add(html.escape(secret, quote=False))
    forms.add(repr(secret)[1:-1])
    forms.add(secret.encode("unicode_escape").decode("ascii"))
    forms |= _base64_cores(secret.encode("utf-8"))
    if secret.startswith(("https://", "http://")):
        path = urlsplit(secret).path
        if len(path) >= MIN_SECRET_LENGTH and path.count("/") >= 2:
            forms |= encodings(path) if path != secret else set()
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


class SecretRegistry:
    """The secrets one process has read, compiled into a single pattern of all their encodings."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self._forms: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def register(self, secret: str | None) -> None:
        """Scrub `secret` (and every encoding of it) from everything this process emits from now on."""
        if not secret or len(secret) < MIN_SECRET_LENGTH:
            return
        with self._lock:
            if secret in self._secrets:
                return
            self._secrets.add(secret)
            self._forms |= encodings(secret)
            # Longest first, so a secret that contains another is removed whole.
            ordered = sorted(self._forms, key=lambda form: (-len(form), form))
            self._pattern = re.compile("|".join(re.escape(form) for form in ordered))

    def registered(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._secrets)

    def clear(self) -> None:
        """Forget every secret (tests only)."""
        with self._lock:
            self._secrets.clear()
            self._forms.clear()
            self._pattern = None

    def scrub(self, text: str, *, shapes: bool = True) -> str:
        pattern = self._pattern
        if pattern is not None:
            text = pattern.sub(REDACTED, text)
        return _PATTERNS.sub(REDACTED, text) if shapes else text


REGISTRY = SecretRegistry()


def register_secret(secret: str | None) -> None:
    """Register a secret this process has just read (see `SecretRegistry.register`)."""
    REGISTRY.register(secret)


def scrub(text: str, *, shapes: bool = True) -> str:
    """`text` without any registered secret (in any encoding) and, with `shapes`, without anything shaped
    like a key or token. Data that is not free text (names, ids) is scrubbed with `shapes=False`, so a
    project called `task-sk-abc` keeps its name."""
    return REGISTRY.scrub(text, shapes=shapes)


def scrub_data(value: Any, *, shapes: bool = False) -> Any:
    """`value` with every string in it (keys included) scrubbed; containers are copied, not changed."""
    if isinstance(value, str):
        return scrub(value, shapes=shapes)
    if isinstance(value, dict):
        return {scrub_data(k, shapes=shapes): scrub_data(v, shapes=shapes) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_data(v, shapes=shapes) for v in value]
    if isinstance(value, tuple):
        return tuple(scrub_data(v, shapes=shapes) for v in value)
    return value


def contains_secret(text: str, secrets: Iterable[str]) -> bool:
    """Whether any encoding of any of `secrets` occurs in `text` (for tests and self-checks)."""
    return any(form in text for secret in secrets for form in encodings(secret))


class ScrubbingStream:
    """A text stream that scrubs what is written to it before passing it on (the CLI's stdout/stderr).

    Writes are buffered per line so a secret split across two `write` calls is still found whole.
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        if "\n" in self._pending:
            complete, _, self._pending = self._pending.rpartition("\n")
            self._stream.write(scrub(complete + "\n"))
        return len(text)

    def flush(self) -> None:
        if self._pending:
            self._stream.write(scrub(self._pending))
            self._pending = ""
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
