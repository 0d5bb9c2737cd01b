"""Streamlit display helpers shared by the pages: charts (with PNG and SVG downloads), drawn larger and at full
width in presentation mode (ui.style).
"""
from __future__ import annotations

import re

import pandas as pd
import streamlit as st

from ui.charts.base import LEGEND_LABEL_LIMIT, to_png, to_svg, wide_title
from ui.charts.figure import Figure, as_chart, spec_of
from ui.style import presenting
from ui.tables import LAYER_TABLE_LABELS

PRESENT_SCALE = 1.35  # chart type while presenting: 13 px labels show at 17.5 px, titles at 24 px
# Title lines while presenting: the type is 1.35x larger, but the sidebar is closed (the page about 790 px wide at
# 150% zoom instead of 616), so a line holds 1/1.1 of the characters of a full-width chart's line
PRESENT_CHARS_SCALE = 1.1
# A projected chart fits the window whole: 1280x720 at 150% zoom leaves a window 480 px high, with Streamlit's
# 60 px header over its top. Its plot shrinks to fit (about 190 px left for the bound chart's); its type does not.
# A chart with a long legend or many x-label lines is left taller by what they need (sized() records it).
PRESENT_MAX_PX = 380
# ... but never a plot shorter than this (a y-axis title in 17.5 px type, wrapped at 26 characters a line, is about
# 190 px long): a chart with a long subtitle was squeezed to a plot of height 0 (the stage chart of Nonsmoothness,
# drawn as one flat line). A chart of one row per item (sipp_rows) keeps PRESENT_ROW_PX a row, or its labels overlap.
PRESENT_MIN_PLOT_PX = 190
PRESENT_ROW_PX = 25
PRESENT_Y_TITLE_CHARS = 26  # a longer y-axis title is set on two lines while presenting: a shorter plot holds it
# A square plot's side while presenting (a chart marked sipp_square: a log-log scatter with y = x). Its legend moves
# to the right, so that the whole chart (411 px for Guarantees' per-row scatter) fits the 420 px a 1280x720 window
# at 150% zoom leaves below Streamlit's header.
PRESENT_SQUARE_PX = 220


def new_run() -> None:
    """studio.py, every run: number this run's charts (their download buttons' keys, downloads) and scrolling
    tables (table) from 1 again."""
    st.session_state["_chart_n"] = 0
    st.session_state["_scroll_n"] = 0


def _scaled(spec, factor: float):
    """A copy of a Vega-Lite spec with every font size, and every text offset (dx, dy), multiplied by factor (data
    left alone): a label lifted by one line of 13 px above its bar must be lifted by one line of 17.5 px too, or it
    sits on the bar (the failure-rate chart's two-line labels did, projected)."""
    if isinstance(spec, dict):
        return {k: (v if k in ("datasets", "data") else
                    round(v * factor, 1) if isinstance(v, (int, float)) and not isinstance(v, bool)
                    and (k.lower().endswith("fontsize") or k in ("dx", "dy")) else
                    _scaled(v, factor)) for k, v in spec.items()}
    if isinstance(spec, list):
        return [_scaled(v, factor) for v in spec]
    return spec


def _stem(c) -> str:
    """A file name for the chart's downloads, from its title's words (an Altair chart's title, or a Figure's as
    Vega-Lite has it: Altair is not imported here, so both are read by their fields)."""
    title = getattr(c, "title", None)
    text = title.get("text") if isinstance(title, dict) else getattr(title, "text", title)
    text = " ".join(text) if isinstance(text, list) else text  # titles wrap into lines (ui.charts.core._title)
    expr = text.get("expr") if isinstance(text, dict) else getattr(text, "expr", None)
    if isinstance(expr, str):  # a title with a live number: its leading words, e.g. 'Weights kept per layer'
        m = re.match(r"\s*'([^']*)'", expr)
        text = m.group(1) if m else "chart"
    text = text if isinstance(text, str) else "chart"
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60] or "chart"


