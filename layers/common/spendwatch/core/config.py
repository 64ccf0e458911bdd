"""The user's config: organizations, budgets, thresholds and channels, validated with precise errors.

Owns the config's models and their validation, whichever route the config arrives by (the YAML file a
user writes, the canonical JSON `config push` stores in SSM), the JSON Schema editors check the file
with, the warnings `config validate` adds for valid but probably wrong settings, and the
environment-only fallback (one organization described by `OPENAI_ADMIN_KEY` and friends).

Every problem is one line, `line N: field.path: problem` (the line where the text has lines). Numbers
are exact and bounded per field; the bounds (at most 100,000,000 USD, at most 10 decimal places) also
keep every number derived from them and stored in DynamoDB (a USD threshold's percent-of-budget level,
a hard limit in cents, the sums of declared grants) within DynamoDB's 38 digits and range: the property
tests in tests/unit/test_config_properties.py check that for any config these models accept.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from spendwatch.core.alerts import SEVERITIES, Severity
from spendwatch.core.config_input import (
    MAX_CONFIG_BYTES,
    ConfigDocument,
    NonFinite,
    check_size,
    decode_config_bytes,
    format_path,
    load_json,
    shape_problems,
)
from spendwatch.core.errors import ConfigError, SpendwatchError
from spendwatch.core.model import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictBool,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from spendwatch.core.numbers import dynamodb_misfit, dynamodb_number

DEFAULT_CONFIG_PATH = Path("config/spendwatch.yaml")
DEFAULT_THRESHOLDS_PERCENT = (Decimal(50), Decimal(80), Decimal(100))
ORG_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
RESERVED_ORG_IDS = frozenset({"slack", "config", "channels"})
MAX_USD = Decimal(100_000_000)
MAX_DECIMAL_PLACES = 10
SAMPLE_ORG_NAME = "My OpenAI organization"
"""The placeholder name of config/spendwatch.yaml's organization: still there, the sample was not edited."""
SCHEMA_URL = "https://json-schema.org/draft/2020-12/schema"
ONE_LINE = r"^[^\x00-\x1f\x7f]*$"

# --- value types --------------------------------------------------------------------------------------


