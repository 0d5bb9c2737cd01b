"""Every notebook in examples/ runs from top to bottom in a real kernel (the venv's python3), as a reader runs it.

The lessons check their own reading of the numbers with asserts, so a lesson whose text no longer matches the
engine fails here. Lessons draw their charts as the Vega-Lite mimetype (JupyterLab draws it offline)."""
from __future__ import annotations

from pathlib import Path

import nbclient
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
LESSONS = ["01_sipp_from_scratch.ipynb", "02_tradeoffs.ipynb", "03_nonsmoothness.ipynb"]
NOTEBOOKS = LESSONS
WIDGET = "application/vnd.jupyter.widget-view+json"
VEGALITE = "application/vnd.vegalite.v5+json"


def test_every_notebook_is_listed():
    assert sorted(p.name for p in EXAMPLES.glob("*.ipynb")) == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_imports_the_installed_package(name):
    text = (EXAMPLES / name).read_text()
    assert "sys.path" not in text and ("import sipp_core" in text or "from sipp_core" in text)
    cells = nbformat.read(EXAMPLES / name, as_version=4).cells
    assert all(not c.get("outputs") for c in cells if c.cell_type == "code"), "commit notebooks without outputs"


def _execute(name: str, tmp_path, monkeypatch) -> list[dict]:
    monkeypatch.setenv("SIPP_CACHE_DIR", str(tmp_path / "cache"))
    # one intra-op thread in the kernel: a busy 2-core CI box otherwise spends most of the time spinning
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(EXAMPLES / name, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(EXAMPLES)}})
    # nbclient plays the front end of ipywidgets' Output and sends its state back on the shell socket while it
    # waits for the cell's reply there; that send can swallow the reply's wake-up until the 120 s timeout. Without
    # the emulation a widget's charts land in the cell's own outputs, which is what this test reads anyway.
    client.widget_registry = {}
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    return outputs


@pytest.mark.parametrize("name", LESSONS)
def test_lesson_executes(name, tmp_path, monkeypatch):
    outputs = _execute(name, tmp_path, monkeypatch)
    kinds = [k for o in outputs for k in o.get("data", {})]
    assert VEGALITE in kinds  # the charts, drawn without a CDN (the widgets' are checked in test_explorer.py)
    assert "text/html" in kinds  # tables
    if name != "02_tradeoffs.ipynb":
        assert WIDGET in kinds  # explore() / explore_smoothness()
