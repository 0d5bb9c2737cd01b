"""The app's heavy imports (torch, pandas and the app's own modules: most of the 280,000 objects a server holds),
made once per process by the first run, with Python's garbage collector kept out of them; and, the same way,
what the first page does without and later pages need (later_import: Altair and the chart builders).

Why: the collector makes a pass every few hundred new objects and a full pass as old ones pile up. Over these
imports that is about a fifth of their time (1.84-1.99 s with it, 1.42-1.70 s without, on a 2-core laptop), and
nothing they make is garbage. After them, every object alive is moved out of the collector's reach for good
(gc.freeze): Streamlit runs a full collection after every script run, and over those objects it took 0.4 s on a
busy 2-core machine, holding the interpreter while the page waited for its redraw; afterwards it takes a few ms.

Streamlit-free and light: studio.py enters it before torch is imported. Two runs may make the imports at once
(the server's warm-up and a first visitor, ui/warmup.py): the first of them done freezes, and the collector is
back on when the last is.
"""
from __future__ import annotations

import gc
import importlib
import sys
import threading
from contextlib import contextmanager

_lock = threading.Lock()
_state = {"inside": 0, "was_enabled": True, "frozen": False}


@contextmanager
def heavy_imports():
    """Make the block's imports with the collector off, then freeze what they made (once per process; once the
    imports are done, entering the block costs nothing and leaves the collector alone)."""
    with _lock:
        if _state["frozen"]:
            active = False
        else:
            active = True
            if _state["inside"] == 0:
                _state["was_enabled"] = gc.isenabled()
                gc.disable()
            _state["inside"] += 1
    if not active:
        yield
        return
    done = False
    try:
        yield
        done = True
    finally:
        with _lock:
            _state["inside"] -= 1
            # Frozen by the first run done, not the last: the warm-up's run, ended as redundant right after the
            # imports, is followed by Streamlit's full collection, which over the unfrozen objects held the
            # interpreter for 0.17 s while the first visitor's run waited to draw its sidebar. What the other run
            # still makes stays collectable.
            if done and not _state["frozen"]:
                gc.freeze()
                _state["frozen"] = True
            if _state["inside"] == 0 and _state["was_enabled"]:
                gc.enable()


def later_import(module: str) -> None:
    """Import `module` (and all it imports) as heavy_imports makes the first ones: with the collector off, then
    frozen. For what the first page does without: Altair and the chart builders (ui.charts.compiled), imported in the
    background once that page is drawn (ui.warmup), or by the first other page if it comes sooner. Unfrozen, their
    objects would add 6-10 ms to the full collection after every run. Nothing to do once imported."""
    if module in sys.modules:
        return
    with _lock:
        if _state["inside"] == 0:
            _state["was_enabled"] = gc.isenabled()
            gc.disable()
        _state["inside"] += 1
    try:
        importlib.import_module(module)
    finally:
        with _lock:
            _state["inside"] -= 1
            if _state["inside"] == 0:
                gc.freeze()
                if _state["was_enabled"]:
                    gc.enable()
