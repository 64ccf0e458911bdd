"""Charts: one layout drawn as SVG (the report) and PNG (the digest); bars counted; never blank."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from spendwatch.core.config import parse_config
from spendwatch.devtools.snapshot_series import SeriesOrg
from spendwatch.views.chart import (
    DailySpendChart,
    MonthlyChart,
    MonthTotal,
    Series,
    layout_daily,
    layout_monthly,
    nice_ceiling,
    render_svg,
)
from spendwatch.views.figures import daily_spend_chart, monthly_chart
from spendwatch.views.history import MemoryHistory

DAYS = tuple(date(2026, 11, 1) + timedelta(days=i) for i in range(30))
ORG = parse_config("organizations: [{id: sim, name: Sim, budget: {monthly_usd: 300}}]\n", "test").organizations[0]


def chart(
    values: Mapping[date, tuple[Decimal, ...]], forecast: Mapping[date, Decimal] | None = None
) -> DailySpendChart:
    series = (Series("A", "#111111"), Series("B", "#222222"))
    return DailySpendChart("T", "S", DAYS, series, values, forecast or {}, Decimal(10))


def marks(svg: str) -> int:
    return len(re.findall(r'<rect [^>]*class="mark', svg))


def test_chart_svg_draws_one_mark_per_segment_and_forecast_day() -> None:
    values = {DAYS[0]: (Decimal(3), Decimal(2)), DAYS[1]: (Decimal(4), Decimal(0))}
    forecast = {d: Decimal(5) for d in DAYS[2:]}
    daily = chart(values, forecast)
    svg = render_svg(layout_daily(daily), chart_id="daily")
    assert daily.mark_count == 3 + 28
    assert marks(svg) == daily.mark_count
    assert 'class="budget-line"' in svg
    assert "<script" not in svg and "http://" not in svg.replace("http://www.w3.org/2000/svg", "")


def test_chart_without_data_shows_its_notice_not_a_blank_plot() -> None:
    empty = DailySpendChart("T", "no data", DAYS, notice="No daily cost data: the costs source failed (auth).")
    svg = render_svg(layout_daily(empty), chart_id="daily")
    assert marks(svg) == 0 == empty.mark_count
    assert "the costs source failed (auth)." in svg
    monthly = MonthlyChart("M", "S", (MonthTotal("2026-10", None),), notice="No monthly totals.")
    assert "No monthly totals." in render_svg(layout_monthly(monthly), chart_id="monthly")


def test_chart_text_is_escaped() -> None:
    values = {DAYS[0]: (Decimal(1), Decimal(1))}
    hostile = DailySpendChart("<script>x</script>", "&", DAYS, (Series("<b>", "#000"), Series("o", "#111")), values)
    svg = render_svg(layout_daily(hostile), chart_id="x")
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "<b>" not in svg


@pytest.mark.parametrize(
    ("value", "top", "step"),
    [
        (Decimal("27.3"), Decimal(30), Decimal(10)),
        (Decimal(612), Decimal(800), Decimal(200)),
        (Decimal(0), Decimal(1), Decimal("0.25")),
    ],
)
def test_chart_axis_is_rounded_to_nice_steps(value: Decimal, top: Decimal, step: Decimal) -> None:
    assert nice_ceiling(value) == (top, step)


def test_chart_png_is_a_small_png_of_the_same_layout() -> None:
    pytest.importorskip("PIL", reason="Pillow is a dev dependency and ships in the digest function")
    from spendwatch.views.chart_png import render_png

    values = {d: (Decimal(6), Decimal(3)) for d in DAYS[:20]}
    png = render_png(layout_daily(chart(values, {d: Decimal(9) for d in DAYS[20:]})))
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert 5_000 < len(png) < 120_000
    from io import BytesIO

    from PIL import Image

    image = Image.open(BytesIO(png))
    assert image.size == (760 * 2, 360 * 2)


def test_chart_from_a_series_splits_days_and_projects_the_month() -> None:
    now = datetime(2026, 11, 21, 9, tzinfo=UTC)
    snapshots = list(SeriesOrg().series(datetime(2026, 10, 31, tzinfo=UTC), now, timedelta(hours=6)))
    history = MemoryHistory(snapshots)
    daily = daily_spend_chart(history, snapshots[-1], ORG, "2026-11", now=now)
    assert daily.notice is None
    assert len(daily.values) == 21 and len(daily.forecast) == 9
    assert [s.label for s in daily.series][:2] == ["Customer chatbot", "Batch summaries"]
    for day, parts in daily.values.items():
        expected = next(c.amount_usd for c in snapshots[-1].daily_costs_usd if c.day == day)
        assert sum(parts, Decimal(0)) == expected, "each bar is the day's exact cost"
    assert daily.budget_pace_usd == Decimal(300) / 30
    monthly = monthly_chart(history, snapshots[-1], ORG, "2026-11")
    amounts = {m.month: m.amount_usd for m in monthly.months}
    assert amounts["2026-11"] == snapshots[-1].month_to_date_usd
    assert amounts["2026-10"] == snapshots[-1].previous_month_usd
    assert amounts["2026-09"] is None and monthly.notice is None


def test_chart_of_a_finished_month_has_no_forecast() -> None:
    now = datetime(2026, 12, 3, tzinfo=UTC)
    snapshots = list(SeriesOrg().series(datetime(2026, 11, 1, tzinfo=UTC), now, timedelta(hours=12)))
    history = MemoryHistory(snapshots)
    november = daily_spend_chart(history, snapshots[-1], ORG, "2026-11", now=now)
    assert november.notice is None and len(november.values) == 30
    assert november.forecast == {} and "forecast" not in november.subtitle
