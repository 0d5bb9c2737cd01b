"""Altair chart builders over the engine's records (no streamlit: they work in Jupyter too).

Each builder takes engine records (Report, Prepared, or the small frames of
ui.tables) and returns an Altair chart with a title, labelled axes (with units)
and the Okabe-Ito colour-blind-safe palette. Log axes cannot show 0: values of
0 are drawn at a labelled floor and the tooltip keeps the true number.

    >>> from ui.charts import core as charts
    >>> charts.bound_vs_measured(report)          # doctest: +SKIP
"""
from __future__ import annotations

import math
import re
import textwrap

import altair as alt
import numpy as np
import pandas as pd
import vl_convert

from ui import tables
from ui.charts.figure import Figure, as_chart

# Okabe & Ito (2008): distinguishable with every common colour-vision deficiency.
OKABE = dict(orange="#E69F00", sky="#56B4E9", green="#009E73", yellow="#F0E442", blue="#0072B2",
             vermillion="#D55E00", purple="#CC79A7", grey="#999999", black="#000000")
KEPT_COLORS = alt.Scale(domain=["kept", "pruned"], range=[OKABE["blue"], "#C8C8C8"])
SIGN_COLORS = alt.Scale(domain=list(tables.SIGN_NAMES.values()), range=[OKABE["blue"], OKABE["orange"]])
METHOD_COLORS = alt.Scale(domain=list(tables.ROW_METHOD_NAMES.values()),
                          range=[OKABE["blue"], OKABE["orange"], OKABE["green"], OKABE["grey"]])
SERIES = ["largest row bound", "mean row bound", "measured max on S", "measured max held-out", "measured p95 held-out"]
SERIES_COLORS = alt.Scale(domain=SERIES, range=[OKABE["vermillion"], OKABE["orange"], OKABE["green"], OKABE["blue"],
                                                OKABE["sky"]])
SERIES_SHAPES = alt.Scale(domain=SERIES, range=["triangle-up", "triangle-down", "circle", "square", "diamond"])
REL_ERR = ["relative error |ẑ − z| / z^σ", "(unitless, log scale)"]  # two lines: fits a 300 px plot
WIDTH, HEIGHT = 560, 300

# Type sizes for a projector at the back of a lecture hall: set in each chart's own config (projector()),
# so a notebook shows the same sizes as the app. Minimums checked by tests/ui/test_charts.py.
TITLE_PX, SUBTITLE_PX = 18, 14
AXIS_LABEL_PX, AXIS_TITLE_PX = 13, 14
LEGEND_PX = 13
TEXT_PX = 13  # annotations drawn inside the plot
LEGEND_LABEL_LIMIT = 220  # px; a bottom legend's column is at most this plus its symbol
FONT = '"Source Sans", "Source Sans Pro", sans-serif'  # the app's own type; notebooks fall back to sans-serif
# Title lines wrap so they fit half of the page at 1280 px (Streamlit cuts a title line at the column's width).
TITLE_CHARS, SUBTITLE_CHARS = 38, 52
# A chart drawn across the page's whole width gets longer lines (wide_title): that width is about 616 px at
# 150% zoom with the sidebar open, the narrowest a projector gives (820 px at 1280x720).
TITLE_CHARS_WIDE, SUBTITLE_CHARS_WIDE = 68, 90
TITLE_LINE_PX, SUBTITLE_LINE_PX = 24, 20  # the height sized() gives each line
X_LABEL_LINE_PX = 17  # and each line of x-axis labels


_LABEL = re.compile(r"\S+ · (?:Linear|Conv2d) \d+→\d+(?:, \d+x\d+)?")  # a layer label: never split over lines


def _lines(text, width: int) -> list[str]:
    parts = [text] if isinstance(text, str) else list(text or [])
    out = []
    for p in parts:
        kept = _LABEL.sub(lambda m: m.group(0).replace(" ", "\u00a0"), p)
        out += [line.replace("\u00a0", " ") for line in _balanced(kept, width)]
    return out


