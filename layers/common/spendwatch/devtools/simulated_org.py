"""A deterministic simulated OpenAI organization (pure data, no I/O).

The organization has projects (one archived), daily cost rows grouped by project, line item and API key,
per-type usage rows derived from those costs, hard spend limits, spend alerts, an admin key with an
expiry, legacy credit grants and a legacy subscription. :class:`spendwatch.devtools.fake_openai.FakeOpenAI`
serves it over HTTP in OpenAI's wire format.

Money is :class:`decimal.Decimal` throughout. The current month's cost rows are scaled so that the
month-to-date total is exactly ``monthly_budget_usd * mtd_fraction`` (86 % of $500 by default) on any
day of the month, so a demo run always crosses the 50 % and 80 % budget thresholds but never 100 %.

Example
-------
>>> from datetime import UTC, datetime
>>> org = SimulatedOrg.default(datetime(2026, 8, 18, 15, 0, tzinfo=UTC))
>>> org.month_to_date_usd()
Decimal('430.00000000')
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Final

__all__ = [
    "ADMIN_KEY_ID",
    "COMPLETIONS_METRICS",
    "DAY",
    "DEFAULT_MONTHLY_BUDGET_USD",
    "DEFAULT_MTD_FRACTION",
    "LINE_ITEM_CATALOG",
    "PREVIOUS_MONTH_FRACTION",
    "USAGE_TYPES",
    "AdminKey",
    "CostRow",
    "CreditGrant",
    "CreditTotals",
    "LegacySubscription",
    "LineItemSpec",
    "RateLimit",
    "SimProject",
    "SimulatedOrg",
    "SpendAlert",
    "SpendLimit",
    "UsageDim",
    "UsageRow",
    "UsageTypeSpec",
    "day_floor",
    "month_start",
]

DEFAULT_MONTHLY_BUDGET_USD: Final = Decimal("500")
"""Monthly budget the default organization is tuned against."""
DEFAULT_MTD_FRACTION: Final = Decimal("0.86")
"""Share of the budget spent month-to-date, whatever the day of the month."""
PREVIOUS_MONTH_FRACTION: Final = Decimal("0.93")
"""Share of the budget spent per 30 days before the current month."""
ADMIN_KEY_ID: Final = "key_sim_admin"
"""Id of the admin key object served at ``/v1/organization/admin_api_keys/{id}``."""

DAY: Final = 86_400
AMOUNT_QUANTUM: Final = Decimal("0.00000001")
_MIN_ELAPSED_TODAY: Final = 1_800  # the current day's bucket always carries at least 30 minutes of traffic
_BASE62: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

UsageDim = str | bool | None
Quantity = int | Decimal


# --------------------------------------------------------------------------------------------------
# Catalogues
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LineItemSpec:
    """A billable line item: its name on the costs endpoint, unit, price and the usage type it feeds."""

    name: str
    quantity_unit: str | None
    unit_price: Decimal
    """USD per one unit of ``quantity``."""
    usage_type: str | None
    model: str | None = None
    part: str | None = None
    """For chat models: ``input``, ``cached input`` or ``output``."""
    quantity_places: int = 0


def _chat_model_items(model: str, input_per_m: str, cached_per_m: str, output_per_m: str) -> list[LineItemSpec]:
    million = Decimal(1_000_000)
    return [
        LineItemSpec(f"{model}, {part}", "tokens", Decimal(price) / million, "completions", model, part)
        for part, price in (("input", input_per_m), ("cached input", cached_per_m), ("output", output_per_m))
    ]


LINE_ITEM_CATALOG: Final[tuple[LineItemSpec, ...]] = (
    *_chat_model_items("gpt-4.1-mini-2025-04-14", "0.40", "0.10", "1.60"),
    LineItemSpec("Image models", "images", Decimal("0.04"), "images", "gpt-image-1"),
    LineItemSpec("Web search", None, Decimal("0.01"), "web_search_calls", "gpt-4.1-mini"),
    LineItemSpec("Vector store storage", "gibibyte_hours", Decimal("0.1") / 24, "vector_stores", quantity_places=4),
    LineItemSpec("File search tool calls", None, Decimal("0.0025"), "file_search_calls"),
    LineItemSpec("text-embedding-3-small", "tokens", Decimal("0.00000002"), "embeddings", "text-embedding-3-small"),
    LineItemSpec(
        "whisper-1, transcription", "duration_seconds", Decimal("0.0001"), "audio_transcriptions", "whisper-1"
    ),
    LineItemSpec("tts-1, characters", "characters", Decimal("0.000015"), "audio_speeches", "tts-1"),
    LineItemSpec("Code interpreter sessions", None, Decimal("0.03"), "code_interpreter_sessions"),
    *_chat_model_items("gpt-4.1-2025-04-14", "2.00", "0.50", "8.00"),
    *_chat_model_items("o4-mini-2025-04-16", "1.10", "0.275", "4.40"),
    LineItemSpec("text-embedding-3-large", "tokens", Decimal("0.00000013"), "embeddings", "text-embedding-3-large"),
    *_chat_model_items("gpt-4o-2024-08-06", "2.50", "1.25", "10.00"),
    *_chat_model_items("gpt-4o-mini-2024-07-18", "0.15", "0.075", "0.60"),
    *_chat_model_items("gpt-5-2025-08-07", "1.25", "0.125", "10.00"),
    *_chat_model_items("gpt-5-mini-2025-08-07", "0.25", "0.025", "2.00"),
    *_chat_model_items("gpt-5-nano-2025-08-07", "0.05", "0.005", "0.40"),
)
_CATALOG_BY_NAME: Final = {spec.name: spec for spec in LINE_ITEM_CATALOG}

_DEFAULT_PROJECT_NAMES: Final = ("Customer chatbot", "Marketing images", "Legacy prototype")
_DEFAULT_LAYOUT: Final[tuple[tuple[str, ...], ...]] = (
    (
        "gpt-4.1-mini-2025-04-14, input",
        "gpt-4.1-mini-2025-04-14, output",
        "gpt-4.1-mini-2025-04-14, cached input",
        "Web search",
        "Vector store storage",
        "File search tool calls",
        "text-embedding-3-small",
        "whisper-1, transcription",
    ),
    (
        "Image models",
        "gpt-4.1-2025-04-14, input",
        "gpt-4.1-2025-04-14, output",
        "tts-1, characters",
        "Code interpreter sessions",
    ),
    ("o4-mini-2025-04-16, input", "o4-mini-2025-04-16, output", "text-embedding-3-large"),
)


@dataclass(frozen=True, slots=True)
class UsageTypeSpec:
    """Wire description of one ``/v1/organization/usage/{name}`` endpoint."""

    name: str
    result_object: str
    metrics: tuple[str, ...]
    dims: tuple[str, ...]
    """Dimension fields in output order; also the endpoint's ``group_by`` enum."""
    filters: Mapping[str, str]
    """Array query parameter -> dimension it filters (``batch`` is the boolean filter on completions)."""


