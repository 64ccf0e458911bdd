"""Turning one snapshot into notifications: evaluate rules, decide per alert and channel, claim, send, record.

Order follows Alertmanager: silences are applied in the decision, each decision is taken against the
notification log (AlertStateTable, one item per alert key and channel), the alerts due on a channel are
claimed and sent as *one* message, and only then recorded; a send that provably failed releases its
claims so the stream retry delivers them. A send whose outcome is unknown is recorded as sent but
unconfirmed and the record succeeds (it was probably delivered: it must not be retried, nor
dead-lettered); a send that cannot be recorded keeps its claims held (`nflog`). A state change that
needs no message (a resolve with `send_resolved` off) is claimed and recorded without a send.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from typing import Any

from spendwatch.alerter.decide import Action, NotifyPolicy, should_notify
from spendwatch.alerter.nflog import RESEND_AFTER_S, NotificationLog, record_after_send, resend_deadline
from spendwatch.alerter.render import build_message, render_email
from spendwatch.alerter.rules import evaluate
from spendwatch.aws.store import ClaimLostError
from spendwatch.channels.base import Sender
from spendwatch.core.alerts import (
    RULE_SECTION,
    Alert,
    AlertState,
    EmailContent,
    Message,
    Observation,
    Reason,
    highest,
    severity_of,
)
from spendwatch.core.config import (
    ChannelConfig,
    EmailChannelConfig,
    OrganizationConfig,
    SlackChannelConfig,
    SpendwatchConfig,
)
from spendwatch.core.errors import DeliveryError, DeliveryUnknownError
from spendwatch.core.observability import logger
from spendwatch.core.snapshot import Snapshot

ALERT_STATE_RETENTION_DAYS = 400

SenderFactory = Callable[[str, ChannelConfig], Sender]


@dataclass
class Outcome:
    """What processing one snapshot did, for logs, metrics and tests."""

    sent: list[tuple[str, list[Alert]]] = field(default_factory=list)
    """per channel, the alerts of a message whose delivery was confirmed"""
    unconfirmed: list[tuple[str, list[Alert], DeliveryUnknownError]] = field(default_factory=list)
    """per channel, the alerts of a message whose delivery is unknown (recorded; re-sent once if still due)"""
    resent: list[str] = field(default_factory=list)
    """alert keys (with channel) re-sent because their last delivery was not confirmed"""
    unrecorded: list[str] = field(default_factory=list)
    """alert keys (with channel) sent but not recorded: their claims are held, the record fails"""
    skipped_claims: list[str] = field(default_factory=list)
    failures: list[DeliveryError] = field(default_factory=list)
    recorded: list[tuple[str, Alert]] = field(default_factory=list)
    """state changes recorded without a message (resolves with send_resolved off), per channel"""
    silenced: list[str] = field(default_factory=list)
    """alert keys (with channel) whose notification a silence held back"""
    superseded_by: datetime | None = None
    """set when a newer snapshot of the same org and month exists: this one was not evaluated"""


class DeliveryFailedError(Exception):
    """At least one channel failed; the record must be reported as failed so it is retried or dead-lettered."""

    def __init__(self, failures: list[DeliveryError]) -> None:
        self.failures = failures
        super().__init__("; ".join(str(f) for f in failures))


def policy_for(
    rule_id: str,
    org: OrganizationConfig | None = None,
    config: SpendwatchConfig | None = None,
    now: datetime | None = None,
) -> NotifyPolicy:
    """The rule's repeat interval and resolve setting for this org, and the end of a matching silence."""
    section = RULE_SECTION.get(rule_id)
    if org is None or section is None:
        return NotifyPolicy()  # budgets follow AWS Budgets: once per threshold per month, no resolves
    options = org.rules.options(section)
    silenced_until = None
    if config is not None and now is not None:
        ends = [s.until for s in config.silences if s.matches(org.id, section, now)]
        silenced_until = max(ends) if ends else None
    return NotifyPolicy(
        repeat_interval=options.repeat_interval or None,
        send_resolved=options.send_resolved,
        silenced_until=silenced_until,
    )


