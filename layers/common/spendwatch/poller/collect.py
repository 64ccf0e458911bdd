"""One poll of one organization: ask each data source, keep what succeeded, list what failed.

Pure orchestration over an `OpenAIClient`; no AWS. The resulting `Snapshot` is what the poller stores.

Every source is one independent unit of work run on a per-poll thread pool, so a poll takes about as
long as its slowest chain of dependent requests (the project list, then the per-project spend limits
and alerts), not the sum of its requests. A source that fails becomes a `SourceFailure` naming its kind
and the field or status that failed; nothing raises out of `collect_snapshot`, and it returns by the
poll's deadline: a source still running then is a `deadline` failure, the finished ones are kept.
Parsers follow OpenAI's published OpenAPI spec: what the spec makes optional is accepted (a cost result
without an amount is skipped, counted and named, never a lost month-to-date). Field reference, units
and caps: docs/snapshot.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal, Inexact, InvalidOperation, Overflow, localcontext
from functools import partial
from typing import Any, Protocol, TypeVar

from spendwatch.core.config import OrganizationConfig
from spendwatch.core.errors import DeadlineError, MalformedReplyError, SourceError, TooLargeError
from spendwatch.core.observability import logger
from spendwatch.core.snapshot import (
    ApiKeyCost,
    CostShare,
    CreditGrant,
    CreditSummary,
    DailyCost,
    DailyShare,
    ProjectInfo,
    RateLimitInfo,
    Snapshot,
    SourceFailure,
    SpendAlertInfo,
    SpendLimit,
    Subscription,
    UsageAttribution,
    UsageSummary,
)
from spendwatch.poller.openai_api import (
    ADMIN,
    DYNAMODB_DIGITS,
    DYNAMODB_INT_LIMIT,
    LEGACY,
    Deadline,
    Endpoint,
    KeyProblemError,
    NotFoundError,
    dynamodb_misfit,
    dynamodb_number,
    require_int,
    require_number,
    scrub,
)

T = TypeVar("T")

MAX_WORKERS = 24
"""Threads per poll. A poll has up to 23 independent requests (5 cost queries, 10 usage types, completions by
key and user, projects, users, the organization's spend limit and alerts, the admin key, 2 legacy billing
endpoints), so all of them start at once; the per-project requests that follow the project list reuse the
same threads. The work is I/O bound (a thread waits on a socket), and the HTTP connection pool is sized to
match."""

BREAKDOWN_CAP = 50
"""Entries kept per breakdown (costs by project / line item, usage by model / project); the rest is
summed into one `(other)` entry, so every breakdown still adds up to its total."""
OTHER_KEY = "(other)"
NONE_KEY = "(none)"
"""Key of rows whose grouping field is null (e.g. usage outside any project)."""

SUM_PRECISION = 1000
"""Digits of the context every sum of amounts is computed in, with `Inexact` trapped: a sum is exact or
an error, never silently rounded (the default context keeps 28 digits). Every addend fits DynamoDB (38
digits, magnitude 1E-130 to 1E+126), so even millions of them sum exactly in about 300 digits."""

ITEM_SIZE_LIMIT_BYTES = 350_000
"""Largest snapshot item written; DynamoDB refuses items over 400 KB. Larger snapshots are trimmed."""
TRIM_CAPS = (20, 10, 5, 0)
TRIMMED_CONDITION = "snapshot_trimmed"

API_KEY_GROUPING_FLOOR = datetime(2025, 12, 6, tzinfo=UTC)
"""OpenAI answers `group_by=api_key_id` only for buckets from this day on (a 400 naming `start_time`
before it, observed): the by-key query starts there at the earliest."""

PAGE_BUCKETS = (31, 7, 1)
"""Daily buckets asked per page of a costs or usage query: a month in one page, and if that reply is over
the client's size cap (`openai_api.RESPONSE_CAP_BYTES`, e.g. completions by model and project for hundreds
of projects), the query again in pages of a week, then of a day."""
POLL_GRACE_S = 0.25
"""After the poll's deadline, how long `collect_snapshot` still waits for workers to report: each request
is cut at that deadline, so a worker normally reports its own (`deadline`) failure within this moment."""
SKIPPED_ROWS = "skipped_rows"  # one of snapshot.NOTE_KINDS
"""`SourceFailure.kind` of a note on a source that succeeded but skipped rows the spec allows to lack what
the figure needs (a cost result without `amount`); the source is also in `sources_ok`."""
SKIPPED_SHOWN = 3
KEY_FAILURE = "key"
"""`SourceFailure.kind` of a source failed by a condition of the key itself (rejected, missing scope, not
set): the condition names it; `auth` is left for a refusal of that source alone."""

COSTS_SOURCE = "costs"
COSTS_PREVIOUS_MONTH = "costs_previous_month"
COSTS_BY_PROJECT = "costs_by_project"
COSTS_BY_LINE_ITEM = "costs_by_line_item"
COSTS_BY_API_KEY = "costs_by_api_key"
PROJECTS = "projects"
SPEND_LIMIT = "spend_limit"
PROJECT_SPEND_LIMITS = "project_spend_limits"
SPEND_ALERTS = "spend_alerts"
PROJECT_SPEND_ALERTS = "project_spend_alerts"
ADMIN_KEY = "admin_key"
CREDIT_GRANTS = "credit_grants"
SUBSCRIPTION = "subscription"
API_KEYS = "api_keys"
SERVICE_ACCOUNTS = "service_accounts"
USERS = "users"
PROJECT_RATE_LIMITS = "project_rate_limits"
RATE_LIMITS_CAP = 200
"""Rate-limit entries a snapshot keeps: OpenAI lists one per model (about a hundred) per project, so only
the models used this month are kept, and at most this many (about 14 KB)."""
USAGE_ATTRIBUTION = "usage_completions_by_key"
ATTRIBUTION_GROUPS = ("api_key_id", "user_id", "batch", "service_tier")
"""Completions grouped by who and how: one query of its own, so the by-model-and-project one keeps its
size, and a failure of either costs only its own figures."""


# --------------------------------------------------------------------------------------------------
# Usage endpoints
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UsageSpec:
    """One `/organization/usage/{name}` endpoint: its counters and how it is grouped."""

    name: str
    required: tuple[str, ...]
    """counters the API always sends; the first one ranks the breakdowns"""
    optional: tuple[str, ...] = ()
    group_by: tuple[str, ...] = ("model", "project_id")
    gauges: frozenset[str] = frozenset()
    """levels rather than flows (storage bytes): the latest day's value, never a sum over days"""

    @property
    def path(self) -> str:
        return f"/organization/usage/{self.name}"

    @property
    def source(self) -> str:
        return f"usage_{self.name}"

    @property
    def metrics(self) -> tuple[str, ...]:
        return (*self.required, *self.optional)


_REQUESTS = "num_model_requests"
USAGE_SPECS: tuple[UsageSpec, ...] = (
    UsageSpec(
        "completions",
        ("input_tokens", "output_tokens", _REQUESTS),
        (
            "input_cached_tokens",
            "input_cache_write_tokens",
            "input_uncached_tokens",
            "input_text_tokens",
            "output_text_tokens",
            "input_cached_text_tokens",
            "input_audio_tokens",
            "input_cached_audio_tokens",
            "output_audio_tokens",
            "input_image_tokens",
            "input_cached_image_tokens",
            "output_image_tokens",
        ),
    ),
    UsageSpec("embeddings", ("input_tokens", _REQUESTS)),
    UsageSpec("moderations", ("input_tokens", _REQUESTS)),
    UsageSpec("images", ("images", _REQUESTS)),
    UsageSpec("audio_speeches", ("characters", _REQUESTS)),
    UsageSpec("audio_transcriptions", ("seconds", _REQUESTS)),
    UsageSpec("vector_stores", ("usage_bytes",), group_by=("project_id",), gauges=frozenset({"usage_bytes"})),
    UsageSpec("code_interpreter_sessions", ("num_sessions",), group_by=("project_id",)),
    UsageSpec("file_search_calls", ("num_requests",), group_by=("project_id",)),
    UsageSpec("web_search_calls", (_REQUESTS, "num_requests")),
)
USAGE_BY_NAME: Mapping[str, UsageSpec] = {spec.name: spec for spec in USAGE_SPECS}


@dataclass(frozen=True)
class _AttributionSpec(UsageSpec):
    """Completions' counters, grouped by `ATTRIBUTION_GROUPS`, failing as their own source."""

    @property
    def source(self) -> str:
        return USAGE_ATTRIBUTION


ATTRIBUTION_SPEC = _AttributionSpec(
    "completions", USAGE_SPECS[0].required, USAGE_SPECS[0].optional, group_by=ATTRIBUTION_GROUPS
)

SOURCE_ORDER: tuple[str, ...] = (
    COSTS_SOURCE,
    COSTS_PREVIOUS_MONTH,
    COSTS_BY_PROJECT,
    COSTS_BY_LINE_ITEM,
    COSTS_BY_API_KEY,
    *(spec.source for spec in USAGE_SPECS),
    USAGE_ATTRIBUTION,
    PROJECTS,
    SPEND_LIMIT,
    PROJECT_SPEND_LIMITS,
    SPEND_ALERTS,
    PROJECT_SPEND_ALERTS,
    PROJECT_RATE_LIMITS,
    API_KEYS,
    SERVICE_ACCOUNTS,
    USERS,
    ADMIN_KEY,
    CREDIT_GRANTS,
    SUBSCRIPTION,
)
"""Every source a poll can ask, in the order failures and `sources_ok` are listed."""

