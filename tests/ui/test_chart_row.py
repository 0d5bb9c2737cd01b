"""show.chart_row: charts side by side are drawn as tall as the tallest, so that their titles line up above and their
"Download chart" buttons below; while presenting, each keeps its own height (each takes the full width)."""
from __future__ import annotations

from streamlit.testing.v1 import AppTest


def _page():
    import altair as alt
    import pandas as pd
    import streamlit as st
    from streamlit.delta_generator import DeltaGenerator

    from ui import show

    df = pd.DataFrame({"x": [1, 2], "y": [3, 4]})
    short = alt.Chart(df).mark_bar().encode(x="x", y="y").properties(usermeta={"sipp_height": 180})
    tall = alt.Chart(df).mark_point().encode(x="x", y="y").properties(usermeta={"sipp_height": 420})
    drawn = st.session_state.setdefault("heights", [])
    drawn.clear()
    # Drawn into a column (a DeltaGenerator's method) or, while presenting, across the page (st's own, bound when
    # streamlit was imported): both are recorded
    owners = [(DeltaGenerator, name) for name in ("vega_lite_chart", "altair_chart")]
    owners += [(st, name) for name in ("vega_lite_chart", "altair_chart")]
    originals = {(owner, name): getattr(owner, name) for owner, name in owners}

    def recorder(fn):
        def draw(*args, height=None, **kwargs):
            drawn.append(height)
            return fn(*args, height=height, **kwargs)
        return draw

    for (owner, name), fn in originals.items():
        setattr(owner, name, recorder(fn))
    try:
        show.chart_row([short, (tall, tall.to_dict())])  # a chart, and a chart with its cached spec
    finally:
        for (owner, name), fn in originals.items():
            setattr(owner, name, fn)


def test_side_by_side_charts_share_the_tallest_height():
    at = AppTest.from_function(_page, default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["heights"] == [420, 420]
    assert len(at.get("vega_lite_chart")) == 2
    pops = [p for p in at.get("popover") if p.proto.popover.label == "Download chart"]
    assert len(pops) == 2  # one under each chart, now at the same height


def test_presenting_keeps_each_chart_its_own_height():
    at = AppTest.from_function(_page, default_timeout=60)
    at.query_params["present"] = "1"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["heights"] == [int(180 * 1.2), int(420 * 1.2)]  # presentation mode's larger type
