"""The history summary: a few hundred bytes per poll, and history built from summaries (plus the daily costs of
the polls `cost_donors` names) makes every rule and the superseding check decide exactly as history built
from the whole snapshots does."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spendwatch.alerter.process import superseding
from spendwatch.alerter.rules import daily_series, evaluate, history_since, prior_snapshots
from spendwatch.aws.store import to_attribute_map
from spendwatch.core.config import OrganizationConfig, parse_config
from spendwatch.core.errors import SnapshotFormatError
from spendwatch.core.snapshot import (
    HISTORY_KIND,
    HISTORY_SOURCES,
    CreditSummary,
    DailyCost,
    Snapshot,
    SnapshotSummary,
    SourceFailure,
    cost_donors,
    cost_months,
    history_is_enough,
    history_sk,
)

NOW = datetime(2026, 12, 2, 5, tzinfo=UTC)  # early in a month: the series reaches into the previous one
OTHER_SOURCES = ("usage_future_type",)  # a source a later poller may add: stored by name
CONDITIONS = ("session_key_rejected", "admin_key_missing_scope", "snapshot_trimmed")


def org(failing_polls: int, baseline_days: int, burn_days: int) -> OrganizationConfig:
    text = f"""
organizations:
  - id: acme
    name: Acme
    budget: {{monthly_usd: 500}}
    rules:
      spike: {{factor: 2, baseline_days: {baseline_days}, min_usd: 0}}
      low_balance: {{min_usd: 50, min_runway_days: 20, burn_days: {burn_days}}}
      health: {{failing_polls: {failing_polls}}}
"""
    return parse_config(text, "t.yaml").organizations[0]


def month_days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def full_snapshot(
    poll_time: datetime, ok: set[str], failed: set[str], conditions: tuple[str, ...], seed: int
) -> Snapshot:
    """A snapshot as the poller builds it: daily costs for the months whose cost queries succeeded."""
    this_month = poll_time.date().replace(day=1)
    previous = (this_month - timedelta(days=1)).replace(day=1)
    days: list[date] = []
    if "costs_previous_month" in ok:
        days += month_days(previous, this_month - timedelta(days=1))
    if "costs" in ok:
        days += month_days(this_month, poll_time.date())
    # Each poll sees its own figures: later polls revise the provisional days.
    costs = tuple(DailyCost(day=d, amount_usd=Decimal((d.toordinal() * 7 + seed) % 97) / 4) for d in days)
    current = [c.amount_usd for c in costs if c.day >= this_month]
    return Snapshot(
        org_id="acme",
        org_name="Acme",
        poll_time=poll_time,
        collected_at=poll_time + timedelta(seconds=40),
        month_to_date_usd=sum(current, Decimal(0)) if "costs" in ok else None,
        daily_costs_usd=costs,
        credit_summary=CreditSummary(
            total_granted_usd=Decimal(1000), total_used_usd=Decimal(900), total_available_usd=Decimal(100)
        ),
        failures=tuple(SourceFailure(source=s, kind="unavailable", detail="HTTP 502") for s in sorted(failed)),
        sources_ok=tuple(s for s in (*HISTORY_SOURCES, *OTHER_SOURCES) if s in ok),
        conditions=conditions,
    )


SOURCES = st.sets(st.sampled_from((*HISTORY_SOURCES, *OTHER_SOURCES)))
FLAKY = ("projects", "usage_images", "costs", "costs_previous_month", "usage_future_type")


NEWEST = (NOW, datetime(2026, 12, 20, 5, tzinfo=UTC), datetime(2027, 3, 1, 9, tzinfo=UTC))
"""Early in a month (the series reaches two months back), mid-month, and after a 28-day February."""


@st.composite
def polls(draw: Any) -> list[Snapshot]:
    """An org's polls, newest last: hourly-ish, some sources failing, often across a month boundary."""
    count = draw(st.integers(min_value=1, max_value=40))
    gaps = draw(st.lists(st.integers(min_value=1, max_value=12), min_size=count, max_size=count))
    out = []
    moment = draw(st.sampled_from(NEWEST))
    failed: set[str] = set()
    for index in range(count):
        attempted = draw(SOURCES) | {"costs", "costs_previous_month", "projects"}
        # Few sources fail, often as in the poll before: streaks, and cost months missing now and then.
        if not draw(st.booleans()):
            failed = draw(st.sets(st.sampled_from(FLAKY), max_size=2))
        failed &= attempted
        conditions = tuple(draw(st.lists(st.sampled_from(CONDITIONS), unique=True, max_size=2)))
        out.append(full_snapshot(moment, attempted - failed, set(failed), conditions, seed=index))
        moment -= timedelta(hours=gaps[index])
    return list(reversed(out))


