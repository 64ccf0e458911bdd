"""The channel factory of the deployed functions that send (alerter, watchdog) and of `spendwatch test-alert`.

Kept apart from spendwatch.aws.runtime, which every function imports, so that the poller, which sends
nothing, never loads the senders, the renderer or the Slack SDK (which it does not carry).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Annotated

from spendwatch.aws.runtime import _Env
from spendwatch.aws.secrets import SecretSource
from spendwatch.channels.base import DEFAULT_CONNECT_TIMEOUT_S, DEFAULT_TIMEOUT_S, Pacer, Sender
from spendwatch.channels.email import SES_CONNECT_TIMEOUT_S, SES_READ_TIMEOUT_S, EmailSender
from spendwatch.channels.slack import (
    SLACK_CONNECT_TIMEOUT_S,
    SLACK_TIMEOUT_S,
    SlackCredentials,
    SlackSender,
    SlackTransport,
)
from spendwatch.core.config import (
    ChannelConfig,
    EmailChannelConfig,
    PagerDutyChannelConfig,
    SlackChannelConfig,
    SnsChannelConfig,
    TeamsChannelConfig,
    WebhookChannelConfig,
)
from spendwatch.core.errors import DeliveryError
from spendwatch.core.model import Field

_Seconds = Annotated[float, Field(gt=0, le=60)]


class DeliveryTimeouts(_Env):
    """Client timeouts of the senders; the defaults suit production, fault tests set a second or less."""

    spendwatch_slack_timeout_s: _Seconds = SLACK_TIMEOUT_S
    spendwatch_slack_connect_timeout_s: _Seconds = SLACK_CONNECT_TIMEOUT_S
    spendwatch_ses_connect_timeout_s: _Seconds = SES_CONNECT_TIMEOUT_S
    spendwatch_ses_read_timeout_s: _Seconds = SES_READ_TIMEOUT_S
    spendwatch_http_timeout_s: _Seconds = DEFAULT_TIMEOUT_S
    """webhook, Teams and PagerDuty: the whole request"""
    spendwatch_http_connect_timeout_s: _Seconds = DEFAULT_CONNECT_TIMEOUT_S
    spendwatch_sns_connect_timeout_s: _Seconds = SES_CONNECT_TIMEOUT_S
    spendwatch_sns_read_timeout_s: _Seconds = SES_READ_TIMEOUT_S


SenderBuilder = Callable[[str, ChannelConfig], Sender]


def sender_factory(
    secrets: SecretSource,
    *,
    api_base_url: str | None = None,
    remaining_s: Callable[[], float] = lambda: 30.0,
    environ: Mapping[str, str] | None = None,
    pacer: Pacer | None = None,
    ses_client: Callable[[], object] | None = None,
    slack_transport: SlackTransport | None = None,
    sns_client: Callable[[], object] | None = None,
) -> SenderBuilder:
    """Builds the sender of a configured channel: Slack (webhook or bot token) or e-mail (SES v2).

    Secrets are read when a message is sent, not here, and re-read (`force_fetch`) once after Slack
    refuses the credential, so a rotated token or webhook URL is picked up without a redeploy. Client
    timeouts come from `SPENDWATCH_SLACK_TIMEOUT_S`, `SPENDWATCH_SLACK_CONNECT_TIMEOUT_S`,
    `SPENDWATCH_SES_CONNECT_TIMEOUT_S` and `SPENDWATCH_SES_READ_TIMEOUT_S` when set (`DeliveryTimeouts`).
    `slack_transport` replaces the plain post (the digest uploads its chart through it).
    """
    env = os.environ if environ is None else environ
    timeouts = DeliveryTimeouts.from_environ(env)

    def build(name: str, channel: ChannelConfig) -> Sender:
        if isinstance(channel, SlackChannelConfig):

            def credentials(force: bool) -> SlackCredentials:
                webhook = secrets.get(channel.webhook_url, force_fetch=force)
                token = None if webhook else secrets.get(channel.bot_token, force_fetch=force)
                return SlackCredentials(webhook_url=webhook, bot_token=token)

            return SlackSender(
                name,
                credentials,
                channel=env.get("SLACK_CHANNEL") or channel.channel,
                api_base_url=api_base_url,
                remaining_s=remaining_s,
                pacer=pacer,
                timeout_s=timeouts.spendwatch_slack_timeout_s,
                connect_timeout_s=timeouts.spendwatch_slack_connect_timeout_s,
                transport=slack_transport,
            )
        if isinstance(channel, EmailChannelConfig):
            extra = {"client": ses_client} if ses_client is not None else {}
            return EmailSender(
                name,
                sender=channel.sender,
                recipients=channel.recipients,
                subject_prefix=channel.subject_prefix,
                configuration_set=channel.configuration_set,
                remaining_s=remaining_s,
                connect_timeout_s=timeouts.spendwatch_ses_connect_timeout_s,
                read_timeout_s=timeouts.spendwatch_ses_read_timeout_s,
                **extra,  # type: ignore[arg-type]
            )
        http = {
            "remaining_s": remaining_s,
            "pacer": pacer,
            "timeout_s": timeouts.spendwatch_http_timeout_s,
            "connect_timeout_s": timeouts.spendwatch_http_connect_timeout_s,
        }
        if isinstance(channel, WebhookChannelConfig):
            from spendwatch.channels.webhook import WebhookSender  # noqa: PLC0415

            ref = channel.signing_secret
            return WebhookSender(
                name,
                url=channel.url,
                signing_secret=lambda force: secrets.get(ref, force_fetch=force),
                headers=channel.headers,
                **http,  # type: ignore[arg-type]
            )
        # The other channel types are imported when one is configured: an alerter that only posts to Slack
        # does not load them.
        if isinstance(channel, SnsChannelConfig):
            from spendwatch.channels.sns import SnsSender  # noqa: PLC0415

            return SnsSender(
                name,
                topic_arn=channel.topic_arn,
                remaining_s=remaining_s,
                connect_timeout_s=timeouts.spendwatch_sns_connect_timeout_s,
                read_timeout_s=timeouts.spendwatch_sns_read_timeout_s,
                **({"client": sns_client} if sns_client is not None else {}),  # type: ignore[arg-type]
            )
        if isinstance(channel, TeamsChannelConfig):
            from spendwatch.channels.teams import TeamsSender  # noqa: PLC0415

            url_ref = channel.webhook_url
            return TeamsSender(
                name,
                webhook_url=lambda force: secrets.get(url_ref, force_fetch=force),
                **http,  # type: ignore[arg-type]
            )
        if isinstance(channel, PagerDutyChannelConfig):
            from spendwatch.channels.pagerduty import PagerDutySender  # noqa: PLC0415

            key_ref = channel.routing_key
            return PagerDutySender(
                name,
                routing_key=lambda force: secrets.get(key_ref, force_fetch=force),
                events_url=channel.events_url,
                min_severity=channel.min_severity,
                **{**http, "pacer": None},  # type: ignore[arg-type] # its own pacer: 2 events a second per key
            )
        raise DeliveryError(
            name,
            f"{getattr(channel, 'type', '?')} channels are not supported",
            retryable=False,
            reason="unsupported_channel",
        )

    return build