def _config_number(value: object) -> object:
    """An exact, finite number DynamoDB can store, from an int, a Decimal or text; never a bool or float."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {str(value).lower()}")
    if isinstance(value, float):
        # The loaders never produce floats; this guards programmatic construction.
        raise ValueError("amounts must be exact: pass a Decimal, int or string, not a float")
    if isinstance(value, NonFinite):
        raise ValueError(f"must be a finite number, not {value}")
    if isinstance(value, str):
        text = value.strip()
        if text.lower().lstrip("+-") in {".inf", "inf", "infinity", ".nan", "nan", "snan"}:
            raise ValueError(f"must be a finite number, not {text!r}")
        try:
            value = Decimal(text) if len(text) <= 100 else None
        except ArithmeticError:
            value = None
        if value is None:
            raise ValueError(f"{text[:40]!r} is not a number") from None
    if isinstance(value, int):
        value = Decimal(value)
    if isinstance(value, Decimal):
        stored = dynamodb_number(value)
        if stored is None:
            raise ValueError(f"{dynamodb_misfit(value)}: DynamoDB cannot store it")
        return stored
    return value


_EXACT = BeforeValidator(_config_number)  # last in Annotated: runs first, then the bounds
_PLACES = MAX_DECIMAL_PLACES
Usd = Annotated[Decimal, Field(gt=0, le=MAX_USD, decimal_places=_PLACES), _EXACT]
UsdOrZero = Annotated[Decimal, Field(ge=0, le=MAX_USD, decimal_places=_PLACES), _EXACT]
Percent = Annotated[Decimal, Field(gt=0, le=1000, decimal_places=_PLACES), _EXACT]
Margin = Annotated[Decimal, Field(ge=0, lt=100, decimal_places=_PLACES), _EXACT]
ExactUsd = Usd  # the former name


def _parse_duration(value: object) -> object:
    """`30m`, `6h`, `1d12h` -> timedelta; `0`, `off`, `false` or null -> zero (no repeats)."""
    if isinstance(value, Decimal) and not value.is_finite():  # checked first: a signalling NaN raises when compared
        raise ValueError(f"a duration needs a unit, such as 30m, 6h or 1d, not {value}")
    if value is None or value is False or (value == 0 and not isinstance(value, bool)):
        return timedelta(0)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in {"off", "none", "never", "0"}:
            return timedelta(0)
        match = _DURATION.match(text)
        if text and match:
            days, hours, minutes = (int(group or 0) for group in match.groups())
            return timedelta(days=days, hours=hours, minutes=minutes)
        raise ValueError(f"{value[:40]!r} is not a duration such as 30m, 6h or 1d")
    if isinstance(value, bool | int | float | Decimal):
        raise ValueError("a duration needs a unit, such as 30m, 6h or 1d")
    return value


_DURATION = re.compile(r"^(?:(\d{1,5})d)?(?:(\d{1,6})h)?(?:(\d{1,7})m)?$")
MIN_REPEAT_INTERVAL = timedelta(minutes=10)
MAX_REPEAT_INTERVAL = timedelta(days=90)


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
        text = value.strip()
        try:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{text[:40]!r} is not a time such as 2026-12-01T09:00:00Z") from None
    if isinstance(value, datetime):
        try:
            return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 lies before the first representable UTC time
            raise ValueError(f"{value.isoformat()[:40]!r} is outside the times that can be represented") from None
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    raise ValueError("expected a time such as 2026-12-01T09:00:00Z")


_ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _calendar_day(value: object) -> object:
    """A date written as 2026-12-31 (or a midnight time); an impossible one says why."""
    if isinstance(value, datetime):
        if value.time() != datetime.min.time():
            raise ValueError("expected a date such as 2026-12-31, not a time of day")
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and _ISO_DAY.match(value.strip()):
        try:
            return date.fromisoformat(value.strip())
        except ValueError as exc:
            raise ValueError(f"{value.strip()!r} is not a real date ({exc})") from None
    if isinstance(value, str):
        # The canonical JSON `config push` stores writes a YAML midnight timestamp as an ISO time.
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return _calendar_day(moment)
    raise ValueError("expected a date such as 2026-12-31")


Duration = Annotated[
    timedelta,
    BeforeValidator(_parse_duration),
    AfterValidator(_duration_in_range),
    PlainSerializer(_format_duration, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^\s*(\d+d)?(\d+h)?(\d+m)?\s*$|^(off|none|never|0)$"},
                {"const": 0},
                {"const": False},
                {"type": "null"},
            ],
            "description": "30m, 6h, 1d12h; 0 or off: never",
        }
    ),
]
UtcMoment = Annotated[
    datetime,
    BeforeValidator(_utc_moment),
    PlainSerializer(lambda v: v.strftime("%Y-%m-%dT%H:%M:%SZ"), return_type=str, when_used="json"),
    WithJsonSchema({"type": "string", "description": "UTC time, e.g. 2026-12-01T09:00:00Z (or a date)"}),
]
CalendarDay = Annotated[
    date,
    BeforeValidator(_calendar_day),
    WithJsonSchema({"type": "string", "format": "date", "description": "a date such as 2026-12-31"}),
]


def _unique(values: tuple[Any, ...], what: str) -> None:
    if len(set(values)) != len(values):
        raise ValueError(f"{what} must be unique, got {[str(v) for v in values]}")


def _not_fractions(values: tuple[Decimal, ...], field: str) -> None:
    """[0.5, 0.8, 1.0] are fractions written where percentages belong: alerts at 0.5% fire on day one."""
    if values and all(v <= 1 for v in values) and any(v < 1 for v in values):
        meant = ", ".join(_plain_number(v * 100) for v in values)
        raise ValueError(
            f"{[str(v) for v in values]} look like fractions, but {field} are percentages: write [{meant}] "
            "(use thresholds_usd for tiny amounts)"
        )


def _plain_number(value: Decimal) -> str:
    return format(value.normalize(), "f")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(_Model):
    """Where a secret lives: an SSM SecureString parameter (deployed) or an environment variable (local runs)."""

    parameter: Annotated[str, Field(pattern=r"^/[A-Za-z0-9_.\-/]+$", max_length=1011)]
    env: Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]*$", max_length=100)]


class BudgetConfig(_Model):
    """A monthly budget in USD and the ladder of thresholds (percentages of it, or USD amounts) that alert."""

    monthly_usd: Usd
    thresholds_percent: Annotated[tuple[Percent, ...], Field(max_length=20)] = DEFAULT_THRESHOLDS_PERCENT
    thresholds_usd: Annotated[tuple[Usd, ...], Field(max_length=20)] = ()
    """absolute thresholds in USD; given without `thresholds_percent`, they replace the default percentages"""

    @model_validator(mode="before")
    @classmethod
    def _usd_ladder_replaces_default(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("thresholds_usd") and "thresholds_percent" not in data:
            return {**data, "thresholds_percent": ()}
        return data

    @field_validator("thresholds_percent", "thresholds_usd")
    @classmethod
    def _sorted_unique(cls, value: tuple[Decimal, ...]) -> tuple[Decimal, ...]:
        if len(set(value)) != len(value):
            raise ValueError(f"thresholds must be unique, got {[str(v) for v in value]}")
        return tuple(sorted(value))

    @field_validator("thresholds_percent")
    @classmethod
    def _percentages(cls, value: tuple[Decimal, ...]) -> tuple[Decimal, ...]:
        _not_fractions(value, "thresholds_percent")
        return value

    @model_validator(mode="after")
    def _has_thresholds(self) -> BudgetConfig:
        if not self.thresholds_percent and not self.thresholds_usd:
            raise ValueError("at least one threshold is needed (thresholds_percent or thresholds_usd)")
        too_high = [str(t) for t in self.thresholds_usd if t > self.monthly_usd * 10]
        if too_high:
            raise ValueError(f"thresholds_usd {too_high} exceed 10 x monthly_usd (the 1000% ceiling)")
        return self


RuleName = Literal["budget", "forecast", "hard_limit", "grant_expiry", "low_balance", "spike", "first_spend", "health"]
"""A `rules:` section: what silences and channel routes name."""


class _Routed(_Model):
    """What every channel type shares: which alerts it carries (docs/channels.md, "Routing").

    A channel carries an alert when the alert's rule is in `rules` (empty: every rule) and its severity
    (docs/rules.md, "Severity") is at least `min_severity`. Notices about the monitor itself (a failing
    channel, a stopped poller, `verify`, `test-alert`) are not alerts of a rule and always go through.
    """

    rules: Annotated[tuple[RuleName, ...], Field(max_length=8)] = ()
    min_severity: Severity = "info"

    @field_validator("rules")
    @classmethod
    def _unique_rules(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        _unique(value, "rules")
        return value

    def routes(self, rule: str | None, severity: str) -> bool:
        """Whether an alert of `rule` (a `rules:` section) at `severity` goes to this channel."""
        if self.rules and rule not in self.rules:
            return False
        return SEVERITIES.index(severity) >= SEVERITIES.index(self.min_severity)


class SlackChannelConfig(_Routed):
    """Slack through an incoming webhook, or through a bot token and a channel (chat.postMessage)."""

    type: Literal["slack"]
    webhook_url: SecretRef = SecretRef(parameter="/spendwatch/slack/webhook-url", env="SLACK_WEBHOOK_URL")
    bot_token: SecretRef = SecretRef(parameter="/spendwatch/slack/bot-token", env="SLACK_BOT_TOKEN")
    channel: Annotated[str | None, Field(min_length=1, max_length=100)] = None
    mention: Annotated[str | None, Field(pattern=r"^(<!(here|channel)>|<@[A-Z0-9]+>|<!subteam\^[A-Z0-9]+>)$")] = None


_EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"


class EmailChannelConfig(_Routed):
    """E-mail through Amazon SES (v2) from a verified identity."""

    type: Literal["email"]
    sender: Annotated[str, Field(pattern=_EMAIL, max_length=320)]
    recipients: Annotated[
        tuple[Annotated[str, Field(pattern=_EMAIL, max_length=320)], ...], Field(min_length=1, max_length=50)
    ]
    configuration_set: Annotated[str | None, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")] = None
    subject_prefix: Annotated[str, Field(max_length=60, pattern=ONE_LINE)] = "[spendwatch]"
    """one line: a line break in a header would let the prefix add headers of its own"""

    @field_validator("recipients")
    @classmethod
    def _unique_recipients(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        _unique(tuple(v.lower() for v in value), "recipients")
        return value


_HEADER_NAME = r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$"
_RESERVED_HEADERS = frozenset(
    {"content-type", "content-length", "host", "connection", "transfer-encoding", "user-agent"}
)


def _receiver_url(value: str) -> str:
    """An https URL (http only to a loopback stand-in), without spaces or a fragment."""
    problem = receiver_url_problem(value)
    if problem:
        raise ValueError(f"not a receiver URL: {problem}")
    return value


ReceiverUrl = Annotated[str, Field(min_length=8, max_length=2048), AfterValidator(_receiver_url)]


class WebhookChannelConfig(_Routed):
    """A signed JSON POST to any HTTPS endpoint (docs/channels.md, "Webhook")."""

    type: Literal["webhook"]
    url: ReceiverUrl
    signing_secret: SecretRef = SecretRef(
        parameter="/spendwatch/channels/webhook-signing-secret", env="SPENDWATCH_WEBHOOK_SIGNING_SECRET"
    )
    """the HMAC-SHA256 key the receiver verifies `X-Spendwatch-Signature` with (SSM SecureString)"""
    headers: Annotated[
        dict[Annotated[str, Field(pattern=_HEADER_NAME)], Annotated[str, Field(max_length=1000, pattern=ONE_LINE)]],
        Field(max_length=10),
    ] = {}
    """extra headers sent with every request (not secrets: they are stored in the config)"""
    send_resolved: StrictBool | None = None
    """None: each rule's own `send_resolved`"""

    @field_validator("headers")
    @classmethod
    def _not_ours(cls, value: dict[str, str]) -> dict[str, str]:
        taken = sorted(n for n in value if n.lower() in _RESERVED_HEADERS or n.lower().startswith("x-spendwatch-"))
        if taken:
            raise ValueError(f"headers {taken} are set by spendwatch itself and cannot be replaced")
        lowered = [n.lower() for n in value]
        _unique(tuple(lowered), "headers (names are case-insensitive)")
        return value


