"""The user's config: organizations, budgets, thresholds and channels, validated with precise errors.

Owns the YAML format (`config/spendwatch.yaml`), its validation into typed models, and the
environment-only fallback (one organization described by `OPENAI_ADMIN_KEY` and friends).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from spendwatch.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("config/spendwatch.yaml")
DEFAULT_THRESHOLDS_PERCENT = (Decimal(50), Decimal(80), Decimal(100))
ORG_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(_Model):
    """Where a secret lives: an SSM SecureString parameter (deployed) or an environment variable (local runs)."""

    parameter: Annotated[str, Field(pattern=r"^/[A-Za-z0-9_.\-/]+$")]
    env: Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]*$")]


class BudgetConfig(_Model):
    """A monthly budget in USD and the ladder of percentages at which to alert."""

    monthly_usd: Annotated[Decimal, Field(gt=0, le=Decimal("100000000"))]
    thresholds_percent: tuple[Annotated[Decimal, Field(gt=0, le=1000)], ...] = DEFAULT_THRESHOLDS_PERCENT

    @field_validator("monthly_usd", mode="before")
    @classmethod
    def _no_float(cls, value: object) -> object:
        return _reject_float(value)

    @field_validator("thresholds_percent", mode="before")
    @classmethod
    def _no_float_items(cls, value: object) -> object:
        if isinstance(value, list | tuple):
            return [_reject_float(v) for v in value]
        return value

    @field_validator("thresholds_percent")
    @classmethod
    def _sorted_unique(cls, value: tuple[Decimal, ...]) -> tuple[Decimal, ...]:
        if not value:
            raise ValueError("at least one threshold is needed")
        if len(set(value)) != len(value):
            raise ValueError(f"thresholds must be unique, got {[str(v) for v in value]}")
        return tuple(sorted(value))


class SlackChannelConfig(_Model):
    """Slack through an incoming webhook, or through a bot token and a channel (chat.postMessage)."""

    type: Literal["slack"]
    webhook_url: SecretRef = SecretRef(parameter="/spendwatch/slack/webhook-url", env="SLACK_WEBHOOK_URL")
    bot_token: SecretRef = SecretRef(parameter="/spendwatch/slack/bot-token", env="SLACK_BOT_TOKEN")
    channel: str | None = None
    mention: Annotated[str | None, Field(pattern=r"^<!(here|channel)>|<@[A-Z0-9]+>|<!subteam\^[A-Z0-9]+>$")] = None


class EmailChannelConfig(_Model):
    """E-mail through Amazon SES (v2) from a verified identity."""

    type: Literal["email"]
    sender: Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]
    recipients: Annotated[
        tuple[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")], ...], Field(min_length=1, max_length=50)
    ]
    configuration_set: str | None = None
    subject_prefix: Annotated[str, Field(max_length=60)] = "[spendwatch]"


ChannelConfig = Annotated[SlackChannelConfig | EmailChannelConfig, Field(discriminator="type")]


class DeclaredGrant(_Model):
    """A prepaid credit grant declared by hand, for organizations polled without a session key."""

    id: Annotated[str, Field(min_length=1, max_length=100)]
    amount_usd: Annotated[Decimal, Field(gt=0)]
    used_usd: Annotated[Decimal, Field(ge=0)] = Decimal(0)
    expires_at: date
    """UTC day on which the grant expires (OpenAI grants expire one year after purchase)"""
    effective_at: date | None = None

    @field_validator("amount_usd", "used_usd", mode="before")
    @classmethod
    def _no_float(cls, value: object) -> object:
        return _reject_float(value)


class OrganizationConfig(_Model):
    """One monitored OpenAI organization."""

    id: Annotated[str, Field(pattern=ORG_ID_PATTERN)]
    name: Annotated[str, Field(min_length=1, max_length=200)]
    admin_key: SecretRef | None = None
    session_key: SecretRef | None = None
    budget: BudgetConfig | None = None
    channels: tuple[str, ...] = ()
    fallback_channel: str | None = None
    """where to report that a main channel failed permanently (e.g. a revoked Slack token)"""
    hard_limit_usd: Annotated[Decimal | None, Field(gt=0)] = None
    """declared monthly hard limit, used when neither the admin API nor the subscription reports one"""
    credit_grants: tuple[DeclaredGrant, ...] = ()

    @field_validator("hard_limit_usd", mode="before")
    @classmethod
    def _no_float(cls, value: object) -> object:
        return _reject_float(value)

    def admin_key_ref(self) -> SecretRef:
        return self.admin_key or SecretRef(parameter=f"/spendwatch/{self.id}/openai-admin-key", env="OPENAI_ADMIN_KEY")

    def session_key_ref(self) -> SecretRef:
        return self.session_key or SecretRef(
            parameter=f"/spendwatch/{self.id}/openai-session-key", env="OPENAI_SESSION_KEY"
        )


class SpendwatchConfig(_Model):
    """The whole config file."""

    version: Literal[1] = 1
    organizations: Annotated[tuple[OrganizationConfig, ...], Field(min_length=1)]
    channels: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+$")], ChannelConfig] = {}

    @model_validator(mode="after")
    def _references_resolve(self) -> SpendwatchConfig:
        ids = [org.id for org in self.organizations]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"organization ids must be unique, repeated: {duplicates}")
        for index, org in enumerate(self.organizations):
            for name in (*org.channels, *([org.fallback_channel] if org.fallback_channel else [])):
                if name not in self.channels:
                    known = sorted(self.channels) or "none defined"
                    raise ValueError(f"organizations[{index}].channels: unknown channel {name!r} (known: {known})")
        return self

    def organization(self, org_id: str) -> OrganizationConfig:
        for org in self.organizations:
            if org.id == org_id:
                return org
        raise KeyError(org_id)


def _reject_float(value: object) -> object:
    if isinstance(value, float):
        # The YAML loader below never produces floats; this guards programmatic construction.
        raise ValueError("amounts must be exact: pass a Decimal, int or string, not a float")
    return value


class _ConfigLoader(yaml.SafeLoader):
    """SafeLoader that keeps decimals exact and refuses duplicate keys (a silent override hides typos)."""


def _construct_decimal(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Decimal:
    text = loader.construct_scalar(node)
    return Decimal(str(text).replace("_", ""))


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    result: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node)
        if key in result:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        result[key] = loader.construct_object(value_node)
    return result


_ConfigLoader.add_constructor("tag:yaml.org,2002:float", _construct_decimal)
_ConfigLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _format_location(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += ("." if path else "") + str(part)
    return path or "(top level)"


def parse_config(text: str, source: str) -> SpendwatchConfig:
    """Parse and validate config text; raise `ConfigError` naming the source, each field and its problem."""
    try:
        data = yaml.load(text, Loader=_ConfigLoader)  # noqa: S506 - _ConfigLoader is a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise ConfigError(source, [f"{where}: {exc.problem or exc}"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError(source, [f"not valid YAML: {exc}"]) from None
    if not isinstance(data, dict):
        raise ConfigError(source, ["(top level): expected a mapping with 'organizations' and 'channels'"])
    try:
        return SpendwatchConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        errors = exc.errors()
        for error in errors:
            loc = tuple(error["loc"])
            if error["type"] == "too_short" and any(
                len(e["loc"]) > len(loc) and tuple(e["loc"][: len(loc)]) == loc for e in errors
            ):
                continue  # a list whose items all failed also reports "too short": the item errors say it better
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{_format_location(tuple(error['loc']))}: {message}")
        raise ConfigError(source, problems) from None


def load_config_file(path: Path) -> SpendwatchConfig:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), ["file not found"]) from None
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read: {exc.strerror}"]) from None
    return parse_config(text, str(path))


def config_from_environment(environ: Mapping[str, str]) -> SpendwatchConfig:
    """One organization described by the environment alone (no config file, `OPENAI_ADMIN_KEY` set)."""
    org: dict[str, Any] = {
        "id": environ.get("SPENDWATCH_ORG_ID", "default"),
        "name": environ.get("SPENDWATCH_ORG_NAME", "OpenAI organization"),
    }
    channels: dict[str, Any] = {}
    if budget := environ.get("SPENDWATCH_MONTHLY_BUDGET_USD"):
        org["budget"] = {"monthly_usd": budget}
        if thresholds := environ.get("SPENDWATCH_THRESHOLDS_PERCENT"):
            org["budget"]["thresholds_percent"] = [t.strip() for t in thresholds.split(",") if t.strip()]
    if environ.get("SLACK_WEBHOOK_URL") or environ.get("SLACK_BOT_TOKEN"):
        channels["slack"] = {"type": "slack", "channel": environ.get("SLACK_CHANNEL")}
        org["channels"] = ["slack"]
    return parse_config(yaml.safe_dump({"organizations": [org], "channels": channels}), "environment")


def resolve_local_config(environ: Mapping[str, str], cwd: Path | None = None) -> SpendwatchConfig:
    """The config a local command uses: `SPENDWATCH_CONFIG`, else `config/spendwatch.yaml`, else the environment."""
    explicit = environ.get("SPENDWATCH_CONFIG")
    if explicit:
        return load_config_file(Path(explicit))
    default = (cwd or Path.cwd()) / DEFAULT_CONFIG_PATH
    if default.is_file():
        return load_config_file(default)
    if environ.get("OPENAI_ADMIN_KEY"):
        return config_from_environment(environ)
    raise ConfigError(str(default), ["file not found, SPENDWATCH_CONFIG is not set and OPENAI_ADMIN_KEY is not set"])
