"""Operational notices about the monitor itself: a channel that stopped working, a poller that stopped.

They use the same notification log (`AlertStateStore`) and the same protocol as budget alerts (claim,
send, then record; release on a provable failure; an unknown outcome recorded as unconfirmed and re-sent
at most once; a send that cannot be recorded held, see `nflog`), so each is sent once per state change:
once when the problem starts and once when it clears, however many records, retries or scheduled runs
see it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from spendwatch.alerter.nflog import RESEND_AFTER_S, NotificationLog, record_after_send, resend_deadline
from spendwatch.alerter.render import HEADER_LIMIT, SECTION_LIMIT, escape, escape_plain
from spendwatch.aws.store import ClaimLostError
from spendwatch.channels.base import Sender
from spendwatch.channels.email import EmailPayload
from spendwatch.core.alerts import AlertState, Message
from spendwatch.core.config import ChannelConfig, OrganizationConfig, SpendwatchConfig
from spendwatch.core.errors import DeliveryError, DeliveryUnknownError
from spendwatch.core.observability import logger, metrics
from spendwatch.core.remedies import delivery_fix
from spendwatch.core.text import truncate, untrusted

NOTICE_RETENTION_DAYS = 400
SenderFactory = Callable[[str, ChannelConfig], Sender]


__all__ = ["NotificationLog"]  # re-exported: callers of the notices know the log by this name


def notice_message(
    title: str,
    lines: Sequence[str],
    *,
    context: str | None = None,
    mention: str | None = None,
    transient: bool = False,
    key: str | None = None,
    firing: bool = True,
) -> Message:
    """A short Slack message (and, through `email_from_message`, an e-mail); every value is escaped here.

    Callers put each name they interpolate through `render.untrusted`; the escaping here (render's, the
    same for every message) makes every line safe whatever it holds.
    """
    safe_title = escape(title)
    safe_lines = tuple(escape(line) for line in lines)
    body = "\n".join(safe_lines)
    prefix = f"{mention} " if mention else ""
    text = f"{prefix}{safe_title}\n{body}" + (f"\n{escape(context)}" if context else "")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": truncate(escape_plain(title), HEADER_LIMIT)}},
        # verbatim, as render's blocks: no automatic linking, so only the markup written here is live.
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": truncate(f"{prefix}{body}", SECTION_LIMIT), "verbatim": True},
        },
    ]
    if context:
        context_text = truncate(escape(context), SECTION_LIMIT)
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": context_text, "verbatim": True}]})
    return Message(
        title=safe_title,
        lines=safe_lines,
        text=text,
        blocks=tuple(blocks),
        raw_title=title,
        raw_lines=(*lines, *([context] if context else [])),
        transient=transient,
        notice_key=key,
        notice_firing=firing,
    )


def notify_on_change(
    states: NotificationLog,
    org_id: str,
    key: str,
    *,
    firing: bool,
    send: Callable[[], None],
    now: datetime,
    reason: str,
    prior: AlertState | None = None,
    known: bool = False,
    resend_after_s: int = RESEND_AFTER_S,
    sleep: Callable[[float], None] = time.sleep,
) -> bool:
    """Send once per change of `firing` for `key`; returns whether this call sent (or may have).

    Nothing is sent for "not firing" when the key never fired. `prior`/`known` let a caller that has
    already read the state skip the read. A send whose outcome is unknown counts as sent: it is recorded
    as unconfirmed, and the first call from `resend_after` on that still finds the same state sends it
    once more. Raises `DeliveryError` when the send provably failed (the claim is released) or when it
    went out but could not be recorded (`record_failed`; the claim is held).
    """
    if not known:
        prior = states.get_many(org_id, [key]).get(key)
    was_firing = prior.firing if prior is not None else False
    resend = firing == was_firing and prior is not None and prior.resend_due(now)
    if firing == was_firing and not resend:
        return False
    if prior is not None and prior.held and prior.claim_live(now):
        return False  # sent already; only its record is missing
    try:
        states.claim(
            org_id,
            key,
            expected_version=prior.version if prior is not None else 0,
            now=now,
            expires_at=int(now.timestamp()) + NOTICE_RETENTION_DAYS * 86400,
        )
    except ClaimLostError:
        return False  # another invocation is sending (or just sent) this very notice
    unknown: DeliveryUnknownError | None = None
    try:
        send()
    except DeliveryUnknownError as exc:
        unknown = exc
    except BaseException:
        states.release(org_id, key)
        raise
    recorded = record_after_send(
        states,
        org_id,
        key,
        level=None,
        firing=firing,
        now=now,
        reason=reason,
        resend_after=resend_deadline(
            now, unconfirmed=unknown is not None and not resend, resend_after_s=resend_after_s
        ),
        hold_s=resend_after_s,
        sleep=sleep,
    )
    if unknown is not None:
        log_unconfirmed(unknown, org_id=org_id, keys=[key], resend=resend)
    if not recorded:
        raise DeliveryError(
            unknown.channel if unknown is not None else "(notice)",
            f"notice {key} was sent but could not be recorded; its claim is held so no retry sends it again",
            retryable=True,
            reason="record_failed",
        )
    return True


def log_unconfirmed(error: DeliveryUnknownError, *, org_id: str, keys: Sequence[str], resend: bool = False) -> None:
    """Log a delivery whose outcome is unknown by name and count it in `DeliveriesUnconfirmed` (no record
    fails for it: the message was probably delivered)."""
    from aws_lambda_powertools.metrics import MetricUnit, single_metric  # noqa: PLC0415

    with single_metric(
        name="DeliveriesUnconfirmed",
        unit=MetricUnit.Count,
        value=1,
        namespace=metrics.namespace,
        default_dimensions={"service": str(metrics.service or "spendwatch")},
    ) as metric:
        metric.add_dimension(name="reason", value=_metric_reason(error.reason))
    logger.warning(
        "delivery unconfirmed",
        org_id=org_id,
        channel=error.channel,
        reason=error.reason,
        detail=error.detail,
        alert_keys=list(keys),
        next_step="recorded as final (this was the one re-send)"
        if resend
        else "re-sent once after the lease if still due",
    )


@dataclass(frozen=True)
class FallbackEvent:
    """What a `FallbackSender` did, for the caller's logs and metrics."""

    channel: str
    fallback: str
    event: str
    """`failure_notified`, `recovery_notified` or `fallback_failed`"""
    reason: str
    error: DeliveryError | None = None


