"""A layer axis keeps two upright label lines beside a neighbouring chart while they fit half the page (LeNet-300's
three layers), takes the whole width when they fit only that (LeNet-5's five), and turns the module names upright
on the whole width beyond (a ResNet's 20)."""
from __future__ import annotations

from streamlit.testing.v1 import AppTest

from ui.charts import core

FEW = ["fc1 · Linear 784→300", "fc2 · Linear 300→100", "fc3 · Linear 100→10"]
LENET5 = ["conv1 · Conv2d 1→6, 5x5", "conv2 · Conv2d 6→16, 5x5", "fc1 · Linear 400→120", "fc2 · Linear 120→84",
          "fc3 · Linear 84→10"]
MANY = ["conv1 · Conv2d 3→16, 3x3"] + [f"layers.{i}.conv{j} · Conv2d 16→16, 3x3" for i in range(9) for j in (1, 2)] + [
    "fc · Linear 64→5"]


def test_few_layers_stand_on_two_lines_many_are_turned_module_names():
    few, many = core.layer_axis(FEW).to_dict(), core.layer_axis(MANY).to_dict()
    assert few["labelAngle"] == 0 and "' · ')" in few["labelExpr"]
    assert many["labelAngle"] == -90 and many["labelExpr"].endswith("[0]")  # the module name alone
    assert core.layer_axis_title(FEW) == "layer (module name · shape)"
    assert core.layer_axis_title(MANY) == "layer (module name)"
    assert core.layer_label_lines(FEW) == 2
    assert core.layer_axis(LENET5).to_dict()["labelAngle"] == 0 and core.layer_label_lines(LENET5) == 2
    # "layers.8.conv2": 14 characters of about 7 px, turned: 98 px of axis, at 17 px a line
    assert core.layer_label_lines(MANY) == 6


def _page():
    import altair as alt
    import pandas as pd
    import streamlit as st

    from ui import show
    from ui.charts import core

    labels = st.session_state["labels"]
    n = len(labels)
    df = pd.DataFrame({"layer": labels, "v": range(n)})
    pts = alt.Chart(df).mark_point().encode(x=alt.X("layer:N", sort=labels, axis=core.layer_axis(labels)), y="v:Q")
    one = core.wide(core.sized(pts.properties(width=core.WIDTH, height=200), 200,
                               x_label_lines=core.layer_label_lines(labels)), labels)
    other = core.sized(alt.Chart(df).mark_bar().encode(x="v:Q", y="layer:N").properties(height=200), 200)
    show.chart_row([one, other])


def test_a_chart_whose_layers_do_not_fit_half_the_page_takes_the_whole_width_and_so_does_its_neighbour():
    at = AppTest.from_function(_page, default_timeout=60)
    for labels, side_by_side in ((FEW, True), (LENET5, False), (MANY, False)):
        at.session_state["labels"] = labels
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        assert len(at.get("vega_lite_chart")) == 2
        assert len(at.columns) == (2 if side_by_side else 0), len(labels)  # else one below the other, each across