_IDENTITY_FILTERS: Final = {"project_ids": "project_id", "user_ids": "user_id", "api_key_ids": "api_key_id"}
_MODEL_FILTERS: Final = {**_IDENTITY_FILTERS, "models": "model"}
_MODEL_DIMS: Final = ("project_id", "user_id", "api_key_id", "model")

COMPLETIONS_METRICS: Final = (
    "input_tokens",
    "input_cached_tokens",
    "input_cache_write_tokens",
    "input_uncached_tokens",
    "output_tokens",
    "input_text_tokens",
    "output_text_tokens",
    "input_cached_text_tokens",
    "input_audio_tokens",
    "input_cached_audio_tokens",
    "output_audio_tokens",
    "input_image_tokens",
    "input_cached_image_tokens",
    "output_image_tokens",
    "num_model_requests",
)

USAGE_TYPES: Final[Mapping[str, UsageTypeSpec]] = {
    spec.name: spec
    for spec in (
        UsageTypeSpec(
            "completions",
            "organization.usage.completions.result",
            COMPLETIONS_METRICS,
            (*_MODEL_DIMS, "batch", "service_tier"),
            {**_MODEL_FILTERS, "batch": "batch"},
        ),
        UsageTypeSpec(
            "embeddings",
            "organization.usage.embeddings.result",
            ("input_tokens", "num_model_requests"),
            _MODEL_DIMS,
            _MODEL_FILTERS,
        ),
        UsageTypeSpec(
            "moderations",
            "organization.usage.moderations.result",
            ("input_tokens", "num_model_requests"),
            _MODEL_DIMS,
            _MODEL_FILTERS,
        ),
        UsageTypeSpec(
            "images",
            "organization.usage.images.result",
            ("images", "num_model_requests"),
            ("size", "source", *_MODEL_DIMS),
            {**_MODEL_FILTERS, "sources": "source", "sizes": "size"},
        ),
        UsageTypeSpec(
            "audio_speeches",
            "organization.usage.audio_speeches.result",
            ("characters", "num_model_requests"),
            _MODEL_DIMS,
            _MODEL_FILTERS,
        ),
        UsageTypeSpec(
            "audio_transcriptions",
            "organization.usage.audio_transcriptions.result",
            ("seconds", "num_model_requests"),
            _MODEL_DIMS,
            _MODEL_FILTERS,
        ),
        UsageTypeSpec(
            "vector_stores",
            "organization.usage.vector_stores.result",
            ("usage_bytes",),
            ("project_id",),
            {"project_ids": "project_id"},
        ),
        UsageTypeSpec(
            "code_interpreter_sessions",
            "organization.usage.code_interpreter_sessions.result",
            ("num_sessions",),
            ("project_id",),
            {"project_ids": "project_id"},
        ),
        UsageTypeSpec(
            "file_search_calls",
            "organization.usage.file_searches.result",
            ("num_requests",),
            ("project_id", "user_id", "api_key_id", "vector_store_id"),
            {**_IDENTITY_FILTERS, "vector_store_ids": "vector_store_id"},
        ),
        UsageTypeSpec(
            "web_search_calls",
            "organization.usage.web_searches.result",
            ("num_model_requests", "num_requests"),
            (*_MODEL_DIMS, "context_level"),
            {**_MODEL_FILTERS, "context_levels": "context_level"},
        ),
    )
}