def _balanced(text: str, width: int) -> list[str]:
    """text wrapped at `width` characters; when that leaves one word alone on the last line ("…, fc3 · Linear
    100→10:" then "150"), the same number of lines made as even as they can be (the narrowest width that needs no
    more lines), so that the line reads as part of the title. No word is split that the full width kept whole."""
    lines = textwrap.wrap(text, width) or [""]
    longest = max((len(w) for w in text.split()), default=0)
    if len(lines) < 2 or " " in lines[-1] or longest > width:
        return lines
    lo, hi = longest, width  # the line count only grows as the width shrinks: the narrowest width with as few lines
    while lo < hi:
        mid = (lo + hi) // 2
        if len(textwrap.wrap(text, mid)) > len(lines):
            lo = mid + 1
        else:
            hi = mid
    return textwrap.wrap(text, lo)


def _title(text: str, subtitle: str | list[str] | None = None) -> alt.Title:
    """A title (and subtitle) wrapped into lines that fit a half-width column. The unwrapped words ride along
    (outside the spec) so that sized() can record them for wide_title."""
    t = alt.Title(_lines(text, TITLE_CHARS), subtitle=_lines(subtitle, SUBTITLE_CHARS) if subtitle else "",
                  anchor="start", fontSize=TITLE_PX, subtitleFontSize=SUBTITLE_PX, subtitleColor="#444444")
    object.__setattr__(t, "_sipp_words", (text, subtitle))  # an attribute, not a schema property
    return t


def wide_title(spec: dict, meta, chars_scale: float = 1.0) -> tuple[dict, int]:
    """(spec, px saved): the spec with its title wrapped again for a chart across the page's whole width, and how
    much less height the chart then needs. chars_scale: the type's scale (presentation mode's larger type fits
    fewer characters on a line). The spec is left as it is when its title was not made by _title; a title computed
    in the browser (a Vega expression, one line) keeps its text, and only its subtitle is wrapped again."""
    words = meta.get("sipp_title") if isinstance(meta, dict) else None
    title = spec.get("title")
    if not words or not isinstance(title, dict):
        return spec, 0
    text, subtitle, sub_min = words
    live = not isinstance(title.get("text"), list)
    new_text = title.get("text") if live else _lines(text, int(TITLE_CHARS_WIDE / chars_scale))
    old_sub = title.get("subtitle") or []
    new_sub = _lines(subtitle, int(SUBTITLE_CHARS_WIDE / chars_scale)) if subtitle else []
    saved = (0 if live else TITLE_LINE_PX * (max(len(title["text"]), 1) - max(len(new_text), 1))) + (
        SUBTITLE_LINE_PX * (max(sub_min, len(old_sub)) - max(sub_min, len(new_sub))))
    return {**spec, "title": {**title, "text": new_text, "subtitle": new_sub or ""}}, max(saved, 0)


def _title_lines(chart) -> tuple[int, int]:
    """(title lines, subtitle lines) of a chart built with _title (0, 0 when it has none)."""
    t = getattr(chart, "title", alt.Undefined)
    if not isinstance(t, alt.Title):
        return 0, 0
    text, sub = t.text, t.subtitle
    n = len(text) if isinstance(text, list) else 1
    m = len(sub) if isinstance(sub, list) else (1 if isinstance(sub, str) and sub else 0)
    return n, m


def projector(chart):
    """The chart with the project's type sizes in its own config (titles 18 px, axes and legends >= 13 px)."""
    return (chart.configure(font=FONT)
            .configure_title(fontSize=TITLE_PX, subtitleFontSize=SUBTITLE_PX, color="#111111")
            .configure_axis(labelFontSize=AXIS_LABEL_PX, titleFontSize=AXIS_TITLE_PX, labelColor="#222222",
                            titleColor="#111111", titleFontWeight="normal")
            .configure_legend(labelFontSize=LEGEND_PX, titleFontSize=LEGEND_PX, labelLimit=LEGEND_LABEL_LIMIT,
                              labelColor="#222222", titleColor="#111111")
            .configure_header(labelFontSize=AXIS_LABEL_PX, titleFontSize=AXIS_TITLE_PX)
            .configure_text(fontSize=TEXT_PX)
            .configure_view(stroke=None))


