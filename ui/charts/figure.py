"""A chart as a fixed Vega-Lite template plus named data sets (no streamlit: notebooks use it too).

Why: when a slider moves, only a chart's numbers change, not its marks, scales, titles or sizes. Building an
Altair chart and converting it to Vega-Lite costs 40-80 ms a chart on a 2-core machine; a template is built
once per *shape* (its `key`: layer names, whether there is a bound, the width) and reused, and a slider move
makes only its small data frames. The browser gains too: Streamlit keeps a chart whose spec is unchanged and
replaces only its data sets, instead of compiling and laying out a new view.

A template's marks read their rows from ``alt.NamedData(name)``; numbers that a title shows come from the
data too (a title's text may be a Vega expression over ``data('name')``), so the spec never holds them.

No Altair here: a template's builder is named (Template: a function of a module, imported when first called),
and a template compiled ahead (ui.charts.compiled: the default page's, written by `make run`) is drawn from its
Vega-Lite dict alone. A fresh server's first page then never imports Altair nor builds a chart (0.2 s and
0.1 s of it on a 2-core laptop); notebooks, PNG/SVG export and the other pages build them as before.

    fig = Figure(("density", labels, width), Template("ui.charts.layer_templates", "density", (labels, width)),
                 {"bars": df, "rule": rule})
    fig.chart()          # an ordinary Altair chart with its data inlined (notebooks, PNG/SVG, tests)
    spec_of(fig)         # the template's Vega-Lite dict: made once per key, shared, never mutated
"""
from __future__ import annotations

import importlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

import pandas as pd

from ui.charts import compiled

MAX_TEMPLATES = 128  # shapes kept per process: a few per page and model


@dataclass(frozen=True)
class Template:
    """A template's builder by name: ``module.name(*args)``, the module imported at the first call."""
    module: str
    name: str
    args: tuple = ()

    def __call__(self):
        return getattr(importlib.import_module(self.module), self.name)(*self.args)


@dataclass(frozen=True, eq=False)
class Figure:
    key: tuple  # everything the template depends on (never the data)
    build: Callable[[], Any]  # the template as an Altair chart; its marks read alt.NamedData(n) for n in data
    data: dict[str, pd.DataFrame]

    def chart(self):
        """The complete Altair chart, data inlined as the spec's named data sets."""
        return chart_of(self).properties(datasets={n: records(df) for n, df in self.data.items()})

    def spec(self, template: dict | None = None) -> dict:
        """The template's Vega-Lite dict with this figure's data frames as its data sets (a new top-level dict;
        the template's nested parts are shared: never mutate them). template: another form of the template
        (e.g. with presentation-mode type)."""
        t = template if template is not None else spec_of(self)
        return {**t, "datasets": {**t.get("datasets", {}), **self.data}}  # the template's own (fixed) data too

    def to_dict(self) -> dict:
        """The complete Vega-Lite spec as JSON-ready values (what vl-convert and tests read)."""
        t = spec_of(self)
        return {**t, "datasets": {**t.get("datasets", {}), **{n: records(df) for n, df in self.data.items()}}}

    @property
    def usermeta(self) -> dict:
        """The builder's notes on the chart (its height, whether it needs the page's width: ui.charts.core)."""
        return spec_of(self).get("usermeta", {})

    @property
    def title(self):
        """The template's title as Vega-Lite has it (a dict: text, subtitle; a text may be a Vega expression)."""
        return spec_of(self).get("title")


def records(df: pd.DataFrame) -> list[dict]:
    """Rows as JSON-ready dicts, as Altair inlines a data frame (NaN becomes null, numpy types plain)."""
    return importlib.import_module("altair.utils.data").to_values(df)["values"]


_specs: OrderedDict[tuple, dict] = OrderedDict()
_charts: OrderedDict[tuple, Any] = OrderedDict()
_lock = threading.Lock()


def _get(cache: OrderedDict, key: tuple):
    with _lock:
        hit = cache.get(key)
        if hit is not None:
            cache.move_to_end(key)
        return hit


def _put(cache: OrderedDict, key: tuple, value):
    with _lock:
        value = cache.setdefault(key, value)  # a thread that made it first wins: one object per key
        while len(cache) > MAX_TEMPLATES:
            cache.popitem(last=False)
    return value


def chart_of(fig: Figure):
    """The figure's template as an Altair chart (built once per key)."""
    hit = _get(_charts, fig.key)
    return hit if hit is not None else _put(_charts, fig.key, fig.build())


def spec_of(fig: Figure) -> dict:
    """The figure's template as a Vega-Lite dict: compiled ahead, or built and converted once per key."""
    hit = _get(_specs, fig.key)
    if hit is not None:
        return hit
    spec = compiled.spec(fig.key)
    return _put(_specs, fig.key, spec if spec is not None else chart_of(fig).to_dict())


def made_specs() -> dict[tuple, dict]:
    """Every template made in this process so far, by key (what ui.charts.compiled writes)."""
    with _lock:
        return dict(_specs)


def as_chart(c):
    """An Altair chart for either kind: a Figure's complete chart, or the chart itself."""
    return c.chart() if isinstance(c, Figure) else c
