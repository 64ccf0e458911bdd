"""Turning one snapshot into notifications: evaluate rules, decide per alert and channel, claim, send, record.

Order follows Alertmanager: decide against the notification log, send, and only then record the
notification; a failed send releases its claim so the stream retry delivers it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from spendwatch.config import ChannelConfig, SpendwatchConfig
from spendwatch.decide import NotifyPolicy, Reason, should_notify
from spendwatch.errors import DeliveryError
from spendwatch.render import Alert, build_message
from spendwatch.rules import evaluate
from spendwatch.senders import Sender
from spendwatch.snapshot import Snapshot
from spendwatch.store import AlertStateStore, ClaimLostError

ALERT_STATE_RETENTION_DAYS = 400

SenderFactory = Callable[[str, ChannelConfig], Sender]


@dataclass
class Outcome:
    """What processing one snapshot did, for logs, metrics and tests."""

    sent: list[tuple[str, list[Alert]]] = field(default_factory=list)
    skipped_claims: list[str] = field(default_factory=list)
    failures: list[DeliveryError] = field(default_factory=list)


class DeliveryFailedError(Exception):
    """At least one channel failed; the record must be reported as failed so it is retried or dead-lettered."""

    def __init__(self, failures: list[DeliveryError]) -> None:
        self.failures = failures
        super().__init__("; ".join(str(f) for f in failures))


def policy_for(rule_id: str) -> NotifyPolicy:
    # Budgets follow AWS Budgets: once per threshold per month, no repeats, no resolves.
    return NotifyPolicy()


def process_snapshot(
    snapshot: Snapshot,
    *,
    config: SpendwatchConfig,
    states: AlertStateStore,
    sender_for: SenderFactory,
    now: Callable[[], datetime],
) -> Outcome:
    outcome = Outcome()
    try:
        org = config.organization(snapshot.org_id)
    except KeyError:
        return outcome  # the org was removed from the config after this snapshot was taken
    observations = evaluate(snapshot, org)
    if not observations:
        return outcome
    moment = now()
    expires_at = int(moment.timestamp()) + ALERT_STATE_RETENTION_DAYS * 86400
    for channel_name in org.channels:
        keyed = {f"{obs.key}#{channel_name}": obs for obs in observations}
        previous = states.get_many(org.id, list(keyed))
        pending: list[tuple[str, Alert]] = []
        for key, obs in keyed.items():
            prior = previous.get(key)
            decision = should_notify(prior, obs, policy_for(obs.rule_id), moment)
            if decision.reason is None:
                continue
            try:
                states.claim(
                    org.id, key, expected_version=prior.version if prior else 0, now=moment, expires_at=expires_at
                )
            except ClaimLostError:
                outcome.skipped_claims.append(key)
                continue
            pending.append((key, Alert(obs, decision.reason, decision.level)))
        if not pending:
            continue
        alerts = [alert for _, alert in pending]
        try:
            sender = sender_for(channel_name, config.channels[channel_name])
            sender.send(
                build_message(snapshot, alerts, mention=getattr(config.channels[channel_name], "mention", None))
            )
        except DeliveryError as exc:
            for key, _ in pending:
                states.release(org.id, key)
            outcome.failures.append(exc)
            continue
        for key, alert in pending:
            states.mark_sent(
                org.id,
                key,
                level=alert.level,
                firing=alert.reason is not Reason.RESOLVED,
                now=moment,
                reason=alert.reason.value,
            )
        outcome.sent.append((channel_name, alerts))
    return outcome