def downloads(c, where=None) -> None:
    """PNG and SVG of the chart (an Altair chart or a Figure), made only when clicked (no cost on a slider move)."""
    where = where if where is not None else st
    n = st.session_state.get("_chart_n", 0) + 1
    st.session_state["_chart_n"] = n
    stem = _stem(c)
    box = where.popover("Download chart", icon=":material/download:", key=f"chart-dl-{n}-{stem}", on_change="rerun")
    if not box.open:  # its buttons are made only while it is open: fewer elements to send on every slider move
        return
    with box:
        st.download_button("PNG image", lambda: to_png(as_chart(c)), f"{stem}.png", "image/png", on_click="ignore",
                           key=f"chart-png-{n}-{stem}", icon=":material/image:")
        st.download_button("SVG (vector, for slides)", lambda: to_svg(as_chart(c)), f"{stem}.svg", "image/svg+xml",
                           on_click="ignore", key=f"chart-svg-{n}-{stem}", icon=":material/draw:")


def table(data, where=None, **kw):
    """st.dataframe with a missing value drawn as an empty cell. Streamlit's grid writes "None" there, which a
    class reads as a word; every table of the app goes through here (a test checks it).
    While presenting, a table of at most PRESENT_SCROLL_ROWS rows and PRESENT_MAX_COLUMNS columns is drawn as a
    static table instead, in the presentation's larger type (static_table)."""
    where = where if where is not None else st
    if presenting() and "on_select" not in kw:  # a static table cannot be clicked
        shown = static_table(data, kw.get("column_config"), kw.get("column_order"))
        if shown is not None:
            if len(shown) > PRESENT_MAX_ROWS:  # in a box that scrolls, its header kept in view (ui/style.py)
                n = st.session_state.get("_scroll_n", 0) + 1
                st.session_state["_scroll_n"] = n
                where = where.container(height=PRESENT_SCROLL_PX, key=f"{PRESENT_SCROLL_KEY}-{n}")
            return where.table(shown, hide_index=kw.get("hide_index"))
    return where.dataframe(data, placeholder="", **kw)


# A table drawn on a canvas (st.dataframe) keeps Streamlit's 14 px type whatever the page's CSS says; a static table
# takes the presentation's 20 px (ui/style.py). Up to PRESENT_MAX_ROWS rows it is drawn whole; up to
# PRESENT_SCROLL_ROWS (ResNet56's 56 layers, a sweep's points) in a box of PRESENT_SCROLL_PX that scrolls, its header
# kept in view; longer ones stay grids. A wide one in 20 px type would not fit a projector's width.
PRESENT_MAX_ROWS = 30
PRESENT_SCROLL_ROWS = 300
PRESENT_SCROLL_PX = 520  # about 11 rows of 20 px type; ui/style.py caps it at 66% of the window (150% zoom, 720p)
PRESENT_SCROLL_KEY = "present-scroll"  # the box's CSS class (st-key-…): ui/style.py keeps its header in view
PRESENT_MAX_COLUMNS = 10


def number_format(fmt: str | None):
    """A Streamlit NumberColumn format as a function of the value: printf-style ("%.3g", "%.2f×", "%d"),
    "percent" (up to two decimals) or "localized" (thousands separators); without a format, the value as it is; None for
    a format this does not know."""
    if fmt is None:
        return lambda v: v
    if fmt == "percent":  # as the grid writes it (up to two decimals, none trailing): 85%, 10.14%, 10.1%
        return lambda v: _trim(f"{100 * v:.2f}") + "%"
    if fmt == "localized":
        return lambda v: _trim(f"{v:,.3f}")  # as a browser's toLocaleString: 3 decimals at most
    if fmt.startswith("%"):
        return lambda v: fmt % v
    return None


def _trim(text: str) -> str:
    """A decimal without trailing zeros: "85.00" -> "85", "10.10" -> "10.1"."""
    return text.rstrip("0").rstrip(".") if "." in text else text