# --------------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SimProject:
    id: str
    name: str
    created_at: int
    archived_at: int | None
    api_key_ids: tuple[str, ...]
    user_ids: tuple[str, ...]
    vector_store_id: str

    @property
    def status(self) -> str:
        return "archived" if self.archived_at is not None else "active"

    def active_on(self, day_start: int) -> bool:
        """Whether the project could spend on the UTC day starting at ``day_start``."""
        return self.created_at < day_start + DAY and (self.archived_at is None or day_start < self.archived_at)


@dataclass(frozen=True, slots=True)
class CostRow:
    """One day's cost of one line item in one project through one API key."""

    start_time: int
    """UTC midnight of the day (Unix seconds)."""
    project_id: str
    line_item: str
    api_key_id: str
    amount: Decimal
    """USD, at most 8 decimal places."""
    quantity: Quantity
    quantity_unit: str | None


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One day's usage for one combination of every dimension of a usage type."""

    start_time: int
    dims: Mapping[str, UsageDim]
    metrics: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class SpendLimit:
    threshold_amount: int
    """Cents."""
    enforcement_status: str = "inactive"
    currency: str = "USD"
    interval: str = "month"


@dataclass(frozen=True, slots=True)
class SpendAlert:
    id: str
    threshold_amount: int
    """Cents."""
    recipients: tuple[str, ...]
    subject_prefix: str | None = None
    currency: str = "USD"
    interval: str = "month"


@dataclass(frozen=True, slots=True)
class RateLimit:
    id: str
    model: str
    max_requests_per_1_minute: int
    max_tokens_per_1_minute: int
    extra: Mapping[str, int] = field(default_factory=dict)
    """Optional ``max_*`` fields that only some models carry."""


@dataclass(frozen=True, slots=True)
class AdminKey:
    id: str
    name: str
    created_at: int
    last_used_at: int | None
    expires_at: int | None
    owner_id: str
    owner_name: str
    owner_created_at: int
    redacted_value: str | None = None
    """``None``: the server derives it from the admin key it was started with."""


@dataclass(frozen=True, slots=True)
class SimUser:
    """A member of the organization (`/organization/users`); one who left is no longer listed."""

    id: str
    name: str
    email: str
    added_at: int
    role: str = "reader"
    left: bool = False


@dataclass(frozen=True, slots=True)
class SimServiceAccount:
    """A project's service account; OpenAI's spec requires a name, yet it can be empty."""

    id: str
    project_id: str
    name: str
    created_at: int
    role: str = "member"


@dataclass(frozen=True, slots=True)
class SimApiKey:
    """A project API key; a deleted one still has cost rows but is no longer listed."""

    id: str
    project_id: str
    name: str
    redacted_value: str
    created_at: int
    owner_type: str
    """user | service_account"""
    owner_id: str
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class CreditGrant:
    id: str
    grant_amount: Decimal
    used_amount: Decimal
    effective_at: int
    expires_at: int
    paid: bool
    """Prepaid (bought) credit rather than a promotional grant; counts towards ``total_paid_available``."""

    @property
    def remaining(self) -> Decimal:
        return self.grant_amount - self.used_amount


@dataclass(frozen=True, slots=True)
class CreditTotals:
    total_granted: Decimal
    total_used: Decimal
    total_available: Decimal
    total_paid_available: Decimal


@dataclass(frozen=True, slots=True)
class LegacySubscription:
    hard_limit_usd: Decimal
    soft_limit_usd: Decimal
    system_hard_limit_usd: Decimal
    access_until: int
    account_name: str
    plan_id: str = "payg"
    plan_title: str = "Pay-as-you-go"
    has_payment_method: bool = True
    billing_mechanism: str = "prepaid"
    max_balance: Decimal = Decimal("2500")
    auto_recharge_eligible: bool = True
    auto_recharge_enabled: bool = True
    auto_recharge_threshold: Decimal = Decimal("20")
    auto_recharge_to_balance: Decimal = Decimal("100")
    trust_tier: str = "tier_3"


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def _as_utc(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        msg = "now must be timezone-aware (UTC)"
        raise ValueError(msg)
    return now.astimezone(UTC)


def _ts(moment: datetime) -> int:
    return int(moment.timestamp())


def day_floor(ts: int) -> int:
    """UTC midnight at or before ``ts``."""
    return ts - ts % DAY


def month_start(moment: datetime) -> datetime:
    """First instant of ``moment``'s UTC month."""
    return _as_utc(moment).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _previous_month_start(moment: datetime) -> datetime:
    return month_start(month_start(moment) - timedelta(days=1))


def _sim_id(prefix: str, *parts: object, length: int = 22) -> str:
    digest = int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest(), "big")
    chars = []
    for _ in range(length):
        digest, rem = divmod(digest, 62)
        chars.append(_BASE62[rem])
    return prefix + "".join(chars)


