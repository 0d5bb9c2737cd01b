"""One real-browser test of the notebook half: JupyterLab (started here, token-less, on 127.0.0.1) opens the lesson
"SiPP from scratch" in Debian's chromium, runs every cell, and a slider of explore() is dragged with the mouse;
the headline and the charts must follow. Screenshots land in .artifacts/screenshots/ (ignored by git).

Skips when /usr/bin/chromium is missing, unless SIPP_REQUIRE_BROWSER=1 (CI), where it fails.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from ui.notebook.lab import APP_READY_JS, RUN_ALL_JS, jupyterlab_server, move_slider
from ui.serve import CHROMIUM, launch_browser

ROOT = Path(__file__).resolve().parents[2]
LESSON = ROOT / "examples" / "01_sipp_from_scratch.ipynb"
SHOTS = ROOT / ".artifacts" / "screenshots"

def _require_browser():
    required = os.environ.get("SIPP_REQUIRE_BROWSER") == "1"
    if not Path(CHROMIUM).exists():
        if required:
            pytest.fail(f"{CHROMIUM} is missing and SIPP_REQUIRE_BROWSER=1 (install it: apt-get install -y chromium)")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium); set SIPP_REQUIRE_BROWSER=1 to fail instead")


def test_lesson_runs_in_jupyterlab_and_a_slider_redraws_the_charts(tmp_path):
    _require_browser()
    from playwright.sync_api import expect, sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    env = {"SIPP_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    with jupyterlab_server([LESSON], tmp_path / "lab", env, log_path=tmp_path / "lab.log") as url, \
            sync_playwright() as p:
        browser = launch_browser(p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{url}/lab/tree/{LESSON.name}")
            page.wait_for_function(APP_READY_JS, timeout=60_000)
            errors = page.evaluate(RUN_ALL_JS)
            assert errors == [], errors

            explorer = page.locator(".sipp-explorer")
            expect(explorer).to_be_visible(timeout=30_000)
            density = explorer.locator(".sipp-chart-density .jp-OutputArea-output")
            expect(density.locator("canvas, svg").first).to_be_visible(timeout=30_000)
            expect(explorer.locator(".sipp-chart-bound canvas, .sipp-chart-bound svg").first).to_be_visible()
            headline = explorer.locator(".sipp-headline")
            expect(headline).to_contain_text("13,310 of 266,200")  # keep_ratio=0.05, the lesson's setting
            explorer.locator(".widget-dropdown", has_text="Method").scroll_into_view_if_needed()
            page.screenshot(path=str(SHOTS / "jupyterlab_explore_before.png"))
            try:
                ms = move_slider(page, explorer, "Keep ratio", 40)
            except Exception:
                page.screenshot(path=str(SHOTS / "jupyterlab_explore_failed.png"))
                raise
            new_head = headline.inner_text()
            assert "13,310 of 266,200" not in new_head and "weights kept" in new_head
            expect(explorer.locator(".sipp-status")).to_contain_text("Updated in")
            explorer.locator(".sipp-status").evaluate("e => e.scrollIntoView({block: 'start'})")  # status, headline, charts
            page.screenshot(path=str(SHOTS / "jupyterlab_explore.png"))
            (SHOTS / "jupyterlab_slider_ms.txt").write_text(f"{ms:.0f}\n")
            status = explorer.locator(".sipp-status").inner_text()
            print(f"slider release to redrawn headline and charts in JupyterLab: {ms:.0f} ms; kernel: {status}")
            assert ms < 10_000  # a generous ceiling for a busy CI box; the figure itself is in BENCHMARKS.md

            # a hidden tab is drawn when opened, for the setting just chosen
            explorer.get_by_role("tab", name="Kept edges").click()
            expect(explorer.locator(".sipp-chart-kept_edges img")).to_be_visible(timeout=30_000)
            per_unit = explorer.locator(".sipp-chart-kept_per_unit")
            expect(per_unit.locator("canvas, svg").first).to_be_visible(timeout=30_000)
            per_unit.scroll_into_view_if_needed()
            page.screenshot(path=str(SHOTS / "jupyterlab_kept_edges.png"))
        finally:
            browser.close()
