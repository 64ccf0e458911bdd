"""Wiring for the deployed functions: environment models, the config source and the channel factory.

Environment variables are read here and nowhere else, into Pydantic models validated at cold start so a
missing variable is named instead of surfacing as a `KeyError` mid-invocation.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Annotated, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from spendwatch.config import ChannelConfig, SlackChannelConfig, SpendwatchConfig, parse_config
from spendwatch.errors import ConfigError, DeliveryError, EnvironmentConfigError
from spendwatch.secrets import SecretSource
from spendwatch.senders import Sender, SlackSender

CONFIG_CACHE_SECONDS = 60
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


class SsmConfigSource:
    """The config pushed to an SSM parameter, re-read at most every minute; the last valid one is kept."""

    def __init__(self, parameter_name: str, max_age_s: int = CONFIG_CACHE_SECONDS) -> None:
        self._name = parameter_name
        self._max_age = max_age_s
        self._last_valid: SpendwatchConfig | None = None
        self.last_error: ConfigError | None = None

    def get(self) -> SpendwatchConfig:
        from aws_lambda_powertools.utilities import parameters  # noqa: PLC0415

        try:
            text = str(parameters.get_parameter(self._name, max_age=self._max_age))
            config = parse_config(text, f"SSM parameter {self._name}")
        except ConfigError as exc:
            self.last_error = exc
            if self._last_valid is None:
                raise
            return self._last_valid
        except parameters.exceptions.GetParameterError as exc:
            error = ConfigError(
                f"SSM parameter {self._name}", [f"cannot be read ({_code(exc)}): run `spendwatch config push`"]
            )
            self.last_error = error
            if self._last_valid is None:
                raise error from None
            return self._last_valid
        self._last_valid = config
        self.last_error = None
        return config


def _code(exc: Exception) -> str:
    text = str(exc)
    for code in ("ParameterNotFound", "AccessDeniedException", "ThrottlingException"):
        if code in text:
            return code
    return type(exc).__name__


def utc_now() -> datetime:
    return datetime.now(UTC)


def slack_sender_factory(
    secrets: SecretSource,
    *,
    api_base_url: str | None = None,
    remaining_s: Callable[[], float] = lambda: 30.0,
    environ: Mapping[str, str] | None = None,
) -> Callable[[str, ChannelConfig], Sender]:
    env = os.environ if environ is None else environ

    def build(name: str, channel: ChannelConfig) -> Sender:
        if not isinstance(channel, SlackChannelConfig):
            raise DeliveryError(name, f"{channel.type} channels are not supported yet", retryable=False)
        try:
            webhook = secrets.get(channel.webhook_url)
            token = None if webhook else secrets.get(channel.bot_token)
        except Exception as exc:
            raise DeliveryError(name, f"cannot read the Slack secret: {type(exc).__name__}", retryable=True) from None
        return SlackSender(
            name,
            webhook_url=webhook,
            bot_token=token,
            channel=env.get("SLACK_CHANNEL") or channel.channel,
            api_base_url=api_base_url,
            remaining_s=remaining_s,
        )

    return build