def _uuid_like(*parts: object) -> str:
    h = hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"


def _cents(usd: Decimal) -> int:
    return int((usd * 100).to_integral_value(rounding=ROUND_HALF_EVEN))


def _scale_exact(raw: Sequence[int], target: Decimal) -> list[Decimal]:
    """Split ``target`` proportionally to ``raw`` into 8-decimal amounts summing to exactly ``target``."""
    total = sum(raw)
    if total <= 0:
        msg = "nothing to scale: every raw weight is zero"
        raise ValueError(msg)
    amounts = [(target * weight / total).quantize(AMOUNT_QUANTUM, rounding=ROUND_HALF_EVEN) for weight in raw]
    largest = max(range(len(raw)), key=raw.__getitem__)
    amounts[largest] += target.quantize(AMOUNT_QUANTUM) - sum(amounts, Decimal(0))
    return amounts


def _quantity(spec: LineItemSpec, amount: Decimal) -> Quantity:
    value = amount / spec.unit_price
    if spec.quantity_places == 0:
        return int(value.to_integral_value(rounding=ROUND_HALF_EVEN))
    return value.quantize(Decimal(1).scaleb(-spec.quantity_places), rounding=ROUND_HALF_EVEN)


# --------------------------------------------------------------------------------------------------
# The organization
# --------------------------------------------------------------------------------------------------


