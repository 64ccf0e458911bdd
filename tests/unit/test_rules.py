from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from spendwatch.config import parse_config
from spendwatch.rules import budget_actual, evaluate
from spendwatch.snapshot import Snapshot

CONFIG = parse_config(
    """
organizations:
  - id: acme
    name: Acme
    budget: {monthly_usd: 500, thresholds_percent: [50, 80, 100]}
  - id: nobudget
    name: No budget
""",
    "t.yaml",
)


def snap(mtd: str | None, org: str = "acme", when: datetime = datetime(2026, 11, 21, 23, tzinfo=UTC)) -> Snapshot:
    return Snapshot(
        org_id=org,
        org_name=org,
        poll_time=when,
        collected_at=when,
        month_to_date_usd=None if mtd is None else Decimal(mtd),
    )


@pytest.mark.parametrize(
    ("mtd", "level"),
    [
        ("0", None),
        ("249.99999999", None),
        ("250", "50"),  # exactly at the threshold counts as crossed
        ("399.99", "50"),
        ("430.12", "80"),
        ("500.00", "100"),
        ("5000", "100"),
    ],
)
def test_budget_actual_highest_crossed_threshold(mtd: str, level: str | None) -> None:
    [observation] = budget_actual(snap(mtd), CONFIG.organization("acme"))
    assert observation.level == (None if level is None else Decimal(level))
    assert observation.facts["percent"] == Decimal(mtd) * 100 / 500


def test_budget_actual_key_is_scoped_to_the_utc_month() -> None:
    november = budget_actual(snap("300"), CONFIG.organization("acme"))[0]
    december = budget_actual(snap("300", when=datetime(2026, 12, 1, 0, 5, tzinfo=UTC)), CONFIG.organization("acme"))[0]
    assert november.key != december.key
    assert december.key.endswith("2026-12")


def test_evaluate_without_budget_or_costs_observes_nothing() -> None:
    assert evaluate(snap("300", org="nobudget"), CONFIG.organization("nobudget")) == []
    assert evaluate(snap(None), CONFIG.organization("acme")) == []
