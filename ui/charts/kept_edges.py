"""Kept-edge charts: which edges of a small layer are kept, and how many each unit keeps (the Kept edges page).

No streamlit: they work in Jupyter too. Shared palette, type sizes and axes: ui.charts.core.
"""
from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from ui import tables
from ui.charts.core import OKABE, SIGN_COLORS, WIDTH, _title, sized


def heatmap_small(df: pd.DataFrame, layer: str, width: int = WIDTH, height: int | None = None) -> alt.Chart:
    """Interactive kept-edge heatmap of a SMALL layer: hover shows w, s, kept (use images for big layers)."""
    F, J = int(df["unit"].max()) + 1, int(df["input"].max()) + 1
    lim = float(np.nanmax(np.abs(df["value"].to_numpy()))) if df["value"].notna().any() else 1.0
    tick = max(1, J // 10)
    base = alt.Chart(df).encode(
        x=alt.X("input:O", title="input j", axis=alt.Axis(values=list(range(0, J, tick)), labelAngle=0)),
        y=alt.Y("unit:O", title="output unit f", axis=alt.Axis(values=list(range(0, F, max(1, F // 10))))),
        tooltip=[alt.Tooltip("unit:Q", title="unit f"), alt.Tooltip("input:Q", title="input j"),
                 alt.Tooltip("w:Q", format=".4f", title="w (original)"), alt.Tooltip("s:Q", format=".3e", title="s"),
                 "kept:N", alt.Tooltip("value:Q", format=".4f", title="value after pruning")],
    )
    pruned = base.transform_filter("datum.kept == 'pruned'").mark_rect(color="#DDDDDD")
    kept = base.transform_filter("datum.kept == 'kept'").mark_rect().encode(
        color=alt.Color("value:Q", title="kept weight",
                        scale=alt.Scale(domain=[-lim, 0, lim], range=[OKABE["orange"], "#FFFFFF", OKABE["blue"]])))
    h = height or int(min(420, max(120, 14 * F)))
    return sized((pruned + kept).properties(
        title=_title(f"Kept edges of layer {layer}", "grey: pruned; colour: value kept (sampled weights are reweighted)"),
        width=width, height=h), h)


def kept_per_unit(report, layer: str, width: int = WIDTH, height: int = 220) -> alt.Chart:
    df = tables.kept_per_unit(report, layer)
    chart = alt.Chart(df).mark_bar().encode(
        x=alt.X("unit:O", title="output unit f", axis=alt.Axis(values=list(range(0, int(df["unit"].max()) + 1,
                                                                          max(1, (int(df["unit"].max()) + 1) // 10))),
                                                           labelAngle=0)),
        y=alt.Y("kept:Q", stack="zero", title="weights kept (count)"),
        color=alt.Color("sign:N", scale=SIGN_COLORS, title="row", legend=alt.Legend(orient="bottom")),
        tooltip=["unit:Q", "sign:N", "kept:Q"],
    )
    return sized(chart.properties(title=_title(f"Kept weights per unit, layer {tables.layer_label(report, layer)}",
                                               "stacked: the unit's positive-weight row and negative-weight row"),
                                  width=width, height=height), height, 1, 1)
