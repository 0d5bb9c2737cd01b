"""Charts of the run history (the Run history page's comparison of selected runs). No Streamlit."""
from __future__ import annotations

import math

import altair as alt
import pandas as pd

from .core import SUBTITLE_PX, TITLE_PX, WIDTH, sized


# Dark enough on white, projected too (tableau10's yellow and pale pink nearly vanished), and a shape per run as well
RUN_COLORS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#332288", "#000000", "#56B4E9", "#8C564B",
              "#999999"]
RUN_SHAPES = ["circle", "square", "triangle-up", "diamond", "triangle-down", "cross", "circle", "square",
              "triangle-up", "diamond"]


def overlay_chart(df: pd.DataFrame, width: int = WIDTH, height: int = 320) -> alt.Chart:
    """The runs' accuracy against the kept share on one log axis, with ticks at the kept shares actually run."""
    runs = list(dict.fromkeys(df["run"]))
    ticks = sorted({round(v, 3) for v in df["keep_pct"]})
    x = alt.X("keep_pct:Q", title="weights kept (%, log scale)", scale=alt.Scale(type="log", nice=False, padding=24),
              axis=alt.Axis(values=ticks, format=".3~g", labelOverlap="greedy"))
    color = alt.Color("run:N", title=None, sort=runs, scale=alt.Scale(domain=runs, range=RUN_COLORS),
                      legend=alt.Legend(orient="bottom", columns=2, labelLimit=320))
    shape = alt.Shape("run:N", title=None, sort=runs, scale=alt.Scale(domain=runs, range=RUN_SHAPES))
    base = alt.Chart(df).encode(x=x, y=alt.Y("acc_pct:Q", title="accuracy (%)", scale=alt.Scale(zero=False)),
                                color=color, shape=shape, tooltip=["run:N", alt.Tooltip("keep_pct:Q", format=".3g", title="kept %"),
                                                      alt.Tooltip("acc_pct:Q", format=".2f", title="accuracy %")])
    chart = alt.layer(base.mark_line(strokeWidth=2.2), base.mark_point(filled=True, size=70)).properties(
        title=alt.Title("Accuracy vs weights kept, selected runs", subtitle="one colour per run (and method); "
                        "ticks at the kept shares that were run", anchor="start", fontSize=TITLE_PX,
                        subtitleFontSize=SUBTITLE_PX), width=width, height=height)
    return sized(chart, height, 1, math.ceil(len(runs) / 2))


def smp_overlay_chart(df: pd.DataFrame, width: int = WIDTH) -> alt.Chart:
    runs = list(dict.fromkeys(df["run"]))
    height = 34 * len(runs) + 20
    chart = alt.Chart(df).mark_point(filled=True, size=110).encode(
        x=alt.X("relative_smp:Q", title="relative SMP (SMP ÷ logit variation)", scale=alt.Scale(zero=False)),
        y=alt.Y("run:N", title=None, sort=runs, axis=alt.Axis(labelLimit=320)),
        color=alt.Color("network:N", title=None, legend=alt.Legend(orient="bottom")),
        shape=alt.Shape("network:N", title=None), tooltip=["run:N", "network:N",
                                                           alt.Tooltip("relative_smp:Q", format=".3g")],
    ).properties(title=alt.Title("Relative SMP before and after pruning, selected runs", anchor="start",
                                 fontSize=TITLE_PX, subtitle="scale-free: the kinks relative to the logits' size",
                                 subtitleFontSize=SUBTITLE_PX), width=width, height=height)
    return sized(chart, height, 1, 1)