class PagerDutyChannelConfig(_Routed):
    """PagerDuty Events API v2: triggers by the alert's key, resolves when it resolves (docs/channels.md)."""

    type: Literal["pagerduty"]
    routing_key: SecretRef = SecretRef(
        parameter="/spendwatch/channels/pagerduty-routing-key", env="SPENDWATCH_PAGERDUTY_ROUTING_KEY"
    )
    """the integration key of an Events API v2 integration (SSM SecureString)"""
    send_resolved: StrictBool = True
    """on by default, whatever the rules say: an incident closes itself when its alert resolves"""
    events_url: ReceiverUrl = "https://events.pagerduty.com/v2/enqueue"
    """`https://events.eu.pagerduty.com/v2/enqueue` for an EU service region"""


class TeamsChannelConfig(_Routed):
    """Microsoft Teams through a Workflows incoming webhook, as an Adaptive Card (docs/channels.md, "Teams")."""

    type: Literal["teams"]
    webhook_url: SecretRef = SecretRef(
        parameter="/spendwatch/channels/teams-webhook-url", env="SPENDWATCH_TEAMS_WEBHOOK_URL"
    )
    """the workflow's URL: its `sig=` is a credential, so it is stored as an SSM SecureString"""
    send_resolved: StrictBool | None = None
    """None: each rule's own `send_resolved`"""