def sized(chart, plot_height: int, subtitle_lines: int = 1, legend_rows: int = 0, x_axis: bool = True,
          x_label_lines: int = 1):
    """The chart in projector() sizes, with the element height it needs (title, plot, x axis, bottom legend)
    recorded in its usermeta.

    Streamlit's theme does not honour a single view's own height: the app passes this number as
    ``st.altair_chart(height=...)`` (see ui/show.py). Jupyter ignores it.
    """
    title_lines, sub_lines = _title_lines(chart)
    meta = {}
    words = getattr(getattr(chart, "title", None), "__dict__", {}).get("_sipp_words")
    if words is not None:  # for wide_title: the words, and the subtitle lines the height allows at least
        meta["sipp_title"] = [words[0], words[1], subtitle_lines]
    subtitle_lines = max(subtitle_lines, sub_lines)
    axis = (56 + X_LABEL_LINE_PX * x_label_lines) if x_axis else 20
    legend = 48 + 26 * legend_rows if legend_rows else 0
    total = (30 + TITLE_LINE_PX * max(title_lines, 1) + SUBTITLE_LINE_PX * subtitle_lines + plot_height + axis
             + legend)
    return projector(chart).properties(usermeta={"sipp_height": int(total), **meta})


def empty(title: str, sentence: str, width: int = WIDTH) -> alt.Chart:
    """A chart that says in a sentence why there is nothing to draw (never a blank plot)."""
    lines = textwrap.wrap(sentence, 46)  # 15 px text in a column of 380 px, the narrowest a chart gets
    h = 26 * len(lines) + 16
    text = alt.Chart(pd.DataFrame({"t": ["\n".join(lines)]})).mark_text(
        fontSize=15, align="left", baseline="top", lineBreak="\n", lineHeight=24, color="#333333").encode(
        text="t:N", x=alt.value(0), y=alt.value(4))
    chart = sized(text.properties(title=_title(title), width=width, height=h), h, 0, x_axis=False)
    return chart.properties(usermeta={**chart.usermeta, "sipp_empty": sentence})


PNG_SCALE = 2  # PNGs at twice the drawn size: sharp on a slide


def to_png(chart) -> bytes:
    """The chart as a PNG, drawn by Vega itself (vl-convert): what the app's "Download chart" gives."""
    return vl_convert.vegalite_to_png(chart.to_dict(), scale=PNG_SCALE)


def to_svg(chart) -> str:
    """The chart as SVG (vector: scales to any slide)."""
    return vl_convert.vegalite_to_svg(chart.to_dict())


# Log-axis tick labels at powers of ten only: plain decimals down to 0.001, "1e-6" below (not "0.000001")
LOG_LABELS = ("abs(log(datum.value) / LN10 - round(log(datum.value) / LN10)) > 1e-6 ? '' : "
              "datum.value >= 0.001 ? format(datum.value, '~g') : format(datum.value, '.0e')")


# A layer axis's labels stand upright on two lines ("fc1" over "Linear 784→300") while they fit beside each other:
# in half the page (the chart sits beside another), else across the page's whole width (the chart takes a row of
# its own: ui.show.chart_row). More layers than that (a ResNet's 20 or 56, a VGG's 11) get the module names alone,
# turned upright, across the whole width. Side by side, LeNet-5's five shapes and a ResNet's 20 names ran into one
# smear. Widths of the plot area at 1280 px with the sidebar open; a label character is about 7 px at 13 px.
HALF_PLOT_PX, FULL_PLOT_PX = 330, 700
LAYER_LABEL_CHAR_PX, LAYER_LABEL_GAP_PX = 7, 8


def _upright_px(order: list[str]) -> int:
    """The width the layer labels need side by side on two upright lines."""
    longest = max((len(line) for label in order for line in label.split(" · ")), default=0)
    return len(order) * (longest * LAYER_LABEL_CHAR_PX + LAYER_LABEL_GAP_PX)


def _turned(order: list[str]) -> bool:
    return _upright_px(order) > FULL_PLOT_PX


def layer_axis(order: list[str] | None = None, **kw) -> alt.Axis:
    """A layer axis whose labels ("fc1 · Linear 784→300") break after the module name, so several fit side by side;
    the module names alone, turned, when even the page's whole width is too narrow for that."""
    if order is not None and _turned(order):
        return alt.Axis(labelAngle=-90, labelAlign="right", labelBaseline="middle", labelLimit=200,
                        labelExpr="split(datum.label, ' · ')[0]", labelOverlap=False, **kw)
    return alt.Axis(labelAngle=0, labelExpr="split(datum.label, ' · ')", labelLimit=200, labelOverlap=False, **kw)


