"""The alerter's work for one stream record: read the snapshot, decide, deliver, record.

Non-INSERT records and non-snapshot items are ignored (the mapping's filter should already drop them).
A record that cannot be read, or whose delivery failed, raises so the batch processor reports it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from spendwatch.alerting import DeliveryFailedError, Outcome, SenderFactory, process_snapshot
from spendwatch.config import SpendwatchConfig
from spendwatch.errors import SnapshotFormatError, SpendwatchError
from spendwatch.observability import logger, metrics
from spendwatch.runtime import AlerterEnv, SsmConfigSource, slack_sender_factory, utc_now
from spendwatch.secrets import SsmSecrets
from spendwatch.snapshot import ITEM_KIND, Snapshot
from spendwatch.store import AlertStateStore, from_attribute_map

SAFETY_MARGIN_S = 3.0


class OutOfTimeError(SpendwatchError):
    """Too little of the invocation is left to send safely; the record is failed fast and retried."""


@dataclass
class AlerterApp:
    config: Callable[[], SpendwatchConfig]
    states: AlertStateStore
    sender_for: Callable[[Callable[[], float]], SenderFactory]
    now: Callable[[], datetime] = utc_now

    @classmethod
    def from_environment(cls) -> AlerterApp:
        env = AlerterEnv.from_environ()
        secrets = SsmSecrets()
        return cls(
            config=SsmConfigSource(env.spendwatch_config_parameter).get,
            states=AlertStateStore(env.alert_state_table),
            sender_for=lambda remaining: slack_sender_factory(
                secrets, api_base_url=env.slack_api_base_url, remaining_s=remaining
            ),
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
        outcome = process_snapshot(
            snapshot, config=self.config(), states=self.states, sender_for=self.sender_for(remaining_s), now=self.now
        )
        for channel, alerts in outcome.sent:
            metrics.add_metric(name="AlertsSent", unit="Count", value=len(alerts))
            logger.info(
                "alert sent",
                org_id=snapshot.org_id,
                channel=channel,
                alerts=[f"{a.observation.rule_id}:{a.reason.value}:{a.level}" for a in alerts],
            )
        if outcome.failures:
            metrics.add_metric(name="DeliveryFailures", unit="Count", value=len(outcome.failures))
            for failure in outcome.failures:
                logger.error(
                    "delivery failed",
                    org_id=snapshot.org_id,
                    channel=failure.channel,
                    reason=failure.reason,
                    retryable=failure.retryable,
                    detail=failure.detail,
                )
            raise DeliveryFailedError(outcome.failures)
        return outcome
