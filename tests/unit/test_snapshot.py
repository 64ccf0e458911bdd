from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from spendwatch.core.errors import SnapshotFormatError
from spendwatch.core.snapshot import SCHEMA_VERSION, DailyCost, Snapshot, SourceFailure

WHEN = datetime(2026, 11, 21, 23, tzinfo=UTC)


def sample() -> Snapshot:
    return Snapshot(
        org_id="acme",
        org_name="Acme",
        poll_time=WHEN,
        collected_at=WHEN,
        month_to_date_usd=Decimal("12.30000001"),
        daily_costs_usd=(
            DailyCost(day=date(2026, 11, 1), amount_usd=Decimal("10")),
            DailyCost(day=date(2026, 11, 2), amount_usd=Decimal("2.30000001")),
        ),
        failures=(SourceFailure(source="credit_grants", kind="auth", detail="session key expired"),),
        sources_ok=("costs",),
    )


def test_snapshot_item_round_trip_keeps_exact_decimals() -> None:
    item = sample().to_item(expires_at=1)
    assert item["pk"] == "ORG#acme"
    assert item["sk"] == "SNAP#2026-11-21T23:00:00Z"
    assert item["kind"] == "snapshot"
    assert item["schema_version"] == SCHEMA_VERSION
    back = Snapshot.from_item(item)
    assert back == sample()
    assert back.month_to_date_usd == Decimal("12.30000001")


def test_snapshot_json_round_trip_uses_decimal_strings() -> None:
    data = sample().to_json_dict()
    assert data["month_to_date_usd"] == "12.30000001"
    assert data["data_through"] == "2026-11-02"
    assert Snapshot.from_json_dict(data) == sample()


def test_snapshot_newer_schema_is_refused_by_name() -> None:
    item = sample().to_item(expires_at=1)
    item["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(SnapshotFormatError, match=f"schema_version {SCHEMA_VERSION + 1}"):
        Snapshot.from_item(item)


def test_snapshot_float_amount_is_refused() -> None:
    item = sample().to_item(expires_at=1)
    item["month_to_date_usd"] = 12.3
    with pytest.raises(SnapshotFormatError, match="month_to_date_usd: Value error, amount is a float"):
        Snapshot.from_item(item)


def test_snapshot_schema_1_items_are_still_read() -> None:
    item = sample().to_item(expires_at=1)
    item["schema_version"] = 1
    item["daily_costs_usd"] = {"2026-11-01": Decimal("10"), "2026-11-02": Decimal("2.30000001")}
    old = Snapshot.from_item(item)
    assert old.daily_costs_usd == sample().daily_costs_usd
    assert old.schema_version == 1


def test_snapshot_item_has_only_dynamodb_native_types() -> None:
    def walk(value: object) -> None:
        assert not isinstance(value, float | datetime | date | tuple), type(value)
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        if isinstance(value, list):
            for v in value:
                walk(v)

    walk(sample().to_item(expires_at=1))


def test_snapshot_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        Snapshot(org_id="a", org_name="a", poll_time=datetime(2026, 1, 1), collected_at=WHEN, month_to_date_usd=None)