def static_table(data, column_config=None, column_order=None):
    """A small DataFrame as a static table shows it: the columns of column_order (all by default) less those
    configured as None, each formatted as its NumberColumn says, a missing value an empty cell, a column's label
    from its config. None when it must stay a grid: not a DataFrame, too large (PRESENT_SCROLL_ROWS,
    PRESENT_MAX_COLUMNS), or a column configured as anything but a number or text (a checkbox, a progress bar)."""
    if not isinstance(data, pd.DataFrame):
        return None
    config = column_config or {}
    cols = [c for c in (column_order or data.columns) if c in data.columns and not (c in config and config[c] is None)]
    if len(data) > PRESENT_SCROLL_ROWS or len(cols) > PRESENT_MAX_COLUMNS:
        return None
    out, names = data[cols].copy(), {}
    for col in cols:
        cfg = config.get(col)
        if isinstance(cfg, str):
            names[col] = cfg
            cfg = None
        kind = cfg.get("type_config", {}).get("type") if isinstance(cfg, dict) else None
        if kind == "checkbox":  # a tick a class can read (a projected grid's checkbox is 14 px and grey)
            names[col] = cfg.get("label") or col
            out[col] = ["✓" if v is True or v == 1 else "" for v in data[col]]
            continue
        if cfg is not None and kind not in ("number", "text"):
            return None
        if kind == "text":
            names[col] = cfg.get("label") or col
            cfg = None
        fmt = number_format(cfg["type_config"].get("format") if cfg else None)
        if fmt is None:
            return None
        if cfg and cfg.get("label"):
            names[col] = cfg["label"]
        missing = data[col].isna()
        if cfg or missing.any():  # strings from here: a formatted number, or an empty cell where the value is missing
            raw = fmt if cfg else (lambda v: f"{v:.4g}" if isinstance(v, float) else v)
            out[col] = ["" if gap else raw(v) for v, gap in zip(data[col], missing)]
        elif pd.api.types.is_string_dtype(data[col]) or data[col].dtype == object:
            out[col] = [unbroken(v) for v in data[col]]
    return out.rename(columns=names)


WORD_JOINER = "\u2060"


def unbroken(v):
    """A one-word text cell ("sipp-hybrid") with an invisible word joiner after each hyphen: in a static table's
    narrow column the browser would break the name there, and a method's name read as "sipp-" over "hybrid". Text
    with spaces is left to wrap at them (a long one kept on one line would push the numbers out of the table)."""
    one_word = isinstance(v, str) and "-" in v and not any(c.isspace() for c in v)
    return v.replace("-", "-" + WORD_JOINER) if one_word else v


def layer_table(df, where=None):
    """A per-layer table (ui.tables.layer_table's columns, or the rows a run saved) with the app's headers and number
    formats: counts with thousands separators, shares in percent, bounds and errors to 3 significant digits.
    While presenting: the main columns only, as a static table in the presentation's larger type (present_layers)."""
    num = st.column_config.NumberColumn
    three = num(format="%.3g")
    config = {
        "kept": num(format="localized"), "weights": num(format="localized"),
        "det. rows": num(format="localized"), "sampled rows": num(format="localized"),
        "rows kept all with s > 0": num(format="localized"), "rows pruned entirely": num(format="localized"),
        "kept share": num(format="percent"), "largest bound": three, "mean bound": three, "max error on S": three,
        "max error held-out": three, "p95 error held-out": three, "mean error held-out": three,
        # percent with 3 significant digits (the columns are scaled below): "percent" showed 2.7e-5 as 0% or 0.00%
        "failure rate on S": num(format="%.3g%%"), "failure rate held-out": num(format="%.3g%%"),
        # pinned: the table is wider than the page at 1280 px, and a row scrolled sideways lost its layer's name
        "layer": st.column_config.TextColumn(pinned=True),
    }
    df = df.assign(**{c: 100 * df[c] for c in ("failure_rate_s", "failure_rate") if c in df.columns})
    if presenting():
        return present_layers(df, where, config)
    if "file_name" in df.columns:  # uploaded under other names: the labels already give the file's names
        df = df.drop(columns="file_name").rename(columns={"name": "app's module name"})
    return table(df.rename(columns=LAYER_TABLE_LABELS), where, hide_index=True, width="stretch", column_config=config)


# The columns a projected per-layer table keeps (a static table: see static_table); 17 columns in 20 px type would
# not fit a projector's width. The CSV download and the page outside presentation mode have them all.
PRESENT_LAYER_COLUMNS = ("label", "kept", "total", "density", "bound", "measured_max_heldout", "failure_rate")


def present_layers(df, where, column_config: dict):
    """The per-layer table for a projector: its main columns (PRESENT_LAYER_COLUMNS), formatted as the full table
    formats them (a static table; one of more than PRESENT_MAX_ROWS layers scrolls in a box of its own), and a
    sentence saying where the others are."""
    cols = [c for c in PRESENT_LAYER_COLUMNS if c in df.columns]
    total = len(df.columns) - ("file_name" in df.columns)  # the full table shows a file's names in "layer"
    table(df[cols].rename(columns=LAYER_TABLE_LABELS), where, hide_index=True, width="stretch",
          column_config=column_config)
    (where if where is not None else st).caption(
        f"Presentation mode shows {len(cols)} of the table's {total} columns; the CSV download and the page outside "
        "presentation mode have them all.")


