"""The example notebook runs from top to bottom in a real kernel (the venv's python3)."""
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "examples" / "sipp_walkthrough.ipynb"


def test_notebook_imports_the_installed_package():
    text = NOTEBOOK.read_text()
    assert "sys.path" not in text and ("import sipp_core" in text or "from sipp_core" in text)


def test_notebook_executes(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("SIPP_CACHE_DIR", str(tmp_path / "cache"))
    # one intra-op thread in the kernel: a busy 2-core CI box otherwise spends most of the time spinning
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(ROOT / "examples")}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    # the charts really rendered: every chart cell produced a Vega-Lite or image output
    kinds = {k for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) for k in o.get("data", {})}
    assert "application/vnd.vegalite.v6+json" in kinds or "application/vnd.vegalite.v5+json" in kinds or "text/html" in kinds
    assert "image/png" in kinds
