"""Start `jupyter lab` on a free local port for the browser test and the benchmark, away from the user's home.

Token-less, bound to 127.0.0.1, no browser, with its own config, data, runtime, settings and workspace
folders under a temporary directory, no news feed and no update check (nothing reaches the internet).
`window.jupyterapp` is exposed so that a test can run a notebook's cells through JupyterLab's own commands.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from ui.serve import free_port, stop, wait_until_up

# JavaScript for page.evaluate: run every cell of the open notebook, then list the errors it printed.
RUN_ALL_JS = """async () => {
  const panel = window.jupyterapp.shell.currentWidget;
  await panel.context.ready;
  await panel.sessionContext.ready;
  await window.jupyterapp.commands.execute('notebook:run-all-cells');
  const errors = [];
  for (const cell of panel.content.model.cells) {
    if (cell.type !== 'code') continue;
    for (const out of cell.toJSON().outputs || []) {
      if (out.output_type === 'error') errors.push(out.ename + ': ' + out.evalue);
    }
  }
  return errors;
}"""
# Marks the drawn charts of the open tab, the headline and the status line as "old", so that the check below sees
# their replacements; the clock starts when the mouse releases the slider.
MARK_JS = """() => {
  for (const name of ['density', 'bound']) {
    document.querySelector(`.sipp-chart-${name} .jp-OutputArea-output`).dataset.sippOld = '1';
  }
  window.__sippHeadline = document.querySelector('.sipp-headline').innerText;
  window.__sippStatus = document.querySelector('.sipp-status').innerText;
  window.__sippT0 = undefined;
  document.addEventListener('mouseup', () => { window.__sippT0 = performance.now(); }, {capture: true, once: true});
}"""
# Milliseconds from the mouse release until the headline, the status line and both charts of the open tab are new
# and drawn (null until then).
UPDATED_JS = """() => {
  if (window.__sippT0 === undefined) return null;
  if (document.querySelector('.sipp-headline').innerText === window.__sippHeadline) return null;
  const status = document.querySelector('.sipp-status').innerText;
  if (status === window.__sippStatus || !status.includes('Updated in')) return null;
  for (const name of ['density', 'bound']) {
    const out = document.querySelector(`.sipp-chart-${name} .jp-OutputArea-output`);
    if (!out || out.dataset.sippOld || !out.querySelector('canvas, svg')) return null;
  }
  return performance.now() - window.__sippT0;
}"""
APP_READY_JS = "() => !!(window.jupyterapp && window.jupyterapp.shell.currentWidget && " \
               "window.jupyterapp.shell.currentWidget.sessionContext)"


def move_slider(page, explorer, label: str, dx: float, timeout_ms: float = 30_000) -> float:
    """Drag the handle of explore()'s slider `label` by dx pixels with the mouse (Playwright); return the
    milliseconds from the release to a new headline, status line and redrawn charts of the open tab."""
    slider = explorer.locator(".widget-hslider", has_text=label)
    handle = slider.locator(".noUi-handle")
    handle.wait_for(state="visible")
    handle.scroll_into_view_if_needed()
    page.wait_for_timeout(300)  # let the scroll settle: a drag that starts mid-scroll misses the handle
    box = handle.bounding_box()
    page.evaluate(MARK_JS)
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + dx, y, steps=5)
    page.mouse.up()
    return page.wait_for_function(UPDATED_JS, timeout=timeout_ms, polling=10).json_value()


def _config(root: Path, port: int, home: Path) -> dict:
    return {
        # allow_root: CI containers run as root; the server is bound to 127.0.0.1 and lives for one test
        "ServerApp": {"ip": "127.0.0.1", "port": port, "port_retries": 0, "open_browser": False, "allow_root": True,
                      "root_dir": str(root), "disable_check_xsrf": True, "terminals_enabled": False},
        "IdentityProvider": {"token": ""},
        "LabApp": {"expose_app_in_browser": True, "news_url": None, "extension_manager": "readonly",
                   "check_for_updates_class": "jupyterlab.NeverCheckForUpdate",
                   "user_settings_dir": str(home / "lab-settings"), "workspaces_dir": str(home / "workspaces")},
    }


@contextmanager
def jupyterlab_server(notebooks: list[Path], home: Path, env: dict | None = None, log_path: Path | None = None,
                      timeout: float = 90.0):
    """Copy `notebooks` into home/root, start JupyterLab there and yield its base URL; stop it (and its kernels) after."""
    root = home / "root"
    root.mkdir(parents=True, exist_ok=True)
    for nb in notebooks:
        shutil.copy(nb, root / nb.name)
    dirs = {name: home / name for name in ("config", "data", "runtime", "ipython")}
    for d in dirs.values():
        d.mkdir(exist_ok=True)
    port = free_port()
    # no "get notified about Jupyter news?" prompt over the page (it would also ask the internet)
    news = home / "lab-settings" / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True, exist_ok=True)
    (news / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    (dirs["config"] / "jupyter_server_config.json").write_text(json.dumps(_config(root, port, home)))
    full_env = {**os.environ, **(env or {}), "JUPYTER_CONFIG_DIR": str(dirs["config"]),
                "JUPYTER_DATA_DIR": str(dirs["data"]), "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]),
                "IPYTHONDIR": str(dirs["ipython"]), "JUPYTER_PLATFORM_DIRS": "1"}
    log = open(log_path, "w") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser"], cwd=root, env=full_env,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(proc, url + "/api/status", lambda r: r.status == 200, timeout, f"jupyter lab (log: {log_path})")
        yield url
    finally:
        _stop_kernels(url)
        stop(proc, grace=15)
        if log_path:
            log.close()


def _stop_kernels(url: str) -> None:
    """Shut down every kernel the server started (a killed server would leave them running)."""
    try:
        with urllib.request.urlopen(url + "/api/kernels", timeout=5) as r:
            kernels = json.loads(r.read())
        for k in kernels:
            urllib.request.urlopen(urllib.request.Request(f"{url}/api/kernels/{k['id']}", method="DELETE"), timeout=10)
    except OSError:
        pass
