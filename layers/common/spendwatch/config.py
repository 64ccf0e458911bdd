"""The user's config: organizations, budgets, thresholds and channels, validated with precise errors.

Owns the YAML format (`config/spendwatch.yaml`), its validation into typed models, and the
environment-only fallback (one organization described by `OPENAI_ADMIN_KEY` and friends).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)

from spendwatch.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("config/spendwatch.yaml")
DEFAULT_THRESHOLDS_PERCENT = (Decimal(50), Decimal(80), Decimal(100))
ORG_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
RESERVED_ORG_IDS = frozenset({"slack", "config"})


class _Model(BaseModel):
    # defer_build: each model's validator is built when first used, not at import; validating the whole
    # config builds one validator for it instead of one per nested model too (docs/performance.md).
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class SecretRef(_Model):
    """Where a secret lives: an SSM SecureString parameter (deployed) or an environment variable (local runs)."""

    parameter: Annotated[str, Field(pattern=r"^/[A-Za-z0-9_.\-/]+$")]
    env: Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]*$")]


class BudgetConfig(_Model):
    """A monthly budget in USD and the ladder of thresholds (percentages of it, or USD amounts) that alert."""

    monthly_usd: Annotated[Decimal, Field(gt=0, le=Decimal("100000000"))]
    thresholds_percent: tuple[Annotated[Decimal, Field(gt=0, le=1000)], ...] = DEFAULT_THRESHOLDS_PERCENT
    thresholds_usd: tuple[Annotated[Decimal, Field(gt=0)], ...] = ()
    """absolute thresholds in USD; given without `thresholds_percent`, they replace the default percentages"""

    @model_validator(mode="before")
    @classmethod
    def _usd_ladder_replaces_default(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("thresholds_usd") and "thresholds_percent" not in data:
            return {**data, "thresholds_percent": ()}
        return data

    @field_validator("monthly_usd", mode="before")
    @classmethod
    def _no_float(cls, value: object) -> object:
        return _reject_float(value)

    @field_validator("thresholds_percent", "thresholds_usd", mode="before")
    @classmethod
    def _no_float_items(cls, value: object) -> object:
        if isinstance(value, list | tuple):
            return [_reject_float(v) for v in value]
        return value

    @field_validator("thresholds_percent", "thresholds_usd")
    @classmethod
    def _sorted_unique(cls, value: tuple[Decimal, ...]) -> tuple[Decimal, ...]:
        if len(set(value)) != len(value):
            raise ValueError(f"thresholds must be unique, got {[str(v) for v in value]}")
        return tuple(sorted(value))

    @model_validator(mode="after")
    def _has_thresholds(self) -> BudgetConfig:
        if not self.thresholds_percent and not self.thresholds_usd:
            raise ValueError("at least one threshold is needed (thresholds_percent or thresholds_usd)")
        too_high = [str(t) for t in self.thresholds_usd if t > self.monthly_usd * 10]
        if too_high:
            raise ValueError(f"thresholds_usd {too_high} exceed 10 x monthly_usd (the 1000% ceiling)")
        return self


class SlackChannelConfig(_Model):
    """Slack through an incoming webhook, or through a bot token and a channel (chat.postMessage)."""

    type: Literal["slack"]
    webhook_url: SecretRef = SecretRef(parameter="/spendwatch/slack/webhook-url", env="SLACK_WEBHOOK_URL")
    bot_token: SecretRef = SecretRef(parameter="/spendwatch/slack/bot-token", env="SLACK_BOT_TOKEN")
    channel: str | None = None
    mention: Annotated[str | None, Field(pattern=r"^(<!(here|channel)>|<@[A-Z0-9]+>|<!subteam\^[A-Z0-9]+>)$")] = None


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


# --- Alert rules and silences (reference: docs/rules.md) ---------------------------------------------

RuleName = Literal["budget", "forecast", "hard_limit", "grant_expiry", "low_balance", "spike", "health"]
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?$")
MIN_REPEAT_INTERVAL = timedelta(minutes=10)
MAX_REPEAT_INTERVAL = timedelta(days=90)


def _parse_duration(value: object) -> object:
    """`30m`, `6h`, `1d12h` -> timedelta; `0`, `off`, `false` or null -> zero (no repeats)."""
    if value is None or value is False or value == 0:
        return timedelta(0)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in {"off", "none", "never", "0"}:
            return timedelta(0)
        match = _DURATION.match(text)
        if text and match:
            days, hours, minutes = (int(group or 0) for group in match.groups())
            return timedelta(days=days, hours=hours, minutes=minutes)
        raise ValueError(f"{value!r} is not a duration such as 30m, 6h or 1d")
    if isinstance(value, bool | int | float | Decimal):
        raise ValueError("a duration needs a unit, such as 30m, 6h or 1d")
    return value


def _format_duration(value: timedelta) -> str:
    minutes = int(value.total_seconds()) // 60
    days, rest = divmod(minutes, 1440)
    hours, minutes = divmod(rest, 60)
    return "".join(f"{n}{unit}" for n, unit in ((days, "d"), (hours, "h"), (minutes, "m")) if n) or "0m"


def _duration_in_range(value: timedelta) -> timedelta:
    if value and not MIN_REPEAT_INTERVAL <= value <= MAX_REPEAT_INTERVAL:
        raise ValueError(f"{_format_duration(value)} is outside 10m..90d (0 or off disables repeats)")
    return value


def _utc_moment(value: object) -> object:
    """A UTC time: an aware datetime, an ISO-8601 string, or a date (midnight UTC); no zone means UTC."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{value!r} is not a time such as 2026-12-01T09:00:00Z") from None
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    return value


