"""The snapshot: what one poll learned about one organization's money at one moment.

Owns the typed model (Pydantic, frozen), its DynamoDB item form (native types only: `Decimal`, `int`,
`str`, `bool`, lists and maps; times as ISO-8601 UTC strings) and its JSON form for
`spendwatch poll --json` (amounts as exact decimal strings). Units are in the field names: `_usd` is US
dollars, `_cents` is US cents. Every item carries `schema_version` so a rolling deploy can tell old items
from new ones; readers accept every version from 1 to `SCHEMA_VERSION` (fields added later default).
Field reference: docs/snapshot.md.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from spendwatch.errors import SnapshotFormatError

SCHEMA_VERSION = 2
ITEM_KIND = "snapshot"


def org_pk(org_id: str) -> str:
    return f"ORG#{org_id}"


def snapshot_sk(poll_time: datetime) -> str:
    return f"SNAP#{isoformat_utc(poll_time)}"


def isoformat_utc(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("naive datetime: every spendwatch time is UTC-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
    # defer_build: validators are built when first used, not at import, and only for the models validated
    # directly (Snapshot, the summary), not once more for every nested model (docs/performance.md).
    model_config = ConfigDict(frozen=True, extra="ignore", defer_build=True)


class SourceFailure(_Model):
    """A data source that failed during the poll, kept in the snapshot so nothing fails silently."""

    source: str
    kind: str
    """auth | malformed | rate_limited | unavailable | rejected | error"""
    detail: str


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
    projects: tuple[ProjectInfo, ...] = ()
    spend_limits: tuple[SpendLimit, ...] = ()
    spend_alerts: tuple[SpendAlertInfo, ...] = ()
    credit_summary: CreditSummary | None = None
    credit_grants: tuple[CreditGrant, ...] = ()
    subscription: Subscription | None = None
    usage: dict[str, UsageSummary] = Field(default_factory=dict)
    admin_key_expires_at: UtcTime | None = None
    conditions: tuple[str, ...] = ()
    """named states the alerter reports, e.g. `session_key_rejected`, `admin_key_missing_scope`"""
    currency: str = "usd"
    failures: tuple[SourceFailure, ...] = ()
    sources_ok: tuple[str, ...] = ()
    schema_version: int = SCHEMA_VERSION

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

    def project_name(self, project_id: str) -> str:
        for project in self.projects:
            if project.id == project_id and project.name:
                return project.name
        return project_id

    def to_item(self, *, expires_at: int) -> dict[str, Any]:
        body = _to_native(self.model_dump(exclude_none=True))
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
            if isinstance(data.get("daily_costs_usd"), dict):  # schema 1 stored a day -> amount map
                data["daily_costs_usd"] = [
                    {"day": day, "amount_usd": amount} for day, amount in sorted(data["daily_costs_usd"].items())
                ]
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise SnapshotFormatError(
                f"snapshot {item.get('pk')}/{item.get('sk')} is unreadable: {where}: {first['msg']}"
            ) from None

    def to_json_dict(self) -> dict[str, Any]:
        """JSON form: amounts are exact decimal strings; the unit is in each key."""
        data: dict[str, Any] = self.model_dump(mode="json")
        data["period"] = self.period
        data["data_through"] = None if self.data_through is None else self.data_through.isoformat()
        data["poll_time"] = isoformat_utc(self.poll_time)
        data["collected_at"] = isoformat_utc(self.collected_at)
        return data

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> Snapshot:
        return cls.from_item(data)


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
