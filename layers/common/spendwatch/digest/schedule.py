"""Which digest is due when: a digest run decides this for every organization, and builds a digest
(`digest.compose`, `digest.render`, which import the figures and the chart) only when one is due.

A digest covers whole UTC days: a daily one the day before its send day, a weekly one the seven days
before. Its send moment is `hour_utc` on the send day (for a weekly one, the configured weekday).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from spendwatch.core.config import DigestConfig, OrganizationConfig
from spendwatch.views.period import DAY, Period

CADENCE_DAYS = {"day": 1, "week": 7}


@dataclass(frozen=True)
class DuePeriod:
    """The digest of one config entry that is due at a moment."""

    every: str
    """`day` or `week`"""
    send_at: datetime
    period: Period

    @property
    def key(self) -> str:
        return f"digest.{self.every}#{self.send_at.date().isoformat()}"


def due_period(digest: DigestConfig, now: datetime) -> DuePeriod:
    """The entry's latest send moment at or before `now`, and the days it covers."""
    now = now.astimezone(UTC)
    send_day = now.date()
    if digest.every == "week":
        send_day -= timedelta(days=(send_day.weekday() - digest.send_weekday) % 7)
    send_at = datetime(send_day.year, send_day.month, send_day.day, digest.hour_utc, tzinfo=UTC)
    if send_at > now:
        send_at -= timedelta(days=CADENCE_DAYS[digest.every])
    end = send_at.replace(hour=0)
    return DuePeriod(digest.every, send_at, Period(end - DAY * CADENCE_DAYS[digest.every], end))


def log_key(due: DuePeriod, channel: str) -> str:
    """The digest's notification-log key for one channel (`AlertStateTable`, under the org)."""
    return f"{due.key}#{channel}"


def digest_channels(digest: DigestConfig, org: OrganizationConfig) -> tuple[str, ...]:
    return digest.channels or org.channels