class SnsChannelConfig(_Routed):
    """An Amazon SNS standard topic (docs/channels.md, "SNS"): AWS Chatbot, SMS, e-mail, HTTPS, SQS, Lambda."""

    type: Literal["sns"]
    topic_arn: Annotated[
        str, Field(pattern=r"^arn:aws[a-z-]*:sns:[a-z]{2}(-[a-z]+)+-\d:\d{12}:[A-Za-z0-9_-]{1,256}$", max_length=400)
    ]
    """a standard topic; list it in the stack's AlertTopicArns parameter so the functions may publish to it"""
    send_resolved: StrictBool | None = None
    """None: each rule's own `send_resolved`"""


ChannelConfig = Annotated[
    SlackChannelConfig
    | EmailChannelConfig
    | WebhookChannelConfig
    | PagerDutyChannelConfig
    | TeamsChannelConfig
    | SnsChannelConfig,
    Field(discriminator="type"),
]


class DeclaredGrant(_Model):
    """A prepaid credit grant declared by hand, for organizations polled without a session key."""

    id: Annotated[str, Field(min_length=1, max_length=100)]
    amount_usd: Usd
    used_usd: UsdOrZero = Decimal(0)
    expires_at: CalendarDay
    """UTC day on which the grant expires (OpenAI grants expire one year after purchase)"""
    effective_at: CalendarDay | None = None

    @model_validator(mode="after")
    def _consistent(self) -> DeclaredGrant:
        if self.used_usd > self.amount_usd:
            raise ValueError(f"used_usd {self.used_usd} exceeds amount_usd {self.amount_usd}")
        if self.effective_at is not None and self.effective_at >= self.expires_at:
            raise ValueError(f"effective_at {self.effective_at} is not before expires_at {self.expires_at}")
        return self


# --- Alert rules and silences (reference: docs/rules.md) ---------------------------------------------


class ProjectBudgetConfig(BudgetConfig):
    """A monthly budget for one project, matched by project id in the costs grouped by project."""

    id: Annotated[str, Field(min_length=1, max_length=200)]


class LineItemBudgetConfig(BudgetConfig):
    """A monthly budget for one line item, matched by its exact name in the costs grouped by line item."""

    name: Annotated[str, Field(min_length=1, max_length=200)]


class ApiKeyBudgetConfig(BudgetConfig):
    """A monthly budget for one API key: by its id (`key_…`), or by its name (every key of that name)."""

    id: Annotated[str | None, Field(min_length=1, max_length=200)] = None
    name: Annotated[str | None, Field(min_length=1, max_length=200)] = None

    @model_validator(mode="after")
    def _one_match(self) -> ApiKeyBudgetConfig:
        if (self.id is None) == (self.name is None):
            raise ValueError("give the key's id or its name (exactly one)")
        return self

    @property
    def match(self) -> str:
        """`id:<id>` or `name:<name>`: the budget's identity in its alert key."""
        return f"id:{self.id}" if self.id is not None else f"name:{self.name}"


class _RuleOptions(_Model):
    enabled: StrictBool = True
    send_resolved: StrictBool = False
    """also send a message when the condition clears"""
    repeat_interval: Duration = timedelta(0)
    """re-send while the condition holds, at most this often (0: never)"""


class BudgetRuleConfig(_RuleOptions):
    """Month-to-date spend against the org budget (`budget:`) and the project and line-item budgets here."""

    resolve_margin_percent: Margin = Decimal(5)
    """a crossed threshold clears only below threshold x (1 - margin), so revised buckets do not flap"""
    projects: Annotated[tuple[ProjectBudgetConfig, ...], Field(max_length=500)] = ()
    line_items: Annotated[tuple[LineItemBudgetConfig, ...], Field(max_length=500)] = ()
    api_keys: Annotated[tuple[ApiKeyBudgetConfig, ...], Field(max_length=500)] = ()

    @model_validator(mode="after")
    def _unique_scopes(self) -> BudgetRuleConfig:
        _unique(tuple(p.id for p in self.projects), "project budget ids")
        _unique(tuple(i.name for i in self.line_items), "line item budget names")
        _unique(tuple(k.match for k in self.api_keys), "API key budgets")
        return self


