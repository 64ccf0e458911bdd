"""The bounded set of delivery failure reasons, over every channel: a metric dimension.

A CloudWatch metric costs $0.30 a month per distinct dimension value, so every reason a `DeliveryError`
can carry is one of these, or `other`.
"""

from __future__ import annotations

from spendwatch.channels.base import GENERIC_REASONS, NOT_SENT_REASONS, UNKNOWN_OUTCOME_REASONS
from spendwatch.channels.email import SES_REASONS
from spendwatch.channels.pagerduty import PAGERDUTY_REASONS
from spendwatch.channels.slack import SLACK_REASONS
from spendwatch.channels.sns import SNS_REASONS

KNOWN_REASONS = (
    GENERIC_REASONS
    | NOT_SENT_REASONS
    | UNKNOWN_OUTCOME_REASONS
    | SLACK_REASONS
    | SES_REASONS
    | PAGERDUTY_REASONS
    | SNS_REASONS
)


def metric_reason(reason: str) -> str:
    """The reason as a bounded metric dimension value."""
    return reason if reason in KNOWN_REASONS else "other"