def summary_history(snapshots: list[Snapshot], current: Snapshot) -> list[Snapshot]:
    """What AlerterApp._history returns: summaries, newest first, read until `history_is_enough`, with
    the donors' daily costs read back."""
    since = history_since(current)
    window = [s for s in snapshots if s.poll_time >= since]
    stored = {s.poll_time: s for s in window}
    entries: list[Snapshot] = []
    for s in sorted(window, key=lambda s: s.poll_time, reverse=True):
        entries.append(SnapshotSummary.from_item(SnapshotSummary.of(s).to_item(expires_at=1)).as_history())
        if history_is_enough(current, entries, since):
            break
    donors = set(cost_donors(current, entries))
    return [
        e.model_copy(update={"daily_costs_usd": stored[e.poll_time].daily_costs_usd}) if e.poll_time in donors else e
        for e in entries
    ]


@settings(max_examples=40, deadline=None)
@given(
    polls(),
    st.integers(min_value=1, max_value=6),
    st.integers(min_value=3, max_value=28),
    st.integers(min_value=3, max_value=28),
    st.integers(min_value=0, max_value=5),
)
def test_summary_history_decides_every_rule_as_the_whole_snapshots_do(
    snapshots: list[Snapshot], failing_polls: int, baseline_days: int, burn_days: int, pick: int
) -> None:
    current = snapshots[-1 - min(pick, len(snapshots) - 1)]  # often the newest; a later one is "newer" history
    rules_org = org(failing_polls, baseline_days, burn_days)
    full = [s for s in snapshots if s.poll_time >= history_since(current)]
    summarized = summary_history(snapshots, current)
    assert daily_series(current, prior_snapshots(current, summarized)) == daily_series(
        current, prior_snapshots(current, full)
    )
    now = current.poll_time + timedelta(minutes=5)
    assert evaluate(current, rules_org, history=summarized, now=now) == evaluate(
        current, rules_org, history=full, now=now
    )
    assert superseding(current, summarized) == superseding(current, full)


def test_summary_item_round_trips_and_is_small() -> None:
    every = set(HISTORY_SOURCES)
    snapshot = full_snapshot(NOW, every - {"costs_by_project"}, {"costs_by_project"}, ("session_key_rejected",), 3)
    summary = SnapshotSummary.of(snapshot)
    item = summary.to_item(expires_at=1_900_000_000)
    assert (item["pk"], item["sk"], item["kind"]) == ("ORG#acme#HISTORY", history_sk(NOW), HISTORY_KIND)
    assert SnapshotSummary.from_item(item) == summary
    size = sum(len(k) + len(str(v)) for k, v in item.items())
    assert size < 300, item  # vs ~12 KB for the snapshot itself
    assert len(str(to_attribute_map(item))) < 600


def test_summary_keeps_unknown_sources_by_name() -> None:
    snapshot = full_snapshot(NOW, {"costs", "usage_future_type"}, {"usage_other_future"}, (), 1)
    summary = SnapshotSummary.from_item(SnapshotSummary.of(snapshot).to_item(expires_at=1))
    assert summary.sources_ok == ("costs", "usage_future_type")
    assert summary.failed_sources == ("usage_other_future",)


def test_summary_history_entry_has_what_history_reads_and_no_figures() -> None:
    snapshot = full_snapshot(NOW, {"costs", "projects"}, {"admin_key"}, ("session_key_rejected",), 2)
    entry = SnapshotSummary.of(snapshot).as_history()
    assert (entry.org_id, entry.poll_time, entry.collected_at) == ("acme", NOW, snapshot.collected_at)
    assert entry.month_to_date_usd == snapshot.month_to_date_usd
    assert entry.sources_ok == snapshot.sources_ok
    assert [f.source for f in entry.failures] == ["admin_key"]
    assert entry.conditions == ("session_key_rejected",)
    assert entry.daily_costs_usd == () and entry.credit_summary is None


def test_summary_of_an_unknown_version_is_refused_by_name() -> None:
    item = SnapshotSummary.of(full_snapshot(NOW, {"costs"}, set(), (), 1)).to_item(expires_at=1)
    with pytest.raises(SnapshotFormatError, match=r"history summary ORG#acme#HISTORY/HIST#.*schema_version 2"):
        SnapshotSummary.from_item({**item, "schema_version": 2})
    with pytest.raises(SnapshotFormatError, match="history summary"):
        SnapshotSummary.from_item({k: v for k, v in item.items() if k != "org_name"})


def test_history_items_live_outside_the_snapshots_partition() -> None:
    """A Query of an org's snapshot keys (this release's or an earlier one's) never meets a summary."""
    item = SnapshotSummary.of(full_snapshot(NOW, {"costs"}, set(), (), 1)).to_item(expires_at=1)
    assert item["pk"] != "ORG#acme" and item["pk"].startswith("ORG#acme#")
    assert SnapshotSummary.from_item(item).org_id == "acme"


