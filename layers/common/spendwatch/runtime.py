"""Wiring for the deployed functions: environment models, the config source and the channel factory.

Environment variables are read here and nowhere else, into Pydantic models validated at cold start so a
missing variable is named instead of surfacing as a `KeyError` mid-invocation.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from spendwatch.alerts import RESEND_AFTER_S
from spendwatch.config import (
    ChannelConfig,
    EmailChannelConfig,
    SlackChannelConfig,
    SpendwatchConfig,
    load_config_file,
    parse_config,
)
from spendwatch.errors import ConfigError, DeliveryError, EnvironmentConfigError
from spendwatch.secrets import SecretSource
from spendwatch.senders import (
    SES_CONNECT_TIMEOUT_S,
    SES_READ_TIMEOUT_S,
    SLACK_CONNECT_TIMEOUT_S,
    SLACK_TIMEOUT_S,
    EmailSender,
    Pacer,
    Sender,
    SlackCredentials,
    SlackSender,
    SlackTransport,
)

CONFIG_CACHE_SECONDS = 60
BUNDLED_CONFIG_PATH = Path(__file__).resolve().parent / "bundled_config.yaml"
"""Optional config file shipped in the layer, used only while the SSM parameter is missing or unreadable."""
# Kept here rather than imported from openai_api so the alerter never imports `requests`.
OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
_EnvT = TypeVar("_EnvT", bound="_Env")


class _Env(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    @classmethod
    def from_environ(cls: type[_EnvT], environ: Mapping[str, str] | None = None) -> _EnvT:
        source = os.environ if environ is None else environ
        data = {name: source[name.upper()] for name in cls.model_fields if source.get(name.upper())}
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = ", ".join(f"{str(e['loc'][0]).upper()} ({str(e['msg']).lower()})" for e in exc.errors())
            raise EnvironmentConfigError(f"{cls.__name__}: invalid environment: {problems}") from None


class PollerEnv(_Env):
    snapshots_table: Annotated[str, Field(min_length=3)]
    spendwatch_config_parameter: Annotated[str, Field(pattern=r"^/")]
    snapshot_retention_days: Annotated[int, Field(ge=1, le=3650)] = 90
    openai_base_url: str = OPENAI_DEFAULT_BASE_URL


class AlerterEnv(_Env):
    alert_state_table: Annotated[str, Field(min_length=3)]
    snapshots_table: Annotated[str, Field(min_length=3)]
    spendwatch_config_parameter: Annotated[str, Field(pattern=r"^/")]
    slack_api_base_url: str | None = None
    unconfirmed_resend_after_s: Annotated[int, Field(ge=1, le=86400)] = RESEND_AFTER_S
    """how long a message whose delivery is unknown waits for its one re-send (tests: a second)"""
    poll_period_seconds: Annotated[int, Field(ge=60, le=86400)] = 3600
    poll_schedule: str | None = None
    """the stack's PollSchedule and PollPeriodSeconds: `spendwatch verify`'s message names the next poll"""


class WatchdogEnv(_Env):
    alert_state_table: Annotated[str, Field(min_length=3)]
    snapshots_table: Annotated[str, Field(min_length=3)]
    spendwatch_config_parameter: Annotated[str, Field(pattern=r"^/")]
    poll_period_seconds: Annotated[int, Field(ge=60, le=86400)] = 3600
    slack_api_base_url: str | None = None


_Seconds = Annotated[float, Field(gt=0, le=60)]


class DeliveryTimeouts(_Env):
    """Client timeouts of the senders; the defaults suit production, fault tests set a second or less."""

    spendwatch_slack_timeout_s: _Seconds = SLACK_TIMEOUT_S
    spendwatch_slack_connect_timeout_s: _Seconds = SLACK_CONNECT_TIMEOUT_S
    spendwatch_ses_connect_timeout_s: _Seconds = SES_CONNECT_TIMEOUT_S
    spendwatch_ses_read_timeout_s: _Seconds = SES_READ_TIMEOUT_S


class SsmConfigSource:
    """The config pushed to an SSM parameter, re-read at most every minute.

    Precedence: the SSM parameter when it holds a valid config; else the last valid config this
    container has seen (a bad push, or SSM briefly unreadable, changes nothing); else, on a cold start,
    the optional file bundled in the layer (`bundled_config.yaml` next to this module, see
    docs/deploy.md); else the error, so the record fails and is retried. *Any* failure while reading or
    parsing counts (not only a `ConfigError`): a config that crashes the parser must not crash the
    function. `last_error` keeps the most recent problem, logged once per new problem.
    """

    def __init__(
        self,
        parameter_name: str,
        max_age_s: int = CONFIG_CACHE_SECONDS,
        *,
        bundled_path: Path | None = BUNDLED_CONFIG_PATH,
    ) -> None:
        self._name = parameter_name
        self._max_age = max_age_s
        self._bundled_path = bundled_path
        self._last_valid: SpendwatchConfig | None = None
        self._parsed: tuple[str, SpendwatchConfig | ConfigError] | None = None
        self.last_error: ConfigError | None = None
        self.source: str | None = None
        """where the config in use came from: `ssm`, `last_valid` or `bundled`"""

    def get(self) -> SpendwatchConfig:
        source = f"SSM parameter {self._name}"
        try:
            from aws_lambda_powertools.utilities import parameters  # noqa: PLC0415

            text = str(parameters.get_parameter(self._name, max_age=self._max_age))
        except Exception as exc:  # whatever fails, the last valid config stands
            detail = _code(exc)
            return self._fallback(ConfigError(source, [f"cannot be read ({detail}): run `spendwatch config push`"]))
        result = self._parse(text, source)
        if isinstance(result, ConfigError):
            return self._fallback(result)
        self._last_valid = result
        self.last_error = None
        self.source = "ssm"
        return result

    def _parse(self, text: str, source: str) -> SpendwatchConfig | ConfigError:
        # The parameter is cached for a minute but get() runs per record: parse each distinct text once.
        if self._parsed is not None and self._parsed[0] == text:
            return self._parsed[1]
        result: SpendwatchConfig | ConfigError
        try:
            result = parse_config(text, source)
        except ConfigError as exc:
            result = exc
        except Exception as exc:  # a parser bug must not become a crash loop
            result = ConfigError(source, [f"cannot be parsed ({type(exc).__name__}: {str(exc)[:200]})"])
        self._parsed = (text, result)
        return result

    def _fallback(self, error: ConfigError) -> SpendwatchConfig:
        if str(error) != str(self.last_error):
            # Once per new problem, not per record: a bad pushed config must not go unnoticed while the
            # last valid one keeps working.
            from spendwatch.observability import logger  # noqa: PLC0415

            logger.error(
                "config unusable; keeping the last valid one if any",
                error="; ".join(error.problems)[:2000],
                config_source=error.source,
            )
        self.last_error = error
        if self._last_valid is not None:
            self.source = "last_valid"
            return self._last_valid
        if self._bundled_path is not None and self._bundled_path.is_file():
            try:
                self._last_valid = load_config_file(self._bundled_path)
            except ConfigError:
                raise  # a bundled file that is itself invalid: its own precise error
            except Exception as exc:  # e.g. no YAML parser in the layer
                raise ConfigError(str(self._bundled_path), [f"cannot be read ({type(exc).__name__})"]) from None
            self.source = "bundled"
            return self._last_valid
        raise error


def _code(exc: Exception) -> str:
    text = str(exc)
    for code in ("ParameterNotFound", "AccessDeniedException", "ThrottlingException"):
        if code in text:
            return code
    return type(exc).__name__


def utc_now() -> datetime:
    return datetime.now(UTC)


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
        raise DeliveryError(
            name,
            f"{getattr(channel, 'type', '?')} channels are not supported",
            retryable=False,
            reason="unsupported_channel",
        )

    return build
