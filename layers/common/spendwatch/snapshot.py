"""The snapshot: what one poll learned about one organization's money at one moment.

Owns the typed model, its DynamoDB item form (native types only: `Decimal`, `str`, lists, maps) and its
JSON form for `spendwatch poll --json`. Every item carries `schema_version` so a rolling deploy can tell
old items from new ones; readers accept every version up to `SCHEMA_VERSION`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from spendwatch.errors import SnapshotFormatError

SCHEMA_VERSION = 1
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


@dataclass(frozen=True)
class SourceFailure:
    """A data source that failed during the poll, kept in the snapshot so nothing fails silently."""

    source: str
    kind: str
    detail: str


@dataclass(frozen=True)
class DailyCost:
    day: date
    amount_usd: Decimal


@dataclass(frozen=True)
class Snapshot:
    org_id: str
    org_name: str
    poll_time: datetime
    collected_at: datetime
    month_to_date_usd: Decimal | None
    daily_costs_usd: tuple[DailyCost, ...] = ()
    currency: str = "usd"
    failures: tuple[SourceFailure, ...] = ()
    sources_ok: tuple[str, ...] = ()
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def period(self) -> str:
        return month_of(self.poll_time)

    @property
    def data_through(self) -> date | None:
        """The last UTC day with a cost bucket; today's and yesterday's buckets are still provisional."""
        return self.daily_costs_usd[-1].day if self.daily_costs_usd else None

    def to_item(self, *, expires_at: int) -> dict[str, Any]:
        item: dict[str, Any] = {
            "pk": org_pk(self.org_id),
            "sk": snapshot_sk(self.poll_time),
            "kind": ITEM_KIND,
            "schema_version": self.schema_version,
            "org_id": self.org_id,
            "org_name": self.org_name,
            "poll_time": isoformat_utc(self.poll_time),
            "collected_at": isoformat_utc(self.collected_at),
            "period": self.period,
            "currency": self.currency,
            "daily_costs_usd": {d.day.isoformat(): d.amount_usd for d in self.daily_costs_usd},
            "failures": [{"source": f.source, "kind": f.kind, "detail": f.detail} for f in self.failures],
            "sources_ok": list(self.sources_ok),
            "expires_at": expires_at,
        }
        if self.month_to_date_usd is not None:
            item["month_to_date_usd"] = self.month_to_date_usd
        if self.extra:
            item["extra"] = self.extra
        return item

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Snapshot:
        try:
            version = int(item["schema_version"])
            if version > SCHEMA_VERSION or version < 1:
                raise SnapshotFormatError(
                    f"snapshot {item.get('pk')}/{item.get('sk')} has schema_version {version}; "
                    f"this code reads 1..{SCHEMA_VERSION}"
                )
            daily = tuple(
                DailyCost(date.fromisoformat(day), _decimal(amount))
                for day, amount in sorted(dict(item.get("daily_costs_usd") or {}).items())
            )
            mtd = item.get("month_to_date_usd")
            return cls(
                org_id=str(item["org_id"]),
                org_name=str(item["org_name"]),
                poll_time=parse_utc(str(item["poll_time"])),
                collected_at=parse_utc(str(item["collected_at"])),
                month_to_date_usd=None if mtd is None else _decimal(mtd),
                daily_costs_usd=daily,
                currency=str(item.get("currency", "usd")),
                failures=tuple(
                    SourceFailure(str(f["source"]), str(f["kind"]), str(f["detail"])) for f in item.get("failures", [])
                ),
                sources_ok=tuple(str(s) for s in item.get("sources_ok", [])),
                schema_version=version,
                extra=dict(item.get("extra") or {}),
            )
        except SnapshotFormatError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise SnapshotFormatError(
                f"snapshot {item.get('pk')}/{item.get('sk')} is unreadable: {type(exc).__name__}: {exc}"
            ) from exc

    def to_json_dict(self) -> dict[str, Any]:
        """JSON form: amounts are exact decimal strings with the unit in the key."""
        return {
            "schema_version": self.schema_version,
            "org_id": self.org_id,
            "org_name": self.org_name,
            "poll_time": isoformat_utc(self.poll_time),
            "collected_at": isoformat_utc(self.collected_at),
            "period": self.period,
            "currency": self.currency,
            "month_to_date_usd": None if self.month_to_date_usd is None else str(self.month_to_date_usd),
            "data_through": None if self.data_through is None else self.data_through.isoformat(),
            "daily_costs_usd": {d.day.isoformat(): str(d.amount_usd) for d in self.daily_costs_usd},
            "sources_ok": list(self.sources_ok),
            "failures": [{"source": f.source, "kind": f.kind, "detail": f.detail} for f in self.failures],
            "extra": _jsonable(self.extra),
        }

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> Snapshot:
        item = dict(data)
        item["daily_costs_usd"] = {k: Decimal(str(v)) for k, v in (data.get("daily_costs_usd") or {}).items()}
        if data.get("month_to_date_usd") is not None:
            item["month_to_date_usd"] = Decimal(str(data["month_to_date_usd"]))
        return cls.from_item(item)


def _decimal(value: object) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    if isinstance(value, str):
        return Decimal(value)
    raise TypeError(f"amount is {type(value).__name__}, expected a decimal")


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value
