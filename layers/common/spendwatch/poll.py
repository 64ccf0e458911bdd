"""One poll of one organization: ask each data source, keep what succeeded, list what failed.

Pure orchestration over an `OpenAIClient`; no AWS. The resulting `Snapshot` is what the poller stores.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from spendwatch.config import OrganizationConfig
from spendwatch.errors import MalformedReplyError, SourceError
from spendwatch.openai_api import OpenAIClient, require_int, require_number
from spendwatch.snapshot import DailyCost, Snapshot, SourceFailure

COSTS_SOURCE = "costs"


def month_start(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


def next_midnight(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return datetime(moment.year, moment.month, moment.day, tzinfo=UTC) + timedelta(days=1)


def collect_daily_costs(client: OpenAIClient, start: datetime, end: datetime) -> tuple[DailyCost, ...]:
    """Daily USD totals from `/organization/costs` for [start, end), exact sums of the API's rows."""
    params: dict[str, Any] = {
        "start_time": int(start.timestamp()),
        "end_time": int(end.timestamp()),
        "bucket_width": "1d",
        "limit": 31,
    }
    totals: dict[date, Decimal] = {}
    for page_index, page in enumerate(client.iter_pages("/organization/costs", params, source=COSTS_SOURCE)):
        for bucket_index, bucket in enumerate(page["data"]):
            where = f"page {page_index + 1} data[{bucket_index}]"
            if not isinstance(bucket, dict):
                raise MalformedReplyError(COSTS_SOURCE, f"{where} is not an object")
            start_time = require_int(bucket.get("start_time"), f"{where}.start_time", COSTS_SOURCE)
            results = bucket.get("results")
            if not isinstance(results, list):
                raise MalformedReplyError(COSTS_SOURCE, f"{where}.results is not a list")
            day = datetime.fromtimestamp(start_time, UTC).date()
            total = totals.get(day, Decimal(0))
            for row_index, row in enumerate(results):
                amount = row.get("amount") if isinstance(row, dict) else None
                if not isinstance(amount, dict):
                    raise MalformedReplyError(COSTS_SOURCE, f"{where}.results[{row_index}].amount is missing")
                currency = amount.get("currency")
                if currency not in ("usd", "USD"):
                    raise MalformedReplyError(
                        COSTS_SOURCE, f"{where}.results[{row_index}].amount.currency is {currency!r}, expected 'usd'"
                    )
                total += require_number(amount.get("value"), f"{where}.results[{row_index}].amount.value", COSTS_SOURCE)
            totals[day] = total
    return tuple(DailyCost(day=day, amount_usd=amount) for day, amount in sorted(totals.items()))


def collect_snapshot(
    org: OrganizationConfig,
    client: OpenAIClient,
    *,
    poll_time: datetime,
    now: Callable[[], datetime],
) -> Snapshot:
    """Poll every source for one organization. Never raises for a failed source: it is listed instead."""
    failures: list[SourceFailure] = []
    sources_ok: list[str] = []
    daily: tuple[DailyCost, ...] = ()
    month_to_date: Decimal | None = None
    try:
        daily = collect_daily_costs(client, month_start(poll_time), next_midnight(poll_time))
        month_to_date = sum((d.amount_usd for d in daily), Decimal(0))
        sources_ok.append(COSTS_SOURCE)
    except SourceError as exc:
        failures.append(SourceFailure(source=exc.source, kind=exc.kind, detail=exc.detail))
    return Snapshot(
        org_id=org.id,
        org_name=org.name,
        poll_time=poll_time,
        collected_at=now(),
        month_to_date_usd=month_to_date,
        daily_costs_usd=daily,
        failures=tuple(failures),
        sources_ok=tuple(sources_ok),
    )