class DeferredSender:
    """Builds its sender on the first send, so a channel that cannot even be built (its SSM credential is
    missing: `not_configured`) fails inside `FallbackSender.send`, where the fallback channel hears of it."""

    def __init__(self, name: str, kind: str, build: Callable[[], Sender]) -> None:
        self.name = name
        self.kind = kind
        self._build = build
        self._sender: Sender | None = None

    def send(self, message: Message | EmailPayload) -> None:
        if self._sender is None:
            self._sender = self._build()
        self._sender.send(message)  # type: ignore[arg-type] # an e-mail payload only ever reaches an EmailSender


class FallbackSender:
    """Wraps an organization's main channel: a permanent failure is reported through its fallback channel.

    The main channel's error is re-raised unchanged (the record still fails, is retried and finally
    dead-lettered, so nothing is lost); the notice "channel X failed permanently: <reason>" goes once per
    failure state, and "channel X works again" once when a later send succeeds.
    """

    def __init__(
        self,
        main: Sender,
        *,
        fallback_name: str,
        fallback: Callable[[], Sender],
        org_id: str,
        org_name: str,
        states: NotificationLog,
        now: Callable[[], datetime],
        mention: str | None = None,
        on_event: Callable[[FallbackEvent], None] = lambda event: None,
    ) -> None:
        self.name = main.name
        self.kind = main.kind
        self._main = main
        self._fallback_name = fallback_name
        self._fallback = fallback
        self._org_id = org_id
        self._org_name = org_name
        self._states = states
        self._now = now
        self._mention = mention
        self._on_event = on_event

    @property
    def key(self) -> str:
        return f"health.delivery#{self.name}#{self._fallback_name}"

    def send(self, message: Message | EmailPayload) -> None:
        try:
            self._main.send(message)  # type: ignore[arg-type] # an e-mail payload only ever reaches an EmailSender
        except DeliveryUnknownError:
            raise  # probably delivered: neither a failure to report nor a proven recovery
        except DeliveryError as exc:
            if not exc.retryable:
                self._notify(firing=True, reason=exc.reason)
            raise
        self._notify(firing=False, reason="recovered")

    def _notify(self, *, firing: bool, reason: str) -> None:
        key = self.key
        try:
            prior = self._states.get_many(self._org_id, [key]).get(key)
        except Exception:  # a notice must never hide the delivery outcome it is about
            return
        if not firing and (prior is None or (not prior.firing and not prior.resend_due(self._now()))):
            return  # the common case: the channel works and never failed
        org_name = untrusted(self._org_name)
        if firing:
            title = f"spendwatch: channel {self.name} failed for {org_name}"
            lines = [
                f"Channel {self.name} failed permanently: {untrusted(reason)}.",
                f"Alerts for {org_name} are not reaching it until it is fixed.",
            ]
            fix = delivery_fix(reason)
            context = (
                f"Fix: {fix}." if fix else "Check the channel's credential (SSM parameter) and destination."
            ) + " Then watch for the recovery notice."
        else:
            title = f"spendwatch: channel {self.name} works again for {org_name}"
            lines = [f"Channel {self.name} delivered an alert for {org_name} again."]
            context = None
        message = notice_message(
            title, lines, context=context, mention=self._mention, key=f"{self._org_id}:{key}", firing=firing
        )
        try:
            sent = notify_on_change(
                self._states,
                self._org_id,
                key,
                firing=firing,
                send=lambda: self._fallback().send(message),
                now=self._now(),
                reason=_metric_reason(reason),
                prior=prior,
                known=True,
            )
        except DeliveryError as error:
            self._on_event(FallbackEvent(self.name, self._fallback_name, "fallback_failed", error.reason, error))
            return
        except Exception as exc:  # e.g. the state table; the main outcome must stand
            self._on_event(FallbackEvent(self.name, self._fallback_name, "fallback_failed", type(exc).__name__))
            return
        if sent:
            event = "failure_notified" if firing else "recovery_notified"
            self._on_event(FallbackEvent(self.name, self._fallback_name, event, reason))


