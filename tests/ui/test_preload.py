"""The first run of a fresh server draws one element of each kind the first page shows into a hidden container,
so that the browser loads their code while torch is imported (ui/preload.py), and leaves none of them behind."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from streamlit.testing.v1 import AppTest

from ui import preload
from ui.style import PAGE_CSS

ROOT = Path(__file__).resolve().parents[2]


def _script():
    from ui import preload

    box = preload.element_code()
    preload.table_code(box)


def test_one_element_of_each_kind_in_a_hidden_container():
    at = AppTest.from_function(_script).run()
    assert not at.exception
    kinds = {"vega_lite_chart": 1, "metric": 1, "latex": 1, "slider": 1, "selectbox": 1, "number_input": 1,
             "radio": 1, "toggle": 1, "checkbox": 1, "popover": 1, "expander": 1, "dataframe": 1}
    assert {k: len(at.get(k)) for k in kinds} == kinds
    assert all(w.disabled for w in (*at.slider, *at.selectbox, *at.number_input, *at.radio, *at.toggle, *at.checkbox))
    assert at.dataframe[0].proto.placeholder == ""  # no "None" even here
    assert f".st-key-{preload.KEY} {{ display: none !important; }}" in PAGE_CSS


def test_a_fresh_servers_first_run_leaves_nothing_of_it_behind():
    """In a fresh process (as a fresh server's first run is), studio.py draws the hidden elements while it imports,
    with the garbage collector off (the chart imports pandas), and the finished page holds only its own: the five
    headline metrics, no 'preload' widget, and no formula typeset by KaTeX (its code, 259 KiB, is the browser's to
    load and run on a first start: the sidebar's |S| formula is plain text, as in the glossary)."""
    probe = ("import gc, json; from streamlit.testing.v1 import AppTest; from ui import preload; calls = []; "
             "draw = preload.element_code; preload.element_code = lambda: (calls.append(gc.isenabled()), draw())[1]; "
             "at = AppTest.from_file('studio.py', default_timeout=120).run(); "
             "texts = [e.value for k in ('markdown', 'caption', 'info') for e in at.get(k)]; "
             "print(json.dumps([calls, len(at.exception), [m.label for m in at.metric], "
             "sorted({w.label for k in ('slider', 'selectbox', 'toggle', 'checkbox') for w in at.get(k)}), "
             "len(at.latex), [t for t in texts if '$' in t]]))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "SIPP_WARMUP": "0", "SIPP_PREFETCH": "0"})
    assert out.returncode == 0, out.stderr[-2000:]
    calls, errors, metrics, labels, latex, dollars = json.loads(out.stdout.strip().splitlines()[-1])
    assert calls == [False], calls
    assert errors == 0 and "Weights kept" in metrics and preload.LABEL not in metrics, metrics
    assert preload.LABEL not in labels, labels
    assert latex == 0 and dollars == [], dollars
