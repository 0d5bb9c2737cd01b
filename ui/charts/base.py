"""What every chart of the app shares that needs no Altair (no streamlit either: notebooks use it too): the
Okabe-Ito colour-blind-safe palette, type sizes for a projector, titles wrapped to the page's width, the layer axes'
geometry, the floor under a log axis, and PNG/SVG export.

Why apart from ui.charts.core: a page whose chart templates are compiled (ui.charts.compiled) draws its charts
from these and the templates alone, and never imports Altair (0.2 s of a fresh server's first page). The
Altair parts (scales, axes, titles, sizing) are in core, which also gives every name defined here.
"""
from __future__ import annotations

import math
import re
import textwrap

import numpy as np
import vl_convert

from ui import tables

# Okabe & Ito (2008): distinguishable with every common colour-vision deficiency.
OKABE = dict(orange="#E69F00", sky="#56B4E9", green="#009E73", yellow="#F0E442", blue="#0072B2",
             vermillion="#D55E00", purple="#CC79A7", grey="#999999", black="#000000")
SERIES = ["largest row bound", "mean row bound", "measured max on S", "measured max held-out", "measured p95 held-out"]
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


def layer_axis_title(order: list[str]) -> str:
    return "layer (module name)" if _turned(order) else "layer (module name · shape)"


def layer_label_lines(order: list[str]) -> int:
    """The x_label_lines (sized) a layer axis needs: 2 upright lines, or as many as the longest turned name takes."""
    if not _turned(order):
        return 2
    longest = max(len(label.split(" · ")[0]) for label in order)
    return math.ceil(longest * LAYER_LABEL_CHAR_PX / X_LABEL_LINE_PX)


def spans_decades(values, decades: float = 1.5) -> bool:
    """Whether the positive values span more than `decades` powers of ten: below that a log axis labels few, odd
    ticks (7, 7.5, 8, 9.5) and says less than a plain one."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x) and x > 0], dtype=float)
    return bool(v.size) and float(v.max() / v.min()) > 10**decades


def _floor(values, default: float = 1e-6) -> float:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x) and x > 0], dtype=float)
    if v.size == 0:
        return default
    return float(10 ** math.floor(math.log10(v.min()) - 1))


def _layer_order(report) -> list[str]:
    """Layer labels ("fc1 · Linear 784→300") in forward order: the sort of every layer axis."""
    return list(tables.layer_labels(report).values())
