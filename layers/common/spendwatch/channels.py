"""The channel factory of the deployed functions that send (alerter, watchdog) and of `spendwatch test-alert`.

Kept apart from spendwatch.runtime, which every function imports, so that the poller, which sends
nothing, never loads the senders, the renderer or the Slack SDK (which it does not carry).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from spendwatch.config import ChannelConfig, EmailChannelConfig, SlackChannelConfig
from spendwatch.errors import DeliveryError
from spendwatch.secrets import SecretSource
from spendwatch.senders import EmailSender, Pacer, Sender, SlackCredentials, SlackSender

SenderBuilder = Callable[[str, ChannelConfig], Sender]


def sender_factory(
    secrets: SecretSource,
    *,
    api_base_url: str | None = None,
    remaining_s: Callable[[], float] = lambda: 30.0,
    environ: Mapping[str, str] | None = None,
    pacer: Pacer | None = None,
    ses_client: Callable[[], object] | None = None,
) -> SenderBuilder:
    """Builds the sender of a configured channel: Slack (webhook or bot token) or e-mail (SES v2).

    Secrets are read when a message is sent, not here, and re-read (`force_fetch`) once after Slack
    refuses the credential, so a rotated token or webhook URL is picked up without a redeploy.
    """
    env = os.environ if environ is None else environ

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
                **extra,  # type: ignore[arg-type]
            )
        raise DeliveryError(
            name,
            f"{getattr(channel, 'type', '?')} channels are not supported",
            retryable=False,
            reason="unsupported_channel",
        )

    return build
