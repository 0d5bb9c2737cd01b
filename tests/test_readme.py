"""README's "Your own network" example runs as written."""
from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _block(section: str) -> str:
    text = README.read_text()
    start = text.index(f"## {section}")
    return re.search(r"```python\n(.*?)```", text[start:], re.S).group(1)


def test_own_network_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(_block("Your own network"), "README.md", "exec"), scope)  # noqa: S102 - our own README
    assert scope["result"].keep_ratio <= 0.31 and scope["summary"].onnx_max_abs_diff <= 1e-4
    assert {"masks.pt", "state_dict.pt", "model.pt2", "model.onnx", "report.json"} <= set(scope["summary"].files)
    assert (tmp_path / "pruned-net" / "model.onnx").exists()
