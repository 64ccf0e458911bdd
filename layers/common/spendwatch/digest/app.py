"""The digest function's work for one hourly run: send each organization's due digests, once per period.

For each organization and each `digests:` entry the due period is computed (`digest.due_period`); its
notification-log entries (one per channel, `digest.<day|week>#<send day>#<channel>` in AlertStateTable)
are read in one BatchGetItem. Only when one is not yet recorded are the snapshots read, the figures
built and the chart drawn; each channel is then sent with the notification log's protocol
(`notices.notify_on_change`: claim with a conditional write, send, record), so a retried or concurrent run
sends nothing twice. A failed channel releases its claim and is tried again by the next run (the
digest stays due until the next period's send moment), and the run raises so the errors alarm fires.

Like the watchdog, the run's moment is the scheduled event's `time` (which digest is due); claims and
records use the wall clock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from spendwatch.alerter.notices import (
    NotificationLog,
    SenderFactory,
    notice_message,
    notify_on_change,
    record_delivery_failure,
    with_fallback,
)
from spendwatch.aws.runtime import AlerterEnv, SsmConfigSource, utc_now
from spendwatch.core.config import ChannelConfig, EmailChannelConfig, OrganizationConfig, SpendwatchConfig
from spendwatch.core.errors import DeliveryError
from spendwatch.core.observability import logger
from spendwatch.core.snapshot import isoformat_utc
from spendwatch.digest.schedule import DuePeriod, digest_channels, due_period, log_key

if TYPE_CHECKING:
    # Building and rendering a digest (the figures, the chart, the history reader) is imported by a run
    # that has one due, not at every cold start: most hourly runs find nothing due.
    from spendwatch.digest.compose import Digest
    from spendwatch.digest.render import DigestContent
    from spendwatch.views.chart import Layout
    from spendwatch.views.history import SnapshotReader

SAFETY_MARGIN_S = 3.0


class DigestEnv(AlerterEnv):
    """The digest function reads the same tables, config and Slack settings as the alerter."""


class DigestLog(NotificationLog, Protocol):
    """The notification log plus the read of what was recorded in a period (alerts sent)."""

    def notified_between(self, org_id: str, start: datetime, end: datetime) -> list[Any]: ...


@dataclass
class DigestResult:
    org_id: str
    key: str
    channel: str
    status: str
    """`sent`, `already_sent`, `busy` (another run holds it) or `failed`"""
    error: DeliveryError | None = None

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {"key": self.key, "channel": self.channel, "status": self.status}
        if self.error is not None:
            result["error"] = f"{self.error.reason}: {self.error.detail}"
        return result


def _render_png(layout: Layout) -> bytes:
    from spendwatch.views.chart_png import render_png  # noqa: PLC0415 - Pillow is loaded for the first picture only

    return render_png(layout)


SendersFor = Callable[[Callable[[], float], Mapping[str, bytes]], SenderFactory]
"""(time left in seconds, inline e-mail images) -> the channel sender factory"""


@dataclass
class DigestApp:
    config: Callable[[], SpendwatchConfig]
    snapshots: SnapshotReader
    states: DigestLog
    senders_for: SendersFor
    clock: Callable[[], datetime] = utc_now
    draw: Callable[[Layout], bytes] = _render_png

    @classmethod
    def from_environment(cls) -> DigestApp:
        from spendwatch.aws.secrets import SsmSecrets  # noqa: PLC0415
        from spendwatch.aws.store import AlertStateStore, SnapshotStore  # noqa: PLC0415
        from spendwatch.channels.base import Pacer  # noqa: PLC0415
        from spendwatch.channels.email import default_ses_client  # noqa: PLC0415
        from spendwatch.channels.factory import sender_factory  # noqa: PLC0415
        from spendwatch.digest.delivery import DigestSlackTransport, InlineImageSes  # noqa: PLC0415

        env = DigestEnv.from_environ()
        secrets = SsmSecrets()
        pacer = Pacer()
        transport = DigestSlackTransport(env.slack_api_base_url)

        def senders_for(remaining: Callable[[], float], images: Mapping[str, bytes]) -> SenderFactory:
            return sender_factory(
                secrets,
                api_base_url=env.slack_api_base_url,
                remaining_s=remaining,
                pacer=pacer,
                ses_client=lambda: InlineImageSes(default_ses_client, images),
                slack_transport=transport,
            )

        return cls(
            config=SsmConfigSource(env.spendwatch_config_parameter).get,
            snapshots=SnapshotStore(env.snapshots_table),
            states=AlertStateStore(env.alert_state_table),
            senders_for=senders_for,
        )

    def run(self, now: datetime, remaining_ms: Callable[[], int] | None = None) -> list[DigestResult]:
        def remaining_s() -> float:
            return (remaining_ms() / 1000 if remaining_ms else 60.0) - SAFETY_MARGIN_S

        config = self.config()
        results: list[DigestResult] = []
        for org in config.organizations:
            try:
                results += self.run_org(org, config, now, remaining_s)
            except Exception as exc:
                logger.exception("digest failed", org_id=org.id)
                error = DeliveryError(
                    "(digest)", f"digest failed: {type(exc).__name__}", retryable=True, reason="error"
                )
                results.append(DigestResult(org.id, "(all)", "(all)", "failed", error))
        return results

    def run_org(
        self, org: OrganizationConfig, config: SpendwatchConfig, now: datetime, remaining_s: Callable[[], float]
    ) -> list[DigestResult]:
        due = [(entry, due_period(entry, now)) for entry in org.digests]
        # A digest is a summary, not an incident: it never pages (PagerDuty channels carry alerts only).
        wanted = [
            (d, channel)
            for entry, d in due
            for channel in digest_channels(entry, org)
            if config.channels[channel].type != "pagerduty"
        ]
        if not wanted:
            return []
        states = self.states.get_many(org.id, [log_key(d, channel) for d, channel in wanted])
        results: list[DigestResult] = []
        pending: dict[str, tuple[DuePeriod, list[str]]] = {}
        for d, channel in wanted:
            key = log_key(d, channel)
            prior = states.get(key)
            if prior is not None and prior.firing and not prior.resend_due(self.clock()):  # unconfirmed: one re-send
                results.append(DigestResult(org.id, key, channel, "already_sent"))
            else:
                pending.setdefault(d.key, (d, []))[1].append(channel)
        if not pending:
            return results
        from spendwatch.digest.compose import build_digest  # noqa: PLC0415 - only a due digest needs it
        from spendwatch.views.history import TableHistory  # noqa: PLC0415

        history = TableHistory(self.snapshots, org.id)
        for d, channels in pending.values():
            digest = build_digest(org, d, history, now=now, alerts_sent=self._alerts_sent(org.id, d))
            png = self._picture(digest)
            for channel in channels:
                results.append(
                    self._deliver(
                        org,
                        config,
                        digest,
                        png=png,
                        due=d,
                        channel=channel,
                        prior=states.get(log_key(d, channel)),
                        remaining_s=remaining_s,
                    )
                )
        logger.info("digest history read", org_id=org.id, queries=history.reads)
        return results

    def _alerts_sent(self, org_id: str, due: DuePeriod) -> int | None:
        from spendwatch.views.figures import counts_as_alert  # noqa: PLC0415 - only a due digest needs it

        try:
            entries = self.states.notified_between(org_id, due.period.start, due.period.end)
        except Exception as exc:  # the digest still goes out; the count is then "not read"
            logger.warning("alert count unreadable", org_id=org_id, error=type(exc).__name__)
            return None
        return sum(1 for entry in entries if counts_as_alert(entry.key))

    def _picture(self, digest: Digest) -> bytes | None:
        if not digest.has_data:
            return None
        from spendwatch.views.chart import layout_daily  # noqa: PLC0415 - only a due digest needs it

        try:
            return self.draw(layout_daily(digest.chart))
        except Exception as exc:  # the digest without its picture beats no digest
            logger.warning("digest chart not drawn", org_id=digest.org_id, error=type(exc).__name__)
            return None

    def _deliver(
        self,
        org: OrganizationConfig,
        config: SpendwatchConfig,
        digest: Digest,
        *,
        png: bytes | None,
        due: DuePeriod,
        channel: str,
        prior: Any,
        remaining_s: Callable[[], float],
    ) -> DigestResult:
        key = log_key(due, channel)
        if remaining_s() <= 0:
            error = DeliveryError(channel, "no time left in this run", retryable=True, reason="out_of_time")
            return DigestResult(org.id, key, channel, "failed", error)
        from spendwatch.digest.render import CHART_CID, chart_filename, digest_content  # noqa: PLC0415

        content = digest_content(digest)
        channel_config = config.channels[channel]
        payload = digest_payload(channel_config, content, png, filename=chart_filename(digest))
        images = {CHART_CID: png} if png is not None and isinstance(channel_config, EmailChannelConfig) else {}
        build = with_fallback(
            self.senders_for(remaining_s, images), config=config, org=org, states=self.states, now=self.clock
        )
        try:
            sent = notify_on_change(
                self.states,
                org.id,
                key,
                firing=True,
                send=lambda: build(channel, channel_config).send(payload),
                now=self.clock(),
                reason="digest",
                prior=prior,
                known=True,
            )
        except DeliveryError as exc:
            record_delivery_failure(exc, org_id=org.id, role="digest")
            return DigestResult(org.id, key, channel, "failed", exc)
        if not sent:
            return DigestResult(org.id, key, channel, "busy")
        logger.info(
            "digest sent",
            org_id=org.id,
            channel=channel,
            digest=due.key,
            period=digest.period.label,
            picture=png is not None,
            newest_snapshot=isoformat_utc(digest.newest.poll_time) if digest.newest is not None else None,
        )
        return DigestResult(org.id, key, channel, "sent")


def digest_payload(channel: ChannelConfig, content: DigestContent, png: bytes | None, *, filename: str) -> Any:
    """What a channel gets of a digest: an e-mail with the chart inline, a Slack message with the chart
    uploaded, or for every other channel the digest's raw lines, which that channel escapes for its format."""
    from spendwatch.digest.render import email_content, plain_text, slack_message  # noqa: PLC0415

    if isinstance(channel, EmailChannelConfig):
        return email_content(content, picture=png is not None)
    if channel.type == "slack":
        return slack_message(content, png, filename=filename, mention=getattr(channel, "mention", None))
    lines = [line for line in plain_text(content, bullet="- ").splitlines()[1:] if line.strip()]
    return notice_message(content.title, lines)
