"""report.html in a real headless Chromium: every figure loads and the tables are there, with no network."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from benchmark.report.build import build_report
from tests.test_report import FAILED_CELL, write_study

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
    # claims (measured, not run), checklist, one result table and one table of baselines against EDropout per
    # dataset/arch, failed and missing cells
    compared = "baseline (at EDropout's rate)"
    assert headers == ["claim", "source", "item", "method", "method", compared, compared, "cell"]
    results = [rows for (rows, cols), h in zip(tables, headers) if h == "method"]
    assert results == [8, 8]  # header + 7 method/operating point rows each
    assert all(cols == 14 for (rows, cols), h in zip(tables, headers) if h == "method")
    assert [rows for (rows, cols), h in zip(tables, headers) if h == compared] == [3, 3]  # two matched baselines
    assert FAILED_CELL in browser.find_element("tag name", "body").text
    # nothing outside the page was requested
    requests = browser.execute_script("return performance.getEntriesByType('resource').map(r => r.name);")
    assert [r for r in requests if not r.startswith("data:")] == []
