"""AWS access for the command line (`config push`, `verify`): clients for the user's own credentials, and
every way a call can fail said in one line with what to do about it.

The deployed functions never import this module. Endpoints follow the AWS SDK's own settings, so
`AWS_ENDPOINT_URL` (and `AWS_ENDPOINT_URL_<SERVICE>`, e.g. `AWS_ENDPOINT_URL_LAMBDA`) point a command at
local stand-ins the way the tests do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from spendwatch.core.errors import SpendwatchError

if TYPE_CHECKING:
    import boto3

PERMISSIONS_DOC = "docs/deploy.md, section 'Your own AWS permissions'"
_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthorizationError"}
_BAD_CREDENTIALS = {
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
}
_EXPIRED = {"ExpiredToken", "ExpiredTokenException", "RequestExpired"}


class AwsCallError(SpendwatchError):
    """An AWS call of a command failed; the message is one line: what happened and what to do."""


@dataclass(frozen=True)
class Aws:
    """The user's AWS session for one command (`--region`, `--profile`), and clients from it."""

    session: boto3.Session

    @classmethod
    def connect(cls, *, region: str | None = None, profile: str | None = None) -> Aws:
        import boto3  # noqa: PLC0415
        from botocore.exceptions import BotoCoreError  # noqa: PLC0415

        # botocore reads AWS_DEFAULT_REGION only; AWS_REGION is what the other SDKs and Lambda set.
        region = region or os.environ.get("AWS_REGION") or None
        try:
            session = boto3.Session(region_name=region, profile_name=profile)
        except BotoCoreError as exc:
            raise AwsCallError(describe(exc, action="read your AWS configuration")) from None
        if session.region_name is None:
            raise AwsCallError(describe_no_region())
        return cls(session)

    @property
    def region(self) -> str:
        return str(self.session.region_name)

    def client(self, service: str, *, read_timeout_s: float = 60, attempts: int = 3) -> Any:
        """A client that fails within seconds (a person is waiting), retrying throttling a little. A Lambda
        invoke gets `attempts=1` and the function's timeout: a retried invoke would run the function again."""
        from botocore.config import Config  # noqa: PLC0415

        config = Config(
            connect_timeout=5,
            read_timeout=read_timeout_s,
            retries={"mode": "standard", "total_max_attempts": attempts},
        )
        return self.session.client(service, config=config)  # type: ignore[call-overload]


def describe_no_region() -> str:
    return (
        "no AWS region: pass --region, set AWS_REGION (or AWS_DEFAULT_REGION), or give your AWS profile a region "
        "(aws configure)"
    )


def describe(exc: Exception, *, action: str, permission: str | None = None, resource: str | None = None) -> str:
    """One line for a failed AWS call: what happened while doing `action`, and the fix.

    `permission`/`resource` name the IAM action and resource the caller needs, for an access-denied answer.
    """
    from botocore import exceptions as bce  # noqa: PLC0415

    if isinstance(exc, bce.NoRegionError):
        return describe_no_region()
    if isinstance(exc, bce.ClientError):
        return f"cannot {action}: {_client_error(exc, permission, resource)}"
    kinds: list[tuple[type[Exception] | tuple[type[Exception], ...], str]] = [
        (bce.ProfileNotFound, f"{exc}: check --profile or AWS_PROFILE against ~/.aws/config"),
        (
            (bce.NoCredentialsError, bce.PartialCredentialsError),
            "no AWS credentials found: run `aws configure` (or `aws sso login`), set AWS_PROFILE, or pass --profile",
        ),
        (
            (bce.SSOError, bce.TokenRetrievalError),
            "your AWS SSO session has expired or is missing: run `aws sso login`",
        ),
        (
            (bce.EndpointConnectionError, bce.ConnectTimeoutError, bce.ConnectionClosedError),
            f"no connection to {getattr(exc, 'kwargs', {}).get('endpoint_url') or 'AWS'}: check your network, the "
            "region, and any AWS_ENDPOINT_URL setting",
        ),
        (bce.ReadTimeoutError, "AWS did not answer in time: try again"),
        (bce.BotoCoreError, str(exc)),
    ]
    what = next((text for kind, text in kinds if isinstance(exc, kind)), f"{type(exc).__name__}: {exc}")
    return f"cannot {action}: {what}"


def _client_error(exc: Exception, permission: str | None, resource: str | None) -> str:
    error = getattr(exc, "response", {}).get("Error", {})
    code = str(error.get("Code", "error"))
    message = str(error.get("Message", "")).strip()
    if code in _DENIED:
        needed = (f" needs {permission}" + (f" on {resource}" if resource else "")) if permission else " was refused"
        return f"access denied: your AWS identity{needed}: add it to your IAM policy ({PERMISSIONS_DOC})"
    if code in _EXPIRED:
        return "your AWS credentials have expired: log in again (aws sso login) or refresh them"
    if code in _BAD_CREDENTIALS:
        return f"AWS does not accept these credentials ({code}): check the access key, --profile or AWS_PROFILE"
    return code + (f": {message}" if message else "")


def error_code(exc: Exception) -> str | None:
    """The AWS error code of a `ClientError`, else None."""
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code")) if isinstance(response, dict) else None
