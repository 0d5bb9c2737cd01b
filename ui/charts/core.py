"""What every chart of the app shares (no streamlit: they work in Jupyter too): the Okabe-Ito colour-blind-safe
palette, type sizes for a projector set in each chart's own config, titles wrapped to the page's width, sizing,
layer axes, log axes with a floor for 0 (values of 0 are drawn at a labelled floor; the tooltip keeps the true
number), an empty chart that says why, and PNG/SVG export. What of it needs no Altair is in ui.charts.base and
given here too.

The builders live beside it, one module per subject: ``layers`` (per-layer kept share and bound beside measured
error), ``sensitivity``, ``kept_edges``, ``guarantees``, ``learn``, and ``smoothness``, ``tradeoffs``, ``filters``,
``history``, ``images``. Each takes engine records (Report, Prepared, or the small frames of ui.tables) and returns
an Altair chart with a title and labelled axes (with units).

    >>> from ui.charts import layers
    >>> layers.bound_vs_measured(report)          # doctest: +SKIP
"""
from __future__ import annotations

import textwrap

import altair as alt
import pandas as pd

from ui import tables
from ui.charts.base import (  # noqa: F401 - given here too: the builders import the shared names from core
    AXIS_LABEL_PX,
    AXIS_TITLE_PX,
    FONT,
    FULL_PLOT_PX,
    HALF_PLOT_PX,
    HEIGHT,
    LAYER_LABEL_CHAR_PX,
    LAYER_LABEL_GAP_PX,
    LEGEND_LABEL_LIMIT,
    LEGEND_PX,
    LOG_LABELS,
    OKABE,
    PNG_SCALE,
    REL_ERR,
    SERIES,
    SUBTITLE_CHARS,
    SUBTITLE_CHARS_WIDE,
    SUBTITLE_LINE_PX,
    SUBTITLE_PX,
    TEXT_PX,
    TITLE_CHARS,
    TITLE_CHARS_WIDE,
    TITLE_LINE_PX,
    TITLE_PX,
    WIDTH,
    X_LABEL_LINE_PX,
    _balanced,
    _floor,
    _layer_order,
    _lines,
    _turned,
    _upright_px,
    layer_axis_title,
    layer_label_lines,
    spans_decades,
    to_png,
    to_svg,
    wide_title,
)

# Altair validates every part of a chart as it is built, then the whole chart again when Streamlit draws it; the
# second check alone catches the same errors (with a terser message). Building the Prune page's two charts takes
# about half as long without the first: a slider move redraws them.
alt.utils.schemapi.disable_debug_mode()

AXIS_LABEL_COLOR = "#222222"
KEPT_COLORS = alt.Scale(domain=["kept", "pruned"], range=[OKABE["blue"], "#C8C8C8"])
SIGN_COLORS = alt.Scale(domain=list(tables.SIGN_NAMES.values()), range=[OKABE["blue"], OKABE["orange"]])
METHOD_COLOR = dict(zip(tables.ROW_METHOD_NAMES.values(), [OKABE["blue"], OKABE["orange"], OKABE["green"],
                                                            OKABE["grey"]]))


def method_colors(kinds) -> alt.Scale:
    """The colours of the row kinds drawn (each kind its own colour on every chart): a legend of all four named
    kinds that were not drawn (every row of fc1 deterministic, and 'sampled' in the legend)."""
    kinds = [k for k in METHOD_COLOR if k in set(kinds)]
    return alt.Scale(domain=kinds, range=[METHOD_COLOR[k] for k in kinds])
SERIES_COLOR = dict(zip(SERIES, [OKABE["vermillion"], OKABE["orange"], OKABE["green"], OKABE["blue"], OKABE["sky"]]))
SERIES_SHAPE = dict(zip(SERIES, ["triangle-up", "triangle-down", "circle", "square", "diamond"]))
SERIES_COLORS = alt.Scale(domain=SERIES, range=list(SERIES_COLOR.values()))
SERIES_SHAPES = alt.Scale(domain=SERIES, range=list(SERIES_SHAPE.values()))


def series_scales(series) -> tuple[alt.Scale, alt.Scale]:
    """(colour, shape) scales of the bound chart over these series only: its legend lists what is drawn, and each
    series keeps its colour and shape whichever others are there."""
    shown = [s for s in SERIES if s in set(series)]
    return (alt.Scale(domain=shown, range=[SERIES_COLOR[s] for s in shown]),
            alt.Scale(domain=shown, range=[SERIES_SHAPE[s] for s in shown]))


