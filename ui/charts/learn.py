"""The Learn walkthrough's pictures: a small network's diagram (kept and pruned edges) and its toy data with
the sample S.

No streamlit: they work in Jupyter too. Shared palette, type sizes and axes: ui.charts.core.
"""
from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from ui.charts.core import OKABE, SIGN_COLORS, TEXT_PX, _title, sized


def _diagram_edges(weights: list[np.ndarray], masks, highlight, pos: dict) -> pd.DataFrame:
    """One row per edge of the tiny network: its end points, weight, drawn width, sign and kept state."""
    edges = []
    for li, w in enumerate(weights):
        amax = float(np.abs(w).max()) or 1.0
        for f in range(w.shape[0]):
            for j in range(w.shape[1]):
                x0, y0 = pos[(li, j)]
                x1, y1 = pos[(li + 1, f)]
                kept = True if masks is None or masks[li] is None else bool(masks[li][f, j])
                hl = highlight is not None and highlight == (li, f, j)
                edges.append(dict(x=x0, y=y0, x2=x1, y2=y1, w=float(w[f, j]), width=0.5 + 5 * abs(w[f, j]) / amax,
                                  sign="+ (positive weights)" if w[f, j] > 0 else "- (negative weights)",
                                  state="kept" if kept else "pruned", edge=f"layer {li}: unit {f} ← input {j}", hl=hl))
    return pd.DataFrame(edges)


def network_diagram(weights: list[np.ndarray], masks: list[np.ndarray] | None = None, highlight: tuple | None = None,
                    layer_titles: list[str] | None = None, width: int = 520, height: int = 300) -> alt.Chart:
    """A tiny fully connected net drawn as a graph: edge width |w|, colour sign, grey dashes when pruned."""
    sizes = [weights[0].shape[1]] + [w.shape[0] for w in weights]
    nodes = [dict(x=li, y=(k - (n - 1) / 2), layer=li, idx=k, label=f"{k}")
             for li, n in enumerate(sizes) for k in range(n)]
    e = _diagram_edges(weights, masks, highlight, {(d["layer"], d["idx"]): (d["x"], d["y"]) for d in nodes})
    n = pd.DataFrame(nodes)
    xs = alt.X("x:Q", axis=None, scale=alt.Scale(domain=[-0.3, len(sizes) - 0.7]))
    ys = alt.Y("y:Q", axis=None, scale=alt.Scale(domain=[-(max(sizes)) / 2 - 0.2, max(sizes) / 2 + 0.2]))
    kept = alt.Chart(e).transform_filter("datum.state == 'kept'").mark_rule(opacity=0.85).encode(
        x=xs, y=ys, x2="x2:Q", y2="y2:Q", strokeWidth=alt.StrokeWidth("width:Q", legend=None),
        color=alt.Color("sign:N", scale=SIGN_COLORS, title="weight sign", legend=alt.Legend(orient="bottom")),
        tooltip=["edge:N", alt.Tooltip("w:Q", format=".4f"), "state:N"])
    pruned = alt.Chart(e).transform_filter("datum.state == 'pruned'").mark_rule(strokeDash=[3, 3], color="#BBBBBB").encode(
        x=xs, y=ys, x2="x2:Q", y2="y2:Q", tooltip=["edge:N", alt.Tooltip("w:Q", format=".4f"), "state:N"])
    hl = alt.Chart(e).transform_filter("datum.hl").mark_rule(color=OKABE["vermillion"], strokeWidth=6, opacity=0.6).encode(
        x=xs, y=ys, x2="x2:Q", y2="y2:Q")
    dots = alt.Chart(n).mark_circle(size=560, color="#333333").encode(x=xs, y=ys, tooltip=["layer:Q", "idx:Q"])
    labels = alt.Chart(n).mark_text(color="white", fontSize=TEXT_PX).encode(x=xs, y=ys, text="label:N")
    titles = layer_titles or (["input"] + [f"layer {i}" for i in range(1, len(sizes))])
    heads = alt.Chart(pd.DataFrame(dict(x=list(range(len(sizes))), y=[max(sizes) / 2 + 0.05] * len(sizes), t=titles))).mark_text(
        fontSize=TEXT_PX + 1, fontWeight="bold").encode(x=xs, y=ys, text="t:N")
    return sized(alt.layer(pruned, kept, hl, dots, labels, heads).properties(
        # "dashed grey: pruned" only where an edge is pruned: step 1 promised dashes it did not draw
        title=_title("The tiny network", "edge width ∝ |w|" + ("; dashed grey: pruned" if (e["state"] == "pruned").any()
                                                               else "")), width=width, height=height),
        height, 1, 1, x_axis=False)


def toy_data(x: np.ndarray, y: np.ndarray, s_index: np.ndarray | None = None, chosen: int | None = None,
             width: int = 360, height: int = 300) -> alt.Chart:
    df = pd.DataFrame(dict(x1=x[:, 0], x2=x[:, 1], cls=[f"class {int(c)}" for c in y]))
    base = alt.Chart(df).mark_circle(size=18, opacity=0.35).encode(
        # 5 ticks: every 0.2 standard deviations the x labels ran together ("−2.0−1.8") in a half-width column
        # 12 px of room at each end before the domain is rounded: spiral points at 2.43 sat on the frame's top
        x=alt.X("x1:Q", title="feature 1 (standardised)", axis=alt.Axis(tickCount=5), scale=alt.Scale(padding=12)),
        y=alt.Y("x2:Q", title="feature 2 (standardised)", axis=alt.Axis(tickCount=5), scale=alt.Scale(padding=12)),
        color=alt.Color("cls:N", title="class", scale=alt.Scale(range=[OKABE["blue"], OKABE["orange"], OKABE["green"]]),
                        legend=alt.Legend(orient="bottom")))  # below, as sized() counts it: on the right it was cut
    layers = [base]
    if s_index is not None and len(s_index):
        d = df.iloc[np.asarray(s_index)].copy()
        d["point"] = np.arange(len(d))
        layers.append(alt.Chart(d).mark_point(size=90, color=OKABE["black"], strokeWidth=1.5).encode(
            x="x1:Q", y="x2:Q", tooltip=["point:Q", "cls:N", alt.Tooltip("x1:Q", format=".3f"), alt.Tooltip("x2:Q", format=".3f")]))
        if chosen is not None:
            layers.append(alt.Chart(d.iloc[[chosen]]).mark_point(size=320, color=OKABE["vermillion"], strokeWidth=3,
                                                                 shape="diamond").encode(x="x1:Q", y="x2:Q"))
    return sized(alt.layer(*layers).properties(title=_title("The data and the points of S",
                                                            "black rings: S; red-orange diamond: the point being followed"),
                                               width=width, height=height), height, 1, 1)