def layer_axis_title(order: list[str]) -> str:
    return "layer (module name)" if _turned(order) else "layer (module name · shape)"


def layer_label_lines(order: list[str]) -> int:
    """The x_label_lines (sized) a layer axis needs: 2 upright lines, or as many as the longest turned name takes."""
    if not _turned(order):
        return 2
    longest = max(len(label.split(" · ")[0]) for label in order)
    return math.ceil(longest * LAYER_LABEL_CHAR_PX / X_LABEL_LINE_PX)


def wide(chart, order: list[str]):
    """The chart marked to be drawn across the page's whole width (ui.show.chart_row) when its layer labels do not
    fit half of it."""
    if _upright_px(order) <= HALF_PLOT_PX:
        return chart
    return chart.properties(usermeta={**chart.usermeta, "sipp_wide": True})


def spans_decades(values, decades: float = 1.5) -> bool:
    """Whether the positive values span more than `decades` powers of ten: below that a log axis labels few, odd
    ticks (7, 7.5, 8, 9.5) and says less than a plain one."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x) and x > 0], dtype=float)
    return bool(v.size) and float(v.max() / v.min()) > 10**decades


def tight_log() -> alt.Scale:
    """A log axis over the data's own extent, 10 px inside the plot. Vega rounds a log axis out to whole decades,
    which can leave one empty (a largest bound of 24 drew an axis to 100); this needs no data, so a chart template
    stays free of data and a slider move still sends data only."""
    return alt.Scale(type="log", nice=False, padding=10)


def _floor(values, default: float = 1e-6) -> float:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x) and x > 0], dtype=float)
    if v.size == 0:
        return default
    return float(10 ** math.floor(math.log10(v.min()) - 1))


def _layer_order(report) -> list[str]:
    """Layer labels ("fc1 · Linear 784→300") in forward order: the sort of every layer axis."""
    return list(tables.layer_labels(report).values())


# ---- Prune page ------------------------------------------------------------------------------

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
    sub = (["bounds per row (unit, sign), relative to z⁺ + z⁻", "exact zeros are drawn a power of ten below the rest"]
           if has_bound else ["this method has no error bound: only the measured error is shown"])
    return wide(sized((pts + rule + lab).properties(title=_title("Guaranteed bound vs measured error, per layer", sub),
                                                     width=width, height=height), height, len(sub), rows,
                      x_label_lines=layer_label_lines(order)), order)


def bound_vs_measured(report, width: int = WIDTH, height: int = HEIGHT) -> alt.Chart:
    """bound_figure as an Altair chart, its data inlined."""
    return bound_figure(report, width, height).chart()


# ---- Sensitivity page ------------------------------------------------------------------------

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


# ---- Kept edges page ---------------------------------------------------------------------------

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


# ---- Guarantees page -----------------------------------------------------------------------------

def row_figure(report, layer: str, on: str = "heldout", width: int = 460, height: int = 360):
    """Per row: bound (x) against the largest measured error (y), log-log, with y = x. A Figure (the template
    depends on the layer and the points measured on), or a sentence when no row can be drawn."""
    df = tables.row_scatter_frame(report, layer, on)
    ok = df[(df["bound"] > 0) & np.isfinite(df["bound"]) & (df["measured"].notna())].copy()
    floor = _floor(ok["measured"].tolist() + ok["bound"].tolist())
    ok["shown"] = ok["measured"].where(ok["measured"] > 0, floor)
    label = tables.layer_label(report, layer)
    if ok.empty:
        return empty(f"Bound vs measured per row, layer {label}",
                     "No row of this layer has a positive, finite bound and a measured error: the method gives no "
                     "bound, or every row was kept whole or pruned entirely.", width)
    lo = min(floor, ok["bound"].min()) / 2
    hi = max(ok["bound"].max(), ok["shown"].max()) * 2
    above, whole = int((ok["measured"] > ok["bound"]).sum()), int((df["bound"] == 0).sum())
    counts = pd.DataFrame({"above": [f"above y = x: {above:,} of {len(ok):,} rows"],
                           "whole": [f"not drawn: {whole:,} rows with bound 0"]})
    # the diagonal spans both axes' range, so both log axes get the same domain without fixing it in the spec
    diagonal = pd.DataFrame({"x": [lo, hi], "y": [lo, hi]})
    return Figure(("row_scatter", label, on, width, height), lambda: _row_template(label, on, width, height),
                  {"rows": ok, "diagonal": diagonal, "counts": counts})


def _row_template(label: str, on: str, width: int, height: int):
    where = "held-out points" if on == "heldout" else "the points of S"
    pts = alt.Chart(alt.NamedData("rows")).mark_circle(size=28, opacity=0.7).encode(
        # not nice: both axes span exactly the diagonal's range (a factor of 2 beyond every point)
        x=alt.X("bound:Q", scale=alt.Scale(type="log", nice=False), title="row bound ε (log scale)",
                axis=alt.Axis(labelExpr=LOG_LABELS)),
        y=alt.Y("shown:Q", scale=alt.Scale(type="log", nice=False), title=f"largest measured error on {where} (log)",
                axis=alt.Axis(labelExpr=LOG_LABELS)),
        color=alt.Color("method:N", scale=METHOD_COLORS, title="row pruned by",
                        legend=alt.Legend(orient="bottom", columns=2)),
        tooltip=["unit:Q", "sign:N", "method:N", "kept:Q", alt.Tooltip("bound:Q", format=".4g"),
                 alt.Tooltip("measured:Q", format=".4g")],
    )
    line = alt.Chart(alt.NamedData("diagonal")).mark_line(color=OKABE["black"], strokeDash=[5, 4]).encode(
        x="x:Q", y="y:Q")
    # counts in the plot's top-left corner: above the diagonal, where only rows that broke their bound fall
    text = alt.Chart(alt.NamedData("counts")).mark_text(align="left", baseline="top", fontSize=TEXT_PX,
                                                         color="#333333")
    counts = [text.encode(text=f"{f}:N", x=alt.value(6), y=alt.value(6 + 18 * i)) for i, f in enumerate(("above", "whole"))]
    sub = ["dashed: y = x; a point above it broke its bound",
           "rows with bound 0 (kept whole or empty) are not drawn; zeros sit at the floor"]
    return sized(alt.layer(line, pts, *counts).properties(
        title=_title(f"Bound vs measured per row, layer {label}", sub), width=width, height=height), height, 2, 2)


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
                     f"pairs, in every layer. The guarantee allows a share of δ = {delta:.0e}.", width)
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
    d = pd.DataFrame({"y": [100 * delta], "t": [f"δ = {delta:.0e}"]})
    rule = alt.Chart(d).mark_rule(color=OKABE["vermillion"], strokeDash=[6, 3]).encode(y="y:Q")
    room = alt.Chart(alt.NamedData("top")).mark_point(opacity=0, size=0).encode(y="y:Q")  # not drawn: sets the axis top
    return wide(sized((bars + text + rule + room).properties(
        title=_title("Failure rate beside δ", [f"red dashed line: δ = {delta:.0e}, the share of failures the guarantee allows",
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
    sub = ["grey dashed: bound = ε (under the bound's line where they coincide)"] + (
        ["black dotted: the sidebar's ε"] if current_eps is not None else [])
    return sized(alt.layer(err, yx, *_sidebar_eps(current_eps)).properties(
        title=_title(f"Bound and measured error as ε moves ({method})", sub), width=width, height=height),
        height, len(sub), 2)


# ---- Learn page ------------------------------------------------------------------------------------

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
        title=_title("The tiny network", "edge width ∝ |w|; dashed grey: pruned"), width=width, height=height),
        height, 1, 1, x_axis=False)


def toy_data(x: np.ndarray, y: np.ndarray, s_index: np.ndarray | None = None, chosen: int | None = None,
             width: int = 360, height: int = 300) -> alt.Chart:
    df = pd.DataFrame(dict(x1=x[:, 0], x2=x[:, 1], cls=[f"class {int(c)}" for c in y]))
    base = alt.Chart(df).mark_circle(size=18, opacity=0.35).encode(
        x=alt.X("x1:Q", title="feature 1 (standardised)"), y=alt.Y("x2:Q", title="feature 2 (standardised)"),
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
                                                            "black rings: S; red diamond: the point being followed"),
                                               width=width, height=height), height, 1, 1)
