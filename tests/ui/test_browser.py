"""One real-browser test: `streamlit run app.py` headless, driven by Playwright and Debian's chromium.

Skips when /usr/bin/chromium is missing, unless SIPP_REQUIRE_BROWSER=1 (CI), where it fails.
Screenshots of every page land in .artifacts/screenshots/ (ignored by git).
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from ui.serve import CHROMIUM, launch_browser, streamlit_server, wait_idle  # noqa: E402

SHOTS = ROOT / ".artifacts" / "screenshots"
PAGES = [("Sensitivity", "sensitivity"), ("Kept edges", "kept_edges"), ("Guarantees", "guarantees"), ("Learn", "learn")]


def _require_browser():
    required = os.environ.get("SIPP_REQUIRE_BROWSER") == "1"
    if not Path(CHROMIUM).exists():
        if required:
            pytest.fail(f"{CHROMIUM} is missing and SIPP_REQUIRE_BROWSER=1 (install it: apt-get install -y chromium)")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium); set SIPP_REQUIRE_BROWSER=1 to fail instead")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        if required:
            pytest.fail("the playwright package is missing and SIPP_REQUIRE_BROWSER=1")
        pytest.skip("the playwright package is missing")


def test_default_prune_in_a_real_browser(tmp_path):
    _require_browser()
    from playwright.sync_api import expect, sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    env = {"SIPP_CACHE_DIR": str(tmp_path / "cache")}
    with streamlit_server(env, log_path=tmp_path / "streamlit.log") as url, sync_playwright() as p:
        browser = launch_browser(p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            # A deep link as the very first request to a fresh server still gets the app's sidebar and page.
            page.goto(url + "/kept_edges?keep=0.05")
            expect(page.get_by_role("heading", name="Kept edges", exact=True).first).to_be_visible(timeout=90_000)
            expect(page.locator(".st-key-model")).to_be_visible()
            wait_idle(page)
            assert page.get_by_text("Page not found").count() == 0
            # the hidden elements that had the browser load the page's code meanwhile (ui/preload.py) are gone
            assert page.locator(".st-key-sipp-preload").count() == 0
            page.goto(url)
            metrics = page.locator('[data-testid="stMetric"]')
            expect(metrics.filter(has_text="Weights kept")).to_be_visible(timeout=90_000)
            expect(metrics.filter(has_text="Accuracy after")).to_be_visible()
            expect(metrics.filter(has_text="Largest bound")).to_be_visible()
            expect(metrics.filter(has_text="Largest measured error")).to_be_visible()
            chart = page.locator('[data-testid="stVegaLiteChart"]').first
            expect(chart).to_be_visible(timeout=30_000)
            expect(chart.locator("canvas, svg").first).to_be_visible(timeout=30_000)
            wait_idle(page)
            assert page.locator('[data-testid="stException"]').count() == 0
            kept_text = metrics.filter(has_text="Weights kept").inner_text()
            assert "%" in kept_text
            # the two charts side by side differ in height, and their "Download chart" buttons still line up
            charts = page.locator('[data-testid="stVegaLiteChart"]')
            heights = [charts.nth(i).bounding_box()["height"] for i in range(2)]
            assert abs(heights[0] - heights[1]) > 50, heights
            tops = [b["y"] for b in (page.locator('[data-testid="stPopover"]').filter(has_text="Download chart").nth(i)
                                     .bounding_box() for i in range(2))]
            assert abs(tops[0] - tops[1]) <= 2, tops
            page.screenshot(path=str(SHOTS / "prune.png"))
            for title, stem in PAGES:
                page.get_by_role("link", name=title).first.click()
                expect(page.get_by_role("heading", name=title, exact=True).first).to_be_visible(timeout=60_000)
                wait_idle(page)
                assert page.locator('[data-testid="stException"]').count() == 0, title
                assert page.locator('[data-testid="stAlertContentError"]').count() == 0, title
                page.screenshot(path=str(SHOTS / f"{stem}.png"))
            # a copied link reproduces the view: settings live in the URL
            page.goto(url + "/?method=sipp-det&keep=0.05")
            expect(page.locator('[data-testid="stMetric"]').filter(has_text="Weights kept")).to_be_visible(timeout=60_000)
            wait_idle(page)
            kept = page.locator('[data-testid="stMetric"]').filter(has_text="Weights kept").inner_text()
            assert "5.00%" in kept or "4.99%" in kept, kept
        finally:
            browser.close()


def test_a_fresh_server_warms_up_and_saves_no_run_for_it(tmp_path):
    """app.py runs the default page once at start-up (ui/warmup.py): it says so on the terminal, saves nothing
    to the run history, and the first page opened afterwards shows the default result and saves it."""
    _require_browser()
    from playwright.sync_api import expect, sync_playwright

    from sipp_core.jobs.history import RunHistory

    data = tmp_path / "data"
    log = tmp_path / "streamlit.log"
    env = {"SIPP_CACHE_DIR": str(tmp_path / "cache"), "SIPP_DATA_HOME": str(data), "SIPP_WARMUP": "1"}
    with streamlit_server(env, log_path=log) as url, sync_playwright() as p:
        deadline = time.time() + 120
        while "Warm-up done" not in log.read_text() and time.time() < deadline:
            assert "Warm-up stopped" not in log.read_text(), log.read_text()
            time.sleep(0.2)
        assert "Warm-up done" in log.read_text(), log.read_text()
        history = data / "runs.sqlite"
        assert not history.exists() or RunHistory(history).count() == 0
        browser = launch_browser(p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(url)
            expect(page.locator('[data-testid="stMetric"]').filter(has_text="Weights kept")).to_be_visible(timeout=60_000)
            wait_idle(page)
            assert page.locator('[data-testid="stException"]').count() == 0
        finally:
            browser.close()
        assert RunHistory(history).count(kind="prune") == 1