@dataclass
class SimulatedOrg:
    """A deterministic OpenAI organization.

    Build one with :meth:`default` (3 projects, one archived, $500 budget) or :meth:`generate` (explicit
    scale for tests and benchmarks). Records are immutable; use :func:`dataclasses.replace` to derive a
    variant (indexes are rebuilt).
    """

    now: datetime
    org_id: str
    org_name: str
    monthly_budget_usd: Decimal
    first_day: int
    """UTC midnight of the first day with cost rows."""
    projects: tuple[SimProject, ...]
    cost_rows: tuple[CostRow, ...]
    org_spend_limit: SpendLimit | None
    project_spend_limits: Mapping[str, SpendLimit]
    org_spend_alerts: tuple[SpendAlert, ...]
    project_spend_alerts: Mapping[str, tuple[SpendAlert, ...]]
    rate_limits: tuple[RateLimit, ...]
    """The same per-model rate limits apply to every project."""
    admin_keys: Mapping[str, AdminKey]
    credit_grants: tuple[CreditGrant, ...]
    subscription: LegacySubscription
    users: tuple[SimUser, ...] = ()
    service_accounts: tuple[SimServiceAccount, ...] = ()
    api_keys: tuple[SimApiKey, ...] = ()
    """Every key that has cost rows (`SimProject.api_key_ids`), deleted ones included."""
    _costs_by_day: dict[int, list[CostRow]] = field(init=False, repr=False, compare=False)
    _usage_by_day: dict[str, dict[int, list[UsageRow]]] | None = field(
        init=False, repr=False, compare=False, default=None
    )

    def __post_init__(self) -> None:
        self.now = _as_utc(self.now)
        index: dict[int, list[CostRow]] = defaultdict(list)
        for row in self.cost_rows:
            index[row.start_time].append(row)
        self._costs_by_day = dict(index)
        self._usage_by_day = None

    # ---- construction ---------------------------------------------------------------------------

    @classmethod
    def default(cls, now: datetime) -> SimulatedOrg:
        """The demo organization: 3 projects (one archived), costs since the 1st of the previous month."""
        return cls.generate(now)

    @classmethod
    def generate(
        cls,
        now: datetime,
        *,
        monthly_budget_usd: Decimal = DEFAULT_MONTHLY_BUDGET_USD,
        mtd_fraction: Decimal = DEFAULT_MTD_FRACTION,
        project_count: int = 3,
        archived_project_count: int | None = None,
        line_items_per_project: int | None = None,
        days: int | None = None,
        seed: int = 0,
    ) -> SimulatedOrg:
        """Build an organization at an explicit scale.

        Parameters
        ----------
        now:
            Aware datetime; the simulated "current" instant. Rows run through ``now``'s UTC day.
        monthly_budget_usd, mtd_fraction:
            The current month's rows sum to exactly ``monthly_budget_usd * mtd_fraction``; spend limits,
            alerts, grants and the subscription scale with the budget.
        project_count, archived_project_count:
            Number of projects; by default one is archived when there are at least 3.
        line_items_per_project:
            ``None``: the first three projects use a hand-written layout covering every usage type and
            later ones get 5 line items; otherwise every project gets this many (max
            ``len(LINE_ITEM_CATALOG)``).
        days:
            ``None``: from the 1st of the previous UTC month; otherwise this many days ending on ``now``'s day.
        seed:
            Changes every random draw (weights, jitter) while keeping the totals.
        """
        now = _as_utc(now)
        now_ts = _ts(now)
        first_day = _first_day(now, days)
        archived = _archived_count(project_count, archived_project_count, line_items_per_project)
        rng = random.Random(seed)
        org_id = _sim_id("org-", seed, "org", length=24)
        total_days = (day_floor(now_ts) - first_day) // DAY + 1
        projects = _make_projects(
            seed=seed, count=project_count, archived=archived, first_day=first_day, total_days=total_days, now_ts=now_ts
        )
        layout = _layout(project_count, line_items_per_project)
        rows = _cost_rows(
            rng,
            now,
            projects=projects,
            layout=layout,
            first_day=first_day,
            target=monthly_budget_usd * mtd_fraction,
            earlier_per_30_days=monthly_budget_usd * PREVIOUS_MONTH_FRACTION,
        )

        budget = monthly_budget_usd
        main = projects[0]
        org_limit_cents = _cents(budget * Decimal("1.2"))
        grants = (
            CreditGrant(
                id=_uuid_like(seed, "grant-promo"),
                grant_amount=(budget / 5).quantize(Decimal("0.01")),
                used_amount=(budget / 5 * Decimal("0.62514")).quantize(Decimal("0.0001")),
                effective_at=now_ts - 80 * DAY,
                expires_at=now_ts + 12 * DAY,
                paid=False,
            ),
            CreditGrant(
                id=_uuid_like(seed, "grant-prepaid"),
                grant_amount=budget.quantize(Decimal("0.01")),
                used_amount=(budget * Decimal("0.3745123")).quantize(AMOUNT_QUANTUM),
                effective_at=now_ts - 165 * DAY,
                expires_at=now_ts + 200 * DAY,
                paid=True,
            ),
        )
        owner_id = _sim_id("user-", seed, "owner", length=24)
        users, accounts, keys = _people_and_keys(projects, seed=seed, now_ts=now_ts)
        return cls(
            users=users,
            service_accounts=accounts,
            api_keys=keys,
            now=now,
            org_id=org_id,
            org_name="Simulated Org",
            monthly_budget_usd=monthly_budget_usd,
            first_day=first_day,
            projects=projects,
            cost_rows=rows,
            org_spend_limit=SpendLimit(org_limit_cents, enforcement_status="enforcing"),
            project_spend_limits={main.id: SpendLimit(_cents(budget * Decimal("0.6")))},
            org_spend_alerts=(
                SpendAlert(
                    _sim_id("alert_", seed, "org50", length=7),
                    _cents(budget / 2),
                    ("finops@example.com",),
                    "[OpenAI 50%]",
                ),
                SpendAlert(
                    _sim_id("alert_", seed, "org80", length=7),
                    _cents(budget * Decimal("0.8")),
                    ("finops@example.com", "cto@example.com"),
                ),
            ),
            project_spend_alerts={
                main.id: (
                    SpendAlert(
                        _sim_id("alert_", seed, "proj", length=7),
                        _cents(budget * Decimal("0.4")),
                        ("chatbot-team@example.com",),
                        f"{main.name} spend",
                    ),
                )
            },
            rate_limits=(
                RateLimit(
                    "rl-gpt-4.1-mini", "gpt-4.1-mini", 5000, 2_000_000, {"batch_1_day_max_input_tokens": 20_000_000}
                ),
                RateLimit("rl-gpt-image-1", "gpt-image-1", 50, 100_000, {"max_images_per_1_minute": 20}),
                RateLimit("rl-whisper-1", "whisper-1", 500, 0, {"max_audio_megabytes_per_1_minute": 100}),
            ),
            admin_keys={
                ADMIN_KEY_ID: AdminKey(
                    id=ADMIN_KEY_ID,
                    name="spendwatch monitor",
                    created_at=now_ts - 70 * DAY,
                    last_used_at=now_ts - 300,
                    expires_at=now_ts + 20 * DAY,
                    owner_id=owner_id,
                    owner_name="Org Owner",
                    owner_created_at=now_ts - 400 * DAY,
                )
            },
            credit_grants=grants,
            subscription=LegacySubscription(
                hard_limit_usd=Decimal(org_limit_cents) / 100,
                soft_limit_usd=(budget * Decimal("0.8")).quantize(Decimal("0.01")),
                system_hard_limit_usd=(Decimal(org_limit_cents) / 100 * 2).quantize(Decimal("0.01")),
                access_until=now_ts + 365 * DAY,
                account_name="Simulated Org",
                max_balance=(budget * 5).quantize(Decimal("0.01")),
                auto_recharge_threshold=(budget / 25).quantize(Decimal("0.01")),
                auto_recharge_to_balance=(budget / 5).quantize(Decimal("0.01")),
            ),
        )

    # ---- queries --------------------------------------------------------------------------------

    @property
    def now_ts(self) -> int:
        return _ts(self.now)

    def project(self, project_id: str) -> SimProject | None:
        return next((p for p in self.projects if p.id == project_id), None)

    def costs_on(self, day_start: int) -> Sequence[CostRow]:
        """Cost rows of the UTC day starting at ``day_start`` (empty when none)."""
        return self._costs_by_day.get(day_start, ())

    def spend_usd(self, start: int, end: int, project_ids: Sequence[str] | None = None) -> Decimal:
        """Exact sum of rows whose day starts in ``[start, end)`` (Unix seconds)."""
        total = Decimal(0)
        for day in range(start + (-start) % DAY, end, DAY):
            for row in self.costs_on(day):
                if project_ids is None or row.project_id in project_ids:
                    total += row.amount
        return total

    def month_to_date_usd(self, now: datetime | None = None) -> Decimal:
        """Exact sum of the rows served for ``now``'s UTC month up to ``now`` (default: the org's now)."""
        moment = self.now if now is None else _as_utc(now)
        return self.spend_usd(_ts(month_start(moment)), _ts(moment) + 1)

    def credit_totals(self) -> CreditTotals:
        granted = sum((g.grant_amount for g in self.credit_grants), Decimal(0))
        used = sum((g.used_amount for g in self.credit_grants), Decimal(0))
        paid = sum((g.remaining for g in self.credit_grants if g.paid), Decimal(0))
        return CreditTotals(granted, used, granted - used, paid)

    def usage_on(self, usage_type: str, day_start: int) -> Sequence[UsageRow]:
        """Usage rows of one type on the UTC day starting at ``day_start`` (derived lazily, then cached)."""
        return self._usage(usage_type).get(day_start, ())

    def usage_rows(self, usage_type: str) -> list[UsageRow]:
        """Every usage row of one type, in day order."""
        by_day = self._usage(usage_type)
        return [row for day in sorted(by_day) for row in by_day[day]]

    def _usage(self, usage_type: str) -> dict[int, list[UsageRow]]:
        if usage_type not in USAGE_TYPES:
            msg = f"unknown usage type {usage_type!r}"
            raise KeyError(msg)
        if self._usage_by_day is None:
            self._usage_by_day = _derive_usage(self)
        return self._usage_by_day[usage_type]