def test_history_sources_registry_covers_every_poll_source_and_only_grows() -> None:
    from spendwatch.poller.collect import SOURCE_ORDER

    assert set(SOURCE_ORDER) <= set(HISTORY_SOURCES), "add new sources at the end of HISTORY_SOURCES"
    # Stored numbers refer to these positions: the first 22 never move.
    assert HISTORY_SOURCES[:3] == ("costs", "costs_previous_month", "costs_by_project")
    assert HISTORY_SOURCES[21] == "subscription"


def test_cost_months_follow_the_cost_sources() -> None:
    both = full_snapshot(NOW, {"costs", "costs_previous_month"}, set(), (), 1)
    assert cost_months(both) == {"2026-12", "2026-11"}
    january = full_snapshot(datetime(2027, 1, 3, tzinfo=UTC), {"costs_previous_month"}, {"costs"}, (), 1)
    assert cost_months(january) == {"2026-12"}


def test_cost_donors_none_while_the_snapshot_read_both_months() -> None:
    history = [
        SnapshotSummary.of(full_snapshot(NOW - timedelta(hours=h), {"costs"}, set(), (), h)).as_history()
        for h in (1, 2)
    ]
    current = full_snapshot(NOW, {"costs", "costs_previous_month"}, set(), (), 0)
    assert cost_donors(current, history) == []


def test_cost_donors_name_the_newest_poll_per_missing_month() -> None:
    # The record's previous-month query failed on the 2nd: November comes from the newest poll that read it.
    current = full_snapshot(NOW, {"costs"}, {"costs_previous_month"}, (), 0)
    polls_ = {
        NOW - timedelta(hours=1): {"costs"},  # December only
        NOW - timedelta(hours=2): {"costs", "costs_previous_month"},  # reads November: its donor
        NOW - timedelta(hours=30): {"costs", "costs_previous_month"},  # November 30th: October's donor
        NOW - timedelta(hours=40): {"costs"},  # older: nothing the newer polls lack
    }
    history = [SnapshotSummary.of(full_snapshot(t, ok, set(), (), 1)).as_history() for t, ok in polls_.items()]
    assert cost_donors(current, history) == [NOW - timedelta(hours=2), NOW - timedelta(hours=30)]
    # A newer poll is never a donor, and an entry whose costs are already read is not read again.
    with_costs = [full_snapshot(NOW - timedelta(hours=2), {"costs", "costs_previous_month"}, set(), (), 1)]
    assert cost_donors(current, with_costs) == []
    later = SnapshotSummary.of(full_snapshot(NOW + timedelta(hours=1), {"costs_previous_month"}, set(), (), 1))
    assert cost_donors(current, [later.as_history()]) == []


def test_history_is_enough_after_the_previous_poll_when_nothing_failed() -> None:
    both = {"costs", "costs_previous_month"}
    current = full_snapshot(NOW + timedelta(days=20), both, set(), (), 0)  # December 22nd
    since = history_since(current)
    own = SnapshotSummary.of(current).as_history()
    earlier = [
        SnapshotSummary.of(full_snapshot(current.poll_time - timedelta(hours=h), both, set(), (), h)).as_history()
        for h in (1, 2)
    ]
    assert not history_is_enough(current, [own], since), "the previous poll's conditions are needed"
    assert history_is_enough(current, [own, earlier[0]], since)


def test_history_is_not_enough_until_each_failing_source_last_succeeded() -> None:
    both = {"costs", "costs_previous_month"}
    current = full_snapshot(NOW + timedelta(days=20), both, {"projects"}, (), 0)
    since = history_since(current)
    failing = [
        SnapshotSummary.of(
            full_snapshot(current.poll_time - timedelta(hours=h), both, {"projects"}, (), h)
        ).as_history()
        for h in (1, 2)
    ]
    ok = SnapshotSummary.of(
        full_snapshot(current.poll_time - timedelta(hours=3), both | {"projects"}, set(), (), 3)
    ).as_history()
    assert not history_is_enough(current, failing, since)
    assert history_is_enough(current, [*failing, ok], since)


def test_summary_keeps_a_verify_poll_apart_from_the_scheduled_ones() -> None:
    from spendwatch.alerter.verify import next_poll_text

    checked = full_snapshot(NOW, {"costs"}, set(), (), 0).model_copy(update={"verify": "8dc50d4fdacc"})
    entry = SnapshotSummary.from_item(SnapshotSummary.of(checked).to_item(expires_at=1)).as_history()
    assert entry.verify == "8dc50d4fdacc"
    assert next_poll_text([entry], now=NOW, period_s=3600, schedule=None).startswith("no scheduled poll yet")
    scheduled = SnapshotSummary.of(full_snapshot(NOW, {"costs"}, set(), (), 0)).to_item(expires_at=1)
    assert "verify" not in scheduled
