"""App speed, measured in a real browser against a fresh `streamlit run app.py`.

1. First complete default result: from opening the home page to the headline
   metrics and every chart drawn and the app idle (target: within 10 s).
2. Interaction: after that, moving the keep-ratio slider or the eps slider by one
   step until every chart is redrawn and the app is idle (target: within 1 s),
   for lenet300 on mnist5k.

Run:  .venv/bin/python benchmarks/bench_app.py   (needs /usr/bin/chromium)
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ui.serve import CHROMIUM, launch_browser, streamlit_server, wait_idle  # noqa: E402

CHART_JS = """(n) => {
  const charts = document.querySelectorAll('[data-testid="stVegaLiteChart"]');
  if (charts.length < n) return false;
  return Array.from(charts).every(c => c.querySelector('canvas, svg'));
}"""


def _metric_text(page, label: str) -> str:
    return page.locator('[data-testid="stMetric"]').filter(has_text=label).first.inner_text()


def _move(page, key: str, steps: int = 1) -> float:
    """Press an arrow key on a slider; seconds until the bound metric or kept count changed and all is idle."""
    before = _metric_text(page, "Weights kept") + _metric_text(page, "Largest bound")
    thumb = page.locator(f'.st-key-{key} input[type="range"]').first
    thumb.focus()
    t0 = time.perf_counter()
    for _ in range(steps):
        thumb.press("ArrowRight")
    page.wait_for_function(
        """([before]) => {
          const ms = Array.from(document.querySelectorAll('[data-testid="stMetric"]'));
          const t = ms.filter(m => /Weights kept|Largest bound/.test(m.innerText)).map(m => m.innerText).join('');
          return t.length > 0 && t.replace(/\\s/g, '') !== before.replace(/\\s/g, '');
        }""", arg=[before], timeout=30_000, polling=20)
    wait_idle(page)
    page.wait_for_function(CHART_JS, arg=2, timeout=30_000, polling=20)
    return time.perf_counter() - t0


def main() -> int:
    if not Path(CHROMIUM).exists():
        print(f"skip: {CHROMIUM} is missing (apt-get install -y chromium)")
        return 0
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        browser = launch_browser(p)  # started before the clock: it is not the app's cost
        try:
            with streamlit_server({"SIPP_CACHE_DIR": tmp}, log_path=Path(tmp) / "streamlit.log") as url:
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                t0 = time.perf_counter()
                page.goto(url)
                page.locator('[data-testid="stMetric"]').filter(has_text="Weights kept").first.wait_for(timeout=120_000)
                page.wait_for_function(CHART_JS, arg=2, timeout=120_000, polling=20)
                wait_idle(page, 120_000)
                first = time.perf_counter() - t0
                print(f"first complete default result (lenet300 / mnist5k, fresh server): {first:.2f} s  (target 10 s)")

                keep = [_move(page, "keep") for _ in range(5)]
                print(f"keep-ratio slider step -> all charts redrawn: median {statistics.median(keep):.2f} s, "
                      f"max {max(keep):.2f} s over {len(keep)} moves  (target 1 s)")

                page.locator(".st-key-mode").get_by_text("eps and delta").click()
                page.locator('.st-key-eps input[type="range"]').first.wait_for(state="attached", timeout=30_000)
                wait_idle(page)
                eps = [_move(page, "eps") for _ in range(5)]
                print(f"eps slider step -> all charts redrawn: median {statistics.median(eps):.2f} s, "
                      f"max {max(eps):.2f} s over {len(eps)} moves  (target 1 s)")
                ok = first <= 10 and max(statistics.median(keep), statistics.median(eps)) <= 1.0
                print("PASS" if ok else "SLOWER THAN TARGET")
        finally:
            browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