def _exact_value(value: object) -> object:
    return _reject_float(value)


Duration = Annotated[
    timedelta,
    BeforeValidator(_parse_duration),
    AfterValidator(_duration_in_range),
    PlainSerializer(_format_duration, return_type=str, when_used="json"),
]
UtcMoment = Annotated[
    datetime,
    BeforeValidator(_utc_moment),
    PlainSerializer(lambda v: v.strftime("%Y-%m-%dT%H:%M:%SZ"), return_type=str, when_used="json"),
]
ExactUsd = Annotated[Decimal, BeforeValidator(_exact_value), Field(gt=0, le=Decimal("100000000"))]
Margin = Annotated[Decimal, BeforeValidator(_exact_value), Field(ge=0, lt=100)]


def _unique(values: tuple[Any, ...], what: str) -> None:
    if len(set(values)) != len(values):
        raise ValueError(f"{what} must be unique, got {[str(v) for v in values]}")


class ProjectBudgetConfig(BudgetConfig):
    """A monthly budget for one project, matched by project id in the costs grouped by project."""

    id: Annotated[str, Field(min_length=1, max_length=200)]


class LineItemBudgetConfig(BudgetConfig):
    """A monthly budget for one line item, matched by its exact name in the costs grouped by line item."""

    name: Annotated[str, Field(min_length=1, max_length=200)]


class _RuleOptions(_Model):
    enabled: bool = True
    send_resolved: bool = False
    """also send a message when the condition clears"""
    repeat_interval: Duration = timedelta(0)
    """re-send while the condition holds, at most this often (0: never)"""


class BudgetRuleConfig(_RuleOptions):
    """Month-to-date spend against the org budget (`budget:`) and the project and line-item budgets here."""

    resolve_margin_percent: Margin = Decimal(5)
    """a crossed threshold clears only below threshold x (1 - margin), so revised buckets do not flap"""
    projects: tuple[ProjectBudgetConfig, ...] = ()
    line_items: tuple[LineItemBudgetConfig, ...] = ()

    @model_validator(mode="after")
    def _unique_scopes(self) -> BudgetRuleConfig:
        _unique(tuple(p.id for p in self.projects), "project budget ids")
        _unique(tuple(i.name for i in self.line_items), "line item budget names")
        return self


class ForecastRuleConfig(_RuleOptions):
    """Projected month-end spend against every budget (org, projects, line items)."""

    thresholds_percent: tuple[Annotated[Decimal, BeforeValidator(_exact_value), Field(gt=0, le=1000)], ...] = (
        Decimal(100),
    )
    min_days: Annotated[int, Field(ge=1, le=27)] = 5
    """complete days of the month needed before forecasting"""
    resolve_margin_percent: Margin = Decimal(5)

    @field_validator("thresholds_percent")
    @classmethod
    def _sorted_unique(cls, value: tuple[Decimal, ...]) -> tuple[Decimal, ...]:
        if not value:
            raise ValueError("at least one threshold is needed")
        _unique(value, "thresholds")
        return tuple(sorted(value))


