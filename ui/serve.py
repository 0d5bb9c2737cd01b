"""Start `streamlit run app.py` on a free port and drive it with Debian's chromium (tests and benchmarks).

No streamlit import here: the server runs in a child process.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("SIPP_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]

# JavaScript: true when the script run is over (the app root says "notRunning") and nothing is stale.
IDLE_JS = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app) return false;
  const state = app.getAttribute('data-test-script-state');
  const stale = document.querySelector('[data-stale="true"]');
  return state === 'notRunning' && !stale && !document.querySelector('[data-testid="stSkeleton"]');
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(proc: subprocess.Popen, url: str, ready, timeout: float, name: str) -> None:
    """Poll `url` until ready(response) is true; a server that exits or stays silent past `timeout` raises."""
    deadline = time.time() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if ready(r):
                    return
        except OSError:
            pass
        if time.time() > deadline:
            raise TimeoutError(f"{name} did not answer in time")
        time.sleep(0.05)


def stop(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """Terminate a server process, killing it if it outlives `grace` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def streamlit_server(env: dict | None = None, log_path: Path | None = None, timeout: float = 90.0, root: Path = ROOT,
                     port: int | None = None):
    """Yield the base URL of a fresh headless `streamlit run app.py`; stop it afterwards.

    root: the checkout whose app.py runs (benchmarks time an older checkout beside this one).
    port: a free one unless given (a benchmark restarts the app on the same address, as a relaunch does).
    """
    port = port or free_port()
    full_env = {**os.environ, **(env or {})}
    log = open(log_path, "w") if log_path else subprocess.DEVNULL
    cmd = [sys.executable, "-m", "streamlit", "run", str(Path(root) / "app.py"), "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none"]
    proc = subprocess.Popen(cmd, cwd=root, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(proc, url + "/_stcore/health", lambda r: r.read().strip() == b"ok", timeout, "streamlit")
        yield url
    finally:
        stop(proc)
        if log_path:
            log.close()


def wait_idle(page, timeout_ms: int = 60_000) -> None:
    page.wait_for_function(IDLE_JS, timeout=timeout_ms, polling=50)


def launch_browser(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
