"""Spend charts: what to draw (pure data), where to draw it (one layout of shapes), and an SVG rendering.

Two charts: this month's **daily spend**, stacked by the top projects or line items, with the budget pace
(the monthly budget spread evenly over the month's days: a day above it is a day that overspends) and the
forecast (the remaining days as outlined bars at the run rate); and **month over month** totals with the
budget line. `layout_*` turns a chart into positioned shapes once; `render_svg` (here, no dependency: the
HTML report inlines it) and `spendwatch.views.chart_png.render_png` (Pillow, only in the digest function) both
draw those shapes, so the picture in a digest and the chart in the report cannot disagree. Each data bar
is one `rect.mark` in the SVG, which is what the browser test counts.

A chart with nothing to draw is never blank: it shows its `notice` (why there is no data) instead.
Amounts stay `Decimal`; only pixel positions are floats.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_CEILING, Decimal

from spendwatch.core.money import format_usd

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1")
OTHER_COLOR = "#bab0ac"
UNATTRIBUTED_COLOR = "#d9d9d9"
FORECAST_COLOR = "#9fb4cc"
BUDGET_COLOR = "#c0392b"
TEXT_COLOR = "#1d1c1d"
MUTED_COLOR = "#616061"
GRID_COLOR = "#e6e6e6"
LABEL_LIMIT = 28
CHAR_WIDTH = 0.56
"""Approximate advance of one character per pixel of font size (the layout is shared by SVG and PNG)."""


@dataclass(frozen=True)
class Series:
    label: str
    color: str


@dataclass(frozen=True)
class DailySpendChart:
    title: str
    subtitle: str
    days: tuple[date, ...]
    """every day of the month"""
    series: tuple[Series, ...] = ()
    values: Mapping[date, tuple[Decimal, ...]] = field(default_factory=dict)
    """each day with cost data: one amount per series (they add up to the day's cost)"""
    forecast: Mapping[date, Decimal] = field(default_factory=dict)
    """the days still to come, at the run rate"""
    budget_pace_usd: Decimal | None = None
    notice: str | None = None
    """shown instead of bars when there is no cost data to draw"""
    notes: tuple[str, ...] = ()

    @property
    def mark_count(self) -> int:
        """Bars drawn: one per non-zero segment of a day, plus one per forecast day."""
        segments = sum(1 for parts in self.values.values() for part in parts if part > 0)
        return 0 if self.notice else segments + sum(1 for amount in self.forecast.values() if amount > 0)


@dataclass(frozen=True)
class MonthTotal:
    month: str
    """`YYYY-MM`"""
    amount_usd: Decimal | None
    """None: no snapshot of that month"""
    partial: bool = False
    """the month is still running (month to date)"""


@dataclass(frozen=True)
class MonthlyChart:
    title: str
    subtitle: str
    months: tuple[MonthTotal, ...]
    budget_usd: Decimal | None = None
    notice: str | None = None

    @property
    def mark_count(self) -> int:
        return 0 if self.notice else sum(1 for m in self.months if m.amount_usd is not None and m.amount_usd > 0)


# --- shapes ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    w: float
    h: float
    fill: str
    stroke: str | None = None
    dashed: bool = False
    mark: bool = False
    kind: str = ""
    tooltip: str | None = None


@dataclass(frozen=True)
class Line:
    x1: float
    y1: float
    x2: float
    y2: float
    color: str
    width: float = 1.0
    dashed: bool = False
    kind: str = ""


@dataclass(frozen=True)
class Text:
    x: float
    y: float
    """baseline"""
    text: str
    size: float = 11.0
    color: str = TEXT_COLOR
    anchor: str = "start"
    """start | middle | end"""
    bold: bool = False


Shape = Rect | Line | Text


@dataclass(frozen=True)
class Layout:
    width: int
    height: int
    shapes: tuple[Shape, ...]
    label: str
    """what the picture shows, in words (alt text)"""


def clip_label(text: str, limit: int = LABEL_LIMIT) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def text_width(text: str, size: float) -> float:
    return len(text) * size * CHAR_WIDTH


def nice_ceiling(value: Decimal) -> tuple[Decimal, Decimal]:
    """(axis maximum, tick step): about four steps of 1, 2, 2.5 or 5 times a power of ten."""
    if value <= 0:
        return Decimal(1), Decimal("0.25")
    raw = value / 4
    exponent = raw.adjusted()
    magnitude = Decimal(10) ** exponent
    for factor in (Decimal(1), Decimal(2), Decimal("2.5"), Decimal(5), Decimal(10)):
        step = factor * magnitude
        if step >= raw:
            break
    top = (value / step).to_integral_value(rounding=ROUND_CEILING) * step
    return top, step


def axis_label(amount: Decimal) -> str:
    if amount >= 1000:
        return f"${amount / 1000:,.1f}k".replace(".0k", "k")
    if amount == amount.to_integral_value():
        return f"${amount:,.0f}"
    return f"${amount:,.2f}"


def _header(title: str, subtitle: str) -> list[Shape]:
    return [Text(12, 22, title, 15, bold=True), Text(12, 41, subtitle, 11.5, MUTED_COLOR)]


def _legend(entries: Sequence[tuple[str, str, str]], width: float, top: float) -> tuple[list[Shape], float]:
    """Swatches with labels, wrapped; `entries` are (label, color, style: bar|line|forecast)."""
    shapes: list[Shape] = []
    x, y = 12.0, top
    for label, color, style in entries:
        text = clip_label(label)
        need = 18 + text_width(text, 11) + 14
        if x + need > width - 8 and x > 12:
            x, y = 12.0, y + 17
        if style == "line":
            shapes.append(Line(x, y - 4, x + 14, y - 4, color, 2, dashed=True))
        elif style == "forecast":
            shapes.append(Rect(x, y - 10, 12, 10, "#ffffff", stroke=color, dashed=True))
        else:
            shapes.append(Rect(x, y - 10, 12, 10, color))
        shapes.append(Text(x + 18, y, text, 11))
        x += need
    return shapes, y + 12


def _notice(width: int, height: int, top: float, notice: str) -> list[Shape]:
    shapes: list[Shape] = [Rect(12, top, width - 24, height - top - 12, "#fafafa", stroke="#cccccc", dashed=True)]
    words, line, lines = notice.split(), "", []
    for word in words:
        candidate = f"{line} {word}".strip()
        if text_width(candidate, 12) > width - 60 and line:
            lines.append(line)
            line = word
        else:
            line = candidate
    lines.append(line)
    middle = top + (height - top - 12) / 2 - (len(lines) - 1) * 8
    shapes += [Text(width / 2, middle + 16 * i, text, 12, MUTED_COLOR, "middle") for i, text in enumerate(lines)]
    return shapes


@dataclass(frozen=True)
class _Plot:
    """The plotting area and its y scale (zero at `bottom`, `maximum` at `top`)."""

    left: float
    right: float
    top: float
    bottom: float
    maximum: Decimal

    def y(self, amount: Decimal) -> float:
        return self.bottom - float(amount / self.maximum) * (self.bottom - self.top)

    def axis(self, step: Decimal) -> list[Shape]:
        shapes: list[Shape] = []
        tick = Decimal(0)
        while tick <= self.maximum:
            y = self.y(tick)
            shapes.append(Line(self.left, y, self.right, y, GRID_COLOR if tick else "#999999", 1))
            shapes.append(Text(self.left - 6, y + 4, axis_label(tick), 10.5, MUTED_COLOR, "end"))
            tick += step
        return shapes


def layout_daily(chart: DailySpendChart, width: int = 760, height: int = 360) -> Layout:
    shapes = _header(chart.title, chart.subtitle)
    entries = [(s.label, s.color, "bar") for s in chart.series]
    if chart.forecast:
        entries.append(("Forecast (run rate)", FORECAST_COLOR, "forecast"))
    if chart.budget_pace_usd is not None:
        entries.append((f"Budget pace {format_usd(chart.budget_pace_usd)}/day", BUDGET_COLOR, "line"))
    legend, top = _legend(entries, width, 62)
    shapes += legend
    if chart.notice or not chart.days:
        shapes += _notice(width, height, top + 4, chart.notice or "No days to show.")
        return Layout(width, height, tuple(shapes), f"{chart.title}: {chart.notice}")
    totals = [sum(parts, Decimal(0)) for parts in chart.values.values()]
    highest = max([*totals, *chart.forecast.values(), chart.budget_pace_usd or Decimal(0), Decimal(0)])
    maximum, step = nice_ceiling(highest * Decimal("1.05"))
    plot = _Plot(60.0, width - 14.0, top + 8, height - 26.0, maximum)
    shapes += plot.axis(step)
    slot = (plot.right - plot.left) / len(chart.days)
    bar = max(2.0, slot * 0.72)
    for index, day in enumerate(chart.days):
        x = plot.left + index * slot + (slot - bar) / 2
        if day.day == 1 or day.day % 5 == 0:
            shapes.append(Text(x + bar / 2, plot.bottom + 15, str(day.day), 10.5, MUTED_COLOR, "middle"))
        if day in chart.values:
            base = Decimal(0)
            for series, part in zip(chart.series, chart.values[day], strict=True):
                if part <= 0:
                    continue
                y_top, y_base = plot.y(base + part), plot.y(base)
                tip = f"{day.isoformat()} {series.label}: {format_usd(part)}"
                shapes.append(Rect(x, y_top, bar, y_base - y_top, series.color, mark=True, kind="spend", tooltip=tip))
                base += part
        elif day in chart.forecast and chart.forecast[day] > 0:
            y_top = plot.y(chart.forecast[day])
            tip = f"{day.isoformat()} forecast: {format_usd(chart.forecast[day])}"
            ghost = Rect(x, y_top, bar, plot.bottom - y_top, "#ffffff", FORECAST_COLOR, True, True, "forecast", tip)
            shapes.append(ghost)
    if chart.budget_pace_usd is not None and chart.budget_pace_usd <= maximum:
        y = plot.y(chart.budget_pace_usd)
        shapes.append(Line(plot.left, y, plot.right, y, BUDGET_COLOR, 2, dashed=True, kind="budget"))
    label = f"{chart.title}. {chart.subtitle}. " + " ".join(chart.notes)
    return Layout(width, height, tuple(shapes), label.strip())


def layout_monthly(chart: MonthlyChart, width: int = 760, height: int = 300) -> Layout:
    shapes = _header(chart.title, chart.subtitle)
    entries = [("Month total", PALETTE[0], "bar"), ("Month to date (running)", FORECAST_COLOR, "bar")]
    if chart.budget_usd is not None:
        entries.append((f"Monthly budget {format_usd(chart.budget_usd)}", BUDGET_COLOR, "line"))
    legend, top = _legend(entries, width, 62)
    shapes += legend
    known = [m.amount_usd for m in chart.months if m.amount_usd is not None]
    if chart.notice or not known:
        shapes += _notice(width, height, top + 4, chart.notice or "No monthly totals yet.")
        return Layout(width, height, tuple(shapes), f"{chart.title}: {chart.notice or 'no data'}")
    maximum, step = nice_ceiling(max([*known, chart.budget_usd or Decimal(0)]) * Decimal("1.08"))
    plot = _Plot(60.0, width - 14.0, top + 14, height - 26.0, maximum)
    shapes += plot.axis(step)
    if chart.budget_usd is not None and chart.budget_usd <= maximum:  # behind the bars and their labels
        y = plot.y(chart.budget_usd)
        shapes.append(Line(plot.left, y, plot.right, y, BUDGET_COLOR, 2, dashed=True, kind="budget"))
    slot = (plot.right - plot.left) / len(chart.months)
    bar = min(56.0, slot * 0.6)
    for index, month in enumerate(chart.months):
        x = plot.left + index * slot + (slot - bar) / 2
        shapes.append(Text(x + bar / 2, plot.bottom + 15, month.month, 10.5, MUTED_COLOR, "middle"))
        if month.amount_usd is None:
            shapes.append(Text(x + bar / 2, plot.bottom - 6, "no data", 9.5, MUTED_COLOR, "middle"))
            continue
        if month.amount_usd <= 0:
            continue
        y_top = plot.y(month.amount_usd)
        color = FORECAST_COLOR if month.partial else PALETTE[0]
        tip = f"{month.month}: {format_usd(month.amount_usd)}{' so far' if month.partial else ''}"
        shapes.append(Rect(x, y_top, bar, plot.bottom - y_top, color, mark=True, kind="month", tooltip=tip))
        label = axis_label(month.amount_usd.quantize(Decimal(1)))
        shapes.append(Text(x + bar / 2, y_top - 4, label, 10, anchor="middle"))
    return Layout(width, height, tuple(shapes), f"{chart.title}. {chart.subtitle}.")


# --- SVG ---------------------------------------------------------------------------------------------


def _n(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def render_svg(layout: Layout, *, chart_id: str) -> str:
    """Inline SVG (no external reference, no script) that scales to its container's width."""
    e = html.escape
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" id="{e(chart_id)}" data-chart="{e(chart_id)}" '
        f'viewBox="0 0 {layout.width} {layout.height}" role="img" aria-label="{e(layout.label)}" '
        'preserveAspectRatio="xMidYMid meet" style="width:100%;height:auto;max-width:100%;display:block" '
        'font-family="-apple-system,Segoe UI,Helvetica,Arial,sans-serif">',
        f'<rect x="0" y="0" width="{layout.width}" height="{layout.height}" fill="#ffffff"/>',
    ]
    for shape in layout.shapes:
        if isinstance(shape, Rect):
            classes = " ".join(c for c in ("mark" if shape.mark else "", shape.kind) if c)
            attrs = (
                f'x="{_n(shape.x)}" y="{_n(shape.y)}" width="{_n(shape.w)}" height="{_n(shape.h)}" fill="{shape.fill}"'
            )
            if shape.stroke:
                attrs += f' stroke="{shape.stroke}" stroke-width="1.2"'
            if shape.dashed:
                attrs += ' stroke-dasharray="3 2"'
            if classes:
                attrs += f' class="{classes}"'
            title = f"<title>{e(shape.tooltip)}</title>" if shape.tooltip else ""
            parts.append(f"<rect {attrs}>{title}</rect>" if title else f"<rect {attrs}/>")
        elif isinstance(shape, Line):
            dash = ' stroke-dasharray="6 4"' if shape.dashed else ""
            kind = f' class="{shape.kind}-line"' if shape.kind else ""
            parts.append(
                f'<line x1="{_n(shape.x1)}" y1="{_n(shape.y1)}" x2="{_n(shape.x2)}" y2="{_n(shape.y2)}" '
                f'stroke="{shape.color}" stroke-width="{_n(shape.width)}"{dash}{kind}/>'
            )
        else:
            anchor = f' text-anchor="{shape.anchor}"' if shape.anchor != "start" else ""
            weight = ' font-weight="bold"' if shape.bold else ""
            parts.append(
                f'<text x="{_n(shape.x)}" y="{_n(shape.y)}" font-size="{_n(shape.size)}" fill="{shape.color}"'
                f"{anchor}{weight}>{e(shape.text)}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)
