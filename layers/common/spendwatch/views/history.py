"""Snapshot history for the digest and the report: the org's snapshots over time, read two ways.

`at_or_before(t)` is the newest whole snapshot polled at or before `t` (what the month-to-date breakdowns
were at a period or day boundary); `polls_between(start, end)` lists every poll in a window (for health
counts; readers may get only the summary fields). `MemoryHistory` serves a list (a fresh local poll, tests,
benchmarks); `TableHistory` reads `SnapshotsTable` through `SnapshotStore`, one small Query per boundary,
cached per instance.

`period_growth` turns two boundary snapshots into the amount of a period. OpenAI reports costs by project
and line item, and usage by model, only month to date (the poller sums the daily buckets), so the amount a
key added in [start, end) is the growth of its month-to-date figure between the snapshot at `start` and
the one at `end`, carried across a month start by the last snapshot of the earlier month. Cost OpenAI
reports late therefore counts in the period it was reported in; the total of a period comes from the
daily cost buckets instead, which are exact.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Generic, Protocol, TypeVar

from spendwatch.alerter.rules import month_end
from spendwatch.core.snapshot import Snapshot, isoformat_utc, month_of

MAX_BOUNDARY_GAP = timedelta(days=1)
"""A boundary snapshot older than this (the poller was stopped) does not stand for the boundary."""

K = TypeVar("K", bound=Hashable)
Extract = Callable[[Snapshot], Mapping[K, Decimal] | None]
"""The month-to-date figures a snapshot holds for each key, or None when their source failed in it."""


class SnapshotHistory(Protocol):
    def at_or_before(self, moment: datetime) -> Snapshot | None: ...

    def polls_between(self, start: datetime, end: datetime) -> Sequence[Snapshot]: ...


class MemoryHistory:
    """Snapshots held in memory (one per poll time; a later duplicate is ignored)."""

    def __init__(self, snapshots: Iterable[Snapshot]) -> None:
        by_time: dict[datetime, Snapshot] = {}
        for snapshot in snapshots:
            by_time.setdefault(snapshot.poll_time, snapshot)
        self._times = sorted(by_time)
        self._snapshots = [by_time[t] for t in self._times]

    def at_or_before(self, moment: datetime) -> Snapshot | None:
        index = bisect.bisect_right(self._times, moment)
        return self._snapshots[index - 1] if index else None

    def polls_between(self, start: datetime, end: datetime) -> Sequence[Snapshot]:
        return self._snapshots[bisect.bisect_left(self._times, start) : bisect.bisect_left(self._times, end)]

    def newest(self) -> Snapshot | None:
        return self._snapshots[-1] if self._snapshots else None


class SnapshotReader(Protocol):
    """The part of `SnapshotStore` a `TableHistory` uses."""

    def snapshot_at_or_before(self, org_id: str, moment: datetime) -> Snapshot | None: ...

    def snapshots_between(self, org_id: str, start: datetime, end: datetime) -> list[Snapshot]: ...


class TableHistory:
    """One organization's history in `SnapshotsTable`; each boundary is read once per instance."""

    def __init__(self, store: SnapshotReader, org_id: str) -> None:
        self._store = store
        self._org_id = org_id
        self._at: dict[datetime, Snapshot | None] = {}
        self.reads = 0
        """Queries made (for logs and benchmarks)."""

    def at_or_before(self, moment: datetime) -> Snapshot | None:
        if moment not in self._at:
            self.reads += 1
            self._at[moment] = self._store.snapshot_at_or_before(self._org_id, moment)
        return self._at[moment]

    def polls_between(self, start: datetime, end: datetime) -> Sequence[Snapshot]:
        self.reads += 1
        return self._store.snapshots_between(self._org_id, start, end)


@dataclass(frozen=True)
class Growth(Generic[K]):
    """What each key added in a period, or why that cannot be told (`values` is None)."""

    values: dict[K, Decimal] | None
    reason: str | None = None

    @property
    def known(self) -> bool:
        return self.values is not None


def boundary(history: SnapshotHistory, moment: datetime) -> Snapshot | None:
    """The snapshot that stands for `moment`: the newest at or before it, if no older than a day."""
    snapshot = history.at_or_before(moment)
    if snapshot is None or moment - snapshot.poll_time > MAX_BOUNDARY_GAP:
        return None
    return snapshot


def period_growth(
    history: SnapshotHistory, start: datetime, end: datetime, extract: Extract[K], what: str
) -> Growth[K]:
    """How much each key's month-to-date figure grew from `start` to `end` (see the module docstring).

    `what` names the source in the reason given when the growth cannot be computed.
    """
    last = boundary(history, end)
    first = boundary(history, start)
    for moment, snapshot in ((start, first), (end, last)):
        if snapshot is None:
            return Growth(None, f"no snapshot within a day before {isoformat_utc(moment)}")
    assert first is not None and last is not None
    at_end, at_start = extract(last), extract(first)
    for snapshot, values in ((first, at_start), (last, at_end)):
        if values is None:
            return Growth(None, f"{what} could not be read in the poll of {isoformat_utc(snapshot.poll_time)}")
    assert at_end is not None and at_start is not None
    if first.period == last.period:
        return Growth(_minus(at_end, at_start))
    # The month changed in between: what the earlier month added after `start`, then the new month's total.
    if month_of(month_end(first.poll_time)) != last.period:
        return Growth(None, f"more than a month between the polls of {first.period} and {last.period}")
    closing = history.at_or_before(month_end(first.poll_time) - timedelta(seconds=1))
    final = extract(closing) if closing is not None else None
    if closing is None or final is None or closing.period != first.period:
        return Growth(None, f"{what} of {first.period} could not be read at the month's end")
    earlier = _minus(final, at_start)
    return Growth({key: at_end.get(key, Decimal(0)) + earlier.get(key, Decimal(0)) for key in {*at_end, *earlier}})


def _minus(later: Mapping[K, Decimal], earlier: Mapping[K, Decimal]) -> dict[K, Decimal]:
    return {key: later.get(key, Decimal(0)) - earlier.get(key, Decimal(0)) for key in {*later, *earlier}}