def superseding(snapshot: Snapshot, history: Sequence[Snapshot]) -> datetime | None:
    """The poll time of a newer snapshot of the same org and month in `history`, if any.

    A record that arrives after a newer snapshot was written (a backlog after an outage, a replayed
    batch) is not evaluated: the newer snapshot carries the current state, so alerts of a batch are
    grouped into the newest snapshot's one message and stale figures are never sent.
    """
    needed = set(snapshot.sources_ok)
    newer = [
        s.poll_time
        for s in history
        if s.org_id == snapshot.org_id
        and s.poll_time > snapshot.poll_time
        and s.period == snapshot.period
        and (s.month_to_date_usd is not None or snapshot.month_to_date_usd is None)
        # A newer poll that lost a source this one has (credits, limits) cannot speak for its alerts.
        and needed <= set(s.sources_ok)
    ]
    return max(newer) if newer else None


@dataclass(frozen=True)
class _Due:
    """A claimed alert waiting for its channel's message."""

    key: str
    alert: Alert
    resend: bool


def process_snapshot(
    snapshot: Snapshot,
    *,
    config: SpendwatchConfig,
    states: NotificationLog,
    sender_for: SenderFactory,
    now: Callable[[], datetime],
    history: Sequence[Snapshot] | None = None,
    lease_s: Callable[[], int] | None = None,
    resend_after_s: int = RESEND_AFTER_S,
    remaining_s: Callable[[], float] = lambda: 60.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """Evaluate, decide, claim, send one grouped message per channel, record.

    `history`: recent snapshots of the same org (`SnapshotStore.recent_snapshots(org_id,
    since=rules.history_since(snapshot))`); without it, rules that need earlier polls (failing-source
    streaks, a baseline across the month boundary) see only this snapshot, and superseded records are
    still evaluated. `lease_s`: how long a claim may be held, i.e. the invocation's remaining time plus
    a margin (the store's default otherwise). `resend_after_s`: how long an unconfirmed message waits
    for its one re-send (and a claim that could not be recorded is held).
    """
    outcome = Outcome()
    try:
        org = config.organization(snapshot.org_id)
    except KeyError:
        return outcome  # the org was removed from the config after this snapshot was taken
    earlier = list(history or ())
    outcome.superseded_by = superseding(snapshot, earlier)
    if outcome.superseded_by is not None:
        return outcome
    moment = now()
    observations = evaluate(snapshot, org, history=earlier, now=moment)
    if not observations:
        return outcome
    # Once per rule, not per observation (a snapshot has dozens of health.source ones).
    policies = {rule: policy_for(rule, org, config, moment) for rule in dict.fromkeys(o.rule_id for o in observations)}
    # Every channel's entries in one batch (it was one read per channel), before the first claim.
    known = _read_log(states, org.id, _channel_keys(org, config, observations, snapshot.period), {}, absent=True)
    for channel_name in org.channels:
        # Claimed alerts not yet recorded: released on any provable failure, so the stream retry can send
        # them at once instead of waiting for the claims to lapse.
        pending: list[_Due] = []
        unknown: DeliveryUnknownError | None = None
        try:
            channel = config.channels[channel_name]
            _claim_due(
                org,
                channel_name,
                channel_observations(channel, observations, snapshot.period),
                policies=channel_policies(channel, policies),
                routes=partial(routed, channel),
                states=states,
                moment=moment,
                outcome=outcome,
                pending=pending,
                lease_s=lease_s() if lease_s is not None else None,
                known=known,
            )
            if not pending:
                continue
            sender = sender_for(channel_name, channel)
            deliver: Callable[[Any], None] = sender.send  # an e-mail sender takes `EmailContent`
            try:
                deliver(render_for(channel, snapshot, [due.alert for due in pending], now=moment, org=org))
            except DeliveryUnknownError as exc:
                unknown = exc  # probably delivered: recorded below, never released for an immediate retry
        except ClaimBusyError as exc:
            _release(states, org.id, pending)
            outcome.failures.append(
                DeliveryError(
                    channel_name,
                    f"alert {exc.key} is being sent by another invocation; retrying this record",
                    retryable=True,
                    reason="claim_busy",
                )
            )
            continue
        except DeliveryError as exc:
            _release(states, org.id, pending)
            outcome.failures.append(exc)
            continue
        except BaseException:
            _release(states, org.id, pending)  # an unexpected error must not leave claims to lapse first
            raise
        _record_sent(
            states,
            org.id,
            channel_name,
            pending,
            unknown,
            moment=moment,
            outcome=outcome,
            resend_after_s=resend_after_s,
            remaining_s=remaining_s,
            sleep=sleep,
        )
    return outcome


def _record_sent(
    states: NotificationLog,
    org_id: str,
    channel_name: str,
    pending: list[_Due],
    unknown: DeliveryUnknownError | None,
    *,
    moment: datetime,
    outcome: Outcome,
    resend_after_s: int,
    remaining_s: Callable[[], float],
    sleep: Callable[[float], None],
) -> None:
    """Record every alert of a message that went out (or may have); never release one of its claims."""
    unrecorded = []
    for due in pending:
        recorded = record_after_send(
            states,
            org_id,
            due.key,
            level=due.alert.level,
            firing=due.alert.level is not None,
            now=moment,
            reason=due.alert.reason.value,
            # A re-send is final whatever its outcome: that is what bounds the duplicates at one.
            resend_after=resend_deadline(
                moment, unconfirmed=unknown is not None and not due.resend, resend_after_s=resend_after_s
            ),
            hold_s=resend_after_s,
            sleep=sleep,
            remaining_s=remaining_s,
        )
        if not recorded:
            unrecorded.append(due.key)
        if due.resend:
            outcome.resent.append(due.key)
    alerts = [due.alert for due in pending]
    if unknown is None:
        outcome.sent.append((channel_name, alerts))
    else:
        outcome.unconfirmed.append((channel_name, alerts, unknown))
    if unrecorded:
        outcome.unrecorded += unrecorded
        outcome.failures.append(
            DeliveryError(
                channel_name,
                f"sent, but {len(unrecorded)} alert(s) could not be recorded; their claims are held so no "
                "retry sends them again",
                retryable=True,
                reason="record_failed",
            )
        )


class ClaimBusyError(Exception):
    """Another invocation holds a live claim on this alert: this record must be retried, not skipped.

    Skipping would be a miss if that invocation dies, or if its record is later found superseded.
    (A claim *held* after a send that could not be recorded is different: the message went out, so it is
    skipped.)
    """

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(key)


def _claim_due(
    org: OrganizationConfig,
    channel_name: str,
    observations: list[Observation],
    *,
    policies: dict[str, NotifyPolicy],
    states: NotificationLog,
    moment: datetime,
    outcome: Outcome,
    pending: list[_Due],
    lease_s: int | None,
    routes: Callable[[Observation, AlertState | None], bool] = lambda obs, prior: True,
    known: Mapping[str, AlertState | None] | None = None,
) -> None:
    """Decide every alert on one channel; claim those with a change; record the silent ones at once.

    Appends the claimed alerts that must be sent, as one message, before they are recorded, to
    `pending` as it goes (so the caller can release them if a later step fails). A claim lost to a
    newer version is decided again on the fresh state; a claim held after an unrecorded send is
    skipped; a claim held by another invocation raises `ClaimBusyError`.
    """
    expires_at = int(moment.timestamp()) + ALERT_STATE_RETENTION_DAYS * 86400
    keyed: dict[str, Observation] = {log_key(obs, channel_name): obs for obs in observations}
    previous = _read_log(states, org.id, list(keyed), known or {})
    for key, obs in keyed.items():
        prior = previous.get(key)
        if not routes(obs, prior):
            continue  # this channel does not carry this rule or severity: no message and no state
        if prior is not None and prior.held and prior.claim_live(moment):
            outcome.skipped_claims.append(key)  # sent already, only its record is missing
            continue
        for attempt in range(2):
            decision = should_notify(prior, obs, policies[obs.rule_id], moment)
            if decision.action is Action.NONE or decision.reason is None:
                if decision.reason is Reason.SILENCED:
                    outcome.silenced.append(key)
                break
            try:
                states.claim(
                    org.id,
                    key,
                    expected_version=prior.version if prior else 0,
                    now=moment,
                    expires_at=expires_at,
                    lease_s=lease_s,
                )
            except ClaimLostError:
                prior = states.get_many(org.id, [key]).get(key)
                live = prior is not None and prior.claim_live(moment)
                if live and prior is not None and prior.held:
                    outcome.skipped_claims.append(key)  # sent already, only its record is missing
                    break
                if live or attempt == 1:
                    outcome.skipped_claims.append(key)
                    raise ClaimBusyError(key) from None
                continue  # the state moved on (another invocation recorded it): decide again on it
            alert = Alert(obs, decision.reason, decision.level)
            if decision.action is Action.RECORD:
                try:
                    _record(states, org.id, key, alert, moment)
                except BaseException:
                    _release(states, org.id, [_Due(key, alert, resend=False)])  # nothing was sent
                    raise
                outcome.recorded.append((channel_name, alert))
            else:
                pending.append(_Due(key, alert, decision.resend))
            break


def _read_log(
    states: NotificationLog,
    org_id: str,
    keys: list[str],
    known: Mapping[str, AlertState | None],
    *,
    absent: bool = False,
) -> dict[str, AlertState | None]:
    """The entries of `keys`: those in `known` as read there, the others read now (one batch); with
    `absent`, a key read and not found maps to None."""
    found: dict[str, AlertState | None] = {key: state for key in keys if (state := known.get(key)) is not None}
    unread = [key for key in keys if key not in known]
    if unread:
        read = states.get_many(org_id, unread)
        found.update({key: read.get(key) for key in unread} if absent else read)
    return found


def log_key(obs: Observation, channel_name: str) -> str:
    """An alert's notification-log key on one channel."""
    return f"{obs.key}#{channel_name}"


def channel_observations(channel: ChannelConfig, observations: list[Observation], period: str) -> list[Observation]:
    """What is decided on a channel: the snapshot's observations, and on PagerDuty last month's too."""
    if channel.type == "pagerduty":
        return [*observations, *last_month(observations, period)]
    return observations


def _channel_keys(
    org: OrganizationConfig, config: SpendwatchConfig, observations: list[Observation], period: str
) -> list[str]:
    keys: list[str] = []
    for channel_name in org.channels:
        channel = config.channels.get(channel_name)
        if channel is not None:
            keys += [log_key(obs, channel_name) for obs in channel_observations(channel, observations, period)]
    return keys


def channel_policies(channel: ChannelConfig, policies: dict[str, NotifyPolicy]) -> dict[str, NotifyPolicy]:
    """The rules' policies as this channel applies them: a channel's own `send_resolved` (PagerDuty's is on
    by default, so its incidents close themselves) replaces each rule's."""
    own = getattr(channel, "send_resolved", None)
    if own is None:
        return policies
    return {rule: replace(policy, send_resolved=own) for rule, policy in policies.items()}


def last_month(observations: Sequence[Observation], period: str) -> list[Observation]:
    """Last month's alerts of the monthly rules, as cleared: what lets PagerDuty close an incident opened
    last month (a new month's keys are new, so nothing else would ever resolve it).

    Only a key whose log entry is still firing on the channel leads to a message (a resolve); any other
    is decided as nothing. Other channels never get these: a month's end is not news there.
    """
    year, month = (int(part) for part in period.split("-"))
    previous = f"{year - 1}-12" if month == 1 else f"{year}-{month - 1:02d}"
    suffix = f"#{period}"
    return [
        replace(obs, key=obs.key.removesuffix(suffix) + f"#{previous}", level=None, hold_level=None)
        for obs in observations
        if obs.key.endswith(suffix)
    ]


def routed(channel: ChannelConfig, obs: Observation, prior: AlertState | None) -> bool:
    """Whether `channel` carries this alert: its rule is routed there and its severity is high enough.

    The severity is the higher of the current level's and the level last notified on this channel, so a
    channel that got an alert also gets its resolve (PagerDuty closes the incident it opened).
    """
    severity = severity_of(obs.rule_id, obs.level)
    if prior is not None and prior.firing:
        severity = highest(severity, severity_of(obs.rule_id, prior.notified_level))
    return channel.routes(RULE_SECTION.get(obs.rule_id), severity)


def render_for(
    channel: ChannelConfig, snapshot: Snapshot, alerts: list[Alert], *, now: datetime, org: OrganizationConfig
) -> Message | EmailContent:
    """The payload a channel reads: an e-mail (subject, text, HTML), or the message built for Slack, which
    carries the medium-neutral `Content` and the alerts every other channel renders from."""
    if isinstance(channel, EmailChannelConfig):
        return render_email(snapshot, alerts, now=now, org=org, subject_prefix=channel.subject_prefix)
    mention = channel.mention if isinstance(channel, SlackChannelConfig) else None
    return build_message(snapshot, alerts, mention=mention, now=now, org=org)


def _record(states: NotificationLog, org_id: str, key: str, alert: Alert, moment: datetime) -> None:
    states.mark_sent(
        org_id,
        key,
        level=alert.level,
        firing=alert.level is not None,
        now=moment,
        reason=alert.reason.value,
    )


def _release(states: NotificationLog, org_id: str, pending: list[_Due]) -> None:
    """Release every claim, even if one release fails (that claim then lapses with its lease)."""
    for due in pending:
        try:
            states.release(org_id, due.key)
        except Exception as exc:
            logger.warning("claim release failed", org_id=org_id, alert_key=due.key, error=type(exc).__name__)
