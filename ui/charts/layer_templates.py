"""The templates of the per-layer charts (ui.charts.layers): Altair builders, each called once per chart shape
(ui.charts.figure), and never on a page whose templates are compiled (ui.charts.compiled).
"""
from __future__ import annotations

import math

import altair as alt
import pandas as pd

from ui.charts.core import (
    LEGEND_LABEL_LIMIT,
    OKABE,
    REL_ERR,
    SERIES,
    TEXT_PX,
    _marked_layers,
    _title,
    layer_axis,
    layer_axis_title,
    layer_label_lines,
    series_scales,
    sized,
    tight_log,
    wide,
)


def density(order: list[str], width: int):
    base = alt.Chart(alt.NamedData("density")).encode(
        y=alt.Y("label:N", sort=order, title="layer (module name · shape)", axis=alt.Axis(labelLimit=260)),
        x=alt.X("percent:Q", title="weights kept (% of the layer)", scale=alt.Scale(domain=[0, 135]),
                axis=alt.Axis(values=[0, 20, 40, 60, 80, 100])),  # room right of 100% for the count label
        tooltip=[alt.Tooltip("label:N", title="layer"), alt.Tooltip("kept:Q", format=","),
                 alt.Tooltip("total:Q", format=",", title="weights"), alt.Tooltip("percent:Q", format=".2f", title="kept %")],
    )
    bars = base.mark_bar(color=OKABE["blue"], height={"band": 0.7})
    text = base.mark_text(align="left", dx=4, fontSize=TEXT_PX).encode(text="count:N")
    # the count under a white outline, drawn over the dashed line: the line ran through "18,505 / 235,200"
    halo = base.mark_text(align="left", dx=4, fontSize=TEXT_PX, stroke="white", strokeWidth=4,
                          strokeJoin="round").encode(text="count:N")
    rule = alt.Chart(alt.NamedData("overall")).mark_rule(color=OKABE["vermillion"], strokeDash=[4, 3]).encode(
        x="x:Q", tooltip=[alt.Tooltip("x:Q", format=".2f", title="overall keep ratio (%)")])
    h = max(120, 44 * len(order))
    # The number lives in the data, not the spec: a slider move replaces the data and keeps the chart
    title = alt.ExprRef(expr="'Weights kept per layer: ' + format(data('overall')[0].x, '.2f') + '% overall'")
    chart = (bars + rule + halo + text).properties(title=_title("Weights kept per layer", "dashed line: the overall keep "
                                                          "ratio, as a share of all prunable weights"),
                                            width=width, height=h)
    chart.title.text = title
    return sized(chart, h)


def bound(order: list[str], series: tuple[str, ...], broken: bool, width: int, height: int):
    has_bound = any("bound" in s for s in series)
    rows = math.ceil(len(series) / 2)
    colors, shapes = series_scales(series)
    pts = alt.Chart(alt.NamedData("errors")).mark_point(filled=True, size=140, opacity=0.95).encode(
        x=alt.X("layer:N", sort=order, title=layer_axis_title(order), axis=layer_axis(order, marked="broken")),
        xOffset=alt.XOffset("series:N", sort=SERIES),
        y=alt.Y("shown:Q", scale=tight_log(), title=REL_ERR),
        color=alt.Color("series:N", scale=colors, sort=SERIES, title=None,
                        legend=alt.Legend(orient="bottom", columns=2, labelLimit=LEGEND_LABEL_LIMIT)),
        shape=alt.Shape("series:N", scale=shapes, sort=SERIES, title=None),
        tooltip=["layer:N", "series:N", alt.Tooltip("value:Q", format=".4g", title="value"), alt.Tooltip("note:N", title="")],
    )
    # the line at 1 is named in the subtitle: a label on it, in the plot, ran into fc1's markers when they sat at 1
    rule = alt.Chart(pd.DataFrame({"y": [1.0]})).mark_rule(color=OKABE["grey"], strokeDash=[6, 4]).encode(y="y:Q")
    one = "dashed line at 1: the row's whole signal"
    sub = (["each row's bound and error, over its signal z^σ", one,
            "exact zeros are drawn a power of ten below the rest"]
           if has_bound else ["this method has no error bound: only the measured error is shown", one,
                              "exact zeros are drawn a power of ten below the rest"])
    if broken:  # the layers named in red: a row's bound can break below the layer's largest bound
        sub.append("✗: a layer where held-out points broke a row's bound")
    title = _title("Guaranteed bound vs measured error, per layer", sub)
    return wide(sized((pts + rule + _marked_layers("broken", order)).properties(title=title, width=width, height=height),
                      height, len(sub), rows, x_label_lines=layer_label_lines(order)), order)
