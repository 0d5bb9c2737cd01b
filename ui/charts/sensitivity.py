"""Sensitivity charts: the distribution per layer, sensitivity against |w| for one layer, a unit's row
totals, and one edge's share of its unit's input over the sample S (the Sensitivity and Learn pages).

No streamlit: they work in Jupyter too. Shared palette, type sizes and axes: ui.charts.core.
"""
from __future__ import annotations

import math

import altair as alt
import numpy as np
import pandas as pd

from ui import tables
from ui.charts.core import (
    HEIGHT,
    KEPT_COLORS,
    LOG_LABELS,
    OKABE,
    SIGN_COLORS,
    WIDTH,
    _title,
    empty,
    sized,
    spans_decades,
    tight_log,
)
from ui.charts.figure import Figure, as_chart


def sensitivity_histogram(prepared, width: int = WIDTH, height: int = HEIGHT) -> alt.Chart:
    """Distribution of s per layer on a log axis (pre-binned; share of each layer's edges)."""
    df, zeros = tables.sensitivity_histogram(prepared.sensitivities)
    df["mid"] = np.sqrt(df["lo"] * df["hi"])
    df["percent"] = 100 * df["share"]
    labels = {n: prepared.infos[n].label for n in prepared.sensitivities}
    df["layer"] = df["layer"].map(labels)
    zero_txt = ", ".join(f"{labels[n]}: {z:,}" for n, z in zeros.items() if z)
    order = list(labels.values())
    chart = alt.Chart(df).mark_line(point=alt.OverlayMarkDef(size=30), interpolate="monotone", strokeWidth=2).encode(
        x=alt.X("mid:Q", scale=alt.Scale(type="log"), title="sensitivity s (share of a row's signal, log scale)",
                axis=alt.Axis(labelExpr=LOG_LABELS)),
        y=alt.Y("percent:Q", title="edges in the bin (% of the layer)"),
        color=alt.Color("layer:N", sort=order, title="layer", legend=alt.Legend(orient="bottom", columns=2),
                        scale=alt.Scale(domain=order, range=[OKABE[c] for c in ("blue", "orange", "green", "vermillion",
                                                                                "purple", "sky", "black")])),
        tooltip=["layer:N", alt.Tooltip("lo:Q", format=".2e", title="from"), alt.Tooltip("hi:Q", format=".2e", title="to"),
                 alt.Tooltip("count:Q", format=",", title="edges")],
    )
    # A layer whose edges all fall in one bin is a lone dot, not a curve (LeNet-5's conv1: every edge has s = 1,
    # since on some stroke's edge one pixel carries a unit's whole input): say so in words
    bins = df.groupby("layer", sort=False)
    lone = [f"{n}: all its edges with s > 0 have s from {g['lo'].iloc[0]:.2g} to {g['hi'].iloc[0]:.2g}"
            for n, g in bins if len(g) == 1]
    sub = (["8 bins per decade"] + ([f"edges with s = 0 (not on a log axis): {zero_txt}"] if zero_txt else [])
           + lone)
    return sized(chart.properties(title=_title("How sensitivity is distributed in each layer", sub), width=width,
                                  height=height), height, len(sub), math.ceil(len(order) / 2))


def sensitivity_figure(df: pd.DataFrame, layer: str, width: int = WIDTH, height: int = HEIGHT):
    """Sampled edges of one layer: s against |w|, coloured by kept/pruned when a mask is given. A Figure (the
    template depends on the layer and the number of points drawn), or an empty-state chart."""
    df = df[(df["s"] > 0) & (df["abs_w"] > 0)]
    if df.empty:
        return empty(f"Sensitivity vs weight magnitude, layer {layer}",
                     "No sampled edge of this layer has both s > 0 and w ≠ 0, so there is nothing to place on log axes.",
                     width)
    kept, n = "kept" in df, len(df)
    return Figure(("sensitivity_vs_weight", layer, n, kept, width, height),
                  lambda: _sensitivity_template(layer, n, kept, width, height), {"edges": df})