class ForecastRuleConfig(_RuleOptions):
    """Projected month-end spend against every budget (org, projects, line items)."""

    thresholds_percent: Annotated[tuple[Percent, ...], Field(max_length=20)] = (Decimal(100),)
    min_days: Annotated[int, Field(strict=True, ge=1, le=27)] = 5
    """complete days of the month needed before forecasting"""
    resolve_margin_percent: Margin = Decimal(5)

    @field_validator("thresholds_percent")
    @classmethod
    def _sorted_unique(cls, value: tuple[Decimal, ...]) -> tuple[Decimal, ...]:
        if not value:
            raise ValueError("at least one threshold is needed")
        _unique(value, "thresholds")
        _not_fractions(value, "thresholds_percent")
        return tuple(sorted(value))


class HardLimitRuleConfig(_RuleOptions):
    """Month-to-date spend approaching the org's or a project's monthly hard limit."""

    percent: Annotated[Decimal, Field(gt=0, le=100, decimal_places=_PLACES), _EXACT] = Decimal(90)
    send_resolved: StrictBool = True
    repeat_interval: Duration = timedelta(hours=6)
    resolve_margin_percent: Margin = Decimal(5)

    @field_validator("percent")
    @classmethod
    def _percentage(cls, value: Decimal) -> Decimal:
        if value < 1:
            raise ValueError(
                f"{value} looks like a fraction, but percent is a percentage: write {_plain_number(value * 100)}"
            )
        return value


