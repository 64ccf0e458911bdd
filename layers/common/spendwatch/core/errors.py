"""Typed exceptions shared by every part of spendwatch.

Messages name what failed and where, and never carry a secret: callers build them from status codes,
error codes and field paths, not from request objects, and every message is scrubbed of the secrets the
process has read (`spendwatch.core.redact`), whatever a reply or a receiver echoed into it.
"""

from __future__ import annotations

from spendwatch.core.redact import scrub
from spendwatch.core.remedies import delivery_fix


class SpendwatchError(Exception):
    """Base class of every error spendwatch raises on purpose."""

    def __str__(self) -> str:
        # Tracebacks, Lambda's errorMessage and log lines all print str(exc): scrub it here once.
        return scrub(super().__str__())


class ConfigError(SpendwatchError):
    """The config file (or pushed config) is invalid; the message names file, field and problem."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = [scrub(problem) for problem in problems]
        joined = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid config {source}:\n{joined}")


class EnvironmentConfigError(SpendwatchError):
    """A function's environment is missing or has an invalid variable."""


class SecretNotFoundError(SpendwatchError):
    """A secret was expected but neither the SSM parameter nor the environment variable holds it."""


class SourceError(SpendwatchError):
    """One data source of a poll failed; the poll records it and goes on with the others."""

    kind = "error"
    retryable = False

    def __init__(self, source: str, detail: str) -> None:
        self.source = source
        self.detail = scrub(detail)
        super().__init__(f"{source}: {self.detail}")


class AuthError(SourceError):
    """The key was rejected (revoked, wrong type, missing scope, expired session key)."""

    kind = "auth"


class MalformedReplyError(SourceError):
    """The reply was not the JSON shape the API documents (HTML page, truncated, wrong types)."""

    kind = "malformed"


class RateLimitedError(SourceError):
    """429 persisted past the retry budget."""

    kind = "rate_limited"
    retryable = True


class UnavailableError(SourceError):
    """5xx, timeout or connection failure persisted past the retry budget."""

    kind = "unavailable"
    retryable = True


class RequestRejectedError(SourceError):
    """A 4xx other than auth and 429: our request was wrong or the resource does not exist."""

    kind = "rejected"


class DeadlineError(SourceError):
    """The poll's time ran out before this source finished (or before its request could start)."""

    kind = "deadline"
    retryable = True


class TooLargeError(SourceError):
    """The reply is larger than the per-response cap; reading stopped at the cap (not retried)."""

    kind = "too_large"


class TruncatedReplyError(SourceError):
    """The reply's body ended early (short of its Content-Length, or a chunked body cut off), persistently."""

    kind = "truncated"
    retryable = True


class NothingCollectedError(SpendwatchError):
    """Every source of a poll failed, so no snapshot could be written."""


class DeliveryError(SpendwatchError):
    """A channel did not deliver a message. `retryable` tells the caller whether trying again may help.

    Raised only when the message provably did not reach the receiver (no connection, DNS, TLS, the
    request not fully sent) or the receiver answered with a refusal; when that cannot be known the
    sender raises `DeliveryUnknownError` instead.
    """

    outcome = "not_delivered"

    def __init__(self, channel: str, detail: str, *, retryable: bool, reason: str = "error") -> None:
        self.channel = channel
        self.detail = scrub(detail)
        self.retryable = retryable
        self.reason = reason
        self.fix = None if retryable else delivery_fix(reason)
        """what the user must change for this channel to work (`remedies`), for a permanent failure"""
        fix = f"; fix: {self.fix}" if self.fix else ""
        super().__init__(f"channel {channel!r}: {self.detail} ({self._label()}){fix}")

    def _label(self) -> str:
        return "retryable" if self.retryable else "permanent"


class DeliveryUnknownError(DeliveryError):
    """The request may have reached the receiver, but no answer confirms it (a read timeout or a connection
    reset after the request was sent, Slack's `fatal_error`, a gateway's 504, botocore's ReadTimeoutError).

    The message was probably delivered: it is never retried within the invocation (the slow Slack that
    records the post and answers late would get one copy per retry). The caller records it as sent but
    unconfirmed and re-sends it at most once, after a long lease. `retryable` is False for callers that
    only know `DeliveryError`: retrying now is exactly what must not happen.
    """

    outcome = "unknown"

    def __init__(self, channel: str, detail: str, *, reason: str) -> None:
        super().__init__(channel, detail, retryable=False, reason=reason)

    def _label(self) -> str:
        return "outcome unknown"


class SnapshotFormatError(SpendwatchError):
    """A stored snapshot item cannot be read (unknown schema version or corrupted fields)."""