def _sensitivity_template(layer: str, n: int, kept: bool, width: int, height: int):
    color = (alt.Color("kept:N", scale=KEPT_COLORS, title=None, legend=alt.Legend(orient="bottom"))
             if kept else alt.value(OKABE["blue"]))
    tips = [alt.Tooltip("unit:Q", title="unit f"), alt.Tooltip("input:Q", title="input j"),
            alt.Tooltip("w:Q", format=".4f", title="w"), alt.Tooltip("s:Q", format=".3e", title="s")]
    if kept:
        tips.append("kept:N")
    chart = alt.Chart(alt.NamedData("edges")).mark_circle(size=14, opacity=0.55).encode(
        x=alt.X("abs_w:Q", scale=alt.Scale(type="log"), title="|w| (weight magnitude, log scale)",
                axis=alt.Axis(labelExpr=LOG_LABELS)),
        # s is a share: at most 1 (the log scale's nice top would be 10, an empty decade above every point)
        y=alt.Y("s:Q", scale=alt.Scale(type="log", domainMax=1), title="sensitivity s (log scale)",
                axis=alt.Axis(labelExpr=LOG_LABELS)),
        color=color, tooltip=tips,
    )
    return sized(chart.properties(
        title=_title(f"Sensitivity vs weight magnitude, layer {layer}",
                     [f"{n:,} sampled edges with s > 0 and w ≠ 0", "SiPP ranks by s, magnitude pruning by |w|"]),
        width=width, height=height), height, 2, 1 if kept else 0)


def sensitivity_vs_weight(df: pd.DataFrame, layer: str, width: int = WIDTH, height: int = HEIGHT) -> alt.Chart:
    """sensitivity_figure as an Altair chart, its data inlined."""
    return as_chart(sensitivity_figure(df, layer, width, height))


def row_totals(df: pd.DataFrame, layer: str, width: int = WIDTH, height: int = HEIGHT) -> alt.Chart:
    """Total sensitivity T of every (unit, sign) row of one layer."""
    d = df[df["T"] > 0]
    if d.empty:
        return empty(f"Total sensitivity per unit, layer {layer}",
                     "Every row of this layer has total sensitivity T = 0: no weight carries signal on the points of S.",
                     width)
    log = spans_decades(d["T"])  # LeNet-300's fc1 rows run from 7 to 13: a plain axis
    chart = alt.Chart(d).mark_circle(size=22, opacity=0.8).encode(
        # the first and last unit in full, the axis no wider (rounded out, 300 units drew -50 to 350)
        x=alt.X("unit:Q", title="output unit f (index)", scale=alt.Scale(padding=8, nice=False),
                axis=alt.Axis(tickMinStep=1, format="d")),  # whole units: a 6-unit layer showed 0.5 ticks
        y=alt.Y("T:Q", scale=tight_log() if log else alt.Scale(zero=False, padding=10),
                title="total sensitivity T = Σ s" + (" (log scale)" if log else "")),
        color=alt.Color("sign:N", scale=SIGN_COLORS, title="row sign", legend=alt.Legend(orient="bottom")),
        tooltip=["unit:Q", "sign:N", alt.Tooltip("T:Q", format=".3f"), alt.Tooltip("nnz:Q", title="weights with s > 0")],
    )
    return sized(chart.properties(
        title=_title(f"Total sensitivity per unit, layer {layer}",
                     ["T ≥ 1 for every row with signal", "a larger T needs more samples: m(ε) grows with T"]),
        width=width, height=height), height, 2, 1)


def edge_profile(g: np.ndarray, n_images: int, point: int, width: int = WIDTH, height: int = 200) -> alt.Chart:
    """g_fj(x) of one edge over the points of S (pseudo-points a+ / a- when inputs are signed)."""
    n = len(g)
    signed = n > n_images
    kinds = np.where(np.arange(n) < n_images, "a⁺ = max(a, 0)" if signed else "a (all ≥ 0)", "a⁻ = max(−a, 0)")
    idx = np.arange(n) % max(n_images, 1)
    df = pd.DataFrame(dict(point=idx, g=g, kind=kinds, is_max=np.arange(n) == point))
    base = alt.Chart(df).encode(
        x=alt.X("point:Q", title="point of S (index)", axis=alt.Axis(tickMinStep=1, format="d"),  # whole indices only
                scale=alt.Scale(nice=False, padding=8)),  # the axis ends with S (rounded out, 168 points drew 180)
        y=alt.Y("g:Q", title="g_fj(x) (share of the row's signal)"),
        tooltip=["point:Q", "kind:N", alt.Tooltip("g:Q", format=".4g")],
    )
    pts = base.mark_circle(size=24, opacity=0.7).encode(
        color=alt.Color("kind:N", title="pseudo-point", scale=alt.Scale(range=[OKABE["blue"], OKABE["orange"]]),
                        legend=alt.Legend(orient="bottom")))  # below, as on every other chart: the plot keeps its width
    top = base.transform_filter("datum.is_max").mark_point(size=220, color=OKABE["vermillion"], strokeWidth=2)
    return sized((pts + top).properties(title=_title("g for this edge on every point of S",
                                                     "the circled point attains the max: that value is s"),
                                        width=width, height=height), height, 1, 1)
