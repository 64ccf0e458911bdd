"""Rules: pure functions from a snapshot and the org's config to observations.

An `Observation` says, for one alert key, whether the condition currently holds and at which level
(for a ladder of thresholds, the highest one crossed). Whether to *notify* is decided separately
(`spendwatch.decide`) against the alert's previous state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from spendwatch.config import OrganizationConfig
from spendwatch.money import percent_of
from spendwatch.snapshot import Snapshot


@dataclass(frozen=True)
class Observation:
    rule_id: str
    key: str
    """Stable identity of the alert in the notification log, scoped to its period."""
    level: Decimal | None
    """The highest threshold currently crossed, or None when the condition does not hold."""
    summary: str
    facts: dict[str, Decimal | str] = field(default_factory=dict)


def budget_actual(snapshot: Snapshot, org: OrganizationConfig) -> list[Observation]:
    """Month-to-date spend against the monthly budget's ladder of percentages (AWS Budgets' ACTUAL)."""
    budget = org.budget
    if budget is None or snapshot.month_to_date_usd is None:
        return []
    spent = snapshot.month_to_date_usd
    percent = percent_of(spent, budget.monthly_usd)
    crossed = [t for t in budget.thresholds_percent if percent >= t]
    level = max(crossed) if crossed else None
    return [
        Observation(
            rule_id="budget.actual",
            key=f"budget.actual#org#{snapshot.period}",
            level=level,
            summary="Monthly budget",
            facts={
                "spent_usd": spent,
                "budget_usd": budget.monthly_usd,
                "percent": percent,
                "period": snapshot.period,
            },
        )
    ]


def evaluate(snapshot: Snapshot, org: OrganizationConfig) -> list[Observation]:
    """Every rule's observations for one snapshot."""
    return budget_actual(snapshot, org)
