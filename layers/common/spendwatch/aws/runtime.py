"""Wiring for the deployed functions: environment models and the config source (channels: spendwatch.channels.factory).

Environment variables are read here and nowhere else, into typed models validated at cold start so a
missing variable is named instead of surfacing as a `KeyError` mid-invocation.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

from spendwatch.core.alerts import RESEND_AFTER_S
from spendwatch.core.config import SpendwatchConfig, parse_config
from spendwatch.core.errors import ConfigError, EnvironmentConfigError
from spendwatch.core.model import BaseModel, ConfigDict, Field, ValidationError

CONFIG_CACHE_SECONDS = 60
BUNDLED_CONFIG_PATH = Path(__file__).resolve().parent.parent / "bundled_config.json"
"""Optional config file shipped in the layer, used only while the SSM parameter is missing or unreadable.
It holds the canonical JSON that `spendwatch config bundle` writes (the functions carry no YAML parser)."""
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


class SsmConfigSource:
    """The config pushed to an SSM parameter, re-read at most every minute.

    Precedence: the SSM parameter when it holds a valid config; else the last valid config this
    container has seen (a bad push, or SSM briefly unreadable, changes nothing); else, on a cold start,
    the optional file bundled in the layer (`spendwatch/bundled_config.json`, see
    docs/deploy.md); else the error, so the record fails and is retried. *Any* failure while reading or
    parsing counts (not only a `ConfigError`): a config that crashes the parser must not crash the
    function. `last_error` keeps the most recent problem, logged once per new problem.

    Both hold the canonical JSON form; YAML text (pushed by an older spendwatch or by hand) is a
    `ConfigError` saying so, never an attempt to import the YAML parser the layer does not carry.
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
            text = read_parameter(self._name, max_age=self._max_age)
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
            result = parse_stored_config(text, source, remedy=PUSH_REMEDY)
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
            from spendwatch.core.observability import logger  # noqa: PLC0415

            logger.error(
                "config unusable; keeping the last valid one if any",
                error="; ".join(error.problems)[:2000],
                config_source=error.source,
            )
        self.last_error = error
        if self._last_valid is not None:
            self.source = "last_valid"
            return self._last_valid
        if self._bundled_path is not None:
            try:
                bundled = load_bundled_config(self._bundled_path)
            except ConfigError:
                raise  # a bundled file that is itself invalid: its own precise error
            except Exception as exc:  # a parser bug must not become a crash loop either
                raise ConfigError(str(self._bundled_path), [f"cannot be read ({type(exc).__name__})"]) from None
            if bundled is not None:
                self._last_valid = bundled
                self.source = "bundled"
                return bundled
        raise error


PUSH_REMEDY = "run `spendwatch config push` again"
BUNDLE_REMEDY = "run `spendwatch config bundle` again before `sam build`"


def parse_stored_config(text: str, source: str, *, remedy: str) -> SpendwatchConfig:
    """The config as `spendwatch config push` (or `config bundle`) stores it: canonical JSON only.

    `parse_config` would hand any other text to the YAML loader, and PyYAML is not in the layer: an
    older push or a hand-written parameter must be a clear `ConfigError` naming the fix instead.
    """
    if not text.lstrip().startswith("{"):
        raise ConfigError(source, [f"stored as YAML: {remedy}"])
    return parse_config(text, source)


def load_bundled_config(path: Path) -> SpendwatchConfig | None:
    """The config bundled in the layer, or None when there is none.

    A `bundled_config.yaml` beside the expected JSON file is what an older deploy guide asked for: it is
    reported, not silently ignored (an ignored fallback would only be noticed when it is needed).
    """
    legacy = path.with_suffix(".yaml")
    if not path.is_file():
        if path.suffix == ".json" and legacy.is_file():
            raise ConfigError(str(legacy), [f"stored as YAML: {BUNDLE_REMEDY} (it writes {path.name})"])
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read: {exc.strerror}"]) from None
    return parse_stored_config(text, str(path), remedy=BUNDLE_REMEDY)


def _code(exc: Exception) -> str:
    text = str(exc)
    for code in ("ParameterNotFound", "AccessDeniedException", "ThrottlingException"):
        if code in text:
            return code
    return type(exc).__name__


_config_provider: Any = None


def read_parameter(name: str, *, max_age: int) -> str:
    """The parameter's text through a cached provider whose SSM client has short timeouts and few retries
    (`ssm_client_config`): an SSM outage falls back to the last valid config in seconds, not minutes."""
    global _config_provider  # noqa: PLW0603 - one provider (and its cache) per container
    if _config_provider is None:
        from aws_lambda_powertools.utilities.parameters import SSMProvider  # noqa: PLC0415

        from spendwatch.aws.secrets import ssm_client_config  # noqa: PLC0415

        _config_provider = SSMProvider(boto_config=ssm_client_config())
    return str(_config_provider.get(name, max_age=max_age))


def utc_now() -> datetime:
    return datetime.now(UTC)
