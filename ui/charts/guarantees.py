"""Guarantee charts: each row's bound against its measured error, failure rates beside delta, and the eps
sweep (kept share and error against eps) (the Guarantees page).

No streamlit: they work in Jupyter too. Shared palette, type sizes and axes: ui.charts.core.
"""
from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from ui import tables
from ui.charts.core import (
    HEIGHT,
    LOG_LABELS,
    METHOD_COLOR,
    OKABE,
    REL_ERR,
    TEXT_PX,
    WIDTH,
    _floor,
    _layer_order,
    _title,
    empty,
    layer_axis,
    layer_axis_title,
    layer_label_lines,
    method_colors,
    sized,
    tight_log,
    wide,
)
from ui.charts.figure import Figure, as_chart
from ui.settings import fmt_num


def row_figure(report, layer: str, on: str = "heldout", width: int = 460, height: int = 360):
    """Per row: bound (x) against the largest measured error (y), log-log, with y = x. A Figure (the template
    depends on the layer and the points measured on), or a sentence when no row can be drawn."""
    df = tables.row_scatter_frame(report, layer, on)
    # A row with bound 0 and an error broke its bound (LeNet-5's fc3 on held-out digits): drawn at the floor. Only
    # rows with bound 0 and no error, which say nothing, are left out.
    finite = np.isfinite(df["bound"]) & df["measured"].notna()
    ok = df[finite & ((df["bound"] > 0) | (df["measured"] > 0))].copy()
    floor = _floor(ok["measured"].tolist() + ok["bound"].tolist())
    ok["shown"] = ok["measured"].where(ok["measured"] > 0, floor)
    ok["bound_shown"] = ok["bound"].where(ok["bound"] > 0, floor)
    label = tables.layer_label(report, layer)
    if ok.empty:
        return empty(f"Bound vs measured per row, layer {label}",
                     "No row of this layer has a finite bound and a positive bound or error: the method gives no "
                     "bound, or every row has bound 0 and no measured error.", width)
    lo = min(floor, ok["bound_shown"].min()) / 2
    hi = max(ok["bound_shown"].max(), ok["shown"].max()) * 2
    above = int((ok["measured"] > ok["bound"] + 1e-6).sum())
    silent = int((finite & (df["bound"] == 0) & (df["measured"] == 0)).sum())
    # short: in presentation type (17.5 px) a line must fit the projected chart's 220 px plot (ui/show.py). The
    # subtitle says which rows are not drawn; a count of 0 of them is left unsaid.
    counts = pd.DataFrame({"above": [f"above y = x: {above:,} of {len(ok):,}"],
                           "whole": [f"not drawn: {silent:,}" if silent else ""]})
    # the diagonal spans both axes' range, so both log axes get the same domain without fixing it in the spec
    diagonal = pd.DataFrame({"x": [lo, hi], "y": [lo, hi]})
    kinds = tuple(k for k in METHOD_COLOR if k in set(ok["method"]))  # the legend names the kinds drawn only
    return Figure(("row_scatter", label, on, width, height, kinds),
                  lambda: _row_template(label, on, width, height, kinds),
                  {"rows": ok, "diagonal": diagonal, "counts": counts})


def _row_template(label: str, on: str, width: int, height: int, kinds: tuple = tuple(METHOD_COLOR)):
    where = "held-out points" if on == "heldout" else "the points of S"
    pts = alt.Chart(alt.NamedData("rows")).mark_circle(size=28, opacity=0.7).encode(
        # not nice: both axes span exactly the diagonal's range (a factor of 2 beyond every point)
        x=alt.X("bound_shown:Q", scale=alt.Scale(type="log", nice=False), title="row bound ε (log scale)",
                axis=alt.Axis(labelExpr=LOG_LABELS)),
        y=alt.Y("shown:Q", scale=alt.Scale(type="log", nice=False), title=f"largest measured error on {where} (log)",
                axis=alt.Axis(labelExpr=LOG_LABELS)),
        color=alt.Color("method:N", scale=method_colors(kinds), title="row pruned by",
                        legend=alt.Legend(orient="bottom", columns=2)),
        tooltip=["unit:Q", "sign:N", "method:N", "kept:Q", alt.Tooltip("bound:Q", format=".4g"),
                 alt.Tooltip("measured:Q", format=".4g")],
    )
    line = alt.Chart(alt.NamedData("diagonal")).mark_line(color=OKABE["black"], strokeDash=[5, 4]).encode(
        x="x:Q", y="y:Q")
    # counts in the plot's top-left corner: above the diagonal, where only rows that broke their bound fall
    # (the second line set by dy, which presentation mode scales with the type, not by y, which it leaves)
    counts = [alt.Chart(alt.NamedData("counts")).mark_text(align="left", baseline="top", fontSize=TEXT_PX, dy=18 * i,
                                                           color="#333333").encode(
        text=f"{f}:N", x=alt.value(6), y=alt.value(6)) for i, f in enumerate(("above", "whole"))]
    sub = ["dashed: y = x; a point above it broke its bound",
           "zeros (a bound or an error of 0) sit at the floor; rows with both 0 are not drawn"]
    chart = sized(alt.layer(line, pts, *counts).properties(
        title=_title(f"Bound vs measured per row, layer {label}", sub), width=height, height=height), height, 2, 2)
    # square: both log axes span the same range, so y = x must run at 45° for "above the line" to read right
    # (ui/show.py keeps it square on the page, where charts are otherwise stretched to the column's width)
    return chart.properties(usermeta={**chart.usermeta, "sipp_square": True})


