"""What to do about a failure: one line per known delivery or key problem, shown wherever it is reported.

A delivery error names its receiver's reason (`not_in_channel`, `no_service`, `MessageRejected`, …);
this module turns the reason into the fix the user has to make, in the receiver's own terms, so the
alerter's logs, `spendwatch test-alert`, the fallback channel's notice and `spendwatch verify` all say
the same thing. Pure data, no imports: it is loaded with `errors`.
"""

from __future__ import annotations

_NEW_WEBHOOK = (
    "create a new incoming webhook in Slack (your app's Incoming Webhooks page, Add New Webhook) and store its "
    "URL in the webhook's SSM parameter (aws ssm put-parameter --overwrite --type SecureString)"
)
_REINSTALL_APP = (
    "reinstall the Slack app to the workspace and store its new bot token (xoxb-…) in the token's SSM parameter "
    "(aws ssm put-parameter --overwrite --type SecureString)"
)
_VERIFY_SES = (
    "verify the sender in SES in the stack's region (aws sesv2 create-email-identity --email-identity "
    "<domain or address>) and, while the account is in the SES sandbox, every recipient too"
)
_NO_CONFIGURATION_SET = "the channel's configuration_set does not exist in this region: create it or remove it"

DELIVERY_FIXES: dict[str, str] = {
    # Slack: the destination
    "not_in_channel": (
        "invite the Slack app to the channel (type /invite @<app name> in it), or name a channel it is in"
    ),
    "channel_not_found": (
        "check `channel:` in the config: no such channel, or the app cannot see it (invite the app to a private "
        "channel; use the channel's ID, C0…, for the digest's chart)"
    ),
    "is_archived": "the channel is archived: unarchive it or set `channel:` to another channel",
    "channel_is_archived": "the channel is archived: unarchive it or set `channel:` to another channel",
    "restricted_action": "the workspace does not let the app post there: ask a Slack admin, or use another channel",
    "missing_scope": (
        "add the chat:write scope (and files:write for the digest's chart) under OAuth & Permissions, reinstall "
        "the app and store its new bot token"
    ),
    # Slack: the credential
    "no_service": f"the webhook was deleted or disabled: {_NEW_WEBHOOK}",
    "invalid_token": f"the webhook was revoked: {_NEW_WEBHOOK}",
    "http_404": f"Slack does not know this webhook: {_NEW_WEBHOOK}",
    "http_410": f"the webhook is gone: {_NEW_WEBHOOK}",
    "invalid_url": (
        "the stored webhook URL is not one Slack issues (https://hooks.slack.com/services/T…/B…/…): store the URL "
        "exactly as Slack shows it, without spaces or line breaks"
    ),
    "invalid_auth": f"Slack refused the bot token: {_REINSTALL_APP}",
    "not_authed": f"no bot token reached Slack: {_REINSTALL_APP}",
    "token_revoked": f"the bot token was revoked: {_REINSTALL_APP}",
    "token_expired": f"the bot token expired: {_REINSTALL_APP}",
    "account_inactive": f"the token's user or app was deactivated: {_REINSTALL_APP}",
    "not_configured": (
        "store a Slack webhook URL, or a bot token and set `channel:`, in SSM (docs/deploy.md, section 3)"
    ),
    # SES
    "MessageRejected": f"SES refused the mail: {_VERIFY_SES}",
    "MailFromDomainNotVerifiedException": "verify the custom MAIL FROM domain of the sender's identity in SES",
    "MailFromDomainNotVerified": "verify the custom MAIL FROM domain of the sender's identity in SES",
    "AccessDeniedException": (
        "the function may not send as this sender: deploy with SesSenderIdentity set to the sender's domain or "
        "address (and SesConfigurationSet when the channel names a configuration set)"
    ),
    "AccessDenied": (
        "the function may not send as this sender: deploy with SesSenderIdentity set to the sender's domain or "
        "address (and SesConfigurationSet when the channel names a configuration set)"
    ),
    "NotFoundException": _NO_CONFIGURATION_SET,
    "ConfigurationSetDoesNotExist": _NO_CONFIGURATION_SET,
    "SendingPausedException": "SES sending is paused for this account: see the SES console's reputation page",
    "AccountSendingPausedException": "SES sending is paused for this account: see the SES console's reputation page",
    "AccountSuspendedException": "the SES account is suspended: open a case with AWS support",
}
"""Delivery failure reason (`DeliveryError.reason`) -> the fix, phrased for the person who must make it."""


def delivery_fix(reason: str) -> str | None:
    """The fix for a delivery failure's reason, or None when retrying (or waiting) is all there is to do."""
    return DELIVERY_FIXES.get(reason)