def chart_row(items: list) -> None:
    """Charts side by side, one column each, at their own heights: their titles line up at the top and the page's
    CSS (ui/style.py) puts each "Download chart" button at the bottom of its column, so the buttons line up too.
    One below the other, each across the page, when one of them asks for the whole width (a layer axis of many
    layers: ui.charts.core.wide). items: charts, or (chart, cached spec) pairs as ``chart(c, spec=)`` takes them."""
    pairs = [it if isinstance(it, tuple) else (it, None) for it in items]
    if presenting() or any(_meta(c).get("sipp_wide") for c, _ in pairs):  # presenting: each across the page
        for c, spec in pairs:
            chart(c, spec=spec)
        return
    for (c, spec), where in zip(pairs, st.columns(len(pairs))):
        chart(c, where, spec=spec)


def _meta(c) -> dict:
    meta = getattr(c, "usermeta", None)
    return meta if isinstance(meta, dict) else {}


def chart(c, where=None, spec: dict | None = None) -> None:
    """A chart at full width, with the element height the builder asked for (ui.charts.core.sized).

    c: an Altair chart, or a Figure (ui.charts.figure): a template built once per shape plus this run's data
    sets, drawn without building, converting or validating anything, and redrawn by the browser in place (only
    its data change).
    While presenting, the chart leaves its column for the page's full width, with larger type.
    spec: ``c.to_dict()`` when the caller keeps it cached (never changed here): drawn as it is, without converting
    and validating the chart again on every rerun.
    """
    meta = _meta(c)
    present = presenting()
    if meta.get("sipp_empty"):  # a sentence, as the page's own text: drawn as a chart, it left an empty band and
        # offered a download of itself (and, projected, its type did not follow the page's); where a chart would go
        (st if present or where is None else where).markdown(
            f"**{_plain(meta.get('sipp_empty_title', ''))}**\n\n{_plain(meta['sipp_empty'])}")
        return
    h = meta.get("sipp_height")
    if isinstance(c, Figure):  # its data frames: Streamlit sends them as Arrow tables
        spec = c.spec(_presented(c.key, spec_of(c)) if present else None)
    elif present:
        spec = presented(spec if spec is not None else c.to_dict())
    where = st if present or where is None else where
    # Across the page's whole width, a title wrapped for a half-width column would leave half a line empty
    if where is st and meta.get("sipp_title") and not meta.get("sipp_square"):
        spec, saved = wide_title(spec if spec is not None else c.to_dict(), meta,
                                 PRESENT_CHARS_SCALE if present else 1.0)
        h = h - saved if h else h
    height = (present_height(h, meta.get("sipp_extra", 0), meta.get("sipp_plot"), meta.get("sipp_rows", 0))
              if present else int(h)) if h else "content"
    # theme=None: Streamlit's theme would replace the chart's own (projector) type sizes with smaller ones
    if meta.get("sipp_square"):  # at its own size: stretched to the column, y = x no longer ran at 45°
        spec = square(spec if spec is not None else c.to_dict(), PRESENT_SQUARE_PX if present else None)
        where.vega_lite_chart(spec, width="content", height="content", theme=None)
    elif spec is not None:
        where.vega_lite_chart(spec, width="stretch", height=height, theme=None)
    else:
        where.altair_chart(c, width="stretch", height=height, theme=None)
    downloads(c, where)


def square(spec: dict, side: int | None = None) -> dict:
    """A spec drawn at its own size with a square plot: side pixels a side (default: its own height), its legend at
    the right when side is given (presenting: below the plot it would leave the plot a strip of the window)."""
    px = int(side or spec.get("height", 360))
    out = {**spec, "width": px, "height": px, "autosize": {"type": "pad", "contains": "padding"}}
    return _rewritten(out, _right_legend) if side else out


def _right_legend(d: dict) -> dict:
    legend = d.get("legend")
    if isinstance(legend, dict) and legend.get("orient") == "bottom":
        return {**d, "legend": {k: v for k, v in legend.items() if k != "columns"} | {"orient": "right"}}
    return d