def row_scatter(report, layer: str, on: str = "heldout", width: int = 460, height: int = 360) -> alt.Chart:
    """row_figure as an Altair chart, its data inlined."""
    return as_chart(row_figure(report, layer, on, width, height))


def _compact(n: int) -> str:
    n = int(n)
    for unit, size in (("M", 1_000_000), ("k", 1_000)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(n)


def failure_figure(report, delta: float, width: int = WIDTH, height: int = HEIGHT):
    """Share of (row, point) pairs whose measured error exceeded the row's bound, beside delta. A Figure (the
    template depends on the layers and on δ), or a sentence when there is nothing to draw."""
    df = tables.failure_frame(report)
    df = df[df["failure_rate"].notna()].copy()
    if df.empty:
        return empty("Failure rate beside δ", "This method gives no error bound, so no pair can break one: there is "
                     "no failure rate to compare with δ.", width)
    if int(df["failures"].sum()) == 0:
        on_s = int(df.loc[df["points"] == "on S", "pairs"].sum())
        held = int(df.loc[df["points"] == "held-out", "pairs"].sum())
        return empty("Failure rate beside δ",
                     f"No (row, point) pair broke its bound: 0 failures in {on_s:,} pairs on S and {held:,} held-out "
                     f"pairs, in every layer. The guarantee allows a share of δ = {fmt_num(delta)}.", width)
    df["percent"] = 100 * df["failure_rate"]
    # Compact two-line labels ("0 of" over "91.2k"): on one line, neighbouring bars' labels ran into each
    # other at 1280 px with five layers; the tooltip has the full counts.
    df["label"] = [f"{_compact(f)} of\n{_compact(p)}" for f, p in zip(df["failures"], df["pairs"])]
    df["pairs_detail"] = [f"{f:,} of {p:,}" for f, p in zip(df["failures"], df["pairs"])]
    order = _layer_order(report)
    # the y axis reaches 1.3 x the tallest bar (or δ): room for the labels above the bars
    top = pd.DataFrame({"y": [max(float(df["percent"].max()) * 1.3, 100 * delta * 1.3, 1.0)]})
    return Figure(("failure_rates", tuple(order), float(delta), width, height),
                  lambda: _failure_template(order, float(delta), width, height), {"failures": df, "top": top})


def _failure_template(order: list[str], delta: float, width: int, height: int):
    base = alt.Chart(alt.NamedData("failures")).encode(
        x=alt.X("layer:N", sort=order, title=layer_axis_title(order), axis=layer_axis(order)),
        xOffset=alt.XOffset("points:N", sort=["on S", "held-out"]),
        y=alt.Y("percent:Q", title="failure rate (% of (row, point) pairs)"),
        color=alt.Color("points:N", title="measured on", sort=["on S", "held-out"],
                        scale=alt.Scale(range=[OKABE["green"], OKABE["blue"]]), legend=alt.Legend(orient="bottom")),
        tooltip=["layer:N", "points:N", alt.Tooltip("percent:Q", format=".4f", title="failure %"),
                 alt.Tooltip("pairs_detail:N", title="failures of (row, point) pairs")],
    )
    bars = base.mark_bar()
    # dy: Vega anchors a multi-line label by its first line; lift it by one line so both sit above the bar
    text = base.mark_text(dy=-(TEXT_PX + 3), fontSize=TEXT_PX, baseline="bottom", lineBreak="\n").encode(text="label:N")
    d = pd.DataFrame({"y": [100 * delta], "t": [f"δ = {fmt_num(delta)}"]})
    rule = alt.Chart(d).mark_rule(color=OKABE["vermillion"], strokeDash=[6, 3]).encode(y="y:Q")
    room = alt.Chart(alt.NamedData("top")).mark_point(opacity=0, size=0).encode(y="y:Q")  # not drawn: sets the axis top
    return wide(sized((bars + text + rule + room).properties(
        title=_title("Failure rate beside δ", [f"red dashed line: δ = {fmt_num(delta)}, the share of failures the guarantee allows",
                                                 "labels: failures of (row, point) pairs (k = thousand, M = million)"]),
        width=width, height=height), height, 2, 1, x_label_lines=layer_label_lines(order)), order)


def failure_rates(report, delta: float, width: int = WIDTH, height: int = HEIGHT) -> alt.Chart:
    """failure_figure as an Altair chart, its data inlined."""
    return as_chart(failure_figure(report, delta, width, height))


def _eps_frames(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    d = df.copy()
    d["keep_percent"] = 100 * d["keep_ratio"]
    long = d.melt(id_vars=["eps"], value_vars=["bound_max", "measured_max_heldout", "measured_max_s"],
                  var_name="series", value_name="value")
    names = {"bound_max": "largest row bound", "measured_max_heldout": "measured max held-out",
             "measured_max_s": "measured max on S"}
    long["series"] = long["series"].map(names)
    floor = _floor(long["value"].tolist())
    long["shown"] = long["value"].where(long["value"] > 0, floor)
    return d, long, names


# The ε axis of both sweep charts: the sweep's own ε values, ticked where they were run
def _eps_x(d: pd.DataFrame) -> alt.X:
    return alt.X("eps:Q", scale=alt.Scale(type="log", nice=False, padding=12), title="ε requested (log scale)",
                 axis=alt.Axis(values=sorted(float(e) for e in d["eps"]), format="~g"))


def _sidebar_eps(current_eps: float | None) -> list:
    if current_eps is None:
        return []
    return [alt.Chart(pd.DataFrame({"eps": [current_eps]})).mark_rule(color=OKABE["black"], strokeDash=[2, 2])
            .encode(x="eps:Q")]


def eps_keep_chart(df: pd.DataFrame, current_eps: float | None = None, method: str = "", width: int = WIDTH,
                   height: int = 220) -> alt.Chart:
    """The kept share as ε moves (one full prune per ε, in ε mode). Two charts, not one vconcat: Streamlit
    stretches each view of a concatenation to the column's width, so its axes ran past the column and were cut."""
    d, _, _ = _eps_frames(df)
    keep = alt.Chart(d).mark_line(point=True, color=OKABE["blue"]).encode(
        x=_eps_x(d), y=alt.Y("keep_percent:Q", title="weights kept (%)"),
        tooltip=[alt.Tooltip("eps:Q", format="g"), alt.Tooltip("keep_percent:Q", format=".2f", title="kept %"),
                 alt.Tooltip("accuracy_after:Q", format=".3f", title="accuracy after")])
    sub = [f"{method}: each point is a full prune at that ε"] + (
        ["black dotted: the sidebar's ε"] if current_eps is not None else [])
    return sized(alt.layer(keep, *_sidebar_eps(current_eps)).properties(
        title=_title("Keep ratio as ε moves", sub), width=width, height=height), height, len(sub))


def eps_error_chart(df: pd.DataFrame, current_eps: float | None = None, method: str = "", width: int = WIDTH,
                    height: int = 220) -> alt.Chart:
    """The largest row bound and the largest measured errors as ε moves, beside the line bound = ε."""
    d, long, names = _eps_frames(df)
    err = alt.Chart(long).mark_line(point=True).encode(
        x=_eps_x(d), y=alt.Y("shown:Q", scale=tight_log(), title=REL_ERR),
        color=alt.Color("series:N", scale=alt.Scale(domain=list(names.values()),
                                                    range=[OKABE["vermillion"], OKABE["blue"], OKABE["green"]]),
                        title=None, legend=alt.Legend(orient="bottom", columns=2)),
        tooltip=[alt.Tooltip("eps:Q", format="g"), "series:N", alt.Tooltip("value:Q", format=".4g")])
    yx = alt.Chart(pd.DataFrame({"eps": sorted(d["eps"])})).mark_line(color=OKABE["grey"], strokeDash=[4, 4]).encode(
        x="eps:Q", y="eps:Q")
    # the largest bound sits on bound = ε wherever a row was sampled to meet ε exactly: the grey line is then hidden
    floor = fmt_num(float(f"{long['shown'].min():.1g}"))  # as the axis writes it: 0.03, not 3e-02
    sub = [f"grey dashed: bound = ε (under the bound's line where they coincide); a 0 sits at the floor, {floor}"] + (
        ["black dotted: the sidebar's ε"] if current_eps is not None else [])
    return sized(alt.layer(err, yx, *_sidebar_eps(current_eps)).properties(
        title=_title(f"Bound and measured error as ε moves ({method})", sub), width=width, height=height),
        height, len(sub), 2)
