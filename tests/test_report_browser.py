"""report.html in a real headless Chromium: every figure loads and the tables are there, with no network."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from benchmark.report.build import build_report
from tests.test_report import FAILED_CELL, study_rows, write_study

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="/usr/bin/chromium is absent: run `make browser` (apt-get install chromium chromium-driver)",
)


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    driver_path = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def test_report_html_renders_every_figure_and_table(tmp_path, browser):
    csv = write_study(tmp_path)
    summary = build_report(csv, tmp_path / "reports", "Browser check", root=tmp_path)
    assert len(summary.figures) == 6  # the verdict's and five others

    browser.get((tmp_path / "reports" / "report.html").as_uri())
    assert browser.title == "Browser check"
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.src.slice(0, 22)]);"
    )
    assert len(images) == len(summary.figures)
    for alt, complete, width, src in images:
        assert complete and width > 0, f"figure {alt!r} did not load"
        assert src == "data:image/png;base64,"
    tables = browser.execute_script(
        "return Array.from(document.querySelectorAll('table')).map(t => [t.rows.length, t.rows[0].cells.length]);"
    )
    headers = browser.execute_script(
        "return Array.from(document.querySelectorAll('table')).map(t => t.rows[0].cells[0].textContent);"
    )
    # claims (measured, not run), checklist, per dataset/arch the compact tables (one per operating point) and
    # every number in a collapsible section, one table of baselines against EDropout, failed and missing cells
    compared = "baseline (at EDropout's rate)"
    assert headers[:3] == ["claim", "source", "item"] and headers[-1] == "cell"
    assert headers.count(compared) == 2
    details = [rows for (rows, cols), h in zip(tables, headers) if h == "method" and cols == 14]
    assert details == [8, 8]  # header + 7 method/operating point rows each
    compact = [cols for (rows, cols), h in zip(tables, headers) if h == "method" and cols != 14]
    assert compact and set(compact) == {8}
    assert [rows for (rows, cols), h in zip(tables, headers) if h == compared] == [3, 3]  # two matched baselines
    assert FAILED_CELL in browser.find_element("tag name", "body").text
    # nothing outside the page was requested
    requests = browser.execute_script("return performance.getEntriesByType('resource').map(r => r.name);")
    assert [r for r in requests if not r.startswith("data:")] == []


def _layout_at(browser, width: int) -> dict:
    browser.set_window_size(width, 900)
    return browser.execute_script(
        """
        const doc = document.documentElement;
        const wide = Array.from(document.querySelectorAll('table, figure, pre, p, nav'))
            .filter(e => e.getBoundingClientRect().right > doc.clientWidth + 1).map(e => e.tagName);
        const anchors = Array.from(document.querySelectorAll('a[href^="#"]')).map(a => a.getAttribute('href'));
        return {
            scroll: doc.scrollWidth, client: doc.clientWidth, inner: window.innerWidth, wide: wide,
            broken: anchors.filter(h => !document.getElementById(h.slice(1))),
            anchors: anchors.length,
            external: Array.from(document.querySelectorAll('a:not([href^="#"])')).map(a => a.href),
            rowsWithRuns: Array.from(document.querySelectorAll('td.links')).length,
            bold: Array.from(document.querySelectorAll('td strong')).length,
            details: Array.from(document.querySelectorAll('details')).length,
        };
        """
    )


def test_report_fits_1280_px_and_every_link_resolves(tmp_path, browser):
    """No horizontal overflow at 1280 px (the whole page and every table), the table of contents and every other
    in-page link point at an element, every image loads, and each result row links to its MLflow runs."""
    rows = [{**row, "mlflow_run_id": f"{i:032x}"} for i, row in enumerate(study_rows())]  # as aggregate writes
    csv = write_study(tmp_path, rows)
    url = "http://mlflow.example.org:5000"
    build_report(csv, tmp_path / "reports", "Layout check", root=tmp_path, tracking_url=url,
                 built_from={"commit": "0" * 40, "uncommitted changes": "no"})  # fmt: skip
    browser.get((tmp_path / "reports" / "report.html").as_uri())
    layout = _layout_at(browser, 1280)
    assert layout["scroll"] <= layout["client"], layout
    assert layout["wide"] == [], layout["wide"]
    assert layout["anchors"] >= 10 and layout["broken"] == []
    assert layout["external"] and all(h.startswith(url + "/#/runs/") for h in layout["external"])
    assert layout["rowsWithRuns"] > 0 and layout["bold"] > 0 and layout["details"] == 2
    images = browser.execute_script("return Array.from(document.images).map(i => i.complete && i.naturalWidth > 0);")
    assert images and all(images)
    assert "0" * 40 in browser.find_element("tag name", "body").text