def _plain(text: str) -> str:
    """Text shown as Markdown as it is written: no emphasis from its * and _, no formula from its $."""
    return re.sub(r"([\\*_`$\[\]<>#|~])", r"\\\1", str(text))


def present_height(h: int, extra: int = 0, plot: int | None = None, rows: int = 0) -> int:
    """A chart's element height while presenting: its own (h) in the larger type, at most PRESENT_MAX_PX plus
    what its legend and x labels need beyond the usual (extra), but never less than its title, axes and legend as
    sized() estimates them (h - plot) plus PRESENT_MIN_PLOT_PX (or its own plot, when smaller), or PRESENT_ROW_PX
    per row of a chart of rows."""
    capped = min(int(h * 1.2), PRESENT_MAX_PX + int(extra))
    if plot is None:
        return capped
    # sized()'s estimate of the title, axes and legend is generous enough for the larger type too: measured in the
    # browser, scaling it by PRESENT_SCALE left plots 100 px taller than asked
    around = int(h - plot)
    return max(capped, around + max(min(PRESENT_MIN_PLOT_PX, int(plot)), PRESENT_ROW_PX * int(rows)))


def two_line(title: str) -> list[str]:
    """A title on two lines, broken at the space nearest its middle."""
    spaces = [i for i, c in enumerate(title) if c == " "]
    if not spaces:
        return [title]
    cut = min(spaces, key=lambda i: abs(i - len(title) / 2))
    return [title[:cut], title[cut + 1:]]


def _rewritten(spec, node):
    """A copy of a spec with node() applied to every dict in it, innermost first (data sets left alone)."""
    if isinstance(spec, list):
        return [_rewritten(v, node) for v in spec]
    if not isinstance(spec, dict):
        return spec
    return node({k: (v if k in ("datasets", "data") else _rewritten(v, node)) for k, v in spec.items()})


def _two_line_y_title(d: dict) -> dict:
    """A y encoding's title longer than PRESENT_Y_TITLE_CHARS (its own or its axis's) on two lines."""
    enc = d.get("encoding")
    y = enc.get("y") if isinstance(enc, dict) else None
    if not isinstance(y, dict):
        return d
    y = dict(y)
    if _long(y.get("title")):
        y["title"] = _shorter_lines(y["title"])
    axis = y.get("axis")
    if isinstance(axis, dict) and _long(axis.get("title")):
        y["axis"] = {**axis, "title": _shorter_lines(axis["title"])}
    return {**d, "encoding": {**enc, "y": y}}


def _shorter_lines(title) -> list[str]:
    """A y-axis title as lines of at most about PRESENT_Y_TITLE_CHARS: one line broken in two at its middle; a
    title given as lines has each long line broken in two (Trade-offs' "relative logits error ||ŷ − y|| / ||y||", 40
    characters, ran past its plot's top into the chart's title)."""
    if isinstance(title, str):
        return two_line(title)
    return [part for line in title for part in (two_line(line) if _long(line) else [line])]


def _long(title) -> bool:
    lines = [title] if isinstance(title, str) else title if isinstance(title, list) else []
    return any(isinstance(t, str) and len(t) > PRESENT_Y_TITLE_CHARS for t in lines)


def _three_column_legend(d: dict) -> dict:
    """A bottom legend of 2 columns in 3 (labels at most LEGEND_LABEL_LIMIT wide): the page's whole width holds them,
    and the bound chart's five entries take two rows instead of three."""
    legend = d.get("legend")
    if isinstance(legend, dict) and legend.get("orient") == "bottom" and legend.get("columns") == 2 \
            and legend.get("labelLimit", LEGEND_LABEL_LIMIT) <= LEGEND_LABEL_LIMIT:
        return {**d, "legend": {**legend, "columns": 3}}
    return d


def presented(spec: dict) -> dict:
    """A spec as a projector shows it: larger type (PRESENT_SCALE), long y-axis titles on two lines, bottom
    legends in three columns."""
    return _rewritten(_rewritten(_scaled(spec, PRESENT_SCALE), _two_line_y_title), _three_column_legend)


_presented_specs: dict = {}


def _presented(key: tuple, template: dict) -> dict:
    """A template as presented (presented), made once per key."""
    hit = _presented_specs.get(key)
    if hit is None or hit[0] is not template:
        if len(_presented_specs) > 256:
            _presented_specs.clear()
        hit = _presented_specs[key] = (template, presented(template))
    return hit[1]
