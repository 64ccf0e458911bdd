"""A run of whole UTC days: what a digest or a report covers (kept apart so that deciding which digest
is due imports none of the figures)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

DAY = timedelta(days=1)


@dataclass(frozen=True)
class Period:
    """A run of whole UTC days [start, end)."""

    start: datetime
    end: datetime

    @property
    def days(self) -> list[date]:
        count = (self.end - self.start).days
        return [(self.start + DAY * i).date() for i in range(count)]

    @property
    def previous(self) -> Period:
        return Period(self.start - (self.end - self.start), self.start)

    @property
    def label(self) -> str:
        first, last = self.start.date(), (self.end - DAY).date()
        return first.isoformat() if first == last else f"{first.isoformat()} to {last.isoformat()}"
