"""The alerter's work for one stream record: read the snapshot, decide, deliver, record.

Non-INSERT records and non-snapshot items are ignored (the mapping's filter should already drop them).
A record that cannot be read, or whose delivery failed, raises so the batch processor reports it.

Each organization's main channels are wrapped in `FallbackSender` when it names a `fallback_channel`:
a permanent failure of a main channel (revoked token, archived channel) is then reported once through
the fallback, and the record still fails so it is retried and finally dead-lettered.

A message whose delivery is unknown (Slack answered after the timeout, …) does not fail the record: it
was probably delivered, and a retry would send it again. It is logged (`delivery unconfirmed`), counted
in `DeliveriesUnconfirmed` and re-sent at most once, after `UNCONFIRMED_RESEND_AFTER_S`, if still due.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from spendwatch.alerter.nflog import RESEND_AFTER_S
from spendwatch.alerter.notices import log_unconfirmed, record_delivery_failure, with_fallback
from spendwatch.alerter.process import DeliveryFailedError, Outcome, SenderFactory, process_snapshot
from spendwatch.alerter.rules import history_since
from spendwatch.aws.runtime import AlerterEnv, SsmConfigSource, utc_now
from spendwatch.aws.secrets import SsmSecrets
from spendwatch.aws.store import AlertStateStore, SnapshotStore, from_attribute_map
from spendwatch.channels.base import Pacer
from spendwatch.channels.factory import sender_factory
from spendwatch.core.config import SpendwatchConfig
from spendwatch.core.errors import SnapshotFormatError, SpendwatchError
from spendwatch.core.observability import logger
from spendwatch.core.snapshot import ITEM_KIND, Snapshot, cost_donors, history_is_enough

SAFETY_MARGIN_S = 3.0
HISTORY_POLLS = 64
"""Earlier polls read per record: enough for the longest failing-source streak (`failing_polls` <= 48)."""
CLAIM_LEASE_MARGIN_S = 5
"""A claim outlives its invocation by this much, so a claimant that dies blocks its retry only briefly."""


class OutOfTimeError(SpendwatchError):
    """Too little of the invocation is left to send safely; the record is failed fast and retried."""


@dataclass
class AlerterApp:
    config: Callable[[], SpendwatchConfig]
    states: AlertStateStore
    sender_for: Callable[[Callable[[], float]], SenderFactory]
    now: Callable[[], datetime] = utc_now
    pacer: Pacer = field(default_factory=Pacer)
    snapshots: SnapshotStore | None = None
    """read for the org's recent history (streak and baseline rules); None evaluates the snapshot alone"""
    resend_after_s: int = RESEND_AFTER_S
    """how long an unconfirmed message waits for its one re-send (`UNCONFIRMED_RESEND_AFTER_S`)"""
    poll_period_s: int = 3600
    poll_schedule: str | None = None

    @classmethod
    def from_environment(cls) -> AlerterApp:
        env = AlerterEnv.from_environ()
        secrets = SsmSecrets()
        pacer = Pacer()
        return cls(
            config=SsmConfigSource(env.spendwatch_config_parameter).get,
            states=AlertStateStore(env.alert_state_table),
            sender_for=lambda remaining: sender_factory(
                secrets, api_base_url=env.slack_api_base_url, remaining_s=remaining, pacer=pacer
            ),
            pacer=pacer,
            snapshots=SnapshotStore(env.snapshots_table),
            resend_after_s=env.unconfirmed_resend_after_s,
            poll_period_s=env.poll_period_seconds,
            poll_schedule=env.poll_schedule,
        )

    def handle_record(self, record: dict[str, Any], remaining_ms: Callable[[], int] | None = None) -> Outcome | None:
        if record.get("eventName") != "INSERT":
            return None
        image = (record.get("dynamodb") or {}).get("NewImage")
        if not isinstance(image, dict):
            raise SnapshotFormatError(f"INSERT record {record.get('eventID')} has no NewImage")
        item = from_attribute_map(image)
        if item.get("kind") != ITEM_KIND:
            return None
        snapshot = Snapshot.from_item(item)

        def remaining_s() -> float:
            return (remaining_ms() / 1000 if remaining_ms else 60.0) - SAFETY_MARGIN_S

        if remaining_s() <= 0:
            raise OutOfTimeError("less than the safety margin left; failing the record so it is retried")
        config = self.config()
        senders = self.sender_for(remaining_s)
        try:
            org = config.organization(snapshot.org_id)
        except KeyError:
            pass  # process_snapshot ignores snapshots of organizations no longer configured
        else:
            senders = with_fallback(senders, config=config, org=org, states=self.states, now=self.now)
        history = self._history(snapshot)
        outcome = process_snapshot(
            snapshot,
            config=config,
            states=self.states,
            sender_for=senders,
            now=self.now,
            history=history,
            lease_s=lambda: math.ceil(remaining_s() + SAFETY_MARGIN_S) + CLAIM_LEASE_MARGIN_S,
            resend_after_s=self.resend_after_s,
            remaining_s=remaining_s,
        )
        for channel, alerts in outcome.sent:
            logger.info(
                "alert sent",
                org_id=snapshot.org_id,
                channel=channel,
                alerts=[f"{a.observation.rule_id}:{a.reason.value}:{a.level}" for a in alerts],
                resent=[key for key in outcome.resent if key.endswith(f"#{channel}")],
            )
        for channel, alerts, error in outcome.unconfirmed:
            resent = [key for key in outcome.resent if key.endswith(f"#{channel}")]
            log_unconfirmed(
                error,
                org_id=snapshot.org_id,
                keys=[f"{a.observation.key}#{channel}" for a in alerts],
                resend=len(resent) == len(alerts),
            )
        if snapshot.verify is not None:
            self._post_connected(snapshot, config, history or [], remaining_s)
        if outcome.failures:
            for failure in outcome.failures:
                record_delivery_failure(failure, org_id=snapshot.org_id)
            raise DeliveryFailedError(outcome.failures)
        return outcome

    def _post_connected(
        self, snapshot: Snapshot, config: SpendwatchConfig, history: list[Snapshot], remaining_s: Callable[[], float]
    ) -> None:
        """A `spendwatch verify` snapshot: "spendwatch is connected" to each channel, outcomes recorded."""
        from spendwatch.alerter.verify import next_poll_text, post_connected  # noqa: PLC0415 - verify runs only

        now = self.now()
        post_connected(
            snapshot,
            config=config,
            checks=self.states,
            sender_for=self.sender_for(remaining_s),
            now=now,
            next_poll=next_poll_text(history, now=now, period_s=self.poll_period_s, schedule=self.poll_schedule),
        )

    def _history(self, snapshot: Snapshot) -> list[Snapshot] | None:
        """The org's recent polls as the rules need them: the summaries of the newest ones, as far back as
        `history_is_enough` needs (at most HISTORY_POLLS), plus the daily costs of the earlier polls that
        hold days this snapshot lacks (none while its cost queries succeed)."""
        if self.snapshots is None:
            return None
        try:
            since = history_since(snapshot)
            history: list[Snapshot] = []
            for entry in self.snapshots.history(snapshot.org_id, since=since, limit=HISTORY_POLLS):
                history.append(entry)
                if history_is_enough(snapshot, history, since):
                    break  # older polls would change nothing: no further page is read
            donors = cost_donors(snapshot, history)
            if not donors:
                return history
            costs = self.snapshots.daily_costs(snapshot.org_id, donors)
            return [
                entry.model_copy(update={"daily_costs_usd": costs[entry.poll_time]})
                if entry.poll_time in costs and not entry.daily_costs_usd
                else entry
                for entry in history
            ]
        except SnapshotFormatError as exc:
            # One unreadable old item must not block every later alert: evaluate without history.
            logger.warning("history unreadable", org_id=snapshot.org_id, error=str(exc))
            return None