def _title(text: str, subtitle: str | list[str] | None = None) -> alt.Title:
    """A title (and subtitle) wrapped into lines that fit a half-width column. The unwrapped words ride along
    (outside the spec) so that sized() can record them for wide_title."""
    t = alt.Title(_lines(text, TITLE_CHARS), subtitle=_lines(subtitle, SUBTITLE_CHARS) if subtitle else "",
                  anchor="start", fontSize=TITLE_PX, subtitleFontSize=SUBTITLE_PX, subtitleColor="#444444")
    object.__setattr__(t, "_sipp_words", (text, subtitle))  # an attribute, not a schema property
    return t


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
            .configure_axis(labelFontSize=AXIS_LABEL_PX, titleFontSize=AXIS_TITLE_PX, labelColor=AXIS_LABEL_COLOR,
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
    # sipp_extra: what a presentation that shrinks the chart to a projector's window (ui/show.py) must leave it
    # beyond the usual: its legend's rows past two, its x labels' lines past two
    extra = 35 * max(0, legend_rows - 2) + 24 * max(0, x_label_lines - 2)
    # sipp_plot: the plot's own height, so that a presentation knows what is title, axis and legend (ui/show.py)
    return projector(chart).properties(usermeta={"sipp_height": int(total), "sipp_extra": int(extra),
                                                 "sipp_plot": int(plot_height), **meta})


def empty(title: str, sentence: str, width: int = WIDTH) -> alt.Chart:
    """A chart that says in a sentence why there is nothing to draw (never a blank plot)."""
    lines = textwrap.wrap(sentence, 46)  # 15 px text in a column of 380 px, the narrowest a chart gets
    h = 26 * len(lines) + 16
    text = alt.Chart(pd.DataFrame({"t": ["\n".join(lines)]})).mark_text(
        fontSize=15, align="left", baseline="top", lineBreak="\n", lineHeight=24, color="#333333").encode(
        text="t:N", x=alt.value(0), y=alt.value(4))
    chart = sized(text.properties(title=_title(title), width=width, height=h), h, 0, x_axis=False)
    return chart.properties(usermeta={**chart.usermeta, "sipp_empty": sentence, "sipp_empty_title": title})


def layer_axis(order: list[str] | None = None, marked: str | None = None, **kw) -> alt.Axis:
    """A layer axis whose labels ("fc1 · Linear 784→300") break after the module name, so several fit side by side;
    the module names alone, turned, when even the page's whole width is too narrow for that.

    marked: the name of a data set of layers ({"layer": label}) whose labels get a "✗" and the vermillion colour
    (the bound chart: layers where held-out rows broke their bound). The chart must draw that data set (an
    invisible mark will do) for Vega to have it."""
    turned = order is not None and _turned(order)
    name = "split(datum.label, ' · ')[0]"
    plain = name if turned else "split(datum.label, ' · ')"
    if marked is not None:
        test = f"indata('{marked}', 'layer', datum.value)"
        flagged = f"'✗ ' + {name}" if turned else f"['✗ ' + {name}, split(datum.label, ' · ')[1]]"
        kw = dict(kw, labelColor=alt.condition(test, alt.value(OKABE["vermillion"]), alt.value(AXIS_LABEL_COLOR)))
        expr = f"{test} ? {flagged} : {plain}"
    else:
        expr = plain
    if turned:
        return alt.Axis(labelAngle=-90, labelAlign="right", labelBaseline="middle", labelLimit=200,
                        labelExpr=expr, labelOverlap=False, **kw)
    return alt.Axis(labelAngle=0, labelExpr=expr, labelLimit=200, labelOverlap=False, **kw)


def _marked_layers(name: str, order: list[str]) -> alt.Chart:
    """An invisible mark over the data set `name` of layer_axis(marked=name): it puts the data set in the chart."""
    return alt.Chart(alt.NamedData(name)).mark_text(opacity=0).encode(x=alt.X("layer:N", sort=order), text="layer:N")


def wide(chart, order: list[str]):
    """The chart marked to be drawn across the page's whole width (ui.show.chart_row) when its layer labels do not
    fit half of it."""
    if _upright_px(order) <= HALF_PLOT_PX:
        return chart
    return chart.properties(usermeta={**chart.usermeta, "sipp_wide": True})


def tight_log() -> alt.Scale:
    """A log axis over the data's own extent, 10 px inside the plot. Vega rounds a log axis out to whole decades,
    which can leave one empty (a largest bound of 24 drew an axis to 100); this needs no data, so a chart template
    stays free of data and a slider move still sends data only."""
    return alt.Scale(type="log", nice=False, padding=10)
