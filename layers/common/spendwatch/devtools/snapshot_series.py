"""A deterministic series of snapshots of one simulated organization, as its poller would store them.

For the report's and the digest's tests and benchmarks: a year of hourly polls without a year of HTTP.
Each project spends a seeded amount per UTC day (weekends less), spread evenly over the day's hours, on a
fixed set of line items; a snapshot polled at `t` holds exactly what OpenAI would have reported at `t`:
the daily buckets of the previous and current month (today's partial), month-to-date totals by project
and line item, usage by model derived from the line items' prices, two credit grants, limits and spend
alerts. `failing` makes chosen sources fail in chosen polls. Amounts are exact `Decimal`s.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from spendwatch.core.snapshot import (
    CostShare,
    CreditGrant,
    CreditSummary,
    DailyCost,
    ProjectInfo,
    Snapshot,
    SourceFailure,
    SpendAlertInfo,
    SpendLimit,
    UsageSummary,
)

QUANTUM = Decimal("0.00000001")
ALL_SOURCES = (
    "costs",
    "costs_previous_month",
    "costs_by_project",
    "costs_by_line_item",
    "usage_completions",
    "usage_images",
    "usage_audio_speeches",
    "usage_audio_transcriptions",
    "projects",
    "spend_limit",
    "project_spend_limits",
    "spend_alerts",
    "project_spend_alerts",
    "credit_grants",
    "subscription",
)


@dataclass(frozen=True)
class Item:
    """A line item: its share of a project's spend, and the usage one USD of it buys."""

    name: str
    share: Decimal
    usage_type: str
    model: str
    counters_per_usd: Mapping[str, int]


ITEMS = (
    Item(
        "gpt-4.1-2025-04-14, input",
        Decimal("0.30"),
        "completions",
        "gpt-4.1-2025-04-14",
        {"input_tokens": 500_000, "input_cached_tokens": 150_000, "num_model_requests": 120},
    ),
    Item(
        "gpt-4.1-2025-04-14, output", Decimal("0.25"), "completions", "gpt-4.1-2025-04-14", {"output_tokens": 125_000}
    ),
    Item(
        "gpt-4.1-mini-2025-04-14, input",
        Decimal("0.15"),
        "completions",
        "gpt-4.1-mini-2025-04-14",
        {"input_tokens": 2_500_000, "input_cached_tokens": 900_000, "num_model_requests": 600},
    ),
    Item(
        "gpt-4.1-mini-2025-04-14, output",
        Decimal("0.10"),
        "completions",
        "gpt-4.1-mini-2025-04-14",
        {"output_tokens": 625_000},
    ),
    Item("Image models", Decimal("0.12"), "images", "gpt-image-1", {"images": 25, "num_model_requests": 25}),
    Item(
        "tts-1, characters",
        Decimal("0.05"),
        "audio_speeches",
        "tts-1",
        {"characters": 66_000, "num_model_requests": 40},
    ),
    Item(
        "whisper-1, transcription",
        Decimal("0.03"),
        "audio_transcriptions",
        "whisper-1",
        {"seconds": 10_000, "num_model_requests": 30},
    ),
)
PROJECTS = (
    ("proj_chatbot", "Customer chatbot", Decimal("7.20")),
    ("proj_batch", "Batch summaries", Decimal("4.10")),
    ("proj_search", "Search", Decimal("2.60")),
    ("proj_tools", "Internal tools", Decimal("1.30")),
    ("proj_lab", "Research lab", Decimal("0.70")),
)


