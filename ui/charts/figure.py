"""A chart as a fixed Vega-Lite template plus named data sets (no streamlit: notebooks use it too).

Why: when a slider moves, only a chart's numbers change, not its marks, scales, titles or sizes. Building an
Altair chart and converting it to Vega-Lite costs 40-80 ms a chart on a 2-core machine; a template is built
once per *shape* (its `key`: layer names, whether there is a bound, the width) and reused, and a slider move
makes only its small data frames. The browser gains too: Streamlit keeps a chart whose spec is unchanged and
replaces only its data sets, instead of compiling and laying out a new view.

A template's marks read their rows from ``alt.NamedData(name)``; numbers that a title shows come from the
data too (a title's text may be a Vega expression over ``data('name')``), so the spec never holds them.

    fig = Figure(("density", labels, width), lambda: template(labels, width), {"bars": df, "rule": rule})
    fig.chart()          # an ordinary Altair chart with its data inlined (notebooks, PNG/SVG, tests)
    template_of(fig)     # (template chart, its Vega-Lite dict): built once per key, shared, never mutated
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

import altair as alt
import pandas as pd

MAX_TEMPLATES = 128  # shapes kept per process: a few per page and model


@dataclass(frozen=True, eq=False)
class Figure:
    key: tuple  # everything the template depends on (never the data)
    build: Callable[[], alt.TopLevelMixin]  # the template; its marks read alt.NamedData(n) for n in data
    data: dict[str, pd.DataFrame]

    def chart(self) -> alt.TopLevelMixin:
        """The complete Altair chart, data inlined as the spec's named data sets."""
        return template_of(self)[0].properties(datasets={n: records(df) for n, df in self.data.items()})

    def spec(self, template: dict | None = None) -> dict:
        """The template's Vega-Lite dict with this figure's data frames as its data sets (a new top-level dict;
        the template's nested parts are shared: never mutate them). template: another form of the template
        (e.g. with presentation-mode type)."""
        t = template if template is not None else template_of(self)[1]
        return {**t, "datasets": {**t.get("datasets", {}), **self.data}}  # the template's own (fixed) data too

    def to_dict(self) -> dict:
        """The complete Vega-Lite spec as JSON-ready values (what vl-convert and tests read)."""
        t = template_of(self)[1]
        return {**t, "datasets": {**t.get("datasets", {}), **{n: records(df) for n, df in self.data.items()}}}

    @property
    def usermeta(self):
        return getattr(template_of(self)[0], "usermeta", alt.Undefined)

    @property
    def title(self):
        return getattr(template_of(self)[0], "title", alt.Undefined)


def records(df: pd.DataFrame) -> list[dict]:
    """Rows as JSON-ready dicts, as Altair inlines a data frame (NaN becomes null, numpy types plain)."""
    return alt.utils.data.to_values(df)["values"]


_templates: OrderedDict[tuple, tuple] = OrderedDict()
_lock = threading.Lock()


def template_of(fig: Figure) -> tuple:
    """(template chart, its Vega-Lite dict) for the figure's key: built and converted once, then shared."""
    with _lock:
        hit = _templates.get(fig.key)
        if hit is not None:
            _templates.move_to_end(fig.key)
            return hit
    chart = fig.build()
    made = (chart, chart.to_dict())
    with _lock:
        _templates[fig.key] = made
        while len(_templates) > MAX_TEMPLATES:
            _templates.popitem(last=False)
    return made


def as_chart(c):
    """An Altair chart for either kind: a Figure's complete chart, or the chart itself."""
    return c.chart() if isinstance(c, Figure) else c
