"""The watchdog: says so when an organization's newest snapshot is too old (the poller stopped).

A stopped poller writes nothing, so no stream record reaches the alerter; the watchdog therefore runs on
its own schedule. For each configured organization it reads the key of the newest snapshot (one Query,
`Limit: 1`, newest first) and, when it is older than `rules.health.stale_after_hours` (default: three
poll periods), sends "no fresh snapshot since …" through the organization's channels, once per stale
episode (the same notification log and claim protocol as every alert), and "fresh again" once when a
new snapshot arrives. An organization that has never had a snapshot counts from the first time the
watchdog saw it, so a fresh deployment is not reported as stale before its first poll.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from spendwatch.alerter.notices import (
    NotificationLog,
    SenderFactory,
    notice_message,
    notify_on_change,
    record_delivery_failure,
)
from spendwatch.alerter.notices import with_fallback as _with_fallback
from spendwatch.aws.runtime import SsmConfigSource, WatchdogEnv, utc_now
from spendwatch.aws.secrets import SsmSecrets
from spendwatch.channels.base import Pacer
from spendwatch.channels.factory import sender_factory
from spendwatch.core.config import OrganizationConfig, SpendwatchConfig
from spendwatch.core.errors import DeliveryError
from spendwatch.core.observability import logger
from spendwatch.core.snapshot import isoformat_utc, parse_utc
from spendwatch.core.text import untrusted

STALE_KEY = "health.stale#org"
WATCH_KEY = "health.watch#org"
DEFAULT_STALE_PERIODS = 3
SAFETY_MARGIN_S = 3.0


class SnapshotTimes(Protocol):
    def newest_poll_time(self, org_id: str) -> datetime | None: ...


@dataclass
class OrgCheck:
    org_id: str
    newest: datetime | None
    stale_after: timedelta
    stale: bool
    notified: list[str] = field(default_factory=list)
    failures: list[DeliveryError] = field(default_factory=list)
    skipped: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "newest_snapshot": isoformat_utc(self.newest) if self.newest else None,
            "stale_after_hours": self.stale_after.total_seconds() / 3600,
            "stale": self.stale,
            "notified": self.notified,
            "failures": [f"{f.channel}: {f.reason}" for f in self.failures],
            **({"skipped": self.skipped} if self.skipped else {}),
        }


def format_age(age: timedelta) -> str:
    hours = int(age.total_seconds() // 3600)
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if days else f"{hours} h {int(age.total_seconds() % 3600 // 60)} min"


def stale_after(org: OrganizationConfig, poll_period_s: int) -> timedelta:
    hours = org.rules.health.stale_after_hours
    if hours:
        return timedelta(hours=hours)
    return timedelta(seconds=DEFAULT_STALE_PERIODS * poll_period_s)


@dataclass
class WatchdogApp:
    config: Callable[[], SpendwatchConfig]
    snapshots: SnapshotTimes
    states: NotificationLog
    sender_for: Callable[[Callable[[], float]], SenderFactory]
    poll_period_s: int = 3600
    clock: Callable[[], datetime] = utc_now
    """The wall clock, for claims and the notification log. The run's own time (the scheduled event's)
    only judges staleness: an async retry can start up to 15 minutes late, and a lease dated then would
    already have lapsed, letting the alerter claim a shared fallback notice while this run sends it."""

    @classmethod
    def from_environment(cls) -> WatchdogApp:
        from spendwatch.aws.store import AlertStateStore, SnapshotStore  # noqa: PLC0415

        env = WatchdogEnv.from_environ()
        secrets = SsmSecrets()
        pacer = Pacer()
        return cls(
            config=SsmConfigSource(env.spendwatch_config_parameter).get,
            snapshots=SnapshotStore(env.snapshots_table),
            states=AlertStateStore(env.alert_state_table),
            sender_for=lambda remaining: sender_factory(
                secrets, api_base_url=env.slack_api_base_url, remaining_s=remaining, pacer=pacer
            ),
            poll_period_s=env.poll_period_seconds,
        )

    def run(self, now: datetime, remaining_ms: Callable[[], int] | None = None) -> list[OrgCheck]:
        def remaining_s() -> float:
            return (remaining_ms() / 1000 if remaining_ms else 60.0) - SAFETY_MARGIN_S

        config = self.config()
        checks = []
        for org in config.organizations:
            try:
                checks.append(self.check(org, config, now, remaining_s))
            except Exception as exc:
                logger.exception("watchdog check failed", org_id=org.id)
                failed = OrgCheck(org.id, None, stale_after(org, self.poll_period_s), stale=False)
                failed.failures.append(
                    DeliveryError("(watchdog)", f"check failed: {type(exc).__name__}", retryable=True, reason="error")
                )
                checks.append(failed)
        return checks

    def check(
        self, org: OrganizationConfig, config: SpendwatchConfig, now: datetime, remaining_s: Callable[[], float]
    ) -> OrgCheck:
        limit = stale_after(org, self.poll_period_s)
        newest = self.snapshots.newest_poll_time(org.id)
        result = OrgCheck(org.id, newest, limit, stale=False)
        health = org.rules.health
        if not health.enabled:
            result.skipped = "rules.health.enabled is false"
            return result
        keys = [f"{STALE_KEY}#{channel}" for channel in org.channels]
        states = self.states.get_many(org.id, [*keys, WATCH_KEY])
        if newest is not None:
            reference = newest
        else:
            watching = states.get(WATCH_KEY)
            if watching is None or watching.notified_at is None:
                self._start_watching(org.id, now)
                reference = now
            else:
                reference = watching.notified_at
        result.stale = now - reference > limit
        silenced = any(s.matches(org.id, "health", now) for s in config.silences)
        builder = _with_fallback(
            self.sender_for(remaining_s), config=config, org=org, states=self.states, now=self.clock
        )
        for channel, key in zip(org.channels, keys, strict=True):
            prior = states.get(key)
            was_firing = prior.firing if prior is not None else False
            # An unconfirmed notice (outcome unknown) is due its one re-send although nothing changed.
            unconfirmed = prior is not None and prior.resend_due(self.clock())
            if (result.stale == was_firing and not unconfirmed) or (result.stale and silenced):
                continue
            if remaining_s() <= 0:
                result.failures.append(
                    DeliveryError(channel, "no time left in this run", retryable=True, reason="out_of_time")
                )
                continue
            channel_config = config.channels[channel]
            message = self._message(
                org, newest, reference, now, limit, mention=getattr(channel_config, "mention", None), key=key
            )
            # Without send_resolved the episode still ends in the log, silently.
            # A channel's own send_resolved (PagerDuty's is on by default) wins, as in the alerter.
            own = getattr(channel_config, "send_resolved", None)
            quiet = not result.stale and not (health.send_resolved if own is None else own)

            def send(channel: str = channel, message: Any = message, quiet: bool = quiet) -> None:
                if not quiet:
                    builder(channel, config.channels[channel]).send(message)

            try:
                sent = notify_on_change(
                    self.states,
                    org.id,
                    key,
                    firing=result.stale,
                    send=send,
                    now=self.clock(),
                    reason="stale" if result.stale else "fresh",
                    prior=prior,
                    known=True,
                )
            except DeliveryError as exc:
                result.failures.append(exc)
                record_delivery_failure(exc, org_id=org.id, role="watchdog")
                continue
            if sent:
                result.notified.append(channel)
                logger.warning(
                    "snapshot staleness notified",
                    org_id=org.id,
                    channel=channel,
                    stale=result.stale,
                    newest_snapshot=isoformat_utc(newest) if newest else None,
                )
        return result

    def _start_watching(self, org_id: str, now: datetime) -> None:
        """Remember when the watchdog first saw an organization without snapshots (a one-off write)."""
        notify_on_change(
            self.states, org_id, WATCH_KEY, firing=True, send=lambda: None, now=now, reason="watching", known=True
        )

    @staticmethod
    def _message(
        org: OrganizationConfig,
        newest: datetime | None,
        reference: datetime,
        now: datetime,
        limit: timedelta,
        *,
        mention: str | None,
        key: str = STALE_KEY,
    ) -> Any:
        age = format_age(now - reference)
        name = untrusted(org.name)
        if now - reference > limit:
            title = f"spendwatch: no fresh snapshot for {name}"
            if newest is None:
                since = isoformat_utc(reference)
                first = f"No snapshot has been written since the watchdog started watching at {since} ({age} ago)."
            else:
                first = (
                    f"No fresh snapshot since {isoformat_utc(newest)} ({age} ago; the limit is {format_age(limit)})."
                )
            lines = [
                first,
                f"Spend of {name} is NOT being watched: the poller has stopped, is failing or cannot write.",
            ]
            context = "Check the poller's logs and the PollerErrorsAlarm / PollerStoppedAlarm alarms."
            return notice_message(title, lines, context=context, mention=mention, key=f"{org.id}:{key}")
        title = f"spendwatch: snapshots are fresh again for {name}"
        lines = [f"Newest snapshot {isoformat_utc(reference)} ({age} ago); spend is being watched again."]
        return notice_message(title, lines, key=f"{org.id}:{key}", firing=False)


def event_time(event: dict[str, Any], default: Callable[[], datetime] = utc_now) -> datetime:
    """The scheduled event's `time` (the moment the run is for), else the clock."""
    raw = event.get("time") if isinstance(event, dict) else None
    if isinstance(raw, str):
        try:
            return parse_utc(raw)
        except ValueError:
            pass
    return default()