_PEOPLE: Final = ("Ada Lovelace", "Grace Hopper", "Alan Turing", "Edsger Dijkstra", "Barbara Liskov", "Ken Thompson")


def _people_and_keys(
    projects: Sequence[SimProject], *, seed: int, now_ts: int
) -> tuple[tuple[SimUser, ...], tuple[SimServiceAccount, ...], tuple[SimApiKey, ...]]:
    """Each project's key `a` belongs to its first user and key `b` to its service account, with the
    honest oddities of a real organization, each on a key that spends: the first project's first user
    left the organization (their key and their usage stay) and its service account has an empty name;
    the second project's key `a` was deleted after it spent."""
    users: dict[str, SimUser] = {}
    accounts = []
    keys = []
    for index, project in enumerate(projects):
        for slot, user_id in enumerate(project.user_ids):
            person = _PEOPLE[(2 * index + slot) % len(_PEOPLE)]
            left = index == 0 and slot == 0
            email = f"{person.split()[0].lower()}.{index}@example.com"
            users[user_id] = SimUser(user_id, person, email, now_ts - (300 - index) * DAY, left=left)
        account_id = _sim_id("svc_acct_", seed, index, length=20)
        account_name = "" if index == 0 else f"{project.name} bot"
        accounts.append(SimServiceAccount(account_id, project.id, account_name, project.created_at + DAY))
        for slot, key_id in enumerate(project.api_key_ids):
            owner_type = "user" if slot == 0 else "service_account"
            owner_id = project.user_ids[slot] if owner_type == "user" else account_id
            tail = hashlib.sha256(key_id.encode()).hexdigest()[:4]
            keys.append(
                SimApiKey(
                    id=key_id,
                    project_id=project.id,
                    name=f"{project.name} {'backend' if slot == 0 else 'batch jobs'}",
                    redacted_value=f"sk-{'proj' if owner_type == 'user' else 'svcacct'}-****{tail}",
                    created_at=project.created_at + (slot + 1) * DAY,
                    owner_type=owner_type,
                    owner_id=owner_id,
                    deleted=index == 1 and slot == 0,
                )
            )
    return tuple(users.values()), tuple(accounts), tuple(keys)


