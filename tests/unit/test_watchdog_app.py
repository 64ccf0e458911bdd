from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from spendwatch.core.config import parse_config
from spendwatch.watchdog.app import WatchdogApp
from tests.unit.test_alerting import MemoryStates

NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)
CONFIG = parse_config(
    """
organizations:
  - {id: broken, name: Broken, channels: [slack]}
  - {id: stale, name: Stale, channels: [slack]}
channels:
  slack: {type: slack}
""",
    "t.yaml",
)


class SnapshotTimes:
    def newest_poll_time(self, org_id: str) -> datetime | None:
        if org_id == "broken":
            raise RuntimeError("ProvisionedThroughputExceededException")
        return NOW - timedelta(hours=10)


class Recorder:
    def __init__(self) -> None:
        self.sent: list[Any] = []

    def send(self, message: Any) -> None:
        self.sent.append(message)


def test_watchdog_one_org_failing_does_not_stop_the_others() -> None:
    recorder = Recorder()
    app = WatchdogApp(
        config=lambda: CONFIG,
        snapshots=SnapshotTimes(),
        states=MemoryStates(),
        sender_for=lambda remaining: lambda name, channel: recorder,  # type: ignore[arg-type,return-value]
    )
    checks = {check.org_id: check for check in app.run(NOW)}
    assert [f.reason for f in checks["broken"].failures] == ["error"]
    assert checks["stale"].stale is True
    assert checks["stale"].notified == ["slack"]
    assert len(recorder.sent) == 1


def test_watchdog_records_notices_at_the_wall_clock_not_the_late_event_time() -> None:
    states, recorder = MemoryStates(), Recorder()
    wall = NOW + timedelta(minutes=15)  # an async retry of the NOW run, started late
    app = WatchdogApp(
        config=lambda: CONFIG,
        snapshots=SnapshotTimes(),
        states=states,
        sender_for=lambda remaining: lambda name, channel: recorder,  # type: ignore[arg-type,return-value]
        clock=lambda: wall,
    )
    [_, stale] = app.run(NOW)
    assert stale.notified == ["slack"]
    [item] = [item for (org, _), item in states.items.items() if org == "stale"]
    assert item["at"] == wall


class UnknownOnce(Recorder):
    """The first send times out after the request went out (outcome unknown); later ones are delivered."""

    def send(self, message: Any) -> None:
        from spendwatch.core.errors import DeliveryUnknownError

        self.sent.append(message)
        if len(self.sent) == 1:
            raise DeliveryUnknownError("slack", "read timed out", reason="read_timeout")


def test_watchdog_resends_an_unconfirmed_stale_notice_once_after_its_lease() -> None:
    states, recorder = MemoryStates(), UnknownOnce()
    wall = [NOW]
    app = WatchdogApp(
        config=lambda: CONFIG,
        snapshots=SnapshotTimes(),
        states=states,
        sender_for=lambda remaining: lambda name, channel: recorder,  # type: ignore[arg-type,return-value]
        clock=lambda: wall[0],
    )
    app.run(NOW)
    assert len(recorder.sent) == 1
    app.run(NOW + timedelta(minutes=10))
    assert len(recorder.sent) == 1, "not before the lease ends"
    wall[0] = NOW + timedelta(hours=2)
    app.run(wall[0])
    assert len(recorder.sent) == 2, "one re-send of the unconfirmed notice"
    wall[0] = NOW + timedelta(hours=4)
    app.run(wall[0])
    assert len(recorder.sent) == 2, "confirmed now: never again while still stale"


class MovingSnapshots:
    """The newest poll is 10 hours old, then (after `recover()`) fresh."""

    def __init__(self) -> None:
        self.age = timedelta(hours=10)

    def newest_poll_time(self, org_id: str) -> datetime | None:
        return NOW - self.age


def test_watchdog_stale_then_fresh_opens_and_closes_one_pagerduty_incident() -> None:
    from spendwatch.channels.pagerduty import pagerduty_events

    config = parse_config(
        "organizations: [{id: stale, name: Stale, channels: [pd]}]\nchannels: {pd: {type: pagerduty}}\n", "t.yaml"
    )
    states, recorder, snapshots = MemoryStates(), Recorder(), MovingSnapshots()
    app = WatchdogApp(
        config=lambda: config,
        snapshots=snapshots,
        states=states,
        sender_for=lambda remaining: lambda name, channel: recorder,  # type: ignore[arg-type,return-value]
    )
    app.run(NOW)
    snapshots.age = timedelta(minutes=5)
    app.run(NOW + timedelta(hours=1))
    stale, fresh = (pagerduty_events(m, now=NOW) for m in recorder.sent)
    assert [e["event_action"] for e in stale + fresh] == ["trigger", "resolve"]
    assert stale[0]["dedup_key"] == fresh[0]["dedup_key"] == "spendwatch:notice:stale:health.stale#org#pd"


def test_watchdog_closes_the_pagerduty_incident_even_when_health_sends_no_resolves() -> None:
    from spendwatch.channels.pagerduty import pagerduty_events

    config = parse_config(
        "organizations:\n  - {id: stale, name: Stale, channels: [pd], rules: {health: {send_resolved: false}}}\n"
        "channels: {pd: {type: pagerduty}}\n",
        "t.yaml",
    )
    recorder, snapshots = Recorder(), MovingSnapshots()
    app = WatchdogApp(
        config=lambda: config,
        snapshots=snapshots,
        states=MemoryStates(),
        sender_for=lambda remaining: lambda name, channel: recorder,  # type: ignore[arg-type,return-value]
    )
    app.run(NOW)
    snapshots.age = timedelta(minutes=5)
    app.run(NOW + timedelta(hours=1))
    assert [e["event_action"] for m in recorder.sent for e in pagerduty_events(m, now=NOW)] == ["trigger", "resolve"]
