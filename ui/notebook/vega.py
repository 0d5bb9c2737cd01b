"""Altair charts as output a notebook front end draws without the internet.

Altair's default renderer writes HTML that loads vega-embed from a CDN, so on an offline
machine (the lecture hall, CI) the chart stays blank. JupyterLab, VS Code and nteract draw the
Vega-Lite mimetype themselves, with the renderer they ship; JupyterLab 4 ships Vega-Lite 5 and
knows the mimetype "application/vnd.vegalite.v5+json". The specs of this project's chart builders
use nothing that version lacks, so they are handed over under that mimetype.
"""
from __future__ import annotations

import altair as alt
from IPython.display import display

MIMETYPE = "application/vnd.vegalite.v5+json"
SCHEMA = "https://vega.github.io/schema/vega-lite/v5.json"
RENDERER = "sipp-offline"


def chart_spec(chart) -> dict:
    """The chart's Vega-Lite dict as the front end receives it (data inlined under "datasets")."""
    # validate=False: the builders' charts are checked by their own tests; validation costs ~50 ms a chart
    out = chart.to_dict(validate=False)
    out["$schema"] = SCHEMA
    return out


def _title_text(d: dict) -> str:
    title = d.get("title", "")
    text = title.get("text", "") if isinstance(title, dict) else title
    return " ".join(text) if isinstance(text, list) else str(text)


def bundle_of_spec(d: dict) -> dict:
    return {MIMETYPE: d, "text/plain": f"<chart: {_title_text(d) or 'Vega-Lite'}>"}


def bundle(chart) -> dict:
    """A display bundle: the Vega-Lite spec, and a one-line text for front ends that cannot draw it."""
    return bundle_of_spec(chart_spec(chart))


def show(chart) -> dict:
    """Display one chart (offline-safe); returns the spec that was shown."""
    d = chart_spec(chart)
    display(bundle_of_spec(d), raw=True)
    return d


def _render(d: dict, **_) -> dict:
    d = dict(d)
    d["$schema"] = SCHEMA
    return bundle_of_spec(d)


alt.renderers.register(RENDERER, _render)


def enable_offline_charts() -> None:
    """Make every Altair chart in this kernel display as the Vega-Lite mimetype (no CDN needed)."""
    alt.renderers.enable(RENDERER)