def _unit(*parts: object) -> Decimal:
    """A deterministic number in [0, 1) from its parts."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return Decimal(int.from_bytes(digest[:4], "big")) / Decimal(2**32)


def _month_start(day: date) -> date:
    return day.replace(day=1)


def _previous_month_start(day: date) -> date:
    return (day.replace(day=1) - timedelta(days=1)).replace(day=1)


@dataclass
class SeriesOrg:
    org_id: str = "sim"
    org_name: str = "Simulated Org"
    seed: str = "spendwatch"
    growth_per_month: Decimal = Decimal("0.04")

    def __post_init__(self) -> None:
        self._daily: dict[tuple[str, date], Decimal] = {}

    def daily(self, project: str, day: date) -> Decimal:
        """What a project spends on a whole UTC day."""
        cached = self._daily.get((project, day))
        if cached is not None:
            return cached
        base = next(b for p, _, b in PROJECTS if p == project)
        months = (day.year - 2026) * 12 + day.month
        trend = 1 + self.growth_per_month * months
        weekday = Decimal("0.6") if day.weekday() >= 5 else Decimal(1)
        noise = Decimal("0.7") + _unit(self.seed, project, day) * Decimal("0.6")
        amount = self._daily[(project, day)] = (base * trend * weekday * noise).quantize(QUANTUM)
        return amount

    def spent(self, project: str, day: date, at: datetime) -> Decimal:
        """What the project's bucket of `day` holds when polled at `at` (today's bucket fills hour by hour)."""
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        elapsed = (at - start).total_seconds()
        if elapsed <= 0:
            return Decimal(0)
        if elapsed >= 86400:
            return self.daily(project, day)
        return (self.daily(project, day) * Decimal(int(elapsed)) / 86400).quantize(QUANTUM)

    def snapshot(self, at: datetime, *, failing: Iterable[str] = ()) -> Snapshot:
        """The snapshot a poll at `at` stores; sources in `failing` failed in it (their figures absent)."""
        failed = set(failing)
        today = at.date()
        month_first, previous_first = _month_start(today), _previous_month_start(today)
        days = [previous_first + timedelta(days=i) for i in range((today - previous_first).days + 1)]
        by_day = {day: {p: self.spent(p, day, at) for p, _, _ in PROJECTS} for day in days}
        month_days = [d for d in days if d >= month_first]
        mtd_project = {p: sum((by_day[d][p] for d in month_days), Decimal(0)) for p, _, _ in PROJECTS}
        mtd = sum(mtd_project.values(), Decimal(0))
        previous = sum((sum(by_day[d].values(), Decimal(0)) for d in days if d < month_first), Decimal(0))
        items: dict[str, Decimal] = {}
        usage: dict[str, dict[str, dict[str, int]]] = {}
        for item in ITEMS:
            amount = sum((mtd_project[p] * item.share for p, _, _ in PROJECTS), Decimal(0)).quantize(QUANTUM)
            items[item.name] = amount
            counters = usage.setdefault(item.usage_type, {}).setdefault(item.model, {})
            for counter, per_usd in item.counters_per_usd.items():
                counters[counter] = counters.get(counter, 0) + int(amount * per_usd)
        # The shares of each project add up to its total exactly: the remainder goes to the first item.
        items[ITEMS[0].name] += mtd - sum(items.values(), Decimal(0))
        names = {p: n for p, n, _ in PROJECTS}
        data: dict[str, object] = {
            "org_id": self.org_id,
            "org_name": self.org_name,
            "poll_time": at,
            "collected_at": at + timedelta(seconds=2),
            "projects": [ProjectInfo(id=p, name=n, status="active") for p, n, _ in PROJECTS],
            "sources_ok": [s for s in ALL_SOURCES if s not in failed],
            "failures": [
                SourceFailure(source=s, kind="unavailable", detail="server error 502 after 4 attempts")
                for s in ALL_SOURCES
                if s in failed
            ],
            "credit_summary": CreditSummary(
                total_granted_usd=Decimal(600), total_used_usd=Decimal("249.77"), total_available_usd=Decimal("350.23")
            ),
            "credit_grants": [
                CreditGrant(
                    id="grant_paid_2025",
                    grant_amount_usd=Decimal(500),
                    used_amount_usd=Decimal("249.77"),
                    expires_at=datetime(at.year, at.month, 1, tzinfo=UTC) + timedelta(days=40),
                ),
                CreditGrant(
                    id="grant_promo",
                    grant_amount_usd=Decimal(100),
                    used_amount_usd=Decimal(0),
                    expires_at=datetime(at.year + 1, 1, 15, tzinfo=UTC),
                ),
            ],
            "spend_limits": [
                SpendLimit(scope="organization", threshold_cents=60_000, enforcement_status="enforcing"),
                SpendLimit(scope="proj_chatbot", threshold_cents=30_000),
            ],
            "spend_alerts": [
                SpendAlertInfo(scope="organization", id="alert_org_400", threshold_cents=40_000),
                SpendAlertInfo(scope="proj_batch", id="alert_batch_150", threshold_cents=15_000),
            ],
        }
        if "costs" not in failed:
            data["month_to_date_usd"] = mtd
            data["daily_costs_usd"] = [DailyCost(day=d, amount_usd=sum(by_day[d].values(), Decimal(0))) for d in days]
        if "costs_previous_month" not in failed:
            data["previous_month_usd"] = previous
        if "costs_by_project" not in failed:
            shares = sorted(mtd_project.items(), key=lambda kv: -kv[1])
            data["costs_by_project_usd"] = [CostShare(key=p, name=names[p], amount_usd=a) for p, a in shares]
        if "costs_by_line_item" not in failed:
            data["costs_by_line_item_usd"] = [CostShare(key=k, amount_usd=a) for k, a in items.items()]
        data["usage"] = {
            kind: UsageSummary(
                totals={c: sum(m.get(c, 0) for m in by_model.values()) for m in by_model.values() for c in m},
                by_model=by_model,
            )
            for kind, by_model in usage.items()
            if f"usage_{kind}" not in failed
        }
        return Snapshot.model_validate(data)

    def series(
        self,
        start: datetime,
        end: datetime,
        step: timedelta = timedelta(hours=1),
        *,
        failing: Mapping[datetime, Iterable[str]] | None = None,
    ) -> Iterator[Snapshot]:
        """A poll every `step` in [start, end)."""
        moment = start
        while moment < end:
            yield self.snapshot(moment, failing=(failing or {}).get(moment, ()))
            moment += step
