"""The snapshot: what one poll learned about one organization's money at one moment.

Owns the typed model (frozen, `spendwatch.core.model`), its DynamoDB item form (native types only: `Decimal`, `int`,
`str`, `bool`, lists and maps; times as ISO-8601 UTC strings) and its JSON form for
`spendwatch poll --json` (amounts as exact decimal strings). Units are in the field names: `_usd` is US
dollars, `_cents` is US cents. Every item carries `schema_version` so a rolling deploy can tell old items
from new ones; readers accept every version from 1 to `SCHEMA_VERSION` (fields added later default).
Field reference: docs/snapshot.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any

from spendwatch.core.errors import SnapshotFormatError
from spendwatch.core.model import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator
from spendwatch.core.redact import REDACTED, scrub, scrub_data

SCHEMA_VERSION = 3
ITEM_KIND = "snapshot"
REDACTED_VALUE_MAX = 40
"""Longest `redacted_value` kept as is (OpenAI's are like `sk-proj-****abcd`; a whole key is ~160)."""
VERIFY_NONCE_PATTERN = r"^[a-z0-9]{6,32}$"
"""a `spendwatch verify` run's nonce, as `Snapshot.verify` carries it"""


def org_pk(org_id: str) -> str:
    return f"ORG#{org_id}"


def snapshot_sk(poll_time: datetime) -> str:
    return f"SNAP#{isoformat_utc(poll_time)}"


def isoformat_utc(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("naive datetime: every spendwatch time is UTC-aware")
    # Not strftime: its %Y leaves years below 1000 unpadded on glibc, which no ISO parser reads back.
    m = moment.astimezone(UTC)
    return f"{m.year:04d}-{m.month:02d}-{m.day:02d}T{m.hour:02d}:{m.minute:02d}:{m.second:02d}Z"


def parse_utc(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"time without a zone: {text!r}")
    return moment.astimezone(UTC)


def month_of(moment: datetime) -> str:
    """The UTC calendar month (`YYYY-MM`), as OpenAI's daily cost buckets are UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m")


def _exact(value: object) -> object:
    """Amounts must never have been floats: accept Decimal, int or a decimal string only."""
    if isinstance(value, float):
        raise ValueError("amount is a float; amounts must be exact (Decimal, int or decimal string)")
    if isinstance(value, bool):
        raise ValueError("amount is a boolean")
    return value


def _utc(value: object) -> object:
    if isinstance(value, str):
        return parse_utc(value)
    if isinstance(value, datetime) and value.tzinfo is None:
        raise ValueError("naive datetime: every spendwatch time is UTC-aware")
    return value


Usd = Annotated[Decimal, BeforeValidator(_exact)]
UtcTime = Annotated[datetime, BeforeValidator(_utc)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


NOTE_KINDS = frozenset({"skipped_rows"})
"""`SourceFailure.kind`s that note something about a source that answered (it is in `sources_ok` too)."""
DETAIL_MAX_CHARS = 1000
"""A failure's detail is cut here (a reply's own error text can be arbitrarily long)."""


class SourceFailure(_Model):
    """A data source that failed during the poll, kept in the snapshot so nothing fails silently."""

    source: str
    kind: str
    """auth | malformed | rate_limited | unavailable | rejected | error"""
    detail: str

    @field_validator("detail")
    @classmethod
    def _scrubbed(cls, value: str) -> str:
        # Details quote replies (error messages, codes): whatever a reply echoed, no secret is stored, and
        # a reply that echoes pages of text cannot crowd the figures out of the item.
        text = scrub(value)
        return text if len(text) <= DETAIL_MAX_CHARS else text[: DETAIL_MAX_CHARS - 1] + "…"


class DailyCost(_Model):
    day: date
    amount_usd: Usd


class CostShare(_Model):
    """Month-to-date spend of one project or line item."""

    key: str
    """project id, or the line item's name"""
    name: str | None = None
    """project name when known"""
    amount_usd: Usd
    quantity: Usd | None = None
    """line items (schema 3): the month's exact sum of OpenAI's `quantity`, in `quantity_unit`"""
    quantity_unit: str | None = None
    """`tokens`, `1000_tokens`, `images`, …; None when no single unit applies (OpenAI's null, or mixed)"""


class DailyShare(_Model):
    """This UTC month's spend of one project, by day: what the per-project spike rule needs."""

    key: str
    """project id; `(none)` for costs outside a project, `(other)` for those past the cap"""
    amount_usd: Usd
    """month to date: the exact sum of `daily_usd`"""
    daily_usd: tuple[Usd, ...] = ()
    """day i is the (i+1)th of the poll's UTC month, through the poll's day"""


class ApiKeyCost(DailyShare):
    """This UTC month's spend of one API key, with who the key is, as far as OpenAI could say.

    `key` is the key's id (`key_…`), `(none)` for costs made without a key, `(other)` for the keys past
    the cap. A key deleted since it spent, or whose names could not be read, has only its id (and the
    project its costs were booked to): shown by id, never dropped from the totals.
    """

    name: str | None = None
    redacted_value: str | None = None
    """as OpenAI shows it (`sk-proj-…abcd`); the secret itself is never in a reply"""
    project_id: str | None = None
    owner_type: str | None = None
    """user | service_account"""
    owner_id: str | None = None
    owner_name: str | None = None
    """the user's name (else e-mail) or the service account's name; None when unknown or unnamed"""
    owner_left: bool = False
    """the owning user is no longer among the organization's users"""
    created_at: UtcTime | None = None

    @field_validator("name", "owner_name")
    @classmethod
    def _no_key_shapes(cls, value: str | None) -> str | None:
        # OpenAI never sends a key's secret, but a name is free text someone typed: a pasted key is cut.
        return None if value is None else scrub(value)

    @field_validator("redacted_value")
    @classmethod
    def _redacted(cls, value: str | None) -> str | None:
        # Only what reads as redacted (short, with OpenAI's mask) is kept; anything else could be the key.
        if value is None or (len(value) <= REDACTED_VALUE_MAX and any(m in value for m in ("*", "...", "…"))):
            return value
        return REDACTED

    def label(self) -> str:
        """How the key reads in a message: its name and redacted value, else its id."""
        if self.key in ("(none)", "(other)"):
            return self.name or ("costs without an API key" if self.key == "(none)" else self.key)
        if self.name and self.redacted_value:
            return f"{self.name} ({self.redacted_value})"
        return self.name or (f"{self.key} ({self.redacted_value})" if self.redacted_value else self.key)

    def display(self) -> str:
        """The key and its owner, as ranked lists show it: `Chat backend (sk-proj-****abcd), Ada`."""
        owner = self.owner_label()
        return f"{self.label()}, {owner}" if owner else self.label()

    def owner_label(self) -> str | None:
        """The owner as a message shows it: name, else id; None when the key has no known owner."""
        if self.owner_id is None and self.owner_name is None:
            return None
        kind = "service account" if self.owner_type == "service_account" else "user"
        who = self.owner_name or f"{kind} {self.owner_id}"
        return f"{who} (left the organization)" if self.owner_left else who


class ProjectInfo(_Model):
    id: str
    name: str | None = None
    status: str | None = None


class SpendLimit(_Model):
    """A monthly hard spend limit: the official API's (cents), the legacy subscription's or the config's."""

    scope: str
    """`organization` or a project id"""
    threshold_cents: int
    source: str = "admin_api"
    """admin_api | subscription | config"""
    enforcement_status: str | None = None

    @property
    def threshold_usd(self) -> Decimal:
        return Decimal(self.threshold_cents) / 100


class SpendAlertInfo(_Model):
    """One of OpenAI's own e-mail spend alerts (the API cannot say whether it fired)."""

    scope: str
    id: str
    threshold_cents: int


class RateLimitInfo(_Model):
    """A project's rate limits for one model (`ProjectRateLimit`): `max_requests_per_1_minute`,
    `max_tokens_per_1_minute` and whichever optional `max_*` / `batch_*` limits OpenAI gives for it."""

    scope: str
    """the project id"""
    model: str
    limits: dict[str, int] = Field(default_factory=dict)


class CreditGrant(_Model):
    id: str
    grant_amount_usd: Usd
    used_amount_usd: Usd
    effective_at: UtcTime | None = None
    expires_at: UtcTime | None = None
    source: str = "session_key"
    """session_key | config"""

    @property
    def remaining_usd(self) -> Decimal:
        return max(Decimal(0), self.grant_amount_usd - self.used_amount_usd)


class CreditSummary(_Model):
    total_granted_usd: Usd
    total_used_usd: Usd
    total_available_usd: Usd
    total_paid_available_usd: Usd | None = None


class Subscription(_Model):
    """The legacy billing subscription (session key): limits in USD, plan and auto-recharge."""

    hard_limit_usd: Usd | None = None
    soft_limit_usd: Usd | None = None
    system_hard_limit_usd: Usd | None = None
    plan_id: str | None = None
    plan_title: str | None = None
    has_payment_method: bool | None = None
    billing_mechanism: str | None = None
    auto_recharge_enabled: bool | None = None
    auto_recharge_threshold_usd: Usd | None = None
    auto_recharge_to_balance_usd: Usd | None = None


class UsageSummary(_Model):
    """Month-to-date totals of one usage endpoint: counts (tokens, requests, images, …), never money."""

    totals: dict[str, int] = Field(default_factory=dict)
    by_model: dict[str, dict[str, int]] = Field(default_factory=dict)
    by_project: dict[str, dict[str, int]] = Field(default_factory=dict)


class UsageAttribution(_Model):
    """Month-to-date completions usage by who and how: API key, user, batch or not, service tier (counts;
    batch and service tier change the price). Each breakdown is capped with `(other)` and sums to `totals`."""

    totals: dict[str, int] = Field(default_factory=dict)
    by_api_key: dict[str, dict[str, int]] = Field(default_factory=dict)
    by_user: dict[str, dict[str, int]] = Field(default_factory=dict)
    by_batch: dict[str, dict[str, int]] = Field(default_factory=dict)
    """`batch`, `standard` (OpenAI's `batch: false`) or `(none)`"""
    by_service_tier: dict[str, dict[str, int]] = Field(default_factory=dict)
    user_names: dict[str, str] = Field(default_factory=dict)
    """names (else e-mails) of the users in `by_user`, from `/organization/users`; a user who left has none"""

    @field_validator("user_names")
    @classmethod
    def _no_key_shapes(cls, value: dict[str, str]) -> dict[str, str]:
        return {user: scrub(name) for user, name in value.items()}


class Snapshot(_Model):
    org_id: str
    org_name: str
    poll_time: UtcTime
    """the scheduled time of the poll: the snapshot's identity"""
    collected_at: UtcTime
    month_to_date_usd: Usd | None = None
    """exact sum of this UTC month's daily cost buckets; None when costs could not be read (then absent
    from the item, which stores no nulls)"""
    daily_costs_usd: tuple[DailyCost, ...] = ()
    previous_month_usd: Usd | None = None
    costs_by_project_usd: tuple[CostShare, ...] = ()
    costs_by_line_item_usd: tuple[CostShare, ...] = ()
    costs_by_api_key_usd: tuple[ApiKeyCost, ...] = ()
    """this month's spend by API key, largest first, capped with `(other)` (schema 3; empty before)"""
    daily_costs_by_project_usd: tuple[DailyShare, ...] = ()
    """this month's spend by project and day, from the same query as `costs_by_api_key_usd` (schema 3)"""
    projects: tuple[ProjectInfo, ...] = ()
    spend_limits: tuple[SpendLimit, ...] = ()
    spend_alerts: tuple[SpendAlertInfo, ...] = ()
    rate_limits: tuple[RateLimitInfo, ...] = ()
    """active projects' rate limits for the models used this month (schema 3), at most 200"""
    credit_summary: CreditSummary | None = None
    credit_grants: tuple[CreditGrant, ...] = ()
    subscription: Subscription | None = None
    usage: dict[str, UsageSummary] = Field(default_factory=dict)
    completions_attribution: UsageAttribution | None = None
    """completions by API key, user, batch and service tier (schema 3; source `usage_completions_by_key`)"""
    admin_key_expires_at: UtcTime | None = None
    conditions: tuple[str, ...] = ()
    """named states the alerter reports, e.g. `session_key_rejected`, `admin_key_missing_scope`"""
    currency: str = "usd"
    failures: tuple[SourceFailure, ...] = ()
    sources_ok: tuple[str, ...] = ()
    schema_version: int = SCHEMA_VERSION
    verify: str | None = None
    """the nonce of the `spendwatch verify` run that asked for this poll (None for a scheduled poll): the
    alerter then also posts "spendwatch is connected" to every channel of the organization"""

    @field_validator("schema_version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value < 1 or value > SCHEMA_VERSION:
            raise ValueError(f"schema_version {value}; this code reads 1..{SCHEMA_VERSION}")
        return value

    @property
    def period(self) -> str:
        return month_of(self.poll_time)

    @property
    def data_through(self) -> date | None:
        """The last UTC day with a cost bucket; today's and yesterday's buckets are still provisional."""
        return self.daily_costs_usd[-1].day if self.daily_costs_usd else None

    @property
    def failing(self) -> tuple[SourceFailure, ...]:
        """The failures proper: without the notes on sources that answered (`skipped_rows`), which every
        reader of health (rules, history, digest, report, verify) must not count as a failing source."""
        return tuple(f for f in self.failures if f.kind not in NOTE_KINDS and f.source not in self.sources_ok)

    def project_name(self, project_id: str) -> str:
        for project in self.projects:
            if project.id == project_id and project.name:
                return project.name
        return project_id

    def to_item(self, *, expires_at: int) -> dict[str, Any]:
        # Every name and id came from a reply: none of them may carry a secret into the table.
        body = scrub_data(_to_native(self.model_dump(exclude_none=True)))
        body["poll_time"] = isoformat_utc(self.poll_time)
        body["collected_at"] = isoformat_utc(self.collected_at)
        return {
            "pk": org_pk(self.org_id),
            "sk": snapshot_sk(self.poll_time),
            "kind": ITEM_KIND,
            "period": self.period,
            "expires_at": expires_at,
            **body,
        }

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Snapshot:
        try:
            data = dict(item)
            if isinstance(data.get("daily_costs_usd"), dict):
                data["daily_costs_usd"] = _schema1_daily_costs(data["daily_costs_usd"])
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise SnapshotFormatError(
                f"snapshot {item.get('pk')}/{item.get('sk')} is unreadable: {where}: {first['msg']}"
            ) from None

    def to_json_dict(self) -> dict[str, Any]:
        """JSON form: amounts are exact decimal strings; the unit is in each key."""
        data: dict[str, Any] = scrub_data(self.model_dump(mode="json"))
        data["period"] = self.period
        data["data_through"] = None if self.data_through is None else self.data_through.isoformat()
        data["poll_time"] = isoformat_utc(self.poll_time)
        data["collected_at"] = isoformat_utc(self.collected_at)
        return data

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> Snapshot:
        return cls.from_item(data)


def _schema1_daily_costs(days: dict[str, Any]) -> list[dict[str, Any]]:
    """Schema 1 stored the daily costs as a day -> amount map."""
    return [{"day": day, "amount_usd": amount} for day, amount in sorted(days.items())]


def daily_costs_from_item(item: dict[str, Any]) -> tuple[DailyCost, ...]:
    """The `daily_costs_usd` of a snapshot item (any schema version), read alone."""
    value = item.get("daily_costs_usd", [])
    try:
        entries = _schema1_daily_costs(value) if isinstance(value, dict) else list(value)
        return tuple(DailyCost.model_validate(entry) for entry in entries)
    except (TypeError, ValidationError) as exc:
        raise SnapshotFormatError(
            f"snapshot {item.get('pk')}/{item.get('sk')} has unreadable daily costs: {exc}"
        ) from None


def _to_native(value: Any) -> Any:
    """Model dump -> DynamoDB-native values (dates and times as strings, tuples as lists)."""
    if isinstance(value, datetime):
        return isoformat_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _to_native(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_native(v) for v in value]
    if isinstance(value, float):
        raise TypeError("float in a snapshot: amounts must be Decimal")
    return value


# --- The history summary -------------------------------------------------------------------------------

HISTORY_KIND = "history"
HISTORY_SCHEMA_VERSION = 1
HISTORY_SK_PREFIX = "HIST#"


def history_pk(org_id: str) -> str:
    """The summaries' own partition, beside the org's snapshots (`ORG#<id>`): a history Query reads only
    summaries, and a reader of the org's snapshot keys of any release never meets one."""
    return f"{org_pk(org_id)}#HISTORY"


HISTORY_SOURCES: tuple[str, ...] = (
    "costs",
    "costs_previous_month",
    "costs_by_project",
    "costs_by_line_item",
    "usage_completions",
    "usage_embeddings",
    "usage_moderations",
    "usage_images",
    "usage_audio_speeches",
    "usage_audio_transcriptions",
    "usage_vector_stores",
    "usage_code_interpreter_sessions",
    "usage_file_search_calls",
    "usage_web_search_calls",
    "projects",
    "spend_limit",
    "project_spend_limits",
    "spend_alerts",
    "project_spend_alerts",
    "admin_key",
    "credit_grants",
    "subscription",
    "costs_by_api_key",
    "api_keys",
    "service_accounts",
    "users",
    "usage_completions_by_key",
    "project_rate_limits",
)
"""Bit i of a summary's `ok` / `failed` number is source i. Append only: stored numbers refer to these
positions. A source not listed here is stored by name (`ok_other`, `failed_other`), so nothing is lost."""


def history_sk(poll_time: datetime) -> str:
    return f"{HISTORY_SK_PREFIX}{isoformat_utc(poll_time)}"


def _to_bits(names: tuple[str, ...]) -> tuple[int, list[str]]:
    bits = 0
    other = []
    for name in names:
        if name in HISTORY_SOURCES:
            bits |= 1 << HISTORY_SOURCES.index(name)
        else:
            other.append(name)
    return bits, other


def _from_bits(bits: int, other: list[str]) -> tuple[str, ...]:
    return (*(name for i, name in enumerate(HISTORY_SOURCES) if bits >> i & 1), *other)


class SnapshotSummary(_Model):
    """What the alerter's history rules read from earlier polls, stored beside each snapshot in ~200 bytes.

    DynamoDB bills a Query by the size of the items it reads, whatever the projection, so reading 64
    whole snapshots (~12 KB each) for a record's history read ~770 KB. The summary keeps what the history
    uses (failing-source streaks, the previous poll's conditions, whether a newer poll supersedes the
    record: which sources answered, whether costs were read) and leaves out the figures; the daily costs
    that the spike baseline and the burn rate take from earlier polls are read from the one or two
    snapshots that hold them, and only when the record's own snapshot lacks them (`cost_donors`).
    """

    org_id: str
    org_name: str
    poll_time: UtcTime
    collected_at: UtcTime
    month_to_date_usd: Usd | None = None
    sources_ok: tuple[str, ...] = ()
    failed_sources: tuple[str, ...] = ()
    conditions: tuple[str, ...] = ()
    verify: str | None = None
    """as `Snapshot.verify`: a verify run's poll is not a scheduled one (the next scheduled poll's time)"""

    @classmethod
    def of(cls, snapshot: Snapshot) -> SnapshotSummary:
        return cls(
            org_id=snapshot.org_id,
            org_name=snapshot.org_name,
            poll_time=snapshot.poll_time,
            collected_at=snapshot.collected_at,
            month_to_date_usd=snapshot.month_to_date_usd,
            sources_ok=snapshot.sources_ok,
            failed_sources=tuple(f.source for f in snapshot.failing),
            conditions=snapshot.conditions,
            verify=snapshot.verify,
        )

    def to_item(self, *, expires_at: int) -> dict[str, Any]:
        ok, ok_other = _to_bits(self.sources_ok)
        failed, failed_other = _to_bits(self.failed_sources)
        item: dict[str, Any] = {
            "pk": history_pk(self.org_id),
            "sk": history_sk(self.poll_time),
            "kind": HISTORY_KIND,
            "schema_version": HISTORY_SCHEMA_VERSION,
            "expires_at": expires_at,
            "org_name": self.org_name,
            "collected_at": isoformat_utc(self.collected_at),
            "ok": ok,
            "failed": failed,
        }
        optional = {
            "month_to_date_usd": self.month_to_date_usd,
            "ok_other": ok_other,
            "failed_other": failed_other,
            "conditions": list(self.conditions),
            "verify": self.verify,
        }
        item.update({key: value for key, value in optional.items() if value not in (None, [])})
        return item

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> SnapshotSummary:
        where = f"history summary {item.get('pk')}/{item.get('sk')}"
        version = item.get("schema_version")
        if version != HISTORY_SCHEMA_VERSION:
            raise SnapshotFormatError(f"{where} is unreadable: schema_version {version}, this code reads 1")
        try:
            return cls(
                org_id=str(item["pk"]).removeprefix("ORG#").removesuffix("#HISTORY"),
                org_name=item["org_name"],
                poll_time=str(item["sk"]).removeprefix(HISTORY_SK_PREFIX),
                collected_at=item["collected_at"],
                month_to_date_usd=item.get("month_to_date_usd"),
                sources_ok=_from_bits(int(item.get("ok", 0)), list(item.get("ok_other", []))),
                failed_sources=_from_bits(int(item.get("failed", 0)), list(item.get("failed_other", []))),
                conditions=tuple(item.get("conditions", [])),
                verify=item.get("verify"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            detail = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else repr(exc)
            raise SnapshotFormatError(f"{where} is unreadable: {detail}") from None

    def as_history(self) -> Snapshot:
        """The poll as a history entry: a `Snapshot` with only the fields the summary keeps. A failure
        names its source only (kind `summary`); figures, breakdowns and daily costs are empty."""
        return Snapshot(
            org_id=self.org_id,
            org_name=self.org_name,
            poll_time=self.poll_time,
            collected_at=self.collected_at,
            month_to_date_usd=self.month_to_date_usd,
            sources_ok=self.sources_ok,
            failures=tuple(SourceFailure(source=s, kind="summary", detail="") for s in self.failed_sources),
            conditions=self.conditions,
            verify=self.verify,
        )


def _month_before(month: str) -> str:
    year, number = (int(part) for part in month.split("-"))
    return f"{year - 1}-12" if number == 1 else f"{year}-{number - 1:02d}"


def cost_months(entry: Snapshot) -> set[str]:
    """The UTC months whose daily costs the poll read in full: its own (`costs`, through its day) and
    the previous one (`costs_previous_month`)."""
    months = set()
    if "costs" in entry.sources_ok:
        months.add(entry.period)
    if "costs_previous_month" in entry.sources_ok:
        months.add(_month_before(entry.period))
    return months


def cost_donors(snapshot: Snapshot, history: Sequence[Snapshot]) -> list[datetime]:
    """The earlier polls whose daily costs the history needs and does not hold yet, newest first.

    `rules.daily_series` fills each day the snapshot lacks from the newest earlier poll that has it.
    Within one month a newer poll has every day an older one has (each poll reads its months in full,
    through its own day), so for each month the snapshot did not read, the newest earlier poll that read
    it supplies all of that month's days: reading those (at most one per month; none while the poll
    reads both of its months) makes the series what it would be with every earlier snapshot in full.
    """
    covered = cost_months(snapshot)
    donors: dict[str, Snapshot] = {}
    for entry in sorted(history, key=lambda e: e.poll_time, reverse=True):
        if entry.org_id != snapshot.org_id or entry.poll_time >= snapshot.poll_time:
            continue
        for month in cost_months(entry) - covered:
            donors.setdefault(month, entry)
    return sorted({e.poll_time for e in donors.values() if not e.daily_costs_usd}, reverse=True)


def _months_between(first: datetime, last: datetime) -> set[str]:
    months = set()
    month = month_of(first)
    while month <= month_of(last):
        months.add(month)
        year, number = (int(part) for part in month.split("-"))
        month = f"{year + 1}-01" if number == 12 else f"{year}-{number + 1:02d}"
    return months


def history_is_enough(snapshot: Snapshot, newest_first: Sequence[Snapshot], since: datetime) -> bool:
    """Whether older polls than `newest_first` (the org's newest polls since `since`, newest first) could
    change anything the rules or the superseding check decide for `snapshot`.

    They read, of the earlier polls: every newer one (superseding: all come first), the newest earlier one
    (its conditions), the earlier ones back to where each source failing now last succeeded (the
    failing-source streak) and, per month whose daily costs `snapshot` lacks, the newest earlier poll that
    read them (`cost_donors`; only months an earlier poll since `since` can have read). Once those are
    in, reading on changes nothing, so the alerter stops: usually after its own poll and the one before.
    """
    priors = [e for e in newest_first if e.org_id == snapshot.org_id and e.poll_time < snapshot.poll_time]
    if not priors:
        return False
    failing = {f.source for f in snapshot.failing}
    unbroken = {s for s in failing if all(any(f.source == s for f in p.failing) for p in priors)}
    if unbroken:
        return False
    readable = _months_between(since, snapshot.poll_time) | {_month_before(month_of(since))}
    wanted = readable - cost_months(snapshot)
    found = set().union(*(cost_months(p) for p in priors))
    return wanted <= found