def record_delivery_failure(error: DeliveryError, *, org_id: str, role: str = "main") -> None:
    """Log the failure by name and count it in `DeliveryFailures`.

    The metric's only extra dimension is `reason`, drawn from a bounded set (`senders.KNOWN_REASONS`,
    else `other`): never the organization, channel, project or line item, which would multiply its cost.
    """
    from aws_lambda_powertools.metrics import MetricUnit, single_metric  # noqa: PLC0415

    with single_metric(
        name="DeliveryFailures",
        unit=MetricUnit.Count,
        value=1,
        namespace=metrics.namespace,
        default_dimensions={"service": str(metrics.service or "spendwatch")},
    ) as metric:
        metric.add_dimension(name="reason", value=_metric_reason(error.reason))
    log = logger.error if not error.retryable else logger.warning
    log(
        "delivery failed",
        org_id=org_id,
        channel=error.channel,
        reason=error.reason,
        retryable=error.retryable,
        detail=error.detail,
        role=role,
        fix=error.fix,
    )


def log_fallback_event(event: FallbackEvent, *, org_id: str) -> None:
    if event.event == "fallback_failed":
        logger.error(
            "fallback channel failed",
            org_id=org_id,
            channel=event.channel,
            fallback=event.fallback,
            reason=event.reason,
        )
        if event.error is not None:
            record_delivery_failure(event.error, org_id=org_id, role="fallback")
        return
    logger.warning(event.event.replace("_", " "), org_id=org_id, channel=event.channel, fallback=event.fallback)


def with_fallback(
    build: SenderFactory,
    *,
    config: SpendwatchConfig,
    org: OrganizationConfig,
    states: NotificationLog,
    now: Callable[[], datetime],
) -> SenderFactory:
    """`build`, with each of the org's main channels reporting its permanent failures to the fallback channel."""
    fallback_name = org.fallback_channel
    if not fallback_name or fallback_name not in config.channels:
        return build

    def wrapped(name: str, channel: ChannelConfig) -> Sender:
        if name == fallback_name:
            return build(name, channel)
        fallback_config = config.channels[fallback_name]
        return FallbackSender(
            DeferredSender(name, channel.type, lambda: build(name, channel)),
            fallback_name=fallback_name,
            fallback=lambda: build(fallback_name, fallback_config),
            org_id=org.id,
            org_name=org.name,
            states=states,
            now=now,
            mention=getattr(fallback_config, "mention", None),
            on_event=lambda event: log_fallback_event(event, org_id=org.id),
        )

    return wrapped


def _metric_reason(reason: str) -> str:
    # Imported on a failure only: the reason set spans every channel module, which a healthy alerter
    # (Slack only, say) never loads.
    from spendwatch.channels.reasons import metric_reason  # noqa: PLC0415

    return metric_reason(reason)
