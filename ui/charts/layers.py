"""Per-layer charts: the share of weights kept per layer, and the guaranteed bound beside the measured error
per layer (the Prune, Bring your own and Guarantees pages, and the notebook explorer).

No streamlit: they work in Jupyter too. No Altair either: the templates are built by ui.charts.layer_templates, only
when they are not compiled (ui.charts.compiled). Shared palette, type sizes and axes: ui.charts.core.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ui import tables
from ui.charts.base import HEIGHT, SERIES, WIDTH, _floor, _layer_order
from ui.charts.figure import Figure, Template

if TYPE_CHECKING:
    import altair as alt

TEMPLATES = "ui.charts.layer_templates"  # the builders (Altair): imported only when a template is built


def density_figure(report, width: int = WIDTH) -> Figure:
    """Share of each layer's weights kept (horizontal bars, labelled kept / total); the overall keep ratio is a
    dashed line and the title's number. A Figure: the template depends on the layers only."""
    df = tables.layer_table(report)[["label", "kept", "total", "density"]].copy()
    df["percent"] = 100 * df["density"]
    df["count"] = [f"{k:,} / {t:,}" for k, t in zip(df["kept"], df["total"])]
    order = _layer_order(report)
    rule = pd.DataFrame({"x": [100 * report.result.keep_ratio]})
    return Figure(("density", tuple(order), width), Template(TEMPLATES, "density", (order, width)),
                  {"density": df, "overall": rule})


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
    series = tuple(s for s in SERIES if s in set(df["series"]))  # what is drawn: the legend lists these only
    broken = broken_layers(report) if has_bound else []
    return Figure(("bound_vs_measured", tuple(order), series, bool(broken), width, height),
                  Template(TEMPLATES, "bound", (order, series, bool(broken), width, height)),
                  {"errors": df, "broken": pd.DataFrame({"layer": pd.Series(broken, dtype=object)})})


def broken_layers(report) -> list[str]:
    """Labels of the layers where some held-out (row, point) pair exceeded its row's bound. The layer's largest
    error can sit below its largest bound all the same: the bound holds row by row."""
    f = tables.failure_frame(report)
    return f[(f["points"] == "held-out") & (f["failures"] > 0)]["layer"].tolist()


def bound_vs_measured(report, width: int = WIDTH, height: int = HEIGHT) -> alt.Chart:
    """bound_figure as an Altair chart, its data inlined."""
    return bound_figure(report, width, height).chart()