def _first_day(now: datetime, days: int | None) -> int:
    if days is None:
        return _ts(_previous_month_start(now))
    if days < 1:
        msg = f"days must be >= 1, got {days}"
        raise ValueError(msg)
    return day_floor(_ts(now)) - (days - 1) * DAY


def _archived_count(project_count: int, archived_project_count: int | None, line_items_per_project: int | None) -> int:
    archived = (1 if project_count >= 3 else 0) if archived_project_count is None else archived_project_count
    if project_count < 1 or not 0 <= archived < project_count:
        msg = "need at least one active project"
        raise ValueError(msg)
    if line_items_per_project is not None and not 1 <= line_items_per_project <= len(LINE_ITEM_CATALOG):
        msg = f"line_items_per_project must be between 1 and {len(LINE_ITEM_CATALOG)}"
        raise ValueError(msg)
    return archived


def _cost_rows(
    rng: random.Random,
    now: datetime,
    *,
    projects: Sequence[SimProject],
    layout: Sequence[Sequence[LineItemSpec]],
    first_day: int,
    target: Decimal,
    earlier_per_30_days: Decimal,
) -> tuple[CostRow, ...]:
    """Random daily weights, then exact scaling: the current month sums to ``target``."""
    now_ts = _ts(now)
    today = day_floor(now_ts)
    current_month = _ts(month_start(now))
    current_raw: list[tuple[int, SimProject, LineItemSpec, int]] = []
    earlier_raw: list[tuple[int, SimProject, LineItemSpec, int]] = []
    weights = {
        (p.id, spec.name): rng.randint(20, 300) for p, specs in zip(projects, layout, strict=True) for spec in specs
    }
    elapsed_today = max(now_ts - today, _MIN_ELAPSED_TODAY)
    for day in range(first_day, today + 1, DAY):
        weekend = datetime.fromtimestamp(day, UTC).weekday() >= 5
        day_factor = rng.randint(85, 115) * (60 if weekend else 100)
        for project, specs in zip(projects, layout, strict=True):
            if not project.active_on(day):
                continue
            for spec in specs:
                raw = weights[project.id, spec.name] * day_factor * rng.randint(80, 120)
                if day == today:
                    raw = raw * elapsed_today // DAY
                (current_raw if day >= current_month else earlier_raw).append((day, project, spec, raw))

    rows: list[CostRow] = []
    earlier_days = len({r[0] for r in earlier_raw})
    for raw_rows, total in ((earlier_raw, earlier_per_30_days * earlier_days / 30), (current_raw, target)):
        if not raw_rows:
            continue
        amounts = _scale_exact([max(r[3], 1) for r in raw_rows], total)
        for (day, project, spec, _), amount in zip(raw_rows, amounts, strict=True):
            key_index = 0 if spec.model is not None else LINE_ITEM_CATALOG.index(spec) % len(project.api_key_ids)
            rows.append(
                CostRow(
                    start_time=day,
                    project_id=project.id,
                    line_item=spec.name,
                    api_key_id=project.api_key_ids[key_index],
                    amount=amount,
                    quantity=_quantity(spec, amount),
                    quantity_unit=spec.quantity_unit,
                )
            )
    rows.sort(key=lambda r: r.start_time)
    return tuple(rows)