_DIMENSIONS = frozenset(
    {
        "object",
        "project_id",
        "user_id",
        "user_email",
        "api_key_id",
        "model",
        "batch",
        "service_tier",
        "size",
        "source",
        "vector_store_id",
        "context_level",
        "line_item",
    }
)


class SourceClient(Protocol):
    """What a poll needs from `OpenAIClient` (tests substitute scripted clients)."""

    def has_key(self, auth: str) -> bool: ...

    def get_json(self, path: str, params: dict[str, Any] | None, *, source: str, endpoint: Endpoint = ADMIN) -> Any: ...

    def iter_pages(self, path: str, params: dict[str, Any], *, source: str) -> Iterator[Any]: ...

    def iter_list(self, path: str, params: dict[str, Any], *, source: str) -> Iterator[Any]: ...


# --------------------------------------------------------------------------------------------------
# Time windows
# --------------------------------------------------------------------------------------------------


def month_start(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


def previous_month_start(moment: datetime) -> datetime:
    return month_start(month_start(moment) - timedelta(days=1))


def next_midnight(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return datetime(moment.year, moment.month, moment.day, tzinfo=UTC) + timedelta(days=1)


def _window(start: datetime, end: datetime) -> dict[str, Any]:
    """Daily buckets for [start, end): start inclusive, end exclusive, UTC; one page holds a month."""
    return {
        "start_time": int(start.timestamp()),
        "end_time": int(end.timestamp()),
        "bucket_width": "1d",
        "limit": PAGE_BUCKETS[0],
    }


# --------------------------------------------------------------------------------------------------
# Parsers: pure functions from decoded JSON (Decimal for every non-integer number) to typed values.
# Each raises MalformedReplyError naming the source, the page and the field.
# --------------------------------------------------------------------------------------------------


def _object(value: object, where: str, source: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedReplyError(source, f"{where} is not an object ({_kind(value)})")
    return value


def _list(value: object, where: str, source: str) -> list[Any]:
    if not isinstance(value, list):
        raise MalformedReplyError(source, f"{where} is not a list ({_kind(value)})")
    return value


def _optional_str(value: object, where: str, source: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise MalformedReplyError(source, f"{where} is {_kind(value)}, expected a string or null")


def _required_str(value: object, where: str, source: str) -> str:
    if isinstance(value, str) and value:
        return value
    raise MalformedReplyError(source, f"{where} is {_kind(value)}, expected a non-empty string")


def _optional_bool(value: object, where: str, source: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise MalformedReplyError(source, f"{where} is {_kind(value)}, expected true, false or null")


def _optional_number(value: object, where: str, source: str) -> Decimal | None:
    """null, or a finite number DynamoDB can store (`require_number`)."""
    return None if value is None else require_number(value, where, source)


def _exactly(values: Iterable[Decimal]) -> Decimal:
    """The exact sum; raises `Inexact` rather than round (see `SUM_PRECISION`)."""
    with localcontext() as context:
        context.prec = SUM_PRECISION
        context.traps[Inexact] = True
        return sum(values, Decimal(0))


def exact_sum(values: Iterable[Decimal], what: str, source: str) -> Decimal:
    """The exact sum of `values` in a form DynamoDB stores, else a `MalformedReplyError` for `source`."""
    try:
        total = _exactly(values)
    except (Inexact, Overflow, InvalidOperation):
        raise MalformedReplyError(source, f"{what} cannot be summed exactly") from None
    stored = dynamodb_number(total) or _to_38_digits(total)
    if stored is None:
        raise MalformedReplyError(source, f"{what} is {dynamodb_misfit(total)}")
    return stored


def _to_38_digits(total: Decimal) -> Decimal | None:
    """A sum that needs more than DynamoDB's 38 significant digits (float noise such as 1.4e-17 added to
    a six-figure total) is rounded at the 38th digit, an error below 1e-37 of the total, rather than
    failing the whole source; a magnitude DynamoDB cannot store at all stays an error."""
    with localcontext() as context:
        context.prec = DYNAMODB_DIGITS
        context.rounding = ROUND_HALF_EVEN
        return dynamodb_number(+total)


def _timestamp(value: object, where: str, source: str) -> datetime | None:
    """Unix seconds (an integer, or a number with a fraction as the legacy endpoints send) or null."""
    if value is None:
        return None
    return _unix_time(require_number(value, where, source), where, source)


def _unix_time(seconds: int | Decimal, where: str, source: str) -> datetime:
    try:
        if seconds < 0:  # before 1970: no OpenAI time is, and years below 1000 break ISO formatting
            raise ValueError
        return datetime.fromtimestamp(int(seconds), UTC)
    except (OverflowError, OSError, ValueError):
        number = Decimal(seconds)
        shown = f"{number:.3e}" if abs(number) >= 10**12 else str(number)
        raise MalformedReplyError(source, f"{where} is {shown}, not a plausible Unix time") from None


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return f"a string ({value[:20]!r})"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"


def _buckets(pages: Iterable[Any], source: str) -> Iterator[tuple[str, int, list[Any]]]:
    """(where, start_time, results) of every bucket of every page (the client checked `data` is a list);
    `start_time` is a Unix time a date can be made of."""
    for page_index, page in enumerate(pages):
        for bucket_index, raw in enumerate(page["data"]):
            where = f"page {page_index + 1} data[{bucket_index}]"
            bucket = _object(raw, where, source)
            start_time = require_int(bucket.get("start_time"), f"{where}.start_time", source)
            _unix_time(start_time, f"{where}.start_time", source)
            results = _list(bucket.get("results"), f"{where}.results", source)
            yield where, start_time, results


@dataclass
class SkippedRows:
    """Where a parser skipped rows that OpenAI's spec allows to lack the figure (cost results without an
    amount), so the source keeps the rest and the snapshot names what was left out."""

    what: str
    where: list[str] = field(default_factory=list)

    def clear(self) -> None:
        self.where.clear()

    def note(self, source: str) -> SourceFailure | None:
        if not self.where:
            return None
        shown = ", ".join(self.where[:SKIPPED_SHOWN]) + (", …" if len(self.where) > SKIPPED_SHOWN else "")
        return SourceFailure(
            source=source, kind=SKIPPED_ROWS, detail=f"{len(self.where)} {self.what} skipped ({shown})"
        )


@dataclass(frozen=True)
class Partial:
    """A source's value plus a note on what it skipped (see `SkippedRows`)."""

    value: Any
    note: SourceFailure | None


def _cost_amount(row: object, where: str, source: str) -> Decimal | None:
    """A cost result's USD amount, or None when the result has none.

    OpenAI's spec makes `amount`, `amount.value` and `amount.currency` optional (only `object` is required),
    and the official SDK types them so: a result without a value is skipped by the caller, a missing
    currency is the endpoint's USD, and only a stated other currency is an error.
    """
    amount = _object(row, where, source).get("amount")
    if amount is None:
        return None
    amount = _object(amount, f"{where}.amount", source)
    currency = amount.get("currency")
    if currency is not None and (not isinstance(currency, str) or currency.lower() != "usd"):
        shown = repr(currency[:20]) if isinstance(currency, str) else _kind(currency)
        raise MalformedReplyError(source, f"{where}.amount.currency is {shown}, expected 'usd'")
    value = amount.get("value")
    return None if value is None else require_number(value, f"{where}.amount.value", source)


def parse_daily_costs(
    pages: Iterable[Any], source: str = COSTS_SOURCE, skipped: SkippedRows | None = None
) -> dict[date, Decimal]:
    """UTC day -> exact sum of that day's `amount.value` rows (USD) from `/organization/costs` pages.

    Results without an amount are left out of the sums and listed in `skipped`.
    """
    amounts: dict[date, list[Decimal]] = {}
    for where, start_time, results in _buckets(pages, source):
        day = amounts.setdefault(datetime.fromtimestamp(start_time, UTC).date(), [])
        for row_index, row in enumerate(results):
            at = f"{where}.results[{row_index}]"
            amount = _cost_amount(row, at, source)
            if amount is None:
                if skipped is not None:
                    skipped.where.append(at)
                continue
            day.append(amount)
    return {day: exact_sum(values, f"the costs of {day.isoformat()}", source) for day, values in amounts.items()}


@dataclass
class Quantities:
    """Each group's `quantity` values and the units they came in (OpenAI sets them on line-item rows)."""

    values: dict[str, list[Decimal]] = field(default_factory=dict)
    units: dict[str, set[str | None]] = field(default_factory=dict)

    def clear(self) -> None:
        self.values.clear()
        self.units.clear()

    def add(self, key: str, row: Mapping[str, Any], where: str, source: str) -> None:
        quantity = _optional_number(row.get("quantity"), f"{where}.quantity", source)
        unit = _optional_str(row.get("quantity_unit"), f"{where}.quantity_unit", source)
        # A row without a quantity makes the group's total unknown (None among the units), not smaller.
        self.units.setdefault(key, set()).add(unit if quantity is not None else None)
        if quantity is not None:
            self.values.setdefault(key, []).append(quantity)

    def of(self, key: str, source: str) -> tuple[Decimal | None, str | None]:
        """The exact total and its unit; a total without one single unit is no figure at all."""
        units = self.units.get(key, set())
        if len(units) != 1 or None in units:
            return None, None
        return exact_sum(self.values[key], f"the quantity of {key!r}", source), next(iter(units))


def parse_grouped_costs(
    pages: Iterable[Any],
    group: str,
    source: str,
    skipped: SkippedRows | None = None,
    quantities: Quantities | None = None,
) -> dict[str, Decimal]:
    """Group value (`project_id` or `line_item`) -> exact USD sum over every bucket (results without an
    amount are left out and listed in `skipped`; `quantities` collects each row's quantity)."""
    amounts: dict[str, list[Decimal]] = {}
    for where, _, results in _buckets(pages, source):
        for row_index, row in enumerate(results):
            at = f"{where}.results[{row_index}]"
            amount = _cost_amount(row, at, source)
            key = _optional_str(row.get(group), f"{at}.{group}", source) or NONE_KEY
            if amount is None:
                if skipped is not None:
                    skipped.where.append(at)
                continue
            amounts.setdefault(key, []).append(amount)
            if quantities is not None:
                quantities.add(key, row, at, source)
    return {key: exact_sum(values, f"the costs of {group} {key!r}", source) for key, values in amounts.items()}


@dataclass(frozen=True)
class KeyCosts:
    """A month of costs grouped by API key and project, by UTC day, every figure an exact sum."""

    by_key: dict[str, dict[date, Decimal]]
    by_project: dict[str, dict[date, Decimal]]
    key_project: dict[str, str]
    """the project each key's costs were booked to (a project key belongs to one project)"""


def parse_key_costs(
    pages: Iterable[Any], source: str = COSTS_BY_API_KEY, skipped: SkippedRows | None = None
) -> KeyCosts:
    """`/organization/costs?group_by=api_key_id&group_by=project_id` pages: exact USD sums by key and day
    and by project and day. A row without a key is `(none)`'s, so the keys sum to the organization's
    total for the same buckets; rows without an amount are listed in `skipped`."""
    keys: dict[str, dict[date, list[Decimal]]] = {}
    projects: dict[str, dict[date, list[Decimal]]] = {}
    key_project: dict[str, dict[str, Decimal]] = {}
    for where, start_time, results in _buckets(pages, source):
        day = datetime.fromtimestamp(start_time, UTC).date()
        for row_index, row in enumerate(results):
            at = f"{where}.results[{row_index}]"
            amount = _cost_amount(row, at, source)
            key = _optional_str(row.get("api_key_id"), f"{at}.api_key_id", source) or NONE_KEY
            project = _optional_str(row.get("project_id"), f"{at}.project_id", source) or NONE_KEY
            if amount is None:
                if skipped is not None:
                    skipped.where.append(at)
                continue
            keys.setdefault(key, {}).setdefault(day, []).append(amount)
            projects.setdefault(project, {}).setdefault(day, []).append(amount)
            if project != NONE_KEY:
                booked = key_project.setdefault(key, {})
                booked[project] = booked.get(project, Decimal(0)) + abs(amount)

    def sums(table: dict[str, dict[date, list[Decimal]]], noun: str) -> dict[str, dict[date, Decimal]]:
        return {
            name: {d: exact_sum(v, f"the costs of {noun} {name!r} on {d.isoformat()}", source) for d, v in days.items()}
            for name, days in table.items()
        }

    return KeyCosts(
        by_key=sums(keys, "API key"),
        by_project=sums(projects, "project"),
        key_project={k: max(sorted(p), key=lambda pid: p[pid]) for k, p in key_project.items() if k != NONE_KEY},
    )


@dataclass(frozen=True)
class KeyInfo:
    """Who an API key is, from `/organization/projects/{id}/api_keys` (`ProjectApiKey`)."""

    id: str
    project_id: str
    name: str | None = None
    redacted_value: str | None = None
    created_at: datetime | None = None
    owner_type: str | None = None
    owner_id: str | None = None
    owner_name: str | None = None


def _named(value: str | None) -> str | None:
    """A name that says something: an empty or blank one is no name (shown by id instead)."""
    return value.strip() or None if value is not None else None


def parse_api_key(item: object, project_id: str, where: str, source: str = "api_keys") -> KeyInfo:
    """One `ProjectApiKey`. Only `id` is needed; a field the spec requires but a reply lacks costs
    that field (the key is shown by id), not the key; a field of the wrong type is a malformed reply."""
    key = _object(item, where, source)
    owner = key.get("owner")
    owner_type = owner_id = owner_name = None
    if owner is not None:
        owner = _object(owner, f"{where}.owner", source)
        owner_type = _optional_str(owner.get("type"), f"{where}.owner.type", source)
        if owner_type in ("user", "service_account"):
            who = owner.get(owner_type)
            if who is not None:
                who = _object(who, f"{where}.owner.{owner_type}", source)
                owner_id = _optional_str(who.get("id"), f"{where}.owner.{owner_type}.id", source)
                owner_name = _named(_optional_str(who.get("name"), f"{where}.owner.{owner_type}.name", source))
                if owner_name is None and owner_type == "user":
                    owner_name = _named(_optional_str(who.get("email"), f"{where}.owner.user.email", source))
    return KeyInfo(
        id=_required_str(key.get("id"), f"{where}.id", source),
        project_id=project_id,
        name=_named(_optional_str(key.get("name"), f"{where}.name", source)),
        redacted_value=_named(_optional_str(key.get("redacted_value"), f"{where}.redacted_value", source)),
        created_at=_timestamp(key.get("created_at"), f"{where}.created_at", source),
        owner_type=owner_type,
        owner_id=owner_id,
        owner_name=owner_name,
    )


def parse_named(item: object, where: str, source: str) -> tuple[str, str | None]:
    """(id, display name) of a `ProjectServiceAccount` or a `User` (name, else e-mail; blank: none)."""
    body = _object(item, where, source)
    name = _named(_optional_str(body.get("name"), f"{where}.name", source))
    if name is None and "email" in body:
        name = _named(_optional_str(body.get("email"), f"{where}.email", source))
    return _required_str(body.get("id"), f"{where}.id", source), name


def _usage_metrics(spec: UsageSpec, row: dict[str, Any], where: str) -> dict[str, int]:
    metrics: dict[str, int] = {}
    for name in spec.metrics:
        if name in row:
            metrics[name] = require_int(row[name], f"{where}.{name}", spec.source)
        elif name in spec.required:
            raise MalformedReplyError(spec.source, f"{where}.{name} is missing")
    for name, value in row.items():  # counters added to the API later are kept, not dropped
        if name not in metrics and name not in _DIMENSIONS and isinstance(value, int) and not isinstance(value, bool):
            metrics[name] = value
    return metrics


def _add(target: dict[str, int], metrics: Mapping[str, int]) -> None:
    for name, value in metrics.items():
        target[name] = target.get(name, 0) + value


@dataclass
class _UsageAcc:
    totals: dict[str, int] = field(default_factory=dict)
    by_model: dict[str, dict[str, int]] = field(default_factory=dict)
    by_project: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, model: str | None, project: str | None, metrics: Mapping[str, int]) -> None:
        if not metrics:
            return
        _add(self.totals, metrics)
        if model is not None:
            _add(self.by_model.setdefault(model, {}), metrics)
        if project is not None:
            _add(self.by_project.setdefault(project, {}), metrics)


def parse_usage(spec: UsageSpec, pages: Iterable[Any], *, cap: int = BREAKDOWN_CAP) -> UsageSummary:
    """Month-to-date totals, by model and by project, of one usage endpoint (counts, never money)."""
    flows = _UsageAcc()
    gauges = _UsageAcc()
    gauge_day = -1
    for where, start_time, results in _buckets(pages, spec.source):
        if spec.gauges and results and start_time > gauge_day:
            gauge_day, gauges = start_time, _UsageAcc()
        for row_index, raw in enumerate(results):
            at = f"{where}.results[{row_index}]"
            row = _object(raw, at, spec.source)
            metrics = _usage_metrics(spec, row, at)
            model = project = None
            if "model" in spec.group_by:
                model = _optional_str(row.get("model"), f"{at}.model", spec.source) or NONE_KEY
            if "project_id" in spec.group_by:
                project = _optional_str(row.get("project_id"), f"{at}.project_id", spec.source) or NONE_KEY
            flows.add(model, project, {k: v for k, v in metrics.items() if k not in spec.gauges})
            if start_time == gauge_day:
                gauges.add(model, project, {k: v for k, v in metrics.items() if k in spec.gauges})
    totals = dict.fromkeys(spec.metrics, 0)
    _add(totals, flows.totals)
    _add(totals, gauges.totals)
    by_model, by_project = flows.by_model, flows.by_project
    for key, metrics in gauges.by_model.items():
        _add(by_model.setdefault(key, {}), metrics)
    for key, metrics in gauges.by_project.items():
        _add(by_project.setdefault(key, {}), metrics)
    _check_counts(spec, totals, by_model, by_project)
    rank = spec.required[0]
    return UsageSummary(
        totals=totals,
        by_model=cap_counts(by_model, rank, cap),
        by_project=cap_counts(by_project, rank, cap),
    )


def parse_usage_attribution(pages: Iterable[Any], *, cap: int = BREAKDOWN_CAP) -> UsageAttribution:
    """Month-to-date completions by API key, user, batch and service tier (rows without one are `(none)`)."""
    spec = ATTRIBUTION_SPEC
    totals = dict.fromkeys(spec.metrics, 0)
    breakdowns: dict[str, dict[str, dict[str, int]]] = {g: {} for g in ATTRIBUTION_GROUPS}
    for where, _, results in _buckets(pages, spec.source):
        for row_index, raw in enumerate(results):
            at = f"{where}.results[{row_index}]"
            row = _object(raw, at, spec.source)
            metrics = _usage_metrics(spec, row, at)
            if not metrics:
                continue
            batch = _optional_bool(row.get("batch"), f"{at}.batch", spec.source)
            keys = {
                "api_key_id": _optional_str(row.get("api_key_id"), f"{at}.api_key_id", spec.source),
                "user_id": _optional_str(row.get("user_id"), f"{at}.user_id", spec.source),
                "batch": None if batch is None else ("batch" if batch else "standard"),
                "service_tier": _optional_str(row.get("service_tier"), f"{at}.service_tier", spec.source),
            }
            _add(totals, metrics)
            for group, key in keys.items():
                _add(breakdowns[group].setdefault(key or NONE_KEY, {}), metrics)
    _check_counts(spec, totals, *breakdowns.values())
    rank = spec.required[0]
    return UsageAttribution(
        totals=totals,
        by_api_key=cap_counts(breakdowns["api_key_id"], rank, cap),
        by_user=cap_counts(breakdowns["user_id"], rank, cap),
        by_batch=cap_counts(breakdowns["batch"], rank, cap),
        by_service_tier=cap_counts(breakdowns["service_tier"], rank, cap),
    )


def _check_counts(spec: UsageSpec, totals: Mapping[str, int], *breakdowns: Mapping[str, Mapping[str, int]]) -> None:
    """Every total, and every sum of breakdown entries (`(other)` at any cap), fits a DynamoDB number."""
    names = {name for breakdown in breakdowns for counts in breakdown.values() for name in counts}
    for name in sorted(names | set(totals)):
        bounds = [abs(totals.get(name, 0))]
        bounds.extend(sum(abs(counts.get(name, 0)) for counts in breakdown.values()) for breakdown in breakdowns)
        if max(bounds) >= DYNAMODB_INT_LIMIT:
            raise MalformedReplyError(spec.source, f"{name} sums to more than {DYNAMODB_DIGITS} digits")


def cap_counts(breakdown: Mapping[str, Mapping[str, int]], rank: str, cap: int) -> dict[str, dict[str, int]]:
    """The `cap` largest entries by `rank` (zero counters omitted), the rest summed into `(other)`."""
    ordered = sorted(
        ((k, v) for k, v in breakdown.items() if k != OTHER_KEY), key=lambda kv: (-kv[1].get(rank, 0), kv[0])
    )
    kept: dict[str, dict[str, int]] = {key: {n: c for n, c in counts.items() if c} for key, counts in ordered[:cap]}
    rest = ordered[cap:]
    if rest or OTHER_KEY in breakdown:
        other: dict[str, int] = dict(breakdown.get(OTHER_KEY, {}))
        for _, counts in rest:
            _add(other, counts)
        kept[OTHER_KEY] = {n: c for n, c in other.items() if c}
    return kept


def cap_shares(
    shares: Sequence[CostShare], cap: int, noun: str, *, source: str = COSTS_BY_PROJECT
) -> tuple[CostShare, ...]:
    """The `cap` largest shares, then one `(other)` share holding the exact remainder.

    Raises `MalformedReplyError` for `source` if the remainder does not fit a DynamoDB number;
    `collect_grouped_costs` checks every cap a snapshot may use, so the poll's own calls never do.
    """
    previous_other = next((s for s in shares if s.key == OTHER_KEY), None)
    items = sorted((s for s in shares if s.key != OTHER_KEY), key=lambda s: (-s.amount_usd, s.key))
    kept, rest = items[:cap], items[cap:]
    if not rest and previous_other is None:
        return tuple(kept)
    remainder = [s.amount_usd for s in rest] + ([previous_other.amount_usd] if previous_other else [])
    amount = exact_sum(remainder, f"the sum of the {noun} beyond the largest {cap}", source)
    count = len(rest) + (_other_count(previous_other) if previous_other else 0)
    return (*kept, CostShare(key=OTHER_KEY, name=f"{count} more {noun}", amount_usd=amount))


def _other_count(share: CostShare | ApiKeyCost) -> int:
    head = (share.name or "0").split(" ", 1)[0]
    return int(head) if head.isdigit() else 0


def parse_project(item: object, where: str) -> ProjectInfo:
    project = _object(item, where, PROJECTS)
    status = _optional_str(project.get("status"), f"{where}.status", PROJECTS)
    if status is None and "archived_at" in project:
        status = "archived" if project["archived_at"] is not None else "active"
    return ProjectInfo(
        id=_required_str(project.get("id"), f"{where}.id", PROJECTS),
        name=_optional_str(project.get("name"), f"{where}.name", PROJECTS),
        status=status,
    )


def _usd_currency(body: Mapping[str, Any], where: str, source: str) -> None:
    currency = body.get("currency")
    if not isinstance(currency, str) or currency.upper() != "USD":
        shown = (
            currency[:20]
            if isinstance(currency, str)
            else currency
            if not isinstance(currency, dict | list)
            else "an object"
        )
        raise MalformedReplyError(source, f"{where}currency is {shown!r}, expected 'USD'")


def parse_spend_limit(body: object, scope: str, source: str) -> SpendLimit:
    """A `*.spend_limit` resource; `threshold_amount` is in US cents."""
    limit = _object(body, "reply", source)
    threshold = require_int(limit.get("threshold_amount"), "threshold_amount", source)
    _usd_currency(limit, "", source)
    enforcement = limit.get("enforcement")
    status = None
    if enforcement is not None:
        status = _optional_str(_object(enforcement, "enforcement", source).get("status"), "enforcement.status", source)
    return SpendLimit(scope=scope, threshold_cents=threshold, source="admin_api", enforcement_status=status)


def parse_spend_alert(item: object, scope: str, where: str, source: str) -> SpendAlertInfo:
    alert = _object(item, where, source)
    _usd_currency(alert, f"{where}.", source)
    return SpendAlertInfo(
        scope=scope,
        id=_required_str(alert.get("id"), f"{where}.id", source),
        threshold_cents=require_int(alert.get("threshold_amount"), f"{where}.threshold_amount", source),
    )


def parse_admin_key(body: object) -> datetime | None:
    """`expires_at` of `/organization/admin_api_keys/{id}`; null or absent: the key does not expire.

    The spec lists `expires_at` as required but nullable, and its own example of this very reply omits it;
    the official SDK types it as optional. Absent therefore means what null means.
    """
    key = _object(body, "reply", ADMIN_KEY)
    return _timestamp(key.get("expires_at"), "expires_at", ADMIN_KEY)


def _required_usd(body: Mapping[str, Any], name: str, where: str, source: str) -> Decimal:
    return require_number(body.get(name), f"{where}{name}", source)


def parse_credit_grants(body: object) -> tuple[CreditSummary, tuple[CreditGrant, ...]]:
    """Legacy `/dashboard/billing/credit_grants`: balance totals and each grant, all in USD."""
    src = CREDIT_GRANTS
    summary = _object(body, "reply", src)
    totals = CreditSummary(
        total_granted_usd=_required_usd(summary, "total_granted", "", src),
        total_used_usd=_required_usd(summary, "total_used", "", src),
        total_available_usd=_required_usd(summary, "total_available", "", src),
        total_paid_available_usd=_optional_number(summary.get("total_paid_available"), "total_paid_available", src),
    )
    grants_list = _object(summary.get("grants"), "grants", src)
    grants = []
    for index, item in enumerate(_list(grants_list.get("data"), "grants.data", src)):
        where = f"grants.data[{index}]."
        grant = _object(item, where.rstrip("."), src)
        grants.append(
            CreditGrant(
                id=_required_str(grant.get("id"), f"{where}id", src),
                grant_amount_usd=_required_usd(grant, "grant_amount", where, src),
                used_amount_usd=_required_usd(grant, "used_amount", where, src),
                effective_at=_timestamp(grant.get("effective_at"), f"{where}effective_at", src),
                expires_at=_timestamp(grant.get("expires_at"), f"{where}expires_at", src),
                source="session_key",
            )
        )
    return totals, tuple(grants)


def parse_subscription(body: object) -> Subscription:
    """Legacy `/dashboard/billing/subscription`: the `_usd` limits, plan, payment and auto-recharge."""
    src = SUBSCRIPTION
    sub = _object(body, "reply", src)
    plan = sub.get("plan")
    plan_obj = _object(plan, "plan", src) if plan is not None else {}
    hard_limit_usd = _required_usd(sub, "hard_limit_usd", "", src)
    if abs(usd_to_cents(hard_limit_usd)) >= DYNAMODB_INT_LIMIT:  # stored as a spend limit in cents
        raise MalformedReplyError(src, f"hard_limit_usd is {hard_limit_usd:.3e}, too large a limit in cents")
    return Subscription(
        hard_limit_usd=hard_limit_usd,
        soft_limit_usd=_required_usd(sub, "soft_limit_usd", "", src),
        system_hard_limit_usd=_required_usd(sub, "system_hard_limit_usd", "", src),
        plan_id=_optional_str(plan_obj.get("id"), "plan.id", src),
        plan_title=_optional_str(plan_obj.get("title"), "plan.title", src),
        has_payment_method=_optional_bool(sub.get("has_payment_method"), "has_payment_method", src),
        billing_mechanism=_optional_str(sub.get("billing_mechanism"), "billing_mechanism", src),
        auto_recharge_enabled=_optional_bool(sub.get("auto_recharge_enabled"), "auto_recharge_enabled", src),
        auto_recharge_threshold_usd=_optional_number(
            sub.get("auto_recharge_threshold"), "auto_recharge_threshold", src
        ),
        auto_recharge_to_balance_usd=_optional_number(
            sub.get("auto_recharge_to_balance"), "auto_recharge_to_balance", src
        ),
    )


def usd_to_cents(amount_usd: Decimal) -> int:
    """Whole cents, rounded half up; the multiplication itself is exact (never rounded at 28 digits)."""
    with localcontext() as context:
        context.prec = SUM_PRECISION
        return int((amount_usd * 100).to_integral_value(rounding=ROUND_HALF_UP))


# --------------------------------------------------------------------------------------------------
# Fetchers: one per source, each a few requests through the client.
# --------------------------------------------------------------------------------------------------


def _in_pages(
    client: SourceClient, path: str, params: dict[str, Any], source: str, parse: Callable[[Iterable[Any]], T]
) -> T:
    """`parse` over every page of a bucketed query, asked again in smaller pages (`PAGE_BUCKETS`) when a
    page is over the size cap; `parse` starts afresh each time."""
    for buckets in PAGE_BUCKETS:
        try:
            return parse(client.iter_pages(path, {**params, "limit": buckets}, source=source))
        except TooLargeError as exc:
            if buckets == PAGE_BUCKETS[-1]:
                raise
            logger.warning("reply over the size cap: asking in smaller pages", source=source, detail=exc.detail)
    raise AssertionError("unreachable")


def _cost_rows_skipped() -> SkippedRows:
    return SkippedRows("cost rows without an amount")


def collect_daily_costs(
    client: SourceClient,
    start: datetime,
    end: datetime,
    *,
    source: str = COSTS_SOURCE,
    skipped: SkippedRows | None = None,
) -> tuple[DailyCost, ...]:
    """Daily USD totals from `/organization/costs` for [start, end), exact sums of the API's rows.

    The period's total (month to date, previous month) is the exact sum of these days; a total that does
    not fit a DynamoDB number fails this source here rather than the snapshot's write. Rows without an
    amount are listed in `skipped`.
    """

    def parse(pages: Iterable[Any]) -> dict[date, Decimal]:
        if skipped is not None:
            skipped.clear()
        return parse_daily_costs(pages, source, skipped)

    totals = _in_pages(client, "/organization/costs", _window(start, end), source, parse)
    exact_sum(totals.values(), "the period's total", source)
    return tuple(DailyCost(day=day, amount_usd=amount) for day, amount in sorted(totals.items()))


def collect_grouped_costs(
    client: SourceClient,
    start: datetime,
    end: datetime,
    *,
    group: str,
    source: str,
    skipped: SkippedRows | None = None,
) -> dict[str, Decimal]:
    """Exact USD totals by `group`; every `(other)` remainder the snapshot may store (at the breakdown cap
    and at each trim cap) is checked to fit a DynamoDB number, so a misfit fails this source only."""

    def parse(pages: Iterable[Any]) -> dict[str, Decimal]:
        if skipped is not None:
            skipped.clear()
        return parse_grouped_costs(pages, group, source, skipped)

    params = {**_window(start, end), "group_by": [group]}
    totals = _in_pages(client, "/organization/costs", params, source, parse)
    shares = [CostShare(key=key, amount_usd=amount) for key, amount in totals.items()]
    noun = "projects" if group == "project_id" else "line items"
    for cap in (BREAKDOWN_CAP, *TRIM_CAPS):
        cap_shares(shares, cap, noun, source=source)
    return totals


def collect_line_item_costs(
    client: SourceClient, start: datetime, end: datetime, *, skipped: SkippedRows | None = None
) -> list[CostShare]:
    """Month-to-date costs by line item, each with its quantity (OpenAI sets `quantity` and
    `quantity_unit` on rows grouped by line item)."""
    quantities = Quantities()

    def parse(pages: Iterable[Any]) -> dict[str, Decimal]:
        if skipped is not None:
            skipped.clear()
        quantities.clear()
        return parse_grouped_costs(pages, "line_item", COSTS_BY_LINE_ITEM, skipped, quantities)

    params = {**_window(start, end), "group_by": ["line_item"]}
    totals = _in_pages(client, "/organization/costs", params, COSTS_BY_LINE_ITEM, parse)
    shares = []
    for key, amount in totals.items():
        quantity, unit = quantities.of(key, COSTS_BY_LINE_ITEM)
        shares.append(CostShare(key=key, amount_usd=amount, quantity=quantity, quantity_unit=unit))
    for cap in (BREAKDOWN_CAP, *TRIM_CAPS):
        cap_shares(shares, cap, "line items", source=COSTS_BY_LINE_ITEM)
    return shares


def _month_days(start: datetime, end: datetime) -> list[date]:
    return [(start + timedelta(days=i)).date() for i in range((end - start).days)]


def _series(days: Sequence[date], amounts: Mapping[date, Decimal], what: str) -> tuple[Decimal, tuple[Decimal, ...]]:
    """(exact total of every bucket, the amount of each of `days`, 0 when it has no bucket)."""
    total = exact_sum(amounts.values(), what, COSTS_BY_API_KEY)
    return total, tuple(amounts.get(day, Decimal(0)) for day in days)


@dataclass(frozen=True)
class KeyShares:
    """What `costs_by_api_key` contributes to a snapshot, before names are attached."""

    keys: list[ApiKeyCost]
    projects: list[DailyShare]


def collect_key_costs(
    client: SourceClient, start: datetime, end: datetime, *, skipped: SkippedRows | None = None
) -> KeyShares:
    """This month's costs by API key and by project, by day, from one query grouped by both (so every
    key comes with the project its costs were booked to, a deleted key's included). Every `(other)`
    remainder the snapshot may store is checked here, so a misfit fails this source only."""

    def parse(pages: Iterable[Any]) -> KeyCosts:
        if skipped is not None:
            skipped.clear()
        return parse_key_costs(pages, COSTS_BY_API_KEY, skipped)

    # OpenAI refuses this grouping for buckets before its floor: the days before it have no key figures.
    floor = max(start, API_KEY_GROUPING_FLOOR)
    params = {**_window(floor, max(end, floor + timedelta(days=1))), "group_by": ["api_key_id", "project_id"]}
    costs = _in_pages(client, "/organization/costs", params, COSTS_BY_API_KEY, parse)
    days = _month_days(start, end)
    keys = []
    for key, amounts in costs.by_key.items():
        total, daily = _series(days, amounts, f"the costs of API key {key!r}")
        keys.append(ApiKeyCost(key=key, amount_usd=total, daily_usd=daily, project_id=costs.key_project.get(key)))
    projects = []
    for project, amounts in costs.by_project.items():
        total, daily = _series(days, amounts, f"the costs of project {project!r}")
        projects.append(DailyShare(key=project, amount_usd=total, daily_usd=daily))
    for cap in (BREAKDOWN_CAP, *TRIM_CAPS):
        cap_daily(keys, cap, "API keys")
        cap_daily(projects, cap, "projects")
    return KeyShares(keys, projects)


S = TypeVar("S", bound=DailyShare)


def cap_daily(shares: Sequence[S], cap: int, noun: str) -> tuple[S, ...]:
    """The `cap` largest shares, then one `(other)` share holding the exact remainder, day by day."""
    previous_other = next((s for s in shares if s.key == OTHER_KEY), None)
    items = sorted((s for s in shares if s.key != OTHER_KEY), key=lambda s: (-s.amount_usd, s.key))
    kept, rest = items[:cap], items[cap:]
    if not rest and previous_other is None:
        return tuple(kept)
    parts = [*rest, *([previous_other] if previous_other else [])]
    what = f"the {noun} beyond the largest {cap}"
    amount = exact_sum((s.amount_usd for s in parts), what, COSTS_BY_API_KEY)
    width = max(len(s.daily_usd) for s in parts)
    daily = tuple(
        exact_sum((s.daily_usd[i] for s in parts if i < len(s.daily_usd)), what, COSTS_BY_API_KEY) for i in range(width)
    )
    other = parts[0].model_copy(update={"key": OTHER_KEY, "amount_usd": amount, "daily_usd": daily})
    if isinstance(other, ApiKeyCost):
        count = len(rest) + (_other_count(previous_other) if isinstance(previous_other, ApiKeyCost) else 0)
        blank = dict.fromkeys(("redacted_value", "project_id", "owner_type", "owner_id", "owner_name", "created_at"))
        other = other.model_copy(update={**blank, "name": f"{count} more {noun}", "owner_left": False})
    return (*kept, other)


def parse_rate_limit(item: object, scope: str, where: str, source: str = PROJECT_RATE_LIMITS) -> RateLimitInfo:
    """One `ProjectRateLimit`: the model and every integer limit (the two the spec requires included)."""
    body = _object(item, where, source)
    limits = {"max_requests_per_1_minute": 0, "max_tokens_per_1_minute": 0}
    for name in limits:
        limits[name] = require_int(body.get(name), f"{where}.{name}", source)
    for name, value in body.items():
        if name.startswith(("max_", "batch_")) and name not in limits:
            limits[name] = require_int(value, f"{where}.{name}", source)
    return RateLimitInfo(scope=scope, model=_required_str(body.get("model"), f"{where}.model", source), limits=limits)


def collect_rate_limits(client: SourceClient, project_id: str) -> tuple[RateLimitInfo, ...]:
    path = f"/organization/projects/{project_id}/rate_limits"
    try:
        items = list(client.iter_list(path, {"limit": 100}, source=PROJECT_RATE_LIMITS))
    except NotFoundError:
        return ()
    return tuple(parse_rate_limit(item, project_id, f"{project_id}: data[{i}]") for i, item in enumerate(items))


def collect_api_keys(client: SourceClient, project_id: str) -> tuple[KeyInfo, ...]:
    """A project's API keys (an archived or vanished project's 404 is no keys, not a failure)."""
    try:
        items = list(client.iter_list(f"/organization/projects/{project_id}/api_keys", {"limit": 100}, source=API_KEYS))
    except NotFoundError:
        return ()
    return tuple(parse_api_key(item, project_id, f"{project_id}: data[{i}]", API_KEYS) for i, item in enumerate(items))


def collect_service_accounts(client: SourceClient, project_id: str) -> tuple[tuple[str, str | None], ...]:
    path = f"/organization/projects/{project_id}/service_accounts"
    try:
        items = list(client.iter_list(path, {"limit": 100}, source=SERVICE_ACCOUNTS))
    except NotFoundError:
        return ()
    return tuple(parse_named(item, f"{project_id}: data[{i}]", SERVICE_ACCOUNTS) for i, item in enumerate(items))


def collect_users(client: SourceClient) -> tuple[tuple[str, str | None], ...]:
    items = client.iter_list("/organization/users", {"limit": 100}, source=USERS)
    return tuple(parse_named(item, f"data[{i}]", USERS) for i, item in enumerate(items))


def _line_item_source(client: SourceClient, start: datetime, end: datetime) -> Partial:
    skipped = _cost_rows_skipped()
    value = collect_line_item_costs(client, start, end, skipped=skipped)
    return Partial(value, skipped.note(COSTS_BY_LINE_ITEM))


def _key_costs_source(client: SourceClient, start: datetime, end: datetime) -> Partial:
    skipped = _cost_rows_skipped()
    value = collect_key_costs(client, start, end, skipped=skipped)
    return Partial(value, skipped.note(COSTS_BY_API_KEY))


def _daily_costs_source(client: SourceClient, start: datetime, end: datetime, source: str) -> Partial:
    skipped = _cost_rows_skipped()
    value = collect_daily_costs(client, start, end, source=source, skipped=skipped)
    return Partial(value, skipped.note(source))


def _grouped_costs_source(client: SourceClient, start: datetime, end: datetime, group: str, source: str) -> Partial:
    skipped = _cost_rows_skipped()
    value = collect_grouped_costs(client, start, end, group=group, source=source, skipped=skipped)
    return Partial(value, skipped.note(source))


def collect_usage(client: SourceClient, spec: UsageSpec, start: datetime, end: datetime) -> UsageSummary:
    params = {**_window(start, end), "group_by": list(spec.group_by)}
    return _in_pages(client, spec.path, params, spec.source, partial(parse_usage, spec))


def collect_usage_attribution(client: SourceClient, start: datetime, end: datetime) -> UsageAttribution:
    params = {**_window(start, end), "group_by": list(ATTRIBUTION_GROUPS)}
    return _in_pages(client, ATTRIBUTION_SPEC.path, params, USAGE_ATTRIBUTION, parse_usage_attribution)


def collect_projects(client: SourceClient) -> tuple[ProjectInfo, ...]:
    items = client.iter_list("/organization/projects", {"limit": 100, "include_archived": "true"}, source=PROJECTS)
    return tuple(parse_project(item, f"data[{index}]") for index, item in enumerate(items))


def collect_spend_limit(client: SourceClient, path: str, scope: str, source: str) -> SpendLimit | None:
    """The hard spend limit at `path`, or None when none is set (the API answers 404)."""
    try:
        body = client.get_json(path, None, source=source)
    except NotFoundError:
        return None
    return parse_spend_limit(body, scope, source)


def collect_spend_alerts(client: SourceClient, path: str, scope: str, source: str) -> tuple[SpendAlertInfo, ...]:
    items = client.iter_list(path, {"limit": 100}, source=source)
    return tuple(parse_spend_alert(item, scope, f"data[{index}]", source) for index, item in enumerate(items))


def collect_admin_key_expiry(client: SourceClient, key_id: str) -> datetime | None:
    return parse_admin_key(client.get_json(f"/organization/admin_api_keys/{key_id}", None, source=ADMIN_KEY))


def collect_credit_grants(client: SourceClient) -> tuple[CreditSummary, tuple[CreditGrant, ...]]:
    body = client.get_json("/dashboard/billing/credit_grants", None, source=CREDIT_GRANTS, endpoint=LEGACY)
    return parse_credit_grants(body)


def collect_subscription(client: SourceClient) -> Subscription:
    body = client.get_json("/dashboard/billing/subscription", None, source=SUBSCRIPTION, endpoint=LEGACY)
    return parse_subscription(body)


# --------------------------------------------------------------------------------------------------
# The poll
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Outcome:
    """What one unit of work produced: a value, or the failure that stands in for it."""

    value: Any = None
    failure: SourceFailure | None = None
    conditions: frozenset[str] = frozenset()
    note: SourceFailure | None = None
    """what a successful source skipped (`SKIPPED_ROWS`)"""

    @property
    def ok(self) -> bool:
        return self.failure is None


def _attempt(source: str, work: Callable[[], Any]) -> _Outcome:
    try:
        value = work()
        if isinstance(value, Partial):
            return _Outcome(value=value.value, note=value.note)
        return _Outcome(value=value)
    except SourceError as exc:
        if isinstance(exc, KeyProblemError):
            # The key's own problem: its condition reports it once for every source it fails.
            failure = SourceFailure(source=source, kind=KEY_FAILURE, detail=exc.detail)
            return _Outcome(failure=failure, conditions=frozenset(exc.conditions))
        return _Outcome(failure=SourceFailure(source=source, kind=exc.kind, detail=exc.detail))
    except Exception as exc:  # a bug must cost one source, never the snapshot
        detail = f"unexpected {type(exc).__name__}: {scrub(str(exc))[:200]}"
        logger.error("unexpected error in a poll source", source=source, error=type(exc).__name__)
        return _Outcome(failure=SourceFailure(source=source, kind="error", detail=detail))


@dataclass
class _PerProject:
    """Results of one per-project source (spend limit or alerts) across every active project."""

    source: str
    outcomes: dict[str, _Outcome] = field(default_factory=dict)

    def values(self) -> list[Any]:
        return [o.value for _, o in sorted(self.outcomes.items()) if o.ok and o.value is not None]

    def failure(self) -> SourceFailure | None:
        failed = [(pid, o.failure) for pid, o in sorted(self.outcomes.items()) if o.failure is not None]
        if not failed:
            return None
        listed = "; ".join(f"{pid}: {f.detail}" for pid, f in failed[:3])
        more = f"; and {len(failed) - 3} more" if len(failed) > 3 else ""
        detail = f"{len(failed)} of {len(self.outcomes)} projects failed: {listed}{more}"
        return SourceFailure(source=self.source, kind=failed[0][1].kind, detail=detail)

    def conditions(self) -> frozenset[str]:
        return frozenset(c for o in self.outcomes.values() for c in o.conditions)


def _plan(org: OrganizationConfig, client: SourceClient, poll_time: datetime) -> dict[str, Callable[[], Any]]:
    """Every independent unit of work of this poll, by source name."""
    start, end, previous = month_start(poll_time), next_midnight(poll_time), previous_month_start(poll_time)
    plan: dict[str, Callable[[], Any]] = {
        COSTS_SOURCE: partial(_daily_costs_source, client, start, end, COSTS_SOURCE),
        COSTS_PREVIOUS_MONTH: partial(_daily_costs_source, client, previous, start, COSTS_PREVIOUS_MONTH),
        COSTS_BY_PROJECT: partial(_grouped_costs_source, client, start, end, "project_id", COSTS_BY_PROJECT),
        COSTS_BY_LINE_ITEM: partial(_line_item_source, client, start, end),
        COSTS_BY_API_KEY: partial(_key_costs_source, client, start, end),
    }
    for spec in USAGE_SPECS:
        plan[spec.source] = partial(collect_usage, client, spec, start, end)
    plan[USAGE_ATTRIBUTION] = partial(collect_usage_attribution, client, start, end)
    plan[PROJECTS] = lambda: collect_projects(client)
    plan[USERS] = lambda: collect_users(client)
    plan[SPEND_LIMIT] = lambda: collect_spend_limit(client, "/organization/spend_limit", "organization", SPEND_LIMIT)
    plan[SPEND_ALERTS] = lambda: collect_spend_alerts(
        client, "/organization/spend_alerts", "organization", SPEND_ALERTS
    )
    if org.admin_key_id:
        key_id = org.admin_key_id
        plan[ADMIN_KEY] = lambda: collect_admin_key_expiry(client, key_id)
    if client.has_key("session"):
        plan[CREDIT_GRANTS] = lambda: collect_credit_grants(client)
        plan[SUBSCRIPTION] = lambda: collect_subscription(client)
    return plan


def _project_spend_limit(client: SourceClient, project_id: str) -> SpendLimit | None:
    path = f"/organization/projects/{project_id}/spend_limit"
    return collect_spend_limit(client, path, project_id, PROJECT_SPEND_LIMITS)


def _project_spend_alerts(client: SourceClient, project_id: str) -> tuple[SpendAlertInfo, ...]:
    path = f"/organization/projects/{project_id}/spend_alerts"
    return collect_spend_alerts(client, path, project_id, PROJECT_SPEND_ALERTS)


PER_PROJECT: tuple[tuple[str, Callable[[SourceClient, str], Any], bool], ...] = (
    (PROJECT_SPEND_LIMITS, _project_spend_limit, False),
    (PROJECT_SPEND_ALERTS, _project_spend_alerts, False),
    (PROJECT_RATE_LIMITS, collect_rate_limits, False),
    (API_KEYS, collect_api_keys, True),
    (SERVICE_ACCOUNTS, collect_service_accounts, True),
)
"""Sources asked once per project: (source, work, whether archived projects are asked too). Limits and
alerts matter only where spending can happen; the names of keys matter in every project, since a project
archived this month may have spent through its keys before."""


def _per_project(
    pool: ThreadPoolExecutor, client: SourceClient, projects: Iterable[ProjectInfo]
) -> dict[str, dict[str, Future[_Outcome]]]:
    """Submit every per-project request (`PER_PROJECT`) at once, on the poll's pool."""
    futures: dict[str, dict[str, Future[_Outcome]]] = {source: {} for source, _, _ in PER_PROJECT}
    for project in projects:
        for source, work, archived_too in PER_PROJECT:
            if project.status == "archived" and not archived_too:
                continue
            futures[source][project.id] = pool.submit(_attempt, source, partial(work, client, project.id))
    return futures


def _wait(future: Future[_Outcome], source: str, deadline: Deadline | None) -> _Outcome:
    """The source's outcome, or a `deadline` failure if it is still running just after the poll's deadline."""
    timeout = None if deadline is None else max(0.0, deadline.remaining_s() + POLL_GRACE_S)
    try:
        return future.result(timeout=timeout)
    except (FutureTimeoutError, CancelledError):
        assert deadline is not None
        detail = f"still running when the poll's {deadline.total_s:.1f} s ran out: not collected"
        return _Outcome(failure=SourceFailure(source=source, kind=DeadlineError.kind, detail=detail))


def collect_snapshot(
    org: OrganizationConfig,
    client: SourceClient,
    *,
    poll_time: datetime,
    now: Callable[[], datetime],
    max_workers: int = MAX_WORKERS,
    deadline: Deadline | None = None,
) -> Snapshot:
    """Poll every source for one organization. Never raises for a failed source: it is listed instead.

    Returns by `deadline` (default: the client's `deadline`, if it has one) plus `POLL_GRACE_S`, whatever
    the worker threads are doing: a source still running then is a `deadline` failure, its thread is left
    to end on its own (every request is cut at the same deadline), and what finished is kept.
    """
    if deadline is None:
        deadline = getattr(client, "deadline", None)
    plan = _plan(org, client, poll_time)
    per_project = {source: _PerProject(source) for source, _, _ in PER_PROJECT}
    # Not a `with` block: leaving it would wait for a stuck worker, past the deadline.
    pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=f"poll-{org.id}")
    try:
        futures = {source: pool.submit(_attempt, source, work) for source, work in plan.items()}
        projects = _wait(futures[PROJECTS], PROJECTS, deadline)
        if projects.ok:
            for source, by_project in _per_project(pool, client, projects.value).items():
                per_project[source].outcomes = {pid: _wait(f, source, deadline) for pid, f in by_project.items()}
        outcomes = {source: _wait(future, source, deadline) for source, future in futures.items()}
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    if not projects.ok:
        assert projects.failure is not None
        for source in per_project:
            outcomes[source] = _Outcome(
                failure=SourceFailure(
                    source=source, kind=projects.failure.kind, detail="not read: the project list could not be read"
                )
            )
    else:
        for source, results in per_project.items():
            outcomes[source] = _Outcome(
                value=results.values(), failure=results.failure(), conditions=results.conditions()
            )
    return fit_item_size(_assemble(org, outcomes, poll_time=poll_time, collected_at=now()))


def _value(outcomes: Mapping[str, _Outcome], source: str, default: T) -> T:
    outcome = outcomes.get(source)
    if outcome is None or outcome.value is None:
        return default
    value: T = outcome.value
    return value


def _ok(outcomes: Mapping[str, _Outcome], source: str) -> bool:
    outcome = outcomes.get(source)
    return outcome is not None and outcome.ok


def _assemble(
    org: OrganizationConfig, outcomes: Mapping[str, _Outcome], *, poll_time: datetime, collected_at: datetime
) -> Snapshot:
    current: tuple[DailyCost, ...] = _value(outcomes, COSTS_SOURCE, ())
    previous: tuple[DailyCost, ...] = _value(outcomes, COSTS_PREVIOUS_MONTH, ())
    projects: tuple[ProjectInfo, ...] = _value(outcomes, PROJECTS, ())
    names = {p.id: p.name for p in projects}
    by_project: dict[str, Decimal] = _value(outcomes, COSTS_BY_PROJECT, {})
    by_item: list[CostShare] = _value(outcomes, COSTS_BY_LINE_ITEM, [])
    by_key: KeyShares = _value(outcomes, COSTS_BY_API_KEY, KeyShares([], []))
    credit_summary, credit_grants = _credits(org, outcomes, poll_time)
    project_alerts: list[tuple[SpendAlertInfo, ...]] = _value(outcomes, PROJECT_SPEND_ALERTS, [])
    failures = [
        reported
        for s in SOURCE_ORDER
        if (o := outcomes.get(s)) is not None and (reported := o.failure or o.note) is not None
    ]
    return Snapshot(
        org_id=org.id,
        org_name=org.name,
        poll_time=poll_time,
        collected_at=collected_at,
        month_to_date_usd=(
            exact_sum((d.amount_usd for d in current), "month to date", COSTS_SOURCE)
            if _ok(outcomes, COSTS_SOURCE)
            else None
        ),
        daily_costs_usd=tuple(sorted({d.day: d for d in (*previous, *current)}.values(), key=lambda d: d.day)),
        previous_month_usd=(
            exact_sum((d.amount_usd for d in previous), "previous month", COSTS_PREVIOUS_MONTH)
            if _ok(outcomes, COSTS_PREVIOUS_MONTH)
            else None
        ),
        costs_by_project_usd=cap_shares(
            [CostShare(key=k, name=names.get(k), amount_usd=v) for k, v in by_project.items()],
            BREAKDOWN_CAP,
            "projects",
            source=COSTS_BY_PROJECT,
        ),
        costs_by_line_item_usd=cap_shares(by_item, BREAKDOWN_CAP, "line items", source=COSTS_BY_LINE_ITEM),
        costs_by_api_key_usd=cap_daily(_named_keys(by_key.keys, outcomes), BREAKDOWN_CAP, "API keys"),
        daily_costs_by_project_usd=cap_daily(by_key.projects, BREAKDOWN_CAP, "projects"),
        projects=projects,
        spend_limits=_spend_limits(org, outcomes),
        spend_alerts=(
            *_value(outcomes, SPEND_ALERTS, ()),
            *(alert for alerts in project_alerts for alert in alerts),
        ),
        credit_summary=credit_summary,
        credit_grants=credit_grants,
        subscription=_value(outcomes, SUBSCRIPTION, None),
        usage={spec.name: v for spec in USAGE_SPECS if (v := _value(outcomes, spec.source, None)) is not None},
        completions_attribution=_attribution(outcomes),
        rate_limits=_rate_limits(outcomes),
        admin_key_expires_at=_value(outcomes, ADMIN_KEY, None),
        conditions=tuple(sorted({c for o in outcomes.values() for c in o.conditions})),
        failures=tuple(failures),
        sources_ok=tuple(s for s in SOURCE_ORDER if _ok(outcomes, s)),
    )


def _rate_limits(outcomes: Mapping[str, _Outcome]) -> tuple[RateLimitInfo, ...]:
    """The rate limits of the models used this month (`gpt-4.1` covers `gpt-4.1-2025-04-14`), at most
    `RATE_LIMITS_CAP`, in project order."""
    summaries: list[UsageSummary | None] = [_value(outcomes, spec.source, None) for spec in USAGE_SPECS]
    used = {m for s in summaries if s is not None for m in s.by_model if m not in (OTHER_KEY, NONE_KEY)}
    per_project: list[tuple[RateLimitInfo, ...]] = _value(outcomes, PROJECT_RATE_LIMITS, [])
    kept = [
        limit
        for limits in per_project
        for limit in limits
        if any(model == limit.model or model.startswith(f"{limit.model}-") for model in used)
    ]
    return tuple(kept[:RATE_LIMITS_CAP])


def _attribution(outcomes: Mapping[str, _Outcome]) -> UsageAttribution | None:
    """The completions attribution with the names of its users, where `/organization/users` knows them."""
    attribution: UsageAttribution | None = _value(outcomes, USAGE_ATTRIBUTION, None)
    if attribution is None:
        return None
    listed: tuple[tuple[str, str | None], ...] = _value(outcomes, USERS, ())
    names = {user: name for user, name in listed if name and user in attribution.by_user}
    return UsageAttribution.model_validate(dict(attribution) | {"user_names": names})


def _named_keys(keys: Sequence[ApiKeyCost], outcomes: Mapping[str, _Outcome]) -> list[ApiKeyCost]:
    """Each key's name, redacted value, owner and project, from whichever name sources answered.

    A key no project lists (deleted since it spent, or its project's list failed) keeps its id and the
    project its costs were booked to; an owner without a name (a service account named "") is shown by
    id; a user owner missing from a complete `/organization/users` has left the organization.
    """
    key_lists: list[tuple[KeyInfo, ...]] = _value(outcomes, API_KEYS, [])
    account_lists: list[tuple[tuple[str, str | None], ...]] = _value(outcomes, SERVICE_ACCOUNTS, [])
    listed_users: tuple[tuple[str, str | None], ...] = _value(outcomes, USERS, ())
    infos = {k.id: k for keys_of_project in key_lists for k in keys_of_project}
    accounts = {i: n for listed in account_lists for i, n in listed}
    users_ok = _ok(outcomes, USERS)
    users = dict(listed_users)
    named = []
    for share in keys:
        info = infos.get(share.key)
        if info is None:
            named.append(share)
            continue
        owner_name = info.owner_name
        if owner_name is None and info.owner_id is not None:
            owner_name = (accounts if info.owner_type == "service_account" else users).get(info.owner_id)
        # Validated (not `model_copy`), so the model's scrubbing of names and redacted values applies.
        named.append(
            ApiKeyCost.model_validate(
                dict(share)
                | {
                    "name": info.name,
                    "redacted_value": info.redacted_value,
                    "project_id": share.project_id or info.project_id,
                    "owner_type": info.owner_type,
                    "owner_id": info.owner_id,
                    "owner_name": owner_name,
                    "owner_left": users_ok and info.owner_type == "user" and info.owner_id not in users,
                    "created_at": info.created_at,
                }
            )
        )
    return named


def _spend_limits(org: OrganizationConfig, outcomes: Mapping[str, _Outcome]) -> tuple[SpendLimit, ...]:
    """Official limits (organization, then each project), the subscription's, and the declared one."""
    limits: list[SpendLimit] = []
    org_limit: SpendLimit | None = _value(outcomes, SPEND_LIMIT, None)
    if org_limit is not None:
        limits.append(org_limit)
    limits.extend(_value(outcomes, PROJECT_SPEND_LIMITS, []))
    subscription: Subscription | None = _value(outcomes, SUBSCRIPTION, None)
    if subscription is not None and subscription.hard_limit_usd is not None:
        limits.append(
            SpendLimit(
                scope="organization", threshold_cents=usd_to_cents(subscription.hard_limit_usd), source="subscription"
            )
        )
    if org.hard_limit_usd is not None and not any(limit.scope == "organization" for limit in limits):
        limits.append(
            SpendLimit(scope="organization", threshold_cents=usd_to_cents(org.hard_limit_usd), source="config")
        )
    return tuple(limits)


def _credits(
    org: OrganizationConfig, outcomes: Mapping[str, _Outcome], poll_time: datetime
) -> tuple[CreditSummary | None, tuple[CreditGrant, ...]]:
    """The session key's credit grants, else the grants declared in the config (source "config")."""
    if _ok(outcomes, CREDIT_GRANTS):
        summary, grants = outcomes[CREDIT_GRANTS].value
        return summary, grants
    if not org.credit_grants:
        return None, ()
    grants = tuple(
        CreditGrant(
            id=g.id,
            grant_amount_usd=g.amount_usd,
            used_amount_usd=g.used_usd,
            effective_at=_midnight(g.effective_at) if g.effective_at else None,
            expires_at=_midnight(g.expires_at),
            source="config",
        )
        for g in org.credit_grants
    )
    live = [g for g in grants if g.expires_at is None or g.expires_at > poll_time]
    summary = CreditSummary(
        total_granted_usd=_exactly(g.grant_amount_usd for g in grants),
        total_used_usd=_exactly(g.used_amount_usd for g in grants),
        total_available_usd=_exactly(g.remaining_usd for g in live),
    )
    return summary, grants


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


# --------------------------------------------------------------------------------------------------
# Item size
# --------------------------------------------------------------------------------------------------


def _number_size(value: int | Decimal) -> int:
    digits = len(Decimal(value).normalize().as_tuple().digits)
    return min(21, (digits + 1) // 2 + 1)


def attribute_size(value: Any) -> int:
    """Bytes DynamoDB counts for one attribute value (its published item-size rules)."""
    if isinstance(value, str):
        return len(value.encode("utf-8"))
    if isinstance(value, bool) or value is None:
        return 1
    if isinstance(value, int | Decimal):
        return _number_size(value)
    if isinstance(value, dict):
        return 3 + sum(len(str(k).encode("utf-8")) + attribute_size(v) + 1 for k, v in value.items())
    if isinstance(value, list | tuple):
        return 3 + sum(attribute_size(v) + 1 for v in value)
    raise TypeError(f"not a DynamoDB value: {type(value).__name__}")


def item_size_bytes(snapshot: Snapshot) -> int:
    """Size of the snapshot's DynamoDB item: attribute names plus values."""
    item = snapshot.to_item(expires_at=2**31)
    return sum(len(name.encode("utf-8")) + attribute_size(value) for name, value in item.items())


def _trimmed(snapshot: Snapshot, cap: int) -> Snapshot:
    usage = {}
    for name, summary in snapshot.usage.items():
        spec = USAGE_BY_NAME.get(name)
        rank = spec.required[0] if spec else next(iter(summary.totals), "")
        usage[name] = UsageSummary(
            totals=summary.totals,
            by_model=cap_counts(summary.by_model, rank, cap),
            by_project=cap_counts(summary.by_project, rank, cap),
        )
    attribution = snapshot.completions_attribution
    if attribution is not None:
        rank = ATTRIBUTION_SPEC.required[0]
        attribution = attribution.model_copy(
            update={
                name: cap_counts(getattr(attribution, name), rank, cap)
                for name in ("by_api_key", "by_user", "by_batch", "by_service_tier")
            }
        )
    return snapshot.model_copy(
        update={
            "completions_attribution": attribution,
            "usage": usage,
            "costs_by_project_usd": cap_shares(
                list(snapshot.costs_by_project_usd), cap, "projects", source=COSTS_BY_PROJECT
            ),
            "costs_by_line_item_usd": cap_shares(
                list(snapshot.costs_by_line_item_usd), cap, "line items", source=COSTS_BY_LINE_ITEM
            ),
            "costs_by_api_key_usd": cap_daily(snapshot.costs_by_api_key_usd, cap, "API keys"),
            "daily_costs_by_project_usd": cap_daily(snapshot.daily_costs_by_project_usd, cap, "projects"),
        }
    )


FAILURES_KEPT_WHEN_TRIMMED = 50
FAILURE_DETAIL_WHEN_TRIMMED = 200


def _fewer_failures(snapshot: Snapshot) -> Snapshot:
    """Last resort: shorter failure details and at most FAILURES_KEPT_WHEN_TRIMMED named failures, the rest
    counted in one; every failing source stays in the summary's `failed_sources` through the kept ones."""
    cut = FAILURE_DETAIL_WHEN_TRIMMED
    failures = [
        f.model_copy(update={"detail": f.detail[: cut - 1] + "…" if len(f.detail) > cut else f.detail})
        for f in snapshot.failures
    ]
    if len(failures) > FAILURES_KEPT_WHEN_TRIMMED:
        rest = failures[FAILURES_KEPT_WHEN_TRIMMED - 1 :]
        kinds = ", ".join(sorted({f.kind for f in rest}))
        failures = [
            *failures[: FAILURES_KEPT_WHEN_TRIMMED - 1],
            SourceFailure(
                source="(other)",
                kind="error",
                detail=f"{len(rest)} more sources failed ({kinds}); see the poller's logs",
            ),
        ]
    return snapshot.model_copy(update={"failures": tuple(failures)})


def fit_item_size(snapshot: Snapshot, limit_bytes: int = ITEM_SIZE_LIMIT_BYTES) -> Snapshot:
    """Trim the breakdowns (then the project lists) until the item fits; say so in `conditions`.

    Totals never change: trimmed entries are summed into each breakdown's `(other)` entry.
    """
    if item_size_bytes(snapshot) <= limit_bytes:
        return snapshot
    original = item_size_bytes(snapshot)
    fitted = snapshot
    for cap in TRIM_CAPS:
        fitted = _trimmed(fitted, cap)
        if item_size_bytes(fitted) <= limit_bytes:
            break
    while item_size_bytes(fitted) > limit_bytes and (fitted.projects or len(fitted.spend_limits) > 1):
        # Thousands of projects: keep the first half of each per-project list until it fits.
        org_limits = tuple(s for s in fitted.spend_limits if s.scope == "organization")
        project_limits = [s for s in fitted.spend_limits if s.scope != "organization"]
        project_alerts = [a for a in fitted.spend_alerts if a.scope != "organization"]
        fitted = fitted.model_copy(
            update={
                "projects": fitted.projects[: len(fitted.projects) // 2],
                "spend_limits": (*org_limits, *project_limits[: len(project_limits) // 2]),
                "spend_alerts": (
                    *(a for a in fitted.spend_alerts if a.scope == "organization"),
                    *project_alerts[: len(project_alerts) // 2],
                ),
            }
        )
        if not fitted.projects and not project_limits and not project_alerts:
            break
    if item_size_bytes(fitted) > limit_bytes:
        fitted = _fewer_failures(fitted)
    logger.warning(
        "snapshot trimmed to fit a DynamoDB item",
        org_id=snapshot.org_id,
        size_bytes=original,
        trimmed_bytes=item_size_bytes(fitted),
    )
    return fitted.model_copy(update={"conditions": tuple(sorted({*fitted.conditions, TRIMMED_CONDITION}))})
