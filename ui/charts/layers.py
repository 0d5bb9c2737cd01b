"""Per-layer charts: the share of weights kept per layer, and the guaranteed bound beside the measured error
per layer (the Prune, Bring your own and Guarantees pages, and the notebook explorer).

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
    LEGEND_LABEL_LIMIT,
    OKABE,
    REL_ERR,
    SERIES,
    SERIES_COLORS,
    SERIES_SHAPES,
    TEXT_PX,
    WIDTH,
    _floor,
    _layer_order,
    _title,
    layer_axis,
    layer_axis_title,
    layer_label_lines,
    sized,
    tight_log,
    wide,
)
from ui.charts.figure import Figure


def density_figure(report, width: int = WIDTH) -> Figure:
    """Share of each layer's weights kept (horizontal bars, labelled kept / total); the overall keep ratio is a
    dashed line and the title's number. A Figure: the template depends on the layers only."""
    df = tables.layer_table(report)[["label", "kept", "total", "density"]].copy()
    df["percent"] = 100 * df["density"]
    df["count"] = [f"{k:,} / {t:,}" for k, t in zip(df["kept"], df["total"])]
    order = _layer_order(report)
    rule = pd.DataFrame({"x": [100 * report.result.keep_ratio]})
    return Figure(("density", tuple(order), width), lambda: _density_template(order, width),
                  {"density": df, "overall": rule})


def _density_template(order: list[str], width: int):
    base = alt.Chart(alt.NamedData("density")).encode(
        y=alt.Y("label:N", sort=order, title="layer (module name · shape)", axis=alt.Axis(labelLimit=260)),
        x=alt.X("percent:Q", title="weights kept (% of the layer)", scale=alt.Scale(domain=[0, 135]),
                axis=alt.Axis(values=[0, 20, 40, 60, 80, 100])),  # room right of 100% for the count label
        tooltip=[alt.Tooltip("label:N", title="layer"), alt.Tooltip("kept:Q", format=","),
                 alt.Tooltip("total:Q", format=",", title="weights"), alt.Tooltip("percent:Q", format=".2f", title="kept %")],
    )
    bars = base.mark_bar(color=OKABE["blue"], height={"band": 0.7})
    text = base.mark_text(align="left", dx=4, fontSize=TEXT_PX).encode(text="count:N")
    rule = alt.Chart(alt.NamedData("overall")).mark_rule(color=OKABE["vermillion"], strokeDash=[4, 3]).encode(
        x="x:Q", tooltip=[alt.Tooltip("x:Q", format=".2f", title="overall keep ratio (%)")])
    h = max(120, 44 * len(order))
    # The number lives in the data, not the spec: a slider move replaces the data and keeps the chart
    title = alt.ExprRef(expr="'Weights kept per layer: ' + format(data('overall')[0].x, '.2f') + '% overall'")
    chart = (bars + text + rule).properties(title=_title("Weights kept per layer", "dashed line: the overall keep "
                                                          "ratio, as a share of all prunable weights"),
                                            width=width, height=h)
    chart.title.text = title
    return sized(chart, h)


def density_chart(report, width: int = WIDTH) -> alt.Chart:
    """density_figure as an Altair chart, its data inlined."""
    return density_figure(report, width).chart()


def bound_figure(report, width: int = WIDTH, height: int = HEIGHT) -> Figure:
    """Per layer: largest and mean row bound beside the largest measured errors (log axis). A Figure: the
    template depends on the layers and on whether the method has a bound."""
    df = tables.guarantee_frame(report)
    has_bound = bool(df[df["series"].str.contains("bound")]["value"].notna().any())
    if not has_bound:
        df = df[~df["series"].str.contains("bound")]
    floor = _floor(df["value"].tolist())
    df["shown"] = df["value"].where(df["value"] > 0, floor)
    df["note"] = np.where(df["value"] > 0, "", "0 (drawn at the floor)")
    df = df.dropna(subset=["shown"]).reset_index(drop=True)
    order = _layer_order(report)
    rows = math.ceil(df["series"].nunique() / 2)
    return Figure(("bound_vs_measured", tuple(order), has_bound, rows, width, height),
                  lambda: _bound_template(order, has_bound, rows, width, height), {"errors": df})


def _bound_template(order: list[str], has_bound: bool, rows: int, width: int, height: int):
    pts = alt.Chart(alt.NamedData("errors")).mark_point(filled=True, size=140, opacity=0.95).encode(
        x=alt.X("layer:N", sort=order, title=layer_axis_title(order), axis=layer_axis(order)),
        xOffset=alt.XOffset("series:N", sort=SERIES),
        y=alt.Y("shown:Q", scale=tight_log(), title=REL_ERR),
        color=alt.Color("series:N", scale=SERIES_COLORS, sort=SERIES, title=None,
                        legend=alt.Legend(orient="bottom", columns=2, labelLimit=LEGEND_LABEL_LIMIT)),
        shape=alt.Shape("series:N", scale=SERIES_SHAPES, sort=SERIES, title=None),
        tooltip=["layer:N", "series:N", alt.Tooltip("value:Q", format=".4g", title="value"), alt.Tooltip("note:N", title="")],
    )
    one = alt.Chart(pd.DataFrame({"y": [1.0], "label": ["1 = the row's whole signal z^σ"]}))
    rule = one.mark_rule(color=OKABE["grey"], strokeDash=[6, 4]).encode(y="y:Q")
    lab = one.mark_text(align="left", baseline="bottom", dx=2, dy=-2, color="#444444", fontSize=TEXT_PX).encode(
        y="y:Q", x=alt.value(2), text="label:N")
    sub = (["bounds per row (unit, sign), relative to the row's signal z^σ", "exact zeros are drawn a power of ten below the rest"]
           if has_bound else ["this method has no error bound: only the measured error is shown"])
    return wide(sized((pts + rule + lab).properties(title=_title("Guaranteed bound vs measured error, per layer", sub),
                                                     width=width, height=height), height, len(sub), rows,
                      x_label_lines=layer_label_lines(order)), order)


def bound_vs_measured(report, width: int = WIDTH, height: int = HEIGHT) -> alt.Chart:
    """bound_figure as an Altair chart, its data inlined."""
    return bound_figure(report, width, height).chart()