def _make_projects(
    *, seed: int, count: int, archived: int, first_day: int, total_days: int, now_ts: int
) -> tuple[SimProject, ...]:
    projects = []
    for i in range(count):
        name = _DEFAULT_PROJECT_NAMES[i] if i < len(_DEFAULT_PROJECT_NAMES) else f"Project {i + 1:03d}"
        archived_at = None
        if i >= count - archived:
            archived_at = min(first_day + max(1, total_days // 4) * DAY + 13 * 3600, now_ts)
        projects.append(
            SimProject(
                id=_sim_id("proj_", seed, "project", i, length=24),
                name=name,
                created_at=first_day - (120 + 17 * i) * DAY,
                archived_at=archived_at,
                api_key_ids=(_sim_id("key_", seed, i, "a", length=12), _sim_id("key_", seed, i, "b", length=12)),
                user_ids=(_sim_id("user-", seed, i, "u1", length=24), _sim_id("user-", seed, i, "u2", length=24)),
                vector_store_id=_sim_id("vs_", seed, i, length=24),
            )
        )
    return tuple(projects)


def _layout(project_count: int, per_project: int | None) -> list[list[LineItemSpec]]:
    layout = []
    size = len(LINE_ITEM_CATALOG)
    for i in range(project_count):
        if per_project is None and i < len(_DEFAULT_LAYOUT):
            layout.append([_CATALOG_BY_NAME[name] for name in _DEFAULT_LAYOUT[i]])
        else:
            k = per_project or 5
            layout.append([LINE_ITEM_CATALOG[(i * 7 + j) % size] for j in range(k)])
    return layout


_UsageEntry = tuple[str, dict[str, UsageDim], dict[str, int]]


def _usage_entries(spec: LineItemSpec, project: SimProject, row: CostRow) -> list[_UsageEntry]:
    """Usage rows implied by one non-chat cost row."""
    base: dict[str, UsageDim] = {
        "project_id": project.id,
        "user_id": project.user_ids[(row.start_time // DAY) % len(project.user_ids)],
        "api_key_id": row.api_key_id,
        "model": spec.model,
    }
    qty = int(row.quantity)
    kind = spec.usage_type or ""
    entries: list[_UsageEntry] = []
    match kind:
        case "embeddings" | "audio_transcriptions" | "audio_speeches":
            metric, per_request = {"embeddings": ("input_tokens", 400), "audio_transcriptions": ("seconds", 45)}.get(
                kind, ("characters", 600)
            )
            entries.append((kind, base, {metric: qty, "num_model_requests": max(1, qty // per_request)}))
        case "images":
            generated = qty * 2 // 3
            for size, source, n in (
                ("1024x1024", "image.generation", generated),
                ("1024x1792", "image.edit", qty - generated),
            ):
                if n:
                    dims = {**base, "size": size, "source": source}
                    entries.append((kind, dims, {"images": n, "num_model_requests": max(1, n * 3 // 4)}))
        case "web_search_calls":
            metrics = {"num_model_requests": max(1, qty * 3 // 5), "num_requests": qty}
            entries.append((kind, {**base, "context_level": "medium"}, metrics))
        case "file_search_calls":
            entries.append((kind, {**base, "vector_store_id": project.vector_store_id}, {"num_requests": qty}))
        case "vector_stores":
            entries.append((kind, base, {"usage_bytes": int(Decimal(row.quantity) / 24 * 2**30)}))
        case "code_interpreter_sessions":
            entries.append((kind, base, {"num_sessions": qty}))
        case _:
            pass
    return entries


def _chat_entries(
    project: SimProject, day: int, api_key_id: str, model: str, parts: Mapping[str, int]
) -> list[_UsageEntry]:
    """Completions (and the moderations that ride along) for one model, project, key and day."""
    uncached, cached, output = parts.get("input", 0), parts.get("cached input", 0), parts.get("output", 0)
    image_in = uncached // 40
    requests = max(1, (uncached + cached + output) // 1500)
    dims: dict[str, UsageDim] = {
        "project_id": project.id,
        "user_id": project.user_ids[(day // DAY) % len(project.user_ids)],
        "api_key_id": api_key_id,
        "model": model,
        "batch": False,
        "service_tier": "default",
    }
    metrics = dict.fromkeys(COMPLETIONS_METRICS, 0)
    metrics.update(
        input_tokens=uncached + cached,
        input_cached_tokens=cached,
        input_uncached_tokens=uncached,
        output_tokens=output,
        input_text_tokens=uncached - image_in,
        output_text_tokens=output,
        input_cached_text_tokens=cached,
        input_image_tokens=image_in,
        num_model_requests=requests,
    )
    moderation = {"input_tokens": (uncached + cached) // 20, "num_model_requests": max(1, requests // 4)}
    return [
        ("completions", dims, metrics),
        ("moderations", {**dims, "model": "omni-moderation-latest"}, moderation),
    ]


def _derive_usage(org: SimulatedOrg) -> dict[str, dict[int, list[UsageRow]]]:
    """Usage rows consistent with the cost rows' quantities."""
    chat: dict[tuple[int, str, str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    out: dict[str, dict[int, list[UsageRow]]] = {name: defaultdict(list) for name in USAGE_TYPES}
    projects = {p.id: p for p in org.projects}

    def add(day: int, entries: list[_UsageEntry]) -> None:
        for kind, dims, metrics in entries:
            out[kind][day].append(UsageRow(day, {d: dims.get(d) for d in USAGE_TYPES[kind].dims}, metrics))

    for row in org.cost_rows:
        spec = _CATALOG_BY_NAME.get(row.line_item)
        project = projects.get(row.project_id)
        if spec is None or project is None:
            continue
        if spec.usage_type == "completions":
            chat[row.start_time, project.id, row.api_key_id, spec.model or ""][spec.part or "input"] += int(
                row.quantity
            )
        else:
            add(row.start_time, _usage_entries(spec, project, row))
    for (day, project_id, api_key_id, model), parts in chat.items():
        add(day, _chat_entries(projects[project_id], day, api_key_id, model, parts))
    return {kind: dict(by_day) for kind, by_day in out.items()}
