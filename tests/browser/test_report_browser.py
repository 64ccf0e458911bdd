"""`spendwatch report`'s page in a real browser (Debian's headless Chromium over the DevTools protocol):
the charts draw the expected number of bars, nothing is logged as an error, nothing is fetched, and the
page fits a phone. Screenshots are kept in test-artefacts/."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from spendwatch.core.config import parse_config
from spendwatch.devtools.snapshot_series import PROJECTS, SeriesOrg
from spendwatch.views.history import MemoryHistory
from spendwatch.views.report import OrgReport, render_report

from .cdp import Browser, Page

NOW = datetime(2026, 11, 21, 9, 5, tzinfo=UTC)
CONFIG = """
organizations:
  - {id: sim, name: Simulated Org, budget: {monthly_usd: 500}}
  - {id: broken, name: Broken Org, budget: {monthly_usd: 100}}
"""
DAYS_SO_FAR, DAYS_LEFT = 21, 9  # 1-21 November have cost buckets; 22-30 are forecast
CHART_SERIES = 4  # the top four projects, then "Other"
MONTHS_WITH_DATA = 11  # January to November 2026; December 2025 has no snapshot


@pytest.fixture(scope="module")
def page_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = parse_config(CONFIG, "test")
    good, broken = SeriesOrg(), SeriesOrg(org_id="broken", org_name="Broken Org")
    snapshots = list(good.series(datetime(2026, 10, 31, tzinfo=UTC), NOW, timedelta(hours=6)))
    snapshots += [good.snapshot(datetime(2026, month, 28, 23, tzinfo=UTC)) for month in range(1, 10)]
    # Every poll of the broken organization lost its costs: its chart must say so, not stay blank.
    failing = list(broken.series(datetime(2026, 11, 20, tzinfo=UTC), NOW, timedelta(hours=6)))
    failing = [broken.snapshot(s.poll_time, failing=["costs", "costs_by_project"]) for s in failing]
    page = render_report(
        [
            OrgReport(config.organizations[0], MemoryHistory(snapshots)),
            OrgReport(config.organizations[1], MemoryHistory(failing)),
        ],
        "2026-11",
        now=NOW,
        source="a snapshot series",
    )
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def count(page: Page, selector: str) -> int:
    return int(page.evaluate(f"document.querySelectorAll({selector!r}).length"))


def test_report_charts_render_the_expected_marks_without_errors(
    browser: Browser, page_file: Path, artefacts: Path
) -> None:
    page = Page(browser)
    page.viewport(1280, 900)
    page.open(page_file.as_uri())
    assert page.errors == []
    assert page.requests == [page_file.as_uri()], "self-contained: no other request of any kind"
    assert len(PROJECTS) > CHART_SERIES, "every day has a bar per top project plus one for the others"
    assert count(page, "#daily-sim rect.mark.spend") == DAYS_SO_FAR * (CHART_SERIES + 1)
    assert count(page, "#daily-sim rect.mark.forecast") == DAYS_LEFT
    assert count(page, "#monthly-sim rect.mark") == MONTHS_WITH_DATA
    assert count(page, "#daily-sim line.budget-line") == 1
    # Drawn, not just present: every bar has an area on screen.
    sizes = page.evaluate(
        "[...document.querySelectorAll('#daily-sim rect.mark')].map(r => {const b = r.getBoundingClientRect();"
        " return b.width * b.height})"
    )
    assert len(sizes) == DAYS_SO_FAR * (CHART_SERIES + 1) + DAYS_LEFT and min(sizes) > 0
    # The broken organization: no bars, and the reason in the chart itself.
    assert count(page, "#daily-broken rect.mark") == 0
    notice = page.evaluate("document.querySelector('#daily-broken').textContent")
    assert "the costs source failed" in notice
    text = page.evaluate("document.body.innerText")
    for heading in (
        "HertzBeat: Credit Grants",
        "HertzBeat: Model Cost",
        "HertzBeat: Billing Subscription",
        "LogicMonitor: Completion By Model",
        "LogicMonitor: Images By Model",
        "LogicMonitor: Cost By Organization",
        "Usage of every type",
        "Spend limits and OpenAI's spend alerts",
        "Monitor health",
    ):
        assert heading in text, heading
    page.screenshot(artefacts / "report-desktop.png")
    assert (artefacts / "report-desktop.png").read_bytes().startswith(b"\x89PNG")


def test_report_is_readable_on_a_phone(browser: Browser, page_file: Path, artefacts: Path) -> None:
    page = Page(browser)
    page.viewport(390, 844, mobile=True, scale=2)
    page.open(page_file.as_uri())
    assert page.errors == []
    width, inner = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width <= inner, "the page itself never scrolls sideways; wide tables and charts scroll in their box"
    font = page.evaluate("parseFloat(getComputedStyle(document.querySelector('td')).fontSize)")
    assert font >= 12
    assert count(page, "#daily-sim rect.mark") == DAYS_SO_FAR * (CHART_SERIES + 1) + DAYS_LEFT
    page.screenshot(artefacts / "report-phone.png")


def test_browser_harness_reports_console_errors_and_requests(browser: Browser, tmp_path: Path) -> None:
    """The checks above can fail: an error logged by a page and a request it makes are both seen."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!DOCTYPE html><html><body><script>console.error('boom')</script>"
        '<img src="http://127.0.0.1:9/x.png"></body></html>',
        encoding="utf-8",
    )
    page = Page(browser)
    page.open(bad.as_uri())
    assert any("boom" in error for error in page.errors)
    assert "http://127.0.0.1:9/x.png" in page.requests
