"""The browser fetches the code of the first page's elements while a fresh server imports torch.

Why: Streamlit's page loads the code of each kind of element (metric, chart, table, slider, selectbox, …) only
when the first element of that kind arrives, each file asking for the next ones (about 100 small files). On a
fresh server the first page's elements all arrive after the imports, so the browser used to fetch and compile
that code after the server had finished the page: 0.9-1.0 s between the script's end and the first result on a
2-core laptop. During the imports (1-2 s) the browser has nothing else to do. So the first run draws one element
of each kind into a hidden container before the imports (the table after pandas, the first of them), and the
code is ready when the real page arrives. The first result with the page opened at once, 8 rounds alternated on
a 2-core laptop: 3.72 s without, 3.54 s with this (median; BENCHMARKS.md).

Only on a fresh server's first run (studio.py). Tried on every browser session's first run, it made a page opened
on a warm server slower (1.89 -> 2.13 s, median of 3): that server answers in a few hundred ms, so there is
nothing to overlap and the hidden elements only add work. Streamlit-only at import (no pandas or torch).
"""
from __future__ import annotations

import streamlit as st

KEY = "sipp-preload"  # ui/style.py hides the container (.st-key-sipp-preload)
LABEL = "preload"

# One Vega-Lite point: enough for the browser to load the chart code (vega-embed and its parts)
_CHART = {"data": {"values": [{"a": 1}]}, "mark": "point", "encoding": {"x": {"field": "a", "type": "quantitative"}}}


def element_code():
    """A hidden container holding one element of each kind the first page draws (chart and metric first: their
    code is the largest). Returns the container, for table_code. Called inside the heavy imports (studio.py):
    Streamlit turns the chart's data into a pandas frame, so pandas is imported here, with the collector off."""
    box = st.container(key=KEY)
    with box:
        st.vega_lite_chart(_CHART)
        st.metric(LABEL, 1, 1)
        # The first page typesets no formula, but Sensitivity, the page a class opens next, does: KaTeX's code
        # loaded here, during the import, took 0.1 s off that page's first visit (median of 5, 2-core laptop)
        st.latex("x")
        st.slider(LABEL, 0, 1, disabled=True)
        st.selectbox(LABEL, ["a"], disabled=True, help=LABEL)
        st.number_input(LABEL, disabled=True)
        st.radio(LABEL, ["a"], disabled=True)
        st.toggle(LABEL, disabled=True)
        st.checkbox(LABEL, disabled=True)
        st.popover(LABEL)
        st.expander(LABEL)
    return box


def table_code(box) -> None:
    """A one-cell table in the hidden container, drawn just before torch is imported (studio.py)."""
    import pandas as pd  # deferred: this module is imported before the heavy imports (studio.py)

    # st.dataframe itself: ui.show.table would import torch (through the chart code) before the table is sent
    box.dataframe(pd.DataFrame({"a": [1]}), placeholder="")