class GrantExpiryRuleConfig(_RuleOptions):
    """Credit grants with a remaining balance that expire within each lead time."""

    lead_days: Annotated[tuple[Annotated[int, Field(strict=True, ge=1, le=366)], ...], Field(max_length=20)] = (
        30,
        7,
        1,
    )

    @field_validator("lead_days")
    @classmethod
    def _sorted_unique(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value:
            raise ValueError("at least one lead time is needed")
        _unique(value, "lead days")
        return tuple(sorted(value, reverse=True))


class LowBalanceRuleConfig(_RuleOptions):
    """Remaining prepaid credit below an amount, or fewer days left at the current burn rate (opt-in)."""

    min_usd: Usd | None = None
    min_runway_days: Annotated[int | None, Field(strict=True, ge=1, le=365)] = None
    burn_days: Annotated[int, Field(strict=True, ge=3, le=28)] = 7
    """complete days whose average spend is the burn rate"""
    send_resolved: StrictBool = True
    repeat_interval: Duration = timedelta(days=1)
    resolve_margin_percent: Margin = Decimal(5)


class SpikeRuleConfig(_RuleOptions):
    """A day's spend over `factor` x the median of the previous `baseline_days` settled days."""

    factor: Annotated[Decimal, Field(gt=1, le=1000, decimal_places=_PLACES), _EXACT] = Decimal(3)
    baseline_days: Annotated[int, Field(strict=True, ge=3, le=28)] = 7
    min_usd: UsdOrZero = Decimal(10)
    """days below this spend never count as spikes"""
    resolve_margin_percent: Margin = Decimal(5)
    api_keys: StrictBool = False
    """also each API key's own spike (this month's days only), with the same factor, baseline and minimum"""
    projects: StrictBool = False
    """also each project's own spike (this month's days only)"""


class FirstSpendRuleConfig(_RuleOptions):
    """Opt-in: one message the first time an API key created within `new_key_days` spends."""

    enabled: StrictBool = False
    new_key_days: Annotated[int, Field(strict=True, ge=1, le=365)] = 31
    """only keys this young are announced, so turning the rule on does not announce every existing key"""


class HealthRuleConfig(_RuleOptions):
    """The monitor's own health: failing sources, rejected keys, an admin key about to expire."""

    failing_polls: Annotated[int, Field(strict=True, ge=1, le=48)] = (
        3  # the alerter reads the newest 64 polls of history
    )
    admin_key_expiry_days: Annotated[int, Field(strict=True, ge=1, le=365)] = 14
    stale_after_hours: Annotated[int | None, Field(strict=True, ge=1, le=720)] = None
    """the watchdog alerts when the newest snapshot is older than this (default: 3 poll periods)"""
    send_resolved: StrictBool = True
    repeat_interval: Duration = timedelta(days=1)


class RulesConfig(_Model):
    """Per-organization rule settings; every section is optional and has defaults (docs/rules.md)."""

    budget: BudgetRuleConfig = BudgetRuleConfig()
    forecast: ForecastRuleConfig = ForecastRuleConfig()
    hard_limit: HardLimitRuleConfig = HardLimitRuleConfig()
    grant_expiry: GrantExpiryRuleConfig = GrantExpiryRuleConfig()
    low_balance: LowBalanceRuleConfig = LowBalanceRuleConfig()
    spike: SpikeRuleConfig = SpikeRuleConfig()
    first_spend: FirstSpendRuleConfig = FirstSpendRuleConfig()
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


# --- Spend digests (reference: README.md, "See your spend") ---------------------------------------------

Weekday = Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
WEEKDAYS: tuple[Weekday, ...] = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


class DigestConfig(_Model):
    """A scheduled spend summary of one organization: daily (yesterday) or weekly (the last seven days).

    Sent once per period, at `hour_utc` (and on `weekday` for a weekly one) or on the first run after it,
    to `channels` (default: the organization's alert channels).
    """

    every: Literal["day", "week"]
    hour_utc: Annotated[int, Field(ge=0, le=23)] = 8
    weekday: Weekday | None = None
    """weekly digests only; default monday"""
    channels: tuple[str, ...] = ()
    """empty: the organization's `channels`"""

    @model_validator(mode="after")
    def _weekday_only_weekly(self) -> DigestConfig:
        if self.every == "day" and self.weekday is not None:
            raise ValueError("weekday is only for a weekly digest (every: week)")
        _unique(self.channels, "digest channels")
        return self

    @property
    def send_weekday(self) -> int:
        """0 = Monday, as `date.weekday()` counts."""
        return WEEKDAYS.index(self.weekday or "monday")


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
    channels: Annotated[tuple[Annotated[str, Field(max_length=100)], ...], Field(max_length=20)] = ()
    fallback_channel: Annotated[str | None, Field(max_length=100)] = None
    """where to report that a main channel failed permanently (e.g. a revoked Slack token)"""
    hard_limit_usd: Annotated[Decimal, Field(ge=Decimal("0.01"), le=MAX_USD, decimal_places=_PLACES), _EXACT] | None = (
        None
    )
    """declared monthly hard limit, used when neither the admin API nor the subscription reports one
    (stored in whole cents, hence at least a cent)"""
    credit_grants: Annotated[tuple[DeclaredGrant, ...], Field(max_length=100)] = ()
    rules: RulesConfig = RulesConfig()
    """alert rule settings (docs/rules.md); `budget` above stays the organization's own budget"""
    digests: tuple[DigestConfig, ...] = ()
    """scheduled spend summaries (README.md, "See your spend"); none by default"""

    def admin_key_ref(self) -> SecretRef:
        return self.admin_key or SecretRef(parameter=f"/spendwatch/{self.id}/openai-admin-key", env="OPENAI_ADMIN_KEY")

    def session_key_ref(self) -> SecretRef:
        return self.session_key or SecretRef(
            parameter=f"/spendwatch/{self.id}/openai-session-key", env="OPENAI_SESSION_KEY"
        )

    def all_channels(self) -> list[str]:
        """Every channel that carries this organization's messages: its channels, then its fallback channel."""
        return [*self.channels, *([self.fallback_channel] if self.fallback_channel else [])]


class InconsistentConfigError(SpendwatchError):
    """Fields that are valid one by one but not together (an unknown channel, a shared key parameter).

    Raised by `SpendwatchConfig`'s validator outside pydantic's error machinery, so that each problem
    keeps its own field path; `validate_config` turns it into a `ConfigError`.
    """

    def __init__(self, problems: list[tuple[tuple[str | int, ...], str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{format_path(path)}: {message}" for path, message in problems))


class SpendwatchConfig(_Model):
    """The whole config file."""

    version: Literal[1] = 1
    organizations: Annotated[tuple[OrganizationConfig, ...], Field(min_length=1, max_length=500)]
    channels: Annotated[
        dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+$", max_length=100)], ChannelConfig],
        Field(max_length=100),
    ] = {}
    silences: Annotated[tuple[SilenceConfig, ...], Field(max_length=500)] = ()

    @model_validator(mode="after")
    def _consistent(self) -> SpendwatchConfig:
        problems = consistency_problems(self)
        if problems:
            raise InconsistentConfigError(problems)
        return self

    @model_validator(mode="after")
    def _digest_channels_resolve(self) -> SpendwatchConfig:
        for index, org in enumerate(self.organizations):
            for number, digest in enumerate(org.digests):
                for name in digest.channels:
                    if name not in self.channels:
                        known = sorted(self.channels) or "none defined"
                        where = f"organizations[{index}].digests[{number}].channels"
                        raise ValueError(f"{where}: unknown channel {name!r} (known: {known})")
                    if self.channels[name].type == "pagerduty":
                        where = f"organizations[{index}].digests[{number}].channels"
                        raise ValueError(f"{where}: {name!r} is a PagerDuty channel, which carries alerts, not digests")
                if not (digest.channels or org.channels):
                    where = f"organizations[{index}].digests[{number}]"
                    raise ValueError(f"{where}: no channel to send it to (name channels here or on the organization)")
        return self

    def organization(self, org_id: str) -> OrganizationConfig:
        for org in self.organizations:
            if org.id == org_id:
                return org
        raise KeyError(org_id)


def _did_you_mean(name: str, known: list[str]) -> str:
    import difflib  # noqa: PLC0415 - only a config with a mistake pays for it

    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (known: {', '.join(sorted(known)) or 'none defined'})"


def consistency_problems(config: SpendwatchConfig) -> list[tuple[tuple[str | int, ...], str]]:
    """Cross-field mistakes, each with the path of the field to fix."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    known = list(config.channels)
    first_index: dict[str, int] = {}
    key_owner: dict[str, tuple[int, str, bool]] = {}
    for index, org in enumerate(config.organizations):
        at: tuple[str | int, ...] = ("organizations", index)
        if org.id in first_index:
            problems.append(((*at, "id"), f"duplicate id {org.id!r} (also organizations[{first_index[org.id]}])"))
        first_index.setdefault(org.id, index)
        seen: set[str] = set()
        for position, name in enumerate(org.channels):
            if name not in config.channels:
                problems.append(((*at, "channels", position), f"unknown channel {name!r}{_did_you_mean(name, known)}"))
            elif name in seen:
                problems.append(
                    ((*at, "channels", position), f"channel {name!r} is listed twice: it would get every alert twice")
                )
            seen.add(name)
        fallback = org.fallback_channel
        if fallback is not None and fallback not in config.channels:
            problems.append(
                ((*at, "fallback_channel"), f"unknown channel {fallback!r}{_did_you_mean(fallback, known)}")
            )
        elif fallback is not None and fallback in org.channels:
            problems.append(
                (
                    (*at, "fallback_channel"),
                    f"{fallback!r} is also one of the organization's channels: a failure of that channel cannot be "
                    "reported through itself; name another channel or drop fallback_channel",
                )
            )
        for role, ref, explicit in (
            ("admin key", org.admin_key_ref(), org.admin_key is not None),
            ("session key", org.session_key_ref(), org.session_key is not None),
        ):
            where = (
                (*at, "admin_key" if role == "admin key" else "session_key", "parameter") if explicit else (*at, "id")
            )
            owner = key_owner.get(ref.parameter)
            if owner is not None and (explicit or owner[2]):  # two defaults clash only for a duplicate id
                other, other_role, _ = owner
                problems.append(
                    (
                        where,
                        f"SSM parameter {ref.parameter} is also the {other_role} of organizations[{other}]: each "
                        "organization needs its own key (one key would be polled, and billed, twice)",
                    )
                )
            else:
                key_owner[ref.parameter] = (index, role, explicit)
    ids = [org.id for org in config.organizations]
    for index, silence in enumerate(config.silences):
        if silence.org is not None and silence.org not in ids:
            problems.append(
                (("silences", index, "org"), f"unknown organization {silence.org!r}{_did_you_mean(silence.org, ids)}")
            )
    return problems


# --- warnings: valid, but probably not what was meant ----------------------------------------------


def config_warnings(config: SpendwatchConfig, doc: ConfigDocument | None = None) -> list[str]:
    """Settings that are valid but probably a mistake; `config validate` prints them and exits 0."""
    warnings: list[tuple[tuple[str | int, ...], str]] = []
    for index, org in enumerate(config.organizations):
        if not org.channels:
            warnings.append(
                (
                    ("organizations", index, "channels"),
                    "no channel: this organization's alerts go nowhere (its spend is still recorded)",
                )
            )
        if org.name == SAMPLE_ORG_NAME:
            warnings.append(
                (
                    ("organizations", index, "name"),
                    f"still the sample's placeholder organization ({org.id!r}, {SAMPLE_ORG_NAME!r}): give it your "
                    "organization's id and name",
                )
            )
    lines = doc if doc is not None else ConfigDocument(None, "")
    return [lines.problem(path, message) for path, message in warnings]


# --- local checks of what only the local environment knows --------------------------------------------

_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
_WEBHOOK_PATH = re.compile(r"^/services/[A-Za-z0-9]+/[A-Za-z0-9]+/[A-Za-z0-9]+$")


def receiver_url_problem(url: str) -> str | None:
    """Why `url` cannot be a receiver's endpoint (https, or http to loopback only), without repeating it."""
    if url != url.strip() or any(c.isspace() or ord(c) < 32 for c in url):
        return "it contains spaces or line breaks"
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 - raises for a port that is not a number
    except ValueError:
        return "it is not a URL"
    if parts.scheme != "https" and not (host in _LOOPBACK_HOSTS and parts.scheme == "http"):
        return "it does not start with https:// (plain http only to a local stand-in on 127.0.0.1)"
    if not host:
        return "it has no host"
    if parts.fragment or parts.username or parts.password:
        return "it has a #fragment or user:password@ part"
    return None


def webhook_url_problem(url: str) -> str | None:
    """Why `url` is not a Slack incoming-webhook URL, without repeating it (its path is a secret)."""
    if url != url.strip() or any(c.isspace() for c in url):
        return "it contains spaces or line breaks"
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError:
        return "it is not a URL"
    loopback = host in _LOOPBACK_HOSTS  # a local stand-in such as spendwatch's fake Slack
    if parts.scheme != "https" and not (loopback and parts.scheme == "http"):
        return "it does not start with https://"
    if host not in {"hooks.slack.com", "hooks.slack-gov.com"} and not loopback:
        return "its host is not hooks.slack.com"
    if not _WEBHOOK_PATH.match(parts.path) or parts.query or parts.fragment:
        return "its path is not /services/T…/B…/… as Slack issues it"
    return None


def local_problems(config: SpendwatchConfig, environ: Mapping[str, str]) -> list[str]:
    """Secrets the local environment holds for the config's channels, checked for shape (never printed)."""
    problems = []
    for name, channel in config.channels.items():
        if not isinstance(channel, SlackChannelConfig):
            continue
        url = environ.get(channel.webhook_url.env)
        problem = webhook_url_problem(url) if url else None
        if problem:
            problems.append(
                f"{format_path(('channels', name, 'webhook_url'))}: the environment variable {channel.webhook_url.env} "
                f"is not a Slack incoming-webhook URL (https://hooks.slack.com/services/T…/B…/…): {problem}"
            )
    return problems


# --- reading and validating ----------------------------------------------------------------------------


def parse_config(text: str, source: str) -> SpendwatchConfig:
    """Parse and validate config text; raise `ConfigError` naming the source, each field and its problem.

    Text that starts with `{` is the canonical JSON form `spendwatch config push` stores, read without a
    YAML parser (the deployed functions carry none); anything else is the YAML a user writes.
    """
    return validate_document(read_document(text, source))


def read_document(text: str, source: str) -> ConfigDocument:
    """The config text as plain data and the line of each value: JSON when it starts with `{`, else YAML."""
    if text.lstrip("\ufeff \t\r\n").startswith("{"):
        return load_json(text.lstrip("\ufeff"), source)
    try:
        from spendwatch.core.config_yaml import load_yaml_document  # noqa: PLC0415 - the deployed functions read JSON
    except ImportError:
        raise ConfigError(
            source, ["(top level): YAML cannot be read here (no YAML parser): store it with `spendwatch config push`"]
        ) from None
    return load_yaml_document(text, source)


def load_document(text: str, source: str) -> Any:
    """The config text as plain data (what `canonical_config_text` turns into what `config push` stores)."""
    return read_document(text, source).data


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


def validate_config(
    data: Any, source: str, lines: Mapping[tuple[str | int, ...], int] | None = None
) -> SpendwatchConfig:
    """Validate plain data (as `load_document` returns it) into the typed config."""
    return validate_document(ConfigDocument(data, source, lines or {}))


def validate_document(doc: ConfigDocument) -> SpendwatchConfig:
    """The typed config, or a `ConfigError` with one `line N: field.path: problem` per problem."""
    problems = shape_problems(doc)
    if problems:
        raise ConfigError(doc.source, problems)
    if not isinstance(doc.data, dict):
        raise ConfigError(doc.source, ["(top level): expected a mapping with 'organizations' and 'channels'"])
    try:
        return SpendwatchConfig.model_validate(doc.data)
    except ValidationError as exc:
        from spendwatch.core.config_messages import translate  # noqa: PLC0415 - the functions import config per cold start

        found = translate(exc.errors(), doc.data, SpendwatchConfig)
        raise ConfigError(doc.source, [doc.problem(path, message) for path, message in found]) from None
    except InconsistentConfigError as exc:
        raise ConfigError(doc.source, [doc.problem(path, message) for path, message in exc.problems]) from None


def read_config_bytes(raw: bytes, source: str) -> ConfigDocument:
    """A file's bytes as a document: bounded, decoded (UTF-8, or UTF-16/32 with a BOM), parsed."""
    return read_document(decode_config_bytes(raw, source), source)


def parse_config_bytes(raw: bytes, source: str) -> SpendwatchConfig:
    return validate_document(read_config_bytes(raw, source))


def read_config_file(path: Path) -> ConfigDocument:
    """The file's document (bounded, decoded) without validating it."""
    source = str(path)
    try:
        check_size(path.stat().st_size, source)
        with path.open("rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(source, ["file not found"]) from None
    except OSError as exc:
        raise ConfigError(source, [f"cannot read: {exc.strerror or type(exc).__name__}"]) from None
    return read_config_bytes(raw, source)


def load_config_file(path: Path) -> SpendwatchConfig:
    return validate_document(read_config_file(path))


def _encode_default(value: Any) -> Any:
    """A default as a user writes it: `6h` rather than an ISO duration, `50` rather than "50"."""
    if isinstance(value, timedelta):
        return _format_duration(value)
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, BaseModel):
        return {name: _encode_default(v) for name, v in value.model_dump(mode="json").items()}
    if isinstance(value, tuple | list):
        return [_encode_default(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode_default(v) for k, v in value.items()}
    return value


def config_json_schema() -> dict[str, Any]:
    """The JSON Schema of the config file (`spendwatch config schema`), for editors to complete and check it."""
    from spendwatch.core.model_schema import model_json_schema  # noqa: PLC0415 - the command-line tool's alone

    schema = model_json_schema(SpendwatchConfig, _encode_default)
    return {"$schema": SCHEMA_URL, **schema, "title": "spendwatch config"}


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
    """The config a local command uses: `SPENDWATCH_CONFIG`, else `config/spendwatch.yaml`, else the environment.

    The Slack webhook URLs the environment holds for it are checked for shape here, so a malformed one is a
    config error before anything is sent rather than a retryable delivery failure after.
    """
    explicit = environ.get("SPENDWATCH_CONFIG")
    default = (cwd or Path.cwd()) / DEFAULT_CONFIG_PATH
    if explicit:
        source, config = explicit, load_config_file(Path(explicit))
    elif default.is_file():
        source, config = str(default), load_config_file(default)
    elif environ.get("OPENAI_ADMIN_KEY"):
        source, config = "environment", config_from_environment(environ)
    else:
        raise ConfigError(
            str(default), ["file not found, SPENDWATCH_CONFIG is not set and OPENAI_ADMIN_KEY is not set"]
        )
    problems = local_problems(config, environ)
    if problems:
        raise ConfigError(source, problems)
    return config