class HardLimitRuleConfig(_RuleOptions):
    """Month-to-date spend approaching the org's or a project's monthly hard limit."""

    percent: Annotated[Decimal, BeforeValidator(_exact_value), Field(gt=0, le=100)] = Decimal(90)
    send_resolved: bool = True
    repeat_interval: Duration = timedelta(hours=6)
    resolve_margin_percent: Margin = Decimal(5)


class GrantExpiryRuleConfig(_RuleOptions):
    """Credit grants with a remaining balance that expire within each lead time."""

    lead_days: tuple[Annotated[int, Field(ge=1, le=366)], ...] = (30, 7, 1)

    @field_validator("lead_days")
    @classmethod
    def _sorted_unique(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value:
            raise ValueError("at least one lead time is needed")
        _unique(value, "lead days")
        return tuple(sorted(value, reverse=True))


class LowBalanceRuleConfig(_RuleOptions):
    """Remaining prepaid credit below an amount, or fewer days left at the current burn rate (opt-in)."""

    min_usd: ExactUsd | None = None
    min_runway_days: Annotated[int | None, Field(ge=1, le=365)] = None
    burn_days: Annotated[int, Field(ge=3, le=28)] = 7
    """complete days whose average spend is the burn rate"""
    send_resolved: bool = True
    repeat_interval: Duration = timedelta(days=1)
    resolve_margin_percent: Margin = Decimal(5)


class SpikeRuleConfig(_RuleOptions):
    """A day's spend over `factor` x the median of the previous `baseline_days` settled days."""

    factor: Annotated[Decimal, BeforeValidator(_exact_value), Field(gt=1, le=1000)] = Decimal(3)
    baseline_days: Annotated[int, Field(ge=3, le=28)] = 7
    min_usd: Annotated[Decimal, BeforeValidator(_exact_value), Field(ge=0)] = Decimal(10)
    """days below this spend never count as spikes"""
    resolve_margin_percent: Margin = Decimal(5)


class HealthRuleConfig(_RuleOptions):
    """The monitor's own health: failing sources, rejected keys, an admin key about to expire."""

    failing_polls: Annotated[int, Field(ge=1, le=48)] = 3  # the alerter reads the newest 64 polls of history
    admin_key_expiry_days: Annotated[int, Field(ge=1, le=365)] = 14
    stale_after_hours: Annotated[int | None, Field(ge=1, le=720)] = None
    """the watchdog alerts when the newest snapshot is older than this (default: 3 poll periods)"""
    send_resolved: bool = True
    repeat_interval: Duration = timedelta(days=1)


class RulesConfig(_Model):
    """Per-organization rule settings; every section is optional and has defaults (docs/rules.md)."""

    budget: BudgetRuleConfig = BudgetRuleConfig()
    forecast: ForecastRuleConfig = ForecastRuleConfig()
    hard_limit: HardLimitRuleConfig = HardLimitRuleConfig()
    grant_expiry: GrantExpiryRuleConfig = GrantExpiryRuleConfig()
    low_balance: LowBalanceRuleConfig = LowBalanceRuleConfig()
    spike: SpikeRuleConfig = SpikeRuleConfig()
    health: HealthRuleConfig = HealthRuleConfig()

    def options(self, rule: str) -> _RuleOptions:
        section: _RuleOptions = getattr(self, rule)
        return section


class SilenceConfig(_Model):
    """Mutes one rule, one organization, or one rule of one organization until a UTC time."""

    org: Annotated[str | None, Field(pattern=ORG_ID_PATTERN)] = None
    rule: RuleName | None = None
    until: UtcMoment
    reason: Annotated[str | None, Field(max_length=200)] = None

    @model_validator(mode="after")
    def _scoped(self) -> SilenceConfig:
        if self.org is None and self.rule is None:
            raise ValueError("a silence needs an org, a rule, or both")
        return self

    def matches(self, org_id: str, rule: str, now: datetime) -> bool:
        return now < self.until and self.org in (None, org_id) and self.rule in (None, rule)


class OrganizationConfig(_Model):
    """One monitored OpenAI organization."""

    id: Annotated[str, Field(pattern=ORG_ID_PATTERN)]
    name: Annotated[str, Field(min_length=1, max_length=200)]
    admin_key: SecretRef | None = None

    @field_validator("id")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        # /spendwatch/slack/* holds the Slack credentials, which the alerter may read: an org called
        # "slack" would put its OpenAI keys where the alerter can read them too.
        if value in RESERVED_ORG_IDS:
            raise ValueError(f"{value!r} is reserved (its SSM path holds spendwatch's own settings)")
        return value

    admin_key_id: Annotated[str | None, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_-]+$")] = None
    """id of the admin key (`key_...`), so the poller can read its expiry; skipped when unknown"""
    session_key: SecretRef | None = None
    budget: BudgetConfig | None = None
    channels: tuple[str, ...] = ()
    fallback_channel: str | None = None
    """where to report that a main channel failed permanently (e.g. a revoked Slack token)"""
    hard_limit_usd: Annotated[Decimal | None, Field(gt=0)] = None
    """declared monthly hard limit, used when neither the admin API nor the subscription reports one"""
    credit_grants: tuple[DeclaredGrant, ...] = ()
    rules: RulesConfig = RulesConfig()
    """alert rule settings (docs/rules.md); `budget` above stays the organization's own budget"""

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
    silences: tuple[SilenceConfig, ...] = ()

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
        for index, silence in enumerate(self.silences):
            if silence.org is not None and silence.org not in ids:
                raise ValueError(f"silences[{index}].org: unknown organization {silence.org!r} (known: {sorted(ids)})")
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


def _format_location(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += ("." if path else "") + str(part)
    return path or "(top level)"


def parse_config(text: str, source: str) -> SpendwatchConfig:
    """Parse and validate config text; raise `ConfigError` naming the source, each field and its problem.

    Text that starts with `{` is the canonical JSON form `spendwatch config push` stores, read without a
    YAML parser (the deployed functions carry none); anything else is the YAML a user writes.
    """
    return validate_config(load_document(text, source), source)


def load_document(text: str, source: str) -> Any:
    """The config text as plain data: JSON when it starts with `{`, else YAML (imported only then)."""
    if text.lstrip().startswith("{"):
        return _load_json(text, source)
    from spendwatch.config_yaml import load_yaml  # noqa: PLC0415 - the deployed functions read JSON

    return load_yaml(text, source)


def _load_json(text: str, source: str) -> Any:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in items:
            if key in result:
                raise ConfigError(source, [f"duplicate key {key!r}"])
            result[key] = value
        return result

    try:
        return json.loads(text, parse_float=Decimal, object_pairs_hook=pairs)
    except json.JSONDecodeError as exc:
        raise ConfigError(source, [f"line {exc.lineno}, column {exc.colno}: {exc.msg}"]) from None


def canonical_config_text(data: Any) -> str:
    """The config as compact JSON with keys in their written order: what `config push` stores.

    Comments and layout are gone and dates become ISO strings; every number keeps its exact digits.
    """
    return _encode_exact(_plain(data))


def _encode_exact(value: Any) -> str:
    """Compact JSON in which a `Decimal` is a number with its exact digits (json.dumps would need a float)."""
    if isinstance(value, dict):
        members = (f"{json.dumps(str(k), ensure_ascii=False)}:{_encode_exact(v)}" for k, v in value.items())
        return "{" + ",".join(members) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_encode_exact(v) for v in value) + "]"
    if isinstance(value, Decimal):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def validate_config(data: Any, source: str) -> SpendwatchConfig:
    """Validate plain data (as `load_document` returns it) into the typed config."""
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
        **({"admin_key_id": environ["OPENAI_ADMIN_KEY_ID"]} if environ.get("OPENAI_ADMIN_KEY_ID") else {}),
    }
    channels: dict[str, Any] = {}
    if budget := environ.get("SPENDWATCH_MONTHLY_BUDGET_USD"):
        org["budget"] = {"monthly_usd": budget}
        if thresholds := environ.get("SPENDWATCH_THRESHOLDS_PERCENT"):
            org["budget"]["thresholds_percent"] = [t.strip() for t in thresholds.split(",") if t.strip()]
    if environ.get("SLACK_WEBHOOK_URL") or environ.get("SLACK_BOT_TOKEN"):
        channels["slack"] = {"type": "slack", "channel": environ.get("SLACK_CHANNEL")}
        org["channels"] = ["slack"]
    return validate_config({"organizations": [org], "channels": channels}, "environment")


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
