"""Chart templates compiled ahead: the Vega-Lite dicts of the default page's charts, written by `make run` before
it starts the server (``python -m ui.compile_templates``), as it compiles the app's bytecode.

Why: a fresh server's first page would otherwise import Altair (0.2 s on a 2-core laptop) and build its two chart
templates (0.1 s) after torch, while its first visitor waits. Drawn from this file (ui.charts.figure.spec_of),
it does neither.

The file holds what the builders themselves made, by key (ui.charts.figure.Figure.key), beside a fingerprint of
the code that made them (ui/charts, ui/tables.py and Altair's version). A file whose fingerprint is not the
code's now, an unreadable file or none at all is ignored: every template is then built as usual, so the file can
only make a page sooner, never different. Written atomically: a reader never sees half of it.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
import threading
from pathlib import Path

from sipp_core.io.outputs import write_atomically

PATH = Path(__file__).resolve().parent / "__templates__" / "default.json"  # beside the code, like its bytecode
_CODE = (Path(__file__).resolve().parent, Path(__file__).resolve().parent.parent / "tables.py")

_lock = threading.Lock()
_table: dict[str, dict] | None = None  # key text -> spec, read once per process


def fingerprint() -> str:
    """A hash of the code the templates come from: the chart modules, the table labels, Altair itself."""
    h = hashlib.sha256()
    charts, tables = _CODE
    for p in sorted(charts.glob("*.py")) + [tables]:
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    spec = importlib.util.find_spec("altair")  # found, not imported
    if spec is not None and spec.origin:
        package = Path(spec.origin).parent
        h.update(spec.origin.encode() + b"\0" + (package / "__init__.py").read_bytes())
        # its version: the name of its installed metadata (importlib.metadata.version takes 40 ms to find it)
        h.update("\0".join(sorted(p.name for p in package.parent.glob("altair-*.dist-info"))).encode())
    return h.hexdigest()


def key_text(key: tuple) -> str | None:
    """A figure key as the file writes it (None for a key that JSON cannot hold: never compiled)."""
    try:
        return json.dumps(key, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        return None


def _read(path: Path) -> dict[str, dict]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or doc.get("fingerprint") != fingerprint():
            return {}
        templates = doc.get("templates")
        return {k: v for k, v in templates.items() if isinstance(v, dict)} if isinstance(templates, dict) else {}
    except (OSError, ValueError, AttributeError):
        return {}


def spec(key: tuple) -> dict | None:
    """The compiled template for this key, or None (no file, another code's file, or a key not compiled)."""
    global _table
    text = key_text(key)
    if text is None:
        return None
    with _lock:
        if _table is None:
            _table = _read(PATH)
        return _table.get(text)


def forget(ignore_file: bool = False) -> None:
    """Read the file again at the next spec() (tests; after writing it); ignore_file: read none (every template
    is built: what ui.compile_templates writes)."""
    global _table
    with _lock:
        _table = {} if ignore_file else None


def write(specs: dict[tuple, dict], path: Path | None = None, code: str | None = None) -> int:
    """Write these templates (key -> Vega-Lite dict) to `path` (default PATH) with `code`, the fingerprint of the
    code that made them (default: the code's now; take it before making them, so that an edit meanwhile makes the
    file stale rather than wrong). Returns how many."""
    path = path if path is not None else PATH
    templates = {t: s for k, s in specs.items() if (t := key_text(k)) is not None}
    doc = {"fingerprint": code if code is not None else fingerprint(), "templates": templates}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, json.dumps(doc, separators=(",", ":")).encode("utf-8"))  # readable by whoever runs the app
    forget()
    return len(templates)


def writable() -> bool:
    """Whether PATH can be written (its folder, or the nearest folder above that exists)."""
    folder = PATH.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return os.access(folder, os.W_OK | os.X_OK) and (not PATH.exists() or os.access(PATH, os.W_OK))


def up_to_date() -> bool:
    """Whether PATH holds templates of this code."""
    return bool(_read(PATH))


if __name__ == "__main__":  # `make templates`: exit 0 when the file is this code's, else 1 (then ui.compile_templates)
    sys.exit(0 if up_to_date() else 1)
