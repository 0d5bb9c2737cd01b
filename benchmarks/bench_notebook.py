"""The notebook half's speed: explore() in JupyterLab, and each lesson's run time.

1. Slider to charts in JupyterLab: a fresh `jupyter lab` (ui.notebook.lab) opens examples/01_sipp_from_scratch.ipynb
   in Debian's chromium, runs every cell, then drags explore()'s keep-ratio slider back and forth; per move, the
   milliseconds from the mouse release to a new headline, status line and both redrawn charts of the open tab
   (target: about a second), with the kernel's own share (the status line: prune and evaluate, charts).
2. In-process: explore()'s update for a keep-ratio move without a front end (no chart is drawn, so none is built:
   the engine's share alone).
3. Each lesson run top to bottom through nbclient with OMP_NUM_THREADS=1 (target: under 2 minutes each).

Run:  .venv/bin/python benchmarks/bench_notebook.py [--moves 6] [--skip-lessons]   (1. needs /usr/bin/chromium)
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nbclient
import nbformat

import sipp_core
from ui.notebook.lab import APP_READY_JS, RUN_ALL_JS, jupyterlab_server, move_slider
from ui.serve import CHROMIUM, launch_browser

ROOT = Path(__file__).resolve().parent.parent
LESSONS = sorted((ROOT / "examples").glob("0*.ipynb"))


def _stats(values: list[float]) -> str:
    return f"median {statistics.median(values):.0f} ms, max {max(values):.0f} ms ({len(values)} moves)"


def bench_jupyterlab(moves: int) -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, \
            jupyterlab_server([LESSONS[0]], Path(tmp) / "lab", {"SIPP_CACHE_DIR": f"{tmp}/cache", "OMP_NUM_THREADS": "1"}) \
            as url, sync_playwright() as p:
        browser = launch_browser(p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{url}/lab/tree/{LESSONS[0].name}")
            page.wait_for_function(APP_READY_JS, timeout=60_000)
            t0 = time.perf_counter()
            errors = page.evaluate(RUN_ALL_JS)
            print(f"lesson 1 run in JupyterLab (Run All): {time.perf_counter() - t0:.1f} s, errors: {errors or 'none'}")
            explorer = page.locator(".sipp-explorer")
            explorer.locator(".sipp-chart-bound canvas, .sipp-chart-bound svg").first.wait_for(timeout=30_000)
            explorer.locator(".widget-dropdown", has_text="Method").scroll_into_view_if_needed()
            browser_ms, kernel_ms = [], []
            readout = explorer.locator(".widget-hslider", has_text="Keep ratio").locator(".widget-readout")
            for i in range(moves):
                before = readout.inner_text()
                try:
                    browser_ms.append(move_slider(page, explorer, "Keep ratio", 30 if i % 2 == 0 else -30))
                except Exception:
                    print(f"move {i}: no redraw seen; slider {before} -> {readout.inner_text()}, status: "
                          f"{explorer.locator('.sipp-status').inner_text()}")
                    raise
                status = explorer.locator(".sipp-status").inner_text()
                print(f"  move {i}: keep ratio {before} -> {readout.inner_text()}: {browser_ms[-1]:.0f} ms; {status}")
                kernel_ms.append(float(re.search(r"Updated in (\d+) ms", status).group(1)))
            print(f"keep-ratio slider release -> headline and open tab's charts redrawn: {_stats(browser_ms)}")
            print(f"  of which in the kernel (prune, evaluate, chart specs): {_stats(kernel_ms)}")
        finally:
            browser.close()


def bench_kernel(moves: int) -> None:
    ex = sipp_core.explore(keep_ratio=0.05)
    times = []
    for i in range(moves):
        t0 = time.perf_counter()
        ex.controls.keep_ratio.value = 0.1 if i % 2 == 0 else 0.05
        times.append(1000 * (time.perf_counter() - t0))
    # without a kernel nothing is drawn, so the charts are not built: this is planning, pruning and measuring
    print(f"explore() update without a front end (keep ratio 0.05 <-> 0.1; engine only): {_stats(times)}")


def bench_lessons() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    for path in LESSONS:
        with tempfile.TemporaryDirectory() as tmp:
            os.environ["SIPP_CACHE_DIR"] = f"{tmp}/cache"
            nb = nbformat.read(path, as_version=4)
            client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                             resources={"metadata": {"path": str(path.parent)}})
            client.widget_registry = {}  # see tests/notebook/test_lessons.py: nbclient's Output emulation can stall
            t0 = time.perf_counter()
            client.execute()
            print(f"{path.name}: {time.perf_counter() - t0:.1f} s top to bottom (kernel start included)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--moves", type=int, default=6)
    ap.add_argument("--skip-lessons", action="store_true")
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}")
    bench_kernel(args.moves)
    if Path(CHROMIUM).exists():
        bench_jupyterlab(args.moves)
    else:
        print(f"{CHROMIUM} is missing: the JupyterLab figure is skipped")
    if not args.skip_lessons:
        bench_lessons()
    print(f"load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
