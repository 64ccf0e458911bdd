from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from spendwatch.core.config import parse_config
from spendwatch.core.errors import MalformedReplyError
from spendwatch.poller.collect import collect_daily_costs, collect_snapshot
from spendwatch.poller.openai_api import NotFoundError

WHEN = datetime(2026, 11, 21, 23, tzinfo=UTC)
ORG = parse_config("organizations: [{id: acme, name: Acme}]", "t").organizations[0]


class ScriptedClient:
    """Answers the month's daily costs query from prepared pages; every other source finds nothing."""

    def __init__(self, pages: list[Any] | Exception) -> None:
        self.pages = pages
        self.params: list[dict[str, Any]] = []

    def has_key(self, auth: str) -> bool:
        return auth == "admin"

    def iter_pages(self, path: str, params: dict[str, Any], *, source: str) -> Any:
        self.params.append(params)
        if source != "costs":
            yield {"data": []}
            return
        if isinstance(self.pages, Exception):
            raise self.pages
        yield from self.pages

    def iter_list(self, path: str, params: dict[str, Any], *, source: str) -> Any:
        return iter(())

    def get_json(self, path: str, params: Any, *, source: str, endpoint: Any = None) -> Any:
        raise NotFoundError(source, "not found (404)")  # no spend limit set


def bucket(day: int, *values: str) -> dict[str, Any]:
    start = int(datetime(2026, 11, day, tzinfo=UTC).timestamp())
    return {
        "object": "bucket",
        "start_time": start,
        "end_time": start + 86400,
        "results": [
            {"object": "organization.costs.result", "amount": {"value": Decimal(v), "currency": "usd"}} for v in values
        ],
    }


def test_collect_daily_costs_sums_exactly_across_pages() -> None:
    pages = [{"data": [bucket(1, "0.1", "0.2"), bucket(2)]}, {"data": [bucket(3, "3.4182615", "5.1204")]}]
    daily = collect_daily_costs(ScriptedClient(pages), datetime(2026, 11, 1, tzinfo=UTC), WHEN)
    assert [(d.day, d.amount_usd) for d in daily] == [
        (date(2026, 11, 1), Decimal("0.3")),
        (date(2026, 11, 2), Decimal(0)),
        (date(2026, 11, 3), Decimal("8.5386615")),
    ]


def test_collect_daily_costs_query_is_the_utc_month_with_exclusive_end() -> None:
    client = ScriptedClient([{"data": []}])
    collect_snapshot(ORG, client, poll_time=WHEN, now=lambda: WHEN)
    assert {
        "start_time": int(datetime(2026, 11, 1, tzinfo=UTC).timestamp()),
        "end_time": int(datetime(2026, 11, 22, tzinfo=UTC).timestamp()),
        "bucket_width": "1d",
        "limit": 31,
    } in client.params


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda b: b["results"][0]["amount"].update(value="12.3"), "amount.value is a string"),
        (lambda b: b.update(start_time=2**70), "start_time is 1.181e+21, not a plausible Unix time"),
        (lambda b: b["results"][0]["amount"].update(currency="eur"), "currency is 'eur'"),
        (lambda b: b.pop("results"), "results is not a list"),
        (lambda b: b.update(start_time="x"), "start_time is a string"),
    ],
)
def test_collect_snapshot_names_malformed_fields_and_keeps_going(mutate: Any, expected: str) -> None:
    broken = bucket(1, "1.5")
    mutate(broken)
    snapshot = collect_snapshot(ORG, ScriptedClient([{"data": [broken]}]), poll_time=WHEN, now=lambda: WHEN)
    assert snapshot.month_to_date_usd is None
    [failure] = snapshot.failures  # the other sources answered
    assert failure.source == "costs"
    assert failure.kind == "malformed"
    assert expected in failure.detail


def test_collect_snapshot_cost_rows_without_an_amount_keep_month_to_date_and_are_named() -> None:
    """Issue 7, item 4: a cost result without `amount` (allowed by the spec) used to fail the source."""
    pages = [{"data": [bucket(1, "1.5", "2"), bucket(2, "0.25")]}]
    pages[0]["data"][0]["results"].insert(1, {"object": "organization.costs.result"})
    pages[0]["data"][1]["results"][0]["amount"]["value"] = None
    snapshot = collect_snapshot(ORG, ScriptedClient(pages), poll_time=WHEN, now=lambda: WHEN)
    assert snapshot.month_to_date_usd == Decimal("3.5")
    assert "costs" in snapshot.sources_ok
    [note] = snapshot.failures
    assert (note.source, note.kind) == ("costs", "skipped_rows")
    assert note.detail == (
        "2 cost rows without an amount skipped (page 1 data[0].results[1], page 1 data[1].results[0])"
    )


def test_collect_snapshot_records_a_failed_source_instead_of_raising() -> None:
    client = ScriptedClient(MalformedReplyError("costs", "reply is not JSON"))
    snapshot = collect_snapshot(ORG, client, poll_time=WHEN, now=lambda: WHEN)
    assert "costs" not in snapshot.sources_ok
    assert snapshot.month_to_date_usd is None
    assert snapshot.failures[0].source == "costs"
    assert snapshot.failures[0].detail == "reply is not JSON"
