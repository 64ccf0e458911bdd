"""Which library draws the digest's chart picture: Pillow (spendwatch.views.chart_png) or matplotlib (Agg).

Both draw the same chart (this month's daily spend of a snapshot series, stacked by the top projects,
with the budget pace and the forecast) at the same pixel size, 1520 x 720. Measured per candidate:
- import time in a fresh interpreter (median of 5): what a cold start pays;
- render time, warm (median of 10);
- PNG size;
- what the Lambda artifact would carry: the unpacked python3.13/arm64 wheels (`pip download`, PyPI).
The pictures are written to test-artefacts/bench/ to be compared by eye. SVG (the report's rendering,
no dependency) is listed for reference: Slack and most mail clients do not show SVG inline.
"""

from __future__ import annotations

import io
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from spendwatch.core.config import parse_config
from spendwatch.devtools.snapshot_series import SeriesOrg
from spendwatch.views.chart import FORECAST_COLOR, DailySpendChart, layout_daily, render_svg
from spendwatch.views.figures import daily_spend_chart
from spendwatch.views.history import MemoryHistory

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "test-artefacts" / "bench"
NOW = datetime(2026, 11, 21, 9, tzinfo=UTC)
WHEEL_FLAGS = [
    "--only-binary=:all:",
    "--platform",
    "manylinux2014_aarch64",
    "--platform",
    "manylinux_2_28_aarch64",
    "--python-version",
    "3.13",
    "--implementation",
    "cp",
    "--abi",
    "cp313",
]
PACKAGES = {"pillow": ["pillow==13.0.0"], "matplotlib": ["matplotlib==3.11.2"]}
IMPORTS = {
    "pillow": "from PIL import Image, ImageDraw, ImageFont",
    "matplotlib": "import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot",
}


def sample_chart() -> DailySpendChart:
    org = parse_config(
        "organizations: [{id: sim, name: Simulated Org, budget: {monthly_usd: 500}}]", "b"
    ).organizations[0]
    snapshots = list(SeriesOrg().series(datetime(2026, 10, 31, tzinfo=UTC), NOW, timedelta(hours=6)))
    return daily_spend_chart(MemoryHistory(snapshots), snapshots[-1], org, "2026-11", now=NOW)


def render_matplotlib(chart: DailySpendChart) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.6, 3.6), dpi=200)
    xs = [d.day for d in chart.days]
    bottoms = [0.0] * len(xs)
    for index, series in enumerate(chart.series):
        heights = [float(chart.values[d][index]) if d in chart.values else 0.0 for d in chart.days]
        ax.bar(xs, heights, bottom=bottoms, color=series.color, width=0.72, label=series.label)
        bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    forecast = [float(chart.forecast.get(d, 0)) for d in chart.days]
    ax.bar(xs, forecast, width=0.72, fill=False, edgecolor=FORECAST_COLOR, linestyle="--", label="Forecast (run rate)")
    if chart.budget_pace_usd is not None:
        ax.axhline(float(chart.budget_pace_usd), color="#c0392b", linestyle="--", linewidth=1.5, label="Budget pace")
    ax.set_title(f"{chart.title}\n{chart.subtitle}", loc="left", fontsize=9)
    ax.yaxis.set_major_formatter("${x:,.0f}")
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(fontsize=6, ncol=4, frameon=False, loc="upper left", bbox_to_anchor=(0, 1.02))
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    plt.close(fig)
    return out.getvalue()


def render_pillow(chart: DailySpendChart) -> bytes:
    from spendwatch.views.chart_png import render_png

    return render_png(layout_daily(chart))


def cold_import(code: str, runs: int = 5) -> float:
    timed = f"import time; t=time.perf_counter(); {code}; print(time.perf_counter()-t)"
    samples = []
    for _ in range(runs):
        done = subprocess.run([sys.executable, "-c", timed], capture_output=True, text=True, check=True)
        samples.append(float(done.stdout.strip().splitlines()[-1]))
    return statistics.median(samples)


def warm_render(render: object, chart: DailySpendChart, runs: int = 10) -> tuple[float, bytes]:
    assert callable(render)
    png = render(chart)  # first call: fonts and caches
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        png = render(chart)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples), png


def wheel_size(requirements: list[str]) -> tuple[int, int, list[str]] | None:
    """(downloaded bytes, unpacked bytes, wheel names) of the requirements and their dependencies."""
    with tempfile.TemporaryDirectory() as directory:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "-d", directory, *WHEEL_FLAGS, *requirements],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            return None
        wheels = sorted(Path(directory).glob("*.whl"))
        unpacked = sum(info.file_size for wheel in wheels for info in zipfile.ZipFile(wheel).infolist())
        return sum(w.stat().st_size for w in wheels), unpacked, [w.name.split("-")[0] for w in wheels]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    chart = sample_chart()
    started = time.perf_counter()
    svg = render_svg(layout_daily(chart), chart_id="daily")
    svg_ms = (time.perf_counter() - started) * 1000
    print(f"chart: {chart.mark_count} bars, 1520 x 720 px; pictures in {OUT}")
    print(
        f"  {'candidate':<11} {'cold import':>12} {'render':>9} {'PNG':>9} {'arm64 wheels (download / unpacked)':>38}"
    )
    for name, render in (("pillow", render_pillow), ("matplotlib", render_matplotlib)):
        try:
            seconds, png = warm_render(render, chart)
        except ImportError:
            print(f"  {name:<11} not installed (make bench installs it: pip install -e '.[dev,bench]')")
            continue
        (OUT / f"chart-{name}.png").write_bytes(png)
        imported = cold_import(IMPORTS[name])
        sizes = wheel_size(PACKAGES[name])
        wheels = (
            "PyPI unreachable"
            if sizes is None
            else f"{sizes[0] / 1e6:.1f} MB / {sizes[1] / 1e6:.1f} MB ({', '.join(sizes[2])})"
        )
        print(f"  {name:<11} {imported * 1000:9.0f} ms {seconds * 1000:6.0f} ms {len(png) / 1000:6.1f} KB   {wheels}")
    (OUT / "chart.svg").write_text(svg, encoding="utf-8")
    print(
        f"  {'svg':<11} {'0 (no dep.)':>12} {svg_ms:6.1f} ms {len(svg) / 1000:6.1f} KB   (the report's inline charts)"
    )


if __name__ == "__main__":
    main()
